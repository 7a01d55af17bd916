//! A member who talks faster than it reads: the server slows it down (it
//! stops reading a client that has not taken what it was sent, and TCP
//! holds the client back) instead of cutting it off as a slow reader, and
//! the rest of the room hears every line.

use crate::kit;
use crate::kit::{Got, RawClient, TestServer};
use chatapp::server::hub::Level;
use chatapp::server::net::MAX_UNSENT;
use chatapp::wire::msg::{Event, Reply, Request, ServerFrame};
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

const LISTENERS: usize = 5;
const LINES: usize = 10_000;
const TEXT: usize = 200;

/// Reads until `want` lines and `acks` acknowledgements came (or trouble),
/// pausing 1 ms every `pace` frames when `pace` is set.
fn hear(c: &mut RawClient, want: usize, acks: usize, pace: Option<usize>) -> Result<(), String> {
    let give_up = Instant::now() + Duration::from_secs(60);
    let (mut heard, mut acked, mut frames) = (0, 0, 0);
    while heard < want || acked < acks {
        if Instant::now() > give_up {
            return Err(format!("heard {heard} of {want}, {acked} of {acks} acks"));
        }
        frames += 1;
        if pace.is_some_and(|p| frames % p == 0) {
            // A reader slower than the sender is the behaviour under test,
            // not a wait for the server.
            thread::sleep(Duration::from_millis(1));
        }
        match c.read(Duration::from_secs(5)) {
            Got::Frame(ServerFrame::Event {
                event: Event::RoomMessage { .. },
            }) => heard += 1,
            Got::Frame(ServerFrame::Reply {
                result: Reply::Ok, ..
            }) => acked += 1,
            Got::Frame(ServerFrame::Event {
                event: Event::Joined { .. },
            })
            | Got::Nothing => {}
            Got::Frame(other) => return Err(format!("after {heard} lines: {other:?}")),
            Got::Closed => return Err(format!("closed after {heard} lines")),
        }
    }
    Ok(())
}

/// Linux only, like `connect_with_mss`.
#[cfg(target_os = "linux")]
#[test]
fn a_member_who_talks_faster_than_it_reads_is_slowed_down_not_cut_off() {
    let server = TestServer::start_with(|config| {
        config.log_level = Level::Warn;
        let limits = &mut config.limits;
        limits.message_burst = 1_000_000;
        limits.messages_per_second = 1_000_000;
        limits.request_burst = 1_000_000;
        limits.requests_per_second = 1_000_000;
    });
    let v4 = match server.addr().parse() {
        Ok(std::net::SocketAddr::V4(v4)) => v4,
        other => panic!("{other:?}"),
    };
    // As from an Ethernet path (see `connect_with_mss`): the kernel then
    // buffers about what it would on a real network, not the megabytes of
    // a loopback connection, so what the server queues shows.
    let mut members: Vec<RawClient> = (0..=LISTENERS)
        .map(|n| {
            let mut c = RawClient::over(kit::connect_with_mss(v4, 1460));
            let reply = c.request(Request::Register {
                name: format!("member{n}"),
                password: kit::PASSWORD.into(),
            });
            assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
            c
        })
        .collect();
    let room = match members[0].request(Request::CreateRoom {
        name: "busy".into(),
        capacity: 10,
    }) {
        Reply::Room { room, .. } => room.id,
        other => panic!("create the room: {other:?}"),
    };
    for m in &mut members[1..] {
        let reply = m.request(Request::JoinRoom { room });
        assert!(matches!(reply, Reply::Room { .. }), "{reply:?}");
    }
    // The talker is sent each line back and its acknowledgement.
    const _: () = assert!(
        LINES * (TEXT + 60) > 2 * MAX_UNSENT,
        "the test must cross the cap"
    );

    let (talker, listeners) = members.split_first_mut().unwrap();
    let mut bytes = Vec::new();
    for k in 0..LINES {
        let text = format!("{k:05}:{}", "x".repeat(TEXT - 6));
        talker.seal(Request::Say { text, client_id: 0 }, &mut bytes);
    }
    let started = Instant::now();
    let results: Vec<Result<(), String>> = thread::scope(|s| {
        // All its lines at once, from a thread of its own, while it reads
        // at a pace slower than the server can send: as a client with two
        // halves that pastes a book into the room.
        let mut writer = talker.stream.try_clone().unwrap();
        s.spawn(move || writer.write_all(&bytes).expect("send the lines"));
        let mut readers = vec![s.spawn(move || hear(talker, LINES, LINES, Some(10)))];
        readers.extend(
            listeners
                .iter_mut()
                .map(|l| s.spawn(move || hear(l, LINES, 0, None))),
        );
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    println!(
        "{LINES} lines of {TEXT} bytes to {} members in {:.2} s",
        LISTENERS + 1,
        started.elapsed().as_secs_f64()
    );
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result, &Ok(()), "member{n}");
    }
}
