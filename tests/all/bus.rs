//! The bus between nodes (`server::bus`) against a real Redis: messages
//! between two buses, Redis killed, paused and started late, bad URLs, and
//! bytes from a publisher that is not chatapp. Each node is a bus plus the
//! event loop's side of it, a `mio::Poll` woken by the bus's waker, so the
//! tests wait the way the loop will.

use crate::kit::redis::Redis;
use chatapp::server::bus::{Bus, BusEvent};
use mio::{Events, Poll, Token, Waker};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest one change of state may take: a reconnection waits at most
/// 2 s between tries, and a silent Redis is found after 2 s of quiet and
/// 3 s without an answer to a PING.
const WITHIN: Duration = Duration::from_secs(20);
/// How long a node must hear nothing to count as having heard nothing.
const QUIET: Duration = Duration::from_secs(3);
const WAKE: Token = Token(0);

/// A bus and the poll its waker wakes.
struct Node {
    bus: Bus,
    poll: Poll,
    events: Events,
}

impl Node {
    fn start(url: &str, channels: &[&str]) -> Node {
        let poll = Poll::new().expect("a mio poll");
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).expect("a mio waker"));
        let channels = channels.iter().map(|c| c.to_string()).collect();
        let bus = Bus::start(url, channels, waker).unwrap_or_else(|e| panic!("{e}"));
        Node {
            bus,
            poll,
            events: Events::with_capacity(4),
        }
    }

    /// The next event, waiting for the waker up to `within`.
    fn next(&mut self, within: Duration) -> Option<BusEvent> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(event) = self.bus.try_recv() {
                return Some(event);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.poll
                .poll(&mut self.events, Some(left))
                .expect("poll for the bus's waker");
        }
    }

    /// Every event up to and including the first that is `what`, which
    /// must come within [`WITHIN`].
    fn until(&mut self, what: &str, want: impl Fn(&BusEvent) -> bool) -> Vec<BusEvent> {
        let deadline = Instant::now() + WITHIN;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = self.next(left) else {
                panic!("no {what} within {WITHIN:?}; saw {seen:?}");
            };
            let done = want(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    fn up(&mut self) -> Vec<BusEvent> {
        self.until("Up", |e| *e == BusEvent::Up)
    }

    /// The reason of the next `Down`.
    fn down(&mut self) -> String {
        let seen = self.until("Down", |e| matches!(e, BusEvent::Down { .. }));
        match seen.last() {
            Some(BusEvent::Down { reason }) => reason.clone(),
            _ => unreachable!("until returns what it waited for"),
        }
    }

    /// The next `count` messages, as (channel, payload); anything but a
    /// message on the way fails the test.
    fn messages(&mut self, count: usize) -> Vec<(String, Vec<u8>)> {
        let mut got = Vec::new();
        while got.len() < count {
            match self.next(WITHIN) {
                Some(BusEvent::Message { channel, payload }) => got.push((channel, payload)),
                other => panic!(
                    "expected {count} messages, got {} and then {other:?}",
                    got.len()
                ),
            }
        }
        got
    }
}

fn is_down(event: &BusEvent) -> bool {
    matches!(event, BusEvent::Down { .. })
}

/// Message `n` of a run: its number, then bytes of every value (a NUL, CR
/// and LF, invalid UTF-8), a few hundred at most, and one big one.
fn payload(n: u32) -> Vec<u8> {
    let len = if n == 500 {
        256 * 1024
    } else {
        n as usize % 300
    };
    let mut bytes = n.to_be_bytes().to_vec();
    bytes.extend((0..len).map(|i| (i as u32 * 7 + n) as u8));
    bytes
}

/// Publishes probes from `from` on `channel` until `to` hears one: after
/// an outage, the publisher may still be waiting to reconnect and drop
/// the first. Then a run of 100 must arrive, in order. Returns how many
/// messages `from` published.
fn flows(from: &mut Node, to: &mut Node, channel: &str) -> u64 {
    let deadline = Instant::now() + WITHIN;
    let mut probes = 0;
    'probing: loop {
        assert!(
            Instant::now() < deadline,
            "no probe arrived within {WITHIN:?}"
        );
        from.bus.publish(channel, b"probe".to_vec());
        probes += 1;
        while let Some(event) = to.next(Duration::from_millis(100)) {
            match event {
                BusEvent::Message { payload, .. } if payload == b"probe" => break 'probing,
                event => assert!(!is_down(&event), "{event:?} while waiting for messages"),
            }
        }
    }
    let sent: Vec<Vec<u8>> = (0..100)
        .map(|n| format!("after {n}").into_bytes())
        .collect();
    for payload in &sent {
        from.bus.publish(channel, payload.clone());
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let (_, payload) = to.messages(1).remove(0);
        if payload != b"probe" {
            got.push(payload);
        }
    }
    assert_eq!(got, sent, "the run after the outage, in order");
    probes + sent.len() as u64
}

