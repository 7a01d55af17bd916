//! Accounting for one step of load: every message sent is registered with
//! the number of deliveries it should produce; every delivery is matched
//! against it. What is still owed when the step ends is lost. Messages the
//! server refused (rate limiting) are counted apart from losses.
//!
//! Each message carries, in its text, the step, its number, the time it was
//! *scheduled* to be sent and its sender (see [`payload`]): latency is
//! measured from the schedule, so time spent queued in the load generator
//! or the server counts, and a late delivery from an earlier step is
//! recognised as such rather than miscounted.

use crate::hist::Histogram;

#[derive(Debug, Default)]
pub struct Tracker {
    /// Deliveries still owed, by message number.
    remaining: Vec<u32>,
    /// Sum of `remaining`, kept up to date.
    outstanding: u64,
    pub sent: u64,
    /// Deliveries the messages sent should produce (refused ones included).
    pub expected: u64,
    pub delivered: u64,
    /// Deliveries beyond what a message was owed.
    pub duplicates: u64,
    /// Messages the server refused with a rate-limit error, and the
    /// deliveries they would have made.
    pub refused: u64,
    pub refused_deliveries: u64,
    /// Messages the server answered with another error.
    pub failed: u64,
    /// Messages that could not be sent (the sender's connection was gone).
    pub unsent: u64,
    /// Deliveries whose number this step never issued.
    pub unknown: u64,
    pub latency: Histogram,
    /// Deliveries whose sender and receiver were on different servers of
    /// several (both known), and their latency (also in `latency`).
    pub across: u64,
    pub across_latency: Histogram,
    /// Loadgen clock (µs) of the first and last delivery.
    pub first_delivery: Option<u64>,
    pub last_delivery: u64,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Registers a message owed `expected` deliveries; returns its number.
    pub fn add(&mut self, expected: u32) -> u32 {
        let n = u32::try_from(self.remaining.len()).expect("fewer than 2^32 messages a step");
        self.remaining.push(expected);
        self.outstanding += u64::from(expected);
        self.expected += u64::from(expected);
        self.sent += 1;
        n
    }

    /// A delivery of message `n`, `latency` µs after it was scheduled;
    /// `across`: from a client on another server.
    pub fn deliver(&mut self, n: u32, latency: u64, now: u64, across: bool) {
        match self.remaining.get_mut(n as usize) {
            None => self.unknown += 1,
            Some(0) => self.duplicates += 1,
            Some(r) => {
                *r -= 1;
                self.outstanding -= 1;
                self.delivered += 1;
                self.latency.record(latency);
                if across {
                    self.across += 1;
                    self.across_latency.record(latency);
                }
                self.first_delivery.get_or_insert(now);
                self.last_delivery = self.last_delivery.max(now);
            }
        }
    }

    /// The server refused message `n` (rate limit): none of its deliveries
    /// will come, and they are not losses.
    pub fn refuse(&mut self, n: u32) {
        if let Some(r) = self.remaining.get_mut(n as usize) {
            self.refused += 1;
            self.refused_deliveries += u64::from(*r);
            self.outstanding -= u64::from(*r);
            *r = 0;
        }
    }

    /// The server answered message `n` with an error other than a rate
    /// limit. What it still owes stays owed, and is lost if it never comes.
    pub fn fail(&mut self, n: u32) {
        if (n as usize) < self.remaining.len() {
            self.failed += 1;
        }
    }

    /// Message `n` was registered but could not be written.
    pub fn unsent(&mut self, n: u32) {
        if (n as usize) < self.remaining.len() {
            self.unsent += 1;
        }
    }

    /// Deliveries owed and not (yet) received.
    pub fn outstanding(&self) -> u64 {
        self.outstanding
    }

    /// Deliveries lost: owed when the step ended.
    pub fn lost(&self) -> u64 {
        self.outstanding
    }

    /// Messages with at least one delivery missing.
    pub fn messages_with_losses(&self) -> u64 {
        self.remaining.iter().filter(|&&r| r > 0).count() as u64
    }

    /// delivered / expected (1 when nothing was expected).
    pub fn delivered_ratio(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.delivered as f64 / self.expected as f64
        }
    }
}

