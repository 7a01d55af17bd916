//! The bodies of the fuzz targets. Each `fuzz_targets/<name>.rs` is a thin
//! libFuzzer entry point that calls the function of the same name here, and
//! `tests/all/fuzz_replay.rs` (a plain `cargo test` on stable) includes this same
//! file and runs every file of `fuzz/corpus/<name>/` and
//! `fuzz/artifacts/<name>/` through it. So this file uses nothing but
//! `chatapp`, `std`, `snow` (whose traits chatapp's cipher and X25519
//! implement) and the two reference implementations they are held up
//! against, `x25519-dalek` and `chacha20poly1305`: it has to compile in both
//! crates, which list those as dependencies (the main crate as
//! dev-dependencies).
//!
//! A target fails by panicking: a panic inside chatapp, or one of the
//! `assert!`s here, each of which states something that must hold for any
//! input whatever.

#![allow(dead_code)]

use chatapp::model::{MAX_TEXT_BYTES, MessageId, Millis, RoomId, UserId};
use chatapp::server::directory::Resolved;
use chatapp::server::hub::harness::{Harness, Job, Watch};
use chatapp::server::hub::{Answer, ConnId, Input, Limits, Output, Query, StoreJob};
use chatapp::store::{self, Snapshot, UserRow, Write};
use chatapp::wire::msg::{self, ClientFrame, Event, Reply, Request, ServerFrame};
use chatapp::wire::noise::{ClientHandshake, ServerHandshake, StaticKey};
use chatapp::wire::{WireError, cipher, dh, frame};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Reads a fuzz input as a stream of small decisions. Past the end it
/// yields zeros, so every input, however short, is a complete script.
struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    fn pick<T: Clone>(&mut self, pool: &[T]) -> T {
        pool[usize::from(self.u8()) % pool.len()].clone()
    }

    /// An index below `len`, which must not be zero.
    fn index(&mut self, len: usize) -> usize {
        usize::from(self.u16()) % len
    }
}

// ---------------------------------------------------------------- frame --

/// The frame decoder and the message decoder on arbitrary bytes: the whole
/// input as one message, then the input cut into frames with
/// [`frame::parse`] and every body decoded as a [`ClientFrame`] (what the
/// server reads) and as a [`ServerFrame`] (what the client reads).
pub fn frame(data: &[u8]) {
    decode_client(data);
    decode_server(data);
    let mut rest = data;
    let mut reframed = Vec::new();
    while let Some((body, used)) = frame::parse(rest) {
        assert_eq!(used, frame::HEADER + body.len());
        assert!(used <= rest.len());
        decode_client(body);
        decode_server(body);
        frame::push(&mut reframed, body);
        rest = &rest[used..];
    }
    // Re-framing what was parsed gives back the bytes it came from, and
    // what is left is an incomplete frame: too short for its own header,
    // or shorter than the length that header announces.
    assert_eq!(reframed, data[..data.len() - rest.len()]);
    if let Some(header) = rest.get(..frame::HEADER) {
        let announced = usize::from(u16::from_be_bytes([header[0], header[1]]));
        assert!(rest.len() < frame::HEADER + announced);
    }
}

/// Whatever decodes must encode and decode back to itself. A decoded value
/// may encode larger than the bytes it came from (a struct sent as an
/// array, say), so an encoding too large for a frame is not a failure.
macro_rules! round_trip {
    ($name:ident, $ty:ty) => {
        fn $name(bytes: &[u8]) {
            let Ok(value) = msg::decode::<$ty>(bytes) else {
                return;
            };
            let encoded = match msg::encode(&value) {
                Ok(encoded) => encoded,
                Err(WireError::TooLarge(_)) => return,
                Err(e) => panic!("{value:?} decoded but does not encode: {e}"),
            };
            let again = msg::decode::<$ty>(&encoded)
                .unwrap_or_else(|e| panic!("{value:?} encodes to bytes that do not decode: {e}"));
            assert_eq!(again, value, "the round trip changed the value");
            let encoded_again = msg::encode(&again).expect("it encoded a moment ago");
            assert_eq!(encoded_again, encoded, "the encoding is not stable");
        }
    };
}

