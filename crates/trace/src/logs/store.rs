//! What the Logs API reads and writes, as a trait over the trace database; its
//! implementations (`sql/logs.rs`, on both trace stores).
//!
//! Berth's own log groups (`aws/spans`, a runtime's group) are views of the `spans` and `logs`
//! tables, paged in ingestion order (row id); groups, streams and events written through the
//! API live in the `log_groups`, `log_streams` and `log_events` tables, paged by event time.

use crate::{Error, LogRecord, Span};

/// A position in a source: `(time, row id)` for stored events, `(0, row id)` for Berth's own.
pub type Key = (i64, i64);

/// One page of a source.
#[derive(Debug, Clone, Default)]
pub struct Select {
    /// Events at or after this time (Unix ms).
    pub from_ms: Option<i64>,
    /// Events before this time (Unix ms).
    pub to_ms: Option<i64>,
    /// Events after this position (in the page's order).
    pub after: Option<Key>,
    /// Events before this position.
    pub before: Option<Key>,
    /// Last events first.
    pub descending: bool,
    pub limit: u32,
    /// Only this runtime's data (a runtime's own credentials reading `aws/spans`).
    pub runtime_id: Option<String>,
    /// Only this session's data.
    pub session_id: Option<String>,
    /// Only these traces' data.
    pub trace_ids: Option<Vec<String>>,
}

/// A runtime endpoint's log group, known from its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeGroup {
    pub runtime_id: String,
    pub endpoint: String,
    /// Its earliest data (Unix ns).
    pub first_ns: i64,
}

/// A group created through `CreateLogGroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub name: String,
    pub created_ms: i64,
    pub stored_bytes: i64,
}

/// A stream created through `CreateLogStream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub created_ms: i64,
    pub first_event_ms: Option<i64>,
    pub last_event_ms: Option<i64>,
    pub last_ingestion_ms: Option<i64>,
    pub stored_bytes: i64,
}

/// An event written through `PutLogEvents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub key: Key,
    pub stream: String,
    pub timestamp_ms: i64,
    pub ingestion_ms: i64,
    pub message: String,
}

/// Storage of the Logs API.
#[async_trait::async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// A page of spans (`aws/spans`) in ingestion order; `Select::from_ms`/`to_ms` apply to
    /// their start.
    async fn spans_page(&self, sel: &Select) -> Result<Vec<(Key, Span)>, Error>;
    /// A page of one runtime endpoint's log records in ingestion order.
    async fn logs_page(
        &self,
        runtime_id: &str,
        endpoint: &str,
        sel: &Select,
    ) -> Result<Vec<(Key, LogRecord)>, Error>;
    /// Every runtime endpoint with spans or log records.
    async fn runtime_groups(&self) -> Result<Vec<RuntimeGroup>, Error>;
    /// One runtime endpoint's group, if it has data.
    async fn runtime_group(
        &self,
        runtime_id: &str,
        endpoint: &str,
    ) -> Result<Option<RuntimeGroup>, Error>;
    /// Creates a group; false if it exists.
    async fn create_group(&self, name: &str, now_ms: i64) -> Result<bool, Error>;
    /// Every created group, by name.
    async fn stored_groups(&self) -> Result<Vec<StoredGroup>, Error>;
    async fn stored_group(&self, name: &str) -> Result<Option<StoredGroup>, Error>;
    /// Creates a stream; false if it exists.
    async fn create_stream(&self, group: &str, name: &str, now_ms: i64) -> Result<bool, Error>;
    /// A group's created streams, by name.
    async fn streams(&self, group: &str) -> Result<Vec<StreamInfo>, Error>;
    /// Appends `(timestamp_ms, message)` events to a created stream in one transaction.
    async fn put_events(
        &self,
        group: &str,
        stream: &str,
        events: &[(i64, String)],
        now_ms: i64,
    ) -> Result<(), Error>;
    /// Deletes stored events older than `before_ms`; returns how many.
    async fn retain_events(&self, before_ms: i64) -> Result<u64, Error>;
    /// A page of a group's stored events (of `streams` only, if given) by (time, id).
    async fn events_page(
        &self,
        group: &str,
        streams: Option<&[String]>,
        sel: &Select,
    ) -> Result<Vec<StoredEvent>, Error>;
}
