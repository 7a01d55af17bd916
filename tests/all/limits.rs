//! The "Limits and bad input" table of the product, row by row, crossed
//! over real sockets with the deadlines shortened (the same code path,
//! smaller numbers). Each test also checks what the other clients see.
//!
//! Rows covered elsewhere: chat text past 4096 bytes in `rooms.rs`
//! (`chat_text_past_the_limit_or_empty_is_refused_and_not_sent`), the
//! 65535-byte frame in `bad_input.rs`, unsent output past 1 MiB in
//! `slow_clients.rs` (it needs the real binary to watch its memory).
//!
//! Run with `--nocapture` to read the figures.

use crate::kit;
use crate::kit::{Got, RawClient, TestServer, WAIT, left, ms, shorten, wait_closed};
use chatapp::wire::msg::{ErrorCode, Event, LeaveReason, Reply, Request, ServerFrame};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// Shortened deadlines: log in within 1.5 s; pinged after 1 s of silence,
/// dropped after 2 s.
const LOGIN: i64 = 1500;
const PING: i64 = 1000;
const CLOSE: i64 = 2000;
/// How late past a deadline the server may act: one sweep (a quarter of the
/// shortest deadline, as `chatapp serve` sets it) plus scheduling slack.
const LATE: Duration = Duration::from_millis(375 + 425);

fn millis(m: i64) -> Duration {
    Duration::from_millis(m as u64)
}

#[test]
fn a_connection_that_does_not_log_in_in_time_is_closed_and_no_one_else_is() {
    let server = TestServer::start_with(|c| shorten(c, LOGIN, 60_000, 120_000));
    let (room, mut pair) = server.room_with("ann", &["bob"], 5);
    let connected = Instant::now();
    // Connects and sends nothing at all.
    let mut bare = TcpStream::connect(server.addr()).expect("connect");
    // Completes the handshake, never logs in.
    let mut mute = server.anonymous("mute");
    // Completes the handshake and logs in with a third of the time left.
    let mut prompt = server.anonymous("prompt");

    thread::scope(|s| {
        let bare = s.spawn(|| {
            let closed = wait_closed(&mut bare, millis(LOGIN) + WAIT)
                .expect("the bare connection is closed");
            closed - connected
        });
        let mute = s.spawn(|| {
            let bye = match mute.conn.next_event(Some(millis(LOGIN) + WAIT)) {
                Ok(Some(Event::Bye { reason, .. })) => reason,
                other => panic!("mute: expected a bye, got {other:?}"),
            };
            let at = connected.elapsed();
            let after = mute.conn.next_event(Some(WAIT));
            assert!(
                matches!(after, Err(chatapp::client::proto::ClientError::Lost(_))),
                "mute: after the bye the connection closes: {after:?}"
            );
            (bye, at)
        });
        thread::sleep(millis(LOGIN - 500));
        prompt.register();
        let bare = bare.join().unwrap();
        let (bye, mute) = mute.join().unwrap();
        println!(
            "login deadline {LOGIN} ms: bare TCP closed after {:.0} ms, handshaken-but-silent told \
             {bye:?} after {:.0} ms",
            ms(bare),
            ms(mute)
        );
        for (what, at) in [("bare", bare), ("mute", mute)] {
            assert!(
                at >= millis(LOGIN) && at <= millis(LOGIN) + LATE,
                "{what} closed after {at:?}, the deadline is {LOGIN} ms"
            );
        }
        assert!(bye.starts_with("no login within"), "{bye}");
    });

    // The one who logged in in time stays, past the deadline, and is served.
    // The others may have been closed right at the deadline; letting the
    // real clock pass it is the behaviour under test, not a stand-in.
    let past = millis(LOGIN) + Duration::from_millis(250);
    thread::sleep(past.saturating_sub(connected.elapsed()));
    assert!(connected.elapsed() > past);
    prompt.expect_quiet();
    assert_eq!(prompt.request(Request::Ping), Reply::Pong);
    prompt.join(room);
    // The room saw none of it except prompt joining; it chats on.
    for member in &mut pair {
        member.expect_event(&Event::Joined {
            room,
            name: "prompt".into(),
        });
        member.expect_quiet();
    }
    pair[1].say("nothing happened here");
    for member in pair.iter_mut().chain([&mut prompt]) {
        member.expect_said(room, "bob", "nothing happened here");
    }
}

