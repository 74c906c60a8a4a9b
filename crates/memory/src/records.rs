//! Long-term memory records and hybrid retrieval.
//!
//! Retrieval runs a keyword search (SQLite FTS5, BM25) and a vector search (the in-memory index
//! over MiniLM embeddings) over the same scope, then fuses the two rankings by reciprocal rank
//! fusion: `score(d) = sum over rankings of 1 / (K + rank(d))`. RRF needs no score calibration
//! between BM25 and cosine similarity, which have unrelated scales.

use crate::Memory;
use crate::index::{Filter, Index};
use crate::wire::{
    data_ts, internal, invalid, max_results, memory_id_of, parse_ts, service_error, str_of, token,
    untoken, untoken_pair,
};
use berth_api::ApiError;
use berth_api::memory::{
    BatchCreateMemoryRecordsRequest, BatchDeleteMemoryRecordsRequest, BatchRecordsResponse,
    BatchUpdateMemoryRecordsRequest, Content, DeleteMemoryRecordRequest,
    DeleteMemoryRecordResponse, GetMemoryRecordRequest, GetMemoryRecordResponse,
    ListMemoryRecordsRequest, MemoryRecord, MemoryRecordOutput, MemoryRecordsPage, MetadataFilter,
    RecordExpirySpecification, RecordKey, RetrieveMemoryRecordsRequest,
};
use berth_store::memory::{EmbeddingRow, RecordRow, RecordScope};
use berth_types::{EpochMillis, now_millis, random_alnum};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;
use tracing::{debug, error};

/// The RRF constant from the original paper (Cormack et al.): damps the weight of top ranks.
const RRF_K: f64 = 60.0;
/// Candidates taken from each ranking before fusion, per requested result.
const CANDIDATES_PER_RESULT: usize = 5;
const MIN_CANDIDATES: usize = 50;
/// `RetrieveMemoryRecords` page size when `maxResults` is absent (the API's documented default).
const RETRIEVE_PAGE: u32 = 20;
/// Strategy id given to records created without one.
pub(crate) const EXTERNAL_STRATEGY: &str = "external";
const DAY_MS: i64 = 86_400_000;

/// A new record id: `mem-` and 36 characters (AgentCore ids are 40 to 50 long).
pub(crate) fn new_record_id() -> String {
    format!("mem-{}", random_alnum(36))
}

/// The wire shape of a record (`MemoryRecord` / `MemoryRecordSummary`).
pub(crate) fn record_body(r: &RecordRow, score: Option<f64>) -> MemoryRecord {
    MemoryRecord {
        memory_record_id: r.record_id.clone(),
        content: Content {
            text: Some(r.content.clone()),
        },
        memory_strategy_id: r.strategy_id.clone(),
        namespaces: vec![r.namespace.clone()],
        created_at: r.created_at,
        timestamp: r.record_ts,
        metadata: match &r.metadata {
            Some(Value::Object(m)) => Some(m.clone()),
            _ => None,
        },
        expires_at: r.expires_at,
        score,
    }
}

/// The words of free text worth a keyword search: lowercase, English function words left out
/// (they carry no meaning for BM25 and match nearly every record), duplicates dropped. The store
/// quotes each one, so no word is read as an FTS operator, and ORs them: BM25 ranks by how many
/// and how rare the matching words are.
pub(crate) fn keyword_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        let w = w.to_lowercase();
        if w.is_empty() || STOPWORDS.binary_search(&w.as_str()).is_ok() || terms.contains(&w) {
            continue;
        }
        terms.push(w);
        if terms.len() == MAX_TERMS {
            break;
        }
    }
    terms
}

/// Most words of one query searched by keyword.
const MAX_TERMS: usize = 32;

/// English function words, sorted (for `binary_search`).
const STOPWORDS: &[&str] = &[
    "a", "about", "after", "all", "am", "an", "and", "any", "are", "as", "at", "be", "been",
    "before", "being", "both", "but", "by", "can", "could", "d", "did", "do", "does", "doing",
    "during", "each", "for", "from", "had", "has", "have", "having", "he", "her", "here", "hers",
    "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "ll", "m", "may", "me",
    "might", "my", "of", "on", "or", "our", "s", "she", "should", "so", "some", "such", "t",
    "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they", "this",
    "those", "to", "too", "up", "us", "ve", "was", "we", "were", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "would", "you", "your",
];

