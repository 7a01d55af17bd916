//! Storage behind one interface: the [`Store`] trait, the rows it reads and
//! writes, its error type, and [`open`], the one place that picks a backend.
//!
//! The server owns all ids and all state in memory; the store only makes it
//! durable, except for the messages' sequence numbers, which a store
//! shared by several servers gives out itself ([`Store::apply`]). A batch of [`Write`]s is applied as one transaction, and once
//! [`Store::apply`] returns the writes survive a crash (and, with
//! [`Sync::Full`], a power loss). The store runs on its own thread
//! (`server::workers`), so every call may block.
//!
//! The interface is a trait rather than an enum of backends: a backend is
//! then a module that implements it plus one arm in [`open`], and nothing
//! else (the store thread, start-up, the group-commit scheduler) changes or
//! has to match on backends. The one dynamic call per batch or query is
//! nothing beside the I/O behind it.
//!
//! Backends:
//!
//! - [`sqlite`]: one SQLite file in the data directory. The default.
//! - [`postgres`]: a PostgreSQL database (the sync `postgres` crate, on the
//!   same store thread), which several nodes can share.
//!
//! `password` is scrypt hashing into PHC strings; it belongs to the store's
//! side of the server (the password standard itself is `crate::password`).

pub mod password;
pub mod postgres;
pub mod sqlite;

use std::error::Error;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::model::{DeviceId, IdSpace, MessageId, Millis, RoomId, Seq, UserId};

/// Where the data lives, and so which backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database file, created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its URL (`postgres://USER:PASSWORD@HOST/DB`).
    Postgres(String),
}

impl Location {
    /// The database as the operator's log may name it: a PostgreSQL URL
    /// without its password.
    pub fn display_name(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => match url.parse() {
                Ok(config) => postgres::display_name(&config),
                Err(_) => "given by --database".to_string(),
            },
        }
    }
}

/// Opens the store at `location`: creates or migrates its schema, or
/// refuses a database that is not chatapp's, or is newer than this build.
pub fn open(location: &Location, sync: Sync) -> Result<Box<dyn Store>, StoreError> {
    match location {
        Location::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open_with(path, sync)?)),
        // PostgreSQL commits with synchronous_commit=on always; `sync` is
        // SQLite's choice of how to reach its own file.
        Location::Postgres(url) => Ok(Box::new(postgres::PostgresStore::open(url)?)),
    }
}

/// Opens a PostgreSQL store that this server shares with others (each
/// with `--bus`): as [`open`], but the server takes an id slot of its own
/// ([`Store::id_space`]) instead of the whole database.
pub fn open_shared(url: &str) -> Result<Box<dyn Store>, StoreError> {
    Ok(Box::new(postgres::PostgresStore::open_shared(url)?))
}

/// A durable home for the chat. Every method may block; errors say what
/// the store was doing.
pub trait Store: Send {
    /// What the server loads at start: every user, unread private-message
    /// counts, and the next free ids, read as one consistent view.
    fn load(&mut self) -> Result<Snapshot, StoreError>;

    /// The rooms left open by the last run (rooms survive a restart), in
    /// id order, each with its last sequence number and its last
    /// `history` messages.
    fn open_rooms(&mut self, history: usize) -> Result<Vec<OpenRoom>, StoreError>;

    /// Applies all writes in one transaction and commits: either all of them
    /// are saved, or (on error) none. Answers the number each message was
    /// stored under, and for each join whether it was taken (1) or not
    /// (0): one answer for each [`Write::answers`], in order.
    ///
    /// A message its client sent again through another server, which
    /// stored it first under another id (the database knows the device's
    /// last client id), is not stored again and answers 0.
    ///
    /// The number in a message's write is the server's proposal. SQLite,
    /// which one server owns, stores it as given. PostgreSQL takes the
    /// conversation's next number itself, in the message's transaction
    /// (docs/ARCHITECTURE.md, "Sequence numbers"), so that servers sharing
    /// it cannot give two messages one number; the server delivers the
    /// number answered here.
    fn apply(&mut self, writes: &[Write]) -> Result<Vec<Seq>, StoreError>;

