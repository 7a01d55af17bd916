//! Helpers for the PTY tests: a real server on a thread of the test
//! process, and the real `chatapp` binary in a pseudo-terminal, its output
//! fed to a terminal emulator (vt100) so that a test can read the screen
//! as a person sees it, and to a transcript (the text without escape
//! sequences) that waits search like `expect` does.
//!
//! Every wait is bounded; a timeout fails the test with the screen and
//! the end of the transcript, so a failure says what the user saw.
#![allow(dead_code)]

use chatapp::server::{self, Config, Handle};
use chatapp::store::password::HashCost;
use rexpect::process::{PtyProcess, WaitStatus};
use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The longest one wait for text may take.
pub const WAIT: Duration = Duration::from_secs(10);
/// A password that passes the standard and contains no test user's name.
pub const PASSWORD: &str = "violet tractor anthem 1987";
pub const ROWS: u16 = 40;
pub const COLS: u16 = 120;

/// A server on 127.0.0.1 with a fresh data directory and cheap hashing.
pub struct Server {
    dir: TempDir,
    handle: Option<Handle>,
    /// How long a dropped member keeps their place, in ms.
    grace: i64,
    pub addr: SocketAddr,
    pub fingerprint: String,
}

impl Server {
    /// With no grace period: a dropped member leaves at once.
    pub fn start() -> Server {
        Server::start_with_grace(0)
    }

    /// With a grace period of `secs` seconds, as `serve --grace` gives.
    pub fn start_with_grace(secs: i64) -> Server {
        let dir = tempfile::tempdir().expect("a data directory");
        let grace = secs * 1000;
        let handle = start_on(dir.path(), "127.0.0.1:0".parse().unwrap(), grace);
        Server {
            addr: handle.addr,
            fingerprint: handle.fingerprint.clone(),
            dir,
            handle: Some(handle),
            grace,
        }
    }

    pub fn handle(&self) -> &Handle {
        self.handle.as_ref().expect("the server is running")
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Stops it as SIGTERM would: clients are told goodbye.
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop().expect("the server stops");
        }
    }

    /// Starts it again on the same address and data (so the same key).
    pub fn restart(&mut self) {
        self.stop();
        self.handle = Some(start_on(self.dir.path(), self.addr, self.grace));
    }
}

fn start_on(dir: &Path, addr: SocketAddr, grace: i64) -> Handle {
    let mut config = Config::new(dir.to_path_buf());
    config.hash_cost = HashCost::TEST;
    // As in the protocol tests' server: no grace period unless asked.
    config.limits.grace = grace;
    config.log_level = server::hub::Level::Error;
    server::start(addr, config).expect("the server starts")
}

/// A person's machine: the directory the client keeps its known servers in.
pub struct Home {
    dir: TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("a config directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn known_servers(&self) -> PathBuf {
        self.dir.path().join("known_servers")
    }

    /// The environment a client from this home runs with: no colour, a
    /// fixed time zone, and nothing inherited that would change its course.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatapp"));
        cmd.args(args);
        self.environment(&mut cmd);
        cmd
    }

    /// Gives `cmd` the environment of [`Home::command`]: for a client
    /// started through another program (`ip netns exec ... chatapp`).
    pub fn environment<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("CHATAPP_CONFIG_DIR", self.path())
            .env("NO_COLOR", "1")
            .env("TERM", "xterm-256color")
            .env("TZ", "UTC")
            .env("LANG", "C.UTF-8")
            .env_remove("CHATAPP_SERVER")
            .env_remove("CHATAPP_LOG")
    }
}

struct Output {
    screen: vt100::Parser,
    transcript: String,
    raw: Vec<u8>,
    /// Bytes of a UTF-8 character cut by a read.
    pending: Vec<u8>,
    strip: Strip,
    eof: bool,
}

struct Shared {
    output: Mutex<Output>,
    changed: Condvar,
}

/// The `chatapp` binary in a pseudo-terminal.
pub struct Client {
    pub name: String,
    process: PtyProcess,
    writer: File,
    shared: Arc<Shared>,
    /// How far into the transcript the waits have read.
    seen: usize,
}

