//! PostgreSQL implementation of [`MemoryStore`]: full-text search for keywords, embeddings as
//! BYTEA (searched by each node's in-process vector index, exactly as with SQLite).
//!
//! Keyword search mirrors SQLite's FTS5 index: record content is split into words as the domain
//! splits queries, stemmed by the `berth_memory` text search configuration (English snowball,
//! no stopwords; see `migrations/postgres/0002_memory.sql`) into a GIN-indexed `keywords`
//! tsvector, and matches are ranked by BM25 computed from the index (term counts from the
//! tsvectors, document frequencies from the GIN index), as FTS5's `bm25()` ranks them but for
//! the length measure: distinct words, against the average over the matching records.

use super::PgStore;
use crate::Error;
use crate::memory::*;
use sqlx::{Postgres, QueryBuilder, Row};

crate::memory::memory_store!(PgStore, Postgres);

/// Claimers on several nodes take different jobs instead of queueing on the same rows.
const CLAIM_LOCK: &str = " FOR UPDATE SKIP LOCKED";

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

/// One metadata condition, in PostgreSQL's JSONB operators. Metadata is a JSON object of
/// `{key: {"stringValue": ...}}`; `->` on a key finds only a top-level member (a JSON null value
/// counts as present, as SQLite's `json_type` does).
fn push_meta(qb: &mut QueryBuilder<'_, Postgres>, c: &MetaCond) {
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

/// Inserts or replaces records with their keyword tsvectors.
async fn put_records(s: &PgStore, records: &[RecordRow]) -> Result<(), Error> {
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
    let mut tx = s.begin().await?;
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

/// Record ids in scope holding any of `terms`, by BM25, best first.
async fn search_keywords(
    s: &PgStore,
    scope: &RecordScope,
    terms: &[String],
    limit: u32,
) -> Result<Vec<(String, f64)>, Error> {
    let mut split: Vec<String> = Vec::new();
    for t in terms {
        for w in words(t).split(' ') {
            if !w.is_empty() && !split.iter().any(|x| x == w) {
                split.push(w.to_owned());
            }
        }
    }
    if split.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = s.reader().acquire().await?;
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
