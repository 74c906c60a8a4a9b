//! [`MemoryStore`](super::MemoryStore) for both backends: `memory_store!(Store, Database)`
//! expands to the one implementation (as `crate::sql` does for the other stores), over row
//! decoders (through [`Cols`]), the SQL both dialects run as written, and the builders of the
//! queries whose shape depends on the request.
//!
//! Both dialects accept `$n` parameters, row values, `ON CONFLICT ... DO UPDATE` with `excluded`,
//! `IS NOT DISTINCT FROM` and `RETURNING`. What really differs is written by each backend next to
//! its invocation, as functions the macro body calls by name:
//! - `put_records(&Store, &[RecordRow])`: SQLite's FTS5 triggers index content; PostgreSQL
//!   writes the record's tsvector with it;
//! - `search_keywords(&Store, &RecordScope, &[String], u32)`: FTS5's bm25, or BM25 over the
//!   tsvectors;
//! - `push_meta(&mut QueryBuilder<Database>, &MetaCond)`: a metadata condition in the
//!   dialect's JSON functions;
//! - `CLAIM_LOCK`: the row lock clause of [`claim_jobs_sql`].

use super::{
    COMMON_TERM_SHARE, EventQuery, EventRow, JobQuery, JobRow, MemoryRow, MetaCond,
    PRUNE_FROM_DOCS, RecordRow, RecordScope, SessionRow, TokenRow,
};
use crate::Error;
use crate::cols::{Cols, json_col, opt_json_col, u32_col};
use berth_types::EpochMillis;
use sqlx::{Database, Encode, QueryBuilder, Type};

/// Whether keyword search looks for a term held by `df` of an index of `docs` records: every
/// term in a small index; in a large one, not a term no record holds, nor a common one.
pub(crate) fn term_searched(docs: i64, df: i64) -> bool {
    docs < PRUNE_FROM_DOCS || (df > 0 && df as f64 <= docs as f64 * COMMON_TERM_SHARE)
}