round_trip!(decode_client, ClientFrame);
round_trip!(decode_server, ServerFrame);

// ------------------------------------------------------------ handshake --

fn server_key() -> &'static StaticKey {
    static KEY: OnceLock<StaticKey> = OnceLock::new();
    KEY.get_or_init(StaticKey::generate)
}

/// The Noise responder. The first byte chooses between a hostile client
/// that makes up every byte, and a real client whose handshake messages the
/// input may corrupt and whose transport frames carry plaintext from the
/// input (so the message decoder is reached through decryption too).
pub fn handshake(data: &[u8]) {
    let mut input = Bytes::new(data);
    if input.u8().is_multiple_of(2) {
        hostile_client(input.data);
    } else {
        real_client(&mut input);
    }
}

/// The first frame is the client's first message, as the event loop would
/// cut it from the wire; the rest are transport frames, which must all fail
/// to open: whoever wrote them does not have the session's keys.
fn hostile_client(data: &[u8]) {
    let Some((first, used)) = frame::parse(data) else {
        // Not even one frame: the whole input as a first message then.
        if let Ok((reply, _)) = ServerHandshake::new(server_key()).respond(data) {
            assert!(reply.len() <= frame::MAX_FRAME);
        }
        return;
    };
    let Ok((reply, mut server)) = ServerHandshake::new(server_key()).respond(first) else {
        return;
    };
    assert!(reply.len() <= frame::MAX_FRAME);
    let mut rest = &data[used..];
    let mut plain = Vec::new();
    while let Some((body, used)) = frame::parse(rest) {
        assert!(
            server.open_into(body, &mut plain).is_err(),
            "a forged transport frame opened"
        );
        rest = &rest[used..];
    }
}

fn real_client(input: &mut Bytes) {
    let (client, mut first) = ClientHandshake::start();
    let first_changed = corrupt(input, &mut first);
    let Ok((mut reply, mut server)) = ServerHandshake::new(server_key()).respond(&first) else {
        assert!(first_changed, "an untouched first message was refused");
        return;
    };
    let reply_changed = corrupt(input, &mut reply);
    let finished = client.finish(&reply);
    if first_changed || reply_changed {
        assert!(
            finished.is_err(),
            "the client finished a handshake whose messages were changed on the way"
        );
        return;
    }
    let pending = finished.expect("an untouched handshake completes");
    assert_eq!(pending.server_key(), server_key().public());
    let mut client = pending.accept();

    let mut wire = Vec::new();
    let mut plain = Vec::new();
    while !input.is_empty() {
        let op = input.u8();
        let len = usize::from(input.u16()) % (frame::MAX_PLAINTEXT + 1);
        let text = input.take(len).to_vec();
        wire.clear();
        if op % 4 == 3 {
            // Server to client: the reverse direction works the same way.
            server
                .seal_into(&text, &mut wire)
                .expect("a plaintext that fits seals");
            let (body, _) = frame::parse(&wire).expect("one whole frame");
            client
                .open_into(body, &mut plain)
                .expect("a sealed frame opens");
            assert_eq!(plain, text);
            decode_server(&plain);
            continue;
        }
        client
            .seal_into(&text, &mut wire)
            .expect("a plaintext that fits seals");
        let (body, used) = frame::parse(&wire).expect("one whole frame");
        assert_eq!(used, wire.len());
        match op % 4 {
            0 => {}
            1 => {
                // Tampered on the way: refused, and the genuine frame still opens.
                let mut bad = body.to_vec();
                let at = input.index(bad.len());
                bad[at] ^= input.u8() | 1;
                assert!(
                    server.open_into(&bad, &mut plain).is_err(),
                    "a tampered frame opened"
                );
            }
            _ => {
                // Cut short: refused, and the genuine frame still opens.
                let keep = input.index(body.len());
                assert!(
                    server.open_into(&body[..keep], &mut plain).is_err(),
                    "a truncated frame opened"
                );
            }
        }
        server
            .open_into(body, &mut plain)
            .expect("a sealed frame opens");
        assert_eq!(plain, text);
        decode_client(&plain);
        assert!(
            server.open_into(body, &mut plain).is_err(),
            "a replayed frame opened"
        );
    }
}

