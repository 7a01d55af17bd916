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
//!
//! Layout, by the state each part owns (none of them imports another; this
//! root holds them together and carries out what a commit releases and
//! what a worker answers):
//! - [`effects`]: inputs, outputs, jobs, and the addresses [`Caller`] and
//!   [`Audience`].
//! - `connections`: each connection's state, deadlines and budgets.
//! - `accounts`: users, who is logged in where, login throttling.
//! - `devices`: the devices accounts logged in from and their resume
//!   tokens (by hash), and which device each session came from.
//! - `rooms`: open rooms, their members and recent history.
//! - `private`: unread counts, inbox and dialogue replies.
//! - `commits`: sequence numbers and what waits for a commit.
//! - `replicas`, `orphans` and `listing`: what other servers sharing the
//!   database committed, the places in rooms that none of them keeps,
//!   and who is in a room through any of them.
//! - `requests` and `sessions`: the handlers of requests and of sessions
//!   beginning and ending, over all of the above.

mod accounts;
mod commits;
mod connections;
mod devices;
pub mod effects;
// The one fake world around the hub, for tests, fuzzing and benchmarks.
#[cfg(any(test, feature = "testkit"))]
pub mod harness;
mod listing;
mod orphans;
mod private;
mod reorder;
mod replicas;
mod requests;
mod rooms;
mod sessions;

pub use super::limits::Limits;
pub use effects::{
    Answer, Audience, AuthJob, Caller, Change, ConnHasher, ConnId, ConnMap, Filled, GAP_FILL, Gap,
    Input, Level, Output, Query, StoreJob,
};
pub use private::{INBOX_LIMIT, PREVIEW_CHARS};

use crate::model::{IdSpace, MAX_TEXT_BYTES, MessageId, Millis, RoomId, Seq, UserId};
use crate::store::{OpenRoom, Page, Snapshot, Write};
use crate::wire::msg::{ErrorCode, Event, LeaveReason, PrivateLine, Reply, RoomLine, ServerFrame};
use accounts::{Accounts, Held};
use commits::{Commits, Deferred};
use connections::{Connections, State};
use devices::Devices;
use effects::Refusal;
use private::{Dialogues, Unread};
use rand::rngs::StdRng;
use rooms::Rooms;
use std::collections::{HashMap, HashSet, VecDeque};

/// Bytes of history a reply may carry, leaving room in a 64 KiB frame for
/// the rest of it (a member list of 1,000 names fits in the remainder).
const HISTORY_BUDGET: usize = 24 * 1024;

pub struct Hub {
    conns: Connections,
    accounts: Accounts,
    devices: Devices,
    rooms: Rooms,
    unread: Unread,
    dialogues: Dialogues,
    commits: Commits,
    next_message: i64,
    /// The ids this server gives new rows (see [`IdSpace`]).
    ids: IdSpace,
    /// The database is shared with other servers (an id space of more
    /// than one slot): it decides who may join a room.
    shared: bool,
    out: VecDeque<Output>,
    limits: Limits,
    next_sweep: Millis,
    /// Why the server must stop, once a numbered message could not be
    /// stored (see [`Hub::halted`]).
    halted: Option<String>,
    /// The store cannot reach its database: messages and new accounts and
    /// rooms are refused until it can.
    storage_down: bool,
    /// When devices past their expiry are next looked for.
    next_purge: Millis,
    /// Conversations whose missed messages are being read from the
    /// store, with the highest number seen meanwhile (see `replicas`).
    filling: HashMap<replicas::Conv, Seq>,
    /// Messages numbered past a gap, waiting a moment for the ones before
    /// them to come over the bus.
    reorder: reorder::Reorder,
    /// Resumes whose token this server did not know, by the token, while
    /// the shared store is asked whose it is (and while the resume is
    /// tried once more with the answer).
    lookups: HashMap<Caller, String>,
    /// Places in rooms that no running server keeps, held here.
    orphans: orphans::Orphans,
    /// Replies naming a room's members, waiting for the shared store to
    /// say who is in it through the other servers too.
    listing: HashMap<Caller, listing::Listing>,
    /// Members away from rooms through other servers (`Write::Away`), so
    /// that their leaving is told as a dropped connection's.
    away_elsewhere: HashSet<(RoomId, UserId)>,
}