#[test]
fn a_silent_client_is_pinged_then_dropped_and_its_room_told_while_active_ones_stay() {
    let server = TestServer::start_with(|c| shorten(c, 10_000, PING, CLOSE));
    // ann answers pings (the client library does it while reading); cat
    // keeps talking; bob says nothing and answers nothing.
    let mut ann = server.register("ann");
    let room = ann.create_room("idle", 5);
    let mut bob = RawClient::open(&server.addr());
    let reply = bob.request(Request::Register {
        name: "bob".into(),
        password: kit::PASSWORD.into(),
    });
    assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
    // Bob's silence starts before his last request goes out: the server
    // hears it a moment later, so its idle clock starts no earlier.
    let bob_silent_since = Instant::now();
    assert!(matches!(
        bob.request(Request::JoinRoom { room }),
        Reply::Room { .. }
    ));
    ann.expect_event(&Event::Joined {
        room,
        name: "bob".into(),
    });
    let mut cat = server.register("cat");
    cat.join(room);
    ann.expect_event(&Event::Joined {
        room,
        name: "cat".into(),
    });
    let watch = millis(3 * CLOSE); // three whole idle periods

    let (bob_saw, ann_saw, cat_said) = thread::scope(|s| {
        let bob = s.spawn(|| {
            let mut ping = None;
            let mut bye = None;
            loop {
                match bob.read(millis(CLOSE) + WAIT) {
                    Got::Frame(ServerFrame::Event { event: Event::Ping }) => {
                        ping.get_or_insert(bob_silent_since.elapsed());
                    }
                    Got::Frame(ServerFrame::Event {
                        event: Event::Bye { reason, .. },
                    }) => bye = Some((reason, bob_silent_since.elapsed())),
                    Got::Frame(_) => {}
                    Got::Closed => break (ping, bye, bob_silent_since.elapsed()),
                    Got::Nothing => panic!("bob: still open long after the idle timeout"),
                }
            }
        });
        let cat = s.spawn(|| {
            let started = Instant::now();
            let mut said = 0;
            while started.elapsed() < watch {
                said += 1;
                cat.say(&format!("cat {said}"));
                thread::sleep(Duration::from_millis(400));
            }
            said
        });
        let started = Instant::now();
        let mut ann_saw = Vec::new();
        while started.elapsed() < watch {
            let left = watch.saturating_sub(started.elapsed());
            match ann.conn.next_event(Some(left)) {
                Ok(Some(event)) => ann_saw.push((event, bob_silent_since.elapsed())),
                Ok(None) => {}
                Err(e) => panic!("ann lost her connection: {e}"),
            }
        }
        (bob.join().unwrap(), ann_saw, cat.join().unwrap())
    });

    let (ping, bye, closed) = bob_saw;
    let ping = ping.expect("bob was pinged");
    let (reason, _) = bye.expect("bob was told why");
    println!(
        "silent client (ping {PING} ms, close {CLOSE} ms): pinged after {:.0} ms, told {reason:?} \
         and closed after {:.0} ms of silence",
        ms(ping),
        ms(closed)
    );
    // The server keeps time in whole milliseconds, so its deadlines may
    // fall up to 1 ms before the same span measured here.
    let tick = Duration::from_millis(1);
    assert!(
        ping + tick >= millis(PING) && ping <= millis(PING) + LATE,
        "{ping:?}"
    );
    assert!(
        closed + tick >= millis(CLOSE) && closed <= millis(CLOSE) + LATE,
        "{closed:?}"
    );
    assert_eq!(reason, "nothing heard from you for 2 s");

    // ann: pinged once per idle period, answered, never dropped; she heard
    // bob leave (disconnected) once, and every one of cat's messages.
    let pings = ann_saw.iter().filter(|(e, _)| *e == Event::Ping).count();
    let bob_left: Vec<Duration> = ann_saw
        .iter()
        .filter(|(e, _)| *e == left(room, "bob", LeaveReason::Disconnected))
        .map(|(_, at)| *at)
        .collect();
    let cat_lines: Vec<String> = ann_saw
        .iter()
        .filter_map(|(e, _)| match e {
            Event::RoomMessage { line, .. } if &*line.from == "cat" => Some(line.text.to_string()),
            _ => None,
        })
        .collect();
    let unexpected: Vec<&Event> = ann_saw
        .iter()
        .map(|(e, _)| e)
        .filter(|e| {
            !matches!(e, Event::Ping | Event::RoomMessage { .. })
                && !matches!(e, Event::Left { .. })
        })
        .collect();
    println!(
        "ann (answers pings) watched {:.1} s: pinged {pings} times, never dropped; heard bob leave \
         after {:.0} ms; cat (talks every 400 ms) said {cat_said}, none lost",
        watch.as_secs_f64(),
        ms(bob_left[0])
    );
    assert_eq!(bob_left.len(), 1, "ann hears bob leave once: {ann_saw:?}");
    assert!(unexpected.is_empty(), "ann saw {unexpected:?}");
    assert!(pings >= 2, "ann was pinged in each idle period: {pings}");
    let expected: Vec<String> = (1..=cat_said).map(|n| format!("cat {n}")).collect();
    assert_eq!(cat_lines, expected, "ann heard all of cat, in order");

    // cat was never pinged (he was never silent) and heard bob leave too.
    let cat_events: Vec<Event> = cat.conn.pending_events().collect();
    assert!(!cat_events.contains(&Event::Ping), "{cat_events:?}");
    assert!(cat_events.contains(&left(room, "bob", LeaveReason::Disconnected)));
    // Both are still in, and still talk.
    ann.say("still here after three idle periods");
    for member in [&mut ann, &mut cat] {
        member.wait_for("ann's last word", |e| match e {
            Event::RoomMessage { line, .. } if &*line.from == "ann" => Some(()),
            Event::Ping => None,
            other => panic!("unexpected {other:?}"),
        });
    }
    match ann.request(Request::Members) {
        Reply::Members { members } => assert_eq!(members, ["ann", "cat"]),
        other => panic!("{other:?}"),
    }
}

