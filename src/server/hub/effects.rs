//! The hub's vocabulary with the world around it: the [`Input`]s it is
//! fed, the [`Output`]s it asks for, the jobs it hands the workers, and
//! the addresses ([`Caller`], [`Audience`]) that say who an answer or an
//! event is for. Plain data: nothing here decides anything.

use crate::model::{RoomId, Seq, UserId};
use crate::store::{self, Page, Write};
use crate::wire::msg::{ClientFrame, ServerFrame};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A connection, as the event loop numbers them. Never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A map keyed by connection. The keys are counters the server chose, so
/// nobody can pick them to collide: a multiply is hash enough, and it is
/// looked up once per recipient of every message.
pub type ConnMap<V> = HashMap<ConnId, V, BuildHasherDefault<ConnHasher>>;

#[derive(Default)]
pub struct ConnHasher(u64);

impl Hasher for ConnHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Who waits for the answer to a request: the connection that sent it and
/// the id it gave the request. It travels with slow work (a password
/// check, a store read, a write waiting for its commit) so that the answer
/// finds its way back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    pub conn: ConnId,
    pub id: u32,
}

/// Who an event is for, named by what they are rather than listed: the
/// event loop resolves it to connections through its directory (see
/// `server::directory`), as the directory stands when it carries the
/// broadcast out, that is after every [`Output::Directory`] change before
/// it. A node of a larger deployment would publish the same address and
/// let every node resolve it against its own connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every connection in the room.
    Room(RoomId),
    /// Every connection of either user (a private message goes to its
    /// sender's and its recipient's).
    Users([UserId; 2]),
}

/// What the event loop's directory should record about a connection: who
/// it is logged in as and which room it is in. The hub emits a change
/// before any broadcast that depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The connection is now logged in as this user.
    Online { conn: ConnId, user: UserId },
    /// The connection's session ended (logout, a newer login, gone); it
    /// is in no room any more either.
    Offline { conn: ConnId },
    /// The connection entered the room.
    Entered { conn: ConnId, room: RoomId },
    /// The connection left its room (left, kicked, or the room closed).
    Left { conn: ConnId },
}

/// Everything that happens to the hub.
#[derive(Debug)]
pub enum Input {
    /// A client connected (its handshake is still to come). `peer` is its
    /// address, `ip` the part that login throttling counts by.
    Connected {
        conn: ConnId,
        peer: String,
        ip: String,
    },
    Request {
        conn: ConnId,
        frame: ClientFrame,
    },
    /// The connection is gone (closed, reset, timed out or refused by us).
    Disconnected {
        conn: ConnId,
        reason: String,
    },
    /// A registration's password hash is ready.
    Hashed {
        caller: Caller,
        name: String,
        hash: String,
    },
    /// A login's password check finished; `user` is set when it matched.
    /// `name` is the name that was tried.
    Verified {
        caller: Caller,
        name: String,
        user: Option<UserId>,
    },
    /// The store committed every write up to and including `seq`, or failed
    /// to (`ok == false`), in which case none of those writes were kept.
    /// `numbers` pairs the write number of each message committed with
    /// the sequence number the store kept it under (a shared database
    /// numbers messages itself); a message not listed keeps the number the
    /// hub gave it.
    Committed {
        seq: u64,
        ok: bool,
        numbers: Vec<(u64, Seq)>,
    },
    /// The store lost its database (`available == false`: new messages
    /// are refused until it says it is back), or found it again.
    Storage {
        available: bool,
    },
    /// A store read answered.
    Answered {
        caller: Caller,
        answer: Answer,
    },
    /// Writes another server sharing the database committed, in its
    /// order, with the sequence numbers the database gave its messages
    /// (they came over the bus between servers).
    Replicated {
        writes: Vec<Write>,
    },
    /// The messages of a conversation this server missed, read from the
    /// store ([`StoreJob::Fill`]).
    Filled {
        gap: Gap,
        filled: Filled,
    },
    /// The places in rooms that no running server keeps, as the store
    /// read them ([`StoreJob::Orphans`]), or what went wrong.
    Orphans {
        found: Result<Vec<(RoomId, UserId)>, String>,
    },
}

