//! TEMPORARY: the memory backend's placeholder (replaced wholesale by the PostgreSQL memory
//! backend); every method fails.

#![allow(unused_variables)]

use super::PgStore;
use crate::Error;
use crate::memory::MemoryStore;
use crate::memory::{
    EmbeddingRow, EventQuery, EventRow, Inserted, JobQuery, JobRow, MemoryRow, RecordRow,
    RecordScope, SessionRow, TokenRow,
};
use async_trait::async_trait;
use berth_types::EpochMillis;

#[async_trait]
impl MemoryStore for PgStore {
    async fn insert_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error> {
        Err(super::not_yet("memory"))
    }
    async fn put_memory(&self, m: &MemoryRow, token: Option<&TokenRow>) -> Result<(), Error> {
        Err(super::not_yet("memory"))
    }
    async fn memory(&self, id: &str) -> Result<Option<MemoryRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn list_memories(
        &self,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<MemoryRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn memories_in_status(&self, status: &str) -> Result<Vec<MemoryRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn purge_memory(&self, id: &str) -> Result<(), Error> {
        Err(super::not_yet("memory"))
    }
    async fn token(&self, operation: &str, token: &str) -> Result<Option<TokenRow>, Error> {
        Err(super::not_yet("memory"))
    }

    async fn insert_events(&self, events: &[EventRow]) -> Result<Vec<Inserted>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn event(
        &self,
        memory_id: &str,
        actor_id: &str,
        session_id: &str,
        event_id: &str,
    ) -> Result<Option<EventRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn list_events(&self, q: &EventQuery) -> Result<Vec<EventRow>, Error> {
        Err(super::not_yet("memory"))
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
        Err(super::not_yet("memory"))
    }
    async fn delete_event(
        &self,
        memory_id: &str,
        actor_id: &str,
        session_id: &str,
        event_id: &str,
    ) -> Result<bool, Error> {
        Err(super::not_yet("memory"))
    }
    async fn list_sessions(
        &self,
        memory_id: &str,
        actor_id: &str,
        min_ts: EpochMillis,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn list_actors(
        &self,
        memory_id: &str,
        min_ts: EpochMillis,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn sessions_to_extract(
        &self,
        memory_id: &str,
        quiet_before: EpochMillis,
        limit: u32,
    ) -> Result<Vec<SessionRow>, Error> {
        Err(super::not_yet("memory"))
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
        Err(super::not_yet("memory"))
    }
    async fn purge_expired_events(
        &self,
        memory_id: &str,
        min_ts: EpochMillis,
        limit: u32,
    ) -> Result<u64, Error> {
        Err(super::not_yet("memory"))
    }

    async fn put_records(&self, records: &[RecordRow]) -> Result<(), Error> {
        Err(super::not_yet("memory"))
    }
    async fn record(&self, memory_id: &str, record_id: &str) -> Result<Option<RecordRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn records(&self, memory_id: &str, ids: &[String]) -> Result<Vec<RecordRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn delete_records(&self, memory_id: &str, ids: &[String]) -> Result<Vec<String>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn list_records(
        &self,
        scope: &RecordScope,
        after: Option<(EpochMillis, String)>,
        limit: u32,
    ) -> Result<Vec<RecordRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn search_keywords(
        &self,
        scope: &RecordScope,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<(String, f64)>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn embeddings(&self, memory_id: &str) -> Result<Vec<EmbeddingRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn purge_expired_records(
        &self,
        now: EpochMillis,
        limit: u32,
    ) -> Result<Vec<(String, String)>, Error> {
        Err(super::not_yet("memory"))
    }

    async fn put_jobs(&self, jobs: &[JobRow]) -> Result<(), Error> {
        Err(super::not_yet("memory"))
    }
    async fn job(&self, memory_id: &str, job_id: &str) -> Result<Option<JobRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn list_jobs(&self, q: &JobQuery) -> Result<Vec<JobRow>, Error> {
        Err(super::not_yet("memory"))
    }
    async fn jobs_in_status(&self, status: &str, limit: u32) -> Result<Vec<JobRow>, Error> {
        Err(super::not_yet("memory"))
    }
}
