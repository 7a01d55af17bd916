//! The hub driven by scripts of inputs on a fake clock: no sockets, no
//! threads, no SQLite. A tiny [`World`] plays the workers: it "hashes" by
//! prefixing, verifies by comparing, and commits writes when told to, so
//! each test can look at what the hub shows before and after a commit.

use super::*;
use crate::store::{Snapshot, UserRow};

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
    /// The capacity of each broadcast's target list, in order.
    target_capacities: Vec<usize>,
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
            target_capacities: Vec::new(),
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
                Output::Broadcast { conns, frame } => {
                    self.target_capacities.push(conns.capacity());
                    for &c in &conns {
                        self.seen.entry(c).or_default().push(frame.clone());
                    }
                    // As the event loop does.
                    self.hub.recycle(conns);
                }
                Output::Close { conn } => self.closed.push(conn),
                Output::Auth(AuthJob::Hash {
                    conn,
                    id,
                    name,
                    password,
                }) => self.hub.handle(
                    self.now,
                    Input::Hashed {
                        conn,
                        id,
                        name,
                        hash: fake_hash(&password),
                    },
                ),
                Output::Auth(AuthJob::Verify {
                    conn,
                    id,
                    name,
                    user,
                    password,
                }) => {
                    let user = user
                        .filter(|(_, hash)| *hash == fake_hash(&password))
                        .map(|(u, _)| u);
                    let verified = Input::Verified {
                        conn,
                        id,
                        name,
                        user,
                    };
                    self.hub.handle(self.now, verified);
                }
                Output::Store(StoreJob::Write { seq, write }) => {
                    self.uncommitted.push((seq, write))
                }
                Output::Store(StoreJob::Query { conn, id, query }) => {
                    let answer = match query {
                        Query::Inbox { .. } => Answer::Inbox(Vec::new()),
                        Query::Dialogue { other, .. } => Answer::Dialogue {
                            other,
                            rows: Vec::new(),
                        },
                    };
                    self.hub
                        .handle(self.now, Input::Answered { conn, id, answer });
                }
                Output::Log { .. } => {}
            }
            if self.auto_commit && self.hub.out.is_empty() {
                self.commit(true);
            }
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

#[test]
fn register_logs_in_and_names_are_unique_without_regard_to_case() {
    let mut w = World::new();
    w.user("Alice");
    let c = w.connect();
    let reply = w.ask(
        c,
        Request::Register {
            name: "alice".into(),
            password: PW.into(),
        },
    );
    assert_eq!(
        reply,
        Some(Reply::Error {
            code: ErrorCode::NameTaken,
            message: "that name is taken".into()
        })
    );
    // The same connection may try again with another name.
    w.ask(
        c,
        Request::Register {
            name: "alice2".into(),
            password: PW.into(),
        },
    )
    .unwrap();
    assert!(matches!(
        &w.committed[..],
        [Write::User { name: a, .. }, Write::User { name: b, .. }] if a == "Alice" && b == "alice2"
    ));
}

