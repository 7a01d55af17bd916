//! How long the event loop's turns take: a histogram of turn times in
//! power-of-two buckets, the longest turn, and the lines that report them.
//!
//! One loop thread serves every client, so one slow turn (a checkpoint
//! stealing the core, a burst of work) delays everyone by that much: the
//! longest turn is the number that matters, an average would hide it. A
//! turn is timed from the poll's return to the next poll, so the time
//! spent waiting for events is not counted. Pure: the loop passes the
//! times in and logs the lines that come out.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Buckets of the histogram. Bucket 0 holds turns under 1 µs, bucket `i`
/// those from 2^(i-1) µs to under 2^i µs; the last also holds everything
/// longer (from 2^(BUCKETS-2) µs, about 4 s).
pub const BUCKETS: usize = 24;

/// How often [`TurnLog`] reports at debug level.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Turn times: a histogram and the longest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turns {
    counts: [u64; BUCKETS],
    longest: Duration,
}

/// The bucket a turn of `d` falls in.
pub fn bucket_of(d: Duration) -> usize {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    // The bit length: 0 for 0 µs, 1 for 1 µs, 2 for 2 and 3 µs, ...
    let bits = (u64::BITS - micros.leading_zeros()) as usize;
    bits.min(BUCKETS - 1)
}

/// The bound every turn in bucket `i` stays under, `None` for the last
/// bucket, which has none.
pub fn upper_bound(i: usize) -> Option<Duration> {
    (i < BUCKETS - 1).then(|| Duration::from_micros(1 << i))
}

/// Where a quantile lies: under a bucket's bound, or in the open last
/// bucket at or above its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Under(Duration),
    AtLeast(Duration),
}

impl Turns {
    pub fn record(&mut self, d: Duration) {
        self.counts[bucket_of(d)] += 1;
        self.longest = self.longest.max(d);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn longest(&self) -> Duration {
        self.longest
    }

    /// Turns in each bucket (see [`BUCKETS`]).
    pub fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// The bucket holding the turn at quantile `q` (0 to 1) of those
    /// recorded, as the bound it stays under; `None` with no turns.
    pub fn quantile(&self, q: f64) -> Option<Bound> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // The rank of the turn wanted, counting from 1.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(match upper_bound(i) {
                    Some(b) => Bound::Under(b),
                    None => Bound::AtLeast(Duration::from_micros(1 << (i - 1))),
                });
            }
        }
        None // unreachable: the last bucket brings `seen` to `n`
    }

    /// `n=.., longest=.. ms, p50<.., p99<.., histogram [<1 µs: .., ...]`,
    /// the histogram's empty buckets left out.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "n={}, longest={}",
            self.count(),
            millis(self.longest.as_micros())
        );
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            match self.quantile(q) {
                Some(Bound::Under(b)) => write!(s, ", {name}<{}", human(b)),
                Some(Bound::AtLeast(b)) => write!(s, ", {name}>={}", human(b)),
                None => Ok(()),
            }
            .expect("writing to a String");
        }
        s.push_str(", histogram [");
        let mut first = true;
        for (i, &c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            if !first {
                s.push_str(", ");
            }
            first = false;
            match upper_bound(i) {
                Some(b) => write!(s, "<{}: {c}", human(b)),
                None => write!(s, ">={}: {c}", human(Duration::from_micros(1 << (i - 1)))),
            }
            .expect("writing to a String");
        }
        s.push(']');
        s
    }
}

/// A time in µs under a millisecond, else in ms (exact: the bounds are
/// whole microseconds).
fn human(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1000 {
        format!("{micros} µs")
    } else {
        millis(micros)
    }
}

fn millis(micros: u128) -> String {
    format!("{}.{:03} ms", micros / 1000, micros % 1000)
}

/// The loop's record: every turn since the start, the turns since the last
/// report, and when the next report is due.
#[derive(Debug, Clone)]
pub struct TurnLog {
    all: Turns,
    window: Turns,
    next_report: Instant,
}

impl TurnLog {
    pub fn new(now: Instant) -> TurnLog {
        TurnLog {
            all: Turns::default(),
            window: Turns::default(),
            next_report: now + REPORT_EVERY,
        }
    }

    /// Records a turn that began at `start` and ended at `end`. Every
    /// [`REPORT_EVERY`] it returns the line to log at debug level: every
    /// turn so far, then the last interval's count and longest (which a
    /// benchmark lines up with what happened meanwhile, a checkpoint say).
    pub fn turn(&mut self, start: Instant, end: Instant) -> Option<String> {
        let took = end.saturating_duration_since(start);
        self.all.record(took);
        self.window.record(took);
        if end < self.next_report {
            return None;
        }
        let line = format!(
            "loop turns: {}; last {} s: n={}, longest={}",
            self.all.summary(),
            REPORT_EVERY.as_secs(),
            self.window.count(),
            millis(self.window.longest().as_micros())
        );
        self.window = Turns::default();
        self.next_report = end + REPORT_EVERY;
        Some(line)
    }

