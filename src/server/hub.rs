//! The chat core: accounts, rooms, membership, private messages and the
//! inbox, as a state machine. It is fed [`Input`]s and drained of
//! [`Output`]s; it never touches a socket, the clock or SQLite. The time
//! comes in with every call, slow work (scrypt, SQLite) leaves as an output
//! and comes back as an input, so the event loop around it never waits.
//!
//! Durability rule: a room or private message is handed to the store as a
//! [`Write`] with a sequence number, and is delivered to anyone (and
//! acknowledged to its sender) only once the store reports that sequence
//! committed. The store commits in order and in groups, so one number is
//! enough to release everything behind it.

use crate::model::{
    self, MAX_CAPACITY, MAX_TEXT_BYTES, MIN_CAPACITY, MessageId, Millis, ROOM_HISTORY, RoomId,
    UserId,
};
use crate::password;
use crate::store::{self, Snapshot, Write};
use crate::wire::msg::{
    ClientFrame, Conversation, ErrorCode, Event, LeaveReason, PrivateLine, Reply, Request,
    RoomInfo, RoomLine, ServerFrame,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

pub use super::limits::Limits;
use super::limits::{Bucket, FAILURE_MEMORY, Failures};

/// A connection, as the event loop numbers them. Never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A map keyed by connection. The keys are counters the server chose, so
/// nobody can pick them to collide: a multiply is hash enough, and it is
/// looked up once per recipient of every message.
pub type ConnMap<V> = HashMap<ConnId, V, BuildHasherDefault<ConnHasher>>;

#[derive(Default)]
pub struct ConnHasher(u64);

impl Hasher for ConnHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Everything that happens to the hub.
#[derive(Debug)]
pub enum Input {
    /// A client connected (its handshake is still to come). `peer` is its
    /// address, `ip` the part that login throttling counts by.
    Connected {
        conn: ConnId,
        peer: String,
        ip: String,
    },
    Request {
        conn: ConnId,
        frame: ClientFrame,
    },
    /// The connection is gone (closed, reset, timed out or refused by us).
    Disconnected {
        conn: ConnId,
        reason: String,
    },
    /// A registration's password hash is ready.
    Hashed {
        conn: ConnId,
        id: u32,
        name: String,
        hash: String,
    },
    /// A login's password check finished; `user` is set when it matched.
    /// `name` is the name that was tried.
    Verified {
        conn: ConnId,
        id: u32,
        name: String,
        user: Option<UserId>,
    },
    /// The store committed every write up to and including `seq`, or failed
    /// to (`ok == false`), in which case none of those writes were kept.
    Committed {
        seq: u64,
        ok: bool,
    },
    /// A store read answered.
    Answered {
        conn: ConnId,
        id: u32,
        answer: Answer,
    },
}

/// Password work, done off the loop thread.
#[derive(Debug)]
pub enum AuthJob {
    /// Hash a new account's password; answer with [`Input::Hashed`].
    Hash {
        conn: ConnId,
        id: u32,
        name: String,
        password: String,
    },
    /// Check a password against a stored hash, or against a dummy one when
    /// the user does not exist, so that both take the same time; answer
    /// with [`Input::Verified`].
    Verify {
        conn: ConnId,
        id: u32,
        name: String,
        user: Option<(UserId, String)>,
        password: String,
    },
}

/// Store work, done in order off the loop thread.
#[derive(Debug)]
pub enum StoreJob {
    /// Store this write; report it with [`Input::Committed`].
    Write { seq: u64, write: Write },
    /// Read from the store; answer with [`Input::Answered`].
    Query { conn: ConnId, id: u32, query: Query },
}

/// Everything the hub asks of the world around it.
#[derive(Debug)]
pub enum Output {
    Send {
        conn: ConnId,
        frame: ServerFrame,
    },
    /// The same frame to many connections: encoded once, encrypted per peer.
    Broadcast {
        conns: Vec<ConnId>,
        frame: ServerFrame,
    },
    /// Flush what is queued for the connection, then close it.
    Close {
        conn: ConnId,
    },
    /// Slow password work, for the scrypt threads.
    Auth(AuthJob),
    /// A write or read, for the store thread.
    Store(StoreJob),
    Log {
        level: Level,
        line: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Inbox { user: UserId },
    Dialogue { user: UserId, other: UserId },
}

#[derive(Debug)]
pub enum Answer {
    Inbox(Vec<store::Conversation>),
    Dialogue {
        other: UserId,
        rows: Vec<store::PrivateRow>,
    },
    Failed(String),
}

/// Conversations listed in an inbox reply, newest first.
pub const INBOX_LIMIT: usize = 100;
/// Characters of the last message shown in an inbox line.
pub const PREVIEW_CHARS: usize = 100;
/// Bytes of history a reply may carry, leaving room in a 64 KiB frame for
/// the rest of it (a member list of 1,000 names fits in the remainder).
const HISTORY_BUDGET: usize = 24 * 1024;

struct User {
    /// Shared by every line the user writes.
    name: Arc<str>,
    hash: String,
}

#[derive(Clone, Copy)]
enum State {
    Anonymous,
    /// Waiting for scrypt; further requests are refused until it answers.
    Authenticating,
    Online {
        user: UserId,
        room: Option<RoomId>,
    },
}

struct Conn {
    peer: String,
    ip: String,
    state: State,
    since: Millis,
    /// Whether this connection has been logged in; the login deadline
    /// applies only before that (after a logout the idle rules do).
    was_online: bool,
    last_heard: Millis,
    pinged: bool,
    /// Chat messages (room and private).
    messages: Bucket,
    /// Every request, so that no request can be spammed.
    requests: Bucket,
}

struct Room {
    name: String,
    key: String,
    admin: UserId,
    capacity: u32,
    /// In order of joining; the admin first.
    members: Vec<(UserId, ConnId)>,
    history: VecDeque<RoomLine>,
}

/// What waits for a commit before it may be seen.
enum Deferred {
    /// A new account: logged in if stored, undone if not.
    Account {
        conn: ConnId,
        id: u32,
        user: UserId,
    },
    /// A new room: announced to its creator if stored, closed if not.
    RoomCreated {
        conn: ConnId,
        id: u32,
        room: RoomId,
        reply: Reply,
    },
    Reply {
        conn: ConnId,
        id: u32,
        reply: Reply,
    },
    Room {
        room: RoomId,
        line: RoomLine,
    },
    Private {
        sender: UserId,
        recipient: UserId,
        line: PrivateLine,
    },
}

impl Deferred {
    /// What it weighs in [`Hub::uncommitted`].
    fn size(&self) -> usize {
        /// A delivery's frame beyond its text: names, ids, time, tag.
        const OVERHEAD: usize = 128;
        OVERHEAD
            + match self {
                Deferred::Room { line, .. } => line.text.len(),
                Deferred::Private { line, .. } => line.text.len(),
                _ => 0,
            }
    }
}

pub struct Hub {
    conns: ConnMap<Conn>,
    users: HashMap<UserId, User>,
    by_key: HashMap<String, UserId>,
    /// Names whose registration is being hashed.
    reserved: HashSet<String>,
    online: HashMap<UserId, ConnId>,
    rooms: HashMap<RoomId, Room>,
    open_names: HashMap<String, RoomId>,
    /// recipient -> sender -> unread private messages.
    unread: HashMap<UserId, HashMap<UserId, u32>>,
    next_user: i64,
    next_room: i64,
    next_message: i64,
    next_seq: u64,
    waiting: VecDeque<(u64, Deferred)>,
    /// What `waiting` will deliver once committed, in bytes, in all and
    /// by room (see [`Hub::uncommitted`] and [`Hub::room_uncommitted`]).
    uncommitted: usize,
    uncommitted_by_room: HashMap<RoomId, usize>,
    out: VecDeque<Output>,
    limits: Limits,
    /// Failed logins by account key and by address.
    failures: HashMap<String, Failures>,
    /// Logins held back by throttling, with the time they may go ahead.
    held: Vec<(Millis, Output)>,
    next_sweep: Millis,
    /// Emptied lists of [`Output::Broadcast`] targets the loop gave back
    /// (see [`Hub::recycle`]), so that a delivery allocates none.
    spare: Vec<Vec<ConnId>>,
}

/// Most target lists kept for reuse: the loop gives each back as soon as
/// it has queued the frame, so a few suffice.
const SPARE_LISTS: usize = 16;

impl Hub {
    pub fn new(snapshot: Snapshot, limits: Limits) -> Hub {
        let mut hub = Hub {
            conns: ConnMap::default(),
            users: HashMap::new(),
            by_key: HashMap::new(),
            reserved: HashSet::new(),
            online: HashMap::new(),
            rooms: HashMap::new(),
            open_names: HashMap::new(),
            unread: HashMap::new(),
            next_user: snapshot.next_user.0,
            next_room: snapshot.next_room.0,
            next_message: snapshot.next_message.0,
            next_seq: 1,
            waiting: VecDeque::new(),
            uncommitted: 0,
            uncommitted_by_room: HashMap::new(),
            out: VecDeque::new(),
            limits,
            failures: HashMap::new(),
            held: Vec::new(),
            next_sweep: 0,
            spare: Vec::new(),
        };
        for row in snapshot.users {
            hub.by_key.insert(model::user_key(&row.name), row.id);
            hub.users.insert(
                row.id,
                User {
                    name: row.name.into(),
                    hash: row.password_hash,
                },
            );
        }
        for (recipient, sender, count) in snapshot.unread {
            hub.unread
                .entry(recipient)
                .or_default()
                .insert(sender, count);
        }
        hub
    }

    /// The next effect to carry out, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// When [`Hub::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let held = self.held.iter().map(|(at, _)| *at).min();
        let sweep = (!self.conns.is_empty()).then_some(self.next_sweep);
        held.into_iter().chain(sweep).min()
    }

    /// Deadlines: logins held back whose time came, connections that did
    /// not log in in time, silent ones (pinged, then dropped).
    pub fn handle_timeout(&mut self, now: Millis) {
        let (due, held): (Vec<_>, Vec<_>) = self.held.drain(..).partition(|(at, _)| *at <= now);
        self.held = held;
        self.out.extend(due.into_iter().map(|(_, out)| out));
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.limits.sweep;
        let mut late = Vec::new();
        let mut silent = Vec::new();
        let mut ping = Vec::new();
        for (&conn, c) in &mut self.conns {
            let quiet = now - c.last_heard;
            match c.state {
                State::Anonymous | State::Authenticating
                    if !c.was_online && now - c.since >= self.limits.login_timeout =>
                {
                    late.push(conn)
                }
                _ if !c.was_online => {}
                _ if quiet >= self.limits.idle_close => silent.push(conn),
                _ if quiet >= self.limits.idle_ping && !c.pinged => {
                    c.pinged = true;
                    ping.push(conn);
                }
                _ => {}
            }
        }
        let login_secs = seconds(self.limits.login_timeout);
        for conn in late {
            self.set_state(conn, State::Anonymous);
            self.bye(
                conn,
                &format!("no login within {login_secs} s: connect again and log in"),
            );
        }
        let idle_secs = seconds(self.limits.idle_close);
        for conn in silent {
            self.end_session(now, conn, LeaveReason::Disconnected);
            self.set_state(conn, State::Anonymous);
            self.bye(conn, &format!("nothing heard from you for {idle_secs} s"));
        }
        self.broadcast(ping, Event::Ping);
    }

    pub fn handle(&mut self, now: Millis, input: Input) {
        match input {
            Input::Connected { conn, peer, ip } => {
                self.log(Level::Info, format!("{peer}: connected as {}", conn.0));
                if self.conns.is_empty() {
                    self.next_sweep = now + self.limits.sweep;
                }
                let limits = &self.limits;
                self.conns.insert(
                    conn,
                    Conn {
                        peer,
                        ip,
                        state: State::Anonymous,
                        since: now,
                        was_online: false,
                        last_heard: now,
                        pinged: false,
                        messages: Bucket::full(limits.message_burst, now),
                        requests: Bucket::full(limits.request_burst, now),
                    },
                );
            }
            Input::Request { conn, frame } => self.request(now, conn, frame),
            Input::Disconnected { conn, reason } => self.disconnected(now, conn, &reason),
            Input::Hashed {
                conn,
                id,
                name,
                hash,
            } => self.hashed(now, conn, id, name, hash),
            Input::Verified {
                conn,
                id,
                name,
                user,
            } => self.verified(now, conn, id, &name, user),
            Input::Committed { seq, ok } => self.committed(now, seq, ok),
            Input::Answered { conn, id, answer } => self.answered(conn, id, answer),
        }
    }

    /// Closes every room and says goodbye to everyone: the server is
    /// stopping. The caller then flushes outputs and waits for the store.
    pub fn shutdown(&mut self, now: Millis) {
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for room in rooms {
            self.close_room(now, room, LeaveReason::Shutdown);
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.bye(conn, "the server is shutting down");
        }
    }

    // ---- requests ----

    fn request(&mut self, now: Millis, conn: ConnId, frame: ClientFrame) {
        let limits = &self.limits;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_heard = now;
        c.pinged = false;
        let state = c.state;
        let id = frame.id;
        let is_message = matches!(frame.req, Request::Say { .. } | Request::SendPrivate { .. });
        let over_budget = if !c
            .requests
            .take(limits.request_burst, limits.requests_per_second, now)
        {
            let per_sec = limits.requests_per_second;
            Some(format!(
                "too many requests: at most {per_sec} a second, slow down"
            ))
        } else if is_message
            && matches!(state, State::Online { .. })
            && !c
                .messages
                .take(limits.message_burst, limits.messages_per_second, now)
        {
            let per_sec = limits.messages_per_second;
            Some(format!(
                "too many messages: at most {per_sec} a second; this one was not sent"
            ))
        } else {
            None
        };
        if let Some(message) = over_budget {
            let code = ErrorCode::RateLimited;
            return self.reply(conn, id, Reply::Error { code, message });
        }
        let result = match (state, frame.req) {
            (_, Request::Ping) => Ok(Some(Reply::Pong)),
            (State::Authenticating, _) => Err((
                ErrorCode::NotAllowed,
                "wait for the answer to your login first".to_string(),
            )),
            (State::Anonymous, Request::Register { name, password }) => {
                self.register(conn, id, name, password)
            }
            (State::Anonymous, Request::Login { name, password }) => {
                self.login(now, conn, id, name, password)
            }
            (State::Anonymous, _) => Err((
                ErrorCode::NotAllowed,
                "log in or create an account first".to_string(),
            )),
            (State::Online { .. }, Request::Register { .. } | Request::Login { .. }) => Err((
                ErrorCode::AlreadyLoggedIn,
                "you are already logged in: log out first".to_string(),
            )),
            (State::Online { user, room }, req) => self.online(now, conn, id, user, room, req),
        };
        match result {
            Ok(Some(reply)) => self.reply(conn, id, reply),
            Ok(None) => {}
            Err((code, message)) => self.reply(conn, id, Reply::Error { code, message }),
        }
    }

    fn register(&mut self, conn: ConnId, id: u32, name: String, password: String) -> Answered {
        model::check_user_name(&name).map_err(|e| (ErrorCode::InvalidName, e.to_string()))?;
        let key = model::user_key(&name);
        if self.by_key.contains_key(&key) || self.reserved.contains(&key) {
            return Err((ErrorCode::NameTaken, "that name is taken".to_string()));
        }
        password::check(&name, &password).map_err(|e| (ErrorCode::WeakPassword, e.to_string()))?;
        self.reserved.insert(key);
        self.set_state(conn, State::Authenticating);
        self.out.push_back(Output::Auth(AuthJob::Hash {
            conn,
            id,
            name,
            password,
        }));
        Ok(None)
    }

    fn login(
        &mut self,
        now: Millis,
        conn: ConnId,
        id: u32,
        name: String,
        password: String,
    ) -> Answered {
        let key = model::user_key(&name);
        let user = self
            .by_key
            .get(&key)
            .map(|&uid| (uid, self.users[&uid].hash.clone()));
        self.set_state(conn, State::Authenticating);
        let verify = Output::Auth(AuthJob::Verify {
            conn,
            id,
            name,
            user,
            password,
        });
        // Slow down guessing: after a few failures for this account or from
        // this address, each attempt waits longer (unknown names included,
        // so the delay tells nothing about which names exist).
        let ip = self.conns[&conn].ip.clone();
        let delay = [account_key(&key), address_key(&ip)]
            .iter()
            .map(|k| self.login_delay(now, k))
            .max()
            .unwrap_or(0);
        if delay > 0 {
            self.held.push((now + delay, verify));
        } else {
            self.out.push_back(verify);
        }
        Ok(None)
    }

    fn login_delay(&self, now: Millis, key: &str) -> Millis {
        let Some(f) = self.failures.get(key) else {
            return 0;
        };
        if now - f.last > FAILURE_MEMORY || f.count < self.limits.free_login_failures {
            return 0;
        }
        let doublings = (f.count - self.limits.free_login_failures).min(16);
        (1000i64 << doublings).min(self.limits.max_login_delay)
    }

    fn record_failure(&mut self, now: Millis, key: String) {
        let f = self.failures.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now - f.last > FAILURE_MEMORY {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
    }

    fn online(
        &mut self,
        now: Millis,
        conn: ConnId,
        id: u32,
        user: UserId,
        room: Option<RoomId>,
        req: Request,
    ) -> Answered {
        match (room, req) {
            (_, Request::Logout) => {
                self.end_session(now, conn, LeaveReason::Left);
                self.set_state(conn, State::Anonymous);
                Ok(Some(Reply::Ok))
            }
            (_, Request::Inbox) => {
                self.out.push_back(Output::Store(StoreJob::Query {
                    conn,
                    id,
                    query: Query::Inbox { user },
                }));
                Ok(None)
            }
            (_, Request::OpenDialogue { with }) => {
                let other = self.correspondent(user, &with)?;
                self.mark_read(user, other);
                self.out.push_back(Output::Store(StoreJob::Query {
                    conn,
                    id,
                    query: Query::Dialogue { user, other },
                }));
                Ok(None)
            }
            (_, Request::MarkRead { with }) => {
                let other = self.correspondent(user, &with)?;
                self.mark_read(user, other);
                Ok(Some(Reply::Ok))
            }
            (_, Request::SendPrivate { to, text }) => {
                let recipient = self.correspondent(user, &to)?;
                check_text(&text)?;
                let text: Arc<str> = text.into();
                let line = PrivateLine {
                    id: self.take_message_id().0 as u64,
                    from: self.users[&user].name.clone(),
                    to: self.users[&recipient].name.clone(),
                    text: text.clone(),
                    time: now,
                };
                let seq = self.persist(Write::PrivateMessage {
                    id: MessageId(line.id as i64),
                    sender: user,
                    recipient,
                    text,
                    sent: now,
                });
                self.defer(
                    seq,
                    Deferred::Private {
                        sender: user,
                        recipient,
                        line,
                    },
                );
                self.defer_reply(seq, conn, id, Reply::Ok);
                Ok(None)
            }
            (Some(_), Request::CreateRoom { .. } | Request::JoinRoom { .. }) => Err((
                ErrorCode::NotAllowed,
                "you are in a room already: leave it first".to_string(),
            )),
            (None, Request::CreateRoom { name, capacity }) => {
                self.create_room(now, conn, id, user, name, capacity)
            }
            (None, Request::JoinRoom { room }) => self.join_room(conn, user, room),
            (None, Request::LeaveRoom | Request::Say { .. } | Request::Members)
            | (None, Request::Kick { .. }) => Err((
                ErrorCode::NotMember,
                "you are not in a room: create or join one first".to_string(),
            )),
            (Some(room), Request::LeaveRoom) => {
                self.leave_room(now, conn, room, LeaveReason::Left);
                Ok(Some(Reply::Ok))
            }
            (Some(room), Request::Members) => Ok(Some(Reply::Members {
                members: self.member_names(room),
            })),
            (Some(room), Request::Say { text }) => {
                check_text(&text)?;
                let text: Arc<str> = text.into();
                let line = RoomLine {
                    id: self.take_message_id().0 as u64,
                    from: self.users[&user].name.clone(),
                    text: text.clone(),
                    time: now,
                };
                let seq = self.persist(Write::RoomMessage {
                    id: MessageId(line.id as i64),
                    room,
                    sender: user,
                    text,
                    sent: now,
                });
                self.defer(seq, Deferred::Room { room, line });
                self.defer_reply(seq, conn, id, Reply::Ok);
                Ok(None)
            }
            (Some(room), Request::Kick { name }) => self.kick(user, room, &name),
            (_, Request::Register { .. } | Request::Login { .. } | Request::Ping) => {
                unreachable!("handled before")
            }
        }
    }

    fn create_room(
        &mut self,
        now: Millis,
        conn: ConnId,
        id: u32,
        user: UserId,
        name: String,
        capacity: u32,
    ) -> Answered {
        model::check_room_name(&name).map_err(|e| (ErrorCode::InvalidName, e.to_string()))?;
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err((
                ErrorCode::InvalidCapacity,
                format!("a room holds {MIN_CAPACITY} to {MAX_CAPACITY} people, not {capacity}"),
            ));
        }
        let name = name.trim().to_string();
        let key = model::room_key(&name);
        if self.open_names.contains_key(&key) {
            return Err((
                ErrorCode::RoomNameTaken,
                format!("a room named \"{name}\" is open already: choose another name"),
            ));
        }
        let room = RoomId(self.next_room);
        self.next_room += 1;
        let seq = self.persist(Write::Room {
            id: room,
            name: name.clone(),
            admin: user,
            capacity,
            created: now,
        });
        self.open_names.insert(key.clone(), room);
        self.rooms.insert(
            room,
            Room {
                name: name.clone(),
                key,
                admin: user,
                capacity,
                members: vec![(user, conn)],
                history: VecDeque::new(),
            },
        );
        self.set_state(
            conn,
            State::Online {
                user,
                room: Some(room),
            },
        );
        let admin = self.users[&user].name.to_string();
        self.log(
            Level::Info,
            format!("room #{room} \"{name}\" created by {admin} for {capacity}"),
        );
        let reply = Reply::Room {
            room: RoomInfo {
                id: room.0 as u64,
                name,
                admin: admin.clone(),
                capacity,
            },
            members: vec![admin],
            history: Vec::new(),
        };
        self.defer(
            seq,
            Deferred::RoomCreated {
                conn,
                id,
                room,
                reply,
            },
        );
        Ok(None)
    }

    fn join_room(&mut self, conn: ConnId, user: UserId, room_no: u64) -> Answered {
        let room_id = RoomId(i64::try_from(room_no).unwrap_or(i64::MAX));
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return Err(if room_id.0 >= 1 && room_id.0 < self.next_room {
                (
                    ErrorCode::RoomClosed,
                    format!("room #{room_no} is closed: its admin left"),
                )
            } else {
                (
                    ErrorCode::NoSuchRoom,
                    format!("there is no room #{room_no}: check the number"),
                )
            });
        };
        if room.members.len() >= room.capacity as usize {
            return Err((
                ErrorCode::RoomFull,
                format!(
                    "room #{room_no} is full ({} of {}): try again later",
                    room.members.len(),
                    room.capacity
                ),
            ));
        }
        let others: Vec<ConnId> = room.members.iter().map(|&(_, c)| c).collect();
        room.members.push((user, conn));
        let history = fit_newest(room.history.iter().cloned().collect(), |l: &RoomLine| {
            l.text.len() + l.from.len() + 32
        });
        let info = RoomInfo {
            id: room_no,
            name: room.name.clone(),
            admin: self.users[&room.admin].name.to_string(),
            capacity: room.capacity,
        };
        let name = self.users[&user].name.to_string();
        self.set_state(
            conn,
            State::Online {
                user,
                room: Some(room_id),
            },
        );
        self.broadcast(
            others,
            Event::Joined {
                room: room_no,
                name: name.clone(),
            },
        );
        self.log(Level::Info, format!("{name} joined room #{room_no}"));
        Ok(Some(Reply::Room {
            room: info,
            members: self.member_names(room_id),
            history,
        }))
    }

    fn kick(&mut self, user: UserId, room_id: RoomId, name: &str) -> Answered {
        let room = &self.rooms[&room_id];
        if room.admin != user {
            return Err((
                ErrorCode::NotAdmin,
                "only the room's admin can kick".to_string(),
            ));
        }
        let target = self.user_named(name);
        let Some(pos) = room.members.iter().position(|&(u, _)| Some(u) == target) else {
            return Err((
                ErrorCode::NoSuchUser,
                format!("{name} is not in this room: /l lists who is"),
            ));
        };
        let (target, target_conn) = room.members[pos];
        if target == user {
            return Err((
                ErrorCode::NotAllowed,
                "you cannot kick yourself: /q leaves and closes the room".to_string(),
            ));
        }
        let admin = self.users[&user].name.to_string();
        let target_name = self.users[&target].name.to_string();
        self.rooms.get_mut(&room_id).unwrap().members.remove(pos);
        self.set_state(
            target_conn,
            State::Online {
                user: target,
                room: None,
            },
        );
        let room_no = room_id.0 as u64;
        self.send(
            target_conn,
            ServerFrame::Event {
                event: Event::Kicked {
                    room: room_no,
                    by: admin.clone(),
                },
            },
        );
        self.announce_left(room_id, target_name.clone(), LeaveReason::Kicked);
        self.log(
            Level::Info,
            format!("{admin} kicked {target_name} from room #{room_no}"),
        );
        Ok(Some(Reply::Ok))
    }

    // ---- leaving ----

    /// Takes the connection's user out of their room, if any; an admin's
    /// leaving closes the room.
    fn leave_room(&mut self, now: Millis, conn: ConnId, room_id: RoomId, why: LeaveReason) {
        let Some(State::Online { user, .. }) = self.conns.get(&conn).map(|c| &c.state) else {
            return;
        };
        let user = *user;
        self.set_state(conn, State::Online { user, room: None });
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if room.admin == user {
            let reason = if why == LeaveReason::Disconnected {
                LeaveReason::AdminDisconnected
            } else {
                LeaveReason::AdminLeft
            };
            self.close_room(now, room_id, reason);
            return;
        }
        room.members.retain(|&(u, _)| u != user);
        let name = self.users[&user].name.to_string();
        self.log(
            Level::Info,
            format!("{name} left room #{room_id} ({why:?})"),
        );
        self.announce_left(room_id, name, why);
    }

    fn close_room(&mut self, now: Millis, room_id: RoomId, reason: LeaveReason) {
        if self.drop_room(room_id, reason) {
            self.persist(Write::CloseRoom {
                id: room_id,
                closed: now,
            });
        }
    }

    /// Takes a room out of memory and tells its members; false if it was
    /// not open.
    fn drop_room(&mut self, room_id: RoomId, reason: LeaveReason) -> bool {
        let Some(room) = self.rooms.remove(&room_id) else {
            return false;
        };
        self.open_names.remove(&room.key);
        let mut told = Vec::new();
        for &(user, conn) in &room.members {
            if let Some(c) = self.conns.get_mut(&conn)
                && let State::Online { room: r, .. } = &mut c.state
            {
                *r = None;
            }
            if user != room.admin {
                told.push(conn);
            }
        }
        self.broadcast(
            told,
            Event::RoomClosed {
                room: room_id.0 as u64,
                reason,
            },
        );
        self.log(
            Level::Info,
            format!("room #{room_id} \"{}\" closed ({reason:?})", room.name),
        );
        true
    }

    /// A new account that could not be stored: forget it and log its
    /// connection out again.
    fn undo_account(&mut self, now: Millis, conn: ConnId, user: UserId) {
        // Wherever the account is logged in: on the connection that made it
        // or, if a login with the new password came first, on that one.
        let mut sessions = vec![conn];
        sessions.extend(self.online.get(&user).copied());
        for c in sessions {
            if let Some(&State::Online { user: u, .. }) = self.conns.get(&c).map(|c| &c.state)
                && u == user
            {
                self.end_session(now, c, LeaveReason::Disconnected);
                self.set_state(c, State::Anonymous);
            }
        }
        if let Some(u) = self.users.remove(&user) {
            self.by_key.remove(&model::user_key(&u.name));
        }
    }

    fn announce_left(&mut self, room_id: RoomId, name: String, reason: LeaveReason) {
        let conns = self.rooms[&room_id]
            .members
            .iter()
            .map(|&(_, c)| c)
            .collect();
        self.broadcast(
            conns,
            Event::Left {
                room: room_id.0 as u64,
                name,
                reason,
            },
        );
    }

    /// Ends a logged-in session: out of its room, no longer online.
    fn end_session(&mut self, now: Millis, conn: ConnId, why: LeaveReason) {
        let Some(&State::Online { user, room }) = self.conns.get(&conn).map(|c| &c.state) else {
            return;
        };
        if let Some(room) = room {
            self.leave_room(now, conn, room, why);
        }
        if self.online.get(&user) == Some(&conn) {
            self.online.remove(&user);
        }
    }

    fn disconnected(&mut self, now: Millis, conn: ConnId, reason: &str) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let who = match &c.state {
            State::Online { user, .. } => format!("{} ({})", self.users[user].name, c.peer),
            _ => c.peer.clone(),
        };
        self.log(Level::Info, format!("{who}: disconnected: {reason}"));
        self.end_session(now, conn, LeaveReason::Disconnected);
        self.conns.remove(&conn);
    }

    // ---- answers from the workers ----

    fn hashed(&mut self, now: Millis, conn: ConnId, id: u32, name: String, hash: String) {
        let key = model::user_key(&name);
        self.reserved.remove(&key);
        if !self.conns.contains_key(&conn) {
            return; // gone before the hash was ready: no account is made
        }
        let user = UserId(self.next_user);
        self.next_user += 1;
        self.by_key.insert(key, user);
        self.users.insert(
            user,
            User {
                name: name.as_str().into(),
                hash: hash.clone(),
            },
        );
        let seq = self.persist(Write::User {
            id: user,
            name: name.clone(),
            password_hash: hash,
            created: now,
        });
        self.go_online(conn, user);
        self.log(Level::Info, format!("account {name} created"));
        self.defer(seq, Deferred::Account { conn, id, user });
    }

    fn verified(&mut self, now: Millis, conn: ConnId, id: u32, name: &str, user: Option<UserId>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let peer = c.peer.clone();
        let ip = c.ip.clone();
        // An account whose store write failed while its password was being
        // checked is gone: a failed login.
        let user = user.filter(|u| self.users.contains_key(u));
        let Some(user) = user else {
            self.set_state(conn, State::Anonymous);
            // The typed name is logged only when it names an account: a
            // password typed into the name field must not reach the log.
            let key = model::user_key(name);
            let who = match self.by_key.get(&key) {
                Some(uid) => self.users[uid].name.to_string(),
                None => "an unknown name".to_string(),
            };
            self.log(Level::Warn, format!("{peer}: failed login for {who}"));
            self.record_failure(now, account_key(&model::user_key(name)));
            self.record_failure(now, address_key(&ip));
            self.reply(
                conn,
                id,
                Reply::Error {
                    code: ErrorCode::BadCredentials,
                    message: "wrong user name or password".to_string(),
                },
            );
            return;
        };
        if let Some(&old) = self.online.get(&user) {
            // The newest login wins: a half-open old connection must not
            // lock its owner out.
            self.end_session(now, old, LeaveReason::Disconnected);
            self.set_state(old, State::Anonymous);
            self.bye(old, "you logged in from another place");
        }
        self.failures.remove(&account_key(&model::user_key(name)));
        self.go_online(conn, user);
        let name = self.users[&user].name.to_string();
        self.log(Level::Info, format!("{peer}: {name} logged in"));
        let unread = self
            .unread
            .get(&user)
            .map_or(0, |m| m.values().sum::<u32>());
        self.reply(conn, id, Reply::LoggedIn { name, unread });
    }

    fn committed(&mut self, now: Millis, seq: u64, ok: bool) {
        while self.waiting.front().is_some_and(|(s, _)| *s <= seq) {
            let (_, deferred) = self.waiting.pop_front().unwrap();
            self.count_uncommitted(&deferred, false);
            match (ok, deferred) {
                (true, Deferred::Account { conn, id, user }) => {
                    let name = self.name_of(user);
                    self.reply(conn, id, Reply::LoggedIn { name, unread: 0 });
                }
                (false, Deferred::Account { conn, id, user }) => {
                    self.undo_account(now, conn, user);
                    self.reply(conn, id, unavailable());
                }
                (
                    true,
                    Deferred::RoomCreated {
                        conn, id, reply, ..
                    },
                ) => self.reply(conn, id, reply),
                (false, Deferred::RoomCreated { conn, id, room, .. }) => {
                    self.drop_room(room, LeaveReason::StoreFailed);
                    self.reply(conn, id, unavailable());
                }
                (true, Deferred::Reply { conn, id, reply }) => self.reply(conn, id, reply),
                (false, Deferred::Reply { conn, id, .. }) => self.reply(conn, id, unavailable()),
                (true, Deferred::Room { room, line }) => self.deliver_room(room, line),
                (
                    true,
                    Deferred::Private {
                        sender,
                        recipient,
                        line,
                    },
                ) => self.deliver_private(sender, recipient, line),
                (false, _) => {}
            }
        }
        if !ok {
            self.log(Level::Error, format!("store writes up to {seq} failed"));
        }
    }

    fn answered(&mut self, conn: ConnId, id: u32, answer: Answer) {
        let reply = match answer {
            Answer::Inbox(rows) => Reply::Inbox {
                conversations: rows
                    .into_iter()
                    .take(INBOX_LIMIT)
                    .map(|r| Conversation {
                        last_from: self.name_of(r.last_sender),
                        with: r.other_name,
                        last_text: preview(&r.last_text),
                        last_time: r.last_time,
                        unread: r.unread,
                    })
                    .collect(),
            },
            Answer::Dialogue { other, rows } => {
                let lines = rows
                    .into_iter()
                    .map(|r| PrivateLine {
                        id: r.id.0 as u64,
                        to: self.name_of(r.recipient).into(),
                        from: r.sender_name.into(),
                        text: r.text.into(),
                        time: r.sent,
                    })
                    .collect();
                Reply::Dialogue {
                    with: self.name_of(other),
                    history: fit_newest(lines, |l: &PrivateLine| l.text.len() + 64),
                }
            }
            Answer::Failed(e) => {
                self.log(Level::Error, format!("store read failed: {e}"));
                Reply::Error {
                    code: ErrorCode::Unavailable,
                    message: "the server could not read its store: try again later".to_string(),
                }
            }
        };
        self.reply(conn, id, reply);
    }

    // ---- delivery ----

    fn deliver_room(&mut self, room_id: RoomId, line: RoomLine) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return; // closed while the message was being stored: kept, not shown
        };
        if room.history.len() == ROOM_HISTORY {
            room.history.pop_front();
        }
        room.history.push_back(line.clone());
        let mut conns = self.spare.pop().unwrap_or_default();
        conns.extend(room.members.iter().map(|&(_, c)| c));
        self.broadcast(
            conns,
            Event::RoomMessage {
                room: room_id.0 as u64,
                line,
            },
        );
    }

    fn deliver_private(&mut self, sender: UserId, recipient: UserId, line: PrivateLine) {
        *self
            .unread
            .entry(recipient)
            .or_default()
            .entry(sender)
            .or_default() += 1;
        let mut conns = self.spare.pop().unwrap_or_default();
        conns.extend(
            [sender, recipient]
                .iter()
                .filter_map(|u| self.online.get(u).copied()),
        );
        self.broadcast(conns, Event::PrivateMessage { line });
    }

    // ---- helpers ----

    fn correspondent(&self, user: UserId, name: &str) -> Result<UserId, (ErrorCode, String)> {
        let Some(other) = self.user_named(name) else {
            return Err((
                ErrorCode::NoSuchUser,
                format!("there is no user named \"{name}\": check the spelling"),
            ));
        };
        if other == user {
            return Err((
                ErrorCode::NotAllowed,
                "that is you: choose someone else to write to".to_string(),
            ));
        }
        Ok(other)
    }

    fn mark_read(&mut self, user: UserId, other: UserId) {
        let had = self
            .unread
            .get_mut(&user)
            .and_then(|m| m.remove(&other))
            .unwrap_or(0);
        if had > 0 {
            self.persist(Write::MarkRead {
                recipient: user,
                sender: other,
            });
        }
    }

    fn member_names(&self, room: RoomId) -> Vec<String> {
        self.rooms[&room]
            .members
            .iter()
            .map(|(u, _)| self.users[u].name.to_string())
            .collect()
    }

    fn name_of(&self, user: UserId) -> String {
        self.users
            .get(&user)
            .map_or_else(|| format!("user {user}"), |u| u.name.to_string())
    }

    fn go_online(&mut self, conn: ConnId, user: UserId) {
        self.online.insert(user, conn);
        self.set_state(conn, State::Online { user, room: None });
        if let Some(c) = self.conns.get_mut(&conn) {
            c.was_online = true;
        }
    }

    fn set_state(&mut self, conn: ConnId, state: State) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = state;
        }
    }

    /// The user a typed name means, found by its [`model::user_key`]
    /// without allocating (every message names its recipient): a longer
    /// name than any user's names nobody.
    fn user_named(&self, name: &str) -> Option<UserId> {
        let mut buf = [0u8; model::MAX_USER_NAME];
        let key = buf.get_mut(..name.len())?;
        key.copy_from_slice(name.as_bytes());
        key.make_ascii_lowercase();
        let key = std::str::from_utf8(key).ok()?;
        self.by_key.get(key).copied()
    }

    fn take_message_id(&mut self) -> MessageId {
        let id = MessageId(self.next_message);
        self.next_message += 1;
        id
    }

    fn persist(&mut self, write: Write) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.out
            .push_back(Output::Store(StoreJob::Write { seq, write }));
        seq
    }

    fn defer(&mut self, seq: u64, deferred: Deferred) {
        self.count_uncommitted(&deferred, true);
        self.waiting.push_back((seq, deferred));
    }

    fn count_uncommitted(&mut self, deferred: &Deferred, add: bool) {
        let size = deferred.size();
        let change = |n: usize| if add { n + size } else { n - size };
        self.uncommitted = change(self.uncommitted);
        if let Deferred::Room { room, .. } = deferred {
            match change(self.room_backlog(*room)) {
                0 => self.uncommitted_by_room.remove(room),
                n => self.uncommitted_by_room.insert(*room, n),
            };
        }
    }

    fn room_backlog(&self, room: RoomId) -> usize {
        self.uncommitted_by_room.get(&room).copied().unwrap_or(0)
    }

    /// Bytes of messages handed to the store and not yet committed (text
    /// plus a frame's overhead each): what will be delivered at once when
    /// the commit comes. The event loop reads no more requests while this
    /// is high, so neither the store's queue nor the deliveries it will
    /// release can grow without bound.
    pub fn uncommitted(&self) -> usize {
        self.uncommitted
    }

    /// [`Hub::uncommitted`] for the room `conn` is in (0 outside rooms):
    /// every member gets all of it when the commit comes, so the loop stops
    /// reading a busy room's members before their output can overflow.
    pub fn room_uncommitted(&self, conn: ConnId) -> usize {
        match self.conns.get(&conn).map(|c| c.state) {
            Some(State::Online {
                room: Some(room), ..
            }) => self.room_backlog(room),
            _ => 0,
        }
    }

    fn defer_reply(&mut self, seq: u64, conn: ConnId, id: u32, reply: Reply) {
        self.defer(seq, Deferred::Reply { conn, id, reply });
    }

    fn reply(&mut self, conn: ConnId, id: u32, result: Reply) {
        self.send(conn, ServerFrame::Reply { id, result });
    }

    fn send(&mut self, conn: ConnId, frame: ServerFrame) {
        self.out.push_back(Output::Send { conn, frame });
    }

    /// Takes back the targets of an [`Output::Broadcast`] once the frame
    /// is queued for each of them, to use again.
    pub fn recycle(&mut self, mut conns: Vec<ConnId>) {
        if self.spare.len() < SPARE_LISTS {
            conns.clear();
            self.spare.push(conns);
        }
    }

    fn broadcast(&mut self, conns: Vec<ConnId>, event: Event) {
        if conns.is_empty() {
            self.recycle(conns);
        } else {
            self.out.push_back(Output::Broadcast {
                conns,
                frame: ServerFrame::Event { event },
            });
        }
    }

    fn bye(&mut self, conn: ConnId, reason: &str) {
        self.send(
            conn,
            ServerFrame::Event {
                event: Event::Bye {
                    reason: reason.to_string(),
                },
            },
        );
        self.out.push_back(Output::Close { conn });
    }

    fn log(&mut self, level: Level, line: String) {
        self.out.push_back(Output::Log { level, line });
    }
}