#[test]
fn two_buses_carry_each_others_messages_intact_and_in_order() {
    let redis = Redis::start();
    let mut a = Node::start(&redis.url(), &["room.1"]);
    let mut b = Node::start(&redis.url(), &["room.1", "users"]);
    assert_eq!(a.up(), [BusEvent::Up], "the first event is Up");
    assert_eq!(b.up(), [BusEvent::Up], "the first event is Up");

    // Nobody subscribes to room.2: were it delivered, it would come first.
    a.bus.publish("room.2", b"nobody listens".to_vec());
    let sent: Vec<Vec<u8>> = (0..1000).map(payload).collect();
    for payload in &sent {
        a.bus.publish("room.1", payload.clone());
    }
    b.bus.publish("users", b"from b".to_vec());

    let heard = b.messages(1001);
    let on = |channel: &str| -> Vec<Vec<u8>> {
        let on_channel = heard.iter().filter(|(c, _)| c == channel);
        on_channel.map(|(_, p)| p.clone()).collect()
    };
    assert_eq!(on("users"), [b"from b".to_vec()]);
    assert!(on("room.1") == sent, "B heard A's 1,000 messages changed");
    // A node hears what it publishes on its own channels, like any other.
    let own: Vec<Vec<u8>> = a.messages(1000).into_iter().map(|(_, p)| p).collect();
    assert!(own == sent, "A heard its own 1,000 messages changed");

    assert!(crate::kit::wait_until(
        WITHIN,
        Duration::from_millis(10),
        || a.bus.published() == 1001 && b.bus.published() == 1
    ));
    assert_eq!((a.bus.dropped(), b.bus.dropped()), (0, 0));
    assert_eq!((a.bus.skipped(), b.bus.skipped()), (0, 0));
}

#[test]
fn a_killed_redis_is_down_and_both_buses_come_back_by_themselves() {
    let mut redis = Redis::start();
    let mut a = Node::start(&redis.url(), &["room.1"]);
    let mut b = Node::start(&redis.url(), &["room.1"]);
    a.up();
    b.up();
    // Every message before the kill is answered, so none of them can be
    // among those dropped below.
    let published = flows(&mut a, &mut b, "room.1");
    assert!(crate::kit::wait_until(
        WITHIN,
        Duration::from_millis(10),
        || a.bus.published() == published
    ));
    assert_eq!(a.bus.dropped(), 0);

    redis.kill();
    let address = format!("127.0.0.1:{}", redis.port());
    for node in [&mut a, &mut b] {
        let reason = node.down();
        assert!(reason.contains(&address), "{reason:?} names {address}");
    }

    // Publishing meanwhile never waits: each message is dropped and
    // counted, at once or by the publisher finding Redis gone.
    let started = Instant::now();
    for n in 0..1000 {
        a.bus.publish("room.1", payload(n));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "1,000 publishes took {:?} with Redis down",
        started.elapsed()
    );
    assert!(
        crate::kit::wait_until(WITHIN, Duration::from_millis(10), || a.bus.dropped()
            == 1000),
        "dropped {} of the 1,000 published with Redis down",
        a.bus.dropped()
    );
    assert_eq!(a.bus.published(), published);

    redis.restart();
    for node in [&mut a, &mut b] {
        let seen = node.up();
        assert!(
            !seen.iter().any(is_down),
            "Down once an outage, not once a try: {seen:?}"
        );
    }
    // B's publisher still holds the connection Redis had before it was
    // killed: its first batch goes again on a new one, not dropped.
    b.bus.publish("room.1", b"first from b".to_vec());
    let heard = a.messages(1);
    assert_eq!(heard, [("room.1".to_string(), b"first from b".to_vec())]);
    assert_eq!(b.bus.dropped(), 0);
    flows(&mut a, &mut b, "room.1");
}

#[test]
fn a_bus_with_nothing_to_reach_says_where_and_keeps_trying() {
    let port = crate::kit::free_port();
    let mut node = Node::start(&format!("redis://127.0.0.1:{port}/"), &["room.1"]);
    let reason = node.down();
    assert!(
        reason.contains(&format!("Redis at 127.0.0.1:{port}")),
        "{reason:?} names the address"
    );
    // Several tries go by (0.1 s, 0.2 s, ... apart), and say nothing more.
    let more = node.next(QUIET);
    assert_eq!(more, None, "Down is said once an outage");

    let redis = Redis::start_on(port);
    let seen = node.up();
    assert_eq!(seen, [BusEvent::Up], "once Redis is there, the bus is Up");
    let mut other = Node::start(&redis.url(), &["room.1"]);
    other.up();
    flows(&mut node, &mut other, "room.1");
}

