//! Keep-alive HTTP/1 connections to one agent, driven by the task that uses them.
//!
//! hyper-util's pooled `Client` runs every connection in a task of its own and hands each request
//! and each response across to it: two task wake-ups (often a thread hop) per invocation, on the
//! path where Berth's CPU per request is measured against nginx (bench B2). Here a connection is
//! polled by whoever is using it: the invoking task while it waits for the answer's head, then
//! the answer's body ([`AgentBody`]) while the caller streams it. When the body ends, the
//! connection goes back to the agent's idle list; a body dropped early drops its connection (so
//! the agent sees the caller leave). Requests that ask for a protocol upgrade (WebSocket) get a
//! connection of their own, run in its own task so the upgraded stream can outlive the answer.
//!
//! Backends build one [`AgentClient`] per agent from a connector (any `tower::Service<Uri>`
//! giving a TCP stream to the agent) and return [`AgentClient::forward`] from `Agent::forward`.
//!
//! A connection is registered with the I/O driver of the runtime that opened it, so an idle one is
//! reused only on the runtime it came from: its [`lane`]. The server's edge serves connections on a
//! runtime per core (`berth_server::edge`), and a request there must not wait on another core's
//! driver to hear from its agent.

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// What [`AgentClient::forward`] returns.
pub type Forwarding = BoxFuture<'static, Result<Response<AgentBody>, ForwardError>>;

/// Why a request did not reach the agent or its answer did not come back.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection could be opened.
    #[error("cannot connect to the agent: {0}")]
    Connect(BoxError),
    /// The HTTP exchange failed (the agent closed the connection, answered garbage, ...).
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The connection ended before the answer's head arrived.
    #[error("the agent closed the connection before answering")]
    Closed,
}

/// Idle connections kept per agent; more are closed when they come back.
const MAX_IDLE: usize = 32;
/// An idle connection older than this is closed instead of reused. It must be shorter than the
/// agent server's own keep-alive timeout: a connection the agent closes just as a request goes
/// out on it fails that request after it was sent (hyper's "connection closed before message
/// completed"), which cannot be retried safely. uvicorn, which every agent built on the AgentCore
/// SDK runs, closes after 5 s, as Node's `http` server does; a warm sandbox waits in its pool with
/// the connection of its first `/ping`, so that race was met whenever one was claimed ~5 s later.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
const _: () = assert!(
    IDLE_TIMEOUT.as_secs() < 5,
    "below uvicorn's default keep-alive"
);

/// Which runtime's I/O driver the calling thread's sockets are registered with: 0 for the
/// server's own (multi-thread) runtime and every thread not marked, `n` for the edge runtime that
/// marked its thread with [`lane::enter`].
pub mod lane {
    use std::cell::Cell;

    thread_local! {
        static LANE: Cell<usize> = const { Cell::new(0) };
    }

    /// Marks the calling thread as the only thread of runtime `lane` (an edge runtime's thread,
    /// before it runs anything).
    pub fn enter(lane: usize) {
        LANE.with(|l| l.set(lane));
    }

    /// The calling thread's lane.
    pub fn current() -> usize {
        LANE.with(Cell::get)
    }
}

/// A connection and the handle that sends on it.
struct Driver {
    sender: SendRequest<Full<Bytes>>,
    conn: Conn,
    /// The lane (runtime) whose driver the connection's socket is registered with.
    lane: usize,
}

impl Driver {
    /// Polls the connection; `true` once it has ended (closed by either side, or failed).
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.conn).poll(cx).is_ready()
    }
}

struct Pool {
    idle: Mutex<Vec<(Instant, Driver)>>,
}

impl Pool {
    fn put(&self, d: Driver) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((Instant::now(), d));
        }
    }

    /// An idle connection of `lane` that is still open and ready for a request, most recently
    /// used first. Connections past their idle time are closed on the way, whatever their lane.
    fn take(&self, lane: usize) -> Option<Driver> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(since, _)| since.elapsed() <= IDLE_TIMEOUT);
        while let Some(i) = idle.iter().rposition(|(_, d)| d.lane == lane) {
            let (_, mut d) = idle.remove(i);
            if d.poll_ended(&mut cx) {
                continue;
            }
            if let Poll::Ready(Ok(())) = d.sender.poll_ready(&mut cx) {
                return Some(d);
            }
        }
        None
    }
}

