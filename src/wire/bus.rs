//! What servers sharing a database tell each other over the bus: each
//! batch of writes one of them committed, as MessagePack, with the
//! numbers the database gave its messages. The server turns these into
//! its store's writes and back (`server::cluster`); here is only the
//! shape, so that the one place that derives serde stays `wire`.

use serde::{Deserialize, Serialize};

/// The shape of [`Batch`] this build speaks; a batch of another version
/// is refused (and the receiver reads what it missed from the database).
pub const BUS_VERSION: u32 = 1;

/// A batch one server committed, in its commit order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub version: u32,
    /// The sending server's id slot: a server skips its own batches.
    pub node: i64,
    pub changes: Vec<Change>,
}

/// One committed write (`store::Write`, field for field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Change {
    User {
        id: i64,
        name: String,
        password_hash: String,
        created: i64,
    },
    Room {
        id: i64,
        name: String,
        admin: i64,
        capacity: u32,
        created: i64,
    },
    CloseRoom {
        id: i64,
        closed: i64,
    },
    RoomMessage {
        id: i64,
        seq: u64,
        /// The sending device and its client's id for the message.
        origin: Option<(i64, u64)>,
        room: i64,
        sender: i64,
        text: String,
        sent: i64,
    },
    PrivateMessage {
        id: i64,
        seq: u64,
        origin: Option<(i64, u64)>,
        sender: i64,
        recipient: i64,
        text: String,
        sent: i64,
    },
    MarkRead {
        recipient: i64,
        sender: i64,
        upto: u64,
    },
    Device {
        id: i64,
        user: i64,
        token_hash: [u8; 32],
        created: i64,
    },
    RotateDevice {
        id: i64,
        token_hash: [u8; 32],
        previous_hash: [u8; 32],
        used: i64,
    },
    DeleteDevice {
        id: i64,
    },
    Join {
        room: i64,
        user: i64,
    },
    Leave {
        room: i64,
        user: i64,
        kicked: bool,
    },
    Away {
        room: i64,
        user: i64,
        since: Option<i64>,
    },
}

/// The batch as bytes for the bus.
pub fn encode(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec fails only on a value serde cannot express,
    // which these plain types are not.
    rmp_serde::encode::write_named(&mut out, batch).expect("a bus batch encodes");
    out
}

/// A batch from the bus, or what is wrong with the bytes.
pub fn decode(bytes: &[u8]) -> Result<Batch, String> {
    let batch: Batch =
        rmp_serde::from_slice(bytes).map_err(|e| format!("not a batch of writes: {e}"))?;
    if batch.version != BUS_VERSION {
        return Err(format!(
            "a batch of version {}, this server speaks {BUS_VERSION}",
            batch.version
        ));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_comes_back_as_it_went_and_garbage_is_refused() {
        let batch = Batch {
            version: BUS_VERSION,
            node: 3,
            changes: vec![
                Change::RoomMessage {
                    id: 7,
                    seq: 2,
                    origin: Some((1, 9)),
                    room: 4,
                    sender: 5,
                    text: "hi".into(),
                    sent: 6,
                },
                Change::DeleteDevice { id: 1 },
            ],
        };
        assert_eq!(decode(&encode(&batch)), Ok(batch.clone()));
        assert!(decode(b"\x93garbage").is_err());
        assert!(decode(&[]).is_err());
        let newer = Batch {
            version: BUS_VERSION + 1,
            ..batch
        };
        let err = decode(&encode(&newer)).unwrap_err();
        assert!(err.contains("version 2"), "{err}");
    }
}
