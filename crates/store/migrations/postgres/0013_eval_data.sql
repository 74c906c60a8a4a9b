-- PostgreSQL twin of migrations/sqlite/0013_eval_data.sql (BIGINT integers, TEXT compared byte-wise).
-- AgentCore Evaluations: datasets (with their DRAFT and numbered versions' examples) and batch
-- evaluations. Rows of `berth-store`'s `eval_data` module; the domain is `berth-eval`.

CREATE TABLE eval_datasets (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT COLLATE "C" NOT NULL UNIQUE,
    arn             TEXT COLLATE "C" NOT NULL,
    description     TEXT COLLATE "C",
    schema_type     TEXT COLLATE "C",
    status          TEXT COLLATE "C" NOT NULL,
    failure_reason  TEXT COLLATE "C",
    kms_key_arn     TEXT COLLATE "C",
    tags            TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    -- 1 when the DRAFT changed since the last numbered version was published.
    draft_modified  BIGINT NOT NULL DEFAULT 0,
    -- The highest numbered version ever published (0: none); numbers are never reused.
    latest_version  BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Published versions (the DRAFT is version 0 and has no row here).
CREATE TABLE eval_dataset_versions (
    dataset_id  TEXT COLLATE "C" NOT NULL REFERENCES eval_datasets(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (dataset_id, version)
);

-- Examples of every version; version 0 is the DRAFT. `position` orders them (insertion order).
CREATE TABLE eval_dataset_examples (
    dataset_id  TEXT COLLATE "C" NOT NULL REFERENCES eval_datasets(id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    example_id  TEXT COLLATE "C" NOT NULL,
    position    BIGINT NOT NULL,
    body        TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (dataset_id, version, example_id)
);
CREATE INDEX eval_dataset_examples_order ON eval_dataset_examples (dataset_id, version, position);

-- Idempotency tokens of dataset and batch writes: the request's hash and the response sent.
CREATE TABLE eval_data_tokens (
    token         TEXT COLLATE "C" NOT NULL,
    operation     TEXT COLLATE "C" NOT NULL,
    request_hash  TEXT COLLATE "C" NOT NULL,
    response      TEXT COLLATE "C" NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (token, operation)
);

CREATE TABLE batch_evaluations (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    arn         TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    -- The StartBatchEvaluation request as accepted (JSON), with the output config Berth chose.
    request     TEXT COLLATE "C" NOT NULL,
    -- The EvaluationJobResults so far (JSON), or NULL before any session was evaluated.
    results     TEXT COLLATE "C",
    error       TEXT COLLATE "C",
    -- Set once a dataset run resolved its endpoint's version (JSON DatasetExecutionDetails).
    execution   TEXT COLLATE "C",
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX batch_evaluations_created ON batch_evaluations (created_at, id);
