-- Secrets (`berth secrets`): named values runtimes' environment variables reference
-- (`berth-secret:NAME`) and the model gateway reads. `sealed` holds only token-vault ciphertext
-- (AES-256-GCM, the key is in `<data dir>/vault.key`, never in this database). `version` climbs
-- by one on every put; a deleted secret keeps its row as a tombstone (`sealed` NULL) so a secret
-- created again under the same name goes on from the old version instead of starting at 1 again.
-- Times are epoch milliseconds so the schema ports to PostgreSQL.

CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    sealed      BLOB,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
