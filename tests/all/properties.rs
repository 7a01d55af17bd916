//! Property tests: the message codec round-trips every value and survives
//! any bytes, framing survives any way the bytes are cut up on the way, and
//! the hub's message and request budgets accept exactly what a reference
//! model of the product's limits accepts. Case counts are bounded so the
//! whole file runs in seconds; `PROPTEST_CASES=10000` runs more.

use chatapp::model::Millis;
use chatapp::server::directory::Resolved;
use chatapp::server::hub::harness::{self, Harness, Watch};
use chatapp::server::hub::{AuthJob, ConnId, Input, Limits, Output, StoreJob};
use chatapp::wire::frame;
use chatapp::wire::msg::{
    self, ClientFrame, Conversation, ErrorCode, Event, LeaveReason, PrivateLine, Reply, Request,
    RoomInfo, RoomLine, ServerFrame, Topic,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// `n` cases, unless `PROPTEST_CASES` asks for another number.
fn cases(n: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = n;
    }
    config
}

// ------------------------------------------------------------ strategies --

/// Any characters at all, a few of them.
fn text() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..24).prop_map(String::from_iter)
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (text(), text()).prop_map(|(name, password)| Request::Register { name, password }),
        (text(), text()).prop_map(|(name, password)| Request::Login { name, password }),
        text().prop_map(|token| Request::Resume { token }),
        Just(Request::Logout),
        (text(), any::<u32>()).prop_map(|(name, capacity)| Request::CreateRoom { name, capacity }),
        any::<u64>().prop_map(|room| Request::JoinRoom { room }),
        Just(Request::LeaveRoom),
        text().prop_map(|text| Request::Say { text, client_id: 0 }),
        Just(Request::Members),
        text().prop_map(|name| Request::Kick { name }),
        text().prop_map(|with| Request::OpenDialogue { with }),
        (text(), text()).prop_map(|(to, text)| Request::SendPrivate {
            to,
            text,
            client_id: 0
        }),
        text().prop_map(|with| Request::MarkRead { with }),
        Just(Request::Inbox),
        (topic(), any::<u64>(), any::<u32>()).prop_map(|(of, before, limit)| Request::History {
            of,
            before,
            limit
        }),
        Just(Request::Ping),
        (topic(), any::<u64>(), any::<u32>()).prop_map(|(of, after, limit)| Request::CatchUp {
            of,
            after,
            limit
        }),
    ]
}

