-- PostgreSQL twin of migrations/sqlite/0016_nodes.sql (BIGINT integers, TEXT compared byte-wise).
-- Several Berth nodes serving one installation (one shared database).
--
-- `nodes`: every node that ever started, with the address other nodes forward to and the lease it
-- renews while it runs; a node whose lease has lapsed is dead to the others. `draining` nodes take
-- no new sessions.
-- `session_owners`: which node runs (or last ran) a session's agent. The row is valid only while
-- its node's lease is current, so a dead node's sessions are claimed afresh elsewhere.
-- `leases`: background jobs that must run exactly once (the rollout controller, drift alerts,
-- online evaluation...), held by one node until it lapses.
-- Times are epoch milliseconds.

CREATE TABLE nodes (
    id          TEXT COLLATE "C" PRIMARY KEY,
    address     TEXT COLLATE "C" NOT NULL,
    started_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    draining    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE session_owners (
    runtime_id  TEXT COLLATE "C" NOT NULL,
    session_id  TEXT COLLATE "C" NOT NULL,
    node_id     TEXT COLLATE "C" NOT NULL,
    claimed_at  BIGINT NOT NULL,
    PRIMARY KEY (runtime_id, session_id)
);
CREATE INDEX session_owners_node ON session_owners (node_id);

CREATE TABLE leases (
    name        TEXT COLLATE "C" PRIMARY KEY,
    holder      TEXT COLLATE "C" NOT NULL,
    until       BIGINT NOT NULL
);