#[test]
fn registration_refuses_bad_names_and_weak_passwords_with_reasons() {
    let mut w = World::new();
    let c = w.connect();
    for (name, password, code) in [
        ("a", PW, ErrorCode::InvalidName),
        ("no spaces", PW, ErrorCode::InvalidName),
        ("bob", "short", ErrorCode::WeakPassword),
        ("bob", "bob-is-my-name-1", ErrorCode::WeakPassword),
    ] {
        let req = Request::Register {
            name: name.into(),
            password: password.into(),
        };
        assert_eq!(w.error(c, req), code, "{name} / {password}");
    }
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_reply() {
    let mut w = World::new();
    w.user("alice");
    let wrong = w.login("alice", "not the password at all");
    let unknown = w.login("nobody", PW);
    assert_eq!(wrong, unknown);
    assert!(matches!(
        wrong,
        Some(Reply::Error {
            code: ErrorCode::BadCredentials,
            ..
        })
    ));
    assert!(matches!(
        w.login("ALICE", PW),
        Some(Reply::LoggedIn { name, .. }) if name == "alice"
    ));
}

#[test]
fn nothing_but_login_is_allowed_before_it() {
    let mut w = World::new();
    let c = w.connect();
    for req in [
        Request::JoinRoom { room: 1 },
        Request::Say { text: "hi".into() },
        Request::Inbox,
        Request::SendPrivate {
            to: "x".into(),
            text: "y".into(),
        },
    ] {
        assert_eq!(w.error(c, req), ErrorCode::NotAllowed);
    }
    assert_eq!(w.ask(c, Request::Ping), Some(Reply::Pong));
}

#[test]
fn room_messages_are_delivered_only_after_they_are_committed() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    assert!(matches!(w.join(bob, room), Reply::Room { members, .. } if members == ["ann", "bob"]));
    assert_eq!(
        w.events(ann),
        vec![Event::Joined {
            room,
            name: "bob".into()
        }]
    );

    w.auto_commit = false;
    assert_eq!(w.say(bob, "hello"), None, "acknowledged before stored");
    assert!(texts(&w.events(ann)).is_empty(), "delivered before stored");
    assert!(matches!(
        &w.uncommitted[..],
        [(_, Write::RoomMessage { text, .. })] if &**text == "hello"
    ));
    w.commit(true);
    assert_eq!(w.reply_to(bob, w.next_id - 1), Some(Reply::Ok));
    assert_eq!(texts(&w.events(ann)), ["bob: hello"]);
    assert_eq!(texts(&w.events(bob)), ["bob: hello"]);
}

#[test]
fn uncommitted_counts_the_messages_waiting_for_the_store() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    assert_eq!(w.hub.uncommitted(), 0);
    w.auto_commit = false;
    w.say(bob, "hello");
    let one = w.hub.uncommitted();
    let room_one = w.hub.room_uncommitted(bob);
    assert!(
        room_one > "hello".len() && room_one < one,
        "{room_one} {one}"
    );
    assert!(one > "hello".len(), "{one}");
    w.say(bob, &"x".repeat(1000));
    assert_eq!(w.hub.uncommitted(), 2 * one + 1000 - "hello".len());
    w.ask(
        ann,
        Request::SendPrivate {
            to: "bob".into(),
            text: "psst".into(),
        },
    );
    assert!(w.hub.uncommitted() > 2 * one + 1000);
    // The room's share: ann and bob are in it (and see the two lines);
    // the private message is not the room's.
    assert_eq!(
        w.hub.room_uncommitted(bob),
        2 * room_one + 1000 - "hello".len()
    );
    assert_eq!(w.hub.room_uncommitted(ann), w.hub.room_uncommitted(bob));
    assert_eq!(w.hub.room_uncommitted(cat), 0, "cat is in no room");
    w.commit(true);
    assert_eq!(w.hub.uncommitted(), 0, "a commit releases them all");
    assert_eq!(w.hub.room_uncommitted(bob), 0);
    w.say(bob, "lost");
    w.commit(false);
    assert_eq!(w.hub.uncommitted(), 0, "and so does a failed one");
}

#[test]
fn a_failed_commit_is_reported_and_nothing_is_delivered() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(ann);
    w.auto_commit = false;
    w.say(bob, "lost");
    w.commit(false);
    assert!(matches!(
        w.reply_to(bob, w.next_id - 1),
        Some(Reply::Error {
            code: ErrorCode::Unavailable,
            ..
        })
    ));
    assert!(texts(&w.events(ann)).is_empty());
}

#[test]
fn only_members_receive_a_rooms_messages() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let lobby = w.create_room(ann, "Lobby", 10);
    let other = w.create_room(cat, "Other", 10);
    w.join(bob, lobby);
    w.say(ann, "for the lobby");
    w.say(cat, "for the other room");
    assert_eq!(texts(&w.events(bob)), ["ann: for the lobby"]);
    assert_eq!(texts(&w.events(cat)), ["cat: for the other room"]);
    assert_ne!(lobby, other);
}

