//! The listener side of the edge: accepting connections, bounding how many there are and how long
//! they may say nothing, and handing every request the body limits of the listener it came in on.
//!
//! Two kinds of listener share this code: Berth's own ([`serve_edge`]) and the one exposed inside
//! each namespaced sandbox ([`serve_sandbox`]), which has its own connection limit and its own
//! budget of in-flight body bytes on top of the server's, so one agent cannot use up either for
//! everyone else. What happens per request (authentication from the headers, then the body under
//! its limits, then the signature) is in `auth.rs`.
//!
//! Berth's own listener serves its connections on a thread per core ([`EdgeOptions::threads`]),
//! each running a current-thread runtime, as nginx's workers: the accept loop, on the server's
//! runtime, hands each accepted connection to the next edge thread, and everything a warm
//! invocation touches (the connection, its request, the agent's pooled connection, which is kept
//! per runtime: `berth_runtime::backend::client::lane`) stays on that thread. On a multi-thread
//! runtime the tasks of one request were woken on different workers, and those hand-offs, not
//! hyper or tokio, were the floor of a proxy's CPU per request and of its tail under load (bench
//! B2's `hyper` and `hyper-core` rows). Work that outlives a request or changes state runs on the
//! server's runtime, its home: state-changing requests (`crate::to_completion`) and the session
//! supervisor's tasks. Architecture Invariant: an edge runtime lives as long as its [`Edge`], so
//! nothing begun on it (a store connection opened there, an upgraded socket's bridge) is cut
//! short before the server's teardown ends.

use crate::AppState;
use crate::body::{Budget, Limits};
use crate::conn::{Registry, Slot};
use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// Limits of the HTTP edge. The defaults suit a single-node server; every one is a `berth serve`
/// flag.
#[derive(Clone, Debug)]
pub struct EdgeOptions {
    /// Connections Berth's listener holds at once. At the limit an idle connection is closed to
    /// admit a new one (see `conn.rs`). Lowered at start if the open-files limit cannot hold it.
    pub max_connections: usize,
    /// How long a connection may take to send a complete request head, counted from when Berth
    /// starts waiting for it: from accept, and on a kept-alive connection from the end of the
    /// previous response (hyper runs one timer for both).
    pub header_read_timeout: Duration,
    /// How long a connection may stay with no request in flight before it is closed.
    pub idle_timeout: Duration,
    /// How long a request body may go without delivering a byte.
    pub body_stall_timeout: Duration,
    /// Largest body of InvokeAgentRuntime, PutObject and UploadPart.
    pub large_body_limit: usize,
    /// Largest body of every other operation.
    pub small_body_limit: usize,
    /// Body bytes all requests together may hold in memory before new ones are throttled.
    pub body_budget: usize,
    /// Connections one sandbox's listener holds at once.
    pub sandbox_max_connections: usize,
    /// Body bytes one sandbox's requests may hold at once (also counted in `body_budget`).
    pub sandbox_body_budget: usize,
    /// The TCP maximum segment size the listeners advertise (`TCP_MAXSEG`). A client's kernel
    /// sizes a new connection's send buffer from it (about twenty segments), and that much is
    /// what a client pushes before a refusal from the headers reaches it: over loopback, whose
    /// segment is 64 KiB, ~2.6 MiB per refused upload (bench B8). 1460 is Ethernet's, what a
    /// client across a network gets anyway; a local client's large bodies still move 64 KiB per
    /// send (the kernel segments them late).
    pub max_segment_size: u32,
    /// Threads serving the listener's connections, each with a current-thread runtime of its own
    /// (one per CPU by default, as nginx's workers). 1 serves them on the server's own runtime.
    pub threads: usize,
}

