//! The seam between the control plane and whatever turns versions into running agents.

use async_trait::async_trait;
use berth_api::ApiError;
use berth_api::control::RuntimeSpec;
use berth_types::records::{Runtime, RuntimeVersion};

/// Why a version could not be made runnable, or its sessions stopped. The `Display` text is
/// what `failureReason` shows the caller, so each variant quotes the failure underneath.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// This backend cannot do it (container images without a container backend; stopping
    /// sessions by version on a backend that cannot find them).
    #[error("{0}")]
    Unsupported(String),
    /// The stored configuration of the version does not parse.
    #[error("unreadable version configuration: {0}")]
    Config(String),
    /// The code artifact could not be read from the artifact store.
    #[error("cannot read the code artifact s3://{bucket}/{key}: {reason}")]
    Artifact {
        /// Bucket named by the version.
        bucket: String,
        /// Key named by the version.
        key: String,
        /// What the artifact store said.
        reason: String,
    },
    /// The build itself failed (unpacking, interpreter, dependencies): the builder's message.
    #[error("{0}")]
    Build(String),
    /// Rebuilding a version found other code than it was built from; versions are immutable.
    #[error(
        "the code artifact changed since version {version} was built ({now} now, {then} then); create a new version"
    )]
    ArtifactChanged {
        /// The version.
        version: u32,
        /// Digest of the artifact now.
        now: String,
        /// Digest the version was built from.
        then: String,
    },
}

/// Builds versions and releases what they hold. The session runtime implements it; the control
/// plane only drives the status state machine around its results.
#[async_trait]
pub trait Deployer: Send + Sync + 'static {
    /// Refuses, before anything is stored, configurations this backend can never run
    /// (for example container images without a container backend).
    fn check(&self, spec: &RuntimeSpec) -> Result<(), ApiError>;

    /// Turns a version into something runnable. `Ok` carries the artifact's content address;
    /// `Err`'s text is shown as the version's `failureReason`.
    async fn build(&self, runtime: &Runtime, version: &RuntimeVersion) -> Result<String, Error>;

    /// Ends the sessions of a deleted version (or, with `None`, of the whole runtime) and frees
    /// what was built for it.
    async fn retire(&self, runtime_id: &str, version: Option<u32>);

    /// Stops the live sessions of `version` that were opened through `endpoint`, because the
    /// version's drain deadline on that endpoint passed. Returns how many were stopped.
    ///
    /// The default refuses: a backend that cannot find sessions by version says so, and the
    /// controller logs it (the sessions then end on their own lifecycle).
    async fn drain(&self, runtime_id: &str, endpoint: &str, version: u32) -> Result<usize, Error> {
        let _ = (runtime_id, endpoint, version);
        Err(Error::Unsupported(
            "this backend cannot stop sessions by version".into(),
        ))
    }

    /// Keeps `version` ready to take sessions without a cold start (it is part of an endpoint's
    /// routing, or about to be rolled back to). The default does nothing: a backend without
    /// warm capacity has nothing to prepare.
    async fn warm(&self, runtime: &Runtime, version: &RuntimeVersion) {
        let _ = (runtime, version);
    }
}
