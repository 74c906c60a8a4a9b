//! The model gateway's HTTP edge (`/gateway/{anthropic|openai|bedrock}/...`) and its meter.
//!
//! Unsigned: model SDKs send an API key, not SigV4. The key is the one `berth_gateway::keys`
//! issued to the calling sandbox (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`,
//! `AWS_BEARER_TOKEN_BEDROCK`); on a sandbox's own listener it must name that sandbox. The call is
//! attributed to the session the sandbox serves now, like an OTLP export.
//!
//! The meter turns each finished call into a `gen_ai` span in the trace store (attributed to
//! the session; a child of the agent's span when the call carried a `traceparent`), which the
//! usage tables count (`/berth/v1/usage`, `berth_genai_*`), and into the `berth_gateway_*`
//! counters per runtime, version and actor that `/metrics` shows.

use crate::AppState;
use crate::body;
use crate::edge::Context;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use berth_gateway::protocol::{Kind, Refusal};
use berth_gateway::{CallRecord, Caller, Protocol};
use berth_runtime::session::SandboxOwner;
use berth_trace::usage::{Counts, Prices};
use berth_trace::{Attribution, Span};
use http::StatusCode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The service Bedrock Runtime requests are signed for.
const BEDROCK_SIGNING_NAME: &str = "bedrock";

#[derive(Clone)]
struct Edge {
    state: AppState,
    /// The sandbox whose listener this is (`None`: the public listener).
    sandbox: Option<Arc<str>>,
}

/// The gateway's routes on one listener.
pub(crate) fn routes(state: AppState, sandbox: Option<&str>) -> Router {
    Router::new()
        .route("/gateway/{api}/{*rest}", any(call))
        .with_state(Edge {
            state,
            sandbox: sandbox.map(Arc::from),
        })
}

fn refuse(protocol: Protocol, status: StatusCode, kind: Kind, message: &str) -> Response {
    let r = protocol.refusal(&Refusal::new(status, kind, message));
    let (parts, body) = r.into_parts();
    Response::from_parts(parts, axum::body::Body::from(body))
}

