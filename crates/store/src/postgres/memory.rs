//! PostgreSQL implementation of [`MemoryStore`]: full-text search for keywords, embeddings as
//! BYTEA (searched by each node's in-process vector index, exactly as with SQLite).
//!
//! Keyword search mirrors SQLite's FTS5 index: record content is split into words as the domain
//! splits queries, stemmed by the `berth_memory` text search configuration (English snowball,
//! no stopwords; see `migrations/postgres/0002_memory.sql`) into a GIN-indexed `keywords`
//! tsvector, and matches are ranked by BM25 computed from the index (term counts from the
//! tsvectors, document frequencies from the GIN index), so results come in FTS5's order.

use super::{PgStore, unique_violation};
use crate::Error;
use crate::cols::corrupt;
use crate::memory::*;
use async_trait::async_trait;
use berth_types::EpochMillis;
use serde_json::Value;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

/// BM25's term-frequency saturation (FTS5's value).
const BM25_K1: f64 = 1.2;
/// BM25's length normalisation (FTS5's value).
const BM25_B: f64 = 0.75;

/// Rows purged per statement, so a large memory never holds long locks.
const PURGE_CHUNK: i64 = 5000;

/// The words of `text` as the domain splits a query (runs of alphanumerics, lowercased), one
/// space apart. Indexing this rather than the raw text keeps PostgreSQL's parser from reading
/// `alice@example.com` or `example.com/x` as one token, which FTS5 (and a query) would split.
fn words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().flat_map(char::to_lowercase));
    }
    out
}

/// A lexeme as a tsquery operand: quoted, so no character of it is an operator.
fn tsquery_operand(lexeme: &str) -> String {
    format!("'{}'", lexeme.replace('\\', "\\\\").replace('\'', "''"))
}

/// BM25's inverse document frequency of a term held by `df` of `docs` records, floored as FTS5
/// floors it (a term in most records still counts a little).
fn idf(docs: i64, df: i64) -> f64 {
    let v = ((docs - df) as f64 + 0.5) / (df as f64 + 0.5);
    v.ln().max(1e-6)
}

fn push_scope(qb: &mut QueryBuilder<'_, Postgres>, s: &RecordScope, alias: &str) {
    qb.push(format!(" {alias}memory_id = "))
        .push_bind(s.memory_id.clone());
    if let Some(ns) = &s.namespace {
        qb.push(format!(" AND {alias}namespace = "))
            .push_bind(ns.clone());
    }
    if let Some(p) = &s.namespace_prefix {
        // Not LIKE: `_` and `%` in a namespace are literal. starts_with is exact and
        // case-sensitive, as SQLite's substr comparison is.
        qb.push(format!(" AND starts_with({alias}namespace, "))
            .push_bind(p.clone())
            .push(")");
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

async fn put_token(tx: &mut PgConnection, t: Option<&TokenRow>) -> Result<(), Error> {
    let Some(t) = t else { return Ok(()) };
    let res = sqlx::query(
        "INSERT INTO memory_tokens (operation, token, request_hash, response, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&t.operation)
    .bind(&t.token)
    .bind(&t.request_hash)
    .bind(t.response.to_string())
    .bind(t.created_at)
    .execute(&mut *tx)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(e) if unique_violation(&e) => Err(Error::AlreadyExists("client token")),
        Err(e) => Err(e.into()),
    }
}

/// Inserts a memory, or with `replace` overwrites the row with its id.
async fn write_memory(
    tx: &mut PgConnection,
    m: &MemoryRow,
    replace: bool,
) -> Result<(), sqlx::Error> {
    let mut sql = String::from(
        "INSERT INTO memories (id, name, status, failure_reason, event_expiry_days, spec, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    );
    if replace {
        sql.push_str(
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status, \
             failure_reason = excluded.failure_reason, \
             event_expiry_days = excluded.event_expiry_days, spec = excluded.spec, \
             created_at = excluded.created_at, updated_at = excluded.updated_at",
        );
    }
    sqlx::query(&sql)
        .bind(&m.id)
        .bind(&m.name)
        .bind(&m.status)
        .bind(&m.failure_reason)
        .bind(i64::from(m.event_expiry_days))
        .bind(m.spec.to_string())
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(tx)
        .await
        .map(drop)
}

async fn write_job(tx: &mut PgConnection, j: &JobRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO memory_jobs (job_id, memory_id, strategy_id, actor_id, session_id, \
         status, failure_reason, messages, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (job_id) DO UPDATE SET memory_id = excluded.memory_id, \
         strategy_id = excluded.strategy_id, actor_id = excluded.actor_id, \
         session_id = excluded.session_id, status = excluded.status, \
         failure_reason = excluded.failure_reason, messages = excluded.messages, \
         created_at = excluded.created_at, updated_at = excluded.updated_at",
    )
    .bind(&j.job_id)
    .bind(&j.memory_id)
    .bind(&j.strategy_id)
    .bind(&j.actor_id)
    .bind(&j.session_id)
    .bind(&j.status)
    .bind(&j.failure_reason)
    .bind(j.messages.to_string())
    .bind(j.created_at)
    .bind(j.updated_at)
    .execute(tx)
    .await
    .map(drop)
}

/// Binds `$1` the record's words, `$2`..`$11` its columns in `RECORD_COLS` order and `$12` its
/// embedding.
fn record_binds<'q>(
    q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    r: &'q RecordRow,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    q.bind(words(&r.content))
        .bind(&r.record_id)
        .bind(&r.memory_id)
        .bind(&r.strategy_id)
        .bind(&r.namespace)
        .bind(&r.content)
        .bind(r.metadata.as_ref().map(Value::to_string))
        .bind(r.record_ts)
        .bind(r.expires_at)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.embedding.as_deref().map(embedding_to_bytes))
}

impl PgStore {
    /// Deletes up to [`PURGE_CHUNK`] rows of `table` matching `cond` (on `$1`) per statement,
    /// until none is left.
    async fn purge_chunked(&self, table: &str, cond: &str, id: &str) -> Result<(), Error> {
        let sql = format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} \
             WHERE {cond} LIMIT {PURGE_CHUNK}))"
        );
        while sqlx::query(&sql)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0
        {}
        Ok(())
    }
}

