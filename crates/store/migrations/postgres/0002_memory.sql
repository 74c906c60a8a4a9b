-- Memory: memories, events, sessions, records, extraction jobs (see migrations/sqlite/0002_memory.sql).
-- Placeholder of the PostgreSQL skeleton; the memory backend's tables replace it.
SELECT 1;
