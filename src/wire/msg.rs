//! The messages inside the channel and their MessagePack encoding.
//!
//! A client's frame carries one MessagePack map, a [`ClientFrame`] (a
//! request and the id it chose). A server's frame carries one or more
//! [`ServerFrame`]s back to back (a reply carrying the id of the request it
//! answers, or an event it was not asked for): the server packs what it has
//! for a client in one turn of its loop, so a busy room costs one seal per
//! member and turn, not one per message; [`values`] splits them, and
//! [`decode_each`] decodes them. Variants are maps tagged by a `"type"` key
//! with snake_case names; `docs/PROTOCOL.md` lists them all.
//!
//! This is the only module that derives serde: the hub and store work with
//! these types or their own, never with bytes.

use super::WireError;
use super::frame::MAX_PLAINTEXT;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::sync::Arc;

/// Deepest nesting a decoder accepts. Our messages nest four levels at
/// most; the limit keeps a hostile frame from recursing the stack away.
pub const MAX_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in the reply.
    pub id: u32,
    pub req: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Register {
        name: String,
        password: String,
    },
    Login {
        name: String,
        password: String,
    },
    Logout,
    CreateRoom {
        name: String,
        capacity: u32,
    },
    JoinRoom {
        room: u64,
    },
    LeaveRoom,
    Say {
        text: String,
    },
    Members,
    Kick {
        name: String,
    },
    /// Opens the dialogue with a user: its history, marked read.
    OpenDialogue {
        with: String,
    },
    SendPrivate {
        to: String,
        text: String,
    },
    /// Marks the private messages from `with` read (while a dialogue is open).
    MarkRead {
        with: String,
    },
    Inbox,
    Ping,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Reply { id: u32, result: Reply },
    Event { event: Event },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// Done; for `say` and `send_private` it means stored.
    Ok,
    Error {
        code: ErrorCode,
        message: String,
    },
    LoggedIn {
        name: String,
        unread: u32,
    },
    Room {
        room: RoomInfo,
        members: Vec<String>,
        history: Vec<RoomLine>,
    },
    Members {
        members: Vec<String>,
    },
    Dialogue {
        with: String,
        history: Vec<PrivateLine>,
    },
    Inbox {
        conversations: Vec<Conversation>,
    },
    Pong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not allowed in the current state (not logged in, not in a room, ...).
    NotAllowed,
    InvalidName,
    NameTaken,
    WeakPassword,
    BadCredentials,
    AlreadyLoggedIn,
    NoSuchRoom,
    RoomFull,
    RoomClosed,
    RoomNameTaken,
    InvalidCapacity,
    NotAdmin,
    NoSuchUser,
    NotMember,
    TooLong,
    Empty,
    RateLimited,
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub id: u64,
    pub name: String,
    pub admin: String,
    pub capacity: u32,
}

/// A line of a room. Its strings are shared, not copied: the server hands
/// one line to the store, the room's history and every member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomLine {
    pub id: u64,
    pub from: Arc<str>,
    pub text: Arc<str>,
    /// Unix milliseconds.
    pub time: i64,
}

/// A private message; its strings are shared like [`RoomLine`]'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivateLine {
    pub id: u64,
    pub from: Arc<str>,
    pub to: Arc<str>,
    pub text: Arc<str>,
    pub time: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub with: String,
    pub last_from: String,
    /// The last message, cut to a preview.
    pub last_text: String,
    pub last_time: i64,
    pub unread: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RoomMessage {
        room: u64,
        #[serde(flatten)]
        line: RoomLine,
    },
    Joined {
        room: u64,
        name: String,
    },
    Left {
        room: u64,
        name: String,
        reason: LeaveReason,
    },
    /// To the member who was kicked; they are no longer in the room.
    Kicked {
        room: u64,
        by: String,
    },
    /// The room closed; every member is out of it.
    RoomClosed {
        room: u64,
        reason: LeaveReason,
    },
    PrivateMessage {
        #[serde(flatten)]
        line: PrivateLine,
    },
    /// The server has not heard from this client for a while; any request
    /// (a `ping` will do) shows it is still there.
    Ping,
    /// Sent before the server closes the connection, saying why.
    Bye {
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Disconnected,
    Kicked,
    /// The room closed because its admin left (used in `room_closed`).
    AdminLeft,
    /// The room closed because its admin's connection dropped.
    AdminDisconnected,
    /// The server is shutting down.
    Shutdown,
    /// The server could not store the room (a disk failure).
    StoreFailed,
}