#[async_trait]
impl MemoryStore for PgStore {
    async fn insert_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        match write_memory(&mut tx, m, false).await {
            Ok(()) => {}
            Err(e) if unique_violation(&e) => return Err(Error::AlreadyExists("memory name")),
            Err(e) => return Err(e.into()),
        }
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        write_memory(&mut tx, m, true).await?;
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn memory(&self, id: &str) -> Result<Option<MemoryRow>, Error> {
        sqlx::query("SELECT * FROM memories WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(memory_row)
            .transpose()
    }

    async fn list_memories(
        &self,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<MemoryRow>, Error> {
        let (t, id) = after.unwrap_or((i64::MIN, String::new()));
        sqlx::query(
            "SELECT * FROM memories WHERE (created_at, id) > ($1, $2) \
             ORDER BY created_at, id LIMIT $3",
        )
        .bind(t)
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(memory_row)
        .collect()
    }

    async fn memories_in_status(&self, status: &str) -> Result<Vec<MemoryRow>, Error> {
        sqlx::query("SELECT * FROM memories WHERE status = $1 ORDER BY created_at, id")
            .bind(status)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(memory_row)
            .collect()
    }

    async fn purge_memory(&self, id: &str) -> Result<(), Error> {
        // Chunked so a large memory never holds many row locks or one long transaction.
        for table in [
            "memory_events",
            "memory_records",
            "memory_sessions",
            "memory_jobs",
        ] {
            self.purge_chunked(table, "memory_id = $1", id).await?;
        }
        sqlx::query("DELETE FROM memories WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn token(&self, operation: &str, token: &str) -> Result<Option<TokenRow>, Error> {
        let Some(r) =
            sqlx::query("SELECT * FROM memory_tokens WHERE operation = $1 AND token = $2")
                .bind(operation)
                .bind(token)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        Ok(Some(token_row(&r)?))
    }

    async fn insert_events(&self, events: &[EventRow]) -> Result<Vec<Inserted>, Error> {
        // Rows are locked in one global order (events by token, then sessions by key), so two
        // nodes committing overlapping batches wait for each other instead of deadlocking.
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by_key(|&i| (&events[i].memory_id, &events[i].client_token));
        let mut out: Vec<Option<Inserted>> = vec![None; events.len()];
        // (memory, actor, session) -> (first acceptance time, newest event time) of new events.
        let mut sessions: std::collections::BTreeMap<(&str, &str, &str), (i64, i64)> =
            std::collections::BTreeMap::new();
        let mut tx = self.pool.begin().await?;
        for i in order {
            let e = &events[i];
            let n = sqlx::query(
                "INSERT INTO memory_events (memory_id, actor_id, session_id, event_id, event_ts, \
                 branch_name, branch_root, payload, metadata, client_token, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&e.memory_id)
            .bind(&e.actor_id)
            .bind(&e.session_id)
            .bind(&e.event_id)
            .bind(e.event_ts)
            .bind(&e.branch_name)
            .bind(&e.branch_root)
            .bind(e.payload.to_string())
            .bind(e.metadata.as_ref().map(Value::to_string))
            .bind(&e.client_token)
            .bind(e.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                // Only the token index can conflict: event ids are unique by construction.
                // Under READ COMMITTED this statement sees the row the conflict waited for.
                let existing = sqlx::query(
                    "SELECT * FROM memory_events WHERE memory_id = $1 AND client_token = $2",
                )
                .bind(&e.memory_id)
                .bind(&e.client_token)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(event_row)
                .transpose()?
                .ok_or_else(|| corrupt("memory_events", "conflict on an unknown key"))?;
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
            sqlx::query(
                "INSERT INTO memory_sessions (memory_id, actor_id, session_id, created_at, \
                 last_event_ts) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (memory_id, actor_id, session_id) DO UPDATE SET \
                 last_event_ts = GREATEST(memory_sessions.last_event_ts, excluded.last_event_ts)",
            )
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
    ) -> Result<Option<EventRow>, Error> {
        sqlx::query(
            "SELECT * FROM memory_events WHERE memory_id = $1 AND actor_id = $2 \
             AND session_id = $3 AND event_id = $4",
        )
        .bind(memory_id)
        .bind(actor_id)
        .bind(session_id)
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(event_row)
        .transpose()
    }

    async fn list_events(&self, q: &EventQuery) -> Result<Vec<EventRow>, Error> {
        let mut qb =
            QueryBuilder::<Postgres>::new("SELECT * FROM memory_events WHERE memory_id = ");
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
        // Metadata is a JSON object of `{key: {"stringValue": ...}}`; `->` on a key finds only
        // a top-level member (a JSON null value counts as present, as SQLite's json_type does).
        for c in &q.metadata {
            match c {
                MetaCond::Equals(k, v) => {
                    qb.push(" AND metadata::jsonb -> ")
                        .push_bind(k.clone())
                        .push(" -> 'stringValue' = to_jsonb(")
                        .push_bind(v.clone())
                        .push("::text)");
                }
                MetaCond::Exists(k) => {
                    qb.push(" AND metadata::jsonb -> ")
                        .push_bind(k.clone())
                        .push(" IS NOT NULL");
                }
                MetaCond::NotExists(k) => {
                    qb.push(" AND (metadata IS NULL OR metadata::jsonb -> ")
                        .push_bind(k.clone())
                        .push(" IS NULL)");
                }
            }
        }
        qb.push(" ORDER BY event_id DESC LIMIT ")
            .push_bind(i64::from(q.limit));
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_row)
            .collect()
    }

    async fn events_after(
        &self,
        memory_id: &str,
        actor_id: &str,
        session_id: &str,
        after: Option<&str>,
        min_ts: EpochMillis,
        limit: u32,
    ) -> Result<Vec<EventRow>, Error> {
        sqlx::query(
            "SELECT * FROM memory_events WHERE memory_id = $1 AND actor_id = $2 \
             AND session_id = $3 AND event_id > $4 AND event_ts >= $5 \
             ORDER BY event_id LIMIT $6",
        )
        .bind(memory_id)
        .bind(actor_id)
        .bind(session_id)
        .bind(after.unwrap_or(""))
        .bind(min_ts)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(event_row)
        .collect()
    }

    async fn delete_event(
        &self,
        memory_id: &str,
        actor_id: &str,
        session_id: &str,
        event_id: &str,
    ) -> Result<bool, Error> {
        let n = sqlx::query(
            "DELETE FROM memory_events WHERE memory_id = $1 AND actor_id = $2 \
             AND session_id = $3 AND event_id = $4",
        )
        .bind(memory_id)
        .bind(actor_id)
        .bind(session_id)
        .bind(event_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn list_sessions(
        &self,
        memory_id: &str,
        actor_id: &str,
        min_ts: EpochMillis,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, Error> {
        let (t, s) = after.unwrap_or((i64::MAX, String::new()));
        // A cursor with an empty session id starts above every session at that time (keys
        // compare bytewise, and U+10FFFF is the highest code point).
        let s = if s.is_empty() {
            "\u{10FFFF}".to_owned()
        } else {
            s
        };
        sqlx::query(
            "SELECT * FROM memory_sessions WHERE memory_id = $1 AND actor_id = $2 \
             AND last_event_ts >= $3 AND (last_event_ts, session_id) < ($4, $5) \
             ORDER BY last_event_ts DESC, session_id DESC LIMIT $6",
        )
        .bind(memory_id)
        .bind(actor_id)
        .bind(min_ts)
        .bind(t)
        .bind(s)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_row)
        .collect()
    }

    async fn list_actors(
        &self,
        memory_id: &str,
        min_ts: EpochMillis,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT actor_id FROM memory_sessions WHERE memory_id = $1 \
             AND last_event_ts >= $2 AND actor_id > $3 ORDER BY actor_id LIMIT $4",
        )
        .bind(memory_id)
        .bind(min_ts)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("actor_id").map_err(Error::from))
            .collect()
    }

    async fn sessions_to_extract(
        &self,
        memory_id: &str,
        quiet_before: EpochMillis,
        limit: u32,
    ) -> Result<Vec<SessionRow>, Error> {
        sqlx::query(
            "SELECT s.* FROM memory_sessions s WHERE s.memory_id = $1 \
             AND EXISTS (SELECT 1 FROM memory_events e WHERE e.memory_id = s.memory_id \
                 AND e.actor_id = s.actor_id AND e.session_id = s.session_id \
                 AND e.event_id > coalesce(s.extracted_upto, '')) \
             AND NOT EXISTS (SELECT 1 FROM memory_events e WHERE e.memory_id = s.memory_id \
                 AND e.actor_id = s.actor_id AND e.session_id = s.session_id \
                 AND e.event_id > coalesce(s.extracted_upto, '') AND e.created_at > $2) \
             LIMIT $3",
        )
        .bind(memory_id)
        .bind(quiet_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_row)
        .collect()
    }

    async fn put_jobs_and_cursor(
        &self,
        memory_id: &str,
        actor_id: &str,
        session_id: &str,
        from: Option<&str>,
        upto: &str,
        jobs: &[JobRow],
    ) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        // Conditional on the cursor the caller read: two extractors planning the same events
        // cannot both record jobs for them. A concurrent mover holds the row lock; once it
        // commits, PostgreSQL re-checks this condition on the row it wrote, which then fails.
        let moved = sqlx::query(
            "UPDATE memory_sessions SET extracted_upto = $4 WHERE memory_id = $1 \
             AND actor_id = $2 AND session_id = $3 AND extracted_upto IS NOT DISTINCT FROM $5",
        )
        .bind(memory_id)
        .bind(actor_id)
        .bind(session_id)
        .bind(upto)
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(Error::Precondition("extraction cursor"));
        }
        for j in jobs {
            write_job(&mut tx, j).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn purge_expired_events(
        &self,
        memory_id: &str,
        min_ts: EpochMillis,
        limit: u32,
    ) -> Result<u64, Error> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "DELETE FROM memory_events WHERE ctid = ANY(ARRAY(SELECT ctid FROM memory_events \
             WHERE memory_id = $1 AND event_ts < $2 LIMIT $3))",
        )
        .bind(memory_id)
        .bind(min_ts)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            sqlx::query(
                "DELETE FROM memory_sessions s WHERE s.memory_id = $1 AND s.last_event_ts < $2 \
                 AND NOT EXISTS (SELECT 1 FROM memory_events e WHERE e.memory_id = s.memory_id \
                 AND e.actor_id = s.actor_id AND e.session_id = s.session_id)",
            )
            .bind(memory_id)
            .bind(min_ts)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn put_records(&self, records: &[RecordRow]) -> Result<(), Error> {
        // An update first and an insert only for a new id: an upsert would draw a `seq` for
        // every put, and `seq` is what bounds the record count for keyword pruning.
        let mut tx = self.pool.begin().await?;
        for r in records {
            let updated = record_binds(
                sqlx::query(
                    "UPDATE memory_records SET keywords = to_tsvector('berth_memory', $1), \
                     strategy_id = $4, namespace = $5, content = $6, metadata = $7, \
                     record_ts = $8, expires_at = $9, updated_at = $11, embedding = $12 \
                     WHERE record_id = $2",
                ),
                r,
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated > 0 {
                continue;
            }
            // A concurrent put of the same new id lands in ON CONFLICT and updates instead.
            record_binds(
                sqlx::query(&format!(
                    "INSERT INTO memory_records (keywords, {RECORD_COLS}, embedding) \
                     VALUES (to_tsvector('berth_memory', $1), \
                     $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (record_id) DO UPDATE SET keywords = excluded.keywords, \
                     strategy_id = excluded.strategy_id, \
                     namespace = excluded.namespace, content = excluded.content, \
                     metadata = excluded.metadata, record_ts = excluded.record_ts, \
                     expires_at = excluded.expires_at, embedding = excluded.embedding, \
                     updated_at = excluded.updated_at"
                )),
                r,
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record(&self, memory_id: &str, record_id: &str) -> Result<Option<RecordRow>, Error> {
        sqlx::query(&format!(
            "SELECT {RECORD_COLS}, embedding FROM memory_records \
             WHERE memory_id = $1 AND record_id = $2"
        ))
        .bind(memory_id)
        .bind(record_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(|r| record_row(r, true))
        .transpose()
    }

    async fn records(&self, memory_id: &str, ids: &[String]) -> Result<Vec<RecordRow>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query(&format!(
            "SELECT {RECORD_COLS} FROM memory_records WHERE memory_id = $1 \
             AND record_id = ANY($2)"
        ))
        .bind(memory_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| record_row(r, false))
        .collect()
    }

    async fn delete_records(&self, memory_id: &str, ids: &[String]) -> Result<Vec<String>, Error> {
        let rows = sqlx::query(
            "DELETE FROM memory_records WHERE memory_id = $1 AND record_id = ANY($2) \
             RETURNING record_id",
        )
        .bind(memory_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        let gone: std::collections::HashSet<String> = rows
            .iter()
            .map(|r| r.try_get("record_id"))
            .collect::<Result<_, _>>()?;
        // In the order asked, once each, as SQLite's one-by-one deletes report them.
        let mut out = Vec::with_capacity(gone.len());
        for id in ids {
            if gone.contains(id) && !out.contains(id) {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    async fn list_records(
        &self,
        scope: &RecordScope,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<RecordRow>, Error> {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {RECORD_COLS} FROM memory_records WHERE"
        ));
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
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| record_row(r, false))
            .collect()
    }

    async fn search_keywords(
        &self,
        scope: &RecordScope,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<(String, f64)>, Error> {
        let mut split: Vec<String> = Vec::new();
        for t in terms {
            for w in words(t).split(' ') {
                if !w.is_empty() && !split.iter().any(|s| s == w) {
                    split.push(w.to_owned());
                }
            }
        }
        if split.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await?;
        // `seq` only grows, so this over-counts after deletions: pruning stays conservative.
        let docs: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM memory_records")
            .fetch_one(&mut *conn)
            .await?;
        // Each term's lexeme and how many records hold it (a walk of its GIN posting list),
        // across all memories as FTS5's statistics are.
        let stats = sqlx::query(
            "SELECT l.lexeme, (SELECT count(*) FROM memory_records r \
                 WHERE r.keywords @@ plainto_tsquery('berth_memory', t.word)) AS df \
             FROM unnest($1::text[]) AS t(word) CROSS JOIN LATERAL \
                 unnest(tsvector_to_array(to_tsvector('berth_memory', t.word))) AS l(lexeme)",
        )
        .bind(&split)
        .fetch_all(&mut *conn)
        .await?;
        let mut lexemes: Vec<String> = Vec::new();
        let mut idfs: Vec<f64> = Vec::new();
        for r in &stats {
            let lexeme: String = r.try_get("lexeme")?;
            let df: i64 = r.try_get("df")?;
            if !term_searched(docs, df) || lexemes.contains(&lexeme) {
                continue;
            }
            lexemes.push(lexeme);
            idfs.push(idf(docs, df));
        }
        if lexemes.is_empty() {
            return Ok(Vec::new());
        }
        let query = lexemes
            .iter()
            .map(|l| tsquery_operand(l))
            .collect::<Vec<_>>()
            .join(" | ");
        // BM25 over the matching records in scope: a term's count is its position list's
        // length in the record's tsvector; a record's length is its count of distinct words,
        // against the average over the matches.
        let mut qb = QueryBuilder::<Postgres>::new("WITH q(lexeme, idf) AS (SELECT * FROM unnest(");
        qb.push_bind(lexemes)
            .push("::text[], ")
            .push_bind(idfs)
            .push(
                "::float8[])), m AS (SELECT r.record_id, r.keywords, \
                 avg(length(r.keywords)) OVER () AS avgdl FROM memory_records r \
                 WHERE r.keywords @@ ",
            )
            .push_bind(query)
            .push("::tsquery AND");
        push_scope(&mut qb, scope, "r.");
        qb.push(") SELECT m.record_id, sum(q.idf * cardinality(u.positions) * ")
            .push_bind(BM25_K1 + 1.0)
            .push(" / (cardinality(u.positions) + ")
            .push_bind(BM25_K1)
            .push(" * (")
            .push_bind(1.0 - BM25_B)
            .push(" + ")
            .push_bind(BM25_B)
            .push(
                " * length(m.keywords) / m.avgdl::float8))) AS score \
                 FROM m CROSS JOIN LATERAL unnest(m.keywords) AS u \
                 JOIN q ON q.lexeme = u.lexeme \
                 GROUP BY m.record_id ORDER BY score DESC, m.record_id LIMIT ",
            )
            .push_bind(i64::from(limit));
        let rows = qb.build().fetch_all(&mut *conn).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("record_id")?, r.try_get::<f64, _>("score")?)))
            .collect()
    }

    async fn embeddings(&self, memory_id: &str) -> Result<Vec<EmbeddingRow>, Error> {
        let rows = sqlx::query(
            "SELECT record_id, namespace, strategy_id, embedding FROM memory_records \
             WHERE memory_id = $1 AND embedding IS NOT NULL",
        )
        .bind(memory_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(embedding_row).collect()
    }

    async fn purge_expired_records(
        &self,
        now: EpochMillis,
        limit: u32,
    ) -> Result<Vec<(String, String)>, Error> {
        let rows = sqlx::query(
            "DELETE FROM memory_records WHERE seq = ANY(ARRAY(SELECT seq FROM memory_records \
             WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)) \
             RETURNING memory_id, record_id",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("memory_id")?, r.try_get("record_id")?)))
            .collect()
    }

    async fn put_jobs(&self, jobs: &[JobRow]) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        for j in jobs {
            write_job(&mut tx, j).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn job(&self, memory_id: &str, job_id: &str) -> Result<Option<JobRow>, Error> {
        sqlx::query("SELECT * FROM memory_jobs WHERE memory_id = $1 AND job_id = $2")
            .bind(memory_id)
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>, Error> {
        let mut qb = QueryBuilder::<Postgres>::new("SELECT * FROM memory_jobs WHERE memory_id = ");
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
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(job_row)
            .collect()
    }

    async fn jobs_in_status(&self, status: &str, limit: u32) -> Result<Vec<JobRow>, Error> {
        sqlx::query(
            "SELECT * FROM memory_jobs WHERE status = $1 ORDER BY created_at, job_id LIMIT $2",
        )
        .bind(status)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_row)
        .collect()
    }
}
