//! The listener's queue after the server ran out of file descriptors: the
//! real binary, started with a low open-files limit, is given more
//! connections than it can hold; once some close, every connection that
//! waited in the queue must get its handshake answered, without a new
//! connection arriving to wake the listener (mio is edge-triggered), and
//! without the server spinning while it waits.
//!
//! Linux only: it sets the limit with `setrlimit` and reads the server's
//! CPU time from /proc.
#![cfg(target_os = "linux")]

use crate::kit::{ServeProcess, WAIT};
use chatapp::wire::frame;
use chatapp::wire::noise::ClientHandshake;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The server's open-files limit: room for its own files and a few dozen
/// connections.
const FD_LIMIT: u64 = 64;
/// Connections left waiting in the listener's queue.
const QUEUED: usize = 20;
/// Served connections closed to make room: more than [`QUEUED`].
const CLOSED: usize = QUEUED + 10;
/// How long the server is watched while it is out of descriptors.
const BLOCKED_WINDOW: Duration = Duration::from_secs(1);
/// The most CPU time the server may use in [`BLOCKED_WINDOW`]: a loop that
/// spins on `accept` would use all of it; one that waits, almost nothing.
const MAX_BLOCKED_CPU: Duration = Duration::from_millis(300);

/// The server's log says it could not accept.
const BLOCKED_LINE: &str = "accept failed";
const RECOVERED_LINE: &str = "accepting connections again";

struct Server {
    process: ServeProcess,
    log: Receiver<String>,
    /// Log lines seen so far.
    seen: Vec<String>,
}

impl Server {
    fn start(dir: &std::path::Path) -> Server {
        let mut command = Command::new(ServeProcess::binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--scrypt-log-n", "4"])
            // No login deadline during the test: only the test closes
            // connections, so only that can free descriptors.
            .args(["--login-timeout", "600"])
            .arg("--data-dir")
            .arg(dir)
            .env("CHATAPP_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setrlimit is async-signal-safe, and nothing else runs
        // between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: FD_LIMIT,
                    rlim_max: FD_LIMIT,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start chatapp serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).expect("the listening line");
        std::thread::spawn(move || for _ in stdout.lines() {});
        // "chatapp listening on ADDR with key FINGERPRINT"
        let words: Vec<&str> = first.split_whitespace().collect();
        assert!(
            words.len() >= 6 && words[1] == "listening",
            "unexpected first line {first:?}"
        );
        Server {
            process: ServeProcess {
                addr: words[3].to_string(),
                fingerprint: words[6..].join(" "),
                child,
                // Read here line by line as it comes.
                stderr: None,
            },
            log,
            seen: Vec::new(),
        }
    }

    /// Takes in the log lines written so far.
    fn read_log(&mut self) {
        self.seen.extend(self.log.try_iter());
    }

    fn logged(&mut self, what: &str) -> usize {
        self.read_log();
        self.seen.iter().filter(|l| l.contains(what)).count()
    }

    /// Waits until the log has a line containing `what`.
    fn wait_logged(&mut self, what: &str) -> bool {
        let deadline = Instant::now() + WAIT;
        while self.logged(what) == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return false,
            }
        }
        true
    }

    /// User plus system CPU time of the server process so far.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.process.pid()))
            .expect("the server's /proc stat");
        // The fields after the command name, which is in parentheses:
        // utime and stime are the 14th and 15th of the line.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }
}

/// A connection that has sent the first handshake message and waits for
/// the server's answer.
struct Handshaking {
    stream: TcpStream,
    handshake: Option<ClientHandshake>,
    inbox: Vec<u8>,
}

impl Handshaking {
    fn open(addr: &str) -> Handshaking {
        let mut stream = TcpStream::connect(addr).expect("a TCP connection");
        let (handshake, first) = ClientHandshake::start();
        let mut out = Vec::new();
        frame::push(&mut out, &first);
        stream.write_all(&out).expect("send the handshake");
        Handshaking {
            stream,
            handshake: Some(handshake),
            inbox: Vec::new(),
        }
    }