fn topic() -> impl Strategy<Value = Topic> {
    prop_oneof![
        any::<u64>().prop_map(|room| Topic::Room { room }),
        text().prop_map(|with| Topic::Dialogue { with }),
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    (any::<u32>(), request()).prop_map(|(id, req)| ClientFrame { id, req })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    use ErrorCode::*;
    select(vec![
        NotAllowed,
        InvalidName,
        NameTaken,
        WeakPassword,
        BadCredentials,
        AlreadyLoggedIn,
        NoSuchRoom,
        RoomFull,
        RoomClosed,
        RoomNameTaken,
        InvalidCapacity,
        NotAdmin,
        NoSuchUser,
        NotMember,
        TooLong,
        Empty,
        RateLimited,
        Unavailable,
    ])
}

fn leave_reason() -> impl Strategy<Value = LeaveReason> {
    use LeaveReason::*;
    select(vec![
        Left,
        Disconnected,
        Kicked,
        AdminLeft,
        AdminDisconnected,
        Shutdown,
        StoreFailed,
    ])
}

/// Does not compile once a variant is added to one of the message enums,
/// so that the strategies above are given the new variant too.
#[allow(dead_code)]
fn every_variant_has_a_strategy(
    request: Request,
    reply: Reply,
    event: Event,
    code: ErrorCode,
    reason: LeaveReason,
) {
    use ErrorCode::*;
    use LeaveReason::*;
    match request {
        Request::Register { .. }
        | Request::Login { .. }
        | Request::Resume { .. }
        | Request::Logout
        | Request::CreateRoom { .. }
        | Request::JoinRoom { .. }
        | Request::LeaveRoom
        | Request::Say { .. }
        | Request::Members
        | Request::Kick { .. }
        | Request::OpenDialogue { .. }
        | Request::SendPrivate { .. }
        | Request::MarkRead { .. }
        | Request::Inbox
        | Request::History { .. }
        | Request::CatchUp { .. }
        | Request::Ping => {}
    }
    match reply {
        Reply::Ok
        | Reply::Error { .. }
        | Reply::LoggedIn { .. }
        | Reply::Room { .. }
        | Reply::Members { .. }
        | Reply::Dialogue { .. }
        | Reply::RoomHistory { .. }
        | Reply::RoomCaughtUp { .. }
        | Reply::DialogueCaughtUp { .. }
        | Reply::Inbox { .. }
        | Reply::Pong => {}
    }
    match event {
        Event::RoomMessage { .. }
        | Event::Joined { .. }
        | Event::Left { .. }
        | Event::Kicked { .. }
        | Event::RoomClosed { .. }
        | Event::PrivateMessage { .. }
        | Event::Ping
        | Event::Bye { .. }
        | Event::Away { .. }
        | Event::Back { .. }
        | Event::Read { .. } => {}
    }
    match code {
        NotAllowed | InvalidName | NameTaken | WeakPassword | BadCredentials | AlreadyLoggedIn
        | NoSuchRoom | RoomFull | RoomClosed | RoomNameTaken | InvalidCapacity | NotAdmin
        | NoSuchUser | NotMember | TooLong | Empty | RateLimited | Unavailable => {}
    }
    match reason {
        Left | Disconnected | Kicked | AdminLeft | AdminDisconnected | Shutdown | StoreFailed => {}
    }
}

fn room_line() -> impl Strategy<Value = RoomLine> {
    (any::<u64>(), any::<u64>(), text(), text(), any::<i64>()).prop_map(
        |(id, seq, from, text, time)| RoomLine {
            id,
            seq,
            from: from.into(),
            text: text.into(),
            time,
        },
    )
}

fn private_line() -> impl Strategy<Value = PrivateLine> {
    (
        any::<u64>(),
        any::<u64>(),
        text(),
        text(),
        text(),
        any::<i64>(),
    )
        .prop_map(|(id, seq, from, to, text, time)| PrivateLine {
            id,
            seq,
            from: from.into(),
            to: to.into(),
            text: text.into(),
            time,
        })
}

fn reply() -> impl Strategy<Value = Reply> {
    let room_info =
        (any::<u64>(), text(), text(), any::<u32>()).prop_map(|(id, name, admin, capacity)| {
            RoomInfo {
                id,
                name,
                admin,
                capacity,
            }
        });
    let conversation = (text(), text(), text(), any::<i64>(), any::<u32>()).prop_map(
        |(with, last_from, last_text, last_time, unread)| Conversation {
            with,
            last_from,
            last_text,
            last_time,
            unread,
        },
    );
    prop_oneof![
        Just(Reply::Ok),
        (error_code(), text()).prop_map(|(code, message)| Reply::Error { code, message }),
        (text(), any::<u32>(), text(), any::<Option<u32>>()).prop_map(
            |(name, unread, token, node)| Reply::LoggedIn {
                name,
                unread,
                token,
                node
            }
        ),
        (room_info, vec(text(), 0..4), vec(room_line(), 0..4)).prop_map(
            |(room, members, history)| Reply::Room {
                room,
                members,
                history
            }
        ),
        vec(text(), 0..4).prop_map(|members| Reply::Members { members }),
        (text(), vec(private_line(), 0..4))
            .prop_map(|(with, history)| Reply::Dialogue { with, history }),
        (any::<u64>(), vec(room_line(), 0..4))
            .prop_map(|(room, history)| Reply::RoomHistory { room, history }),
        (any::<u64>(), any::<u64>(), vec(room_line(), 0..4)).prop_map(
            |(room, skipped, history)| Reply::RoomCaughtUp {
                room,
                skipped,
                history
            }
        ),
        (text(), any::<u64>(), vec(private_line(), 0..4)).prop_map(|(with, skipped, history)| {
            Reply::DialogueCaughtUp {
                with,
                skipped,
                history,
            }
        }),
        vec(conversation, 0..4).prop_map(|conversations| Reply::Inbox { conversations }),
        Just(Reply::Pong),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (any::<u64>(), room_line()).prop_map(|(room, line)| Event::RoomMessage { room, line }),
        (any::<u64>(), text()).prop_map(|(room, name)| Event::Joined { room, name }),
        (any::<u64>(), text(), leave_reason()).prop_map(|(room, name, reason)| Event::Left {
            room,
            name,
            reason
        }),
        (any::<u64>(), text()).prop_map(|(room, by)| Event::Kicked { room, by }),
        (any::<u64>(), leave_reason())
            .prop_map(|(room, reason)| Event::RoomClosed { room, reason }),
        private_line().prop_map(|line| Event::PrivateMessage { line }),
        Just(Event::Ping),
        (text(), any::<bool>()).prop_map(|(reason, resume)| Event::Bye { reason, resume }),
        (text(), any::<u32>()).prop_map(|(with, unread)| Event::Read { with, unread }),
        (any::<u64>(), text()).prop_map(|(room, name)| Event::Away { room, name }),
        (any::<u64>(), text()).prop_map(|(room, name)| Event::Back { room, name }),
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (any::<u32>(), reply()).prop_map(|(id, result)| ServerFrame::Reply { id, result }),
        event().prop_map(|event| ServerFrame::Event { event }),
    ]
}

// ----------------------------------------------------------------- codec --

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn client_frames_round_trip(value in client_frame()) {
        let bytes = msg::encode(&value).unwrap();
        prop_assert_eq!(msg::decode::<ClientFrame>(&bytes).unwrap(), value);
    }

    #[test]
    fn server_frames_round_trip(value in server_frame()) {
        let bytes = msg::encode(&value).unwrap();
        prop_assert_eq!(msg::decode::<ServerFrame>(&bytes).unwrap(), value);
    }

    /// Any bytes at all: an error at worst, never a panic.
    #[test]
    fn decoding_any_bytes_does_not_panic(bytes in vec(any::<u8>(), 0..256)) {
        let _ = msg::decode::<ClientFrame>(&bytes);
        let _ = msg::decode::<ServerFrame>(&bytes);
        msg::decode_each::<ServerFrame>(&bytes).for_each(drop);
    }

    /// A real message damaged on the way (bytes changed, cut short or
    /// extended) decodes to an error or to some value, never a panic; the
    /// undamaged message still decodes.
    #[test]
    fn damaged_messages_do_not_panic(
        value in client_frame(),
        flips in vec((any::<Index>(), any::<u8>()), 0..4),
        cut in any::<Index>(),
        tail in vec(any::<u8>(), 0..8),
    ) {
        let bytes = msg::encode(&value).unwrap();
        let mut bad = bytes.clone();
        for (at, x) in flips {
            let at = at.index(bad.len());
            bad[at] ^= x;
        }
        let _ = msg::decode::<ClientFrame>(&bad);
        let _ = msg::decode::<ClientFrame>(&bad[..cut.index(bad.len() + 1)]);
        bad.extend(tail);
        let _ = msg::decode::<ClientFrame>(&bad);
        prop_assert_eq!(msg::decode::<ClientFrame>(&bytes).unwrap(), value);
    }
}

