//! [`ExportSource`] on either backend.

use super::Store;
use super::traces::{LOG_COLS, SPAN_COLS, log_row, span_row};
use crate::export::{ExportSource, Signal};
use crate::{Error, LogRecord, Span, now_ns};
use sqlx::Row;

#[async_trait::async_trait]
impl ExportSource for Store {
    /// The highest row id of `signal` a collector has acknowledged (0 before the first export).
    async fn export_cursor(&self, signal: Signal) -> Result<i64, Error> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM export_cursors WHERE signal = $1")
                .bind(signal.cursor())
                .fetch_optional(self.writer())
                .await?;
        Ok(n.unwrap_or(0))
    }

    /// Durably moves `signal`'s cursor to `seq`.
    async fn set_export_cursor(&self, signal: Signal, seq: i64) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO export_cursors (signal, last_seq, updated_ns) VALUES ($1, $2, $3) \
             ON CONFLICT (signal) DO UPDATE SET last_seq = excluded.last_seq, \
             updated_ns = excluded.updated_ns WHERE excluded.last_seq > export_cursors.last_seq",
        )
        .bind(signal.cursor())
        .bind(seq)
        .bind(now_ns())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Up to `limit` spans stored after row id `after`, with their row ids, oldest first.
    async fn spans_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, Span)>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT seq, {SPAN_COLS} FROM spans WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>("seq")?, span_row(r)?)))
            .collect()
    }

    /// Up to `limit` log records stored after row id `after`, with their row ids, oldest first.
    async fn logs_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, LogRecord)>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT seq, {LOG_COLS} FROM logs WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>("seq")?, log_row(r)?)))
            .collect()
    }
}
