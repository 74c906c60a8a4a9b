//! The namespace backend: each agent in its own [`Sandbox`] on this host (namespaces, a uid of
//! its own, seccomp, a minimal root, cgroups, the egress proxy), or a plain process with
//! `--isolation process`.

use super::{
    Agent, AgentSpec, Error, ExecEvent, ExecExit, ExecRequest, ExecStream, Exit, LogReader,
    Placement,
};
use crate::sandbox::{
    Connector, DEFAULT_LAYER_BYTES, EgressPolicy, EgressRule, Execution, ImageRoot, Isolation,
    Limits, Network, Sandbox, SandboxSpec,
};
use bytes::Bytes;
use futures::StreamExt;
use http::Request;
use http_body_util::Full;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Serves Berth's API on a listener inside sandbox `sandbox_id` until the token is cancelled.
pub type ApiServer = dyn Fn(
        tokio::net::TcpListener,
        String,
        tokio_util::sync::CancellationToken,
    ) -> futures::future::BoxFuture<'static, ()>
    + Send
    + Sync;

/// Port inside a sandbox where Berth's API answers.
pub const AGENT_API_PORT: u16 = 8750;

/// Options of the namespace backend.
#[derive(Clone)]
pub struct NamespaceOptions {
    /// Parent of the sandboxes' work roots.
    pub sessions_dir: PathBuf,
    /// Host directories hidden from agents (the data dir).
    pub hidden: Vec<PathBuf>,
    /// Namespaces (default) or plain processes.
    pub isolation: Isolation,
    /// cgroup limits per agent.
    pub limits: Limits,
    /// Host addresses agents may reach through the egress proxy although local (Berth's API).
    pub allowed_local: Vec<SocketAddr>,
    /// The operator's egress allow-list (`--egress-allow`): reachable from PUBLIC runtimes although
    /// the default policy denies it, and the only destinations of VPC runtimes.
    pub egress_allow: Vec<EgressRule>,
    /// Berth's own listener, made reachable inside each namespaced sandbox at
    /// `127.0.0.1:`[`AGENT_API_PORT`] so agents can call the data plane (memory, invoke).
    pub api_addr: Option<SocketAddr>,
    /// Serves Berth's API on a listener inside each namespaced sandbox, with limits of that
    /// sandbox's own; without it, the inside port is spliced to `api_addr`.
    pub api_server: Option<Arc<ApiServer>>,
}

/// Runs agents in namespace sandboxes on this host.
pub struct NamespaceBackend {
    opts: NamespaceOptions,
}

impl NamespaceBackend {
    /// A backend with these options.
    pub fn new(opts: NamespaceOptions) -> Self {
        Self { opts }
    }
}

/// A sandboxed agent and its pooled keep-alive client.
struct SandboxAgent {
    sandbox: Sandbox,
    client: super::AgentClient<Connector>,
    exit: Exit,
}

#[async_trait::async_trait]
impl super::SessionBackend for NamespaceBackend {
    fn name(&self) -> &'static str {
        "namespace"
    }

    fn api_url(&self) -> Option<String> {
        match (self.opts.isolation, self.opts.api_addr) {
            (Isolation::Namespaces, Some(_)) => Some(format!("http://127.0.0.1:{AGENT_API_PORT}")),
            (Isolation::Process, Some(a)) => Some(format!("http://{a}")),
            (_, None) => None,
        }
    }

    async fn start(&self, spec: AgentSpec) -> Result<Box<dyn Agent>, Error> {
        let o = &self.opts;
        let id = spec.id;
        let mut sb = SandboxSpec::new(&id, o.sessions_dir.join(&id), spec.code_dir, spec.argv);
        sb.env = spec.env;
        sb.limits = o.limits;
        sb.isolation = o.isolation;
        sb.agent_port = spec.port;
        // PUBLIC: the default egress policy plus the operator's allow-list; VPC: only the
        // allow-list (nothing at all when it is empty).
        let public = spec.public_network;
        sb.network = if public || !o.egress_allow.is_empty() {
            Network::Public
        } else {
            Network::Isolated
        };
        sb.egress = EgressPolicy {
            allow: o.egress_allow.clone(),
            allow_only: !public,
            runtime: Some(spec.runtime_id),
            // Warm sandboxes start before their session is known; the sandbox id names it.
            session: Some(id.clone()),
        };
        sb.allowed_local = o.allowed_local.clone();
        sb.hidden = o.hidden.clone();
        sb.visible = spec.visible;
        if let Some(image) = spec.image {
            if o.isolation != Isolation::Namespaces {
                return Err(Error::Start(
                    "container images run only in namespace isolation (berth serve as root)".into(),
                ));
            }
            sb.image = Some(ImageRoot {
                layers: image.layers,
                layer_bytes: DEFAULT_LAYER_BYTES,
                user: image.user,
            });
        }
        let namespaced = sb.isolation == Isolation::Namespaces;
        let sandbox = Sandbox::start(sb)
            .await
            .map_err(|e| Error::Start(e.to_string()))?;
        // Exposed right after start: the agent's interpreter needs far longer to get to its
        // first API call than this takes.
        let exposed = match (&o.api_server, o.api_addr) {
            (Some(server), Some(_)) if namespaced => {
                let server = server.clone();
                sandbox
                    .serve_inside(AGENT_API_PORT, move |listener, cancel| {
                        server(listener, id, cancel)
                    })
                    .await
                    .map(drop)
            }
            (None, Some(addr)) if namespaced => sandbox
                .expose_host_port(AGENT_API_PORT, addr)
                .await
                .map(drop),
            _ => Ok(()),
        };
        if let Err(e) = exposed {
            let _ = sandbox.destroy().await;
            return Err(Error::Start(format!(
                "cannot expose berth's api inside the sandbox: {e}"
            )));
        }
        let client = super::AgentClient::new(sandbox.connector());
        let exit = Exit::new(sandbox.exit_watch());
        Ok(Box::new(SandboxAgent {
            sandbox,
            client,
            exit,
        }))
    }
}

