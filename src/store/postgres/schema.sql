-- Schema version 1 of the chatapp store on PostgreSQL. Run once, in one
-- transaction, on an empty database; later versions will migrate from
-- here, never edit this.
--
-- The same tables as the SQLite store at its version 3, in PostgreSQL's
-- words: ids are given by the server on insert, times are Unix
-- milliseconds, and `user` (a reserved word here) is spelled `user_id`.

CREATE TABLE chatapp_schema (
    -- One row: the schema version of this database.
    version INTEGER NOT NULL
);

CREATE TABLE users (
    id            BIGINT PRIMARY KEY,
    name          TEXT NOT NULL,
    -- Lowercased name: names are unique without regard to case.
    name_key      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created       BIGINT NOT NULL
);

CREATE TABLE rooms (
    id       BIGINT PRIMARY KEY,
    name     TEXT NOT NULL,
    name_key TEXT NOT NULL,
    admin    BIGINT NOT NULL REFERENCES users(id),
    capacity INTEGER NOT NULL CHECK (capacity BETWEEN 2 AND 1000),
    created  BIGINT NOT NULL,
    -- NULL while the room is open.
    closed   BIGINT
);

-- A name may be reused once the room that held it has closed.
CREATE UNIQUE INDEX rooms_open_name ON rooms(name_key) WHERE closed IS NULL;

-- One table for both kinds of message: exactly one of room and recipient
-- is set. `seq` numbers the message in its conversation (a room, or a
-- pair of users) from 1, with no gaps among stored messages.
CREATE TABLE messages (
    id        BIGINT PRIMARY KEY,
    seq       BIGINT NOT NULL,
    sender    BIGINT NOT NULL REFERENCES users(id),
    room      BIGINT REFERENCES rooms(id),
    recipient BIGINT REFERENCES users(id),
    body      TEXT NOT NULL,
    sent      BIGINT NOT NULL,
    CHECK ((room IS NULL) <> (recipient IS NULL))
);

-- Unique: the database itself refuses a second message with a
-- conversation's number. Queries must spell a dialogue's key exactly so.
CREATE UNIQUE INDEX messages_room_seq ON messages(room, seq) WHERE room IS NOT NULL;
CREATE UNIQUE INDEX messages_dialogue_seq
    ON messages(LEAST(sender, recipient), GREATEST(sender, recipient), seq)
    WHERE recipient IS NOT NULL;

-- One row per user and partner, written when they first exchange a
-- message: messages from `other` to `user_id` up to `read_seq` are read.
CREATE TABLE dialogues (
    user_id  BIGINT NOT NULL REFERENCES users(id),
    other    BIGINT NOT NULL REFERENCES users(id),
    read_seq BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, other)
);

-- A device: one place an account logged in from with its password,
-- holding one resume token (only its SHA-256 hash is kept), the hash of
-- the token its last resume replaced, and the highest client id of a
-- message from it stored.
CREATE TABLE devices (
    id             BIGINT PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users(id),
    token_hash     BYTEA NOT NULL UNIQUE,
    previous_hash  BYTEA,
    created        BIGINT NOT NULL,
    last_used      BIGINT NOT NULL,
    last_client_id BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX devices_user ON devices(user_id);
