//! A real PostgreSQL server for one test: `initdb` into a temporary
//! directory, `postgres` on a free port of 127.0.0.1, stopped and deleted
//! when dropped.
//!
//! The binaries come from PATH, else from the highest version under
//! /usr/lib/postgresql/*/bin (Debian's layout); without them the test fails
//! and says what to install. initdb and postgres refuse to run as root, so
//! as root both run as the `postgres` system user (or `nobody`), which is
//! given the temporary directory.
//!
//! The server keeps PostgreSQL's durable defaults (fsync and
//! synchronous_commit on); only its memory and connections are kept small.
//! The database `chatapp` belongs to the superuser `chatapp`, who needs no
//! password.

use super::Client;
use chatapp::wire::msg::{ErrorCode, Reply, Request, ServerFrame};
use postgres::NoTls;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The superuser initdb creates, and the name of the database tests get.
const USER: &str = "chatapp";
/// The longest initdb, a start, a stop or a kill may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// Between two looks at a condition being waited for.
const POLL: Duration = Duration::from_millis(20);
/// Ports tried when another process takes the chosen one first.
const PORT_TRIES: usize = 5;
const NOT_INSTALLED: &str = "PostgreSQL is not installed: these tests start their own server \
    from its binaries (initdb, postgres). On Debian or Ubuntu: apt-get install postgresql";

pub struct Postgres {
    /// The postmaster, while it runs.
    server: Option<Child>,
    port: u16,
    /// The directory holding initdb and postgres.
    bin: PathBuf,
    /// The user and group the server runs as, when the tests run as root.
    owner: Option<(u32, u32)>,
    /// Holds `data`, `sock` and `postgres.log`.
    dir: TempDir,
}

