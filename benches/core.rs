//! Micro benchmarks of the server's hot paths (`cargo bench`):
//!
//! - `wire`: one room-message event encoded (MessagePack) and encrypted
//!   into a frame, and the reverse: decrypted and decoded;
//! - `handshake`: the server's half of a Noise handshake for a client's
//!   first message: the handshake state made (which sets the static key)
//!   and the reply written, then the reply alone;
//! - `fanout`: the chat core taking one `say` in a room of 1,000 members,
//!   through its commit, to the broadcast it hands the event loop, resolved
//!   to the members' connections through the loop's directory (the world
//!   around the hub is the shared hub harness); then the
//!   same plus what the loop does with it (encode once, encrypt per member);
//! - `store`: a batch of 100 room messages inserted and committed in one
//!   transaction, with synchronous=FULL (the default) and NORMAL.
//!
//! The side-by-side load benchmark against IRC servers is `bench/run.sh`.

use chatapp::model::{MessageId, RoomId, UserId};
use chatapp::server::directory::Resolved;
use chatapp::server::hub::harness::{self, Harness, Watch};
use chatapp::server::hub::{ConnId, Limits, Output};
use chatapp::store::{self, Write};
use chatapp::wire::frame;
use chatapp::wire::msg::{self, Event, Request, RoomLine, ServerFrame};
use chatapp::wire::noise::{ClientHandshake, ServerHandshake, StaticKey, Transport};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

const TEXT: &str = "a chat message of an ordinary length, sixty-four bytes or so ok";
const MEMBERS: usize = 1000;

/// A (client, server) transport pair after a real handshake.
fn pair(key: &StaticKey) -> (Transport, Transport) {
    let (client, first) = ClientHandshake::start();
    let (reply, server) = ServerHandshake::new(key).respond(&first).unwrap();
    (client.finish(&reply).unwrap().accept(), server)
}

fn room_event(id: u64) -> ServerFrame {
    ServerFrame::Event {
        event: Event::RoomMessage {
            room: 2421,
            line: RoomLine {
                id,
                seq: id,
                from: "someone".into(),
                text: TEXT.into(),
                time: 1_700_000_000_000,
            },
        },
    }
}