#[test]
fn a_joiner_sees_the_last_20_messages() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    for i in 0..25 {
        w.now += 200; // within the message budget of 5 a second
        w.say(ann, &format!("m{i}"));
    }
    let Reply::Room {
        history,
        room: info,
        ..
    } = w.join(bob, room)
    else {
        panic!("no room reply");
    };
    assert_eq!(info.admin, "ann");
    let got: Vec<&str> = history.iter().map(|l| &*l.text).collect();
    let want: Vec<String> = (5..25).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn capacity_missing_and_closed_rooms_are_refused_clearly() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let room = w.create_room(ann, "Pair", 2);
    w.join(bob, room);
    assert_eq!(
        w.error(cat, Request::JoinRoom { room }),
        ErrorCode::RoomFull
    );
    assert_eq!(
        w.error(cat, Request::JoinRoom { room: 99 }),
        ErrorCode::NoSuchRoom
    );
    w.ask(ann, Request::LeaveRoom);
    assert_eq!(
        w.error(cat, Request::JoinRoom { room }),
        ErrorCode::RoomClosed
    );
    assert_eq!(
        w.error(
            cat,
            Request::CreateRoom {
                name: "x".into(),
                capacity: 1
            }
        ),
        ErrorCode::InvalidCapacity
    );
}

#[test]
fn open_room_names_are_unique_until_the_room_closes() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.create_room(ann, "Lobby", 5);
    let taken = Request::CreateRoom {
        name: " LOBBY ".into(),
        capacity: 5,
    };
    assert_eq!(w.error(bob, taken), ErrorCode::RoomNameTaken);
    w.ask(ann, Request::LeaveRoom);
    w.create_room(bob, "lobby", 5);
}

#[test]
fn only_the_admin_kicks_and_the_kicked_hear_nothing_more() {
    let mut w = World::new();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.join(cat, room);
    assert_eq!(
        w.error(bob, Request::Kick { name: "cat".into() }),
        ErrorCode::NotAdmin
    );
    w.events(bob);
    w.events(ann);
    assert_eq!(
        w.ask(ann, Request::Kick { name: "Bob".into() }),
        Some(Reply::Ok)
    );
    assert_eq!(
        w.events(bob),
        vec![Event::Kicked {
            room,
            by: "ann".into()
        }]
    );
    let left = left(room, "bob", LeaveReason::Kicked);
    assert_eq!(w.events(cat), vec![left.clone()]);
    assert_eq!(w.events(ann), vec![left]);
    w.say(ann, "after the kick");
    assert!(w.events(bob).is_empty());
    assert_eq!(texts(&w.events(cat)), ["ann: after the kick"]);
    assert_eq!(
        w.error(bob, Request::Say { text: "hi".into() }),
        ErrorCode::NotMember
    );
}

#[test]
fn the_admin_leaving_or_dropping_closes_the_room_for_everyone() {
    for dropped in [false, true] {
        let mut w = World::new();
        let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
        let room = w.create_room(ann, "Lobby", 10);
        w.join(bob, room);
        w.join(cat, room);
        w.events(bob);
        if dropped {
            w.input(Input::Disconnected {
                conn: ann,
                reason: "reset".into(),
            });
        } else {
            w.ask(ann, Request::LeaveRoom);
        }
        let reason = if dropped {
            LeaveReason::AdminDisconnected
        } else {
            LeaveReason::AdminLeft
        };
        let closed = Event::RoomClosed { room, reason };
        assert_eq!(w.events(bob), vec![closed.clone()]);
        assert_eq!(w.events(cat), vec![closed]);
        assert!(matches!(w.committed.last(), Some(Write::CloseRoom { .. })));
        // Back at the menu: they may create or join rooms again.
        w.create_room(bob, "Next", 3);
    }
}

#[test]
fn a_member_dropping_is_announced() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(ann);
    w.input(Input::Disconnected {
        conn: bob,
        reason: "closed by the client".into(),
    });
    assert_eq!(
        w.events(ann),
        vec![left(room, "bob", LeaveReason::Disconnected)]
    );
}

