//! chatapp on PostgreSQL: the store keeps what the SQLite store keeps (the
//! same script runs on both), refuses databases it must not touch, and the
//! real server runs on it, across its own restarts and across PostgreSQL
//! stopping and starting again. Each test starts its own PostgreSQL from
//! the installed binaries ([`Postgres`]).

use crate::kit::postgres::{Postgres, outage};
use crate::kit::{Client, ServeProcess, TestServer};
use chatapp::model::{DeviceId, MessageId, RoomId, UserId};
use chatapp::store::{self, Location, Origin, Page, Store, StoreError, Sync, Write};
use chatapp::wire::msg::Event;
use std::time::Duration;

fn user(id: i64, name: &str) -> Write {
    Write::User {
        id: UserId(id),
        name: name.to_string(),
        password_hash: format!("$scrypt$hash-of-{name}"),
        created: 1_000 + id,
    }
}

fn room_message(id: i64, seq: u64, room: i64, sender: i64, text: &str) -> Write {
    Write::RoomMessage {
        id: MessageId(id),
        seq,
        origin: None,
        room: RoomId(room),
        sender: UserId(sender),
        text: text.into(),
        sent: 2_000 + id,
    }
}

fn private(id: i64, seq: u64, sender: i64, recipient: i64, text: &str) -> Write {
    Write::PrivateMessage {
        id: MessageId(id),
        seq,
        origin: Some(Origin {
            device: DeviceId(1),
            client_id: id as u64,
        }),
        sender: UserId(sender),
        recipient: UserId(recipient),
        text: text.into(),
        sent: 3_000 + id,
    }
}

