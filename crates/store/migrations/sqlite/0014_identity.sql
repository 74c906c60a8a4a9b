-- AgentCore Identity: workload identities, API-key and OAuth2 credential providers, and cached
-- OAuth2 tokens. `kind` names the family; `spec` holds the members beyond the name as JSON TEXT;
-- `secret` holds only token-vault ciphertext (AES-256-GCM, the key is in `<data dir>/vault.key`,
-- never in this database). Times are epoch milliseconds so the schema ports to PostgreSQL.

CREATE TABLE identity_resources (
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    secret      BLOB,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);

-- OAuth2 access tokens a provider issued, sealed by the vault, kept until they expire.
CREATE TABLE identity_token_cache (
    provider    TEXT NOT NULL,
    cache_key   TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, cache_key)
);
