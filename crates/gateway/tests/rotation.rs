//! Acceptance (issue 16, 2): credential rotation under traffic (and, last, rate limits and
//! budgets). Two pooled credentials in front
//! of a real HTTP provider double (Anthropic Messages, JSON and SSE); the double starts answering
//! 429 for one mid-traffic, lets it back, then revokes it (401); the pool is rotated (the
//! revoked secret replaced, a third added). 1,000 requests, every fourth streaming, 20 at a
//! time: every one succeeds with its whole answer, the cooled credential serves again after its
//! cooldown, and when every credential is rate limited requests wait instead of failing.

#![allow(clippy::unwrap_used)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_gateway::{CallRecord, Caller, Config, Gateway, Meter, Protocol, SecretValue, Secrets};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Limited,
    Revoked,
}

#[derive(Default)]
struct Double {
    modes: Mutex<HashMap<String, Mode>>,
    /// Per key: (served, refused).
    counts: Mutex<HashMap<String, (u64, u64)>>,
}

impl Double {
    fn set(&self, key: &str, mode: Mode) {
        self.modes.lock().unwrap().insert(key.into(), mode);
    }
    fn counts(&self, key: &str) -> (u64, u64) {
        self.counts
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or_default()
    }
}

async fn messages(State(d): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mode = d.modes.lock().unwrap().get(&key).copied();
    let refuse = |status, kind: &str, retry: bool| {
        d.counts.lock().unwrap().entry(key.clone()).or_default().1 += 1;
        let mut r = (
            status,
            format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"no"}}}}"#),
        )
            .into_response();
        if retry {
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
        }
        r
    };
    match mode {
        None | Some(Mode::Revoked) => {
            return refuse(StatusCode::UNAUTHORIZED, "authentication_error", false);
        }
        Some(Mode::Limited) => {
            return refuse(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", true);
        }
        Some(Mode::Ok) => {}
    }
    d.counts.lock().unwrap().entry(key.clone()).or_default().0 += 1;
    let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
    if req["stream"] == true {
        let events = [
            r#"{"type":"message_start","message":{"model":"m","usage":{"input_tokens":10,"output_tokens":1}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hel"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}"#,
            r#"{"type":"message_delta","usage":{"output_tokens":2}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let chunks = events
            .into_iter()
            .map(|e| Ok::<_, std::io::Error>(Bytes::from(format!("event: x\ndata: {e}\n\n"))));
        return (
            [("content-type", "text/event-stream")],
            axum::body::Body::from_stream(futures::stream::iter(chunks)),
        )
            .into_response();
    }
    (
        [("content-type", "application/json")],
        r#"{"type":"message","model":"m","content":[{"type":"text","text":"hello"}],"usage":{"input_tokens":10,"output_tokens":2}}"#,
    )
        .into_response()
}

struct Vault {
    values: Mutex<Vec<SecretValue>>,
    changes: watch::Sender<u64>,
}

impl Vault {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            values: Mutex::new(Vec::new()),
            changes: watch::channel(0).0,
        })
    }

    fn put(&self, name: &str, value: &str) {
        {
            let mut v = self.values.lock().unwrap();
            let version = v
                .iter()
                .find(|s| s.name == name)
                .map_or(1, |s| s.version + 1);
            v.retain(|s| s.name != name);
            v.push(SecretValue {
                name: name.into(),
                version,
                value: value.into(),
            });
        }
        self.changes.send_modify(|g| *g += 1);
    }
}

struct Shared(Arc<Vault>);

#[async_trait::async_trait]
impl Secrets for Shared {
    async fn load(&self, _: &[String], prefix: Option<&str>) -> Result<Vec<SecretValue>, String> {
        let p = prefix.unwrap_or("");
        let mut v: Vec<SecretValue> = self
            .0
            .values
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name.starts_with(p))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.0.changes.subscribe()
    }
}

#[derive(Default)]
struct Records(Mutex<Vec<CallRecord>>, watch::Sender<usize>);

impl Meter for Records {
    fn record(&self, call: CallRecord) {
        let n = {
            let mut calls = self.0.lock().unwrap();
            calls.push(call);
            calls.len()
        };
        self.1.send_replace(n);
    }
}