/// One script for every backend: writes a small chat, reads it back
/// through every query of the interface, opens the store again and reads
/// the snapshot, and checks the refusals. `open` opens the same database
/// each time it is called; `numbers_itself` says whether the backend
/// gives messages their numbers (PostgreSQL) or stores the server's.
fn keeps_a_chat(open: &dyn Fn() -> Box<dyn Store>, numbers_itself: bool) {
    let mut s = open();
    let empty = s.load().unwrap();
    assert!(empty.users.is_empty());
    assert_eq!(
        (empty.next_user, empty.next_room, empty.next_message),
        (UserId(1), RoomId(1), MessageId(1))
    );

    s.apply(&[
        user(1, "Alice"),
        user(2, "bob"),
        user(3, "carol"),
        Write::Device {
            id: DeviceId(1),
            user: UserId(1),
            token_hash: [7; 32],
            created: 5,
        },
        Write::Room {
            id: RoomId(1),
            name: "Lobby".into(),
            admin: UserId(1),
            capacity: 5,
            created: 6,
        },
        Write::Room {
            id: RoomId(2),
            name: "gone".into(),
            admin: UserId(2),
            capacity: 2,
            created: 7,
        },
    ])
    .unwrap();
    let numbers = s
        .apply(&[
            room_message(1, 1, 1, 1, "hello lobby"),
            room_message(2, 2, 1, 2, "hi alice"),
            room_message(3, 3, 1, 3, "hey both"),
            private(4, 1, 1, 2, "psst bob"),
            private(5, 2, 1, 2, "are you there"),
            private(6, 3, 2, 1, "yes"),
            private(7, 1, 3, 1, "carol here"),
            Write::CloseRoom {
                id: RoomId(2),
                closed: 9,
            },
            Write::MarkRead {
                recipient: UserId(2),
                sender: UserId(1),
                upto: 1,
            },
            Write::RotateDevice {
                id: DeviceId(1),
                token_hash: [8; 32],
                previous_hash: [7; 32],
                used: 10,
            },
        ])
        .unwrap();
    assert_eq!(numbers, [1, 2, 3, 1, 2, 3, 1], "each message's number");

    // A batch with one bad write saves none of it: a name taken in
    // another case, after a message that would otherwise be stored.
    let err = s
        .apply(&[room_message(8, 4, 1, 1, "never"), user(4, "ALICE")])
        .unwrap_err();
    assert!(err.is_constraint_violation(), "{err}");
    // A second message with a conversation's number is refused, where
    // the server gives the numbers (PostgreSQL's own are tested below).
    if !numbers_itself {
        let err = s.apply(&[room_message(9, 3, 1, 1, "dup")]).unwrap_err();
        assert!(err.is_constraint_violation(), "{err}");
    }
    // Closing a room never saved.
    assert!(matches!(
        s.apply(&[Write::CloseRoom {
            id: RoomId(99),
            closed: 1
        }]),
        Err(StoreError::NoSuchRoom(RoomId(99)))
    ));
    // A room's name is free again once it closed, not while open.
    assert!(
        s.apply(&[Write::Room {
            id: RoomId(3),
            name: "LOBBY".into(),
            admin: UserId(2),
            capacity: 3,
            created: 11,
        }])
        .unwrap_err()
        .is_constraint_violation()
    );
    s.apply(&[Write::Room {
        id: RoomId(3),
        name: "Gone".into(),
        admin: UserId(2),
        capacity: 3,
        created: 11,
    }])
    .unwrap();
    drop(s);

    let mut s = open();
    let snap = s.load().unwrap();
    let names: Vec<_> = snap.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["Alice", "bob", "carol"]);
    assert_eq!(snap.users[0].password_hash, "$scrypt$hash-of-Alice");
    // bob read the first of alice's two; alice read nothing.
    assert_eq!(
        snap.unread,
        vec![
            (UserId(1), UserId(2), 1),
            (UserId(1), UserId(3), 1),
            (UserId(2), UserId(1), 1)
        ]
    );
    assert_eq!(
        snap.dialogue_seqs,
        vec![(UserId(1), UserId(2), 3), (UserId(1), UserId(3), 1)]
    );
    assert_eq!(
        (snap.next_user, snap.next_room, snap.next_message),
        (UserId(4), RoomId(4), MessageId(8))
    );
    assert_eq!(snap.devices.len(), 1);
    let device = &snap.devices[0];
    assert_eq!(device.token_hash, [8; 32]);
    assert_eq!(device.previous_hash, Some([7; 32]));
    assert_eq!((device.created, device.last_used), (5, 10));
    assert_eq!(device.last_client_id, 7, "the highest client id stored");
    // Looked up by its current token (not by the one it replaced).
    let found = s
        .device(&[8; 32])
        .unwrap()
        .map(|(d, u)| (d.id, d.last_used, u.name));
    assert_eq!(found, Some((DeviceId(1), 10, "Alice".to_string())));
    assert_eq!(s.device(&[7; 32]).unwrap(), None);

    let rooms = s.open_rooms(2).unwrap();
    let open: Vec<_> = rooms.iter().map(|r| (r.id, r.name.as_str())).collect();
    assert_eq!(open, [(RoomId(1), "Lobby"), (RoomId(3), "Gone")]);
    assert_eq!((rooms[0].last_seq, rooms[0].capacity), (3, 5));
    let texts: Vec<_> = rooms[0].history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["hi alice", "hey both"]);

    let history = s
        .room_history(RoomId(1), Page::Before(3), 10)
        .unwrap()
        .into_iter()
        .map(|m| (m.seq, m.sender_name))
        .collect::<Vec<_>>();
    assert_eq!(history, [(1, "Alice".to_string()), (2, "bob".to_string())]);
    let after = s.room_history(RoomId(1), Page::After(1), 1).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].seq, 3, "the newest of those after 1");

    let inbox = s.conversations(UserId(1)).unwrap();
    let summary: Vec<_> = inbox
        .iter()
        .map(|c| (c.other_name.as_str(), c.last_text.as_str(), c.unread))
        .collect();
    assert_eq!(summary, [("carol", "carol here", 1), ("bob", "yes", 1)]);
    let dialogue = s
        .dialogue(UserId(2), UserId(1), Page::Before(u64::MAX), 2)
        .unwrap();
    let lines: Vec<_> = dialogue
        .iter()
        .map(|m| (m.seq, m.sender_name.as_str(), m.text.as_str()))
        .collect();
    assert_eq!(lines, [(2, "Alice", "are you there"), (3, "bob", "yes")]);
    let caught_up = s
        .dialogue(UserId(1), UserId(2), Page::After(2), 10)
        .unwrap();
    assert_eq!(caught_up.len(), 1);
    assert_eq!(caught_up[0].recipient, UserId(1));

    // The read mark never moves back.
    s.apply(&[
        Write::MarkRead {
            recipient: UserId(2),
            sender: UserId(1),
            upto: 2,
        },
        Write::MarkRead {
            recipient: UserId(2),
            sender: UserId(1),
            upto: 1,
        },
        Write::DeleteDevice { id: DeviceId(1) },
    ])
    .unwrap();
    let snap = s.load().unwrap();
    assert!(!snap.unread.iter().any(|&(r, _, _)| r == UserId(2)));
    assert!(snap.devices.is_empty());
}

