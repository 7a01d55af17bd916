//! The real server killed with SIGKILL at random moments, ten times, while
//! 50 clients talk in rooms and private chats: every client comes back by
//! itself with its resume token (never its password), catches up by
//! sequence number, and sends again what was not acknowledged, with its
//! client id. At the end every acknowledged message is stored exactly
//! once, every message a client queued while the server was down was
//! delivered, no connection ever received a message twice or out of
//! order, and what each member holds of its room and its dialogue is the
//! conversation the database holds, number for number.

use crate::kit::{self, ServeProcess};
use chatapp::client::proto::{self, Connection};
use chatapp::wire::msg::{Event, Reply, Request, Topic};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROOMS: usize = 5;
const PER_ROOM: usize = 10;
const CLIENTS: usize = ROOMS * PER_ROOM;
/// Messages each client sends, room and private in turn.
const MESSAGES: u64 = 24;
const KILLS: usize = 10;
/// The longest a client may take to come back after a restart, or the
/// test to finish once the killing is over.
const DEADLINE: Duration = Duration::from_secs(60);

/// Where the server is now (its port changes with each start).
type Addr = Arc<Mutex<String>>;

/// What one client saw of one conversation.
#[derive(Default)]
struct Seen {
    /// Every line it holds, by sequence number: live and caught up.
    lines: BTreeMap<u64, String>,
    /// Problems: a line delivered twice, or out of order, on one
    /// connection.
    wrong: Vec<String>,
    /// The last number delivered live on the current connection.
    live_last: u64,
}

impl Seen {
    fn last(&self) -> u64 {
        self.lines.keys().next_back().copied().unwrap_or(0)
    }

    fn live(&mut self, seq: u64, text: &str) {
        if seq <= self.live_last {
            self.wrong
                .push(format!("{seq} after {} on one connection", self.live_last));
        }
        self.live_last = seq;
        self.hold(seq, text);
    }

    fn hold(&mut self, seq: u64, text: &str) {
        if let Some(old) = self.lines.insert(seq, text.to_string())
            && old != text
        {
            self.wrong.push(format!("{seq} was {old:?}, then {text:?}"));
        }
    }
}

struct Talker {
    n: usize,
    name: String,
    room: u64,
    partner: String,
    token: String,
    addr: Addr,
    conn: Option<Connection>,
    room_seen: Seen,
    dialogue_seen: Seen,
    /// Sent or to send, not yet acknowledged: (client id, request).
    pending: VecDeque<(u64, Request)>,
    acked: Vec<String>,
    resumes: usize,
    /// Lines sent again after a resume (their first `ok` never came).
    resent: usize,
}

fn name(n: usize) -> String {
    format!("talker{n:02}")
}

impl Talker {
    fn text(&self, id: u64) -> String {
        format!("{} line {id}", self.name)
    }

    fn request(&self, id: u64) -> Request {
        let text = self.text(id);
        if id.is_multiple_of(2) {
            Request::Say {
                text,
                client_id: id,
            }
        } else {
            Request::SendPrivate {
                to: self.partner.clone(),
                text,
                client_id: id,
            }
        }
    }

    /// Connected and resumed, back in the room and caught up, pending
    /// lines sent again; `Err` if the connection failed on the way.
    fn come_back(&mut self) -> Result<(), String> {
        let addr = self.addr.lock().unwrap().clone();
        let mut conn = proto::connect(&addr).map_err(|e| e.to_string())?.accept();
        let wait = kit::WAIT;
        let reply = conn
            .request_within(
                Request::Resume {
                    token: self.token.clone(),
                },
                wait,
            )
            .map_err(|e| e.to_string())?;
        self.token = match reply {
            Reply::LoggedIn { token, .. } => token,
            other => panic!("{}: resume refused: {other:?}", self.name),
        };
        self.resumes += 1;
        match conn.request_within(Request::JoinRoom { room: self.room }, wait) {
            Ok(Reply::Room { .. }) => {}
            Ok(other) => panic!("{}: back into #{}: {other:?}", self.name, self.room),
            Err(e) => return Err(e.to_string()),
        }
        self.room_seen.live_last = 0;
        self.dialogue_seen.live_last = 0;
        self.conn = Some(conn);
        self.catch_up()?;
        let again: Vec<(u64, Request)> = self.pending.iter().cloned().collect();
        self.resent += again.len();
        for (id, req) in again {
            self.send(id, req)?;
        }
        Ok(())
    }

    /// Whatever came after the last line held, in both conversations.
    fn catch_up(&mut self) -> Result<(), String> {
        let conn = self.conn.as_mut().expect("connected");
        let topics = [
            (Topic::Room { room: self.room }, self.room_seen.last()),
            (
                Topic::Dialogue {
                    with: self.partner.clone(),
                },
                self.dialogue_seen.last(),
            ),
        ];
        for (of, after) in topics {
            let req = Request::CatchUp {
                of,
                after,
                limit: 200,
            };
            match conn
                .request_within(req, kit::WAIT)
                .map_err(|e| e.to_string())?
            {
                Reply::RoomCaughtUp {
                    skipped, history, ..
                } => {
                    assert_eq!(skipped, 0, "{}: fewer than 200 missed", self.name);
                    for l in history {
                        self.room_seen.hold(l.seq, &l.text);
                    }
                }
                Reply::DialogueCaughtUp {
                    skipped, history, ..
                } => {
                    assert_eq!(skipped, 0, "{}: fewer than 200 missed", self.name);
                    for l in history {
                        self.dialogue_seen.hold(l.seq, &l.text);
                    }
                }
                other => panic!("{}: catch_up: {other:?}", self.name),
            }
        }
        Ok(())
    }

