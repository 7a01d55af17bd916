//! Shared helpers for the integration tests: a real server on 127.0.0.1:0
//! with a fresh data directory and the cheap test scrypt cost, clients that
//! speak the real protocol to it, and waits that are always bounded.
//!
//! `pty` drives the real client in a pseudo-terminal; `lossyfs` is the
//! file system that loses unsynced writes, for the power-loss test;
//! `postgres` is a real PostgreSQL server of a test's own.
//! `redis` is a real Redis server of a test's own.
#![allow(dead_code)]

#[cfg(target_os = "linux")]
pub mod haproxy;
pub mod lossyfs;
pub mod postgres;
pub mod pty;
pub mod redis;
pub mod talker;

use chatapp::client::proto::{self, Connection};
use chatapp::server::{self, Config, Handle};
use chatapp::store::password::HashCost;
use chatapp::wire::msg::{
    Conversation, ErrorCode, Event, LeaveReason, PrivateLine, Reply, Request, RoomInfo, RoomLine,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

/// A password every test account uses: long enough, not common, and
/// containing none of the test user names.
pub const PASSWORD: &str = "violet tractor anthem 1987";
/// The longest any single wait for a reply or an event may take.
pub const WAIT: Duration = Duration::from_secs(5);
/// The longest a register or log-in may take: it waits for scrypt, which at
/// the real cost (a few tests use it) takes seconds of a worker's time on a
/// loaded machine, and [`WAIT`] was seen to run out there.
pub const HASH_WAIT: Duration = Duration::from_secs(30);
/// How long a client must stay silent to count as having received nothing.
/// Only used after a positive event proved the server already acted.
pub const QUIET: Duration = Duration::from_millis(300);

/// A server running on a thread of the test process, on a data directory
/// that outlives restarts and is deleted at the end of the test.
pub struct TestServer {
    dir: TempDir,
    handle: Option<Handle>,
    /// What the test changed in the config, applied again on a restart.
    tune: Box<dyn Fn(&mut Config) + Send + Sync>,
    /// Where the last start listened.
    last_addr: std::net::SocketAddr,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// Starts with the test cost, after `tune` had its say on the config.
    pub fn start_with(tune: impl Fn(&mut Config) + Send + Sync + 'static) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let handle = start_on(dir.path(), &tune);
        TestServer {
            dir,
            last_addr: handle.addr,
            handle: Some(handle),
            tune: Box::new(tune),
        }
    }

    /// Another server of the same deployment as `peer`: a data directory
    /// of its own holding a copy of `peer`'s key (as an operator copies
    /// `server.key`), so a client's pinned key holds on either.
    pub fn start_beside(
        peer: &TestServer,
        tune: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        std::fs::copy(
            peer.data_dir().join(server::KEY_FILE),
            dir.path().join(server::KEY_FILE),
        )
        .expect("copy the server key");
        let handle = start_on(dir.path(), &tune);
        TestServer {
            dir,
            last_addr: handle.addr,
            handle: Some(handle),
            tune: Box::new(tune),
        }
    }

    pub fn handle(&self) -> &Handle {
        self.handle.as_ref().expect("the server is running")
    }

    pub fn addr(&self) -> String {
        self.handle().addr.to_string()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join(server::DATABASE_FILE)
    }

    /// Stops the server as SIGTERM would; every acknowledged write is
    /// committed when this returns.
    pub fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop().expect("the server stops cleanly");
        }
    }

    /// Stops the server and starts a new one on the same data directory,
    /// with the same changes to its config.
    pub fn restart(&mut self) {
        self.stop();
        let handle = start_on(self.dir.path(), &self.tune);
        self.last_addr = handle.addr;
        self.handle = Some(handle);
    }

    /// Stops the server if it runs, and starts it again on the address it
    /// last had, as a node behind a load balancer comes back where the
    /// balancer looks for it.
    pub fn restart_in_place(&mut self) {
        self.stop();
        self.handle = Some(start_at(self.dir.path(), self.last_addr, &self.tune));
    }

    /// A new connection, handshake done and the key checked against the
    /// one the server announced.
    pub fn connect(&self) -> Connection {
        self.connect_via(&self.addr())
    }

    /// A new connection to `addr` (a load balancer in front of this
    /// server), its key checked against this server's.
    pub fn connect_via(&self, addr: &str) -> Connection {
        let unverified = proto::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        assert_eq!(
            unverified.fingerprint(),
            self.handle().fingerprint,
            "the handshake shows the server's key"
        );
        unverified.accept()
    }

    /// A connected client that has not logged in; `name` is only a label
    /// until it registers or logs in.
    pub fn anonymous(&self, name: &str) -> Client {
        Client {
            name: name.to_string(),
            conn: self.connect(),
        }
    }

    /// A new account, logged in (registering logs in).
    pub fn register(&self, name: &str) -> Client {
        let mut client = self.anonymous(name);
        client.register();
        client
    }

    /// [`TestServer::register`], with the resume token it was given.
    pub fn register_with_token(&self, name: &str) -> (Client, String) {
        let mut client = self.anonymous(name);
        let token = client.register();
        (client, token)
    }

    /// Logs in to an existing account; returns the client and its unread count.
    pub fn login(&self, name: &str) -> (Client, u32) {
        let mut client = self.anonymous(name);
        let unread = client.login();
        (client, unread)
    }

    /// Creates a room administered by `admin` and has `members` join it in
    /// order. Every reply and every `joined` announcement is checked and
    /// consumed, so the clients come back with nothing pending. The first
    /// client is the admin.
    pub fn room_with(&self, admin: &str, members: &[&str], capacity: u32) -> (u64, Vec<Client>) {
        let mut clients = vec![self.register(admin)];
        let room = clients[0].create_room(&format!("{admin}'s room"), capacity);
        for name in members {
            let mut member = self.register(name);
            let (info, names, history) = member.join(room);
            assert_eq!(info.admin, admin);
            let mut expected: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
            expected.push(name);
            assert_eq!(names, expected, "members listed in joining order");
            assert_eq!(history, Vec::new());
            for other in &mut clients {
                other.expect_event(&Event::Joined {
                    room,
                    name: name.to_string(),
                });
            }
            clients.push(member);
        }
        (room, clients)
    }
}

