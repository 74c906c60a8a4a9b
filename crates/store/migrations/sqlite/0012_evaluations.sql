-- AgentCore Evaluations, control plane: evaluators and online evaluation configs, with the
-- idempotency tokens of their writes. Times are epoch milliseconds and JSON is TEXT so the same
-- schema ports to PostgreSQL.

CREATE TABLE evaluators (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    level           TEXT NOT NULL,
    status          TEXT NOT NULL,
    -- description, evaluatorConfig, kmsKeyArn and tags, in the domain's own JSON shape.
    spec            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX evaluators_by_creation ON evaluators (created_at, id);

CREATE TABLE online_evaluation_configs (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    -- ENABLED or DISABLED: whether the online evaluation loop samples for this config.
    execution_status    TEXT NOT NULL,
    failure_reason      TEXT,
    -- rule, dataSourceConfig, evaluators, outputConfig and the other members.
    spec                TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX online_evaluation_configs_by_creation ON online_evaluation_configs (created_at, id);

CREATE TABLE eval_tokens (
    operation       TEXT NOT NULL,
    token           TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (operation, token)
);
