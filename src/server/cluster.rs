//! Servers sharing one database, as this server sees them: each batch it
//! commits goes out on the bus as the store's writes (with the numbers
//! the database gave its messages), and each batch another server
//! committed comes in, checked, for the hub to apply
//! (`Input::Replicated`). The bus itself is `bus`; the shape on it,
//! `wire::bus`.

use super::bus::{Bus, BusEvent};
use super::hub::Level;
use crate::model::{
    DeviceId, MAX_CAPACITY, MAX_TEXT_BYTES, MIN_CAPACITY, MessageId, RoomId, UserId,
};
use crate::store::{Origin, Write};
use crate::wire::bus::{self, BUS_VERSION, Batch, Change};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Redis channel every server publishes its commits on and listens to.
pub const CHANNEL: &str = "chatapp:commits";

/// While the bus is down, how often a server reads from the database what
/// the others committed meanwhile: their messages reach its users late,
/// but they reach them.
pub const READ_WHILE_DOWN: Duration = Duration::from_secs(2);

/// How long a starting server waits for the bus to subscribe.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(3);

/// This server's part of a deployment sharing one database.
pub struct Cluster {
    pub bus: Bus,
    /// This server's id slot, which its batches carry.
    pub node: i64,
    /// While the bus is down: when the database is next read for what
    /// the other servers committed.
    pub next_read: Option<Instant>,
}

/// What the loop should do about something the bus said.
#[derive(Debug, PartialEq)]
pub enum Heard {
    /// Another server's batch, for the hub.
    Writes(Vec<Write>),
    /// Read every open conversation from where it stopped.
    CatchUp,
    /// Nothing (this server's own batch), or only a line for the log.
    Nothing(Option<(Level, String)>),
}

impl Cluster {
    pub fn new(bus: Bus, node: i64) -> Cluster {
        Cluster {
            bus,
            node,
            next_read: None,
        }
    }

    /// What the loop does about `event`.
    pub fn heard(&mut self, event: BusEvent, now: Instant) -> Heard {
        match event {
            BusEvent::Message { payload, .. } => match decode(self.node, &payload) {
                Ok(Some(writes)) => Heard::Writes(writes),
                Ok(None) => Heard::Nothing(None),
                Err(e) => Heard::Nothing(Some((Level::Warn, format!("bus: ignored {e}")))),
            },
            BusEvent::Up => {
                self.next_read = None;
                Heard::CatchUp
            }
            BusEvent::Down { reason } => {
                self.next_read = Some(now + READ_WHILE_DOWN);
                let line = format!(
                    "bus: {reason}; what other servers store reaches this one's users late, \
                     read from the database every {} s, until Redis is back",
                    READ_WHILE_DOWN.as_secs()
                );
                Heard::Nothing(Some((Level::Warn, line)))
            }
        }
    }

    /// Waits (up to [`SUBSCRIBE_WAIT`]) until the bus is subscribed, or
    /// has said it cannot reach Redis: then the server reads the database
    /// from time to time until it can. Redis being down is no reason not
    /// to start.
    pub fn wait_subscribed(&mut self, now: Instant) {
        match self.bus.wait(SUBSCRIBE_WAIT) {
            Some(BusEvent::Up) => {}
            Some(BusEvent::Down { reason }) => {
                if let Heard::Nothing(Some((level, line))) =
                    self.heard(BusEvent::Down { reason }, now)
                {
                    super::log::emit(level, &line);
                }
            }
            _ => self.next_read = Some(now + READ_WHILE_DOWN),
        }
    }

    /// Whether the database is due to be read (the bus being down).
    pub fn read_due(&mut self, now: Instant) -> bool {
        match self.next_read {
            Some(at) if at <= now => {
                self.next_read = Some(now + READ_WHILE_DOWN);
                true
            }
            _ => false,
        }
    }
}

/// A committed batch of server `node` (its id slot), as the bus carries it.
pub fn encode(node: i64, writes: &[Write]) -> Vec<u8> {
    let changes = writes.iter().map(change).collect();
    bus::encode(&Batch {
        version: BUS_VERSION,
        node,
        changes,
    })
}

