//! [`LogStore`] on either backend (see [`crate::logs::store`]).

use super::traces::{LOG_COLS, SPAN_COLS, log_row, span_row};
use super::{Db, Store, octets};
use crate::logs::{Key, LogStore, RuntimeGroup, Select, StoredEvent, StoredGroup, StreamInfo};
use crate::{Error, LogRecord, Span};
use sqlx::{QueryBuilder, Row};

/// Creates a log group unless it exists.
pub(super) const CREATE_GROUP: &str =
    "INSERT INTO log_groups (name, created_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// Creates a log stream unless it exists.
pub(super) const CREATE_STREAM: &str = "INSERT INTO log_streams (group_name, name, created_ms) \
     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// Folds events `$1` (first time), `$2` (last time), ingested at `$3`, of `$4` bytes into
/// stream `$6` of group `$5`.
pub(super) const STREAM_GROWS: &str = "UPDATE log_streams SET \
       first_event_ms = CASE WHEN first_event_ms IS NULL OR $1 < first_event_ms \
         THEN $1 ELSE first_event_ms END, \
       last_event_ms = CASE WHEN last_event_ms IS NULL OR $2 > last_event_ms \
         THEN $2 ELSE last_event_ms END, \
       last_ingestion_ms = $3, \
       stored_bytes = stored_bytes + $4 \
     WHERE group_name = $5 AND name = $6";

const MS: i64 = 1_000_000;

/// The keyset, window and order conditions shared by the row-id-ordered views.
fn rowid_page(q: &mut QueryBuilder<'_, Db>, sel: &Select, time_col: &str) {
    if let Some(from) = sel.from_ms {
        q.push(format!(" AND {time_col} >= "))
            .push_bind(from.saturating_mul(MS));
    }
    if let Some(to) = sel.to_ms {
        q.push(format!(" AND {time_col} < "))
            .push_bind(to.saturating_mul(MS));
    }
    // Positions are absolute; the order only decides which end a page is taken from.
    if let Some((_, id)) = sel.after {
        q.push(" AND seq > ").push_bind(id);
    }
    if let Some((_, id)) = sel.before {
        q.push(" AND seq < ").push_bind(id);
    }
    if let Some(s) = &sel.session_id {
        q.push(" AND session_id = ").push_bind(s.clone());
    }
    if let Some(ids) = &sel.trace_ids {
        q.push(" AND trace_id IN (");
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(id.clone());
        }
        if ids.is_empty() {
            sep.push("NULL");
        }
        q.push(")");
    }
    q.push(if sel.descending {
        " ORDER BY seq DESC LIMIT "
    } else {
        " ORDER BY seq LIMIT "
    })
    .push_bind(i64::from(sel.limit));
}