#[test]
fn a_bad_url_is_refused_at_once_saying_what_to_give() {
    let poll = Poll::new().expect("a mio poll");
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).expect("a mio waker"));
    for (url, says) in [
        ("", "not a URL"),
        ("localhost:6379", "not a URL"),
        ("http://127.0.0.1:6379/", "not a Redis URL"),
        ("rediss://127.0.0.1:6379/", "TLS"),
        ("redis://127.0.0.1:70000/", "check the host and the port"),
        (
            "redis://:s3cret@127.0.0.1:6379/chat",
            "must be a database number",
        ),
    ] {
        let started = Instant::now();
        let error = match Bus::start(url, vec!["room.1".into()], waker.clone()) {
            Ok(_) => panic!("{url:?} was taken"),
            Err(e) => e.to_string(),
        };
        assert!(started.elapsed() < Duration::from_secs(1), "{url:?}");
        assert!(error.starts_with("--bus "), "{error}");
        assert!(error.contains(says), "{url:?}: {error}");
        assert!(
            error.ends_with(": give a URL like redis://127.0.0.1:6379/"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "the password is shown: {error}");
    }
}

#[test]
fn bytes_from_another_publisher_come_through_as_they_are() {
    let redis = Redis::start();
    let mut node = Node::start(&redis.url(), &["room.1"]);
    node.up();
    let client = redis::Client::open(redis.url()).expect("a Redis client");
    let mut raw = client
        .get_connection_with_timeout(WITHIN)
        .expect("a raw connection to Redis");
    let mut noise = 0x2545_f491_4f6c_dd1d_u64;
    let big: Vec<u8> = (0..1 << 20)
        .map(|_| {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            noise as u8
        })
        .collect();
    let garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xff, 0xfe, 0x00, 0xc3],
        b"*3\r\n$7\r\nmessage\r\n$6\r\nroom.1\r\n:1\r\n".to_vec(),
        b"-ERR this is not an error\r\n".to_vec(),
        b"\x93\xa4room\x01".to_vec(),
        big,
    ];
    for bytes in &garbage {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg("room.1")
            .arg(bytes.as_slice())
            .query(&mut raw)
            .expect("PUBLISH");
        assert_eq!(receivers, 1, "the bus is subscribed");
    }
    let heard: Vec<Vec<u8>> = node
        .messages(garbage.len())
        .into_iter()
        .map(|(channel, payload)| {
            assert_eq!(channel, "room.1");
            payload
        })
        .collect();
    assert!(heard == garbage, "the bytes changed on the way");
    assert_eq!(node.bus.skipped(), 0);
    // And the bus goes on as before.
    node.bus.publish("room.1", b"still here".to_vec());
    assert_eq!(
        node.messages(1),
        [("room.1".to_string(), b"still here".to_vec())]
    );
}

#[test]
fn a_silent_redis_is_found_by_a_ping_and_reached_again() {
    let redis = Redis::start();
    let mut node = Node::start(&redis.url(), &["room.1"]);
    node.up();
    redis.pause();
    let paused = Instant::now();
    let reason = node.down();
    let after = paused.elapsed();
    redis.resume();
    assert!(reason.contains("did not answer a PING"), "{reason:?}");
    assert!(
        after >= Duration::from_secs(2),
        "Down after {after:?}: the bus waits 2 s of quiet before it asks"
    );
    let seen = node.up();
    assert!(!seen.iter().any(is_down), "{seen:?}");
    node.bus.publish("room.1", b"back".to_vec());
    let deadline = Instant::now() + WITHIN;
    // The publisher may have lost a batch to the pause; probe until heard.
    loop {
        if let Some(BusEvent::Message { payload, .. }) = node.next(Duration::from_millis(100))
            && payload == b"back"
        {
            break;
        }
        assert!(Instant::now() < deadline, "no message after the pause");
        node.bus.publish("room.1", b"back".to_vec());
    }
}

#[test]
fn a_bus_stops_promptly_whether_redis_is_there_or_not() {
    let redis = Redis::start();
    let mut node = Node::start(&redis.url(), &["room.1"]);
    node.up();
    let started = Instant::now();
    drop(node);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "stopping took {took:?}");

    let port = crate::kit::free_port();
    let mut node = Node::start(&format!("redis://127.0.0.1:{port}/"), &["room.1"]);
    node.down();
    let started = Instant::now();
    drop(node);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "stopping a bus that waits to try again took {took:?}"
    );
}
