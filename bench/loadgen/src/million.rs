//! What is watched while a million messages go through chatapp: the size of
//! the write-ahead log (`chatapp.db-wal`), the checkpoints (SQLite's
//! checkpoint is the only writer of the main file `chatapp.db` in WAL mode,
//! so each change of its size or time is one), and the server's own report
//! of its loop turns, one line a second at debug level. A thread samples
//! them every few milliseconds; [`correlate`] lines the checkpoints up with
//! the seconds of loop turns they fell in.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The server's debug report of a second of loop turns ends so.
const WINDOW_MARK: &str = "; last 1 s: n=";
/// Lines of the server's reports of its loop turns start so.
pub const TURNS_DEBUG: &str = "chatapp: debug: loop turns: ";
pub const TURNS_INFO: &str = "chatapp: info: loop turns: ";

/// A second of loop turns, as the server reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// When the report was read, seconds from the start of the watch.
    pub at: f64,
    pub turns: u64,
    pub longest_ms: f64,
    /// Since the report before: how long the loop's thread waited for the
    /// CPU while ready to run, and how long the server's other threads
    /// (the store, scrypt) ran. A turn is timed by the clock, so a wait
    /// for the CPU lengthens it; what the other threads did not take, other
    /// processes on the CPU did.
    pub loop_wait_ms: f64,
    pub others_ran_ms: f64,
}

/// The main database file changed: a checkpoint was copying pages into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub at: f64,
    /// The WAL's size when it was seen.
    pub wal: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub samples: u64,
    pub wal_max: u64,
    /// The largest WAL size seen in each second of the watch.
    pub wal_by_second: Vec<u64>,
    pub checkpoints: Vec<Checkpoint>,
    pub windows: Vec<Window>,
    pub secs: f64,
}

/// The `n` and longest turn of a debug report's last second
/// (`...; last 1 s: n=812, longest=3.250 ms`).
pub fn parse_window(line: &str) -> Option<(u64, f64)> {
    let rest = line.split(WINDOW_MARK).nth(1)?;
    let (n, rest) = rest.split_once(", longest=")?;
    let ms = rest.trim().strip_suffix(" ms")?;
    Some((n.parse().ok()?, ms.parse().ok()?))
}

/// The count and longest turn at the head of a report
/// (`loop turns: n=1234, longest=3.250 ms, ...`).
pub fn parse_totals(line: &str) -> Option<(u64, f64)> {
    let rest = line.split("loop turns: n=").nth(1)?;
    let (n, rest) = rest.split_once(", longest=")?;
    let (ms, _) = rest.split_once(" ms")?;
    Some((n.parse().ok()?, ms.parse().ok()?))
}

/// Turn times in the seconds that saw a checkpoint and in the others.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Correlation {
    pub with_checkpoint: usize,
    pub longest_with_ms: f64,
    pub without_checkpoint: usize,
    pub longest_without_ms: f64,
}

/// Sorts the seconds of loop turns into those a checkpoint was seen in
/// and the others. A report covers the time since the one before it (the
/// first, the second before it); `slack` widens each second on both sides
/// by the sampling interval, as a checkpoint is seen up to one sample late
/// and a report read up to one sample late.
pub fn correlate(windows: &[Window], checkpoints: &[Checkpoint], slack: f64) -> Correlation {
    let mut c = Correlation::default();
    let mut start = windows.first().map_or(0.0, |w| w.at - 1.0);
    for w in windows {
        let hit = checkpoints
            .iter()
            .any(|cp| cp.at > start - slack && cp.at <= w.at + slack);
        if hit {
            c.with_checkpoint += 1;
            c.longest_with_ms = c.longest_with_ms.max(w.longest_ms);
        } else {
            c.without_checkpoint += 1;
            c.longest_without_ms = c.longest_without_ms.max(w.longest_ms);
        }
        start = w.at;
    }
    c
}

/// The sampling thread.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Watched>,
}

/// The scheduler's account of the server's threads (`/proc/PID/task/*/
/// schedstat`: ns on the CPU, ns waiting for it): the loop's thread (the
/// process's main thread), and the time the others ran.
fn sched(pid: u32) -> Option<(u64, u64, u64)> {
    let read = |tid: &str| -> Option<(u64, u64)> {
        let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        Some((fields.next()??, fields.next()??))
    };
    let (loop_ran, loop_waited) = read(&pid.to_string())?;
    let mut others = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        if tid != pid.to_string() {
            others += read(&tid).map_or(0, |(ran, _)| ran);
        }
    }
    Some((loop_ran, loop_waited, others))
}

