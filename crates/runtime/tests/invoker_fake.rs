//! The invoker's layer stack against a fake control plane and a fake session backend.
#![allow(clippy::unwrap_used)]

mod fake_backend;

use berth_api::ApiError;
use berth_control::RouteRequest;
use berth_control::health::{Outcome, Refusal};
use berth_runtime::invoker::{ControlPlane, Error, Invocation, Invoker};
use berth_runtime::session::{Error as SessionError, Target};
use fake_backend::{RUNTIME_ID, options, sessions, target};
use futures::StreamExt;
use http::HeaderMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SID: &str = "session-0123456789012345678901234567890";

/// Routes every new session to one version and keeps what health was told.
struct FakeControl {
    target: Target,
    refuse: bool,
    routed: AtomicUsize,
    /// Qualifiers of live sessions checked with the control plane.
    checked: AtomicUsize,
    /// The actor and user id of the last routing.
    seen: Mutex<Option<(Option<String>, Option<String>)>>,
    records: Mutex<Vec<(String, String, u32, Outcome)>>,
    refusals: Mutex<Vec<(String, String, u32, Refusal)>>,
}

impl FakeControl {
    fn new(version: u32) -> Arc<Self> {
        Arc::new(Self {
            target: target(version),
            refuse: false,
            routed: AtomicUsize::new(0),
            checked: AtomicUsize::new(0),
            seen: Mutex::new(None),
            records: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
        })
    }

