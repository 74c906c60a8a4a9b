-- PostgreSQL twin of migrations/sqlite/0014_identity.sql (BIGINT integers, TEXT compared byte-wise).
-- AgentCore Identity: workload identities, API-key and OAuth2 credential providers, and cached
-- OAuth2 tokens. `kind` names the family; `spec` holds the members beyond the name as JSON TEXT;
-- `secret` holds only token-vault ciphertext (AES-256-GCM, the key is in `<data dir>/vault.key`,
-- never in this database). Times are epoch milliseconds.

CREATE TABLE identity_resources (
    kind        TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    spec        TEXT COLLATE "C" NOT NULL,
    secret      BYTEA,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

-- OAuth2 access tokens a provider issued, sealed by the vault, kept until they expire.
CREATE TABLE identity_token_cache (
    provider    TEXT COLLATE "C" NOT NULL,
    cache_key   TEXT COLLATE "C" NOT NULL,
    sealed      BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (provider, cache_key)
);
