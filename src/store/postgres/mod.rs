//! The PostgreSQL backend of [`Store`]: the same tables and the same
//! promises as the SQLite one, in a database that several chatapp nodes
//! can share.
//!
//! It speaks through the sync `postgres` crate, which runs a small tokio
//! runtime of its own inside the client; the client lives on the store
//! thread and nowhere else. Every batch is one transaction, committed with
//! `synchronous_commit=on` (set on the session, whatever the server's
//! default), so once [`Store::apply`] returns the writes are on the
//! database server's disk. A connection that broke (the database restarted,
//! the network failed) is opened again by the next call; the call that
//! found it broken fails and says so.
//!
//! A batch may be tried again after its commit was sent but its answer
//! lost (the store thread does that when the database comes back), so the
//! inserts of rows whose ids the server chose skip a row already there:
//! the batch then commits once, whichever try reached the disk.
//!
//! The schema version lives in the table `chatapp_schema`. As with SQLite,
//! an empty database gets the schema, a newer one is refused, and one that
//! holds tables of another program is refused untouched. Nodes starting
//! together take an advisory lock, so only one of them creates the schema.

mod locks;

use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement};

use super::{
    Conversation, DeviceRow, OpenRoom, Origin, Page, PrivateRow, RoomRow, Snapshot, Store,
    StoreError, UserRow, Write,
};
use crate::model::{DeviceId, IdSpace, MessageId, RoomId, Seq, UserId, room_key, user_key};

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i32 = 4;

/// Each version's script, run in order from the one after the database's
/// version: version 1 creates the schema, version 2 has the database give
/// out sequence numbers, version 3 keeps room membership for servers
/// sharing the database, version 4 which members are away.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    include_str!("schema.sql"),
    include_str!("schema2.sql"),
    include_str!("schema3.sql"),
    include_str!("schema4.sql"),
];

/// The advisory lock that nodes take while they check or create the
/// schema ("chatapp" in ASCII).
const SCHEMA_LOCK: i64 = 0x0063_6861_7461_7070;

/// The advisory lock a server holds on its connection for as long as it
/// uses the database: one server per database, for now. The database
/// gives out sequence numbers, but each server still keeps ids, names and
/// room membership in its own memory, so a second one would hand out the
/// same ids (and a repeated id is skipped, see above): it is refused
/// instead, as a second server on one SQLite file is.
const SERVER_LOCK: i64 = SCHEMA_LOCK + 1;

/// Servers sharing a database (`--bus`) each hold one of these advisory
/// locks, `SLOT_LOCK + slot`, for as long as they use it: the slot their
/// ids come from (`model::IdSpace`), so no two running servers have the
/// same. They hold [`SERVER_LOCK`] shared, so a server running alone
/// (which holds it exclusive) and servers sharing are refused each
/// other.
const SLOT_LOCK: i64 = SERVER_LOCK + 1;

/// The most servers that may share one database at once: the step of
/// their ids.
pub const SLOTS: i64 = 64;

/// How long connecting may take before the store gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A private message's dialogue key as `messages_dialogue_seq` spells it,
/// for the two users given as SQL expressions.
macro_rules! dialogue_of {
    ($a:literal, $b:literal) => {
        concat!(
            "LEAST(sender, recipient) = LEAST(",
            $a,
            ", ",
            $b,
            ") AND GREATEST(sender, recipient) = GREATEST(",
            $a,
            ", ",
            $b,
            ") AND recipient IS NOT NULL"
        )
    };
}

/// Messages from `d.other` to `d.user_id` after `d.read_seq`, for a row
/// `d` of `dialogues`.
macro_rules! unread_of_d {
    () => {
        concat!(
            "(SELECT COUNT(*) FROM messages WHERE ",
            dialogue_of!("d.user_id", "d.other"),
            " AND seq > d.read_seq AND sender = d.other)"
        )
    };
}

const UNREAD: &str = concat!(
    "SELECT user_id, other, n FROM (SELECT d.user_id, d.other, ",
    unread_of_d!(),
    " AS n FROM dialogues AS d) AS counts WHERE n > 0 ORDER BY user_id, other"
);

/// The id slots whose advisory lock ([`SLOT_LOCK`]) a session holds in
/// this database, lowest first: the running servers'. An advisory lock on
/// a 64-bit key shows in `pg_locks` as its high half (`classid`) and its
/// low half (`objid`).
const LIVE_SLOTS: &str = "SELECT DISTINCT key - $1 FROM (
        SELECT (l.classid::bigint << 32) | l.objid::bigint AS key
        FROM pg_locks AS l
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ) AS held WHERE key BETWEEN $1 AND $2 ORDER BY 1";

