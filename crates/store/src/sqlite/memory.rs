//! SQLite's [`MemoryStore`]: the shared implementation of `crate::memory`'s `memory_store!`,
//! with FTS5 for keywords (kept in step with `memory_records` by triggers) and embeddings as
//! BLOBs.

use crate::memory::*;
use crate::{Error, SqliteStore};
use sqlx::{QueryBuilder, Row, Sqlite};

crate::memory::memory_store!(SqliteStore, Sqlite);

/// No row locks: the write transaction's lock already serialises claimers.
const CLAIM_LOCK: &str = "";

/// A JSON path selecting one top-level key, quoted so any key characters are literal.
fn json_key(key: &str) -> String {
    format!("$.\"{}\"", key.replace('"', ""))
}

/// One metadata condition, in SQLite's JSON functions.
fn push_meta(qb: &mut QueryBuilder<'_, Sqlite>, c: &MetaCond) {
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

/// Inserts or replaces records; FTS5's triggers index their content.
async fn put_records(s: &SqliteStore, records: &[RecordRow]) -> Result<(), Error> {
    // An upsert that keeps `seq`, so the keyword index row is updated by its trigger rather
    // than deleted and re-added under a new rowid.
    let upsert = format!(
        "INSERT INTO memory_records ({RECORD_COLS}, embedding) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (record_id) DO UPDATE SET {RECORD_UPSERT_SET}"
    );
    let mut tx = s.begin().await?;
    for r in records {
        bind_record(sqlx::query(&upsert), r)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Record ids in scope holding any of `terms`, by FTS5's bm25, best first.
async fn search_keywords(
    s: &SqliteStore,
    scope: &RecordScope,
    terms: &[String],
    limit: u32,
) -> Result<Vec<(String, f64)>, Error> {
    let mut conn = s.reader().acquire().await?;
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