/// A batch from the bus: `None` if it is this server's own (`node`), else
/// its writes, or what is wrong with it. A batch with one write that makes
/// no sense is refused whole.
pub fn decode(node: i64, bytes: &[u8]) -> Result<Option<Vec<Write>>, String> {
    let batch = bus::decode(bytes)?;
    if batch.node == node {
        return Ok(None);
    }
    let from = batch.node;
    let writes = (batch.changes.into_iter())
        .map(write)
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| format!("a batch from the server in slot {from}: {e}"))?;
    Ok(Some(writes))
}

fn change(write: &Write) -> Change {
    let origin = |o: &Option<Origin>| o.map(|o| (o.device.0, o.client_id));
    match write.clone() {
        Write::User {
            id,
            name,
            password_hash,
            created,
        } => Change::User {
            id: id.0,
            name,
            password_hash,
            created,
        },
        Write::Room {
            id,
            name,
            admin,
            capacity,
            created,
        } => Change::Room {
            id: id.0,
            name,
            admin: admin.0,
            capacity,
            created,
        },
        Write::CloseRoom { id, closed } => Change::CloseRoom { id: id.0, closed },
        Write::RoomMessage {
            id,
            seq,
            origin: o,
            room,
            sender,
            text,
            sent,
        } => Change::RoomMessage {
            id: id.0,
            seq,
            origin: origin(&o),
            room: room.0,
            sender: sender.0,
            text: text.to_string(),
            sent,
        },
        Write::PrivateMessage {
            id,
            seq,
            origin: o,
            sender,
            recipient,
            text,
            sent,
        } => Change::PrivateMessage {
            id: id.0,
            seq,
            origin: origin(&o),
            sender: sender.0,
            recipient: recipient.0,
            text: text.to_string(),
            sent,
        },
        Write::MarkRead {
            recipient,
            sender,
            upto,
        } => Change::MarkRead {
            recipient: recipient.0,
            sender: sender.0,
            upto,
        },
        Write::Device {
            id,
            user,
            token_hash,
            created,
        } => Change::Device {
            id: id.0,
            user: user.0,
            token_hash,
            created,
        },
        Write::RotateDevice {
            id,
            token_hash,
            previous_hash,
            used,
        } => Change::RotateDevice {
            id: id.0,
            token_hash,
            previous_hash,
            used,
        },
        Write::DeleteDevice { id } => Change::DeleteDevice { id: id.0 },
        Write::Join { room, user } => Change::Join {
            room: room.0,
            user: user.0,
        },
        Write::Leave { room, user, kicked } => Change::Leave {
            room: room.0,
            user: user.0,
            kicked,
        },
        Write::Away { room, user, since } => Change::Away {
            room: room.0,
            user: user.0,
            since,
        },
    }
}

