//! Egress for namespaced sandboxes: an HTTP/1.1 forward proxy and plain TCP forwarders.
//!
//! A sandbox's network namespace has only loopback. Berth creates listening sockets *inside* that
//! namespace (the socket keeps the namespace it was created in) and serves them from the host side,
//! so connections accepted there are dialled out from the host's namespace:
//!
//! - the egress proxy on `127.0.0.1:3128` inside: `CONNECT host:port` opens a tunnel (HTTPS and any
//!   TLS protocol), absolute-form requests (`GET http://host/path`) are forwarded over a fresh
//!   upstream connection with hop-by-hop headers removed; bodies stream in both directions;
//! - forwarders ([`Sandbox::expose_host_port`](super::Sandbox::expose_host_port)): every connection to
//!   an inside port is spliced to a fixed host address.
//!
//! Destinations are checked after resolution, on the address actually dialled (no DNS rebinding):
//! loopback, unspecified, link-local (including the cloud metadata address), multicast, broadcast and
//! the host's own interface addresses are refused unless allow-listed, so a sandbox can neither reach
//! another session's agent through the host nor host-local services. Plain-HTTP upgrades (WebSocket
//! over `ws://`) are not forwarded; clients tunnel them with CONNECT.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent proxied connections per sandbox; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;

/// Which host-local destinations a sandbox may reach.
#[derive(Debug, Clone, Default)]
pub(crate) struct Egress {
    pub(crate) allowed_local: Vec<SocketAddr>,
}

/// Why a destination was not reached.
#[derive(Debug)]
enum Refusal {
    Denied(String),
    Unreachable(String),
}

impl Egress {
    /// Whether `addr` may be dialled, given the host's own addresses.
    fn permits(&self, addr: SocketAddr, host_addrs: &[IpAddr]) -> bool {
        let ip = addr.ip().to_canonical();
        let canonical = SocketAddr::new(ip, addr.port());
        if self
            .allowed_local
            .iter()
            .any(|a| SocketAddr::new(a.ip().to_canonical(), a.port()) == canonical)
        {
            return true;
        }
        !(is_host_local(ip) || host_addrs.iter().any(|h| h.to_canonical() == ip))
    }

    /// Resolves `host:port` and connects to the first permitted address.
    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Refusal> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| Refusal::Unreachable(format!("resolving {host} timed out")))?
                .map_err(|e| Refusal::Unreachable(format!("cannot resolve {host}: {e}")))?
                .collect();
        let host_addrs = host_addresses();
        let permitted: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| self.permits(*a, &host_addrs))
            .collect();
        if permitted.is_empty() {
            return Err(Refusal::Denied(format!(
                "destination {host}:{port} is not allowed"
            )));
        }
        let mut last = String::new();
        for addr in permitted {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
                Err(_) => last = format!("connecting to {addr} timed out"),
            }
        }
        Err(Refusal::Unreachable(last))
    }
}

/// Addresses that always belong to "this host" whatever its interfaces.
fn is_host_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The host's interface addresses (read per connection: interfaces come and go).
fn host_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

type ProxyBody = Either<Full<Bytes>, Incoming>;

/// Serves the egress proxy on `listener` until `cancel` fires.
pub(crate) async fn serve_proxy(
    listener: TcpListener,
    egress: Arc<Egress>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => { debug!(error = %e, "egress proxy accept failed"); continue }
            },
        };
        let (egress, cancel, cancel2, tracker2) = (
            egress.clone(),
            cancel.clone(),
            cancel.clone(),
            tracker.clone(),
        );
        tracker.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| handle(req, egress.clone(), cancel2.clone(), tracker2.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { debug!(error = %e, "egress proxy connection ended") },
                _ = cancel.cancelled() => {}
            }
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    egress: Arc<Egress>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> Result<Response<ProxyBody>, Infallible> {
    let result = if req.method() == Method::CONNECT {
        tunnel(req, &egress, cancel, &tracker).await
    } else {
        forward(req, &egress, cancel, &tracker).await
    };
    Ok(result.unwrap_or_else(|(status, msg)| {
        debug!(%status, reason = %msg, "egress proxy refused a request");
        text(status, msg)
    }))
}

fn text(status: StatusCode, msg: String) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(msg + "\n"))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn refusal(r: Refusal) -> (StatusCode, String) {
    match r {
        Refusal::Denied(m) => (StatusCode::FORBIDDEN, m),
        Refusal::Unreachable(m) => (StatusCode::BAD_GATEWAY, m),
    }
}

