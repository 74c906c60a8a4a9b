-- The trace store on PostgreSQL (schema berth_trace, the connections' search_path): the tables
-- of migrations/sqlite/ 0001 to 0008 in their final shape. Times are BIGINT nanoseconds (Unix ms
-- where the SQLite column says so), JSON documents TEXT, so both backends decode rows alike.
-- Text keys compare byte-wise (COLLATE "C", as SQLite does), so paging and ordering agree.

-- One row per trace and (runtime, session) it was seen in (see the SQLite migration 0001).
-- `seq` stands in for SQLite's rowid: it orders rows of equal start in pages and retention.
CREATE TABLE traces (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY,
    trace_id      TEXT COLLATE "C" NOT NULL,
    runtime_id    TEXT COLLATE "C" NOT NULL,
    session_id    TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    endpoint      TEXT COLLATE "C" NOT NULL,
    actor         TEXT COLLATE "C",
    service_name  TEXT NOT NULL,
    root_name     TEXT,
    root_start_ns BIGINT,
    start_ns      BIGINT NOT NULL,
    end_ns        BIGINT NOT NULL,
    span_count    BIGINT NOT NULL,
    error         BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    PRIMARY KEY (trace_id, runtime_id, session_id)
);
CREATE UNIQUE INDEX traces_seq ON traces (seq);
CREATE INDEX traces_start ON traces (start_ns DESC, seq DESC);
CREATE INDEX traces_runtime ON traces (runtime_id, version, endpoint, start_ns DESC);
CREATE INDEX traces_session ON traces (session_id, start_ns DESC);
CREATE INDEX traces_actor ON traces (actor, start_ns DESC);
CREATE INDEX traces_end ON traces (end_ns);
CREATE INDEX traces_endpoint_session ON traces (runtime_id, endpoint, session_id, end_ns);

-- `seq` never goes back (an identity column hands out each value once): the OTLP exporter
-- tails by it.
CREATE TABLE spans (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id       TEXT COLLATE "C" NOT NULL,
    span_id        TEXT COLLATE "C" NOT NULL,
    parent_span_id TEXT,
    runtime_id     TEXT COLLATE "C" NOT NULL,
    session_id     TEXT COLLATE "C" NOT NULL,
    version        BIGINT NOT NULL,
    endpoint       TEXT COLLATE "C" NOT NULL,
    actor          TEXT COLLATE "C",
    service_name   TEXT NOT NULL,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    start_ns       BIGINT NOT NULL,
    end_ns         BIGINT NOT NULL,
    status_code    TEXT NOT NULL,
    status_message TEXT NOT NULL,
    scope          TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    resource       TEXT NOT NULL,
    events         TEXT NOT NULL,
    UNIQUE (trace_id, span_id, runtime_id, session_id)
);
CREATE INDEX spans_session ON spans (session_id, start_ns);

CREATE TABLE logs (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id        TEXT COLLATE "C",
    span_id         TEXT COLLATE "C",
    runtime_id      TEXT COLLATE "C" NOT NULL,
    session_id      TEXT COLLATE "C" NOT NULL,
    version         BIGINT NOT NULL,
    endpoint        TEXT COLLATE "C" NOT NULL,
    actor           TEXT COLLATE "C",
    service_name    TEXT NOT NULL,
    time_ns         BIGINT NOT NULL,
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
CREATE INDEX logs_runtime ON logs (runtime_id, endpoint);

-- GenAI accounting (see the SQLite migration 0002).
CREATE TABLE genai_usage (
    runtime_id         TEXT COLLATE "C" NOT NULL,
    version            BIGINT NOT NULL,
    endpoint           TEXT COLLATE "C" NOT NULL,
    session_id         TEXT COLLATE "C" NOT NULL,
    actor              TEXT COLLATE "C" NOT NULL,
    model              TEXT COLLATE "C" NOT NULL,
    minute_ns          BIGINT NOT NULL,
    model_calls        BIGINT NOT NULL DEFAULT 0,
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    total_tokens       BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    tool_calls         BIGINT NOT NULL DEFAULT 0,
    tool_errors        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (runtime_id, version, endpoint, session_id, actor, model, minute_ns)
);
CREATE INDEX genai_usage_minute ON genai_usage (minute_ns);
CREATE INDEX genai_usage_session ON genai_usage (session_id, minute_ns);
CREATE INDEX genai_usage_actor ON genai_usage (actor, minute_ns);

CREATE TABLE genai_totals (
    runtime_id         TEXT COLLATE "C" NOT NULL,
    version            BIGINT NOT NULL,
    model              TEXT COLLATE "C" NOT NULL,
    model_calls        BIGINT NOT NULL DEFAULT 0,
    input_tokens       BIGINT NOT NULL DEFAULT 0,
    output_tokens      BIGINT NOT NULL DEFAULT 0,
    total_tokens       BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    tool_calls         BIGINT NOT NULL DEFAULT 0,
    tool_errors        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (runtime_id, version, model)
);

-- CloudWatch Logs groups, streams and events written through the Logs API (SQLite 0005).
CREATE TABLE log_groups (
    name       TEXT COLLATE "C" PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

CREATE TABLE log_streams (
    group_name        TEXT COLLATE "C" NOT NULL,
    name              TEXT COLLATE "C" NOT NULL,
    created_ms        BIGINT NOT NULL,
    first_event_ms    BIGINT,
    last_event_ms     BIGINT,
    last_ingestion_ms BIGINT,
    stored_bytes      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (group_name, name)
);

CREATE TABLE log_events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_name   TEXT COLLATE "C" NOT NULL,
    stream       TEXT COLLATE "C" NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    ingestion_ms BIGINT NOT NULL,
    message      TEXT NOT NULL
);
CREATE INDEX log_events_stream ON log_events (group_name, stream, timestamp_ms, id);
CREATE INDEX log_events_group ON log_events (group_name, timestamp_ms, id);
CREATE INDEX log_events_time ON log_events (timestamp_ms);

-- OTLP export cursors (SQLite 0006).
CREATE TABLE export_cursors (
    signal     TEXT COLLATE "C" PRIMARY KEY,
    last_seq   BIGINT NOT NULL,
    updated_ns BIGINT NOT NULL
);

-- Evaluation scores and their running totals (SQLite 0007).
CREATE TABLE eval_scores (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ns          BIGINT NOT NULL,
    ended_ns       BIGINT NOT NULL,
    source         TEXT COLLATE "C" NOT NULL,
    evaluator_id   TEXT COLLATE "C" NOT NULL,
    evaluator_name TEXT NOT NULL,
    dimension      TEXT,
    runtime_id     TEXT COLLATE "C" NOT NULL,
    endpoint       TEXT COLLATE "C" NOT NULL,
    version        BIGINT NOT NULL,
    session_id     TEXT COLLATE "C" NOT NULL,
    trace_id       TEXT,
    span_id        TEXT,
    value          DOUBLE PRECISION,
    label          TEXT,
    explanation    TEXT,
    error          TEXT,
    input_tokens   BIGINT NOT NULL DEFAULT 0,
    output_tokens  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX eval_scores_endpoint ON eval_scores (runtime_id, endpoint, ended_ns);
CREATE INDEX eval_scores_ended ON eval_scores (ended_ns);

CREATE TABLE eval_score_totals (
    runtime_id   TEXT COLLATE "C" NOT NULL,
    endpoint     TEXT COLLATE "C" NOT NULL,
    version      BIGINT NOT NULL,
    evaluator_id TEXT COLLATE "C" NOT NULL,
    scores       BIGINT NOT NULL DEFAULT 0,
    value_sum    DOUBLE PRECISION NOT NULL DEFAULT 0,
    errors       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (runtime_id, endpoint, version, evaluator_id)
);

-- Online evaluation cursors (SQLite 0008).
CREATE TABLE online_eval_cursors (
    config_id  TEXT COLLATE "C" PRIMARY KEY,
    ended_ns   BIGINT NOT NULL,
    runtime_id TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL
);