impl Client {
    /// Starts `chatapp` with these arguments from `home`, in a terminal of
    /// [`ROWS`] by [`COLS`].
    pub fn spawn(name: &str, home: &Home, args: &[&str]) -> Client {
        Client::spawn_command(name, home.command(args))
    }

    /// Starts a prepared command in a terminal of [`ROWS`] by [`COLS`].
    pub fn spawn_command(name: &str, command: Command) -> Client {
        let mut process = PtyProcess::new(command).expect("spawn chatapp in a pty");
        process.set_kill_timeout(Some(2_000));
        let master = process.get_file_handle().expect("the pty");
        set_window_size(&master, ROWS, COLS);
        let writer = process.get_file_handle().expect("the pty");
        let shared = Arc::new(Shared {
            output: Mutex::new(Output {
                screen: vt100::Parser::new(
                    ROWS.try_into().expect("rows"),
                    COLS.try_into().expect("columns"),
                    1000,
                ),
                transcript: String::new(),
                raw: Vec::new(),
                pending: Vec::new(),
                strip: Strip::Text,
                eof: false,
            }),
            changed: Condvar::new(),
        });
        let reader = shared.clone();
        std::thread::spawn(move || read_all(master, &reader));
        Client {
            name: name.to_string(),
            process,
            writer,
            shared,
            seen: 0,
        }
    }

    /// `chatapp connect ADDR` from `home`.
    pub fn connect(name: &str, home: &Home, server: &Server) -> Client {
        Client::spawn(name, home, &["connect", &server.addr()])
    }

    pub fn send(&mut self, keys: &str) {
        self.writer
            .write_all(keys.as_bytes())
            .and_then(|()| self.writer.flush())
            .unwrap_or_else(|e| panic!("{}: typing {keys:?}: {e}", self.name));
    }

    /// Types a line and Enter.
    pub fn line(&mut self, text: &str) {
        self.send(&format!("{text}\r"));
    }

    pub fn arrow_down(&mut self) {
        self.send("\x1b[B");
    }

    /// Waits until `needle` appears in the output after what earlier waits
    /// consumed; returns the text up to and including it.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_within(needle, WAIT)
    }

    /// [`Client::expect`] with a wait of its own, for what is due later
    /// than [`WAIT`] (a timeout of the program's).
    pub fn expect_within(&mut self, needle: &str, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        let mut out = self.shared.output.lock().unwrap();
        loop {
            if let Some(at) = out.transcript[self.seen..].find(needle) {
                let end = self.seen + at + needle.len();
                let got = out.transcript[self.seen..end].to_string();
                self.seen = end;
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if out.eof || left.is_zero() {
                let why = if out.eof {
                    "the program ended"
                } else {
                    "timed out"
                };
                panic!(
                    "{}: {why} waiting for {needle:?}\n--- screen ---\n{}\n--- output since the last match ---\n{}",
                    self.name,
                    out.screen.screen().contents(),
                    &out.transcript[self.seen..]
                );
            }
            out = self.shared.changed.wait_timeout(out, left).unwrap().0;
        }
    }

    /// The text between `before` and the next `after`, both waited for.
    pub fn capture(&mut self, before: &str, after: &str) -> String {
        self.expect(before);
        let got = self.expect(after);
        got[..got.len() - after.len()].to_string()
    }

    /// Everything printed so far, without escape sequences.
    pub fn transcript(&self) -> String {
        self.shared.output.lock().unwrap().transcript.clone()
    }

    /// Everything printed so far, as bytes.
    pub fn raw(&self) -> Vec<u8> {
        self.shared.output.lock().unwrap().raw.clone()
    }

    /// The visible screen, one row a line, trailing blanks trimmed.
    pub fn screen(&self) -> String {
        self.shared
            .output
            .lock()
            .unwrap()
            .screen
            .screen()
            .contents()
    }

    /// Waits until the screen's rows and cursor (row, column) satisfy
    /// `ready` (the terminal may still be drawing what a matched text
    /// began), and returns them; fails with the screen after [`WAIT`].
    pub fn wait_screen(
        &self,
        what: &str,
        ready: impl Fn(&[String], (u16, u16)) -> bool,
    ) -> (Vec<String>, (u16, u16)) {
        let deadline = Instant::now() + WAIT;
        let mut out = self.shared.output.lock().unwrap();
        loop {
            let screen = out.screen.screen();
            let rows: Vec<String> = screen.rows(0, COLS).collect();
            let cursor = screen.cursor_position();
            if ready(&rows, cursor) {
                return (rows, cursor);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if out.eof || left.is_zero() {
                panic!(
                    "{}: the screen never showed {what}:\n{}",
                    self.name,
                    screen.contents()
                );
            }
            out = self.shared.changed.wait_timeout(out, left).unwrap().0;
        }
    }

    /// The screen's rows and the cursor's (row, column).
    pub fn rows_and_cursor(&self) -> (Vec<String>, (u16, u16)) {
        let out = self.shared.output.lock().unwrap();
        let screen = out.screen.screen();
        let rows = screen.rows(0, COLS).collect();
        (rows, screen.cursor_position())
    }

    /// Waits for the program to end; its exit code (128 + n for signal n).
    pub fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        {
            let mut out = self.shared.output.lock().unwrap();
            while !out.eof {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "{}: still running\n--- screen ---\n{}",
                    self.name,
                    out.screen.screen().contents()
                );
                out = self.shared.changed.wait_timeout(out, left).unwrap().0;
            }
        }
        // The terminal closed, so the process is exiting or has exited.
        match self.process.wait().expect("wait for chatapp") {
            WaitStatus::Exited(_, code) => code,
            WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
            other => panic!("{}: unexpected status {other:?}", self.name),
        }
    }
}

