//! Berth's runtime: where agent code runs.
//!
//! [`session`] supervises sessions over a [`backend::SessionBackend`]; [`backend::namespace`] runs
//! agents in [`sandbox`]es (namespaces, cgroups, egress proxy, connectors). [`invoker`] is the
//! invocation flow as a stack of layers around the session call.

pub mod sandbox;

pub use sandbox::{
    Capabilities, Connector, ExitInfo, Isolation, Limits, Network, RunAs, Sandbox, SandboxSpec,
    probe,
};
pub mod backend;
pub mod builder;
pub mod cluster;
pub mod command;
pub mod deploy;
pub mod image;
pub mod invoker;
pub mod quota;
pub mod recovery;
pub mod session;
