//! The one fake world around the hub, for everything that drives the chat
//! core without sockets, threads or SQLite: the hub's unit tests, the
//! property tests, the fuzz target and the micro benchmarks. Compiled only
//! for tests and with the `testkit` feature, never into the binary.
//!
//! [`Harness`] keeps a fake clock (moved by hand, or by `tick` before each
//! input), plays the scrypt threads with a fake hash (a prefix, checked by
//! comparing) and the store thread (writes wait until committed, queries
//! get empty answers), and resolves every broadcast through a
//! [`Directory`] fed only the hub's outputs, as the event loop does. After
//! each step it checks that this directory agrees with the hub.
//!
//! The workers answer at once and the store commits as soon as the hub has
//! nothing more to say, unless `auto_answer` or `auto_commit` is turned
//! off: then jobs and writes wait in `jobs` and `uncommitted` until the
//! caller answers or commits them, in any order it likes. What each user
//! asserts stays with that user: a [`Watch`] sees every output (a
//! broadcast with its resolved connections) and every commit as it
//! happens, and `seen`, `closed`, `audiences` and `committed` record them
//! unless `record` is off (the benchmarks, which must not pay for it).

use super::connections::State;
use super::effects::{Filled, Gap};
use super::{
    Answer, Audience, AuthJob, Caller, ConnId, Hub, Input, Limits, Output, Query, StoreJob,
};
use crate::model::{MessageId, Millis, RoomId, Seq, UserId};
use crate::server::directory::{Directory, Resolved};
use crate::store::{Snapshot, UserRow, Write};
use crate::wire::msg::{ClientFrame, ErrorCode, Event, Reply, Request, ServerFrame};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashMap;

/// The seed of the hub's CSPRNG in the harness: its tokens are the same
/// in every run.
pub const SEED: u64 = 7;

/// The password every account made by the harness has.
pub const PASSWORD: &str = "correct horse battery staple";

/// The harness's stand-in for scrypt: cheap, and checkable by comparing.
pub fn fake_hash(password: &str) -> String {
    format!("fake${password}")
}

/// An existing account whose password is [`PASSWORD`].
pub fn account(id: i64, name: &str) -> UserRow {
    UserRow {
        id: UserId(id),
        name: name.into(),
        password_hash: fake_hash(PASSWORD),
    }
}

/// A start-up snapshot holding `users` (ids from 1), no rooms or messages.
pub fn snapshot(users: Vec<UserRow>) -> Snapshot {
    let next_user = users.iter().map(|u| u.id.0).max().unwrap_or(0) + 1;
    Snapshot {
        users,
        unread: Vec::new(),
        dialogue_seqs: Vec::new(),
        next_user: UserId(next_user),
        next_room: RoomId(1),
        next_message: MessageId(1),
        devices: Vec::new(),
    }
}

/// The product's limits without a grace period for dropped members.
pub fn no_grace() -> Limits {
    Limits {
        grace: 0,
        ..Limits::default()
    }
}

/// A job the workers owe the hub, while `auto_answer` is off.
#[derive(Debug)]
pub enum Job {
    Auth(AuthJob),
    Query {
        caller: Caller,
        query: Query,
    },
    /// Never answered by itself: whoever drives the harness plays the
    /// store that knows what other servers stored.
    Fill(Gap),
    /// Places no running server keeps: none, unless whoever drives the
    /// harness answers otherwise.
    Orphans,
}

/// Sees what happens around the hub, for the checks of whoever drives it.
pub trait Watch {
    /// Each output, before the harness acts on it. A broadcast comes with
    /// its audience resolved through the directory, as the loop resolves it.
    fn output(&mut self, _out: &Output, _to: Option<Resolved<'_>>) {}

    /// A batch of writes the store committed (`ok`) or failed, before the
    /// hub is told.
    fn commit(&mut self, _writes: &[(u64, Write)], _ok: bool) {}
}

/// Watches nothing: the recorded fields are enough.
impl Watch for () {}

pub struct Harness<W: Watch = ()> {
    pub hub: Hub,
    pub now: Millis,
    /// How far the clock moves before each [`Harness::input`].
    pub tick: Millis,
    /// Who is connected where, as the event loop keeps it.
    pub directory: Directory,
    pub watch: W,
    /// The workers' stand-in for scrypt.
    pub hash: fn(&str) -> String,
    /// Whether jobs for the workers are answered as soon as they are made.
    pub auto_answer: bool,
    /// Whether writes commit as soon as the hub has nothing more to say.
    pub auto_commit: bool,
    /// Whether `seen`, `closed`, `audiences` and `committed` are kept.
    pub record: bool,
    /// Whether the directory is checked against the hub after each step.
    pub check: bool,
    /// Jobs not yet answered (with `auto_answer` off), oldest first.
    pub jobs: Vec<Job>,
    /// Writes handed to the "store", not yet committed, oldest first.
    pub uncommitted: Vec<(u64, Write)>,
    pub committed: Vec<Write>,
    /// Everything each connection was sent, in order.
    pub seen: HashMap<ConnId, Vec<ServerFrame>>,
    pub closed: Vec<ConnId>,
    /// Every broadcast's audience, in order.
    pub audiences: Vec<Audience>,
    pub next_conn: u64,
    pub next_id: u32,
}

impl Harness {
    /// No accounts yet, the product's limits but no grace period (a
    /// member whose connection drops leaves at once, unless a test gives
    /// [`Limits::grace`] a length), the clock at 1,000 ms and moving 10 ms
    /// before each input.
    pub fn new() -> Harness {
        Harness::with(snapshot(Vec::new()))
    }