fn start_on(dir: &Path, tune: &dyn Fn(&mut Config)) -> Handle {
    start_at(dir, "127.0.0.1:0".parse().unwrap(), tune)
}

fn start_at(dir: &Path, addr: std::net::SocketAddr, tune: &dyn Fn(&mut Config)) -> Handle {
    let mut config = Config::new(dir.to_path_buf());
    config.hash_cost = HashCost::TEST;
    // A dropped member leaves at once, as after the grace period: tests of
    // the grace period itself give it a length.
    config.limits.grace = 0;
    tune(&mut config);
    server::start(addr, config).expect("the server starts")
}

/// A server on `[::]:0`: clients from 127.0.0.1 and from ::1 come from two
/// different addresses, so per-account and per-address throttling can be
/// told apart.
pub fn dual_stack(tune: impl Fn(&mut Config)) -> Option<(tempfile::TempDir, Handle)> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().to_path_buf());
    config.hash_cost = HashCost::TEST;
    tune(&mut config);
    let handle = require(
        server::start("[::]:0".parse().unwrap(), config),
        "IPv6 (a listener on [::]:0)",
    )?;
    Some((dir, handle))
}

pub fn client_at(handle: &Handle, host: &str, name: &str) -> Client {
    let addr = format!("{host}:{}", handle.addr.port());
    let unverified = proto::connect(&addr).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(unverified.fingerprint(), handle.fingerprint);
    Client {
        name: name.to_string(),
        conn: unverified.accept(),
    }
}

/// A `logged_in` reply as tests compare it: its token, random, checked to
/// be 64 lowercase hex characters and then blanked, and the server's
/// number among several dropped (tests that care read it from the reply
/// itself). Other replies as they are.
pub fn tokenless(reply: Reply) -> Reply {
    match reply {
        Reply::LoggedIn {
            name,
            unread,
            token,
            ..
        } => {
            assert!(is_token(&token), "a resume token: {token:?}");
            Reply::LoggedIn {
                name,
                unread,
                token: String::new(),
                node: None,
            }
        }
        other => other,
    }
}

/// `logged_in` as [`tokenless`] leaves it.
pub fn logged_in(name: &str, unread: u32) -> Reply {
    Reply::LoggedIn {
        name: name.to_string(),
        unread,
        token: String::new(),
        node: None,
    }
}

/// The token of a `logged_in` reply (empty for any other reply).
pub fn token_of(reply: &Reply) -> String {
    match reply {
        Reply::LoggedIn { token, .. } => token.clone(),
        _ => String::new(),
    }
}

/// Whether `token` looks as the server makes them: 64 lowercase hex
/// characters.
pub fn is_token(token: &str) -> bool {
    token.len() == 64
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Opens a database file read-only, as an operator inspecting it would.
pub fn open_db(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()))
}

/// One user's connection, with assertions that name the user when they fail.
pub struct Client {
    pub name: String,
    pub conn: Connection,
}

