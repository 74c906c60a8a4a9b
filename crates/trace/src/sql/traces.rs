//! [`TraceStore`] on either backend: spans, log records and the per-session trace rows.

use super::{Db, Store, TRACE_ROW};
use crate::{
    Attribution, Error, LogRecord, Retained, Retention, Span, TraceFilter, TracePage, TraceStore,
    TraceSummary, log_bytes, span_bytes_with,
};
use serde_json::Value;
use sqlx::{QueryBuilder, Row};

pub(super) type DbRow = <Db as sqlx::Database>::Row;

/// The default and the largest page of [`TraceStore::list`].
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

/// Traces deleted per statement by the size limit.
const DELETE_BATCH: i64 = 500;

fn json_text(v: &Value) -> String {
    v.to_string()
}

/// A span with its JSON documents as its row stores them: written once, for the insert and for
/// the size its trace row counts.
struct SpanRow<'a> {
    span: &'a Span,
    attributes: String,
    resource: String,
    events: String,
}

impl<'a> SpanRow<'a> {
    fn new(span: &'a Span) -> Self {
        Self {
            span,
            attributes: json_text(&span.attributes),
            resource: json_text(&span.resource),
            events: json_text(&span.events),
        }
    }

    /// The size it counts for in the size limit (`crate::span_bytes`).
    fn bytes(&self) -> i64 {
        let json = self.attributes.len() + self.resource.len() + self.events.len();
        span_bytes_with(self.span, json)
    }
}

fn session_col(a: &Attribution) -> &str {
    a.session_id.as_deref().unwrap_or("")
}

/// What one batch adds to one trace row (a trace as seen in one runtime and session).
struct TraceDelta<'a> {
    attribution: &'a Attribution,
    service_name: &'a str,
    /// The earliest named span of the batch and its start.
    root: Option<(&'a str, i64)>,
    start_ns: i64,
    end_ns: i64,
    spans: i64,
    error: bool,
    bytes: i64,
}

type TraceKey<'a> = (&'a str, &'a str, &'a str);

/// Folds spans and logs into per-trace deltas, in first-seen order.
#[derive(Default)]
struct Deltas<'a> {
    index: std::collections::HashMap<TraceKey<'a>, usize>,
    rows: Vec<(&'a str, TraceDelta<'a>)>,
}

impl<'a> Deltas<'a> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        trace_id: &'a str,
        a: &'a Attribution,
        service_name: &'a str,
        name: Option<&'a str>,
        start_ns: i64,
        end_ns: i64,
        spans: i64,
        error: bool,
        bytes: i64,
    ) {
        let key = (trace_id, a.runtime_id.as_str(), session_col(a));
        let root = name.map(|n| (n, start_ns));
        match self.index.get(&key) {
            Some(&i) => {
                let d = &mut self.rows[i].1;
                if let Some((n, s)) = root
                    && d.root.is_none_or(|(_, r)| s < r)
                {
                    d.root = Some((n, s));
                }
                d.start_ns = d.start_ns.min(start_ns);
                d.end_ns = d.end_ns.max(end_ns);
                d.spans += spans;
                d.error |= error;
                d.bytes = d.bytes.saturating_add(bytes);
            }
            None => {
                self.index.insert(key, self.rows.len());
                self.rows.push((
                    trace_id,
                    TraceDelta {
                        attribution: a,
                        service_name,
                        root,
                        start_ns,
                        end_ns,
                        spans,
                        error,
                        bytes,
                    },
                ));
            }
        }
    }
}