    pub fn with(snapshot: Snapshot) -> Harness {
        Harness::build(snapshot, no_grace(), ())
    }
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

impl<W: Watch> Harness<W> {
    pub fn build(snapshot: Snapshot, limits: Limits, watch: W) -> Harness<W> {
        Harness {
            hub: Hub::new(snapshot, limits, StdRng::seed_from_u64(SEED)),
            now: 1_000,
            tick: 10,
            directory: Directory::default(),
            watch,
            hash: fake_hash,
            auto_answer: true,
            auto_commit: true,
            record: true,
            check: true,
            jobs: Vec::new(),
            uncommitted: Vec::new(),
            committed: Vec::new(),
            seen: HashMap::new(),
            closed: Vec::new(),
            audiences: Vec::new(),
            next_conn: 1,
            next_id: 1,
        }
    }

    /// Moves the clock by `tick`, then feeds the input.
    pub fn input(&mut self, input: Input) {
        self.now += self.tick;
        self.handle(input);
    }

    /// Feeds the input at the current time and plays out what follows.
    pub fn handle(&mut self, input: Input) {
        self.hub.handle(self.now, input);
        self.run_effects();
    }

    /// Tells the hub the time (for its deadlines) and plays out what follows.
    pub fn timeout(&mut self) {
        self.hub.handle_timeout(self.now);
        self.run_effects();
    }

    /// Plays the workers and the loop until the hub has nothing more to say.
    pub fn run_effects(&mut self) {
        while let Some(out) = self.hub.poll_output() {
            let to = match &out {
                Output::Broadcast { audience, .. } => Some(self.directory.resolve(audience)),
                _ => None,
            };
            self.watch.output(&out, to);
            match out {
                Output::Send { conn, frame } => {
                    if self.record {
                        self.seen.entry(conn).or_default().push(frame);
                    }
                }
                Output::Broadcast { audience, frame } => {
                    // The hub promises an audience that is not empty.
                    assert!(
                        !self.check || self.directory.resolve(&audience).len() > 0,
                        "a broadcast to nobody: {audience:?} {frame:?}"
                    );
                    if self.record {
                        self.audiences.push(audience);
                        for c in self.directory.resolve(&audience) {
                            self.seen.entry(c).or_default().push(frame.clone());
                        }
                    }
                }
                Output::Directory(change) => self.directory.apply(change),
                Output::Close { conn } => {
                    if self.record {
                        self.closed.push(conn);
                    }
                }
                Output::Auth(job) if self.auto_answer => {
                    let answer = self.answer_auth(job);
                    self.hub.handle(self.now, answer);
                }
                Output::Store(StoreJob::Query { caller, query }) if self.auto_answer => {
                    let answer = empty_answer(query);
                    self.hub
                        .handle(self.now, Input::Answered { caller, answer });
                }
                Output::Auth(job) => self.jobs.push(Job::Auth(job)),
                Output::Store(StoreJob::Query { caller, query }) => {
                    self.jobs.push(Job::Query { caller, query })
                }
                Output::Store(StoreJob::Write { seq, write }) => {
                    self.uncommitted.push((seq, write))
                }
                Output::Store(StoreJob::Fill(gap)) => self.jobs.push(Job::Fill(gap)),
                Output::Store(StoreJob::Orphans) if self.auto_answer => {
                    let found = Ok(Vec::new());
                    self.hub.handle(self.now, Input::Orphans { found });
                }
                Output::Store(StoreJob::Orphans) => self.jobs.push(Job::Orphans),
                Output::Log { .. } => {}
            }
            if self.auto_commit && self.hub.out.is_empty() {
                self.commit(true);
            }
        }
        if self.check {
            self.check_directory();
        }
    }

