//! OTLP/HTTP export of the stored spans and log records to an external collector (Jaeger, Tempo,
//! an OpenTelemetry Collector, Langfuse): how large installations keep traces in a store built
//! for them.
//!
//! One task per signal tails its table (`spans`, `logs`) by row id from a durable cursor
//! (`export_cursors` in the trace store), encodes a batch as an `Export*ServiceRequest` (protobuf,
//! optionally gzipped), posts it to `<endpoint>/v1/traces` or `<endpoint>/v1/logs`, and moves
//! the cursor past the batch only after a 2xx. Delivery is therefore at least once: a crash
//! between the collector's 2xx and the cursor's commit sends that batch again after the restart,
//! and nothing stored is skipped. The tasks read through the store's reader pool and write only
//! their cursor (one small transaction per acknowledged batch), so ingest never waits on a
//! collector.
//!
//! Failures follow the OTLP/HTTP spec: 429, 502, 503 and 504 and transport errors are retried
//! with bounded exponential backoff (a `Retry-After` in seconds is honoured, capped); any other
//! status is not retryable, so the batch is dropped (counted, logged) and the cursor moves on.
//! Retention wins over export: rows deleted by age or size before a collector took them are not
//! exported (a collector that is down for the retention period loses that data). Row ids never
//! go back (`AUTOINCREMENT`, see SQLite migration 0006; identity columns on PostgreSQL, whose
//! writers take turns so ids become visible in order), so retention cannot hide new rows behind
//! the cursor. With the trace store in PostgreSQL, `serve` runs the exporter on one node at a
//! time; the cursor only moves forward.
//!
//! Berth's attribution goes out with the data: each resource carries `berth.runtime_id`,
//! `berth.version`, `berth.endpoint`, `berth.session_id` and `berth.actor` (when known); each
//! span and log record carries `session.id` (Berth's, replacing any the agent set) and
//! `berth.actor`.

use crate::{Attribution, Error, LogRecord, Span, log_bytes, span_bytes};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as PLogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as PSpan, Status, span,
};
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where and how to export.
#[derive(Clone)]
pub struct ExportOptions {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); the signals go to
    /// `<endpoint>/v1/traces` and `<endpoint>/v1/logs`, as with `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    /// Sent with every request (`Authorization` for Langfuse, a tenant header for Tempo).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `Content-Encoding: gzip` on every request.
    pub gzip: bool,
    /// Rows per request, at most.
    pub max_batch: usize,
    /// Stored text per request, about; a single larger row still goes alone.
    pub max_batch_bytes: usize,
    /// How often an idle exporter looks for new rows.
    pub poll: Duration,
    /// The first retry's delay; it doubles per failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// The most a collector's `Retry-After` may make the exporter wait.
    pub max_retry_after: Duration,
    /// One request's deadline (connect, send, response).
    pub timeout: Duration,
}

impl std::fmt::Debug for ExportOptions {
    // Header values are credentials: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportOptions")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("gzip", &self.gzip)
            .field("max_batch", &self.max_batch)
            .field("poll", &self.poll)
            .field("max_backoff", &self.max_backoff)
            .finish_non_exhaustive()
    }
}

