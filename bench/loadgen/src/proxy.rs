//! `berth-bench proxy`: the floor of B2. A bare HTTP/1 reverse proxy on the same stack as Berth
//! (hyper's server and client on tokio's multi-thread runtime, mimalloc not included), doing only
//! what any proxy must: read the request (whole, as Berth does to check its signature), send it on
//! one upstream connection per client connection, stream the answer back. No authentication, no
//! routing, no span. What it costs per request is what Berth's stack costs before Berth does
//! anything of its own, measured side by side with nginx.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Serves until killed (the harness stops it with SIGTERM), printing `listening on http://ADDR`.
pub fn run(upstream: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(listen(upstream))
}

async fn listen(upstream: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
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