    /// Reads for up to `wait` (nothing at all for zero); true once the
    /// server's handshake answer came and completes the handshake.
    fn answered(&mut self, wait: Duration) -> bool {
        if self.handshake.is_none() {
            return true;
        }
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        loop {
            if let Some((body, _)) = frame::parse(&self.inbox) {
                let handshake = self.handshake.take().unwrap();
                handshake
                    .finish(body)
                    .expect("the server's answer completes the handshake");
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let read = if left.is_zero() {
                self.stream.set_nonblocking(true).unwrap();
                let read = self.stream.read(&mut buf);
                self.stream.set_nonblocking(false).unwrap();
                read
            } else {
                self.stream.set_read_timeout(Some(left)).unwrap();
                self.stream.read(&mut buf)
            };
            match read {
                Ok(0) => panic!("the server closed a connection waiting for its handshake"),
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("reading the handshake answer: {e}"),
            }
        }
    }
}

#[test]
fn connections_queued_while_out_of_file_descriptors_are_served_once_some_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let addr = server.process.addr.clone();

    // Connect one at a time, each answered, until the server says it
    // cannot accept: that connection is the first in the queue.
    let mut served = Vec::new();
    let first_queued = 'fill: loop {
        assert!(
            served.len() < FD_LIMIT as usize,
            "{} connections served under a limit of {FD_LIMIT} files",
            served.len()
        );
        let mut conn = Handshaking::open(&addr);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if conn.answered(Duration::from_millis(20)) {
                served.push(conn);
                continue 'fill;
            }
            if server.logged(BLOCKED_LINE) > 0 {
                break 'fill conn;
            }
        }
        panic!(
            "connection {} got no answer and the server logged no failed accept",
            served.len() + 1
        );
    };
    assert!(
        served.len() >= CLOSED,
        "only {} connections fit under the limit; {CLOSED} are needed",
        served.len()
    );
    let mut queued = vec![first_queued];
    queued.extend((1..QUEUED).map(|_| Handshaking::open(&addr)));

    // Out of descriptors, the server must neither serve the queue nor
    // spin trying to. This is a measurement over a fixed time, not a wait
    // for something to happen.
    let cpu_before = server.cpu_time();
    std::thread::sleep(BLOCKED_WINDOW);
    let cpu = server.cpu_time() - cpu_before;
    assert!(
        cpu <= MAX_BLOCKED_CPU,
        "the server used {cpu:?} of CPU in {BLOCKED_WINDOW:?} while out of descriptors"
    );
    for (n, conn) in queued.iter_mut().enumerate() {
        assert!(
            !conn.answered(Duration::ZERO),
            "queued connection {n} was answered while the server had no descriptor for it"
        );
    }

    // Free descriptors; nothing new connects, so only the server's own
    // retry can take the queue.
    served.truncate(served.len() - CLOSED);
    let deadline = Instant::now() + WAIT;
    let mut unanswered: Vec<usize> = (0..QUEUED).collect();
    while !unanswered.is_empty() && Instant::now() < deadline {
        unanswered.retain(|&n| !queued[n].answered(Duration::from_millis(20)));
    }
    assert!(
        unanswered.is_empty(),
        "{} of {QUEUED} queued connections got no handshake answer within {WAIT:?} \
         of {CLOSED} connections closing: {unanswered:?}",
        unanswered.len()
    );
    // The served ones are still served.
    for conn in &mut served {
        assert!(conn.answered(Duration::ZERO));
    }

    // One line when accepting stopped and one when it resumed, however
    // many times it was tried in between.
    assert!(
        server.wait_logged(RECOVERED_LINE),
        "no log line saying accepting resumed: {:#?}",
        server.seen
    );
    assert_eq!(
        server.logged(BLOCKED_LINE),
        1,
        "the failed accepts are logged once: {:#?}",
        server.seen
    );
}
