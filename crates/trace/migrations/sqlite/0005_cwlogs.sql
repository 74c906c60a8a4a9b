-- CloudWatch Logs groups, streams and events written through the Logs API (CreateLogGroup,
-- CreateLogStream, PutLogEvents: strands-evals' result logger, ADOT's EMF exporter). The spans
-- in `aws/spans` and the agents' log records in the runtime groups are not copied here: they
-- are read from `spans` and `logs` as they are.

CREATE TABLE log_groups (
    name       TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL
);

-- A stream may live in a group that has no row above (a runtime's group exists through its
-- data): its group is checked when it is created.
CREATE TABLE log_streams (
    group_name        TEXT NOT NULL,
    name              TEXT NOT NULL,
    created_ms        INTEGER NOT NULL,
    first_event_ms    INTEGER,
    last_event_ms     INTEGER,
    last_ingestion_ms INTEGER,
    stored_bytes      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_name, name)
);

CREATE TABLE log_events (
    id           INTEGER PRIMARY KEY,   -- ingestion order; paging tokens use it
    group_name   TEXT NOT NULL,
    stream       TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    ingestion_ms INTEGER NOT NULL,
    message      TEXT NOT NULL
);
CREATE INDEX log_events_stream ON log_events (group_name, stream, timestamp_ms, id);
CREATE INDEX log_events_group ON log_events (group_name, timestamp_ms, id);
-- Retention deletes by age.
CREATE INDEX log_events_time ON log_events (timestamp_ms);

-- A runtime's log group reads its agents' log records by (runtime, endpoint) in ingestion order.
CREATE INDEX logs_runtime ON logs (runtime_id, endpoint);
