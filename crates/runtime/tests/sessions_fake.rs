//! The session supervisor against a fake backend: no sandbox, no privileges needed.
#![allow(clippy::unwrap_used)]

mod fake_backend;

use berth_runtime::backend::ExecRequest;
use berth_runtime::session::Error;
use fake_backend::{RUNTIME_ID, options, sessions, target};
use futures::StreamExt;
use http::HeaderMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::AsyncReadExt;

const SID: &str = "session-0123456789012345678901234567890";

async fn body_of(resp: http::Response<berth_runtime::session::BodyStream>) -> String {
    let mut stream = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    String::from_utf8(out).unwrap()
}

/// Invokes `session` with `body` and returns the answer's body (the fake agent echoes it).
async fn echo(session: &Arc<berth_runtime::session::Session>, body: &'static [u8]) -> String {
    let resp = session
        .invoke(
            &HeaderMap::new(),
            "req",
            None,
            bytes::Bytes::from_static(body),
        )
        .await
        .unwrap();
    body_of(resp).await
}

#[tokio::test]
async fn concurrent_opens_of_one_session_share_one_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let t = target(1);
    let (a, b) = tokio::join!(s.open(&t, SID, None), s.open(&t, SID, None));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(record.started.load(Ordering::SeqCst), 1);
    assert!(Arc::ptr_eq(&s.existing(RUNTIME_ID, SID).unwrap(), &a));

    let resp = a
        .invoke(
            &HeaderMap::new(),
            "req-1",
            None,
            bytes::Bytes::from_static(b"hello"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let expected = format!("{SID}:hello");
    // A sized answer stays sized: the length reaches the client instead of chunked framing.
    assert_eq!(
        resp.headers()[http::header::CONTENT_LENGTH],
        expected.len().to_string().as_str()
    );
    assert_eq!(body_of(resp).await, expected);
    assert_eq!(record.started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_start_whose_caller_left_goes_on_and_serves_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *record.start_gate.lock().unwrap() = Some(gate.clone());
    let t = target(1);
    let mut waiting = record.start_waiting.subscribe();
    {
        let open = s.open(&t, SID, None);
        tokio::pin!(open);
        tokio::select! {
            _ = &mut open => panic!("the start went past its gate"),
            r = waiting.wait_for(|n| *n == 1) => drop(r.unwrap()),
        }
        // The caller leaves (the edge drops a request whose client hung up).
    }
    assert_eq!(s.opening(), 1);
    assert_eq!(*record.start_waiting.borrow(), 1, "the start was cut short");
    gate.add_permits(1);
    // The next call gets the session that start made: one agent in all.
    let session = s.open(&t, SID, None).await.unwrap();
    assert!(Arc::ptr_eq(&s.existing(RUNTIME_ID, SID).unwrap(), &session));
    assert_eq!(record.started.load(Ordering::SeqCst), 1);
    assert_eq!(s.opening(), 0);
}

#[tokio::test]
async fn an_exited_agent_is_not_handed_out_and_the_next_open_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let t = target(1);
    let first = s.open(&t, SID, None).await.unwrap();
    record.agents.lock().unwrap()[0].crash();
    assert!(s.existing(RUNTIME_ID, SID).is_none());
    let err = first
        .invoke(&HeaderMap::new(), "req", None, bytes::Bytes::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Crashed(_) | Error::Stopped), "{err}");

    let second = s.open(&t, SID, None).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(record.started.load(Ordering::SeqCst), 2);
    assert_eq!(echo(&second, b"again").await, format!("{SID}:again"));
}

