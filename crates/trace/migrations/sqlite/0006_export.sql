-- OTLP export to an external collector (`export.rs`): a durable cursor per signal, and row ids
-- that never go back.
--
-- The exporter tails `spans` and `logs` by rowid. A plain rowid table hands out max(rowid) + 1,
-- so once retention deleted the newest rows (a quiet week aged everything out) new rows would
-- reuse ids at or below the cursor and never be exported. AUTOINCREMENT never reuses an id, so
-- both tables are rebuilt with an explicit `seq INTEGER PRIMARY KEY AUTOINCREMENT` (an alias of
-- rowid; existing rows keep theirs). Column lists, constraints and indexes are unchanged.
--
-- Numbered 0006, after main's 0002 (GenAI usage) and 0005 (CloudWatch Logs), so that on a store
-- those already migrated it still runs last: the rebuild drops the old tables' indexes, so every
-- index on `spans` and `logs` any earlier migration created is re-created below, including 0005's
-- `logs_runtime` (IF NOT EXISTS: harmless where 0005 has not run).

CREATE TABLE export_cursors (
    signal     TEXT PRIMARY KEY,      -- 'spans' or 'logs'
    last_seq   INTEGER NOT NULL,      -- the highest row id a collector acknowledged (2xx)
    updated_ns INTEGER NOT NULL
);

CREATE TABLE spans_seq (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id       TEXT NOT NULL,
    span_id        TEXT NOT NULL,
    parent_span_id TEXT,
    runtime_id     TEXT NOT NULL,
    session_id     TEXT NOT NULL,
    version        INTEGER NOT NULL,
    endpoint       TEXT NOT NULL,
    actor          TEXT,
    service_name   TEXT NOT NULL,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    start_ns       INTEGER NOT NULL,
    end_ns         INTEGER NOT NULL,
    status_code    TEXT NOT NULL,
    status_message TEXT NOT NULL,
    scope          TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    resource       TEXT NOT NULL,
    events         TEXT NOT NULL,
    UNIQUE (trace_id, span_id, runtime_id, session_id)
);
INSERT INTO spans_seq (seq, trace_id, span_id, parent_span_id, runtime_id, session_id, version,
    endpoint, actor, service_name, name, kind, start_ns, end_ns, status_code, status_message,
    scope, attributes, resource, events)
SELECT rowid, trace_id, span_id, parent_span_id, runtime_id, session_id, version, endpoint,
    actor, service_name, name, kind, start_ns, end_ns, status_code, status_message, scope,
    attributes, resource, events
FROM spans ORDER BY rowid;
DROP TABLE spans;
ALTER TABLE spans_seq RENAME TO spans;
CREATE INDEX spans_session ON spans (session_id, start_ns);

CREATE TABLE logs_seq (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id        TEXT,
    span_id         TEXT,
    runtime_id      TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    version         INTEGER NOT NULL,
    endpoint        TEXT NOT NULL,
    actor           TEXT,
    service_name    TEXT NOT NULL,
    time_ns         INTEGER NOT NULL,
    severity_number INTEGER NOT NULL,
    severity_text   TEXT NOT NULL,
    body            TEXT NOT NULL,
    attributes      TEXT NOT NULL,
    resource        TEXT NOT NULL,
    scope           TEXT NOT NULL
);
INSERT INTO logs_seq (seq, trace_id, span_id, runtime_id, session_id, version, endpoint, actor,
    service_name, time_ns, severity_number, severity_text, body, attributes, resource, scope)
SELECT rowid, trace_id, span_id, runtime_id, session_id, version, endpoint, actor, service_name,
    time_ns, severity_number, severity_text, body, attributes, resource, scope
FROM logs ORDER BY rowid;
DROP TABLE logs;
ALTER TABLE logs_seq RENAME TO logs;
CREATE INDEX logs_trace ON logs (trace_id, runtime_id, session_id);
CREATE INDEX logs_session ON logs (session_id, time_ns);
CREATE INDEX logs_time ON logs (time_ns);
CREATE INDEX IF NOT EXISTS logs_runtime ON logs (runtime_id, endpoint);
