//! A session backend without a sandbox: each agent is an in-process HTTP server on
//! `127.0.0.1:0` that answers `/ping` and echoes `/invocations`. It implements the public
//! `SessionBackend` trait only, as a container or Kubernetes backend would.
#![allow(clippy::unwrap_used, dead_code)]

use berth_runtime::backend::{
    Agent, AgentSpec, Error, ExecEvent, ExecExit, ExecRequest, ExecStream, Exit, ExitInfo,
    LogReader, Placement, SessionBackend,
};
use berth_runtime::quota::Quotas;
use berth_runtime::session::{Prepare, Prepared, SessionOptions, Sessions, Target};
use berth_types::records::{Runtime, RuntimeVersion};
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the fake backend did, for assertions; and switches to make it misbehave.
#[derive(Default)]
pub struct Record {
    pub started: AtomicUsize,
    pub warmed: AtomicUsize,
    pub stopped: AtomicUsize,
    pub fail_start: AtomicBool,
    /// Controls of every agent started, in order.
    pub agents: Mutex<Vec<Arc<Control>>>,
    /// Environment of the last agent started.
    pub last_env: Mutex<Vec<(String, String)>>,
    /// Port of the last agent started (`AgentSpec::port`).
    pub last_port: std::sync::atomic::AtomicU16,
    /// Agents started from now on answer `/ping` with 404, as an MCP server does.
    pub no_ping: AtomicBool,
    /// Warm starts in progress now (sent on every change) and the most at once.
    pub warming: watch::Sender<usize>,
    pub most_warming: AtomicUsize,
    /// When set, each warm start waits for a permit of this gate before it completes.
    pub warm_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// When set, each start waits for a permit of this gate before it does anything.
    pub start_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// Starts waiting at `start_gate` now (sent on every change).
    pub start_waiting: watch::Sender<usize>,
}

/// Handle on one fake agent from the test's side.
pub struct Control {
    pub id: String,
    cancel: CancellationToken,
    exit_tx: watch::Sender<Option<ExitInfo>>,
}

impl Control {
    /// The agent's process dies: its server stops and its exit is reported.
    pub fn crash(&self) {
        self.cancel.cancel();
        self.exit_tx.send_replace(Some(ExitInfo {
            code: Some(1),
            ..ExitInfo::default()
        }));
    }
}

pub struct FakeBackend {
    pub record: Arc<Record>,
}

impl FakeBackend {
    pub fn new() -> (Arc<Self>, Arc<Record>) {
        let record = Arc::new(Record::default());
        (
            Arc::new(Self {
                record: record.clone(),
            }),
            record,
        )
    }
}

#[derive(Clone)]
struct Connector(SocketAddr);

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move { TcpStream::connect(addr).await.map(TokioIo::new) })
    }
}

struct FakeAgent {
    id: String,
    client: berth_runtime::backend::AgentClient<Connector>,
    exit: Exit,
    control: Arc<Control>,
    record: Arc<Record>,
    log: Bytes,
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    no_ping: bool,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mcp_method = header("mcp-method");
    let traceparent = header("traceparent");
    let session = req
        .headers()
        .get("x-amzn-bedrock-agentcore-runtime-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let resp = match path.as_str() {
        "/ping" if no_ping => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            r
        }
        "/ping" => Response::new(Full::new(Bytes::from_static(br#"{"status":"Healthy"}"#))),
        "/mcp" => {
            let mut out = format!("mcp {mcp_method} {session}:").into_bytes();
            out.extend_from_slice(&body);
            let mut r = Response::new(Full::new(Bytes::from(out)));
            r.headers_mut()
                .insert("mcp-session-id", http::HeaderValue::from_static("srv-1"));
            r
        }
        "/.well-known/agent-card.json" => {
            let mut r = Response::new(Full::new(Bytes::from_static(br#"{"name":"fake"}"#)));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        // Echoes the traceparent the agent got.
        "/invocations" if body.as_ref() == b"traceparent" => {
            Response::new(Full::new(Bytes::from(traceparent)))
        }
        "/invocations" if body.as_ref() == b"fail" => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"boom")));
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
        "/invocations" if body.as_ref() == b"reject" => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"bad request")));
            *r.status_mut() = http::StatusCode::BAD_REQUEST;
            r
        }
        "/invocations" => {
            let mut out = format!("{session}:").into_bytes();
            out.extend_from_slice(&body);
            Response::new(Full::new(Bytes::from(out)))
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(resp)
}

async fn serve(listener: TcpListener, cancel: CancellationToken, no_ping: bool) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => return },
        };
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |r| answer(r, no_ping)),
            );
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

#[async_trait::async_trait]
impl SessionBackend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn api_url(&self) -> Option<String> {
        Some("http://berth.invalid".into())
    }

    async fn start(&self, spec: AgentSpec) -> Result<Box<dyn Agent>, Error> {
        let gate = self.record.start_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            let r = &self.record;
            r.start_waiting.send_modify(|n| *n += 1);
            // Counted down on the way out, also when the caller is dropped while waiting.
            let _waited = scopeguard(|| r.start_waiting.send_modify(|n| *n -= 1));
            gate.acquire().await.unwrap().forget();
        }
        if self.record.fail_start.load(Ordering::SeqCst) {
            return Err(Error::Start("the fake refuses to start".into()));
        }
        self.record.started.fetch_add(1, Ordering::SeqCst);
        *self.record.last_env.lock().unwrap() = spec.env.clone();
        self.record.last_port.store(spec.port, Ordering::SeqCst);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let no_ping = self.record.no_ping.load(Ordering::SeqCst);
        tokio::spawn(serve(listener, cancel.clone(), no_ping));
        let (exit_tx, exit_rx) = watch::channel(None);
        let control = Arc::new(Control {
            id: spec.id.clone(),
            cancel,
            exit_tx,
        });
        self.record.agents.lock().unwrap().push(control.clone());
        Ok(Box::new(FakeAgent {
            log: Bytes::from(format!("out started {}\n", spec.id)),
            id: spec.id,
            client: berth_runtime::backend::AgentClient::new(Connector(addr)),
            exit: Exit::new(exit_rx),
            control,
            record: self.record.clone(),
        }))
    }

    async fn warm(&self, spec: AgentSpec) -> Result<Box<dyn Agent>, Error> {
        let r = &self.record;
        let mut now = 0;
        r.warming.send_modify(|n| {
            *n += 1;
            now = *n;
        });
        r.most_warming.fetch_max(now, Ordering::SeqCst);
        let gate = r.warm_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        let agent = self.start(spec).await;
        r.warmed.fetch_add(1, Ordering::SeqCst);
        r.warming.send_modify(|n| *n -= 1);
        agent
    }
}

