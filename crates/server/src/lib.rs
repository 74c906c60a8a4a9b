//! The HTTP edge of Berth: one listener serving the AgentCore control plane, the AgentCore data
//! plane, the S3-compatible artifact store and the native API. The only crate that knows axum.
//!
//! Handlers are thin: extract, validate against the service model, call the domain, convert.

mod access_api;
mod auth;
pub mod authz;
mod body;
pub mod cluster_api;
mod conn;
mod control_api;
mod data_api;
mod edge;
mod error;
mod eval_api;
mod eval_data_api;
pub mod gateway_api;
mod identity_api;
mod logs_api;
mod memory_api;
mod metrics;
mod metrics_genai;
mod native_api;
mod protocol_api;
mod registry_api;
mod resource_policy_api;
mod s3;
mod scores_api;
mod secrets_api;
mod traces_api;
mod traffic_api;
mod usage_api;
mod ws;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use berth_auth::KeyLookup;
use berth_control::Control;
use std::sync::Arc;

pub use edge::{Edge, EdgeOptions, raise_open_files_limit, serve, serve_edge, serve_sandbox};
pub use error::RequestId;
pub use eval_api::{BackgroundRunner, Evals, code_runtimes};
pub use eval_data_api::{BATCH_ACTOR, EngineEvaluator, RuntimeCaller};
pub use metrics::{metrics_router, serve_metrics};

/// Everything handlers share: one `Arc` around [`Services`], so the clone axum makes for every
/// request (and every layer's) is one reference count, not ~25.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl From<Services> for AppState {
    fn from(s: Services) -> Self {
        Self(Arc::new(s))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    /// The control-plane domain service.
    pub control: Control,
    /// Who may sign requests.
    pub keys: Arc<dyn KeyLookup>,
    /// Mints access keys and forgets the credentials of deleted runtimes (usually the same
    /// ring as `keys`).
    pub ring: Arc<berth_auth::KeyRing>,
    /// The S3-compatible object store agent code is uploaded to.
    pub artifacts: berth_artifacts::ArtifactStore,
    /// Live sessions and their agents.
    pub sessions: berth_runtime::session::Sessions,
    /// The invocation flow (`InvokeAgentRuntime`) around `sessions`.
    pub invoker: berth_runtime::invoker::Invoker,
    /// AgentCore Memory.
    pub memory: berth_memory::Memory,
    /// AgentCore limits relaxed on test servers.
    pub relax: berth_api::model::Relax,
    /// Spans and log records agents export (and Berth's own).
    pub traces: Arc<dyn berth_trace::TraceStore>,
    /// USD per million tokens per model id, turning GenAI usage into cost.
    pub prices: Arc<berth_trace::usage::Prices>,
    /// The CloudWatch Logs API over the trace store.
    pub logs: berth_trace::logs::Logs,
    /// Evaluation scores (in the trace database), read by experiments and Prometheus.
    pub scores: Arc<dyn berth_trace::scores::ScoreStore>,
    /// AgentCore Evaluations: evaluators, online evaluation configs, the judge.
    pub evals: eval_api::Evals,
    /// Evaluation datasets.
    pub datasets: berth_eval::datasets::Datasets,
    /// Batch evaluations.
    pub batches: berth_eval::batch::Batches,
    /// The container image cache (`None`: this server runs code versions only).
    pub images: Option<Arc<dyn berth_runtime::image::Images>>,
    /// The built-in OCI registry (`/v2/`, see `registry_api`).
    pub registry: berth_oci::registry::Registry,
    /// AgentCore Identity: workload identities, credential providers, the token vault.
    pub identity: berth_identity::Identity,
    /// The model gateway (`None`: not configured; `/gateway/...` answers that it is absent).
    pub gateway: Option<berth_gateway::Gateway>,
    /// What the gateway's calls add up to, for `/metrics`.
    pub gateway_meter: Option<Arc<gateway_api::TraceMeter>>,
    /// Secrets (`berth secrets`): the one instance of the process (its change counter is shared).
    pub secrets: berth_identity::secrets::Secrets,
    /// This node in the installation: forwarding, `/berth/v1/nodes`, health probes.
    pub nodes: cluster_api::Nodes,
}

/// The router of one sandbox's own listener: the OTLP receiver for that sandbox, then the full
/// router.
pub(crate) fn sandbox_router(state: AppState, sandbox: &str) -> Router {
    traces_api::otlp_routes(state.clone(), sandbox).merge(router_for(state, Some(sandbox)))
}

/// The full router: authentication in front of every plane.
pub fn router(state: AppState) -> Router {
    router_for(state, None)
}