#[async_trait::async_trait]
impl LogStore for Store {
    async fn spans_page(&self, sel: &Select) -> Result<Vec<(Key, Span)>, Error> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT seq, {SPAN_COLS} FROM spans WHERE 1 = 1"));
        if let Some(r) = &sel.runtime_id {
            q.push(" AND runtime_id = ").push_bind(r.clone());
        }
        rowid_page(&mut q, sel, "start_ns");
        let rows = q.build().fetch_all(self.reader()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("seq")?;
            out.push(((0, id), span_row(row)?));
        }
        Ok(out)
    }

    async fn logs_page(
        &self,
        runtime_id: &str,
        endpoint: &str,
        sel: &Select,
    ) -> Result<Vec<(Key, LogRecord)>, Error> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT seq, {LOG_COLS} FROM logs WHERE runtime_id = "
        ));
        q.push_bind(runtime_id.to_owned())
            .push(" AND endpoint = ")
            .push_bind(endpoint.to_owned());
        rowid_page(&mut q, sel, "time_ns");
        let rows = q.build().fetch_all(self.reader()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("seq")?;
            out.push(((0, id), log_row(row)?));
        }
        Ok(out)
    }

    async fn runtime_groups(&self) -> Result<Vec<RuntimeGroup>, Error> {
        let rows = sqlx::query(
            "SELECT runtime_id, endpoint, min(first) AS first FROM ( \
               SELECT runtime_id, endpoint, min(start_ns) AS first FROM traces \
                 GROUP BY runtime_id, endpoint \
               UNION ALL \
               SELECT runtime_id, endpoint, min(time_ns) AS first FROM logs \
                 GROUP BY runtime_id, endpoint) AS firsts \
             WHERE runtime_id != '' GROUP BY runtime_id, endpoint ORDER BY runtime_id, endpoint",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RuntimeGroup {
                    runtime_id: r.try_get("runtime_id")?,
                    endpoint: r.try_get("endpoint")?,
                    first_ns: r.try_get("first")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    async fn runtime_group(
        &self,
        runtime_id: &str,
        endpoint: &str,
    ) -> Result<Option<RuntimeGroup>, Error> {
        let first: Option<i64> = sqlx::query_scalar(
            "SELECT min(first) FROM ( \
               SELECT min(start_ns) AS first FROM traces WHERE runtime_id = $1 AND endpoint = $2 \
               UNION ALL \
               SELECT min(time_ns) AS first FROM logs WHERE runtime_id = $1 AND endpoint = $2) AS firsts",
        )
        .bind(runtime_id)
        .bind(endpoint)
        .fetch_one(self.reader())
        .await?;
        Ok(first.map(|first_ns| RuntimeGroup {
            runtime_id: runtime_id.to_owned(),
            endpoint: endpoint.to_owned(),
            first_ns,
        }))
    }

    async fn create_group(&self, name: &str, now_ms: i64) -> Result<bool, Error> {
        let n = sqlx::query(CREATE_GROUP)
            .bind(name)
            .bind(now_ms)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn stored_groups(&self) -> Result<Vec<StoredGroup>, Error> {
        let rows = sqlx::query(
            "SELECT g.name, g.created_ms, \
               (SELECT CAST(coalesce(sum(stored_bytes), 0) AS BIGINT) FROM log_streams s \
                 WHERE s.group_name = g.name) AS bytes \
             FROM log_groups g ORDER BY g.name",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredGroup {
                    name: r.try_get("name")?,
                    created_ms: r.try_get("created_ms")?,
                    stored_bytes: r.try_get("bytes")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    async fn stored_group(&self, name: &str) -> Result<Option<StoredGroup>, Error> {
        let row = sqlx::query(
            "SELECT g.name, g.created_ms, \
               (SELECT CAST(coalesce(sum(stored_bytes), 0) AS BIGINT) FROM log_streams s \
                 WHERE s.group_name = g.name) AS bytes \
             FROM log_groups g WHERE g.name = $1",
        )
        .bind(name)
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| {
            Ok(StoredGroup {
                name: r.try_get("name")?,
                created_ms: r.try_get("created_ms")?,
                stored_bytes: r.try_get("bytes")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| Error::from(e))
    }

    async fn create_stream(&self, group: &str, name: &str, now_ms: i64) -> Result<bool, Error> {
        let n = sqlx::query(CREATE_STREAM)
            .bind(group)
            .bind(name)
            .bind(now_ms)
            .execute(self.writer())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn streams(&self, group: &str) -> Result<Vec<StreamInfo>, Error> {
        let rows = sqlx::query(
            "SELECT name, created_ms, first_event_ms, last_event_ms, last_ingestion_ms, \
             stored_bytes FROM log_streams WHERE group_name = $1 ORDER BY name",
        )
        .bind(group)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StreamInfo {
                    name: r.try_get("name")?,
                    created_ms: r.try_get("created_ms")?,
                    first_event_ms: r.try_get("first_event_ms")?,
                    last_event_ms: r.try_get("last_event_ms")?,
                    last_ingestion_ms: r.try_get("last_ingestion_ms")?,
                    stored_bytes: r.try_get("stored_bytes")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    async fn put_events(
        &self,
        group: &str,
        stream: &str,
        events: &[(i64, String)],
        now_ms: i64,
    ) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let mut bytes = 0i64;
        for (ts, message) in events {
            sqlx::query(
                "INSERT INTO log_events (group_name, stream, timestamp_ms, ingestion_ms, message) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(group)
            .bind(stream)
            .bind(ts)
            .bind(now_ms)
            .bind(message)
            .execute(&mut *tx)
            .await?;
            bytes = bytes.saturating_add(i64::try_from(message.len()).unwrap_or(i64::MAX));
        }
        let first = events.iter().map(|(t, _)| *t).min();
        let last = events.iter().map(|(t, _)| *t).max();
        sqlx::query(STREAM_GROWS)
            .bind(first)
            .bind(last)
            .bind(now_ms)
            .bind(bytes)
            .bind(group)
            .bind(stream)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retain_events(&self, before_ms: i64) -> Result<u64, Error> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM log_events WHERE timestamp_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            // Streams' sizes and first events follow what is left.
            sqlx::query(&format!(
                "UPDATE log_streams SET \
                   stored_bytes = (SELECT CAST(coalesce(sum({}), 0) AS BIGINT) \
                     FROM log_events e WHERE e.group_name = log_streams.group_name \
                     AND e.stream = log_streams.name), \
                   first_event_ms = (SELECT min(timestamp_ms) FROM log_events e \
                     WHERE e.group_name = log_streams.group_name AND e.stream = log_streams.name) \
                 WHERE first_event_ms < $1",
                octets("message")
            ))
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn events_page(
        &self,
        group: &str,
        streams: Option<&[String]>,
        sel: &Select,
    ) -> Result<Vec<StoredEvent>, Error> {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT id, stream, timestamp_ms, ingestion_ms, message FROM log_events \
             WHERE group_name = ",
        );
        q.push_bind(group.to_owned());
        if let Some(streams) = streams {
            q.push(" AND stream IN (");
            let mut sep = q.separated(", ");
            for s in streams {
                sep.push_bind(s.clone());
            }
            if streams.is_empty() {
                sep.push("NULL");
            }
            q.push(")");
        }
        if let Some(from) = sel.from_ms {
            q.push(" AND timestamp_ms >= ").push_bind(from);
        }
        if let Some(to) = sel.to_ms {
            q.push(" AND timestamp_ms < ").push_bind(to);
        }
        for (key, op) in [(sel.after, ">"), (sel.before, "<")] {
            if let Some((t, id)) = key {
                q.push(format!(" AND (timestamp_ms {op} "))
                    .push_bind(t)
                    .push(" OR (timestamp_ms = ")
                    .push_bind(t)
                    .push(format!(" AND id {op} "))
                    .push_bind(id)
                    .push("))");
            }
        }
        q.push(if sel.descending {
            " ORDER BY timestamp_ms DESC, id DESC LIMIT "
        } else {
            " ORDER BY timestamp_ms, id LIMIT "
        })
        .push_bind(i64::from(sel.limit));
        let rows = q.build().fetch_all(self.reader()).await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                let ts: i64 = r.try_get("timestamp_ms")?;
                Ok(StoredEvent {
                    key: (ts, id),
                    stream: r.try_get("stream")?,
                    timestamp_ms: ts,
                    ingestion_ms: r.try_get("ingestion_ms")?,
                    message: r.try_get("message")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }
}