    /// What the scrypt threads answer to a job, with the fake hash.
    pub fn answer_auth(&self, job: AuthJob) -> Input {
        match job {
            AuthJob::Hash {
                caller,
                name,
                password,
            } => Input::Hashed {
                caller,
                name,
                hash: (self.hash)(&password),
            },
            AuthJob::Verify {
                caller,
                name,
                user,
                password,
            } => Input::Verified {
                caller,
                name,
                user: user
                    .filter(|(_, hash)| *hash == (self.hash)(&password))
                    .map(|(u, _)| u),
            },
        }
    }

    /// Answers a waiting job: auth with the fake hash, a query with an
    /// empty answer.
    pub fn answer(&mut self, job: Job) {
        let input = match job {
            Job::Auth(job) => self.answer_auth(job),
            Job::Query { caller, query } => Input::Answered {
                caller,
                answer: empty_answer(query),
            },
            Job::Fill(gap @ Gap::Room { .. }) => Input::Filled {
                gap,
                filled: Filled::Room(Vec::new()),
            },
            Job::Fill(gap @ Gap::Dialogue { .. }) => Input::Filled {
                gap,
                filled: Filled::Dialogue(Vec::new()),
            },
            Job::Orphans => Input::Orphans {
                found: Ok(Vec::new()),
            },
        };
        self.handle(input);
    }

    /// The directory, fed only the hub's outputs, knows what the hub knows:
    /// who is logged in on which connection, and each open room's members
    /// in the order they joined.
    pub fn check_directory(&self) {
        let mut online = 0;
        for conn in self.hub.conns.ids() {
            if let Some(State::Online { user, room }) = self.hub.conns.state(conn) {
                online += 1;
                assert!(
                    self.directory.user(user).contains(&conn),
                    "{user:?} on {conn:?}"
                );
                assert_eq!(
                    self.directory.user(user),
                    self.hub.accounts.sessions(user),
                    "{user:?}'s connections"
                );
                if let Some(room) = room {
                    assert!(
                        self.directory.room(room).contains(&conn),
                        "{conn:?} in {room:?}"
                    );
                }
            }
        }
        assert_eq!(self.directory.len(), online, "connections logged in");
        for id in self.hub.rooms.ids() {
            let room = self.hub.rooms.get(id).expect("open");
            let members: Vec<ConnId> = room.members.iter().map(|&(_, c)| c).collect();
            assert_eq!(self.directory.room(id), members, "the members of {id:?}");
        }
    }

    /// Commits (or fails) every write waiting.
    pub fn commit(&mut self, ok: bool) {
        self.commit_some(self.uncommitted.len(), ok);
    }

    /// Commits (or fails) the oldest `count` writes waiting, as one batch.
    pub fn commit_some(&mut self, count: usize, ok: bool) {
        self.commit_batch(count, ok, Write::seq);
    }

    /// Commits every write waiting as a shared store would, keeping each
    /// message under the number `number` gives it; returns the writes as
    /// stored (what the bus carries to other servers).
    pub fn commit_renumbered(&mut self, number: impl FnMut(&Write) -> Option<Seq>) -> Vec<Write> {
        self.commit_batch(self.uncommitted.len(), true, number)
    }

    fn commit_batch(
        &mut self,
        count: usize,
        ok: bool,
        mut number: impl FnMut(&Write) -> Option<Seq>,
    ) -> Vec<Write> {
        let Some(&(seq, _)) = self.uncommitted.get(count.wrapping_sub(1)) else {
            return Vec::new();
        };
        let mut writes: Vec<(u64, Write)> = self.uncommitted.drain(..count).collect();
        self.watch.commit(&writes, ok);
        // As the store thread answers: every message's number, or none.
        let mut numbers = Vec::new();
        for (n, write) in writes.iter_mut().filter(|_| ok) {
            let answer = number(write);
            match (answer, write) {
                (
                    Some(stored),
                    Write::RoomMessage { seq, .. } | Write::PrivateMessage { seq, .. },
                ) => {
                    *seq = stored;
                    numbers.push((*n, stored));
                }
                (Some(taken), Write::Join { .. }) => numbers.push((*n, taken)),
                _ => {}
            }
        }
        // A join the store refused changed nothing: the bus does not carry it.
        let refused: Vec<u64> = (numbers.iter())
            .filter(|&&(_, answer)| answer == 0)
            .map(|&(n, _)| n)
            .collect();
        let writes: Vec<Write> = (writes.into_iter())
            .filter(|(n, _)| !refused.contains(n))
            .map(|(_, w)| w)
            .collect();
        if ok && self.record {
            self.committed.extend(writes.iter().cloned());
        }
        self.handle(Input::Committed { seq, ok, numbers });
        if ok { writes } else { Vec::new() }
    }