/// [`agentcore`] as the router's middleware.
async fn agentcore_layers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    agentcore(&state, req, |req| next.run(req)).await
}

/// The layers in front of every AgentCore operation, outermost first, around `handler`. They run
/// as one future (one boxed future per request, not one per layer: this is the invocation hot
/// path), each a function that wraps the next. The router runs them as a middleware
/// ([`agentcore_layers`]); the edge runs them around `InvokeAgentRuntime` directly
/// (`data_api::invoke_direct`).
pub(crate) async fn agentcore<F, Fut>(state: &AppState, req: Request, handler: F) -> Response
where
    F: FnOnce(Request) -> Fut + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    // Outermost: every response, errors included, carries x-amzn-RequestId.
    error::with_request_id(req, |req| {
        // The Logs API speaks JSON 1.1: a refusal from the layers below carries `__type`.
        logs_api::json_1_1_errors(req, |req| {
            // Every request must be SigV4-signed by a known key. Everything the headers show is
            // checked before a byte of the body is read; then the body is buffered under its
            // operation's limit and the listener's budgets (AgentCore clients send no payload
            // hash, so the signature needs it), then the signature is verified.
            auth::authenticate(state, req, |req| {
                // A change, once authorised, runs to its end even if its client leaves.
                to_completion(req, |req| {
                    // Mutations are audited as the verified caller.
                    traffic_api::caller_scope(req, handler)
                })
            })
        })
    })
    .await
}

