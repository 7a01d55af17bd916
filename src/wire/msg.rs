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
    /// Logs in with the resume token a `logged_in` reply gave, without the
    /// password; the reply carries the token that replaces it.
    Resume {
        token: String,
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
        /// Chosen by the client, increasing with every message of its
        /// device: a repeat of one already stored is not stored again.
        /// 0 (or absent): none.
        #[serde(default, skip_serializing_if = "is_zero")]
        client_id: u64,
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
        /// As for `Say`.
        #[serde(default, skip_serializing_if = "is_zero")]
        client_id: u64,
    },
    /// Marks the private messages from `with` read (while a dialogue is open).
    MarkRead {
        with: String,
    },
    Inbox,
    Ping,
    /// Pages back through a conversation the session may read (the room it
    /// is in, or its dialogue with a user): up to `limit` messages numbered
    /// below `before`, oldest first; `before: 0` asks for the newest.
    History {
        of: Topic,
        before: u64,
        limit: u32,
    },
    /// What the session missed in a conversation after the last message it
    /// saw, numbered `after`: the newest `limit` of the messages numbered
    /// above it, oldest first, and how many before those were left out.
    CatchUp {
        of: Topic,
        after: u64,
        limit: u32,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A yes-or-no field on the wire: the integer 1 for yes (absent or 0 for
/// no), since the protocol uses no MessagePack booleans.
mod flag {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(u8::from(*b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(u8::deserialize(d)? != 0)
    }
}

/// A conversation: a room, or the dialogue with another user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Topic {
    Room { room: u64 },
    Dialogue { with: String },
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
        /// The resume token for the next connection (64 lowercase hex
        /// characters); it replaces any token this session resumed with.
        token: String,
        /// The id slot of the server that answered, when several servers
        /// share one database (`serve --bus`); absent for a server alone.
        /// A client that moved to another server sees another number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<u32>,
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
    /// A page of a room's messages, oldest first (the answer to `history`).
    RoomHistory {
        room: u64,
        history: Vec<RoomLine>,
    },
    /// The answer to `catch_up` for a room: the newest messages after the
    /// one the client saw, oldest first; `skipped` messages between that
    /// one and the first of these were left out (a gap the client can
    /// fill with `history`).
    RoomCaughtUp {
        room: u64,
        skipped: u64,
        history: Vec<RoomLine>,
    },
    /// The answer to `catch_up` for a dialogue, as [`Reply::RoomCaughtUp`].
    DialogueCaughtUp {
        with: String,
        skipped: u64,
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
    /// Its number in the room: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    pub from: Arc<str>,
    pub text: Arc<str>,
    /// Unix milliseconds.
    pub time: i64,
}

/// A private message; its strings are shared like [`RoomLine`]'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivateLine {
    pub id: u64,
    /// Its number in the dialogue of its two users: 1, 2, 3, ... with no
    /// gaps.
    pub seq: u64,
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
        /// The session is not over (the server is restarting, or heard
        /// nothing for too long): connect again and resume. Absent (false):
        /// it ended for good (replaced, revoked, refused); do not resume
        /// by itself.
        #[serde(default, skip_serializing_if = "is_false", with = "flag")]
        resume: bool,
    },
    /// A member's connection dropped a while ago: they keep their place for
    /// the grace period, and may be back.
    Away {
        room: u64,
        name: String,
    },
    /// A member who was `away` is back.
    Back {
        room: u64,
        name: String,
    },
    /// The user read their messages from `with` on another of their
    /// sessions; `unread` is what is left unread from everyone.
    Read {
        with: String,
        unread: u32,
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

/// Decodes exactly one message, accepting only what `docs/PROTOCOL.md`
/// (section 4) allows: the formats our own encoder writes (maps with
/// string keys, arrays, `str` strings, integers), nested at most
/// [`MAX_DEPTH`] deep, in the shape of the message (a map where it has a
/// map, a string where a string), with no bytes after it. Keys the type
/// does not have are skipped, but they too must keep to those formats.
/// String and array lengths are checked against the bytes actually present
/// before anything is allocated for them.
///
/// serde and rmp-serde alone accept more: a `bin` for a string, an array
/// for a struct, integer keys for field names, a variant's index for its
/// name. A client relying on that would work with this server and no
/// other, so it is refused.
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, WireError> {
    let len = check_formats(bytes, 1).map_err(|refusal| (*refusal).into_error())?;
    if len < bytes.len() {
        return Err(WireError::Decode(format!(
            "{} bytes after the end of the message",
            bytes.len() - len
        )));
    }
    let mut rest = bytes;
    let mut de = rmp_serde::Deserializer::new(&mut rest);
    // Already checked; kept as a second guard against a recursion.
    de.set_max_depth(MAX_DEPTH + 1);
    let value = T::deserialize(&mut de).map_err(|e| WireError::Decode(e.to_string()))?;
    CANONICAL.with_borrow_mut(|canonical| {
        canonical.clear();
        rmp_serde::encode::write_named(canonical, &value)
            .map_err(|e| WireError::Decode(e.to_string()))?;
        same_shape(bytes, canonical).map_err(|refusal| (*refusal).into_error())
    })?;
    Ok(value)
}

thread_local! {
    /// [`decode`]'s buffer for its own encoding of what it decoded.
    static CANONICAL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The kinds of MessagePack value a message is made of, and the others by
/// name, for the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Map,
    Array,
    Str,
    Int,
    Other(&'static str),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Map => "map",
            Kind::Array => "array",
            Kind::Str => "string",
            Kind::Int => "integer",
            Kind::Other(name) => name,
        }
    }
}

/// The start of the value `bytes` begins with: its kind, the bytes of its
/// type and length fields, the bytes of its payload (after those), and
/// how many values are nested in it (two per map entry). `None` if the
/// fields are cut short or the type byte is never used.
struct Head {
    kind: Kind,
    fields: usize,
    payload: usize,
    items: usize,
}

fn head(bytes: &[u8]) -> Option<Head> {
    let &marker = bytes.first()?;
    let len = |n: usize| -> Option<usize> {
        let field = bytes.get(1..1 + n)?;
        Some(field.iter().fold(0, |acc, &b| acc << 8 | usize::from(b)))
    };
    let (kind, fields, payload, items) = match marker {
        0x00..=0x7f | 0xe0..=0xff => (Kind::Int, 1, 0, 0),
        0xcc | 0xd0 => (Kind::Int, 1, 1, 0),
        0xcd | 0xd1 => (Kind::Int, 1, 2, 0),
        0xce | 0xd2 => (Kind::Int, 1, 4, 0),
        0xcf | 0xd3 => (Kind::Int, 1, 8, 0),
        0xa0..=0xbf => (Kind::Str, 1, usize::from(marker & 0x1f), 0),
        0xd9 => (Kind::Str, 2, len(1)?, 0),
        0xda => (Kind::Str, 3, len(2)?, 0),
        0xdb => (Kind::Str, 5, len(4)?, 0),
        0x80..=0x8f => (Kind::Map, 1, 0, 2 * usize::from(marker & 0x0f)),
        0xde => (Kind::Map, 3, 0, 2 * len(2)?),
        0xdf => (Kind::Map, 5, 0, 2 * len(4)?),
        0x90..=0x9f => (Kind::Array, 1, 0, usize::from(marker & 0x0f)),
        0xdc => (Kind::Array, 3, 0, len(2)?),
        0xdd => (Kind::Array, 5, 0, len(4)?),
        0xc0 => (Kind::Other("nil"), 1, 0, 0),
        0xc2 | 0xc3 => (Kind::Other("boolean"), 1, 0, 0),
        0xca => (Kind::Other("float"), 1, 4, 0),
        0xcb => (Kind::Other("float"), 1, 8, 0),
        0xc4 => (Kind::Other("bin"), 2, len(1)?, 0),
        0xc5 => (Kind::Other("bin"), 3, len(2)?, 0),
        0xc6 => (Kind::Other("bin"), 5, len(4)?, 0),
        0xc7..=0xc9 | 0xd4..=0xd8 => (Kind::Other("ext"), 1, 0, 0),
        0xc1 => return None,
    };
    if fields + payload > bytes.len() {
        return None;
    }
    Some(Head {
        kind,
        fields,
        payload,
        items,
    })
}

/// Why [`decode`] refused a message, and where in it (keys and indexes,
/// outermost first, collected as the check returns). Boxed where it is
/// returned, so that the checks' `Ok` path stays small.
struct Refusal {
    what: String,
    path: Vec<String>,
}

impl Refusal {
    #[cold]
    fn new(what: impl Into<String>) -> Box<Refusal> {
        Box::new(Refusal {
            what: what.into(),
            path: Vec::new(),
        })
    }

    #[cold]
    fn cut_short() -> Box<Refusal> {
        Refusal::new("the message is cut short or malformed")
    }

    #[cold]
    fn at(mut self: Box<Self>, step: String) -> Box<Refusal> {
        self.path.push(step);
        self
    }

    fn into_error(self) -> WireError {
        if self.path.is_empty() {
            return WireError::Decode(self.what);
        }
        let mut path = String::new();
        for step in self.path.iter().rev() {
            if !step.starts_with('[') && !path.is_empty() {
                path.push('.');
            }
            path.push_str(step);
        }
        WireError::Decode(format!("{} at {path}", self.what))
    }
}

/// The step of a path that leads to the `n`th value nested in a map or an
/// array: the key for a map's value, the index for an array's element.
fn step(kind: Kind, n: usize, key: Option<&[u8]>) -> String {
    match (kind, key) {
        (Kind::Map, Some(key)) => String::from_utf8_lossy(key).into_owned(),
        (Kind::Map, None) => format!("key {}", n / 2),
        _ => format!("[{n}]"),
    }
}

/// The payload of a string (the bytes after its type and length fields).
fn str_payload<'a>(bytes: &'a [u8], h: &Head) -> Option<&'a [u8]> {
    (h.kind == Kind::Str).then(|| &bytes[h.fields..h.fields + h.payload])
}