/// Places in open rooms kept for a server that is not running (`$1`
/// lists those that are), and admins of open rooms without a place.
const ORPHANS: &str = "SELECT room, user_id FROM room_members WHERE NOT (node = ANY($1))
    UNION
    SELECT r.id, r.admin FROM rooms AS r
    WHERE r.closed IS NULL
      AND NOT EXISTS (SELECT 1 FROM room_members AS m WHERE m.room = r.id AND m.user_id = r.admin)
    ORDER BY 1, 2";

const DIALOGUE_SEQS: &str = "SELECT a, b, last_seq FROM dialogue_seqs ORDER BY a, b";

const CONVERSATIONS: &str = concat!(
    "SELECT d.other, u.name, last.sender, last.body, last.sent, ",
    unread_of_d!(),
    " FROM dialogues AS d
JOIN messages AS last ON last.id = (SELECT id FROM messages WHERE ",
    dialogue_of!("d.user_id", "d.other"),
    " ORDER BY seq DESC LIMIT 1)
JOIN users AS u ON u.id = d.other
WHERE d.user_id = $1
ORDER BY last.id DESC"
);

/// The last $3 messages between $1 and $2 numbered below $4 and above $5.
const DIALOGUE: &str = concat!(
    "SELECT page.id, page.seq, page.sender, u.name, page.recipient, page.body, page.sent
FROM (
    SELECT id, seq, sender, recipient, body, sent FROM messages
    WHERE ",
    dialogue_of!("$1::BIGINT", "$2::BIGINT"),
    " AND seq < $4 AND seq > $5 ORDER BY seq DESC LIMIT $3
) AS page
JOIN users AS u ON u.id = page.sender
ORDER BY page.seq"
);

/// The last $2 messages of room $1 numbered below $3 and above $4.
const ROOM_HISTORY: &str = "SELECT page.id, page.seq, page.sender, u.name, page.body, page.sent
FROM (
    SELECT id, seq, sender, body, sent FROM messages
    WHERE room = $1 AND seq < $3 AND seq > $4 ORDER BY seq DESC LIMIT $2
) AS page
JOIN users AS u ON u.id = page.sender
ORDER BY page.seq";

/// A PostgreSQL error as the store's, with what the store was doing.
fn failed(context: String, source: postgres::Error) -> StoreError {
    let constraint = source.code().is_some_and(|code| {
        [
            SqlState::UNIQUE_VIOLATION,
            SqlState::FOREIGN_KEY_VIOLATION,
            SqlState::CHECK_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
        ]
        .contains(code)
    });
    StoreError::Failed {
        context,
        constraint,
        source: Box::new(source),
    }
}

trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, postgres::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| failed(what(), source))
    }
}

/// The database as the operator named it, without its password: host,
/// port and database name.
pub fn display_name(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{db} on {host}:{port}")
}

/// An open connection to a chatapp database, opened again when it breaks.
pub struct PostgresStore {
    config: postgres::Config,
    name: String,
    client: Option<Client>,
    /// Statements prepared on `client`, by their text.
    prepared: HashMap<&'static str, Statement>,
    /// Shared with other servers (`--bus`): the id slot this one holds,
    /// once it has one.
    shared: Option<Option<i64>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.name)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a
    /// `key=value` string), and creates or checks its schema.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect(url, None)
    }

    /// As [`PostgresStore::open`], for a server that shares the database
    /// with others: it takes a free id slot instead of the database
    /// for itself.
    pub fn open_shared(url: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect(url, Some(None))
    }

    fn connect(url: &str, shared: Option<Option<i64>>) -> Result<PostgresStore, StoreError> {
        let mut config: postgres::Config = url.parse().map_err(|source| StoreError::Failed {
            context: "the database URL is not one PostgreSQL understands \
                      (postgres://USER:PASSWORD@HOST:PORT/DATABASE)"
                .to_string(),
            constraint: false,
            source: Box::new(source),
        })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let name = display_name(&config);
        let mut store = PostgresStore {
            config,
            name,
            client: None,
            prepared: HashMap::new(),
            shared,
        };
        let name = store.name.clone();
        prepare_schema(store.client()?, &name)?;
        Ok(store)
    }

    /// The connection, opened again if it was lost.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.prepared.clear();
            self.client = None;
            let mut client = self.config.connect(NoTls).map_err(|source| {
                let context = "could not connect: is PostgreSQL running there, and do the \
                               user, password and database that --database (or \
                               CHATAPP_DATABASE) names exist?"
                    .to_string();
                match source.code() {
                    // The server answered and refused: a wrong password,
                    // a missing database. Trying again will not help.
                    Some(code) if !is_outage(code) => failed(context, source),
                    _ => StoreError::Unavailable {
                        context,
                        source: Box::new(source),
                    },
                }
            })?;
            // Commits wait for the disk, whatever the server's default.
            client
                .batch_execute("SET synchronous_commit = on")
                .context(|| "could not set up the session".to_string())?;
            let lock = match self.shared {
                None => "SELECT pg_try_advisory_lock($1)",
                Some(_) => "SELECT pg_try_advisory_lock_shared($1)",
            };
            let held: bool = client
                .query_one(lock, &[&SERVER_LOCK])
                .context(|| "could not take the database's server lock".to_string())?
                .get(0);
            if !held {
                return Err(StoreError::InUse {
                    database: self.name.clone(),
                });
            }
            if let Some(held) = self.shared {
                self.shared = Some(Some(take_slot(&mut client, held, &self.name)?));
            }
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Runs a read with `sql` prepared once per connection.
    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + std::marker::Sync)],
        what: impl Fn() -> String,
    ) -> Result<Vec<Row>, StoreError> {
        self.client()?;
        let client = self.client.as_mut().expect("connected above");
        let result = prepare(client, &mut self.prepared, sql)
            .and_then(|statement| client.query(&statement, params))
            .context(what);
        self.outage(result)
    }

    /// A failure that came from losing the database rather than from the
    /// call itself, as [`StoreError::Unavailable`]; the connection is then
    /// dropped, to be opened again by the next call.
    fn outage<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let Err(StoreError::Failed {
            context,
            constraint: false,
            source,
        }) = result
        else {
            return result;
        };
        let code = source
            .downcast_ref::<postgres::Error>()
            .and_then(postgres::Error::code);
        let closed = self.client.as_ref().is_none_or(Client::is_closed);
        if closed || code.is_some_and(is_outage) {
            self.client = None;
            self.prepared.clear();
            return Err(StoreError::Unavailable { context, source });
        }
        Err(StoreError::Failed {
            context,
            constraint: false,
            source,
        })
    }
}

