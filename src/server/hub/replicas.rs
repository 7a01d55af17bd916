//! What other servers sharing the database committed, applied here: the
//! accounts, devices and rooms they made, the rooms they closed, the read
//! marks they moved, and the messages they stored, delivered to whoever
//! of this server is in the conversation.
//!
//! Messages are shown in the order of their numbers, each once, whichever
//! server stored them: a message numbered one past the last shown goes
//! out at once; one from the past is dropped; one further on means numbers
//! were missed (a bus message lost, the bus down for a while, or another
//! server's message still on its way while this server's own, numbered
//! after it, is already stored), so the conversation's messages after the
//! last one shown are read from the store ([`Gap`]) and shown from there.
//! The store holds every committed message, so nothing missed is lost.
//!
//! What comes in was committed by a server of this deployment but crossed
//! a network, so it is checked as input: a write naming a user or a room
//! unknown here, or a number already shown, is logged and dropped, never
//! applied.

use super::effects::{Filled, Gap, Level, Output, StoreJob};
use super::reorder::Line;
use super::{Hub, room_line};
use crate::model::{Millis, RoomId, Seq, UserId};
use crate::store::Write;
use crate::wire::msg::{Event, LeaveReason, PrivateLine, RoomLine, ServerFrame};

/// A conversation, for the gaps being read: a room, or a dialogue (lower
/// id first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Conv {
    Room(RoomId),
    Dialogue(UserId, UserId),
}

impl Hub {
    /// A batch another server committed, in its order.
    pub(super) fn replicated(&mut self, now: Millis, writes: Vec<Write>) {
        for write in writes {
            self.replica(now, write);
        }
    }

