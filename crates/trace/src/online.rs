//! What online evaluation reads from the trace store: sessions that have gone quiet and each
//! online evaluation config's cursor ([`SessionFeed`]), and a session's documents.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::sqlite::{LOG_COLS, log_row};
use crate::{Error, LogRecord, SqliteTraceStore};

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

#[async_trait]
impl SessionFeed for SqliteTraceStore {
    async fn finished_sessions(
        &self,
        runtime_id: &str,
        endpoint: &str,
        after: &OnlineCursor,
        quiet_before_ns: i64,
        limit: u32,
    ) -> Result<Vec<FinishedSession>, Error> {
        let rows = sqlx::query(
            "SELECT runtime_id, endpoint, MIN(version) AS version, session_id, \
                    MIN(start_ns) AS started, MAX(end_ns) AS ended, COUNT(*) AS traces \
             FROM traces WHERE runtime_id = ? AND endpoint = ? AND session_id <> '' \
             AND (root_name IS NULL OR root_name <> 'GET /ping') \
             GROUP BY runtime_id, endpoint, session_id \
             HAVING ended <= ? AND (ended > ? OR (ended = ? AND session_id > ?)) \
             ORDER BY ended, session_id LIMIT ?",
        )
        .bind(runtime_id)
        .bind(endpoint)
        .bind(quiet_before_ns)
        .bind(after.ended_ns)
        .bind(after.ended_ns)
        .bind(&after.session_id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FinishedSession {
                    runtime_id: r.try_get("runtime_id")?,
                    endpoint: r.try_get("endpoint")?,
                    version: u32::try_from(r.try_get::<i64, _>("version")?).unwrap_or(0),
                    session_id: r.try_get("session_id")?,
                    started_ns: r.try_get("started")?,
                    ended_ns: r.try_get("ended")?,
                    traces: u32::try_from(r.try_get::<i64, _>("traces")?).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    async fn online_cursor(&self, config_id: &str) -> Result<Option<OnlineCursor>, Error> {
        let row = sqlx::query(
            "SELECT ended_ns, runtime_id, session_id FROM online_eval_cursors WHERE config_id = ?",
        )
        .bind(config_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row
            .map(|r| -> Result<_, sqlx::Error> {
                Ok(OnlineCursor {
                    ended_ns: r.try_get("ended_ns")?,
                    runtime_id: r.try_get("runtime_id")?,
                    session_id: r.try_get("session_id")?,
                })
            })
            .transpose()?)
    }

    async fn set_online_cursor(&self, config_id: &str, cursor: &OnlineCursor) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO online_eval_cursors (config_id, ended_ns, runtime_id, session_id) \
             VALUES (?, ?, ?, ?) ON CONFLICT (config_id) DO UPDATE SET \
             ended_ns = excluded.ended_ns, runtime_id = excluded.runtime_id, \
             session_id = excluded.session_id",
        )
        .bind(config_id)
        .bind(cursor.ended_ns)
        .bind(&cursor.runtime_id)
        .bind(&cursor.session_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

impl SqliteTraceStore {
    /// Every log record of a session, oldest first.
    pub(crate) async fn session_logs_sqlite(
        &self,
        runtime_id: &str,
        session_id: &str,
    ) -> Result<Vec<LogRecord>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {LOG_COLS} FROM logs WHERE session_id = ? AND runtime_id = ? ORDER BY time_ns"
        ))
        .bind(session_id)
        .bind(runtime_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(log_row).collect::<Result<_, _>>()?)
    }
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