/// `sql` prepared on `client`, once per connection.
fn prepare(
    client: &mut impl GenericClient,
    prepared: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement, postgres::Error> {
    if let Some(statement) = prepared.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql)?;
    prepared.insert(sql, statement.clone());
    Ok(statement)
}

impl Store for PostgresStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let loading = || "could not load the database".to_owned();
        let client = self.client()?;
        // One snapshot, so the parts agree with one another.
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .context(loading)?;
        let users = tx
            .query("SELECT id, name, password_hash FROM users ORDER BY id", &[])
            .context(loading)?
            .iter()
            .map(|row| UserRow {
                id: UserId(row.get(0)),
                name: row.get(1),
                password_hash: row.get(2),
            })
            .collect();
        let unread = tx
            .query(UNREAD, &[])
            .context(loading)?
            .iter()
            .map(|row| (UserId(row.get(0)), UserId(row.get(1)), count(row, 2)))
            .collect();
        let dialogue_seqs = tx
            .query(DIALOGUE_SEQS, &[])
            .context(loading)?
            .iter()
            .map(|row| (UserId(row.get(0)), UserId(row.get(1)), seq_at(row, 2)))
            .collect();
        let devices = tx
            .query(
                "SELECT id, user_id, token_hash, previous_hash, created, last_used, last_client_id
                 FROM devices ORDER BY id",
                &[],
            )
            .context(loading)?
            .iter()
            .map(|row| {
                Ok(DeviceRow {
                    id: DeviceId(row.get(0)),
                    user: UserId(row.get(1)),
                    token_hash: hash(row.get(2))?,
                    previous_hash: row.get::<_, Option<&[u8]>>(3).map(hash).transpose()?,
                    created: row.get(4),
                    last_used: row.get(5),
                    last_client_id: seq_at(row, 6),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let next = tx
            .query_one(
                "SELECT (SELECT COALESCE(MAX(id), 0) + 1 FROM users),
                        (SELECT COALESCE(MAX(id), 0) + 1 FROM rooms),
                        (SELECT COALESCE(MAX(id), 0) + 1 FROM messages)",
                &[],
            )
            .context(loading)?;
        tx.commit().context(loading)?;
        Ok(Snapshot {
            users,
            unread,
            dialogue_seqs,
            next_user: UserId(next.get(0)),
            next_room: RoomId(next.get(1)),
            next_message: MessageId(next.get(2)),
            devices,
        })
    }

    fn open_rooms(&mut self, history: usize) -> Result<Vec<OpenRoom>, StoreError> {
        let reading = || "could not read the rooms left open by the last run".to_owned();
        let rooms: Vec<OpenRoom> = self
            .query(
                "SELECT id, name, admin, capacity, last_seq
                 FROM rooms WHERE closed IS NULL ORDER BY id",
                &[],
                reading,
            )?
            .iter()
            .map(|row| OpenRoom {
                id: RoomId(row.get(0)),
                name: row.get(1),
                admin: UserId(row.get(2)),
                capacity: row.get::<_, i32>(3).max(0) as u32,
                last_seq: seq_at(row, 4),
                history: Vec::new(),
                held: vec![UserId(row.get(2))],
            })
            .collect();
        // Sharing the database, the places to keep are those of the last
        // server in this id slot: the other running servers keep their
        // own, and those of a server gone for good are orphans.
        let mut mine: HashMap<RoomId, Vec<UserId>> = HashMap::new();
        if let Some(Some(slot)) = self.shared {
            let rows = self.query(
                "SELECT room, user_id FROM room_members WHERE node = $1 ORDER BY room, user_id",
                &[&slot],
                || format!("could not read the room members of id slot {slot}"),
            )?;
            for row in rows {
                (mine.entry(RoomId(row.get(0))).or_default()).push(UserId(row.get(1)));
            }
        }
        rooms
            .into_iter()
            .map(|mut room| {
                if self.shared.is_some() {
                    room.held = mine.remove(&room.id).unwrap_or_default();
                }
                room.history = self.room_history(room.id, Page::Before(Seq::MAX), history)?;
                Ok(room)
            })
            .collect()
    }

    fn members(&mut self, room: RoomId) -> Result<Vec<String>, StoreError> {
        let rows = self.query(
            "SELECT u.name FROM room_members AS m JOIN users AS u ON u.id = m.user_id
             WHERE m.room = $1 ORDER BY u.id",
            &[&room.0],
            || format!("could not read the members of room #{room}"),
        )?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn orphans(&mut self) -> Result<Vec<(RoomId, UserId)>, StoreError> {
        let Some(Some(slot)) = self.shared else {
            return Ok(Vec::new());
        };
        let live: Vec<i64> = self
            .query(LIVE_SLOTS, &[&SLOT_LOCK, &(SLOT_LOCK + SLOTS - 1)], || {
                "could not read which id slots running servers hold".to_string()
            })?
            .iter()
            .map(|row| row.get(0))
            .collect();
        // The lowest running slot answers for the servers gone. This one
        // holds its own lock (a connection just opened again took it
        // first), so the list has it.
        if live.first() != Some(&slot) {
            return Ok(Vec::new());
        }
        let rows = self.query(ORPHANS, &[&live], || {
            "could not read the places no running server keeps".to_string()
        })?;
        Ok(rows
            .iter()
            .map(|row| (RoomId(row.get(0)), UserId(row.get(1))))
            .collect())
    }

    fn apply(&mut self, writes: &[Write]) -> Result<Vec<Seq>, StoreError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let count = writes.len();
        let batch = move |what: String| {
            move || format!("{what}; none of the {count} writes in this batch were saved")
        };
        self.client()?;
        let node = self.shared.flatten();
        let client = self.client.as_mut().expect("connected above");
        let prepared = &mut self.prepared;
        let mut attempt = || {
            let mut tx = client
                .transaction()
                .context(batch("could not start a transaction".to_owned()))?;
            if node.is_some() {
                locks::lock_in_order(&mut tx, prepared, writes)
                    .context(batch("could not lock the rows it changes".to_owned()))?;
            }
            let mut numbers = Vec::new();
            for write in writes {
                let number = apply_one(&mut tx, prepared, node, write).map_err(|e| match e {
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
                numbers.extend(number);
            }
            tx.commit()
                .context(batch("could not commit".to_owned()))
                .map(|()| numbers)
        };
        // A batch PostgreSQL rolled back to break a deadlock or a
        // serialization conflict with another server's left nothing
        // behind: it is tried again at once, a few times.
        let mut result = attempt();
        for _ in 1..CONFLICT_TRIES {
            if !result.as_ref().is_err_and(is_conflict) {
                break;
            }
            result = attempt();
        }
        self.outage(result)
    }

    fn conversations(&mut self, user: UserId) -> Result<Vec<Conversation>, StoreError> {
        let rows = self.query(CONVERSATIONS, &[&user.0], || {
            format!("could not list the conversations of user {user}")
        })?;
        Ok(rows
            .iter()
            .map(|row| Conversation {
                other: UserId(row.get(0)),
                other_name: row.get(1),
                last_sender: UserId(row.get(2)),
                last_text: row.get(3),
                last_time: row.get(4),
                unread: count(row, 5),
            })
            .collect())
    }

    fn dialogue(
        &mut self,
        a: UserId,
        b: UserId,
        page: Page,
        limit: usize,
    ) -> Result<Vec<PrivateRow>, StoreError> {
        let (after, before) = page.bounds();
        let (after, before, limit) = (sql_seq(after), sql_seq(before), sql_limit(limit));
        let rows = self.query(DIALOGUE, &[&a.0, &b.0, &limit, &before, &after], || {
            format!("could not read the messages between users {a} and {b}")
        })?;
        Ok(rows
            .iter()
            .map(|row| PrivateRow {
                id: MessageId(row.get(0)),
                seq: seq_at(row, 1),
                sender: UserId(row.get(2)),
                sender_name: row.get(3),
                recipient: UserId(row.get(4)),
                text: row.get(5),
                sent: row.get(6),
            })
            .collect())
    }

    fn room_history(
        &mut self,
        room: RoomId,
        page: Page,
        limit: usize,
    ) -> Result<Vec<RoomRow>, StoreError> {
        let (after, before) = page.bounds();
        let (after, before, limit) = (sql_seq(after), sql_seq(before), sql_limit(limit));
        let rows = self.query(ROOM_HISTORY, &[&room.0, &limit, &before, &after], || {
            format!("could not read the history of room #{room}")
        })?;
        Ok(rows
            .iter()
            .map(|row| RoomRow {
                id: MessageId(row.get(0)),
                seq: seq_at(row, 1),
                sender: UserId(row.get(2)),
                sender_name: row.get(3),
                text: row.get(4),
                sent: row.get(5),
            })
            .collect())
    }

    fn id_space(&self) -> IdSpace {
        match self.shared {
            Some(Some(slot)) => IdSpace { slot, step: SLOTS },
            _ => IdSpace::ALONE,
        }
    }

    fn device(
        &mut self,
        token_hash: &super::TokenHash,
    ) -> Result<Option<(DeviceRow, UserRow)>, StoreError> {
        let rows = self.query(
            "SELECT d.id, d.user_id, d.token_hash, d.previous_hash, d.created, d.last_used,
                    d.last_client_id, u.name, u.password_hash
             FROM devices AS d JOIN users AS u ON u.id = d.user_id
             WHERE d.token_hash = $1",
            &[&&token_hash[..]],
            || "could not look up a resume token".to_owned(),
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let device = DeviceRow {
            id: DeviceId(row.get(0)),
            user: UserId(row.get(1)),
            token_hash: hash(row.get(2))?,
            previous_hash: row.get::<_, Option<&[u8]>>(3).map(hash).transpose()?,
            created: row.get(4),
            last_used: row.get(5),
            last_client_id: seq_at(row, 6),
        };
        let user = UserRow {
            id: device.user,
            name: row.get(7),
            password_hash: row.get(8),
        };
        Ok(Some((device, user)))
    }

    fn describe(&mut self) -> Result<String, StoreError> {
        let reading = || "could not read the database settings".to_owned();
        let row = self
            .client()?
            .query_one(
                "SELECT current_setting('server_version'), current_setting('synchronous_commit'),
                        current_setting('fsync')",
                &[],
            )
            .context(reading)?;
        let (version, sync, fsync): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        Ok(format!(
            "PostgreSQL {version} database {}, synchronous_commit={sync}, fsync={fsync}",
            self.name
        ))
    }
}

/// Takes an id slot's lock on a new connection: `held` again after a
/// reconnection (the lock went with the old connection), else the first
/// free one.
fn take_slot(client: &mut Client, held: Option<i64>, name: &str) -> Result<i64, StoreError> {
    let candidates: Vec<i64> = match held {
        Some(slot) => vec![slot],
        None => (0..SLOTS).collect(),
    };
    for slot in candidates {
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&(SLOT_LOCK + slot)])
            .context(|| "could not take an id slot".to_string())?
            .get(0);
        if taken {
            return Ok(slot);
        }
    }
    Err(StoreError::NoSlot {
        database: name.to_string(),
        slot: held,
    })
}

/// Creates the schema in an empty database, accepts the current version,
/// and refuses anything else without changing it. Nodes that start at
/// once queue on an advisory lock, so one creates and the others find it.
fn prepare_schema(client: &mut Client, name: &str) -> Result<(), StoreError> {
    let opening = || format!("could not open the database {name}");
    let mut tx = client.transaction().context(opening)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .context(opening)?;
    let versioned: bool = tx
        .query_one("SELECT to_regclass('chatapp_schema') IS NOT NULL", &[])
        .context(opening)?
        .get(0);
    let found: i32 = if versioned {
        tx.query_opt("SELECT version FROM chatapp_schema", &[])
            .context(opening)?
            .map_or(0, |row| row.get(0))
    } else {
        let tables: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()",
                &[],
            )
            .context(opening)?
            .get(0);
        if tables > 0 {
            return Err(StoreError::NotOurs {
                database: name.to_string(),
                reason: format!("it holds {tables} tables but no chatapp schema version"),
            });
        }
        0
    };
    match found {
        SCHEMA_VERSION => Ok(()),
        found if (0..SCHEMA_VERSION).contains(&found) && (versioned == (found > 0)) => {
            for (done, script) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                let version = done as i32 + 1;
                let what = || format!("could not bring the schema of {name} to version {version}");
                tx.batch_execute(script).context(what)?;
                tx.execute("DELETE FROM chatapp_schema", &[])
                    .context(what)?;
                tx.execute(
                    "INSERT INTO chatapp_schema (version) VALUES ($1)",
                    &[&version],
                )
                .context(what)?;
            }
            tx.commit()
                .context(|| format!("could not save the schema of {name}"))
        }
        found if found > SCHEMA_VERSION => Err(StoreError::TooNew {
            database: name.to_string(),
            found,
            known: SCHEMA_VERSION,
        }),
        found => Err(StoreError::NotOurs {
            database: name.to_string(),
            reason: format!("its schema version is {found}"),
        }),
    }
}

/// How often a batch rolled back by a conflict with another server's is
/// tried ([`is_conflict`]).
const CONFLICT_TRIES: usize = 3;

/// A deadlock PostgreSQL broke, or a serialization failure: the batch was
/// rolled back through no fault of its own and may simply be tried again.
fn is_conflict(e: &StoreError) -> bool {
    let StoreError::Failed { source, .. } = e else {
        return false;
    };
    source
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::code)
        .is_some_and(|code| {
            [
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::T_R_SERIALIZATION_FAILURE,
            ]
            .contains(code)
        })
}