    fn replica(&mut self, now: Millis, write: Write) {
        if let Write::RoomMessage {
            origin: Some(origin),
            ..
        }
        | Write::PrivateMessage {
            origin: Some(origin),
            ..
        } = write
        {
            self.devices.noted(origin);
        }
        match write {
            Write::User {
                id,
                name,
                password_hash,
                ..
            } => {
                if !self.accounts.learn(id, &name, password_hash) {
                    self.ignored(format!("user {id} {name:?}, known here already"));
                }
            }
            Write::Room {
                id,
                name,
                admin,
                capacity,
                ..
            } => {
                if !self.accounts.exists(admin) {
                    self.ignored(format!("room #{id}, of unknown user {admin}"));
                } else if !self.rooms.learn(id, name, admin, capacity) {
                    self.ignored(format!("room #{id}, known here already or its name taken"));
                }
            }
            // The admin left on the other server (or dropped past the
            // grace period): the room closes for its members here too.
            Write::CloseRoom { id, .. } => {
                self.drop_room(id, LeaveReason::AdminLeft);
            }
            Write::RoomMessage {
                id,
                seq,
                room,
                sender,
                text,
                sent,
                ..
            } => {
                if self.rooms.get(room).is_none() {
                    return self.ignored(format!("message {id}, for room #{room} not open here"));
                }
                let line = self.accounts.exists(sender).then(|| RoomLine {
                    id: id.0 as u64,
                    seq,
                    from: self.accounts.name(sender).clone(),
                    text,
                    time: sent,
                });
                self.room_message(now, room, seq, line);
            }
            Write::PrivateMessage {
                id,
                seq,
                sender,
                recipient,
                text,
                sent,
                ..
            } => {
                if !self.accounts.exists(sender) || !self.accounts.exists(recipient) {
                    let who = format!("from user {sender} to user {recipient}");
                    return self.ignored(format!("private message {id} {who}, one unknown here"));
                }
                let line = PrivateLine {
                    id: id.0 as u64,
                    seq,
                    from: self.accounts.name(sender).clone(),
                    to: self.accounts.name(recipient).clone(),
                    text,
                    time: sent,
                };
                self.private_message(now, sender, recipient, line);
            }
            Write::MarkRead {
                recipient,
                sender,
                upto,
            } => {
                // Read on another device, through another server: this
                // server's sessions of the reader are told, as when it is
                // read here. A mark short of what this server has shown
                // leaves the later ones unread.
                if upto >= self.dialogues.last_committed(recipient, sender)
                    && self.unread.clear(recipient, sender) > 0
                {
                    let read = Event::Read {
                        with: self.accounts.name_of(sender),
                        unread: self.unread.total(recipient),
                    };
                    for conn in self.accounts.sessions(recipient).to_vec() {
                        let event = read.clone();
                        self.send(conn, ServerFrame::Event { event });
                    }
                }
            }
            Write::Device {
                id,
                user,
                token_hash,
                created,
            } => {
                if !self.accounts.exists(user) {
                    self.ignored(format!("device {id}, of unknown user {user}"));
                } else if !self.devices.learn(id, user, token_hash, created) {
                    self.ignored(format!("device {id}, known here already"));
                }
            }
            Write::RotateDevice {
                id,
                token_hash,
                previous_hash,
                used,
            } => {
                // A device has one session: resumed elsewhere, the one it
                // had here is a connection it gave up on.
                self.end_device_sessions(now, id, "this device resumed its session elsewhere");
                if !self.devices.rotated(id, token_hash, previous_hash, used) {
                    self.ignored(format!("new token of device {id}, unknown here"));
                }
            }
            Write::Join { room, user } => {
                // Back through another server: a place held here for
                // them is theirs there now.
                let here = self.rooms.get(room).is_some_and(|r| r.has(user));
                if let Some(held) = (!here)
                    .then(|| self.rooms.unhold(room, user, None))
                    .flatten()
                {
                    if held.announced {
                        self.tell_news_of(room, user, |room, name| Event::Back { room, name });
                    }
                    return;
                }
                let news = self
                    .rooms
                    .get(room)
                    .is_some_and(|r| !r.users().contains(&user));
                if news {
                    self.tell_news_of(room, user, |room, name| Event::Joined { room, name });
                }
            }
            Write::Leave { room, user, kicked } => self.left_elsewhere(room, user, kicked),
            // Away from the room on the other server, or back there: told
            // here as there.
            Write::Away { room, user, since } => {
                if since.is_some() {
                    self.away_elsewhere.insert((room, user));
                } else {
                    self.away_elsewhere.remove(&(room, user));
                }
                let here = self.rooms.get(room).map(|r| r.users().contains(&user));
                if here == Some(false) {
                    let news: fn(u64, String) -> Event = match since {
                        Some(_) => |room, name| Event::Away { room, name },
                        None => |room, name| Event::Back { room, name },
                    };
                    self.tell_news_of(room, user, news);
                }
            }
            Write::DeleteDevice { id } => {
                self.end_device_sessions(
                    now,
                    id,
                    "your saved login was ended (logged out or revoked): log in again",
                );
                self.devices.remove(id);
            }
        }
    }

    /// Tells `room` the news of `user` (through another server), if this
    /// server knows the user.
    fn tell_news_of(&mut self, room: RoomId, user: UserId, news: fn(u64, String) -> Event) {
        if self.accounts.exists(user) {
            let name = self.accounts.name_of(user);
            self.tell_room(room, news(room.0 as u64, name));
        }
    }

