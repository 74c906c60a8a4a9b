//! Traces: the span and log-record model, the trace store (SQLite, a file of its own in the data
//! dir; or, when the control store is PostgreSQL, that database's schema `berth_trace`, shared by
//! every node), the OTLP/HTTP decoding of what agents export, and the environment that tells an agent
//! where to export.
//!
//! Architecture Invariant: every span and log record carries an [`Attribution`] decided by the
//! server from the sandbox the data arrived through, never from anything the agent sent; the
//! agent's own resource attributes are kept as data, not as index columns.

mod env;
pub mod export;
mod group;
pub mod logs;
pub mod online;
pub mod otlp;
pub mod postgres;
pub mod scores;
mod sink;
mod sqlite;
pub mod usage;

pub use env::{AgentEnv, agent_env, session_baggage};
pub use group::{GroupCommit, MAX_GROUP_ROWS};
pub use postgres::PgTraceStore;
pub use sink::{
    CallSpan, CallStatus, SessionStart, SpanSink, new_span_id, new_trace_id, parse_traceparent,
    parse_traceparent_bytes,
};
pub use sqlite::SqliteTraceStore;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Errors of the trace store and the OTLP decoder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body is not an export request in its declared encoding.
    #[error("malformed export request: {0}")]
    Malformed(String),
    /// The store failed.
    #[error("trace store: {0}")]
    Store(#[from] sqlx::Error),
    /// The store's schema could not be applied.
    #[error("trace store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A filter or paging token the store cannot use.
    #[error("invalid trace query: {0}")]
    Invalid(String),
}

/// Who data belongs to, decided by the listener it arrived through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribution {
    pub runtime_id: String,
    pub version: u32,
    pub endpoint: String,
    /// `None` while a warm sandbox waits for its session.
    pub session_id: Option<String>,
    /// The session's user id (`X-Amzn-Bedrock-AgentCore-Runtime-User-Id`), if one was given.
    pub actor: Option<String>,
}

/// One span as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    /// `INTERNAL`, `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER` or `UNSPECIFIED`.
    pub kind: String,
    pub start_ns: i64,
    pub end_ns: i64,
    /// `UNSET`, `OK` or `ERROR`.
    pub status_code: String,
    pub status_message: String,
    /// The instrumentation scope's name.
    pub scope: String,
    /// Attributes as a flat JSON object (`{"gen_ai.usage.input_tokens": 12, ...}`).
    pub attributes: Value,
    /// Resource attributes as a flat JSON object.
    pub resource: Value,
    /// `[{"name", "timeNs", "attributes"}]`.
    pub events: Value,
    /// `service.name` of the resource (`unknown_service` without one).
    pub service_name: String,
    #[serde(flatten)]
    pub attribution: Attribution,
}

impl Span {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// One log record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRecord {
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub time_ns: i64,
    pub severity_number: i32,
    pub severity_text: String,
    pub body: Value,
    pub attributes: Value,
    pub resource: Value,
    pub scope: String,
    pub service_name: String,
    #[serde(flatten)]
    pub attribution: Attribution,
}

/// One trace as seen in one session (see the `traces` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceSummary {
    pub trace_id: String,
    pub root_name: Option<String>,
    pub service_name: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub duration_ns: i64,
    pub span_count: i64,
    /// `ERROR` if any span failed, else `OK`.
    pub status: String,
    #[serde(flatten)]
    pub attribution: Attribution,
}

/// Filters of [`TraceStore::list`]; all optional, combined with AND.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceFilter {
    pub runtime_id: Option<String>,
    pub version: Option<u32>,
    pub endpoint: Option<String>,
    pub session_id: Option<String>,
    pub actor: Option<String>,
    /// `OK` or `ERROR`.
    pub status: Option<String>,
    /// Traces that started at or after this time.
    pub since_ns: Option<i64>,
    /// Traces that started before this time.
    pub until_ns: Option<i64>,
    pub min_duration_ns: Option<i64>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
    /// From a previous page's `next_token`.
    pub next_token: Option<String>,
}

/// A page of traces, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracePage {
    pub traces: Vec<TraceSummary>,
    pub next_token: Option<String>,
}

/// How much is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Traces that ended longer ago than this are deleted.
    pub max_age_ns: i64,
    /// Above this many stored bytes, the oldest traces are deleted first.
    pub max_bytes: u64,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub traces_deleted: u64,
    pub logs_deleted: u64,
    /// Evaluation scores whose session or trace ended before the age limit (`scores`).
    pub scores_deleted: u64,
}