    /// The user's private conversations, newest first: the other user, the
    /// last message either way, and how many messages from the other user to
    /// `user` are unread.
    fn conversations(&mut self, user: UserId) -> Result<Vec<Conversation>, StoreError>;

    /// The last `limit` private messages between `a` and `b` (both
    /// directions) in `page`, oldest first.
    fn dialogue(
        &mut self,
        a: UserId,
        b: UserId,
        page: Page,
        limit: usize,
    ) -> Result<Vec<PrivateRow>, StoreError>;

    /// The device holding the resume token whose hash is `token_hash`, with
    /// its user, if any: a server sharing the database asks when a token
    /// is unknown to it (its bus may have missed the device).
    fn device(
        &mut self,
        token_hash: &TokenHash,
    ) -> Result<Option<(DeviceRow, UserRow)>, StoreError>;

    /// The last `limit` messages of a room in `page`, oldest first.
    fn room_history(
        &mut self,
        room: RoomId,
        page: Page,
        limit: usize,
    ) -> Result<Vec<RoomRow>, StoreError>;

    /// The names of a room's members through every server sharing the
    /// database, in the order of their accounts; none for a server alone
    /// (it knows its rooms' members itself).
    fn members(&mut self, _room: RoomId) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Places in open rooms that no running server keeps, on a database
    /// servers share: members whose server stopped for good (killed, its
    /// machine lost) and did not start again in its id slot, and admins
    /// without a place. Only the running server with the lowest id slot
    /// is told them (the others get none), so one server, not each, holds
    /// them for the grace period and then lets them go. A server alone on
    /// its database has none.
    fn orphans(&mut self) -> Result<Vec<(RoomId, UserId)>, StoreError> {
        Ok(Vec::new())
    }

    /// The ids this server may give new rows: all of them, unless the
    /// database is shared with other servers.
    fn id_space(&self) -> IdSpace {
        IdSpace::ALONE
    }

    /// One line for the operator's log saying what this store is and the
    /// settings it runs with, as read back from the database itself (so the
    /// line shows what is in force, not what was asked for).
    fn describe(&mut self) -> Result<String, StoreError>;
}

/// Which messages of a conversation a read is about, by sequence number;
/// the newest of them are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Numbered below this: paging back through history.
    Before(Seq),
    /// Numbered above this: catching up after the last one seen.
    After(Seq),
}

impl Page {
    /// The open range `(after, before)` the page is.
    pub fn bounds(self) -> (Seq, Seq) {
        match self {
            Page::Before(before) => (0, before),
            Page::After(after) => (after, Seq::MAX),
        }
    }
}

/// What the server loads at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Every user, in id order.
    pub users: Vec<UserRow>,
    /// `(recipient, sender, count)` of unread private messages, counts > 0.
    pub unread: Vec<(UserId, UserId, u32)>,
    /// `(a, b, seq)`: the last sequence number of the dialogue between `a`
    /// and `b` (`a < b`), for every dialogue with a message.
    pub dialogue_seqs: Vec<(UserId, UserId, Seq)>,
    /// One more than the highest id in use (1 in an empty database).
    pub next_user: UserId,
    pub next_room: RoomId,
    pub next_message: MessageId,
    /// Every device (resume token) not yet revoked, in id order; the next
    /// free device id is one past the highest.
    pub devices: Vec<DeviceRow>,
}

/// SHA-256 of a resume token's 32 bytes: all the store ever holds of it.
pub type TokenHash = [u8; 32];

/// A device: where an account logged in from with its password, and the
/// hash of the resume token it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub id: DeviceId,
    pub user: UserId,
    pub token_hash: TokenHash,
    /// The hash of the token the last resume replaced, if any.
    pub previous_hash: Option<TokenHash>,
    pub created: Millis,
    pub last_used: Millis,
    /// The highest client id of a message from this device stored.
    pub last_client_id: u64,
}

