//! Requests and connections: one HTTP/1.1 connection per worker, requests built from a template
//! and, for Berth, SigV4-signed with `berth-auth` exactly as the `berth` CLI signs them.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use berth_auth::Credentials;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The AgentCore session header.
pub const SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";
/// Region and service every AgentCore data-plane request is signed for.
const REGION: &str = "us-east-1";
const SERVICE: &str = "bedrock-agentcore";

/// Where requests go: a parsed `http://host:port/path?query` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// Socket address connected to.
    pub addr: SocketAddr,
    /// `host:port`, sent as the `Host` header.
    pub authority: String,
    /// Origin-form request target (path and query), sent as is.
    pub path_and_query: String,
}

impl Target {
    /// Parses an `http://` URL whose host is an IP address (the harness only talks to loopback
    /// listeners, so no resolver is involved in any timing).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("url {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("url {url:?}: only http:// is supported");
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("url {url:?} has no host"))?
            .to_string();
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let ip: std::net::IpAddr = host
            .parse()
            .with_context(|| format!("url {url:?}: the host must be an ip address"))?;
        let port = uri.port_u16().unwrap_or(80);
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            authority,
            path_and_query,
        })
    }
}

/// Which session id a request carries.
#[derive(Debug, Clone)]
pub enum Session {
    /// No session header (a bare agent or nginx in front of one: the agent ignores it anyway).
    None,
    /// The same id on every request: warm invocations of one session.
    Fixed(String),
    /// A fresh id per request: every request starts a session.
    New,
}

/// A fresh session id: AgentCore wants 33 or more characters.
pub fn new_session_id() -> String {
    format!("bench-{}", uuid::Uuid::new_v4().simple())
}

/// Builds the requests of a run.
#[derive(Clone)]
pub struct Template {
    /// Destination.
    pub target: Target,
    /// Method.
    pub method: Method,
    /// Body of every request.
    pub body: Bytes,
    /// Session header policy.
    pub session: Session,
    /// Sign with these credentials (SigV4, `bedrock-agentcore`, us-east-1).
    pub credentials: Option<Credentials>,
    /// `Accept` header value.
    pub accept: &'static str,
    /// Extra headers sent on every request (`--header`), before signing.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// One request ready to send, with how long signing it took.
pub struct Built {
    /// The request.
    pub request: Request<Full<Bytes>>,
    /// Its session id, if it carries one.
    pub session_id: Option<String>,
    /// Time spent in `berth_auth::sign` (zero when unsigned).
    pub sign_time: Duration,
}

impl Template {
    /// Builds (and signs) the next request.
    pub fn build(&self) -> anyhow::Result<Built> {
        let session_id = match &self.session {
            Session::None => None,
            Session::Fixed(id) => Some(id.clone()),
            Session::New => Some(new_session_id()),
        };
        self.build_for(
            self.method.clone(),
            &self.target.path_and_query,
            session_id,
            self.body.clone(),
        )
    }

    /// Builds (and signs) a request to another path of the same server.
    pub fn build_for(
        &self,
        method: Method,
        path_and_query: &str,
        session_id: Option<String>,
        body: Bytes,
    ) -> anyhow::Result<Built> {
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, &self.target.authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, self.accept)
            .body(body)
            .context("building a request")?;
        for (name, value) in &self.headers {
            request.headers_mut().append(name.clone(), value.clone());
        }
        if let Some(id) = &session_id {
            request.headers_mut().insert(
                HeaderName::from_static(SESSION_HEADER),
                HeaderValue::from_str(id).context("session id header")?,
            );
        }
        let mut sign_time = Duration::ZERO;
        if let Some(creds) = &self.credentials {
            let started = Instant::now();
            berth_auth::sign(&mut request, creds, REGION, SERVICE, SystemTime::now())
                .context("signing a request")?;
            sign_time = started.elapsed();
        }
        let request = request.map(Full::new);
        Ok(Built {
            request,
            session_id,
            sign_time,
        })
    }
}

/// A `NAME:VALUE` header argument (spaces after the colon are dropped, as HTTP does).
pub fn parse_header(arg: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = arg
        .split_once(':')
        .ok_or_else(|| format!("header {arg:?}: expected NAME:VALUE"))?;
    let name =
        HeaderName::try_from(name.trim()).map_err(|e| format!("header {arg:?}: bad name: {e}"))?;
    let value = HeaderValue::try_from(value.trim_start())
        .map_err(|e| format!("header {arg:?}: bad value: {e}"))?;
    Ok((name, value))
}