/// Maybe changes a handshake message on its way; says whether it did.
fn corrupt(input: &mut Bytes, message: &mut Vec<u8>) -> bool {
    match input.u8() % 8 {
        5 if !message.is_empty() => {
            let at = input.index(message.len());
            message[at] ^= input.u8() | 1;
        }
        6 if !message.is_empty() => {
            let keep = input.index(message.len());
            message.truncate(keep);
        }
        7 => {
            let len = usize::from(input.u8()) + 1;
            let extra = input.take(len);
            message.extend_from_slice(extra);
            return !extra.is_empty();
        }
        _ => return false,
    }
    true
}

// ------------------------------------------------------------------ hub --

/// Passwords hold this character and nothing else the hub is given does,
/// so any log line or error message holding it leaked a password.
const SECRET: char = '\u{1}';
const PASSWORDS: [&str; 4] = [
    "correct horse\u{1} battery staple",
    "another fine\u{1} passphrase",
    "short\u{1}",
    "ann\u{1} is not a good password",
];
const NAMES: [&str; 10] = [
    "ann",
    "bob",
    "cat",
    "ANN",
    "Dan.the-man_9",
    "xy",
    "thirty-two-characters-long-name_",
    "thirty-three-characters-long-name",
    "bøb",
    "",
];
const ROOM_IDS: [u64; 8] = [1, 2, 3, 4, 5, 0, u64::MAX, 1 << 63];
const CAPACITIES: [u32; 8] = [2, 3, 2, 1000, 0, 1, 1001, u32::MAX];

fn fake_hash(password: &str) -> String {
    format!("fake${}", password.replace(SECRET, "*"))
}

/// Free text from the input, without the password marker.
fn free_text(input: &mut Bytes, max: usize) -> String {
    let len = usize::from(input.u16()) % (max + 1);
    String::from_utf8_lossy(input.take(len)).replace(SECRET, "")
}

fn text(input: &mut Bytes) -> String {
    match input.u8() % 8 {
        0 => "hi".into(),
        1 => " \t ".into(),
        2 => "x".repeat(MAX_TEXT_BYTES),
        3 => "x".repeat(MAX_TEXT_BYTES + 1),
        4 => "é".repeat(MAX_TEXT_BYTES / 2 + usize::from(input.u8() % 2)),
        5 => "𝄞".repeat(usize::from(input.u8()) * 4),
        _ => free_text(input, 600),
    }
}

fn room_name(input: &mut Bytes) -> String {
    match input.u8() % 8 {
        0 => "lobby".into(),
        1 => " Lobby ".into(),
        2 => "   ".into(),
        3 => "r".repeat(50),
        4 => "r".repeat(51),
        5 => "a\u{7}b".into(),
        _ => free_text(input, 64),
    }
}

fn name(input: &mut Bytes) -> String {
    input.pick(&NAMES).to_string()
}

fn request(input: &mut Bytes) -> Request {
    match input.u8() % 14 {
        0 => Request::Register {
            name: name(input),
            password: input.pick(&PASSWORDS).into(),
        },
        1 => Request::Login {
            name: name(input),
            password: input.pick(&PASSWORDS).into(),
        },
        2 => Request::Logout,
        3 => Request::CreateRoom {
            name: room_name(input),
            capacity: input.pick(&CAPACITIES),
        },
        4 => Request::JoinRoom {
            room: input.pick(&ROOM_IDS),
        },
        5 => Request::LeaveRoom,
        6 | 7 => Request::Say {
            text: text(input),
            client_id: 0,
        },
        8 => Request::Members,
        9 => Request::Kick { name: name(input) },
        10 => Request::OpenDialogue { with: name(input) },
        11 => Request::SendPrivate {
            to: name(input),
            text: text(input),
            client_id: 0,
        },
        12 => match input.u8() % 3 {
            0 => Request::MarkRead { with: name(input) },
            1 => Request::Inbox,
            _ => Request::Ping,
        },
        _ => Request::Say {
            text: "hello".into(),
            client_id: 0,
        },
    }
}