impl ExportOptions {
    /// Defaults for `endpoint`: 512 rows or ~2 MiB per request, a poll a second, retries from
    /// 0.5 s to 30 s, `Retry-After` up to 5 minutes, 10 s per request, no gzip.
    pub fn new(endpoint: &str) -> Result<Self, String> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let uri: http::Uri = format!("{endpoint}/v1/traces")
            .parse()
            .map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "{endpoint:?}: https is not supported yet; export to a collector over \
                     http (an OpenTelemetry Collector next to Berth can forward over TLS)"
                ));
            }
            _ => return Err(format!("{endpoint:?} is not an http:// URL")),
        }
        if uri.host().is_none() {
            return Err(format!("{endpoint:?} has no host"));
        }
        Ok(Self {
            endpoint,
            headers: Vec::new(),
            gzip: false,
            max_batch: 512,
            max_batch_bytes: 2 << 20,
            poll: Duration::from_secs(1),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        })
    }

    /// Parses headers in `OTEL_EXPORTER_OTLP_HEADERS` form: `key=value` pairs separated by `,`,
    /// values percent-decoded (`Authorization=Basic%20cGs6c2s=`).
    pub fn parse_headers(s: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let mut out = Vec::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| "a header without `=` (expected key=value pairs)".to_owned())?;
            let name = HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|_| format!("{:?} is not a header name", k.trim()))?;
            let value = percent_encoding::percent_decode_str(v.trim()).collect::<Vec<u8>>();
            let value = HeaderValue::from_bytes(&value)
                .map_err(|_| format!("the value of {name} is not a valid header value"))?;
            out.push((name, value));
        }
        Ok(out)
    }

    fn url(&self, signal: Signal) -> String {
        format!("{}/v1/{}", self.endpoint, signal.path())
    }
}

/// The two signals the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Spans,
    Logs,
}

impl Signal {
    pub(crate) fn cursor(self) -> &'static str {
        match self {
            Self::Spans => "spans",
            Self::Logs => "logs",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Spans => "traces",
            Self::Logs => "logs",
        }
    }
}

/// Counters of one exporter (or of the process's, [`export_stats`]), read at scrape time.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Rows a collector acknowledged.
    pub spans_exported: AtomicU64,
    pub logs_exported: AtomicU64,
    /// Rows given up on: a non-retryable answer, or rejected in a `partial_success`.
    pub spans_dropped: AtomicU64,
    pub logs_dropped: AtomicU64,
    /// Requests that failed and were retried (transport errors, 429/502/503/504).
    pub spans_failed_requests: AtomicU64,
    pub logs_failed_requests: AtomicU64,
}

impl ExportStats {
    fn exported(&self, s: Signal) -> &AtomicU64 {
        match s {
            Signal::Spans => &self.spans_exported,
            Signal::Logs => &self.logs_exported,
        }
    }
    fn dropped(&self, s: Signal) -> &AtomicU64 {
        match s {
            Signal::Spans => &self.spans_dropped,
            Signal::Logs => &self.logs_dropped,
        }
    }
    fn failed(&self, s: Signal) -> &AtomicU64 {
        match s {
            Signal::Spans => &self.spans_failed_requests,
            Signal::Logs => &self.logs_failed_requests,
        }
    }
}

static STATS: LazyLock<Arc<ExportStats>> = LazyLock::new(Arc::default);

/// The process's export counters (what `berth serve`'s exporter counts into and `/metrics`
/// shows).
pub fn export_stats() -> Arc<ExportStats> {
    STATS.clone()
}

/// The HTTP client the exporter posts with (plain HTTP/1.1, pooled connections).
type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Starts one export task per signal; they run until `shutdown`. The returned handles end
/// when the tasks have (tests join them to simulate a stop).
pub fn start(
    store: Arc<dyn ExportSource>,
    opts: ExportOptions,
    stats: Arc<ExportStats>,
    shutdown: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(opts.timeout));
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let opts = Arc::new(opts);
    [Signal::Spans, Signal::Logs]
        .into_iter()
        .map(|signal| {
            let exporter = Exporter {
                store: store.clone(),
                opts: opts.clone(),
                stats: stats.clone(),
                client: client.clone(),
                signal,
            };
            tokio::spawn(exporter.run(shutdown.clone()))
        })
        .collect()
}

/// What the exporter reads and writes: the rows in ingestion order and its cursors (both trace
/// stores, `sql/export.rs`).
#[async_trait::async_trait]
pub trait ExportSource: Send + Sync + 'static {
    /// The highest row id of `signal` a collector has acknowledged (0 before the first export).
    async fn export_cursor(&self, signal: Signal) -> Result<i64, Error>;
    /// Durably moves `signal`'s cursor forward to `seq` (never back).
    async fn set_export_cursor(&self, signal: Signal, seq: i64) -> Result<(), Error>;
    /// Up to `limit` spans stored after row id `after`, with their row ids, oldest first.
    async fn spans_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, Span)>, Error>;
    /// Up to `limit` log records stored after row id `after`, with their row ids, oldest first.
    async fn logs_after(&self, after: i64, limit: i64) -> Result<Vec<(i64, LogRecord)>, Error>;
}