/// Credentials from `BERTH_ACCESS_KEY_ID` / `BERTH_SECRET_ACCESS_KEY` (the server's root keys,
/// as `berth serve` reads them), else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
pub fn credentials_from_env() -> anyhow::Result<Credentials> {
    let pair = |id: &str, secret: &str| match (std::env::var(id), std::env::var(secret)) {
        (Ok(access_key_id), Ok(secret_access_key)) => Some(Credentials {
            access_key_id,
            secret_access_key,
        }),
        _ => None,
    };
    pair("BERTH_ACCESS_KEY_ID", "BERTH_SECRET_ACCESS_KEY")
        .or_else(|| pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
        .ok_or_else(|| {
            anyhow!(
                "--sign needs BERTH_ACCESS_KEY_ID and BERTH_SECRET_ACCESS_KEY (or the AWS_ pair)"
            )
        })
}

/// One kept-alive HTTP/1.1 connection.
pub struct Connection {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

/// Why a request did not get an answer.
// The unsent request is handed back to be retried; boxing it would cost an allocation per retry.
#[allow(clippy::large_enum_variant)]
enum SendFailure {
    /// The connection was closed (a server may end an idle or much-used keep-alive connection at
    /// any time) before the request went out: safe to send again on a new connection.
    Unsent(Request<Full<Bytes>>, anyhow::Error),
    /// Failed after it was sent, or for another reason.
    Failed(anyhow::Error),
}

impl Connection {
    /// Connects with `TCP_NODELAY`, as every well-behaved HTTP client does for small requests.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("http/1.1 handshake")?;
        // The connection task ends when the sender is dropped or the peer closes.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { addr, sender })
    }

    /// Sends a request; the response body is left to the caller. A request the server's closing
    /// of the connection kept from going out is sent again, once, on a new connection (as HTTP
    /// clients do); the reconnection is part of that request's time.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<http::Response<Incoming>> {
        let request = match self.try_send(request).await {
            Ok(response) => return Ok(response),
            Err(SendFailure::Failed(e)) => return Err(e),
            Err(SendFailure::Unsent(request, _)) => request,
        };
        *self = Connection::open(self.addr).await?;
        match self.try_send(request).await {
            Ok(response) => Ok(response),
            Err(SendFailure::Unsent(_, e) | SendFailure::Failed(e)) => Err(e),
        }
    }

    async fn try_send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<Incoming>, SendFailure> {
        if let Err(e) = self.sender.ready().await {
            return Err(SendFailure::Unsent(
                request,
                anyhow::Error::new(e).context("connection closed"),
            ));
        }
        match self.sender.try_send_request(request).await {
            Ok(response) => Ok(response),
            Err(mut e) => match e.take_message() {
                Some(request) => Err(SendFailure::Unsent(
                    request,
                    anyhow::Error::new(e.into_error()).context("connection closed"),
                )),
                None => Err(SendFailure::Failed(
                    anyhow::Error::new(e.into_error()).context("sending the request"),
                )),
            },
        }
    }
}

/// What reading a whole response observed.
pub struct Received {
    /// HTTP status.
    pub status: u16,
    /// When the first body byte arrived (or the headers, for an empty body).
    pub first_byte: Instant,
    /// When the body ended.
    pub done: Instant,
    /// The body.
    pub body: Bytes,
}

/// Reads a response to its end, noting when its first body byte arrived.
pub async fn receive(response: http::Response<Incoming>) -> anyhow::Result<Received> {
    let status = response.status().as_u16();
    let headers_at = Instant::now();
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the response body")?;
        if let Ok(data) = frame.into_data() {
            if data.is_empty() {
                continue;
            }
            first_byte.get_or_insert_with(Instant::now);
            collected.extend_from_slice(&data);
        }
    }
    Ok(Received {
        status,
        first_byte: first_byte.unwrap_or(headers_at),
        done: Instant::now(),
        body: Bytes::from(collected),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parses_an_encoded_arn_path() {
        let t = Target::parse(
            "http://127.0.0.1:8750/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A000000000000%3Aruntime%2Fa-0123456789/invocations?qualifier=DEFAULT",
        )
        .expect("parse");
        assert_eq!(t.addr, "127.0.0.1:8750".parse().expect("addr"));
        assert_eq!(t.authority, "127.0.0.1:8750");
        assert!(t.path_and_query.starts_with("/runtimes/arn%3Aaws%3A"));
        assert!(t.path_and_query.ends_with("/invocations?qualifier=DEFAULT"));
    }

    #[test]
    fn target_refuses_names_and_https() {
        assert!(Target::parse("http://localhost:80/").is_err());
        assert!(Target::parse("https://127.0.0.1/").is_err());
    }

    #[test]
    fn header_arguments_parse() {
        let (n, v) = parse_header("x-api-key:berth-gw.abc:def").expect("header");
        assert_eq!(
            (n.as_str(), v.to_str().expect("ascii")),
            ("x-api-key", "berth-gw.abc:def")
        );
        assert!(parse_header("no-colon").is_err());
        assert!(parse_header("bad name: v").is_err());
    }

    #[test]
    fn session_ids_are_long_enough_for_agentcore() {
        assert!(new_session_id().len() >= 33);
    }

    #[test]
    fn signed_requests_carry_the_signature_and_the_body() {
        let template = Template {
            target: Target::parse("http://127.0.0.1:9/invocations").expect("parse"),
            method: Method::POST,
            body: Bytes::from_static(b"{\"a\":1}"),
            session: Session::New,
            credentials: Some(Credentials {
                access_key_id: "AKIDEXAMPLEAKIDEXAMP".into(),
                secret_access_key: "secretsecretsecretsecretsecretsecretsecr".into(),
            }),
            accept: "application/json",
            headers: vec![parse_header("X-Api-Key: k-1").expect("header")],
        };
        let built = template.build().expect("build");
        let h = built.request.headers();
        assert!(
            h["authorization"]
                .to_str()
                .expect("ascii")
                .starts_with("AWS4-HMAC-SHA256 ")
        );
        assert!(h.contains_key("x-amz-date"));
        assert_eq!(h["x-api-key"], "k-1");
        assert_eq!(
            h[SESSION_HEADER].to_str().expect("ascii"),
            built.session_id.as_deref().expect("id")
        );
    }
}