async fn call(
    State(edge): State<Edge>,
    Path((api, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(protocol) = Protocol::from_segment(&api) else {
        return (
            StatusCode::NOT_FOUND,
            "the model gateway serves /gateway/anthropic, /gateway/openai and /gateway/bedrock",
        )
            .into_response();
    };
    let Some(gateway) = edge.state.gateway.clone() else {
        return refuse(
            protocol,
            StatusCode::NOT_FOUND,
            Kind::NotFound,
            "this Berth has no model gateway (berth serve --gateway FILE)",
        );
    };
    let (parts, body) = req.into_parts();
    // Who is calling, from the headers alone, before a byte of the body is read: the key this
    // server gave a sandbox, or (Bedrock) a SigV4 signature by the runtime credentials Berth
    // gave the sandbox whose listener this is (botocore sends bearer tokens only over https).
    let sigv4 = protocol == Protocol::Bedrock
        && parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    let unauthenticated =
        |m: &str| refuse(protocol, StatusCode::UNAUTHORIZED, Kind::Unauthenticated, m);
    let (instance, signed) = if sigv4 {
        let Some(sandbox) = edge.sandbox.as_deref() else {
            return unauthenticated(
                "SigV4-signed model calls are taken only on a sandbox's own listener",
            );
        };
        match berth_auth::precheck(
            &parts.uri,
            &parts.headers,
            edge.state.keys.as_ref(),
            SystemTime::now(),
        ) {
            Ok(pre) if pre.service == BEDROCK_SIGNING_NAME => (sandbox.to_owned(), Some(pre)),
            Ok(_) => {
                return unauthenticated(
                    "Credential should be scoped to correct service: 'bedrock'.",
                );
            }
            Err(e) => return unauthenticated(&e.aws_message()),
        }
    } else {
        let instance = protocol
            .presented_key(&parts.headers)
            .and_then(|k| gateway.keys().verify(k))
            .filter(|i| edge.sandbox.as_deref().is_none_or(|s| s == i));
        match instance {
            Some(i) => (i, None),
            None => {
                return unauthenticated(
                    "the model gateway takes only the key Berth gave this sandbox",
                );
            }
        }
    };
    let owner = if instance == berth_gateway::keys::INTERNAL {
        // Berth's own calls (memory extraction, judges): on the public listener only.
        if edge.sandbox.is_some() {
            return unauthenticated("the model gateway takes only the key Berth gave this sandbox");
        }
        SandboxOwner {
            runtime_id: instance.clone(),
            version: 0,
            endpoint: String::new(),
            session_id: None,
            user_id: None,
        }
    } else {
        match edge.state.sessions.sandbox_owner(&instance) {
            Some(o) => o,
            None => return unauthenticated("this key's sandbox has ended"),
        }
    };
    let ctx = parts
        .extensions
        .get::<Context>()
        .cloned()
        .unwrap_or_else(Context::standalone);
    let declared = body::declared_length(&parts.headers);
    let (bytes, _reservation) =
        match body::read(body, declared, ctx.limits.small, &ctx.budgets, ctx.stall).await {
            Ok(read) => read,
            Err(body::Error::TooLarge { limit }) => {
                let m = format!("the request body exceeds the {limit}-byte limit");
                return refuse(protocol, StatusCode::PAYLOAD_TOO_LARGE, Kind::Invalid, &m);
            }
            Err(body::Error::Throttled) => {
                return refuse(
                    protocol,
                    StatusCode::TOO_MANY_REQUESTS,
                    Kind::RateLimited,
                    "the server is busy; retry",
                );
            }
            Err(e) => {
                return refuse(
                    protocol,
                    StatusCode::BAD_REQUEST,
                    Kind::Invalid,
                    &e.to_string(),
                );
            }
        };
    if let Some(pre) = signed {
        // The signature over headers and body, by this sandbox's runtime's credentials.
        let verified = match pre.verify(&parts.method, &parts.uri, &parts.headers, &bytes) {
            Ok(v) => v,
            Err(e) => return unauthenticated(&e.aws_message()),
        };
        let ours = matches!(&verified.principal.scope,
            berth_auth::Scope::Runtime { runtime_id } if *runtime_id == owner.runtime_id);
        if !ours {
            return unauthenticated(
                "the model gateway takes only the credentials Berth gave this sandbox",
            );
        }
    }
    let caller = Caller {
        runtime_id: owner.runtime_id,
        version: owner.version,
        endpoint: owner.endpoint,
        session_id: owner.session_id,
        actor: owner.user_id,
        traceparent: parts
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let answer = gateway
        .forward(berth_gateway::Request {
            protocol,
            method: parts.method,
            path: format!("/{rest}"),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            body: bytes,
            caller,
        })
        .await;
    let (parts, stream) = answer.into_parts();
    Response::from_parts(parts, axum::body::Body::from_stream(stream))
}

/// `GET /berth/v1/gateway`: every upstream and its credentials' health (names, never values).
pub(crate) async fn status(State(s): State<AppState>) -> Response {
    match &s.gateway {
        Some(g) => axum::Json(json!({ "upstreams": g.status() })).into_response(),
        None => axum::Json(json!({ "upstreams": [] })).into_response(),
    }
}

/// The most distinct actors the `berth_gateway_*` counters label; the rest are `actor="other"`
/// (a user id per label value would let callers grow the exposition without bound).
const MAX_ACTORS: usize = 1_000;

type SeriesKey = (String, u32, String);

#[derive(Default, Clone, Copy)]
struct Series {
    requests: u64,
    errors: u64,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    cost_micro_usd: u64,
    priced: bool,
}

/// Accounts gateway calls: spans into the trace store, counters for Prometheus.
pub struct TraceMeter {
    /// Batches spans into the trace store off the request path (a transaction per call cost
    /// nearly half the gateway's CPU per call: bench/notes/B13.md).
    spans: berth_trace::SpanSink,
    prices: Arc<Prices>,
    series: Mutex<BTreeMap<SeriesKey, Series>>,
}

impl TraceMeter {
    pub fn new(spans: berth_trace::SpanSink, prices: Arc<Prices>) -> Arc<Self> {
        Arc::new(Self {
            spans,
            prices,
            series: Mutex::new(BTreeMap::new()),
        })
    }

    /// The `berth_gateway_*` families, for `/metrics`.
    pub(crate) fn collector(&self) -> GatewayTotals {
        GatewayTotals(
            self.series
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        )
    }
}

fn ns(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The `gen_ai` client span of one call.
pub fn span_of(c: &CallRecord) -> Span {
    let parent = c
        .caller
        .traceparent
        .as_deref()
        .and_then(berth_trace::parse_traceparent);
    let (trace_id, parent_span_id) = match parent {
        Some((t, p, _)) => (t, Some(p)),
        None => (berth_trace::new_trace_id(), None),
    };
    let mut a = Map::new();
    let mut put = |k: &str, v: Value| {
        a.insert(k.to_owned(), v);
    };
    put("gen_ai.operation.name", json!(c.operation));
    put("gen_ai.provider.name", json!(c.protocol.provider()));
    put("gen_ai.request.model", json!(c.model));
    if let Some(m) = &c.response_model {
        put("gen_ai.response.model", json!(m));
    }
    let u = &c.usage;
    for (k, v) in [
        ("gen_ai.usage.input_tokens", u.input_tokens),
        ("gen_ai.usage.output_tokens", u.output_tokens),
        ("gen_ai.usage.cache_read.input_tokens", u.cache_read_tokens),
        (
            "gen_ai.usage.cache_creation.input_tokens",
            u.cache_write_tokens,
        ),
    ] {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    put("http.response.status_code", json!(c.status));
    put("berth.gateway.requested_model", json!(c.requested_model));
    put("berth.gateway.attempts", json!(c.attempts));
    put("berth.gateway.streamed", json!(c.streamed));
    put(
        "berth.gateway.queued_ms",
        json!(c.queued.as_millis() as u64),
    );
    if let Some(up) = &c.upstream {
        put("berth.gateway.upstream", json!(up));
    }
    if let Some(cred) = &c.credential {
        put("berth.gateway.credential", json!(cred));
    }
    if let Some(t) = c.first_byte {
        put(
            "berth.gateway.time_to_first_byte_ms",
            json!(t.as_secs_f64() * 1000.0),
        );
    }
    if let Some(e) = &c.error {
        put("error.type", json!(e));
    }
    if let Some(s) = &c.caller.session_id {
        put("session.id", json!(s));
    }
    let start_ns = ns(c.started);
    Span {
        trace_id,
        span_id: berth_trace::new_span_id(),
        parent_span_id,
        name: format!("{} {}", c.operation, c.model),
        kind: "CLIENT".into(),
        start_ns,
        end_ns: start_ns.saturating_add(i64::try_from(c.duration.as_nanos()).unwrap_or(i64::MAX)),
        status_code: if c.status >= 400 || c.error.is_some() {
            "ERROR".into()
        } else {
            "UNSET".into()
        },
        status_message: c.error.clone().unwrap_or_default(),
        scope: "berth.gateway".into(),
        attributes: Value::Object(a),
        resource: json!({
            "service.name": "berth-gateway",
            "berth.runtime_id": c.caller.runtime_id,
            "berth.version": c.caller.version,
        }),
        events: json!([]),
        service_name: "berth-gateway".into(),
        attribution: Attribution {
            runtime_id: c.caller.runtime_id.clone(),
            version: c.caller.version,
            endpoint: c.caller.endpoint.clone(),
            session_id: c.caller.session_id.clone(),
            actor: c.caller.actor.clone(),
        },
    }
}

impl berth_gateway::Meter for TraceMeter {
    fn record(&self, call: CallRecord) {
        let u = &call.usage;
        let counts = Counts {
            model_calls: 1,
            input_tokens: u.input_tokens.unwrap_or(0) as i64,
            output_tokens: u.output_tokens.unwrap_or(0) as i64,
            total_tokens: (u.input_tokens.unwrap_or(0) + u.output_tokens.unwrap_or(0)) as i64,
            cache_read_tokens: u.cache_read_tokens.unwrap_or(0) as i64,
            cache_write_tokens: u.cache_write_tokens.unwrap_or(0) as i64,
            tool_calls: 0,
            tool_errors: 0,
        };
        let cost = self.prices.cost(&call.model, &counts);
        {
            let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
            let actor = call.caller.actor.clone().unwrap_or_default();
            let mut key = (call.caller.runtime_id.clone(), call.caller.version, actor);
            let actors = || series.keys().filter(|k| !k.2.is_empty()).count();
            if !series.contains_key(&key) && !key.2.is_empty() && actors() >= MAX_ACTORS {
                key.2 = "other".into();
            }
            let s = series.entry(key).or_default();
            s.requests += 1;
            s.errors += u64::from(call.status >= 400 || call.error.is_some());
            s.input += u.input_tokens.unwrap_or(0);
            s.output += u.output_tokens.unwrap_or(0);
            s.cache_read += u.cache_read_tokens.unwrap_or(0);
            s.cache_write += u.cache_write_tokens.unwrap_or(0);
            if let Some(c) = cost {
                s.cost_micro_usd += (c * 1e6).round() as u64;
                s.priced = true;
            }
        }
        self.spans.record_span(span_of(&call));
    }
}

/// A counter family: name, help, and its value in a series.
type CounterFamily = (&'static str, &'static str, fn(&Series) -> u64);

/// The gateway's counters per runtime, version and actor.
#[derive(Debug)]
pub(crate) struct GatewayTotals(Vec<(SeriesKey, Series)>);

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("requests", &self.requests)
            .finish()
    }
}

impl prometheus_client::collector::Collector for GatewayTotals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let labels = |k: &SeriesKey| {
            [
                ("runtime_id", k.0.clone()),
                ("version", k.1.to_string()),
                ("actor", k.2.clone()),
            ]
        };
        let counters: [CounterFamily; 2] = [
            (
                "berth_gateway_requests",
                "Model calls through the gateway.",
                |s| s.requests,
            ),
            (
                "berth_gateway_errors",
                "Model calls through the gateway that ended in an error.",
                |s| s.errors,
            ),
        ];
        for (name, help, get) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (k, s) in &self.0 {
                ConstCounter::new(get(s)).encode(family.encode_family(&labels(k))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_gateway_tokens",
            "Tokens of model calls through the gateway, by type (input, output, cache_read, cache_write).",
            None,
            MetricType::Counter,
        )?;
        for (k, s) in &self.0 {
            for (t, n) in [
                ("input", s.input),
                ("output", s.output),
                ("cache_read", s.cache_read),
                ("cache_write", s.cache_write),
            ] {
                let [a, b, c] = labels(k);
                ConstCounter::new(n).encode(family.encode_family(&[
                    a,
                    b,
                    c,
                    ("type", t.into()),
                ])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_gateway_cost_usd",
            "Cost of priced model calls through the gateway (berth serve --model-prices).",
            None,
            MetricType::Counter,
        )?;
        for (k, s) in self.0.iter().filter(|(_, s)| s.priced) {
            ConstCounter::new(s.cost_micro_usd as f64 / 1e6)
                .encode(family.encode_family(&labels(k))?)?;
        }
        Ok(())
    }
}
