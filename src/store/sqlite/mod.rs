//! The SQLite backend of [`Store`]: opens and versions the database file,
//! loads what the server needs at start, applies batches of writes
//! atomically, and answers the history queries (conversations, dialogues,
//! room history).
//!
//! Every batch is one transaction, committed with `synchronous=FULL` (or
//! `NORMAL`, when the operator chose [`Sync::Normal`]), so once
//! [`Store::apply`] returns the writes survive a crash (with `FULL`, a power
//! loss as well). This module is the only code that knows SQLite; its
//! errors leave it as [`StoreError`]s.

#[cfg(target_env = "musl")]
mod malloc;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};

use super::{
    Conversation, DeviceRow, OpenRoom, Origin, Page, PrivateRow, RoomRow, Snapshot, Store,
    StoreError, Sync, UserRow, Write,
};
use crate::model::{DeviceId, MessageId, RoomId, Seq, UserId, room_key, user_key};

/// The schema version this build writes and understands, kept in
/// `PRAGMA user_version`.
pub const SCHEMA_VERSION: i32 = 3;

/// Each version's script, run in order from the one after the file's
/// version: version 1 creates the schema, later ones migrate it.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    include_str!("schema.sql"),
    include_str!("schema2.sql"),
    include_str!("schema3.sql"),
];

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A SQLite error as the store's, with what the store was doing.
fn failed(context: String, source: rusqlite::Error) -> StoreError {
    let constraint = matches!(
        &source,
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation
    );
    StoreError::Failed {
        context,
        constraint,
        source: Box::new(source),
    }
}

/// Attaches what the store was doing to a SQLite error.
trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| failed(what(), source))
    }
}

/// A private message's dialogue key as `messages_dialogue` spells it, for
/// the two users given as SQL expressions.
macro_rules! dialogue_of {
    ($a:literal, $b:literal) => {
        concat!(
            "min(sender, recipient) = min(",
            $a,
            ", ",
            $b,
            ") ",
            "AND max(sender, recipient) = max(",
            $a,
            ", ",
            $b,
            ") ",
            "AND recipient IS NOT NULL"
        )
    };
}

/// Messages from `d.other` to `d.user` after `d.read_seq`, for a row `d`
/// of `dialogues`: a range of `messages_dialogue_seq`.
macro_rules! unread_of_d {
    () => {
        concat!(
            "(SELECT COUNT(*) FROM messages WHERE ",
            dialogue_of!("d.user", "d.other"),
            " AND seq > d.read_seq AND sender = d.other)"
        )
    };
}

/// Unread private messages by recipient and sender, at start.
const UNREAD: &str = concat!(
    "SELECT user, other, n FROM (SELECT d.user, d.other, ",
    unread_of_d!(),
    " AS n FROM dialogues AS d) WHERE n > 0 ORDER BY user, other"
);

/// A user's conversations, newest first: one row of `dialogues` a partner,
/// and the last message and the unread count from the dialogue's index.
const CONVERSATIONS: &str = concat!(
    "SELECT d.other, u.name, last.sender, last.body, last.sent, ",
    unread_of_d!(),
    " FROM dialogues AS d
JOIN messages AS last ON last.id = (SELECT id FROM messages WHERE ",
    dialogue_of!("d.user", "d.other"),
    " ORDER BY seq DESC LIMIT 1)
JOIN users AS u ON u.id = d.other
WHERE d.user = ?1
ORDER BY last.id DESC"
);

/// The last ?3 messages between ?1 and ?2 numbered below ?4 and above ?5:
/// one range of the dialogue's index.
const DIALOGUE: &str = concat!(
    "SELECT page.id, page.seq, page.sender, u.name, page.recipient, page.body, page.sent
FROM (
    SELECT id, seq, sender, recipient, body, sent FROM messages
    WHERE ",
    dialogue_of!("?1", "?2"),
    " AND seq < ?4 AND seq > ?5 ORDER BY seq DESC LIMIT ?3
) AS page
JOIN users AS u ON u.id = page.sender
ORDER BY page.seq"
);

/// The last sequence number of every dialogue, lower user id first.
const DIALOGUE_SEQS: &str = concat!(
    "SELECT d.user, d.other, (SELECT MAX(seq) FROM messages WHERE ",
    dialogue_of!("d.user", "d.other"),
    ") FROM dialogues AS d WHERE d.user < d.other ORDER BY d.user, d.other"
);

/// Marks read what ?2 sent ?1 up to sequence number ?3; the mark only
/// moves forward.
const MARK_READ: &str =
    "UPDATE dialogues SET read_seq = max(read_seq, ?3) WHERE user = ?1 AND other = ?2";

/// The last ?2 messages of room ?1 numbered below ?3 and above ?4.
const ROOM_HISTORY: &str = "SELECT page.id, page.seq, page.sender, u.name, page.body, page.sent
FROM (
    SELECT id, seq, sender, body, sent FROM messages
    WHERE room = ?1 AND seq < ?3 AND seq > ?4 ORDER BY seq DESC LIMIT ?2
) AS page
JOIN users AS u ON u.id = page.sender
ORDER BY page.seq";

/// `PRAGMA synchronous` for a durability level.
fn synchronous(sync: Sync) -> &'static str {
    match sync {
        Sync::Full => "FULL",
        Sync::Normal => "NORMAL",
    }
}

/// Page size of a new database file (an existing one keeps its own).
const PAGE_SIZE: i64 = 1024;
/// SQLite's page cache, in KiB.
const CACHE_KIB: i64 = 16 * 1024;
/// Pages the write-ahead log may hold before it is copied into the
/// database (SQLite's default is 1,000).
const CHECKPOINT_PAGES: i64 = 16 * 1024;

