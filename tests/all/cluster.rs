//! Two chatapp servers sharing one PostgreSQL, with Redis between them:
//! each test starts its own PostgreSQL and Redis from the installed
//! binaries ([`Postgres`], [`Redis`]) and two servers of one deployment
//! (the same database, bus and key), and speaks to each server as its
//! clients would.

use crate::kit::haproxy::Haproxy;
use crate::kit::postgres::{Postgres, outage};
use crate::kit::redis::Redis;
use crate::kit::talker::{Addr, Stored, Talker, UNTHROTTLED, check, name};
use crate::kit::{Client, ServeProcess, TestServer, wait_until};
use chatapp::client::proto;
use chatapp::server::{self, Config};
use chatapp::wire::msg::{ErrorCode, Event, Reply, Request, Topic};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a server may take to hear of what the other one stored: over
/// the bus a moment; with the bus down, the next read of the database.
const HEAR: Duration = Duration::from_secs(10);
/// Between two questions a waiting client asks its server: under the
/// server's budget of 20 requests a second, with room for the test's own.
const ASK_EVERY: Duration = Duration::from_millis(100);

/// Dropped in this order: the servers stop before what they use.
struct Deployment {
    nodes: [TestServer; 2],
    redis: Redis,
    pg: Postgres,
}

fn shared(database: String, bus: String) -> impl Fn(&mut Config) + Send + Sync + 'static {
    move |config: &mut Config| {
        config.database = Some(database.clone());
        config.bus = Some(bus.clone());
    }
}

impl Deployment {
    fn start() -> Deployment {
        let pg = Postgres::start();
        let redis = Redis::start();
        let first = TestServer::start_with(shared(pg.url(), redis.url()));
        let second = TestServer::start_beside(&first, shared(pg.url(), redis.url()));
        Deployment {
            nodes: [first, second],
            redis,
            pg,
        }
    }

    /// ann on the first server opens a room of five, "lobby", and bob on
    /// the second joins it once his server knows it (ann is told).
    fn lobby(&self) -> (Client, Client, u64) {
        let mut ann = self.nodes[0].register("ann");
        let mut bob = self.nodes[1].register("bob");
        let room = ann.create_room("lobby", 5);
        join_across(&mut bob, room, &mut [&mut ann]);
        (ann, bob, room)
    }
}

/// Waits until `client`'s server knows the user `name` (registered on the
/// other server), asking for their dialogue's history, which changes
/// nothing.
fn knows_user(client: &mut Client, name: &str) {
    let known = wait_until(HEAR, ASK_EVERY, || {
        let history = Request::History {
            of: Topic::Dialogue { with: name.into() },
            before: 0,
            limit: 1,
        };
        !matches!(client.request(history), Reply::Error { .. })
    });
    assert!(known, "{}'s server never heard of {name}", client.name);
}

/// Joins room `room` (opened on the other server) once this server knows
/// it; `others`, already in the room, are told, whichever server they are
/// on.
fn join_across(client: &mut Client, room: u64, others: &mut [&mut Client]) {
    join_when_known(client, room);
    for other in others {
        other.expect_event(&Event::Joined {
            room,
            name: client.name.clone(),
        });
    }
}

/// Joins room `room` (opened on the other server) once this server knows it.
fn join_when_known(client: &mut Client, room: u64) {
    let mut joined = false;
    let known = wait_until(HEAR, ASK_EVERY, || {
        match client.request(Request::JoinRoom { room }) {
            Reply::Room { .. } => {
                joined = true;
                true
            }
            Reply::Error {
                code: ErrorCode::NoSuchRoom,
                ..
            } => false,
            other => panic!("{} joins #{room}: {other:?}", client.name),
        }
    });
    assert!(
        known && joined,
        "{}'s server never heard of #{room}",
        client.name
    );
}

#[test]
fn a_room_message_and_a_private_message_cross_from_one_server_to_the_other() {
    let d = Deployment::start();
    let (mut ann, mut bob, room) = d.lobby();
    ann.say("hello from one");
    ann.expect_said(room, "ann", "hello from one");
    bob.expect_said(room, "ann", "hello from one");
    bob.say("hello from two");
    bob.expect_said(room, "bob", "hello from two");
    ann.expect_said(room, "bob", "hello from two");
    // The numbers are the room's, whichever server stored the message.
    ann.say("third");
    ann.expect_said(room, "ann", "third");
    let line = bob.expect_said(room, "ann", "third");
    assert_eq!(line.seq, 3);

    knows_user(&mut bob, "ann");
    bob.send_private("ann", "psst");
    bob.expect_private("bob", "ann", "psst");
    ann.expect_private("bob", "ann", "psst");
    ann.send_private("bob", "yes?");
    ann.expect_private("ann", "bob", "yes?");
    bob.expect_private("ann", "bob", "yes?");
}