/// Encodes an embedding as little-endian f32s, as both backends store it.
pub(crate) fn embedding_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes a stored embedding.
pub(crate) fn embedding_from_bytes(b: &[u8]) -> Result<Vec<f32>, Error> {
    if !b.len().is_multiple_of(4) {
        return Err(Error::Corrupt {
            table: "memory_records",
            detail: "embedding length is not a multiple of 4".into(),
        });
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The columns of `memory_records` but the embedding, in both schemas.
pub(crate) const RECORD_COLS: &str = "record_id, memory_id, strategy_id, namespace, content, \
    metadata, record_ts, expires_at, created_at, updated_at";

pub(crate) fn memory_row(r: &impl Cols) -> Result<MemoryRow, Error> {
    Ok(MemoryRow {
        id: r.text("id")?,
        name: r.text("name")?,
        status: r.text("status")?,
        failure_reason: r.opt_text("failure_reason")?,
        event_expiry_days: u32_col(r, "event_expiry_days")?,
        spec: json_col(r, "spec", "memories")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

pub(crate) fn event_row(r: &impl Cols) -> Result<EventRow, Error> {
    Ok(EventRow {
        memory_id: r.text("memory_id")?,
        actor_id: r.text("actor_id")?,
        session_id: r.text("session_id")?,
        event_id: r.text("event_id")?,
        event_ts: r.int("event_ts")?,
        branch_name: r.opt_text("branch_name")?,
        branch_root: r.opt_text("branch_root")?,
        payload: json_col(r, "payload", "memory_events")?,
        metadata: opt_json_col(r, "metadata", "memory_events")?,
        client_token: r.opt_text("client_token")?,
        created_at: r.int("created_at")?,
    })
}

pub(crate) fn session_row(r: &impl Cols) -> Result<SessionRow, Error> {
    Ok(SessionRow {
        actor_id: r.text("actor_id")?,
        session_id: r.text("session_id")?,
        created_at: r.int("created_at")?,
        last_event_ts: r.int("last_event_ts")?,
        extracted_upto: r.opt_text("extracted_upto")?,
    })
}

/// A record; its embedding only when asked for (the row then has an `embedding` column).
/// A record, without its embedding (see [`embedding_col`]).
pub(crate) fn record_row(r: &impl Cols) -> Result<RecordRow, Error> {
    Ok(RecordRow {
        record_id: r.text("record_id")?,
        memory_id: r.text("memory_id")?,
        strategy_id: r.text("strategy_id")?,
        namespace: r.text("namespace")?,
        content: r.text("content")?,
        metadata: opt_json_col(r, "metadata", "memory_records")?,
        record_ts: r.int("record_ts")?,
        expires_at: r.opt_int("expires_at")?,
        embedding: None,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

/// The `embedding` column as read (BLOB or BYTEA), decoded.
pub(crate) fn embedding_col(bytes: Option<Vec<u8>>) -> Result<Option<Vec<f32>>, Error> {
    bytes.map(|b| embedding_from_bytes(&b)).transpose()
}

pub(crate) fn job_row(r: &impl Cols) -> Result<JobRow, Error> {
    Ok(JobRow {
        job_id: r.text("job_id")?,
        memory_id: r.text("memory_id")?,
        strategy_id: r.text("strategy_id")?,
        actor_id: r.text("actor_id")?,
        session_id: r.text("session_id")?,
        status: r.text("status")?,
        failure_reason: r.opt_text("failure_reason")?,
        messages: json_col(r, "messages", "memory_jobs")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

pub(crate) fn token_row(r: &impl Cols) -> Result<TokenRow, Error> {
    Ok(TokenRow {
        operation: r.text("operation")?,
        token: r.text("token")?,
        request_hash: r.text("request_hash")?,
        response: json_col(r, "response", "memory_tokens")?,
        created_at: r.int("created_at")?,
    })
}

/// The tables a memory's rows live in besides `memories`, in the order a purge empties them.
pub(crate) const MEMORY_TABLES: [&str; 4] = [
    "memory_events",
    "memory_records",
    "memory_sessions",
    "memory_jobs",
];

/// Deletes up to 5,000 of one memory's (`$1`) rows of `table`, one of [`MEMORY_TABLES`], by key.
pub(crate) fn purge_chunk_sql(table: &str) -> String {
    let key = match table {
        "memory_events" => "memory_id, actor_id, session_id, event_id",
        "memory_sessions" => "memory_id, actor_id, session_id",
        "memory_records" => "seq",
        _ => "job_id",
    };
    format!(
        "DELETE FROM {table} WHERE ({key}) IN \
         (SELECT {key} FROM {table} WHERE memory_id = $1 LIMIT 5000)"
    )
}

pub(crate) const MEMORY: &str = "SELECT * FROM memories WHERE id = $1";
pub(crate) const LIST_MEMORIES: &str = "SELECT * FROM memories WHERE (created_at, id) > ($1, $2) \
    ORDER BY created_at, id LIMIT $3";
pub(crate) const MEMORIES_IN_STATUS: &str =
    "SELECT * FROM memories WHERE status = $1 ORDER BY created_at, id";
pub(crate) const DELETE_MEMORY: &str = "DELETE FROM memories WHERE id = $1";
/// Inserts a memory: `$1`..`$8` in [`MemoryRow`]'s field order.
pub(crate) const INSERT_MEMORY: &str = "INSERT INTO memories (id, name, status, failure_reason, \
    event_expiry_days, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// [`INSERT_MEMORY`], replacing the row with the same id.
pub(crate) const PUT_MEMORY: &str = "INSERT INTO memories (id, name, status, failure_reason, \
    event_expiry_days, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status, \
    failure_reason = excluded.failure_reason, event_expiry_days = excluded.event_expiry_days, \
    spec = excluded.spec, created_at = excluded.created_at, updated_at = excluded.updated_at";
pub(crate) const TOKEN: &str = "SELECT * FROM memory_tokens WHERE operation = $1 AND token = $2";
pub(crate) const INSERT_TOKEN: &str = "INSERT INTO memory_tokens \
    (operation, token, request_hash, response, created_at) VALUES ($1, $2, $3, $4, $5)";

/// Inserts an event (`$1`..`$11` in [`EventRow`]'s field order) unless its client token is taken.
pub(crate) const INSERT_EVENT: &str = "INSERT INTO memory_events (memory_id, actor_id, \
    session_id, event_id, event_ts, branch_name, branch_root, payload, metadata, client_token, \
    created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING";
pub(crate) const EVENT_BY_TOKEN: &str =
    "SELECT * FROM memory_events WHERE memory_id = $1 AND client_token = $2";
/// Records that a session has events: `$1`..`$3` its key, `$4` first acceptance, `$5` newest time.
pub(crate) const UPSERT_SESSION: &str = "INSERT INTO memory_sessions (memory_id, actor_id, \
    session_id, created_at, last_event_ts) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (memory_id, actor_id, session_id) DO UPDATE SET last_event_ts = \
    CASE WHEN excluded.last_event_ts > memory_sessions.last_event_ts \
    THEN excluded.last_event_ts ELSE memory_sessions.last_event_ts END";
pub(crate) const EVENT: &str = "SELECT * FROM memory_events WHERE memory_id = $1 \
    AND actor_id = $2 AND session_id = $3 AND event_id = $4";
pub(crate) const EVENTS_AFTER: &str = "SELECT * FROM memory_events WHERE memory_id = $1 \
    AND actor_id = $2 AND session_id = $3 AND event_id > $4 AND event_ts >= $5 \
    ORDER BY event_id LIMIT $6";
pub(crate) const DELETE_EVENT: &str = "DELETE FROM memory_events WHERE memory_id = $1 \
    AND actor_id = $2 AND session_id = $3 AND event_id = $4";
pub(crate) const LIST_SESSIONS: &str = "SELECT * FROM memory_sessions WHERE memory_id = $1 \
    AND actor_id = $2 AND last_event_ts >= $3 AND (last_event_ts, session_id) < ($4, $5) \
    ORDER BY last_event_ts DESC, session_id DESC LIMIT $6";
pub(crate) const LIST_ACTORS: &str = "SELECT DISTINCT actor_id FROM memory_sessions \
    WHERE memory_id = $1 AND last_event_ts >= $2 AND actor_id > $3 ORDER BY actor_id LIMIT $4";
pub(crate) const SESSIONS_TO_EXTRACT: &str = "SELECT s.* FROM memory_sessions s \
    WHERE s.memory_id = $1 \
    AND EXISTS (SELECT 1 FROM memory_events e WHERE e.memory_id = s.memory_id \
        AND e.actor_id = s.actor_id AND e.session_id = s.session_id \
        AND e.event_id > coalesce(s.extracted_upto, '')) \
    AND NOT EXISTS (SELECT 1 FROM memory_events e WHERE e.memory_id = s.memory_id \
        AND e.actor_id = s.actor_id AND e.session_id = s.session_id \
        AND e.event_id > coalesce(s.extracted_upto, '') AND e.created_at > $2) \
    LIMIT $3";
/// Moves a session's (`$1`..`$3`) extraction cursor to `$4` if it is still at `$5`. Conditional,
/// so two extractors planning the same events cannot both record jobs for them (on PostgreSQL a
/// concurrent mover holds the row lock; once it commits the condition is re-checked and fails).
pub(crate) const MOVE_CURSOR: &str = "UPDATE memory_sessions SET extracted_upto = $4 \
    WHERE memory_id = $1 AND actor_id = $2 AND session_id = $3 \
    AND extracted_upto IS NOT DISTINCT FROM $5";
pub(crate) const PURGE_EXPIRED_EVENTS: &str = "DELETE FROM memory_events \
    WHERE (memory_id, actor_id, session_id, event_id) IN \
    (SELECT memory_id, actor_id, session_id, event_id FROM memory_events \
     WHERE memory_id = $1 AND event_ts < $2 LIMIT $3)";
pub(crate) const PURGE_EMPTY_SESSIONS: &str = "DELETE FROM memory_sessions \
    WHERE memory_id = $1 AND last_event_ts < $2 \
    AND NOT EXISTS (SELECT 1 FROM memory_events e WHERE e.memory_id = memory_sessions.memory_id \
    AND e.actor_id = memory_sessions.actor_id AND e.session_id = memory_sessions.session_id)";

pub(crate) const RECORD: &str =
    "SELECT * FROM memory_records WHERE memory_id = $1 AND record_id = $2";
pub(crate) const EMBEDDINGS: &str = "SELECT record_id, namespace, strategy_id, embedding \
    FROM memory_records WHERE memory_id = $1 AND embedding IS NOT NULL";
pub(crate) const PURGE_EXPIRED_RECORDS: &str = "DELETE FROM memory_records WHERE seq IN \
    (SELECT seq FROM memory_records WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2) \
    RETURNING memory_id, record_id";

/// Inserts or replaces a job: `$1`..`$10` in [`JobRow`]'s field order.
pub(crate) const PUT_JOB: &str = "INSERT INTO memory_jobs (job_id, memory_id, strategy_id, \
    actor_id, session_id, status, failure_reason, messages, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
    ON CONFLICT (job_id) DO UPDATE SET memory_id = excluded.memory_id, \
    strategy_id = excluded.strategy_id, actor_id = excluded.actor_id, \
    session_id = excluded.session_id, status = excluded.status, \
    failure_reason = excluded.failure_reason, messages = excluded.messages, \
    created_at = excluded.created_at, updated_at = excluded.updated_at";
pub(crate) const JOB: &str = "SELECT * FROM memory_jobs WHERE memory_id = $1 AND job_id = $2";
pub(crate) const JOBS_IN_STATUS: &str =
    "SELECT * FROM memory_jobs WHERE status = $1 ORDER BY created_at, job_id LIMIT $2";

/// Claims jobs (see [`MemoryStore::claim_jobs`](super::MemoryStore::claim_jobs)): `$1` now,
/// `$2` the lapse time, `$3` how many; `lock` is what the dialect adds to the choosing `SELECT`
/// (PostgreSQL: `FOR UPDATE SKIP LOCKED`). The outer condition is re-checked on a row another
/// claimer changed meanwhile, so a job is never claimed twice.
pub(crate) fn claim_jobs_sql(lock: &str) -> String {
    const CLAIMABLE: &str = "(status = 'PENDING' OR (status = 'RUNNING' AND updated_at < $2))";
    format!(
        "UPDATE memory_jobs SET status = 'RUNNING', updated_at = $1 WHERE job_id IN \
         (SELECT job_id FROM memory_jobs WHERE {CLAIMABLE} ORDER BY created_at, job_id \
          LIMIT $3{lock}) AND {CLAIMABLE} RETURNING *"
    )
}

/// A cursor with an empty session id starts above every session at its time: keys compare
/// bytewise in both schemas, and U+10FFFF is the highest code point.
pub(crate) fn session_cursor(after: Option<(EpochMillis, String)>) -> (EpochMillis, String) {
    match after {
        None => (i64::MAX, "\u{10FFFF}".to_owned()),
        Some((t, s)) if s.is_empty() => (t, "\u{10FFFF}".to_owned()),
        Some(c) => c,
    }
}

/// Appends the conditions of a record scope (`alias` is `""` or `"r."`).
pub(crate) fn push_scope<'a, DB>(qb: &mut QueryBuilder<'a, DB>, s: &RecordScope, alias: &str)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    qb.push(format!(" {alias}memory_id = "))
        .push_bind(s.memory_id.clone());
    if let Some(ns) = &s.namespace {
        qb.push(format!(" AND {alias}namespace = "))
            .push_bind(ns.clone());
    }
    if let Some(p) = &s.namespace_prefix {
        // Not LIKE: SQLite's LIKE folds ASCII case, so `/users/alice/` would match
        // `/users/ALICE/`, and `_` and `%` are wildcards. substr and length both count
        // characters, so this is an exact, case-sensitive prefix test in both dialects.
        qb.push(format!(" AND substr({alias}namespace, 1, length("))
            .push_bind(p.clone())
            .push(")) = ")
            .push_bind(p.clone());
    }
    if let Some(st) = &s.strategy_id {
        qb.push(format!(" AND {alias}strategy_id = "))
            .push_bind(st.clone());
    }
    qb.push(format!(
        " AND ({alias}expires_at IS NULL OR {alias}expires_at > "
    ))
    .push_bind(s.now)
    .push(")");
}

/// `ListEvents`' query; `meta` appends one metadata condition in the backend's JSON dialect.
pub(crate) fn events_query<'a, DB>(
    q: &EventQuery,
    meta: impl Fn(&mut QueryBuilder<'a, DB>, &MetaCond),
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new("SELECT * FROM memory_events WHERE memory_id = ");
    qb.push_bind(q.memory_id.clone())
        .push(" AND actor_id = ")
        .push_bind(q.actor_id.clone())
        .push(" AND session_id = ")
        .push_bind(q.session_id.clone())
        .push(" AND event_ts >= ")
        .push_bind(q.min_ts);
    if let Some(b) = &q.before {
        qb.push(" AND event_id < ").push_bind(b.clone());
    }
    if let Some(name) = &q.branch {
        qb.push(" AND (branch_name = ").push_bind(name.clone());
        if let Some(root) = &q.parent_upto {
            qb.push(" OR (branch_name IS NULL AND event_id <= ")
                .push_bind(root.clone())
                .push(")");
        }
        qb.push(")");
    }
    for c in &q.metadata {
        meta(&mut qb, c);
    }
    qb.push(" ORDER BY event_id DESC LIMIT ")
        .push_bind(i64::from(q.limit));
    qb
}

/// `ListMemoryRecords`' query: records in scope, newest first, after the cursor.
pub(crate) fn records_query<'a, DB>(
    scope: &RecordScope,
    after: Option<(EpochMillis, String)>,
    limit: u32,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new(format!("SELECT {RECORD_COLS} FROM memory_records WHERE"));
    push_scope(&mut qb, scope, "");
    if let Some((t, id)) = after {
        qb.push(" AND (created_at, record_id) < (")
            .push_bind(t)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    qb.push(" ORDER BY created_at DESC, record_id DESC LIMIT ")
        .push_bind(i64::from(limit));
    qb
}

/// `ListMemoryExtractionJobs`' query.
pub(crate) fn jobs_query<'a, DB>(q: &JobQuery) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new("SELECT * FROM memory_jobs WHERE memory_id = ");
    qb.push_bind(q.memory_id.clone());
    for (col, v) in [
        ("status", &q.status),
        ("strategy_id", &q.strategy_id),
        ("actor_id", &q.actor_id),
        ("session_id", &q.session_id),
    ] {
        if let Some(v) = v {
            qb.push(format!(" AND {col} = ")).push_bind(v.clone());
        }
    }
    if let Some((t, id)) = &q.after {
        qb.push(" AND (created_at, job_id) > (")
            .push_bind(*t)
            .push(", ")
            .push_bind(id.clone())
            .push(")");
    }
    qb.push(" ORDER BY created_at, job_id LIMIT ")
        .push_bind(i64::from(q.limit));
    qb
}

/// A statement with its parameters, in either dialect.
pub(crate) type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// Binds a memory's columns, as [`INSERT_MEMORY`] numbers them.
pub(crate) fn bind_memory<'q, DB>(q: Query<'q, DB>, m: &'q MemoryRow) -> Query<'q, DB>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    q.bind(&m.id)
        .bind(&m.name)
        .bind(&m.status)
        .bind(&m.failure_reason)
        .bind(i64::from(m.event_expiry_days))
        .bind(m.spec.to_string())
        .bind(m.created_at)
        .bind(m.updated_at)
}

/// Binds a token's columns, as [`INSERT_TOKEN`] numbers them.
pub(crate) fn bind_token<'q, DB>(q: Query<'q, DB>, t: &'q TokenRow) -> Query<'q, DB>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    q.bind(&t.operation)
        .bind(&t.token)
        .bind(&t.request_hash)
        .bind(t.response.to_string())
        .bind(t.created_at)
}

/// Binds an event's columns, as [`INSERT_EVENT`] numbers them.
pub(crate) fn bind_event<'q, DB>(q: Query<'q, DB>, e: &'q EventRow) -> Query<'q, DB>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    q.bind(&e.memory_id)
        .bind(&e.actor_id)
        .bind(&e.session_id)
        .bind(&e.event_id)
        .bind(e.event_ts)
        .bind(&e.branch_name)
        .bind(&e.branch_root)
        .bind(e.payload.to_string())
        .bind(e.metadata.as_ref().map(|m| m.to_string()))
        .bind(&e.client_token)
        .bind(e.created_at)
}

/// Binds a record's [`RECORD_COLS`] and then its embedding.
pub(crate) fn bind_record<'q, DB>(q: Query<'q, DB>, r: &'q RecordRow) -> Query<'q, DB>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<Vec<u8>>: Encode<'q, DB> + Type<DB>,
{
    q.bind(&r.record_id)
        .bind(&r.memory_id)
        .bind(&r.strategy_id)
        .bind(&r.namespace)
        .bind(&r.content)
        .bind(r.metadata.as_ref().map(|m| m.to_string()))
        .bind(r.record_ts)
        .bind(r.expires_at)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.embedding.as_deref().map(embedding_to_bytes))
}

/// Binds a job's columns, as [`PUT_JOB`] numbers them.
pub(crate) fn bind_job<'q, DB>(q: Query<'q, DB>, j: &'q JobRow) -> Query<'q, DB>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    q.bind(&j.job_id)
        .bind(&j.memory_id)
        .bind(&j.strategy_id)
        .bind(&j.actor_id)
        .bind(&j.session_id)
        .bind(&j.status)
        .bind(&j.failure_reason)
        .bind(j.messages.to_string())
        .bind(j.created_at)
        .bind(j.updated_at)
}

/// Records by id, without embeddings (`ids` must not be empty).
pub(crate) fn records_by_id_query<'a, DB>(memory_id: &str, ids: &[String]) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    String: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new(format!(
        "SELECT {RECORD_COLS} FROM memory_records WHERE memory_id = "
    ));
    qb.push_bind(memory_id.to_owned())
        .push(" AND record_id IN (");
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(id.clone());
    }
    qb.push(")");
    qb
}

