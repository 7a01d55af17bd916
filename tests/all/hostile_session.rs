//! Hostile peers on a live session. A client that finished the handshake and
//! logged in flips a bit of a frame, replays a frame it already sent, sends
//! a frame longer than a Noise message may be, or names another user as the
//! sender of its request, while two members chat in its room.
//!
//! Each attack must end the attacker's connection and nothing else: the two
//! members get every message of the other exactly once and in order, before,
//! during and after the attacks; no request puts words in another user's
//! mouth; and the real binary's memory stays flat over hundreds of such
//! connections.

use crate::kit;
use crate::kit::{Client, Got, PASSWORD, RawClient, ServeProcess, TestServer, WAIT};
use chatapp::wire::frame;
use chatapp::wire::msg::{Event, LeaveReason, Reply, Request, ServerFrame};
use std::io::Write;
use std::process::Command;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The account every hostile session logs in to.
const HOSTILE: &str = "eve";
/// Messages each member says before the first attack and after the last.
const AROUND: usize = 20;
/// How long a member may take to work through the lines queued for it (each
/// waits for a commit, on a machine that may be busy).
const CATCH_UP: Duration = Duration::from_secs(60);

// ---- the two members who chat throughout ----

/// What the test tells a member's thread to do, in order.
enum Cmd {
    /// Say the next numbered line and wait for its `ok`.
    Say,
    /// Answer once every earlier command is done.
    Sync(mpsc::Sender<()>),
    /// Wait for `partner`'s line number `count - 1`, check that nothing
    /// follows it, and return every event heard.
    Finish { partner: String, count: usize },
}

/// The `n`-th line `name` says.
fn line(name: &str, n: usize) -> String {
    format!("{name} says {n}")
}

/// A member's thread: says what it is told to, keeping every event it hears.
/// It gives its client back rather than closing it, so that the other
/// member, perhaps still checking that nothing more comes, does not hear it
/// leave.
fn member(mut client: Client, cmds: mpsc::Receiver<Cmd>) -> (Vec<Event>, Client) {
    let mut heard = Vec::new();
    let mut said = 0;
    for cmd in cmds {
        match cmd {
            Cmd::Say => {
                client.say(&line(&client.name, said));
                said += 1;
                heard.extend(client.conn.pending_events());
            }
            Cmd::Sync(done) => {
                let _ = done.send(());
            }
            Cmd::Finish { partner, count } => {
                let last = line(&partner, count - 1);
                let is_last = |e: &Event| {
                    matches!(e, Event::RoomMessage { line, .. }
                        if *line.from == *partner && *line.text == last)
                };
                while !heard.iter().any(is_last) {
                    heard.push(client.next_event());
                }
                // Nothing trails the partner's last line: no late copy of
                // anything, no replayed frame delivered after the fact.
                client.expect_quiet();
                return (heard, client);
            }
        }
    }
    // The test failed before the finish; it reports why.
    (heard, client)
}

/// A member chatting on a thread of its own.
struct Member {
    name: String,
    cmds: mpsc::Sender<Cmd>,
    thread: Option<JoinHandle<(Vec<Event>, Client)>>,
    /// The connection, open until the member is dropped.
    client: Option<Client>,
    said: usize,
}

impl Member {
    fn start(client: Client) -> Member {
        let (cmds, rx) = mpsc::channel();
        let name = client.name.clone();
        let thread = thread::spawn(move || member(client, rx));
        Member {
            name,
            cmds,
            thread: Some(thread),
            client: None,
            said: 0,
        }
    }

    /// Queues `n` more lines; the thread says them while the test goes on.
    fn say(&mut self, n: usize) {
        for _ in 0..n {
            self.send(Cmd::Say);
            self.said += 1;
        }
    }

