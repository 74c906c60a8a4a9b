//! Several nodes, one installation: forwarding a session's calls to the node that runs it, the
//! native API over the nodes (`/berth/v1/nodes`, what `berth nodes` calls), and the health and
//! readiness endpoints a load balancer polls.
//!
//! A forwarded call is the caller's request as it came (method, path, headers, body: its SigV4
//! signature still holds and is verified again by the owner) plus
//! [`FORWARDED_HEADER`](berth_runtime::cluster::FORWARDED_HEADER), an HMAC under a key every
//! node derives from the root secret, bound to the request's `Authorization`. The owner serves a
//! call carrying a valid one and never sends it on; an invalid one is refused. The answer
//! streams back as the owner sends it.

use crate::AppState;
use crate::error::WireError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::{ApiError, ErrorKind};
use berth_runtime::cluster::{Cluster, FORWARDED_HEADER};
use berth_store::nodes::NodeRow;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// This node in the installation, as the HTTP edge needs it.
#[derive(Clone)]
pub struct Nodes {
    /// Membership, placement, leases.
    pub cluster: Cluster,
    /// Pooled connections to the other nodes.
    client: Client<HttpConnector, Full<Bytes>>,
    /// The store's view of every node, for `/berth/v1/nodes`.
    store: Option<Arc<dyn berth_store::nodes::NodeStore>>,
    /// Set once shutdown starts: readiness fails so a load balancer stops sending.
    stopping: Arc<AtomicBool>,
}