pub(crate) const DELETE_RECORD: &str =
    "DELETE FROM memory_records WHERE memory_id = $1 AND record_id = $2";

/// What a put of an existing record (by `record_id`) changes, as an upsert's `SET` list: not
/// its memory, nor its creation time.
pub(crate) const RECORD_UPSERT_SET: &str = "strategy_id = excluded.strategy_id, \
    namespace = excluded.namespace, content = excluded.content, metadata = excluded.metadata, \
    record_ts = excluded.record_ts, expires_at = excluded.expires_at, \
    embedding = excluded.embedding, updated_at = excluded.updated_at";

/// `impl MemoryStore for $store` over the sqlx database `$db`; the invoking module defines
/// `put_records`, `search_keywords` and `push_meta` (see the module docs).
macro_rules! memory_store {
    ($store:ty, $db:ty) => {
        async fn put_token(
            tx: &mut <$db as sqlx::Database>::Connection,
            t: Option<&crate::memory::TokenRow>,
        ) -> Result<(), crate::Error> {
            let Some(t) = t else { return Ok(()) };
            crate::sql::or_exists(
                crate::memory::bind_token(sqlx::query(crate::memory::INSERT_TOKEN), t)
                    .execute(&mut *tx)
                    .await,
                "client token",
            )
            .map(drop)
        }

        /// Runs a built query on the read pool and decodes its rows.
        async fn fetch_all<T>(
            s: &$store,
            mut qb: sqlx::QueryBuilder<'_, $db>,
            row: impl Fn(&<$db as sqlx::Database>::Row) -> Result<T, crate::Error>,
        ) -> Result<Vec<T>, crate::Error> {
            qb.build()
                .fetch_all(s.reader())
                .await?
                .iter()
                .map(row)
                .collect()
        }

        #[async_trait::async_trait]
        impl crate::memory::MemoryStore for $store {
            async fn insert_memory(
                &self,
                m: &crate::memory::MemoryRow,
                token: Option<&crate::memory::TokenRow>,
            ) -> Result<(), crate::Error> {
                let mut tx = self.begin().await?;
                crate::sql::or_exists(
                    crate::memory::bind_memory(sqlx::query(crate::memory::INSERT_MEMORY), m)
                        .execute(&mut *tx)
                        .await,
                    "memory name",
                )?;
                put_token(&mut tx, token).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn put_memory(
                &self,
                m: &crate::memory::MemoryRow,
                token: Option<&crate::memory::TokenRow>,
            ) -> Result<(), crate::Error> {
                let mut tx = self.begin().await?;
                crate::memory::bind_memory(sqlx::query(crate::memory::PUT_MEMORY), m)
                    .execute(&mut *tx)
                    .await?;
                put_token(&mut tx, token).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn memory(
                &self,
                id: &str,
            ) -> Result<Option<crate::memory::MemoryRow>, crate::Error> {
                sqlx::query(crate::memory::MEMORY)
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(crate::memory::memory_row)
                    .transpose()
            }

            async fn list_memories(
                &self,
                after: Option<(berth_types::EpochMillis, String)>,
                limit: u32,
            ) -> Result<Vec<crate::memory::MemoryRow>, crate::Error> {
                let (t, id) = after.unwrap_or((i64::MIN, String::new()));
                sqlx::query(crate::memory::LIST_MEMORIES)
                    .bind(t)
                    .bind(id)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(crate::memory::memory_row)
                    .collect()
            }

            async fn memories_in_status(
                &self,
                status: &str,
            ) -> Result<Vec<crate::memory::MemoryRow>, crate::Error> {
                sqlx::query(crate::memory::MEMORIES_IN_STATUS)
                    .bind(status)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(crate::memory::memory_row)
                    .collect()
            }

            async fn purge_memory(&self, id: &str) -> Result<(), crate::Error> {
                // Chunked so a large memory never holds the writer (SQLite's one write lock, or
                // many row locks in one long PostgreSQL transaction) for long.
                for table in crate::memory::MEMORY_TABLES {
                    let sql = crate::memory::purge_chunk_sql(table);
                    while sqlx::query(&sql)
                        .bind(id)
                        .execute(self.writer())
                        .await?
                        .rows_affected()
                        > 0
                    {}
                }
                sqlx::query(crate::memory::DELETE_MEMORY)
                    .bind(id)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn token(
                &self,
                operation: &str,
                token: &str,
            ) -> Result<Option<crate::memory::TokenRow>, crate::Error> {
                sqlx::query(crate::memory::TOKEN)
                    .bind(operation)
                    .bind(token)
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(crate::memory::token_row)
                    .transpose()
            }

            async fn insert_events(
                &self,
                events: &[crate::memory::EventRow],
            ) -> Result<Vec<crate::memory::Inserted>, crate::Error> {
                use crate::memory::Inserted;
                // Rows are locked in one global order (events by token, then sessions by key), so
                // two PostgreSQL nodes committing overlapping batches wait for each other instead
                // of deadlocking. SQLite's write lock serialises batches anyway.
                let mut order: Vec<usize> = (0..events.len()).collect();
                order.sort_by_key(|&i| (&events[i].memory_id, &events[i].client_token));
                let mut out: Vec<Option<Inserted>> = vec![None; events.len()];
                // (memory, actor, session) -> (first acceptance, newest event time) of new events.
                let mut sessions =
                    std::collections::BTreeMap::<(&str, &str, &str), (i64, i64)>::new();
                let mut tx = self.begin().await?;
                for i in order {
                    let e = &events[i];
                    let n = crate::memory::bind_event(sqlx::query(crate::memory::INSERT_EVENT), e)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if n == 0 {
                        // Only the token index can conflict: event ids are unique by construction.
                        // Under READ COMMITTED this statement sees the row the conflict waited for.
                        let existing = sqlx::query(crate::memory::EVENT_BY_TOKEN)
                            .bind(&e.memory_id)
                            .bind(&e.client_token)
                            .fetch_optional(&mut *tx)
                            .await?
                            .as_ref()
                            .map(crate::memory::event_row)
                            .transpose()?
                            .ok_or_else(|| {
                                crate::cols::corrupt("memory_events", "conflict on an unknown key")
                            })?;
                        out[i] = Some(Inserted::Duplicate(Box::new(existing)));
                        continue;
                    }
                    let s = sessions
                        .entry((&e.memory_id, &e.actor_id, &e.session_id))
                        .or_insert((e.created_at, e.event_ts));
                    s.0 = s.0.min(e.created_at);
                    s.1 = s.1.max(e.event_ts);
                    out[i] = Some(Inserted::New);
                }
                for ((memory_id, actor_id, session_id), (created_at, last_ts)) in sessions {
                    sqlx::query(crate::memory::UPSERT_SESSION)
                        .bind(memory_id)
                        .bind(actor_id)
                        .bind(session_id)
                        .bind(created_at)
                        .bind(last_ts)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(out.into_iter().flatten().collect())
            }

            async fn event(
                &self,
                memory_id: &str,
                actor_id: &str,
                session_id: &str,
                event_id: &str,
            ) -> Result<Option<crate::memory::EventRow>, crate::Error> {
                sqlx::query(crate::memory::EVENT)
                    .bind(memory_id)
                    .bind(actor_id)
                    .bind(session_id)
                    .bind(event_id)
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(crate::memory::event_row)
                    .transpose()
            }

            async fn list_events(
                &self,
                q: &crate::memory::EventQuery,
            ) -> Result<Vec<crate::memory::EventRow>, crate::Error> {
                let qb = crate::memory::events_query::<$db>(q, push_meta);
                fetch_all(self, qb, crate::memory::event_row).await
            }

            async fn events_after(
                &self,
                memory_id: &str,
                actor_id: &str,
                session_id: &str,
                after: Option<&str>,
                min_ts: berth_types::EpochMillis,
                limit: u32,
            ) -> Result<Vec<crate::memory::EventRow>, crate::Error> {
                sqlx::query(crate::memory::EVENTS_AFTER)
                    .bind(memory_id)
                    .bind(actor_id)
                    .bind(session_id)
                    .bind(after.unwrap_or(""))
                    .bind(min_ts)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(crate::memory::event_row)
                    .collect()
            }

            async fn delete_event(
                &self,
                memory_id: &str,
                actor_id: &str,
                session_id: &str,
                event_id: &str,
            ) -> Result<bool, crate::Error> {
                let n = sqlx::query(crate::memory::DELETE_EVENT)
                    .bind(memory_id)
                    .bind(actor_id)
                    .bind(session_id)
                    .bind(event_id)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                Ok(n > 0)
            }

            async fn list_sessions(
                &self,
                memory_id: &str,
                actor_id: &str,
                min_ts: berth_types::EpochMillis,
                after: Option<(berth_types::EpochMillis, String)>,
                limit: u32,
            ) -> Result<Vec<crate::memory::SessionRow>, crate::Error> {
                let (t, s) = crate::memory::session_cursor(after);
                sqlx::query(crate::memory::LIST_SESSIONS)
                    .bind(memory_id)
                    .bind(actor_id)
                    .bind(min_ts)
                    .bind(t)
                    .bind(s)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(crate::memory::session_row)
                    .collect()
            }

            async fn list_actors(
                &self,
                memory_id: &str,
                min_ts: berth_types::EpochMillis,
                after: Option<&str>,
                limit: u32,
            ) -> Result<Vec<String>, crate::Error> {
                use sqlx::Row;
                let rows = sqlx::query(crate::memory::LIST_ACTORS)
                    .bind(memory_id)
                    .bind(min_ts)
                    .bind(after.unwrap_or(""))
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|r| r.try_get("actor_id").map_err(crate::Error::from))
                    .collect()
            }

            async fn sessions_to_extract(
                &self,
                memory_id: &str,
                quiet_before: berth_types::EpochMillis,
                limit: u32,
            ) -> Result<Vec<crate::memory::SessionRow>, crate::Error> {
                sqlx::query(crate::memory::SESSIONS_TO_EXTRACT)
                    .bind(memory_id)
                    .bind(quiet_before)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(crate::memory::session_row)
                    .collect()
            }

            async fn put_jobs_and_cursor(
                &self,
                memory_id: &str,
                actor_id: &str,
                session_id: &str,
                from: Option<&str>,
                upto: &str,
                jobs: &[crate::memory::JobRow],
            ) -> Result<(), crate::Error> {
                let mut tx = self.begin().await?;
                let moved = sqlx::query(crate::memory::MOVE_CURSOR)
                    .bind(memory_id)
                    .bind(actor_id)
                    .bind(session_id)
                    .bind(upto)
                    .bind(from)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if moved != 1 {
                    return Err(crate::Error::Precondition("extraction cursor"));
                }
                for j in jobs {
                    crate::memory::bind_job(sqlx::query(crate::memory::PUT_JOB), j)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn purge_expired_events(
                &self,
                memory_id: &str,
                min_ts: berth_types::EpochMillis,
                limit: u32,
            ) -> Result<u64, crate::Error> {
                let mut tx = self.begin().await?;
                let n = sqlx::query(crate::memory::PURGE_EXPIRED_EVENTS)
                    .bind(memory_id)
                    .bind(min_ts)
                    .bind(i64::from(limit))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n > 0 {
                    sqlx::query(crate::memory::PURGE_EMPTY_SESSIONS)
                        .bind(memory_id)
                        .bind(min_ts)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(n)
            }

            async fn put_records(
                &self,
                records: &[crate::memory::RecordRow],
            ) -> Result<(), crate::Error> {
                put_records(self, records).await
            }

            async fn record(
                &self,
                memory_id: &str,
                record_id: &str,
            ) -> Result<Option<crate::memory::RecordRow>, crate::Error> {
                use sqlx::Row;
                let Some(r) = sqlx::query(crate::memory::RECORD)
                    .bind(memory_id)
                    .bind(record_id)
                    .fetch_optional(self.reader())
                    .await?
                else {
                    return Ok(None);
                };
                let mut record = crate::memory::record_row(&r)?;
                record.embedding = crate::memory::embedding_col(r.try_get("embedding")?)?;
                Ok(Some(record))
            }

            async fn records(
                &self,
                memory_id: &str,
                ids: &[String],
            ) -> Result<Vec<crate::memory::RecordRow>, crate::Error> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let qb = crate::memory::records_by_id_query::<$db>(memory_id, ids);
                fetch_all(self, qb, crate::memory::record_row).await
            }

            async fn delete_records(
                &self,
                memory_id: &str,
                ids: &[String],
            ) -> Result<Vec<String>, crate::Error> {
                let mut tx = self.begin().await?;
                let mut gone = Vec::new();
                for id in ids {
                    let n = sqlx::query(crate::memory::DELETE_RECORD)
                        .bind(memory_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if n > 0 {
                        gone.push(id.clone());
                    }
                }
                tx.commit().await?;
                Ok(gone)
            }

            async fn list_records(
                &self,
                scope: &crate::memory::RecordScope,
                after: Option<(berth_types::EpochMillis, String)>,
                limit: u32,
            ) -> Result<Vec<crate::memory::RecordRow>, crate::Error> {
                let qb = crate::memory::records_query::<$db>(scope, after, limit);
                fetch_all(self, qb, crate::memory::record_row).await
            }

            async fn search_keywords(
                &self,
                scope: &crate::memory::RecordScope,
                terms: &[String],
                limit: u32,
            ) -> Result<Vec<(String, f64)>, crate::Error> {
                search_keywords(self, scope, terms, limit).await
            }

            async fn embeddings(
                &self,
                memory_id: &str,
            ) -> Result<Vec<crate::memory::EmbeddingRow>, crate::Error> {
                use sqlx::Row;
                let rows = sqlx::query(crate::memory::EMBEDDINGS)
                    .bind(memory_id)
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(crate::memory::EmbeddingRow {
                            record_id: r.try_get("record_id")?,
                            namespace: r.try_get("namespace")?,
                            strategy_id: r.try_get("strategy_id")?,
                            embedding: crate::memory::embedding_from_bytes(
                                &r.try_get::<Vec<u8>, _>("embedding")?,
                            )?,
                        })
                    })
                    .collect()
            }

            async fn purge_expired_records(
                &self,
                now: berth_types::EpochMillis,
                limit: u32,
            ) -> Result<Vec<(String, String)>, crate::Error> {
                use sqlx::Row;
                let rows = sqlx::query(crate::memory::PURGE_EXPIRED_RECORDS)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(self.writer())
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("memory_id")?, r.try_get("record_id")?)))
                    .collect()
            }

            async fn put_jobs(&self, jobs: &[crate::memory::JobRow]) -> Result<(), crate::Error> {
                let mut tx = self.begin().await?;
                for j in jobs {
                    crate::memory::bind_job(sqlx::query(crate::memory::PUT_JOB), j)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn job(
                &self,
                memory_id: &str,
                job_id: &str,
            ) -> Result<Option<crate::memory::JobRow>, crate::Error> {
                sqlx::query(crate::memory::JOB)
                    .bind(memory_id)
                    .bind(job_id)
                    .fetch_optional(self.reader())
                    .await?
                    .as_ref()
                    .map(crate::memory::job_row)
                    .transpose()
            }

            async fn list_jobs(
                &self,
                q: &crate::memory::JobQuery,
            ) -> Result<Vec<crate::memory::JobRow>, crate::Error> {
                fetch_all(
                    self,
                    crate::memory::jobs_query::<$db>(q),
                    crate::memory::job_row,
                )
                .await
            }

            async fn jobs_in_status(
                &self,
                status: &str,
                limit: u32,
            ) -> Result<Vec<crate::memory::JobRow>, crate::Error> {
                sqlx::query(crate::memory::JOBS_IN_STATUS)
                    .bind(status)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(crate::memory::job_row)
                    .collect()
            }

            async fn claim_jobs(
                &self,
                now: berth_types::EpochMillis,
                stale_before: berth_types::EpochMillis,
                limit: u32,
            ) -> Result<Vec<crate::memory::JobRow>, crate::Error> {
                let mut jobs = sqlx::query(&crate::memory::claim_jobs_sql(CLAIM_LOCK))
                    .bind(now)
                    .bind(stale_before)
                    .bind(i64::from(limit))
                    .fetch_all(self.writer())
                    .await?
                    .iter()
                    .map(crate::memory::job_row)
                    .collect::<Result<Vec<_>, _>>()?;
                jobs.sort_by(|a, b| (a.created_at, &a.job_id).cmp(&(b.created_at, &b.job_id)));
                Ok(jobs)
            }
        }
    };
}
pub(crate) use memory_store;
