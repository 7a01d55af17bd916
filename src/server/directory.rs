//! Who is connected where, on this node: the user each connection is
//! logged in as and the room it is in, kept up to date by the hub's
//! [`Output::Directory`](super::hub::Output::Directory) changes and owned
//! by the event loop, which resolves each broadcast's [`Audience`] to
//! connections through it.
//!
//! A room's connections are kept as one list, in the order they entered,
//! and a broadcast is handed that list as a slice: resolving an audience
//! allocates nothing, however many members a room has. Pure and small, so
//! that a node of a larger deployment can resolve an audience published by
//! another node against its own connections the same way.

use super::hub::{Audience, Change, ConnId, ConnMap};
use crate::model::{RoomId, UserId};
use std::collections::HashMap;

#[derive(Default)]
pub struct Directory {
    /// Every logged-in connection: its user and its room.
    entries: ConnMap<Entry>,
    by_user: HashMap<UserId, Vec<ConnId>>,
    by_room: HashMap<RoomId, Vec<ConnId>>,
}

struct Entry {
    user: UserId,
    room: Option<RoomId>,
}

impl Directory {
    /// Records a change the hub made.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Online { conn, user } => {
                self.forget(conn);
                self.entries.insert(conn, Entry { user, room: None });
                self.by_user.entry(user).or_default().push(conn);
            }
            Change::Offline { conn } => self.forget(conn),
            Change::Entered { conn, room } => {
                self.leave(conn);
                if let Some(entry) = self.entries.get_mut(&conn) {
                    entry.room = Some(room);
                    self.by_room.entry(room).or_default().push(conn);
                }
            }
            Change::Left { conn } => self.leave(conn),
        }
    }

    /// The connections an audience names, each once (a connection is one
    /// user's and in one room at most).
    pub fn resolve(&self, audience: &Audience) -> Resolved<'_> {
        match audience {
            Audience::Room(room) => Resolved {
                first: self.room(*room).iter(),
                second: [].iter(),
            },
            Audience::Users([a, b]) => Resolved {
                first: self.user(*a).iter(),
                second: if a == b { &[] } else { self.user(*b) }.iter(),
            },
        }
    }

    /// The connections in the room, in the order they entered it.
    pub fn room(&self, room: RoomId) -> &[ConnId] {
        self.by_room.get(&room).map_or(&[], Vec::as_slice)
    }

    /// The connections the user is logged in on.
    pub fn user(&self, user: UserId) -> &[ConnId] {
        self.by_user.get(&user).map_or(&[], Vec::as_slice)
    }

    /// Logged-in connections.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes the connection out of its room, if it is in one.
    fn leave(&mut self, conn: ConnId) {
        let Some(room) = self.entries.get_mut(&conn).and_then(|e| e.room.take()) else {
            return;
        };
        remove(&mut self.by_room, room, conn);
    }

    /// Forgets the connection altogether.
    fn forget(&mut self, conn: ConnId) {
        self.leave(conn);
        if let Some(entry) = self.entries.remove(&conn) {
            remove(&mut self.by_user, entry.user, conn);
        }
    }
}

/// Takes `conn` out of `key`'s list, keeping the order of the rest (a
/// room's members hear things in the order they joined), and drops the
/// list once it is empty.
fn remove<K: std::hash::Hash + Eq>(lists: &mut HashMap<K, Vec<ConnId>>, key: K, conn: ConnId) {
    if let Some(list) = lists.get_mut(&key) {
        if let Some(pos) = list.iter().position(|&c| c == conn) {
            list.remove(pos);
        }
        if list.is_empty() {
            lists.remove(&key);
        }
    }
}

/// The connections of an audience, borrowed from the directory.
pub struct Resolved<'a> {
    first: std::slice::Iter<'a, ConnId>,
    second: std::slice::Iter<'a, ConnId>,
}