fn wire(c: &mut Criterion) {
    let key = StaticKey::generate();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(1));
    let (_, mut server) = pair(&key);
    let event = room_event(1);
    let (mut encoded, mut out) = (Vec::new(), Vec::new());
    g.bench_function("encode+encrypt room message", |b| {
        b.iter(|| {
            out.clear();
            msg::encode_into(black_box(&event), &mut encoded).unwrap();
            server.seal_into(&encoded, &mut out).unwrap();
            black_box(out.len())
        })
    });
    // Frames must be opened in the order they were sealed: each batch is
    // sealed by the setup, then opened in order by the routine.
    let (mut client, mut server) = pair(&key);
    let mut plain = Vec::new();
    g.bench_function("decrypt+decode room message", |b| {
        b.iter_batched(
            || {
                let mut wire = Vec::new();
                msg::encode_into(&event, &mut encoded).unwrap();
                server.seal_into(&encoded, &mut wire).unwrap();
                wire
            },
            |wire| {
                let (body, _) = frame::parse(&wire).unwrap();
                client.open_into(body, &mut plain).unwrap();
                black_box(msg::decode::<ServerFrame>(&plain).unwrap())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let key = StaticKey::generate();
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    // The client's first message is made by the setup, not timed.
    g.bench_function("server: new + respond to a first message", |b| {
        b.iter_batched(
            || ClientHandshake::start().1,
            |first| ServerHandshake::new(&key).respond(&first).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("server: respond to a first message", |b| {
        b.iter_batched(
            || (ServerHandshake::new(&key), ClientHandshake::start().1),
            |(server, first)| server.respond(&first).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// What the event loop does with a broadcast, as far as measured here:
/// the members it reaches and, once `seal` is given transports, the frame
/// encoded once and encrypted into each member's output buffer.
struct Fanout {
    reached: usize,
    seal: Vec<(Transport, Vec<u8>)>,
    encoded: Vec<u8>,
}

impl Watch for Fanout {
    fn output(&mut self, out: &Output, to: Option<Resolved<'_>>) {
        let (Output::Broadcast { frame, .. }, Some(conns)) = (out, to) else {
            return;
        };
        self.reached += conns.len();
        if self.seal.is_empty() {
            return;
        }
        msg::encode_into(frame, &mut self.encoded).unwrap();
        for (conn, (tr, out)) in conns.zip(self.seal.iter_mut()) {
            black_box(conn);
            out.clear();
            tr.seal_into(&self.encoded, out).unwrap();
        }
    }
}

/// A hub with `MEMBERS` users logged in and in one room, in the hub
/// harness (its workers and store answer at once, its directory is the
/// event loop's). Limits are lifted so that the sender is never
/// throttled; nothing is recorded, and the directory is checked against
/// the hub once, when the room is full, not after every step.
fn full_room() -> Harness<Fanout> {
    let users = (1..=MEMBERS as i64)
        .map(|i| harness::account(i, &format!("user{i}")))
        .collect();
    let limits = Limits {
        message_burst: 1_000_000_000,
        messages_per_second: 1_000_000_000,
        request_burst: 1_000_000_000,
        requests_per_second: 1_000_000_000,
        ..Limits::default()
    };
    let watch = Fanout {
        reached: 0,
        seal: Vec::new(),
        encoded: Vec::new(),
    };
    let mut world = Harness::build(harness::snapshot(users), limits, watch);
    world.tick = 0;
    world.record = false;
    world.check = false;
    for i in 1..=MEMBERS {
        let conn = world.connect_from("127.0.0.1");
        let login = Request::Login {
            name: format!("user{i}"),
            password: harness::PASSWORD.into(),
        };
        world.request(conn, login);
        let req = if i == 1 {
            Request::CreateRoom {
                name: "everyone".into(),
                capacity: MEMBERS as u32,
            }
        } else {
            Request::JoinRoom { room: 1 }
        };
        world.request(conn, req);
    }
    world.check_directory();
    world
}

/// One `say` from member 2, committed; returns the outputs' fan-out size.
fn say(world: &mut Harness<Fanout>) -> usize {
    world.now = 2_000;
    world.watch.reached = 0;
    let req = Request::Say {
        text: TEXT.into(),
        client_id: 0,
    };
    world.request(ConnId(2), req);
    world.watch.reached
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(MEMBERS as u64));
    let mut room = full_room();
    assert_eq!(say(&mut room), MEMBERS);
    g.bench_function("hub: one message to 1,000 members", |b| {
        b.iter(|| {
            let n = say(&mut room);
            debug_assert_eq!(n, MEMBERS);
            black_box(n)
        })
    });
    // What the event loop adds: encode once, encrypt once per member into
    // that member's output buffer.
    let key = StaticKey::generate();
    room.watch.seal = (0..MEMBERS)
        .map(|_| (pair(&key).1, Vec::with_capacity(4096)))
        .collect();
    g.bench_function("hub + encode + encrypt for 1,000 members", |b| {
        b.iter(|| black_box(say(&mut room)))
    });
    g.finish();
}

fn store_batches(c: &mut Criterion) {
    const BATCH: usize = 100;
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    for (label, sync) in [
        ("synchronous=FULL", store::Sync::Full),
        ("synchronous=NORMAL", store::Sync::Normal),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut db =
            store::open(&store::Location::Sqlite(dir.path().join("bench.db")), sync).unwrap();
        db.apply(&[
            Write::User {
                id: UserId(1),
                name: "ann".into(),
                password_hash: "unused".into(),
                created: 0,
            },
            Write::Room {
                id: RoomId(1),
                name: "room".into(),
                admin: UserId(1),
                capacity: 10,
                created: 0,
            },
        ])
        .unwrap();
        let mut next = 1i64;
        g.bench_function(
            format!("insert 100 room messages, one commit, {label}"),
            |b| {
                b.iter_batched(
                    || {
                        (0..BATCH)
                            .map(|_| {
                                next += 1;
                                Write::RoomMessage {
                                    id: MessageId(next),
                                    seq: next as u64,
                                    origin: None,
                                    room: RoomId(1),
                                    sender: UserId(1),
                                    text: TEXT.into(),
                                    sent: next,
                                }
                            })
                            .collect::<Vec<_>>()
                    },
                    |batch| db.apply(&batch).unwrap(),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Short runs: the machines this runs on are small and shared.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = wire, handshake, fanout, store_batches
}
criterion_main!(benches);
