//! Storage of AgentCore Memory: memory resources, short-term events, long-term records with
//! their keyword index and embeddings, extraction jobs and idempotency tokens.
//!
//! The domain (`berth-memory`) owns every rule; this module only stores and queries rows.
//!
//! Architecture Invariant: a batch of events handed to [`MemoryStore::insert_events`] is
//! committed in one durable transaction before any of its writers is answered, which is what
//! lets the domain group-commit concurrent `CreateEvent`s.

use crate::Error;
use async_trait::async_trait;
use berth_types::EpochMillis;
use serde_json::Value;
use std::sync::Arc;

mod shared;
pub(crate) use shared::*;

/// Keyword terms held by more than this share of the records are not searched (see
/// [`MemoryStore::search_keywords`]); BM25's idf of such a term is below ln(3).
pub(crate) const COMMON_TERM_SHARE: f64 = 0.25;
/// Below this many records every term is searched: a small index is cheap to score, and in a
/// handful of records any word is "common".
pub(crate) const PRUNE_FROM_DOCS: i64 = 1000;

/// A memory resource.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryRow {
    /// `<name>-<10 alphanumerics>`.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `CREATING`, `ACTIVE`, `FAILED`, `UPDATING` or `DELETING`.
    pub status: String,
    /// Why the memory failed.
    pub failure_reason: Option<String>,
    /// Days after their timestamp that events stop being visible.
    pub event_expiry_days: u32,
    /// Everything else, in the domain's own JSON shape (description, strategies, ...).
    pub spec: Value,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// A short-term memory event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Owning memory.
    pub memory_id: String,
    /// Actor.
    pub actor_id: String,
    /// Session.
    pub session_id: String,
    /// `<ms, 19 digits>#<hex sequence>`; text order is chronological.
    pub event_id: String,
    /// The event's timestamp, epoch ms.
    pub event_ts: EpochMillis,
    /// Branch name, when the event is on a branch.
    pub branch_name: Option<String>,
    /// Event the branch forks from.
    pub branch_root: Option<String>,
    /// The payload list as sent.
    pub payload: Value,
    /// Metadata map as sent.
    pub metadata: Option<Value>,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// When the server accepted it.
    pub created_at: EpochMillis,
}

/// A metadata condition on events.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaCond {
    /// `metadata[key] == value`.
    Equals(String, String),
    /// The key is present.
    Exists(String),
    /// The key is absent.
    NotExists(String),
}

/// Which events of one session to list.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Owning memory.
    pub memory_id: String,
    /// Actor.
    pub actor_id: String,
    /// Session.
    pub session_id: String,
    /// Events older than this timestamp have expired and are skipped.
    pub min_ts: EpochMillis,
    /// Only events with an id below this one (keyset paging, newest first).
    pub before: Option<String>,
    /// Only events on this branch.
    pub branch: Option<String>,
    /// With `branch`: also the main-branch events up to and including this event id
    /// (the branch's root), so a branch reads as a whole conversation.
    pub parent_upto: Option<String>,
    /// All of these must hold.
    pub metadata: Vec<MetaCond>,
    /// Page size.
    pub limit: u32,
}

/// One (actor, session) that has events.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// Actor.
    pub actor_id: String,
    /// Session.
    pub session_id: String,
    /// First event's acceptance time.
    pub created_at: EpochMillis,
    /// Timestamp of the newest event.
    pub last_event_ts: EpochMillis,
    /// Highest event id already handed to extraction.
    pub extracted_upto: Option<String>,
}

/// Outcome of inserting one event of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    /// Stored.
    New,
    /// Its client token was already used: here is the event stored under it.
    Duplicate(Box<EventRow>),
}

/// A long-term memory record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    /// `mem-...`.
    pub record_id: String,
    /// Owning memory.
    pub memory_id: String,
    /// Strategy that produced it (or the caller's label).
    pub strategy_id: String,
    /// The one namespace it lives in.
    pub namespace: String,
    /// The text.
    pub content: String,
    /// Metadata map in wire shape.
    pub metadata: Option<Value>,
    /// The record's own timestamp.
    pub record_ts: EpochMillis,
    /// When it expires, if it does.
    pub expires_at: Option<EpochMillis>,
    /// Its embedding, when computed.
    pub embedding: Option<Vec<f32>>,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// Which records to consider.
