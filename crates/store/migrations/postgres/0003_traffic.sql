-- PostgreSQL twin of migrations/sqlite/0003_traffic.sql (BIGINT integers, TEXT compared byte-wise).
-- Traffic: per-endpoint policies (weights and routing rules), durable session assignments,
-- drains, rollouts, per-version health buckets and the hash-chained audit log.
-- Times are epoch milliseconds and JSON is TEXT, as on SQLite.
--
-- Nothing here references `endpoints` or `runtime_versions` by foreign key: those rows are
-- written with INSERT OR REPLACE, and a REPLACE would fire ON DELETE CASCADE on children.
-- Endpoint and version deletions clean these tables up explicitly in the same transaction.

-- The routing of an endpoint beyond its live version. `weights` is a JSON array of
-- {version, weight}; empty means every new session goes to the endpoint's live version.
-- `rules` is a JSON array of {id, match, version}, evaluated in order before the weights.
CREATE TABLE traffic_policies (
    runtime_id        TEXT COLLATE "C" NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    endpoint          TEXT COLLATE "C" NOT NULL,
    weights           TEXT COLLATE "C" NOT NULL,
    rules             TEXT COLLATE "C" NOT NULL,
    previous_version  BIGINT,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (runtime_id, endpoint)
);

-- Which version a session was routed to, written when it is first routed and consulted before
-- the weights, so a session keeps its version across restarts and after its sandbox ended.
CREATE TABLE session_assignments (
    runtime_id  TEXT COLLATE "C" NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    session_id  TEXT COLLATE "C" NOT NULL,
    endpoint    TEXT COLLATE "C" NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (runtime_id, session_id)
);
CREATE INDEX session_assignments_by_version ON session_assignments (runtime_id, endpoint, version);
CREATE INDEX session_assignments_by_age ON session_assignments (created_at);

-- A version that left an endpoint's routing: its sessions live on until they end or `deadline`.
CREATE TABLE drains (
    runtime_id  TEXT COLLATE "C" NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    endpoint    TEXT COLLATE "C" NOT NULL,
    version     BIGINT NOT NULL,
    deadline    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (runtime_id, endpoint, version)
);
CREATE INDEX drains_by_deadline ON drains (deadline);

-- Rollouts: a durable state machine per endpoint. `spec` holds steps, interval and thresholds;
-- `analysis` the last verdict of the analysis, for `berth rollout status`.
CREATE TABLE rollouts (
    id               TEXT COLLATE "C" PRIMARY KEY,
    runtime_id       TEXT COLLATE "C" NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    endpoint         TEXT COLLATE "C" NOT NULL,
    from_version     BIGINT NOT NULL,
    to_version       BIGINT NOT NULL,
    state            TEXT COLLATE "C" NOT NULL,
    step_index       BIGINT NOT NULL,
    step_started_at  BIGINT NOT NULL,
    spec             TEXT COLLATE "C" NOT NULL,
    analysis         TEXT COLLATE "C",
    reason           TEXT COLLATE "C",
    created_by       TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- At most one rollout in progress per endpoint.
CREATE UNIQUE INDEX rollouts_active ON rollouts (runtime_id, endpoint)
    WHERE state IN ('RUNNING', 'PAUSED');
CREATE INDEX rollouts_by_endpoint ON rollouts (runtime_id, endpoint, created_at);

-- Per (endpoint, version) health in fixed time buckets. `latency_counts` is a JSON array of
-- counts per latency bucket (bounds fixed in code), so windows merge by adding.
CREATE TABLE health_buckets (
    runtime_id      TEXT COLLATE "C" NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    endpoint        TEXT COLLATE "C" NOT NULL,
    version         BIGINT NOT NULL,
    bucket_start    BIGINT NOT NULL,
    invocations     BIGINT NOT NULL,
    errors_5xx      BIGINT NOT NULL,
    errors_424      BIGINT NOT NULL,
    timeouts        BIGINT NOT NULL,
    new_sessions    BIGINT NOT NULL,
    latency_sum_ms  BIGINT NOT NULL,
    latency_counts  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (runtime_id, endpoint, version, bucket_start)
);
CREATE INDEX health_buckets_by_time ON health_buckets (bucket_start);

-- Append-only audit log. Each entry's hash covers the previous entry's hash and the entry's
-- canonical content; `audit_head` remembers the last entry so deleting the tail shows too.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT COLLATE "C" NOT NULL,
    action      TEXT COLLATE "C" NOT NULL,
    resource    TEXT COLLATE "C" NOT NULL,
    before      TEXT COLLATE "C" NOT NULL,
    after       TEXT COLLATE "C" NOT NULL,
    request_id  TEXT COLLATE "C",
    prev_hash   TEXT COLLATE "C" NOT NULL,
    hash        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_log_by_resource ON audit_log (resource, seq);

CREATE TABLE audit_head (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT COLLATE "C" NOT NULL
);