/// Runs a request that changes state in a task of its own, so that it runs to its end even if
/// its client leaves. The edge drops a request whose client hangs up, and a handler dropped
/// between two durable steps would leave them half done: a write without its audit entry, a
/// commit without the task it starts (a resource left CREATING), a secret changed but not
/// reloaded. Reads, and the calls whose client leaving must reach the agent (invocations,
/// commands, a WebSocket), stay in the request: they are dropped with it.
pub(crate) async fn to_completion<F, Fut>(req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response> + Send + 'static,
{
    if !changes_state(&req) {
        return inner(req).await;
    }
    // On the server's runtime when the request came in on an edge thread (`edge.rs`): what it
    // starts is the server's, not the thread's that serves connections.
    let home = req
        .extensions()
        .get::<edge::Context>()
        .and_then(|c| c.home.clone());
    let task = tracing::Instrument::in_current_span(inner(req));
    let task = match home {
        Some(home) => home.spawn(task),
        None => tokio::spawn(task),
    };
    match task.await {
        Ok(resp) => resp,
        Err(e) => axum::response::IntoResponse::into_response(error::WireError(
            berth_api::ApiError::internal_because(format_args!("the request's task failed: {e}")),
        )),
    }
}

/// [`to_completion`] as a middleware, for the routers outside [`agentcore_layers`].
async fn run_to_completion(req: Request, next: Next) -> Response {
    to_completion(req, |req| next.run(req)).await
}

/// Whether a request may change state and is not a call streamed to and from an agent.
fn changes_state(req: &Request) -> bool {
    use axum::http::Method;
    let path = req.uri().path();
    !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !(path.starts_with("/runtimes/")
            && (path.ends_with("/invocations") || path.ends_with("/commands")))
}

/// Routes `path` as the service model writes it and, for a model URI with a trailing slash, also
/// without it: boto3 and the JavaScript SDK send `PUT /runtimes/` for CreateAgentRuntime, the AWS
/// SDK for Rust (smithy-rs) drops the slash and sends `PUT /runtimes`, and AgentCore answers
/// both. `authz::operations` classifies both forms alike.
pub(crate) fn model_route<S>(
    router: Router<S>,
    path: &str,
    methods: axum::routing::MethodRouter<S>,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    match path.strip_suffix('/') {
        Some(bare) if !bare.is_empty() => router.route(bare, methods.clone()).route(path, methods),
        _ => router.route(path, methods),
    }
}

/// The full router of the public listener (`sandbox: None`) or of one sandbox's own.
fn router_for(state: AppState, sandbox: Option<&str>) -> Router {
    let agentcore = control_api::routes()
        .merge(data_api::routes())
        .merge(protocol_api::routes())
        .merge(resource_policy_api::routes())
        .merge(memory_api::routes())
        .merge(eval_api::routes())
        .merge(eval_data_api::routes())
        .merge(identity_api::routes())
        .merge(secrets_api::routes())
        .merge(cluster_api::routes())
        .merge(native_api::routes())
        .merge(traces_api::routes())
        .merge(usage_api::routes())
        .merge(scores_api::routes())
        .merge(logs_api::routes())
        .merge(traffic_api::routes())
        .merge(access_api::routes())
        .merge(metrics::routes())
        .fallback(error::unknown_operation)
        // A known path with another method is still no operation AgentCore has.
        .method_not_allowed_fallback(error::unknown_operation);
    // The signed dataset download carries its own credential (an HMAC in the query) and is
    // fetched without SigV4 (the SDK uses plain `requests.get`), so it sits outside the auth
    // layer, inside the request id.
    let unsigned = eval_data_api::unsigned_routes()
        // OAuth2 providers send the user's browser back here (3LO): see `identity_api`.
        .merge(identity_api::unsigned_routes())
        // A load balancer's health and readiness probes carry no credentials.
        .merge(cluster_api::unsigned_routes())
        // The OCI registry authenticates with HTTP Basic (container clients cannot sign) and
        // streams blobs past the SigV4 layer's body limits: see `registry_api`.
        .merge(registry_api::routes().layer(middleware::from_fn(run_to_completion)))
        .layer(middleware::from_fn(error::request_id))
        .with_state(state.clone())
        // Model SDKs send an API key, not SigV4: the key Berth gave the sandbox (see
        // `gateway_api`).
        .merge(
            gateway_api::routes(state.clone(), sandbox)
                // A model call the agent hangs up on before its answer's head is still made,
                // and accounted against the caller's budgets.
                .layer(middleware::from_fn(run_to_completion))
                .layer(middleware::from_fn(error::request_id)),
        );
    Router::new()
        .merge(agentcore)
        // The auth layer already buffered the body under its operation's limit (at most the
        // edge's large-body limit); handlers take it whole rather than apply axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            agentcore_layers,
        ))
        .with_state(state)
        .merge(unsigned)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tokio::sync::oneshot;

    /// Starts `method path` through [`to_completion`] on a handler that waits to be let go, drops
    /// the request as the edge does when its client leaves, lets the handler go, and says whether
    /// it still ran to its end.
    async fn finishes_after_the_client_left(method: &str, path: &str) -> bool {
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let handler = move |_: Request| async move {
            let _ = started_tx.send(());
            let _ = go_rx.await;
            let _ = done_tx.send(());
            Response::new(Body::empty())
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let mut request = Box::pin(to_completion(req, handler));
        tokio::select! {
            _ = &mut request => panic!("the handler answered before it was let go"),
            r = started_rx => r.unwrap(),
        }
        drop(request);
        let _ = go_tx.send(());
        done_rx.await.is_ok()
    }

    #[tokio::test]
    async fn a_change_runs_to_its_end_after_its_client_left() {
        for (method, path) in [
            ("POST", "/runtimes/"),
            ("PUT", "/runtimes/r-1/"),
            ("DELETE", "/runtimes/r-1/"),
            ("POST", "/runtimes/r-1/stopruntimesession"),
            ("PUT", "/bucket/key"),
        ] {
            assert!(
                finishes_after_the_client_left(method, path).await,
                "{method} {path}"
            );
        }
    }

    #[tokio::test]
    async fn reads_and_agent_calls_end_with_their_client() {
        for (method, path) in [
            ("GET", "/runtimes/"),
            ("HEAD", "/bucket/key"),
            ("POST", "/runtimes/arn%3Aaws/invocations"),
            ("POST", "/runtimes/arn%3Aaws/commands"),
        ] {
            assert!(
                !finishes_after_the_client_left(method, path).await,
                "{method} {path}"
            );
        }
    }

    /// A change that came in on an edge thread runs on the server's runtime (its `home`), where
    /// what it starts outlives the edge.
    #[tokio::test]
    async fn a_change_from_an_edge_thread_runs_on_the_home_runtime() {
        let home = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("berth-home-test")
            .enable_all()
            .build()
            .unwrap();
        let mut ctx = edge::Context::standalone();
        ctx.home = Some(home.handle().clone());
        let mut req = Request::post("/runtimes/").body(Body::empty()).unwrap();
        req.extensions_mut().insert(ctx);
        let (tx, rx) = oneshot::channel();
        let resp = to_completion(req, |_| async move {
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
            Response::new(Body::empty())
        })
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(rx.await.unwrap().as_deref(), Some("berth-home-test"));
        home.shutdown_background();
    }

    #[tokio::test]
    async fn a_change_whose_task_panics_is_answered_500() {
        let req = Request::post("/runtimes/").body(Body::empty()).unwrap();
        let resp = to_completion(req, |_| async { panic!("a handler bug") }).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