fn number_of(v: &Value) -> Option<f64> {
    v.get("numberValue").and_then(Value::as_f64)
}

fn time_of(v: &Value) -> Option<EpochMillis> {
    v.get("dateTimeValue").and_then(data_ts)
}

/// Whether a record's metadata satisfies every filter expression.
pub(crate) fn metadata_matches(metadata: Option<&Value>, filters: &[MetadataFilter]) -> bool {
    filters.iter().all(|f| {
        let Some(key) = f.left.metadata_key.as_deref() else {
            return false;
        };
        let have = metadata.and_then(|m| m.get(key));
        let want = f.right.as_ref().and_then(|r| r.metadata_value.as_ref());
        match (f.operator.as_str(), have, want) {
            ("EXISTS", h, _) => h.is_some(),
            ("NOT_EXISTS", h, _) => h.is_none(),
            (_, None, _) | (_, _, None) => false,
            ("EQUALS_TO", Some(h), Some(w)) => {
                if let (Some(a), Some(b)) = (str_of(h, "stringValue"), str_of(w, "stringValue")) {
                    a == b
                } else if let (Some(a), Some(b)) = (number_of(h), number_of(w)) {
                    a == b
                } else if let (Some(a), Some(b)) = (time_of(h), time_of(w)) {
                    a == b
                } else {
                    h.get("stringListValue").is_some()
                        && h.get("stringListValue") == w.get("stringListValue")
                }
            }
            ("CONTAINS", Some(h), Some(w)) => {
                let list = h.get("stringListValue").and_then(Value::as_array);
                match (list, str_of(w, "stringValue"), str_of(h, "stringValue")) {
                    (Some(l), Some(x), _) => l.iter().any(|i| i.as_str() == Some(x)),
                    (None, Some(x), Some(s)) => s.contains(x),
                    _ => false,
                }
            }
            ("BEFORE", Some(h), Some(w)) => {
                matches!((time_of(h), time_of(w)), (Some(a), Some(b)) if a < b)
            }
            ("AFTER", Some(h), Some(w)) => {
                matches!((time_of(h), time_of(w)), (Some(a), Some(b)) if a > b)
            }
            (op, Some(h), Some(w)) => match (number_of(h), number_of(w)) {
                (Some(a), Some(b)) => match op {
                    "GREATER_THAN" => a > b,
                    "GREATER_THAN_OR_EQUALS" => a >= b,
                    "LESS_THAN" => a < b,
                    "LESS_THAN_OR_EQUALS" => a <= b,
                    _ => false,
                },
                _ => false,
            },
        }
    })
}

/// The one namespace of a record input (`namespaces` holds exactly one).
fn one_namespace(list: Option<&Vec<String>>, field: &str) -> Result<Option<String>, ApiError> {
    match list {
        None => Ok(None),
        Some(a) => match a.first() {
            Some(ns) => Ok(Some(ns.clone())),
            None => Err(invalid(format!("{field} must hold exactly one namespace"))),
        },
    }
}

fn expiry_of(spec: Option<&RecordExpirySpecification>, now: EpochMillis) -> Option<EpochMillis> {
    spec.and_then(|r| r.record_expiry_duration_days)
        .map(|d| now + d * DAY_MS)
}

fn outcome(id: &str, req: Option<&str>, err: Option<(u16, String)>) -> MemoryRecordOutput {
    MemoryRecordOutput {
        memory_record_id: id.to_owned(),
        status: if err.is_some() { "FAILED" } else { "SUCCEEDED" }.to_owned(),
        request_identifier: req.map(str::to_owned),
        error_code: err.as_ref().map(|e| e.0),
        error_message: err.map(|e| e.1),
    }
}

