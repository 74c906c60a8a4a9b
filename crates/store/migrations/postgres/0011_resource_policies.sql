-- PostgreSQL twin of migrations/sqlite/0011_resource_policies.sql (BIGINT integers, TEXT compared byte-wise).
-- Resource policies (PutResourcePolicy) on runtimes, endpoints and memories, by the resource's
-- canonical ARN. The document is kept as written (JSON text), validated by berth-policy before it
-- is stored. Deleting a runtime deletes the policies of its ARN and of every ARN under it.
CREATE TABLE resource_policies (
    resource_arn TEXT COLLATE "C" PRIMARY KEY,
    policy       TEXT COLLATE "C" NOT NULL,
    updated_at   BIGINT NOT NULL
);
