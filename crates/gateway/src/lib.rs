//! The model gateway: agents call models through Berth, never with keys of their own.
//!
//! Every sandbox gets `ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL` and
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` pointing at its own listener's `/gateway/{api}`, and a key
//! ([`keys::SessionKeys`]) that names the sandbox and means nothing anywhere else. A call is
//! parsed just enough to route it ([`protocol`]: the model, whether it streams), checked against
//! the caller's rate limits and token budgets ([`limits`]), and sent to the first upstream that
//! serves the model with one of its pooled credentials ([`pool`]); a credential that is rate
//! limited or refused cools down and the call moves to another credential or a fallback
//! upstream before the agent sees anything. When every credential is cooling, the call waits
//! for one (bounded by `queue_timeout_secs`). The answer streams back unbuffered; its usage is
//! read as it passes ([`usage`]) and recorded through the [`Meter`] (a `gen_ai` span in the
//! invocation's trace, the usage tables, Prometheus).
//!
//! The gateway passes requests through: an upstream speaks the API the agent speaks. It does
//! not translate between APIs.
//!
//! No HTTP framework here: `berth_server::gateway_api` extracts the request and streams the
//! answer.

pub mod config;
pub mod keys;
pub mod limits;
pub mod pool;
pub mod protocol;
pub mod usage;

pub use config::{Config, ConfigError};
pub use pool::SecretValue;
pub use protocol::Protocol;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use http::{HeaderMap, HeaderName, Method, Response, StatusCode, header};
use pool::{Pick, Pools};
use protocol::{Kind, Refusal};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, warn};
use usage::{Tap, Usage};

/// Where pooled credentials come from: Berth's secrets.
#[async_trait::async_trait]
pub trait Secrets: Send + Sync + 'static {
    /// The current value of each secret named in `names` or under `prefix` that exists.
    async fn load(
        &self,
        names: &[String],
        prefix: Option<&str>,
    ) -> Result<Vec<SecretValue>, String>;
    /// Bumped after every change to any secret.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Where finished calls are accounted.
pub trait Meter: Send + Sync + 'static {
    fn record(&self, call: CallRecord);
}

/// Who is calling: the sandbox's session at the time of the call.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub runtime_id: String,
    pub version: u32,
    pub endpoint: String,
    pub session_id: Option<String>,
    pub actor: Option<String>,
    /// The W3C `traceparent` the agent's call carried (an instrumented SDK sends one).
    pub traceparent: Option<String>,
}

/// One call, as accounted.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub caller: Caller,
    pub protocol: Protocol,
    /// `chat`, `embeddings`, `text_completion`, `count_tokens`.
    pub operation: &'static str,
    /// The model the agent asked for.
    pub requested_model: String,
    /// The model asked of the upstream (a fallback may name another).
    pub model: String,
    pub response_model: Option<String>,
    pub upstream: Option<String>,
    /// The secret name of the credential used (never its value).
    pub credential: Option<String>,
    /// Upstream requests made (retries and fallbacks included).
    pub attempts: u32,
    /// The status the agent got.
    pub status: u16,
    pub streamed: bool,
    pub started: SystemTime,
    /// Time spent waiting for a credential to cool down.
    pub queued: Duration,
    /// From the call's arrival to the answer's first body byte.
    pub first_byte: Option<Duration>,
    pub duration: Duration,
    pub usage: Usage,
    pub error: Option<String>,
}

/// A call as the server extracted it.
pub struct Request {
    pub protocol: Protocol,
    pub method: Method,
    /// The path after `/gateway/{api}`.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub caller: Caller,
}

/// An answer's body: upstream bytes as they arrive.
pub type Body = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The credential health the native API shows.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamStatus {
    pub name: String,
    pub protocol: &'static str,
    pub url: String,
    pub models: Vec<String>,
    pub credentials: Vec<CredentialStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialStatus {
    /// The secret's name.
    pub name: String,
    pub version: u64,
    /// `healthy` or `cooling`.
    pub state: &'static str,
    /// Milliseconds until a cooling credential is tried again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooling_ms: Option<u64>,
    pub in_flight: usize,
}

#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    pools: Arc<Pools>,
    client: reqwest::Client,
    limiter: limits::Limiter,
    meter: Arc<dyn Meter>,
    keys: Arc<keys::SessionKeys>,
    secrets: Arc<dyn Secrets>,
}

/// Request headers passed to an upstream; everything else (the agent's key, cookies, its trace
/// context, `accept-encoding` so usage can be read) stays behind.
const FORWARDED: [&str; 9] = [
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "x-amzn-bedrock-accept",
    "x-amzn-bedrock-trace",
    "x-amzn-bedrock-guardrailidentifier",
    "x-amzn-bedrock-guardrailversion",
];

/// Answer headers not passed back (hop-by-hop).
const HOP: [&str; 4] = ["connection", "keep-alive", "transfer-encoding", "upgrade"];

/// The longest a `Retry-After` may rest a credential.
const MAX_REST: Duration = Duration::from_secs(600);

/// The shortest rest after a refusal, so a provider answering `Retry-After: 0` (or a cooldown
/// configured as 0) is not retried in a tight loop until the queue timeout.
const MIN_REST: Duration = Duration::from_millis(250);

impl Gateway {
    /// A gateway over `cfg`'s upstreams, its pools filled from `secrets` (and refilled whenever
    /// a secret changes, until the process ends), accepting the sandbox keys `keys` issues.
    pub async fn start(
        cfg: Config,
        keys: Arc<keys::SessionKeys>,
        secrets: Arc<dyn Secrets>,
        meter: Arc<dyn Meter>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(600))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| format!("the gateway's HTTP client: {e}"))?;
        let gw = Gateway {
            inner: Arc::new(Inner {
                pools: Pools::new(&cfg),
                limiter: limits::Limiter::new(cfg.limits.clone()),
                cfg,
                client,
                meter,
                keys,
                secrets,
            }),
        };
        gw.reload().await?;
        let mut changes = gw.inner.secrets.changes();
        let weak = Arc::downgrade(&gw.inner);
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(inner) = weak.upgrade() else { break };
                if let Err(e) = (Gateway { inner }).reload().await {
                    warn!(error = %e, "reloading the gateway's credentials");
                }
            }
        });
        Ok(gw)
    }

    /// Reads every upstream's credentials again.
    pub async fn reload(&self) -> Result<(), String> {
        for u in &self.inner.pools.upstreams {
            let values = self
                .inner
                .secrets
                .load(&u.cfg.secrets, u.cfg.secret_prefix.as_deref())
                .await?;
            if values.is_empty() {
                warn!(upstream = %u.cfg.name, "the gateway upstream has no credential (no secret of its names exists)");
            }
            u.replace(values);
        }
        self.inner.pools.wake();
        Ok(())
    }

    pub fn keys(&self) -> &keys::SessionKeys {
        &self.inner.keys
    }

    pub fn limiter(&self) -> &limits::Limiter {
        &self.inner.limiter
    }

    /// Every upstream and its credentials' health.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        let now = Instant::now();
        self.inner
            .pools
            .upstreams
            .iter()
            .map(|u| UpstreamStatus {
                name: u.cfg.name.clone(),
                protocol: u.cfg.protocol.name(),
                url: u.cfg.url.clone(),
                models: u.cfg.models.clone(),
                credentials: u
                    .health(now)
                    .into_iter()
                    .map(|(name, version, cooling, in_flight)| CredentialStatus {
                        name,
                        version,
                        state: if cooling.is_some() {
                            "cooling"
                        } else {
                            "healthy"
                        },
                        cooling_ms: cooling.map(|d| d.as_millis() as u64),
                        in_flight,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Serves one call: a refusal in the API's shape, or the upstream's answer streaming.
    pub async fn forward(&self, req: Request) -> Response<Body> {
        let arrived = Instant::now();
        let started = SystemTime::now();
        let protocol = req.protocol;
        let mut record = CallRecord {
            caller: req.caller.clone(),
            protocol,
            operation: "chat",
            requested_model: String::new(),
            model: String::new(),
            response_model: None,
            upstream: None,
            credential: None,
            attempts: 0,
            status: 0,
            streamed: false,
            started,
            queued: Duration::ZERO,
            first_byte: None,
            duration: Duration::ZERO,
            usage: Usage::default(),
            error: None,
        };
        let refuse = |mut record: CallRecord, r: Refusal| {
            record.status = r.status.as_u16();
            record.error = Some(r.message.clone());
            record.duration = arrived.elapsed();
            self.inner.meter.record(record);
            full(protocol.refusal(&r))
        };
        let parsed = match protocol.parse(&req.path, &req.body) {
            Ok(p) => p,
            Err(r) => return refuse(record, r),
        };
        record.operation = parsed.operation;
        record.requested_model = parsed.model.clone();
        record.model = parsed.model.clone();
        record.streamed = parsed.stream;
        let c = &req.caller;
        if let Err(m) = self
            .inner
            .limiter
            .admit(&c.runtime_id, c.actor.as_deref(), started)
        {
            let r = Refusal::new(StatusCode::TOO_MANY_REQUESTS, Kind::RateLimited, m);
            return refuse(record, r);
        }
        let steps = self.inner.pools.route(protocol, &parsed.model);
        if steps.is_empty() {
            let r = Refusal::new(
                StatusCode::NOT_FOUND,
                Kind::NotFound,
                format!(
                    "no {} upstream of this Berth serves model {:?}",
                    protocol.name(),
                    parsed.model
                ),
            );
            return refuse(record, r);
        }
        let body = protocol.ask_for_usage(&parsed, req.body.clone());
        let deadline = arrived + self.inner.cfg.queue_timeout();
        let mut avoid: Vec<(String, String)> = Vec::new();
        let mut last: Option<(Response<Bytes>, String)> = None;
        // Failures other than rate limits (which only wait, bounded by the queue timeout).
        let mut failures = 0;
        loop {
            let woken = self.inner.pools.woken();
            let now = Instant::now();
            let lease = match self.inner.pools.pick(&steps, &avoid, now) {
                Pick::Lease(l) => l,
                Pick::CoolingUntil(t) if t < deadline => {
                    let wait_from = Instant::now();
                    tokio::select! {
                        _ = tokio::time::sleep_until(t.into()) => {}
                        _ = woken => {}
                    }
                    record.queued += wait_from.elapsed();
                    continue;
                }
                Pick::CoolingUntil(_) => {
                    let r = Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        Kind::RateLimited,
                        format!(
                            "every credential for model {:?} is rate limited beyond the gateway's \
                             {} s queue timeout; retry later",
                            parsed.model, self.inner.cfg.queue_timeout_secs
                        ),
                    );
                    return refuse(record, r);
                }
                Pick::Empty => {
                    let r = Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Kind::Unavailable,
                        format!(
                            "the upstream for model {:?} has no credential configured",
                            parsed.model
                        ),
                    );
                    return refuse(record, r);
                }
                Pick::Exhausted => break,
            };
            if failures >= self.inner.cfg.max_attempts {
                break;
            }
            record.attempts += 1;
            let model = lease.model.clone().unwrap_or_else(|| parsed.model.clone());
            let (path, body) = match &lease.model {
                Some(m) => protocol.with_model(&req.path, &body, m),
                None => (req.path.clone(), body.clone()),
            };
            record.model = model;
            record.upstream = Some(lease.upstream.cfg.name.clone());
            record.credential = Some(lease.name.clone());
            let sent = self
                .send(
                    &lease,
                    &req.method,
                    &path,
                    req.query.as_deref(),
                    &req.headers,
                    body,
                )
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(e) => {
                    debug!(upstream = %lease.upstream.cfg.name, error = %e, "gateway upstream unreachable");
                    avoid.push((lease.upstream.cfg.name.clone(), lease.name.clone()));
                    failures += 1;
                    let r = Refusal::new(StatusCode::BAD_GATEWAY, Kind::Unavailable, e);
                    last = Some((protocol.refusal(&r), r.message));
                    continue;
                }
            };
            let status = resp.status();
            let rest = match status.as_u16() {
                429 | 529 => Some(
                    retry_after(resp.headers())
                        .unwrap_or(Duration::from_secs(lease.upstream.cfg.cooldown_secs)),
                ),
                401 | 403 => Some(Duration::from_secs(lease.upstream.cfg.auth_cooldown_secs)),
                _ => None,
            };
            let retry = rest.is_some() || matches!(status.as_u16(), 500 | 502 | 503 | 504);
            if !retry {
                return self.stream(resp, lease, record, arrived);
            }
            if let Some(rest) = rest {
                debug!(upstream = %lease.upstream.cfg.name, credential = %lease.name, %status, ?rest, "gateway credential cools down");
                lease.cool(rest.clamp(MIN_REST, MAX_REST));
            }
            if status.as_u16() != 429 && status.as_u16() != 529 {
                avoid.push((lease.upstream.cfg.name.clone(), lease.name.clone()));
                failures += 1;
            }
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut failed = Response::new(bytes);
            *failed.status_mut() = status;
            *failed.headers_mut() = answer_headers(&headers);
            last = Some((failed, format!("upstream answered {status}")));
            drop(lease);
        }
        match last {
            Some((resp, error)) => {
                record.status = resp.status().as_u16();
                record.error = Some(error);
                record.duration = arrived.elapsed();
                self.inner.meter.record(record);
                full(resp)
            }
            None => {
                let r = Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Kind::Unavailable,
                    "no upstream could take the request",
                );
                refuse(record, r)
            }
        }
    }

    async fn send(
        &self,
        lease: &pool::Lease,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, String> {
        let cfg = &lease.upstream.cfg;
        let mut url = format!("{}{path}", cfg.url.trim_end_matches('/'));
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(q);
        }
        let mut up = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(body)
            .map_err(|e| format!("{url}: {e}"))?;
        for name in FORWARDED {
            for v in headers.get_all(name) {
                up.headers_mut()
                    .append(HeaderName::from_static(name), v.clone());
            }
        }
        cfg.protocol
            .authorize(&mut up, &lease.value, cfg.region.as_deref())
            .map_err(|e| format!("credential {}: {e}", lease.name))?;
        let up = reqwest::Request::try_from(up).map_err(|e| format!("{url}: {e}"))?;
        self.inner
            .client
            .execute(up)
            .await
            .map_err(|e| format!("upstream {} unreachable: {e}", cfg.name))
    }

    /// The upstream's answer, streamed to the agent through the usage tap.
    fn stream(
        &self,
        resp: reqwest::Response,
        lease: pool::Lease,
        mut record: CallRecord,
        arrived: Instant,
    ) -> Response<Body> {
        record.status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let tap = Tap::new(content_type);
        let mut out = Response::new(());
        *out.status_mut() = resp.status();
        *out.headers_mut() = answer_headers(&headers);
        let metered = Metered {
            inner: resp
                .bytes_stream()
                .map(|r| r.map_err(std::io::Error::other))
                .boxed(),
            tap: Some(tap),
            headers,
            record: Some(record),
            arrived,
            gateway: self.clone(),
            lease: Some(lease),
        };
        out.map(|()| metered.boxed())
    }

    fn finish(&self, mut record: CallRecord) {
        let u = &record.usage;
        let tokens = u.input_tokens.unwrap_or(0) + u.output_tokens.unwrap_or(0);
        self.inner.limiter.spend(
            &record.caller.runtime_id,
            record.caller.actor.as_deref(),
            tokens,
            SystemTime::now(),
        );
        if record.status >= 400 && record.error.is_none() {
            record.error = Some(format!("upstream answered {}", record.status));
        }
        self.inner.meter.record(record);
    }
}

fn full(resp: Response<Bytes>) -> Response<Body> {
    resp.map(|b| futures::stream::once(async move { Ok(b) }).boxed())
}

fn answer_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (k, v) in h {
        if !HOP.contains(&k.as_str()) {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// `retry-after-ms` (OpenAI) or `retry-after` in seconds.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|s| s.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_millis(ms as u64));
    }
    get("retry-after")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The upstream's body passing through the usage tap; the call is accounted when the stream
/// ends, fails, or is dropped (the agent went away).
struct Metered {
    inner: Body,
    tap: Option<Tap>,
    headers: HeaderMap,
    record: Option<CallRecord>,
    arrived: Instant,
    gateway: Gateway,
    lease: Option<pool::Lease>,
}

impl Metered {
    fn done(&mut self, error: Option<String>) {
        self.lease.take();
        let (Some(mut record), Some(tap)) = (self.record.take(), self.tap.take()) else {
            return;
        };
        record.usage = tap.finish(&self.headers);
        record.response_model = record.usage.response_model.clone();
        record.duration = self.arrived.elapsed();
        if error.is_some() {
            record.error = error;
        }
        self.gateway.finish(record);
    }
}

impl Stream for Metered {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                let arrived = self.arrived;
                if let Some(r) = self.record.as_mut()
                    && r.first_byte.is_none()
                {
                    r.first_byte = Some(arrived.elapsed());
                }
                if let Some(tap) = self.tap.as_mut() {
                    tap.push(chunk);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let e = format!("the upstream's answer broke off: {e}");
                self.done(Some(e));
            }
            Poll::Ready(None) => self.done(None),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let left = "the agent closed the connection before the answer ended";
        // A whole (JSON) answer was generated, and is billed, before its first byte came: its
        // usage is at its end, so the rest is read for it in a task of its own (the agent gets
        // none of it), or an agent could spend tokens unaccounted by hanging up early. A stream's
        // generation stops with it; what it used so far is counted.
        if let (Some(Tap::Json(_)), Ok(rt)) = (&self.tap, tokio::runtime::Handle::try_current()) {
            record.error = Some(left.to_owned());
            let mut rest = Metered {
                inner: std::mem::replace(&mut self.inner, futures::stream::empty().boxed()),
                tap: self.tap.take(),
                headers: std::mem::take(&mut self.headers),
                record: None,
                arrived: self.arrived,
                gateway: self.gateway.clone(),
                lease: self.lease.take(),
            };
            rt.spawn(async move {
                while let Some(Ok(chunk)) = rest.inner.next().await {
                    if let Some(tap) = rest.tap.as_mut() {
                        tap.push(&chunk);
                    }
                    if matches!(rest.tap, Some(Tap::Off(_))) {
                        break;
                    }
                }
                rest.record = Some(record);
                rest.done(None);
            });
            return;
        }
        self.record = Some(record);
        self.done(Some(left.into()));
    }
}
