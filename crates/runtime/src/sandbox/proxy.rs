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
//! # Egress policy
//!
//! Destinations are checked after resolution, on the address actually dialled: a name is resolved
//! once and the proxy connects to exactly the address it checked, so a DNS answer that changes
//! between check and connect (rebinding) cannot slip through. Denied by default, with the IPv4 forms
//! embedded in IPv6 addresses (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) checked as the IPv4 address they reach:
//!
//! - loopback (`127/8`, `::1`), unspecified (`0/8`, `::`), multicast, broadcast and reserved (`240/4`);
//! - private networks: RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), CGNAT (`100.64/10`, where some
//!   clouds put their metadata service), IETF protocol assignments (`192.0.0/24`), unique-local
//!   IPv6 (`fc00::/7`) and the deprecated site-local `fec0::/10`;
//! - link-local (`169.254/16`, `fe80::/10`) and the instance metadata services (`169.254.169.254`,
//!   `fd00:ec2::254`), named separately in logs;
//! - every address of the host's own interfaces (read per connection: interfaces come and go).
//!
//! Exceptions, checked first: [`SandboxSpec::allowed_local`](super::SandboxSpec::allowed_local)
//! (exact address and port, e.g. Berth's own API) and the operator's allow-list
//! ([`EgressPolicy::allow`]: CIDRs, or host names whose resolved addresses are then all allowed).
//! With [`EgressPolicy::allow_only`] (VPC-mode runtimes, builds) nothing else is reachable. A
//! refusal is answered `403 Forbidden` and logged once per request with the sandbox, runtime,
//! session, requested host, address and reason. Plain-HTTP upgrades (WebSocket over `ws://`) are
//! not forwarded; clients tunnel them with CONNECT.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent proxied connections per sandbox; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;

/// One entry of the operator's egress allow-list (`berth serve --egress-allow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRule {
    /// Every address in this network (a bare address is a /32 or /128).
    Net(IpNet),
    /// A host name, lowercase without a trailing dot: requests naming it may reach whatever it
    /// resolves to. A leading `.` (or `*.`) also matches every subdomain.
    Host(String),
}

/// An allow-list entry that is neither a CIDR, an address nor a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress allow-list entry {0:?} is not a CIDR, an IP address or a host name")]
pub struct InvalidEgressRule(pub String);

impl FromStr for EgressRule {
    type Err = InvalidEgressRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || InvalidEgressRule(s.to_owned());
        if let Ok(net) = t.parse::<IpNet>() {
            return Ok(Self::Net(net.trunc()));
        }
        if let Ok(ip) = t
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(Self::Net(IpNet::from(ip.to_canonical())));
        }
        let name = t.trim_end_matches('.').to_ascii_lowercase();
        let (wild, bare) = match name.strip_prefix("*.").or_else(|| name.strip_prefix('.')) {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if bare.is_empty() || bare.len() > 253 || !bare.split('.').all(label_ok) {
            return Err(bad());
        }
        Ok(Self::Host(if wild {
            format!(".{bare}")
        } else {
            bare.to_owned()
        }))
    }
}

impl EgressRule {
    /// Parses a list as given on the command line: entries separated by commas or whitespace.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, InvalidEgressRule> {
        s.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect()
    }

    /// Whether a request naming `host` (a host name or an address literal) is allowed by this rule
    /// whatever it resolves to: for checks made before anything is resolved.
    pub fn allows_name(&self, host: &str) -> bool {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match (self, literal.parse::<IpAddr>()) {
            (Self::Net(net), Ok(ip)) => net.contains(&ip.to_canonical()),
            (Self::Net(_), Err(_)) => false,
            (Self::Host(_), _) => self.matches(host, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        }
    }

    /// Whether a request for `host` (as the client named it) resolved to `ip` matches this rule.
    fn matches(&self, host: &str, ip: IpAddr) -> bool {
        match self {
            Self::Net(net) => {
                net.contains(&ip) || embedded_v4(ip).is_some_and(|v4| net.contains(&IpAddr::V4(v4)))
            }
            Self::Host(pattern) => {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                match pattern.strip_prefix('.') {
                    Some(domain) => host == domain || host.ends_with(pattern.as_str()),
                    None => host == *pattern,
                }
            }
        }
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Net(n) => write!(f, "{n}"),
            Self::Host(h) => f.write_str(h),
        }
    }
}

/// What a sandbox may reach through its egress proxy, beyond the default policy (module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Destinations reachable even though the default policy denies them (internal services).
    pub allow: Vec<EgressRule>,
    /// Nothing but `allow` (and `allowed_local`) is reachable: VPC-mode runtimes and builds.
    pub allow_only: bool,
    /// The runtime the sandbox serves, for denial logs.
    pub runtime: Option<String>,
    /// The session (or build) the sandbox serves, for denial logs.
    pub session: Option<String>,
}