struct Exporter {
    store: Arc<dyn ExportSource>,
    opts: Arc<ExportOptions>,
    stats: Arc<ExportStats>,
    client: HttpClient,
    signal: Signal,
}

/// What one attempt at a batch came to.
enum Outcome {
    /// 2xx: acknowledged; `rejected` rows were refused in a `partial_success`.
    Accepted { rejected: u64 },
    /// Try again after this long (`Retry-After`), or after the backoff when `None`.
    Retry(Option<Duration>, String),
    /// Not retryable: the batch is given up.
    Drop(String),
}

/// A batch read from the store: the highest row id in it and the encoded request.
struct Batch {
    last_seq: i64,
    rows: u64,
    body: Vec<u8>,
}

impl Exporter {
    async fn run(self, shutdown: CancellationToken) {
        let url = self.opts.url(self.signal);
        let mut cursor = loop {
            match self.store.export_cursor(self.signal).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "trace export: reading the cursor");
                    if pause(&shutdown, self.opts.max_backoff).await {
                        return;
                    }
                }
            }
        };
        let mut backoff = self.opts.min_backoff;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let batch = match self.read_batch(cursor).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    if pause(&shutdown, self.opts.poll).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, signal = self.signal.cursor(), "trace export: reading the store");
                    if pause(&shutdown, self.opts.max_backoff).await {
                        return;
                    }
                    continue;
                }
            };
            // The same batch until it is acknowledged or given up.
            loop {
                let outcome = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    o = self.post(&url, &batch.body) => o,
                };
                match outcome {
                    Outcome::Accepted { rejected } => {
                        let ok = batch.rows.saturating_sub(rejected);
                        self.stats
                            .exported(self.signal)
                            .fetch_add(ok, Ordering::Relaxed);
                        if rejected > 0 {
                            self.stats
                                .dropped(self.signal)
                                .fetch_add(rejected, Ordering::Relaxed);
                            tracing::warn!(
                                rejected,
                                signal = self.signal.cursor(),
                                "trace export: the collector rejected part of a batch"
                            );
                        }
                        break;
                    }
                    Outcome::Drop(why) => {
                        self.stats
                            .dropped(self.signal)
                            .fetch_add(batch.rows, Ordering::Relaxed);
                        tracing::warn!(rows = batch.rows, signal = self.signal.cursor(), error = %why, "trace export: batch dropped (not retryable)");
                        break;
                    }
                    Outcome::Retry(after, why) => {
                        self.stats
                            .failed(self.signal)
                            .fetch_add(1, Ordering::Relaxed);
                        let wait = after
                            .map(|a| a.min(self.opts.max_retry_after))
                            .unwrap_or(backoff);
                        tracing::debug!(error = %why, wait_ms = wait.as_millis() as u64, signal = self.signal.cursor(), "trace export: retrying");
                        backoff = (backoff * 2).min(self.opts.max_backoff);
                        if pause(&shutdown, wait).await {
                            return;
                        }
                    }
                }
            }
            backoff = self.opts.min_backoff;
            // The cursor moves only once the batch is settled; if this write fails the batch is
            // sent again (at least once), never skipped.
            loop {
                match self
                    .store
                    .set_export_cursor(self.signal, batch.last_seq)
                    .await
                {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "trace export: saving the cursor");
                        if pause(&shutdown, self.opts.min_backoff).await {
                            return;
                        }
                    }
                }
            }
            cursor = batch.last_seq;
        }
    }

    async fn read_batch(&self, after: i64) -> Result<Option<Batch>, Error> {
        let limit = i64::try_from(self.opts.max_batch.max(1)).unwrap_or(512);
        let (last_seq, rows, body) = match self.signal {
            Signal::Spans => {
                let rows = self.store.spans_after(after, limit).await?;
                let Some(last) = rows.last().map(|(seq, _)| *seq) else {
                    return Ok(None);
                };
                let spans = take_by_size(rows, self.opts.max_batch_bytes, span_bytes);
                let last = spans.last().map(|(seq, _)| *seq).unwrap_or(last);
                let n = spans.len() as u64;
                let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
                (last, n, encode_spans(&spans).encode_to_vec())
            }
            Signal::Logs => {
                let rows = self.store.logs_after(after, limit).await?;
                let Some(last) = rows.last().map(|(seq, _)| *seq) else {
                    return Ok(None);
                };
                let logs = take_by_size(rows, self.opts.max_batch_bytes, log_bytes);
                let last = logs.last().map(|(seq, _)| *seq).unwrap_or(last);
                let n = logs.len() as u64;
                let logs: Vec<LogRecord> = logs.into_iter().map(|(_, l)| l).collect();
                (last, n, encode_logs(&logs).encode_to_vec())
            }
        };
        let body = if self.opts.gzip { gzip(&body) } else { body };
        Ok(Some(Batch {
            last_seq,
            rows,
            body,
        }))
    }

    async fn post(&self, url: &str, body: &[u8]) -> Outcome {
        let mut req = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                http::header::USER_AGENT,
                concat!("berth/", env!("CARGO_PKG_VERSION")),
            );
        if self.opts.gzip {
            req = req.header(http::header::CONTENT_ENCODING, "gzip");
        }
        for (k, v) in &self.opts.headers {
            req = req.header(k, v);
        }
        let req = match req.body(Full::new(Bytes::copy_from_slice(body))) {
            Ok(r) => r,
            Err(e) => return Outcome::Drop(format!("building the request: {e}")),
        };
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // The answer is small (an empty response or a google.rpc.Status); cap what is read.
            let body = http_body_util::Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, retry_after, body))
        };
        let (status, retry_after, body) =
            match tokio::time::timeout(self.opts.timeout, exchange).await {
                Err(_) => return Outcome::Retry(None, "timed out".into()),
                Ok(Err(e)) => return Outcome::Retry(None, e),
                Ok(Ok(x)) => x,
            };
        if status.is_success() {
            let rejected = match self.signal {
                Signal::Spans => ExportTraceServiceResponse::decode(body.as_ref())
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map(|p| u64::try_from(p.rejected_spans).unwrap_or(0)),
                Signal::Logs => ExportLogsServiceResponse::decode(body.as_ref())
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map(|p| u64::try_from(p.rejected_log_records).unwrap_or(0)),
            };
            return Outcome::Accepted {
                rejected: rejected.unwrap_or(0),
            };
        }
        let why = format!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        match status.as_u16() {
            429 | 502 | 503 | 504 => Outcome::Retry(retry_after, why),
            _ => Outcome::Drop(why),
        }
    }
}