/// The rules every output must follow, checked as the hub gives them: what
/// the fuzz target asserts, on top of the harness's own check that the
/// loop's directory agrees with the hub.
#[derive(Default)]
struct Rules {
    /// Connected and not yet disconnected.
    live: Vec<ConnId>,
    ever: HashSet<ConnId>,
    /// Told to close: the event loop reads nothing more from these.
    closing: HashSet<ConnId>,
    last_seq: u64,
    /// Committed room and private messages, by id.
    stored: HashMap<MessageId, Write>,
    /// Messages already delivered.
    delivered: HashSet<MessageId>,
    /// Request ids each connection sent, and the replies they got.
    asked: HashMap<ConnId, Vec<u32>>,
    replied: HashMap<(ConnId, u32), u32>,
}

impl Watch for Rules {
    fn output(&mut self, out: &Output, to: Option<Resolved<'_>>) {
        match out {
            Output::Send { conn, frame } => {
                assert!(
                    self.ever.contains(conn),
                    "sent to {conn:?}, never connected"
                );
                match frame {
                    ServerFrame::Reply { id, result } => {
                        let asked = self.asked.get(conn).is_some_and(|ids| ids.contains(id));
                        assert!(asked, "{conn:?} got a reply to {id}, which it never sent");
                        let n = self.replied.entry((*conn, *id)).or_default();
                        *n += 1;
                        assert_eq!(*n, 1, "{conn:?} got two replies to request {id}");
                        if let Reply::Error { message, .. } = result {
                            assert!(!message.contains(SECRET), "a password in {message:?}");
                        }
                    }
                    ServerFrame::Event { event } => {
                        assert!(
                            self.live.contains(conn),
                            "event {event:?} for {conn:?}, which is gone"
                        );
                        self.check_event(event);
                    }
                }
                fits(frame);
            }
            Output::Broadcast { audience, frame } => {
                // Resolved as the event loop resolves it.
                let conns: Vec<ConnId> = to.expect("a broadcast is resolved").collect();
                assert!(!conns.is_empty(), "a broadcast to nobody: {audience:?}");
                let distinct: HashSet<_> = conns.iter().collect();
                assert_eq!(
                    distinct.len(),
                    conns.len(),
                    "one event twice to one connection"
                );
                for conn in &conns {
                    assert!(
                        self.live.contains(conn),
                        "broadcast to {conn:?}, which is gone"
                    );
                }
                let ServerFrame::Event { event } = frame else {
                    panic!("a reply broadcast: {frame:?}");
                };
                self.check_event(event);
                fits(frame);
            }
            Output::Close { conn } => {
                assert!(
                    self.ever.contains(conn),
                    "closing {conn:?}, never connected"
                );
                self.closing.insert(*conn);
            }
            Output::Store(StoreJob::Write { seq, write }) => {
                assert_eq!(*seq, self.last_seq + 1, "writes are numbered in order");
                self.last_seq = *seq;
                if let Write::RoomMessage { text, .. } | Write::PrivateMessage { text, .. } = write
                {
                    assert!(
                        text.len() <= MAX_TEXT_BYTES,
                        "a {}-byte text stored",
                        text.len()
                    );
                    assert!(!text.trim().is_empty(), "an empty text stored");
                }
            }
            Output::Log { line, .. } => {
                assert!(!line.contains(SECRET), "a password in the log: {line:?}");
            }
            Output::Directory(_)
            | Output::Auth(_)
            | Output::Store(StoreJob::Query { .. } | StoreJob::Fill(_) | StoreJob::Orphans) => {}
        }
    }

    fn commit(&mut self, writes: &[(u64, Write)], ok: bool) {
        if ok {
            for (_, write) in writes {
                if let Write::RoomMessage { id, .. } | Write::PrivateMessage { id, .. } = write {
                    self.stored.insert(*id, write.clone());
                }
            }
        }
    }
}

