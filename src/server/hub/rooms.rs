//! The open rooms: names (unique among open rooms, without regard to
//! case), admins, capacities, members in order of joining, and the recent
//! history a joiner is shown. It checks joins and kicks and says why one
//! is refused; telling the members is the hub root's job.

use super::effects::{ConnId, Refusal};
use crate::model::{
    self, IdSpace, MAX_CAPACITY, MIN_CAPACITY, Millis, ROOM_HISTORY, RoomId, Seq, UserId,
};
use crate::wire::msg::{ErrorCode, RoomLine};
use std::collections::{HashMap, HashSet, VecDeque};

pub(super) struct Room {
    pub name: String,
    key: String,
    pub admin: UserId,
    pub capacity: u32,
    /// Each session in the room, in order of joining; the admin first. A
    /// user in the room from several devices has an entry for each, and
    /// counts once (see [`Room::users`]).
    pub members: Vec<(UserId, ConnId)>,
    pub history: VecDeque<RoomLine>,
    /// Members whose connection dropped, keeping their place.
    pub held: Vec<Held>,
    /// The sequence number given to the room's last message.
    last_seq: Seq,
    /// The sequence number of its last message stored and shown.
    committed: Seq,
}

/// A member whose connection dropped without leaving: they keep their
/// place for the grace period.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub user: UserId,
    pub since: Millis,
    /// The room was told they lost their connection.
    pub announced: bool,
}

/// What a join was, for the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Joined {
    /// A new member.
    New,
    /// A member already there from another session.
    Again,
    /// A member whose place was held; `announced` if the room was told
    /// they had lost their connection.
    Back { announced: bool },
}

/// A held place whose time came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HoldDue {
    /// Away long enough to tell the room.
    Announce,
    /// The grace period is over: the member is gone.
    Expired,
}

impl Room {
    /// The users in the room, each once, in order of joining; those whose
    /// place is held after them.
    pub fn users(&self) -> Vec<UserId> {
        let mut users: Vec<UserId> = Vec::with_capacity(self.members.len());
        let held = self.held.iter().map(|h| h.user);
        for user in self.members.iter().map(|&(u, _)| u).chain(held) {
            if !users.contains(&user) {
                users.push(user);
            }
        }
        users
    }

    pub fn has(&self, user: UserId) -> bool {
        self.members.iter().any(|&(u, _)| u == user)
    }
}

pub(super) struct Rooms {
    rooms: HashMap<RoomId, Room>,
    open_names: HashMap<String, RoomId>,
    next_room: i64,
    ids: IdSpace,
    /// Held places in all rooms, so that none costs nothing to check.
    holding: usize,
    /// Room ids below this were given before this server started: one
    /// not open is closed.
    started_at: i64,
    /// Rooms of other servers' id slots that closed while this one ran
    /// (one of theirs not open here may be one not yet heard of).
    closed_elsewhere: HashSet<RoomId>,
}

impl Rooms {
    pub fn new(next_room: RoomId) -> Rooms {
        Rooms {
            rooms: HashMap::new(),
            open_names: HashMap::new(),
            next_room: next_room.0,
            ids: IdSpace::ALONE,
            holding: 0,
            started_at: next_room.0,
            closed_elsewhere: HashSet::new(),
        }
    }

    /// Rooms made from now on take ids of `ids` only.
    pub fn use_ids(&mut self, ids: IdSpace) {
        self.ids = ids;
        self.next_room = ids.at_or_after(self.next_room);
    }

    pub fn get(&self, room: RoomId) -> Option<&Room> {
        self.rooms.get(&room)
    }

    /// The sequence number of the room's next message (the room is open).
    pub fn next_seq(&mut self, room: RoomId) -> Seq {
        let room = self.rooms.get_mut(&room).expect("an open room");
        room.last_seq += 1;
        room.last_seq
    }

    /// The number of the room's last message stored (0: none yet).
    pub fn last_committed(&self, room: RoomId) -> Seq {
        self.rooms.get(&room).map_or(0, |r| r.committed)
    }

    /// Opens a room with its admin as its only member, after checking the
    /// name and the capacity. Returns its id and its trimmed name.
    pub fn create(
        &mut self,
        name: &str,
        capacity: u32,
        admin: UserId,
        conn: ConnId,
    ) -> Result<(RoomId, String), Refusal> {
        model::check_room_name(name).map_err(|e| (ErrorCode::InvalidName, e.to_string()))?;
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
        self.next_room += self.ids.step;
        self.open_names.insert(key.clone(), room);
        self.rooms.insert(
            room,
            Room {
                name: name.clone(),
                key,
                admin,
                capacity,
                members: vec![(admin, conn)],
                history: VecDeque::new(),
                held: Vec::new(),
                last_seq: 0,
                committed: 0,
            },
        );
        Ok((room, name))
    }