/// Waits `d`; `true` when `shutdown` came first.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// The leading rows whose stored size stays within `max` (at least one).
fn take_by_size<T>(rows: Vec<(i64, T)>, max: usize, size: impl Fn(&T) -> i64) -> Vec<(i64, T)> {
    let mut total = 0i64;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let mut out = Vec::with_capacity(rows.len());
    for (seq, row) in rows {
        total = total.saturating_add(size(&row));
        if !out.is_empty() && total > max {
            break;
        }
        out.push((seq, row));
    }
    out
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(body);
    gz.finish().unwrap_or_default()
}

// --------------------------------------------------------------------------------- encoding

fn any(v: &Value) -> AnyValue {
    use any_value::Value as V;
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(V::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => V::IntValue(i),
            None => V::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(V::StringValue(s.clone())),
        Value::Array(a) => Some(V::ArrayValue(ArrayValue {
            values: a.iter().map(any).collect(),
        })),
        Value::Object(m) => Some(V::KvlistValue(KeyValueList {
            values: m.iter().map(|(k, v)| kv(k, any(v))).collect(),
        })),
    };
    AnyValue { value }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

/// A stored flat attribute object as key-values, without the keys Berth sets itself.
fn key_values(v: &Value, skip: &[&str]) -> Vec<KeyValue> {
    match v {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| kv(k, any(v)))
            .collect(),
        _ => Vec::new(),
    }
}