impl Rules {
    /// A message is shown only once it is committed, only once, and as stored.
    fn check_event(&mut self, event: &Event) {
        let (id, room, text) = match event {
            Event::RoomMessage { room, line } => (line.id, Some(*room), &line.text),
            Event::PrivateMessage { line } => (line.id, None, &line.text),
            _ => return,
        };
        let id = MessageId(id as i64);
        match (self.stored.get(&id), room) {
            (
                Some(Write::RoomMessage {
                    room: r, text: t, ..
                }),
                Some(room),
            ) => {
                assert_eq!(r.0 as u64, room, "message {id:?} shown in another room");
                assert_eq!(t, text, "message {id:?} shown other than stored");
            }
            (Some(Write::PrivateMessage { text: t, .. }), None) => {
                assert_eq!(t, text, "message {id:?} shown other than stored");
            }
            (stored, _) => panic!("{event:?} shown, but what is committed is {stored:?}"),
        }
        assert!(self.delivered.insert(id), "message {id:?} delivered twice");
    }
}

/// The world around the hub: connections that come and go, workers that
/// answer in any order, a store that commits in order or fails, and a clock
/// that may even step back (the event loop reads the wall clock). It
/// follows the event loop's rule that a connection told to close is read
/// no more. The mechanics are the shared hub harness's, with its workers
/// and store told to wait for the script; [`Rules`] checks every output.
struct Sim {
    world: Harness<Rules>,
    /// The latest the clock has been (it may have stepped back since).
    latest: Millis,
}

impl Sim {
    fn new() -> Sim {
        // Two accounts exist already, so logging in is one step away.
        let snapshot = Snapshot {
            users: vec![
                UserRow {
                    id: UserId(1),
                    name: "ann".into(),
                    password_hash: fake_hash(PASSWORDS[0]),
                },
                UserRow {
                    id: UserId(2),
                    name: "Bob".into(),
                    password_hash: fake_hash(PASSWORDS[1]),
                },
            ],
            unread: vec![(UserId(1), UserId(2), 3)],
            dialogue_seqs: vec![(UserId(1), UserId(2), 3)],
            next_user: UserId(3),
            next_room: RoomId(3),
            next_message: MessageId(100),
            devices: Vec::new(),
        };
        let mut world = Harness::build(snapshot, Limits::default(), Rules::default());
        world.now = 1_000_000;
        world.tick = 0;
        world.hash = fake_hash;
        world.auto_answer = false;
        world.auto_commit = false;
        world.record = false;
        Sim {
            world,
            latest: 1_000_000,
        }
    }

    fn step(&mut self, input: &mut Bytes) {
        let world = &mut self.world;
        match input.u8() % 12 {
            0 | 1 => {
                let conn = ConnId(world.next_conn);
                world.next_conn += 1;
                world.watch.live.push(conn);
                world.watch.ever.insert(conn);
                let ip = input.pick(&["192.0.2.1", "192.0.2.2", "127.0.0.1"]);
                world.handle(Input::Connected {
                    conn,
                    peer: format!("{ip}:{}", 40_000 + conn.0),
                    ip: ip.into(),
                });
            }
            2..=5 => {
                let rules = &world.watch;
                let readable: Vec<ConnId> = rules
                    .live
                    .iter()
                    .copied()
                    .filter(|c| !rules.closing.contains(c))
                    .collect();
                if readable.is_empty() {
                    return;
                }
                let conn = readable[input.index(readable.len())];
                let id = world.next_id;
                world.next_id += 1;
                world.watch.asked.entry(conn).or_default().push(id);
                let req = request(input);
                world.handle(Input::Request {
                    conn,
                    frame: ClientFrame { id, req },
                });
            }
            6 => {
                let live = &mut world.watch.live;
                if live.is_empty() {
                    return;
                }
                let conn = live.remove(input.index(live.len()));
                world.handle(Input::Disconnected {
                    conn,
                    reason: "closed by the client".into(),
                });
            }
            7 => {
                if world.uncommitted.is_empty() {
                    return;
                }
                let count = 1 + input.index(world.uncommitted.len());
                let ok = !input.u8().is_multiple_of(8);
                world.commit_some(count, ok);
            }
            8 | 9 => {
                if world.jobs.is_empty() {
                    return;
                }
                let job = world.jobs.remove(input.index(world.jobs.len()));
                self.answer(job, input);
            }
            10 => self.settle(input),
            _ => {
                let b = i64::from(input.u8());
                world.now += match b % 5 {
                    0 => b,
                    1 => b * 100,
                    2 => b * 1_000,
                    3 => b * 10_000,
                    _ => -b * 10, // the wall clock stepped back
                };
                self.latest = self.latest.max(world.now);
                world.timeout();
            }
        }
    }

