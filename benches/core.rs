//! Micro benchmarks of the server's hot paths (`cargo bench`):
//!
//! - `wire`: one room-message event encoded (MessagePack) and encrypted
//!   into a frame, and the reverse: decrypted and decoded;
//! - `handshake`: the server's half of a Noise handshake for a client's
//!   first message: the handshake state made (which sets the static key)
//!   and the reply written, then the reply alone;
//! - `fanout`: the chat core taking one `say` in a room of 1,000 members,
//!   through its commit, to the broadcast it hands the event loop, resolved
//!   to the members' connections through the loop's directory; then the
//!   same plus what the loop does with it (encode once, encrypt per member);
//! - `store`: a batch of 100 room messages inserted and committed in one
//!   transaction, with synchronous=FULL (the default) and NORMAL.
//!
//! The side-by-side load benchmark against IRC servers is `bench/run.sh`.

use chatapp::model::{MessageId, RoomId, UserId};
use chatapp::server::directory::{Directory, Resolved};
use chatapp::server::hub::{Caller, ConnId, Hub, Input, Limits, Output, StoreJob};
use chatapp::store::{self, Snapshot, UserRow, Write};
use chatapp::wire::frame;
use chatapp::wire::msg::{self, ClientFrame, Event, Request, RoomLine, ServerFrame};
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

/// A hub with `MEMBERS` users logged in and in one room, and the event
/// loop's directory of them. Limits are lifted so that the sender is never
/// throttled.
fn full_room() -> (Hub, Directory) {
    let users = (1..=MEMBERS as i64)
        .map(|i| UserRow {
            id: UserId(i),
            name: format!("user{i}"),
            password_hash: "unused".into(),
        })
        .collect();
    let snapshot = Snapshot {
        users,
        unread: Vec::new(),
        next_user: UserId(MEMBERS as i64 + 1),
        next_room: RoomId(1),
        next_message: MessageId(1),
    };
    let limits = Limits {
        message_burst: 1_000_000_000,
        messages_per_second: 1_000_000_000,
        request_burst: 1_000_000_000,
        requests_per_second: 1_000_000_000,
        ..Limits::default()
    };
    let mut hub = Hub::new(snapshot, limits);
    let mut directory = Directory::default();
    let now = 1_000;
    let mut drain = |hub: &mut Hub| {
        let mut seqs = Vec::new();
        while let Some(out) = hub.poll_output() {
            match out {
                Output::Store(StoreJob::Write { seq, .. }) => seqs.push(seq),
                Output::Directory(change) => directory.apply(change),
                _ => {}
            }
        }
        seqs
    };
    for i in 1..=MEMBERS as u64 {
        let conn = ConnId(i);
        hub.handle(
            now,
            Input::Connected {
                conn,
                peer: format!("127.0.0.1:{i}"),
                ip: "127.0.0.1".into(),
            },
        );
        let name = format!("user{i}");
        let login = Request::Login {
            name: name.clone(),
            password: "not checked here".into(),
        };
        hub.handle(
            now,
            Input::Request {
                conn,
                frame: ClientFrame { id: 1, req: login },
            },
        );
        hub.handle(
            now,
            Input::Verified {
                caller: Caller { conn, id: 1 },
                name,
                user: Some(UserId(i as i64)),
            },
        );
        drain(&mut hub);
        let req = if i == 1 {
            Request::CreateRoom {
                name: "everyone".into(),
                capacity: MEMBERS as u32,
            }
        } else {
            Request::JoinRoom { room: 1 }
        };
        hub.handle(
            now,
            Input::Request {
                conn,
                frame: ClientFrame { id: 2, req },
            },
        );
        for seq in drain(&mut hub) {
            hub.handle(now, Input::Committed { seq, ok: true });
            drain(&mut hub);
        }
    }
    (hub, directory)
}

/// One `say` from member 2, committed; returns the outputs' fan-out size.
fn say(
    (hub, directory): &mut (Hub, Directory),
    id: u32,
    on_broadcast: &mut impl FnMut(Resolved<'_>, &ServerFrame),
) -> usize {
    let now = 2_000;
    let req = Request::Say { text: TEXT.into() };
    hub.handle(
        now,
        Input::Request {
            conn: ConnId(2),
            frame: ClientFrame { id, req },
        },
    );
    let mut seq = 0;
    while let Some(out) = hub.poll_output() {
        if let Output::Store(StoreJob::Write { seq: s, .. }) = out {
            seq = s;
        }
    }
    hub.handle(now, Input::Committed { seq, ok: true });
    let mut fanout = 0;
    while let Some(out) = hub.poll_output() {
        // As the event loop does.
        match out {
            Output::Broadcast { audience, frame } => {
                let conns = directory.resolve(&audience);
                fanout += conns.len();
                on_broadcast(conns, &frame);
            }
            Output::Directory(change) => directory.apply(change),
            _ => {}
        }
    }
    fanout
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(MEMBERS as u64));
    let mut hub = full_room();
    let mut id = 10;
    assert_eq!(say(&mut hub, id, &mut |_, _| {}), MEMBERS);
    g.bench_function("hub: one message to 1,000 members", |b| {
        b.iter(|| {
            id += 1;
            let n = say(&mut hub, id, &mut |_, _| {});
            debug_assert_eq!(n, MEMBERS);
            black_box(n)
        })
    });
    // What the event loop adds: encode once, encrypt once per member into
    // that member's output buffer.
    let key = StaticKey::generate();
    let mut transports: Vec<(Transport, Vec<u8>)> = (0..MEMBERS)
        .map(|_| (pair(&key).1, Vec::with_capacity(4096)))
        .collect();
    let mut encoded = Vec::new();
    g.bench_function("hub + encode + encrypt for 1,000 members", |b| {
        b.iter(|| {
            id += 1;
            let mut seal = |conns: Resolved<'_>, frame: &ServerFrame| {
                msg::encode_into(frame, &mut encoded).unwrap();
                for (conn, (tr, out)) in conns.zip(transports.iter_mut()) {
                    black_box(conn);
                    out.clear();
                    tr.seal_into(&encoded, out).unwrap();
                }
            };
            black_box(say(&mut hub, id, &mut seal))
        })
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