#[test]
fn the_postgres_store_keeps_a_chat_as_the_sqlite_store_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = Location::Sqlite(dir.path().join("chatapp.db"));
    keeps_a_chat(&|| store::open(&file, Sync::Full).unwrap(), false);

    let pg = Postgres::start();
    let url = Location::Postgres(pg.url());
    keeps_a_chat(&|| store::open(&url, Sync::Full).unwrap(), true);
    let described = store::open(&url, Sync::Full).unwrap().describe().unwrap();
    println!("{described}");
    assert!(
        described.contains("synchronous_commit=on") && described.contains("fsync=on"),
        "{described}"
    );
}

/// The numbers the store answered for the messages of `writes`.
fn numbers(s: &mut dyn Store, writes: &[Write]) -> Vec<u64> {
    s.apply(writes).unwrap()
}

#[test]
fn postgres_numbers_each_conversation_itself_and_a_batch_tried_again_keeps_its_numbers() {
    let pg = Postgres::start();
    let url = pg.url();
    let mut s = store::open(&Location::Postgres(url.clone()), Sync::Full).unwrap();
    let room = Write::Room {
        id: RoomId(1),
        name: "Lobby".into(),
        admin: UserId(1),
        capacity: 5,
        created: 6,
    };
    s.apply(&[user(1, "alice"), user(2, "bob"), room]).unwrap();

    // The numbers proposed (0 here) are not what is stored: each room and
    // each dialogue (both directions together) counts from 1.
    let batch = [
        room_message(1, 0, 1, 1, "a"),
        private(2, 0, 1, 2, "p"),
        room_message(3, 0, 1, 2, "b"),
        private(4, 0, 2, 1, "q"),
    ];
    assert_eq!(numbers(s.as_mut(), &batch), [1, 1, 2, 2]);
    // The same batch again, as after a commit whose answer was lost: the
    // messages keep their numbers and none is taken.
    assert_eq!(numbers(s.as_mut(), &batch), [1, 1, 2, 2]);
    assert_eq!(numbers(s.as_mut(), &[room_message(5, 0, 1, 1, "c")]), [3]);

    // A batch that fails gives its numbers back with it.
    let failing = [room_message(6, 0, 1, 1, "never"), user(3, "ALICE")];
    assert!(s.apply(&failing).unwrap_err().is_constraint_violation());
    assert_eq!(numbers(s.as_mut(), &[room_message(7, 0, 1, 1, "d")]), [4]);

    // Numbers taken elsewhere (as another server on this database would)
    // are skipped: the count lives in the database, not in this store.
    let mut psql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    psql.batch_execute(
        "INSERT INTO messages (id, seq, sender, room, body, sent) VALUES (100, 5, 2, 1, 'x', 1);
         UPDATE rooms SET last_seq = 5 WHERE id = 1;",
    )
    .unwrap();
    assert_eq!(numbers(s.as_mut(), &[room_message(8, 5, 1, 1, "e")]), [6]);
    let stored: Vec<(i64, i64)> = psql
        .query(
            "SELECT id, seq FROM messages WHERE room = 1 ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(stored, [(1, 1), (3, 2), (5, 3), (7, 4), (100, 5), (8, 6)]);
}

#[test]
fn a_message_sent_again_through_another_server_is_stored_once() {
    let pg = Postgres::start();
    let mut s = store::open(&Location::Postgres(pg.url()), Sync::Full).unwrap();
    let device = Write::Device {
        id: DeviceId(1),
        user: UserId(1),
        token_hash: [1; 32],
        created: 1,
    };
    s.apply(&[user(1, "alice"), user(2, "bob"), device])
        .unwrap();
    // private(id, ..) comes from device 1 with client id `id`.
    assert_eq!(numbers(s.as_mut(), &[private(5, 0, 1, 2, "once")]), [1]);
    // The same line (client id 5) under another server's id for it: not
    // stored again, answered 0.
    let again = Write::PrivateMessage {
        id: MessageId(77),
        seq: 0,
        origin: Some(Origin {
            device: DeviceId(1),
            client_id: 5,
        }),
        sender: UserId(1),
        recipient: UserId(2),
        text: "once".into(),
        sent: 9,
    };
    assert_eq!(numbers(s.as_mut(), &[again]), [0]);
    // The first batch tried again keeps its number; the next line goes on.
    assert_eq!(numbers(s.as_mut(), &[private(5, 0, 1, 2, "once")]), [1]);
    assert_eq!(numbers(s.as_mut(), &[private(6, 0, 1, 2, "twice")]), [2]);
    let rows = s
        .dialogue(UserId(1), UserId(2), Page::Before(u64::MAX), 10)
        .unwrap();
    let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(texts, ["once", "twice"]);
}

#[test]
fn two_servers_writing_the_same_conversations_in_opposite_orders_never_deadlock() {
    // Each batch changes twenty rooms' and twenty dialogues' counters,
    // one server's in ascending order, the other's in descending: without
    // one locking order for both, they would soon each hold a row the
    // other waits for, and PostgreSQL would fail one of them.
    const ROOMS: i64 = 20;
    const ROUNDS: i64 = 30;
    let pg = Postgres::start();
    let mut first = store::open_shared(&pg.url()).unwrap();
    let mut setup: Vec<Write> = (1..=ROOMS + 1).map(|u| user(u, &format!("u{u}"))).collect();
    setup.extend(rooms_of_user_1(1..=ROOMS));
    first.apply(&setup).unwrap();
    let second = store::open_shared(&pg.url()).unwrap();
    let writer = |mut s: Box<dyn Store>, descending: bool, ids: i64| {
        std::thread::spawn(move || {
            for round in 0..ROUNDS {
                let mut keys: Vec<i64> = (1..=ROOMS).collect();
                if descending {
                    keys.reverse();
                }
                let mut batch = Vec::new();
                for (k, &key) in keys.iter().enumerate() {
                    let id = ids + round * 100 + 2 * k as i64;
                    batch.push(room_message(id, 0, key, 1, "r"));
                    let mut line = private(id + 1, 0, 1, key + 1, "p");
                    if let Write::PrivateMessage { origin, .. } = &mut line {
                        *origin = None;
                    }
                    batch.push(line);
                }
                if let Err(e) = s.apply(&batch) {
                    panic!("round {round} (descending: {descending}): {e}");
                }
            }
        })
    };
    let up = writer(first, false, 1_000_000);
    let down = writer(second, true, 2_000_000);
    up.join()
        .expect("the ascending server's batches all commit");
    down.join()
        .expect("the descending server's batches all commit");
    // Not even one deadlock broken (and the batch tried again).
    assert_eq!(deadlocks(&pg), 0, "two servers' batches deadlocked");
    let mut check = store::open_shared(&pg.url()).unwrap();
    for key in 1..=ROOMS {
        let rows = check
            .room_history(RoomId(key), Page::Before(u64::MAX), 100)
            .unwrap();
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        assert_eq!(
            seqs,
            (1..=2 * ROUNDS as u64).collect::<Vec<_>>(),
            "room {key}"
        );
        let rows = check
            .dialogue(UserId(1), UserId(key + 1), Page::Before(u64::MAX), 100)
            .unwrap();
        assert_eq!(
            rows.len() as i64,
            2 * ROUNDS,
            "dialogue with user {}",
            key + 1
        );
    }
}

/// Rooms of five places with these ids, opened by user 1.
fn rooms_of_user_1(ids: std::ops::RangeInclusive<i64>) -> impl Iterator<Item = Write> {
    ids.map(|r| Write::Room {
        id: RoomId(r),
        name: format!("room {r}"),
        admin: UserId(1),
        capacity: 5,
        created: 1,
    })
}

/// How many deadlocks PostgreSQL has broken in the test database, read
/// once every other connection has closed (a backend reports its
/// statistics when it ends).
fn deadlocks(pg: &Postgres) -> i64 {
    let mut db = postgres::Client::connect(&pg.url(), postgres::NoTls).unwrap();
    let others = "SELECT count(*) FROM pg_stat_activity \
                  WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let closed = crate::kit::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        db.query_one(others, &[]).unwrap().get::<_, i64>(0) == 0
    });
    assert!(closed, "the other connections closed");
    db.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
    db.query_one(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_batch_failed_to_break_a_deadlock_is_tried_again_and_commits() {
    let pg = Postgres::start();
    let mut s = store::open_shared(&pg.url()).unwrap();
    let mut setup = vec![user(1, "ann")];
    setup.extend(rooms_of_user_1(1..=2));
    s.apply(&setup).unwrap();
    // Another session holds room 2. It leaves the looking for deadlocks to
    // the store's session, which will wait first, so that PostgreSQL fails
    // the store's batch and not its own.
    let mut other = postgres::Client::connect(&pg.url(), postgres::NoTls).unwrap();
    other
        .batch_execute("SET deadlock_timeout = '1min'")
        .unwrap();
    let mut tx = other.transaction().unwrap();
    tx.execute("SELECT id FROM rooms WHERE id = 2 FOR UPDATE", &[])
        .unwrap();
    // The batch locks room 1, then waits for room 2.
    let batch = [
        room_message(10, 0, 1, 1, "one"),
        room_message(11, 0, 2, 1, "two"),
    ];
    let writer = std::thread::spawn(move || s.apply(&batch).map_err(|e| e.to_string()));
    let mut watch = postgres::Client::connect(&pg.url(), postgres::NoTls).unwrap();
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    let blocked =
        crate::kit::wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
            watch.query_one(waiting, &[]).unwrap().get::<_, i64>(0) == 1
        });
    assert!(blocked, "the store's batch waits for room 2");
    drop(watch);
    // Now each waits for the other: PostgreSQL fails the store's batch,
    // this session gets room 1 and commits, and the batch, tried again,
    // commits after it.
    tx.execute("SELECT id FROM rooms WHERE id = 1 FOR UPDATE", &[])
        .unwrap();
    tx.commit().unwrap();
    drop(other);
    let numbers = writer.join().expect("the writer thread ends");
    assert_eq!(numbers, Ok(vec![1, 1]), "the batch was tried again");
    // At least one: when the failed batch lets go of room 1, its retry may
    // take room 1 again before the other session does, and the two
    // deadlock once more; the retry after that commits all the same.
    let broken = deadlocks(&pg);
    assert!(broken >= 1, "PostgreSQL broke a deadlock: {broken}");
}

