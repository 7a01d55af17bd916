//! The hub's handlers for sessions beginning and ending: the workers'
//! answers to a registration or a login, a resume token presented, leaving
//! a room, a room closing, logging out and disconnecting. Like `requests`,
//! they belong to the root and reach over every part of the state.

use super::accounts::MAX_SESSIONS;
use super::commits::Deferred;
use super::connections::State;
use super::devices::Presented;
use super::rooms::HoldDue;
use super::{Audience, Caller, Change, ConnId, Hub, Level, Output, Query, StoreJob};
use crate::model::{self, DeviceId, Millis, RoomId, UserId};
use crate::store::Write;
use crate::wire::msg::{ErrorCode, Event, LeaveReason, Reply};

/// The refusal of a token that is unknown, expired or revoked.
const NO_LONGER_VALID: &str = "your saved login is no longer valid: log in with your password";

impl Hub {
    pub(super) fn hashed(&mut self, now: Millis, caller: Caller, name: String, hash: String) {
        let key = model::user_key(&name);
        self.accounts.unreserve(&key);
        if !self.conns.contains(caller.conn) {
            return; // gone before the hash was ready: no account is made
        }
        let user = self.accounts.create(key, &name, hash.clone());
        self.persist(Write::User {
            id: user,
            name: name.clone(),
            password_hash: hash,
            created: now,
        });
        self.go_online(caller.conn, user);
        self.log(Level::Info, format!("account {name} created"));
        // Deferred under the device's write, which follows the account's.
        let (device, token, seq) = self.new_device(now, caller.conn, user);
        let account = Deferred::Account {
            caller,
            user,
            device,
            token,
        };
        self.commits.defer(seq, account);
    }

    /// A device for a password login on `conn`, with its first token,
    /// stored (after revoking the account's least recently used devices
    /// past the cap); returns it, its token and the write's number.
    fn new_device(&mut self, now: Millis, conn: ConnId, user: UserId) -> (DeviceId, String, u64) {
        let created = self.devices.create(user, now, self.limits.max_devices);
        for id in created.evicted {
            self.persist(Write::DeleteDevice { id });
        }
        let seq = self.persist(Write::Device {
            id: created.device,
            user,
            token_hash: created.token_hash,
            created: now,
        });
        self.devices.attach(conn, created.device);
        (created.device, created.token, seq)
    }

    pub(super) fn verified(
        &mut self,
        now: Millis,
        caller: Caller,
        name: &str,
        user: Option<UserId>,
    ) {
        let conn = caller.conn;
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let peer = c.peer.clone();
        let ip = c.ip.clone();
        // An account whose store write failed while its password was being
        // checked is gone: a failed login.
        let user = user.filter(|&u| self.accounts.exists(u));
        let key = model::user_key(name);
        let Some(user) = user else {
            self.conns.set_state(conn, State::Anonymous);
            // The typed name is logged only when it names an account: a
            // password typed into the name field must not reach the log.
            let who = match self.accounts.named(name) {
                Some(uid) => self.accounts.name(uid).to_string(),
                None => "an unknown name".to_string(),
            };
            self.log(Level::Warn, format!("{peer}: failed login for {who}"));
            self.accounts.failed(now, &key, &ip);
            let code = ErrorCode::BadCredentials;
            let message = "wrong user name or password".to_string();
            self.reply(caller, Reply::Error { code, message });
            return;
        };
        self.accounts.succeeded(&key);
        self.begin_session(now, caller, user);
        let (device, token, seq) = self.new_device(now, conn, user);
        let name = self.accounts.name(user).to_string();
        self.log(Level::Info, format!("{peer}: {name} logged in"));
        self.defer_logged_in(caller, user, device, token, seq);
    }

    /// The user is logged in on the caller's connection, beside their
    /// other sessions (up to [`MAX_SESSIONS`]).
    fn begin_session(&mut self, now: Millis, caller: Caller, user: UserId) {
        self.make_room_for_session(now, user);
        self.go_online(caller.conn, user);
    }

    /// `logged_in`, with the token, once the device's write `seq` is stored.
    fn defer_logged_in(
        &mut self,
        caller: Caller,
        user: UserId,
        device: DeviceId,
        token: String,
        seq: u64,
    ) {
        let name = self.accounts.name(user).to_string();
        let unread = self.unread.total(user);
        let reply = Reply::LoggedIn {
            name,
            unread,
            token,
            node: self.node(),
        };
        let session = Deferred::Session {
            caller,
            user,
            device,
            reply,
        };
        self.commits.defer(seq, session);
    }