/// Messages of a conversation after a number, which this server has not
/// seen (a number skipped on the bus, or the bus lost for a while).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gap {
    Room {
        room: RoomId,
        after: Seq,
    },
    /// The dialogue of two users, lower id first.
    Dialogue {
        a: UserId,
        b: UserId,
        after: Seq,
    },
}

/// A [`Gap`]'s messages, oldest first.
#[derive(Debug)]
pub enum Filled {
    Room(Vec<store::RoomRow>),
    Dialogue(Vec<store::PrivateRow>),
    /// The store could not read them: what went wrong.
    Failed(String),
}

/// Password work, done off the loop thread.
#[derive(Debug)]
pub enum AuthJob {
    /// Hash a new account's password; answer with [`Input::Hashed`].
    Hash {
        caller: Caller,
        name: String,
        password: String,
    },
    /// Check a password against a stored hash, or against a dummy one when
    /// the user does not exist, so that both take the same time; answer
    /// with [`Input::Verified`].
    Verify {
        caller: Caller,
        name: String,
        user: Option<(UserId, String)>,
        password: String,
    },
}

/// Store work, done in order off the loop thread.
#[derive(Debug)]
pub enum StoreJob {
    /// Store this write; report it with [`Input::Committed`].
    Write { seq: u64, write: Write },
    /// Read from the store; answer with [`Input::Answered`].
    Query { caller: Caller, query: Query },
    /// Read a gap's messages (up to [`GAP_FILL`] of them); answer with
    /// [`Input::Filled`].
    Fill(Gap),
    /// Read the places in rooms that no running server keeps
    /// (`Store::orphans`); answer with [`Input::Orphans`].
    Orphans,
}

/// The most messages one [`StoreJob::Fill`] reads; a longer gap is read
/// in several.
pub const GAP_FILL: usize = 1000;

/// Everything the hub asks of the world around it.
#[derive(Debug)]
pub enum Output {
    Send {
        conn: ConnId,
        frame: ServerFrame,
    },
    /// The same frame to everyone in the audience: encoded once, encrypted
    /// per connection.
    Broadcast {
        audience: Audience,
        frame: ServerFrame,
    },
    /// Record who a connection is or where it is, for resolving later
    /// broadcasts.
    Directory(Change),
    /// Flush what is queued for the connection, then close it.
    Close {
        conn: ConnId,
    },
    /// Slow password work, for the scrypt threads.
    Auth(AuthJob),
    /// A write or read, for the store thread.
    Store(StoreJob),
    Log {
        level: Level,
        line: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Inbox {
        user: UserId,
    },
    /// The last `limit` messages between `user` and `other` in `page`.
    Dialogue {
        user: UserId,
        other: UserId,
        page: Page,
        limit: usize,
    },
    /// The last `limit` messages of a room in `page`.
    Room {
        room: RoomId,
        page: Page,
        limit: usize,
    },
    /// The device holding a resume token this server does not know (its
    /// database is shared: another server may have made it).
    Device {
        token_hash: store::TokenHash,
    },
    /// Who is in a room, through any server (its database is shared).
    Members {
        room: RoomId,
    },
}

#[derive(Debug)]
pub enum Answer {
    Inbox(Vec<store::Conversation>),
    Dialogue {
        other: UserId,
        page: Page,
        rows: Vec<store::PrivateRow>,
    },
    Room {
        room: RoomId,
        page: Page,
        rows: Vec<store::RoomRow>,
    },
    Device(Option<(store::DeviceRow, store::UserRow)>),
    /// The names of a room's members, through any server.
    Members(Vec<String>),
    Failed(String),
}

/// A request refused: the code and the message of its error reply.
pub(super) type Refusal = (crate::wire::msg::ErrorCode, String);