impl Client {
    /// Sends a request and returns its reply (within [`WAIT`], or
    /// [`HASH_WAIT`] for a request that hashes a password).
    pub fn request(&mut self, req: Request) -> Reply {
        let shown = format!("{req:?}");
        let wait = match req {
            Request::Register { .. } | Request::Login { .. } => HASH_WAIT,
            _ => WAIT,
        };
        self.conn
            .request_within(req, wait)
            .unwrap_or_else(|e| panic!("{}: {shown}: {e}", self.name))
    }

    /// The request must be answered with `Ok`.
    pub fn ok(&mut self, req: Request) {
        let shown = format!("{req:?}");
        let reply = self.request(req);
        assert_eq!(reply, Reply::Ok, "{}: {shown}", self.name);
    }

    /// The request must be refused with `code`; returns the message.
    pub fn refused(&mut self, req: Request, code: ErrorCode) -> String {
        let shown = format!("{req:?}");
        match self.request(req) {
            Reply::Error { code: got, message } => {
                assert_eq!(got, code, "{}: {shown} refused with {message:?}", self.name);
                assert!(!message.trim().is_empty(), "an error says why");
                message
            }
            other => panic!(
                "{}: {shown}: expected a {code:?} error, got {other:?}",
                self.name
            ),
        }
    }

    /// Registers with [`PASSWORD`]; returns the resume token.
    pub fn register(&mut self) -> String {
        let req = Request::Register {
            name: self.name.clone(),
            password: PASSWORD.to_string(),
        };
        let reply = self.request(req);
        let token = token_of(&reply);
        assert_eq!(
            tokenless(reply),
            logged_in(&self.name, 0),
            "{} registers",
            self.name
        );
        token
    }

    /// Logs in with [`PASSWORD`]; returns the unread count.
    pub fn login(&mut self) -> u32 {
        self.login_with_token().0
    }

    /// Logs in with [`PASSWORD`]; returns the unread count and the resume
    /// token.
    pub fn login_with_token(&mut self) -> (u32, String) {
        let req = Request::Login {
            name: self.name.clone(),
            password: PASSWORD.to_string(),
        };
        let reply = self.request(req);
        let token = token_of(&reply);
        match reply {
            Reply::LoggedIn { name, unread, .. } => {
                assert_eq!(name, self.name);
                (unread, token)
            }
            other => panic!("{} logs in: {other:?}", self.name),
        }
    }

    /// Resumes with a token; returns the reply.
    pub fn resume(&mut self, token: &str) -> Reply {
        self.request(Request::Resume {
            token: token.to_string(),
        })
    }

    /// Creates a room and checks the reply; returns its id.
    pub fn create_room(&mut self, name: &str, capacity: u32) -> u64 {
        let req = Request::CreateRoom {
            name: name.to_string(),
            capacity,
        };
        match self.request(req) {
            Reply::Room {
                room,
                members,
                history,
            } => {
                assert_eq!(room.name, name);
                assert_eq!(room.admin, self.name, "the creator is the admin");
                assert_eq!(room.capacity, capacity);
                assert_eq!(
                    members,
                    vec![self.name.clone()],
                    "the admin is the only member"
                );
                assert_eq!(history, Vec::new());
                room.id
            }
            other => panic!("{} creates room {name:?}: {other:?}", self.name),
        }
    }

    /// Joins a room; returns what the reply says about it.
    pub fn join(&mut self, room: u64) -> (RoomInfo, Vec<String>, Vec<RoomLine>) {
        match self.request(Request::JoinRoom { room }) {
            Reply::Room {
                room: info,
                members,
                history,
            } => {
                assert_eq!(info.id, room);
                (info, members, history)
            }
            other => panic!("{} joins #{room}: {other:?}", self.name),
        }
    }

    /// Says `text` in the current room; the server acknowledges it stored it.
    pub fn say(&mut self, text: &str) {
        self.ok(Request::Say {
            text: text.to_string(),
            client_id: 0,
        });
    }

    pub fn send_private(&mut self, to: &str, text: &str) {
        self.ok(Request::SendPrivate {
            to: to.to_string(),
            text: text.to_string(),
            client_id: 0,
        });
    }

    pub fn inbox(&mut self) -> Vec<Conversation> {
        match self.request(Request::Inbox) {
            Reply::Inbox { conversations } => conversations,
            other => panic!("{}: inbox: {other:?}", self.name),
        }
    }

