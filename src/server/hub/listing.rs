//! Who is in a room, on a database servers share: each server knows the
//! members connected to it, the database knows them all
//! (`room_members`). A reply that names a room's members (entering it,
//! or `/l`) waits for the store to say who is in it through the other
//! servers ([`Query::Members`]); it lists this server's members first, in
//! the order they joined, then the others. A user let into a room enters
//! it here only when that answer comes, so the history they are shown
//! and the messages they receive after it meet without a gap.

use super::{Caller, Hub, Level, Output, Query, StoreJob};
use crate::model::{RoomId, UserId};
use crate::wire::msg::Reply;

/// A reply waiting for a room's members.
#[derive(Debug)]
pub(super) enum Listing {
    /// `/l`.
    Members,
    /// A user the database let in, to enter the room.
    Let { user: UserId, room_no: u64 },
    /// A user in the room already (another session, or a held place),
    /// to enter it.
    Join { user: UserId, room_no: u64 },
}

impl Hub {
    /// Asks the store who is in `room`, for `listing`.
    pub(super) fn ask_members(&mut self, caller: Caller, room: RoomId, listing: Listing) {
        self.listing.insert(caller, listing);
        let query = Query::Members { room };
        self.out
            .push_back(Output::Store(StoreJob::Query { caller, query }));
    }

    /// The store said who is in the room (or could not: then the reply
    /// names only this server's members).
    pub(super) fn listed(
        &mut self,
        caller: Caller,
        listing: Listing,
        found: Result<Vec<String>, String>,
    ) {
        let names = found.unwrap_or_else(|e| {
            self.log(Level::Warn, format!("could not list a room's members: {e}"));
            Vec::new()
        });
        match listing {
            Listing::Let { user, room_no } => {
                self.enter(caller, user, room_no, (true, true), names);
            }
            Listing::Join { user, room_no } => {
                let reply = match self.join_now(caller.conn, user, room_no) {
                    Ok(Some(reply)) => with_names(reply, names),
                    Ok(None) => return,
                    Err((code, message)) => Reply::Error { code, message },
                };
                self.reply(caller, reply);
            }
            Listing::Members => {
                let members = match self.conns.state(caller.conn) {
                    Some(super::connections::State::Online {
                        room: Some(room), ..
                    }) => self.member_names(room),
                    // Left the room meanwhile.
                    _ => Vec::new(),
                };
                let reply = Reply::Members { members };
                self.reply(caller, with_names(reply, names));
            }
        }
    }
}

/// `reply`, if it names a room's members, with those of `names` it does
/// not name yet after them.
pub(super) fn with_names(mut reply: Reply, names: Vec<String>) -> Reply {
    if let Reply::Room { members, .. } | Reply::Members { members } = &mut reply {
        for name in names {
            if !members.contains(&name) {
                members.push(name);
            }
        }
    }
    reply
}