impl Postgres {
    /// A new cluster with the database `chatapp`, running.
    pub fn start() -> Postgres {
        let bin = binaries();
        let owner = unprivileged_user();
        let dir = tempfile::Builder::new()
            .prefix("chatapp-pg-")
            .tempdir()
            .expect("a temporary directory for PostgreSQL");
        let sock = dir.path().join("sock");
        fs::create_dir(&sock).expect("a socket directory for PostgreSQL");
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), &sock] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("give {} to uid {uid}: {e}", path.display()));
            }
        }
        let mut pg = Postgres {
            server: None,
            port: 0,
            bin,
            owner,
            dir,
        };
        pg.initdb();
        for attempt in 1..=PORT_TRIES {
            pg.port = super::free_port();
            match pg.launch() {
                Ok(()) => break,
                Err(log) if attempt < PORT_TRIES && log.contains("Address already in use") => {}
                Err(log) => panic!("PostgreSQL did not start on port {}:\n{log}", pg.port),
            }
        }
        pg.create_database(USER);
        pg
    }

    /// `postgres://chatapp@127.0.0.1:PORT/chatapp`
    pub fn url(&self) -> String {
        self.url_of(USER)
    }

    /// A fresh, empty database on this server, for a test that needs
    /// several; returns its URL. `name`: lowercase letters, digits and `_`.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "a database name of lowercase letters, digits and _: {name:?}"
        );
        let mut admin = self.config("postgres").connect(NoTls).unwrap_or_else(|e| {
            panic!("connect to PostgreSQL on port {} as {USER}: {e}", self.port)
        });
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url_of(name)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory, deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Fast shutdown (SIGINT): open connections are ended, everything
    /// committed is kept. Returns once the server has exited.
    pub fn stop(&mut self) {
        if let Err(e) = self.shutdown() {
            panic!("{e}");
        }
    }

    /// Starts the server again on the same port and data directory, after
    /// [`Postgres::stop`] or [`Postgres::kill`] (it recovers from its WAL).
    pub fn start_again(&mut self) {
        assert!(
            self.server.is_none(),
            "start_again: PostgreSQL is still running"
        );
        if let Err(log) = self.launch() {
            panic!(
                "PostgreSQL did not start again on port {}:\n{log}",
                self.port
            );
        }
    }

    /// A crash: the postmaster and every process it started are killed at
    /// once with SIGKILL, with no shutdown. Returns once they are all gone.
    pub fn kill(&mut self) {
        if let Err(e) = self.crash() {
            panic!("{e}");
        }
    }

    fn url_of(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    fn config(&self, database: &str) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .dbname(database)
            .connect_timeout(Duration::from_secs(5));
        config
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// initdb or postgres, as the unprivileged user when there is one.
    fn command(&self, program: &str, output: &Path) -> Command {
        let log = File::options().create(true).append(true).open(output);
        let log = log.unwrap_or_else(|e| panic!("open {}: {e}", output.display()));
        let mut command = Command::new(self.bin.join(program));
        command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle on the log"))
            .stderr(log);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn initdb(&self) {
        let output = self.dir.path().join("initdb.log");
        let mut initdb = self.command("initdb", &output);
        let data = self.data_dir();
        initdb.arg("-D").arg(data).args(["-A", "trust", "-U", USER]);
        initdb.args(["-E", "UTF8", "--locale=C", "--no-sync"]);
        let mut child = initdb.spawn().unwrap_or_else(|e| {
            panic!(
                "run {}: {e}{}",
                self.bin.join("initdb").display(),
                self.reach_hint()
            )
        });
        let status = wait_exit(&mut child);
        if status.is_some_and(|s| s.success()) {
            return;
        }
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let how = status.map_or(format!("did not finish within {DEADLINE:?}"), |s| {
            format!("failed ({s})")
        });
        panic!("initdb {how}:\n{}{}", tail(&output, 0), self.reach_hint());
    }

    /// What to check when the unprivileged user could not work in the
    /// temporary directory.
    fn reach_hint(&self) -> String {
        self.owner.map_or(String::new(), |(uid, _)| {
            format!(
                "\n(as root, PostgreSQL runs as uid {uid}, which must be able to reach {}: \
                 point TMPDIR at a directory every user can enter, such as /tmp)",
                self.dir.path().display()
            )
        })
    }

    /// Starts the postmaster and waits until it takes connections; if it
    /// exits first, its log from this start.
    fn launch(&mut self) -> Result<(), String> {
        let log = self.log_path();
        let from = fs::metadata(&log).map_or(0, |m| m.len());
        let mut postgres = self.command("postgres", &log);
        postgres
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "shared_buffers=16MB", "-c", "max_connections=50"]);
        let server = postgres
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.join("postgres").display()));
        self.server = Some(server);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let server = self.server.as_mut().expect("the postmaster");
            if let Some(status) = server.try_wait().expect("look at the postmaster") {
                self.server = None;
                return Err(format!(
                    "postgres exited ({status}); its log:\n{}",
                    tail(&log, from)
                ));
            }
            let error = match self.config("postgres").connect(NoTls) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let _ = self.shutdown();
                panic!(
                    "PostgreSQL took no connection within {DEADLINE:?} (last: {error}); its log:\n{}",
                    tail(&log, from)
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Fast shutdown, waited for; past the deadline, a kill and an error.
    fn shutdown(&mut self) -> Result<(), String> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        signal(server.id(), libc::SIGINT);
        if wait_exit(server).is_some() {
            self.server = None;
            return Ok(());
        }
        let killed = match self.crash() {
            Ok(()) => "so it was killed".to_string(),
            Err(e) => format!("and the kill failed too: {e}"),
        };
        Err(format!(
            "PostgreSQL did not stop within {DEADLINE:?} of a fast shutdown, {killed}; its log:\n{}",
            tail(&self.log_path(), 0)
        ))
    }

    /// [`Postgres::kill`], with an error instead of a panic (for drop).
    fn crash(&mut self) -> Result<(), String> {
        let Some(mut server) = self.server.take() else {
            return Err("kill: PostgreSQL is not running".into());
        };
        let pid = server.id();
        // Stopped, the postmaster cannot start a child between the look
        // for its children and the kill. (Each child calls setsid, so a kill
        // of the process group would miss them.)
        signal(pid, libc::SIGSTOP);
        wait_until(|| {
            proc_stat(pid).is_none_or(|(state, _)| matches!(state, 'T' | 't' | 'Z' | 'X'))
        });
        let children = children_of(pid);
        for &child in &children {
            signal(child, libc::SIGKILL);
        }
        signal(pid, libc::SIGKILL);
        if wait_exit(&mut server).is_none() {
            return Err(format!(
                "the postmaster ({pid}) outlived SIGKILL by {DEADLINE:?}"
            ));
        }
        // Orphans now, they are reaped by someone else; a zombie holds no
        // shared memory, which is what the next start checks for.
        let gone = || {
            children
                .iter()
                .all(|&child| proc_stat(child).is_none_or(|(state, _)| matches!(state, 'Z' | 'X')))
        };
        if !wait_until(gone) {
            return Err(format!(
                "PostgreSQL's processes {children:?} outlived SIGKILL by {DEADLINE:?}"
            ));
        }
        Ok(())
    }
}

impl Drop for Postgres {
    /// Stops the server; the directory goes after it.
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("{e}");
        }
    }
}