impl Memory {
    /// Embeds texts on the blocking pool; `None` when no embedder is configured.
    pub(crate) async fn embed(
        &self,
        texts: Vec<String>,
    ) -> Result<Option<Vec<Vec<f32>>>, ApiError> {
        let Some(e) = self.inner.opts.embedder.clone() else {
            return Ok(None);
        };
        let res = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            e.embed(&refs)
        })
        .await;
        match res {
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(err)) => {
                error!(error = %err, "embedding failed");
                Err(service_error())
            }
            Err(err) => {
                error!(error = %err, "embedding task failed");
                Err(service_error())
            }
        }
    }

    /// Stores records (embedding those without a vector) and updates the vector index.
    pub(crate) async fn write_records(&self, mut rows: Vec<RecordRow>) -> Result<(), ApiError> {
        let missing: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].embedding.is_none())
            .collect();
        if !missing.is_empty()
            && let Some(vecs) = self
                .embed(missing.iter().map(|&i| rows[i].content.clone()).collect())
                .await?
        {
            for (i, v) in missing.into_iter().zip(vecs) {
                rows[i].embedding = Some(v);
            }
        }
        self.inner
            .store
            .put_records(&rows)
            .await
            .map_err(internal)?;
        for r in rows {
            if let Some(v) = r.embedding {
                self.inner.index.upsert(
                    &r.memory_id,
                    EmbeddingRow {
                        record_id: r.record_id,
                        namespace: r.namespace,
                        strategy_id: r.strategy_id,
                        embedding: v,
                    },
                );
            }
        }
        Ok(())
    }

    /// `BatchCreateMemoryRecords`.
    pub async fn batch_create_records(
        &self,
        input: BatchCreateMemoryRecordsRequest,
    ) -> Result<BatchRecordsResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id).to_owned();
        self.usable(&memory_id).await?;
        let now = now_millis();
        let expires_at = expiry_of(input.record_expiry_specification.as_ref(), now);
        let mut rows = Vec::new();
        let mut failed = Vec::new();
        let mut reqs = Vec::new();
        for r in &input.records {
            let req = r.request_identifier.clone();
            let id = new_record_id();
            let parsed = (|| -> Result<RecordRow, ApiError> {
                Ok(RecordRow {
                    record_id: id.clone(),
                    memory_id: memory_id.clone(),
                    strategy_id: r
                        .memory_strategy_id
                        .clone()
                        .unwrap_or_else(|| EXTERNAL_STRATEGY.to_owned()),
                    namespace: one_namespace(Some(&r.namespaces), "namespaces")?
                        .ok_or_else(|| invalid("namespaces is required"))?,
                    content: r
                        .content
                        .text
                        .clone()
                        .ok_or_else(|| invalid("content.text is required"))?,
                    metadata: r.metadata.clone().map(Value::Object),
                    record_ts: parse_ts(&r.timestamp, "timestamp")?,
                    expires_at,
                    embedding: None,
                    created_at: now,
                    updated_at: now,
                })
            })();
            match parsed {
                Ok(row) => {
                    reqs.push(req);
                    rows.push(row);
                }
                Err(e) => failed.push(outcome(&id, Some(&req), Some((400, e.message)))),
            }
        }
        let ok: Vec<MemoryRecordOutput> = rows
            .iter()
            .zip(&reqs)
            .map(|(r, q)| outcome(&r.record_id, Some(q), None))
            .collect();
        self.write_records(rows).await?;
        Ok(BatchRecordsResponse {
            successful_records: ok,
            failed_records: failed,
        })
    }

    /// `BatchUpdateMemoryRecords`.
    pub async fn batch_update_records(
        &self,
        input: BatchUpdateMemoryRecordsRequest,
    ) -> Result<BatchRecordsResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id).to_owned();
        self.usable(&memory_id).await?;
        let now = now_millis();
        let expires_at = expiry_of(input.record_expiry_specification.as_ref(), now);
        let mut rows = Vec::new();
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for u in &input.records {
            let id = u.memory_record_id.as_str();
            let Some(mut r) = self
                .inner
                .store
                .record(&memory_id, id)
                .await
                .map_err(internal)?
            else {
                failed.push(outcome(
                    id,
                    None,
                    Some((404, format!("memory record {id} not found"))),
                ));
                continue;
            };
            if let Some(t) = u.content.as_ref().and_then(|c| c.text.as_deref()) {
                if t != r.content {
                    r.embedding = None;
                }
                r.content = t.to_owned();
            }
            match one_namespace(u.namespaces.as_ref(), "namespaces") {
                Ok(Some(ns)) => r.namespace = ns,
                Ok(None) => {}
                Err(e) => {
                    failed.push(outcome(id, None, Some((400, e.message))));
                    continue;
                }
            }
            if let Some(s) = &u.memory_strategy_id {
                r.strategy_id = s.clone();
            }
            if let Some(m) = &u.metadata {
                r.metadata = Some(Value::Object(m.clone()));
            }
            if let Some(t) = &u.timestamp {
                r.record_ts = parse_ts(t, "timestamp")?;
            }
            if expires_at.is_some() {
                r.expires_at = expires_at;
            }
            r.updated_at = now;
            ok.push(outcome(id, None, None));
            rows.push(r);
        }
        self.write_records(rows).await?;
        Ok(BatchRecordsResponse {
            successful_records: ok,
            failed_records: failed,
        })
    }

    /// `BatchDeleteMemoryRecords`.
    pub async fn batch_delete_records(
        &self,
        input: BatchDeleteMemoryRecordsRequest,
    ) -> Result<BatchRecordsResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id).to_owned();
        self.usable(&memory_id).await?;
        let ids: Vec<String> = input
            .records
            .into_iter()
            .map(|r| r.memory_record_id)
            .collect();
        let gone = self
            .inner
            .store
            .delete_records(&memory_id, &ids)
            .await
            .map_err(internal)?;
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for id in &ids {
            if gone.contains(id) {
                self.inner.index.remove(&memory_id, id);
                ok.push(outcome(id, None, None));
            } else {
                failed.push(outcome(
                    id,
                    None,
                    Some((404, format!("memory record {id} not found"))),
                ));
            }
        }
        Ok(BatchRecordsResponse {
            successful_records: ok,
            failed_records: failed,
        })
    }

    async fn visible_record(&self, key: &RecordKey) -> Result<RecordRow, ApiError> {
        let memory_id = memory_id_of(&key.memory_id);
        self.usable(memory_id).await?;
        let id = &key.memory_record_id;
        let r = self
            .inner
            .store
            .record(memory_id, id)
            .await
            .map_err(internal)?
            .filter(|r| r.expires_at.is_none_or(|e| e > now_millis()))
            .filter(|r| key.namespace.as_ref().is_none_or(|ns| *ns == r.namespace));
        r.ok_or_else(|| ApiError::not_found(format!("memory record {id} not found")))
    }

    /// `GetMemoryRecord`.
    pub async fn get_record(
        &self,
        input: GetMemoryRecordRequest,
    ) -> Result<GetMemoryRecordResponse, ApiError> {
        let r = self.visible_record(&input).await?;
        Ok(GetMemoryRecordResponse {
            memory_record: record_body(&r, None),
        })
    }

    /// `DeleteMemoryRecord`.
    pub async fn delete_record(
        &self,
        input: DeleteMemoryRecordRequest,
    ) -> Result<DeleteMemoryRecordResponse, ApiError> {
        let r = self.visible_record(&input).await?;
        self.inner
            .store
            .delete_records(&r.memory_id, std::slice::from_ref(&r.record_id))
            .await
            .map_err(internal)?;
        self.inner.index.remove(&r.memory_id, &r.record_id);
        Ok(DeleteMemoryRecordResponse {
            memory_record_id: r.record_id,
        })
    }

    fn scope_of(
        memory_id: &str,
        namespace: Option<&String>,
        namespace_path: Option<&String>,
        strategy: Option<&String>,
    ) -> RecordScope {
        RecordScope {
            memory_id: memory_id.to_owned(),
            namespace: namespace.cloned(),
            namespace_prefix: namespace_path.cloned(),
            strategy_id: strategy.cloned(),
            now: now_millis(),
        }
    }

    /// `ListMemoryRecords`: newest first.
    pub async fn list_records(
        &self,
        input: ListMemoryRecordsRequest,
    ) -> Result<MemoryRecordsPage, ApiError> {
        let memory_id = memory_id_of(&input.memory_id);
        self.usable(memory_id).await?;
        let scope = Self::scope_of(
            memory_id,
            input.namespace.as_ref(),
            input.namespace_path.as_ref(),
            input.memory_strategy_id.as_ref(),
        );
        let filters = input.metadata_filters.as_deref().unwrap_or(&[]);
        let limit = max_results(input.max_results, 20) as usize;
        let mut after = input.next_token.as_deref().map(untoken_pair).transpose()?;
        let mut out: Vec<RecordRow> = Vec::new();
        let mut more = false;
        // Metadata filters apply after the keyset walk, so keep walking until a page is full.
        'walk: loop {
            let page = self
                .inner
                .store
                .list_records(&scope, after.clone(), 100)
                .await
                .map_err(internal)?;
            let full = page.len() == 100;
            for r in page {
                after = Some((r.created_at, r.record_id.clone()));
                if !metadata_matches(r.metadata.as_ref(), filters) {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break 'walk;
                }
                out.push(r);
            }
            if !full {
                break;
            }
        }
        let next_token = if more {
            out.last()
                .map(|last| token(&[&last.created_at.to_string(), &last.record_id]))
        } else {
            None
        };
        Ok(MemoryRecordsPage {
            memory_record_summaries: out.iter().map(|r| record_body(r, None)).collect(),
            next_token,
        })
    }

    /// `RetrieveMemoryRecords`: hybrid keyword + vector search fused by reciprocal rank.
    pub async fn retrieve_records(
        &self,
        input: RetrieveMemoryRecordsRequest,
    ) -> Result<MemoryRecordsPage, ApiError> {
        let memory_id = memory_id_of(&input.memory_id).to_owned();
        self.usable(&memory_id).await?;
        if input.namespace.is_none() && input.namespace_path.is_none() {
            return Err(invalid("one of namespace or namespacePath is required"));
        }
        let criteria = &input.search_criteria;
        let query = criteria.search_query.as_str();
        let top_k = criteria.top_k.map_or(10, |k| k.clamp(1, 100) as usize);
        let filters = criteria.metadata_filters.as_deref().unwrap_or(&[]);
        let scope = Self::scope_of(
            &memory_id,
            input.namespace.as_ref(),
            input.namespace_path.as_ref(),
            criteria.memory_strategy_id.as_ref(),
        );
        // Metadata filters are applied after fusion, so over-fetch when they are present.
        let n = (top_k * CANDIDATES_PER_RESULT * if filters.is_empty() { 1 } else { 4 })
            .max(MIN_CANDIDATES);
        let hits = self.hybrid_search(&scope, query, n).await?;
        let ids: Vec<String> = hits.iter().map(|h| h.record_id.clone()).collect();
        let mut by_id: HashMap<String, RecordRow> = self
            .inner
            .store
            .records(&memory_id, &ids)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|r| (r.record_id.clone(), r))
            .collect();
        let mut chosen: Vec<(RecordRow, Hit)> = hits
            .into_iter()
            .filter_map(|h| by_id.remove(&h.record_id).map(|r| (r, h)))
            .filter(|(r, _)| r.expires_at.is_none_or(|e| e > scope.now))
            .filter(|(r, _)| metadata_matches(r.metadata.as_ref(), filters))
            .take(top_k)
            .collect();
        // Fusion chooses the top K; within it, records are reported by their score, best first,
        // so scores are descending as clients expect.
        chosen.sort_by(|a, b| b.1.score().total_cmp(&a.1.score()));
        let mut summaries: Vec<MemoryRecord> = chosen
            .into_iter()
            .map(|(r, h)| record_body(&r, Some(h.score())))
            .collect();
        // Pages are windows of the ranked top K; the token names the offset and the search it
        // belongs to, so it cannot be replayed against another query.
        let fingerprint = search_fingerprint(&input);
        let offset = match input.next_token.as_deref() {
            Some(t) => {
                let parts = untoken(t, 2)?;
                if parts[1] != fingerprint {
                    return Err(ApiError::field(
                        "nextToken",
                        "the pagination token belongs to another search",
                    ));
                }
                parts[0].parse::<usize>().map_err(|_| {
                    ApiError::field("nextToken", "the pagination token is invalid or expired")
                })?
            }
            None => 0,
        };
        let page = max_results(input.max_results, RETRIEVE_PAGE) as usize;
        let end = (offset + page).min(summaries.len());
        let next_token = (end < summaries.len()).then(|| token(&[&end.to_string(), &fingerprint]));
        summaries.truncate(end);
        Ok(MemoryRecordsPage {
            memory_record_summaries: summaries.split_off(offset.min(end)),
            next_token,
        })
    }

    /// Records in scope ranked by fused keyword and vector relevance, best first.
    pub(crate) async fn hybrid_search(
        &self,
        scope: &RecordScope,
        query: &str,
        n: usize,
    ) -> Result<Vec<Hit>, ApiError> {
        // The two searches use different resources (a store reader; the embedder and the index
        // on the blocking pool), so they run side by side.
        let keyword = async {
            let started = Instant::now();
            let terms = keyword_terms(query);
            let hits = if terms.is_empty() {
                Vec::new()
            } else {
                self.inner
                    .store
                    .search_keywords(scope, &terms, n as u32)
                    .await
                    .map_err(internal)?
            };
            Ok::<_, ApiError>((hits, started.elapsed()))
        };
        let vector = async {
            let started = Instant::now();
            let found = self.vector_scan(scope, query, n).await?;
            Ok::<_, ApiError>((found, started.elapsed()))
        };
        let ((keyword, keyword_time), (vector, vector_time)) = tokio::try_join!(keyword, vector)?;
        let (vector_hits, query_vec) = match vector {
            Some((hits, q, idx)) => (hits, Some((q, idx))),
            None => (Vec::new(), None),
        };
        debug!(
            keyword_ms = keyword_time.as_secs_f64() * 1e3,
            vector_ms = vector_time.as_secs_f64() * 1e3,
            keyword_hits = keyword.len(),
            vector_hits = vector_hits.len(),
            "hybrid search"
        );
        let mut fused: HashMap<String, Hit> = HashMap::new();
        for (rank, (id, sim)) in vector_hits.into_iter().enumerate() {
            fused.insert(
                id.clone(),
                Hit {
                    record_id: id,
                    fused: rrf(rank),
                    similarity: Some(sim),
                },
            );
        }
        for (rank, (id, _)) in keyword.into_iter().enumerate() {
            fused
                .entry(id.clone())
                .or_insert_with(|| Hit {
                    record_id: id,
                    fused: 0.0,
                    similarity: None,
                })
                .fused += rrf(rank);
        }
        let mut ranked: Vec<Hit> = fused.into_values().collect();
        ranked.sort_by(|a, b| {
            b.fused
                .total_cmp(&a.fused)
                .then_with(|| a.record_id.cmp(&b.record_id))
        });
        ranked.truncate(n);
        // Keyword-only hits get their similarity too, so every score means the same thing.
        if let Some((q, idx)) = query_vec {
            let idx = idx.read().unwrap_or_else(PoisonError::into_inner);
            for h in ranked.iter_mut().filter(|h| h.similarity.is_none()) {
                h.similarity = Some(idx.similarity(&q, &h.record_id).unwrap_or(0.0));
            }
        }
        Ok(ranked)
    }

    /// The `n` records in scope closest to `text` by embedding; empty without an embedder.
    pub(crate) async fn vector_search(
        &self,
        scope: &RecordScope,
        text: &str,
        n: usize,
    ) -> Result<Vec<(String, f32)>, ApiError> {
        Ok(self
            .vector_scan(scope, text, n)
            .await?
            .map(|(hits, _, _)| hits)
            .unwrap_or_default())
    }

    /// The `n` records in scope closest to `text` by embedding, with the query's vector and the
    /// index searched; `None` without an embedder.
    async fn vector_scan(
        &self,
        scope: &RecordScope,
        text: &str,
        n: usize,
    ) -> Result<Option<ScanResult>, ApiError> {
        let started = Instant::now();
        let Some(q) = self.embed(vec![text.to_owned()]).await? else {
            return Ok(None);
        };
        debug!(
            embed_ms = started.elapsed().as_secs_f64() * 1e3,
            "query embedded"
        );
        let Some(q) = q.into_iter().next() else {
            return Ok(None);
        };
        let idx = match self.inner.index.get(&scope.memory_id) {
            Some(i) => i,
            None => {
                let rows = self
                    .inner
                    .store
                    .embeddings(&scope.memory_id)
                    .await
                    .map_err(internal)?;
                self.inner.index.install(&scope.memory_id, rows)
            }
        };
        let filter = Filter {
            namespace: scope.namespace.clone(),
            namespace_prefix: scope.namespace_prefix.clone(),
            strategy_id: scope.strategy_id.clone(),
        };
        // A full scan is CPU work of tens of milliseconds at 100k records: off the async threads.
        tokio::task::spawn_blocking(move || {
            let hits = idx
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .search(&q, &filter, n);
            Some((hits, q, idx))
        })
        .await
        .map_err(|e| {
            error!(error = %e, "vector search task failed");
            service_error()
        })
    }
}