#[derive(Debug, Clone, Default)]
pub struct RecordScope {
    /// Owning memory.
    pub memory_id: String,
    /// Exact namespace.
    pub namespace: Option<String>,
    /// Namespace prefix.
    pub namespace_prefix: Option<String>,
    /// Only this strategy's records.
    pub strategy_id: Option<String>,
    /// Records expiring at or before this time are skipped.
    pub now: EpochMillis,
}

/// A record's embedding with what retrieval filters on, for an in-memory vector index.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRow {
    /// Record id.
    pub record_id: String,
    /// Namespace.
    pub namespace: String,
    /// Strategy.
    pub strategy_id: String,
    /// Vector.
    pub embedding: Vec<f32>,
}

/// An extraction job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// Job id.
    pub job_id: String,
    /// Owning memory.
    pub memory_id: String,
    /// Strategy it extracts for.
    pub strategy_id: String,
    /// Actor.
    pub actor_id: String,
    /// Session.
    pub session_id: String,
    /// `PENDING`, `RUNNING`, `SUCCEEDED` or `FAILED`.
    pub status: String,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// `[{"eventId", "messageIndex"}]`.
    pub messages: Value,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change.
    pub updated_at: EpochMillis,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default)]
pub struct JobQuery {
    /// Owning memory.
    pub memory_id: String,
    /// Only this status.
    pub status: Option<String>,
    /// Only this strategy.
    pub strategy_id: Option<String>,
    /// Only this actor.
    pub actor_id: Option<String>,
    /// Only this session.
    pub session_id: Option<String>,
    /// Keyset cursor: (created_at, job_id) of the last job seen.
    pub after: Option<(EpochMillis, String)>,
    /// Page size.
    pub limit: u32,
}

/// A remembered idempotent memory request.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    /// Operation name.
    pub operation: String,
    /// Client token.
    pub token: String,
    /// Hash of the request parameters.
    pub request_hash: String,
    /// Response that was sent.
    pub response: Value,
    /// When.
    pub created_at: EpochMillis,
}

