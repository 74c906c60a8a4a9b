-- Control plane: runtimes, their immutable versions, endpoints, tags, idempotency tokens.
-- Times are epoch milliseconds and JSON is TEXT so the same schema ports to PostgreSQL.
CREATE TABLE runtimes (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    latest_version  INTEGER NOT NULL,
    deleting        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX runtimes_by_creation ON runtimes (created_at, id);

CREATE TABLE runtime_versions (
    runtime_id      TEXT NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    spec            TEXT NOT NULL,
    status          TEXT NOT NULL,
    failure_reason  TEXT,
    artifact_digest TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (runtime_id, version)
);
CREATE INDEX runtime_versions_by_status ON runtime_versions (status);

CREATE TABLE endpoints (
    runtime_id      TEXT NOT NULL REFERENCES runtimes (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    id              TEXT NOT NULL,
    description     TEXT,
    live_version    INTEGER,
    target_version  INTEGER,
    status          TEXT NOT NULL,
    failure_reason  TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (runtime_id, name)
);

CREATE TABLE tags (
    resource_arn    TEXT NOT NULL,
    key             TEXT NOT NULL,
    value           TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
);

CREATE TABLE idempotency (
    operation       TEXT NOT NULL,
    token           TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (operation, token)
);