/// What a vector scan found, the query's vector, and the index it searched.
type ScanResult = (Vec<(String, f32)>, Vec<f32>, Arc<RwLock<Index>>);

/// One retrieval hit.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub record_id: String,
    /// Reciprocal-rank-fusion score of the keyword and vector rankings: what chooses the top K.
    pub fused: f64,
    /// Cosine similarity of the record to the query; `None` without an embedder.
    pub similarity: Option<f32>,
}

impl Hit {
    /// The score reported to clients, in [0, 1], higher is more relevant: the cosine similarity
    /// of the record to the query, as AgentCore documents it (clients such as the Strands
    /// session manager filter on it). Without an embedder, the fused score relative to the best
    /// possible (first in both rankings).
    pub(crate) fn score(&self) -> f64 {
        match self.similarity {
            Some(s) => f64::from(s).clamp(0.0, 1.0),
            None => (self.fused / (2.0 * rrf(0))).min(1.0),
        }
    }
}

/// The reciprocal-rank-fusion weight of 0-based `rank`.
fn rrf(rank: usize) -> f64 {
    1.0 / (RRF_K + rank as f64 + 1.0)
}

/// What identifies one search across its pages: scope and criteria, hashed (stable across
/// processes: `DefaultHasher::new` has fixed keys).
fn search_fingerprint(input: &RetrieveMemoryRecordsRequest) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    input.memory_id.hash(&mut h);
    input.namespace.hash(&mut h);
    input.namespace_path.hash(&mut h);
    serde_json::to_string(&input.search_criteria)
        .ok()
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keyword_terms_keep_the_meaningful_words_once() {
        assert_eq!(
            keyword_terms("What does the user drink? NOT tea, not coffee"),
            ["user", "drink", "not", "tea", "coffee"]
        );
        assert!(keyword_terms("?! what is it").is_empty());
        assert!(
            STOPWORDS.windows(2).all(|w| w[0] < w[1]),
            "STOPWORDS must stay sorted"
        );
    }

    #[test]
    fn metadata_filters_cover_each_operator() {
        let m = json!({"tier": {"stringValue": "gold"}, "n": {"numberValue": 5},
                       "tags": {"stringListValue": ["a", "b"]}});
        let f = |op: &str, key: &str, right: Value| {
            serde_json::from_value::<MetadataFilter>(json!({"left": {"metadataKey": key},
                "operator": op, "right": {"metadataValue": right}}))
            .unwrap()
        };
        let bare = |v: Value| serde_json::from_value::<MetadataFilter>(v).unwrap();
        assert!(metadata_matches(
            Some(&m),
            &[f("EQUALS_TO", "tier", json!({"stringValue": "gold"}))]
        ));
        assert!(!metadata_matches(
            Some(&m),
            &[f("EQUALS_TO", "tier", json!({"stringValue": "tin"}))]
        ));
        assert!(metadata_matches(
            Some(&m),
            &[f("GREATER_THAN", "n", json!({"numberValue": 4}))]
        ));
        assert!(!metadata_matches(
            Some(&m),
            &[f("LESS_THAN", "n", json!({"numberValue": 4}))]
        ));
        assert!(metadata_matches(
            Some(&m),
            &[f("CONTAINS", "tags", json!({"stringValue": "b"}))]
        ));
        assert!(metadata_matches(
            Some(&m),
            &[bare(
                json!({"left": {"metadataKey": "x"}, "operator": "NOT_EXISTS"})
            )]
        ));
        assert!(!metadata_matches(
            None,
            &[bare(
                json!({"left": {"metadataKey": "x"}, "operator": "EXISTS"})
            )]
        ));
    }
}
