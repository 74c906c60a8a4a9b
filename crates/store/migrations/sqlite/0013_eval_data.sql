-- AgentCore Evaluations: datasets (with their DRAFT and numbered versions' examples) and batch
-- evaluations. Rows of `berth-store`'s `eval_data` module; the domain is `berth-eval`.

CREATE TABLE eval_datasets (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    arn             TEXT NOT NULL,
    description     TEXT,
    schema_type     TEXT,
    status          TEXT NOT NULL,
    failure_reason  TEXT,
    kms_key_arn     TEXT,
    tags            TEXT NOT NULL DEFAULT '{}',
    -- 1 when the DRAFT changed since the last numbered version was published.
    draft_modified  INTEGER NOT NULL DEFAULT 0,
    -- The highest numbered version ever published (0: none); numbers are never reused.
    latest_version  INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Published versions (the DRAFT is version 0 and has no row here).
CREATE TABLE eval_dataset_versions (
    dataset_id  TEXT NOT NULL REFERENCES eval_datasets(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (dataset_id, version)
);

-- Examples of every version; version 0 is the DRAFT. `position` orders them (insertion order).
CREATE TABLE eval_dataset_examples (
    dataset_id  TEXT NOT NULL REFERENCES eval_datasets(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    example_id  TEXT NOT NULL,
    position    INTEGER NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version, example_id)
);
CREATE INDEX eval_dataset_examples_order ON eval_dataset_examples (dataset_id, version, position);

-- Idempotency tokens of dataset and batch writes: the request's hash and the response sent.
CREATE TABLE eval_data_tokens (
    token         TEXT NOT NULL,
    operation     TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (token, operation)
);

CREATE TABLE batch_evaluations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    arn         TEXT NOT NULL,
    status      TEXT NOT NULL,
    -- The StartBatchEvaluation request as accepted (JSON), with the output config Berth chose.
    request     TEXT NOT NULL,
    -- The EvaluationJobResults so far (JSON), or NULL before any session was evaluated.
    results     TEXT,
    error       TEXT,
    -- Set once a dataset run resolved its endpoint's version (JSON DatasetExecutionDetails).
    execution   TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX batch_evaluations_created ON batch_evaluations (created_at, id);