/// Checks what a message may not hold anywhere, ignored keys included:
/// formats other than maps, arrays, `str` and integers; map keys that are
/// not strings; maps or arrays nested more than [`MAX_DEPTH`] deep (the
/// outermost at `level` 1). Returns the length of the value `bytes` starts
/// with. A lying count runs out of bytes, as every value takes one.
fn check_formats(bytes: &[u8], level: usize) -> Result<usize, Box<Refusal>> {
    let h = head(bytes).ok_or_else(Refusal::cut_short)?;
    match h.kind {
        Kind::Other(name) => {
            return Err(Refusal::new(format!(
                "a {name} value, which the protocol does not use \
                 (messages are maps with string keys, arrays, str strings and integers)"
            )));
        }
        Kind::Map | Kind::Array if level > MAX_DEPTH => {
            return Err(Refusal::new(format!(
                "maps and arrays nested more than {MAX_DEPTH} deep"
            )));
        }
        _ => {}
    }
    let mut used = h.fields + h.payload;
    let mut key = None;
    for n in 0..h.items {
        let rest = &bytes[used..];
        let is_key = h.kind == Kind::Map && n % 2 == 0;
        // Small integers and short strings (most keys and values) are
        // measured here, without a call.
        match rest.first() {
            Some(&(0x00..=0x7f | 0xe0..=0xff)) if !is_key => {
                used += 1;
                continue;
            }
            Some(&m @ 0xa0..=0xbf) if rest.len() > usize::from(m & 0x1f) => {
                if is_key {
                    key = Some(&rest[1..1 + usize::from(m & 0x1f)]);
                }
                used += 1 + usize::from(m & 0x1f);
                continue;
            }
            _ => {}
        }
        if is_key {
            let key_head = head(rest).ok_or_else(Refusal::cut_short)?;
            if key_head.kind != Kind::Str {
                return Err(Refusal::new(format!(
                    "a map key that is {} {}: keys are strings (field names)",
                    article(key_head.kind),
                    key_head.kind.name()
                ))
                .at(format!("key {}", n / 2)));
            }
            key = str_payload(rest, &key_head);
        }
        let len = check_formats(rest, level + 1).map_err(|e| e.at(step(h.kind, n, key)))?;
        used += len;
    }
    Ok(used)
}

