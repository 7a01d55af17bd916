-- Schema version 3: every message carries its conversation's sequence
-- number, read state is kept by sequence number, and devices hold resume
-- tokens. Run once, in one transaction, on a version 2 database; never
-- edit it.
--
-- A conversation is a room, or a dialogue (a pair of users). Its messages
-- are numbered 1, 2, 3, ... in the order they were accepted, with no gaps
-- among stored messages; history and catch-up select by this number,
-- never by time. Existing messages are numbered in id order, which is the
-- order they were accepted in.

ALTER TABLE messages ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;

WITH numbered AS (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY room ORDER BY id) AS n
    FROM messages WHERE room IS NOT NULL
    UNION ALL
    SELECT id, ROW_NUMBER() OVER (
        PARTITION BY min(sender, recipient), max(sender, recipient) ORDER BY id
    ) AS n
    FROM messages WHERE recipient IS NOT NULL
)
UPDATE messages SET seq = numbered.n FROM numbered WHERE numbered.id = messages.id;

-- The indexes keyed by id become keyed by sequence number, and unique: the
-- database itself refuses a second message with a conversation's number.
DROP INDEX messages_room;
CREATE UNIQUE INDEX messages_room_seq ON messages(room, seq) WHERE room IS NOT NULL;
DROP INDEX messages_dialogue;
CREATE UNIQUE INDEX messages_dialogue_seq
    ON messages(min(sender, recipient), max(sender, recipient), seq)
    WHERE recipient IS NOT NULL;

-- Read state: messages from `other` to `user` up to this sequence number of
-- their dialogue have been read (0: none). Version 2 kept a message id.
ALTER TABLE dialogues RENAME COLUMN read_upto TO read_seq;
UPDATE dialogues SET read_seq = IFNULL((
    SELECT MAX(m.seq) FROM messages AS m
    WHERE min(m.sender, m.recipient) = min(dialogues.user, dialogues.other)
      AND max(m.sender, m.recipient) = max(dialogues.user, dialogues.other)
      AND m.recipient IS NOT NULL
      AND m.id <= dialogues.read_seq
), 0);

-- A device is one place an account logged in from with its password. It
-- holds one resume token, stored only as its SHA-256 hash; every resume
-- replaces it. The hash of the token it replaced is kept: presenting that
-- one again means the token was copied, and the device is deleted.
-- Logging out, or not resuming for the expiry period, deletes it too.
-- A device numbers the messages it sends (client ids, increasing): the
-- highest one stored is kept, and a message sent again with an id not
-- above it (its acknowledgement was lost in a dropped connection) is not
-- stored twice.
CREATE TABLE devices (
    id             INTEGER PRIMARY KEY,
    user           INTEGER NOT NULL REFERENCES users(id),
    token_hash     BLOB NOT NULL UNIQUE,
    previous_hash  BLOB,
    created        INTEGER NOT NULL,
    last_used      INTEGER NOT NULL,
    last_client_id INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX devices_user ON devices(user);