#[test]
fn a_postgres_database_of_schema_version_1_numbers_on_from_its_messages() {
    let pg = Postgres::start();
    let url = pg.url();
    let mut psql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    psql.batch_execute(include_str!("../../src/store/postgres/schema.sql"))
        .unwrap();
    psql.batch_execute(
        "INSERT INTO chatapp_schema (version) VALUES (1);
         INSERT INTO users (id, name, name_key, password_hash, created)
             VALUES (1, 'alice', 'alice', 'h', 1), (2, 'bob', 'bob', 'h', 1);
         INSERT INTO rooms (id, name, name_key, admin, capacity, created)
             VALUES (1, 'Lobby', 'lobby', 1, 5, 1);
         INSERT INTO messages (id, seq, sender, room, recipient, body, sent) VALUES
             (1, 1, 1, 1, NULL, 'r1', 1), (2, 2, 2, 1, NULL, 'r2', 1),
             (3, 1, 2, NULL, 1, 'p1', 1), (4, 2, 1, NULL, 2, 'p2', 1),
             (5, 3, 2, NULL, 1, 'p3', 1);
         INSERT INTO dialogues (user_id, other) VALUES (1, 2), (2, 1);",
    )
    .unwrap();
    let mut s = store::open(&Location::Postgres(url), Sync::Full).unwrap();
    let version: i32 = psql
        .query_one("SELECT version FROM chatapp_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        version,
        chatapp::store::postgres::SCHEMA_VERSION,
        "migrated"
    );
    let snap = s.load().unwrap();
    assert_eq!(snap.dialogue_seqs, [(UserId(1), UserId(2), 3)]);
    assert_eq!(s.open_rooms(0).unwrap()[0].last_seq, 2);
    let next = [room_message(6, 0, 1, 1, "r3"), private(7, 0, 1, 2, "p4")];
    assert_eq!(numbers(s.as_mut(), &next), [3, 4]);
}

