-- Resource policies (PutResourcePolicy) on runtimes, endpoints and memories, by the resource's
-- canonical ARN. The document is kept as written (JSON text), validated by berth-policy before it
-- is stored. Deleting a runtime deletes the policies of its ARN and of every ARN under it.
CREATE TABLE resource_policies (
    resource_arn TEXT PRIMARY KEY,
    policy       TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
);
