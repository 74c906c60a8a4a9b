-- Control plane: runtimes, their immutable versions, endpoints, tags, idempotency tokens.
-- The same tables as migrations/sqlite/0001_control.sql: times are epoch milliseconds (BIGINT) and
-- JSON is TEXT so both backends share their row decoding. Text compares and sorts byte-wise
-- (COLLATE "C", as SQLite does), so keyset paging and ordering are the same on any cluster locale.
CREATE TABLE runtimes (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT COLLATE "C" NOT NULL UNIQUE,
    latest_version  BIGINT NOT NULL,
    deleting        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX runtimes_by_creation ON runtimes (created_at, id);

CREATE TABLE runtime_versions (
    runtime_id      TEXT COLLATE "C" NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    spec            TEXT NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    failure_reason  TEXT,
    artifact_digest TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (runtime_id, version)
);
CREATE INDEX runtime_versions_by_status ON runtime_versions (status);

CREATE TABLE endpoints (
    runtime_id      TEXT COLLATE "C" NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    name            TEXT COLLATE "C" NOT NULL,
    id              TEXT COLLATE "C" NOT NULL,
    description     TEXT,
    live_version    BIGINT,
    target_version  BIGINT,
    status          TEXT COLLATE "C" NOT NULL,
    failure_reason  TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (runtime_id, name)
);

CREATE TABLE tags (
    resource_arn    TEXT COLLATE "C" NOT NULL,
    key             TEXT COLLATE "C" NOT NULL,
    value           TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
);

CREATE TABLE idempotency (
    operation       TEXT COLLATE "C" NOT NULL,
    token           TEXT COLLATE "C" NOT NULL,
    request_hash    TEXT NOT NULL,
    response        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (operation, token)
);
