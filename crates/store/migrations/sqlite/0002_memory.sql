-- AgentCore Memory: memory resources, short-term events, long-term records (with a keyword
-- index and stored embeddings), extraction jobs and idempotency tokens.
-- Times are epoch milliseconds and JSON is TEXT so the same schema ports to PostgreSQL.

CREATE TABLE memories (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    failure_reason      TEXT,
    event_expiry_days   INTEGER NOT NULL,
    -- description, strategies (with ids, types, namespaces, statuses) and the other settings.
    spec                TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX memories_by_creation ON memories (created_at, id);

-- Event ids are `<event time ms, 19 digits>#<hex sequence>`: their text order is chronological,
-- so listing newest first is a descending walk of the primary key.
CREATE TABLE memory_events (
    memory_id       TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_ts        INTEGER NOT NULL,
    branch_name     TEXT,
    branch_root     TEXT,
    payload         TEXT NOT NULL,
    metadata        TEXT,
    client_token    TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (memory_id, actor_id, session_id, event_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX memory_events_by_token ON memory_events (memory_id, client_token)
    WHERE client_token IS NOT NULL;
-- The expiry purge walks events by time.
CREATE INDEX memory_events_by_time ON memory_events (memory_id, event_ts);

-- One row per (actor, session) that ever received an event; kept in the same transaction as
-- the events so ListActors/ListSessions and "the actor's last session" need no event scan.
CREATE TABLE memory_sessions (
    memory_id       TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    last_event_ts   INTEGER NOT NULL,
    -- Highest event id already handed to extraction; NULL when none was.
    extracted_upto  TEXT,
    PRIMARY KEY (memory_id, actor_id, session_id)
) WITHOUT ROWID;
CREATE INDEX memory_sessions_by_recency ON memory_sessions (memory_id, actor_id, last_event_ts);

CREATE TABLE memory_records (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id       TEXT NOT NULL UNIQUE,
    memory_id       TEXT NOT NULL,
    strategy_id     TEXT NOT NULL,
    namespace       TEXT NOT NULL,
    content         TEXT NOT NULL,
    metadata        TEXT,
    record_ts       INTEGER NOT NULL,
    expires_at      INTEGER,
    -- Little-endian f32s; NULL until embedded.
    embedding       BLOB,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX memory_records_by_namespace ON memory_records (memory_id, namespace, created_at);
CREATE INDEX memory_records_by_creation ON memory_records (memory_id, created_at, record_id);

-- Keyword index over record content, kept in step with memory_records by triggers.
CREATE VIRTUAL TABLE memory_records_fts USING fts5(
    content,
    content = 'memory_records',
    content_rowid = 'seq',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER memory_records_ai AFTER INSERT ON memory_records BEGIN
    INSERT INTO memory_records_fts (rowid, content) VALUES (new.seq, new.content);
END;
CREATE TRIGGER memory_records_ad AFTER DELETE ON memory_records BEGIN
    INSERT INTO memory_records_fts (memory_records_fts, rowid, content)
        VALUES ('delete', old.seq, old.content);
END;
CREATE TRIGGER memory_records_au AFTER UPDATE OF content ON memory_records BEGIN
    INSERT INTO memory_records_fts (memory_records_fts, rowid, content)
        VALUES ('delete', old.seq, old.content);
    INSERT INTO memory_records_fts (rowid, content) VALUES (new.seq, new.content);
END;

CREATE TABLE memory_jobs (
    job_id          TEXT PRIMARY KEY,
    memory_id       TEXT NOT NULL,
    strategy_id     TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    status          TEXT NOT NULL,
    failure_reason  TEXT,
    -- [{"eventId": ..., "messageIndex": n}, ...]
    messages        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX memory_jobs_by_memory ON memory_jobs (memory_id, created_at, job_id);
CREATE INDEX memory_jobs_by_status ON memory_jobs (status);

CREATE TABLE memory_tokens (
    operation       TEXT NOT NULL,
    token           TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (operation, token)
);
