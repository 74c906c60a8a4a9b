//! What online evaluation reads from the trace store: sessions that have gone quiet and each
//! online evaluation config's cursor ([`SessionFeed`]), and a session's documents.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Error;

/// A session whose last span ended at `ended_ns`: an online evaluation config takes it once it
/// has been quiet for the config's session timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishedSession {
    pub runtime_id: String,
    pub endpoint: String,
    pub version: u32,
    pub session_id: String,
    /// When its first trace started.
    pub started_ns: i64,
    /// When its last trace ended.
    pub ended_ns: i64,
    /// Its traces in the store.
    pub traces: u32,
}

/// Where a config's scoring has got to: the last session it took, in (end time, runtime,
/// session id) order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineCursor {
    pub ended_ns: i64,
    pub runtime_id: String,
    pub session_id: String,
}

/// Finished sessions, in the order online evaluation takes them, and where each config has got
/// to. Its own trait, apart from [`crate::TraceStore`]: only the online evaluator reads it, and
/// the span writer's wrappers and test doubles need not know it.
#[async_trait]
pub trait SessionFeed: Send + Sync {
    /// Sessions of `runtime_id`'s `endpoint` whose last trace ended at or before
    /// `quiet_before_ns` (traces of Berth's health probes, `GET /ping`, are not activity) and
    /// after `after` in (end time, session id) order, oldest first, at most `limit`.
    async fn finished_sessions(
        &self,
        runtime_id: &str,
        endpoint: &str,
        after: &OnlineCursor,
        quiet_before_ns: i64,
        limit: u32,
    ) -> Result<Vec<FinishedSession>, Error>;
    /// An online evaluation config's cursor (`None` before its first session).
    async fn online_cursor(&self, config_id: &str) -> Result<Option<OnlineCursor>, Error>;
    /// Moves an online evaluation config's cursor (after its session's scores are stored).
    async fn set_online_cursor(&self, config_id: &str, cursor: &OnlineCursor) -> Result<(), Error>;
}

/// A session's spans and log records as the documents `Evaluate` takes in `sessionSpans` (the
/// `aws/spans` and runtime-group forms the AgentCore SDK collects), log records first, then
/// spans by end time, as the SDK's collector orders them.
pub async fn session_documents(
    store: &dyn crate::TraceStore,
    runtime_id: &str,
    session_id: &str,
) -> Result<Vec<serde_json::Value>, Error> {
    let spans = store.session_spans(Some(runtime_id), session_id).await?;
    let logs = store.session_logs(runtime_id, session_id).await?;
    let mut ordered: Vec<(i64, serde_json::Value)> = Vec::with_capacity(spans.len() + logs.len());
    ordered.extend(logs.iter().map(|l| (0, crate::logs::log_document(l))));
    ordered.extend(
        spans
            .iter()
            .map(|s| (s.end_ns, crate::logs::span_document(s))),
    );
    ordered.sort_by_key(|(end, _)| *end);
    Ok(ordered.into_iter().map(|(_, d)| d).collect())
}