/// A pooled connection to another node idle longer than this is closed instead of reused. The
/// other node's edge closes a kept-alive connection that sends no request within its header read
/// timeout (`EdgeOptions::header_read_timeout`, 10 s by default); a request sent on a connection
/// just as it closes fails after it went out, and cannot be retried safely. So this stays well
/// below it.
const PEER_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Nodes {
    /// The edge over `cluster`; `store` lists the other nodes (`None`: standalone).
    pub fn new(cluster: Cluster, store: Option<Arc<dyn berth_store::nodes::NodeStore>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            cluster,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(PEER_IDLE_TIMEOUT)
                .build(connector),
            store,
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Readiness fails from now on (shutdown has begun).
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether the request was forwarded by another node of the installation: `Ok(false)`
    /// without the header, `Ok(true)` with a valid one, AccessDenied with any other.
    pub(crate) fn forwarded(&self, headers: &HeaderMap) -> Result<bool, ApiError> {
        let Some(proof) = headers.get(FORWARDED_HEADER) else {
            return Ok(false);
        };
        let auth = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        match proof.to_str() {
            Ok(p) if self.cluster.verify_forward(p, auth) => Ok(true),
            _ => Err(ApiError::new(
                ErrorKind::AccessDenied,
                format!("{FORWARDED_HEADER} is not a valid proof of a node of this installation"),
            )),
        }
    }

    /// Sends the caller's request about `session` (runtime id, session id) to `node`, which
    /// runs it, and streams its answer back.
    pub(crate) async fn forward(
        &self,
        node: &NodeRow,
        session: (&str, &str),
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, ApiError> {
        let req = self.request_to(node, method, uri, headers, body, hop_by_hop)?;
        let (mut parts, body) = self.send(node, session, req).await?.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// The other nodes alive now (none when standalone).
    pub(crate) async fn others(&self) -> Result<Vec<NodeRow>, ApiError> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let now = berth_types::now_millis();
        let me = self.cluster.id();
        Ok(store
            .nodes()
            .await
            .map_err(|e| ApiError::internal_because(format_args!("node store: {e}")))?
            .into_iter()
            .filter(|n| n.id != me && n.alive(now))
            .collect())
    }

    /// Asks `node` the caller's own `GET` (a native view each node answers for itself) and
    /// reads its JSON answer.
    pub(crate) async fn ask(
        &self,
        node: &NodeRow,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<serde_json::Value, String> {
        let req = self
            .request_to(node, Method::GET, uri, headers, Bytes::new(), hop_by_hop)
            .map_err(|e| e.detail().to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    /// Sends the caller's WebSocket upgrade request about `session` to `node`, which runs it.
    /// The answer is the owner's: `101` with the connection to upgrade
    /// (`hyper::upgrade::on`), or the error it refused the upgrade with.
    pub(crate) async fn forward_upgrade(
        &self,
        node: &NodeRow,
        session: (&str, &str),
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
        // The upgrade's own headers (`connection`, `upgrade`, `sec-websocket-*`) go along: the
        // owner answers the handshake the client started.
        let connection_only = |name: &http::HeaderName| {
            hop_by_hop(name) && !matches!(name.as_str(), "connection" | "upgrade")
        };
        let req = self.request_to(
            node,
            Method::GET,
            uri,
            headers,
            Bytes::new(),
            connection_only,
        )?;
        self.send(node, session, req).await
    }

    /// The caller's request addressed to `node`: same path, query and headers (less those
    /// `drop` names), plus this node's proof.
    fn request_to(
        &self,
        node: &NodeRow,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        drop: impl Fn(&http::HeaderName) -> bool,
    ) -> Result<http::Request<Full<Bytes>>, ApiError> {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let target: Uri = format!("{}{path}", node.address.trim_end_matches('/'))
            .parse()
            .map_err(|e| {
                ApiError::internal_because(format_args!(
                    "node {} has an unusable address {:?}: {e}",
                    node.id, node.address
                ))
            })?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(target)
            .body(Full::new(body))
            .map_err(ApiError::internal_because)?;
        for (name, value) in headers {
            if !drop(name) && name.as_str() != FORWARDED_HEADER {
                req.headers_mut().append(name, value.clone());
            }
        }
        let auth = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let proof = http::HeaderValue::try_from(self.cluster.forward_proof(auth))
            .map_err(ApiError::internal_because)?;
        req.headers_mut().insert(FORWARDED_HEADER, proof);
        Ok(req)
    }

    async fn send(
        &self,
        node: &NodeRow,
        session: (&str, &str),
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
        self.client.request(req).await.map_err(|e| {
            // The owner is unreachable: it may have just died; once its lease lapses the next
            // call starts the session afresh on a live node. Read the owner again next time.
            self.cluster.forget_owner(session.0, session.1);
            ApiError::new(
                ErrorKind::ServiceUnavailable,
                format!(
                    "the node running this session ({}) is unreachable: {e}; retry shortly",
                    node.id
                ),
            )
        })
    }
}

/// The caller's request as it came, kept so a session's call can be forwarded to the node that
/// runs it.
pub(crate) struct CallerRequest<'a> {
    pub(crate) method: Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: Bytes,
    /// Runtime id and session id.
    pub(crate) session: (&'a str, &'a str),
    /// Another node sent it here ([`Nodes::forwarded`]): it is never sent on.
    pub(crate) forwarded: bool,
}

/// Where a session operation was answered.
pub(crate) enum Served {
    /// Here: the agent's answer, for the handler to convert.
    Here(berth_runtime::invoker::Answer),
    /// By the node that runs the session: its response, passed through as it streams.
    There(Response),
}

/// Runs `inv` through the invoker, or, when another node runs its session, forwards the
/// caller's request there. A call forwarded here is never sent on: if the session moved
/// meanwhile, it is answered unavailable.
pub(crate) async fn invoke_here_or_there(
    s: &AppState,
    inv: berth_runtime::invoker::Invocation<'_>,
    req: CallerRequest<'_>,
) -> Result<Served, ApiError> {
    match s.invoker.invoke(inv).await {
        Ok(answer) => Ok(Served::Here(answer)),
        // Boxed: the forward is the cold path, and its future would otherwise be part of every
        // invocation's (copied with it at every await above).
        Err(berth_runtime::invoker::Error::Elsewhere(node)) if !req.forwarded => {
            Box::pin(s.nodes.forward(
                &node,
                req.session,
                req.method,
                req.uri,
                req.headers,
                req.body,
            ))
            .await
            .map(Served::There)
        }
        Err(e) => Err(crate::data_api::invoke_error(e)),
    }
}

/// Headers that belong to one connection, not to the message (RFC 9110 7.6.1).
fn hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Drops the connection's own headers from a forwarded answer.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let names: Vec<_> = headers.keys().filter(|n| hop_by_hop(n)).cloned().collect();
    for n in names {
        headers.remove(n);
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeView {
    node_id: String,
    address: String,
    /// ISO 8601.
    started_at: String,
    /// ISO 8601.
    last_seen: String,
    alive: bool,
    draining: bool,
    /// True for the node that answered.
    this_node: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LeaseView {
    job: String,
    node_id: String,
    /// ISO 8601.
    until: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeList {
    /// False: this node serves alone (no advertised address).
    clustered: bool,
    nodes: Vec<NodeView>,
    leases: Vec<LeaseView>,
}

fn store_error(e: berth_store::Error) -> WireError {
    WireError(ApiError::internal_because(format_args!("node store: {e}")))
}

/// `GET /berth/v1/nodes`: every node with its state, and who runs each background job.
async fn list_nodes(State(s): State<AppState>) -> Result<Response, WireError> {
    let Some(store) = &s.nodes.store else {
        return Ok(axum::Json(NodeList {
            clustered: false,
            nodes: Vec::new(),
            leases: Vec::new(),
        })
        .into_response());
    };
    let now = berth_types::now_millis();
    let me = s.nodes.cluster.id();
    let nodes = store
        .nodes()
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|n| NodeView {
            alive: n.alive(now),
            this_node: n.id == me,
            started_at: berth_types::iso8601(n.started_at),
            last_seen: berth_types::iso8601(n.seen_at),
            node_id: n.id,
            address: n.address,
            draining: n.draining,
        })
        .collect();
    let leases = store
        .leases()
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|l| l.until > now)
        .map(|l| LeaseView {
            job: l.name,
            node_id: l.holder,
            until: berth_types::iso8601(l.until),
        })
        .collect();
    Ok(axum::Json(NodeList {
        clustered: true,
        nodes,
        leases,
    })
    .into_response())
}

async fn set_draining(s: &AppState, id: &str, draining: bool) -> Result<Response, WireError> {
    let Some(store) = &s.nodes.store else {
        return Err(WireError(ApiError::new(
            ErrorKind::Validation,
            "this node serves alone (no --advertise): there is no node to drain",
        )));
    };
    if id == s.nodes.cluster.id() {
        s.nodes
            .cluster
            .set_draining(draining)
            .await
            .map_err(store_error)?;
    } else if !store
        .set_draining(id, draining)
        .await
        .map_err(store_error)?
    {
        return Err(WireError(ApiError::not_found(format!("no node {id}"))));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /berth/v1/nodes/{id}/drain`: the node takes no new sessions; its live ones finish.
async fn drain(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, WireError> {
    set_draining(&s, &id, true).await
}

/// `DELETE /berth/v1/nodes/{id}/drain`: the node takes new sessions again.
async fn undrain(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, WireError> {
    set_draining(&s, &id, false).await
}

/// The signed routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/berth/v1/nodes", get(list_nodes))
        .route("/berth/v1/nodes/{id}/drain", post(drain).delete(undrain))
}

/// `GET /berth/v1/health/live`: the process answers.
async fn live() -> Response {
    (StatusCode::OK, "live\n").into_response()
}

/// `GET /berth/v1/health/ready`: this node takes new sessions (not draining, not stopping).
async fn ready(State(s): State<AppState>) -> Response {
    if s.nodes.stopping.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
    } else if s.nodes.cluster.draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

/// The unsigned routes: a load balancer's probes carry no credentials.
pub fn unsigned_routes() -> Router<AppState> {
    Router::new()
        .route("/berth/v1/health/live", get(live))
        .route("/berth/v1/health/ready", get(ready))
}