/// Errors that say the database is going away or not there yet (class
/// 08, connection exception; 57P01 to 57P03, shutting down or starting up)
/// rather than that the call was wrong.
fn is_outage(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code)
}

/// A resume token's hash read back; the schema only ever holds 32 bytes.
fn hash(bytes: &[u8]) -> Result<super::TokenHash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::NotOurs {
        database: "devices".to_string(),
        reason: format!("a token hash of {} bytes instead of 32", bytes.len()),
    })
}

/// A sequence number read back (never negative: the server writes them).
fn seq_at(row: &Row, column: usize) -> Seq {
    row.get::<_, Option<i64>>(column).unwrap_or(0).max(0) as Seq
}

/// A count read back.
fn count(row: &Row, column: usize) -> u32 {
    u32::try_from(row.get::<_, i64>(column)).unwrap_or(u32::MAX)
}

/// PostgreSQL integers are i64; a larger sequence number is past every one
/// stored anyway.
fn sql_seq(seq: Seq) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Records the highest client id stored from a message's device.
fn note_origin(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut HashMap<&'static str, Statement>,
    origin: &Option<Origin>,
) -> Result<u64, postgres::Error> {
    let Some(origin) = origin else {
        return Ok(0);
    };
    let statement = prepare(
        tx,
        prepared,
        "UPDATE devices SET last_client_id = GREATEST(last_client_id, $2) WHERE id = $1",
    )?;
    tx.execute(&statement, &[&origin.device.0, &sql_seq(origin.client_id)])
}