    fn records(&self) -> Vec<(String, String, u32, Outcome)> {
        self.records.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ControlPlane for FakeControl {
    async fn route(
        &self,
        runtime_id: &str,
        _qualifier: Option<&str>,
        req: &RouteRequest<'_>,
    ) -> Result<Target, ApiError> {
        self.routed.fetch_add(1, Ordering::SeqCst);
        *self.seen.lock().unwrap() =
            Some((req.actor.map(str::to_owned), req.user_id.map(str::to_owned)));
        if self.refuse {
            return Err(ApiError::not_found(format!(
                "no agent runtime {runtime_id}"
            )));
        }
        Ok(self.target.clone())
    }

    /// Knows one more endpoint than the session's, `canary`.
    async fn check_qualifier(&self, runtime_id: &str, qualifier: &str) -> Result<(), ApiError> {
        self.checked.fetch_add(1, Ordering::SeqCst);
        if qualifier == "canary" {
            return Ok(());
        }
        Err(ApiError::not_found(format!(
            "agent runtime {runtime_id} has no endpoint or version {qualifier}"
        )))
    }

    fn record(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
        outcome: Outcome,
        _elapsed: Duration,
    ) {
        self.records.lock().unwrap().push((
            runtime_id.to_owned(),
            endpoint.to_owned(),
            version,
            outcome,
        ));
    }

    fn refused(&self, runtime_id: &str, endpoint: &str, version: u32, what: Refusal) {
        self.refusals.lock().unwrap().push((
            runtime_id.to_owned(),
            endpoint.to_owned(),
            version,
            what,
        ));
    }
}

fn invocation<'a>(headers: &'a HeaderMap, body: &'static [u8]) -> Invocation<'a> {
    Invocation {
        runtime_id: RUNTIME_ID,
        qualifier: None,
        session_id: SID,
        user_id: Some("alice"),
        actor: Some("AKIAEXAMPLE"),
        request_id: "req-1",
        headers,
        action: berth_runtime::invoker::Action::Invoke(bytes::Bytes::from_static(body)),
        forwarded: false,
    }
}

async fn body_of(answer: berth_runtime::invoker::Answer) -> String {
    let mut stream = answer.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn only_a_new_session_is_routed_and_every_call_is_metered() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let control = FakeControl::new(3);
    let invoker = Invoker::new(control.clone(), s.clone());
    let headers = HeaderMap::new();

    let first = invoker.invoke(invocation(&headers, b"one")).await.unwrap();
    assert_eq!(body_of(first).await, format!("{SID}:one"));
    let second = invoker.invoke(invocation(&headers, b"two")).await.unwrap();
    assert_eq!(body_of(second).await, format!("{SID}:two"));

    assert_eq!(control.routed.load(Ordering::SeqCst), 1);
    assert_eq!(record.started.load(Ordering::SeqCst), 1);
    assert_eq!(
        *control.seen.lock().unwrap(),
        Some((Some("AKIAEXAMPLE".into()), Some("alice".into())))
    );
    // Recorded when each body ended, against the endpoint the caller named (DEFAULT here).
    let ok = (RUNTIME_ID.to_owned(), "DEFAULT".to_owned(), 3, Outcome::Ok);
    assert_eq!(control.records(), vec![ok.clone(), ok]);
}

#[tokio::test]
async fn a_live_sessions_qualifier_is_checked_only_when_it_is_not_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let control = FakeControl::new(3);
    let invoker = Invoker::new(control.clone(), s);
    let headers = HeaderMap::new();
    let with = |q: &'static str| Invocation {
        qualifier: Some(q),
        ..invocation(&headers, b"x")
    };
    invoker.invoke(invocation(&headers, b"x")).await.unwrap();
    // Its own endpoint and version: no lookup.
    invoker.invoke(with("DEFAULT")).await.unwrap();
    invoker.invoke(with("3")).await.unwrap();
    assert_eq!(control.checked.load(Ordering::SeqCst), 0);
    // Another endpoint that exists: looked up, and the session keeps its version.
    invoker.invoke(with("canary")).await.unwrap();
    match invoker.invoke(with("nope")).await {
        Err(Error::Route(e)) => assert!(e.to_string().contains("nope"), "{e}"),
        other => panic!("expected ResourceNotFound, got {:?}", other.err()),
    }
    assert_eq!(control.checked.load(Ordering::SeqCst), 2);
    assert_eq!(control.routed.load(Ordering::SeqCst), 1);
    assert_eq!(record.started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unauthenticated_call_reaches_neither_routing_nor_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let control = FakeControl::new(1);
    let invoker = Invoker::new(control.clone(), s);
    let headers = HeaderMap::new();
    let mut inv = invocation(&headers, b"x");
    inv.actor = None;
    assert!(matches!(
        invoker.invoke(inv).await,
        Err(Error::Unauthenticated)
    ));
    assert_eq!(control.routed.load(Ordering::SeqCst), 0);
    assert_eq!(record.started.load(Ordering::SeqCst), 0);
    assert!(control.records().is_empty());
}

#[tokio::test]
async fn an_agent_4xx_is_a_user_error_and_not_a_health_error() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _record, _shutdown) = sessions(options(dir.path()));
    let control = FakeControl::new(2);
    let invoker = Invoker::new(control.clone(), s);
    let headers = HeaderMap::new();
    let answer = invoker
        .invoke(invocation(&headers, b"reject"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(body_of(answer).await, "bad request");
    assert_eq!(
        control.records(),
        vec![(RUNTIME_ID.to_owned(), "DEFAULT".to_owned(), 2, Outcome::Ok)]
    );
    assert_eq!(
        *control.refusals.lock().unwrap(),
        vec![(
            RUNTIME_ID.to_owned(),
            "DEFAULT".to_owned(),
            2,
            Refusal::UserError
        )]
    );
    // A 5xx or a success is not one.
    let answer = invoker.invoke(invocation(&headers, b"ok")).await.unwrap();
    body_of(answer).await;
    assert_eq!(control.refusals.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_routing_refusal_passes_through_unrecorded() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let control = Arc::new(FakeControl {
        refuse: true,
        ..Arc::into_inner(FakeControl::new(1)).unwrap()
    });
    let invoker = Invoker::new(control.clone(), s);
    let headers = HeaderMap::new();
    match invoker.invoke(invocation(&headers, b"x")).await {
        Err(Error::Route(e)) => assert!(e.to_string().contains("no agent runtime"), "{e}"),
        other => panic!("expected a routing error, got {:?}", other.err()),
    }
    assert_eq!(record.started.load(Ordering::SeqCst), 0);
    assert!(control.records().is_empty());
}

#[tokio::test]
async fn an_agent_that_cannot_start_counts_against_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    record.fail_start.store(true, Ordering::SeqCst);
    let control = FakeControl::new(7);
    let invoker = Invoker::new(control.clone(), s);
    let headers = HeaderMap::new();
    assert!(matches!(
        invoker.invoke(invocation(&headers, b"x")).await,
        Err(Error::Open(SessionError::Start(_)))
    ));
    assert_eq!(
        control.records(),
        vec![(
            RUNTIME_ID.to_owned(),
            "DEFAULT".to_owned(),
            7,
            Outcome::RuntimeClient
        )]
    );
}

#[tokio::test]
async fn a_quota_refusal_says_nothing_about_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.quotas.runtime_live = 0;
    let (s, record, _shutdown) = sessions(opts);
    let control = FakeControl::new(1);
    let invoker = Invoker::new(control.clone(), s);
    let headers = HeaderMap::new();
    assert!(matches!(
        invoker.invoke(invocation(&headers, b"x")).await,
        Err(Error::Open(SessionError::QuotaExceeded(_)))
    ));
    assert_eq!(record.started.load(Ordering::SeqCst), 0);
    assert!(control.records().is_empty());
    // It is a throttle of the version it was routed to (AgentCore's Throttles).
    assert_eq!(
        *control.refusals.lock().unwrap(),
        vec![(
            RUNTIME_ID.to_owned(),
            "DEFAULT".to_owned(),
            1,
            Refusal::Throttled
        )]
    );
}

