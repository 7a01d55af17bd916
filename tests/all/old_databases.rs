//! Databases written by earlier versions of chatapp open, migrate and keep
//! everything. Each `tests/fixtures/schema-v<N>.sql` is a frozen database of
//! schema version N as SQL text (that version's schema as shipped, then
//! rows): the test builds the file from it with rusqlite, starts the real
//! server on it, and checks through the protocol that every account logs
//! in and that inboxes, unread counts and dialogues are as the old server
//! left them; then, with rusqlite, that every row is still in the file
//! (closed rooms and their history included) and that the file has the
//! schema a fresh database gets.

use crate::kit::{Client, open_db};
use chatapp::client::proto;
use chatapp::server::{self, Config, DATABASE_FILE, Handle};
use chatapp::store::password::HashCost;
use chatapp::wire::msg::{Conversation, PrivateLine};
use rusqlite::types::Value;
use std::path::Path;
use tempfile::TempDir;

/// The schema version this build writes: fixtures of every earlier one,
/// and of this one, must exist.
const CURRENT: i64 = 3;

const BASE: i64 = 1_700_000_000_000;

/// When fixture message `id` was sent.
fn sent(id: u64) -> i64 {
    BASE + 60_000 * id as i64
}

fn start(dir: &Path) -> Handle {
    let mut config = Config::new(dir.to_path_buf());
    config.hash_cost = HashCost::TEST;
    server::start("127.0.0.1:0".parse().unwrap(), config).expect("the server starts")
}

fn client(server: &Handle, name: &str) -> Client {
    let addr = server.addr.to_string();
    let conn = proto::connect(&addr)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
        .accept();
    Client {
        name: name.to_string(),
        conn,
    }
}

/// Logs in with the test password the fixtures' hashes were made from;
/// returns the client and its unread count.
fn login(server: &Handle, name: &str) -> (Client, u32) {
    let mut client = client(server, name);
    let unread = client.login();
    (client, unread)
}

