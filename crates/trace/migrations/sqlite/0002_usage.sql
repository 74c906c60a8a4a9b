-- GenAI accounting: token usage and tool calls summed from agents' spans (`gen_ai.*` attributes)
-- as they are ingested, in the same transaction as the spans. A span counts once: only when its
-- row in `spans` was inserted (a retried export adds nothing).
--
-- One row per runtime, version, endpoint, session, actor, model and minute (the end of the span),
-- so usage can be asked for by any of them and for a time range to the minute. Rows are not
-- deleted with the spans they came from: accounting outlives trace retention.
CREATE TABLE genai_usage (
    runtime_id     TEXT NOT NULL,
    version        INTEGER NOT NULL,
    endpoint       TEXT NOT NULL,
    session_id     TEXT NOT NULL,          -- '' when the sandbox had no session yet
    actor          TEXT NOT NULL,          -- '' without a user id
    model          TEXT NOT NULL,          -- '' for spans naming no model (tool calls)
    minute_ns      INTEGER NOT NULL,       -- start of the minute the span ended in
    model_calls    INTEGER NOT NULL DEFAULT 0,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    total_tokens   INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    tool_calls     INTEGER NOT NULL DEFAULT 0,
    tool_errors    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (runtime_id, version, endpoint, session_id, actor, model, minute_ns)
);
CREATE INDEX genai_usage_minute ON genai_usage (minute_ns);
CREATE INDEX genai_usage_session ON genai_usage (session_id, minute_ns);
CREATE INDEX genai_usage_actor ON genai_usage (actor, minute_ns);

-- The same counts since the store was created, per runtime, version and model only: what
-- Prometheus scrapes, small whatever the number of sessions and minutes.
CREATE TABLE genai_totals (
    runtime_id     TEXT NOT NULL,
    version        INTEGER NOT NULL,
    model          TEXT NOT NULL,
    model_calls    INTEGER NOT NULL DEFAULT 0,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0,
    total_tokens   INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    tool_calls     INTEGER NOT NULL DEFAULT 0,
    tool_errors    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (runtime_id, version, model)
);