/// Pooled keep-alive connections to one agent.
pub struct AgentClient<C> {
    connector: C,
    pool: Arc<Pool>,
}

impl<C> AgentClient<C>
where
    C: tower::Service<Uri, Response = TokioIo<TcpStream>> + Clone + Send + Sync + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    /// A client opening its connections through `connector`.
    pub fn new(connector: C) -> Self {
        Self {
            connector,
            pool: Arc::new(Pool {
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Sends `req` to the agent (its URI's authority is ignored) and resolves to the answer with
    /// its body still streaming.
    pub fn forward(&self, req: Request<Full<Bytes>>) -> Forwarding {
        let connector = self.connector.clone();
        let pool = self.pool.clone();
        let req = origin_form(req);
        Box::pin(async move {
            if req.headers().contains_key(http::header::UPGRADE) {
                return upgrade(connector, req).await;
            }
            let mut req = req;
            // A pooled connection the agent closed a moment ago gives the request back unsent;
            // it then goes out on a fresh connection. A fresh connection gets one try.
            loop {
                let (fresh, mut d) = match pool.take(lane::current()) {
                    Some(d) => (false, d),
                    None => (true, connect(connector.clone()).await?),
                };
                match exchange(&mut d, req).await {
                    Ok(resp) => {
                        return Ok(resp.map(|inner| AgentBody {
                            inner,
                            driver: Some((d, pool)),
                        }));
                    }
                    Err(Retry::Unsent(r)) if !fresh => req = *r,
                    Err(Retry::Unsent(_)) => return Err(ForwardError::Closed),
                    Err(Retry::Failed(e)) => return Err(e),
                }
            }
        })
    }
}

/// The request as HTTP/1.1 sends it to an origin server: the target in origin form
/// (`/path?query`) and the authority in `Host` (hyper's connection sends the URI as given).
fn origin_form(req: Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let (mut parts, body) = req.into_parts();
    if let Some(authority) = parts.uri.authority() {
        if !parts.headers.contains_key(http::header::HOST)
            && let Ok(host) = http::HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(http::header::HOST, host);
        }
        let target = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::from(target);
    }
    Request::from_parts(parts, body)
}

enum Retry {
    Unsent(Box<Request<Full<Bytes>>>),
    Failed(ForwardError),
}

/// Sends `req` on `d` and polls the connection until the answer's head is in.
async fn exchange(d: &mut Driver, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Retry> {
    let mut answer = std::pin::pin!(d.sender.try_send_request(req));
    let mut ended = false;
    let got = poll_fn(|cx| {
        if let Poll::Ready(r) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        if !ended && d.poll_ended(cx) {
            ended = true;
        }
        // Whatever the connection just did may have completed the answer.
        match answer.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending if ended => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match got {
        Some(Ok(resp)) => Ok(resp),
        Some(Err(mut e)) => match e.take_message() {
            Some(req) => Err(Retry::Unsent(Box::new(req))),
            None => Err(Retry::Failed(ForwardError::from(e.into_error()))),
        },
        None => Err(Retry::Failed(ForwardError::Closed)),
    }
}

async fn connect<C>(mut connector: C) -> Result<Driver, ForwardError>
where
    C: tower::Service<Uri, Response = TokioIo<TcpStream>>,
    C::Error: Into<BoxError>,
{
    use tower::ServiceExt;
    let io = connector
        .ready()
        .await
        .map_err(|e| ForwardError::Connect(e.into()))?
        .call(Uri::from_static("http://agent/"))
        .await
        .map_err(|e| ForwardError::Connect(e.into()))?;
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| ForwardError::Connect(e.into()))?;
    Ok(Driver {
        sender,
        conn,
        lane: lane::current(),
    })
}

/// A request that asks to switch protocols, on a connection of its own that runs in its own task
/// (with upgrades, so `hyper::upgrade::on` on the answer yields the agent's stream).
async fn upgrade<C>(
    connector: C,
    req: Request<Full<Bytes>>,
) -> Result<Response<AgentBody>, ForwardError>
where
    C: tower::Service<Uri, Response = TokioIo<TcpStream>>,
    C::Error: Into<BoxError>,
{
    let Driver {
        mut sender, conn, ..
    } = connect(connector).await?;
    tokio::spawn(conn.with_upgrades());
    let resp = sender.send_request(req).await?;
    Ok(resp.map(|inner| AgentBody {
        inner,
        driver: None,
    }))
}

/// An agent's answer body. Polling it drives the connection it arrives on; at its end the
/// connection returns to the agent's pool.
pub struct AgentBody {
    inner: Incoming,
    driver: Option<(Driver, Arc<Pool>)>,
}

impl std::fmt::Debug for AgentBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBody").finish_non_exhaustive()
    }
}

impl Body for AgentBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let mut polled = this.inner_frame(cx);
        if polled.is_pending()
            && let Some((d, _)) = &mut this.driver
        {
            if d.poll_ended(cx) {
                // The connection is over; what it delivered (or its error) is in the body now.
                this.driver = None;
            }
            polled = this.inner_frame(cx);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AgentBody {
    /// A sized answer is often dropped once its last byte is out, before a poll would have seen
    /// its end (hyper's server stops at the `Content-Length`): its connection is still good, and
    /// goes back to the pool (the next [`Pool::take`] lets it settle). An answer dropped short of
    /// its end takes its connection with it.
    fn drop(&mut self) {
        if self.inner.is_end_stream()
            && let Some((d, pool)) = self.driver.take()
        {
            pool.put(d);
        }
    }
}

impl AgentBody {
    /// The next frame; at the end, the connection is polled once more (so it settles into
    /// keep-alive and can take the next request) and pooled if it is still open.
    fn inner_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled
            && let Some((mut d, pool)) = self.driver.take()
            && !d.poll_ended(cx)
        {
            pool.put(d);
        }
        polled
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Connects to a test agent on loopback.
    #[derive(Clone)]
    struct Connect(SocketAddr);

    impl tower::Service<Uri> for Connect {
        type Response = TokioIo<TcpStream>;
        type Error = std::io::Error;
        type Future = BoxFuture<'static, std::io::Result<TokioIo<TcpStream>>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Uri) -> Self::Future {
            let addr = self.0;
            Box::pin(async move { TcpStream::connect(addr).await.map(TokioIo::new) })
        }
    }

    fn client(addr: SocketAddr) -> AgentClient<Connect> {
        AgentClient::new(Connect(addr))
    }

    fn get(path: &str) -> Request<Full<Bytes>> {
        Request::get(format!("http://127.0.0.1{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    /// A raw HTTP/1.1 agent: answers each request on a connection with `ok <n>`, and closes the
    /// connection after `per_conn` answers. Counts connections.
    async fn agent(per_conn: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        serve(move |mut s, n| async move {
            let mut buf = Vec::new();
            for _ in 0..per_conn {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 1024];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                buf.clear();
                // What a strict HTTP/1.1 server (h11, uvicorn's) insists on.
                if !head.starts_with("get /") || !head.contains("\r\nhost: 127.0.0.1\r\n") {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let body = format!("ok {n}");
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                if s.write_all(format!("{head}{body}").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // Closed without a word, as an agent's idle timeout would.
        })
        .await
    }

    /// A test agent on loopback running `conn` on each connection it accepts (with the
    /// connection's number, from 1); counts connections.
    async fn serve<F, Fut>(conn: F) -> (SocketAddr, Arc<AtomicUsize>)
    where
        F: Fn(TcpStream, usize) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(conn(s, n));
            }
        });
        (addr, conns)
    }

    async fn text(c: &AgentClient<Connect>, path: &str) -> String {
        let resp = c.forward(get(path)).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_finished_answer_returns_its_connection_for_the_next_request() {
        let (addr, conns) = agent(100).await;
        let c = client(addr);
        for _ in 0..5 {
            assert_eq!(text(&c, "/x").await, "ok 1");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    /// An idle connection is reused only on the runtime that opened it (its lane): a request on
    /// an edge runtime gets a connection of its own, and the server's runtime keeps its own.
    #[tokio::test]
    async fn an_idle_connection_is_reused_only_on_its_own_lane() {
        let (addr, conns) = agent(100).await;
        let c = Arc::new(client(addr));
        assert_eq!(text(&c, "/a").await, "ok 1");
        let on_edge = |c: Arc<AgentClient<Connect>>| {
            std::thread::spawn(move || {
                lane::enter(1);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { (text(&c, "/b").await, text(&c, "/c").await) })
            })
        };
        let edge = on_edge(c.clone());
        let answers = tokio::task::spawn_blocking(move || edge.join().unwrap())
            .await
            .unwrap();
        assert_eq!(answers, ("ok 2".to_owned(), "ok 2".to_owned()));
        assert_eq!(text(&c, "/d").await, "ok 1");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_agent_closed_is_replaced_without_failing_the_request() {
        let (addr, conns) = agent(1).await;
        let c = client(addr);
        assert_eq!(text(&c, "/a").await, "ok 1");
        assert_eq!(text(&c, "/b").await, "ok 2");
        assert_eq!(text(&c, "/c").await, "ok 3");
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_answer_dropped_unread_does_not_return_its_connection() {
        let (addr, conns) = agent(100).await;
        let c = client(addr);
        let resp = c.forward(get("/a")).await.unwrap();
        drop(resp);
        assert_eq!(text(&c, "/b").await, "ok 2");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_answer_dropped_after_its_last_byte_returns_its_connection() {
        let (addr, conns) = agent(100).await;
        let c = client(addr);
        for _ in 0..3 {
            let mut body = c.forward(get("/a")).await.unwrap().into_body();
            // One data frame, as a server writing a sized answer takes it; then dropped.
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "ok 1");
            drop(body);
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    /// An agent that answers the first request of each connection with `ok <n>` and, as a
    /// server whose keep-alive timeout fires just as the next request arrives, closes the
    /// connection on the second without answering.
    async fn closing_on_reuse() -> (SocketAddr, Arc<AtomicUsize>) {
        serve(|mut s, n| async move {
            let mut buf = [0u8; 1024];
            if s.read(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
            let body = format!("ok {n}");
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(answer.as_bytes()).await.is_ok() {
                let _ = s.read(&mut buf).await;
            }
        })
        .await
    }

    #[tokio::test]
    async fn an_idle_connection_is_not_reused_past_the_idle_timeout() {
        let (addr, conns) = closing_on_reuse().await;
        let c = client(addr);
        assert_eq!(text(&c, "/a").await, "ok 1");
        // Past the timeout the pooled connection is left alone; reused, the agent's close would
        // fail the request after it went out.
        tokio::time::pause();
        tokio::time::advance(IDLE_TIMEOUT + Duration::from_millis(1)).await;
        tokio::time::resume();
        assert_eq!(text(&c, "/b").await, "ok 2");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_get_connections_of_their_own() {
        let (addr, conns) = agent(100).await;
        let c = client(addr);
        let a = c.forward(get("/a")).await.unwrap();
        let b = c.forward(get("/b")).await.unwrap();
        let a = a.into_body().collect().await.unwrap().to_bytes();
        let b = b.into_body().collect().await.unwrap().to_bytes();
        assert_ne!(a, b);
        assert_eq!(conns.load(Ordering::SeqCst), 2);
        // Both came back: two more requests open nothing new.
        text(&c, "/c").await;
        text(&c, "/d").await;
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let err = client(addr).forward(get("/")).await.unwrap_err();
        assert!(matches!(err, ForwardError::Connect(_)), "{err}");
    }

    #[tokio::test]
    async fn an_upgrade_hands_over_the_agents_stream() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let k = s.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..k]);
            }
            s.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
            )
            .await
            .unwrap();
            let k = s.read(&mut buf).await.unwrap();
            s.write_all(&buf[..k]).await.unwrap();
        });
        let req = Request::get("http://127.0.0.1/ws")
            .header(http::header::UPGRADE, "echo")
            .header(http::header::CONNECTION, "upgrade")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = client(addr).forward(req).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::SWITCHING_PROTOCOLS);
        let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
        io.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }
}