#[tokio::test]
async fn an_agent_5xx_is_metered_as_an_agent_error() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _record, _shutdown) = sessions(options(dir.path()));
    let control = FakeControl::new(1);
    let invoker = Invoker::new(control.clone(), s);
    let headers = HeaderMap::new();
    let answer = invoker.invoke(invocation(&headers, b"fail")).await.unwrap();
    assert_eq!(answer.status(), 500);
    assert_eq!(body_of(answer).await, "boom");
    assert_eq!(
        control.records(),
        vec![(
            RUNTIME_ID.to_owned(),
            "DEFAULT".to_owned(),
            1,
            Outcome::AgentError
        )]
    );
}

#[tokio::test]
async fn a_crashed_agent_fails_the_call_and_the_next_call_opens_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let control = FakeControl::new(1);
    let invoker = Invoker::new(control.clone(), s);
    let headers = HeaderMap::new();
    body_of(invoker.invoke(invocation(&headers, b"a")).await.unwrap()).await;
    record.agents.lock().unwrap()[0].crash();
    let again = invoker.invoke(invocation(&headers, b"b")).await.unwrap();
    assert_eq!(body_of(again).await, format!("{SID}:b"));
    assert_eq!(record.started.load(Ordering::SeqCst), 2);
    assert_eq!(control.routed.load(Ordering::SeqCst), 2);
}

/// A trace store that hands every inserted span to the test.
struct SpanTap(tokio::sync::mpsc::UnboundedSender<berth_trace::Span>);

