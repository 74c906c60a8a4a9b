//! The sandbox layer's error type.

use std::io;

use super::ExitInfo;

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is malformed; nothing was started.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// Another live sandbox has this id (its cgroup holds processes); nothing was touched.
    #[error("sandbox id {0} is in use")]
    InUse(String),
    /// The host lacks something this operation needs (see [`probe`](super::probe)).
    #[error("unsupported on this host: {0}")]
    Unsupported(String),
    /// A host-side operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "create cgroup /sys/fs/cgroup/pids/berth/x".
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The child failed while setting up its namespaces or executing the agent.
    #[error("sandbox setup failed at {step}: {source}")]
    Setup {
        /// The setup step, e.g. "exec /usr/bin/python3" or "mount proc on /proc".
        step: String,
        /// The errno the child saw.
        #[source]
        source: io::Error,
    },
    /// Connecting to the agent's port failed (for example nothing listens yet: `ConnectionRefused`).
    #[error("cannot connect to the agent: {0}")]
    Connect(#[source] io::Error),
    /// The agent is gone.
    #[error("agent {0}")]
    Exited(ExitInfo),
    /// The sandbox was destroyed.
    #[error("sandbox is destroyed")]
    Destroyed,
    /// Every uid of the sandbox uid range is held by a live sandbox.
    #[error("no free uid in the sandbox range {first}+{count}")]
    NoFreeUid {
        /// First uid of the range.
        first: u32,
        /// Size of the range.
        count: u32,
    },
    /// A bounded wait ran out.
    #[error("timed out: {0}")]
    Timeout(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
