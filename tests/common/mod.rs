//! Shared helpers for the integration tests: a real server on 127.0.0.1:0
//! with a fresh data directory and the cheap test scrypt cost, clients that
//! speak the real protocol to it, and waits that are always bounded.
//!
//! Each test binary uses a different part of this module.
#![allow(dead_code)]

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
/// How long a client must stay silent to count as having received nothing.
/// Only used after a positive event proved the server already acted.
pub const QUIET: Duration = Duration::from_millis(300);

/// A server running on a thread of the test process, on a data directory
/// that outlives restarts and is deleted at the end of the test.
pub struct TestServer {
    dir: TempDir,
    handle: Option<Handle>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    /// Starts with the test cost, after `tune` had its say on the config.
    pub fn start_with(tune: impl Fn(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let handle = Some(start_on(dir.path(), &tune));
        TestServer { dir, handle }
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

    /// Stops the server and starts a new one on the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.handle = Some(start_on(self.dir.path(), &|_| {}));
    }

    /// A new connection, handshake done and the key checked against the
    /// one the server announced.
    pub fn connect(&self) -> Connection {
        let unverified = proto::connect(&self.addr())
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr()));
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
    let mut config = Config::new(dir.to_path_buf());
    config.hash_cost = HashCost::TEST;
    tune(&mut config);
    server::start("127.0.0.1:0".parse().unwrap(), config).expect("the server starts")
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
    /// Sends a request and returns its reply (within [`WAIT`]).
    pub fn request(&mut self, req: Request) -> Reply {
        let shown = format!("{req:?}");
        self.conn
            .request_within(req, WAIT)
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

    pub fn register(&mut self) {
        let req = Request::Register {
            name: self.name.clone(),
            password: PASSWORD.to_string(),
        };
        let reply = self.request(req);
        assert_eq!(
            reply,
            Reply::LoggedIn {
                name: self.name.clone(),
                unread: 0
            },
            "{} registers",
            self.name
        );
    }

    /// Logs in with [`PASSWORD`]; returns the unread count.
    pub fn login(&mut self) -> u32 {
        let req = Request::Login {
            name: self.name.clone(),
            password: PASSWORD.to_string(),
        };
        match self.request(req) {
            Reply::LoggedIn { name, unread } => {
                assert_eq!(name, self.name);
                unread
            }
            other => panic!("{} logs in: {other:?}", self.name),
        }
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
        });
    }

    pub fn send_private(&mut self, to: &str, text: &str) {
        self.ok(Request::SendPrivate {
            to: to.to_string(),
            text: text.to_string(),
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
        match self.next_event() {
            Event::RoomMessage { room: got, line } => {
                assert_eq!(
                    (got, line.from.as_str(), line.text.as_str()),
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
                    (line.from.as_str(), line.to.as_str(), line.text.as_str()),
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
    pub fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.conn.next_event(Some(left)) {
                Ok(Some(event)) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Ok(None) => panic!("{}: no {what} within {WAIT:?}", self.name),
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