#[async_trait::async_trait]
impl berth_trace::TraceStore for SpanTap {
    async fn insert(
        &self,
        spans: &[berth_trace::Span],
        _logs: &[berth_trace::LogRecord],
    ) -> Result<(), berth_trace::Error> {
        for s in spans {
            let _ = self.0.send(s.clone());
        }
        Ok(())
    }
    async fn trace(
        &self,
        _: &str,
        _: Option<&str>,
    ) -> Result<Vec<berth_trace::Span>, berth_trace::Error> {
        Ok(Vec::new())
    }
    async fn list(
        &self,
        _: &berth_trace::TraceFilter,
    ) -> Result<berth_trace::TracePage, berth_trace::Error> {
        Ok(berth_trace::TracePage {
            traces: Vec::new(),
            next_token: None,
        })
    }
    async fn session_spans(
        &self,
        _: Option<&str>,
        _: &str,
    ) -> Result<Vec<berth_trace::Span>, berth_trace::Error> {
        Ok(Vec::new())
    }
    async fn trace_logs(&self, _: &str) -> Result<Vec<berth_trace::LogRecord>, berth_trace::Error> {
        Ok(Vec::new())
    }
    async fn retain(
        &self,
        _: berth_trace::Retention,
        _: i64,
    ) -> Result<berth_trace::Retained, berth_trace::Error> {
        Ok(Default::default())
    }
    async fn stored_bytes(&self) -> Result<u64, berth_trace::Error> {
        Ok(0)
    }
    async fn usage(
        &self,
        _: &berth_trace::usage::UsageFilter,
    ) -> Result<Vec<berth_trace::usage::UsageRow>, berth_trace::Error> {
        Err(berth_trace::Error::Invalid("no usage here".into()))
    }
    async fn usage_totals(&self) -> Result<Vec<berth_trace::usage::UsageRow>, berth_trace::Error> {
        Err(berth_trace::Error::Invalid("no usage here".into()))
    }
    async fn session_logs(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Vec<berth_trace::LogRecord>, berth_trace::Error> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn berths_span_continues_the_callers_trace_and_parents_the_agents() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _record, _shutdown) = sessions(options(dir.path()));
    let control = FakeControl::new(3);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = berth_trace::SpanSink::start(Arc::new(SpanTap(tx))).unwrap();
    let invoker = Invoker::with_spans(control.clone(), s, Some(sink));

    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    let answer = invoker
        .invoke(invocation(&headers, b"traceparent"))
        .await
        .unwrap();
    let seen = body_of(answer).await;
    // Recorded once the body ended. The session was routed and opened for this call: those
    // steps are its children, recorded after it.
    let span = rx.recv().await.unwrap();
    let route = rx.recv().await.unwrap();
    let start = rx.recv().await.unwrap();
    assert_eq!(
        (route.name.as_str(), start.name.as_str()),
        ("Route", "StartSession")
    );
    for step in [&route, &start] {
        assert_eq!(step.kind, "INTERNAL");
        assert_eq!(step.trace_id, span.trace_id);
        assert_eq!(step.parent_span_id.as_deref(), Some(span.span_id.as_str()));
        assert!(step.start_ns >= span.start_ns && step.end_ns <= span.end_ns);
    }
    assert!(route.end_ns <= start.start_ns);
    // The call's span covers its steps; the fake backend has no warm pool.
    assert_eq!(span.start_ns, route.start_ns);
    assert_eq!(span.attributes["berth.session.start"], "cold");
    assert_eq!(start.attributes["berth.session.start"], "cold");
    let first_byte = &span.events[0];
    assert_eq!(first_byte["name"], "first_byte");
    assert!(first_byte["timeNs"].as_i64().unwrap() >= start.end_ns);
    assert_eq!(span.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(span.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
    assert_eq!(span.name, "InvokeAgentRuntime");
    assert_eq!(span.kind, "SERVER");
    assert_eq!(span.status_code, "OK");
    assert!(span.end_ns >= span.start_ns);
    assert_eq!(span.attribution.runtime_id, RUNTIME_ID);
    assert_eq!(span.attribution.version, 3);
    assert_eq!(span.attribution.endpoint, "DEFAULT");
    assert_eq!(span.attribution.session_id.as_deref(), Some(SID));
    assert_eq!(span.attribution.actor.as_deref(), Some("alice"));
    assert_eq!(span.attributes["http.response.status_code"], 200);
    // The agent's parent is Berth's span, in the caller's trace.
    assert_eq!(
        seen,
        format!("00-0af7651916cd43dd8448eb211c80319c-{}-01", span.span_id)
    );

    // Without a caller's trace, a new one is started.
    let answer = invoker
        .invoke(invocation(&HeaderMap::new(), b"traceparent"))
        .await
        .unwrap();
    let seen = body_of(answer).await;
    let span = rx.recv().await.unwrap();
    assert!(span.parent_span_id.is_none());
    // The session was live: no steps, and it says so.
    assert_eq!(span.attributes["berth.session.start"], "live");
    assert_ne!(span.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(seen, format!("00-{}-{}-01", span.trace_id, span.span_id));
}

#[tokio::test]
async fn an_agent_that_cannot_start_leaves_an_error_span_with_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    record.fail_start.store(true, Ordering::SeqCst);
    let control = FakeControl::new(7);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = berth_trace::SpanSink::start(Arc::new(SpanTap(tx))).unwrap();
    let invoker = Invoker::with_spans(control.clone(), s, Some(sink));
    let headers = HeaderMap::new();
    assert!(invoker.invoke(invocation(&headers, b"x")).await.is_err());
    let span = rx.recv().await.unwrap();
    let route = rx.recv().await.unwrap();
    let start = rx.recv().await.unwrap();
    assert_eq!(route.name, "Route");
    assert_eq!(start.name, "StartSession");
    assert_eq!(start.status_code, "ERROR");
    assert_eq!(span.name, "InvokeAgentRuntime");
    assert_eq!(span.status_code, "ERROR");
    assert!(!span.status_message.is_empty());
    assert_eq!(span.attribution.version, 7);
    assert_eq!(start.parent_span_id.as_deref(), Some(span.span_id.as_str()));
}

#[tokio::test]
async fn a_session_another_node_runs_is_sent_there_unrouted_and_unopened() {
    use berth_runtime::cluster::{Cluster, ClusterOptions};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nodes.db").display());
    let stop = tokio_util::sync::CancellationToken::new();
    let join = |id: &str| {
        let (url, stop) = (url.clone(), stop.clone());
        let options = ClusterOptions {
            node_id: id.into(),
            advertise: Some(format!("http://{id}.test:1")),
            lease: Duration::from_secs(30),
        };
        async move {
            let nodes = berth_store::open_all(&url).await.unwrap().nodes;
            Cluster::join(nodes, options, b"k".to_vec(), stop)
                .await
                .unwrap()
        }
    };
    let (a, b) = (join("a").await, join("b").await);
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let control = FakeControl::new(3);
    let on_b = Invoker::clustered(control.clone(), s.clone(), None, b.clone());
    let headers = HeaderMap::new();
    // a runs the session: b answers where it is, without routing or opening anything.
    a.place(RUNTIME_ID, SID, false).await.unwrap();
    match on_b.invoke(invocation(&headers, b"x")).await {
        Err(Error::Elsewhere(node)) => assert_eq!(node.address, "http://a.test:1"),
        other => panic!("expected Elsewhere, got {:?}", other.err()),
    }
    assert_eq!(control.routed.load(Ordering::SeqCst), 0);
    assert_eq!(record.started.load(Ordering::SeqCst), 0);
    // A call forwarded to b while a owns the session is not taken over.
    let forwarded = || Invocation {
        forwarded: true,
        ..invocation(&headers, b"x")
    };
    assert!(matches!(on_b.invoke(forwarded()).await, Err(Error::Elsewhere(n)) if n.id == "a"));
    // a drains: it releases the session it no longer runs and hands it to b, which takes it.
    a.set_draining(true).await.unwrap();
    assert!(matches!(
        a.place(RUNTIME_ID, SID, false).await.unwrap(),
        berth_runtime::cluster::Placement::Elsewhere(n) if n.id == "b"
    ));
    let forwarded = Invocation {
        forwarded: true,
        ..invocation(&headers, b"x")
    };
    assert_eq!(
        body_of(on_b.invoke(forwarded).await.unwrap()).await,
        format!("{SID}:x")
    );
    assert_eq!(control.routed.load(Ordering::SeqCst), 1);
    // Now live on b: its next calls need no placement.
    on_b.invoke(invocation(&headers, b"y")).await.unwrap();
    stop.cancel();
}

/// The call that opens a session from the warm pool says when it is answered, and only then
/// does the pool's refill start (`Session::answered`; with `spare_defer` an hour, nothing
/// else would start it).
#[tokio::test]
async fn the_call_that_takes_a_warm_agent_releases_the_refill_once_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.warm_pool = 1;
    opts.spare_defer = Duration::from_secs(3600);
    let (s, record, _shutdown) = sessions(opts);
    let mut warming = record.warming.subscribe();
    let control = FakeControl::new(1);
    s.refill(control.target.clone());
    fake_backend::pooled(&s, 1).await;
    let invoker = Invoker::new(control.clone(), s.clone());
    let headers = HeaderMap::new();
    let answer = invoker.invoke(invocation(&headers, b"one")).await.unwrap();
    assert!(s.existing(RUNTIME_ID, SID).unwrap().warm_start());
    assert_eq!(body_of(answer).await, format!("{SID}:one"));
    warming
        .wait_for(|_| record.warmed.load(Ordering::SeqCst) == 2)
        .await
        .unwrap();
}
