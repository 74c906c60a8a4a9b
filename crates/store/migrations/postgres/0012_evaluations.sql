-- PostgreSQL twin of migrations/sqlite/0012_evaluations.sql (BIGINT integers, TEXT compared byte-wise).
-- AgentCore Evaluations, control plane: evaluators and online evaluation configs, with the
-- idempotency tokens of their writes. Times are epoch milliseconds and JSON is TEXT, as on SQLite.

CREATE TABLE evaluators (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT COLLATE "C" NOT NULL UNIQUE,
    level           TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    -- description, evaluatorConfig, kmsKeyArn and tags, in the domain's own JSON shape.
    spec            TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX evaluators_by_creation ON evaluators (created_at, id);

CREATE TABLE online_evaluation_configs (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    name                TEXT COLLATE "C" NOT NULL UNIQUE,
    status              TEXT COLLATE "C" NOT NULL,
    -- ENABLED or DISABLED: whether the online evaluation loop samples for this config.
    execution_status    TEXT COLLATE "C" NOT NULL,
    failure_reason      TEXT COLLATE "C",
    -- rule, dataSourceConfig, evaluators, outputConfig and the other members.
    spec                TEXT COLLATE "C" NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX online_evaluation_configs_by_creation ON online_evaluation_configs (created_at, id);

CREATE TABLE eval_tokens (
    operation       TEXT COLLATE "C" NOT NULL,
    token           TEXT COLLATE "C" NOT NULL,
    request_hash    TEXT COLLATE "C" NOT NULL,
    response        TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (operation, token)
);