/// Encodes a message as a MessagePack map.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// Encodes into `out` (cleared first), reusing its allocation.
pub fn encode_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    rmp_serde::encode::write_named(out, msg).map_err(|e| WireError::Decode(e.to_string()))?;
    if out.len() > MAX_PLAINTEXT {
        return Err(WireError::TooLarge(out.len()));
    }
    Ok(())
}

/// Decodes exactly one message. Refuses trailing bytes and nesting past
/// [`MAX_DEPTH`]; string and array lengths are checked against the bytes
/// actually present before anything is allocated for them.
pub fn decode<T: DeserializeOwned>(mut bytes: &[u8]) -> Result<T, WireError> {
    let mut de = rmp_serde::Deserializer::new(&mut bytes);
    de.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut de).map_err(|e| WireError::Decode(e.to_string()))?;
    drop(de);
    if !bytes.is_empty() {
        return Err(WireError::Decode(format!(
            "{} bytes after the end of the message",
            bytes.len()
        )));
    }
    Ok(value)
}

/// The MessagePack values packed back to back in one frame's plaintext,
/// each to be decoded with [`decode`]. Each is found by reading its type
/// bytes and lengths alone (nesting no deeper than [`MAX_DEPTH`]), so
/// nothing is allocated or decoded twice; a value cut short or malformed
/// ends the iteration with an error.
pub fn values(bytes: &[u8]) -> Values<'_> {
    Values { rest: bytes }
}

/// The messages packed in one frame's plaintext, each split out with
/// [`values`] and decoded with [`decode`]: an error ends with the first
/// message that is cut short, malformed, or not a `T`.
pub fn decode_each<T: DeserializeOwned>(
    bytes: &[u8],
) -> impl Iterator<Item = Result<T, WireError>> + '_ {
    values(bytes).map(|value| value.and_then(decode))
}

pub struct Values<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Values<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(len) = value_len(self.rest, MAX_DEPTH) else {
            self.rest = &[];
            return Some(Err(WireError::Decode(
                "a message in the frame is cut short or malformed".into(),
            )));
        };
        let (value, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(Ok(value))
    }
}