#[test]
fn redis_killed_mid_chat_and_started_again_loses_nothing() {
    let mut d = Deployment::start();
    let (mut ann, mut bob, room) = d.lobby();
    ann.say("before");
    ann.expect_said(room, "ann", "before");
    bob.expect_said(room, "ann", "before");

    d.redis.kill();
    // Redis gone: each server still serves its own users at once, and
    // the other's messages come late, read from the database, in order.
    for n in 1..=5 {
        ann.say(&format!("during {n}"));
        ann.expect_said(room, "ann", &format!("during {n}"));
    }
    for n in 1..=5 {
        let line = bob.expect_said_within(room, "ann", &format!("during {n}"), HEAR);
        assert_eq!(line.seq, 1 + n);
    }
    d.redis.restart();
    bob.say("after");
    bob.expect_said(room, "bob", "after");
    ann.expect_said_within(room, "bob", "after", HEAR);
    ann.say("live again");
    ann.expect_said(room, "ann", "live again");
    bob.expect_said_within(room, "ann", "live again", HEAR);
    // Nothing twice.
    bob.expect_quiet();
    ann.expect_quiet();
}

#[test]
fn the_admin_leaving_on_one_server_closes_the_room_on_the_other() {
    let d = Deployment::start();
    let (mut ann, mut bob, room) = d.lobby();
    ann.ok(Request::LeaveRoom);
    bob.wait_for("the room closing", |e| match e {
        chatapp::wire::msg::Event::RoomClosed { room: r, .. } if *r == room => Some(()),
        _ => None,
    });
    let refused = bob.refused(Request::JoinRoom { room }, ErrorCode::RoomClosed);
    assert!(refused.contains("closed"), "{refused}");
}

#[test]
fn the_member_list_names_the_members_on_every_server() {
    let d = Deployment::start();
    let (mut ann, mut bob, room) = d.lobby();
    let mut cat = d.nodes[0].register("cat");
    join_across(&mut cat, room, &mut [&mut ann, &mut bob]);
    // Those on one's own server first, in the order they joined, then
    // the others.
    let members = |names: &[&str]| Reply::Members {
        members: names.iter().map(|n| n.to_string()).collect(),
    };
    assert_eq!(
        bob.request(Request::Members),
        members(&["bob", "ann", "cat"])
    );
    assert_eq!(
        ann.request(Request::Members),
        members(&["ann", "cat", "bob"])
    );
    match d.nodes[1]
        .register("dan")
        .request(Request::JoinRoom { room })
    {
        Reply::Room { members, .. } => assert_eq!(members, ["bob", "dan", "ann", "cat"]),
        other => panic!("dan joins #{room}: {other:?}"),
    }
}

#[test]
fn a_member_away_on_one_server_is_told_on_the_other_and_so_is_their_return() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let tune = |database: String, bus: String| {
        let share = shared(database, bus);
        move |c: &mut Config| {
            share(c);
            c.limits.grace = 60_000;
            c.limits.quiet_blip = 500;
        }
    };
    let first = TestServer::start_with(tune(pg.url(), redis.url()));
    let second = TestServer::start_beside(&first, tune(pg.url(), redis.url()));
    let mut ann = first.register("ann");
    let mut bob = second.register("bob");
    let room = ann.create_room("lobby", 5);
    join_across(&mut bob, room, &mut [&mut ann]);
    drop(bob);
    let name = "bob".to_string();
    ann.expect_event(&Event::Away {
        room,
        name: name.clone(),
    });
    let (mut bob, _) = second.login("bob");
    bob.join(room);
    ann.expect_event(&Event::Back { room, name });
}

#[test]
fn a_saved_login_from_one_server_resumes_on_the_other() {
    let mut d = Deployment::start();
    let (mut ann, token) = d.nodes[0].register_with_token("ann");
    let mut bob = d.nodes[1].register("bob");
    knows_user(&mut bob, "ann");
    bob.send_private("ann", "one");
    ann.expect_private("bob", "ann", "one");
    // ann's server goes away; her client resumes on the other one with
    // the token the first gave, no password asked.
    d.nodes[0].stop();
    drop(ann);
    let mut moved = d.nodes[1].anonymous("ann");
    let resumed = moved.resume(&token);
    // The reply names the server, one of several, that answered.
    assert!(
        matches!(
            resumed,
            Reply::LoggedIn {
                unread: 1,
                node: Some(_),
                ..
            }
        ),
        "{resumed:?}"
    );
    bob.send_private("ann", "two");
    moved.expect_private("bob", "ann", "two");
}