// --------------------------------------------------------------- framing --

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => vec(any::<u8>(), 0..300),
        1 => (frame::MAX_FRAME - 8..=frame::MAX_FRAME, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

proptest! {
    #![proptest_config(cases(300))]

    /// Frames pushed one after another come back out whole and in order,
    /// however the bytes are split between reads.
    #[test]
    fn frames_survive_any_split(bodies in vec(body(), 0..8), cuts in vec(any::<Index>(), 0..8)) {
        let mut wire = Vec::new();
        for body in &bodies {
            frame::push(&mut wire, body);
        }
        prop_assert_eq!(
            wire.len(),
            bodies.iter().map(|b| frame::HEADER + b.len()).sum::<usize>()
        );
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.extend([0, wire.len()]);
        points.sort_unstable();
        points.dedup();

        let mut inbox = Vec::new();
        let mut got = Vec::new();
        for read in points.windows(2) {
            inbox.extend_from_slice(&wire[read[0]..read[1]]);
            while let Some((body, used)) = frame::parse(&inbox) {
                got.push(body.to_vec());
                inbox.drain(..used);
            }
        }
        prop_assert!(inbox.is_empty(), "{} bytes left over", inbox.len());
        prop_assert_eq!(got, bodies);
    }
}

// ---------------------------------------------------------------- limits --

/// The product's budgets (`../shared/product.md`, issue 4 point 5), written
/// here independently of the server's code.
const MESSAGE_BURST: i64 = 10;
const MESSAGES_PER_SECOND: i64 = 5;
const REQUEST_BURST: i64 = 50;
const REQUESTS_PER_SECOND: i64 = 20;

/// The reference model: a token bucket stated as the generic cell rate
/// algorithm. Each allowed event pushes a theoretical arrival time one
/// interval on; an event is allowed when it comes no more than
/// `burst - 1` intervals ahead of it. Time seen by a budget never goes
/// backwards (a clock that steps back earns nothing).
struct Budget {
    interval: Millis,
    tolerance: Millis,
    tat: Millis,
    seen: Millis,
}

impl Budget {
    /// Full at `now`.
    fn new(burst: i64, per_second: i64, now: Millis) -> Budget {
        assert_eq!(1000 % per_second, 0, "whole milliseconds per token");
        let interval = 1000 / per_second;
        Budget {
            interval,
            tolerance: (burst - 1) * interval,
            tat: now,
            seen: now,
        }
    }

    fn allow(&mut self, now: Millis) -> bool {
        self.seen = self.seen.max(now);
        let tat = self.tat.max(self.seen);
        if tat - self.seen > self.tolerance {
            return false;
        }
        self.tat = tat + self.interval;
        true
    }
}

const PASSWORD: &str = harness::PASSWORD;

/// Holds the shared hub harness to this test's world: passwords are only
/// checked (never hashed), nothing is read from the store, and no
/// connection is ever closed.
struct Strict;

impl Watch for Strict {
    fn output(&mut self, out: &Output, _to: Option<Resolved<'_>>) {
        match out {
            Output::Auth(AuthJob::Hash { .. }) | Output::Store(StoreJob::Query { .. }) => {
                unreachable!("not asked for")
            }
            Output::Close { conn } => panic!("{conn:?} closed"),
            _ => {}
        }
    }
}

type World = Harness<Strict>;

/// The hub with the harness's workers, which check passwords by comparing,
/// and its store, which commits each write as soon as it is made; "ann"
/// and "bob" have accounts. The script runs the clock.
fn world() -> World {
    let accounts = harness::snapshot(vec![harness::account(1, "ann"), harness::account(2, "bob")]);
    let mut world = Harness::build(accounts, Limits::default(), Strict);
    world.now = 1_000_000;
    world.tick = 0;
    world
}

fn ask(world: &mut World, conn: ConnId, req: Request) -> Reply {
    world
        .ask(conn, req)
        .expect("every request here is answered at once")
}

/// Room messages a connection saw, in order.
fn room_messages(world: &World, conn: ConnId) -> Vec<String> {
    world.seen[&conn]
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Event {
                event: Event::RoomMessage { line, .. },
            } => Some(line.text.to_string()),
            _ => None,
        })
        .collect()
}

