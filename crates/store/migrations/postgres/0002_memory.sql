-- AgentCore Memory on PostgreSQL: the same tables as SQLite's 0002_memory.sql, with times as
-- BIGINT epoch milliseconds and JSON as TEXT so both backends decode into the same row types.
-- Keys compare bytewise (COLLATE "C"), as SQLite's do, so keyset paging orders alike.

-- The keyword index: English stemming (as SQLite's porter tokenizer) and no stopwords (the
-- domain skips function words in queries itself; a word it keeps must stay findable).
CREATE TEXT SEARCH DICTIONARY berth_memory_stem (TEMPLATE = snowball, LANGUAGE = english);
CREATE TEXT SEARCH CONFIGURATION berth_memory (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION berth_memory
    ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
    WITH berth_memory_stem;

CREATE TABLE memories (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    name                TEXT COLLATE "C" NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    failure_reason      TEXT,
    event_expiry_days   BIGINT NOT NULL,
    -- description, strategies (with ids, types, namespaces, statuses) and the other settings.
    spec                TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX memories_by_creation ON memories (created_at, id);
CREATE INDEX memories_by_status ON memories (status);

-- Event ids are `<event time ms, 19 digits>#<hex sequence>`: their text order is chronological,
-- so listing newest first is a descending walk of the primary key.
CREATE TABLE memory_events (
    memory_id       TEXT COLLATE "C" NOT NULL,
    actor_id        TEXT COLLATE "C" NOT NULL,
    session_id      TEXT COLLATE "C" NOT NULL,
    event_id        TEXT COLLATE "C" NOT NULL,
    event_ts        BIGINT NOT NULL,
    branch_name     TEXT COLLATE "C",
    branch_root     TEXT COLLATE "C",
    payload         TEXT NOT NULL,
    -- Filtered on by key (cast to JSONB in the query).
    metadata        TEXT,
    client_token    TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (memory_id, actor_id, session_id, event_id)
);
CREATE UNIQUE INDEX memory_events_by_token ON memory_events (memory_id, client_token)
    WHERE client_token IS NOT NULL;
-- The expiry purge walks events by time.
CREATE INDEX memory_events_by_time ON memory_events (memory_id, event_ts);

-- One row per (actor, session) that ever received an event; kept in the same transaction as
-- the events so ListActors/ListSessions and "the actor's last session" need no event scan.
CREATE TABLE memory_sessions (
    memory_id       TEXT COLLATE "C" NOT NULL,
    actor_id        TEXT COLLATE "C" NOT NULL,
    session_id      TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    last_event_ts   BIGINT NOT NULL,
    -- Highest event id already handed to extraction; NULL when none was.
    extracted_upto  TEXT COLLATE "C",
    PRIMARY KEY (memory_id, actor_id, session_id)
);
CREATE INDEX memory_sessions_by_recency ON memory_sessions (memory_id, actor_id, last_event_ts);

CREATE TABLE memory_records (
    -- Only grows (a put updates in place): max(seq) bounds the record count cheaply.
    seq             BIGSERIAL PRIMARY KEY,
    record_id       TEXT COLLATE "C" NOT NULL UNIQUE,
    memory_id       TEXT COLLATE "C" NOT NULL,
    strategy_id     TEXT COLLATE "C" NOT NULL,
    namespace       TEXT COLLATE "C" NOT NULL,
    content         TEXT NOT NULL,
    metadata        TEXT,
    record_ts       BIGINT NOT NULL,
    expires_at      BIGINT,
    -- Little-endian f32s; NULL until embedded.
    embedding       BYTEA,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    -- The content's words, written with it (split as the domain splits queries, then stemmed).
    keywords        TSVECTOR NOT NULL
);
CREATE INDEX memory_records_by_namespace ON memory_records (memory_id, namespace, created_at);
CREATE INDEX memory_records_by_creation ON memory_records (memory_id, created_at, record_id);
CREATE INDEX memory_records_by_expiry ON memory_records (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memory_records_keywords ON memory_records USING GIN (keywords);

CREATE TABLE memory_jobs (
    job_id          TEXT COLLATE "C" PRIMARY KEY,
    memory_id       TEXT COLLATE "C" NOT NULL,
    strategy_id     TEXT COLLATE "C" NOT NULL,
    actor_id        TEXT COLLATE "C" NOT NULL,
    session_id      TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    failure_reason  TEXT,
    -- [{"eventId": ..., "messageIndex": n}, ...]
    messages        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX memory_jobs_by_memory ON memory_jobs (memory_id, created_at, job_id);
CREATE INDEX memory_jobs_by_status ON memory_jobs (status, created_at, job_id);

CREATE TABLE memory_tokens (
    operation       TEXT COLLATE "C" NOT NULL,
    token           TEXT COLLATE "C" NOT NULL,
    request_hash    TEXT NOT NULL,
    response        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (operation, token)
);