const RESOURCE_KEYS: [&str; 5] = [
    "berth.runtime_id",
    "berth.version",
    "berth.endpoint",
    "berth.session_id",
    "berth.actor",
];
const ITEM_KEYS: [&str; 2] = ["session.id", "berth.actor"];

/// The agent's resource attributes, then Berth's attribution (which replaces any the agent
/// claimed under the same keys).
fn resource(stored: &Value, a: &Attribution) -> Resource {
    let mut attributes = key_values(stored, &RESOURCE_KEYS);
    attributes.push(kv("berth.runtime_id", string(&a.runtime_id)));
    attributes.push(kv(
        "berth.version",
        AnyValue {
            value: Some(any_value::Value::IntValue(i64::from(a.version))),
        },
    ));
    attributes.push(kv("berth.endpoint", string(&a.endpoint)));
    if let Some(s) = &a.session_id {
        attributes.push(kv("berth.session_id", string(s)));
    }
    if let Some(actor) = &a.actor {
        attributes.push(kv("berth.actor", string(actor)));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// A span's or log record's attributes with Berth's `session.id` and `berth.actor`.
fn item_attributes(stored: &Value, a: &Attribution) -> Vec<KeyValue> {
    let mut attributes = key_values(stored, &ITEM_KEYS);
    if let Some(s) = &a.session_id {
        attributes.push(kv("session.id", string(s)));
    }
    if let Some(actor) = &a.actor {
        attributes.push(kv("berth.actor", string(actor)));
    }
    attributes
}

fn hex_id(s: Option<&str>) -> Vec<u8> {
    s.and_then(|s| hex::decode(s).ok()).unwrap_or_default()
}

fn kind(k: &str) -> i32 {
    match k {
        "INTERNAL" => span::SpanKind::Internal as i32,
        "SERVER" => span::SpanKind::Server as i32,
        "CLIENT" => span::SpanKind::Client as i32,
        "PRODUCER" => span::SpanKind::Producer as i32,
        "CONSUMER" => span::SpanKind::Consumer as i32,
        _ => span::SpanKind::Unspecified as i32,
    }
}

fn nanos(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Items of one (resource, attribution), by scope name.
type Grouped<'a, T> = ((&'a Value, &'a Attribution), Vec<(&'a str, Vec<&'a T>)>);

/// Groups items by (resource, attribution) and then by scope, in first-seen order.
fn group<'a, T>(
    items: &'a [T],
    key: impl Fn(&'a T) -> (&'a Value, &'a Attribution, &'a str),
) -> Vec<Grouped<'a, T>> {
    let mut out: Vec<Grouped<'a, T>> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for item in items {
        let (res, who, scope) = key(item);
        let i = *index
            .entry((
                res.to_string(),
                serde_json::to_string(who).unwrap_or_default(),
            ))
            .or_insert_with(|| {
                out.push(((res, who), Vec::new()));
                out.len() - 1
            });
        let scopes = &mut out[i].1;
        match scopes.iter_mut().find(|(s, _)| *s == scope) {
            Some((_, v)) => v.push(item),
            None => scopes.push((scope, vec![item])),
        }
    }
    out
}