#[tokio::test]
async fn stop_stops_the_agent_and_keeps_its_log_private() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    s.open(&target(1), SID, None).await.unwrap();
    let id = record.agents.lock().unwrap()[0].id.clone();

    s.stop(RUNTIME_ID, SID).await.unwrap();
    assert_eq!(record.stopped.load(Ordering::SeqCst), 1);
    assert!(s.existing(RUNTIME_ID, SID).is_none());
    assert!(s.list(None).is_empty());
    assert!(matches!(
        s.stop(RUNTIME_ID, SID).await,
        Err(Error::NotFound(_))
    ));

    let mut log = String::new();
    s.open_log(RUNTIME_ID, SID)
        .await
        .unwrap()
        .expect("the kept log")
        .read_to_string(&mut log)
        .await
        .unwrap();
    assert_eq!(log, format!("out started {id}\n"));
    let kept = std::fs::read_dir(dir.path().join(RUNTIME_ID))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(kept.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        s.sessions_with_logs(RUNTIME_ID).await.unwrap(),
        vec![SID.to_owned()]
    );
    assert!(
        s.open_log(RUNTIME_ID, "another-session")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_live_session_cap_refuses_before_any_agent_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.quotas.runtime_live = 1;
    let (s, record, _shutdown) = sessions(opts);
    s.open(&target(1), SID, None).await.unwrap();
    let refused = s
        .open(&target(1), "another-session-of-the-same-runtime", None)
        .await;
    assert!(matches!(refused, Err(Error::QuotaExceeded(_))));
    assert_eq!(record.started.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_backend_that_cannot_start_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    record.fail_start.store(true, Ordering::SeqCst);
    match s.open(&target(1), SID, None).await {
        Err(Error::Start(m)) => assert!(m.contains("the fake refuses to start"), "{m}"),
        other => panic!("expected a start error, got {:?}", other.err()),
    }
    assert!(s.existing(RUNTIME_ID, SID).is_none());
    // The failed start left no entry behind.
    assert_eq!(s.opening(), 0);
}

#[tokio::test]
async fn sessions_are_listed_in_backend_neutral_terms() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    s.open(&target(2), SID, Some("alice")).await.unwrap();
    let id = record.agents.lock().unwrap()[0].id.clone();
    let listed = serde_json::to_value(s.list(Some(RUNTIME_ID))).unwrap();
    let row = &listed[0];
    assert_eq!(row["sessionId"], SID);
    assert_eq!(row["version"], 2);
    assert_eq!(row["userId"], "alice");
    assert_eq!(row["state"], "IDLE");
    assert_eq!(row["backend"], "fake");
    assert_eq!(row["instance"], id);
    assert!(row.get("pid").is_none(), "{row}");
}

#[tokio::test]
async fn the_agent_environment_is_composed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    s.open(&target(1), SID, None).await.unwrap();
    let names: Vec<String> = record
        .last_env
        .lock()
        .unwrap()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        names,
        [
            "AWS_REGION",
            "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE",
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
            "AGENTCORE_RUNTIME_URL",
            // The OTel env contract, before the build's and the runtime's own variables (a
            // runtime's `OTEL_*` therefore wins).
            "AGENT_OBSERVABILITY_ENABLED",
            "OTEL_PYTHON_DISTRO",
            "OTEL_PYTHON_CONFIGURATOR",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_TRACES_EXPORTER",
            "OTEL_PYTHON_EXCLUDED_URLS",
            "OTEL_RESOURCE_ATTRIBUTES",
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            "BERTH_ENDPOINT_URL",
            "FROM_BUILD",
            "FROM_SPEC"
        ]
    );
}

#[tokio::test]
async fn a_sandbox_is_resolved_to_its_session_at_the_time_of_asking() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    assert!(s.sandbox_owner("no-such-sandbox").is_none());
    s.open(&target(2), SID, Some("alice")).await.unwrap();
    let id = record.agents.lock().unwrap()[0].id.clone();
    let owner = s.sandbox_owner(&id).unwrap();
    assert_eq!(owner.runtime_id, RUNTIME_ID);
    assert_eq!(owner.version, 2);
    assert_eq!(owner.endpoint, "DEFAULT");
    assert_eq!(owner.session_id.as_deref(), Some(SID));
    assert_eq!(owner.user_id.as_deref(), Some("alice"));
    s.stop(RUNTIME_ID, SID).await.unwrap();
    assert!(s.sandbox_owner(&id).is_none());
}

#[tokio::test]
async fn exec_reaches_the_live_session_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _record, _shutdown) = sessions(options(dir.path()));
    let req = ExecRequest {
        argv: vec!["echo".into(), "hi".into()],
        timeout: std::time::Duration::from_secs(5),
    };
    assert!(matches!(
        s.exec(RUNTIME_ID, SID, &req).await,
        Err(Error::NotFound(_))
    ));
    s.open(&target(1), SID, None).await.unwrap();
    let events: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(s.exec(RUNTIME_ID, SID, &req).await.unwrap())
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    assert_eq!(
        events,
        vec![
            berth_runtime::backend::ExecEvent::Stdout(bytes::Bytes::from_static(b"echo hi")),
            berth_runtime::backend::ExecEvent::Exit(berth_runtime::backend::ExecExit {
                code: 0,
                timed_out: false
            }),
        ]
    );
}

#[tokio::test]
async fn shutdown_stops_every_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, shutdown) = sessions(options(dir.path()));
    s.open(&target(1), SID, None).await.unwrap();
    s.open(&target(1), "a-second-session-id", None)
        .await
        .unwrap();
    shutdown.cancel();
    s.shutdown().await;
    assert_eq!(record.stopped.load(Ordering::SeqCst), 2);
    assert!(s.list(None).is_empty());
}

