-- PostgreSQL twin of migrations/sqlite/0015_secrets.sql (BIGINT integers, TEXT compared byte-wise).
-- Secrets (`berth secrets`): named values runtimes' environment variables reference
-- (`berth-secret:NAME`) and the model gateway reads. `sealed` holds only token-vault ciphertext
-- (AES-256-GCM, the key is in `<data dir>/vault.key`, never in this database). `version` climbs
-- by one on every put; a deleted secret keeps its row as a tombstone (`sealed` NULL) so a secret
-- created again under the same name goes on from the old version instead of starting at 1 again.
-- Times are epoch milliseconds.

CREATE TABLE secrets (
    name        TEXT COLLATE "C" PRIMARY KEY,
    version     BIGINT NOT NULL,
    sealed      BYTEA,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