impl Hub {
    /// The hub with what the store loaded, the limits it enforces, and
    /// the CSPRNG its resume tokens come from (seeded by the caller: from
    /// the OS in the server, from a fixed seed in tests).
    pub fn new(snapshot: Snapshot, limits: Limits, rng: StdRng) -> Hub {
        Hub {
            conns: Connections::default(),
            accounts: Accounts::new(snapshot.users, snapshot.next_user),
            devices: Devices::new(snapshot.devices, rng),
            rooms: Rooms::new(snapshot.next_room),
            unread: Unread::new(snapshot.unread),
            dialogues: Dialogues::new(snapshot.dialogue_seqs),
            commits: Commits::default(),
            next_message: snapshot.next_message.0,
            ids: IdSpace::ALONE,
            shared: false,
            out: VecDeque::new(),
            limits,
            next_sweep: 0,
            halted: None,
            storage_down: false,
            next_purge: 0,
            filling: HashMap::new(),
            reorder: reorder::Reorder::default(),
            lookups: HashMap::new(),
            orphans: orphans::Orphans::default(),
            listing: HashMap::new(),
            away_elsewhere: HashSet::new(),
        }
    }

    /// The hub as one of several servers sharing a database: every row it
    /// makes from now on takes an id of `ids`, which no other server
    /// uses.
    pub fn use_ids(&mut self, ids: IdSpace) {
        self.ids = ids;
        self.shared = ids.step > 1;
        self.next_message = ids.at_or_after(self.next_message);
        self.accounts.use_ids(ids);
        self.rooms.use_ids(ids);
        self.devices.use_ids(ids);
    }

    /// This server's number among those sharing the database (its id
    /// slot), told to clients as they log in; `None` for a server alone.
    fn node(&self) -> Option<u32> {
        self.shared.then_some(self.ids.slot as u32)
    }