    /// Answers every job and commits every write, until there are none.
    fn settle(&mut self, input: &mut Bytes) {
        while !self.world.jobs.is_empty() || !self.world.uncommitted.is_empty() {
            if !self.world.jobs.is_empty() {
                let job = self.world.jobs.remove(0);
                self.answer(job, input);
            } else {
                self.world.commit(true);
            }
        }
    }

    /// The workers' answer: the harness's for passwords, and for a query
    /// rows (or a failure) made up from the input.
    fn answer(&mut self, job: Job, input: &mut Bytes) {
        let Job::Query { caller, query } = job else {
            return self.world.answer(job);
        };
        let answer = match (input.u8() % 8, query) {
            (0, _) => Answer::Failed("disk I/O error".into()),
            (_, Query::Inbox { user }) => Answer::Inbox(inbox(input, user)),
            (
                _,
                Query::Dialogue {
                    user, other, page, ..
                },
            ) => Answer::Dialogue {
                other,
                page,
                rows: dialogue(input, user, other),
            },
            (_, Query::Room { room, page, .. }) => Answer::Room {
                room,
                page,
                rows: Vec::new(),
            },
            // Only servers sharing a database ask; this one is alone.
            (_, Query::Device { .. }) => Answer::Device(None),
            (_, Query::Members { .. }) => Answer::Members(Vec::new()),
        };
        self.world.handle(Input::Answered { caller, answer });
    }

    /// The end of the script: the clock moves past every held login (past
    /// the latest time it showed, if it stepped back since), the workers
    /// answer and the store commits everything. Then every request of a
    /// connection that is still open has had exactly one reply.
    fn finish(&mut self, input: &mut Bytes) {
        self.settle(input);
        self.world.now =
            self.latest.max(self.world.now) + Limits::default().max_login_delay + 1_000;
        self.world.timeout();
        self.settle(input);
        let rules = &self.world.watch;
        for conn in &rules.live {
            if rules.closing.contains(conn) {
                continue;
            }
            for id in rules.asked.get(conn).into_iter().flatten() {
                assert!(
                    rules.replied.contains_key(&(*conn, *id)),
                    "request {id} of open {conn:?} was never answered"
                );
            }
        }
    }
}

/// Every frame the hub sends fits in one transport frame.
fn fits(frame: &ServerFrame) {
    if let Err(e) = msg::encode(frame) {
        panic!("the hub made a frame that cannot be sent ({e}): {frame:?}");
    }
}

fn user_id(input: &mut Bytes) -> UserId {
    UserId(i64::from(input.u8() % 6))
}

fn inbox(input: &mut Bytes, user: UserId) -> Vec<store::Conversation> {
    (0..input.u8())
        .map(|_| {
            let other = user_id(input);
            store::Conversation {
                other,
                other_name: name(input),
                last_sender: if input.u8().is_multiple_of(2) {
                    user
                } else {
                    other
                },
                last_text: text(input),
                last_time: i64::from(input.u16()),
                unread: u32::from(input.u8()),
            }
        })
        .collect()
}

fn dialogue(input: &mut Bytes, user: UserId, other: UserId) -> Vec<store::PrivateRow> {
    // The store answers with at most the last 50.
    (0..input.u8() % 51)
        .map(|i| {
            let (sender, recipient) = if input.u8().is_multiple_of(2) {
                (user, other)
            } else {
                (other, user)
            };
            let row = store::PrivateRow {
                id: MessageId(i64::from(i)),
                seq: u64::from(i) + 1,
                sender,
                sender_name: name(input),
                recipient,
                text: text(input),
                sent: i64::from(input.u16()),
            };
            // The byte that was the row's read flag before schema version
            // 2, still taken so that the saved corpus keeps its meaning.
            input.u8();
            row
        })
        .collect()
}