    /// A resume token presented by a connection that was held back or not:
    /// a current token logs its device's user in and is replaced; anything
    /// else is refused like a wrong password (and counted as one against
    /// the address), and a replaced token revokes its device.
    pub(super) fn resume_now(&mut self, now: Millis, caller: Caller, token: &str) {
        let conn = caller.conn;
        // Gone, or closed for being late while held back: the token stays
        // as it was, for the client's next try.
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if !matches!(c.state, State::Authenticating) {
            return;
        }
        let (peer, ip) = (c.peer.clone(), c.ip.clone());
        let expiry = self.limits.resume_expiry;
        let refusal = match self.devices.present(token, now, expiry) {
            Presented::Resumed {
                device,
                user,
                token,
                token_hash,
                previous_hash,
            } => {
                let seq = self.persist(Write::RotateDevice {
                    id: device,
                    token_hash,
                    previous_hash,
                    used: now,
                });
                let key = model::user_key(self.accounts.name(user));
                self.accounts.succeeded(&key);
                // A device has one session: the one it resumes from is a
                // connection it has given up on (probably half-open).
                for old in self.devices.sessions_of(device) {
                    self.end_session(now, old, LeaveReason::Disconnected);
                    self.conns.set_state(old, State::Anonymous);
                    self.bye(old, "this device resumed its session on a new connection");
                }
                self.begin_session(now, caller, user);
                self.devices.attach(conn, device);
                let name = self.accounts.name(user).to_string();
                self.log(
                    Level::Info,
                    format!("{peer}: {name} resumed (device {device})"),
                );
                self.defer_logged_in(caller, user, device, token, seq);
                return;
            }
            Presented::Malformed => {
                self.log(Level::Warn, format!("{peer}: failed resume: not a token"));
                format!(
                    "that is not a resume token ({} hex characters): log in with your password",
                    super::devices::TOKEN_CHARS
                )
            }
            // Shared with other servers: the device may be one whose news
            // the bus lost (its server died between commit and publish).
            // The store is asked once before the token is refused.
            Presented::Unknown if self.shared && !self.lookups.contains_key(&caller) => {
                if let Some(bytes) = super::devices::parse_token(token) {
                    let token_hash = super::devices::hash_token(&bytes);
                    self.lookups.insert(caller, token.to_string());
                    let query = Query::Device { token_hash };
                    self.out
                        .push_back(Output::Store(StoreJob::Query { caller, query }));
                    return;
                }
                NO_LONGER_VALID.to_string()
            }
            Presented::Unknown => {
                self.lookups.remove(&caller);
                self.log(Level::Warn, format!("{peer}: failed resume: unknown token"));
                NO_LONGER_VALID.to_string()
            }
            Presented::Expired { device, user } => {
                self.persist(Write::DeleteDevice { id: device });
                let name = self.accounts.name_of(user);
                self.log(
                    Level::Warn,
                    format!("{peer}: failed resume: device {device} of {name} expired, revoked"),
                );
                NO_LONGER_VALID.to_string()
            }
            Presented::Reused {
                device,
                user,
                sessions,
            } => {
                self.persist(Write::DeleteDevice { id: device });
                let name = self.accounts.name_of(user);
                self.log(
                    Level::Warn,
                    format!(
                        "{peer}: a replaced resume token of {name} was presented again (copied?): \
                         device {device} revoked"
                    ),
                );
                for old in sessions {
                    self.end_session(now, old, LeaveReason::Disconnected);
                    self.conns.set_state(old, State::Anonymous);
                    self.bye(
                        old,
                        "your saved login was used from another place and is revoked: \
                         log in with your password",
                    );
                }
                NO_LONGER_VALID.to_string()
            }
        };
        self.accounts.failed_from(now, &ip);
        self.conns.set_state(conn, State::Anonymous);
        let code = ErrorCode::BadCredentials;
        self.reply(
            caller,
            Reply::Error {
                code,
                message: refusal,
            },
        );
    }