/// The directory holding both initdb and postgres.
fn binaries() -> PathBuf {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = std::env::split_paths(&path).find(|dir| has_both(dir)) {
        return dir;
    }
    let version = |dir: &Path| -> Vec<u32> {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        name.split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    let installed = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten();
    let mut bins: Vec<PathBuf> = installed
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| has_both(bin))
        .collect();
    bins.sort_by_key(|bin| version(bin.parent().expect("a version directory")));
    bins.pop().unwrap_or_else(|| panic!("{NOT_INSTALLED}"))
}

/// As root, the user and group to run PostgreSQL as; otherwise none.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let found = ["postgres", "nobody"].into_iter().find_map(user_ids);
    Some(found.expect(
        "running as root, and there is neither a `postgres` nor a `nobody` user to run \
         PostgreSQL as (initdb and postgres refuse root): apt-get install postgresql creates `postgres`",
    ))
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).expect("a user name");
    // SAFETY: all-zero is a valid passwd (null pointers, zero ids);
    // getpwnam_r fills it, with its strings in `buf`, and sets `found`.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Polls `done` until it holds or [`DEADLINE`] passes; whether it held.
fn wait_until(done: impl FnMut() -> bool) -> bool {
    super::wait_until(DEADLINE, POLL, done)
}

/// The child's exit status, if it exits within [`DEADLINE`].
fn wait_exit(child: &mut Child) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(|| {
        status = child.try_wait().expect("look at a child process");
        status.is_some()
    });
    status
}

/// A process's state letter and parent, from /proc (Linux); None once it
/// is gone.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...", where comm may hold spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

fn children_of(parent: u32) -> Vec<u32> {
    let processes = fs::read_dir("/proc").into_iter().flatten().flatten();
    let pids = processes.filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|&pid| proc_stat(pid).is_some_and(|(_, ppid)| ppid == parent))
        .collect()
}

/// The last 40 lines of a log, from byte `from` on.
fn tail(log: &Path, from: u64) -> String {
    let text = fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// PostgreSQL stopped under a chat and started again. `sender` says lines
/// in `room` while it is down: each is taken (and acknowledged once it is
/// stored) until the server refuses one at once with "storage unavailable
/// ... try again" (the first is always taken: the server learns of the
/// outage by trying it). Once PostgreSQL is back, every taken line is
/// acknowledged and reaches each of `readers` in order, on whichever
/// server they are. Returns the lines taken and the one refused.
pub fn outage(
    pg: &mut Postgres,
    sender: &mut Client,
    room: u64,
    readers: &mut [&mut Client],
) -> (Vec<String>, String) {
    pg.stop();
    let mut taken = Vec::new();
    let mut refusal = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        assert!(
            Instant::now() < deadline,
            "no message was refused during the outage"
        );
        let text = format!("during the outage {n}");
        let id = say_later(sender, &text);
        let got = replies(sender, &[id], Duration::from_millis(200));
        match got.get(&id) {
            None => taken.push((id, text)),
            Some(Reply::Error {
                code: ErrorCode::Unavailable,
                message,
            }) => {
                refusal = Some((text, message.clone()));
                break;
            }
            Some(other) => panic!("during the outage: {other:?}"),
        }
    }
    let (refused, message) = refusal.expect("a refusal");
    println!(
        "{} messages taken and waiting, then refused: {message}",
        taken.len()
    );
    assert!(message.contains("storage unavailable") && message.contains("try again"));
    assert!(!taken.is_empty());

    pg.start_again();
    let ids: Vec<u32> = taken.iter().map(|(id, _)| *id).collect();
    let acked = replies(sender, &ids, Duration::from_secs(30));
    for (id, text) in &taken {
        assert_eq!(acked.get(id), Some(&Reply::Ok), "{text}");
    }
    for reader in readers {
        for (_, text) in &taken {
            reader.expect_said_within(room, &sender.name.clone(), text, Duration::from_secs(15));
        }
    }
    (taken.into_iter().map(|(_, text)| text).collect(), refused)
}

/// Sends `text` to the room without waiting for its reply; returns the
/// request id.
fn say_later(client: &mut Client, text: &str) -> u32 {
    client
        .conn
        .send(Request::Say {
            text: text.to_string(),
            client_id: 0,
        })
        .unwrap()
}

/// Collects replies to `ids` (and skips events) from `client` until all
/// came or `wait` ran out.
fn replies(client: &mut Client, ids: &[u32], wait: Duration) -> HashMap<u32, Reply> {
    let deadline = Instant::now() + wait;
    let mut got = HashMap::new();
    while got.len() < ids.len() && Instant::now() < deadline {
        match client.conn.next_frame(Duration::from_millis(100)) {
            Ok(Some(ServerFrame::Reply { id, result })) if ids.contains(&id) => {
                got.insert(id, result);
            }
            Ok(_) => {}
            Err(e) => panic!("{}: {e}", client.name),
        }
    }
    got
}