    /// The next effect to carry out, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Devices holding a resume token.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// When [`Hub::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let held = self.accounts.next_due();
        let sweep = (!self.conns.is_empty()).then_some(self.next_sweep);
        let (quiet, grace) = (self.limits.quiet_blip, self.limits.grace);
        let places = self.rooms.next_hold_due(quiet, grace);
        let early = self.reorder.next_due();
        let orphans = self.orphans.next_due(self.shared);
        held.into_iter()
            .chain(sweep)
            .chain(places)
            .chain(early)
            .chain(orphans)
            .min()
    }

    /// Deadlines: logins and resumes held back whose time came,
    /// connections that did not log in in time, silent ones (pinged, then
    /// dropped), and (once an hour) devices past their expiry.
    pub fn handle_timeout(&mut self, now: Millis) {
        for held in self.accounts.due(now) {
            match held {
                Held::Auth(job) => self.out.push_back(Output::Auth(job)),
                Held::Resume { caller, token } => self.resume_now(now, caller, &token),
            }
        }
        self.held_due(now);
        self.reorder_due(now);
        self.orphans_due(now);
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.limits.sweep;
        if now >= self.next_purge {
            self.next_purge = now + super::limits::DEVICE_PURGE;
            let expired = self.devices.expire(now, self.limits.resume_expiry);
            if !expired.is_empty() {
                let n = expired.len();
                self.log(Level::Info, format!("{n} saved logins expired unused"));
            }
            for id in expired {
                self.persist(Write::DeleteDevice { id });
            }
        }
        let overdue = self.conns.overdue(now, &self.limits);
        let login_secs = seconds(self.limits.login_timeout);
        for conn in overdue.late {
            self.conns.set_state(conn, State::Anonymous);
            self.bye(
                conn,
                &format!("no login within {login_secs} s: connect again and log in"),
            );
        }
        let idle_secs = seconds(self.limits.idle_close);
        for conn in overdue.silent {
            self.end_session(now, conn, LeaveReason::Disconnected);
            self.conns.set_state(conn, State::Anonymous);
            self.bye_resume(conn, &format!("nothing heard from you for {idle_secs} s"));
        }
        for conn in overdue.ping {
            let event = Event::Ping;
            self.send(conn, ServerFrame::Event { event });
        }
    }

    pub fn handle(&mut self, now: Millis, input: Input) {
        match input {
            Input::Connected { conn, peer, ip } => {
                self.log(Level::Info, format!("{peer}: connected as {}", conn.0));
                if self.conns.is_empty() {
                    self.next_sweep = now + self.limits.sweep;
                }
                self.conns.connect(now, conn, peer, ip, &self.limits);
            }
            Input::Request { conn, frame } => self.request(now, conn, frame),
            Input::Disconnected { conn, reason } => self.disconnected(now, conn, &reason),
            Input::Hashed { caller, name, hash } => self.hashed(now, caller, name, hash),
            Input::Verified { caller, name, user } => self.verified(now, caller, &name, user),
            Input::Committed { seq, ok, numbers } => self.committed(now, seq, ok, &numbers),
            Input::Storage { available } => self.storage_down = !available,
            Input::Answered { caller, answer } => self.answered(now, caller, answer),
            Input::Replicated { writes } => self.replicated(now, writes),
            Input::Filled { gap, filled } => self.filled(gap, filled),
            Input::Orphans { found } => self.orphaned(now, found),
        }
    }

    /// The rooms the last run left open, as it left them but with nobody
    /// in them: the places the store says to keep (the admin's, alone;
    /// see [`OpenRoom::held`]) are held for the grace period from `now`,
    /// as if their connections had just dropped, and a room closes if its
    /// admin does not come back in time.
    pub fn reopen(&mut self, now: Millis, rooms: Vec<OpenRoom>) {
        for room in rooms {
            let history = room.history.into_iter().map(room_line).collect();
            self.rooms.reopen(
                room.id,
                room.name,
                room.admin,
                room.capacity,
                room.last_seq,
                history,
                &room.held,
                now,
            );
        }
    }

    /// Says goodbye to everyone: the server is stopping, to start again.
    /// Rooms stay open (in the database too) and are reopened by the next
    /// start. The caller then flushes outputs and waits for the store.
    pub fn shutdown(&mut self, _now: Millis) {
        for conn in self.conns.ids() {
            self.bye_resume(
                conn,
                "the server is restarting: connect again in a moment; your rooms stay open",
            );
        }
    }

    /// Set when the store failed to keep a room or private message. The
    /// messages after it in its conversation already have their numbers,
    /// and storing them would leave a gap that no reader could fill, so the
    /// server stops instead, and drops the writes it has not handed to the
    /// store (none of them was acknowledged). On the next start the
    /// numbering goes on from what the database holds, without a hole.
    /// The event loop checks this after every input.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Bytes of messages handed to the store and not yet committed (text
    /// plus a frame's overhead each): what will be delivered at once when
    /// the commit comes. The event loop reads no more requests while this
    /// is high, so neither the store's queue nor the deliveries it will
    /// release can grow without bound.
    pub fn uncommitted(&self) -> usize {
        self.commits.uncommitted()
    }

    /// [`Hub::uncommitted`] for the room `conn` is in (0 outside rooms):
    /// every member gets all of it when the commit comes, so the loop stops
    /// reading a busy room's members before their output can overflow.
    pub fn room_uncommitted(&self, conn: ConnId) -> usize {
        match self.conns.state(conn) {
            Some(State::Online {
                room: Some(room), ..
            }) => self.commits.room_backlog(room),
            _ => 0,
        }
    }

    // ---- released work ----

    /// The store committed (or failed to commit) everything up to `seq`:
    /// what waited for it is shown, or undone.
    fn committed(&mut self, now: Millis, seq: u64, ok: bool, numbers: &[(u64, Seq)]) {
        // Released in write order, as `numbers` lists them.
        let mut numbers = numbers.iter().peekable();
        while let Some((write, mut deferred)) = self.commits.release(seq) {
            while numbers.next_if(|(w, _)| *w < write).is_some() {}
            if let Some(&&(w, number)) = numbers.peek()
                && w == write
            {
                deferred.renumber(number);
            }
            match (ok, deferred) {
                (
                    true,
                    Deferred::Account {
                        caller,
                        user,
                        token,
                        ..
                    },
                ) => {
                    let name = self.accounts.name_of(user);
                    let unread = 0;
                    self.reply(
                        caller,
                        Reply::LoggedIn {
                            name,
                            unread,
                            token,
                            node: self.node(),
                        },
                    );
                }
                (
                    false,
                    Deferred::Account {
                        caller,
                        user,
                        device,
                        ..
                    },
                ) => {
                    self.devices.remove(device);
                    self.undo_account(now, caller.conn, user);
                    self.reply(caller, unavailable());
                }
                (true, Deferred::Session { caller, reply, .. }) => self.reply(caller, reply),
                (
                    false,
                    Deferred::Session {
                        caller,
                        user,
                        device,
                        ..
                    },
                ) => {
                    self.undo_session(now, caller.conn, user, device);
                    self.reply(caller, unavailable());
                }
                (true, Deferred::RoomCreated { caller, reply, .. }) => self.reply(caller, reply),
                (false, Deferred::RoomCreated { caller, room, .. }) => {
                    self.drop_room(room, LeaveReason::StoreFailed);
                    self.reply(caller, unavailable());
                }
                (
                    ok,
                    Deferred::Join {
                        caller,
                        user,
                        room_no,
                        taken,
                    },
                ) => self.joined(caller, user, room_no, ok && taken, ok),
                (true, Deferred::Reply { caller, reply }) => self.reply(caller, reply),
                (false, Deferred::Reply { caller, .. }) => self.reply(caller, unavailable()),
                // In number order with what other servers stored (see
                // `replicas`); alone, the next number always.
                (true, Deferred::Room { room, line }) => {
                    self.room_message(now, room, line.seq, Some(line))
                }
                (
                    true,
                    Deferred::Private {
                        sender,
                        recipient,
                        line,
                    },
                ) => self.private_message(now, sender, recipient, line),
                (false, Deferred::Room { .. } | Deferred::Private { .. }) => {
                    self.halted.get_or_insert_with(|| {
                        "the database could not store a message; the server stops rather \
                         than leave a gap in a conversation: see the error above, fix the \
                         database or its disk, and start the server again"
                            .to_string()
                    });
                }
            }
        }
        if !ok {
            self.log(Level::Error, format!("store writes up to {seq} failed"));
        }
    }

    /// A store read answered: the reply it was for goes out.
    fn answered(&mut self, now: Millis, caller: Caller, answer: Answer) {
        // A member list, or a failed read a member list waits for. (A
        // list nobody waits for any more was asked by a request whose id
        // its client used again: it is dropped.)
        let found = match answer {
            Answer::Members(names) => Ok(names),
            Answer::Failed(e) if self.listing.contains_key(&caller) => Err(e),
            answer => return self.read_answered(now, caller, answer),
        };
        if let Some(listing) = self.listing.remove(&caller) {
            self.listed(caller, listing, found);
        }
    }

    /// A store read other than a member list answered.
    fn read_answered(&mut self, now: Millis, caller: Caller, answer: Answer) {
        let name_of = |u| self.accounts.name_of(u);
        let reply = match answer {
            Answer::Device(found) => return self.looked_up(now, caller, found),
            Answer::Inbox(rows) => Reply::Inbox {
                conversations: private::inbox(rows, name_of),
            },
            Answer::Dialogue { other, page, rows } => {
                let with = name_of(other);
                let history = fit_newest(private::dialogue(rows, name_of), |l| l.text.len() + 64);
                match page {
                    Page::Before(_) => Reply::Dialogue { with, history },
                    Page::After(after) => Reply::DialogueCaughtUp {
                        with,
                        skipped: skipped(after, history.first().map(|l| l.seq)),
                        history,
                    },
                }
            }
            Answer::Room { room, page, rows } => {
                let room = room.0 as u64;
                let history =
                    fit_newest(rows.into_iter().map(room_line).collect(), |l: &RoomLine| {
                        l.text.len() + l.from.len() + 32
                    });
                match page {
                    Page::Before(_) => Reply::RoomHistory { room, history },
                    Page::After(after) => Reply::RoomCaughtUp {
                        room,
                        skipped: skipped(after, history.first().map(|l| l.seq)),
                        history,
                    },
                }
            }
            Answer::Members(_) => unreachable!("a member list is answered above"),
            Answer::Failed(e) => {
                self.log(Level::Error, format!("store read failed: {e}"));
                Reply::Error {
                    code: ErrorCode::Unavailable,
                    message: "the server could not read its store: try again later".to_string(),
                }
            }
        };
        self.reply(caller, reply);
    }

    fn deliver_private(&mut self, sender: UserId, recipient: UserId, line: PrivateLine) {
        self.dialogues.committed(sender, recipient, line.seq);
        self.unread.add(recipient, sender);
        if self.accounts.is_online(sender) || self.accounts.is_online(recipient) {
            let audience = Audience::Users([sender, recipient]);
            self.broadcast(audience, Event::PrivateMessage { line });
        }
    }

    fn deliver_room(&mut self, room: RoomId, line: RoomLine) {
        if self.rooms.record(room, &line) {
            let event = Event::RoomMessage {
                room: room.0 as u64,
                line,
            };
            self.tell_room(room, event);
        }
    }

    // ---- effects ----

    fn take_message_id(&mut self) -> MessageId {
        let id = MessageId(self.next_message);
        self.next_message += self.ids.step;
        id
    }

    fn persist(&mut self, write: Write) -> u64 {
        let seq = self.commits.next_seq();
        self.out
            .push_back(Output::Store(StoreJob::Write { seq, write }));
        seq
    }

    fn reply(&mut self, caller: Caller, result: Reply) {
        let id = caller.id;
        self.send(caller.conn, ServerFrame::Reply { id, result });
    }

    fn send(&mut self, conn: ConnId, frame: ServerFrame) {
        self.out.push_back(Output::Send { conn, frame });
    }

    /// The event to its audience. Callers make sure the audience is not
    /// empty (the hub knows who is where as well as the directory does).
    fn broadcast(&mut self, audience: Audience, event: Event) {
        self.out.push_back(Output::Broadcast {
            audience,
            frame: ServerFrame::Event { event },
        });
    }

    /// The event to everyone connected in an open room; nothing when all
    /// its members are away (their places held) or it is closed.
    fn tell_room(&mut self, room: RoomId, event: Event) {
        if self.rooms.get(room).is_some_and(|r| !r.members.is_empty()) {
            self.broadcast(Audience::Room(room), event);
        }
    }

    /// [`Hub::tell_room`], for news of `joiner`, who is among the room's
    /// members already but not yet in its audience: only if someone else
    /// is there to hear it.
    fn tell_room_of(&mut self, room: RoomId, joiner: ConnId, event: Event) {
        let others = self
            .rooms
            .get(room)
            .is_some_and(|r| r.members.iter().any(|&(_, c)| c != joiner));
        if others {
            self.broadcast(Audience::Room(room), event);
        }
    }

    fn directory(&mut self, change: Change) {
        self.out.push_back(Output::Directory(change));
    }

    /// Ends the connection for good: its session, if any, is over.
    fn bye(&mut self, conn: ConnId, reason: &str) {
        self.close_with(conn, reason, false);
    }

    /// Ends the connection, telling its client to connect again and resume.
    fn bye_resume(&mut self, conn: ConnId, reason: &str) {
        self.close_with(conn, reason, true);
    }

    fn close_with(&mut self, conn: ConnId, reason: &str, resume: bool) {
        self.send(
            conn,
            ServerFrame::Event {
                event: Event::Bye {
                    reason: reason.to_string(),
                    resume,
                },
            },
        );
        self.out.push_back(Output::Close { conn });
    }

    fn log(&mut self, level: Level, line: String) {
        self.out.push_back(Output::Log { level, line });
    }
}

/// `10`, or `1.5` where the milliseconds are not whole seconds.
fn seconds(ms: Millis) -> String {
    if ms % 1000 == 0 {
        (ms / 1000).to_string()
    } else {
        format!("{:.1}", ms as f64 / 1000.0)
    }
}

/// Messages between the last one seen (`after`) and the first one sent.
fn skipped(after: u64, first: Option<u64>) -> u64 {
    first.map_or(0, |first| first.saturating_sub(after + 1))
}

fn room_line(r: crate::store::RoomRow) -> RoomLine {
    RoomLine {
        id: r.id.0 as u64,
        seq: r.seq,
        from: r.sender_name.into(),
        text: r.text.into(),
        time: r.sent,
    }
}

fn unavailable() -> Reply {
    Reply::Error {
        code: ErrorCode::Unavailable,
        message: "the server could not store that: try again later".to_string(),
    }
}

fn check_text(text: &str) -> Result<(), Refusal> {
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