const MIB: usize = 1024 * 1024;

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_stall_timeout: Duration::from_secs(30),
            // AgentCore's payload limit.
            large_body_limit: 100 * MIB,
            // Far above any JSON document of the AgentCore model (a runtime with every field at
            // its maximum is well under 1 MiB), far below what would hurt to hold.
            small_body_limit: 8 * MIB,
            body_budget: 1024 * MIB,
            sandbox_max_connections: 64,
            sandbox_body_budget: 256 * MIB,
            max_segment_size: 1460,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// The edge's shared state: its options, the server-wide body budget and, once Berth's listener
/// is served, its threads. Cheap to clone; the threads stop when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Edge {
    opts: Arc<EdgeOptions>,
    budget: Budget,
    threads: Arc<OnceLock<Option<Arc<Threads>>>>,
}

impl Edge {
    /// An edge with a fresh server-wide budget.
    pub fn new(opts: EdgeOptions) -> Self {
        Self {
            budget: Budget::new(opts.body_budget),
            opts: Arc::new(opts),
            threads: Arc::default(),
        }
    }

    /// The edge's threads, started on first use; `None` when connections are served on the
    /// caller's runtime (one thread asked for, or the threads could not be started).
    fn threads(&self) -> Option<Arc<Threads>> {
        let n = self.opts.threads;
        self.threads
            .get_or_init(|| {
                if n <= 1 {
                    return None;
                }
                match Threads::start(n) {
                    Ok(t) => Some(Arc::new(t)),
                    Err(e) => {
                        warn!(threads = n, error = %e, "cannot start the edge's threads; serving on the server's runtime");
                        None
                    }
                }
            })
            .clone()
    }

    /// The options the edge was built with.
    pub fn options(&self) -> &EdgeOptions {
        &self.opts
    }

    /// Body bytes of the server-wide budget not reserved now.
    pub fn budget_available(&self) -> usize {
        self.budget.available()
    }

    fn context(&self, budgets: Vec<Budget>, home: Option<Handle>) -> Context {
        Context {
            limits: Limits {
                large: self.opts.large_body_limit,
                small: self.opts.small_body_limit,
            },
            budgets: budgets.into(),
            stall: self.opts.body_stall_timeout,
            home,
        }
    }
}

/// The edge's threads: one current-thread runtime each, serving the connections handed to it.
#[derive(Debug)]
struct Threads {
    handles: Vec<Handle>,
    next: AtomicUsize,
    /// Dropped with the last [`Edge`]: each thread's runtime then stops.
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Threads {
    fn start(n: usize) -> std::io::Result<Self> {
        let (mut handles, mut stop) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            handles.push(rt.handle().clone());
            stop.push(tx);
            std::thread::Builder::new()
                .name(format!("berth-edge-{i}"))
                .spawn(move || {
                    // Lane 0 is the server's runtime; the agent connections opened here are
                    // reused only here.
                    berth_runtime::backend::client::lane::enter(i + 1);
                    rt.block_on(async {
                        let _ = rx.await;
                    });
                })?;
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            _stop: stop,
        })
    }

    /// The thread the next connection goes to, in turn.
    fn pick(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}

/// What the request path needs to know about the listener a request came in on; a request
/// extension set for every request.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub(crate) limits: Limits,
    /// Every budget a body must fit in, narrowest first.
    pub(crate) budgets: Arc<[Budget]>,
    pub(crate) stall: Duration,
    /// The server's runtime, where requests that change state run to completion
    /// (`crate::to_completion`) when the request is served on an edge thread; `None`: where the
    /// request is served.
    pub(crate) home: Option<Handle>,
}

impl Context {
    /// For a request that came in without one: the router served outside [`serve_edge`] (unit
    /// tests drive it directly). The default limits with a budget of its own.
    pub(crate) fn standalone() -> Self {
        Edge::new(EdgeOptions::default()).context(Vec::new(), None)
    }
}

/// Raises the soft limit on open files to the hard limit, once per process, and returns the soft
/// limit now in force. Every connection is a file; the default soft limit (often 1024) would make
/// accept fail long before the connection limit can shed anything.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        setrlimit(Resource::Nofile, lim)?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