/// Runs one prepared statement inside the batch's transaction.
fn run(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    params: &[&(dyn ToSql + std::marker::Sync)],
) -> Result<u64, postgres::Error> {
    let statement = prepare(tx, prepared, sql)?;
    tx.execute(&statement, params)
}

/// Where a conversation's last number is kept, and the statements that
/// take the next one (the row stays locked until the commit) and give it
/// back.
#[derive(Clone, Copy)]
enum Counter {
    /// `rooms.last_seq`, keyed by the room.
    Room,
    /// `dialogue_seqs.last_seq`, keyed by the two users in either order;
    /// a dialogue's first message makes its row.
    Dialogue,
}

impl Counter {
    fn take(self) -> &'static str {
        match self {
            Counter::Room => {
                "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq"
            }
            Counter::Dialogue => {
                "INSERT INTO dialogue_seqs (a, b, last_seq)
                 VALUES (LEAST($1::BIGINT, $2::BIGINT), GREATEST($1::BIGINT, $2::BIGINT), 1)
                 ON CONFLICT (a, b) DO UPDATE SET last_seq = dialogue_seqs.last_seq + 1
                 RETURNING last_seq"
            }
        }
    }

    fn give_back(self) -> &'static str {
        match self {
            Counter::Room => "UPDATE rooms SET last_seq = last_seq - 1 WHERE id = $1",
            Counter::Dialogue => {
                "UPDATE dialogue_seqs SET last_seq = last_seq - 1
                 WHERE a = LEAST($1::BIGINT, $2::BIGINT) AND b = GREATEST($1::BIGINT, $2::BIGINT)"
            }
        }
    }
}

