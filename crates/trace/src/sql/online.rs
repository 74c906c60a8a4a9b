//! [`SessionFeed`] on either backend.

use super::Store;
use super::traces::{LOG_COLS, log_row};
use crate::online::{FinishedSession, OnlineCursor, SessionFeed};
use crate::{Error, LogRecord};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl SessionFeed for Store {
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
             FROM traces WHERE runtime_id = $1 AND endpoint = $2 AND session_id <> '' \
             AND (root_name IS NULL OR root_name <> 'GET /ping') \
             GROUP BY runtime_id, endpoint, session_id \
             HAVING MAX(end_ns) <= $3 \
               AND (MAX(end_ns) > $4 OR (MAX(end_ns) = $4 AND session_id > $5)) \
             ORDER BY ended, session_id LIMIT $6",
        )
        .bind(runtime_id)
        .bind(endpoint)
        .bind(quiet_before_ns)
        .bind(after.ended_ns)
        .bind(&after.session_id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
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
            "SELECT ended_ns, runtime_id, session_id FROM online_eval_cursors WHERE config_id = $1",
        )
        .bind(config_id)
        .fetch_optional(self.reader())
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
             VALUES ($1, $2, $3, $4) ON CONFLICT (config_id) DO UPDATE SET \
             ended_ns = excluded.ended_ns, runtime_id = excluded.runtime_id, \
             session_id = excluded.session_id",
        )
        .bind(config_id)
        .bind(cursor.ended_ns)
        .bind(&cursor.runtime_id)
        .bind(&cursor.session_id)
        .execute(self.writer())
        .await?;
        Ok(())
    }
}

/// Every log record of a session, oldest first.
pub(super) async fn session_logs(
    pool: &sqlx::Pool<super::Db>,
    runtime_id: &str,
    session_id: &str,
) -> Result<Vec<LogRecord>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {LOG_COLS} FROM logs WHERE session_id = $1 AND runtime_id = $2 ORDER BY time_ns"
    ))
    .bind(session_id)
    .bind(runtime_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(log_row).collect::<Result<_, _>>()?)
}
