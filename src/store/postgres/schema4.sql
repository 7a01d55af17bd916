-- Schema version 4 of the chatapp store on PostgreSQL: which room members
-- are away (their connection dropped, their place kept for the grace
-- period), so that servers sharing the database tell each other's rooms,
-- as a server tells its own. Run once, in one transaction, on a version 3
-- database; never edit this.

-- When the member's connection dropped, once the room was told; NULL
-- while they are connected.
ALTER TABLE room_members ADD COLUMN away_since BIGINT;