    /// The shared store said whose an unknown resume token is: the
    /// account and device are learned (or the device's token brought up to
    /// date), and the resume is tried once more; unknown there too, it is
    /// refused.
    pub(super) fn looked_up(
        &mut self,
        now: Millis,
        caller: Caller,
        found: Option<(crate::store::DeviceRow, crate::store::UserRow)>,
    ) {
        let Some(token) = self.lookups.remove(&caller) else {
            return;
        };
        if let Some((device, user)) = found {
            self.accounts.learn(user.id, &user.name, user.password_hash);
            self.devices.remove(device.id);
            self.devices.learn_row(device);
        }
        // Refused this time if still unknown: looked up already.
        self.lookups.insert(caller, token.clone());
        self.resume_now(now, caller, &token);
        self.lookups.remove(&caller);
    }

    /// A session whose device could not be stored: log it out and revoke
    /// the device (its token is in no reply, or in none the store backs).
    pub(super) fn undo_session(
        &mut self,
        now: Millis,
        conn: ConnId,
        user: UserId,
        device: DeviceId,
    ) {
        if self.devices.remove(device) {
            self.persist(Write::DeleteDevice { id: device });
        }
        if let Some(State::Online { user: u, .. }) = self.conns.state(conn)
            && u == user
        {
            self.end_session(now, conn, LeaveReason::Disconnected);
            self.conns.set_state(conn, State::Anonymous);
        }
    }

    /// Logs the connection's session out and revokes the device it came
    /// from, if any.
    pub(super) fn log_out(&mut self, now: Millis, conn: ConnId) {
        if let Some(device) = self.devices.detach(conn) {
            self.devices.remove(device);
            self.persist(Write::DeleteDevice { id: device });
        }
        self.end_session(now, conn, LeaveReason::Left);
        self.conns.set_state(conn, State::Anonymous);
    }

    /// Several sessions of one account may be logged in at once, up to
    /// [`MAX_SESSIONS`]; a new one beyond that ends the oldest (which may be
    /// a half-open connection whose owner has gone).
    pub(super) fn make_room_for_session(&mut self, now: Millis, user: UserId) {
        let sessions = self.accounts.sessions(user);
        if sessions.len() < MAX_SESSIONS {
            return;
        }
        let oldest = sessions[0];
        self.end_session(now, oldest, LeaveReason::Disconnected);
        self.conns.set_state(oldest, State::Anonymous);
        self.bye(
            oldest,
            &format!(
                "you logged in from more than {MAX_SESSIONS} places at once; this, \
                 the oldest session, was logged out"
            ),
        );
    }

    fn go_online(&mut self, conn: ConnId, user: UserId) {
        self.accounts.go_online(user, conn);
        self.conns
            .set_state(conn, State::Online { user, room: None });
        self.directory(Change::Online { conn, user });
    }

    /// Ends a logged-in session: out of its room, no longer online.
    pub(super) fn end_session(&mut self, now: Millis, conn: ConnId, why: LeaveReason) {
        let Some(State::Online { user, room }) = self.conns.state(conn) else {
            return;
        };
        if let Some(room) = room {
            self.leave_room(now, conn, room, why);
        }
        self.accounts.go_offline(user, conn);
        self.devices.detach(conn);
        self.directory(Change::Offline { conn });
    }