/// Whether a message from `origin` was stored before, under this id (a
/// batch tried again: its number) or under another (its client sent it
/// again through another server, which stored it first: 0, and it is not
/// stored again). `None`: a message to store. The device's row is locked
/// until the commit, so two servers cannot both take one client id.
fn repeated(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut HashMap<&'static str, Statement>,
    origin: &Option<Origin>,
    id: MessageId,
) -> Result<Option<Seq>, postgres::Error> {
    let Some(origin) = origin else {
        return Ok(None);
    };
    let statement = prepare(
        tx,
        prepared,
        "SELECT last_client_id FROM devices WHERE id = $1 FOR UPDATE",
    )?;
    let Some(row) = tx.query_opt(&statement, &[&origin.device.0])? else {
        return Ok(None);
    };
    if seq_at(&row, 0) < origin.client_id {
        return Ok(None);
    }
    let statement = prepare(tx, prepared, "SELECT seq FROM messages WHERE id = $1")?;
    Ok(Some(
        tx.query_opt(&statement, &[&id.0])?
            .map_or(0, |row| seq_at(&row, 0)),
    ))
}

/// Stores message `id` under its conversation's next number, taken from
/// `counter` at `key`, through `insert`, and answers the number. A message
/// already stored (a batch tried again after its commit's answer was
/// lost) keeps the number it has, and the one just taken is given back:
/// the row is still locked by this transaction, so nobody took one after
/// it.
fn numbered(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut HashMap<&'static str, Statement>,
    counter: Counter,
    key: &[&(dyn ToSql + std::marker::Sync)],
    id: MessageId,
    insert: impl FnOnce(
        &mut postgres::Transaction<'_>,
        &mut HashMap<&'static str, Statement>,
        i64,
    ) -> Result<u64, postgres::Error>,
) -> Result<Seq, postgres::Error> {
    let statement = prepare(tx, prepared, counter.take())?;
    let seq: i64 = tx.query_one(&statement, key)?.get(0);
    if insert(tx, prepared, seq)? == 1 {
        return Ok(seq.max(0) as Seq);
    }
    run(tx, prepared, counter.give_back(), key)?;
    let statement = prepare(tx, prepared, "SELECT seq FROM messages WHERE id = $1")?;
    Ok(seq_at(&tx.query_one(&statement, &[&id.0])?, 0))
}