/// Where a message came from, for recognising one sent again: the device
/// and the id its client gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub device: DeviceId,
    pub client_id: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: UserId,
    pub name: String,
    pub password_hash: String,
}

/// One change to make durable. Ids are allocated by the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    User {
        id: UserId,
        name: String,
        password_hash: String,
        created: Millis,
    },
    Room {
        id: RoomId,
        name: String,
        admin: UserId,
        capacity: u32,
        created: Millis,
    },
    /// Closing an already closed room keeps the first closing time.
    CloseRoom { id: RoomId, closed: Millis },
    RoomMessage {
        id: MessageId,
        /// The message's number in its room.
        seq: Seq,
        /// The sending device's id for it, if its client gave one.
        origin: Option<Origin>,
        room: RoomId,
        sender: UserId,
        /// Shared with the line the server delivers.
        text: Arc<str>,
        sent: Millis,
    },
    PrivateMessage {
        id: MessageId,
        /// The message's number in its dialogue.
        seq: Seq,
        /// As for [`Write::RoomMessage`].
        origin: Option<Origin>,
        sender: UserId,
        recipient: UserId,
        text: Arc<str>,
        sent: Millis,
    },
    /// Marks the private messages from `sender` to `recipient` read up to
    /// sequence number `upto` of their dialogue. The mark never moves back.
    MarkRead {
        recipient: UserId,
        sender: UserId,
        upto: Seq,
    },
    /// A new device after a password login, holding its first token.
    Device {
        id: DeviceId,
        user: UserId,
        token_hash: TokenHash,
        created: Millis,
    },
    /// A resume: the device holds a new token, and the one it replaced is
    /// remembered as `previous_hash`.
    RotateDevice {
        id: DeviceId,
        token_hash: TokenHash,
        previous_hash: TokenHash,
        used: Millis,
    },
    /// A device revoked (logged out, expired, its token copied, or one too
    /// many for its account). Deleting one already gone does nothing.
    DeleteDevice { id: DeviceId },
    /// A user joins a room, on a server that shares its database: the
    /// database decides, under the room row's lock, whether the room has
    /// space (its answer, as for a message's number: 1 joined, 0 full or
    /// closed). A server alone on its database decides in memory; its
    /// store answers 1.
    Join { room: RoomId, user: UserId },
    /// A user's last session left a room (`kicked` by its admin), on a
    /// server that shares its database.
    Leave {
        room: RoomId,
        user: UserId,
        kicked: bool,
    },
    /// A member whose connection dropped has been away from a room long
    /// enough for it to be told (`since`: when it was told), or is back
    /// (`None`), on a server that shares its database.
    Away {
        room: RoomId,
        user: UserId,
        since: Option<Millis>,
    },
}