    fn send(&mut self, id: u64, req: Request) -> Result<(), String> {
        let conn = self.conn.as_mut().expect("connected");
        match conn
            .request_within(req, kit::WAIT)
            .map_err(|e| e.to_string())?
        {
            Reply::Ok => {
                self.pending.retain(|(p, _)| *p != id);
                let text = self.text(id);
                if !self.acked.contains(&text) {
                    self.acked.push(text);
                }
                Ok(())
            }
            other => panic!("{}: line {id}: {other:?}", self.name),
        }
    }

    /// Takes the events that came, for a moment.
    fn listen(&mut self, wait: Duration) -> Result<(), String> {
        let conn = self.conn.as_mut().expect("connected");
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match conn.next_event(Some(left)).map_err(|e| e.to_string())? {
                Some(Event::RoomMessage { line, .. }) => self.room_seen.live(line.seq, &line.text),
                Some(Event::PrivateMessage { line }) => {
                    self.dialogue_seen.live(line.seq, &line.text)
                }
                Some(_) => {}
                None => return Ok(()),
            }
            if left.is_zero() {
                return Ok(());
            }
        }
    }

    /// Sends its lines, one every 50 ms or so, coming back whenever the
    /// connection drops; then waits for `done` and catches up a last time.
    fn run(mut self, done: &AtomicBool) -> Talker {
        let mut next = 1;
        let mut lost_at: Option<Instant> = None;
        loop {
            if self.conn.is_none() {
                match self.come_back() {
                    Ok(()) => lost_at = None,
                    Err(_) => {
                        self.conn = None;
                        let since = *lost_at.get_or_insert_with(Instant::now);
                        assert!(since.elapsed() < DEADLINE, "{} never came back", self.name);
                        std::thread::sleep(Duration::from_millis(20)); // retry backoff
                        continue;
                    }
                }
            }
            if next <= MESSAGES {
                // Queued first: a line typed while the server is down
                // waits here and goes when it is back.
                let req = self.request(next);
                self.pending.push_back((next, req.clone()));
                next += 1;
                if self.send(next - 1, req).is_err() {
                    self.conn = None;
                    continue;
                }
            } else if self.pending.is_empty() && done.load(Ordering::SeqCst) {
                if self.catch_up().is_err() {
                    self.conn = None;
                    continue;
                }
                return self;
            }
            if self
                .listen(Duration::from_millis(40 + (self.n as u64 % 7) * 5))
                .is_err()
            {
                self.conn = None;
            }
        }
    }
}

fn start(dir: &Path) -> ServeProcess {
    ServeProcess::serve(
        dir,
        &[
            "--message-rate",
            "10000",
            "--message-burst",
            "10000",
            "--request-rate",
            "10000",
            "--request-burst",
            "10000",
        ],
    )
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
        talkers.push(Talker {
            n,
            name: name(n),
            room,
            partner: name(n ^ 1),
            token,
            addr: addr.clone(),
            conn: None,
            room_seen: Seen::default(),
            dialogue_seen: Seen::default(),
            pending: VecDeque::new(),
            acked: Vec::new(),
            resumes: 0,
            resent: 0,
        });
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
    let conversation = |sql: &str, a: i64, b: i64| -> BTreeMap<u64, String> {
        let mut stmt = db.prepare(sql).unwrap();
        stmt.query_map([a, b], |row| {
            Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let room_sql = "SELECT seq, body FROM messages WHERE room = ?1 AND ?2 = ?2 ORDER BY seq";
    let dialogue_sql = "SELECT m.seq, m.body FROM messages AS m
        JOIN users AS a ON a.id IN (m.sender, m.recipient)
        JOIN users AS b ON b.id IN (m.sender, m.recipient)
        WHERE m.recipient IS NOT NULL AND a.id = ?1 AND b.id = ?2 AND a.id <> b.id
        ORDER BY m.seq";
    let user_id = |name: &str| -> i64 {
        db.query_row("SELECT id FROM users WHERE name = ?1", [name], |row| {
            row.get(0)
        })
        .unwrap()
    };
    let (mut resumes, mut resent) = (0, 0);
    for t in &finished {
        resumes += t.resumes;
        resent += t.resent;
        assert!(
            t.room_seen.wrong.is_empty(),
            "{}: {:?}",
            t.name,
            t.room_seen.wrong
        );
        assert!(
            t.dialogue_seen.wrong.is_empty(),
            "{}: {:?}",
            t.name,
            t.dialogue_seen.wrong
        );
        assert!(
            t.pending.is_empty(),
            "{}: {:?} never acknowledged",
            t.name,
            t.pending
        );
        assert_eq!(
            t.acked.len() as u64,
            MESSAGES,
            "{}: every line acknowledged",
            t.name
        );
        // Each acknowledged line stored exactly once.
        for text in &t.acked {
            let stored: i64 = db
                .query_row(
                    "SELECT COUNT(*) FROM messages WHERE body = ?1",
                    [text],
                    |row| row.get(0),
                )
                .unwrap();
            assert_eq!(stored, 1, "{text:?} stored {stored} times");
        }
        // The member holds its conversations as stored: 1, 2, 3, ...
        let room = conversation(room_sql, t.room as i64, 0);
        let dialogue = conversation(dialogue_sql, user_id(&t.name), user_id(&t.partner));
        for (what, stored, held) in [
            ("room", &room, &t.room_seen.lines),
            ("dialogue", &dialogue, &t.dialogue_seen.lines),
        ] {
            let numbers: Vec<u64> = stored.keys().copied().collect();
            let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
            assert_eq!(
                numbers, expected,
                "{}: the {what} is numbered without gaps",
                t.name
            );
            assert_eq!(held, stored, "{}: holds the {what} as stored", t.name);
        }
    }
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
