-- Schema version 2 of the chatapp store on PostgreSQL: the database gives
-- out the conversations' sequence numbers, so that servers sharing it
-- cannot give two messages one number. Run once, in one transaction, on a
-- version 1 database; never edit this.
--
-- A message takes its number by raising its conversation's `last_seq` in
-- its own transaction: the row stays locked until the commit, so writers
-- of one conversation queue there and no others, and a transaction rolled
-- back gives its number back with it. Committed numbers have no gaps.

-- The last number given in each room.
ALTER TABLE rooms ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;
UPDATE rooms SET last_seq = numbered.last_seq
FROM (SELECT room, MAX(seq) AS last_seq FROM messages WHERE room IS NOT NULL GROUP BY room)
    AS numbered
WHERE rooms.id = numbered.room;

-- The last number given in each dialogue: one row per pair of users,
-- lower id first, written with its first message.
CREATE TABLE dialogue_seqs (
    a        BIGINT NOT NULL REFERENCES users(id),
    b        BIGINT NOT NULL REFERENCES users(id),
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (a, b),
    CHECK (a <= b)
);
INSERT INTO dialogue_seqs (a, b, last_seq)
SELECT LEAST(sender, recipient), GREATEST(sender, recipient), MAX(seq)
FROM messages WHERE recipient IS NOT NULL
GROUP BY LEAST(sender, recipient), GREATEST(sender, recipient);
