//! Asynchronous extraction of long-term records from events, and the native context call.
//!
//! A session becomes ready for extraction once it has been quiet for `extraction_delay`. Its
//! new conversational messages become one job per strategy (visible through
//! `ListMemoryExtractionJobs`); a job asks the configured model for records in the strategy's
//! shape, then consolidates them with what the namespace already holds: a new fact that is a
//! near-duplicate of an existing record replaces it instead of piling up beside it, and a
//! session summary is rewritten in place.

use crate::Memory;
use crate::events::{event_body, expiry_cutoff};
use crate::provider::NO_PROVIDER;
use crate::records::{new_record_id, record_body};
use crate::resources::{Spec, fill_template};
use crate::wire::{internal, invalid, memory_id_of, stored, to_stored, token, untoken_pair};
use berth_api::ApiError;
use berth_api::memory::{
    ContextRequest, ContextResponse, ExtractionJobMessages, ExtractionJobMetadata,
    ListMemoryExtractionJobsRequest, ListMemoryExtractionJobsResponse, MemoryStrategy, MessageRef,
    PayloadItem, StartMemoryExtractionJobRequest, StartMemoryExtractionJobResponse,
};
use berth_store::memory::{EventQuery, JobQuery, JobRow, RecordRow, RecordScope};
use berth_types::{now_millis, random_alnum};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tracing::{info, warn};

/// Cosine similarity above which a new fact supersedes an existing record.
const SUPERSEDE_SIMILARITY: f32 = 0.85;
/// Messages handed to one job at most.
const MAX_EVENTS_PER_JOB: u32 = 100;
/// Jobs run per round.
const JOBS_PER_ROUND: u32 = 20;
/// How long a claimed job may run before another node takes it as abandoned (its runner died):
/// well above one provider call's timeout.
const JOB_LEASE: Duration = Duration::from_secs(15 * 60);

/// The instructions for a strategy type (custom strategies name the type they override).
fn prompt_for(kind: &str) -> &'static str {
    match kind {
        "SUMMARIZATION" | "SUMMARY_OVERRIDE" => {
            "You summarise conversations between a user and an AI assistant. Write one concise \
             summary of the conversation below: topics, decisions, open questions. Answer with \
             JSON only: {\"memories\": [\"<the summary>\"]}"
        }
        "USER_PREFERENCE" | "USER_PREFERENCE_OVERRIDE" => {
            "You extract user preferences from conversations between a user and an AI assistant: \
             explicit and clearly implied likes, dislikes, habits and choices of the user. One \
             preference per item, each a self-contained sentence. Answer with JSON only: \
             {\"memories\": [\"...\", ...]} (an empty list when there are none)."
        }
        "EPISODIC" | "EPISODIC_OVERRIDE" => {
            "You record episodes from conversations between a user and an AI assistant: for each \
             distinct task, one item saying the situation, the user's intent, what was done, and \
             how it turned out. Answer with JSON only: {\"memories\": [\"...\", ...]}"
        }
        _ => {
            "You extract facts worth remembering from conversations between a user and an AI \
             assistant: durable facts about the user, their world and their work, not small talk. \
             One fact per item, each a self-contained sentence. Answer with JSON only: \
             {\"memories\": [\"...\", ...]} (an empty list when there are none)."
        }
    }
}