fn account_key(user_key: &str) -> String {
    format!("user:{user_key}")
}

fn address_key(ip: &str) -> String {
    format!("ip:{ip}")
}

/// What a request handler returns: a reply now, none (it comes later), or
/// an error reply.
type Answered = Result<Option<Reply>, (ErrorCode, String)>;

/// `10`, or `1.5` where the milliseconds are not whole seconds.
fn seconds(ms: Millis) -> String {
    if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        format!("{:.1}", ms as f64 / 1000.0)
    }
}

fn unavailable() -> Reply {
    Reply::Error {
        code: ErrorCode::Unavailable,
        message: "the server could not store that: try again later".to_string(),
    }
}

fn check_text(text: &str) -> Result<(), (ErrorCode, String)> {
    if text.len() > MAX_TEXT_BYTES {
        return Err((
            ErrorCode::TooLong,
            format!(
                "that message is {} bytes; the most is {MAX_TEXT_BYTES}: split it up",
                text.len()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Err((ErrorCode::Empty, "an empty message is not sent".to_string()));
    }
    Ok(())
}

fn preview(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Keeps the newest items (the list's tail) whose estimated encoded sizes
/// add up to no more than the history budget, so a reply fits one frame.
fn fit_newest<T>(mut items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<T> {
    let mut total = 0;
    let keep = items
        .iter()
        .rev()
        .take_while(|item| {
            total += size(item);
            total <= HISTORY_BUDGET
        })
        .count();
    items.drain(..items.len() - keep);
    items
}

#[cfg(test)]
mod tests;