impl Write {
    /// The number a room or private message proposes for itself.
    pub fn seq(&self) -> Option<Seq> {
        match self {
            Write::RoomMessage { seq, .. } | Write::PrivateMessage { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// A room or private message: a write that takes a number in its
    /// conversation.
    pub fn is_message(&self) -> bool {
        self.seq().is_some()
    }

    /// Whether [`Store::apply`] answers for this write: a message (its
    /// number) or a join (1 joined, 0 refused).
    pub fn answers(&self) -> bool {
        self.is_message() || matches!(self, Write::Join { .. })
    }
}

/// A room left open by the last run.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRoom {
    pub id: RoomId,
    pub name: String,
    pub admin: UserId,
    pub capacity: u32,
    /// The number of its last message (0: none).
    pub last_seq: Seq,
    /// Its newest messages, oldest first.
    pub history: Vec<RoomRow>,
    /// Whose places the starting server keeps for the grace period, as
    /// if their connections had just dropped: the admin's, on a server
    /// alone; on servers sharing the database, every member's that the
    /// last server in this one's id slot had (none in a room another
    /// running server keeps).
    pub held: Vec<UserId>,
}

/// One entry of a user's list of private conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub other: UserId,
    pub other_name: String,
    pub last_sender: UserId,
    pub last_text: String,
    pub last_time: Millis,
    /// Messages from `other` to the user not yet read.
    pub unread: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrivateRow {
    pub id: MessageId,
    pub seq: Seq,
    pub sender: UserId,
    pub sender_name: String,
    pub recipient: UserId,
    pub text: String,
    pub sent: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoomRow {
    pub id: MessageId,
    pub seq: Seq,
    pub sender: UserId,
    pub sender_name: String,
    pub text: String,
    pub sent: Millis,
}

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sync {
    /// Every commit is on disk before it is acknowledged: it survives the
    /// process being killed and the machine losing power. The default.
    #[default]
    Full,
    /// No wait for the disk at each commit: survives the process being
    /// killed, but the last commits before a power loss or kernel crash may
    /// vanish. (SQLite: `synchronous=NORMAL` in WAL mode.)
    Normal,
}

/// Why the store could not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// The database failed; `context` says what the store was doing at the
    /// time, and `source` is the backend's own error.
    Failed {
        context: String,
        /// The database refused a write for breaking a constraint (a taken
        /// name, a missing user or room, a bad capacity).
        constraint: bool,
        source: Box<dyn Error + Send + std::marker::Sync>,
    },
    /// The database was written by a newer chatapp, whose schema this one
    /// would misread.
    TooNew {
        database: String,
        found: i32,
        known: i32,
    },
    /// The database is one that chatapp did not create.
    NotOurs { database: String, reason: String },
    /// A [`Write::CloseRoom`] named a room that was never saved.
    NoSuchRoom(RoomId),
    /// Another chatapp server is using the database, and it or this one
    /// runs alone (without `--bus`).
    InUse { database: String },
    /// Every id slot of a shared database is held by a running server
    /// (`slot: None`), or the one this server held was taken by another
    /// while its connection was down (`Some`).
    NoSlot { database: String, slot: Option<i64> },
    /// The database cannot be reached just now (a database server that is
    /// down or restarting, a broken network): nothing of the call was
    /// done, and the same call may succeed later. `context` says what the
    /// store was doing.
    Unavailable {
        context: String,
        source: Box<dyn Error + Send + std::marker::Sync>,
    },
}

impl StoreError {
    /// Whether the database could not be reached, so that trying the same
    /// call again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// Whether the database refused a write for breaking a constraint (a
    /// taken name, a missing user or room, a bad capacity), rather than
    /// failing for reasons outside the data such as a full disk.
    pub fn is_constraint_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Failed {
                constraint: true,
                ..
            }
        )
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The backend's error is the source, printed after this by
            // whoever prints the chain.
            StoreError::Failed { context, .. } | StoreError::Unavailable { context, .. } => {
                f.write_str(context)
            }
            StoreError::TooNew {
                database,
                found,
                known,
            } => write!(
                f,
                "database {database} has schema version {found}, newer than this chatapp \
                 understands ({known}): run a newer chatapp, or point --data-dir or --database elsewhere"
            ),
            StoreError::NotOurs { database, reason } => write!(
                f,
                "database {database} was not made by chatapp ({reason}): point --data-dir or --database elsewhere"
            ),
            StoreError::InUse { database } => write!(
                f,
                "database {database} is in use by another chatapp server: servers share a \
                 database only when every one of them runs with --bus; stop the other one, \
                 give this one a database of its own, or run them all with --bus"
            ),
            StoreError::NoSlot {
                database,
                slot: None,
            } => write!(
                f,
                "database {database} is shared by {} chatapp servers already, the most there \
                 may be: stop one of them first",
                postgres::SLOTS
            ),
            StoreError::NoSlot {
                database,
                slot: Some(slot),
            } => write!(
                f,
                "database {database}: this server's id slot {slot} was taken by another \
                 server while the database was out of reach; stop this server and start it \
                 again"
            ),
            StoreError::NoSuchRoom(id) => write!(
                f,
                "could not close room #{id}: no such room was ever saved (a bug in chatapp: \
                 please report it); nothing of the batch was saved"
            ),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StoreError::Failed { source, .. } | StoreError::Unavailable { source, .. } => {
                Some(source.as_ref())
            }
            _ => None,
        }
    }
}
