//! SQLite implementation of [`MemoryStore`]: FTS5 for keywords, embeddings as BLOBs. The SQL
//! and row decoding both backends share are in `crate::memory`'s `shared` module.

use super::cols::corrupt;
use crate::memory::*;
use crate::{Error, SqliteStore};
use async_trait::async_trait;
use berth_types::EpochMillis;
use sqlx::{QueryBuilder, Row, Sqlite};

/// A JSON path selecting one top-level key, quoted so any key characters are literal.
fn json_key(key: &str) -> String {
    format!("$.\"{}\"", key.replace('"', ""))
}

async fn put_token(tx: &mut sqlx::SqliteConnection, t: Option<&TokenRow>) -> Result<(), Error> {
    let Some(t) = t else { return Ok(()) };
    match bind_token(sqlx::query(INSERT_TOKEN), t)
        .execute(&mut *tx)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if super::unique_violation(&e) => Err(Error::AlreadyExists("client token")),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn insert_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        match bind_memory(sqlx::query(INSERT_MEMORY), m)
            .execute(&mut *tx)
            .await
        {
            Ok(_) => {}
            Err(e) if super::unique_violation(&e) => {
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
        sqlx::query(LIST_MEMORIES)
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
        sqlx::query(MEMORIES_IN_STATUS)
            .bind(status)
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(memory_row)
            .collect()
    }

    async fn purge_memory(&self, id: &str) -> Result<(), Error> {
        // Chunked so a large memory never holds the single writer for long.
        for table in MEMORY_TABLES {
            let sql = purge_chunk_sql(table);
            while sqlx::query(&sql)
                .bind(id)
                .execute(self.writer())
                .await?
                .rows_affected()
                > 0
            {}
        }
        sqlx::query(DELETE_MEMORY)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn token(&self, operation: &str, token: &str) -> Result<Option<TokenRow>, Error> {
        sqlx::query(TOKEN)
            .bind(operation)
            .bind(token)
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(token_row)
            .transpose()
    }

    async fn insert_events(&self, events: &[EventRow]) -> Result<Vec<Inserted>, Error> {
        let mut out = Vec::with_capacity(events.len());
        let mut tx = self.begin().await?;
        for e in events {
            let n = bind_event(sqlx::query(INSERT_EVENT), e)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                // Only the token index can conflict: event ids are unique by construction.
                let existing = sqlx::query(EVENT_BY_TOKEN)
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
            sqlx::query(UPSERT_SESSION)
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
        sqlx::query(EVENT)
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
        let qb = events_query::<Sqlite>(q, |qb, c| match c {
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
        let n = sqlx::query(DELETE_EVENT)
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
        let (t, s) = session_cursor(after);
        sqlx::query(LIST_SESSIONS)
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
        let rows = sqlx::query(LIST_ACTORS)
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
        sqlx::query(SESSIONS_TO_EXTRACT)
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
        let mut tx = self.begin().await?;
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
        let mut tx = self.begin().await?;
        for r in records {
            // An upsert that keeps `seq`, so the keyword index row is updated by its trigger
            // rather than deleted and re-added under a new rowid.
            bind_record(
                sqlx::query(&format!(
                    "INSERT INTO memory_records ({RECORD_COLS}, embedding) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (record_id) DO UPDATE SET {RECORD_UPSERT_SET}"
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
        sqlx::query(RECORD)
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
        let qb = records_by_id_query::<Sqlite>(memory_id, ids);
        fetch_all(self, qb, |r| record_row(r, false)).await
    }

    async fn delete_records(&self, memory_id: &str, ids: &[String]) -> Result<Vec<String>, Error> {
        let mut tx = self.begin().await?;
        let mut gone = Vec::new();
        for id in ids {
            let n = sqlx::query(DELETE_RECORD)
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
        let qb = records_query::<Sqlite>(scope, after, limit);
        fetch_all(self, qb, |r| record_row(r, false)).await
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
        sqlx::query(EMBEDDINGS)
            .bind(memory_id)
            .fetch_all(self.reader())
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
            .fetch_all(self.writer())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("memory_id")?, r.try_get("record_id")?)))
            .collect()
    }

    async fn put_jobs(&self, jobs: &[JobRow]) -> Result<(), Error> {
        let mut tx = self.begin().await?;
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
            .fetch_optional(self.reader())
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>, Error> {
        fetch_all(self, jobs_query::<Sqlite>(q), job_row).await
    }

    async fn jobs_in_status(&self, status: &str, limit: u32) -> Result<Vec<JobRow>, Error> {
        sqlx::query(JOBS_IN_STATUS)
            .bind(status)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?
            .iter()
            .map(job_row)
            .collect()
    }
}

/// Runs a built query on the read pool and decodes its rows.
async fn fetch_all<T>(
    s: &SqliteStore,
    mut qb: QueryBuilder<'_, Sqlite>,
    row: impl Fn(&sqlx::sqlite::SqliteRow) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    qb.build()
        .fetch_all(s.reader())
        .await?
        .iter()
        .map(row)
        .collect()
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