fn with_protocol(version: u32, config: serde_json::Value) -> berth_runtime::session::Target {
    let mut t = target(version);
    t.version.spec["protocolConfiguration"] = config;
    t
}

#[tokio::test]
async fn an_mcp_version_runs_on_its_port_and_path_without_ping() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    record.no_ping.store(true, Ordering::SeqCst);
    let t = with_protocol(1, serde_json::json!({"serverProtocol": "MCP"}));
    // A 404 on /ping is a healthy MCP server.
    let session = s.open(&t, SID, None).await.unwrap();
    assert_eq!(record.last_port.load(Ordering::SeqCst), 8000);
    let env = record.last_env.lock().unwrap().clone();
    assert!(env.contains(&(
        "AGENTCORE_RUNTIME_URL".into(),
        format!("http://berth.invalid/runtimes/{RUNTIME_ID}/invocations/")
    )));
    let mut headers = HeaderMap::new();
    headers.insert("mcp-method", "tools/list".parse().unwrap());
    headers.insert("mcp-session-id", "srv-1".parse().unwrap());
    let resp = session
        .invoke(&headers, "req-1", None, bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(resp.headers()["mcp-session-id"], "srv-1");
    assert_eq!(body_of(resp).await, format!("mcp tools/list {SID}:{{}}"));
    // The card is the agent's own.
    let card = session
        .agent_card(&HeaderMap::new(), "req-2", None)
        .await
        .unwrap();
    assert_eq!(body_of(card).await, r#"{"name":"fake"}"#);
}

#[tokio::test]
async fn configured_port_and_path_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = sessions(options(dir.path()));
    let t = with_protocol(
        1,
        serde_json::json!({"serverProtocol": "A2A", "port": 9100, "path": "/mcp"}),
    );
    let session = s.open(&t, SID, None).await.unwrap();
    assert_eq!(record.last_port.load(Ordering::SeqCst), 9100);
    assert_eq!(echo(&session, b"x").await, format!("mcp  {SID}:x"));
}

#[tokio::test]
async fn an_http_agent_without_ping_never_becomes_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    // The agent answers 404 at once on every probe: the start fails at its deadline whatever it is.
    opts.start_timeout = std::time::Duration::from_millis(300);
    let (s, record, _shutdown) = sessions(opts);
    record.no_ping.store(true, Ordering::SeqCst);
    let err = s.open(&target(1), SID, None).await.err().unwrap();
    assert!(err.to_string().contains("healthy"), "{err}");
    assert_eq!(record.last_port.load(Ordering::SeqCst), 8080);
}

/// Secrets kept in memory, as `berth serve` keeps them in the store.
#[derive(Default)]
struct MapSecrets(std::sync::Mutex<std::collections::HashMap<String, String>>);

#[async_trait::async_trait]
impl berth_runtime::session::SecretValues for MapSecrets {
    async fn value(&self, name: &str) -> Result<Option<String>, String> {
        Ok(self.0.lock().unwrap().get(name).cloned())
    }
}

fn with_secret_reference(version: u32) -> berth_runtime::session::Target {
    let mut t = target(version);
    t.version.spec["environmentVariables"]["API_KEY"] = "berth-secret:openai/key".into();
    t
}

fn env_var(record: &fake_backend::Record, name: &str) -> Option<String> {
    record
        .last_env
        .lock()
        .unwrap()
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[tokio::test]
async fn secret_references_resolve_to_the_value_current_at_each_start() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = Arc::new(MapSecrets::default());
    secrets
        .0
        .lock()
        .unwrap()
        .insert("openai/key".into(), "sk-one".into());
    let mut opts = options(dir.path());
    opts.secrets = Some(secrets.clone());
    let (s, record, _shutdown) = sessions(opts);
    let t = with_secret_reference(1);
    s.open(&t, SID, None).await.unwrap();
    assert_eq!(env_var(&record, "API_KEY").as_deref(), Some("sk-one"));
    assert_eq!(env_var(&record, "FROM_SPEC").as_deref(), Some("1"));
    // A later put is what the next sandbox gets; the configuration keeps the reference.
    secrets
        .0
        .lock()
        .unwrap()
        .insert("openai/key".into(), "sk-two".into());
    s.open(&t, "another-session-0123456789012345678901", None)
        .await
        .unwrap();
    assert_eq!(env_var(&record, "API_KEY").as_deref(), Some("sk-two"));
    assert_eq!(
        t.version.spec["environmentVariables"]["API_KEY"],
        "berth-secret:openai/key"
    );
}