    /// A new connection from 192.0.2.1.
    pub fn connect(&mut self) -> ConnId {
        self.connect_from("192.0.2.1")
    }

    pub fn connect_from(&mut self, ip: &str) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.input(Input::Connected {
            conn,
            peer: format!("{ip}:{}", 40000 + conn.0),
            ip: ip.into(),
        });
        conn
    }

    /// Sends a request under the next id; returns the id.
    pub fn request(&mut self, conn: ConnId, req: Request) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        self.input(Input::Request {
            conn,
            frame: ClientFrame { id, req },
        });
        id
    }

    /// Sends a request and returns the reply it got (or `None` if none yet).
    pub fn ask(&mut self, conn: ConnId, req: Request) -> Option<Reply> {
        let id = self.request(conn, req);
        self.reply_to(conn, id)
    }

    pub fn reply_to(&self, conn: ConnId, id: u32) -> Option<Reply> {
        self.seen.get(&conn)?.iter().find_map(|f| match f {
            ServerFrame::Reply { id: got, result } if *got == id => Some(result.clone()),
            _ => None,
        })
    }

    pub fn error(&mut self, conn: ConnId, req: Request) -> ErrorCode {
        match self.ask(conn, req) {
            Some(Reply::Error { code, .. }) => code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Events the connection received, taken (so the next call sees new ones).
    pub fn events(&mut self, conn: ConnId) -> Vec<Event> {
        let frames = self.seen.remove(&conn).unwrap_or_default();
        frames
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Event { event } => Some(event),
                ServerFrame::Reply { .. } => None,
            })
            .collect()
    }

    /// A new connection that registers `name` with [`PASSWORD`].
    pub fn user(&mut self, name: &str) -> ConnId {
        self.user_with_token(name).0
    }

    /// [`Harness::user`], with the resume token it was given.
    pub fn user_with_token(&mut self, name: &str) -> (ConnId, String) {
        let conn = self.connect();
        let reply = self.ask(
            conn,
            Request::Register {
                name: name.into(),
                password: PASSWORD.into(),
            },
        );
        match reply {
            Some(Reply::LoggedIn {
                name: got,
                unread: 0,
                token,
                ..
            }) if got == name => (conn, token),
            other => panic!("{name} registers: {other:?}"),
        }
    }

    /// A new connection that logs in.
    pub fn login(&mut self, name: &str, password: &str) -> Option<Reply> {
        let conn = self.connect();
        self.ask(
            conn,
            Request::Login {
                name: name.into(),
                password: password.into(),
            },
        )
    }

    /// A new connection that resumes with `token`.
    pub fn login_with(&mut self, token: &str) -> Option<Reply> {
        let conn = self.connect();
        let token = token.into();
        self.ask(conn, Request::Resume { token })
    }

    pub fn create_room(&mut self, conn: ConnId, name: &str, capacity: u32) -> u64 {
        match self.ask(
            conn,
            Request::CreateRoom {
                name: name.into(),
                capacity,
            },
        ) {
            Some(Reply::Room { room, .. }) => room.id,
            other => panic!("create_room: {other:?}"),
        }
    }

    pub fn join(&mut self, conn: ConnId, room: u64) -> Reply {
        self.ask(conn, Request::JoinRoom { room }).expect("a reply")
    }

    pub fn say(&mut self, conn: ConnId, text: &str) -> Option<Reply> {
        self.ask(
            conn,
            Request::Say {
                text: text.into(),
                client_id: 0,
            },
        )
    }
}

/// The store's answer to a query when it holds nothing to show.
pub fn empty_answer(query: Query) -> Answer {
    match query {
        Query::Inbox { .. } => Answer::Inbox(Vec::new()),
        Query::Dialogue { other, page, .. } => Answer::Dialogue {
            other,
            page,
            rows: Vec::new(),
        },
        Query::Room { room, page, .. } => Answer::Room {
            room,
            page,
            rows: Vec::new(),
        },
        Query::Device { .. } => Answer::Device(None),
        Query::Members { .. } => Answer::Members(Vec::new()),
    }
}
