//! SQLite implementation of [`MemoryStore`]: FTS5 for keywords, embeddings as BLOBs.

use super::cols::corrupt;
use crate::memory::*;
use crate::{Error, SqliteStore};
use async_trait::async_trait;
use berth_types::EpochMillis;
use serde_json::Value;
use sqlx::{QueryBuilder, Row, Sqlite};

/// A JSON path selecting one top-level key, quoted so any key characters are literal.
fn json_key(key: &str) -> String {
    format!("$.\"{}\"", key.replace('"', ""))
}

fn push_scope(qb: &mut QueryBuilder<'_, Sqlite>, s: &RecordScope, alias: &str) {
    qb.push(format!(" {alias}memory_id = "))
        .push_bind(s.memory_id.clone());
    if let Some(ns) = &s.namespace {
        qb.push(format!(" AND {alias}namespace = "))
            .push_bind(ns.clone());
    }
    if let Some(p) = &s.namespace_prefix {
        // Not LIKE: SQLite's LIKE folds ASCII case, so `/users/alice/` would match `/users/ALICE/`.
        // substr and length both count characters, so this is an exact, case-sensitive prefix test.
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

async fn put_token(tx: &mut sqlx::SqliteConnection, t: Option<&TokenRow>) -> Result<(), Error> {
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
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            Err(Error::AlreadyExists("client token"))
        }
        Err(e) => Err(e.into()),
    }
}