#[test]
fn a_bus_message_that_is_garbage_or_forged_is_ignored_and_the_chat_goes_on() {
    let d = Deployment::start();
    let (mut ann, mut bob, room) = d.lobby();
    ann.say("real");
    ann.expect_said(room, "ann", "real");
    bob.expect_said(room, "ann", "real");
    let mut raw = redis::Client::open(d.redis.url())
        .and_then(|c| c.get_connection())
        .expect("a raw Redis connection");
    // Not a batch at all; then a well-formed batch of another server
    // repeating number 1 of the room with other words.
    let forged = server::cluster::encode(
        63,
        &[chatapp::store::Write::RoomMessage {
            id: chatapp::model::MessageId(999_999),
            seq: 1,
            origin: None,
            room: chatapp::model::RoomId(room as i64),
            sender: chatapp::model::UserId(1),
            text: "forged".into(),
            sent: 1,
        }],
    );
    for payload in [b"garbage".to_vec(), forged] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(server::cluster::CHANNEL)
            .arg(payload)
            .query(&mut raw)
            .expect("publish");
    }
    ann.say("still real");
    ann.expect_said(room, "ann", "still real");
    bob.expect_said(room, "ann", "still real");
    bob.expect_quiet();
}

#[test]
fn a_bus_without_a_shared_database_or_with_a_bad_url_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().to_path_buf());
    config.bus = Some("redis://127.0.0.1:1/".into());
    let err = server::start("127.0.0.1:0".parse().unwrap(), config.clone())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--bus needs --database"), "{err}");

    let pg = Postgres::start();
    config.database = Some(pg.url());
    config.bus = Some("http://nope".into());
    let err = server::start("127.0.0.1:0".parse().unwrap(), config)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("redis://"), "{err}");
}