/// Every row of a query, as SQLite values.
fn rows(db: &rusqlite::Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = db.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns = stmt.column_count();
    stmt.query_map([], |row| {
        (0..columns)
            .map(|i| row.get::<_, Value>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn count(db: &rusqlite::Connection, table: &str) -> i64 {
    db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .unwrap()
}

fn user_version(db: &rusqlite::Connection) -> i64 {
    db.pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

fn conversation(with: &str, last_from: &str, last: u64, text: &str, unread: u32) -> Conversation {
    Conversation {
        with: with.into(),
        last_from: last_from.into(),
        last_text: text.into(),
        last_time: sent(last),
        unread,
    }
}

fn line(id: u64, seq: u64, from: &str, to: &str, text: &str) -> PrivateLine {
    PrivateLine {
        id,
        seq,
        from: from.into(),
        to: to.into(),
        text: text.into(),
        time: sent(id),
    }
}

const UNICODE: &str = "with an émoji 🎉 and ünïcode";

/// Builds the fixture of schema `version`, starts the server on it, and
/// checks everything the fixture holds (the same data in every fixture, as
/// described at the top of each).
fn migrates_and_keeps_everything(version: i64) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("schema-v{version}.sql"));
    let sql =
        std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let dir = TempDir::new().unwrap();
    let db_path = dir.path().join(DATABASE_FILE);
    let (users, rooms, messages) = {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.execute_batch(&sql)
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        assert_eq!(user_version(&db), version, "the fixture's own version");
        (
            rows(&db, "SELECT * FROM users ORDER BY id"),
            rows(&db, "SELECT * FROM rooms ORDER BY id"),
            rows(&db, "SELECT * FROM messages ORDER BY id"),
        )
    };
    assert_eq!((users.len(), rooms.len(), messages.len()), (4, 3, 12));

    let server = start(dir.path());

    // Migrated at start, before anyone logged in: the version, the read
    // state as one mark per user and partner (a sequence number of their
    // dialogue), from the old flags (version 1) or the old mark, a message
    // id (version 2), and every message numbered in its conversation.
    let db = open_db(&db_path);
    assert_eq!(user_version(&db), CURRENT);
    assert_eq!(
        rows(
            &db,
            "SELECT user, other, read_seq FROM dialogues ORDER BY user, other"
        ),
        [
            [1, 2, 2],
            [1, 3, 0],
            [2, 1, 1],
            [2, 3, 0],
            [3, 1, 0],
            [3, 2, 1]
        ]
        .map(|row| row.map(Value::Integer).to_vec())
    );
    // Rooms #1 (1, 2, 12) and #2 (5, 8); dialogues ann-Bob (3, 4, 6, 9),
    // ann-cyd (7, 11) and Bob-cyd (10).
    assert_eq!(
        rows(&db, "SELECT id, seq FROM messages ORDER BY id"),
        [
            [1, 1],
            [2, 2],
            [3, 1],
            [4, 2],
            [5, 1],
            [6, 3],
            [7, 1],
            [8, 2],
            [9, 4],
            [10, 1],
            [11, 2],
            [12, 3]
        ]
        .map(|row| row.map(Value::Integer).to_vec())
    );
    drop(db);

    // Every account logs in with its password, with its unread count.
    let (mut ann, unread) = login(&server, "ann");
    assert_eq!(unread, 2, "cyd's two messages");
    let (mut bob, unread) = login(&server, "Bob");
    assert_eq!(unread, 2, "ann's two newest messages");
    let (mut cyd, unread) = login(&server, "cyd");
    assert_eq!(unread, 0);
    let (mut dee, unread) = login(&server, "Dee");
    assert_eq!(unread, 0);

    // Inboxes, newest conversation first, with their unread counts.
    assert_eq!(
        ann.inbox(),
        [
            conversation("cyd", "cyd", 11, UNICODE, 2),
            conversation("Bob", "ann", 9, "at noon", 0),
        ]
    );
    assert_eq!(
        bob.inbox(),
        [
            conversation("cyd", "Bob", 10, "welcome cyd", 0),
            conversation("ann", "ann", 9, "at noon", 2),
        ]
    );
    assert_eq!(
        cyd.inbox(),
        [
            conversation("ann", "cyd", 11, UNICODE, 0),
            conversation("Bob", "Bob", 10, "welcome cyd", 0),
        ]
    );
    assert_eq!(dee.inbox(), []);

    // Every message of a dialogue, in order, from either side.
    let ann_and_bob = [
        line(3, 1, "ann", "Bob", "are you there?"),
        line(4, 2, "Bob", "ann", "yes, here"),
        line(6, 3, "ann", "Bob", "lunch tomorrow?"),
        line(9, 4, "ann", "Bob", "at noon"),
    ];
    assert_eq!(ann.open_dialogue("Bob"), ann_and_bob);
    assert_eq!(bob.open_dialogue("ann"), ann_and_bob);
    assert_eq!(
        cyd.open_dialogue("ann"),
        [
            line(7, 1, "cyd", "ann", "ann, a question"),
            line(11, 2, "cyd", "ann", UNICODE),
        ]
    );
    assert_eq!(
        cyd.open_dialogue("Bob"),
        [line(10, 1, "Bob", "cyd", "welcome cyd")]
    );
    // Opening marked Bob's dialogue with ann read; ann's with cyd is not.
    assert_eq!(bob.inbox()[1], conversation("ann", "ann", 9, "at noon", 0));
    assert_eq!(ann.inbox()[0].unread, 2);

    // New messages continue after the old ones.
    dee.send_private("ann", "first since the upgrade");
    let new = ann.expect_private("Dee", "ann", "first since the upgrade");
    assert_eq!(new.id, 13, "the next message id after the fixture's");
    assert_eq!(new.seq, 1, "the first of a new dialogue");
    assert_eq!(ann.inbox()[0].with, "Dee");
    bob.send_private("ann", "after the upgrade");
    let next = ann.expect_private("Bob", "ann", "after the upgrade");
    assert_eq!(next.seq, 5, "numbered after the dialogue's old messages");
    drop((ann, bob, cyd, dee));
    server.stop().expect("the server stops cleanly");

    let (_, unread) = {
        let server = start(dir.path());
        let got = login(&server, "Bob");
        server.stop().expect("the server stops cleanly");
        got
    };
    assert_eq!(unread, 0, "the read mark was stored");

    // Every row, closed rooms and their history included, is in the file.
    let db = open_db(&db_path);
    assert_eq!(user_version(&db), CURRENT);
    assert_eq!(rows(&db, "SELECT * FROM users ORDER BY id"), users);
    let after = rows(&db, "SELECT * FROM messages ORDER BY id");
    assert_eq!(after.len(), 14);
    // Each old row as it was, with its sequence number after it (a fixture
    // of version 3 has it already).
    for (old, new) in messages.iter().zip(&after) {
        assert_eq!(old[..7], new[..7]);
    }
    // The room left open is closed at start (rooms do not outlive a
    // restart yet); the others keep their closing time.
    let rooms_after = rows(&db, "SELECT * FROM rooms ORDER BY id");
    assert_eq!(rooms_after.len(), 3);
    let closed = 6;
    assert_eq!(rooms[0][closed], Value::Null);
    assert!(
        matches!(rooms_after[0][closed], Value::Integer(t) if t > BASE),
        "{:?}",
        rooms_after[0]
    );
    assert_eq!(rooms_after[0][..closed], rooms[0][..closed]);
    assert_eq!(rooms_after[1..], rooms[1..]);
    let room_lines = rows(
        &db,
        "SELECT id, room, body FROM messages WHERE room IS NOT NULL ORDER BY id",
    );
    assert_eq!(room_lines.len(), 5, "{room_lines:?}");
    assert_eq!(
        count(&db, "messages WHERE room = 2"),
        2,
        "the closed room's"
    );
    // Bob's mark moved to the last message he opened; Dee's message to ann
    // made two more rows.
    let bob_read: i64 = db
        .query_row(
            "SELECT read_seq FROM dialogues WHERE user = 2 AND other = 1",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(bob_read, 4);
    assert_eq!(count(&db, "dialogues"), 8);

    // The same schema a fresh database gets, object for object.
    let fresh = TempDir::new().unwrap();
    start(fresh.path()).stop().unwrap();
    let fresh = open_db(&fresh.path().join(DATABASE_FILE));
    let schema = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name";
    assert_eq!(rows(&db, schema), rows(&fresh, schema));
    assert_eq!(user_version(&fresh), CURRENT);
}

#[test]
fn a_version_1_database_migrates_and_keeps_everything() {
    migrates_and_keeps_everything(1);
}

#[test]
fn a_version_2_database_migrates_and_keeps_everything() {
    migrates_and_keeps_everything(2);
}

/// The current shape round-trips: a file this version wrote opens as it is.
#[test]
fn a_version_3_database_opens_and_keeps_everything() {
    migrates_and_keeps_everything(3);
}

/// A fixture exists for every schema version up to the one a fresh
/// database gets, so a new version cannot ship without one.
#[test]
fn every_schema_version_has_a_fixture() {
    let fresh = TempDir::new().unwrap();
    start(fresh.path()).stop().unwrap();
    let version = user_version(&open_db(&fresh.path().join(DATABASE_FILE)));
    assert_eq!(
        version, CURRENT,
        "schema version {version}: add tests/fixtures/schema-v{version}.sql and a test that \
         migrates it"
    );
    for version in 1..=CURRENT {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/schema-v{version}.sql"));
        assert!(path.is_file(), "{} is missing", path.display());
    }
}