async fn write_memory(
    tx: &mut sqlx::SqliteConnection,
    verb: &str,
    m: &MemoryRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "{verb} INTO memories (id, name, status, failure_reason, event_expiry_days, spec, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
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

async fn write_job(tx: &mut sqlx::SqliteConnection, j: &JobRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT OR REPLACE INTO memory_jobs (job_id, memory_id, strategy_id, actor_id, session_id, \
         status, failure_reason, messages, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn insert_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        match write_memory(&mut tx, "INSERT", m).await {
            Ok(()) => {}
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                return Err(Error::AlreadyExists("memory name"));
            }
            Err(e) => return Err(e.into()),
        }
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        write_memory(&mut tx, "INSERT OR REPLACE", m).await?;
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn memory(&self, id: &str) -> Result<Option<MemoryRow>, Error> {
        sqlx::query("SELECT * FROM memories WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
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
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(memory_row)
        .collect()
    }

    async fn memories_in_status(&self, status: &str) -> Result<Vec<MemoryRow>, Error> {
        sqlx::query("SELECT * FROM memories WHERE status = $1 ORDER BY created_at, id")
            .bind(status)
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(memory_row)
            .collect()
    }

    async fn purge_memory(&self, id: &str) -> Result<(), Error> {
        // Chunked so a large memory never holds the single writer for long.
        for table in [
            "memory_events",
            "memory_records",
            "memory_sessions",
            "memory_jobs",
        ] {
            let key = if table == "memory_records" {
                "seq"
            } else {
                "rowid"
            };
            loop {
                let sql = if table == "memory_events" || table == "memory_sessions" {
                    // WITHOUT ROWID tables: delete by primary key prefix in chunks.
                    format!(
                        "DELETE FROM {table} WHERE (memory_id, actor_id, session_id{}) IN \
                         (SELECT memory_id, actor_id, session_id{} FROM {table} \
                          WHERE memory_id = $1 LIMIT 5000)",
                        if table == "memory_events" {
                            ", event_id"
                        } else {
                            ""
                        },
                        if table == "memory_events" {
                            ", event_id"
                        } else {
                            ""
                        },
                    )
                } else {
                    format!(
                        "DELETE FROM {table} WHERE {key} IN \
                         (SELECT {key} FROM {table} WHERE memory_id = $1 LIMIT 5000)"
                    )
                };
                let n = sqlx::query(&sql)
                    .bind(id)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                if n == 0 {
                    break;
                }
            }
        }
        sqlx::query("DELETE FROM memories WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn token(&self, operation: &str, token: &str) -> Result<Option<TokenRow>, Error> {
        let Some(r) =
            sqlx::query("SELECT * FROM memory_tokens WHERE operation = $1 AND token = $2")
                .bind(operation)
                .bind(token)
                .fetch_optional(self.reader())
                .await?
        else {
            return Ok(None);
        };
        Ok(Some(token_row(&r)?))
    }

    async fn insert_events(&self, events: &[EventRow]) -> Result<Vec<Inserted>, Error> {
        let mut out = Vec::with_capacity(events.len());
        let mut tx = self.begin().await?;
        for e in events {
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
                out.push(Inserted::Duplicate(Box::new(existing)));
                continue;
            }
            sqlx::query(
                "INSERT INTO memory_sessions (memory_id, actor_id, session_id, created_at, \
                 last_event_ts) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (memory_id, actor_id, session_id) DO UPDATE SET \
                 last_event_ts = max(last_event_ts, excluded.last_event_ts)",
            )
            .bind(&e.memory_id)
            .bind(&e.actor_id)
            .bind(&e.session_id)
            .bind(e.created_at)
            .bind(e.event_ts)
            .execute(&mut *tx)
            .await?;
            out.push(Inserted::New);
        }
        tx.commit().await?;
        Ok(out)
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
        .fetch_optional(self.reader())
        .await?
        .as_ref()
        .map(event_row)
        .transpose()
    }

    async fn list_events(&self, q: &EventQuery) -> Result<Vec<EventRow>, Error> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM memory_events WHERE memory_id = ");
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
            match c {
                MetaCond::Equals(k, v) => {
                    qb.push(" AND json_extract(metadata, ")
                        .push_bind(format!("{}.stringValue", json_key(k)))
                        .push(") = ")
                        .push_bind(v.clone());
                }
                MetaCond::Exists(k) => {
                    qb.push(" AND json_type(metadata, ")
                        .push_bind(json_key(k))
                        .push(") IS NOT NULL");
                }
                MetaCond::NotExists(k) => {
                    qb.push(" AND (metadata IS NULL OR json_type(metadata, ")
                        .push_bind(json_key(k))
                        .push(") IS NULL)");
                }
            }
        }
        qb.push(" ORDER BY event_id DESC LIMIT ")
            .push_bind(i64::from(q.limit));
        qb.build()
            .fetch_all(self.reader())
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
        .fetch_all(self.reader())
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
        .execute(self.writer())
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
        // A cursor with an empty session id starts above every session at that time.
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
        .fetch_all(self.reader())
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
        .fetch_all(self.reader())
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
        .fetch_all(self.reader())
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
        let mut tx = self.begin().await?;
        // Conditional on the cursor the caller read: two extractors planning the same events
        // cannot both record jobs for them.
        let moved = sqlx::query(
            "UPDATE memory_sessions SET extracted_upto = $4 WHERE memory_id = $1 \
             AND actor_id = $2 AND session_id = $3 AND extracted_upto IS $5",
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
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "DELETE FROM memory_events WHERE (memory_id, actor_id, session_id, event_id) IN \
             (SELECT memory_id, actor_id, session_id, event_id FROM memory_events \
              WHERE memory_id = $1 AND event_ts < $2 LIMIT $3)",
        )
        .bind(memory_id)
        .bind(min_ts)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            sqlx::query(
                "DELETE FROM memory_sessions WHERE memory_id = $1 AND last_event_ts < $2 \
                 AND NOT EXISTS (SELECT 1 FROM memory_events e WHERE e.memory_id = \
                 memory_sessions.memory_id AND e.actor_id = memory_sessions.actor_id \
                 AND e.session_id = memory_sessions.session_id)",
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
        let mut tx = self.begin().await?;
        for r in records {
            // An upsert that keeps `seq`, so the keyword index row is updated by its trigger
            // rather than deleted and re-added under a new rowid.
            sqlx::query(&format!(
                "INSERT INTO memory_records ({RECORD_COLS}, embedding) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (record_id) DO UPDATE SET strategy_id = excluded.strategy_id, \
                 namespace = excluded.namespace, content = excluded.content, \
                 metadata = excluded.metadata, record_ts = excluded.record_ts, \
                 expires_at = excluded.expires_at, embedding = excluded.embedding, \
                 updated_at = excluded.updated_at"
            ))
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
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record(&self, memory_id: &str, record_id: &str) -> Result<Option<RecordRow>, Error> {
        sqlx::query("SELECT * FROM memory_records WHERE memory_id = $1 AND record_id = $2")
            .bind(memory_id)
            .bind(record_id)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(|r| record_row(r, true))
            .transpose()
    }

    async fn records(&self, memory_id: &str, ids: &[String]) -> Result<Vec<RecordRow>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {RECORD_COLS} FROM memory_records WHERE memory_id = "
        ));
        qb.push_bind(memory_id.to_owned())
            .push(" AND record_id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(id.clone());
        }
        qb.push(")");
        qb.build()
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(|r| record_row(r, false))
            .collect()
    }

    async fn delete_records(&self, memory_id: &str, ids: &[String]) -> Result<Vec<String>, Error> {
        let mut tx = self.begin().await?;
        let mut gone = Vec::new();
        for id in ids {
            let n =
                sqlx::query("DELETE FROM memory_records WHERE memory_id = $1 AND record_id = $2")
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
        scope: &RecordScope,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<RecordRow>, Error> {
        let mut qb =
            QueryBuilder::<Sqlite>::new(format!("SELECT {RECORD_COLS} FROM memory_records WHERE"));
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
            .fetch_all(self.reader())
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
        let mut conn = self.reader().acquire().await?;
        // `seq` only grows, so this over-counts after deletions: pruning stays conservative.
        let docs: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM memory_records")
            .fetch_one(&mut *conn)
            .await?;
        let mut kept = Vec::new();
        for t in terms {
            let phrase = format!("\"{}\"", t.replace('"', "\"\""));
            if docs >= PRUNE_FROM_DOCS {
                // Counting a term's records walks its posting list only, never the records.
                let df: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM memory_records_fts WHERE memory_records_fts MATCH $1",
                )
                .bind(&phrase)
                .fetch_one(&mut *conn)
                .await?;
                if !term_searched(docs, df) {
                    continue;
                }
            }
            kept.push(phrase);
        }
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT r.record_id, bm25(memory_records_fts) AS rank FROM memory_records_fts \
             JOIN memory_records r ON r.seq = memory_records_fts.rowid \
             WHERE memory_records_fts MATCH ",
        );
        qb.push_bind(kept.join(" OR ")).push(" AND");
        push_scope(&mut qb, scope, "r.");
        qb.push(" ORDER BY rank LIMIT ").push_bind(i64::from(limit));
        let rows = qb.build().fetch_all(&mut *conn).await?;
        rows.iter()
            .map(|r| {
                // FTS5's bm25() is negative, lower is better; flip it so higher is better.
                Ok((r.try_get("record_id")?, -r.try_get::<f64, _>("rank")?))
            })
            .collect()
    }

    async fn embeddings(&self, memory_id: &str) -> Result<Vec<EmbeddingRow>, Error> {
        let rows = sqlx::query(
            "SELECT record_id, namespace, strategy_id, embedding FROM memory_records \
             WHERE memory_id = $1 AND embedding IS NOT NULL",
        )
        .bind(memory_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(embedding_row).collect()
    }

    async fn purge_expired_records(
        &self,
        now: EpochMillis,
        limit: u32,
    ) -> Result<Vec<(String, String)>, Error> {
        let rows = sqlx::query(
            "DELETE FROM memory_records WHERE seq IN (SELECT seq FROM memory_records \
             WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2) \
             RETURNING memory_id, record_id",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.writer())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("memory_id")?, r.try_get("record_id")?)))
            .collect()
    }

    async fn put_jobs(&self, jobs: &[JobRow]) -> Result<(), Error> {
        let mut tx = self.begin().await?;
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
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>, Error> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM memory_jobs WHERE memory_id = ");
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
            .fetch_all(self.reader())
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
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(job_row)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        (dir, s)
    }

    fn ev(session: &str, id: &str, ts: i64, token: Option<&str>) -> EventRow {
        EventRow {
            memory_id: "m".into(),
            actor_id: "a".into(),
            session_id: session.into(),
            event_id: id.into(),
            event_ts: ts,
            branch_name: None,
            branch_root: None,
            payload: json!([{"conversational": {"content": {"text": id}, "role": "USER"}}]),
            metadata: Some(json!({"k": {"stringValue": "v"}})),
            client_token: token.map(str::to_owned),
            created_at: ts,
        }
    }

    #[tokio::test]
    async fn events_page_newest_first_and_dedupe_tokens() {
        let (_d, s) = store().await;
        let evs: Vec<_> = (1..=5)
            .map(|i| ev("s", &format!("{i:019}#0"), i, Some(&format!("t{i}"))))
            .collect();
        assert!(
            s.insert_events(&evs)
                .await
                .unwrap()
                .iter()
                .all(|r| *r == Inserted::New)
        );
        let dup = ev("s", "0000000000000000009#0", 9, Some("t3"));
        match &s.insert_events(&[dup]).await.unwrap()[0] {
            Inserted::Duplicate(e) => assert_eq!(e.event_id, evs[2].event_id),
            other => panic!("expected a duplicate, got {other:?}"),
        }
        let mut q = EventQuery {
            memory_id: "m".into(),
            actor_id: "a".into(),
            session_id: "s".into(),
            min_ts: 2,
            limit: 2,
            ..Default::default()
        };
        let page = s.list_events(&q).await.unwrap();
        assert_eq!(page.iter().map(|e| e.event_ts).collect::<Vec<_>>(), [5, 4]);
        q.before = Some(page[1].event_id.clone());
        let page = s.list_events(&q).await.unwrap();
        assert_eq!(page.iter().map(|e| e.event_ts).collect::<Vec<_>>(), [3, 2]);
        q.before = None;
        q.metadata = vec![MetaCond::Equals("k".into(), "v".into())];
        assert_eq!(s.list_events(&q).await.unwrap().len(), 2);
        q.metadata = vec![MetaCond::NotExists("k".into())];
        assert!(s.list_events(&q).await.unwrap().is_empty());
        assert_eq!(s.purge_expired_events("m", 3, 100).await.unwrap(), 2);
        let sessions = s.list_sessions("m", "a", 0, None, 10).await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(s.list_actors("m", 0, None, 10).await.unwrap(), ["a"]);
    }

    #[tokio::test]
    async fn records_are_found_by_keyword_and_scope() {
        let (_d, s) = store().await;
        let rec = |id: &str, ns: &str, text: &str| RecordRow {
            record_id: id.into(),
            memory_id: "m".into(),
            strategy_id: "st".into(),
            namespace: ns.into(),
            content: text.into(),
            metadata: None,
            record_ts: 1,
            expires_at: None,
            embedding: Some(vec![1.0, 0.0]),
            created_at: 1,
            updated_at: 1,
        };
        s.put_records(&[
            rec("r1", "/a/1/", "the user likes green tea"),
            rec("r2", "/a/2/", "the user drives a red car"),
        ])
        .await
        .unwrap();
        let scope = RecordScope {
            memory_id: "m".into(),
            namespace_prefix: Some("/a/".into()),
            ..Default::default()
        };
        let hits = s
            .search_keywords(&scope, &["tea".into()], 10)
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, "r1");
        // An update re-indexes the content.
        s.put_records(&[rec("r1", "/a/1/", "the user likes coffee")])
            .await
            .unwrap();
        assert!(
            s.search_keywords(&scope, &["tea".into()], 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.search_keywords(&scope, &["coffee".into()], 10)
                .await
                .unwrap()
                .len(),
            1
        );
        let exact = RecordScope {
            memory_id: "m".into(),
            namespace: Some("/a/2/".into()),
            ..Default::default()
        };
        assert_eq!(s.list_records(&exact, None, 10).await.unwrap().len(), 1);
        assert_eq!(s.embeddings("m").await.unwrap().len(), 2);
        assert_eq!(
            s.delete_records("m", &["r1".into(), "x".into()])
                .await
                .unwrap(),
            ["r1"]
        );
        assert!(
            s.search_keywords(&scope, &["coffee".into()], 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
