-- Schema version 2: private messages are found through their dialogue.
-- Run once, in one transaction, on a version 1 database (a fresh file gets
-- version 1 first, then this); never edit it.
--
-- Version 1 kept three indexes on private messages (by recipient, by
-- sender, and unread ones), each keyed by user, so every private message
-- landed on three pages scattered over the file, and a commit of many
-- wrote all those pages. Now each one goes into a single index, keyed by
-- its dialogue (the pair of users, lower id first), and what was read is
-- one number per user and partner instead of a flag per message. The
-- `read` column of `messages` is no longer used.

-- One row per user and partner, written when they first exchange a message.
CREATE TABLE dialogues (
    user      INTEGER NOT NULL REFERENCES users(id),
    other     INTEGER NOT NULL REFERENCES users(id),
    -- Messages from `other` to `user` up to this id have been read (0: none).
    read_upto INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user, other)
) STRICT, WITHOUT ROWID;

-- In version 1 a dialogue was marked read all at once, so the messages
-- read in each direction are the oldest ones: the newest of them is the mark.
INSERT INTO dialogues (user, other, read_upto)
    SELECT recipient, sender, IFNULL(MAX(CASE WHEN read = 1 THEN id END), 0)
    FROM messages WHERE recipient IS NOT NULL
    GROUP BY recipient, sender;
INSERT OR IGNORE INTO dialogues (user, other)
    SELECT sender, recipient FROM messages WHERE recipient IS NOT NULL
    GROUP BY sender, recipient;

-- A dialogue's messages in id order, with the sender, which is all that
-- counting unread messages needs. Queries must spell the key exactly so.
CREATE INDEX messages_dialogue
    ON messages(min(sender, recipient), max(sender, recipient), id, sender)
    WHERE recipient IS NOT NULL;

DROP INDEX messages_inbox;
DROP INDEX messages_outbox;
DROP INDEX messages_unread;