/// The connection limit the open-files limit can hold: a quarter of the descriptors (at least 256)
/// stay for the store, logs, sandboxes and their listeners.
fn connection_limit(wanted: usize, open_files: u64) -> usize {
    let open_files = usize::try_from(open_files).unwrap_or(usize::MAX);
    let reserve = (open_files / 4).max(256);
    wanted.min(open_files.saturating_sub(reserve).max(1))
}

/// Serves Berth's API on `listener` with the default edge options until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_edge(listener, state, Edge::new(EdgeOptions::default()), shutdown).await
}

/// Serves Berth's API on `listener` under `edge`'s limits until `shutdown` is cancelled; then
/// stops accepting, closes idle connections, lets requests in flight finish and returns when the
/// last connection has closed.
pub async fn serve_edge(
    listener: TcpListener,
    state: AppState,
    edge: Edge,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let open_files = match raise_open_files_limit() {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot raise the open-files limit");
            rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(u64::MAX)
        }
    };
    let max = connection_limit(edge.opts.max_connections, open_files);
    if max < edge.opts.max_connections {
        warn!(
            wanted = edge.opts.max_connections,
            max, open_files, "connection limit lowered to what the open-files limit holds"
        );
    }
    let threads = edge.threads();
    let home = threads.as_ref().and_then(|_| Handle::try_current().ok());
    let ctx = edge.context(vec![edge.budget.clone()], home);
    let listen = Listen {
        app: crate::router(state.clone()),
        direct: Some(state),
        registry: Arc::new(Registry::new(max)),
        ctx,
        opts: edge.opts.clone(),
        origin: "server",
        threads,
    };
    listen.run(listener, shutdown).await;
    Ok(())
}

/// Serves Berth's API on a listener inside sandbox `sandbox` (see
/// `berth_runtime::sandbox::Sandbox::serve_inside`) under the sandbox's own connection limit and
/// body budget, both within the server's, until `shutdown` is cancelled.
pub async fn serve_sandbox(
    listener: TcpListener,
    state: AppState,
    edge: Edge,
    sandbox: String,
    shutdown: CancellationToken,
) {
    let own = Budget::new(edge.opts.sandbox_body_budget);
    let ctx = edge.context(vec![own, edge.budget.clone()], None);
    let listen = Listen {
        app: crate::sandbox_router(state.clone(), &sandbox),
        direct: Some(state),
        registry: Arc::new(Registry::new(edge.opts.sandbox_max_connections)),
        ctx,
        opts: edge.opts.clone(),
        origin: "sandbox",
        threads: None,
    };
    let span = tracing::debug_span!("sandbox_listener", %sandbox);
    tracing::Instrument::instrument(listen.run(listener, shutdown), span).await;
}

/// One listener being served.
struct Listen {
    app: Router,
    /// Serves `InvokeAgentRuntime` without the router (`crate::data_api::invoke_direct`); `None`: every
    /// request goes to `app`.
    direct: Option<AppState>,
    registry: Arc<Registry>,
    ctx: Context,
    opts: Arc<EdgeOptions>,
    origin: &'static str,
    /// The threads connections are served on; `None`: on the listener's runtime.
    threads: Option<Arc<Threads>>,
}