    pub(super) fn disconnected(&mut self, now: Millis, conn: ConnId, reason: &str) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let who = match c.state {
            State::Online { user, .. } => format!("{} ({})", self.accounts.name(user), c.peer),
            _ => c.peer.clone(),
        };
        self.log(Level::Info, format!("{who}: disconnected: {reason}"));
        self.end_session(now, conn, LeaveReason::Disconnected);
        self.conns.remove(conn);
    }

    /// A new account that could not be stored: forget it and log its
    /// connection out again.
    pub(super) fn undo_account(&mut self, now: Millis, conn: ConnId, user: UserId) {
        // Wherever the account is logged in: on the connection that made it
        // or, if a login with the new password came first, on that one.
        let mut sessions = vec![conn];
        sessions.extend_from_slice(self.accounts.sessions(user));
        for c in sessions {
            if let Some(State::Online { user: u, .. }) = self.conns.state(c)
                && u == user
            {
                self.end_session(now, c, LeaveReason::Disconnected);
                self.conns.set_state(c, State::Anonymous);
            }
        }
        self.rooms.forget_held(user);
        self.accounts.forget(user);
    }

    /// Takes the connection's user out of their room, if any; an admin's
    /// leaving closes the room.
    pub(super) fn leave_room(
        &mut self,
        now: Millis,
        conn: ConnId,
        room_id: RoomId,
        why: LeaveReason,
    ) {
        let Some(State::Online { user, .. }) = self.conns.state(conn) else {
            return;
        };
        self.conns
            .set_state(conn, State::Online { user, room: None });
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let admin = room.admin;
        let gone = self.rooms.remove_session(room_id, user, conn);
        self.directory(Change::Left { conn });
        if !gone {
            return; // still in the room from another session
        }
        if why == LeaveReason::Disconnected && self.limits.grace > 0 {
            // A blip is not a departure: the place is kept (an admin's room
            // stays open) until the grace period ends; see `held_due`.
            self.rooms.hold(room_id, user, now);
            let name = self.accounts.name(user).to_string();
            self.log(
                Level::Info,
                format!("{name} dropped from room #{room_id}: place held"),
            );
            return;
        }
        if admin == user {
            let reason = if why == LeaveReason::Disconnected {
                LeaveReason::AdminDisconnected
            } else {
                LeaveReason::AdminLeft
            };
            self.close_room(now, room_id, reason);
            return;
        }
        let name = self.accounts.name(user).to_string();
        self.log(
            Level::Info,
            format!("{name} left room #{room_id} ({why:?})"),
        );
        self.member_left(room_id, user, name, why);
    }

    pub(super) fn close_room(&mut self, now: Millis, room_id: RoomId, reason: LeaveReason) {
        if self.drop_room(room_id, reason) {
            self.persist(Write::CloseRoom {
                id: room_id,
                closed: now,
            });
        }
    }

    /// Takes a room out of memory and tells its members (all but its
    /// admin, who closed it); false if it was not open.
    pub(super) fn drop_room(&mut self, room_id: RoomId, reason: LeaveReason) -> bool {
        let Some(room) = self.rooms.close(room_id) else {
            return false;
        };
        self.away_elsewhere.retain(|&(r, _)| r != room_id);
        let (admin, others): (Vec<_>, Vec<_>) =
            room.members.iter().partition(|&&(u, _)| u == room.admin);
        for &(_, conn) in admin.iter().chain(&others) {
            self.conns.clear_room(conn);
        }
        // The admin leaves the audience first, the others after hearing it.
        for &(_, conn) in &admin {
            self.directory(Change::Left { conn });
        }
        if !others.is_empty() {
            let closed = Event::RoomClosed {
                room: room_id.0 as u64,
                reason,
            };
            self.broadcast(Audience::Room(room_id), closed);
        }
        for &(_, conn) in &others {
            self.directory(Change::Left { conn });
        }
        self.log(
            Level::Info,
            format!("room #{room_id} \"{}\" closed ({reason:?})", room.name),
        );
        true
    }

    /// Held places whose time came: the room is told the member lost their
    /// connection, or, once the grace period is over, that they left (an
    /// admin's room closes).
    pub(super) fn held_due(&mut self, now: Millis) {
        let (quiet, grace) = (self.limits.quiet_blip, self.limits.grace);
        for (room_id, user, due) in self.rooms.due_holds(now, quiet, grace) {
            let Some(room) = self.rooms.get(room_id) else {
                continue;
            };
            let admin = room.admin == user;
            let name = self.accounts.name(user).to_string();
            match due {
                HoldDue::Announce => {
                    if self.shared {
                        let since = Some(now);
                        self.persist(Write::Away {
                            room: room_id,
                            user,
                            since,
                        });
                    }
                    let room = room_id.0 as u64;
                    self.tell_room(room_id, Event::Away { room, name });
                }
                HoldDue::Expired if admin => {
                    self.close_room(now, room_id, LeaveReason::AdminDisconnected);
                }
                HoldDue::Expired => {
                    self.log(
                        Level::Info,
                        format!("{name} left room #{room_id} (grace period over)"),
                    );
                    self.member_left(room_id, user, name, LeaveReason::Disconnected);
                }
            }
        }
    }

    /// `user` (`name`) is out of the room, for `reason`: the room is told,
    /// and a shared database drops them from its members.
    pub(super) fn member_left(
        &mut self,
        room_id: RoomId,
        user: UserId,
        name: String,
        reason: LeaveReason,
    ) {
        if self.shared {
            let kicked = reason == LeaveReason::Kicked;
            let room = room_id;
            self.persist(Write::Leave { room, user, kicked });
        }
        self.announce_left(room_id, name, reason);
    }

    /// Tells a room that someone left it (they are out of it already).
    pub(super) fn announce_left(&mut self, room_id: RoomId, name: String, reason: LeaveReason) {
        let left = Event::Left {
            room: room_id.0 as u64,
            name,
            reason,
        };
        self.tell_room(room_id, left);
    }
}