/// The entries of a map that [`check_formats`] passed, (key, value), in
/// the order they are written.
fn entries<'a>(bytes: &'a [u8], h: &Head) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    let mut at = h.fields;
    (0..h.items / 2).map(move |_| {
        let key_at = at;
        at += value_len(&bytes[at..], MAX_DEPTH).unwrap_or(0);
        let key: &[u8] = head(&bytes[key_at..])
            .and_then(|k| str_payload(&bytes[key_at..], &k))
            .unwrap_or(&[]);
        let value_at = at;
        at += value_len(&bytes[at..], MAX_DEPTH).unwrap_or(0);
        (key, &bytes[value_at..at])
    })
}

/// Whether `input` has the shape of `canonical`, our own encoding of the
/// value decoded from it: a map where that has a map (its entries found
/// by key; keys only `input` has were skipped by the decoder), an array of
/// as many elements where an array, a string where a string, an integer
/// where an integer. Both passed [`check_formats`].
fn same_shape(input: &[u8], canonical: &[u8]) -> Result<(), Box<Refusal>> {
    // The usual case, a client that encodes as we do: nothing to compare.
    if input == canonical {
        return Ok(());
    }
    let (Some(found), Some(expected)) = (head(input), head(canonical)) else {
        return Err(Refusal::cut_short());
    };
    if found.kind != expected.kind {
        return Err(Refusal::new(format!(
            "{} {} where the protocol has {} {}",
            article(found.kind),
            found.kind.name(),
            article(expected.kind),
            expected.kind.name()
        )));
    }
    match expected.kind {
        Kind::Map => {
            for (key, value) in entries(canonical, &expected) {
                let name = || String::from_utf8_lossy(key).into_owned();
                let given = entries(input, &found).find(|&(k, _)| k == key);
                let Some((_, input_value)) = given else {
                    return Err(Refusal::new("a field is missing").at(name()));
                };
                same_shape(input_value, value).map_err(|e| e.at(name()))?;
            }
        }
        Kind::Array => {
            if found.items != expected.items {
                return Err(Refusal::new("an array of the wrong length"));
            }
            let (mut a, mut b) = (found.fields, expected.fields);
            for n in 0..expected.items {
                same_shape(&input[a..], &canonical[b..]).map_err(|e| e.at(format!("[{n}]")))?;
                a += value_len(&input[a..], MAX_DEPTH).unwrap_or(0);
                b += value_len(&canonical[b..], MAX_DEPTH).unwrap_or(0);
            }
        }
        _ => {}
    }
    Ok(())
}

