-- PostgreSQL twin of migrations/sqlite/0010_authz.sql (BIGINT integers, TEXT compared byte-wise).
-- Roles: a runtime's roleArn names one by its name (the last path segment of the ARN). The policy
-- documents are kept as written (JSON text), validated by berth-policy before they are stored.
CREATE TABLE roles (
    name        TEXT COLLATE "C" PRIMARY KEY,
    arn         TEXT COLLATE "C" NOT NULL,
    policies    TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Access keys for people and CI. The secret is never stored: it is derived from the root secret
-- and the key id, so only the id, a name, the policy and the status live here.
CREATE TABLE access_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    policy      TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL CHECK (status IN ('Active', 'Inactive')),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