/// Starts sampling the database in `data_dir`, the scheduler's account of
/// the server `pid`, and following the server's log `log` (from its current
/// end) every `every`.
pub fn watch(data_dir: &Path, log: &Path, pid: u32, every: Duration) -> Watch {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let db = data_dir.join(chatapp::server::DATABASE_FILE);
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let log = log.to_path_buf();
    let thread = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut got = Watched::default();
        let mut offset = fs::metadata(&log).map_or(0, |m| m.len());
        let mut partial = String::new();
        let mut last_db: Option<(u64, Option<SystemTime>)> = None;
        // Waited and others' time at the last report.
        let mut sched_then = sched(pid).map(|(_, w, o)| (w, o));
        while !flag.load(Ordering::SeqCst) {
            let at = t0.elapsed().as_secs_f64();
            let wal_len = fs::metadata(&wal).map_or(0, |m| m.len());
            got.samples += 1;
            got.wal_max = got.wal_max.max(wal_len);
            let second = at as usize;
            if got.wal_by_second.len() <= second {
                got.wal_by_second.resize(second + 1, 0);
            }
            got.wal_by_second[second] = got.wal_by_second[second].max(wal_len);
            let now_db = fs::metadata(&db).ok().map(|m| (m.len(), m.modified().ok()));
            if let (Some(before), Some(now)) = (last_db, now_db)
                && before != now
            {
                got.checkpoints.push(Checkpoint { at, wal: wal_len });
            }
            if now_db.is_some() {
                last_db = now_db;
            }
            let sched_now = sched(pid).map(|(_, w, o)| (w, o));
            offset = follow(&log, offset, &mut partial, |line| {
                if line.starts_with(TURNS_DEBUG)
                    && let Some((turns, longest_ms)) = parse_window(line)
                {
                    let (waited, others) = match (sched_then, sched_now) {
                        (Some((w0, o0)), Some((w1, o1))) => (w1 - w0, o1 - o0),
                        _ => (0, 0),
                    };
                    sched_then = sched_now;
                    got.windows.push(Window {
                        at,
                        turns,
                        longest_ms,
                        loop_wait_ms: waited as f64 / 1e6,
                        others_ran_ms: others as f64 / 1e6,
                    });
                }
            });
            std::thread::sleep(every);
        }
        got.secs = t0.elapsed().as_secs_f64();
        got
    });
    Watch { stop, thread }
}

impl Watch {
    pub fn finish(self) -> Watched {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the watch thread")
    }
}

/// Reads what was appended to `path` since `offset`, passing each whole
/// line to `each`; returns the new offset.
fn follow(path: &Path, offset: u64, partial: &mut String, mut each: impl FnMut(&str)) -> u64 {
    let Ok(mut file) = fs::File::open(path) else {
        return offset;
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut bytes = Vec::new();
    let Ok(n) = file.read_to_end(&mut bytes) else {
        return offset;
    };
    partial.push_str(&String::from_utf8_lossy(&bytes));
    while let Some(end) = partial.find('\n') {
        let line: String = partial.drain(..=end).collect();
        each(line.trim_end());
    }
    offset + n as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_reports() {
        let line = "chatapp: debug: loop turns: n=1234, longest=7.500 ms, p50<16 µs, \
                    p99<1.024 ms, histogram [<16 µs: 1000, <1.024 ms: 233, <8.192 ms: 1]; \
                    last 1 s: n=812, longest=3.250 ms";
        assert_eq!(parse_window(line), Some((812, 3.25)));
        assert_eq!(parse_totals(line), Some((1234, 7.5)));
        let last = "chatapp: info: loop turns: n=99, longest=120.064 ms, p50<16 µs";
        assert_eq!(parse_totals(last), Some((99, 120.064)));
        assert_eq!(parse_window(last), None);
        assert_eq!(parse_window("chatapp: info: stopped"), None);
    }

    #[test]
    fn checkpoints_are_matched_to_the_seconds_they_fell_in() {
        let w = |at, longest_ms| Window {
            at,
            turns: 100,
            longest_ms,
            loop_wait_ms: 0.0,
            others_ran_ms: 0.0,
        };
        let windows = [w(1.0, 2.0), w(2.0, 40.0), w(3.0, 5.0), w(4.0, 1.0)];
        let cp = |at| Checkpoint { at, wal: 0 };
        // One checkpoint in the second ending at 2.0; nothing after.
        let c = correlate(&windows, &[cp(1.5)], 0.01);
        assert_eq!(
            c,
            Correlation {
                with_checkpoint: 1,
                longest_with_ms: 40.0,
                without_checkpoint: 3,
                longest_without_ms: 5.0,
            }
        );
        // Seen just after a boundary: the second before it counts too.
        let c = correlate(&windows, &[cp(3.005)], 0.01);
        assert_eq!(c.with_checkpoint, 2);
        assert_eq!(c.longest_with_ms, 5.0);
        assert_eq!(c.longest_without_ms, 40.0);
        assert_eq!(correlate(&windows, &[], 0.01).with_checkpoint, 0);
    }

    #[test]
    fn follows_a_growing_log_line_by_line() {
        let dir = std::env::temp_dir().join(format!("loadgen-follow-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.log");
        fs::write(&path, "one\ntw").unwrap();
        let mut partial = String::new();
        let mut seen = Vec::new();
        let offset = follow(&path, 0, &mut partial, |l| seen.push(l.to_string()));
        assert_eq!(seen, ["one"]);
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut file, b"o\nthree\n").unwrap();
        follow(&path, offset, &mut partial, |l| seen.push(l.to_string()));
        assert_eq!(seen, ["one", "two", "three"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