#[test]
fn private_messages_reach_online_users_and_wait_for_offline_ones() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let send = |to: &str, text: &str| Request::SendPrivate {
        to: to.into(),
        text: text.into(),
    };
    assert_eq!(w.ask(ann, send("BOB", "hi bob")), Some(Reply::Ok));
    let got = w.events(bob);
    assert!(
        matches!(&got[..], [Event::PrivateMessage { line }] if &*line.from == "ann" && &*line.to == "bob")
    );

    w.input(Input::Disconnected {
        conn: bob,
        reason: "bye".into(),
    });
    w.ask(ann, send("bob", "while you were out"));
    // One from while bob was online and still unread, one while offline.
    assert!(matches!(
        w.login("bob", PW),
        Some(Reply::LoggedIn { unread: 2, .. })
    ));
    assert_eq!(w.error(ann, send("ann", "me")), ErrorCode::NotAllowed);
    assert_eq!(w.error(ann, send("nobody", "x")), ErrorCode::NoSuchUser);
    // Longer than any name, or not ASCII: nobody, as with any unknown name.
    let long = format!("bob{}", "b".repeat(model::MAX_USER_NAME));
    assert_eq!(w.error(ann, send(&long, "x")), ErrorCode::NoSuchUser);
    assert_eq!(w.error(ann, send("bØb", "x")), ErrorCode::NoSuchUser);
    let too_long = "x".repeat(MAX_TEXT_BYTES + 1);
    assert_eq!(w.error(ann, send("bob", &too_long)), ErrorCode::TooLong);
}

#[test]
fn delivery_target_lists_given_back_are_used_again() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    // A list the loop gave back, recognisable by its capacity, with stale
    // targets that must not be delivered to.
    w.hub.spare.clear();
    w.hub.recycle(vec![ConnId(999); 1234]);
    let send = Request::SendPrivate {
        to: "bob".into(),
        text: "hi".into(),
    };
    w.target_capacities.clear();
    assert_eq!(w.ask(ann, send), Some(Reply::Ok));
    assert_eq!(w.target_capacities, [1234]);
    assert!(!w.seen.contains_key(&ConnId(999)));
    assert_eq!(w.events(bob).len(), 1);
    assert_eq!(w.events(ann).len(), 1, "the sender's copy");
    // Given back again, and kept only up to a limit.
    assert_eq!(w.hub.spare.len(), 1);
    for _ in 0..2 * SPARE_LISTS {
        w.hub.recycle(Vec::new());
    }
    assert_eq!(w.hub.spare.len(), SPARE_LISTS);
}

#[test]
fn opening_a_dialogue_marks_it_read() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.ask(
        ann,
        Request::SendPrivate {
            to: "bob".into(),
            text: "one".into(),
        },
    );
    let reply = w.ask(bob, Request::OpenDialogue { with: "ann".into() });
    assert!(matches!(reply, Some(Reply::Dialogue { with, .. }) if with == "ann"));
    assert!(matches!(
        w.committed.last(),
        Some(Write::MarkRead { recipient, sender }) if *recipient == UserId(2) && *sender == UserId(1)
    ));
    assert!(matches!(
        w.login("bob", PW),
        Some(Reply::LoggedIn { unread: 0, .. })
    ));
}

#[test]
fn unread_counts_come_from_the_snapshot() {
    let mut w = World::with(Snapshot {
        users: vec![
            UserRow {
                id: UserId(1),
                name: "ann".into(),
                password_hash: fake_hash(PW),
            },
            UserRow {
                id: UserId(2),
                name: "bob".into(),
                password_hash: fake_hash(PW),
            },
        ],
        unread: vec![(UserId(2), UserId(1), 3)],
        next_user: UserId(3),
        next_room: RoomId(7),
        next_message: MessageId(50),
    });
    assert!(matches!(
        w.login("bob", PW),
        Some(Reply::LoggedIn { unread: 3, .. })
    ));
    let ann = w.connect();
    w.ask(
        ann,
        Request::Login {
            name: "ann".into(),
            password: PW.into(),
        },
    );
    assert_eq!(w.create_room(ann, "Seven", 2), 7);
    assert_eq!(
        w.error(ann, Request::JoinRoom { room: 6 }),
        ErrorCode::NotAllowed
    );
}

