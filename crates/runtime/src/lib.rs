//! Berth's runtime: where agent code runs.
//!
//! [`sandbox`] isolates one agent session (namespaces, cgroups, egress proxy, connectors).

pub mod sandbox;

pub use sandbox::{
    Capabilities, Connector, ExitInfo, Isolation, Limits, Network, RunAs, Sandbox, SandboxSpec,
    probe,
};
pub mod builder;
pub mod deploy;
pub mod quota;
pub mod recovery;
pub mod session;
