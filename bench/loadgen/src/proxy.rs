//! `berth-bench proxy`: the floor of B2. A bare HTTP/1 reverse proxy on the same stack as Berth
//! (hyper's server and client on tokio's multi-thread runtime, mimalloc not included), doing only
//! what any proxy must: read the request (whole, as Berth does to check its signature), send it on
//! one upstream connection per client connection, stream the answer back. No authentication, no
//! routing, no span. What it costs per request is what Berth's stack costs before Berth does
//! anything of its own, measured side by side with nginx.
//!
//! `--per-core` serves the same proxy the way nginx's workers do: one thread per CPU, each a
//! current-thread runtime with its own `SO_REUSEPORT` listener, so a request's client socket, its
//! upstream socket and every task it wakes stay on one thread. It measures what a runtime per core
//! would give Berth's stack before Berth does anything (bench/notes/B2.md).

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Serves until killed (the harness stops it with SIGTERM), printing `listening on http://ADDR`.
pub fn run(upstream: SocketAddr, per_core: bool) -> anyhow::Result<()> {
    if !per_core {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        return runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            println!("listening on http://{}", listener.local_addr()?);
            accept(listener, upstream).await
        });
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // The first listener picks the port; the others bind the same one (SO_REUSEPORT: the kernel
    // spreads new connections over the listeners).
    let mut addr: SocketAddr = "127.0.0.1:0".parse()?;
    let mut threads = Vec::with_capacity(cores);
    for core in 0..cores {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        addr = socket.local_addr()?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("proxy-{core}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("starting a per-core runtime")?;
                    runtime.block_on(async move { accept(socket.listen(1024)?, upstream).await })
                })?,
        );
    }
    println!("listening on http://{addr}");
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a proxy thread panicked"))??;
    }
    Ok(())
}

async fn accept(listener: TcpListener, upstream: SocketAddr) -> anyhow::Result<()> {
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = serve(client, upstream).await {
                eprintln!("berth-bench proxy: connection: {e:#}");
            }
        });
    }
}

/// One client connection, with its own upstream connection (driven by a task of its own, as
/// hyper's client documents).
async fn serve(client: TcpStream, upstream: SocketAddr) -> anyhow::Result<()> {
    client.set_nodelay(true)?;
    let agent = TcpStream::connect(upstream).await?;
    agent.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(agent)).await?;
    tokio::spawn(connection);
    // HTTP/1 on one connection serves one request at a time: the lock is never contended.
    let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let sender = sender.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body: Bytes = body.collect().await?.to_bytes();
            let mut forward = Request::post("/invocations").body(Full::new(body))?;
            *forward.headers_mut() = parts.headers;
            let answer = sender.lock().await.send_request(forward).await?;
            anyhow::Ok(answer)
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await?;
    Ok(())
}
