-- Spans and log records received over OTLP (and Berth's own), with the index columns Berth
-- attributes them by. Attribute, resource and event documents are JSON text.

-- One row per trace and (runtime, session) it was seen in: a trace that crosses sessions (an agent
-- invoking another) has one row per session, so no session's listing shows another's data.
CREATE TABLE traces (
    trace_id     TEXT NOT NULL,
    runtime_id   TEXT NOT NULL,
    session_id   TEXT NOT NULL,          -- '' when the sandbox had no session yet
    version      INTEGER NOT NULL,
    endpoint     TEXT NOT NULL,
    actor        TEXT,
    service_name TEXT NOT NULL,
    root_name    TEXT,                   -- the earliest span's name
    root_start_ns INTEGER,               -- and its start
    start_ns     INTEGER NOT NULL,
    end_ns       INTEGER NOT NULL,
    span_count   INTEGER NOT NULL,
    error        INTEGER NOT NULL,       -- 1 once any span has status ERROR
    bytes        INTEGER NOT NULL,       -- stored size of its spans and logs, for retention
    PRIMARY KEY (trace_id, runtime_id, session_id)
);
CREATE INDEX traces_start ON traces (start_ns DESC, trace_id);
CREATE INDEX traces_runtime ON traces (runtime_id, version, endpoint, start_ns DESC);
CREATE INDEX traces_session ON traces (session_id, start_ns DESC);
CREATE INDEX traces_actor ON traces (actor, start_ns DESC);
CREATE INDEX traces_end ON traces (end_ns);

CREATE TABLE spans (
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
    -- A retried export is stored once; a span id another session reuses is its own row.
    UNIQUE (trace_id, span_id, runtime_id, session_id)
);
CREATE INDEX spans_session ON spans (session_id, start_ns);

CREATE TABLE logs (
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
CREATE INDEX logs_trace ON logs (trace_id, runtime_id, session_id);
CREATE INDEX logs_session ON logs (session_id, time_ns);
CREATE INDEX logs_time ON logs (time_ns);