/// Folds each delta into its trace row, up to a few hundred rows per statement.
async fn upsert_traces(
    tx: &mut sqlx::Transaction<'_, Db>,
    deltas: &[(&str, TraceDelta<'_>)],
) -> Result<(), Error> {
    for chunk in super::cached_chunks(deltas) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO traces (trace_id, runtime_id, session_id, version, endpoint, actor, \
             service_name, root_name, root_start_ns, start_ns, end_ns, span_count, error, bytes) ",
        );
        q.push_values(chunk, |mut b, (trace_id, d)| {
            let a = d.attribution;
            b.push_bind(*trace_id)
                .push_bind(a.runtime_id.as_str())
                .push_bind(session_col(a))
                .push_bind(i64::from(a.version))
                .push_bind(a.endpoint.as_str())
                .push_bind(a.actor.as_deref())
                .push_bind(d.service_name)
                .push_bind(d.root.map(|(n, _)| n))
                .push_bind(d.root.map(|(_, s)| s))
                .push_bind(d.start_ns)
                .push_bind(d.end_ns)
                .push_bind(d.spans)
                .push_bind(i64::from(d.error))
                .push_bind(d.bytes);
        });
        q.push(
            " ON CONFLICT (trace_id, runtime_id, session_id) DO UPDATE SET \
               root_name = CASE WHEN excluded.root_name IS NOT NULL \
                   AND (traces.root_name IS NULL OR excluded.root_start_ns < traces.root_start_ns) \
                   THEN excluded.root_name ELSE traces.root_name END, \
               root_start_ns = CASE WHEN excluded.root_name IS NOT NULL \
                   AND (traces.root_name IS NULL OR excluded.root_start_ns < traces.root_start_ns) \
                   THEN excluded.root_start_ns ELSE traces.root_start_ns END, \
               start_ns = CASE WHEN excluded.start_ns < traces.start_ns \
                   THEN excluded.start_ns ELSE traces.start_ns END, \
               end_ns = CASE WHEN excluded.end_ns > traces.end_ns \
                   THEN excluded.end_ns ELSE traces.end_ns END, \
               span_count = traces.span_count + excluded.span_count, \
               error = CASE WHEN excluded.error > traces.error \
                   THEN excluded.error ELSE traces.error END, \
               bytes = traces.bytes + excluded.bytes",
        );
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// A span's identity in the store (its `UNIQUE` key).
type SpanKey<'a> = (&'a str, &'a str, &'a str, &'a str);

fn span_key(s: &Span) -> SpanKey<'_> {
    (
        &s.trace_id,
        &s.span_id,
        &s.attribution.runtime_id,
        session_col(&s.attribution),
    )
}

/// Inserts spans up to a few hundred per statement, skipping those already stored (a retried export)
/// and repeats within the batch; returns which of `spans` were new.
///
/// What is stored already is asked first, in one query per chunk that nearly always returns no
/// row. (`RETURNING` on the insert would say the same, but sqlx's SQLite worker hands every
/// returned row to the caller's thread on its own: two thread wake-ups per span, which were most
/// of a batch's CPU.)
///
/// `fresh` spans (`TraceStore::insert_fresh`, new ids Berth made) are inserted without the
/// question, under a savepoint: when every row went in, every span was new; when one was stored
/// after all, the savepoint is rolled back and the batch takes the way above.
async fn insert_spans(
    tx: &mut sqlx::Transaction<'_, Db>,
    spans: &[SpanRow<'_>],
    fresh: bool,
) -> Result<Vec<bool>, Error> {
    if fresh {
        let mut savepoint = sqlx::Connection::begin(&mut **tx).await?;
        let inserted = write_spans(&mut savepoint, spans.iter(), " ON CONFLICT DO NOTHING").await?;
        if usize::try_from(inserted).is_ok_and(|n| n == spans.len()) {
            savepoint.commit().await?;
            return Ok(vec![true; spans.len()]);
        }
        savepoint.rollback().await?;
    }
    let mut stored = Vec::<(String, String, String, String)>::new();
    for chunk in super::cached_chunks(spans) {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT trace_id, span_id, runtime_id, session_id FROM spans \
             WHERE (trace_id, span_id, runtime_id, session_id) IN (",
        );
        q.push_values(chunk, |mut b, s| {
            let (t, id, r, session) = span_key(s.span);
            b.push_bind(t).push_bind(id).push_bind(r).push_bind(session);
        });
        q.push(")");
        for row in q.build().fetch_all(&mut **tx).await? {
            stored.push((
                row.try_get("trace_id")?,
                row.try_get("span_id")?,
                row.try_get("runtime_id")?,
                row.try_get("session_id")?,
            ));
        }
    }
    // A span is new unless it is stored already or came earlier in this batch.
    let mut seen: std::collections::HashSet<SpanKey<'_>> = stored
        .iter()
        .map(|(t, id, r, session)| (t.as_str(), id.as_str(), r.as_str(), session.as_str()))
        .collect();
    let new: Vec<bool> = spans
        .iter()
        .map(|s| seen.insert(span_key(s.span)))
        .collect();
    let unstored = spans.iter().zip(&new).filter(|(_, n)| **n).map(|(s, _)| s);
    // Written under the store's write lock (SQLite's one writer, PostgreSQL's advisory lock), so
    // nothing was stored between the question above and this insert.
    write_spans(tx, unstored, "").await?;
    Ok(new)
}

/// Inserts `spans` as multi-row statements, each ending with `tail`.
/// Returns how many rows went in.
async fn write_spans<'s>(
    tx: &mut sqlx::Transaction<'_, Db>,
    spans: impl Iterator<Item = &'s SpanRow<'s>>,
    tail: &str,
) -> Result<u64, Error> {
    let spans: Vec<&SpanRow<'_>> = spans.collect();
    let mut inserted = 0;
    for chunk in super::cached_chunks(&spans) {
        let mut q = QueryBuilder::<Db>::new(format!("INSERT INTO spans ({SPAN_COLS}) "));
        q.push_values(chunk, |mut b, row| {
            let s = row.span;
            let a = &s.attribution;
            b.push_bind(s.trace_id.as_str())
                .push_bind(s.span_id.as_str())
                .push_bind(s.parent_span_id.as_deref())
                .push_bind(a.runtime_id.as_str())
                .push_bind(session_col(a))
                .push_bind(i64::from(a.version))
                .push_bind(a.endpoint.as_str())
                .push_bind(a.actor.as_deref())
                .push_bind(s.service_name.as_str())
                .push_bind(s.name.as_str())
                .push_bind(s.kind.as_str())
                .push_bind(s.start_ns)
                .push_bind(s.end_ns)
                .push_bind(s.status_code.as_str())
                .push_bind(s.status_message.as_str())
                .push_bind(s.scope.as_str())
                .push_bind(row.attributes.as_str())
                .push_bind(row.resource.as_str())
                .push_bind(row.events.as_str());
        });
        q.push(tail);
        inserted += q.build().execute(&mut **tx).await?.rows_affected();
    }
    Ok(inserted)
}

async fn insert_logs(tx: &mut sqlx::Transaction<'_, Db>, logs: &[LogRecord]) -> Result<(), Error> {
    for chunk in super::cached_chunks(logs) {
        let mut q = QueryBuilder::<Db>::new(format!("INSERT INTO logs ({LOG_COLS}) "));
        q.push_values(chunk, |mut b, l| {
            let a = &l.attribution;
            b.push_bind(l.trace_id.as_deref())
                .push_bind(l.span_id.as_deref())
                .push_bind(a.runtime_id.as_str())
                .push_bind(session_col(a))
                .push_bind(i64::from(a.version))
                .push_bind(a.endpoint.as_str())
                .push_bind(a.actor.as_deref())
                .push_bind(l.service_name.as_str())
                .push_bind(l.time_ns)
                .push_bind(l.severity_number)
                .push_bind(l.severity_text.as_str())
                .push_bind(json_text(&l.body))
                .push_bind(json_text(&l.attributes))
                .push_bind(json_text(&l.resource))
                .push_bind(l.scope.as_str());
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

fn attribution(row: &DbRow) -> Result<Attribution, sqlx::Error> {
    let session: String = row.try_get("session_id")?;
    let version: i64 = row.try_get("version")?;
    Ok(Attribution {
        runtime_id: row.try_get("runtime_id")?,
        version: u32::try_from(version).unwrap_or_default(),
        endpoint: row.try_get("endpoint")?,
        session_id: (!session.is_empty()).then_some(session),
        actor: row.try_get("actor")?,
    })
}

fn json_col(row: &DbRow, col: &str) -> Result<Value, sqlx::Error> {
    let text: String = row.try_get(col)?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub(super) fn span_row(row: &DbRow) -> Result<Span, sqlx::Error> {
    Ok(Span {
        trace_id: row.try_get("trace_id")?,
        span_id: row.try_get("span_id")?,
        parent_span_id: row.try_get("parent_span_id")?,
        name: row.try_get("name")?,
        kind: row.try_get("kind")?,
        start_ns: row.try_get("start_ns")?,
        end_ns: row.try_get("end_ns")?,
        status_code: row.try_get("status_code")?,
        status_message: row.try_get("status_message")?,
        scope: row.try_get("scope")?,
        attributes: json_col(row, "attributes")?,
        resource: json_col(row, "resource")?,
        events: json_col(row, "events")?,
        service_name: row.try_get("service_name")?,
        attribution: attribution(row)?,
    })
}

pub(super) fn log_row(row: &DbRow) -> Result<LogRecord, sqlx::Error> {
    Ok(LogRecord {
        trace_id: row.try_get("trace_id")?,
        span_id: row.try_get("span_id")?,
        time_ns: row.try_get("time_ns")?,
        severity_number: row.try_get("severity_number")?,
        severity_text: row.try_get("severity_text")?,
        body: json_col(row, "body")?,
        attributes: json_col(row, "attributes")?,
        resource: json_col(row, "resource")?,
        scope: row.try_get("scope")?,
        service_name: row.try_get("service_name")?,
        attribution: attribution(row)?,
    })
}

fn summary_row(row: &DbRow) -> Result<TraceSummary, sqlx::Error> {
    let start_ns: i64 = row.try_get("start_ns")?;
    let end_ns: i64 = row.try_get("end_ns")?;
    let error: i64 = row.try_get("error")?;
    Ok(TraceSummary {
        trace_id: row.try_get("trace_id")?,
        root_name: row.try_get("root_name")?,
        service_name: row.try_get("service_name")?,
        start_ns,
        end_ns,
        duration_ns: end_ns.saturating_sub(start_ns),
        span_count: row.try_get("span_count")?,
        status: if error != 0 { "ERROR" } else { "OK" }.to_owned(),
        attribution: attribution(row)?,
    })
}

pub(super) const SPAN_COLS: &str = "trace_id, span_id, parent_span_id, runtime_id, session_id, version, \
    endpoint, actor, service_name, name, kind, start_ns, end_ns, status_code, status_message, \
    scope, attributes, resource, events";

pub(super) const LOG_COLS: &str = "trace_id, span_id, runtime_id, session_id, version, endpoint, actor, \
    service_name, time_ns, severity_number, severity_text, body, attributes, resource, scope";

/// `start_ns.rowid` of the last trace of a page.
fn parse_token(token: &str) -> Result<(i64, i64), Error> {
    let bad = || Error::Invalid("the next token is not one this server issued".into());
    let (start, rowid) = token.split_once('.').ok_or_else(bad)?;
    Ok((
        start.parse().map_err(|_| bad())?,
        rowid.parse().map_err(|_| bad())?,
    ))
}

impl Store {
    /// One export request's data (or a batch of Berth's `fresh` spans) in one transaction.
    async fn insert_batch(
        &self,
        spans: &[Span],
        logs: &[LogRecord],
        fresh: bool,
    ) -> Result<(), Error> {
        if spans.is_empty() && logs.is_empty() {
            return Ok(());
        }
        // A few multi-row statements per batch, whatever its size: each statement is a round
        // trip to sqlx's connection thread, and one per span cost more than the inserts.
        let rows: Vec<SpanRow<'_>> = spans.iter().map(SpanRow::new).collect();
        let mut tx = self.begin().await?;
        let new = insert_spans(&mut tx, &rows, fresh).await?;
        insert_logs(&mut tx, logs).await?;
        let mut deltas = Deltas::default();
        // A retried export's spans are already counted.
        for (row, _) in rows.iter().zip(&new).filter(|(_, new)| **new) {
            let s = row.span;
            deltas.add(
                &s.trace_id,
                &s.attribution,
                &s.service_name,
                Some(&s.name),
                s.start_ns,
                s.end_ns,
                1,
                s.status_code == "ERROR",
                row.bytes(),
            );
        }
        // GenAI usage of the spans stored now (never of a retried export's).
        let stored = spans
            .iter()
            .zip(&new)
            .filter(|(_, new)| **new)
            .map(|(s, _)| s);
        super::usage::accumulate(&mut tx, stored).await?;
        for l in logs {
            if let Some(trace_id) = &l.trace_id {
                deltas.add(
                    trace_id,
                    &l.attribution,
                    &l.service_name,
                    None,
                    l.time_ns,
                    l.time_ns,
                    0,
                    false,
                    log_bytes(l),
                );
            }
        }
        upsert_traces(&mut tx, &deltas.rows).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl TraceStore for Store {
    async fn insert(&self, spans: &[Span], logs: &[LogRecord]) -> Result<(), Error> {
        self.insert_batch(spans, logs, false).await
    }

    async fn insert_fresh(&self, spans: &[Span]) -> Result<(), Error> {
        self.insert_batch(spans, &[], true).await
    }

    async fn trace(&self, trace_id: &str, session: Option<&str>) -> Result<Vec<Span>, Error> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {SPAN_COLS} FROM spans WHERE trace_id = "));
        q.push_bind(trace_id);
        if let Some(s) = session {
            q.push(" AND session_id = ").push_bind(s);
        }
        q.push(" ORDER BY start_ns, span_id");
        let rows = q.build().fetch_all(self.reader()).await?;
        Ok(rows.iter().map(span_row).collect::<Result<_, _>>()?)
    }

    async fn list(&self, f: &TraceFilter) -> Result<TracePage, Error> {
        let limit = f.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {TRACE_ROW} AS row_key, trace_id, runtime_id, session_id, version, endpoint, \
             actor, service_name, root_name, start_ns, end_ns, span_count, error FROM traces \
             WHERE 1 = 1"
        ));
        super::push_attribution(
            &mut q,
            f.runtime_id.as_ref(),
            f.version,
            f.endpoint.as_ref(),
            f.session_id.as_ref(),
            f.actor.as_ref(),
        );
        match f.status.as_deref() {
            None => {}
            Some("ERROR") => {
                q.push(" AND error = 1");
            }
            Some("OK") => {
                q.push(" AND error = 0");
            }
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "status must be OK or ERROR, not {other:?}"
                )));
            }
        }
        if let Some(v) = f.since_ns {
            q.push(" AND start_ns >= ").push_bind(v);
        }
        if let Some(v) = f.until_ns {
            q.push(" AND start_ns < ").push_bind(v);
        }
        if let Some(v) = f.min_duration_ns {
            q.push(" AND end_ns - start_ns >= ").push_bind(v);
        }
        if let Some(token) = &f.next_token {
            let (start, rowid) = parse_token(token)?;
            q.push(" AND (start_ns < ")
                .push_bind(start)
                .push(" OR (start_ns = ")
                .push_bind(start)
                .push(format!(" AND {TRACE_ROW} < "))
                .push_bind(rowid)
                .push("))");
        }
        q.push(format!(" ORDER BY start_ns DESC, {TRACE_ROW} DESC LIMIT "))
            .push_bind(i64::from(limit) + 1);
        let rows = q.build().fetch_all(self.reader()).await?;
        let more = rows.len() > limit as usize;
        let mut traces = Vec::with_capacity(rows.len().min(limit as usize));
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            let t = summary_row(row)?;
            let rowid: i64 = row.try_get("row_key")?;
            last = Some(format!("{}.{rowid}", t.start_ns));
            traces.push(t);
        }
        Ok(TracePage {
            traces,
            next_token: if more { last } else { None },
        })
    }

    async fn session_spans(
        &self,
        runtime_id: Option<&str>,
        session_id: &str,
    ) -> Result<Vec<Span>, Error> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {SPAN_COLS} FROM spans WHERE session_id = "));
        q.push_bind(session_id);
        if let Some(r) = runtime_id {
            q.push(" AND runtime_id = ").push_bind(r);
        }
        q.push(" ORDER BY start_ns, span_id");
        let rows = q.build().fetch_all(self.reader()).await?;
        Ok(rows.iter().map(span_row).collect::<Result<_, _>>()?)
    }

    async fn trace_logs(&self, trace_id: &str) -> Result<Vec<LogRecord>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {LOG_COLS} FROM logs WHERE trace_id = $1 ORDER BY time_ns"
        ))
        .bind(trace_id)
        .fetch_all(self.reader())
        .await?;
        Ok(rows.iter().map(log_row).collect::<Result<_, _>>()?)
    }

    async fn retain(&self, policy: Retention, now_ns: i64) -> Result<Retained, Error> {
        let mut done = Retained::default();
        let cutoff = now_ns.saturating_sub(policy.max_age_ns);
        // By age: whole traces that ended before the cutoff, and trace-less logs older than it.
        let mut tx = self.begin().await?;
        let old = "SELECT trace_id, runtime_id, session_id FROM traces WHERE end_ns < $1";
        sqlx::query(&format!(
            "DELETE FROM spans WHERE (trace_id, runtime_id, session_id) IN ({old})"
        ))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        done.logs_deleted += sqlx::query(&format!(
            "DELETE FROM logs WHERE (trace_id, runtime_id, session_id) IN ({old}) \
             OR (trace_id IS NULL AND time_ns < $1)"
        ))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        done.traces_deleted += sqlx::query("DELETE FROM traces WHERE end_ns < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Scores go with the traces they judged, by the same age (the size limit counts only
        // traces: a score row is small).
        done.scores_deleted += sqlx::query("DELETE FROM eval_scores WHERE ended_ns < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;

        // By size: the oldest traces first, a batch at a time, until under the limit.
        let max = i64::try_from(policy.max_bytes).unwrap_or(i64::MAX);
        loop {
            // Measured inside the write transaction: another node's pass cannot have deleted
            // since.
            let mut tx = self.begin().await?;
            let total = stored_bytes_on(&mut *tx).await?;
            if total <= max {
                break;
            }
            let rows = sqlx::query(&format!(
                "SELECT {TRACE_ROW} AS row_key, bytes FROM traces \
                 ORDER BY end_ns, {TRACE_ROW} LIMIT $1"
            ))
            .bind(DELETE_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            let mut excess = total - max;
            let mut victims = Vec::new();
            for row in &rows {
                if excess <= 0 {
                    break;
                }
                let rowid: i64 = row.try_get("row_key")?;
                let bytes: i64 = row.try_get("bytes")?;
                victims.push(rowid);
                excess -= bytes;
            }
            for rowid in &victims {
                let key = format!(
                    "SELECT trace_id, runtime_id, session_id FROM traces WHERE {TRACE_ROW} = $1"
                );
                sqlx::query(&format!(
                    "DELETE FROM spans WHERE (trace_id, runtime_id, session_id) IN ({key})"
                ))
                .bind(rowid)
                .execute(&mut *tx)
                .await?;
                done.logs_deleted += sqlx::query(&format!(
                    "DELETE FROM logs WHERE (trace_id, runtime_id, session_id) IN ({key})"
                ))
                .bind(rowid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                done.traces_deleted +=
                    sqlx::query(&format!("DELETE FROM traces WHERE {TRACE_ROW} = $1"))
                        .bind(rowid)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
            }
            tx.commit().await?;
        }
        Ok(done)
    }

    async fn stored_bytes(&self) -> Result<u64, Error> {
        let n = stored_bytes_on(self.reader()).await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn usage(
        &self,
        filter: &crate::usage::UsageFilter,
    ) -> Result<Vec<crate::usage::UsageRow>, Error> {
        super::usage::query(self.reader(), filter).await
    }

    async fn usage_totals(&self) -> Result<Vec<crate::usage::UsageRow>, Error> {
        super::usage::totals(self.reader()).await
    }

    async fn session_logs(
        &self,
        runtime_id: &str,
        session_id: &str,
    ) -> Result<Vec<LogRecord>, Error> {
        super::online::session_logs(self.reader(), runtime_id, session_id).await
    }
}

/// Stored bytes of every trace.
async fn stored_bytes_on<'e, E>(db: E) -> Result<i64, Error>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    let n: i64 = sqlx::query_scalar("SELECT CAST(coalesce(sum(bytes), 0) AS BIGINT) FROM traces")
        .fetch_one(db)
        .await?;
    Ok(n)
}