    /// Adds a session to the room the client typed the number of, if it is
    /// open and has space (a user already in it from another device takes
    /// no more space). Returns the room, and whether the user is new in it.
    /// Whether `user` joining room `room_no` would be a new member (not
    /// there already from another session, nor holding a place), after
    /// the checks [`Rooms::join`] makes: a server sharing its database
    /// asks the database about a new member first.
    pub fn is_new_member(&self, room_no: u64, user: UserId) -> Result<bool, Refusal> {
        let room_id = RoomId(i64::try_from(room_no).unwrap_or(i64::MAX));
        let Some(room) = self.rooms.get(&room_id) else {
            return Err(self.missing(room_id, room_no));
        };
        if room.has(user) || room.held.iter().any(|h| h.user == user) {
            return Ok(false);
        }
        let count = room.users().len();
        if count >= room.capacity as usize {
            return Err(full(room_no, count, room.capacity));
        }
        Ok(true)
    }

    /// Why room `room_no`, not open here, cannot be joined.
    fn missing(&self, room_id: RoomId, room_no: u64) -> Refusal {
        let ours = self.ids.at_or_after(room_id.0) == room_id.0;
        let closed = (room_id.0 >= 1 && room_id.0 < self.started_at)
            || (ours && room_id.0 >= 1 && room_id.0 < self.next_room)
            || self.closed_elsewhere.contains(&room_id);
        if closed {
            (
                ErrorCode::RoomClosed,
                format!("room #{room_no} is closed: its admin left"),
            )
        } else {
            (
                ErrorCode::NoSuchRoom,
                format!("there is no room #{room_no}: check the number"),
            )
        }
    }

    pub fn join(
        &mut self,
        room_no: u64,
        user: UserId,
        conn: ConnId,
    ) -> Result<(RoomId, Joined), Refusal> {
        let room_id = RoomId(i64::try_from(room_no).unwrap_or(i64::MAX));
        if !self.rooms.contains_key(&room_id) {
            return Err(self.missing(room_id, room_no));
        }
        let room = self.rooms.get_mut(&room_id).expect("open");
        if let Some(i) = room.held.iter().position(|h| h.user == user) {
            let held = room.held.remove(i);
            self.holding -= 1;
            room.members.push((user, conn));
            let announced = held.announced;
            return Ok((room_id, Joined::Back { announced }));
        }
        let new = !room.has(user);
        let count = room.users().len();
        if new && count >= room.capacity as usize {
            return Err(full(room_no, count, room.capacity));
        }
        room.members.push((user, conn));
        Ok((room_id, if new { Joined::New } else { Joined::Again }))
    }