fn read_all(mut master: File, shared: &Shared) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match master.read(&mut buf) {
            Ok(0) | Err(_) => 0, // EIO once the program's side is closed
            Ok(n) => n,
        };
        // A test that failed while holding the lock poisoned it; the
        // output is still good to read.
        let mut out = shared.output.lock().unwrap_or_else(|e| e.into_inner());
        if n == 0 {
            out.eof = true;
            shared.changed.notify_all();
            return;
        }
        let bytes = &buf[..n];
        out.raw.extend_from_slice(bytes);
        out.screen.process(bytes);
        out.pending.extend_from_slice(bytes);
        let pending = std::mem::take(&mut out.pending);
        let (text, rest) = match std::str::from_utf8(&pending) {
            Ok(s) => (s.to_string(), Vec::new()),
            Err(e) if e.error_len().is_none() => (
                String::from_utf8_lossy(&pending[..e.valid_up_to()]).into_owned(),
                pending[e.valid_up_to()..].to_vec(),
            ),
            Err(_) => (String::from_utf8_lossy(&pending).into_owned(), Vec::new()),
        };
        out.pending = rest;
        let mut strip = out.strip;
        let mut plain = String::with_capacity(text.len());
        for c in text.chars() {
            strip = strip.feed(c, &mut plain);
        }
        out.strip = strip;
        out.transcript.push_str(&plain);
        shared.changed.notify_all();
    }
}

/// Removes escape sequences (CSI, OSC, two-character ones) and carriage
/// returns from terminal output, keeping the text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strip {
    Text,
    Escape,
    Csi,
    Osc,
    OscEscape,
}

impl Strip {
    fn feed(self, c: char, out: &mut String) -> Strip {
        match (self, c) {
            (Strip::Text, '\x1b') => Strip::Escape,
            (Strip::Text, '\r') => Strip::Text,
            (Strip::Text, c) => {
                out.push(c);
                Strip::Text
            }
            (Strip::Escape, '[') => Strip::Csi,
            (Strip::Escape, ']') => Strip::Osc,
            (Strip::Escape, _) => Strip::Text,
            (Strip::Csi, '\x40'..='\x7e') => Strip::Text,
            (Strip::Csi, _) => Strip::Csi,
            (Strip::Osc, '\x07') => Strip::Text,
            (Strip::Osc, '\x1b') => Strip::OscEscape,
            (Strip::Osc, _) => Strip::Osc,
            (Strip::OscEscape, _) => Strip::Text,
        }
    }
}