    /// Opens the dialogue with `with`; returns its history.
    pub fn open_dialogue(&mut self, with: &str) -> Vec<PrivateLine> {
        let req = Request::OpenDialogue {
            with: with.to_string(),
        };
        match self.request(req) {
            Reply::Dialogue { with: got, history } => {
                assert_eq!(got, with);
                history
            }
            other => panic!("{}: open the dialogue with {with}: {other:?}", self.name),
        }
    }

    /// The next event, which must come within [`WAIT`].
    pub fn next_event(&mut self) -> Event {
        match self.conn.next_event(Some(WAIT)) {
            Ok(Some(event)) => event,
            Ok(None) => panic!("{}: no event within {WAIT:?}", self.name),
            Err(e) => panic!("{}: waiting for an event: {e}", self.name),
        }
    }

    /// The next event must be exactly `expected`.
    pub fn expect_event(&mut self, expected: &Event) {
        let got = self.next_event();
        assert_eq!(&got, expected, "{}: the next event", self.name);
    }

    /// The next event must be a room message from `from` saying `text`.
    pub fn expect_said(&mut self, room: u64, from: &str, text: &str) -> RoomLine {
        self.expect_said_within(room, from, text, WAIT)
    }

    /// [`Client::expect_said`], for a message that may take up to `within`.
    pub fn expect_said_within(
        &mut self,
        room: u64,
        from: &str,
        text: &str,
        within: Duration,
    ) -> RoomLine {
        let event = match self.conn.next_event(Some(within)) {
            Ok(Some(event)) => event,
            Ok(None) => panic!("{}: no {text:?} within {within:?}", self.name),
            Err(e) => panic!("{}: waiting for {text:?}: {e}", self.name),
        };
        match event {
            Event::RoomMessage { room: got, line } => {
                assert_eq!(
                    (got, &*line.from, &*line.text),
                    (room, from, text),
                    "{}: the next room message",
                    self.name
                );
                line
            }
            other => panic!(
                "{}: expected {from}'s {text:?} in #{room}, got {other:?}",
                self.name
            ),
        }
    }

    /// The next event must be a private message `from` -> `to` saying `text`.
    pub fn expect_private(&mut self, from: &str, to: &str, text: &str) -> PrivateLine {
        match self.next_event() {
            Event::PrivateMessage { line } => {
                assert_eq!(
                    (&*line.from, &*line.to, &*line.text),
                    (from, to, text),
                    "{}: the next private message",
                    self.name
                );
                line
            }
            other => panic!(
                "{}: expected {from}'s private {text:?}, got {other:?}",
                self.name
            ),
        }
    }

    /// Skips events until `pick` accepts one (all within [`WAIT`] in total).
    pub fn wait_for<T>(&mut self, what: &str, pick: impl FnMut(&Event) -> Option<T>) -> T {
        self.wait_for_within(what, WAIT, pick)
    }

    /// [`Client::wait_for`], within `wait` in total.
    pub fn wait_for_within<T>(
        &mut self,
        what: &str,
        wait: Duration,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.conn.next_event(Some(left)) {
                Ok(Some(event)) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Ok(None) => panic!("{}: no {what} within {wait:?}", self.name),
                Err(e) => panic!("{}: waiting for {what}: {e}", self.name),
            }
        }
    }

    /// Nothing may arrive for [`QUIET`].
    pub fn expect_quiet(&mut self) {
        match self.conn.next_event(Some(QUIET)) {
            Ok(None) => {}
            Ok(Some(event)) => panic!("{}: expected nothing, got {event:?}", self.name),
            Err(e) => panic!("{}: expected nothing, got an error: {e}", self.name),
        }
    }
}

/// A `left` announcement, for comparing with [`Client::expect_event`].
pub fn left(room: u64, name: &str, reason: LeaveReason) -> Event {
    Event::Left {
        room,
        name: name.to_string(),
        reason,
    }
}

// ---- helpers for the hardening tests (limits, floods, slow clients) ----

/// Shortens the server's deadlines as `chatapp serve`'s hidden flags do,
/// sweep included: the same code path, smaller numbers (milliseconds).
pub fn shorten(config: &mut Config, login_timeout: i64, idle_ping: i64, idle_close: i64) {
    config.limits = config
        .limits
        .clone()
        .with_deadlines(login_timeout, idle_ping, idle_close);
}

/// What a [`RawClient`] read.
#[derive(Debug, PartialEq)]
pub enum Got {
    Frame(chatapp::wire::msg::ServerFrame),
    /// The server closed the connection (or reset it).
    Closed,
    /// Nothing within the wait.
    Nothing,
}

