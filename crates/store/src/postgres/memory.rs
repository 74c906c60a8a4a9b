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
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

/// BM25's term-frequency saturation (FTS5's value).
const BM25_K1: f64 = 1.2;
/// BM25's length normalisation (FTS5's value).
const BM25_B: f64 = 0.75;

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

async fn put_token(tx: &mut PgConnection, t: Option<&TokenRow>) -> Result<(), Error> {
    let Some(t) = t else { return Ok(()) };
    match bind_token(sqlx::query(INSERT_TOKEN), t)
        .execute(&mut *tx)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if unique_violation(&e) => Err(Error::AlreadyExists("client token")),
        Err(e) => Err(e.into()),
    }
}

/// Runs a built query and decodes its rows.
async fn fetch_all<T>(
    s: &PgStore,
    mut qb: QueryBuilder<'_, Postgres>,
    row: impl Fn(&PgRow) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    qb.build()
        .fetch_all(&s.pool)
        .await?
        .iter()
        .map(row)
        .collect()
}

#[async_trait]
impl MemoryStore for PgStore {
    async fn insert_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        match bind_memory(sqlx::query(INSERT_MEMORY), m)
            .execute(&mut *tx)
            .await
        {
            Ok(_) => {}
            Err(e) if unique_violation(&e) => return Err(Error::AlreadyExists("memory name")),
            Err(e) => return Err(e.into()),
        }
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        bind_memory(sqlx::query(PUT_MEMORY), m)
            .execute(&mut *tx)
            .await?;
        put_token(&mut tx, token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn memory(&self, id: &str) -> Result<Option<MemoryRow>, Error> {
        sqlx::query(MEMORY)
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
        sqlx::query(LIST_MEMORIES)
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
        sqlx::query(MEMORIES_IN_STATUS)
            .bind(status)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(memory_row)
            .collect()
    }

    async fn purge_memory(&self, id: &str) -> Result<(), Error> {
        // Chunked so a large memory never holds many row locks in one long transaction.
        for table in MEMORY_TABLES {
            let sql = purge_chunk_sql(table);
            while sqlx::query(&sql)
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0
            {}
        }
        sqlx::query(DELETE_MEMORY)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn token(&self, operation: &str, token: &str) -> Result<Option<TokenRow>, Error> {
        sqlx::query(TOKEN)
            .bind(operation)
            .bind(token)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(token_row)
            .transpose()
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
            let n = bind_event(sqlx::query(INSERT_EVENT), e)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                // Only the token index can conflict: event ids are unique by construction.
                // Under READ COMMITTED this statement sees the row the conflict waited for.
                let existing = sqlx::query(EVENT_BY_TOKEN)
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
            sqlx::query(UPSERT_SESSION)
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
        sqlx::query(EVENT)
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
        // Metadata is a JSON object of `{key: {"stringValue": ...}}`; `->` on a key finds only
        // a top-level member (a JSON null value counts as present, as SQLite's json_type does).
        let qb = events_query::<Postgres>(q, |qb, c| match c {
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
        });
        fetch_all(self, qb, event_row).await
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
        sqlx::query(EVENTS_AFTER)
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
        let n = sqlx::query(DELETE_EVENT)
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
        let (t, s) = session_cursor(after);
        sqlx::query(LIST_SESSIONS)
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
        let rows = sqlx::query(LIST_ACTORS)
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
        sqlx::query(SESSIONS_TO_EXTRACT)
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
        let moved = sqlx::query(MOVE_CURSOR)
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
            bind_job(sqlx::query(PUT_JOB), j).execute(&mut *tx).await?;
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
        let n = sqlx::query(PURGE_EXPIRED_EVENTS)
            .bind(memory_id)
            .bind(min_ts)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            sqlx::query(PURGE_EMPTY_SESSIONS)
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
        // every put, and `seq` is what bounds the record count for keyword pruning. `$1` is the
        // content's words, `$2`.. the record as `bind_record` numbers it.
        let update = "UPDATE memory_records SET keywords = to_tsvector('berth_memory', $1), \
            strategy_id = $4, namespace = $5, content = $6, metadata = $7, record_ts = $8, \
            expires_at = $9, updated_at = $11, embedding = $12 WHERE record_id = $2";
        // A concurrent put of the same new id lands in ON CONFLICT and updates instead.
        let insert = format!(
            "INSERT INTO memory_records (keywords, {RECORD_COLS}, embedding) \
             VALUES (to_tsvector('berth_memory', $1), $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12) ON CONFLICT (record_id) DO UPDATE SET keywords = excluded.keywords, \
             {RECORD_UPSERT_SET}"
        );
        let mut tx = self.pool.begin().await?;
        for r in records {
            let updated = bind_record(sqlx::query(update).bind(words(&r.content)), r)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                bind_record(sqlx::query(&insert).bind(words(&r.content)), r)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record(&self, memory_id: &str, record_id: &str) -> Result<Option<RecordRow>, Error> {
        sqlx::query(RECORD)
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
        let qb = records_by_id_query::<Postgres>(memory_id, ids);
        fetch_all(self, qb, |r| record_row(r, false)).await
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
        let qb = records_query::<Postgres>(scope, after, limit);
        fetch_all(self, qb, |r| record_row(r, false)).await
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
        sqlx::query(EMBEDDINGS)
            .bind(memory_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(embedding_row)
            .collect()
    }

    async fn purge_expired_records(
        &self,
        now: EpochMillis,
        limit: u32,
    ) -> Result<Vec<(String, String)>, Error> {
        let rows = sqlx::query(PURGE_EXPIRED_RECORDS)
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
            bind_job(sqlx::query(PUT_JOB), j).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn job(&self, memory_id: &str, job_id: &str) -> Result<Option<JobRow>, Error> {
        sqlx::query(JOB)
            .bind(memory_id)
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>, Error> {
        fetch_all(self, jobs_query::<Postgres>(q), job_row).await
    }

    async fn jobs_in_status(&self, status: &str, limit: u32) -> Result<Vec<JobRow>, Error> {
        sqlx::query(JOBS_IN_STATUS)
            .bind(status)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(job_row)
            .collect()
    }
}