/// What a step of the script does: who, after how long, and whether it is
/// a chat message or just a request.
#[derive(Debug, Clone)]
struct Step {
    after: Millis,
    who: usize,
    say: bool,
}

/// A script: each case has its own tempo (the longest pause between two
/// steps), so that some hammer the budgets and some stay near their rates.
fn script() -> impl Strategy<Value = Vec<Step>> {
    select(vec![5i64, 60, 250, 1_000, 3_000]).prop_flat_map(|tempo| {
        let after = prop_oneof![
            10 => 0..=tempo,
            1 => -500..=0i64, // the wall clock stepped back
        ];
        let step = (after, prop::bool::weighted(0.8), prop::bool::weighted(0.7)).prop_map(
            |(after, first, say)| Step {
                after,
                who: usize::from(!first),
                say,
            },
        );
        vec(step, 1..200)
    })
}

proptest! {
    #![proptest_config(cases(200))]

    /// Two members of one room send messages (and other requests) at
    /// arbitrary moments. Each gets exactly the answers the model predicts,
    /// and both see exactly the accepted messages, in order.
    #[test]
    fn message_and_request_budgets_match_the_model(steps in script()) {
        let limits = Limits::default();
        prop_assert_eq!(i64::from(limits.message_burst), MESSAGE_BURST);
        prop_assert_eq!(i64::from(limits.messages_per_second), MESSAGES_PER_SECOND);
        prop_assert_eq!(i64::from(limits.request_burst), REQUEST_BURST);
        prop_assert_eq!(i64::from(limits.requests_per_second), REQUESTS_PER_SECOND);

        let mut world = world();
        let conns = [ConnId(1), ConnId(2)];
        // The model follows each connection from the moment it connects,
        // setup requests included, as the hub's budgets do.
        let mut budgets: Vec<(Budget, Budget)> = conns
            .iter()
            .map(|_| {
                (
                    Budget::new(REQUEST_BURST, REQUESTS_PER_SECOND, world.now),
                    Budget::new(MESSAGE_BURST, MESSAGES_PER_SECOND, world.now),
                )
            })
            .collect();
        for (conn, name) in conns.iter().zip(["ann", "bob"]) {
            world.input(Input::Connected {
                conn: *conn,
                peer: format!("192.0.2.{}:40000", conn.0),
                ip: format!("192.0.2.{}", conn.0),
            });
            let login = Request::Login { name: name.into(), password: PASSWORD.into() };
            let logged_in = matches!(ask(&mut world, *conn, login), Reply::LoggedIn { .. });
            prop_assert!(logged_in);
        }
        let create = Request::CreateRoom { name: "lobby".into(), capacity: 10 };
        let created = ask(&mut world, conns[0], create);
        prop_assert!(matches!(created, Reply::Room { .. }), "{:?}", created);
        let joined = ask(&mut world, conns[1], Request::JoinRoom { room: 1 });
        prop_assert!(matches!(joined, Reply::Room { .. }), "{:?}", joined);
        for (requests, _) in &mut budgets {
            prop_assert!(requests.allow(world.now) && requests.allow(world.now));
        }

        // From here the script runs the clock. No deadline is checked
        // (nothing here calls handle_timeout), so pauses may be long.
        let mut accepted = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            world.now += step.after;
            let (requests, messages) = &mut budgets[step.who];
            let expect_ok = requests.allow(world.now) && (!step.say || messages.allow(world.now));
            let text = format!("message {n}");
            let req = if step.say {
                Request::Say { text: text.clone(), client_id: 0 }
            } else {
                Request::Members
            };
            let got = ask(&mut world, conns[step.who], req);
            match (&got, expect_ok) {
                (Reply::Ok, true) if step.say => accepted.push(text),
                (Reply::Members { .. }, true) if !step.say => {}
                (Reply::Error { code: ErrorCode::RateLimited, .. }, false) => {}
                _ => prop_assert!(
                    false,
                    "step {} ({:?}) at {}: got {:?}, the model says {}",
                    n, step, world.now, got, if expect_ok { "accepted" } else { "rate limited" }
                ),
            }
        }
        for conn in conns {
            prop_assert_eq!(&room_messages(&world, conn), &accepted);
        }
    }
}