#[test]
fn sixteen_racing_into_a_room_of_five_on_two_servers_make_five_and_a_kick_crosses() {
    let d = Deployment::start();
    let mut ann = d.nodes[0].register("ann");
    let room = ann.create_room("small", 5);
    // Sixteen clients, eight on each server, each registered and waiting
    // until its server knows the room; then all ask at once.
    let mut clients: Vec<(usize, Client)> = (0..16)
        .map(|i| {
            let node = i % 2;
            (node, d.nodes[node].register(&format!("racer{i:02}")))
        })
        .collect();
    for (_, client) in &mut clients {
        knows_room(client, room);
    }
    let barrier = std::sync::Barrier::new(clients.len());
    let results: Vec<(usize, Client, Reply)> = std::thread::scope(|s| {
        let handles: Vec<_> = (clients.drain(..))
            .map(|(node, mut client)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let reply = client.request(Request::JoinRoom { room });
                    (node, client, reply)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for (node, client, reply) in results {
        match reply {
            Reply::Room { .. } => inside.push((node, client)),
            Reply::Error {
                code: ErrorCode::RoomFull,
                ..
            } => outside.push((node, client)),
            other => panic!("{}: {other:?}", client.name),
        }
    }
    assert_eq!(inside.len(), 4, "ann and four more make five");
    // ann kicks a member whose session is on the other server. Which
    // server's racers won is up to the race: if none of the second's did,
    // a place is made (ann kicks a winner) and one of its losers takes it.
    let pos = match (inside.iter()).position(|(node, _)| *node == 1) {
        Some(pos) => pos,
        None => {
            let (_, first) = inside.remove(0);
            ann.ok(Request::Kick { name: first.name });
            let pos = (outside.iter())
                .position(|(node, _)| *node == 1)
                .expect("eight racers on the second server, none got in");
            let (node, mut next) = outside.remove(pos);
            // The place is free once the database has the kick.
            let joined = wait_until(HEAR, ASK_EVERY, || {
                match next.request(Request::JoinRoom { room }) {
                    Reply::Room { .. } => true,
                    Reply::Error {
                        code: ErrorCode::RoomFull,
                        ..
                    } => false,
                    other => panic!("{} joins #{room}: {other:?}", next.name),
                }
            });
            assert!(joined, "the kicked member's place never came free");
            inside.push((node, next));
            inside.len() - 1
        }
    };
    let (_, mut kicked) = inside.remove(pos);
    ann.ok(Request::Kick {
        name: kicked.name.clone(),
    });
    kicked.wait_for("the kick", |e| match e {
        Event::Kicked { room: r, by } if *r == room && by == "ann" => Some(()),
        _ => None,
    });
    let refused = kicked.refused(
        Request::Say {
            text: "still here?".into(),
            client_id: 0,
        },
        ErrorCode::NotMember,
    );
    assert!(refused.contains("not in a room"), "{refused}");
    // The place is free again, for someone on either server.
    let mut late = d.nodes[0].register("latecomer");
    late.join(room);
}

/// Waits until `client`'s server knows room `room`, by asking for its
/// history (which needs no membership to be refused, and changes nothing).
fn knows_room(client: &mut Client, room: u64) {
    let known = wait_until(HEAR, ASK_EVERY, || {
        let history = Request::History {
            of: Topic::Room { room },
            before: 0,
            limit: 1,
        };
        !matches!(
            client.request(history),
            Reply::Error {
                code: ErrorCode::NoSuchRoom,
                ..
            }
        )
    });
    assert!(known, "{}'s server never heard of #{room}", client.name);
}

/// One server talking to the chat's PostgreSQL as SQL, to check the
/// talkers against.
struct Shared(postgres::Client);

impl Shared {
    fn conversation(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> BTreeMap<u64, String> {
        (self.0.query(sql, params).unwrap().iter())
            .map(|row| (row.get::<_, i64>(0) as u64, row.get(1)))
            .collect()
    }
}

impl Stored for Shared {
    fn count(&mut self, text: &str) -> i64 {
        let sql = "SELECT COUNT(*) FROM messages WHERE body = $1";
        self.0.query_one(sql, &[&text]).unwrap().get(0)
    }

    fn room(&mut self, room: u64) -> BTreeMap<u64, String> {
        let sql = "SELECT seq, body FROM messages WHERE room = $1 ORDER BY seq";
        self.conversation(sql, &[&(room as i64)])
    }

    fn dialogue(&mut self, a: &str, b: &str) -> BTreeMap<u64, String> {
        let sql = "SELECT m.seq, m.body FROM messages AS m
            JOIN users AS s ON s.id = m.sender JOIN users AS r ON r.id = m.recipient
            WHERE (s.name = $1 AND r.name = $2) OR (s.name = $2 AND r.name = $1)
            ORDER BY m.seq";
        self.conversation(sql, &[&a, &b])
    }
}

#[test]
fn a_server_killed_under_load_loses_nothing_and_its_clients_resume_on_the_other() {
    const ROOMS: usize = 2;
    const PER_ROOM: usize = 5;
    let pg = Postgres::start();
    let redis = Redis::start();
    let (database, bus) = (pg.url(), redis.url());
    // One server in this process, the other the real binary, killed with
    // SIGKILL; HAProxy in front of both, from the example configuration.
    let share = shared(database.clone(), bus.clone());
    let first = TestServer::start_with(move |c| {
        share(c);
        c.net_limits.proxies = vec![std::net::Ipv4Addr::LOCALHOST.into()];
        c.limits.messages_per_second = 10_000;
        c.limits.message_burst = 10_000;
        c.limits.requests_per_second = 10_000;
        c.limits.request_burst = 10_000;
        // As the real binary: a room outlives its admin's dropped
        // connection for the grace period.
        c.limits.grace = chatapp::server::limits::GRACE;
    });
    let second_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        first.data_dir().join(server::KEY_FILE),
        second_dir.path().join(server::KEY_FILE),
    )
    .unwrap();
    let mut args = vec![
        "--database",
        &database,
        "--bus",
        &bus,
        "--proxy-protocol",
        "127.0.0.1",
    ];
    args.extend(UNTHROTTLED);
    let mut second = ServeProcess::serve(second_dir.path(), &args);
    let nodes = [first.handle().addr, second.addr.parse().unwrap()];
    let mut lb = Haproxy::start(&nodes);
    lb.wait_for(1, "UP");
    lb.wait_for(2, "UP");
    let addr = lb.addr.to_string();

    // Every talker registers through the balancer (which spreads them over
    // both servers), the first of each room opens it, the others join once
    // their server knows it, and each waits until its server knows its
    // partner.
    let mut clients = Vec::new();
    let mut rooms = Vec::new();
    for n in 0..ROOMS * PER_ROOM {
        let conn = proto::connect(&addr)
            .expect("through the balancer")
            .accept();
        let mut client = Client {
            name: name(n),
            conn,
        };
        let token = client.register();
        let room = if n % PER_ROOM == 0 {
            let room = client.create_room(&format!("room {}", n / PER_ROOM), 20);
            rooms.push(room);
            room
        } else {
            let room = rooms[n / PER_ROOM];
            join_when_known(&mut client, room);
            room
        };
        clients.push((client, room, token));
    }
    let addr: Addr = Arc::new(Mutex::new(addr));
    let mut talkers = Vec::new();
    for (n, (mut client, room, token)) in clients.into_iter().enumerate() {
        knows_user(&mut client, &name(n ^ 1));
        talkers.push(Talker::new(n, room, name(n ^ 1), token, addr.clone()));
    }

    let done = AtomicBool::new(false);
    let finished: Vec<Talker> = std::thread::scope(|s| {
        let threads: Vec<_> = (talkers.into_iter())
            .map(|t| {
                let done = &done;
                s.spawn(move || t.run(done))
            })
            .collect();
        // A fault schedule, not a wait for a condition: mid-conversation.
        std::thread::sleep(Duration::from_millis(700));
        second.kill();
        done.store(true, Ordering::SeqCst);
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    // Every line is sent and acknowledged now: a last look at what each
    // conversation holds (a talker that finished first missed the others'
    // last lines).
    let mut finished = finished;
    for t in &mut finished {
        t.catch_up()
            .unwrap_or_else(|e| panic!("{}: the last catch-up: {e}", t.name));
    }
    let db = postgres::Client::connect(&database, postgres::NoTls).unwrap();
    let (resumes, resent) = check(&finished, &mut Shared(db));
    println!(
        "{} talkers over two servers, one killed: {resumes} resumes, {resent} lines sent again",
        finished.len()
    );
    assert!(
        resumes > finished.len(),
        "the killed server's clients came back on the other"
    );
    drop(lb);
    drop(first);
    drop(redis);
}

/// A grace period short enough for a test to see it end.
const SHORT_GRACE: &str = "2";

fn short_grace(database: String, bus: String) -> impl Fn(&mut Config) + Send + Sync + 'static {
    let share = shared(database, bus);
    move |c: &mut Config| {
        share(c);
        c.limits.grace = 2_000;
        // The servers beside it ask every 0.5 s (a quarter of the grace
        // period), so taking a place for a gone server's after 1 s of
        // nobody keeping it is safe here.
        c.limits.orphan_settle = 1_000;
    }
}

/// How long a place of a server gone for good takes to be let go here:
/// listed for a second, then the grace period, with time to spare.
const LET_GO: Duration = Duration::from_secs(10);

/// Waits for room `room` to close for `client`, and checks it stays closed.
fn expect_closed(client: &mut Client, room: u64) {
    client.wait_for_within("the room closing", LET_GO, |e| match e {
        Event::RoomClosed { room: r, .. } if *r == room => Some(()),
        _ => None,
    });
    client.refused(Request::JoinRoom { room }, ErrorCode::RoomClosed);
}

#[test]
fn a_server_killed_for_good_leaves_its_rooms_open_for_the_grace_period_then_another_closes_them() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let (database, bus) = (pg.url(), redis.url());
    // The first server takes the lowest id slot, so it is the one that
    // answers for a server gone for good; the second is the real binary,
    // killed with SIGKILL.
    let first = TestServer::start_with(short_grace(database.clone(), bus.clone()));
    let second_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        first.data_dir().join(server::KEY_FILE),
        second_dir.path().join(server::KEY_FILE),
    )
    .unwrap();
    let args = [
        "--database",
        &database,
        "--bus",
        &bus,
        "--grace",
        SHORT_GRACE,
    ];
    let mut second = ServeProcess::serve(second_dir.path(), &args);
    // ann's room lives on the second server, with bob from the first in
    // it; dan's room of two on the first has cat from the second, and eve
    // finds it full.
    let mut ann = second.client("ann");
    ann.register();
    let mut bob = first.register("bob");
    let lobby = ann.create_room("lobby", 5);
    join_across(&mut bob, lobby, &mut [&mut ann]);
    let mut cat = second.client("cat");
    cat.register();
    let mut dan = first.register("dan");
    let pair = dan.create_room("pair", 2);
    join_across(&mut cat, pair, &mut [&mut dan]);
    let mut eve = first.register("eve");
    eve.refused(Request::JoinRoom { room: pair }, ErrorCode::RoomFull);

    second.kill();
    // ann's room stays open for the grace period...
    bob.say("anyone?");
    bob.expect_said(lobby, "bob", "anyone?");
    // ... and nobody comes back: the first server lets cat's place go
    // (dan is told, and eve gets it) and closes ann's room.
    dan.wait_for_within("cat leaving", LET_GO, |e| match e {
        Event::Left { room, name, .. } if *room == pair && name == "cat" => Some(()),
        _ => None,
    });
    eve.join(pair);
    expect_closed(&mut bob, lobby);
    drop(first);
    drop(redis);
}

#[test]
fn a_server_restarting_beside_another_keeps_the_others_rooms_and_lets_its_own_go() {
    let pg = Postgres::start();
    let redis = Redis::start();
    let tune = || short_grace(pg.url(), redis.url());
    let first = TestServer::start_with(tune());
    let mut second = TestServer::start_beside(&first, tune());
    // ann's room on the first server, with bob from the second; cat's
    // room on the second, with dan from the first.
    let mut ann = first.register("ann");
    let mut bob = second.register("bob");
    let lobby = ann.create_room("lobby", 5);
    join_across(&mut bob, lobby, &mut [&mut ann]);
    let mut cat = second.register("cat");
    let mut dan = first.register("dan");
    let den = cat.create_room("den", 5);
    join_across(&mut dan, den, &mut [&mut cat]);

    // The second server restarts; bob and cat do not come back.
    second.restart();
    drop((bob, cat));
    // It kept their places for the grace period, and then bob leaves
    // ann's room and cat's room closes, both told on the first server.
    ann.wait_for_within("bob leaving", LET_GO, |e| match e {
        Event::Left { room, name, .. } if *room == lobby && name == "bob" => Some(()),
        _ => None,
    });
    expect_closed(&mut dan, den);
    // ann's room, whose admin is on the first server, is still open.
    ann.say("still open");
    ann.expect_said(lobby, "ann", "still open");
    let mut eve = second.register("eve");
    join_across(&mut eve, lobby, &mut [&mut ann]);
}

#[test]
fn unread_counts_and_read_marks_hold_across_servers() {
    let d = Deployment::start();
    let mut ann = d.nodes[0].register("ann");
    let mut bob = d.nodes[1].register("bob");
    knows_user(&mut ann, "bob");
    for text in ["one", "two"] {
        ann.send_private("bob", text);
        ann.expect_private("ann", "bob", text);
        bob.expect_private("ann", "bob", text);
    }
    // bob on a second device, through ann's server: both unread there too.
    let (mut bob_too, unread) = d.nodes[0].login("bob");
    assert_eq!(unread, 2, "unread on the other server");
    // Read on one server: the session on the other is told at once.
    bob.ok(Request::MarkRead { with: "ann".into() });
    let left = bob_too.wait_for("the read mark", |e| match e {
        Event::Read { with, unread } if with == "ann" => Some(*unread),
        _ => None,
    });
    assert_eq!(left, 0);
    // A new login on either server finds nothing unread.
    for node in &d.nodes {
        let (_, unread) = node.login("bob");
        assert_eq!(unread, 0);
    }
}

#[test]
fn postgres_stopped_and_started_again_under_two_servers_loses_nothing() {
    let mut d = Deployment::start();
    let (mut ann, mut bob, room) = d.lobby();
    ann.say("before");
    ann.expect_said(room, "ann", "before");
    bob.expect_said(room, "ann", "before");
    // Refused meanwhile on ann's server, every line taken reaches bob on
    // the other server once PostgreSQL is back, in order.
    let (taken, refused) = outage(&mut d.pg, &mut ann, room, &mut [&mut bob]);
    bob.say("after");
    bob.expect_said(room, "bob", "after");
    ann.wait_for("bob's line after the outage", |e| {
        matches!(e, Event::RoomMessage { line, .. } if &*line.text == "after").then_some(())
    });
    // A newcomer on bob's server is shown the room as stored: each line
    // taken once, in order, and not the refused one.
    let mut carol = d.nodes[1].register("carol");
    let (_, _, history) = carol.join(room);
    let texts: Vec<String> = history.iter().map(|l| l.text.to_string()).collect();
    let mut expected = vec!["before".to_string()];
    expected.extend(taken);
    expected.push("after".to_string());
    assert_eq!(texts, expected);
    assert!(!texts.contains(&refused));
}
