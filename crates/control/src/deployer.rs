//! The seam between the control plane and whatever turns versions into running agents.

use async_trait::async_trait;
use berth_api::ApiError;
use berth_api::control::RuntimeSpec;
use berth_types::records::{Runtime, RuntimeVersion};

/// Builds versions and releases what they hold. The session runtime implements it; the control
/// plane only drives the status state machine around its results.
#[async_trait]
pub trait Deployer: Send + Sync + 'static {
    /// Refuses, before anything is stored, configurations this backend can never run
    /// (for example container images without a container backend).
    fn check(&self, spec: &RuntimeSpec) -> Result<(), ApiError>;

    /// Turns a version into something runnable. `Ok` carries the artifact's content address;
    /// `Err` carries a failure reason quoting the build error, shown as `failureReason`.
    async fn build(&self, runtime: &Runtime, version: &RuntimeVersion) -> Result<String, String>;

    /// Ends the sessions of a deleted version (or, with `None`, of the whole runtime) and frees
    /// what was built for it.
    async fn retire(&self, runtime_id: &str, version: Option<u32>);

    /// Stops the live sessions of `version` that were opened through `endpoint`, because the
    /// version's drain deadline on that endpoint passed. Returns how many were stopped.
    ///
    /// The default refuses: a backend that cannot find sessions by version says so, and the
    /// controller logs it (the sessions then end on their own lifecycle).
    async fn drain(&self, runtime_id: &str, endpoint: &str, version: u32) -> Result<usize, String> {
        let _ = (runtime_id, endpoint, version);
        Err("this backend cannot stop sessions by version".into())
    }

    /// Keeps `version` ready to take sessions without a cold start (it is part of an endpoint's
    /// routing, or about to be rolled back to). The default does nothing: a backend without
    /// warm capacity has nothing to prepare.
    async fn warm(&self, runtime: &Runtime, version: &RuntimeVersion) {
        let _ = (runtime, version);
    }
}
