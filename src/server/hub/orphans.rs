//! Places in rooms that no running server keeps, on a database servers
//! share: a server killed for good (its machine lost, and no server
//! started again in its id slot) leaves its members' places, and the
//! admins' of its rooms, with nobody to let them go after the grace
//! period. Every server asks the store for them now and then; the store
//! answers only the running server with the lowest id slot
//! (`Store::orphans`). A place listed for [`Limits::orphan_settle`] is
//! held as this server's own dropped members' places are: the room is
//! told they are away, and when the grace period ends they leave, or the
//! room closes if it was the admin's. A place kept again before then (its
//! member back in the room through some server, or their server started
//! again) is let go without a word.
//!
//! The wait before holding covers a server that is running but lost its
//! database connection for a while (the database restarted): it takes its
//! slot's lock again at its next store call, and it makes one at least
//! every [`ORPHAN_CHECK`], when it asks this same question.
//!
//! [`Limits::orphan_settle`]: crate::server::limits::Limits::orphan_settle
//! [`ORPHAN_CHECK`]: crate::server::limits::ORPHAN_CHECK

use super::{Hub, Level, Output, StoreJob};
use crate::model::{Millis, RoomId, UserId};
use std::collections::{HashMap, HashSet};

#[derive(Default)]
pub(super) struct Orphans {
    /// The places the store has listed at every answer since `since`,
    /// and when this server began to hold each one it holds.
    listed: HashMap<(RoomId, UserId), Listed>,
    /// When the store is next asked.
    next_check: Millis,
    /// Asked, and not yet answered.
    asking: bool,
    /// The last answer was an error (told once, not at every check).
    failing: bool,
}

#[derive(Clone, Copy)]
struct Listed {
    since: Millis,
    held: Option<Millis>,
}

impl Orphans {
    /// When the hub wants to ask the store next, if it shares one.
    pub fn next_due(&self, shared: bool) -> Option<Millis> {
        (shared && !self.asking).then_some(self.next_check)
    }
}

impl Hub {
    /// Asks the store for places nobody keeps, if it is time.
    pub(super) fn orphans_due(&mut self, now: Millis) {
        if self
            .orphans
            .next_due(self.shared)
            .is_some_and(|at| now >= at)
        {
            self.orphans.asking = true;
            self.out.push_back(Output::Store(StoreJob::Orphans));
        }
    }

    /// The store's answer: places it no longer lists are let go, those
    /// listed long enough held from now.
    pub(super) fn orphaned(&mut self, now: Millis, found: Result<Vec<(RoomId, UserId)>, String>) {
        self.orphans.asking = false;
        self.orphans.next_check = now + self.limits.orphan_check();
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                if !std::mem::replace(&mut self.orphans.failing, true) {
                    let line = format!("could not look for places no running server keeps: {e}");
                    self.log(Level::Warn, line);
                }
                return;
            }
        };
        self.orphans.failing = false;
        let found: HashSet<(RoomId, UserId)> = found.into_iter().collect();
        let mut listed = std::mem::take(&mut self.orphans.listed);
        listed.retain(|&(room, user), entry| {
            let held = |r: &super::rooms::Room, since| {
                r.held.iter().any(|h| h.user == user && h.since == since)
            };
            match entry.held {
                // Kept again: let go.
                Some(since) if !found.contains(&(room, user)) => {
                    self.rooms.unhold(room, user, Some(since));
                    false
                }
                // Over (gone, or back in the room here): forgotten.
                Some(since) => self.rooms.get(room).is_some_and(|r| held(r, since)),
                None => found.contains(&(room, user)),
            }
        });
        for (room_id, user) in found {
            let entry = listed.entry((room_id, user)).or_insert(Listed {
                since: now,
                held: None,
            });
            if entry.held.is_some() || now < entry.since + self.limits.orphan_settle {
                continue;
            }
            let Some(room) = self.rooms.get(room_id) else {
                continue;
            };
            if room.users().contains(&user) || !self.accounts.exists(user) {
                continue;
            }
            self.rooms.hold(room_id, user, now);
            entry.held = Some(now);
            let name = self.accounts.name(user).to_string();
            self.log(
                Level::Info,
                format!(
                    "{name} keeps a place in room #{room_id} for the grace period: \
                     no running server has their session"
                ),
            );
        }
        self.orphans.listed = listed;
    }
}
