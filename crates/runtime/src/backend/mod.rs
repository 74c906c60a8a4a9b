//! Session backends: where and how a session's agent runs.
//!
//! The session supervisor ([`crate::session::Sessions`]) owns everything a backend should not
//! have to know: which session maps to which agent, `/ping` lifecycle, idle and lifetime limits,
//! warm pools, quotas, kept logs. A backend only starts agents and reaches them. Each started
//! agent is an [`Agent`]: the supervisor forwards invocations to it, pings it, watches its exit,
//! reads its logs and stops it, through this interface and nothing else.
//!
//! Backends today: [`namespace`] (Linux namespaces, cgroups, seccomp; or plain processes with
//! `--isolation process`). A container backend (an OCI rootfs under a runtime such as `runc`) goes
//! in `backend/container.rs`, a Kubernetes backend (one pod per session) in
//! `backend/kubernetes.rs`; each implements [`SessionBackend`] and is chosen at start-up in
//! `cli::serve`. Nothing outside this module names a sandbox.
//!
//! Architecture Invariant: the supervisor never sees a host pid, path or namespace of an agent
//! except through [`Placement`], which is for operators to read, not for code to act on.

pub mod client;
pub mod namespace;

pub use client::{AgentBody, AgentClient, ForwardError, Forwarding};

pub use crate::sandbox::ExitInfo;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use std::path::PathBuf;
use std::pin::Pin;
use tokio::io::AsyncRead;
use tokio::sync::watch;

/// Why a backend could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent could not be started; the message is shown to the caller.
    #[error("{0}")]
    Start(String),
    /// This backend does not offer the operation (yet).
    #[error("{operation} is not supported by the {backend} session backend")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// The operation.
        operation: &'static str,
    },
    /// The agent could not be reached, stopped or read.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// What a backend needs to start one agent. Backend-neutral: no host paths beyond the code the
/// agent runs, no isolation settings (those are the backend's own options).
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Names this agent instance (file-system and cgroup safe); unique among live agents.
    pub id: String,
    /// The runtime the agent belongs to.
    pub runtime_id: String,
    /// Unpacked code, read-only for the agent.
    pub code_dir: PathBuf,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The agent's whole environment, in order (a later entry wins).
    pub env: Vec<(String, String)>,
    /// Host paths the agent needs although the backend may hide their parents (its venv).
    pub visible: Vec<PathBuf>,
    /// A container image version's files (`code_dir` is then the working directory inside the
    /// image): the namespace backend stacks the layers into the agent's root; a backend that runs
    /// images itself uses the pinned digest.
    pub image: Option<crate::image::ImageFiles>,
    /// PUBLIC network mode (the default egress policy); `false` is VPC mode.
    pub public_network: bool,
    /// The port the agent listens on (the version's `protocolConfiguration`: 8080 for HTTP and
    /// AGUI, 8000 for MCP, 9000 for A2A, or the configured one).
    pub port: u16,
}

/// Where an agent runs, for operators (`berth sessions list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// The backend's name (`namespace`, `container`, `kubernetes`).
    pub backend: &'static str,
    /// The backend's id for the agent (a sandbox id, a container id, a pod name).
    pub instance: String,
    /// The agent's process id on this host, for backends whose agents are host processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// A command to run in a session's agent environment.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Program and arguments (`InvokeAgentRuntimeCommand` sends `/bin/sh -c COMMAND`).
    pub argv: Vec<String>,
    /// How long the command may run; at the deadline its process group is killed.
    pub timeout: std::time::Duration,
}

/// How an [`Agent::exec`] command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecExit {
    /// Exit code, or 128 + the signal that killed it (the shell's convention).
    pub code: i32,
    /// The timeout ran out and the command was killed.
    pub timed_out: bool,
}

/// One step of a running command's output, in the order it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// Bytes the command wrote to stdout.
    Stdout(Bytes),
    /// Bytes the command wrote to stderr.
    Stderr(Bytes),
    /// The command ended; always the last event.
    Exit(ExecExit),
}

/// A running command's output. Dropping it kills the command.
pub type ExecStream = futures::stream::BoxStream<'static, Result<ExecEvent, Error>>;

/// An agent's combined stdout and stderr, from its start. Reading past what was written so far
/// returns end-of-file; reading again later returns what was written since.
pub type LogReader = Pin<Box<dyn AsyncRead + Send>>;