    /// `user` left `room` through another server, or was kicked from it
    /// there: a kick takes their sessions here out of it too.
    fn left_elsewhere(&mut self, room_id: RoomId, user: UserId, kicked: bool) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let admin = room.admin;
        let here = room.users().contains(&user);
        if !self.accounts.exists(user) || (here && !kicked) {
            return;
        }
        let name = self.accounts.name_of(user);
        let room_no = room_id.0 as u64;
        // Away there, and now gone: their place was given up.
        let away = self.away_elsewhere.remove(&(room_id, user));
        if !here {
            let reason = match (kicked, away) {
                (true, _) => LeaveReason::Kicked,
                (false, true) => LeaveReason::Disconnected,
                (false, false) => LeaveReason::Left,
            };
            self.announce_left(room_id, name, reason);
            return;
        }
        // Kicked by the admin on another server: as a kick here, but the
        // database knows already.
        let Ok((_, conns)) = self.rooms.kick(room_id, admin, Some(user), &name) else {
            return;
        };
        let by = self.accounts.name_of(admin);
        for conn in conns {
            let state = super::connections::State::Online { user, room: None };
            self.conns.set_state(conn, state);
            self.directory(super::effects::Change::Left { conn });
            let event = Event::Kicked {
                room: room_no,
                by: by.clone(),
            };
            self.send(conn, ServerFrame::Event { event });
        }
        self.announce_left(room_id, name, LeaveReason::Kicked);
    }

    /// Room message `seq` was stored: shown here if it is the next one,
    /// held a moment for the ones before it if it is further on ([`Reorder`]),
    /// and its gap read from the store if that is being read already or
    /// it waited too long. `line` is `None` when it cannot be shown from
    /// what this server knows (its sender is unknown here): the store then
    /// says.
    pub(super) fn room_message(
        &mut self,
        now: Millis,
        room: RoomId,
        seq: Seq,
        line: Option<RoomLine>,
    ) {
        if self.rooms.get(room).is_none() {
            return; // Closed while the message was being stored.
        }
        let last = self.rooms.last_committed(room);
        let conv = Conv::Room(room);
        let gap = Gap::Room { room, after: last };
        match line {
            _ if seq <= last => self.seen_already(seq, last),
            Some(line) if !self.filling.contains_key(&conv) => {
                self.in_turn(now, conv, seq, last, Line::Room { room, line }, gap)
            }
            _ => self.fill(conv, seq, gap),
        }
    }

    /// As [`Hub::room_message`], for a private message.
    pub(super) fn private_message(
        &mut self,
        now: Millis,
        sender: UserId,
        recipient: UserId,
        line: PrivateLine,
    ) {
        let (a, b) = (sender.min(recipient), sender.max(recipient));
        let last = self.dialogues.last_committed(a, b);
        let conv = Conv::Dialogue(a, b);
        let (seq, gap) = (line.seq, Gap::Dialogue { a, b, after: last });
        if seq <= last {
            self.seen_already(seq, last);
        } else if self.filling.contains_key(&conv) {
            self.fill(conv, seq, gap);
        } else {
            let line = Line::Private {
                sender,
                recipient,
                line,
            };
            self.in_turn(now, conv, seq, last, line, gap);
        }
    }

    /// A message numbered past `last`, the last shown: the next one is
    /// shown, with those held behind it; one further on waits its turn.
    fn in_turn(&mut self, now: Millis, conv: Conv, seq: Seq, last: Seq, line: Line, gap: Gap) {
        if seq > last + 1 {
            if !self.reorder.hold(now, conv, seq, line) {
                self.reorder.drop_conv(conv);
                self.fill(conv, seq, gap);
            }
            return;
        }
        let mut next = Some(line);
        while let Some(line) = next {
            self.show(line);
            let last = match conv {
                Conv::Room(room) => self.rooms.last_committed(room),
                Conv::Dialogue(a, b) => self.dialogues.last_committed(a, b),
            };
            next = self.reorder.take(now, conv, last + 1);
        }
    }

    fn show(&mut self, line: Line) {
        match line {
            Line::Room { room, line } => self.deliver_room(room, line),
            Line::Private {
                sender,
                recipient,
                line,
            } => self.deliver_private(sender, recipient, line),
        }
    }

    /// Conversations whose held messages waited long enough: what is
    /// missing in front of them is read from the store.
    pub(super) fn reorder_due(&mut self, now: Millis) {
        for conv in self.reorder.due(now) {
            let highest = self.reorder.drop_conv(conv).unwrap_or(0);
            let gap = match conv {
                Conv::Room(room) if self.rooms.get(room).is_none() => continue,
                Conv::Room(room) => Gap::Room {
                    room,
                    after: self.rooms.last_committed(room),
                },
                Conv::Dialogue(a, b) => Gap::Dialogue {
                    a,
                    b,
                    after: self.dialogues.last_committed(a, b),
                },
            };
            self.fill(conv, highest, gap);
        }
    }

    /// Reads `gap` from the store, unless it is being read already; `seen`
    /// is the number that showed it, read again after if the answer stops
    /// short of it.
    fn fill(&mut self, conv: Conv, seen: Seq, gap: Gap) {
        if let Some(highest) = self.filling.get_mut(&conv) {
            *highest = (*highest).max(seen);
            return;
        }
        self.filling.insert(conv, seen);
        self.out.push_back(Output::Store(StoreJob::Fill(gap)));
    }

    /// A gap's messages came: those after the last shown are shown, in
    /// order.
    pub(super) fn filled(&mut self, gap: Gap, filled: Filled) {
        let (conv, after) = match gap {
            Gap::Room { room, after } => (Conv::Room(room), after),
            Gap::Dialogue { a, b, after } => (Conv::Dialogue(a, b), after),
        };
        let highest = self.filling.remove(&conv).unwrap_or(0);
        let last = match (conv, filled) {
            (Conv::Room(room), Filled::Room(rows)) => {
                self.skipped_beyond_fill(after, rows.first().map(|r| r.seq));
                for row in rows {
                    if row.seq > self.rooms.last_committed(room) {
                        self.deliver_room(room, room_line(row));
                    }
                }
                self.rooms.last_committed(room)
            }
            (Conv::Dialogue(a, b), Filled::Dialogue(rows)) => {
                self.skipped_beyond_fill(after, rows.first().map(|r| r.seq));
                let name_of = |u| self.accounts.name_of(u);
                let senders: Vec<(UserId, UserId)> =
                    rows.iter().map(|r| (r.sender, r.recipient)).collect();
                let lines = super::private::dialogue(rows, name_of);
                for ((sender, recipient), line) in senders.into_iter().zip(lines) {
                    if line.seq > self.dialogues.last_committed(a, b) {
                        self.deliver_private(sender, recipient, line);
                    }
                }
                self.dialogues.last_committed(a, b)
            }
            (_, Filled::Failed(e)) => {
                // The next message of the conversation tries again.
                self.log(
                    Level::Error,
                    format!("could not read messages missed from the store: {e}"),
                );
                return;
            }
            (conv, filled) => unreachable!("{conv:?} filled with {filled:?}"),
        };
        // Numbers seen meanwhile past what was read are read next; an
        // answer that brought nothing new is not asked again at once (the
        // conversation's next message asks).
        if highest > last && last > after {
            let gap = match conv {
                Conv::Room(room) => Gap::Room { room, after: last },
                Conv::Dialogue(a, b) => Gap::Dialogue { a, b, after: last },
            };
            self.fill(conv, highest, gap);
        }
    }

    /// Every open room and every dialogue this server has shown a message
    /// of is read from where it stopped: the bus was lost, and whatever
    /// it carried meanwhile is in the store.
    pub fn catch_up_all(&mut self) {
        for conv in self.reorder.convs() {
            self.reorder.drop_conv(conv);
        }
        for room in self.rooms.ids() {
            let after = self.rooms.last_committed(room);
            self.fill(Conv::Room(room), 0, Gap::Room { room, after });
        }
        for (a, b, after) in self.dialogues.all() {
            self.fill(Conv::Dialogue(a, b), 0, Gap::Dialogue { a, b, after });
        }
    }

    fn end_device_sessions(&mut self, now: Millis, device: crate::model::DeviceId, why: &str) {
        for conn in self.devices.sessions_of(device) {
            self.end_session(now, conn, LeaveReason::Disconnected);
            self.conns
                .set_state(conn, super::connections::State::Anonymous);
            self.bye(conn, why);
        }
    }

    /// A number already shown: usual after a gap was read (the bus then
    /// brings what the read showed), so only said at debug level.
    fn seen_already(&mut self, seq: Seq, last: Seq) {
        let line = format!("bus: ignored message number {seq}, shown already (up to {last})");
        self.log(Level::Debug, line);
    }

    /// A gap longer than one read: the oldest of it are not shown live
    /// (each client finds them in the conversation's history).
    fn skipped_beyond_fill(&mut self, after: Seq, first: Option<Seq>) {
        let skipped = super::skipped(after, first);
        if skipped > 0 {
            self.log(
                Level::Warn,
                format!(
                    "{skipped} messages missed were too many to show live; they are in the history"
                ),
            );
        }
    }

    fn ignored(&mut self, what: String) {
        self.log(Level::Warn, format!("bus: ignored {what}"));
    }
}