/// A client on a hand-made Noise channel that does only what it is told:
/// unlike [`proto`], it never answers a ping, so it can play a silent or a
/// slow client while every frame it is sent stays visible.
pub struct RawClient {
    pub stream: std::net::TcpStream,
    transport: chatapp::wire::noise::Transport,
    /// The fingerprint the handshake reported, and the key it came from.
    pub fingerprint: String,
    pub server_key: [u8; chatapp::wire::noise::KEY_LEN],
    inbox: Vec<u8>,
    /// Frames decrypted and not yet read (the server packs several in one).
    frames: std::collections::VecDeque<chatapp::wire::msg::ServerFrame>,
    next_id: u32,
    /// Events seen while waiting for a reply.
    pub events: Vec<Event>,
}

impl RawClient {
    pub fn open(addr: &str) -> RawClient {
        RawClient::over(std::net::TcpStream::connect(addr).expect("a TCP connection"))
    }

    /// The handshake over a connection the caller made.
    pub fn over(mut stream: std::net::TcpStream) -> RawClient {
        use chatapp::wire::{frame, noise::ClientHandshake};
        use std::io::Write;
        let _ = stream.set_nodelay(true);
        let (hs, first) = ClientHandshake::start();
        let mut out = Vec::new();
        frame::push(&mut out, &first);
        stream.write_all(&out).expect("send the handshake");
        let mut inbox = Vec::new();
        let reply = match read_raw_frame(&mut stream, &mut inbox, WAIT) {
            Ok(Some(body)) => body,
            other => panic!("the handshake reply: {other:?}"),
        };
        let pending = hs.finish(&reply).expect("the handshake completes");
        RawClient {
            stream,
            fingerprint: pending.fingerprint(),
            server_key: *pending.server_key(),
            transport: pending.accept(),
            inbox,
            frames: Default::default(),
            next_id: 1,
            events: Vec::new(),
        }
    }

    pub fn send(&mut self, req: Request) -> u32 {
        use std::io::Write;
        let mut out = Vec::new();
        let id = self.seal(req, &mut out);
        self.stream.write_all(&out).expect("send a request");
        id
    }

    /// Seals a request into `out` without sending it (to be written later,
    /// from another thread, by a caller that reads meanwhile); its id.
    pub fn seal(&mut self, req: Request, out: &mut Vec<u8>) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        let plain = chatapp::wire::msg::encode(&chatapp::wire::msg::ClientFrame { id, req })
            .expect("encode a request");
        self.transport.seal_into(&plain, out).expect("seal");
        id
    }

    /// The next frame, waiting up to `wait`.
    pub fn read(&mut self, wait: Duration) -> Got {
        use chatapp::wire::msg;
        if let Some(frame) = self.frames.pop_front() {
            return Got::Frame(frame);
        }
        match read_raw_frame(&mut self.stream, &mut self.inbox, wait) {
            Ok(Some(body)) => {
                let mut plain = Vec::new();
                self.transport
                    .open_into(&body, &mut plain)
                    .expect("a frame from the server decrypts");
                for frame in msg::decode_each(&plain) {
                    self.frames.push_back(frame.expect("whole server frames"));
                }
                match self.frames.pop_front() {
                    Some(frame) => Got::Frame(frame),
                    None => panic!("an empty frame from the server"),
                }
            }
            Ok(None) => Got::Closed,
            Err(()) => Got::Nothing,
        }
    }

    /// The messages of the next transport frame, as the server packed
    /// them (nothing may be left over from an earlier one).
    pub fn read_packed(&mut self, wait: Duration) -> Vec<chatapp::wire::msg::ServerFrame> {
        assert!(
            self.frames.is_empty(),
            "messages left from an earlier frame"
        );
        match self.read(wait) {
            Got::Frame(first) => std::iter::once(first)
                .chain(self.frames.drain(..))
                .collect(),
            other => panic!("waiting for a frame: {other:?}"),
        }
    }

    /// Sends `req` and returns its reply, keeping events in `self.events`.
    pub fn request(&mut self, req: Request) -> Reply {
        let id = self.send(req);
        self.await_reply(id, true)
    }

    /// The replies to the requests `ids`, in that order, whatever order
    /// they come in; events are kept in `self.events`.
    pub fn replies(&mut self, ids: &[u32]) -> Vec<Reply> {
        use chatapp::wire::msg::ServerFrame;
        let mut got: Vec<Option<Reply>> = vec![None; ids.len()];
        let deadline = std::time::Instant::now() + WAIT;
        while got.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.read(left) {
                Got::Frame(ServerFrame::Reply { id, result }) => {
                    match ids.iter().position(|&i| i == id) {
                        Some(at) => got[at] = Some(result),
                        None => panic!("a reply to request {id}, not one of {ids:?}"),
                    }
                }
                Got::Frame(ServerFrame::Event { event }) => self.events.push(event),
                other => panic!("waiting for the replies to requests {ids:?}: {other:?}"),
            }
        }
        got.into_iter().map(|r| r.expect("every reply")).collect()
    }

    /// The reply to request `id`, keeping events in `self.events`; a reply
    /// to any other request is a failure (only `id` is outstanding).
    pub fn reply_to(&mut self, id: u32) -> Reply {
        self.await_reply(id, false)
    }

    fn await_reply(&mut self, id: u32, other_replies: bool) -> Reply {
        use chatapp::wire::msg::ServerFrame;
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.read(left) {
                Got::Frame(ServerFrame::Reply { id: got, result }) if got == id => return result,
                Got::Frame(ServerFrame::Reply { .. }) if other_replies => {}
                Got::Frame(ServerFrame::Event { event }) => self.events.push(event),
                other => panic!("waiting for the reply to request {id}: {other:?}"),
            }
        }
    }

    /// Seals a plaintext made by hand and sends it as one frame.
    pub fn send_plaintext(&mut self, plaintext: &[u8]) {
        use std::io::Write;
        let mut out = Vec::new();
        self.seal_plaintext(plaintext, &mut out);
        self.stream.write_all(&out).expect("send a frame");
    }

    /// The next message from the server, or `None` once it closed; a
    /// failure if neither comes within [`WAIT`].
    pub fn next_or_closed(&mut self) -> Option<chatapp::wire::msg::ServerFrame> {
        match self.read(WAIT) {
            Got::Frame(frame) => Some(frame),
            Got::Closed => None,
            Got::Nothing => panic!("neither a frame nor the close within {WAIT:?}"),
        }
    }
}

