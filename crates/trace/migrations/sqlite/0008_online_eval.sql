-- Online evaluation: how far each online evaluation config has scored. A session is taken once
-- it has been quiet for the config's session timeout; the cursor is the last taken session's
-- (end time, runtime, session id), so a restart resumes after it and nothing is scored twice.
CREATE TABLE online_eval_cursors (
    config_id  TEXT PRIMARY KEY,
    ended_ns   INTEGER NOT NULL,
    runtime_id TEXT NOT NULL,
    session_id TEXT NOT NULL
);

-- The finished-session query groups a runtime's endpoint's traces by session.
CREATE INDEX traces_endpoint_session ON traces (runtime_id, endpoint, session_id, end_ns);