#[test]
fn a_newer_or_foreign_database_is_refused_and_left_as_it_was() {
    let pg = Postgres::start();
    let newer = pg.create_database("newer");
    drop(store::open(&Location::Postgres(newer.clone()), Sync::Full).unwrap());
    let mut psql = postgres::Client::connect(&newer, postgres::NoTls).unwrap();
    psql.execute("UPDATE chatapp_schema SET version = 99", &[])
        .unwrap();
    let err = store::open(&Location::Postgres(newer), Sync::Full)
        .err()
        .expect("a newer schema is refused");
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("run a newer chatapp"), "{err}");

    let foreign = pg.create_database("other_program");
    let mut psql = postgres::Client::connect(&foreign, postgres::NoTls).unwrap();
    psql.batch_execute("CREATE TABLE users (x INTEGER); INSERT INTO users VALUES (42)")
        .unwrap();
    let err = store::open(&Location::Postgres(foreign), Sync::Full)
        .err()
        .expect("a foreign database is refused");
    assert!(matches!(err, StoreError::NotOurs { .. }), "{err}");
    let tables: i64 = psql
        .query_one(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "nothing was created beside the foreign table");
    let kept: i32 = psql.query_one("SELECT x FROM users", &[]).unwrap().get(0);
    assert_eq!(kept, 42);
}