/// Sends `n` requests 20 at a time (every fourth streaming); every one must succeed with its
/// whole answer.
async fn traffic(gw: &Gateway, n: usize) {
    let results: Vec<Result<(), String>> = futures::stream::iter(0..n)
        .map(|i| {
            let gw = gw.clone();
            async move {
                let stream = i % 4 == 0;
                let body = format!(
                    r#"{{"model":"claude-x","max_tokens":5,"stream":{stream},"messages":[]}}"#
                );
                let caller = Caller {
                    runtime_id: "rt".into(),
                    version: 1,
                    ..Caller::default()
                };
                let (status, text) = send(&gw, body, caller).await?;
                let complete = if stream {
                    text.contains("message_stop")
                } else {
                    text.contains("hello")
                };
                if status != StatusCode::OK || !complete {
                    return Err(format!("request {i}: {status} {text}"));
                }
                Ok(())
            }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed, first: {}",
        failed.len(),
        failed[0]
    );
}

fn cooling(gw: &Gateway, name: &str) -> bool {
    gw.status()[0]
        .credentials
        .iter()
        .any(|c| c.name == name && c.state == "cooling")
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The provider double on a port from the OS; returns it and its base URL.
async fn start_double() -> (Arc<Double>, String) {
    let double = Arc::new(Double::default());
    let app = axum::Router::new()
        .route("/v1/messages", post(messages))
        .with_state(double.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (double, url)
}

/// A gateway over `cfg` whose credentials come from `vault`, recording its calls.
async fn start_gateway(cfg: Config, vault: &Arc<Vault>) -> (Gateway, Arc<Records>) {
    let records = Arc::new(Records::default());
    let gw = Gateway::start(
        cfg,
        Arc::new(berth_gateway::keys::SessionKeys::new()),
        Arc::new(Shared(vault.clone())),
        records.clone(),
    )
    .await
    .unwrap();
    (gw, records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_requests_survive_rate_limits_revocation_and_rotation() {
    let (double, url) = start_double().await;

    let (a, b) = ("key-a", "key-b");
    double.set(a, Mode::Ok);
    double.set(b, Mode::Ok);
    let vault = Vault::new();
    vault.put("pool/a", a);
    vault.put("pool/b", b);
    let cfg = Config::parse(&format!(
        r#"
        queue_timeout_secs = 30
        [[upstreams]]
        name = "anthropic"
        protocol = "anthropic"
        url = "{url}"
        secret_prefix = "pool/"
        cooldown_secs = 1
        auth_cooldown_secs = 3600
        "#
    ))
    .unwrap();
    let (gw, records) = start_gateway(cfg, &vault).await;

    // 1. Both credentials serve.
    traffic(&gw, 250).await;
    let (a1, b1) = (double.counts(a).0, double.counts(b).0);
    assert!(a1 > 0 && b1 > 0, "load spreads: {a1} {b1}");

    // 2. The double rate limits A mid-traffic: its requests move to B, none fails.
    double.set(a, Mode::Limited);
    traffic(&gw, 250).await;
    assert!(double.counts(a).1 > 0, "A was rate limited");

    // 3. A is let back: once its cooldown (Retry-After: 1) ends it serves again.
    double.set(a, Mode::Ok);
    until("A's cooldown to end", || !cooling(&gw, "pool/a")).await;
    let before = double.counts(a).0;
    traffic(&gw, 250).await;
    assert!(
        double.counts(a).0 > before,
        "the cooled credential returned"
    );

    // 4. A is revoked (401): it rests for the auth cooldown, traffic goes on through B.
    double.set(a, Mode::Revoked);
    traffic(&gw, 150).await;
    assert!(cooling(&gw, "pool/a"));

    // 5. Rotation: A's secret replaced by a new key, a third credential added.
    let (a2, c) = ("key-a2", "key-c");
    double.set(a2, Mode::Ok);
    double.set(c, Mode::Ok);
    vault.put("pool/a", a2);
    vault.put("pool/c", c);
    until("the pool to reload", || {
        gw.status()[0].credentials.len() == 3
    })
    .await;
    traffic(&gw, 100).await;
    assert!(double.counts(a2).0 > 0 && double.counts(c).0 > 0);

    let recs = records.0.lock().unwrap();
    assert_eq!(recs.len(), 1000);
    assert!(recs.iter().all(|r| r.status == 200 && r.error.is_none()));
    let streamed: Vec<&CallRecord> = recs.iter().filter(|r| r.streamed).collect();
    let phases = [250usize, 250, 250, 150, 100];
    assert_eq!(
        streamed.len(),
        phases.iter().map(|n| n.div_ceil(4)).sum::<usize>()
    );
    assert!(
        streamed
            .iter()
            .all(|r| r.usage.input_tokens == Some(10) && r.usage.output_tokens == Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_every_credential_is_limited_requests_wait_then_succeed() {
    let (double, url) = start_double().await;
    double.set("k1", Mode::Limited);
    double.set("k2", Mode::Limited);
    let vault = Vault::new();
    vault.put("p/1", "k1");
    vault.put("p/2", "k2");
    let cfg = Config::parse(&format!(
        "[[upstreams]]\nname='a'\nprotocol='anthropic'\nurl='{url}'\nsecret_prefix='p/'\n"
    ))
    .unwrap();
    let (gw, records) = start_gateway(cfg, &vault).await;
    let sent = tokio::spawn({
        let gw = gw.clone();
        async move { traffic(&gw, 20).await }
    });
    until("both credentials to be limited", || {
        double.counts("k1").1 > 0 && double.counts("k2").1 > 0
    })
    .await;
    double.set("k1", Mode::Ok);
    double.set("k2", Mode::Ok);
    sent.await.unwrap();
    let recs = records.0.lock().unwrap();
    assert_eq!(recs.len(), 20);
    assert!(
        recs.iter().any(|r| !r.queued.is_zero()),
        "some requests waited"
    );
}

/// One Messages call through the gateway: its answer, the body still streaming.
async fn call(
    gw: &Gateway,
    body: impl Into<Bytes>,
    caller: Caller,
) -> http::Response<berth_gateway::Body> {
    gw.forward(berth_gateway::Request {
        protocol: Protocol::Anthropic,
        method: http::Method::POST,
        path: "/v1/messages".into(),
        query: None,
        headers: HeaderMap::new(),
        body: body.into(),
        caller,
    })
    .await
}

/// One Messages call through the gateway, its body read to the end: its status and body.
async fn send(gw: &Gateway, body: String, caller: Caller) -> Result<(StatusCode, String), String> {
    let resp = call(gw, body, caller).await;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut all = Vec::new();
    while let Some(chunk) = body.next().await {
        all.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    Ok((status, String::from_utf8_lossy(&all).into_owned()))
}

/// One non-streaming call by `actor` of runtime `rt`; its status and body.
async fn call_as(gw: &Gateway, rt: &str, actor: &str) -> (StatusCode, String) {
    let caller = Caller {
        runtime_id: rt.into(),
        version: 1,
        actor: Some(actor.into()),
        ..Caller::default()
    };
    let body = r#"{"model":"claude-x","max_tokens":5,"messages":[]}"#.to_owned();
    send(gw, body, caller).await.unwrap()
}

/// A gateway with one upstream (the double, one credential that serves) and `limits` (TOML).
async fn limited_gateway(limits: &str) -> (Gateway, Arc<Records>) {
    let (double, url) = start_double().await;
    double.set("k", Mode::Ok);
    let vault = Vault::new();
    vault.put("p/k", "k");
    let cfg = Config::parse(&format!(
        "[[upstreams]]\nname='a'\nprotocol='anthropic'\nurl='{url}'\nsecret_prefix='p/'\n{limits}"
    ))
    .unwrap();
    start_gateway(cfg, &vault).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_token_budgets_answer_the_apis_429() {
    let (gw, _) = limited_gateway(
        "[limits]\nactor_requests_per_minute = 2\n[limits.runtimes.small]\ntokens_per_day = 12\n",
    )
    .await;
    assert_eq!(call_as(&gw, "rt", "alice").await.0, StatusCode::OK);
    assert_eq!(call_as(&gw, "rt", "alice").await.0, StatusCode::OK);
    let (status, body) = call_as(&gw, "rt", "alice").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        body.contains("rate_limit_error") && body.contains("user alice"),
        "{body}"
    );
    assert_eq!(call_as(&gw, "rt", "bob").await.0, StatusCode::OK);
    // One call spends the runtime's 12 tokens (10 in, 2 out): the next is refused.
    assert_eq!(call_as(&gw, "small", "carol").await.0, StatusCode::OK);
    let (status, body) = call_as(&gw, "small", "dave").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("budget of 12 tokens"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_agent_hung_up_on_is_still_accounted() {
    let (gw, records) = limited_gateway("[limits.runtimes.small]\ntokens_per_day = 12\n").await;
    let mut recorded = records.1.subscribe();
    // The agent takes the answer's head and hangs up before its body (where the usage is).
    let caller = Caller {
        runtime_id: "small".into(),
        version: 1,
        ..Caller::default()
    };
    let resp = call(
        &gw,
        r#"{"model":"claude-x","max_tokens":5,"messages":[]}"#,
        caller,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    recorded.wait_for(|n| *n == 1).await.unwrap();
    let call = records.0.lock().unwrap()[0].clone();
    assert_eq!(
        (call.usage.input_tokens, call.usage.output_tokens),
        (Some(10), Some(2))
    );
    assert!(
        call.error
            .as_deref()
            .unwrap_or("")
            .contains("closed the connection"),
        "{:?}",
        call.error
    );
    // Its 12 tokens are spent: the runtime's next call is refused.
    let (status, body) = call_as(&gw, "small", "dave").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("budget of 12 tokens"), "{body}");
}