/// An open database file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens or creates the database file. journal_mode=WAL, foreign_keys=ON,
    /// synchronous=FULL, busy_timeout 5 s. A fresh file gets schema
    /// [`SCHEMA_VERSION`]; a file from a newer chatapp, or from another
    /// program, is refused untouched.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, Sync::Full)
    }

    /// [`SqliteStore::open`] with a chosen durability level.
    pub fn open_with(path: &Path, sync: Sync) -> Result<SqliteStore, StoreError> {
        let opening = || format!("could not open database {}", path.display());
        #[cfg(target_env = "musl")]
        malloc::use_mimalloc();
        let mut conn = Connection::open(path).context(opening)?;
        conn.busy_timeout(BUSY_TIMEOUT).context(opening)?;
        conn.pragma_update(None, "synchronous", synchronous(sync))
            .context(opening)?;
        conn.pragma_update(None, "foreign_keys", true)
            .context(opening)?;
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .context(opening)?;
        // A private message lands in the dialogue index, and a new
        // conversation adds two `dialogues` rows, at places all over the
        // file: keep those pages in memory (16 MiB at the most, taken only
        // as the database grows) instead of reading them back from the file,
        // and checkpoint less often, so a page written by many commits is
        // copied into the database once.
        conn.pragma_update(None, "cache_size", -CACHE_KIB)
            .context(opening)?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)
            .context(opening)?;
        // Before WAL, which is recorded in the file: a file that is refused
        // must be left as it was found.
        prepare_schema(&mut conn, path)?;
        // If the file system cannot do WAL, SQLite keeps a rollback journal;
        // that is slower but just as durable, so it is not an error.
        let _mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .context(opening)?;
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
        })
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let loading = || "could not load the database".to_owned();
        // One read transaction, so the parts agree with one another.
        let tx = self.conn.unchecked_transaction().context(loading)?;

        let mut stmt = tx
            .prepare("SELECT id, name, password_hash FROM users ORDER BY id")
            .context(loading)?;
        let users = stmt
            .query_map([], |row| {
                Ok(UserRow {
                    id: UserId(row.get(0)?),
                    name: row.get(1)?,
                    password_hash: row.get(2)?,
                })
            })
            .and_then(Iterator::collect)
            .context(loading)?;
        drop(stmt);

        let mut stmt = tx.prepare(UNREAD).context(loading)?;
        let unread = stmt
            .query_map([], |row| {
                Ok((UserId(row.get(0)?), UserId(row.get(1)?), row.get(2)?))
            })
            .and_then(Iterator::collect)
            .context(loading)?;
        drop(stmt);

        let mut stmt = tx.prepare(DIALOGUE_SEQS).context(loading)?;
        let dialogue_seqs = stmt
            .query_map([], |row| {
                Ok((UserId(row.get(0)?), UserId(row.get(1)?), seq_at(row, 2)?))
            })
            .and_then(Iterator::collect)
            .context(loading)?;
        drop(stmt);

        let mut stmt = tx
            .prepare(
                "SELECT id, user, token_hash, previous_hash, created, last_used, last_client_id
                 FROM devices ORDER BY id",
            )
            .context(loading)?;
        let devices = stmt
            .query_map([], |row| {
                Ok(DeviceRow {
                    id: DeviceId(row.get(0)?),
                    user: UserId(row.get(1)?),
                    token_hash: row.get(2)?,
                    previous_hash: row.get(3)?,
                    created: row.get(4)?,
                    last_used: row.get(5)?,
                    last_client_id: seq_at(row, 6)?,
                })
            })
            .and_then(Iterator::collect)
            .context(loading)?;
        drop(stmt);

        let (next_user, next_room, next_message) = tx
            .query_row(
                "SELECT (SELECT IFNULL(MAX(id), 0) + 1 FROM users),
                        (SELECT IFNULL(MAX(id), 0) + 1 FROM rooms),
                        (SELECT IFNULL(MAX(id), 0) + 1 FROM messages)",
                [],
                |row| {
                    Ok((
                        UserId(row.get(0)?),
                        RoomId(row.get(1)?),
                        MessageId(row.get(2)?),
                    ))
                },
            )
            .context(loading)?;
        tx.finish().context(loading)?;

        Ok(Snapshot {
            users,
            unread,
            dialogue_seqs,
            next_user,
            next_room,
            next_message,
            devices,
        })
    }

    fn open_rooms(&mut self, history: usize) -> Result<Vec<OpenRoom>, StoreError> {
        let reading = || "could not read the rooms left open by the last run".to_owned();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT r.id, r.name, r.admin, r.capacity,
                        IFNULL((SELECT MAX(seq) FROM messages WHERE room = r.id), 0)
                 FROM rooms AS r WHERE r.closed IS NULL ORDER BY r.id",
            )
            .context(reading)?;
        let rooms: Vec<OpenRoom> = stmt
            .query_map([], |row| {
                Ok(OpenRoom {
                    id: RoomId(row.get(0)?),
                    name: row.get(1)?,
                    admin: UserId(row.get(2)?),
                    capacity: row.get(3)?,
                    last_seq: seq_at(row, 4)?,
                    history: Vec::new(),
                    held: vec![UserId(row.get(2)?)],
                })
            })
            .and_then(Iterator::collect)
            .context(reading)?;
        drop(stmt);
        rooms
            .into_iter()
            .map(|mut room| {
                room.history = self.room_history(room.id, Page::Before(Seq::MAX), history)?;
                Ok(room)
            })
            .collect()
    }

    fn apply(&mut self, writes: &[Write]) -> Result<Vec<Seq>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let count = writes.len();
        let batch = move |what: String| {
            move || format!("{what}; none of the {count} writes in this batch were saved")
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(batch("could not start a transaction".to_owned()))?;
        for write in writes {
            apply_one(&tx, write).map_err(|e| match e {
                StoreError::Failed {
                    context,
                    constraint,
                    source,
                } => StoreError::Failed {
                    context: batch(context)(),
                    constraint,
                    source,
                },
                other => other,
            })?;
        }
        tx.commit().context(batch("could not commit".to_owned()))?;
        // This server owns the file: its numbers are the ones stored, and
        // it decided its joins itself.
        Ok(writes
            .iter()
            .filter(|w| w.answers())
            .map(|w| w.seq().unwrap_or(1))
            .collect())
    }

    fn conversations(&mut self, user: UserId) -> Result<Vec<Conversation>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(CONVERSATIONS)
            .context(|| format!("could not list the conversations of user {user}"))?;
        stmt.query_map(params![user.0], |row| {
            Ok(Conversation {
                other: UserId(row.get(0)?),
                other_name: row.get(1)?,
                last_sender: UserId(row.get(2)?),
                last_text: row.get(3)?,
                last_time: row.get(4)?,
                unread: row.get(5)?,
            })
        })
        .and_then(Iterator::collect)
        .context(|| format!("could not list the conversations of user {user}"))
    }

    fn dialogue(
        &mut self,
        a: UserId,
        b: UserId,
        page: Page,
        limit: usize,
    ) -> Result<Vec<PrivateRow>, StoreError> {
        let reading = || format!("could not read the messages between users {a} and {b}");
        let mut stmt = self.conn.prepare_cached(DIALOGUE).context(reading)?;
        let (after, before) = page.bounds();
        let (after, before) = (sql_seq(after), sql_seq(before));
        stmt.query_map(params![a.0, b.0, sql_limit(limit), before, after], |row| {
            Ok(PrivateRow {
                id: MessageId(row.get(0)?),
                seq: seq_at(row, 1)?,
                sender: UserId(row.get(2)?),
                sender_name: row.get(3)?,
                recipient: UserId(row.get(4)?),
                text: row.get(5)?,
                sent: row.get(6)?,
            })
        })
        .and_then(Iterator::collect)
        .context(reading)
    }

    fn room_history(
        &mut self,
        room: RoomId,
        page: Page,
        limit: usize,
    ) -> Result<Vec<RoomRow>, StoreError> {
        let reading = || format!("could not read the history of room #{room}");
        let mut stmt = self.conn.prepare_cached(ROOM_HISTORY).context(reading)?;
        let (after, before) = page.bounds();
        let (after, before) = (sql_seq(after), sql_seq(before));
        stmt.query_map(params![room.0, sql_limit(limit), before, after], |row| {
            Ok(RoomRow {
                id: MessageId(row.get(0)?),
                seq: seq_at(row, 1)?,
                sender: UserId(row.get(2)?),
                sender_name: row.get(3)?,
                text: row.get(4)?,
                sent: row.get(5)?,
            })
        })
        .and_then(Iterator::collect)
        .context(reading)
    }

    fn device(
        &mut self,
        token_hash: &super::TokenHash,
    ) -> Result<Option<(DeviceRow, UserRow)>, StoreError> {
        let reading = || "could not look up a resume token".to_owned();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.id, d.user, d.token_hash, d.previous_hash, d.created, d.last_used,
                        d.last_client_id, u.name, u.password_hash
                 FROM devices AS d JOIN users AS u ON u.id = d.user
                 WHERE d.token_hash = ?1",
            )
            .context(reading)?;
        let mut rows = stmt
            .query_map(params![&token_hash[..]], |row| {
                let device = DeviceRow {
                    id: DeviceId(row.get(0)?),
                    user: UserId(row.get(1)?),
                    token_hash: row.get(2)?,
                    previous_hash: row.get(3)?,
                    created: row.get(4)?,
                    last_used: row.get(5)?,
                    last_client_id: seq_at(row, 6)?,
                };
                let user = UserRow {
                    id: device.user,
                    name: row.get(7)?,
                    password_hash: row.get(8)?,
                };
                Ok((device, user))
            })
            .context(reading)?;
        rows.next().transpose().context(reading)
    }

    fn describe(&mut self) -> Result<String, StoreError> {
        let reading = || "could not read the database settings".to_owned();
        let sync: i64 = self
            .conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .context(reading)?;
        let journal: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .context(reading)?;
        let sync_name = match sync {
            0 => "OFF",
            1 => "NORMAL",
            2 => "FULL",
            3 => "EXTRA",
            _ => "unknown",
        };
        Ok(format!(
            "SQLite {} database {}, synchronous={sync} ({sync_name}), journal_mode={journal}",
            rusqlite::version(),
            self.path.display()
        ))
    }
}