#[test]
fn a_second_server_on_one_database_is_refused_while_the_first_runs() {
    let pg = Postgres::start();
    let url = Location::Postgres(pg.url());
    let first = store::open(&url, Sync::Full).unwrap();
    let err = store::open(&url, Sync::Full)
        .err()
        .expect("a second server on the database is refused");
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    assert!(
        err.to_string().contains("in use by another chatapp server"),
        "{err}"
    );
    drop(first);
    // The lock goes with the first server's connection, once PostgreSQL's
    // backend for it has seen the connection close.
    let freed = crate::kit::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        store::open(&url, Sync::Full).is_ok()
    });
    assert!(freed, "the lock outlived the first server's connection");
}

#[test]
fn a_wrong_or_unreachable_database_is_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there.
    let cases = [
        (
            "postgres://chatapp:s3cret-pw@127.0.0.1:1/chat",
            "could not connect",
        ),
        (
            "postgres://chatapp:s3cret-pw@127.0.0.1:notaport/chat",
            "not one PostgreSQL understands",
        ),
    ];
    for (url, says) in cases {
        // Through the environment, as the operator is told to.
        let out = ServeProcess::command(dir.path(), &[])
            .env("CHATAPP_DATABASE", url)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(
            !stderr.contains("s3cret"),
            "the password stays secret: {stderr}"
        );
        assert!(out.stdout.is_empty(), "it never listened: {:?}", out.stdout);
    }
}

/// A server in this process on `pg`'s database; rooms wait a minute for
/// an admin who dropped.
fn server_on(pg: &Postgres) -> TestServer {
    let url = pg.url();
    TestServer::start_with(move |config| {
        config.database = Some(url.clone());
        config.limits.grace = 60_000;
    })
}

#[test]
fn the_server_on_postgres_keeps_accounts_rooms_and_messages_across_restarts() {
    let pg = Postgres::start();
    let mut server = server_on(&pg);
    let (room, mut members) = server.room_with("alice", &["bob"], 4);
    let [mut alice, mut bob] = <[Client; 2]>::try_from(members.split_off(0)).ok().unwrap();
    alice.say("stored in postgres");
    alice.expect_said(room, "alice", "stored in postgres");
    bob.expect_said(room, "alice", "stored in postgres");
    bob.send_private("alice", "a private word");
    alice.expect_private("bob", "alice", "a private word");
    drop((alice, bob));

    server.restart();
    let (mut alice, unread) = server.login("alice");
    assert_eq!(unread, 1, "bob's private word is still unread");
    let (_, _, history) = alice.join(room);
    let texts: Vec<_> = history.iter().map(|l| l.text.as_ref()).collect();
    assert_eq!(texts, ["stored in postgres"]);
    let dialogue = alice.open_dialogue("bob");
    assert_eq!(dialogue.len(), 1);
    assert_eq!(dialogue[0].text.as_ref(), "a private word");
}

#[test]
fn postgres_stopped_and_started_again_refuses_messages_meanwhile_and_loses_none() {
    let mut pg = Postgres::start();
    let server = server_on(&pg);
    let (room, mut members) = server.room_with("alice", &["bob"], 4);
    let [mut alice, mut bob] = <[Client; 2]>::try_from(members.split_off(0)).ok().unwrap();
    alice.say("before the outage");
    bob.expect_said(room, "alice", "before the outage");

    let (taken, refused_text) = outage(&mut pg, &mut alice, room, &mut [&mut bob]);
    // Taken again once the store is back (the refusal may take a moment
    // to lift: the store says so after its first commit).
    alice.say("after the outage");
    bob.expect_said(room, "alice", "after the outage");

    let mut carol = server.register("carol");
    let (_, _, history) = carol.join(room);
    let texts: Vec<String> = history.iter().map(|l| l.text.to_string()).collect();
    let mut expected = vec!["before the outage".to_string()];
    expected.extend(taken);
    expected.push("after the outage".to_string());
    assert_eq!(texts, expected, "every acknowledged message once, in order");
    assert!(!texts.contains(&refused_text));
    bob.expect_event(&Event::Joined {
        room,
        name: "carol".to_string(),
    });
    bob.expect_quiet();
}