impl Iterator for Resolved<'_> {
    type Item = ConnId;

    fn next(&mut self) -> Option<ConnId> {
        self.first.next().or_else(|| self.second.next()).copied()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.first.len() + self.second.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Resolved<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const LOBBY: RoomId = RoomId(7);

    fn online(d: &mut Directory, conn: u64, user: UserId) -> ConnId {
        let conn = ConnId(conn);
        d.apply(Change::Online { conn, user });
        conn
    }

    fn resolved(d: &Directory, audience: Audience) -> Vec<ConnId> {
        d.resolve(&audience).collect()
    }

    #[test]
    fn a_room_resolves_to_its_members_in_the_order_they_entered() {
        let mut d = Directory::default();
        let (a, b, c) = (
            online(&mut d, 1, ANN),
            online(&mut d, 2, BOB),
            online(&mut d, 3, UserId(3)),
        );
        for conn in [b, a, c] {
            d.apply(Change::Entered { conn, room: LOBBY });
        }
        assert_eq!(resolved(&d, Audience::Room(LOBBY)), [b, a, c]);
        d.apply(Change::Left { conn: a });
        assert_eq!(resolved(&d, Audience::Room(LOBBY)), [b, c]);
        // Going offline takes a connection out of its room as well.
        d.apply(Change::Offline { conn: b });
        assert_eq!(resolved(&d, Audience::Room(LOBBY)), [c]);
        d.apply(Change::Left { conn: c });
        assert!(resolved(&d, Audience::Room(LOBBY)).is_empty());
        assert!(d.by_room.is_empty(), "an empty room's list is dropped");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn users_resolve_to_every_connection_of_either_once() {
        let mut d = Directory::default();
        let a1 = online(&mut d, 1, ANN);
        let b = online(&mut d, 2, BOB);
        let a2 = online(&mut d, 3, ANN);
        assert_eq!(resolved(&d, Audience::Users([ANN, BOB])), [a1, a2, b]);
        assert_eq!(resolved(&d, Audience::Users([ANN, ANN])), [a1, a2]);
        assert_eq!(d.resolve(&Audience::Users([BOB, ANN])).len(), 3);
        d.apply(Change::Offline { conn: a1 });
        assert_eq!(resolved(&d, Audience::Users([ANN, BOB])), [a2, b]);
        assert!(resolved(&d, Audience::Users([UserId(9), UserId(8)])).is_empty());
    }

    #[test]
    fn entering_another_room_leaves_the_first_and_a_new_login_starts_afresh() {
        let mut d = Directory::default();
        let a = online(&mut d, 1, ANN);
        d.apply(Change::Entered {
            conn: a,
            room: LOBBY,
        });
        d.apply(Change::Entered {
            conn: a,
            room: RoomId(8),
        });
        assert!(d.room(LOBBY).is_empty());
        assert_eq!(d.room(RoomId(8)), [a]);
        // The same connection logged in again (after a logout the hub
        // reports first, or not): nothing of the old session is left.
        d.apply(Change::Online { conn: a, user: BOB });
        assert!(d.room(RoomId(8)).is_empty());
        assert!(d.user(ANN).is_empty());
        assert_eq!(d.user(BOB), [a]);
        // Changes for connections it does not know change nothing.
        d.apply(Change::Entered {
            conn: ConnId(99),
            room: LOBBY,
        });
        d.apply(Change::Left { conn: ConnId(99) });
        d.apply(Change::Offline { conn: ConnId(99) });
        assert!(d.room(LOBBY).is_empty());
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_room_is_handed_out_as_one_list_without_copying() {
        let mut d = Directory::default();
        for i in 1..=1000 {
            let conn = online(&mut d, i, UserId(i as i64));
            d.apply(Change::Entered { conn, room: LOBBY });
        }
        let first = d.room(LOBBY).as_ptr();
        let Resolved { first: members, .. } = d.resolve(&Audience::Room(LOBBY));
        assert_eq!(members.as_slice().as_ptr(), first, "the room's own list");
        assert_eq!(d.resolve(&Audience::Room(LOBBY)).len(), 1000);
    }
}