/// The `{"memories": [...]}` object in a model answer, tolerating prose or code fences around it.
fn parse_memories(text: &str) -> Result<Vec<String>, String> {
    let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) else {
        return Err(format!("model answer holds no json object: {text:.200}"));
    };
    let v: Value = serde_json::from_str(&text[start..=end])
        .map_err(|e| format!("model answer is not valid json ({e}): {text:.200}"))?;
    let list = v
        .get("memories")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("model answer has no \"memories\" list: {text:.200}"))?;
    Ok(list
        .iter()
        .filter_map(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The strategy type extraction follows, or `None` for strategies the caller extracts itself.
fn extraction_kind(strategy: &MemoryStrategy) -> Option<String> {
    if strategy.strategy_type != "CUSTOM" {
        return Some(strategy.strategy_type.clone());
    }
    match strategy
        .configuration
        .as_ref()
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
    {
        Some("SELF_MANAGED") | None => None,
        Some(t) => Some(t.to_owned()),
    }
}

/// Text appended to the prompt by a custom strategy's override, if any.
fn appended_prompt(strategy: &MemoryStrategy) -> Option<String> {
    let cfg = strategy.configuration.as_ref()?;
    let mut parts = Vec::new();
    for section in ["extraction", "consolidation"] {
        if let Some(o) = cfg.get(section).and_then(Value::as_object) {
            for inner in o.values().filter_map(Value::as_object) {
                for ov in inner.values() {
                    if let Some(p) = ov.get("appendToPrompt").and_then(Value::as_str) {
                        parts.push(p.to_owned());
                    }
                }
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join("\n"))
}

fn job_body(j: &JobRow) -> Result<ExtractionJobMetadata, ApiError> {
    Ok(ExtractionJobMetadata {
        job_id: j.job_id.clone(),
        messages: ExtractionJobMessages {
            messages_list: stored("job messages", j.messages.clone())?,
        },
        status: j.status.clone(),
        strategy_id: j.strategy_id.clone(),
        session_id: j.session_id.clone(),
        actor_id: j.actor_id.clone(),
        failure_reason: j.failure_reason.clone(),
    })
}

impl Memory {
    /// The extraction loop: plans jobs for quiet sessions and runs pending jobs until shutdown.
    pub(crate) async fn run_extraction(&self) {
        let tick = (self.inner.opts.extraction_delay / 2).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = self.inner.extract_wake.notified() => {}
                () = self.inner.shutdown.cancelled() => return,
            }
            if let Err(e) = self.extraction_round().await {
                warn!(error = %e.detail(), "memory extraction round failed; retrying next round");
            }
        }
    }

    /// One round: plan jobs for every quiet session, then run pending jobs.
    pub async fn extraction_round(&self) -> Result<(), ApiError> {
        let quiet_before = now_millis() - self.inner.opts.extraction_delay.as_millis() as i64;
        let mut after = None;
        loop {
            let page = self
                .inner
                .store
                .list_memories(after.clone(), 100)
                .await
                .map_err(internal)?;
            for m in &page {
                if m.status != "ACTIVE" {
                    continue;
                }
                let strategies: Vec<MemoryStrategy> = match Spec::of(m) {
                    Ok(spec) => spec
                        .strategies
                        .into_iter()
                        .filter(|s| extraction_kind(s).is_some())
                        .collect(),
                    Err(e) => {
                        warn!(memory_id = %m.id, error = %e.detail(), "memory not extracted");
                        continue;
                    }
                };
                if strategies.is_empty() {
                    continue;
                }
                let sessions = self
                    .inner
                    .store
                    .sessions_to_extract(&m.id, quiet_before, 50)
                    .await
                    .map_err(internal)?;
                for s in sessions {
                    let events = self
                        .inner
                        .store
                        .events_after(
                            &m.id,
                            &s.actor_id,
                            &s.session_id,
                            s.extracted_upto.as_deref(),
                            expiry_cutoff(m, now_millis()),
                            MAX_EVENTS_PER_JOB,
                        )
                        .await
                        .map_err(internal)?;
                    let Some(last) = events.last() else { continue };
                    let mut messages = Vec::new();
                    for e in &events {
                        let payload: Vec<PayloadItem> = stored("event payload", e.payload.clone())?;
                        for (i, p) in payload.iter().enumerate() {
                            if p.conversational.is_some() {
                                messages.push(MessageRef {
                                    event_id: e.event_id.clone(),
                                    message_index: i as u32,
                                });
                            }
                        }
                    }
                    let messages = to_stored("job messages", &messages)?;
                    let now = now_millis();
                    let jobs: Vec<JobRow> = if messages.as_array().is_none_or(Vec::is_empty) {
                        Vec::new()
                    } else {
                        strategies
                            .iter()
                            .map(|st| JobRow {
                                job_id: format!("job-{}", random_alnum(24)),
                                memory_id: m.id.clone(),
                                strategy_id: st.strategy_id.clone(),
                                actor_id: s.actor_id.clone(),
                                session_id: s.session_id.clone(),
                                status: "PENDING".into(),
                                failure_reason: None,
                                messages: messages.clone(),
                                created_at: now,
                                updated_at: now,
                            })
                            .collect()
                    };
                    let planned = self
                        .inner
                        .store
                        .put_jobs_and_cursor(
                            &m.id,
                            &s.actor_id,
                            &s.session_id,
                            s.extracted_upto.as_deref(),
                            &last.event_id,
                            &jobs,
                        )
                        .await;
                    match planned {
                        // Another extractor moved the cursor first and planned these events.
                        Ok(()) | Err(berth_store::Error::Precondition(_)) => {}
                        Err(e) => return Err(internal(e)),
                    }
                }
            }
            match page.last() {
                Some(m) if page.len() == 100 => after = Some((m.created_at, m.id.clone())),
                _ => break,
            }
        }
        // One job claimed at a time, just before it runs: with several nodes on one store each
        // job runs on one of them, and a claim never waits behind this round's other jobs.
        for _ in 0..JOBS_PER_ROUND {
            if self.inner.shutdown.is_cancelled() {
                break;
            }
            let now = now_millis();
            let Some(mut job) = self
                .inner
                .store
                .claim_jobs(now, now - JOB_LEASE.as_millis() as i64, 1)
                .await
                .map_err(internal)?
                .pop()
            else {
                break;
            };
            let outcome = self.run_job(&job).await;
            job.updated_at = now_millis();
            match outcome {
                Ok(n) => {
                    info!(job_id = %job.job_id, records = n, "extraction job succeeded");
                    job.status = "SUCCEEDED".into();
                    job.failure_reason = None;
                }
                Err(reason) => {
                    warn!(job_id = %job.job_id, %reason, "extraction job failed");
                    job.status = "FAILED".into();
                    job.failure_reason = Some(reason);
                }
            }
            self.inner.store.put_jobs(&[job]).await.map_err(internal)?;
        }
        Ok(())
    }

    /// Runs one job; returns how many records it wrote or why it failed.
    async fn run_job(&self, job: &JobRow) -> Result<usize, String> {
        let m = self.usable(&job.memory_id).await.map_err(|e| e.message)?;
        let strategy = Spec::of(&m)
            .map_err(|e| e.message)?
            .strategies
            .into_iter()
            .find(|s| s.strategy_id == job.strategy_id)
            .ok_or_else(|| format!("strategy {} no longer exists", job.strategy_id))?;
        let kind = extraction_kind(&strategy).ok_or_else(|| {
            "the strategy is self-managed: Berth does not extract for it".to_owned()
        })?;
        let Some(provider) = self.inner.opts.provider.clone() else {
            return Err(NO_PROVIDER.to_owned());
        };
        let template = strategy
            .namespaces
            .first()
            .ok_or_else(|| "the strategy has no namespace".to_owned())?;
        let namespace = fill_template(
            template,
            &[
                ("actorId", &job.actor_id),
                ("sessionId", &job.session_id),
                ("memoryStrategyId", &job.strategy_id),
            ],
        )
        .ok_or_else(|| format!("namespace template {template:?} has a variable with no value"))?;
        let transcript = self.transcript(job).await?;
        if transcript.is_empty() {
            return Ok(0);
        }
        let mut system = prompt_for(&kind).to_owned();
        if let Some(extra) = appended_prompt(&strategy) {
            system.push_str("\n\n");
            system.push_str(&extra);
        }
        let answer = provider
            .complete(&system, &transcript)
            .await
            .map_err(|e| e.to_string())?;
        let items = parse_memories(&answer)?;
        let summary = matches!(kind.as_str(), "SUMMARIZATION" | "SUMMARY_OVERRIDE");
        self.consolidate(&m.id, &job.strategy_id, &namespace, items, summary)
            .await
    }

    async fn transcript(&self, job: &JobRow) -> Result<String, String> {
        let mut cache: HashMap<String, Vec<PayloadItem>> = HashMap::new();
        let mut lines = Vec::new();
        let messages: Vec<MessageRef> =
            stored("job messages", job.messages.clone()).map_err(|e| e.message)?;
        for msg in messages {
            let eid = msg.event_id;
            if !cache.contains_key(&eid) {
                let e = self
                    .inner
                    .store
                    .event(&job.memory_id, &job.actor_id, &job.session_id, &eid)
                    .await
                    .map_err(|e| e.to_string())?;
                let payload = match e {
                    Some(e) => stored("event payload", e.payload).map_err(|e| e.message)?,
                    None => Vec::new(),
                };
                cache.insert(eid.clone(), payload);
            }
            if let Some(c) = cache
                .get(&eid)
                .and_then(|p| p.get(msg.message_index as usize))
                .and_then(|p| p.conversational.as_ref())
            {
                let text = c.content.text.as_deref().unwrap_or("");
                lines.push(format!("{}: {text}", c.role));
            }
        }
        Ok(lines.join("\n"))
    }

    /// Writes extracted items into a namespace: a near-duplicate of an existing record of the
    /// strategy replaces it; a summary replaces the namespace's previous summary.
    async fn consolidate(
        &self,
        memory_id: &str,
        strategy_id: &str,
        namespace: &str,
        items: Vec<String>,
        summary: bool,
    ) -> Result<usize, String> {
        let now = now_millis();
        let scope = RecordScope {
            memory_id: memory_id.to_owned(),
            namespace: Some(namespace.to_owned()),
            strategy_id: Some(strategy_id.to_owned()),
            now,
            ..Default::default()
        };
        let mut rows = Vec::new();
        for text in items {
            let mut target: Option<RecordRow> = None;
            if summary {
                target = self
                    .inner
                    .store
                    .list_records(&scope, None, 1)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .next();
            } else if let Some((id, sim)) = self
                .vector_search(&scope, &text, 1)
                .await
                .map_err(|e| e.message)?
                .into_iter()
                .next()
                && sim >= SUPERSEDE_SIMILARITY
            {
                target = self
                    .inner
                    .store
                    .record(memory_id, &id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if target.is_none() && !summary {
                // Without an embedder, at least never store the same sentence twice.
                target = self
                    .inner
                    .store
                    .list_records(&scope, None, 1000)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|r| r.content == text);
            }
            let row = match target {
                Some(mut r) => {
                    r.content = text;
                    r.embedding = None;
                    r.record_ts = now;
                    r.updated_at = now;
                    r
                }
                None => RecordRow {
                    record_id: new_record_id(),
                    memory_id: memory_id.to_owned(),
                    strategy_id: strategy_id.to_owned(),
                    namespace: namespace.to_owned(),
                    content: text,
                    metadata: None,
                    record_ts: now,
                    expires_at: None,
                    embedding: None,
                    created_at: now,
                    updated_at: now,
                },
            };
            // Written one by one so the next item's duplicate check sees this one.
            self.write_records(vec![row.clone()])
                .await
                .map_err(|e| e.message)?;
            rows.push(row);
        }
        Ok(rows.len())
    }

    /// `ListMemoryExtractionJobs`.
    pub async fn list_extraction_jobs(
        &self,
        input: ListMemoryExtractionJobsRequest,
    ) -> Result<ListMemoryExtractionJobsResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id).to_owned();
        self.usable(&memory_id).await?;
        let limit = input.max_results.map_or(20, |n| n.clamp(1, 50));
        let f = input.filter;
        let q = JobQuery {
            memory_id,
            status: f.as_ref().and_then(|f| f.status.clone()),
            strategy_id: f.as_ref().and_then(|f| f.strategy_id.clone()),
            actor_id: f.as_ref().and_then(|f| f.actor_id.clone()),
            session_id: f.as_ref().and_then(|f| f.session_id.clone()),
            after: input.next_token.as_deref().map(untoken_pair).transpose()?,
            limit: limit + 1,
        };
        let mut rows = self.inner.store.list_jobs(&q).await.map_err(internal)?;
        let mut next_token = None;
        if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            next_token = rows
                .last()
                .map(|l| token(&[&l.created_at.to_string(), &l.job_id]));
        }
        Ok(ListMemoryExtractionJobsResponse {
            next_token,
            jobs: rows.iter().map(job_body).collect::<Result<_, _>>()?,
        })
    }

    /// `StartMemoryExtractionJob`: re-runs a failed job.
    pub async fn start_extraction_job(
        &self,
        input: StartMemoryExtractionJobRequest,
    ) -> Result<StartMemoryExtractionJobResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id).to_owned();
        self.usable(&memory_id).await?;
        let job_id = input.extraction_job.job_id;
        let Some(mut job) = self
            .inner
            .store
            .job(&memory_id, &job_id)
            .await
            .map_err(internal)?
        else {
            return Err(ApiError::not_found(format!(
                "extraction job {job_id} not found"
            )));
        };
        if job.status != "FAILED" {
            return Err(invalid(format!(
                "extraction job {job_id} is {}; only failed jobs can be started again",
                job.status
            )));
        }
        job.status = "PENDING".into();
        job.failure_reason = None;
        job.updated_at = now_millis();
        self.inner.store.put_jobs(&[job]).await.map_err(internal)?;
        self.inner.extract_wake.notify_one();
        Ok(StartMemoryExtractionJobResponse { job_id })
    }

    /// The native context call: in one round trip, the recent turns of the actor's most recent
    /// session and, for `query`, the most relevant records of the actor across the memory's
    /// strategies.
    ///
    /// Input: `memoryId`, `actorId`, optional `query`, `maxTurns` (events, default 10),
    /// `topK` (default 5), `namespacePath` (overrides the strategies' namespaces).
    pub async fn context(&self, input: ContextRequest) -> Result<ContextResponse, ApiError> {
        let memory_id = memory_id_of(&input.memory_id).to_owned();
        let m = self.usable(&memory_id).await?;
        let actor = input.actor_id;
        // Negative counts are ignored, as a count that is not a number always was.
        let max_turns = input
            .max_turns
            .filter(|n| *n >= 0)
            .map_or(10, |n| n.clamp(1, 100) as u32);
        let top_k = input
            .top_k
            .filter(|n| *n >= 0)
            .map_or(5, |n| n.clamp(1, 100) as usize);
        let now = now_millis();
        let cutoff = expiry_cutoff(&m, now);
        let last = self
            .inner
            .store
            .list_sessions(&memory_id, &actor, cutoff, None, 1)
            .await
            .map_err(internal)?
            .into_iter()
            .next();
        let mut out = ContextResponse {
            memory_id: memory_id.clone(),
            actor_id: actor.clone(),
            turns: Vec::new(),
            records: Vec::new(),
            session_id: None,
        };
        if let Some(s) = &last {
            let mut events = self
                .inner
                .store
                .list_events(&EventQuery {
                    memory_id: memory_id.clone(),
                    actor_id: actor.clone(),
                    session_id: s.session_id.clone(),
                    min_ts: cutoff,
                    limit: max_turns,
                    ..Default::default()
                })
                .await
                .map_err(internal)?;
            // Oldest first, the order a prompt reads a conversation in.
            events.reverse();
            out.session_id = Some(s.session_id.clone());
            out.turns = events
                .iter()
                .map(|e| event_body(e, true))
                .collect::<Result<_, _>>()?;
        }
        let Some(query) = input.query.as_deref() else {
            return Ok(out);
        };
        let prefixes: Vec<String> = match input.namespace_path {
            Some(p) => vec![p],
            None => Spec::of(&m)?
                .strategies
                .iter()
                .filter_map(|st| {
                    let t = st.namespaces.first()?;
                    // Everything up to the first variable that is not the actor or strategy:
                    // records of all of the actor's sessions.
                    let cut = t.find("{sessionId}").map_or(t.as_str(), |i| &t[..i]);
                    fill_template(
                        cut,
                        &[("actorId", &actor), ("memoryStrategyId", &st.strategy_id)],
                    )
                })
                .collect(),
        };
        let mut hits: Vec<crate::records::Hit> = Vec::new();
        for p in prefixes {
            let scope = RecordScope {
                memory_id: memory_id.clone(),
                namespace_prefix: Some(p),
                now,
                ..Default::default()
            };
            hits.extend(self.hybrid_search(&scope, query, top_k * 5).await?);
        }
        hits.sort_by(|a, b| b.fused.total_cmp(&a.fused));
        // A record under several prefixes keeps its best place.
        let mut seen = std::collections::HashSet::new();
        hits.retain(|h| seen.insert(h.record_id.clone()));
        hits.truncate(top_k);
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
        out.records = hits
            .iter()
            .filter_map(|h| by_id.remove(&h.record_id))
            .map(|r| record_body(&r, None))
            .collect();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn memories_parse_from_chatty_answers() {
        let a = "Sure!\n```json\n{\"memories\": [\"likes tea\", \" \"]}\n```";
        assert_eq!(parse_memories(a).unwrap(), ["likes tea"]);
        assert!(parse_memories("no").is_err());
        assert!(parse_memories("{\"facts\": []}").is_err());
    }

    #[test]
    fn self_managed_strategies_are_not_extracted() {
        let strategy = |ty: &str, configuration: Option<Value>| MemoryStrategy {
            strategy_id: "s-1".into(),
            name: "s".into(),
            strategy_type: ty.into(),
            namespaces: vec!["/x/".into()],
            namespace_templates: vec!["/x/".into()],
            status: "ACTIVE".into(),
            created_at: 0.0,
            updated_at: 0.0,
            description: None,
            memory_record_schema: None,
            record_expiry_duration_days: None,
            configuration,
        };
        assert_eq!(
            extraction_kind(&strategy("SEMANTIC", None)).unwrap(),
            "SEMANTIC"
        );
        assert!(
            extraction_kind(&strategy("CUSTOM", Some(json!({"type": "SELF_MANAGED"})))).is_none()
        );
        assert_eq!(
            extraction_kind(&strategy(
                "CUSTOM",
                Some(json!({"type": "SUMMARY_OVERRIDE"}))
            ))
            .unwrap(),
            "SUMMARY_OVERRIDE"
        );
    }
}