    /// Waits until every line queued so far is said and acknowledged.
    fn sync(&mut self) {
        let (tx, rx) = mpsc::channel();
        self.send(Cmd::Sync(tx));
        if rx.recv_timeout(CATCH_UP).is_err() {
            self.join(); // re-raises the thread's panic, if it had one
            panic!("{}: queued lines not said within {CATCH_UP:?}", self.name);
        }
    }

    fn send(&mut self, cmd: Cmd) {
        if self.cmds.send(cmd).is_err() {
            self.join();
        }
    }

    /// The thread's result; its panic becomes the test's.
    fn join(&mut self) -> Vec<Event> {
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok((heard, client)) => {
                self.client = Some(client);
                heard
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Creates the room of the two members (ann is its admin) and the hostile
/// account; returns the room and the members, chatting on their threads.
fn two_members(connect: impl Fn(&str) -> Client) -> (u64, [Member; 2]) {
    let mut ann = connect("ann");
    ann.register();
    let room = ann.create_room("ann's room", 10);
    let mut bob = connect("bob");
    bob.register();
    bob.join(room);
    ann.expect_event(&Event::Joined {
        room,
        name: "bob".into(),
    });
    connect(HOSTILE).register();
    (room, [Member::start(ann), Member::start(bob)])
}

/// Ends the chat and checks what each member heard: every line of both, once
/// and in order; the hostile sessions' honest lines, once each, and nothing
/// else of theirs; each session's arrival and departure.
fn finish_and_check(room: u64, members: [Member; 2], honest: &[String]) {
    let [mut ann, mut bob] = members;
    ann.send(Cmd::Finish {
        partner: bob.name.clone(),
        count: bob.said,
    });
    bob.send(Cmd::Finish {
        partner: ann.name.clone(),
        count: ann.said,
    });
    let (ann_heard, bob_heard) = (ann.join(), bob.join());
    for (heard, me, partner) in [(ann_heard, &ann, &bob), (bob_heard, &bob, &ann)] {
        let said_by = |who: &str| -> Vec<String> {
            heard
                .iter()
                .filter_map(|e| match e {
                    Event::RoomMessage { room: r, line } if *r == room && *line.from == *who => {
                        Some(line.text.to_string())
                    }
                    _ => None,
                })
                .collect()
        };
        let expected =
            |who: &Member| -> Vec<String> { (0..who.said).map(|n| line(&who.name, n)).collect() };
        assert_eq!(
            said_by(&partner.name),
            expected(partner),
            "{}: every line of {}, exactly once, in order",
            me.name,
            partner.name
        );
        assert_eq!(
            said_by(&me.name),
            expected(me),
            "{}: every line of its own, exactly once, in order",
            me.name
        );
        assert_eq!(
            said_by(HOSTILE),
            honest,
            "{}: the hostile sessions' honest lines, once each; nothing of their attacks",
            me.name
        );
        let mut last_id = 0;
        for e in &heard {
            match e {
                Event::RoomMessage { room: r, line } => {
                    assert_eq!(*r, room, "{}: a message from another room", me.name);
                    assert!(
                        [&*me.name, &*partner.name, HOSTILE].contains(&&*line.from),
                        "{}: a line from {}, who never spoke: {line:?}",
                        me.name,
                        line.from
                    );
                    assert!(line.id > last_id, "{}: ids go up: {line:?}", me.name);
                    last_id = line.id;
                }
                Event::Joined { room: r, name } | Event::Left { room: r, name, .. } => {
                    assert_eq!((*r, name.as_str()), (room, HOSTILE), "{}: {e:?}", me.name);
                }
                other => panic!("{}: unexpected {other:?}", me.name),
            }
        }
        let count = |want: &dyn Fn(&Event) -> bool| heard.iter().filter(|e| want(e)).count();
        let arrivals = count(&|e| matches!(e, Event::Joined { .. }));
        let departures = count(&|e| {
            matches!(
                e,
                Event::Left {
                    reason: LeaveReason::Disconnected,
                    ..
                }
            )
        });
        assert_eq!(
            (arrivals, departures),
            (honest.len(), honest.len()),
            "{}: each hostile session joined, and left disconnected",
            me.name
        );
        println!(
            "{}: said {}, heard {} of {}'s {} lines and {} of its own, {} hostile sessions came and went",
            me.name,
            me.said,
            said_by(&partner.name).len(),
            partner.name,
            partner.said,
            said_by(&me.name).len(),
            departures
        );
    }
}

// ---- the hostile sessions ----

/// What a hostile session does once it is logged in, in the room, and has
/// said one honest line.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// A request with one bit of its ciphertext flipped.
    FlipCiphertext,
    /// A request with one bit of its authentication tag flipped.
    FlipTag,
    /// The honest line's frame again, byte for byte.
    Replay,
    /// A length prefix of 65535 followed by more bytes than that: 65535 of
    /// junk, then a well-sealed request that must never be read.
    Oversized,
    /// A frame of length zero (too short to hold a tag), then a well-sealed
    /// request that must never be read.
    Empty,
}

const ATTACKS: [Attack; 5] = [
    Attack::FlipCiphertext,
    Attack::FlipTag,
    Attack::Replay,
    Attack::Oversized,
    Attack::Empty,
];

/// One hostile session: logs in, joins `room`, says an honest line (which
/// it returns), then attacks. The server must close the connection without
/// a word: PROTOCOL.md section 10 says a frame that fails to decrypt gets no
/// `bye`, since nothing after it can be trusted. Until the close only the
/// room's traffic may arrive, no reply to anything sent after the honest
/// line.
fn hostile_session(addr: &str, room: u64, round: usize, attack: Attack) -> String {
    let mut raw = RawClient::open(addr);
    let reply = raw.request(Request::Login {
        name: HOSTILE.into(),
        password: PASSWORD.into(),
    });
    assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
    let reply = raw.request(Request::JoinRoom { room });
    assert!(matches!(reply, Reply::Room { .. }), "{reply:?}");

    let honest = format!("{HOSTILE} {round} honest");
    let mut honest_frame = Vec::new();
    let id = raw.seal(
        Request::Say {
            text: honest.clone(),
            client_id: 0,
        },
        &mut honest_frame,
    );
    raw.stream.write_all(&honest_frame).expect("send a line");
    assert_eq!(raw.reply_to(id), Reply::Ok, "the honest line");

    let sealed = |raw: &mut RawClient, what: &str| {
        let mut out = Vec::new();
        let text = format!("{HOSTILE} {round} {what}");
        raw.seal(Request::Say { text, client_id: 0 }, &mut out);
        out
    };
    let bytes = match attack {
        Attack::FlipCiphertext => {
            let mut bytes = sealed(&mut raw, "flipped ciphertext");
            let middle = frame::HEADER + (bytes.len() - frame::HEADER - frame::TAG) / 2;
            bytes[middle] ^= 0x10;
            bytes
        }
        Attack::FlipTag => {
            let mut bytes = sealed(&mut raw, "flipped tag");
            *bytes.last_mut().unwrap() ^= 0x01;
            bytes
        }
        Attack::Replay => honest_frame,
        Attack::Oversized => {
            let mut bytes = vec![0xff, 0xff];
            bytes.extend((0..frame::MAX_FRAME).map(|i| (i * 131 + round) as u8));
            bytes.extend(sealed(&mut raw, "smuggled after an oversized frame"));
            bytes
        }
        Attack::Empty => {
            let mut bytes = vec![0, 0];
            bytes.extend(sealed(&mut raw, "smuggled after an empty frame"));
            bytes
        }
    };
    kit::write_ignoring_close(&mut raw.stream, &bytes);

    let deadline = Instant::now() + WAIT;
    loop {
        match raw.read(deadline.saturating_duration_since(Instant::now())) {
            Got::Frame(ServerFrame::Event {
                event: Event::RoomMessage { .. } | Event::Joined { .. } | Event::Left { .. },
            }) => {}
            Got::Frame(other) => panic!("{attack:?}: only the close may follow, got {other:?}"),
            Got::Closed => return honest,
            Got::Nothing => panic!("{attack:?}: the connection is still open after {WAIT:?}"),
        }
    }
}

/// Two members chat while `rounds` hostile sessions come, say a line,
/// attack and are shut out, one after another, cycling through [`ATTACKS`].
/// At each round listed in `checkpoints` (`rounds` meaning after the last),
/// the members are first brought up to date, so nothing is in flight, and
/// then `at_checkpoint` runs.
fn chat_through_attacks(
    addr: &str,
    connect: impl Fn(&str) -> Client,
    rounds: usize,
    lines_per_round: usize,
    checkpoints: &[usize],
    mut at_checkpoint: impl FnMut(usize),
) {
    let (room, mut members) = two_members(connect);
    let mut checkpoint = |round: usize, members: &mut [Member; 2]| {
        if checkpoints.contains(&round) {
            members.iter_mut().for_each(Member::sync);
            at_checkpoint(round);
        }
    };

    // Before: the chat is under way, every line delivered.
    for m in &mut members {
        m.say(AROUND);
    }
    members.iter_mut().for_each(Member::sync);

    // During: each round queues lines that the members say while the
    // hostile session does its worst.
    let mut honest = Vec::new();
    for round in 0..rounds {
        checkpoint(round, &mut members);
        for m in &mut members {
            m.say(lines_per_round);
        }
        let attack = ATTACKS[round % ATTACKS.len()];
        honest.push(hostile_session(addr, room, round, attack));
    }
    checkpoint(rounds, &mut members);

    // After: more lines, then every line of both is checked.
    for m in &mut members {
        m.say(AROUND);
    }
    finish_and_check(room, members, &honest);
}

#[test]
fn a_flipped_bit_a_replay_or_an_oversized_frame_ends_only_the_senders_connection() {
    let server = TestServer::start_with(|config| {
        // The members' lines are the measure here, not the rate limit.
        config.limits.messages_per_second = 10_000;
        config.limits.message_burst = 10_000;
        config.limits.requests_per_second = 10_000;
        config.limits.request_burst = 10_000;
    });
    chat_through_attacks(
        &server.addr(),
        |name| server.anonymous(name),
        2 * ATTACKS.len(),
        5,
        &[],
        |_| {},
    );
}

/// Linux only: it reads the server's memory from /proc.
#[cfg(target_os = "linux")]
#[test]
fn two_hundred_hostile_sessions_leave_the_servers_memory_flat() {
    /// Sessions before the first measure: the allocator's arenas, SQLite's
    /// page cache and the server's buffers reach their working size.
    const WARM_UP: usize = 50;
    /// Sessions between the two measures.
    const ROUNDS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(ServeProcess::binary());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--scrypt-log-n", "4"])
        // Each hostile session leaves when it is shut out: no grace period.
        .args(["--grace", "0"])
        .args(["--message-rate", "10000", "--message-burst", "10000"])
        .args(["--request-rate", "10000", "--request-burst", "10000"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("CHATAPP_LOG", "error");
    let server = ServeProcess::spawn(command);
    let pid = server.pid();

    let mut rss = Vec::new();
    chat_through_attacks(
        &server.addr,
        |name| server.client(name),
        WARM_UP + ROUNDS,
        2,
        &[WARM_UP, WARM_UP + ROUNDS],
        |round| rss.push(kit::vm_rss_kib(pid).unwrap_or_else(|| panic!("no VmRSS at {round}"))),
    );
    let [before, after] = rss[..] else {
        panic!("two measures, got {rss:?}")
    };
    println!(
        "server VmRSS: {before} KiB after {WARM_UP} hostile sessions, {after} KiB after {ROUNDS} more \
         ({:+} KiB)",
        after as i64 - before as i64
    );
    // The only state the rounds are meant to leave is the lines they stored
    // (about 5 a round, a few hundred bytes each in SQLite's page cache), far
    // below the allowance; a connection's buffers (64 KiB for the oversized
    // frame) kept after its close would pass it within a few dozen rounds.
    assert!(
        after < before + 1024,
        "the server grew by {} KiB over {ROUNDS} hostile sessions",
        after as i64 - before as i64
    );
}

// ---- requests that name someone else as their sender ----

/// MessagePack written by hand: requests with fields the library would
/// never encode.
enum Mp {
    Str(String),
    Uint(u64),
    Map(Fields),
}

/// A map's entries, in order.
type Fields = Vec<(&'static str, Mp)>;

fn s(text: &str) -> Mp {
    Mp::Str(text.to_string())
}

impl Mp {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Mp::Str(text) => {
                match text.len() {
                    n @ 0..32 => out.push(0xa0 | n as u8),
                    n @ 32..256 => out.extend([0xd9, n as u8]),
                    n => panic!("a test string of {n} bytes"),
                }
                out.extend_from_slice(text.as_bytes());
            }
            Mp::Uint(n @ 0..128) => out.push(*n as u8),
            Mp::Uint(n) => {
                out.push(0xcf);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Mp::Map(entries) => {
                assert!(entries.len() < 16, "a fixmap");
                out.push(0x80 | entries.len() as u8);
                for (key, value) in entries {
                    s(key).encode(out);
                    value.encode(out);
                }
            }
        }
    }
}

/// What the server made of a request naming another sender. Today the
/// decoder ignores keys it does not know, so every such request is
/// `Delivered`, as the session's own; a decoder that refuses them (with an
/// error, or a `bye` and a close) passes as well.
#[derive(Debug)]
enum Outcome {
    /// Accepted; the line must appear as the session's own.
    Delivered,
    /// Refused with an error reply; the connection goes on.
    Refused,
    /// Refused with `bye` and a close.
    Closed,
}

#[test]
fn a_request_naming_another_sender_is_never_shown_as_theirs() {
    let server = TestServer::start();
    let (room, mut pair) = server.room_with("ann", &["bob"], 10);
    server.register("mallory");

    // Each names ann (the first account, so user id 1) as the sender in
    // another way; each text is unique, to find where it went.
    let said = |text: &str, extra: Fields| {
        let mut req = vec![("type", s("say")), ("text", s(text))];
        req.extend(extra);
        Mp::Map(req)
    };
    // (text, request, extra keys of the frame around it)
    let spoofs: Vec<(&str, Mp, Fields)> = vec![
        ("spoof 0", said("spoof 0", vec![("from", s("ann"))]), vec![]),
        (
            "spoof 1",
            said(
                "spoof 1",
                vec![
                    ("sender", s("ann")),
                    ("user", s("ann")),
                    ("user_id", Mp::Uint(1)),
                ],
            ),
            vec![],
        ),
        (
            "spoof 2",
            said(
                "spoof 2",
                vec![(
                    "sender",
                    Mp::Map(vec![("name", s("ann")), ("id", Mp::Uint(1))]),
                )],
            ),
            vec![],
        ),
        (
            "spoof 3",
            said("spoof 3", vec![]),
            vec![("from", s("ann")), ("user_id", Mp::Uint(1))],
        ),
        (
            "spoof 4",
            Mp::Map(vec![
                ("type", s("send_private")),
                ("to", s("bob")),
                ("text", s("spoof 4")),
                ("from", s("ann")),
                ("sender", s("ann")),
                ("user_id", Mp::Uint(1)),
            ]),
            vec![],
        ),
    ];

    let mut session: Option<RawClient> = None;
    let mut outcomes = Vec::new();
    for (n, (text, req, frame_extra)) in spoofs.into_iter().enumerate() {
        let raw = session.get_or_insert_with(|| {
            let mut raw = RawClient::open(&server.addr());
            let reply = raw.request(Request::Login {
                name: "mallory".into(),
                password: PASSWORD.into(),
            });
            assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
            let reply = raw.request(Request::JoinRoom { room });
            assert!(matches!(reply, Reply::Room { .. }), "{reply:?}");
            raw
        });
        let id = 1000 + n as u32;
        let mut frame = vec![("id", Mp::Uint(id.into())), ("req", req)];
        frame.extend(frame_extra);
        let mut plain = Vec::new();
        Mp::Map(frame).encode(&mut plain);
        let mut sealed = Vec::new();
        raw.seal_plaintext(&plain, &mut sealed);
        raw.stream.write_all(&sealed).expect("send a request");

        let deadline = Instant::now() + WAIT;
        let outcome = loop {
            match raw.read(deadline.saturating_duration_since(Instant::now())) {
                Got::Frame(ServerFrame::Reply { id: got, result }) if got == id => match result {
                    Reply::Ok => break Outcome::Delivered,
                    Reply::Error { message, .. } => {
                        assert!(!message.trim().is_empty(), "{text}: an error says why");
                        println!("{text}: refused: {message}");
                        break Outcome::Refused;
                    }
                    other => panic!("{text}: {other:?}"),
                },
                Got::Frame(ServerFrame::Event {
                    event: Event::Bye { reason, .. },
                }) => {
                    assert!(reason.contains("malformed"), "{text}: {reason}");
                    let closed = raw.read(WAIT);
                    assert_eq!(closed, Got::Closed, "{text}: a bye, then the close");
                    session = None;
                    println!("{text}: bye: {reason}");
                    break Outcome::Closed;
                }
                Got::Frame(ServerFrame::Event {
                    event: Event::RoomMessage { line, .. },
                }) => assert_eq!(&*line.from, "mallory", "{text}: the sender sees {line:?}"),
                Got::Frame(ServerFrame::Event {
                    event: Event::PrivateMessage { line },
                }) => assert_eq!(&*line.from, "mallory", "{text}: the sender sees {line:?}"),
                other => panic!("{text}: waiting for the reply: {other:?}"),
            }
        };
        println!("{text}: {outcome:?}");
        outcomes.push((text, outcome));
    }

    // A line from ann ends what the members heard; everything before it
    // has been delivered (each spoof was answered, so committed, first).
    pair[0].say("the real ann");
    let heard: Vec<Vec<Event>> = pair
        .iter_mut()
        .map(|member| {
            let mut heard = Vec::new();
            loop {
                let event = member.next_event();
                let end = matches!(&event, Event::RoomMessage { line, .. }
                    if &*line.text == "the real ann");
                heard.push(event);
                if end {
                    return heard;
                }
            }
        })
        .collect();
    for (member, heard) in pair.iter().zip(&heard) {
        let lines: Vec<(&str, &str)> = heard
            .iter()
            .filter_map(|e| match e {
                Event::RoomMessage { line, .. } => Some((&*line.from, &*line.text)),
                Event::PrivateMessage { line } => Some((&*line.from, &*line.text)),
                _ => None,
            })
            .collect();
        assert_eq!(
            lines.iter().filter(|(from, _)| *from == "ann").count(),
            1,
            "{}: ann is shown saying only what she said: {lines:?}",
            member.name
        );
        for (text, outcome) in &outcomes {
            let private = *text == "spoof 4";
            let shown: Vec<&str> = lines
                .iter()
                .filter(|(_, said)| said == text)
                .map(|(from, _)| *from)
                .collect();
            let expected = match outcome {
                Outcome::Delivered if !private || member.name == "bob" => vec!["mallory"],
                _ => vec![],
            };
            assert_eq!(
                shown, expected,
                "{}: who {text:?} is shown from",
                member.name
            );
        }
    }
}