/// One write inside [`PostgresStore::apply`]'s transaction; a message
/// answers the number it was stored under.
fn apply_one(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut HashMap<&'static str, Statement>,
    node: Option<i64>,
    write: &Write,
) -> Result<Option<Seq>, StoreError> {
    match write {
        Write::User {
            id,
            name,
            password_hash,
            created,
        } => {
            run(
                tx,
                prepared,
                "INSERT INTO users (id, name, name_key, password_hash, created)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                &[&id.0, name, &user_key(name), password_hash, created],
            )
            .context(|| format!("could not save new user {name} (id {id})"))?;
        }
        Write::Room {
            id,
            name,
            admin,
            capacity,
            created,
        } => {
            let capacity = i32::try_from(*capacity).unwrap_or(i32::MAX);
            run(
                tx,
                prepared,
                "INSERT INTO rooms (id, name, name_key, admin, capacity, created)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                &[&id.0, name, &room_key(name), &admin.0, &capacity, created],
            )
            .and_then(|_| match node {
                // Shared: its admin is its first member.
                Some(node) => run(
                    tx,
                    prepared,
                    "INSERT INTO room_members (room, user_id, node) VALUES ($1, $2, $3)
                     ON CONFLICT (room, user_id) DO NOTHING",
                    &[&id.0, &admin.0, &node],
                ),
                None => Ok(0),
            })
            .context(|| format!("could not save new room #{id} {name:?}"))?;
        }
        Write::CloseRoom { id, closed } => {
            let changed = run(
                tx,
                prepared,
                "UPDATE rooms SET closed = COALESCE(closed, $2) WHERE id = $1",
                &[&id.0, closed],
            )
            .context(|| format!("could not close room #{id}"))?;
            if changed == 0 {
                return Err(StoreError::NoSuchRoom(*id));
            }
            run(
                tx,
                prepared,
                "DELETE FROM room_members WHERE room = $1",
                &[&id.0],
            )
            .context(|| format!("could not close room #{id}"))?;
        }
        Write::RoomMessage {
            id,
            origin,
            room,
            sender,
            text,
            sent,
            ..
        } => {
            let text: &str = text;
            let what = || format!("could not save message {id} from user {sender} in room #{room}");
            if let Some(seq) = repeated(tx, prepared, origin, *id).context(what)? {
                return Ok(Some(seq));
            }
            let key: [&(dyn ToSql + std::marker::Sync); 1] = [&room.0];
            let seq = numbered(
                tx,
                prepared,
                Counter::Room,
                &key,
                *id,
                |tx, prepared, seq| {
                    run(
                        tx,
                        prepared,
                        "INSERT INTO messages (id, seq, sender, room, body, sent)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                        &[&id.0, &seq, &sender.0, &room.0, &text, sent],
                    )
                },
            )
            .and_then(|seq| note_origin(tx, prepared, origin).map(|_| seq))
            .context(what)?;
            return Ok(Some(seq));
        }
        Write::PrivateMessage {
            id,
            origin,
            sender,
            recipient,
            text,
            sent,
            ..
        } => {
            let text: &str = text;
            let what = || {
                format!(
                    "could not save private message {id} from user {sender} to user {recipient}"
                )
            };
            if let Some(seq) = repeated(tx, prepared, origin, *id).context(what)? {
                return Ok(Some(seq));
            }
            let key: [&(dyn ToSql + std::marker::Sync); 2] = [&sender.0, &recipient.0];
            let seq = numbered(
                tx,
                prepared,
                Counter::Dialogue,
                &key,
                *id,
                |tx, prepared, seq| {
                    run(
                        tx,
                        prepared,
                        "INSERT INTO messages (id, seq, sender, recipient, body, sent)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                        &[&id.0, &seq, &sender.0, &recipient.0, &text, sent],
                    )
                },
            )
            .and_then(|seq| {
                // Both ends list the dialogue; after the first message
                // these find their rows and write nothing.
                run(
                    tx,
                    prepared,
                    "INSERT INTO dialogues (user_id, other) VALUES ($1, $2), ($2, $1)
                     ON CONFLICT DO NOTHING",
                    &[&sender.0, &recipient.0],
                )
                .map(|_| seq)
            })
            .and_then(|seq| note_origin(tx, prepared, origin).map(|_| seq))
            .context(what)?;
            return Ok(Some(seq));
        }
        Write::MarkRead {
            recipient,
            sender,
            upto,
        } => {
            run(
                tx,
                prepared,
                "UPDATE dialogues SET read_seq = GREATEST(read_seq, $3)
                 WHERE user_id = $1 AND other = $2",
                &[&recipient.0, &sender.0, &sql_seq(*upto)],
            )
            .context(|| {
                format!("could not mark the messages from user {sender} to user {recipient} read")
            })?;
        }
        Write::Device {
            id,
            user,
            token_hash,
            created,
        } => {
            run(
                tx,
                prepared,
                "INSERT INTO devices (id, user_id, token_hash, created, last_used)
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING",
                &[&id.0, &user.0, &&token_hash[..], created],
            )
            .context(|| format!("could not save new device {id} of user {user}"))?;
        }
        Write::RotateDevice {
            id,
            token_hash,
            previous_hash,
            used,
        } => {
            run(
                tx,
                prepared,
                "UPDATE devices SET token_hash = $2, previous_hash = $3, last_used = $4
                 WHERE id = $1",
                &[&id.0, &&token_hash[..], &&previous_hash[..], used],
            )
            .context(|| format!("could not give device {id} its new token"))?;
        }
        Write::DeleteDevice { id } => {
            run(tx, prepared, "DELETE FROM devices WHERE id = $1", &[&id.0])
                .context(|| format!("could not delete device {id}"))?;
        }
        Write::Join { room, user } => {
            let node = node.unwrap_or(0);
            let joined = join(tx, prepared, *room, *user, node)
                .context(|| format!("could not add user {user} to room #{room}"))?;
            return Ok(Some(Seq::from(joined)));
        }
        Write::Leave { room, user, .. } => {
            run(
                tx,
                prepared,
                "DELETE FROM room_members WHERE room = $1 AND user_id = $2",
                &[&room.0, &user.0],
            )
            .context(|| format!("could not take user {user} out of room #{room}"))?;
        }
        Write::Away { room, user, since } => {
            run(
                tx,
                prepared,
                "UPDATE room_members SET away_since = $3 WHERE room = $1 AND user_id = $2",
                &[&room.0, &user.0, since],
            )
            .context(|| format!("could not mark user {user} away from room #{room}"))?;
        }
    }
    Ok(None)
}