impl Listen {
    async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        advertise_segment_size(&listener, self.opts.max_segment_size, self.origin);
        let conns = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => r,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    self.accept_failed(&e).await;
                    continue;
                }
            };
            let Some(slot) = self.registry.admit() else {
                // Every connection has a request in flight: this one is closed unserved.
                debug!(
                    origin = self.origin,
                    "connection refused: every connection is busy"
                );
                continue;
            };
            // Nagle would hold back small writes (an SSE event, the tail of a response) for a
            // delayed ACK; every byte Berth writes is meant to leave at once.
            if let Err(e) = stream.set_nodelay(true) {
                debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let serve = Serve {
                app: self.app.clone(),
                direct: self.direct.clone(),
                ctx: self.ctx.clone(),
                slot,
                registry: self.registry.clone(),
                opts: self.opts.clone(),
                shutdown: shutdown.clone(),
            };
            match &self.threads {
                None => {
                    conns.spawn(serve_connection(stream, serve));
                }
                Some(threads) => {
                    // Leaves this runtime's driver; registered with the edge thread's below.
                    let stream = match stream.into_std() {
                        Ok(s) => s,
                        Err(e) => {
                            debug!(error = %e, "cannot hand the connection to an edge thread");
                            serve.registry.remove(&serve.slot);
                            continue;
                        }
                    };
                    conns.spawn_on(
                        async move {
                            match TcpStream::from_std(stream) {
                                Ok(stream) => serve_connection(stream, serve).await,
                                Err(e) => {
                                    debug!(error = %e, "cannot serve the connection on an edge thread");
                                    serve.registry.remove(&serve.slot);
                                }
                            }
                        },
                        threads.pick(),
                    );
                }
            }
        }
        info!(
            origin = self.origin,
            open = self.registry.len(),
            shed = self.registry.shed_count(),
            refused = self.registry.refused_count(),
            "listener closed, draining connections"
        );
        conns.close();
        conns.wait().await;
    }

    /// Out of descriptors (or another transient accept error): give one back by shedding an
    /// idle connection; if none is idle, wait a moment rather than spin on the same error.
    async fn accept_failed(&self, e: &std::io::Error) {
        let shed = self.registry.shed_one();
        warn!(origin = self.origin, error = %e, shed, "accept failed");
        if !shed {
            // A backoff, not a synchronisation: the condition is outside the process.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sets the TCP segment size `listener` advertises; accepted connections inherit it.
fn advertise_segment_size(listener: &TcpListener, mss: u32, origin: &str) {
    if let Err(e) = socket2::SockRef::from(listener).set_tcp_mss(mss) {
        warn!(origin, mss, error = %e, "cannot set the advertised TCP segment size");
    }
}

/// One accepted connection and what serving it needs.
struct Serve {
    app: Router,
    direct: Option<AppState>,
    ctx: Context,
    slot: Arc<Slot>,
    registry: Arc<Registry>,
    opts: Arc<EdgeOptions>,
    shutdown: CancellationToken,
}

/// Serves one connection until it ends, is shed, idles out, or the server shuts down.
async fn serve_connection(stream: TcpStream, serve: Serve) {
    // Until its first byte, a connection is its socket and this task. hyper's connection is made
    // once there is something to read: it allocates 16 KiB of buffers at once, so 2,000 silent
    // sockets (bench B8) held 32 MiB for nothing. A silent connection is closed as hyper would
    // close it (the header timeout, the idle timeout, shed for room, shutdown); one that speaks
    // gets the header timeout again for its head, as every kept-alive request does.
    let spoke = tokio::select! {
        r = stream.readable() => r.is_ok(),
        _ = tokio::time::sleep(serve.opts.header_read_timeout) => false,
        _ = serve.slot.idle_for(serve.opts.idle_timeout) => false,
        _ = serve.slot.shed() => false,
        _ = serve.shutdown.cancelled() => false,
    };
    if !spoke {
        serve.registry.remove(&serve.slot);
        return;
    }
    // Boxed, so a waiting connection's task holds the wait's state only, not hyper's.
    Box::pin(serve_http(stream, serve)).await;
}

/// [`serve_connection`] once the client has spoken: hyper's HTTP/1 connection.
async fn serve_http(stream: TcpStream, serve: Serve) {
    let Serve {
        app,
        direct,
        ctx,
        slot,
        registry,
        opts,
        shutdown,
    } = serve;
    let service = {
        let slot = slot.clone();
        tower::service_fn(move |mut req: http::Request<Incoming>| {
            // Held until the response body has been sent: a connection streaming an answer is
            // busy, never idle, so it is neither shed nor timed out.
            let in_flight = slot.begin();
            // The listener's limits and budgets travel with the request to the auth layer.
            req.extensions_mut().insert(ctx.clone());
            // The invocation hot path skips the router (same layers, same handler).
            let direct = direct.as_ref().and_then(|state| {
                crate::data_api::invocation_target(req.method(), req.uri().path())
                    .map(|runtime| (state.clone(), crate::data_api::decode_segment(runtime)))
            });
            if direct.is_none() {
                // An upgraded socket (`crate::ws`) marks its connection busy for its whole life.
                req.extensions_mut().insert(ConnSlot(slot.clone()));
            }
            let app = app.clone();
            async move {
                let req = req.map(Body::new);
                let resp = match direct {
                    Some((state, runtime)) => {
                        crate::data_api::invoke_direct(state, req, runtime).await
                    }
                    None => app.oneshot(req).await?,
                };
                Ok::<_, std::convert::Infallible>(resp.map(move |body| {
                    Body::new(body.map_frame(move |frame| {
                        let _held = &in_flight;
                        frame
                    }))
                }))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // Slowloris: a head that does not arrive in time closes the connection, whether it is a
        // new connection's first request or a kept-alive one's next.
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true);
    // Upgrades (the WebSocket route, `crate::ws`): once hyper has handed the socket over, this
    // future ends and the connection leaves the registry; the bridge task owns it from then on.
    let conn = http
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    let mut conn = crate::conn::Absorb::new(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            // Another connection needed the room; this one had nothing in flight.
            _ = slot.shed() => break,
            _ = slot.idle_for(opts.idle_timeout) => {
                debug!("idle connection closed");
                break;
            }
            _ = shutdown.cancelled(), if !draining => {
                if !slot.busy() {
                    break;
                }
                // Finish the request in flight, then close.
                conn.get_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
    // hyper's connection future ends early when the client leaves mid-request (it reads the end
    // of stream once the request body is in), but what it owns, the request's future among it,
    // lives until the future is dropped: dropped here, so the request ends (and with it the
    // agent's connection, so the agent sees the caller leave) before waiting for the connection
    // to go idle. Waiting first would wait forever, holding the client's socket, the agent's
    // and the connection's slot.
    drop(conn);
    // A socket hyper handed over (a WebSocket) still counts against the listener's connections
    // until it closes; it is busy, so it is never shed for room.
    slot.until_idle().await;
    registry.remove(&slot);
}

/// The connection a request came on, for handlers that take the socket over (`crate::ws`):
/// [`ConnSlot::hold`] keeps it counted and busy while the upgraded socket lives.
#[derive(Clone)]
pub(crate) struct ConnSlot(Arc<Slot>);

impl ConnSlot {
    /// Marks the connection busy until the returned guard is dropped.
    pub(crate) fn hold(&self) -> crate::conn::InFlight {
        self.0.begin()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc, oneshot};

    /// Sends on its channel when dropped: the request future holding it was dropped.
    struct Dropped(Option<oneshot::Sender<()>>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }

    /// What the handlers of [`holding_listener`] report when a request starts: the trigger of
    /// its answer, and a receiver that resolves when the request (its future or its answer's
    /// body) is dropped.
    type Started = (oneshot::Sender<()>, oneshot::Receiver<()>);

    /// A listener with two routes, each reporting that a request started: `POST /hold` holds
    /// the request until told to answer, `POST /stream` answers at once with a body that sends
    /// one chunk and then nothing until dropped. Returns its address, the start reports and the
    /// listener's registry.
    async fn holding_listener() -> (
        std::net::SocketAddr,
        mpsc::UnboundedReceiver<Started>,
        Arc<Registry>,
    ) {
        holding_listener_with(EdgeOptions::default(), 16).await
    }

    /// [`holding_listener`] with these options and room for `connections`.
    async fn holding_listener_with(
        opts: EdgeOptions,
        connections: usize,
    ) -> (
        std::net::SocketAddr,
        mpsc::UnboundedReceiver<Started>,
        Arc<Registry>,
    ) {
        let (started_tx, started) = mpsc::unbounded_channel();
        let stream_tx = started_tx.clone();
        let app = Router::new()
            .route(
                "/hold",
                axum::routing::post(move || {
                    let started_tx = started_tx.clone();
                    async move {
                        let (answer, answered) = oneshot::channel::<()>();
                        let (dropped_tx, dropped) = oneshot::channel();
                        let _guard = Dropped(Some(dropped_tx));
                        started_tx.send((answer, dropped)).unwrap();
                        let _ = answered.await;
                        "done"
                    }
                }),
            )
            .route(
                "/stream",
                axum::routing::post(move || {
                    let (answer, _) = oneshot::channel::<()>();
                    let (dropped_tx, dropped) = oneshot::channel();
                    stream_tx.send((answer, dropped)).unwrap();
                    let guard = Dropped(Some(dropped_tx));
                    let first = futures::stream::once(async {
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"data: 1\n\n"))
                    });
                    let rest = futures::StreamExt::inspect(
                        futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>(),
                        move |_| {
                            let _held = &guard;
                        },
                    );
                    async move { Body::from_stream(futures::StreamExt::chain(first, rest)) }
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Arc::new(Registry::new(connections));
        let listen = Listen {
            app,
            direct: None,
            registry: registry.clone(),
            ctx: Context::standalone(),
            opts: Arc::new(opts),
            origin: "test",
            threads: None,
        };
        tokio::spawn(listen.run(listener, CancellationToken::new()));
        (addr, started, registry)
    }

    /// A bodiless `POST` of `path`, as a client writes it.
    fn post(path: &str) -> Vec<u8> {
        format!("POST {path} HTTP/1.1\r\nhost: berth\r\ncontent-length: 0\r\n\r\n").into_bytes()
    }

    /// A deadline for a condition, not a timing: generous for a loaded machine.
    async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .unwrap_or_else(|_| panic!("{what} did not happen"))
    }

    /// Lets the runtime run (its I/O included) until `done` holds, within [`within`]'s deadline.
    async fn until(what: &str, done: impl Fn() -> bool) {
        within(what, async {
            while !done() {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }

    /// A client that leaves mid-request (a close or a reset, before the answer's head or while
    /// its body streams) ends its request: hyper's HTTP/1 server sees the end of stream once the
    /// request body is in and ends the connection, and the request (with the agent's connection
    /// in it) is dropped and its slot given back. Holding them instead was the B2 wedge: slots
    /// busy for ever, until every new connection was refused.
    #[tokio::test]
    async fn a_client_leaving_mid_request_cancels_the_request() {
        let (addr, mut started, registry) = holding_listener().await;
        for (path, reset) in [("/hold", false), ("/hold", true), ("/stream", false)] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.write_all(&post(path)).await.unwrap();
            let (_answer, dropped) = within("the request's start", started.recv()).await.unwrap();
            if path == "/stream" {
                let mut head = [0u8; 256];
                let n = within("the answer's head", client.read(&mut head))
                    .await
                    .unwrap();
                assert!(n > 0, "{path}: closed before the answer's head");
            }
            if reset {
                client.set_zero_linger().unwrap();
            }
            drop(client);
            within("the request's cancellation", dropped).await.unwrap();
            // The connection's task gave its slot back in the same poll that dropped the request
            // (a current-thread runtime: nothing ran in between).
            assert_eq!(
                registry.len(),
                0,
                "{path}: the connection still holds its slot"
            );
        }
    }

    /// A connection that never speaks is closed by the header timeout and gives its slot back,
    /// and one waiting for its first byte is shed for a connection that needs the room: the wait
    /// before hyper's connection exists keeps hyper's own rules.
    #[tokio::test]
    async fn a_silent_connection_is_closed_or_shed() {
        let opts = EdgeOptions {
            header_read_timeout: Duration::from_millis(50),
            ..EdgeOptions::default()
        };
        let (addr, _started, registry) = holding_listener_with(opts, 1).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 64];
        let n = within("the header timeout", silent.read(&mut buf))
            .await
            .unwrap_or(0);
        assert_eq!(n, 0, "a silent connection was answered");
        until("the slot's release", || registry.len() == 0).await;

        let (addr, mut started, registry) = holding_listener_with(EdgeOptions::default(), 1).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        until("the silent connection's admission", || registry.len() > 0).await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(&post("/hold")).await.unwrap();
        let (answer, _dropped) = within("the request's start", started.recv()).await.unwrap();
        let n = within("the shedding", silent.read(&mut buf))
            .await
            .unwrap_or(0);
        assert_eq!(n, 0, "the silent connection was answered");
        answer.send(()).unwrap();
        let n = within("the answer", client.read(&mut buf)).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }

    /// Bytes arriving while a request is in flight (a pipelined request) do not end it: the
    /// first request is answered, then the second.
    #[tokio::test]
    async fn a_pipelined_request_does_not_cancel_the_one_in_flight() {
        let (addr, mut started, registry) = holding_listener().await;
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(&post("/hold")).await.unwrap();
        let (answer, _dropped) = within("the first request's start", started.recv())
            .await
            .unwrap();
        client.write_all(&post("/hold")).await.unwrap();
        answer.send(()).unwrap();
        let (answer, _dropped) = within("the second request's start", started.recv())
            .await
            .unwrap();
        answer.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.windows(4).filter(|w| *w == b"done").count() < 2 {
            let n = within("the answers", client.read(&mut buf)).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(registry.len(), 1);
    }

    /// Connections are handed to the edge threads in turn and served there, request and
    /// handler included; the listener still drains them at shutdown.
    #[tokio::test]
    async fn connections_are_served_on_the_edge_threads_in_turn() {
        let app = Router::new().route(
            "/who",
            axum::routing::get(|| async {
                std::thread::current().name().unwrap_or_default().to_owned()
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listen = Listen {
            app,
            direct: None,
            registry: Arc::new(Registry::new(16)),
            ctx: Context::standalone(),
            opts: Arc::new(EdgeOptions::default()),
            origin: "test",
            threads: Some(Arc::new(Threads::start(2).unwrap())),
        };
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(listen.run(listener, shutdown.clone()));
        let mut names = Vec::new();
        for _ in 0..4 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client
                .write_all(b"GET /who HTTP/1.1\r\nhost: berth\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            within("the answer", client.read_to_end(&mut answer))
                .await
                .unwrap();
            let answer = String::from_utf8(answer).unwrap();
            names.push(answer.rsplit("\r\n\r\n").next().unwrap().to_owned());
        }
        assert_eq!(
            names,
            [
                "berth-edge-0",
                "berth-edge-1",
                "berth-edge-0",
                "berth-edge-1"
            ]
        );
        shutdown.cancel();
        within("the drain", served).await.unwrap();
    }

    /// A client of a listener served by the edge gets the configured segment size, not
    /// loopback's 64 KiB (and with it a send buffer of ~2.6 MiB to fill before any answer).
    #[tokio::test]
    async fn clients_get_the_advertised_segment_size() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        advertise_segment_size(&listener, EdgeOptions::default().max_segment_size, "test");
        let client = TcpStream::connect(addr).await.unwrap();
        let (_server_side, _) = listener.accept().await.unwrap();
        let mss = socket2::SockRef::from(&client).tcp_mss().unwrap();
        assert!(mss <= 1460, "client segment size {mss}");
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other = TcpStream::connect(plain.local_addr().unwrap())
            .await
            .unwrap();
        let loopback = socket2::SockRef::from(&other).tcp_mss().unwrap();
        assert!(loopback > 1460, "loopback's own segment size {loopback}");
    }

    #[test]
    fn the_connection_limit_leaves_descriptors_for_everything_else() {
        assert_eq!(connection_limit(4096, 20_000), 4096);
        assert_eq!(connection_limit(4096, 1024), 768);
        assert_eq!(connection_limit(100_000, 20_000), 15_000);
        assert_eq!(connection_limit(10, 100), 1);
    }
}
