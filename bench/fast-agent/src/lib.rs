//! A minimal agent serving the AgentCore HTTP contract, so Berth's benchmarks measure Berth and
//! not the agent.
//!
//! - `GET /ping` answers `{"status": "Healthy" | "HealthyBusy", "time_of_last_update": <unix s>}`;
//!   the agent is `HealthyBusy` while an invocation (including a stream) is in flight, and the
//!   timestamp moves only when the status changes.
//! - `POST /invocations` takes a JSON object (see [`Plan::from_payload`]): by default it answers a
//!   JSON document of exactly [`DEFAULT_RESPONSE_BYTES`] bytes; with `"stream": N` it answers a
//!   `text/event-stream` of `N` events `interval_ms` apart, optionally with one silent gap of
//!   `gap_ms` after the first event (the benchmark's long-silence case).
//! - `POST /v1/messages` is the same handler under the path of Anthropic's Messages API, so the
//!   agent also stands in for a model upstream behind Berth's model gateway (B13). The gateway
//!   wants Anthropic's streaming flag, a boolean: `"stream": true` streams `events` events
//!   (default [`DEFAULT_STREAM_EVENTS`]); the integer form keeps working on both paths. The
//!   events are the agent's own, not Anthropic's event types: the gateway passes them through.
//!
//! Every JSON answer carries `uptime_ms`, the agent process's age when it answered: the harness
//! uses it to tell a request served by a pre-started (warm pool) sandbox from a cold start.
//!
//! Opt-in: an agent started with a tag ([`Config::tag`]; the binary reads
//! `BERTH_FAST_AGENT_TAG`) also carries `"tag": <tag>` in every JSON answer and in the first
//! event of a stream, so a benchmark can tell which deployed version answered (B7's affinity
//! check). JSON answers keep their exact size; untagged agents answer exactly as before.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// Size of the JSON answer when the payload does not ask for another one.
pub const DEFAULT_RESPONSE_BYTES: usize = 1024;
/// Largest JSON answer a payload may ask for.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Most events one stream may ask for.
pub const MAX_EVENTS: u64 = 1_000_000;
/// Events of a stream asked for with `"stream": true` and no `events` field.
pub const DEFAULT_STREAM_EVENTS: u64 = 3;
/// Longest pause (between events, or the silent gap) a payload may ask for: two hours.
pub const MAX_PAUSE_MS: u64 = 2 * 3600 * 1000;

/// The response body: a whole JSON document or an SSE stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What one invocation asks for, parsed from its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// One `application/json` answer of exactly `bytes` bytes (or the smallest document that
    /// carries the fields, if `bytes` is smaller than that).
    Json {
        /// Requested answer size.
        bytes: usize,
    },
    /// A `text/event-stream` answer.
    Stream {
        /// Number of events.
        events: u64,
        /// Pause between consecutive events.
        interval: Duration,
        /// An extra silent pause after the first event (zero for none).
        gap: Duration,
        /// Minimum size of each event's `data:` JSON, padded up to it.
        event_bytes: usize,
    },
}

/// Why a payload was refused (answered with 400, as the AgentCore SDK does for bad input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPayload(pub String);

impl std::fmt::Display for BadPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadPayload {}

impl Plan {
    /// Reads the plan from a payload. Fields, all optional:
    /// `response_bytes` (JSON answer size, default 1024), `stream` (event count; present and
    /// non-zero means SSE; or `true`, Anthropic's flag, with the count in `events`, default
    /// [`DEFAULT_STREAM_EVENTS`]), `interval_ms` (default 0), `gap_ms` (silent pause after the
    /// first event, default 0), `event_bytes` (pad each event's JSON to this size, default 0).
    /// An empty body is the empty object; other fields (`model`, `messages`, ...) are ignored.
    pub fn from_payload(body: &[u8]) -> Result<Self, BadPayload> {
        let payload: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body)
                .map_err(|e| BadPayload(format!("payload is not valid json: {e}")))?
        };
        let Value::Object(fields) = payload else {
            return Err(BadPayload("payload must be a json object".into()));
        };
        let events = match fields.get("stream") {
            Some(Value::Bool(true)) => match number(&fields, "events", MAX_EVENTS)? {
                None => DEFAULT_STREAM_EVENTS,
                Some(0) => {
                    return Err(BadPayload(
                        "events must be at least 1 when stream is true".into(),
                    ));
                }
                Some(n) => n,
            },
            _ => number(&fields, "stream", MAX_EVENTS)?.unwrap_or(0),
        };
        if events == 0 {
            let bytes = number(&fields, "response_bytes", MAX_RESPONSE_BYTES as u64)?
                .map_or(DEFAULT_RESPONSE_BYTES, |b| b as usize);
            return Ok(Plan::Json { bytes });
        }
        let interval = number(&fields, "interval_ms", MAX_PAUSE_MS)?.unwrap_or(0);
        let gap = number(&fields, "gap_ms", MAX_PAUSE_MS)?.unwrap_or(0);
        let event_bytes =
            number(&fields, "event_bytes", MAX_RESPONSE_BYTES as u64)?.map_or(0, |b| b as usize);
        Ok(Plan::Stream {
            events,
            interval: Duration::from_millis(interval),
            gap: Duration::from_millis(gap),
            event_bytes,
        })
    }
}