/// Sends all of `reqs` at once, then gathers the replies by id (within
/// [`WAIT`]); events met meanwhile are returned too.
fn pipelined(client: &mut kit::Client, reqs: Vec<Request>) -> (Vec<Reply>, Vec<Event>) {
    let ids: Vec<u32> = reqs
        .into_iter()
        .map(|r| client.conn.send(r).expect("send"))
        .collect();
    let mut replies: Vec<Option<Reply>> = vec![None; ids.len()];
    let mut events = Vec::new();
    let deadline = Instant::now() + WAIT;
    while replies.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.conn.next_frame(left) {
            Ok(Some(ServerFrame::Reply { id, result })) => {
                let at = ids.iter().position(|&i| i == id).expect("a reply to ours");
                assert!(replies[at].is_none(), "two replies to request {id}");
                replies[at] = Some(result);
            }
            Ok(Some(ServerFrame::Event { event })) => events.push(event),
            Ok(None) => panic!("{}: replies missing after {WAIT:?}", client.name),
            Err(e) => panic!("{}: {e}", client.name),
        }
    }
    (replies.into_iter().map(Option::unwrap).collect(), events)
}

/// A room message as (room, from, text), anything else as its debug form.
fn said(event: &Event) -> (u64, String, String) {
    match event {
        Event::RoomMessage { room, line } => (*room, line.from.to_string(), line.text.to_string()),
        other => (0, String::new(), format!("{other:?}")),
    }
}

fn burst(room: u64, n: u32) -> (u64, String, String) {
    (room, "ann".to_string(), format!("burst {n}"))
}

fn is_rate_limited(reply: &Reply, what: &str) -> bool {
    matches!(reply, Reply::Error { code: ErrorCode::RateLimited, message } if message.contains(what))
}