/// Writes as much of `bytes` as the server takes: it may close the
/// connection before reading them all, which is its right.
pub fn write_ignoring_close(stream: &mut std::net::TcpStream, bytes: &[u8]) {
    use std::io::{ErrorKind, Write};
    if let Err(e) = stream.write_all(bytes) {
        assert!(
            matches!(
                e.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ),
            "writing failed oddly: {e}"
        );
    }
}

/// One frame body: `Ok(None)` once the peer closed, `Err(())` when nothing
/// whole came within `wait` (a partial frame stays in `inbox`).
fn read_raw_frame(
    stream: &mut std::net::TcpStream,
    inbox: &mut Vec<u8>,
    wait: Duration,
) -> Result<Option<Vec<u8>>, ()> {
    use chatapp::wire::frame;
    use std::io::{ErrorKind, Read};
    let deadline = std::time::Instant::now() + wait;
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some((body, used)) = frame::parse(inbox) {
            let body = body.to_vec();
            inbox.drain(..used);
            return Ok(Some(body));
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => inbox.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return Ok(None);
            }
            Err(e) => panic!("reading a frame: {e}"),
        }
    }
}

/// Waits until the server closes `stream` (EOF or reset), reading and
/// discarding whatever it sends; `None` if it is still open after `wait`.
pub fn wait_closed(stream: &mut std::net::TcpStream, wait: Duration) -> Option<std::time::Instant> {
    use std::io::{ErrorKind, Read};
    let deadline = std::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(std::time::Instant::now()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Some(std::time::Instant::now()),
        }
    }
}

/// The `p`-th percentile (0 to 100) of `samples`, sorting them.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Milliseconds with a fraction, for printing durations.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A process's resident memory in KiB, from `/proc/<pid>/status`.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `chatapp serve`, the real binary, started from `command` (which must
/// print the "listening on ADDR" line); killed when dropped.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub addr: String,
    pub fingerprint: String,
    /// Everything it logs, when started with [`ServeProcess::spawn_logged`].
    pub stderr: Option<std::thread::JoinHandle<String>>,
}