/// Stored spans as one `ExportTraceServiceRequest`.
pub fn encode_spans(spans: &[Span]) -> ExportTraceServiceRequest {
    let resource_spans = group(spans, |s| (&s.resource, &s.attribution, s.scope.as_str()))
        .into_iter()
        .map(|((res, who), scopes)| ResourceSpans {
            resource: Some(resource(res, who)),
            scope_spans: scopes
                .into_iter()
                .map(|(scope, spans)| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: scope.to_owned(),
                        ..Default::default()
                    }),
                    spans: spans.into_iter().map(encode_span).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn encode_span(s: &Span) -> PSpan {
    let events = match &s.events {
        Value::Array(events) => events
            .iter()
            .map(|e| span::Event {
                name: e
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                time_unix_nano: nanos(e.get("timeNs").and_then(Value::as_i64).unwrap_or(0)),
                attributes: e
                    .get("attributes")
                    .map(|a| key_values(a, &[]))
                    .unwrap_or_default(),
                dropped_attributes_count: 0,
            })
            .collect(),
        _ => Vec::new(),
    };
    PSpan {
        trace_id: hex_id(Some(&s.trace_id)),
        span_id: hex_id(Some(&s.span_id)),
        parent_span_id: hex_id(s.parent_span_id.as_deref()),
        name: s.name.clone(),
        kind: kind(&s.kind),
        start_time_unix_nano: nanos(s.start_ns),
        end_time_unix_nano: nanos(s.end_ns),
        attributes: item_attributes(&s.attributes, &s.attribution),
        events,
        status: Some(Status {
            message: s.status_message.clone(),
            code: match s.status_code.as_str() {
                "OK" => 1,
                "ERROR" => 2,
                _ => 0,
            },
        }),
        ..Default::default()
    }
}

/// Stored log records as one `ExportLogsServiceRequest`.
pub fn encode_logs(logs: &[LogRecord]) -> ExportLogsServiceRequest {
    let resource_logs = group(logs, |l| (&l.resource, &l.attribution, l.scope.as_str()))
        .into_iter()
        .map(|((res, who), scopes)| ResourceLogs {
            resource: Some(resource(res, who)),
            scope_logs: scopes
                .into_iter()
                .map(|(scope, logs)| ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: scope.to_owned(),
                        ..Default::default()
                    }),
                    log_records: logs
                        .into_iter()
                        .map(|l| PLogRecord {
                            time_unix_nano: nanos(l.time_ns),
                            observed_time_unix_nano: nanos(l.time_ns),
                            severity_number: l.severity_number,
                            severity_text: l.severity_text.clone(),
                            body: (!l.body.is_null()).then(|| any(&l.body)),
                            attributes: item_attributes(&l.attributes, &l.attribution),
                            trace_id: hex_id(l.trace_id.as_deref()),
                            span_id: hex_id(l.span_id.as_deref()),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::otlp::{Encoding, decode_logs, decode_traces};
    use serde_json::json;

    fn who(session: Option<&str>) -> Attribution {
        Attribution {
            runtime_id: "rt-1".into(),
            version: 3,
            endpoint: "prod".into(),
            session_id: session.map(str::to_owned),
            actor: Some("alice".into()),
        }
    }

    #[test]
    fn spans_round_trip_through_the_receiver_decoder_with_berths_attribution() {
        let s = Span {
            trace_id: "5b8efff798038103d269b633813fc60c".into(),
            span_id: "eee19b7ec3c1b174".into(),
            parent_span_id: Some("0102030405060708".into()),
            name: "chat".into(),
            kind: "CLIENT".into(),
            start_ns: 10,
            end_ns: 30,
            status_code: "ERROR".into(),
            status_message: "boom".into(),
            scope: "strands".into(),
            attributes: json!({"gen_ai.usage.input_tokens": 12, "session.id": "forged", "x": {"y": [1.5, true]}}),
            resource: json!({"service.name": "shop.prod", "berth.runtime_id": "forged"}),
            events: json!([{"name": "e", "timeNs": 20, "attributes": {"k": "v"}}]),
            service_name: "shop.prod".into(),
            attribution: who(Some("s-1")),
        };
        let req = encode_spans(std::slice::from_ref(&s));
        let back =
            decode_traces(&req.encode_to_vec(), Encoding::Protobuf, &who(Some("s-1"))).unwrap();
        assert_eq!(back.len(), 1);
        let b = &back[0];
        assert_eq!(
            (
                &b.trace_id,
                &b.span_id,
                &b.parent_span_id,
                &b.kind,
                &b.status_code
            ),
            (
                &s.trace_id,
                &s.span_id,
                &s.parent_span_id,
                &s.kind,
                &s.status_code
            )
        );
        assert_eq!(b.events, s.events);
        assert_eq!(b.attributes["session.id"], json!("s-1"));
        assert_eq!(b.attributes["berth.actor"], json!("alice"));
        assert_eq!(b.attributes["gen_ai.usage.input_tokens"], json!(12));
        assert_eq!(b.attributes["x"], json!({"y": [1.5, true]}));
        assert_eq!(b.resource["berth.runtime_id"], json!("rt-1"));
        assert_eq!(b.resource["berth.version"], json!(3));
        assert_eq!(b.resource["berth.endpoint"], json!("prod"));
        assert_eq!(b.resource["berth.session_id"], json!("s-1"));
        assert_eq!(b.service_name, "shop.prod");
    }

    #[test]
    fn spans_group_by_resource_and_scope_and_logs_encode() {
        let mut a = Span {
            trace_id: "01".repeat(16),
            span_id: "02".repeat(8),
            parent_span_id: None,
            name: "a".into(),
            kind: "INTERNAL".into(),
            start_ns: 1,
            end_ns: 2,
            status_code: "UNSET".into(),
            status_message: String::new(),
            scope: "one".into(),
            attributes: json!({}),
            resource: json!({"service.name": "x"}),
            events: json!([]),
            service_name: "x".into(),
            attribution: who(Some("s-1")),
        };
        let mut b = a.clone();
        b.span_id = "03".repeat(8);
        b.scope = "two".into();
        let mut c = a.clone();
        c.span_id = "04".repeat(8);
        c.attribution = who(Some("s-2"));
        a.name = "first".into();
        let req = encode_spans(&[a, b, c]);
        assert_eq!(req.resource_spans.len(), 2);
        assert_eq!(req.resource_spans[0].scope_spans.len(), 2);
        assert_eq!(req.resource_spans[1].scope_spans[0].spans.len(), 1);

        let log = LogRecord {
            trace_id: Some("01".repeat(16)),
            span_id: None,
            time_ns: 5,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: json!("hello"),
            attributes: json!({"k": 1}),
            resource: json!({"service.name": "x"}),
            scope: "s".into(),
            service_name: "x".into(),
            attribution: who(None),
        };
        let req = encode_logs(std::slice::from_ref(&log));
        let back = decode_logs(&req.encode_to_vec(), Encoding::Protobuf, &who(None)).unwrap();
        assert_eq!(back[0].body, json!("hello"));
        assert_eq!(back[0].trace_id, log.trace_id);
        assert_eq!(back[0].severity_text, "INFO");
        assert!(back[0].attributes.get("session.id").is_none());
    }

    #[test]
    fn options_parse_and_refuse() {
        let h = ExportOptions::parse_headers("Authorization=Basic%20cGs6c2s=, x-scope-orgid=t1")
            .unwrap();
        assert_eq!(h[0].0.as_str(), "authorization");
        assert_eq!(h[0].1.to_str().unwrap(), "Basic cGs6c2s=");
        assert_eq!(h[1].1.to_str().unwrap(), "t1");
        assert!(ExportOptions::parse_headers("novalue").is_err());
        let o = ExportOptions::new("http://127.0.0.1:4318/").unwrap();
        assert_eq!(o.url(Signal::Spans), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(o.url(Signal::Logs), "http://127.0.0.1:4318/v1/logs");
        assert!(ExportOptions::new("ftp://x").is_err());
        assert!(ExportOptions::new("not a url").is_err());
        let mut o = o;
        o.headers = h;
        assert!(!format!("{o:?}").contains("cGs6"));
    }
}
