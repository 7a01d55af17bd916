-- Schema version 1 of the chatapp store. Run once, in one transaction, on a
-- fresh database; later versions will migrate from here, never edit this.
--
-- Ids are chosen by the server (it allocates them in memory), so every
-- INTEGER PRIMARY KEY is given explicitly on insert. Times are Unix
-- milliseconds. STRICT makes SQLite refuse values of the wrong type instead
-- of silently storing them.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    -- Lowercased name: names are unique without regard to case.
    name_key      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created       INTEGER NOT NULL
) STRICT;

CREATE TABLE rooms (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL,
    name_key TEXT NOT NULL,
    admin    INTEGER NOT NULL REFERENCES users(id),
    capacity INTEGER NOT NULL CHECK (capacity BETWEEN 2 AND 1000),
    created  INTEGER NOT NULL,
    -- NULL while the room is open.
    closed   INTEGER
) STRICT;

-- A name may be reused once the room that held it has closed.
CREATE UNIQUE INDEX rooms_open_name ON rooms(name_key) WHERE closed IS NULL;

-- One table for both kinds of message: exactly one of room and recipient is
-- set. `read` only means something for private messages.
CREATE TABLE messages (
    id        INTEGER PRIMARY KEY,
    sender    INTEGER NOT NULL REFERENCES users(id),
    room      INTEGER REFERENCES rooms(id),
    recipient INTEGER REFERENCES users(id),
    body      TEXT NOT NULL,
    sent      INTEGER NOT NULL,
    read      INTEGER NOT NULL DEFAULT 0 CHECK (read IN (0, 1)),
    CHECK ((room IS NULL) <> (recipient IS NULL))
) STRICT;

-- Partial indexes: room messages stay out of the private-message indexes
-- and the other way round, so each holds only the rows its queries need.
-- A query's `room = ?` or `recipient = ?` implies the index's condition.

-- Room history: the last N messages of a room.
CREATE INDEX messages_room ON messages(room, id) WHERE room IS NOT NULL;
-- A user's inbox, and one direction of a dialogue.
CREATE INDEX messages_inbox ON messages(recipient, sender, id) WHERE recipient IS NOT NULL;
-- A user's outbox, and the other direction of a dialogue.
CREATE INDEX messages_outbox ON messages(sender, recipient, id) WHERE recipient IS NOT NULL;
-- Unread private messages only: small, so unread counts at start-up and
-- marking a dialogue read never walk messages already read.
CREATE INDEX messages_unread ON messages(recipient, sender) WHERE recipient IS NOT NULL AND read = 0;