impl ServeProcess {
    /// The binary's path, for building the command.
    pub fn binary() -> &'static str {
        env!("CARGO_BIN_EXE_chatapp")
    }

    /// Spawns `command` and waits (up to 30 s) for its listening line.
    pub fn spawn(command: std::process::Command) -> ServeProcess {
        ServeProcess::start(command, false)
    }

    /// [`ServeProcess::spawn`], keeping what the server logs for
    /// [`ServeProcess::terminate`] to return.
    pub fn spawn_logged(command: std::process::Command) -> ServeProcess {
        ServeProcess::start(command, true)
    }

    fn start(mut command: std::process::Command, logged: bool) -> ServeProcess {
        use std::io::{BufRead, Read};
        use std::process::Stdio;
        let stderr = if logged {
            Stdio::piped()
        } else {
            Stdio::inherit()
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start chatapp serve");
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {} // keep the pipe drained
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chatapp serve printed no listening line");
            }
        };
        let words: Vec<&str> = line.split(' ').collect();
        let (addr, key) = match words[..] {
            ["chatapp", "listening", "on", addr, "with", "key", key] => (addr, key),
            _ => panic!("unexpected first line: {line:?}"),
        };
        let parsed: std::net::SocketAddr = addr.parse().expect("a socket address");
        assert_ne!(parsed.port(), 0, "the real port is shown, not 0");
        assert!(key.starts_with("SHA256:") && key.len() == 7 + 43, "{key}");
        ServeProcess {
            addr: addr.to_string(),
            fingerprint: key.to_string(),
            child,
            stderr,
        }
    }

    /// Sends SIGTERM and waits (up to 10 s) for the exit; returns the exit
    /// status and everything logged (started with `spawn_logged`).
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        let status = wait_exit(&mut self.child, Duration::from_secs(10));
        let log = self
            .stderr
            .take()
            .expect("the log is kept: start with ServeProcess::spawn_logged")
            .join()
            .unwrap();
        (status, log)
    }

    /// `chatapp serve` on 127.0.0.1:0 over `data_dir`, at the cheap test
    /// scrypt cost and logging only errors, with `extra` arguments after.
    pub fn serve(data_dir: &Path, extra: &[&str]) -> ServeProcess {
        let mut command = ServeProcess::command(data_dir, extra);
        command.env("CHATAPP_LOG", "error");
        ServeProcess::spawn(command)
    }

    /// The command line of [`ServeProcess::serve`], for a caller that sets
    /// the environment itself.
    pub fn command(data_dir: &Path, extra: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(Self::binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--scrypt-log-n", "4"])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir);
        command
    }

    /// SIGKILL: the server gets no chance to write or sync anything more.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the killed server");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A protocol connection whose key must be the one announced.
    pub fn connect(&self) -> Connection {
        let unverified =
            proto::connect(&self.addr).unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        assert_eq!(unverified.fingerprint(), self.fingerprint);
        unverified.accept()
    }

    /// A client connected to it, key checked.
    pub fn client(&self, name: &str) -> Client {
        Client {
            name: name.to_string(),
            conn: self.connect(),
        }
    }
}

