-- Roles: a runtime's roleArn names one by its name (the last path segment of the ARN). The policy
-- documents are kept as written (JSON text), validated by berth-policy before they are stored.
CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    arn         TEXT NOT NULL,
    policies    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Access keys for people and CI. The secret is never stored: it is derived from the root secret
-- and the key id, so only the id, a name, the policy and the status live here.
CREATE TABLE access_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    policy      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('Active', 'Inactive')),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
