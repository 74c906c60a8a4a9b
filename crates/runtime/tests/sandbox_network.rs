//! Egress: the proxy of public sandboxes, loopback-only isolated ones, host ports exposed on purpose,
//! and the pooled connector.

#![allow(clippy::unwrap_used)]

mod sandbox_support;

use std::net::SocketAddr;

use berth_runtime::sandbox::{Error, Network, Sandbox};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sandbox_support::{Fixture, ready, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A host-side HTTP server answering every request with `body` (one request per connection).
async fn host_server(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// Python helper: a raw CONNECT through the proxy, then one GET through the tunnel.
const CONNECT_FN: &str = "import socket\n\
def tunnel(port):\n\
\x20   s = socket.create_connection(('127.0.0.1', 3128), timeout=10)\n\
\x20   s.sendall(f'CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\n\\r\\n'.encode())\n\
\x20   head = b''\n\
\x20   while b'\\r\\n\\r\\n' not in head:\n\
\x20       c = s.recv(1)\n\
\x20       if not c:\n\
\x20           break\n\
\x20       head += c\n\
\x20   status = head.split(b' ')[1].decode()\n\
\x20   if status != '200':\n\
\x20       return status\n\
\x20   s.sendall(b'GET / HTTP/1.1\\r\\nHost: upstream\\r\\n\\r\\n')\n\
\x20   data = b''\n\
\x20   while True:\n\
\x20       c = s.recv(4096)\n\
\x20       if not c:\n\
\x20           break\n\
\x20       data += c\n\
\x20   return data.decode().split('\\r\\n\\r\\n', 1)[1]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_sandbox_reaches_allow_listed_host_service_through_the_proxy() {
    let fx = Fixture::new();
    let allowed = host_server("hello from host").await;
    let denied = host_server("secret").await;
    let mut spec = fx.agent("public");
    spec.network = Network::Public;
    spec.allowed_local = vec![allowed];
    let sb = Sandbox::start(spec).await.unwrap();
    ready(&sb).await;

    let snippet = format!(
        "import http.client, os\n{CONNECT_FN}\
         print(os.environ['HTTPS_PROXY'], os.environ['no_proxy'])\n\
         def get(url):\n\
         \x20   # What curl -x does: an absolute-form request to the proxy (urllib would skip the proxy\n\
         \x20   # for 127.0.0.1 because of no_proxy).\n\
         \x20   conn = http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)\n\
         \x20   conn.request('GET', url)\n\
         \x20   resp = conn.getresponse()\n\
         \x20   return resp.read().decode() if resp.status == 200 else resp.status\n\
         print(get('http://127.0.0.1:{a}/x?y=1'))\n\
         print(get('http://127.0.0.1:{d}/x'))\n\
         print(tunnel({a}))\n\
         print(tunnel({d}))",
        a = allowed.port(),
        d = denied.port(),
    );
    let out = run(&sb, &snippet).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "http://127.0.0.1:3128 localhost,127.0.0.1",
            "hello from host",
            "403",
            "hello from host",
            "403"
        ],
        "{out}"
    );
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_sandbox_has_only_loopback() {
    let fx = Fixture::new();
    let host = host_server("unreachable").await;
    let mut spec = fx.agent("isolated");
    spec.network = Network::Isolated;
    let sb = Sandbox::start(spec).await.unwrap();
    ready(&sb).await;
    let snippet = format!(
        "import errno, os, socket\n\
         print('HTTP_PROXY' in os.environ)\n\
         for addr in [('127.0.0.1', 3128), ('127.0.0.1', {port}), ('192.0.2.1', 80)]:\n\
         \x20   try:\n        socket.create_connection(addr, timeout=5)\n        print('connected')\n\
         \x20   except OSError as e:\n        print(errno.errorcode.get(e.errno, e))",
        port = host.port()
    );
    let out = run(&sb, &snippet).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["False", "ECONNREFUSED", "ECONNREFUSED", "ENETUNREACH"],
        "{out}"
    );
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposed_host_port_reaches_the_host_service() {
    let fx = Fixture::new();
    let target = host_server("berth data plane").await;
    let mut spec = fx.agent("exposed");
    spec.network = Network::Isolated;
    let sb = Sandbox::start(spec).await.unwrap();
    ready(&sb).await;
    let chosen = sb.expose_host_port(0, target).await.unwrap();
    assert_ne!(chosen, 0);
    assert_eq!(sb.expose_host_port(9100, target).await.unwrap(), 9100);
    // The agent's own port is taken.
    assert!(sb.expose_host_port(8080, target).await.is_err());
    let snippet = format!(
        "import urllib.request\n\
         for port in [{chosen}, 9100]:\n    print(urllib.request.urlopen(f'http://127.0.0.1:{{port}}/').read().decode())"
    );
    assert_eq!(
        run(&sb, &snippet).await.lines().collect::<Vec<_>>(),
        ["berth data plane", "berth data plane"]
    );
    sb.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_serves_a_pooled_client_and_connections_stay_alive() {
    let fx = Fixture::new();
    let sb = Sandbox::start(fx.agent("pooled")).await.unwrap();
    ready(&sb).await;

    // hyper-util's pooled client with the sandbox connector.
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(sb.connector());
    for _ in 0..5 {
        let resp = client.get("http://agent/".parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["name"], "pooled");
    }

    // One connection from connect() carries several requests (the pool's reuse depends on timing,
    // so keep-alive is checked on an explicit connection).
    let io = TokioIo::new(sb.connect().await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let mut peers = Vec::new();
    for _ in 0..3 {
        sender.ready().await.unwrap();
        let req = http::Request::get("/")
            .header("host", "agent")
            .body(Empty::new())
            .unwrap();
        let body = sender
            .send_request(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        peers.push(v["peer"].as_u64().unwrap());
    }
    assert!(peers.windows(2).all(|w| w[0] == w[1]), "{peers:?}");
    drop(sender);
    let _ = driver.await;

    sb.destroy().await.unwrap();
    let err = client
        .get("http://agent/".parse().unwrap())
        .await
        .unwrap_err();
    let source = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<Error>());
    assert!(matches!(source, Some(Error::Destroyed)), "{err:?}");
}