/// A non-negative integer field no larger than `max`, if present.
fn number(fields: &Map<String, Value>, name: &str, max: u64) -> Result<Option<u64>, BadPayload> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(false)) => Ok(Some(0)),
        Some(v) => match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(BadPayload(format!(
                "{name} must be an integer between 0 and {max}"
            ))),
        },
    }
}

/// A JSON object of exactly `size` bytes (when `size` leaves room for the fixed fields),
/// padded with a `pad` string field.
pub fn padded_json(mut fields: Map<String, Value>, size: usize) -> Vec<u8> {
    fields.insert("pad".into(), Value::String(String::new()));
    let base = Value::Object(fields.clone()).to_string().len();
    if let Some(room) = size.checked_sub(base).filter(|r| *r > 0) {
        fields.insert("pad".into(), Value::String("x".repeat(room)));
    }
    Value::Object(fields).to_string().into_bytes()
}

/// Options of a served agent; the default answers exactly as the plain agent does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Added as `"tag"` to every JSON answer and to the first event of every stream, so a
    /// client can tell agents (for example two versions of one runtime) apart.
    pub tag: Option<String>,
}

/// Shared state: the health status seen by `/ping`, and the configuration.
struct State {
    started: Instant,
    in_flight: AtomicUsize,
    /// Unix seconds of the last Healthy <-> HealthyBusy change (or of start).
    last_update: AtomicU64,
    tag: Option<String>,
}

impl State {
    fn new(config: Config) -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_update: AtomicU64::new(unix_seconds()),
            tag: config.tag,
        }
    }

    fn uptime_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Marks an invocation in flight; the status flips to HealthyBusy on the first and back to
/// Healthy when the last one ends (dropped with the response stream, also on disconnect).
struct Busy(Arc<State>);

impl Busy {
    fn new(state: &Arc<State>) -> Self {
        if state.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            state.last_update.store(unix_seconds(), Ordering::Release);
        }
        Self(state.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.last_update.store(unix_seconds(), Ordering::Release);
        }
    }
}

/// Serves the agent contract on `listener` until `shutdown` completes. Connections are HTTP/1.1
/// with keep-alive and `TCP_NODELAY` (small answers must not wait for Nagle's algorithm).
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, shutdown, Config::default()).await
}

/// [`serve`] with options (a tag in every answer).
pub async fn serve_with(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    config: Config,
) -> std::io::Result<()> {
    let state = Arc::new(State::new(config));
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Running out of descriptors or a connection reset before accept is transient:
                // keep serving the connections that exist.
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e),
            },
        };
        // Best effort: without it small answers may wait for a delayed ACK, which only skews
        // timings and never breaks the contract.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            // A client that goes away mid-request ends its connection; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
        || e.raw_os_error() == Some(24) // EMFILE
        || e.raw_os_error() == Some(23) // ENFILE
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/ping") => ping(&state),
        (&Method::POST, "/invocations" | "/v1/messages") => invoke(&state, req).await,
        (_, "/ping" | "/invocations" | "/v1/messages") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

fn ping(state: &State) -> Response<Body> {
    let status = if state.in_flight.load(Ordering::Acquire) > 0 {
        "HealthyBusy"
    } else {
        "Healthy"
    };
    let body = json!({
        "status": status,
        "time_of_last_update": state.last_update.load(Ordering::Acquire),
    });
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

async fn invoke(state: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let busy = Busy::new(state);
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the payload: {e}"),
            );
        }
    };
    let plan = match Plan::from_payload(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.0),
    };
    match plan {
        Plan::Json { bytes } => {
            let mut fields = Map::new();
            fields.insert("ok".into(), Value::Bool(true));
            fields.insert("bytes_in".into(), body.len().into());
            fields.insert("uptime_ms".into(), state.uptime_ms().into());
            if let Some(tag) = &state.tag {
                fields.insert("tag".into(), tag.clone().into());
            }
            json_response(StatusCode::OK, padded_json(fields, bytes))
        }
        Plan::Stream {
            events,
            interval,
            gap,
            event_bytes,
        } => {
            let mut first = Map::new();
            first.insert("uptime_ms".into(), state.uptime_ms().into());
            if let Some(tag) = &state.tag {
                first.insert("tag".into(), tag.clone().into());
            }
            sse_response(first, events, interval, gap, event_bytes, busy)
        }
    }
}