/// The egress decision of one sandbox.
#[derive(Debug, Clone, Default)]
pub(crate) struct Egress {
    /// The sandbox id, for denial logs.
    pub(crate) sandbox: String,
    pub(crate) allowed_local: Vec<SocketAddr>,
    pub(crate) policy: EgressPolicy,
}

/// Why a destination was not reached.
#[derive(Debug)]
enum Refusal {
    Denied(String),
    Unreachable(String),
}

impl Egress {
    /// `Ok` when `addr` (resolved from `host`) may be dialled, else the reason for the refusal.
    fn decide(
        &self,
        host: &str,
        addr: SocketAddr,
        host_addrs: &[IpAddr],
    ) -> Result<(), &'static str> {
        let ip = addr.ip().to_canonical();
        let canonical = SocketAddr::new(ip, addr.port());
        if self
            .allowed_local
            .iter()
            .any(|a| SocketAddr::new(a.ip().to_canonical(), a.port()) == canonical)
        {
            return Ok(());
        }
        if self.policy.allow.iter().any(|r| r.matches(host, ip)) {
            return Ok(());
        }
        if self.policy.allow_only {
            return Err("not in the egress allow-list");
        }
        if let Some(reason) = denied_range(ip) {
            return Err(reason);
        }
        if host_addrs.iter().any(|h| h.to_canonical() == ip) {
            return Err("an address of the berth host");
        }
        Ok(())
    }

    /// Resolves `host:port` once and connects to the first permitted address.
    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Refusal> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| Refusal::Unreachable(format!("resolving {host} timed out")))?
                .map_err(|e| Refusal::Unreachable(format!("cannot resolve {host}: {e}")))?
                .collect();
        let host_addrs = host_addresses();
        let mut permitted = Vec::new();
        let mut first_refusal = None;
        for addr in addrs {
            match self.decide(host, addr, &host_addrs) {
                Ok(()) => permitted.push(addr),
                Err(reason) => {
                    first_refusal.get_or_insert((addr, reason));
                }
            }
        }
        if permitted.is_empty() {
            let (address, reason) = match first_refusal {
                Some((a, r)) => (a.to_string(), r),
                None => (String::new(), "no address"),
            };
            warn!(
                sandbox = %self.sandbox,
                runtime = self.policy.runtime.as_deref().unwrap_or(""),
                session = self.policy.session.as_deref().unwrap_or(""),
                host,
                port,
                address,
                reason,
                "egress denied"
            );
            return Err(Refusal::Denied(format!(
                "egress to {host}:{port} is denied by berth's egress policy: {reason}"
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

/// The IPv4 address an IPv6 address stands for, when it embeds one: IPv4-mapped, IPv4-compatible
/// (deprecated, but still routed by some stacks), NAT64 well-known prefix, 6to4.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// The reason `ip` is denied by default, if it is.
fn denied_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => denied_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(reason) = denied_v6(v6) {
                return Some(reason);
            }
            embedded_v4(ip).and_then(denied_v4)
        }
    }
}

fn denied_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(if ip == Ipv4Addr::new(169, 254, 169, 254) {
        "the instance metadata service"
    } else if o[0] == 127 {
        "loopback"
    } else if o[0] == 0 {
        "unspecified"
    } else if o[0] == 10 || (o[0] == 172 && o[1] & 0xf0 == 16) || (o[0] == 192 && o[1] == 168) {
        "a private network (rfc 1918)"
    } else if o[0] == 100 && o[1] & 0xc0 == 64 {
        "carrier-grade nat (100.64/10)"
    } else if o[0] == 169 && o[1] == 254 {
        "link-local"
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        "ietf protocol assignments (192.0.0/24)"
    } else if o[0] >= 224 && o[0] < 240 {
        "multicast"
    } else if o[0] >= 240 {
        "reserved or broadcast"
    } else {
        return None;
    })
}

fn denied_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s0 = ip.segments()[0];
    Some(
        if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
            "the instance metadata service"
        } else if ip.is_loopback() {
            "loopback"
        } else if ip.is_unspecified() {
            "unspecified"
        } else if s0 & 0xfe00 == 0xfc00 {
            "a unique-local network (fc00::/7)"
        } else if s0 & 0xffc0 == 0xfe80 {
            "link-local"
        } else if s0 & 0xffc0 == 0xfec0 {
            "site-local"
        } else if s0 & 0xff00 == 0xff00 {
            "multicast"
        } else {
            return None;
        },
    )
}