/// Storage of the memory domain.
#[async_trait]
pub trait MemoryStore: Send + Sync + 'static {
    /// Inserts a memory (fails with `AlreadyExists("memory name")`), remembering `token` with it.
    async fn insert_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error>;
    /// Replaces a memory row, remembering `token` with it.
    async fn put_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error>;
    /// A memory by id.
    async fn memory(&self, id: &str) -> Result<Option<MemoryRow>, Error>;
    /// Memories in creation order after the cursor `(created_at, id)`.
    async fn list_memories(
        &self,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<MemoryRow>, Error>;
    /// Memories in a status (for recovery at start).
    async fn memories_in_status(&self, status: &str) -> Result<Vec<MemoryRow>, Error>;
    /// Deletes a memory with all its events, sessions, records and jobs, in bounded chunks.
    async fn purge_memory(&self, id: &str) -> Result<(), Error>;
    /// A remembered idempotent request.
    async fn token(&self, operation: &str, token: &str) -> Result<Option<TokenRow>, Error>;

    /// Inserts events in one durable transaction, updating the session index. Events whose
    /// client token was already used are not inserted; the stored event is returned instead.
    async fn insert_events(&self, events: &[EventRow]) -> Result<Vec<Inserted>, Error>;
    /// One event.
    async fn event(
        &self,
        memory_id: &str,
        actor_id: &str,
        session_id: &str,
        event_id: &str,
    ) -> Result<Option<EventRow>, Error>;
    /// Events newest first.
    async fn list_events(&self, q: &EventQuery) -> Result<Vec<EventRow>, Error>;
    /// Events of a session after `after` (exclusive) and at or after `min_ts`, oldest first.
    async fn events_after(
        &self,
        memory_id: &str,
        actor_id: &str,
        session_id: &str,
        after: Option<&str>,
        min_ts: EpochMillis,
        limit: u32,
    ) -> Result<Vec<EventRow>, Error>;
    /// Deletes one event; false if it did not exist.
    async fn delete_event(
        &self,
        memory_id: &str,
        actor_id: &str,
        session_id: &str,
        event_id: &str,
    ) -> Result<bool, Error>;
    /// Sessions of an actor, most recently active first, after the cursor `(last_event_ts, session_id)`.
    async fn list_sessions(
        &self,
        memory_id: &str,
        actor_id: &str,
        min_ts: EpochMillis,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, Error>;
    /// Actors with events, by id, after `after`.
    async fn list_actors(
        &self,
        memory_id: &str,
        min_ts: EpochMillis,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, Error>;
    /// Sessions with events newer than their extraction cursor and no event after `quiet_before`
    /// (an idle conversation is ready to extract), at most `limit`.
    async fn sessions_to_extract(
        &self,
        memory_id: &str,
        quiet_before: EpochMillis,
        limit: u32,
    ) -> Result<Vec<SessionRow>, Error>;
    /// Records jobs and moves a session's extraction cursor from `from` (what the caller read;
    /// `None` when nothing was extracted yet) to `upto`, in one transaction. Fails with
    /// `Precondition("extraction cursor")`, writing nothing, when the cursor is no longer at
    /// `from` (another extractor planned these events) or the session is gone.
    async fn put_jobs_and_cursor(
        &self,
        memory_id: &str,
        actor_id: &str,
        session_id: &str,
        from: Option<&str>,
        upto: &str,
        jobs: &[JobRow],
    ) -> Result<(), Error>;
    /// Deletes events older than `min_ts` (at most `limit`), and sessions left without events;
    /// returns how many events went.
    async fn purge_expired_events(
        &self,
        memory_id: &str,
        min_ts: EpochMillis,
        limit: u32,
    ) -> Result<u64, Error>;

    /// Inserts or replaces records (by record id), with their embeddings.
    async fn put_records(&self, records: &[RecordRow]) -> Result<(), Error>;
    /// One record.
    async fn record(&self, memory_id: &str, record_id: &str) -> Result<Option<RecordRow>, Error>;
    /// Records by id (missing ones are left out), without embeddings.
    async fn records(&self, memory_id: &str, ids: &[String]) -> Result<Vec<RecordRow>, Error>;
    /// Deletes records; returns the ids that existed.
    async fn delete_records(&self, memory_id: &str, ids: &[String]) -> Result<Vec<String>, Error>;
    /// Records in scope, newest first, after the cursor `(created_at, record_id)`, without embeddings.
    async fn list_records(
        &self,
        scope: &RecordScope,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<RecordRow>, Error>;
    /// Keyword search: record ids in scope with their BM25 score (higher is better), best first,
    /// for records holding any of `terms` (plain lowercase words).
    ///
    /// Terms found in more than a quarter of a large index are left out: their BM25 weight is
    /// next to nothing, while scoring every record that holds them would cost a pass over most
    /// of the index ("user" in "The user prefers ..." is in nearly every memory record).
    async fn search_keywords(
        &self,
        scope: &RecordScope,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<(String, f64)>, Error>;
    /// Every embedded record of a memory, for building an in-memory vector index.
    async fn embeddings(&self, memory_id: &str) -> Result<Vec<EmbeddingRow>, Error>;
    /// Deletes records whose expiry passed; returns their ids.
    async fn purge_expired_records(
        &self,
        now: EpochMillis,
        limit: u32,
    ) -> Result<Vec<(String, String)>, Error>;

    /// Inserts or replaces jobs.
    async fn put_jobs(&self, jobs: &[JobRow]) -> Result<(), Error>;
    /// One job.
    async fn job(&self, memory_id: &str, job_id: &str) -> Result<Option<JobRow>, Error>;
    /// Jobs in creation order.
    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>, Error>;
    /// Jobs in a status across memories, oldest first (work queue and recovery).
    async fn jobs_in_status(&self, status: &str, limit: u32) -> Result<Vec<JobRow>, Error>;
    /// Claims up to `limit` jobs to run, oldest first: `PENDING` ones, and `RUNNING` ones whose
    /// claim lapsed (`updated_at` before `stale_before`: their runner died). They are returned
    /// marked `RUNNING` at `now`. Claiming is a conditional write, so of several nodes claiming at
    /// once each job goes to one (PostgreSQL also skips rows another claimer holds).
    async fn claim_jobs(
        &self,
        now: EpochMillis,
        stale_before: EpochMillis,
        limit: u32,
    ) -> Result<Vec<JobRow>, Error>;
}

/// Opens the memory store a URL names (the same URL as [`crate::open`]).
pub async fn open(url: &str) -> Result<Arc<dyn MemoryStore>, Error> {
    Ok(crate::open_all(url).await?.memory)
}
