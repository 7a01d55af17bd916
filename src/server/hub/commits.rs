//! The road to the store and back: sequence numbers for writes, what waits
//! for a commit before it may be seen ([`Deferred`]), and how many bytes
//! of messages wait in all and by room (what the event loop's
//! backpressure reads). What a commit releases is carried out by the hub
//! root.

use super::effects::Caller;
use crate::model::{DeviceId, RoomId, Seq, UserId};
use crate::wire::msg::{PrivateLine, Reply, RoomLine};
use std::collections::{HashMap, VecDeque};

/// What waits for a commit before it may be seen.
pub(super) enum Deferred {
    /// A new account and its first device: logged in if stored, undone
    /// if not.
    Account {
        caller: Caller,
        user: UserId,
        device: DeviceId,
        token: String,
    },
    /// A session a login or a resume began, waiting for its device (new,
    /// or holding a new token) to be stored: `reply` (`logged_in` with the
    /// token) if it is, the session undone if not.
    Session {
        caller: Caller,
        user: UserId,
        device: DeviceId,
        reply: Reply,
    },
    /// A new room: announced to its creator if stored, closed if not.
    RoomCreated {
        caller: Caller,
        room: RoomId,
        reply: Reply,
    },
    Reply {
        caller: Caller,
        reply: Reply,
    },
    /// A join the shared database decides (`taken` once it said yes).
    Join {
        caller: Caller,
        user: UserId,
        room_no: u64,
        taken: bool,
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
    /// A message to deliver takes the number the store kept it under.
    pub fn renumber(&mut self, number: Seq) {
        match self {
            Deferred::Room { line, .. } => line.seq = number,
            Deferred::Private { line, .. } => line.seq = number,
            Deferred::Join { taken, .. } => *taken = number > 0,
            _ => {}
        }
    }

    /// What it weighs in [`Commits::uncommitted`].
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

pub(super) struct Commits {
    next_seq: u64,
    /// Every write up to this one is committed (or failed).
    reported: u64,
    waiting: VecDeque<(u64, Deferred)>,
    /// What `waiting` will deliver once committed, in bytes, in all and
    /// by room.
    uncommitted: usize,
    by_room: HashMap<RoomId, usize>,
}

impl Default for Commits {
    fn default() -> Commits {
        Commits {
            next_seq: 1,
            reported: 0,
            waiting: VecDeque::new(),
            uncommitted: 0,
            by_room: HashMap::new(),
        }
    }
}

impl Commits {
    /// The number of the next write; the store commits them in order.
    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Holds `deferred` back until `seq` is committed.
    pub fn defer(&mut self, seq: u64, deferred: Deferred) {
        self.count(&deferred, true);
        self.waiting.push_back((seq, deferred));
    }

    /// Whether every write handed out so far is committed (or failed).
    pub fn all_reported(&self) -> bool {
        self.reported + 1 >= self.next_seq
    }

    /// Holds `deferred` back until every write handed out so far is
    /// committed.
    pub fn defer_behind_all(&mut self, deferred: Deferred) {
        self.defer(self.next_seq - 1, deferred);
    }

    /// The next item waiting at or below `seq`, in order, with the number
    /// of the write it waited for, if any.
    pub fn release(&mut self, seq: u64) -> Option<(u64, Deferred)> {
        self.reported = self.reported.max(seq);
        if self.waiting.front().is_none_or(|(s, _)| *s > seq) {
            return None;
        }
        let (write, deferred) = self.waiting.pop_front()?;
        self.count(&deferred, false);
        Some((write, deferred))
    }

    fn count(&mut self, deferred: &Deferred, add: bool) {
        let size = deferred.size();
        let change = |n: usize| if add { n + size } else { n - size };
        self.uncommitted = change(self.uncommitted);
        if let Deferred::Room { room, .. } = deferred {
            match change(self.room_backlog(*room)) {
                0 => self.by_room.remove(room),
                n => self.by_room.insert(*room, n),
            };
        }
    }

    /// Bytes of messages waiting for the store, in all.
    pub fn uncommitted(&self) -> usize {
        self.uncommitted
    }

    /// Bytes of the room's messages waiting for the store.
    pub fn room_backlog(&self, room: RoomId) -> usize {
        self.by_room.get(&room).copied().unwrap_or(0)
    }
}