#[test]
fn the_eleventh_message_at_once_is_refused_and_not_delivered() {
    let server = TestServer::start();
    let (room, mut clients) = server.room_with("ann", &["bob"], 2);
    let says = |from: u32, to: u32| -> Vec<Request> {
        (from..=to)
            .map(|n| Request::Say {
                text: format!("burst {n}"),
                client_id: 0,
            })
            .collect()
    };
    let burst_sent = Instant::now();
    let (replies, mut ann_saw) = pipelined(&mut clients[0], says(1, 11));
    println!(
        "11 messages at once: {} accepted, the 11th {:?}",
        replies.iter().filter(|r| **r == Reply::Ok).count(),
        replies[10]
    );
    assert_eq!(&replies[..10], &vec![Reply::Ok; 10][..]);
    assert!(
        is_rate_limited(&replies[10], "was not sent"),
        "{:?}",
        replies[10]
    );
    // A private message draws on the same budget.
    let id = clients[0]
        .conn
        .send(Request::SendPrivate {
            to: "bob".into(),
            text: "psst".into(),
            client_id: 0,
        })
        .unwrap();
    let (private, events) = pipelined_reply(&mut clients[0], id);
    ann_saw.extend(events);
    assert!(is_rate_limited(&private, "5 a second"), "{private:?}");

    // 5 a second: 200 ms after the burst there is one token again, only one.
    thread::sleep(Duration::from_millis(210).saturating_sub(burst_sent.elapsed()));
    let (replies, events) = pipelined(&mut clients[0], says(12, 13));
    ann_saw.extend(events);
    println!(
        "{:.0} ms after the burst, 2 at once: {:?}",
        ms(burst_sent.elapsed()),
        replies
    );
    assert_eq!(replies[0], Reply::Ok);
    assert!(is_rate_limited(&replies[1], "was not sent"), "{replies:?}");

    // Everyone saw the eleven accepted, in order, and none of the refused
    // (ann's echoes partly came while she waited for her replies).
    while ann_saw.len() < 11 {
        ann_saw.push(clients[0].next_event());
    }
    let expected: Vec<_> = (1..=10).chain([12]).map(|n| burst(room, n)).collect();
    let got: Vec<_> = ann_saw.iter().map(said).collect();
    assert_eq!(got, expected, "ann's echoes");
    for n in (1..=10).chain([12]) {
        clients[1].expect_said(room, "ann", &format!("burst {n}"));
    }
    for member in &mut clients {
        member.expect_quiet();
    }
    // bob's budget is his own: untouched by ann's.
    let (replies, _) = pipelined(&mut clients[1], says(1, 10));
    assert_eq!(replies, vec![Reply::Ok; 10]);
}

/// Waits for the reply to request `id`; returns it and the events met.
fn pipelined_reply(client: &mut kit::Client, id: u32) -> (Reply, Vec<Event>) {
    let mut events = Vec::new();
    loop {
        match client.conn.next_frame(WAIT) {
            Ok(Some(ServerFrame::Reply { id: got, result })) if got == id => {
                return (result, events);
            }
            Ok(Some(ServerFrame::Reply { .. })) => {}
            Ok(Some(ServerFrame::Event { event })) => events.push(event),
            other => panic!("{}: waiting for reply {id}: {other:?}", client.name),
        }
    }
}

#[test]
fn the_fifty_first_request_at_once_is_refused() {
    let server = TestServer::start();
    // Anonymous: logging in would have spent a request already.
    let mut ann = server.anonymous("ann");
    let (replies, events) = pipelined(&mut ann, vec![Request::Ping; 51]);
    assert_eq!(&replies[..50], &vec![Reply::Pong; 50][..]);
    assert!(
        is_rate_limited(&replies[50], "too many requests"),
        "{:?}",
        replies[50]
    );
    assert_eq!(events, Vec::new());
    println!(
        "51 requests at once: 50 answered, the 51st {:?}",
        replies[50]
    );
    // The connection goes on: at 20 a second a token is back in 50 ms.
    thread::sleep(Duration::from_millis(60));
    assert_eq!(ann.request(Request::Ping), Reply::Pong);
}