    /// The line for shutdown (info level): every turn since the start.
    pub fn final_line(&self) -> String {
        format!("loop turns: {}", self.all.summary())
    }

    pub fn all(&self) -> &Turns {
        &self.all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn turns_fall_in_power_of_two_buckets() {
        // Each bucket's first and last microsecond, and the edges between.
        let cases = [
            (us(0), 0),
            (Duration::from_nanos(999), 0),
            (us(1), 1),
            (us(2), 2),
            (us(3), 2),
            (us(4), 3),
            (us(1023), 10),
            (us(1024), 11),
            (us(65_535), 16),
            (us(65_536), 17),
            (us(100_000), 17),
            (us(131_072), 18),
            (us(1 << 22), BUCKETS - 1),
            (Duration::from_secs(3600), BUCKETS - 1),
        ];
        for (d, want) in cases {
            assert_eq!(bucket_of(d), want, "{d:?}");
            if let Some(bound) = upper_bound(want) {
                assert!(d < bound, "{d:?} is not under its bucket's bound {bound:?}");
            }
            if want > 0 {
                let below = upper_bound(want - 1).unwrap();
                assert!(d >= below, "{d:?} belongs in an earlier bucket");
            }
        }
        assert_eq!(upper_bound(BUCKETS - 1), None);
    }

    #[test]
    fn counts_longest_and_quantiles() {
        let mut t = Turns::default();
        assert_eq!(t.quantile(0.5), None);
        // 90 turns of 10 µs, 9 of 500 µs, one of 70 ms.
        for _ in 0..90 {
            t.record(us(10));
        }
        for _ in 0..9 {
            t.record(us(500));
        }
        t.record(us(70_000));
        assert_eq!(t.count(), 100);
        assert_eq!(t.longest(), us(70_000));
        assert_eq!(t.counts()[4], 90);
        assert_eq!(t.counts()[9], 9);
        assert_eq!(t.counts()[17], 1);
        assert_eq!(t.quantile(0.5), Some(Bound::Under(us(16))));
        assert_eq!(t.quantile(0.9), Some(Bound::Under(us(16))));
        assert_eq!(t.quantile(0.91), Some(Bound::Under(us(512))));
        assert_eq!(t.quantile(0.99), Some(Bound::Under(us(512))));
        assert_eq!(t.quantile(1.0), Some(Bound::Under(us(131_072))));
        assert_eq!(
            t.summary(),
            "n=100, longest=70.000 ms, p50<16 µs, p99<512 µs, p99.9<131.072 ms, \
             histogram [<16 µs: 90, <512 µs: 9, <131.072 ms: 1]"
        );
    }

    #[test]
    fn the_open_last_bucket_says_at_least() {
        let mut t = Turns::default();
        t.record(Duration::from_secs(10));
        let start = us(1 << (BUCKETS - 2));
        assert_eq!(t.quantile(0.5), Some(Bound::AtLeast(start)));
        assert!(t.summary().contains("p50>=4194.304 ms"), "{}", t.summary());
        assert!(
            t.summary().contains("[>=4194.304 ms: 1]"),
            "{}",
            t.summary()
        );
    }

    #[test]
    fn the_log_reports_once_an_interval_and_resets_its_window() {
        let t0 = Instant::now();
        let mut log = TurnLog::new(t0);
        assert_eq!(log.turn(t0, t0 + us(5)), None);
        assert_eq!(log.turn(t0 + us(10), t0 + us(3010)), None);
        let at = t0 + REPORT_EVERY;
        let line = log
            .turn(at, at + us(200))
            .expect("a report after the interval");
        assert_eq!(
            line,
            "loop turns: n=3, longest=3.000 ms, p50<256 µs, p99<4.096 ms, p99.9<4.096 ms, \
             histogram [<8 µs: 1, <256 µs: 1, <4.096 ms: 1]; last 1 s: n=3, longest=3.000 ms"
        );
        // The next interval starts empty; the totals go on.
        assert_eq!(log.turn(at + us(300), at + us(301)), None);
        let next = at + us(200) + REPORT_EVERY;
        let line = log.turn(next, next + us(40)).expect("the second report");
        assert!(
            line.ends_with("; last 1 s: n=2, longest=0.040 ms"),
            "{line}"
        );
        assert_eq!(log.all().count(), 5);
        assert!(
            log.final_line()
                .starts_with("loop turns: n=5, longest=3.000 ms")
        );
    }
}