#[async_trait::async_trait]
impl Agent for FakeAgent {
    fn placement(&self) -> Placement {
        Placement {
            backend: "fake",
            instance: self.id.clone(),
            pid: None,
        }
    }

    fn forward(&self, req: Request<Full<Bytes>>) -> berth_runtime::backend::Forwarding {
        self.client.forward(req)
    }

    fn exit(&self) -> &Exit {
        &self.exit
    }

    /// Echoes the argv on stdout and exits 0: enough to see that the call reached this agent.
    async fn exec(&self, req: &ExecRequest) -> Result<ExecStream, Error> {
        use futures::StreamExt;
        let events = vec![
            Ok(ExecEvent::Stdout(Bytes::from(req.argv.join(" ")))),
            Ok(ExecEvent::Exit(ExecExit {
                code: 0,
                timed_out: false,
            })),
        ];
        Ok(futures::stream::iter(events).boxed())
    }

    async fn logs(&self) -> Result<LogReader, Error> {
        Ok(Box::pin(std::io::Cursor::new(self.log.clone())))
    }

    async fn stop(&self, _grace: std::time::Duration) -> Result<(), Error> {
        if self.control.exit_tx.borrow().is_none() {
            self.record.stopped.fetch_add(1, Ordering::SeqCst);
        }
        self.control.cancel.cancel();
        self.control.exit_tx.send_if_modified(|e| {
            if e.is_some() {
                return false;
            }
            *e = Some(ExitInfo {
                destroyed: true,
                ..ExitInfo::default()
            });
            true
        });
        Ok(())
    }
}

/// Hands out a made-up build: the fake backend runs nothing from it.
pub struct FakePrepare;

#[async_trait::async_trait]
impl Prepare for FakePrepare {
    async fn prepare(
        &self,
        _runtime: &Runtime,
        _version: &RuntimeVersion,
    ) -> Result<Prepared, berth_control::deployer::Error> {
        Ok(Prepared {
            code_dir: "/nonexistent/code".into(),
            argv: vec!["agent".into()],
            env: vec![("FROM_BUILD".into(), "1".into())],
            visible: vec![],
            image: None,
        })
    }
}

pub const RUNTIME_ID: &str = "fake_agent-AbCdE12345";

/// A target on version `version` of [`RUNTIME_ID`].
pub fn target(version: u32) -> Target {
    Target {
        runtime: Runtime {
            id: RUNTIME_ID.into(),
            name: "fake_agent".into(),
            latest_version: version,
            deleting: false,
            created_at: 0,
            updated_at: 0,
        },
        version: RuntimeVersion {
            runtime_id: RUNTIME_ID.into(),
            version,
            spec: serde_json::json!({
                "agentRuntimeArtifact": {"containerConfiguration": {"containerUri": "fake"}},
                "roleArn": "arn:aws:iam::123456789012:role/fake",
                "environmentVariables": {"FROM_SPEC": "1"},
            }),
            status: berth_types::Status::Ready,
            failure_reason: None,
            artifact_digest: None,
            created_at: 0,
            updated_at: 0,
        },
        endpoint: "DEFAULT".into(),
    }
}

/// Options with generous limits; `logs_dir` in the caller's temp dir.
pub fn options(logs_dir: &std::path::Path) -> SessionOptions {
    SessionOptions {
        gateway_keys: None,
        logs_dir: logs_dir.to_path_buf(),
        start_timeout: Duration::from_secs(10),
        ping_interval: Duration::from_secs(3600),
        warm_pool: 0,
        spare_defer: berth_runtime::session::SPARE_DEFER,
        env: vec![("AWS_REGION".into(), "us-east-1".into())],
        workload_tokens: None,
        secrets: None,
        credentials: None,
        quotas: Quotas {
            runtime_live: 100,
            host_live: 100,
            runtime_rate: 1000.0,
            host_rate: 1000.0,
        },
        partition: berth_types::Partition {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        },
    }
}

/// A supervisor over a fake backend.
pub fn sessions(opts: SessionOptions) -> (Sessions, Arc<Record>, CancellationToken) {
    let (backend, record) = FakeBackend::new();
    let shutdown = CancellationToken::new();
    let s = Sessions::new(opts, backend, Arc::new(FakePrepare), shutdown.clone());
    (s, record, shutdown)
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Returns once the warm pool of `target(1)`'s runtime and version holds `n` spares. A spare is
/// pooled after its `/ping` answers, with nothing to wait on: each turn yields to the runtime,
/// whose tasks and I/O run before this one's next turn.
pub async fn pooled(s: &Sessions, n: usize) {
    let t = target(1);
    while s.spares(&t.runtime.id, t.version.version) < n {
        tokio::task::yield_now().await;
    }
}