type Handled = Result<Response<ProxyBody>, (StatusCode, String)>;

async fn tunnel(
    mut req: Request<Incoming>,
    egress: &Egress,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Handled {
    let Some(authority) = req.uri().authority().cloned() else {
        return Err((StatusCode::BAD_REQUEST, "CONNECT needs host:port".into()));
    };
    let Some(port) = authority.port_u16() else {
        return Err((
            StatusCode::BAD_REQUEST,
            "CONNECT needs an explicit port".into(),
        ));
    };
    let mut upstream = egress
        .connect(authority.host(), port)
        .await
        .map_err(refusal)?;
    let upgrade = hyper::upgrade::on(&mut req);
    tracker.spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => return debug!(error = %e, "egress tunnel upgrade failed"),
        };
        let mut client = TokioIo::new(upgraded);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => if let Err(e) = r { debug!(error = %e, "egress tunnel ended") },
            _ = cancel.cancelled() => {}
        }
    });
    Ok(Response::new(Either::Left(Full::new(Bytes::new()))))
}

async fn forward(
    req: Request<Incoming>,
    egress: &Egress,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Handled {
    let uri = req.uri().clone();
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "only http:// can be forwarded; use CONNECT for https".into(),
            ));
        }
        None => {
            return Err((
                StatusCode::BAD_REQUEST,
                "this is a proxy: send absolute-form requests or CONNECT".into(),
            ));
        }
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err((StatusCode::BAD_REQUEST, "request target has no host".into()));
    };
    let upstream = egress
        .connect(authority.host(), authority.port_u16().unwrap_or(80))
        .await
        .map_err(refusal)?;
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Incoming>(TokioIo::new(upstream))
        .await
        .map_err(|e| {
            (
                StatusCode::BAD_GATEWAY,
                format!("upstream handshake failed: {e}"),
            )
        })?;
    tracker.spawn(async move {
        tokio::select! {
            r = conn => if let Err(e) = r { debug!(error = %e, "egress upstream connection ended") },
            _ = cancel.cancelled() => {}
        }
    });

    let (mut parts, body) = req.into_parts();
    let origin_form = uri.path_and_query().map_or("/", |pq| pq.as_str());
    parts.uri = origin_form
        .parse::<Uri>()
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad request target: {e}")))?;
    strip_hop_by_hop(&mut parts.headers);
    if !parts.headers.contains_key(header::HOST) {
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| (StatusCode::BAD_REQUEST, "bad host".to_string()))?;
        parts.headers.insert(header::HOST, host);
    }
    let resp = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| {
            (
                StatusCode::BAD_GATEWAY,
                format!("upstream request failed: {e}"),
            )
        })?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Either::Right(body)))
}

/// Removes the headers that describe one connection (RFC 9110 section 7.6.1); hyper re-frames bodies.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

/// Splices every connection accepted on `listener` to `target` until `cancel` fires.
pub(crate) async fn serve_forward(
    listener: TcpListener,
    target: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let mut inbound = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => { debug!(error = %e, "forwarder accept failed"); continue }
            },
        };
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let outbound = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await;
            let mut outbound = match outbound {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return debug!(%target, error = %e, "forwarder cannot reach its target"),
                Err(_) => return debug!(%target, "forwarder connect timed out"),
            };
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => if let Err(e) = r { debug!(error = %e, "forwarded connection ended") },
                _ = cancel.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_host_local_destinations_unless_allowed() {
        let allowed: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let egress = Egress {
            allowed_local: vec![allowed],
        };
        let host = ["10.1.2.3".parse::<IpAddr>().unwrap()];
        let ok = |a: &str| egress.permits(a.parse().unwrap(), &host);
        assert!(ok("127.0.0.1:9000"));
        assert!(
            ok("[::ffff:127.0.0.1]:9000"),
            "v4-mapped form of an allowed address"
        );
        assert!(!ok("127.0.0.1:9001"));
        assert!(!ok("127.1.2.3:80"));
        assert!(!ok("[::1]:80"));
        assert!(!ok("0.0.0.0:80"));
        assert!(!ok("169.254.169.254:80"), "cloud metadata");
        assert!(!ok("[fe80::1]:80"));
        assert!(!ok("10.1.2.3:22"), "the host's own address");
        assert!(!ok("[::ffff:10.1.2.3]:22"));
        assert!(ok("10.1.2.4:443"));
        assert!(ok("93.184.216.34:443"));
    }

    #[test]
    fn strips_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }
}