/// The chat core fed an arbitrary sequence of events (see [`Sim`]).
pub fn hub(data: &[u8]) {
    let mut input = Bytes::new(data);
    let mut sim = Sim::new();
    while !input.is_empty() {
        sim.step(&mut input);
    }
    sim.finish(&mut input);
}

// ------------------------------------------------------------------- dh --

/// `src/wire/dh.rs` (X25519 through the Edwards curve, and a cache of the
/// last public key) against x25519-dalek, on any 32-byte scalar (clamping
/// included: the bytes go in unclamped) and any 32-byte u-coordinate,
/// non-canonical (p and above, bit 255 set) and low-order ones included.
/// Input: the scalar, the u-coordinate, then one byte choosing how many
/// bytes of the scalar to `set` (snow pads a short key with zeros).
///
/// Neither side refuses a u-coordinate: a low-order one gives all zeros on
/// both, which x25519-dalek reports as not contributory; what is checked is
/// that the two agree on every output, and so on every all-zero output.
pub fn dh(data: &[u8]) {
    use snow::types::Dh;
    use x25519_dalek::{PublicKey, StaticSecret, X25519_BASEPOINT_BYTES, x25519};

    let mut input = Bytes::new(data);
    let k = array(&mut input);
    let u = array(&mut input);

    let mut ours = dh::FastDh25519::default();
    ours.set(&k);
    assert_eq!(ours.privkey(), k);
    let public = PublicKey::from(&StaticSecret::from(k));
    assert_eq!(ours.pubkey(), public.as_bytes(), "public key of {k:02x?}");
    assert_eq!(ours.pubkey(), x25519(k, X25519_BASEPOINT_BYTES));

    let mut shared = [0u8; 32];
    ours.dh(&u, &mut shared)
        .expect("any 32 bytes are a public key");
    let theirs = StaticSecret::from(k).diffie_hellman(&PublicKey::from(u));
    assert_eq!(shared, *theirs.as_bytes(), "X25519({k:02x?}, {u:02x?})");
    assert_eq!(shared, x25519(k, u));
    assert_eq!(shared == [0; 32], !theirs.was_contributory());

    // Bytes past the 32nd of a public key are not read; fewer than 32 are
    // refused, not padded.
    let mut longer = u.to_vec();
    longer.extend_from_slice(input.take(16));
    let mut again = [0u8; 32];
    ours.dh(&longer, &mut again)
        .expect("a longer key is cut to 32 bytes");
    assert_eq!(again, shared);
    let short = usize::from(input.u8()) % 32;
    assert!(ours.dh(&u[..short], &mut again).is_err());

    // A shorter private key, zero-padded; then the first key once more,
    // which must not come back with the other's public key from the cache.
    let len = usize::from(input.u8()) % 33;
    let mut padded = [0u8; 32];
    padded[..len].copy_from_slice(&k[..len]);
    let mut other = dh::FastDh25519::default();
    other.set(&k[..len]);
    assert_eq!(other.privkey(), padded);
    assert_eq!(other.pubkey(), x25519(padded, X25519_BASEPOINT_BYTES));
    let mut first = dh::FastDh25519::default();
    first.set(&k);
    assert_eq!(first.pubkey(), public.as_bytes());
}

/// The next 32 bytes (zeros past the end of the input).
fn array(input: &mut Bytes) -> [u8; 32] {
    let mut out = [0u8; 32];
    for byte in &mut out {
        *byte = input.u8();
    }
    out
}

// --------------------------------------------------------------- cipher --