/// A join decided under the room row's lock, so that joins racing on
/// several servers are counted one at a time: true if `user` is (now) a
/// member, false if the room is closed or full.
fn join(
    tx: &mut postgres::Transaction<'_>,
    prepared: &mut HashMap<&'static str, Statement>,
    room: RoomId,
    user: UserId,
    node: i64,
) -> Result<bool, postgres::Error> {
    let lock = prepare(
        tx,
        prepared,
        "SELECT capacity FROM rooms WHERE id = $1 AND closed IS NULL FOR UPDATE",
    )?;
    let Some(row) = tx.query_opt(&lock, &[&room.0])? else {
        return Ok(false);
    };
    let capacity = i64::from(row.get::<_, i32>(0));
    let moved = run(
        tx,
        prepared,
        "UPDATE room_members SET node = $3 WHERE room = $1 AND user_id = $2",
        &[&room.0, &user.0, &node],
    )?;
    if moved == 1 {
        return Ok(true);
    }
    let count = prepare(
        tx,
        prepared,
        "SELECT COUNT(*) FROM room_members WHERE room = $1",
    )?;
    let members: i64 = tx.query_one(&count, &[&room.0])?.get(0);
    if members >= capacity {
        return Ok(false);
    }
    run(
        tx,
        prepared,
        "INSERT INTO room_members (room, user_id, node) VALUES ($1, $2, $3)",
        &[&room.0, &user.0, &node],
    )?;
    Ok(true)
}