#[test]
fn a_second_login_replaces_the_first_session() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(ann);
    assert!(matches!(w.login("bob", PW), Some(Reply::LoggedIn { .. })));
    assert!(w.closed.contains(&bob));
    assert!(matches!(&w.events(bob)[..], [Event::Bye { .. }]));
    assert_eq!(
        w.events(ann),
        vec![left(room, "bob", LeaveReason::Disconnected)]
    );
}

#[test]
fn shutdown_closes_rooms_and_says_goodbye() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(bob);
    w.hub.shutdown(w.now);
    w.run_effects();
    let events = w.events(bob);
    assert_eq!(
        events[0],
        Event::RoomClosed {
            room,
            reason: LeaveReason::Shutdown
        }
    );
    assert!(matches!(events[1], Event::Bye { .. }));
    assert!(w.closed.contains(&ann) && w.closed.contains(&bob));
}

#[test]
fn history_is_trimmed_to_fit_a_frame() {
    let lines: Vec<usize> = (0..20).collect();
    let kept = fit_newest(lines, |_| 4096 + 32);
    assert_eq!(kept, (15..20).collect::<Vec<_>>());
    assert_eq!(preview(&"é".repeat(150)).chars().count(), PREVIEW_CHARS + 1);
}

#[test]
fn messages_past_the_budget_are_refused_and_not_sent() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(bob);
    // A burst of 10 goes through; the 11th at the same moment does not.
    let replies: Vec<Option<Reply>> = (0..11)
        .map(|i| {
            w.now -= 10; // hold the clock still: `input` adds 10 ms
            w.say(ann, &format!("m{i}"))
        })
        .collect();
    assert!(replies[..10].iter().all(|r| *r == Some(Reply::Ok)));
    assert!(matches!(
        &replies[10],
        Some(Reply::Error { code: ErrorCode::RateLimited, message }) if message.contains("not sent")
    ));
    assert_eq!(texts(&w.events(bob)).len(), 10);
    // 5 a second refill: after 200 ms one more is allowed.
    w.now += 200;
    assert_eq!(w.say(ann, "later"), Some(Reply::Ok));
}

#[test]
fn repeated_login_failures_are_held_back_longer_each_time() {
    let mut w = World::new();
    w.user("ann");
    let limits = Limits::default();
    for _ in 0..limits.free_login_failures {
        assert!(matches!(
            w.login("ann", "wrong password here"),
            Some(Reply::Error { .. })
        ));
    }
    // Now the attempt waits 1 s before it is even checked, whoever asks.
    let c = w.connect();
    let id = w.next_id;
    let login = Request::Login {
        name: "ann".into(),
        password: PW.into(),
    };
    assert_eq!(w.ask(c, login.clone()), None);
    let asked = w.now;
    assert!(w.hub.poll_timeout().is_some_and(|t| t <= asked + 1000));
    w.now = asked + 999;
    w.hub.handle_timeout(w.now);
    w.run_effects();
    assert_eq!(w.reply_to(c, id), None);
    w.now = asked + 1000;
    w.hub.handle_timeout(w.now);
    w.run_effects();
    assert!(matches!(w.reply_to(c, id), Some(Reply::LoggedIn { .. })));
    // The success cleared the account's count, but this address keeps its own.
    let again = w.connect();
    let id = w.next_id;
    assert_eq!(w.ask(again, login), None);
    assert_eq!(w.reply_to(again, id), None);
}

