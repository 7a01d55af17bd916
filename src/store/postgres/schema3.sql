-- Schema version 3 of the chatapp store on PostgreSQL: who is in which
-- open room, for servers sharing the database (each with --bus), so that
-- a room's capacity holds across them. A join takes the room row's lock
-- (SELECT ... FOR UPDATE) before counting, so joins racing on different
-- servers are decided one at a time. A server alone on its database keeps
-- membership in memory and writes nothing here. Run once, in one
-- transaction, on a version 2 database; never edit this.

CREATE TABLE room_members (
    room    BIGINT NOT NULL REFERENCES rooms(id),
    user_id BIGINT NOT NULL REFERENCES users(id),
    -- The id slot of the server the member's sessions are on: a server
    -- starting in a slot drops the members its previous life left.
    node    BIGINT NOT NULL,
    PRIMARY KEY (room, user_id)
);

CREATE INDEX room_members_node ON room_members(node);