/// A change as the store's write, if it makes sense: ids are positive,
/// numbers start at 1, texts and capacities are within the product's
/// bounds.
fn write(change: Change) -> Result<Write, String> {
    let id = |n: i64| {
        if n > 0 {
            Ok(n)
        } else {
            Err(format!("an id of {n}"))
        }
    };
    let seq = |n: u64| {
        if n > 0 {
            Ok(n)
        } else {
            Err("a message numbered 0".to_string())
        }
    };
    let text = |t: String| {
        if t.len() <= MAX_TEXT_BYTES {
            Ok(Arc::<str>::from(t))
        } else {
            Err(format!("a text of {} bytes", t.len()))
        }
    };
    let origin = |o: Option<(i64, u64)>| -> Result<Option<Origin>, String> {
        o.map(|(device, client_id)| {
            Ok(Origin {
                device: DeviceId(id(device)?),
                client_id,
            })
        })
        .transpose()
    };
    Ok(match change {
        Change::User {
            id: n,
            name,
            password_hash,
            created,
        } => {
            crate::model::check_user_name(&name).map_err(|e| format!("user name {name:?}: {e}"))?;
            Write::User {
                id: UserId(id(n)?),
                name,
                password_hash,
                created,
            }
        }
        Change::Room {
            id: n,
            name,
            admin,
            capacity,
            created,
        } => {
            crate::model::check_room_name(&name).map_err(|e| format!("room name {name:?}: {e}"))?;
            if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
                return Err(format!("a room of capacity {capacity}"));
            }
            Write::Room {
                id: RoomId(id(n)?),
                name,
                admin: UserId(id(admin)?),
                capacity,
                created,
            }
        }
        Change::CloseRoom { id: n, closed } => Write::CloseRoom {
            id: RoomId(id(n)?),
            closed,
        },
        Change::RoomMessage {
            id: n,
            seq: s,
            origin: o,
            room,
            sender,
            text: t,
            sent,
        } => Write::RoomMessage {
            id: MessageId(id(n)?),
            seq: seq(s)?,
            origin: origin(o)?,
            room: RoomId(id(room)?),
            sender: UserId(id(sender)?),
            text: text(t)?,
            sent,
        },
        Change::PrivateMessage {
            id: n,
            seq: s,
            origin: o,
            sender,
            recipient,
            text: t,
            sent,
        } => Write::PrivateMessage {
            id: MessageId(id(n)?),
            seq: seq(s)?,
            origin: origin(o)?,
            sender: UserId(id(sender)?),
            recipient: UserId(id(recipient)?),
            text: text(t)?,
            sent,
        },
        Change::MarkRead {
            recipient,
            sender,
            upto,
        } => Write::MarkRead {
            recipient: UserId(id(recipient)?),
            sender: UserId(id(sender)?),
            upto,
        },
        Change::Device {
            id: n,
            user,
            token_hash,
            created,
        } => Write::Device {
            id: DeviceId(id(n)?),
            user: UserId(id(user)?),
            token_hash,
            created,
        },
        Change::RotateDevice {
            id: n,
            token_hash,
            previous_hash,
            used,
        } => Write::RotateDevice {
            id: DeviceId(id(n)?),
            token_hash,
            previous_hash,
            used,
        },
        Change::DeleteDevice { id: n } => Write::DeleteDevice {
            id: DeviceId(id(n)?),
        },
        Change::Join { room, user } => Write::Join {
            room: RoomId(id(room)?),
            user: UserId(id(user)?),
        },
        Change::Leave { room, user, kicked } => Write::Leave {
            room: RoomId(id(room)?),
            user: UserId(id(user)?),
            kicked,
        },
        Change::Away { room, user, since } => Write::Away {
            room: RoomId(id(room)?),
            user: UserId(id(user)?),
            since,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room: i64, seq: u64, text: &str) -> Write {
        Write::RoomMessage {
            id: MessageId(9),
            seq,
            origin: Some(Origin {
                device: DeviceId(2),
                client_id: 5,
            }),
            room: RoomId(room),
            sender: UserId(1),
            text: text.into(),
            sent: 3,
        }
    }

    #[test]
    fn a_batch_crosses_to_other_servers_and_not_back_to_its_own() {
        let writes = vec![
            Write::User {
                id: UserId(1),
                name: "ann".into(),
                password_hash: "h".into(),
                created: 1,
            },
            message(4, 1, "hi"),
            Write::DeleteDevice { id: DeviceId(2) },
        ];
        let bytes = encode(3, &writes);
        assert_eq!(decode(5, &bytes), Ok(Some(writes)));
        assert_eq!(decode(3, &bytes), Ok(None), "its own");
    }

    #[test]
    fn a_batch_with_a_write_that_makes_no_sense_is_refused_whole() {
        for bad in [
            message(0, 1, "no room"),
            message(4, 0, "numbered 0"),
            message(4, 1, &"x".repeat(MAX_TEXT_BYTES + 1)),
            Write::Room {
                id: RoomId(1),
                name: "big".into(),
                admin: UserId(1),
                capacity: MAX_CAPACITY + 1,
                created: 1,
            },
            Write::User {
                id: UserId(2),
                name: "no spaces allowed".into(),
                password_hash: "h".into(),
                created: 1,
            },
        ] {
            let bytes = encode(3, &[message(4, 1, "fine"), bad.clone()]);
            assert!(decode(5, &bytes).is_err(), "{bad:?}");
        }
        assert!(decode(5, b"not msgpack at all").is_err());
    }
}