/// Tells when an agent's process ended. Cheap to clone; any number of tasks may wait.
#[derive(Debug, Clone)]
pub struct Exit(watch::Receiver<Option<ExitInfo>>);

impl Exit {
    /// Watches `rx`, which the backend sets once, when the agent has ended.
    pub fn new(rx: watch::Receiver<Option<ExitInfo>>) -> Self {
        Self(rx)
    }

    /// Resolves when the agent has ended. Cancel-safe.
    pub async fn exited(&self) -> ExitInfo {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_default(),
            // The backend dropped its side: nothing will report an exit any more, so the agent
            // is as good as gone.
            Err(_) => ExitInfo::default(),
        }
    }

    /// How the agent ended, if it has.
    pub fn try_exit(&self) -> Option<ExitInfo> {
        self.0.borrow().clone()
    }
}

/// One running agent of a backend. The supervisor holds it for a session (or in a warm pool)
/// and calls [`Agent::stop`] exactly once before dropping it.
#[async_trait::async_trait]
pub trait Agent: Send + Sync + 'static {
    /// Where it runs.
    fn placement(&self) -> Placement;

    /// Sends one HTTP request to the agent over a pooled keep-alive connection (the URI's
    /// authority is ignored: every request goes to this agent); backends use an
    /// [`AgentClient`], which drives the connection from the caller's task.
    fn forward(&self, req: Request<Full<Bytes>>) -> Forwarding;

    /// When the agent ended.
    fn exit(&self) -> &Exit;

    /// `GET /ping` until `deadline`: `Ok(true)` for HealthyBusy, `Ok(false)` for Healthy. A body
    /// past [`PING_BODY_MAX`] or still arriving at the deadline is a failure.
    async fn ping(&self, deadline: tokio::time::Instant) -> Result<bool, String> {
        let req = Request::get("http://127.0.0.1/ping")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp: Response<AgentBody> = self.forward(req).await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("status {}", resp.status()));
            }
            http_body_util::Limited::new(resp.into_body(), PING_BODY_MAX)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| {
                    format!("unreadable or oversized body (limit {PING_BODY_MAX} bytes): {e}")
                })
        };
        let body = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| "timed out".to_owned())??;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        Ok(v.get("status").and_then(|s| s.as_str()) == Some("HealthyBusy"))
    }

    /// Starts a command in the agent's environment (its filesystem, environment, uid, network
    /// and limits) and streams its stdout and stderr as they come, then how it ended. At
    /// `req.timeout` the command's process group is killed and the exit says `timed_out`.
    /// Stopping the agent ends the command.
    async fn exec(&self, req: &ExecRequest) -> Result<ExecStream, Error>;

    /// The agent's output so far (and, read again later, what it wrote since).
    async fn logs(&self) -> Result<LogReader, Error>;

    /// Stops the agent and frees everything it held. Idempotent. With a non-zero `grace` the
    /// agent is first asked to end (SIGTERM) and given that long to flush and exit: a session
    /// ending. Zero kills at once: spares, failed starts, evictions.
    async fn stop(&self, grace: std::time::Duration) -> Result<(), Error>;
}

/// The most of a `/ping` body Berth reads; AgentCore's answer is a few dozen bytes. Anything
/// larger counts as unhealthy instead of being buffered in the server, outside any cgroup.
pub const PING_BODY_MAX: usize = 4096;

/// Starts agents. One per server, chosen at start-up, shared as `Arc<dyn SessionBackend>`.
#[async_trait::async_trait]
pub trait SessionBackend: Send + Sync + 'static {
    /// Short name, shown in [`Placement::backend`].
    fn name(&self) -> &'static str;

    /// The URL at which this backend's agents reach Berth's data plane, if they can.
    fn api_url(&self) -> Option<String>;

    /// Starts an agent for a session and returns once it runs (not once it answers `/ping`:
    /// the supervisor waits for that, bounded by its start timeout).
    async fn start(&self, spec: AgentSpec) -> Result<Box<dyn Agent>, Error>;

    /// Starts a spare agent for a version's warm pool, before its session is known. A backend
    /// with a cheaper way to keep spares (paused containers, pre-pulled pods) overrides it.
    async fn warm(&self, spec: AgentSpec) -> Result<Box<dyn Agent>, Error> {
        self.start(spec).await
    }
}