/// Where spans and log records are kept.
#[async_trait::async_trait]
pub trait TraceStore: Send + Sync + 'static {
    /// Stores one export request's data in one transaction; durable when this returns `Ok`.
    async fn insert(&self, spans: &[Span], logs: &[LogRecord]) -> Result<(), Error>;
    /// Stores spans this process made, each with a fresh random span id (Berth's own, through
    /// `SpanSink`): no retried export can repeat one, so a store need not look for stored copies
    /// first. A copy that is stored anyway (a 64-bit id colliding) is skipped, not an error
    /// (its trace's span count still counts it).
    async fn insert_fresh(&self, spans: &[Span]) -> Result<(), Error> {
        self.insert(spans, &[]).await
    }
    /// Every span of a trace, oldest first; with `session`, only that session's.
    async fn trace(&self, trace_id: &str, session: Option<&str>) -> Result<Vec<Span>, Error>;
    /// Traces matching `filter`, newest first, paged.
    async fn list(&self, filter: &TraceFilter) -> Result<TracePage, Error>;
    /// Every span of a session, oldest first (`runtime_id` narrows it when session ids repeat
    /// across runtimes).
    async fn session_spans(
        &self,
        runtime_id: Option<&str>,
        session_id: &str,
    ) -> Result<Vec<Span>, Error>;
    /// Log records of a trace, oldest first.
    async fn trace_logs(&self, trace_id: &str) -> Result<Vec<LogRecord>, Error>;
    /// Deletes what `policy` no longer keeps, `now_ns` being the present.
    async fn retain(&self, policy: Retention, now_ns: i64) -> Result<Retained, Error>;
    /// Stored bytes (the measure retention's size limit applies to).
    async fn stored_bytes(&self) -> Result<u64, Error>;
    /// GenAI usage matching `filter`, one row per group and model (see [`usage`]). No default
    /// body: a wrapper (`GroupCommit`) that forgot to forward it would answer nothing.
    async fn usage(&self, filter: &usage::UsageFilter) -> Result<Vec<usage::UsageRow>, Error>;
    /// GenAI usage since the store was created, per runtime, version and model.
    async fn usage_totals(&self) -> Result<Vec<usage::UsageRow>, Error>;
    /// Every log record of a session, oldest first.
    async fn session_logs(
        &self,
        runtime_id: &str,
        session_id: &str,
    ) -> Result<Vec<LogRecord>, Error>;
}

/// The size a span counts for in the size limit: its stored text plus row overhead.
pub(crate) fn span_bytes(s: &Span) -> i64 {
    span_bytes_with(
        s,
        json_len(&s.attributes) + json_len(&s.resource) + json_len(&s.events),
    )
}

/// [`span_bytes`] of a span whose attribute, resource and event documents take `json` bytes as
/// JSON text (the store has just written them).
pub(crate) fn span_bytes_with(s: &Span, json: usize) -> i64 {
    let text = s.name.len() + json + s.status_message.len() + s.scope.len();
    i64::try_from(text).unwrap_or(i64::MAX).saturating_add(160)
}

/// The size a log record counts for in the size limit.
pub(crate) fn log_bytes(l: &LogRecord) -> i64 {
    let text = json_len(&l.body) + json_len(&l.attributes) + json_len(&l.resource) + l.scope.len();
    i64::try_from(text).unwrap_or(i64::MAX).saturating_add(120)
}

/// The length of `v` as JSON text, counted as it is written out, not kept.
fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

/// One trace store as each of the traits its users take (cheap to clone).
#[derive(Clone)]
pub struct TraceStores {
    pub traces: std::sync::Arc<dyn TraceStore>,
    pub scores: std::sync::Arc<dyn scores::ScoreStore>,
    pub logs: std::sync::Arc<dyn logs::LogStore>,
    pub feed: std::sync::Arc<dyn online::SessionFeed>,
    pub export: std::sync::Arc<dyn export::ExportSource>,
}

impl TraceStores {
    /// Every trait served by one backend value.
    pub fn of<S>(s: std::sync::Arc<S>) -> Self
    where
        S: TraceStore + scores::ScoreStore + logs::LogStore + online::SessionFeed,
        S: export::ExportSource,
    {
        Self {
            traces: s.clone(),
            scores: s.clone(),
            logs: s.clone(),
            feed: s.clone(),
            export: s,
        }
    }

    /// The trace store that goes with the control store at `store_url`: with PostgreSQL, the
    /// same database (every node reads what any node recorded); otherwise SQLite at `sqlite`.
    pub async fn open(store_url: &str, sqlite: &std::path::Path) -> Result<Self, Error> {
        match berth_store::StoreUrl::parse(store_url) {
            Ok(berth_store::StoreUrl::Postgres { url }) => Ok(Self::of(std::sync::Arc::new(
                PgTraceStore::open(&url).await?,
            ))),
            _ => Ok(Self::of(std::sync::Arc::new(
                SqliteTraceStore::open(sqlite).await?,
            ))),
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs retention every `every` until `shutdown`.
pub async fn run_retention(
    store: std::sync::Arc<dyn TraceStore>,
    policy: Retention,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.retain(policy, now_ns()).await {
            Ok(r) if r.traces_deleted > 0 || r.logs_deleted > 0 || r.scores_deleted > 0 => {
                tracing::info!(
                    traces = r.traces_deleted,
                    logs = r.logs_deleted,
                    scores = r.scores_deleted,
                    "trace retention"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "trace retention failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes the limit counts are the stored text's, counted without writing it anywhere.
    #[test]
    fn json_lengths_are_the_texts() {
        for v in [
            serde_json::json!({}),
            serde_json::json!({"k": "v\u{e9}\"\n", "n": [1, 2.5, null, true], "o": {"x": {}}}),
            serde_json::json!([{"name": "first_byte", "timeNs": 1_733_000_000_000_000_000_i64}]),
            serde_json::Value::Null,
        ] {
            assert_eq!(json_len(&v), v.to_string().len(), "{v}");
        }
    }
}
