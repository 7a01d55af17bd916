//! The real server killed with SIGKILL at random moments, ten times, while
//! 50 clients talk in rooms and private chats: every client comes back by
//! itself with its resume token (never its password), catches up by
//! sequence number, and sends again what was not acknowledged, with its
//! client id. At the end every acknowledged message is stored exactly
//! once, every message a client queued while the server was down was
//! delivered, no connection ever received a message twice or out of
//! order, and what each member holds of its room and its dialogue is the
//! conversation the database holds, number for number.

use crate::kit::talker::{Addr, MESSAGES, Stored, Talker, UNTHROTTLED, check, name};
use crate::kit::{self, ServeProcess};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROOMS: usize = 5;
const PER_ROOM: usize = 10;
const CLIENTS: usize = ROOMS * PER_ROOM;
const KILLS: usize = 10;

fn start(dir: &Path) -> ServeProcess {
    ServeProcess::serve(dir, &UNTHROTTLED)
}

#[test]
fn ten_kills_lose_nothing_acknowledged_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let addr: Addr = Arc::new(Mutex::new(server.addr.clone()));

    // The rooms, and every talker logged in once with its password.
    let mut talkers = Vec::new();
    let mut rooms = Vec::new();
    for n in 0..CLIENTS {
        let mut client = server.client(&name(n));
        let token = client.register();
        let room = if n % PER_ROOM == 0 {
            let room = client.create_room(&format!("room {}", n / PER_ROOM), 20);
            rooms.push(room);
            room
        } else {
            let room = rooms[n / PER_ROOM];
            client.join(room);
            room
        };
        drop(client);
        talkers.push(Talker::new(n, room, name(n ^ 1), token, addr.clone()));
    }

    // Ten kills at moments from a seeded generator (printed, to replay).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill moments from seed {seed}");
    let mut state = seed | 1;
    let mut random_ms = |lo: u64, hi: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        lo + state % (hi - lo)
    };
    let done = AtomicBool::new(false);
    let finished: Vec<Talker> = std::thread::scope(|s| {
        let threads: Vec<_> = talkers
            .into_iter()
            .map(|t| {
                let done = &done;
                s.spawn(move || t.run(done))
            })
            .collect();
        for _ in 0..KILLS {
            // A fault schedule, not a wait for a condition: the moments
            // are the point.
            std::thread::sleep(Duration::from_millis(random_ms(100, 500)));
            server.kill();
            server = start(dir.path());
            *addr.lock().unwrap() = server.addr.clone();
        }
        done.store(true, Ordering::SeqCst);
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });

    // What the database holds, conversation by conversation.
    let db = kit::open_db(&dir.path().join(chatapp::server::DATABASE_FILE));
    let (resumes, resent) = check(&finished, &mut Sqlite(db));
    println!(
        "{CLIENTS} talkers, {KILLS} kills: {resumes} resumes, {resent} lines sent again after \
         a resume, {} lines acknowledged and stored once",
        CLIENTS as u64 * MESSAGES
    );
    assert!(
        resumes >= CLIENTS * (KILLS + 1),
        "every talker came back after every kill"
    );
    assert!(
        resent > 0,
        "some line was cut off before its ok: the repeat path ran"
    );
}

/// The SQLite file, as the talkers are checked against it.
struct Sqlite(rusqlite::Connection);

impl Sqlite {
    fn conversation(&self, sql: &str, a: i64, b: i64) -> BTreeMap<u64, String> {
        let mut stmt = self.0.prepare(sql).unwrap();
        stmt.query_map([a, b], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn user_id(&self, name: &str) -> i64 {
        (self.0)
            .query_row("SELECT id FROM users WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .unwrap()
    }
}

impl Stored for Sqlite {
    fn count(&mut self, text: &str) -> i64 {
        (self.0)
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE body = ?1",
                [text],
                |row| row.get(0),
            )
            .unwrap()
    }

    fn room(&mut self, room: u64) -> BTreeMap<u64, String> {
        let sql = "SELECT seq, body FROM messages WHERE room = ?1 AND ?2 = ?2 ORDER BY seq";
        self.conversation(sql, room as i64, 0)
    }

    fn dialogue(&mut self, a: &str, b: &str) -> BTreeMap<u64, String> {
        let sql = "SELECT m.seq, m.body FROM messages AS m
            JOIN users AS a ON a.id IN (m.sender, m.recipient)
            JOIN users AS b ON b.id IN (m.sender, m.recipient)
            WHERE m.recipient IS NOT NULL AND a.id = ?1 AND b.id = ?2 AND a.id <> b.id
            ORDER BY m.seq";
        self.conversation(sql, self.user_id(a), self.user_id(b))
    }
}
