//! A client that keeps talking through faults, for the tests that kill
//! servers under load (`chaos`, `cluster`): it sends its lines (room and
//! private in turn, each with a client id), comes back by itself with its
//! resume token whenever its connection drops, catches up by sequence
//! number, sends again what was not acknowledged, and records every line
//! it was shown, live or caught up, with anything shown twice or out of
//! order on one connection.

use super::{self as kit};
use chatapp::client::proto::{self, Connection};
use chatapp::wire::msg::{Event, Reply, Request, Topic};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Messages each talker sends, room and private in turn.
pub const MESSAGES: u64 = 24;
/// Message and request budgets a talker never reaches.
pub const UNTHROTTLED: [&str; 8] = [
    "--message-rate",
    "10000",
    "--message-burst",
    "10000",
    "--request-rate",
    "10000",
    "--request-burst",
    "10000",
];

/// The longest a talker may take to come back after a fault, or to finish
/// once the faults are over.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Where the server is now (its port changes with each start).
pub type Addr = Arc<Mutex<String>>;

/// What one client saw of one conversation.
#[derive(Default)]
pub struct Seen {
    /// Every line it holds, by sequence number: live and caught up.
    pub lines: BTreeMap<u64, String>,
    /// Problems: a line delivered twice, or out of order, on one
    /// connection.
    pub wrong: Vec<String>,
    /// The last number delivered live on the current connection.
    pub live_last: u64,
}

impl Seen {
    pub fn last(&self) -> u64 {
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

pub struct Talker {
    pub n: usize,
    pub name: String,
    pub room: u64,
    pub partner: String,
    pub token: String,
    pub addr: Addr,
    pub conn: Option<Connection>,
    pub room_seen: Seen,
    pub dialogue_seen: Seen,
    /// Sent or to send, not yet acknowledged: (client id, request).
    pub pending: VecDeque<(u64, Request)>,
    pub acked: Vec<String>,
    pub resumes: usize,
    /// Lines sent again after a resume (their first `ok` never came).
    pub resent: usize,
}

pub fn name(n: usize) -> String {
    format!("talker{n:02}")
}

impl Talker {
    /// Talker `n` (named by [`name`]), a member of `room`, writing
    /// privately to `partner`, with the resume token it logged in with,
    /// reaching the server at `addr`. It connects when it runs.
    pub fn new(n: usize, room: u64, partner: String, token: String, addr: Addr) -> Talker {
        Talker {
            n,
            name: name(n),
            room,
            partner,
            token,
            addr,
            conn: None,
            room_seen: Seen::default(),
            dialogue_seen: Seen::default(),
            pending: VecDeque::new(),
            acked: Vec::new(),
            resumes: 0,
            resent: 0,
        }
    }

    pub fn text(&self, id: u64) -> String {
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
    pub fn catch_up(&mut self) -> Result<(), String> {
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
    pub fn run(mut self, done: &AtomicBool) -> Talker {
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

/// What a store holds, to check talkers against.
pub trait Stored {
    /// How many messages say `text`.
    fn count(&mut self, text: &str) -> i64;
    /// A room's messages by number.
    fn room(&mut self, room: u64) -> BTreeMap<u64, String>;
    /// The dialogue of two users (by name), by number.
    fn dialogue(&mut self, a: &str, b: &str) -> BTreeMap<u64, String>;
}

/// Every talker saw nothing twice or out of order, had every line
/// acknowledged, each stored exactly once, and holds its room and its
/// dialogue as stored, numbered 1, 2, 3, ... without gaps. Answers how
/// many resumes they made and how many lines they sent again.
pub fn check(finished: &[Talker], db: &mut dyn Stored) -> (usize, usize) {
    let (mut resumes, mut resent) = (0, 0);
    for t in finished {
        resumes += t.resumes;
        resent += t.resent;
        for seen in [&t.room_seen, &t.dialogue_seen] {
            assert!(seen.wrong.is_empty(), "{}: {:?}", t.name, seen.wrong);
        }
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
        for text in &t.acked {
            let stored = db.count(text);
            assert_eq!(stored, 1, "{text:?} stored {stored} times");
        }
        let room = db.room(t.room);
        let dialogue = db.dialogue(&t.name, &t.partner);
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
    (resumes, resent)
}