/// Waits for `child` to exit; kills it and fails if it does not within
/// `wait`. Polls: a child's exit cannot be waited for with a time limit.
pub fn wait_exit(child: &mut std::process::Child, wait: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(status) = child.try_wait().expect("wait for chatapp") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chatapp did not exit within {wait:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A session as `name`: logs in, or registers if the account does not
/// exist (yet, or any more: a server killed or cut from power may have lost
/// the registration). `None` when the server is gone.
pub fn log_in_or_register(addr: &str, name: &str, password: &str) -> Option<Connection> {
    let mut conn = proto::connect(addr).ok()?.accept();
    let (name, password) = (name.to_string(), password.to_string());
    let login = Request::Login {
        name: name.clone(),
        password: password.clone(),
    };
    match conn.request(login).ok()? {
        Reply::LoggedIn { .. } => return Some(conn),
        Reply::Error { .. } => {}
        other => panic!("{name}: unexpected reply {other:?}"),
    }
    match conn.request(Request::Register { name, password }).ok()? {
        Reply::LoggedIn { .. } => Some(conn),
        other => panic!("could not register: {other:?}"),
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP connection to an IPv4 `addr` that announces `mss` as its largest
/// segment, as a client on an Ethernet path (1460) would. On loopback the
/// segments are 64 KiB, and the server's kernel then buffers megabytes for
/// a client that does not read, hiding from the server how far behind the
/// client is; a real network's segment size keeps those buffers realistic.
/// Plain system calls (std links the C library anyway): Linux only.
#[cfg(target_os = "linux")]
pub fn connect_with_mss(addr: std::net::SocketAddrV4, mss: i32) -> std::net::TcpStream {
    connect_v4(addr, None, Some(mss))
        .unwrap_or_else(|e| panic!("connect to {addr} with MSS {mss}: {e}"))
}

/// A TCP connection to `addr` from the local address `from` (another of
/// loopback's 127.0.0.0/8, say), so that a server sees clients at several
/// addresses. Linux only, as [`connect_with_mss`].
#[cfg(target_os = "linux")]
pub fn connect_from(from: std::net::Ipv4Addr, addr: std::net::SocketAddrV4) -> std::net::TcpStream {
    connect_v4(addr, Some(from), None)
        .unwrap_or_else(|e| panic!("connect to {addr} from {from}: {e}"))
}

/// A TCP connection to `addr`, bound first to `from` and with its maximum
/// segment size set, where given. Plain system calls (std links the C
/// library anyway).
#[cfg(target_os = "linux")]
fn connect_v4(
    addr: std::net::SocketAddrV4,
    from: Option<std::net::Ipv4Addr>,
    mss: Option<i32>,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    #[repr(C)]
    struct SockaddrIn {
        family: u16,
        port: u16,
        addr: u32,
        zero: [u8; 8],
    }
    unsafe extern "C" {
        fn socket(domain: i32, kind: i32, protocol: i32) -> i32;
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const i32, len: u32) -> i32;
        fn bind(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        fn connect(fd: i32, addr: *const SockaddrIn, len: u32) -> i32;
        fn close(fd: i32) -> i32;
    }
    const AF_INET: i32 = 2;
    const SOCK_STREAM: i32 = 1;
    const IPPROTO_TCP: i32 = 6;
    const TCP_MAXSEG: i32 = 2;
    let sockaddr = |ip: std::net::Ipv4Addr, port: u16| SockaddrIn {
        family: AF_INET as u16,
        port: port.to_be(),
        addr: u32::from(ip).to_be(),
        zero: [0; 8],
    };
    let len = std::mem::size_of::<SockaddrIn>() as u32;
    // SAFETY: plain system calls on a descriptor this function owns until
    // it hands it to the TcpStream; the pointers outlive the calls.
    unsafe {
        let fd = socket(AF_INET, SOCK_STREAM, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let set = mss.is_none_or(|mss| setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, 4) == 0);
        let bound = set && from.is_none_or(|ip| bind(fd, &sockaddr(ip, 0), len) == 0);
        if !(bound && connect(fd, &sockaddr(*addr.ip(), addr.port()), len) == 0) {
            let e = std::io::Error::last_os_error();
            close(fd);
            return Err(e);
        }
        Ok(std::net::TcpStream::from_raw_fd(fd))
    }
}

// ---- helpers for the hostile-session tests ----

impl RawClient {
    /// Seals a plaintext made by hand (bytes the library would never
    /// encode: extra fields, wrong types) into `out` as one frame, using
    /// this channel's next nonce.
    pub fn seal_plaintext(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        self.transport.seal_into(plaintext, out).expect("seal");
    }
}

/// A port of 127.0.0.1 that was free a moment ago, for a server that
/// cannot be told to take port 0 (a PostgreSQL or HAProxy of a test's own);
/// the caller tries another if it was taken in between.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    listener.local_addr().expect("the port").port()
}

/// Looks at `done` every `poll` until it holds or `within` has passed;
/// whether it held.
pub fn wait_until(within: Duration, poll: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(poll);
    }
}

/// The way for a test to go without something its environment lacks (IPv6,
/// network namespaces, FUSE): `Some` of what `found` holds when it is
/// there; otherwise `None` and a line on standard error (past the
/// harness's capture, so a pass still says it did not run), and under CI
/// (the environment variable `CI` set) a failure instead, so that CI can
/// never go green on a test it did not run.
pub fn require<T, E: std::fmt::Display>(found: Result<T, E>, need: &str) -> Option<T> {
    require_under(std::env::var_os("CI").is_some(), found, need)
}

/// [`require`] with the question "is this CI?" answered by the caller, so
/// that both answers can be tested without changing the environment.
fn require_under<T, E: std::fmt::Display>(ci: bool, found: Result<T, E>, need: &str) -> Option<T> {
    match found {
        Ok(value) => Some(value),
        Err(e) if ci => panic!(
            "this test needs {need}, which is missing here ({e}); CI must run every test, \
             so give the CI machine what it needs"
        ),
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "not run: this test needs {need}: {e}");
            None
        }
    }
}

#[test]
fn a_missing_need_is_a_failure_under_ci_and_a_notice_elsewhere() {
    assert_eq!(require_under::<u8, &str>(false, Ok(7), "IPv6"), Some(7));
    assert_eq!(require_under::<u8, &str>(true, Ok(7), "IPv6"), Some(7));
    assert_eq!(
        require_under::<u8, &str>(false, Err("no ::1"), "IPv6"),
        None
    );
    let under_ci =
        std::panic::catch_unwind(|| require_under::<u8, &str>(true, Err("no ::1"), "IPv6"));
    let message = *under_ci
        .expect_err("a missing need fails under CI")
        .downcast::<String>()
        .unwrap();
    assert!(
        message.contains("needs IPv6") && message.contains("no ::1"),
        "{message}"
    );
}
