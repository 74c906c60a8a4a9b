//! The HTTP edge of Berth: one listener serving the AgentCore control plane, the AgentCore data
//! plane, the S3-compatible artifact store and the native API. The only crate that knows axum.
//!
//! Handlers are thin: extract, validate against the service model, call the domain, convert.

mod access_api;
mod auth;
pub mod authz;
mod control_api;
mod data_api;
mod error;
mod memory_api;
mod metrics;
mod native_api;
mod s3;
mod traffic_api;

use axum::Router;
use axum::middleware;
use berth_auth::KeyLookup;
use berth_control::Control;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::RequestId;
pub use metrics::{metrics_router, serve_metrics};

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The control-plane domain service.
    pub control: Control,
    /// Who may sign requests.
    pub keys: Arc<dyn KeyLookup>,
    /// Mints access keys and forgets the credentials of deleted runtimes (usually the same
    /// ring as `keys`).
    pub ring: Arc<berth_auth::KeyRing>,
    /// The S3-compatible object store agent code is uploaded to.
    pub artifacts: berth_artifacts::ArtifactStore,
    /// Live sessions and their sandboxes.
    pub sessions: berth_runtime::session::Sessions,
    /// AgentCore Memory.
    pub memory: berth_memory::Memory,
    /// AgentCore limits relaxed on test servers.
    pub relax: berth_api::model::Relax,
}

/// The full router: authentication in front of every plane.
pub fn router(state: AppState) -> Router {
    let agentcore = control_api::routes()
        .merge(data_api::routes())
        .merge(memory_api::routes())
        .merge(native_api::routes())
        .merge(traffic_api::routes())
        .merge(access_api::routes())
        .merge(metrics::routes())
        .fallback(error::unknown_operation)
        // A known path with another method is still no operation AgentCore has.
        .method_not_allowed_fallback(error::unknown_operation);
    Router::new()
        .merge(agentcore)
        // Every request must be SigV4-signed by a known key; the body is buffered (capped) to be
        // hashed, which AgentCore clients require because they send no payload hash.
        // The auth layer already buffered the body under its own cap; handlers take it whole.
        .layer(axum::extract::DefaultBodyLimit::max(auth::MAX_BODY))
        // Inside authentication: mutations are audited as the verified caller.
        .layer(middleware::from_fn(traffic_api::caller_scope))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // Outermost: every response, errors included, carries x-amzn-RequestId.
        .layer(middleware::from_fn(error::request_id))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains connections.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(state);
    // Nagle would hold back small writes (an SSE event, the tail of a response) for a delayed
    // ACK; every byte Berth writes is meant to leave at once.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