#[test]
fn unknown_names_are_throttled_like_real_ones() {
    let mut w = World::new();
    for _ in 0..3 {
        w.login("ghost", "wrong password here");
    }
    let c = w.connect();
    let id = w.next_id;
    w.ask(
        c,
        Request::Login {
            name: "ghost".into(),
            password: PW.into(),
        },
    );
    assert_eq!(w.reply_to(c, id), None, "held back");
}

#[test]
fn a_client_that_does_not_log_in_in_time_is_closed() {
    let mut w = World::new();
    let c = w.connect();
    let limits = Limits::default();
    w.now += limits.login_timeout + limits.sweep;
    w.hub.handle_timeout(w.now);
    w.run_effects();
    assert!(w.closed.contains(&c));
    assert!(matches!(&w.events(c)[..], [Event::Bye { reason }] if reason.contains("no login")));
}

#[test]
fn silent_clients_are_pinged_then_dropped_and_their_room_told() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let room = w.create_room(ann, "Lobby", 10);
    w.join(bob, room);
    w.events(bob);
    w.events(ann);
    let limits = Limits::default();
    // Ann keeps talking; Bob says nothing.
    let mut t = 0;
    while t < limits.idle_close + 2 * limits.sweep {
        w.now += limits.sweep;
        t += limits.sweep;
        w.hub.handle_timeout(w.now);
        w.run_effects();
        if t % 30_000 == 0 {
            w.ask(ann, Request::Ping);
        }
    }
    let bob_saw = w.events(bob);
    assert_eq!(
        bob_saw.iter().filter(|e| **e == Event::Ping).count(),
        1,
        "{bob_saw:?}"
    );
    assert!(matches!(bob_saw.last(), Some(Event::Bye { .. })));
    assert!(w.closed.contains(&bob) && !w.closed.contains(&ann));
    assert!(
        w.events(ann)
            .contains(&left(room, "bob", LeaveReason::Disconnected))
    );
}

#[test]
fn an_account_that_could_not_be_stored_is_undone() {
    let mut w = World::new();
    let c = w.connect();
    w.auto_commit = false;
    let id = w.next_id;
    let register = Request::Register {
        name: "ann".into(),
        password: PW.into(),
    };
    assert_eq!(w.ask(c, register.clone()), None, "answered before stored");
    w.commit(false);
    assert!(matches!(
        w.reply_to(c, id),
        Some(Reply::Error {
            code: ErrorCode::Unavailable,
            ..
        })
    ));
    // Logged out again, and the name is free once more.
    assert_eq!(w.error(c, Request::Inbox), ErrorCode::NotAllowed);
    w.auto_commit = true;
    assert!(matches!(
        w.ask(c, register),
        Some(Reply::LoggedIn { name, .. }) if name == "ann"
    ));
}

#[test]
fn a_room_that_could_not_be_stored_is_closed() {
    let mut w = World::new();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.auto_commit = false;
    let id = w.next_id;
    let create = Request::CreateRoom {
        name: "Lobby".into(),
        capacity: 5,
    };
    assert_eq!(w.ask(ann, create.clone()), None);
    // Someone joins before the room's row is committed.
    assert!(matches!(w.join(bob, 1), Reply::Room { .. }));
    w.commit(false);
    assert!(matches!(
        w.reply_to(ann, id),
        Some(Reply::Error {
            code: ErrorCode::Unavailable,
            ..
        })
    ));
    assert_eq!(
        w.events(bob),
        vec![Event::RoomClosed {
            room: 1,
            reason: LeaveReason::StoreFailed
        }]
    );
    // Nothing about the failed room is written again, and its name is free.
    assert!(w.uncommitted.is_empty());
    w.auto_commit = true;
    assert!(matches!(w.ask(ann, create), Some(Reply::Room { .. })));
}

#[test]
fn after_a_logout_the_login_deadline_does_not_apply() {
    let mut w = World::new();
    let ann = w.user("ann");
    w.ask(ann, Request::Logout);
    let limits = Limits::default();
    w.now += limits.login_timeout + limits.sweep;
    w.hub.handle_timeout(w.now);
    w.run_effects();
    assert!(!w.closed.contains(&ann));
}