/// The text of a message: `~step~number~scheduled_us~sender~` padded with
/// `x` to `len` bytes. Only ASCII, no spaces: safe in IRC and in chatapp.
pub fn payload(out: &mut String, step: u32, n: u32, sched_us: u64, sender: usize, len: usize) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "~{step}~{n}~{sched_us}~{sender}~");
    while out.len() < len {
        out.push('x');
    }
}

/// What [`payload`] put in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub step: u32,
    pub n: u32,
    pub sched_us: u64,
    pub sender: usize,
}

/// Finds a stamp anywhere in `bytes` (a decrypted chatapp frame or an IRC
/// line): a `~` followed by four `~`-terminated decimal numbers. Every `~`
/// is tried in turn, since other bytes before the text (a MessagePack
/// integer 126, an IRC ident prefix) may be one.
pub fn find_stamp(bytes: &[u8]) -> Option<Stamp> {
    let mut from = 0;
    while let Some(at) = memchr::memchr(b'~', &bytes[from..]) {
        let start = from + at;
        if let Some(stamp) = stamp_at(bytes, start + 1) {
            return Some(stamp);
        }
        from = start + 1;
    }
    None
}

fn stamp_at(bytes: &[u8], mut i: usize) -> Option<Stamp> {
    let mut fields = [0u64; 4];
    for f in &mut fields {
        let mut digits = 0;
        let mut v: u64 = 0;
        while let Some(&b) = bytes.get(i) {
            if b.is_ascii_digit() && digits < 20 {
                v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
                i += 1;
            } else {
                break;
            }
        }
        if digits == 0 || bytes.get(i) != Some(&b'~') {
            return None;
        }
        i += 1;
        *f = v;
    }
    Some(Stamp {
        step: u32::try_from(fields[0]).ok()?,
        n: u32::try_from(fields[1]).ok()?,
        sched_us: fields[2],
        sender: usize::try_from(fields[3]).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_delivery_is_lost_and_a_refused_message_is_not() {
        let mut t = Tracker::new();
        let a = t.add(3);
        let b = t.add(3);
        let c = t.add(2);
        t.deliver(a, 10, 100, false);
        t.deliver(a, 20, 110, true);
        t.deliver(a, 30, 120, false);
        t.deliver(a, 40, 130, true); // one too many
        t.deliver(b, 10, 140, false);
        t.deliver(b, 10, 150, false); // b's third never comes
        t.refuse(c);
        t.deliver(99, 1, 160, true);
        assert_eq!(t.expected, 8);
        assert_eq!(t.delivered, 5);
        assert_eq!(t.duplicates, 1);
        // Only the delivery counted from another server counts across.
        assert_eq!(t.across, 1);
        assert_eq!(t.across_latency.quantile(0.5), 20);
        assert_eq!(t.unknown, 1);
        assert_eq!((t.refused, t.refused_deliveries), (1, 2));
        assert_eq!(t.lost(), 1);
        assert_eq!(t.messages_with_losses(), 1);
        assert_eq!(t.first_delivery, Some(100));
        assert_eq!(t.last_delivery, 150);
        assert!((t.delivered_ratio() - 5.0 / 8.0).abs() < 1e-9);
    }

    #[test]
    fn stamps_round_trip_inside_other_bytes() {
        let mut s = String::new();
        payload(&mut s, 3, 12345, 987_654_321, 42, 64);
        assert_eq!(s.len(), 64);
        let wrapped = format!(":nick!u@h PRIVMSG #r :{s}\r\n");
        let want = Stamp {
            step: 3,
            n: 12345,
            sched_us: 987_654_321,
            sender: 42,
        };
        assert_eq!(find_stamp(wrapped.as_bytes()), Some(want));
        // A MessagePack id of 126 is a `~` byte before the text.
        let mut mp = b"\x85\xa2id\x7e\xa4type\xactext\xd9\x40".to_vec();
        mp.extend_from_slice(s.as_bytes());
        assert_eq!(find_stamp(&mp), Some(want));
        assert_eq!(find_stamp(b"no stamp here"), None);
        assert_eq!(find_stamp(b"~1~2~3~"), None);
        assert_eq!(find_stamp(b"~1~2~x~4~"), None);
        assert_eq!(
            find_stamp(b":c1!~c1@host PRIVMSG c2 :~1~2~3~4~xx").map(|s| s.n),
            Some(2)
        );
    }
}
