-- Evaluation scores (`scores.rs`): one row per evaluator result, whoever produced it (online
-- evaluation, a batch run, a rollout gate). `ended_ns` is when the scored session or trace ended:
-- experiment and drift windows select by it, and retention deletes by it like traces by theirs.
CREATE TABLE eval_scores (
    id             INTEGER PRIMARY KEY,
    at_ns          INTEGER NOT NULL,      -- when it was scored
    ended_ns       INTEGER NOT NULL,
    source         TEXT NOT NULL,         -- online:<configId>, batch:<id>, gate:<run id>
    evaluator_id   TEXT NOT NULL,
    evaluator_name TEXT NOT NULL,
    dimension      TEXT,
    runtime_id     TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    version        INTEGER NOT NULL,
    session_id     TEXT NOT NULL,
    trace_id       TEXT,
    span_id        TEXT,
    value          REAL,
    label          TEXT,
    explanation    TEXT,
    error          TEXT,
    input_tokens   INTEGER NOT NULL DEFAULT 0,
    output_tokens  INTEGER NOT NULL DEFAULT 0
);
-- Experiments and drift: an endpoint's scores in a window, by version and evaluator.
CREATE INDEX eval_scores_endpoint ON eval_scores (runtime_id, endpoint, ended_ns);
-- Retention.
CREATE INDEX eval_scores_ended ON eval_scores (ended_ns);

-- Running totals since the store was created, per runtime, endpoint, version and evaluator: what
-- Prometheus scrapes (small whatever the number of scores). Not deleted by retention.
CREATE TABLE eval_score_totals (
    runtime_id   TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    version      INTEGER NOT NULL,
    evaluator_id TEXT NOT NULL,
    scores       INTEGER NOT NULL DEFAULT 0,   -- scores with a value
    value_sum    REAL NOT NULL DEFAULT 0,      -- the sum of those values
    errors       INTEGER NOT NULL DEFAULT 0,   -- results that carry an error
    PRIMARY KEY (runtime_id, endpoint, version, evaluator_id)
);