fn set_window_size(pty: &File, rows: u16, cols: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    let rc = unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    assert_eq!(rc, 0, "set the terminal size");
}

// ---- what a person does, step by step ----

/// Answers the first-contact question with yes.
pub fn trust(c: &mut Client) {
    c.expect("Trust this server?");
    c.send("y");
    c.expect("Connected to");
}

/// From the start menu: creates an account and waits for the main menu.
pub fn register(c: &mut Client, name: &str) {
    c.expect("What would you like to do?");
    c.arrow_down();
    c.send("\r");
    c.expect("Leave the name empty to go back.");
    c.expect("User name");
    c.line(name);
    c.expect("Password (hidden):");
    c.line(PASSWORD);
    c.expect("Password again (hidden):");
    c.line(PASSWORD);
    c.expect("your account is ready");
    main_menu(c, name);
}

/// From the start menu: logs in and waits for the main menu.
pub fn log_in(c: &mut Client, name: &str) {
    c.expect("What would you like to do?");
    c.send("\r");
    c.expect("User name");
    c.line(name);
    c.expect("Password (hidden):");
    c.line(PASSWORD);
    c.expect(&format!("Welcome back, {name}."));
}

/// Waits for the main menu, fully drawn.
pub fn main_menu(c: &mut Client, name: &str) {
    c.expect(&format!("Main menu · logged in as {name}"));
    c.expect("-in opens your private chats");
}

/// A new user on a new machine: connects, trusts, registers.
pub fn newcomer(name: &str, server: &Server) -> (Client, Home) {
    let home = Home::new();
    let mut c = Client::connect(name, &home, server);
    trust(&mut c);
    register(&mut c, name);
    (c, home)
}

/// From the main menu: creates a room; returns its number.
pub fn create_room(c: &mut Client, room: &str) -> String {
    c.line("1");
    c.expect("Room name: ");
    c.line(room);
    c.expect("Most participants");
    c.line("");
    let id = c.capture(&format!("Welcome to {room} (#"), ")");
    c.expect("No messages yet: say hello.");
    id
}

/// From the main menu: joins a room by its number; returns the top of the
/// room screen, from the welcome to the list of commands.
pub fn join_room(c: &mut Client, room: &str, id: &str) -> String {
    c.line("2");
    c.expect("Room number");
    c.line(&format!("#{id}"));
    let welcome = format!("Welcome to {room} (#{id})");
    c.expect(&welcome);
    let rest = c.expect("Commands: /q leave");
    format!("{welcome}{rest}")
}

/// Waits for a chat line `[HH:MM] from: text` and checks its time stamp.
pub fn expect_message(c: &mut Client, from: &str, text: &str) {
    let line = format!("{from}: {text}");
    let got = c.expect(&line);
    let before = &got[..got.len() - line.len()];
    let stamp: Vec<char> = before.chars().rev().take(8).collect::<Vec<_>>();
    let stamp: String = stamp.into_iter().rev().collect();
    let ok = stamp.len() == 8
        && stamp.starts_with('[')
        && stamp.ends_with("] ")
        && stamp[1..3].chars().all(|c| c.is_ascii_digit())
        && &stamp[3..4] == ":"
        && stamp[4..6].chars().all(|c| c.is_ascii_digit());
    assert!(
        ok,
        "{}: {line:?} should follow a [HH:MM] time, but follows {stamp:?}",
        c.name
    );
}

/// Makes an account without a terminal, through the protocol (someone who
/// registered earlier and is offline now).
pub fn account(server: &Server, name: &str) {
    use chatapp::client::proto;
    use chatapp::wire::msg::{Reply, Request};
    let mut conn = proto::connect(&server.addr()).expect("connect").accept();
    let reply = conn
        .request_within(
            Request::Register {
                name: name.to_string(),
                password: PASSWORD.to_string(),
            },
            WAIT,
        )
        .expect("register");
    assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
}
