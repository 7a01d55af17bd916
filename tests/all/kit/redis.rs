//! A real Redis server for one test: `redis-server` from PATH, on a free
//! port of 127.0.0.1, in a temporary directory that holds its log, killed
//! when dropped. It keeps nothing on disk (no snapshots, no append-only
//! file): the bus needs only pub/sub, which Redis never stores.
//!
//! Without the binary the test fails and says what to install.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// The longest a start or a kill may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// Between two looks at a condition being waited for.
const POLL: Duration = Duration::from_millis(20);
/// Ports tried when another process takes the chosen one first.
const PORT_TRIES: usize = 5;
const NOT_INSTALLED: &str = "Redis is not installed: these tests start their own server from \
    its binary (redis-server). On Debian or Ubuntu: apt-get install redis-server";

pub struct Redis {
    /// The server, while it runs.
    server: Option<Child>,
    port: u16,
    binary: PathBuf,
    /// Holds `redis.log`.
    dir: TempDir,
}

impl Redis {
    /// A server on a free port, answering.
    pub fn start() -> Redis {
        let mut redis = Redis::new(0);
        for attempt in 1..=PORT_TRIES {
            redis.port = super::free_port();
            match redis.launch() {
                Ok(()) => return redis,
                Err(log) if attempt < PORT_TRIES && log.contains("Address already in use") => {}
                Err(log) => panic!("Redis did not start on port {}:\n{log}", redis.port),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// A server on `port`, which a test chose before (to point a client
    /// at it while nothing listened there).
    pub fn start_on(port: u16) -> Redis {
        let mut redis = Redis::new(port);
        if let Err(log) = redis.launch() {
            panic!("Redis did not start on port {port}:\n{log}");
        }
        redis
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A crash: SIGKILL, with no shutdown. Returns once the process is
    /// gone, and with it every connection to it.
    pub fn kill(&mut self) {
        let Some(mut server) = self.server.take() else {
            panic!("kill: Redis is not running");
        };
        server.kill().expect("SIGKILL to redis-server");
        server.wait().expect("wait for redis-server");
    }

    /// Starts the server again on the same port, after [`Redis::kill`].
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "restart: Redis is still running");
        if let Err(log) = self.launch() {
            panic!("Redis did not start again on port {}:\n{log}", self.port);
        }
    }

    /// Stops the server answering without closing its connections
    /// (SIGSTOP): a peer gone silent, as after a network partition.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn new(port: u16) -> Redis {
        let binary = binary();
        let dir = tempfile::Builder::new()
            .prefix("chatapp-redis-")
            .tempdir()
            .expect("a temporary directory for Redis");
        Redis {
            server: None,
            port,
            binary,
            dir,
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let server = self.server.as_ref().expect("Redis is running");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(server.id() as libc::pid_t, signal) };
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Starts redis-server and waits until it answers a PING; if it exits
    /// first, its log from this start.
    fn launch(&mut self) -> Result<(), String> {
        let log = self.log_path();
        let from = std::fs::metadata(&log).map_or(0, |m| m.len());
        let output = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let server = Command::new(&self.binary)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--daemonize", "no"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("a second handle on the log"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.binary.display()));
        self.server = Some(server);
        let mut exited = None;
        let mut last = String::new();
        let answered = super::wait_until(DEADLINE, POLL, || {
            let server = self.server.as_mut().expect("redis-server");
            exited = server.try_wait().expect("look at redis-server");
            if exited.is_some() {
                return true;
            }
            match ping(self.port) {
                Ok(()) => true,
                Err(e) => {
                    last = e;
                    false
                }
            }
        });
        if let Some(status) = exited {
            self.server = None;
            return Err(format!(
                "redis-server exited ({status}); its log:\n{}",
                tail(&log, from)
            ));
        }
        if !answered {
            self.stop();
            panic!(
                "Redis did not answer within {DEADLINE:?} (last: {last}); its log:\n{}",
                tail(&log, from)
            );
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Drop for Redis {
    /// Kills the server (it keeps nothing worth a shutdown); the directory
    /// goes after it. A paused server dies of SIGKILL too.
    fn drop(&mut self) {
        self.stop();
    }
}

/// One PING, with short timeouts.
fn ping(port: u16) -> Result<(), String> {
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .map_err(|e| e.to_string())?;
    con.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let answer: String = redis::cmd("PING")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    if answer == "PONG" {
        Ok(())
    } else {
        Err(format!("PING was answered {answer:?}"))
    }
}

fn binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| panic!("{NOT_INSTALLED}"))
}

/// The last 40 lines of a log, from byte `from` on.
fn tail(log: &Path, from: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