    /// A room left open, with nobody in it but the places of `held`,
    /// held from `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn reopen(
        &mut self,
        id: RoomId,
        name: String,
        admin: UserId,
        capacity: u32,
        last_seq: Seq,
        history: VecDeque<RoomLine>,
        held: &[UserId],
        now: Millis,
    ) {
        let key = model::room_key(&name);
        self.open_names.insert(key.clone(), id);
        self.rooms.insert(
            id,
            Room {
                name,
                key,
                admin,
                capacity,
                members: Vec::new(),
                history,
                held: (held.iter())
                    .map(|&user| Held {
                        user,
                        since: now,
                        announced: false,
                    })
                    .collect(),
                last_seq,
                committed: last_seq,
            },
        );
        self.holding += held.len();
        self.next_room = self.ids.at_or_after(self.next_room.max(id.0 + 1));
    }

    /// A room another server opened, with nobody of this server in it:
    /// false if it is known already (or its name is open here).
    pub fn learn(&mut self, id: RoomId, name: String, admin: UserId, capacity: u32) -> bool {
        let key = model::room_key(&name);
        if self.rooms.contains_key(&id) || self.open_names.contains_key(&key) {
            return false;
        }
        self.open_names.insert(key.clone(), id);
        let room = Room {
            name,
            key,
            admin,
            capacity,
            members: Vec::new(),
            history: VecDeque::new(),
            held: Vec::new(),
            last_seq: 0,
            committed: 0,
        };
        self.rooms.insert(id, room);
        self.next_room = self.ids.at_or_after(self.next_room.max(id.0 + 1));
        true
    }

    /// Every open room, in id order.
    pub fn ids(&self) -> Vec<RoomId> {
        let mut ids: Vec<RoomId> = self.rooms.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Keeps the place of a member whose last session dropped.
    pub fn hold(&mut self, room: RoomId, user: UserId, now: Millis) {
        if let Some(room) = self.rooms.get_mut(&room) {
            room.held.push(Held {
                user,
                since: now,
                announced: false,
            });
            self.holding += 1;
        }
    }

    /// Lets a held place go without its member leaving: they are back in
    /// the room through another server, or another server keeps their
    /// place again. With `since`, only the place held from then.
    pub fn unhold(&mut self, room: RoomId, user: UserId, since: Option<Millis>) -> Option<Held> {
        let room = self.rooms.get_mut(&room)?;
        let i = (room.held.iter())
            .position(|h| h.user == user && since.is_none_or(|s| s == h.since))?;
        self.holding -= 1;
        Some(room.held.remove(i))
    }

    /// When the next held place is due to be told or to expire.
    pub fn next_hold_due(&self, quiet: Millis, grace: Millis) -> Option<Millis> {
        if self.holding == 0 {
            return None;
        }
        let due = |h: &Held| match h.announced || quiet >= grace {
            true => h.since + grace,
            false => h.since + quiet,
        };
        self.rooms
            .values()
            .flat_map(|r| r.held.iter().map(due))
            .min()
    }

    /// The held places whose time has come: to be told (marked told), or
    /// over (taken out of their room).
    pub fn due_holds(
        &mut self,
        now: Millis,
        quiet: Millis,
        grace: Millis,
    ) -> Vec<(RoomId, UserId, HoldDue)> {
        let mut due = Vec::new();
        if self.holding == 0 {
            return due;
        }
        for (&id, room) in &mut self.rooms {
            room.held.retain_mut(|h| {
                if now >= h.since + grace {
                    due.push((id, h.user, HoldDue::Expired));
                    return false;
                }
                if !h.announced && now >= h.since + quiet {
                    h.announced = true;
                    due.push((id, h.user, HoldDue::Announce));
                }
                true
            });
        }
        self.holding -= due.iter().filter(|d| d.2 == HoldDue::Expired).count();
        due.sort_by_key(|&(room, user, _)| (room, user));
        due
    }

    /// Forgets a user's held places (an account that could not be stored).
    pub fn forget_held(&mut self, user: UserId) {
        for room in self.rooms.values_mut() {
            let before = room.held.len();
            room.held.retain(|h| h.user != user);
            self.holding -= before - room.held.len();
        }
    }

    /// Checks that `by` may kick `target` (the user `name` means, if any)
    /// and takes the target out; returns the target and its sessions that
    /// were in the room.
    pub fn kick(
        &mut self,
        room_id: RoomId,
        by: UserId,
        target: Option<UserId>,
        name: &str,
    ) -> Result<(UserId, Vec<ConnId>), Refusal> {
        let room = self.rooms.get_mut(&room_id).expect("the kicker's room");
        if room.admin != by {
            return Err((
                ErrorCode::NotAdmin,
                "only the room's admin can kick".to_string(),
            ));
        }
        if let Some(i) = room.held.iter().position(|h| Some(h.user) == target) {
            let held = room.held.remove(i);
            self.holding -= 1;
            return Ok((held.user, Vec::new()));
        }
        let Some(pos) = room.members.iter().position(|&(u, _)| Some(u) == target) else {
            return Err((
                ErrorCode::NoSuchUser,
                format!("{name} is not in this room: /l lists who is"),
            ));
        };
        let (target, _) = room.members[pos];
        if target == by {
            return Err((
                ErrorCode::NotAllowed,
                "you cannot kick yourself: /q leaves and closes the room".to_string(),
            ));
        }
        let conns = room
            .members
            .iter()
            .filter(|&&(u, _)| u == target)
            .map(|&(_, c)| c)
            .collect();
        room.members.retain(|&(u, _)| u != target);
        Ok((target, conns))
    }

    /// Takes one session out of a room; true if that was its user's last
    /// one there (the user has left).
    pub fn remove_session(&mut self, room: RoomId, user: UserId, conn: ConnId) -> bool {
        let Some(room) = self.rooms.get_mut(&room) else {
            return false;
        };
        room.members.retain(|&(u, c)| (u, c) != (user, conn));
        !room.has(user)
    }

    /// Takes a room out of memory, its name free again.
    pub fn close(&mut self, room: RoomId) -> Option<Room> {
        let id = room;
        let room = self.rooms.remove(&room)?;
        if self.ids.at_or_after(id.0) != id.0 {
            self.closed_elsewhere.insert(id);
        }
        self.holding -= room.held.len();
        self.open_names.remove(&room.key);
        Some(room)
    }

    /// Adds a line to the room's recent history; false if the room closed
    /// while the line was being stored (kept, but shown to nobody).
    pub fn record(&mut self, room: RoomId, line: &RoomLine) -> bool {
        let Some(room) = self.rooms.get_mut(&room) else {
            return false;
        };
        if room.history.len() == ROOM_HISTORY {
            room.history.pop_front();
        }
        room.history.push_back(line.clone());
        room.committed = room.committed.max(line.seq);
        // A shared store numbers messages itself: the next proposal
        // follows the last number it gave.
        room.last_seq = room.last_seq.max(line.seq);
        true
    }
}

/// A join refused for want of space.
pub(super) fn full(room_no: u64, count: usize, capacity: u32) -> Refusal {
    (
        ErrorCode::RoomFull,
        format!("room #{room_no} is full ({count} of {capacity}): try again later"),
    )
}
