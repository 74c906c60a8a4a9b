-- Traffic: per-endpoint policies (weights and routing rules), durable session assignments,
-- drains, rollouts, per-version health buckets and the hash-chained audit log.
-- Times are epoch milliseconds and JSON is TEXT so the same schema ports to PostgreSQL.
--
-- Nothing here references `endpoints` or `runtime_versions` by foreign key: those rows are
-- written with INSERT OR REPLACE, and a REPLACE would fire ON DELETE CASCADE on children.
-- Endpoint and version deletions clean these tables up explicitly in the same transaction.

-- The routing of an endpoint beyond its live version. `weights` is a JSON array of
-- {version, weight}; empty means every new session goes to the endpoint's live version.
-- `rules` is a JSON array of {id, match, version}, evaluated in order before the weights.
CREATE TABLE traffic_policies (
    runtime_id        TEXT NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    endpoint          TEXT NOT NULL,
    weights           TEXT NOT NULL,
    rules             TEXT NOT NULL,
    previous_version  INTEGER,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (runtime_id, endpoint)
);

-- Which version a session was routed to, written when it is first routed and consulted before
-- the weights, so a session keeps its version across restarts and after its sandbox ended.
CREATE TABLE session_assignments (
    runtime_id  TEXT NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    session_id  TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (runtime_id, session_id)
);
CREATE INDEX session_assignments_by_version ON session_assignments (runtime_id, endpoint, version);
CREATE INDEX session_assignments_by_age ON session_assignments (created_at);

-- A version that left an endpoint's routing: its sessions live on until they end or `deadline`.
CREATE TABLE drains (
    runtime_id  TEXT NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    endpoint    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    deadline    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (runtime_id, endpoint, version)
);
CREATE INDEX drains_by_deadline ON drains (deadline);

-- Rollouts: a durable state machine per endpoint. `spec` holds steps, interval and thresholds;
-- `analysis` the last verdict of the analysis, for `berth rollout status`.
CREATE TABLE rollouts (
    id               TEXT PRIMARY KEY,
    runtime_id       TEXT NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    endpoint         TEXT NOT NULL,
    from_version     INTEGER NOT NULL,
    to_version       INTEGER NOT NULL,
    state            TEXT NOT NULL,
    step_index       INTEGER NOT NULL,
    step_started_at  INTEGER NOT NULL,
    spec             TEXT NOT NULL,
    analysis         TEXT,
    reason           TEXT,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
-- At most one rollout in progress per endpoint.
CREATE UNIQUE INDEX rollouts_active ON rollouts (runtime_id, endpoint)
    WHERE state IN ('RUNNING', 'PAUSED');
CREATE INDEX rollouts_by_endpoint ON rollouts (runtime_id, endpoint, created_at);

-- Per (endpoint, version) health in fixed time buckets. `latency_counts` is a JSON array of
-- counts per latency bucket (bounds fixed in code), so windows merge by adding.
CREATE TABLE health_buckets (
    runtime_id      TEXT NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    endpoint        TEXT NOT NULL,
    version         INTEGER NOT NULL,
    bucket_start    INTEGER NOT NULL,
    invocations     INTEGER NOT NULL,
    errors_5xx      INTEGER NOT NULL,
    errors_424      INTEGER NOT NULL,
    timeouts        INTEGER NOT NULL,
    new_sessions    INTEGER NOT NULL,
    latency_sum_ms  INTEGER NOT NULL,
    latency_counts  TEXT NOT NULL,
    PRIMARY KEY (runtime_id, endpoint, version, bucket_start)
);
CREATE INDEX health_buckets_by_time ON health_buckets (bucket_start);

-- Append-only audit log. Each entry's hash covers the previous entry's hash and the entry's
-- canonical content; `audit_head` remembers the last entry so deleting the tail shows too.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    before      TEXT NOT NULL,
    after       TEXT NOT NULL,
    request_id  TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_log_by_resource ON audit_log (resource, seq);

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