/// Streams `events` events, one body frame each, so every event leaves as soon as it exists.
/// The first event also carries the fields of `first`.
fn sse_response(
    first: Map<String, Value>,
    events: u64,
    interval: Duration,
    gap: Duration,
    event_bytes: usize,
    busy: Busy,
) -> Response<Body> {
    let stream = futures::stream::unfold(
        (0u64, busy, Some(first)),
        move |(index, busy, mut first)| async move {
            if index >= events {
                return None;
            }
            if index > 0 {
                let pause = if index == 1 { interval + gap } else { interval };
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            let mut fields = Map::new();
            fields.insert("index".into(), index.into());
            fields.insert("of".into(), events.into());
            if let Some(extra) = first.take() {
                fields.extend(extra);
            }
            let mut frame = b"data: ".to_vec();
            frame.extend(padded_json(fields, event_bytes));
            frame.extend_from_slice(b"\n\n");
            Some((
                Ok(Frame::data(Bytes::from(frame))),
                (index + 1, busy, first),
            ))
        },
    );
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, json!({ "error": message }).to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_body_is_the_default_json_answer() {
        assert_eq!(Plan::from_payload(b""), Ok(Plan::Json { bytes: 1024 }));
        assert_eq!(Plan::from_payload(b" {} "), Ok(Plan::Json { bytes: 1024 }));
    }

    #[test]
    fn stream_fields_are_read() {
        let plan = Plan::from_payload(
            br#"{"stream": 3, "interval_ms": 20, "gap_ms": 5000, "event_bytes": 64}"#,
        );
        assert_eq!(
            plan,
            Ok(Plan::Stream {
                events: 3,
                interval: Duration::from_millis(20),
                gap: Duration::from_secs(5),
                event_bytes: 64
            })
        );
        assert_eq!(
            Plan::from_payload(br#"{"stream": 0}"#),
            Ok(Plan::Json { bytes: 1024 })
        );
        assert_eq!(
            Plan::from_payload(br#"{"stream": false}"#),
            Ok(Plan::Json { bytes: 1024 })
        );
    }

    #[test]
    fn anthropic_stream_flag_takes_its_count_from_events() {
        let stream = |events| Plan::Stream {
            events,
            interval: Duration::from_millis(2),
            gap: Duration::ZERO,
            event_bytes: 0,
        };
        assert_eq!(
            Plan::from_payload(br#"{"model": "m", "stream": true, "events": 5, "interval_ms": 2}"#),
            Ok(stream(5))
        );
        assert_eq!(
            Plan::from_payload(br#"{"model": "m", "stream": true, "interval_ms": 2}"#),
            Ok(stream(DEFAULT_STREAM_EVENTS))
        );
        // The integer form ignores `events`.
        assert_eq!(
            Plan::from_payload(br#"{"stream": 7, "events": 5, "interval_ms": 2}"#),
            Ok(stream(7))
        );
        assert_eq!(
            Plan::from_payload(br#"{"model": "m", "stream": false, "events": 5}"#),
            Ok(Plan::Json { bytes: 1024 })
        );
        assert!(Plan::from_payload(br#"{"stream": true, "events": 0}"#).is_err());
        assert!(Plan::from_payload(br#"{"stream": true, "events": "5"}"#).is_err());
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert!(Plan::from_payload(b"not json").is_err());
        assert!(Plan::from_payload(b"[1]").is_err());
        assert!(Plan::from_payload(br#"{"stream": -1}"#).is_err());
        assert!(Plan::from_payload(br#"{"stream": "3"}"#).is_err());
        assert!(Plan::from_payload(br#"{"response_bytes": 999999999999}"#).is_err());
    }

    #[test]
    fn padded_json_has_the_exact_size() {
        for size in [64, 100, 1024, 4096] {
            let mut fields = Map::new();
            fields.insert("ok".into(), Value::Bool(true));
            let out = padded_json(fields, size);
            assert_eq!(out.len(), size);
            let v: Value = serde_json::from_slice(&out).expect("valid json");
            assert_eq!(v["ok"], Value::Bool(true));
        }
    }

    #[test]
    fn padded_json_smaller_than_its_fields_is_left_unpadded() {
        let mut fields = Map::new();
        fields.insert("index".into(), 7.into());
        assert_eq!(padded_json(fields, 0), br#"{"index":7,"pad":""}"#.to_vec());
    }
}