fn article(kind: Kind) -> &'static str {
    match kind {
        Kind::Array | Kind::Int => "an",
        _ => "a",
    }
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
pub fn decode_each<T: DeserializeOwned + Serialize>(
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
        round_trip(ClientFrame {
            id: 2,
            req: Request::Resume {
                token: "ab".repeat(32),
            },
        });
        round_trip(ServerFrame::Reply {
            id: 2,
            result: Reply::LoggedIn {
                name: "ann".into(),
                unread: 3,
                token: "cd".repeat(32),
                node: None,
            },
        });
        round_trip(ServerFrame::Reply {
            id: 2,
            result: Reply::LoggedIn {
                name: "ann".into(),
                unread: 0,
                token: "cd".repeat(32),
                node: Some(5),
            },
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
                    seq: 9,
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
                    seq: 1,
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

    /// Decodes a client frame that must be refused; the reason.
    fn refused(bytes: &[u8]) -> String {
        match decode::<ClientFrame>(bytes) {
            Ok(frame) => panic!("{bytes:02x?} was accepted as {frame:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// `{"id": 1, "req": {"type": "say", "text": "hi", "junk": <junk>}}`
    fn say_with_junk(junk: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x82\xa2id\x01\xa3req\x83\xa4type\xa3say\xa4text\xa2hi\xa4junk".to_vec();
        bytes.extend_from_slice(junk);
        bytes
    }

    fn say_hi() -> ClientFrame {
        ClientFrame {
            id: 1,
            req: Request::Say {
                text: "hi".into(),
                client_id: 0,
            },
        }
    }

    #[test]
    fn bin_where_a_string_is_expected_is_refused() {
        // {"id": 1, "req": {"type": "say", "text": bin "hi"}}
        let err = refused(b"\x82\xa2id\x01\xa3req\x82\xa4type\xa3say\xa4text\xc4\x02hi");
        assert!(err.contains("bin") && err.contains("at req.text"), "{err}");
        // And as the type's name.
        let err = refused(b"\x82\xa2id\x01\xa3req\x81\xa4type\xc4\x04ping");
        assert!(err.contains("bin") && err.contains("at req.type"), "{err}");
    }

    #[test]
    fn a_string_that_is_not_utf8_is_refused() {
        // {"id": 1, "req": {"type": "say", "text": "\xff\xfe"}}
        refused(b"\x82\xa2id\x01\xa3req\x82\xa4type\xa3say\xa4text\xa2\xff\xfe");
    }

    #[test]
    fn arrays_where_maps_are_expected_are_refused() {
        // [1, {"type": "ping"}]
        let err = refused(b"\x92\x01\x81\xa4type\xa4ping");
        assert!(
            err.contains("an array where the protocol has a map"),
            "{err}"
        );
        // {"id": 1, "req": ["say", "hi"]}
        let err = refused(b"\x82\xa2id\x01\xa3req\x92\xa3say\xa2hi");
        assert!(err.contains("array") && err.contains("at req"), "{err}");
    }

    #[test]
    fn keys_that_are_not_strings_are_refused() {
        // {0: 1, 1: {"type": "ping"}}
        let err = refused(b"\x82\x00\x01\x01\x81\xa4type\xa4ping");
        assert!(err.contains("map key that is an integer"), "{err}");
        // {"id": 1, "req": {"type": "ping", 7: "x"}}
        let err = refused(b"\x82\xa2id\x01\xa3req\x82\xa4type\xa4ping\x07\xa1x");
        assert!(err.contains("map key") && err.contains("at req"), "{err}");
    }

    #[test]
    fn a_variant_index_for_its_name_is_refused() {
        // {"id": 1, "req": {"type": 13}}: 13 is `ping`'s index.
        let err = refused(b"\x82\xa2id\x01\xa3req\x81\xa4type\x0d");
        assert!(err.contains("integer"), "{err}");
    }

    #[test]
    fn values_of_the_wrong_kind_are_refused() {
        // "id" as a string, "text" as an integer.
        refused(b"\x82\xa2id\xa11\xa3req\x81\xa4type\xa4ping");
        refused(b"\x82\xa2id\x01\xa3req\x82\xa4type\xa3say\xa4text\x05");
        // An id out of range.
        refused(b"\x82\xa2id\xcf\x00\x00\x00\x01\x00\x00\x00\x00\xa3req\x81\xa4type\xa4ping");
        refused(b"\x82\xa2id\xff\xa3req\x81\xa4type\xa4ping");
    }

    #[test]
    fn unknown_keys_are_skipped_if_they_keep_to_the_formats() {
        // A string, an integer, a map, an array: skipped.
        for junk in [
            &b"\xa1x"[..],
            &b"\xcd\x01\x00"[..],
            &b"\x81\xa1k\x92\x01\xa1v"[..],
            &b"\x90"[..],
        ] {
            assert_eq!(
                decode::<ClientFrame>(&say_with_junk(junk)).unwrap(),
                say_hi()
            );
        }
        // Any other format is refused, also where it would be skipped.
        for (junk, name) in [
            (&b"\xc0"[..], "nil"),
            (&b"\xc3"[..], "boolean"),
            (&b"\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"[..], "float"),
            (&b"\xc4\x01x"[..], "bin"),
            (&b"\xd4\x01\x02"[..], "ext"),
        ] {
            let err = refused(&say_with_junk(junk));
            assert!(
                err.contains(&format!("a {name} value")) && err.contains("at req.junk"),
                "{err}"
            );
        }
        // Keys may come in any order.
        let bytes = b"\x82\xa3req\x82\xa4text\xa2hi\xa4type\xa3say\xa2id\x01";
        assert_eq!(decode::<ClientFrame>(bytes).unwrap(), say_hi());
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        // {"id": 1, "id": 2, "req": {"type": "ping"}}
        let err = refused(b"\x83\xa2id\x01\xa2id\x02\xa3req\x81\xa4type\xa4ping");
        assert!(err.contains("duplicate"), "{err}");
        // {"id": 1, "req": {"type": "say", "text": "a", "text": "b"}}
        let err = refused(b"\x82\xa2id\x01\xa3req\x83\xa4type\xa3say\xa4text\xa1a\xa4text\xa1b");
        assert!(err.contains("duplicate"), "{err}");
        // {"id": 1, "req": {"type": "ping", "type": "logout"}}
        let err = refused(b"\x82\xa2id\x01\xa3req\x82\xa4type\xa4ping\xa4type\xa6logout");
        assert!(err.contains("duplicate"), "{err}");
    }

    #[test]
    fn eight_levels_of_maps_and_arrays_are_accepted_and_nine_refused() {
        // The outer map is level 1, the request map level 2, so junk of
        // `n` nested arrays reaches level 2 + n.
        let junk = |n: usize| {
            let mut bytes = vec![0x91; n - 1];
            bytes.push(0x90);
            bytes
        };
        let deepest = say_with_junk(&junk(MAX_DEPTH - 2));
        assert_eq!(decode::<ClientFrame>(&deepest).unwrap(), say_hi());
        let err = refused(&say_with_junk(&junk(MAX_DEPTH - 1)));
        assert!(err.contains("nested more than 8 deep"), "{err}");
        // An empty map counts as a level too.
        let mut too_deep = say_with_junk(&junk(MAX_DEPTH - 1));
        *too_deep.last_mut().unwrap() = 0x80;
        refused(&too_deep);
    }

    #[test]
    fn replies_with_arrays_round_trip_through_the_strict_decoder() {
        let line = RoomLine {
            id: 4,
            seq: 4,
            from: "ann".into(),
            text: "hello".into(),
            time: 5,
        };
        round_trip(ServerFrame::Reply {
            id: 2,
            result: Reply::Room {
                room: RoomInfo {
                    id: 3,
                    name: "lobby".into(),
                    admin: "ann".into(),
                    capacity: 10,
                },
                members: vec!["ann".into(), "bob".into()],
                history: vec![line.clone(), line],
            },
        });
        round_trip(ServerFrame::Reply {
            id: 3,
            result: Reply::Inbox {
                conversations: vec![Conversation {
                    with: "bob".into(),
                    last_from: "ann".into(),
                    last_text: "hi".into(),
                    last_time: 1,
                    unread: 0,
                }],
            },
        });
        round_trip(ServerFrame::Reply {
            id: 4,
            result: Reply::Members { members: vec![] },
        });
    }

    #[test]
    fn unknown_request_type_is_an_error() {
        let bytes = b"\x82\xa2id\x01\xa3req\x81\xa4type\xa4nope";
        let err = decode::<ClientFrame>(bytes).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