/// `src/wire/cipher.rs` (ChaCha20-Poly1305 over ring, as snow's `Cipher`)
/// against RustCrypto's `chacha20poly1305`. Input: the key (32 bytes), the
/// counter (8 bytes, little-endian: Noise's nonce is 4 zero bytes and then
/// these, which is all a snow cipher can be given), the length of the
/// associated data (1 byte) and the data, two bytes choosing a bit to flip
/// and a length to cut to, and the rest as the plaintext.
///
/// Both must seal to the same bytes and open them again, through both of
/// our open paths; a flipped bit, a cut, another counter or other
/// associated data must be refused by both; and the plaintext read as a
/// sealed message (made-up bytes, or a genuine one in the RFC 8439 seeds)
/// must get the same answer from both.
pub fn cipher(data: &[u8]) {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
    use snow::params::CipherChoice;
    use snow::resolvers::CryptoResolver;

    const TAG: usize = 16;
    let mut input = Bytes::new(data);
    let key = array(&mut input);
    let mut counter = [0u8; 8];
    for byte in &mut counter {
        *byte = input.u8();
    }
    let n = u64::from_le_bytes(counter);
    let ad_len = usize::from(input.u8());
    let ad = input.take(ad_len);
    let (flip, cut) = (input.u8(), input.u8());
    let plaintext = input.data;

    let mut ours = cipher::Resolver::new()
        .resolve_cipher(&CipherChoice::ChaChaPoly)
        .expect("chatapp's resolver has ChaChaPoly");
    ours.set(&key);
    let reference = ChaCha20Poly1305::new(Key::from_slice(&key));
    let nonce_of = |n: u64| {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_le_bytes());
        nonce
    };
    let theirs_open = |n: u64, ad: &[u8], sealed: &[u8]| {
        reference
            .decrypt(
                Nonce::from_slice(&nonce_of(n)),
                Payload {
                    msg: sealed,
                    aad: ad,
                },
            )
            .ok()
    };
    // Our open with an output buffer as long as the sealed message, and
    // with one only as long as the plaintext: two paths in cipher.rs.
    let ours_open = |n: u64, ad: &[u8], sealed: &[u8]| {
        let mut roomy = vec![0u8; sealed.len()];
        let a = ours
            .decrypt(n, ad, sealed, &mut roomy)
            .ok()
            .map(|len| roomy[..len].to_vec());
        let mut exact = vec![0u8; sealed.len().saturating_sub(TAG)];
        let b = ours
            .decrypt(n, ad, sealed, &mut exact)
            .ok()
            .map(|len| exact[..len].to_vec());
        assert_eq!(a, b, "our two open paths disagree");
        a
    };

    let mut sealed = vec![0u8; plaintext.len() + TAG];
    assert_eq!(ours.encrypt(n, ad, plaintext, &mut sealed), sealed.len());
    let theirs = reference
        .encrypt(
            Nonce::from_slice(&nonce_of(n)),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .expect("chacha20poly1305 seals any message this short");
    assert_eq!(sealed, theirs, "sealed with key {key:02x?}, counter {n}");
    assert_eq!(ours_open(n, ad, &sealed).as_deref(), Some(plaintext));
    assert_eq!(theirs_open(n, ad, &sealed).as_deref(), Some(plaintext));

    let mut tampered = sealed.clone();
    let bit = usize::from(u16::from_le_bytes([flip, cut])) % (tampered.len() * 8);
    tampered[bit / 8] ^= 1 << (bit % 8);
    assert_eq!(ours_open(n, ad, &tampered), None, "bit {bit} flipped");
    assert_eq!(theirs_open(n, ad, &tampered), None, "bit {bit} flipped");

    let short = &sealed[..usize::from(cut) % sealed.len()];
    assert_eq!(ours_open(n, ad, short), None, "cut to {}", short.len());
    assert_eq!(theirs_open(n, ad, short), None, "cut to {}", short.len());

    let next = n.wrapping_add(1 << (flip % 64));
    assert_eq!(ours_open(next, ad, &sealed), None, "counter {next}");
    assert_eq!(theirs_open(next, ad, &sealed), None, "counter {next}");

    let mut other_ad = ad.to_vec();
    match other_ad.get_mut(usize::from(flip)) {
        Some(byte) => *byte ^= 1 << (cut % 8),
        None => other_ad.push(cut),
    }
    assert_eq!(ours_open(n, &other_ad, &sealed), None);
    assert_eq!(theirs_open(n, &other_ad, &sealed), None);

    assert_eq!(ours_open(n, ad, plaintext), theirs_open(n, ad, plaintext));
}