/// The host's interface addresses.
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

    fn egress(allow: &str, allow_only: bool) -> Egress {
        Egress {
            sandbox: "t".into(),
            allowed_local: vec!["127.0.0.1:9000".parse().unwrap()],
            policy: EgressPolicy {
                allow: EgressRule::parse_list(allow).unwrap(),
                allow_only,
                ..EgressPolicy::default()
            },
        }
    }

    #[test]
    fn refuses_host_local_destinations_unless_allowed() {
        let egress = egress("", false);
        let host = ["192.0.2.2".parse::<IpAddr>().unwrap()];
        let ok = |a: &str| egress.decide("x", a.parse().unwrap(), &host).is_ok();
        assert!(ok("127.0.0.1:9000"));
        assert!(
            ok("[::ffff:127.0.0.1]:9000"),
            "v4-mapped form of an allowed address"
        );
        assert!(!ok("127.0.0.1:9001"));
        assert!(!ok("127.1.2.3:80"));
        assert!(!ok("[::1]:80"));
        assert!(!ok("0.0.0.0:80"));
        assert!(!ok("[fe80::1]:80"));
        assert!(!ok("192.0.2.2:22"), "the host's own address");
        assert!(!ok("[::ffff:192.0.2.2]:22"));
        assert!(ok("192.0.2.3:443"));
        assert!(ok("93.184.216.34:443"));
        assert!(ok("[2606:4700::1111]:443"));
    }

    #[test]
    fn refuses_private_cgnat_metadata_and_their_ipv6_forms() {
        let egress = egress("", false);
        let reason = |a: &str| egress.decide("x", a.parse().unwrap(), &[]).err();
        for (addr, why) in [
            ("10.1.2.3:80", "rfc 1918"),
            ("172.16.0.1:80", "rfc 1918"),
            ("172.31.255.255:80", "rfc 1918"),
            ("192.168.1.1:80", "rfc 1918"),
            ("100.64.0.1:80", "carrier-grade"),
            ("100.127.255.254:80", "carrier-grade"),
            ("169.254.169.254:80", "metadata"),
            ("169.254.1.1:80", "link-local"),
            ("[fd00:ec2::254]:80", "metadata"),
            ("[fd12::1]:80", "unique-local"),
            ("[fc00::1]:80", "unique-local"),
            ("[ff02::1]:80", "multicast"),
            ("224.0.0.1:80", "multicast"),
            ("255.255.255.255:80", "broadcast"),
            ("[::ffff:10.0.0.1]:80", "rfc 1918"),
            ("[::ffff:169.254.169.254]:80", "metadata"),
            ("[::ffff:100.64.0.1]:80", "carrier-grade"),
            ("[::10.0.0.1]:80", "rfc 1918"),
            ("[64:ff9b::a9fe:a9fe]:80", "metadata"),
            ("[2002:a00:1::1]:80", "rfc 1918"),
            ("[::]:80", "unspecified"),
        ] {
            let r = reason(addr).unwrap_or_else(|| panic!("{addr} allowed"));
            assert!(r.contains(why), "{addr}: {r}");
        }
        for addr in [
            "172.32.0.1:80",
            "100.128.0.1:80",
            "[64:ff9b::5db8:d822]:80",
            "[2002:5db8:d822::1]:80",
        ] {
            assert_eq!(reason(addr), None, "{addr}");
        }
    }

    #[test]
    fn allow_list_opens_networks_and_names() {
        let egress = egress(
            "10.20.0.0/16, 169.254.169.254 internal.example.com,.corp.example",
            false,
        );
        let ok = |host: &str, a: &str| egress.decide(host, a.parse().unwrap(), &[]).is_ok();
        assert!(ok("x", "10.20.3.4:80"));
        assert!(ok("x", "[::ffff:10.20.3.4]:80"));
        assert!(!ok("x", "10.21.3.4:80"));
        assert!(ok("x", "169.254.169.254:80"));
        assert!(ok("Internal.Example.com.", "10.9.9.9:443"));
        assert!(ok("a.corp.example", "192.168.0.1:443"));
        assert!(ok("corp.example", "192.168.0.1:443"));
        assert!(!ok("xcorp.example", "192.168.0.1:443"));
        assert!(!ok("other.example.com", "10.9.9.9:443"));
    }

    #[test]
    fn allow_only_reaches_nothing_else() {
        let egress = egress("pypi.org,10.0.0.0/8", true);
        let ok = |host: &str, a: &str| egress.decide(host, a.parse().unwrap(), &[]).is_ok();
        assert!(ok("pypi.org", "151.101.0.223:443"));
        assert!(ok("x", "10.1.1.1:80"));
        assert!(!ok("example.com", "93.184.216.34:443"));
        assert!(ok("x", "127.0.0.1:9000"), "allowed_local still works");
    }

    #[test]
    fn rules_parse() {
        assert_eq!(
            EgressRule::parse_list("10.1.2.3, fd00::/8 ,*.Corp.Example.").unwrap(),
            vec![
                EgressRule::Net("10.1.2.3/32".parse().unwrap()),
                EgressRule::Net("fd00::/8".parse().unwrap()),
                EgressRule::Host(".corp.example".into()),
            ]
        );
        assert_eq!(
            "10.1.2.3/8".parse::<EgressRule>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in ["http://x", "a b", "-x.com", "x..y", "", "10.0.0.0/33"] {
            assert!(bad.parse::<EgressRule>().is_err(), "{bad:?}");
        }
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