#[tokio::test]
async fn an_unknown_secret_fails_the_start_naming_variable_and_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.secrets = Some(Arc::new(MapSecrets::default()));
    let (s, record, _shutdown) = sessions(opts);
    match s.open(&with_secret_reference(1), SID, None).await {
        Err(Error::Start(m)) => {
            assert!(m.contains("environment variable API_KEY"), "{m}");
            assert!(m.contains("secret openai/key, which does not exist"), "{m}");
        }
        other => panic!("expected a start error, got {:?}", other.err()),
    }
    assert!(
        record.agents.lock().unwrap().is_empty(),
        "no sandbox started"
    );
    assert!(s.existing(RUNTIME_ID, SID).is_none());
    // Without a secrets store, a reference is refused too, never passed through as written.
    let (s, _record, _shutdown) = sessions(options(dir.path()));
    match s.open(&with_secret_reference(1), SID, None).await {
        Err(Error::Start(m)) => assert!(m.contains("keeps no secrets"), "{m}"),
        other => panic!("expected a start error, got {:?}", other.err()),
    }
}

/// A burst of runtimes to keep warm (a restart with many, or many created at once) starts at most
/// one spare per CPU at a time: all at once, none would become healthy within its start timeout
/// on a small host, and the invocations' own starts would wait behind them.
#[tokio::test]
async fn warm_pool_refills_start_at_most_one_agent_per_cpu_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.warm_pool = 1;
    let (s, record, _shutdown) = sessions(opts);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *record.warm_gate.lock().unwrap() = Some(gate.clone());
    let cpus = std::thread::available_parallelism().unwrap().get();
    let runtimes = cpus + 3;
    let mut warming = record.warming.subscribe();
    for i in 0..runtimes {
        let mut t = target(1);
        t.runtime.id = format!("fake_agent{i}-AbCdE12345");
        t.version.runtime_id = t.runtime.id.clone();
        s.refill(t);
    }
    // As many as the limit are started; the rest wait for one of them to finish.
    warming.wait_for(|n| *n >= cpus).await.unwrap();
    gate.add_permits(runtimes);
    warming
        .wait_for(|_| record.warmed.load(Ordering::SeqCst) == runtimes)
        .await
        .unwrap();
    assert_eq!(record.most_warming.load(Ordering::SeqCst), cpus);
    assert_eq!(record.started.load(Ordering::SeqCst), runtimes);
}

/// Sessions keeping one spare of `target(1)`, pooled already, whose refills wait `spare_defer`
/// at most for the answer of the call that took the spare.
async fn warm_pool_of_one(
    logs: &std::path::Path,
    spare_defer: std::time::Duration,
) -> (
    berth_runtime::session::Sessions,
    Arc<fake_backend::Record>,
    tokio_util::sync::CancellationToken,
) {
    let mut opts = options(logs);
    opts.warm_pool = 1;
    opts.spare_defer = spare_defer;
    let (s, record, shutdown) = sessions(opts);
    s.refill(target(1));
    fake_backend::pooled(&s, 1).await;
    (s, record, shutdown)
}

/// Warm starts begun so far: finished, and in progress now.
fn warm_starts_begun(record: &fake_backend::Record) -> usize {
    record.warmed.load(Ordering::SeqCst) + *record.warming.borrow()
}

/// Taking the warm agent does not start its spare beside the call it was taken for (a spare's
/// start is a clone of the server and its agent's start, on the CPUs the call needs): the refill
/// waits until that call is answered (`Session::answered`), or `spare_defer` at the latest.
#[tokio::test]
async fn a_warm_hits_spare_starts_once_the_call_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) =
        warm_pool_of_one(dir.path(), std::time::Duration::from_secs(3600)).await;
    let mut warming = record.warming.subscribe();

    let session = s.open(&target(1), SID, None).await.unwrap();
    assert!(session.warm_start());
    // The call goes to the agent and back, every other task of the runtime running meanwhile
    // (the refill was spawned when the session started), and no spare has begun...
    assert_eq!(echo(&session, b"hi").await, format!("{SID}:hi"));
    assert_eq!(
        warm_starts_begun(&record),
        1,
        "a spare began before the answer"
    );
    // ...until the call is answered.
    session.answered();
    warming
        .wait_for(|_| record.warmed.load(Ordering::SeqCst) == 2)
        .await
        .unwrap();
}

/// A call that never says it was answered (its caller left, say) keeps the pool short for
/// `spare_defer` at most.
#[tokio::test]
async fn a_warm_hits_spare_starts_after_the_deferral_without_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (s, record, _shutdown) = warm_pool_of_one(dir.path(), std::time::Duration::ZERO).await;
    let mut warming = record.warming.subscribe();
    let session = s.open(&target(1), SID, None).await.unwrap();
    assert!(session.warm_start());
    warming
        .wait_for(|_| record.warmed.load(Ordering::SeqCst) == 2)
        .await
        .unwrap();
}