/// Creates the schema in a fresh file, migrates an older one in one
/// transaction, accepts the current version, and
/// refuses anything else without changing it.
fn prepare_schema(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let opening = || format!("could not open database {}", path.display());
    // IMMEDIATE so that two processes opening a fresh file cannot both
    // decide to create the schema.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context(opening)?;
    let version: i32 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .context(opening)?;
    match version {
        0 => {
            let objects: i64 = tx
                .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |row| row.get(0))
                .context(opening)?;
            if objects > 0 {
                return Err(StoreError::NotOurs {
                    database: path.display().to_string(),
                    reason: format!("it holds {objects} tables or indexes but no schema version"),
                });
            }
            migrate(tx, 0, path)?;
        }
        SCHEMA_VERSION => {}
        found if (1..SCHEMA_VERSION).contains(&found) => migrate(tx, found, path)?,
        found if found > SCHEMA_VERSION => {
            return Err(StoreError::TooNew {
                database: path.display().to_string(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        found => {
            return Err(StoreError::NotOurs {
                database: path.display().to_string(),
                reason: format!("its schema version is {found}"),
            });
        }
    }
    Ok(())
}

/// Brings a file at schema version `from` (0: empty) to [`SCHEMA_VERSION`]
/// in the caller's transaction: all of it, or nothing.
fn migrate(tx: rusqlite::Transaction<'_>, from: i32, path: &Path) -> Result<(), StoreError> {
    for (done, script) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let version = done + 1;
        let what = || {
            format!(
                "could not bring the schema of {} to version {version}",
                path.display()
            )
        };
        tx.execute_batch(script).context(what)?;
        tx.pragma_update(None, "user_version", version as i32)
            .context(what)?;
    }
    tx.commit()
        .context(|| format!("could not save the schema of {}", path.display()))
}

/// A sequence number read back (never negative: the server writes them).
fn seq_at(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Seq> {
    row.get::<_, i64>(column).map(|n| n.max(0) as Seq)
}

/// SQLite integers are i64; a larger sequence number is past every one
/// stored anyway.
fn sql_seq(seq: Seq) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// SQLite limits are i64; a larger `usize` means "no limit" anyway.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Records the highest client id stored from a message's device (a
/// device already deleted is no matter: its sessions are over).
fn note_origin(conn: &Connection, origin: &Option<Origin>) -> rusqlite::Result<usize> {
    let Some(origin) = origin else {
        return Ok(0);
    };
    conn.prepare_cached(
        "UPDATE devices SET last_client_id = max(last_client_id, ?2) WHERE id = ?1",
    )?
    .execute(params![origin.device.0, sql_seq(origin.client_id)])
}

/// One write inside [`SqliteStore::apply`]'s transaction. Statements are cached on
/// the connection, so a batch of thousands compiles each one once.
fn apply_one(conn: &Connection, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::User {
            id,
            name,
            password_hash,
            created,
        } => conn
            .prepare_cached(
                "INSERT INTO users (id, name, name_key, password_hash, created)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![id.0, name, user_key(name), password_hash, created])
            })
            .context(|| format!("could not save new user {name} (id {id})"))?,
        Write::Room {
            id,
            name,
            admin,
            capacity,
            created,
        } => conn
            .prepare_cached(
                "INSERT INTO rooms (id, name, name_key, admin, capacity, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id.0,
                    name,
                    room_key(name),
                    admin.0,
                    capacity,
                    created
                ])
            })
            .context(|| format!("could not save new room #{id} {name:?}"))?,
        Write::CloseRoom { id, closed } => {
            let changed = conn
                .prepare_cached("UPDATE rooms SET closed = IFNULL(closed, ?2) WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id.0, closed]))
                .context(|| format!("could not close room #{id}"))?;
            if changed == 0 {
                return Err(StoreError::NoSuchRoom(*id));
            }
            changed
        }
        Write::RoomMessage {
            id,
            seq,
            origin,
            room,
            sender,
            text,
            sent,
        } => {
            conn.prepare_cached(
                "INSERT INTO messages (id, seq, sender, room, body, sent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| s.execute(params![id.0, sql_seq(*seq), sender.0, room.0, text, sent]))
            .and_then(|n| note_origin(conn, origin).map(|_| n))
            .context(|| format!("could not save message {id} from user {sender} in room #{room}"))?
        }
        Write::PrivateMessage {
            id,
            seq,
            origin,
            sender,
            recipient,
            text,
            sent,
        } => conn
            .prepare_cached(
                "INSERT INTO messages (id, seq, sender, recipient, body, sent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| {
                let seq = sql_seq(*seq);
                s.execute(params![id.0, seq, sender.0, recipient.0, text, sent])
            })
            .and_then(|_| {
                // Both ends list the dialogue; after the first message
                // these find their rows and write nothing.
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO dialogues (user, other) VALUES (?1, ?2), (?2, ?1)",
                )?
                .execute(params![sender.0, recipient.0])
            })
            .and_then(|n| note_origin(conn, origin).map(|_| n))
            .context(|| {
                format!(
                    "could not save private message {id} from user {sender} to user {recipient}"
                )
            })?,
        Write::MarkRead {
            recipient,
            sender,
            upto,
        } => conn
            .prepare_cached(MARK_READ)
            .and_then(|mut s| s.execute(params![recipient.0, sender.0, sql_seq(*upto)]))
            .context(|| {
                format!("could not mark the messages from user {sender} to user {recipient} read")
            })?,
        Write::Device {
            id,
            user,
            token_hash,
            created,
        } => conn
            .prepare_cached(
                "INSERT INTO devices (id, user, token_hash, created, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )
            .and_then(|mut s| s.execute(params![id.0, user.0, &token_hash[..], created]))
            .context(|| format!("could not save new device {id} of user {user}"))?,
        Write::RotateDevice {
            id,
            token_hash,
            previous_hash,
            used,
        } => conn
            .prepare_cached(
                "UPDATE devices SET token_hash = ?2, previous_hash = ?3, last_used = ?4
                 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id.0, &token_hash[..], &previous_hash[..], used]))
            .context(|| format!("could not give device {id} its new token"))?,
        Write::DeleteDevice { id } => conn
            .prepare_cached("DELETE FROM devices WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id.0]))
            .context(|| format!("could not delete device {id}"))?,
        // The one server of an SQLite file keeps membership in memory.
        Write::Join { .. } | Write::Leave { .. } | Write::Away { .. } => 0,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{TokenHash, password};
    use tempfile::TempDir;

    fn fresh() -> (TempDir, PathBuf, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let store = SqliteStore::open(&path).unwrap();
        (dir, path, store)
    }

    fn user(id: i64, name: &str) -> Write {
        Write::User {
            id: UserId(id),
            name: name.to_owned(),
            password_hash: format!("hash-of-{name}"),
            created: 1000 + id,
        }
    }

    fn room(id: i64, name: &str, admin: i64) -> Write {
        Write::Room {
            id: RoomId(id),
            name: name.to_owned(),
            admin: UserId(admin),
            capacity: 10,
            created: 2000 + id,
        }
    }

    fn pm(id: i64, sender: i64, recipient: i64, text: &str) -> Write {
        Write::PrivateMessage {
            id: MessageId(id),
            // Numbered by id: increasing in every dialogue, as the server
            // numbers them (where it leaves no gaps).
            seq: id as Seq,
            origin: None,
            sender: UserId(sender),
            recipient: UserId(recipient),
            text: text.into(),
            sent: 10_000 + id,
        }
    }

    fn rm(id: i64, room: i64, sender: i64, text: &str) -> Write {
        Write::RoomMessage {
            id: MessageId(id),
            seq: id as Seq,
            origin: None,
            room: RoomId(room),
            sender: UserId(sender),
            text: text.into(),
            sent: 10_000 + id,
        }
    }

    /// Users 1 ann, 2 bob, 3 cat.
    fn with_users() -> (TempDir, PathBuf, SqliteStore) {
        let (dir, path, mut store) = fresh();
        store
            .apply(&[user(1, "ann"), user(2, "Bob"), user(3, "cat")])
            .unwrap();
        (dir, path, store)
    }

    fn pragma_i64(store: &SqliteStore, name: &str) -> i64 {
        store
            .conn
            .pragma_query_value(None, name, |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn open_sets_pragmas_and_schema_persists() {
        let (_dir, path, store) = fresh();
        let mode: String = store
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(pragma_i64(&store, "foreign_keys"), 1);
        assert_eq!(pragma_i64(&store, "synchronous"), 2); // FULL
        assert_eq!(pragma_i64(&store, "page_size"), PAGE_SIZE);
        assert_eq!(pragma_i64(&store, "cache_size"), -CACHE_KIB);
        assert_eq!(pragma_i64(&store, "wal_autocheckpoint"), CHECKPOINT_PAGES);
        assert_eq!(pragma_i64(&store, "user_version"), SCHEMA_VERSION as i64);
        drop(store);

        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(pragma_i64(&store, "user_version"), SCHEMA_VERSION as i64);
        store.apply(&[user(1, "ann")]).unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap().users.len(), 1);
    }

    #[test]
    fn sync_normal_is_in_force_and_described() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let mut store = SqliteStore::open_with(&path, Sync::Normal).unwrap();
        assert_eq!(pragma_i64(&store, "synchronous"), 1); // NORMAL
        let line = store.describe().unwrap();
        assert!(line.contains("synchronous=1 (NORMAL)"), "{line}");
        assert!(line.contains("journal_mode=wal"), "{line}");
        assert!(line.contains(&path.display().to_string()), "{line}");
        let mut store = SqliteStore::open(&path).unwrap();
        assert!(store.describe().unwrap().contains("synchronous=2 (FULL)"));
    }

    #[test]
    fn newer_schema_is_refused() {
        let (_dir, path, store) = fresh();
        store.conn.pragma_update(None, "user_version", 7).unwrap();
        drop(store);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 7, .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "database {} has schema version 7, newer than this chatapp understands \
                 ({SCHEMA_VERSION}): run a newer chatapp, or point --data-dir or --database elsewhere",
                path.display()
            )
        );
    }

    #[test]
    fn foreign_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE users (x)").unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotOurs { .. }), "{err}");
        assert!(err.to_string().contains("not made by chatapp"), "{err}");
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
    }

    #[test]
    fn batch_survives_reopening() {
        let (_dir, path, mut store) = with_users();
        store
            .apply(&[
                room(1, "Lobby", 1),
                rm(1, 1, 1, "hello room"),
                pm(2, 1, 2, "hi bob"),
                pm(3, 2, 1, "hi ann"),
            ])
            .unwrap();
        drop(store);

        let mut store = SqliteStore::open(&path).unwrap();
        let snap = store.load().unwrap();
        assert_eq!(
            snap.users,
            vec![
                UserRow {
                    id: UserId(1),
                    name: "ann".into(),
                    password_hash: "hash-of-ann".into()
                },
                UserRow {
                    id: UserId(2),
                    name: "Bob".into(),
                    password_hash: "hash-of-Bob".into()
                },
                UserRow {
                    id: UserId(3),
                    name: "cat".into(),
                    password_hash: "hash-of-cat".into()
                },
            ]
        );
        assert_eq!(
            snap.unread,
            vec![(UserId(1), UserId(2), 1), (UserId(2), UserId(1), 1)]
        );
        assert_eq!(snap.next_user, UserId(4));
        assert_eq!(snap.next_room, RoomId(2));
        assert_eq!(snap.next_message, MessageId(4));
        assert_eq!(
            store
                .room_history(RoomId(1), Page::Before(Seq::MAX), 20)
                .unwrap(),
            vec![RoomRow {
                id: MessageId(1),
                seq: 1,
                sender: UserId(1),
                sender_name: "ann".into(),
                text: "hello room".into(),
                sent: 10_001
            }]
        );
    }

    #[test]
    fn empty_database_snapshot() {
        let (_dir, _path, mut store) = fresh();
        let snap = store.load().unwrap();
        assert!(snap.users.is_empty() && snap.unread.is_empty());
        assert_eq!(
            (snap.next_user, snap.next_room, snap.next_message),
            (UserId(1), RoomId(1), MessageId(1))
        );
    }

    #[test]
    fn duplicate_name_in_other_case_fails_whole_batch() {
        let (_dir, path, mut store) = with_users();
        let err = store
            .apply(&[user(4, "dan"), pm(1, 1, 2, "lost"), user(5, "BOB")])
            .unwrap_err();
        assert!(err.is_constraint_violation(), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("could not save new user BOB (id 5)"),
            "{text}"
        );
        assert!(
            text.contains("none of the 3 writes in this batch were saved"),
            "{text}"
        );
        drop(store);

        let mut store = SqliteStore::open(&path).unwrap();
        let snap = store.load().unwrap();
        assert_eq!(snap.users.len(), 3);
        assert_eq!(snap.next_user, UserId(4));
        assert_eq!(snap.next_message, MessageId(1));
    }

    #[test]
    fn room_name_unique_only_while_open() {
        let (_dir, _path, mut store) = with_users();
        store.apply(&[room(1, "Lobby", 1)]).unwrap();
        let err = store.apply(&[room(2, "  lobby ", 2)]).unwrap_err();
        assert!(err.is_constraint_violation(), "{err}");
        store
            .apply(&[Write::CloseRoom {
                id: RoomId(1),
                closed: 5000,
            }])
            .unwrap();
        store.apply(&[room(2, "LOBBY", 2)]).unwrap();
    }

    #[test]
    fn closing_unknown_room_fails_batch() {
        let (_dir, _path, mut store) = with_users();
        let err = store
            .apply(&[
                room(1, "a", 1),
                Write::CloseRoom {
                    id: RoomId(9),
                    closed: 1,
                },
            ])
            .unwrap_err();
        assert!(matches!(err, StoreError::NoSuchRoom(RoomId(9))), "{err}");
        assert_eq!(store.load().unwrap().next_room, RoomId(1));
    }

    #[test]
    fn bad_capacity_refused() {
        let (_dir, _path, mut store) = with_users();
        let err = store
            .apply(&[Write::Room {
                id: RoomId(1),
                name: "tiny".into(),
                admin: UserId(1),
                capacity: 1,
                created: 0,
            }])
            .unwrap_err();
        assert!(err.is_constraint_violation(), "{err}");
    }

    #[test]
    fn open_rooms_come_back_with_their_last_number_and_newest_lines() {
        let (_dir, path, mut store) = with_users();
        let mut writes = vec![
            room(1, "a", 1),
            room(2, "b", 1),
            room(3, "c", 2),
            Write::CloseRoom {
                id: RoomId(2),
                closed: 100,
            },
        ];
        for id in 1..=5 {
            writes.push(rm(id, 1, 2, &format!("a{id}")));
        }
        store.apply(&writes).unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        let open = store.open_rooms(2).unwrap();
        let summary: Vec<(i64, &str, i64, Seq, Vec<&str>)> = open
            .iter()
            .map(|r| {
                let texts = r.history.iter().map(|l| l.text.as_str()).collect();
                (r.id.0, r.name.as_str(), r.admin.0, r.last_seq, texts)
            })
            .collect();
        assert_eq!(
            summary,
            [(1, "a", 1, 5, vec!["a4", "a5"]), (3, "c", 2, 0, vec![])]
        );
        assert_eq!(open[0].capacity, 10);
    }

    #[test]
    fn conversations_group_both_directions() {
        let (_dir, _path, mut store) = with_users();
        store
            .apply(&[
                pm(1, 2, 1, "bob to ann 1"),
                pm(2, 2, 1, "bob to ann 2"),
                pm(3, 1, 3, "ann to cat"),
                pm(4, 1, 2, "ann to bob"),
                pm(5, 3, 2, "cat to bob"),
            ])
            .unwrap();

        let ann = store.conversations(UserId(1)).unwrap();
        assert_eq!(
            ann,
            vec![
                Conversation {
                    other: UserId(2),
                    other_name: "Bob".into(),
                    last_sender: UserId(1),
                    last_text: "ann to bob".into(),
                    last_time: 10_004,
                    unread: 2,
                },
                Conversation {
                    other: UserId(3),
                    other_name: "cat".into(),
                    last_sender: UserId(1),
                    last_text: "ann to cat".into(),
                    last_time: 10_003,
                    unread: 0,
                },
            ]
        );

        let bob = store.conversations(UserId(2)).unwrap();
        let summary: Vec<_> = bob
            .iter()
            .map(|c| (c.other.0, c.last_text.as_str(), c.unread))
            .collect();
        assert_eq!(summary, vec![(3, "cat to bob", 1), (1, "ann to bob", 1)]);

        // A reply moves the conversation to the top.
        store.apply(&[pm(6, 3, 1, "cat to ann")]).unwrap();
        let ann = store.conversations(UserId(1)).unwrap();
        assert_eq!(ann[0].other, UserId(3));
        assert_eq!(ann[0].last_sender, UserId(3));
        assert_eq!(ann[0].unread, 1);
        assert_eq!(ann.len(), 2);

        // Room messages are no conversation.
        store
            .apply(&[room(1, "r", 1), rm(7, 1, 1, "to the room")])
            .unwrap();
        assert_eq!(store.conversations(UserId(1)).unwrap().len(), 2);
        assert!(store.conversations(UserId(99)).unwrap().is_empty());
    }

    #[test]
    fn mark_read_clears_one_direction() {
        let (_dir, path, mut store) = with_users();
        store
            .apply(&[
                pm(1, 2, 1, "b1"),
                pm(2, 2, 1, "b2"),
                pm(3, 1, 2, "a1"),
                pm(4, 3, 1, "c1"),
            ])
            .unwrap();
        store
            .apply(&[Write::MarkRead {
                recipient: UserId(1),
                sender: UserId(2),
                upto: 2,
            }])
            .unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.load().unwrap().unread,
            vec![(UserId(1), UserId(3), 1), (UserId(2), UserId(1), 1)]
        );
        let ann = store.conversations(UserId(1)).unwrap();
        let unread: Vec<(i64, u32)> = ann.iter().map(|c| (c.other.0, c.unread)).collect();
        assert_eq!(unread, vec![(3, 1), (2, 0)]);
        // What comes after the mark is unread again.
        store.apply(&[pm(5, 2, 1, "b3")]).unwrap();
        assert_eq!(
            store.load().unwrap().unread,
            vec![
                (UserId(1), UserId(2), 1),
                (UserId(1), UserId(3), 1),
                (UserId(2), UserId(1), 1)
            ]
        );
    }

    #[test]
    fn a_version_1_file_is_migrated_keeping_messages_and_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "INSERT INTO users VALUES (1, 'ann', 'ann', 'h', 0), (2, 'Bob', 'bob', 'h', 0),
                                      (3, 'cat', 'cat', 'h', 0);
             INSERT INTO messages (id, sender, recipient, body, sent, read) VALUES
                 (1, 2, 1, 'b1', 1, 1), (2, 1, 2, 'a1', 2, 0), (3, 2, 1, 'b2', 3, 1),
                 (4, 2, 1, 'b3', 4, 0), (5, 3, 1, 'c1', 5, 0), (6, 1, 1, 'note', 6, 1);
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);

        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(pragma_i64(&store, "user_version"), SCHEMA_VERSION as i64);
        assert_eq!(
            store.load().unwrap().unread,
            vec![
                (UserId(1), UserId(2), 1),
                (UserId(1), UserId(3), 1),
                (UserId(2), UserId(1), 1)
            ]
        );
        let ann: Vec<(i64, String, u32)> = store
            .conversations(UserId(1))
            .unwrap()
            .into_iter()
            .map(|c| (c.other.0, c.last_text, c.unread))
            .collect();
        assert_eq!(
            ann,
            vec![
                (1, "note".into(), 0),
                (3, "c1".into(), 1),
                (2, "b3".into(), 1)
            ]
        );
        let texts: Vec<String> = store
            .dialogue(UserId(1), UserId(2), Page::Before(Seq::MAX), 50)
            .unwrap()
            .into_iter()
            .map(|r| r.text)
            .collect();
        assert_eq!(texts, ["b1", "a1", "b2", "b3"]);
        let indexes: Vec<String> = store
            .conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages'",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["messages_room_seq", "messages_dialogue_seq"]);
    }

    #[test]
    fn dialogue_is_last_n_oldest_first() {
        let (_dir, _path, mut store) = with_users();
        let mut writes = Vec::new();
        for id in 1..=10 {
            let (from, to) = if id % 2 == 0 { (1, 2) } else { (2, 1) };
            writes.push(pm(id, from, to, &format!("m{id}")));
        }
        writes.push(pm(11, 1, 3, "elsewhere"));
        writes.push(pm(12, 1, 1, "note to self"));
        store.apply(&writes).unwrap();

        let rows = store
            .dialogue(UserId(1), UserId(2), Page::Before(Seq::MAX), 4)
            .unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, vec![7, 8, 9, 10]);
        assert_eq!(rows[0].sender, UserId(2));
        assert_eq!(rows[0].sender_name, "Bob");
        assert_eq!(rows[0].recipient, UserId(1));
        assert_eq!(rows[0].text, "m7");
        assert_eq!(rows[0].sent, 10_007);
        // Same from the other side, and with a limit beyond the count.
        let all = store
            .dialogue(UserId(2), UserId(1), Page::Before(Seq::MAX), usize::MAX)
            .unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(all.first().unwrap().id, MessageId(1));
        let own = store
            .dialogue(UserId(1), UserId(1), Page::Before(Seq::MAX), 50)
            .unwrap();
        assert_eq!(own.len(), 1);
        assert!(
            store
                .dialogue(UserId(2), UserId(3), Page::Before(Seq::MAX), 50)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn room_history_is_last_n_oldest_first() {
        let (_dir, _path, mut store) = with_users();
        let mut writes = vec![room(1, "a", 1), room(2, "b", 2)];
        for id in 1..=30 {
            writes.push(rm(id, 1 + id % 2, 1 + id % 3, &format!("m{id}")));
        }
        store.apply(&writes).unwrap();
        let rows = store
            .room_history(RoomId(1), Page::Before(Seq::MAX), 5)
            .unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.id.0).collect();
        assert_eq!(ids, vec![22, 24, 26, 28, 30]);
        assert_eq!(rows[4].sender, UserId(1));
        assert_eq!(rows[4].sender_name, "ann");
        assert_eq!(rows[4].text, "m30");
        assert_eq!(
            store
                .room_history(RoomId(2), Page::Before(Seq::MAX), 100)
                .unwrap()
                .len(),
            15
        );
        assert!(
            store
                .room_history(RoomId(3), Page::Before(Seq::MAX), 100)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_conversation_never_holds_two_messages_with_one_number() {
        let (_dir, _path, mut store) = with_users();
        store
            .apply(&[room(1, "a", 1), rm(1, 1, 1, "one"), pm(2, 1, 2, "one")])
            .unwrap();
        // Numbered as the first message of the room and of the dialogue.
        let renumbered = |mut write: Write| {
            match &mut write {
                Write::RoomMessage { seq, .. } => *seq = 1,
                Write::PrivateMessage { seq, .. } => *seq = 2,
                _ => unreachable!(),
            }
            write
        };
        for dup in [rm(3, 1, 2, "two"), pm(4, 2, 1, "two")] {
            let err = store.apply(&[renumbered(dup.clone())]).unwrap_err();
            assert!(err.is_constraint_violation(), "{dup:?}: {err}");
        }
        // The same number in another conversation is another message.
        store
            .apply(&[
                room(2, "b", 1),
                renumbered(rm(5, 2, 1, "x")),
                renumbered(pm(6, 1, 3, "x")),
            ])
            .unwrap();
    }

    #[test]
    fn foreign_keys_are_enforced() {
        let (_dir, _path, mut store) = with_users();
        for bad in [
            pm(1, 1, 42, "to nobody"),
            pm(1, 42, 1, "from nobody"),
            rm(1, 7, 1, "no such room"),
            room(1, "orphan", 42),
        ] {
            let err = store.apply(std::slice::from_ref(&bad)).unwrap_err();
            assert!(err.is_constraint_violation(), "{bad:?}: {err}");
        }
        assert_eq!(store.load().unwrap().next_message, MessageId(1));
    }

    #[test]
    fn large_batch_is_one_transaction() {
        let (_dir, path, mut store) = with_users();
        let mut writes = vec![room(1, "busy", 1)];
        writes.extend((1..=5000).map(|id| rm(id, 1, 1 + id % 3, "spam")));
        store.apply(&writes).unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap().next_message, MessageId(5001));
    }

    #[test]
    fn password_plaintext_never_reaches_the_file() {
        let secret = "zebra-quantum-lighthouse-47";
        let (dir, path, mut store) = fresh();
        let phc = password::hash(secret, password::HashCost::TEST);
        store
            .apply(&[Write::User {
                id: UserId(1),
                name: "ann".into(),
                password_hash: phc.clone(),
                created: 0,
            }])
            .unwrap();
        // Check the WAL as well as the main file, before and after the
        // checkpoint that closing performs.
        let scan = || {
            let mut all = Vec::new();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                all.extend(std::fs::read(entry.unwrap().path()).unwrap());
            }
            all
        };
        let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(contains(&scan(), phc.as_bytes()));
        assert!(!contains(&scan(), secret.as_bytes()));
        drop(store);
        assert!(!contains(&scan(), secret.as_bytes()));
        let mut store = SqliteStore::open(&path).unwrap();
        let stored = &store.load().unwrap().users[0].password_hash;
        assert!(password::verify(secret, stored));
    }

    #[test]
    fn devices_are_created_rotated_and_deleted() {
        let (_dir, path, mut store) = with_users();
        let hash = |b: u8| -> TokenHash { [b; 32] };
        store
            .apply(&[
                Write::Device {
                    id: DeviceId(1),
                    user: UserId(1),
                    token_hash: hash(1),
                    created: 100,
                },
                Write::Device {
                    id: DeviceId(2),
                    user: UserId(2),
                    token_hash: hash(2),
                    created: 200,
                },
                Write::RotateDevice {
                    id: DeviceId(1),
                    token_hash: hash(3),
                    previous_hash: hash(1),
                    used: 300,
                },
                Write::DeleteDevice { id: DeviceId(2) },
                Write::DeleteDevice { id: DeviceId(9) },
            ])
            .unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.load().unwrap().devices,
            vec![DeviceRow {
                id: DeviceId(1),
                user: UserId(1),
                token_hash: hash(3),
                previous_hash: Some(hash(1)),
                created: 100,
                last_used: 300,
                last_client_id: 0,
            }]
        );
        // A token hash names one device only.
        let err = store
            .apply(&[Write::Device {
                id: DeviceId(3),
                user: UserId(3),
                token_hash: hash(3),
                created: 400,
            }])
            .unwrap_err();
        assert!(err.is_constraint_violation(), "{err}");
    }

    #[test]
    fn history_queries_use_indexes() {
        let (_dir, _path, store) = with_users();
        for sql in [CONVERSATIONS, DIALOGUE, ROOM_HISTORY, UNREAD, MARK_READ] {
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let count = stmt.parameter_count();
            let details: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(1..=count as i64), |row| {
                    row.get(3)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = details.join("\n");
            println!("{plan}\n");
            for line in &details {
                assert!(
                    !line.starts_with("SCAN messages") && !line.starts_with("SCAN last"),
                    "a full scan of messages in\n{plan}\nfor\n{sql}"
                );
            }
        }
    }
}
