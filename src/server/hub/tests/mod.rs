//! The hub driven by scripts of inputs on a fake clock: no sockets, no
//! threads, no SQLite. A tiny [`World`] plays the workers: it "hashes" by
//! prefixing, verifies by comparing, and commits writes when told to, so
//! each test can look at what the hub shows before and after a commit.
//! It resolves broadcasts through a [`Directory`] kept up to date by the
//! hub's outputs, as the event loop does. The tests themselves are split
//! by area, as the hub is.

use super::*;
use crate::model::{self, UserId};
use crate::server::directory::Directory;
use crate::store::UserRow;
use crate::wire::msg::{ClientFrame, Request};
use std::collections::HashMap;

const PW: &str = "correct horse battery staple";

struct World {
    hub: Hub,
    now: Millis,
    next_conn: u64,
    next_id: u32,
    /// Writes handed to the "store", not yet committed.
    uncommitted: Vec<(u64, Write)>,
    committed: Vec<Write>,
    /// Everything each connection was sent, in order.
    seen: HashMap<ConnId, Vec<ServerFrame>>,
    closed: Vec<ConnId>,
    /// Whether writes commit as soon as they are made.
    auto_commit: bool,
    /// Who is connected where, as the event loop keeps it.
    directory: Directory,
    /// Every broadcast's audience, in order.
    audiences: Vec<Audience>,
}

fn fake_hash(password: &str) -> String {
    format!("fake${password}")
}

impl World {
    fn new() -> World {
        World::with(Snapshot {
            users: Vec::new(),
            unread: Vec::new(),
            next_user: UserId(1),
            next_room: RoomId(1),
            next_message: MessageId(1),
        })
    }

    fn with(snapshot: Snapshot) -> World {
        World {
            hub: Hub::new(snapshot, Limits::default()),
            now: 1_000,
            next_conn: 1,
            next_id: 1,
            uncommitted: Vec::new(),
            committed: Vec::new(),
            seen: HashMap::new(),
            closed: Vec::new(),
            auto_commit: true,
            directory: Directory::default(),
            audiences: Vec::new(),
        }
    }

    fn input(&mut self, input: Input) {
        self.now += 10;
        self.hub.handle(self.now, input);
        self.run_effects();
    }

    /// Plays the workers until the hub has nothing more to say.
    fn run_effects(&mut self) {
        while let Some(out) = self.hub.poll_output() {
            match out {
                Output::Send { conn, frame } => self.seen.entry(conn).or_default().push(frame),
                Output::Broadcast { audience, frame } => {
                    self.audiences.push(audience);
                    // As the event loop does.
                    for c in self.directory.resolve(&audience) {
                        self.seen.entry(c).or_default().push(frame.clone());
                    }
                }
                Output::Directory(change) => self.directory.apply(change),
                Output::Close { conn } => self.closed.push(conn),
                Output::Auth(AuthJob::Hash {
                    caller,
                    name,
                    password,
                }) => self.hub.handle(
                    self.now,
                    Input::Hashed {
                        caller,
                        name,
                        hash: fake_hash(&password),
                    },
                ),
                Output::Auth(AuthJob::Verify {
                    caller,
                    name,
                    user,
                    password,
                }) => {
                    let user = user
                        .filter(|(_, hash)| *hash == fake_hash(&password))
                        .map(|(u, _)| u);
                    let verified = Input::Verified { caller, name, user };
                    self.hub.handle(self.now, verified);
                }
                Output::Store(StoreJob::Write { seq, write }) => {
                    self.uncommitted.push((seq, write))
                }
                Output::Store(StoreJob::Query { caller, query }) => {
                    let answer = match query {
                        Query::Inbox { .. } => Answer::Inbox(Vec::new()),
                        Query::Dialogue { other, .. } => Answer::Dialogue {
                            other,
                            rows: Vec::new(),
                        },
                    };
                    self.hub
                        .handle(self.now, Input::Answered { caller, answer });
                }
                Output::Log { .. } => {}
            }
            if self.auto_commit && self.hub.out.is_empty() {
                self.commit(true);
            }
        }
        self.check_directory();
    }

    /// The directory, fed only the hub's outputs, knows what the hub knows:
    /// who is logged in on which connection, and each open room's members
    /// in the order they joined. Checked after every step of every test.
    fn check_directory(&self) {
        let mut online = 0;
        for conn in self.hub.conns.ids() {
            if let Some(State::Online { user, room }) = self.hub.conns.state(conn) {
                online += 1;
                assert_eq!(self.directory.user(user), [conn], "{user:?}'s connections");
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

    fn commit(&mut self, ok: bool) {
        let Some(&(seq, _)) = self.uncommitted.last() else {
            return;
        };
        let writes = std::mem::take(&mut self.uncommitted);
        if ok {
            self.committed.extend(writes.into_iter().map(|(_, w)| w));
        }
        self.hub.handle(self.now, Input::Committed { seq, ok });
        self.run_effects();
    }

    fn connect(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.input(Input::Connected {
            conn,
            peer: format!("192.0.2.1:{}", 40000 + conn.0),
            ip: "192.0.2.1".into(),
        });
        conn
    }

    /// Sends a request and returns the reply it got (or `None` if none yet).
    fn ask(&mut self, conn: ConnId, req: Request) -> Option<Reply> {
        let id = self.next_id;
        self.next_id += 1;
        self.input(Input::Request {
            conn,
            frame: ClientFrame { id, req },
        });
        self.reply_to(conn, id)
    }

    fn reply_to(&self, conn: ConnId, id: u32) -> Option<Reply> {
        self.seen.get(&conn)?.iter().find_map(|f| match f {
            ServerFrame::Reply { id: got, result } if *got == id => Some(result.clone()),
            _ => None,
        })
    }

    fn error(&mut self, conn: ConnId, req: Request) -> ErrorCode {
        match self.ask(conn, req) {
            Some(Reply::Error { code, .. }) => code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Events the connection received, taken (so the next call sees new ones).
    fn events(&mut self, conn: ConnId) -> Vec<Event> {
        let frames = self.seen.remove(&conn).unwrap_or_default();
        frames
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Event { event } => Some(event),
                ServerFrame::Reply { .. } => None,
            })
            .collect()
    }

    fn user(&mut self, name: &str) -> ConnId {
        let conn = self.connect();
        let reply = self.ask(
            conn,
            Request::Register {
                name: name.into(),
                password: PW.into(),
            },
        );
        assert_eq!(
            reply,
            Some(Reply::LoggedIn {
                name: name.into(),
                unread: 0
            })
        );
        conn
    }

    fn login(&mut self, name: &str, password: &str) -> Option<Reply> {
        let conn = self.connect();
        self.ask(
            conn,
            Request::Login {
                name: name.into(),
                password: password.into(),
            },
        )
    }

    fn create_room(&mut self, conn: ConnId, name: &str, capacity: u32) -> u64 {
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

    fn join(&mut self, conn: ConnId, room: u64) -> Reply {
        self.ask(conn, Request::JoinRoom { room }).expect("a reply")
    }

    fn say(&mut self, conn: ConnId, text: &str) -> Option<Reply> {
        self.ask(conn, Request::Say { text: text.into() })
    }
}

fn left(room: u64, name: &str, reason: LeaveReason) -> Event {
    Event::Left {
        room,
        name: name.into(),
        reason,
    }
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RoomMessage { line, .. } => Some(format!("{}: {}", line.from, line.text)),
            _ => None,
        })
        .collect()
}

mod accounts;
mod commits;
mod connections;
mod private;
mod rooms;