#[async_trait::async_trait]
impl Agent for SandboxAgent {
    fn placement(&self) -> Placement {
        Placement {
            backend: "namespace",
            instance: self.sandbox.id().to_owned(),
            pid: Some(self.sandbox.pid()),
        }
    }

    fn forward(&self, req: Request<Full<Bytes>>) -> super::Forwarding {
        self.client.forward(req)
    }

    fn exit(&self) -> &Exit {
        &self.exit
    }

    async fn exec(&self, req: &ExecRequest) -> Result<ExecStream, Error> {
        let run = self.sandbox.exec(&req.argv).await.map_err(|e| Error::Io {
            context: "starting the command in the sandbox",
            source: std::io::Error::other(e),
        })?;
        Ok(stream_execution(run, req.timeout))
    }

    async fn logs(&self) -> Result<LogReader, Error> {
        let file = tokio::fs::File::open(self.sandbox.log_path())
            .await
            .map_err(|source| Error::Io {
                context: "opening the agent log",
                source,
            })?;
        Ok(Box::pin(file))
    }

    async fn stop(&self, grace: std::time::Duration) -> Result<(), Error> {
        self.sandbox.stop(grace).await.map_err(|e| Error::Io {
            context: "destroying the sandbox",
            source: std::io::Error::other(e),
        })
    }
}

/// Reads a command's two pipes as they fill (each event holds what one read returned), kills
/// its process group at the deadline, and ends with its exit once both pipes are closed (or, after
/// a timeout, once it has been reaped: a process that left its group may still hold a pipe).
fn stream_execution(run: Execution, timeout: Duration) -> ExecStream {
    struct St {
        run: Execution,
        deadline: tokio::time::Instant,
        out_open: bool,
        err_open: bool,
        timed_out: bool,
        done: bool,
    }
    const READ: usize = 16 * 1024;
    let st = St {
        run,
        deadline: tokio::time::Instant::now() + timeout,
        out_open: true,
        err_open: true,
        timed_out: false,
        done: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        use tokio::io::AsyncReadExt;
        if st.done {
            return None;
        }
        loop {
            if st.timed_out || (!st.out_open && !st.err_open) {
                let info = st.run.wait().await;
                st.done = true;
                let code = match (info.code, info.signal) {
                    (Some(c), _) => c,
                    (None, Some(sig)) => 128 + sig,
                    (None, None) => -1,
                };
                let exit = ExecExit {
                    code,
                    timed_out: st.timed_out,
                };
                return Some((Ok(ExecEvent::Exit(exit)), st));
            }
            let mut out = vec![0u8; READ];
            let mut err = vec![0u8; READ];
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(st.deadline) => {
                    st.run.kill_group();
                    st.timed_out = true;
                }
                r = st.run.stdout.read(&mut out), if st.out_open => match r {
                    Ok(0) | Err(_) => st.out_open = false,
                    Ok(n) => {
                        out.truncate(n);
                        return Some((Ok(ExecEvent::Stdout(Bytes::from(out))), st));
                    }
                },
                r = st.run.stderr.read(&mut err), if st.err_open => match r {
                    Ok(0) | Err(_) => st.err_open = false,
                    Ok(n) => {
                        err.truncate(n);
                        return Some((Ok(ExecEvent::Stderr(Bytes::from(err))), st));
                    }
                },
            }
        }
    })
    .boxed()
}