/// The length of the MessagePack value that `bytes` starts with, from its
/// type byte and lengths (see the MessagePack specification's formats);
/// `None` if it is cut short, malformed, or nests deeper than `depth`.
fn value_len(bytes: &[u8], depth: usize) -> Option<usize> {
    let &marker = bytes.first()?;
    // A big-endian length of `n` bytes after the type byte.
    let len = |n: usize| -> Option<usize> {
        let field = bytes.get(1..1 + n)?;
        Some(field.iter().fold(0, |acc, &b| acc << 8 | usize::from(b)))
    };
    // (bytes before the payload, payload bytes, values nested inside)
    let (head, body, items) = match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0, 0),
        0x80..=0x8f => (1, 0, 2 * usize::from(marker & 0x0f)),
        0x90..=0x9f => (1, 0, usize::from(marker & 0x0f)),
        0xa0..=0xbf => (1, usize::from(marker & 0x1f), 0),
        0xc4 | 0xd9 => (2, len(1)?, 0),
        0xc5 | 0xda => (3, len(2)?, 0),
        0xc6 | 0xdb => (5, len(4)?, 0),
        0xc7 => (3, len(1)?, 0),
        0xc8 => (4, len(2)?, 0),
        0xc9 => (6, len(4)?, 0),
        0xcc | 0xd0 => (1, 1, 0),
        0xcd | 0xd1 => (1, 2, 0),
        0xca | 0xce | 0xd2 => (1, 4, 0),
        0xcb | 0xcf | 0xd3 => (1, 8, 0),
        0xd4 => (2, 1, 0),
        0xd5 => (2, 2, 0),
        0xd6 => (2, 4, 0),
        0xd7 => (2, 8, 0),
        0xd8 => (2, 16, 0),
        0xdc => (3, 0, len(2)?),
        0xdd => (5, 0, len(4)?),
        0xde => (3, 0, 2 * len(2)?),
        0xdf => (5, 0, 2 * len(4)?),
        0xc1 => return None, // never used
    };
    let mut used = head + body;
    if used > bytes.len() || (items > 0 && depth == 0) {
        return None;
    }
    // Each nested value takes a byte at least, so a lying count runs out
    // of bytes long before it runs out of items.
    for _ in 0..items {
        let rest = &bytes[used..];
        used += match rest.first() {
            // Small integers and short strings (most of a map's keys and
            // values) are measured here, without a call.
            Some(&(0x00..=0x7f | 0xe0..=0xff)) => 1,
            Some(&m @ 0xa0..=0xbf) if rest.len() > usize::from(m & 0x1f) => {
                1 + usize::from(m & 0x1f)
            }
            _ => value_len(rest, depth - 1)?,
        };
    }
    Some(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = encode(&v).unwrap();
        assert_eq!(decode::<T>(&bytes).unwrap(), v);
    }

    #[test]
    fn every_shape_round_trips() {
        round_trip(ClientFrame {
            id: 7,
            req: Request::Login {
                name: "bob".into(),
                password: "correct horse battery".into(),
            },
        });
        round_trip(ClientFrame {
            id: u32::MAX,
            req: Request::Logout,
        });
        round_trip(ServerFrame::Reply {
            id: 1,
            result: Reply::Error {
                code: ErrorCode::RoomFull,
                message: "room #3 is full".into(),
            },
        });
        round_trip(ServerFrame::Event {
            event: Event::RoomMessage {
                room: 3,
                line: RoomLine {
                    id: 9,
                    from: "ann".into(),
                    text: "hi ✓".into(),
                    time: 1_700_000_000_000,
                },
            },
        });
        round_trip(ServerFrame::Event {
            event: Event::PrivateMessage {
                line: PrivateLine {
                    id: 1,
                    from: "a".into(),
                    to: "b".into(),
                    text: "x".into(),
                    time: -1,
                },
            },
        });
    }

    #[test]
    fn the_encoding_is_a_tagged_map() {
        let bytes = encode(&ClientFrame {
            id: 1,
            req: Request::Ping,
        })
        .unwrap();
        // {"id": 1, "req": {"type": "ping"}}
        let expected = b"\x82\xa2id\x01\xa3req\x81\xa4type\xa4ping";
        assert_eq!(bytes, expected);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&ClientFrame {
            id: 1,
            req: Request::Ping,
        })
        .unwrap();
        bytes.push(0xc0);
        let err = decode::<ClientFrame>(&bytes).unwrap_err();
        assert!(err.to_string().contains("after the end"), "{err}");
    }

    #[test]
    fn packed_frames_split_into_their_messages() {
        let frames = [
            ServerFrame::Reply {
                id: 7,
                result: Reply::Ok,
            },
            ServerFrame::Event { event: Event::Ping },
            ServerFrame::Reply {
                id: 8,
                result: Reply::Ok,
            },
        ];
        let mut packed = Vec::new();
        for f in &frames {
            packed.extend(encode(f).unwrap());
        }
        let got: Vec<ServerFrame> = values(&packed)
            .map(|v| decode(v.unwrap()).unwrap())
            .collect();
        assert_eq!(got, frames);
        let decoded: Result<Vec<ServerFrame>, _> = decode_each(&packed).collect();
        assert_eq!(decoded.unwrap(), frames);
        assert_eq!(values(&[]).count(), 0);

        // A message cut short is an error, after the whole ones before it.
        packed.truncate(packed.len() - 1);
        let got: Vec<_> = values(&packed).collect();
        assert_eq!(got.len(), 3);
        assert!(got[..2].iter().all(Result::is_ok));
        assert!(got[2].is_err());
        let decoded: Vec<Result<ServerFrame, _>> = decode_each(&packed).collect();
        assert!(decoded[..2].iter().all(Result::is_ok) && decoded[2].is_err());
        // A whole value that is not a server frame is an error too.
        let ping = encode(&ClientFrame {
            id: 1,
            req: Request::Ping,
        })
        .unwrap();
        assert!(decode_each::<ServerFrame>(&ping).next().unwrap().is_err());
        // And so is a value nested too deep.
        let mut deep = vec![0x91; 100];
        deep.push(0xc0);
        assert!(values(&deep).next().unwrap().is_err());
    }

    #[test]
    fn values_are_measured_by_their_formats() {
        // Each format once: (bytes, length of the value they start with).
        let cases: &[(&[u8], usize)] = &[
            (&[0x05], 1),
            (&[0xff], 1),
            (&[0xc0], 1),
            (&[0xc3], 1),
            (&[0xa3, b'a', b'b', b'c'], 4),
            (&[0xd9, 2, b'h', b'i'], 4),
            (&[0xda, 0, 1, b'x'], 4),
            (&[0xdb, 0, 0, 0, 1, b'x'], 6),
            (&[0xc4, 1, 9], 3),
            (&[0xcc, 200], 2),
            (&[0xcd, 1, 2], 3),
            (&[0xce, 1, 2, 3, 4], 5),
            (&[0xcf, 1, 2, 3, 4, 5, 6, 7, 8], 9),
            (&[0xd3, 1, 2, 3, 4, 5, 6, 7, 8], 9),
            (&[0xcb, 1, 2, 3, 4, 5, 6, 7, 8], 9),
            (&[0xd4, 1, 2], 3),
            (&[0xc7, 2, 1, 7, 7], 5),
            (&[0x92, 0x01, 0xa1, b'z'], 4),
            (&[0xdc, 0, 2, 0x01, 0x02], 5),
            (&[0x81, 0xa1, b'k', 0x90], 4),
            (&[0xde, 0, 1, 0x01, 0xc0], 5),
        ];
        for &(bytes, len) in cases {
            let mut packed = bytes.to_vec();
            packed.extend_from_slice(bytes);
            let got: Vec<&[u8]> = values(&packed).map(Result::unwrap).collect();
            assert_eq!(got, [&bytes[..len], &bytes[..len]], "{bytes:02x?}");
            // Cut anywhere inside, it is an error.
            for cut in 1..len {
                assert!(
                    values(&bytes[..cut]).next().unwrap().is_err(),
                    "{bytes:02x?} at {cut}"
                );
            }
        }
        // A map that claims more entries than there are bytes.
        assert!(
            values(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0])
                .next()
                .unwrap()
                .is_err()
        );
        assert!(values(&[0xc1]).next().unwrap().is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        // {"id": 1, "req": {"type": "say", "text": "x", "junk": [[[[...]]]]}}
        let mut bytes = b"\x82\xa2id\x01\xa3req\x83\xa4type\xa3say\xa4text\xa1x\xa4junk".to_vec();
        bytes.extend(std::iter::repeat_n(0x91, 100_000));
        bytes.push(0xc0);
        assert!(decode::<ClientFrame>(&bytes).is_err());
    }

    #[test]
    fn lying_lengths_do_not_allocate_or_panic() {
        // A str32 claiming 4 GiB, an array32 claiming 4 billion entries.
        for bytes in [
            &b"\x82\xa2id\x01\xa3req\x82\xa4type\xa3say\xa4text\xdb\xff\xff\xff\xff"[..],
            &b"\xdd\xff\xff\xff\xff\x01"[..],
            &b"\xdf\xff\xff\xff\xff"[..],
            &b""[..],
            &b"\xc1"[..],
        ] {
            assert!(decode::<ClientFrame>(bytes).is_err());
        }
    }

    #[test]
    fn unknown_request_type_is_an_error() {
        let bytes = b"\x82\xa2id\x01\xa3req\x81\xa4type\xa4nope";
        let err = decode::<ClientFrame>(bytes).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
