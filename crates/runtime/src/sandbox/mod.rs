//! Per-session sandboxes: one agent process tree, isolated from the host and from other sessions.
//!
//! # Shape
//!
//! [`Sandbox::start`] prepares the host side (the `work_root` layout, a uid lease, cgroups, log pipes,
//! the mount plan, the seccomp programs) and asks the helper thread (`helper.rs`) to clone the child
//! with new PID, mount, network, IPC and UTS namespaces. The child becomes PID 1 of its namespace, a
//! minimal init: it assembles the agent's minimal root (`plan.rs`), waits for the parent (who
//! meanwhile puts it into its cgroups, brings loopback up and opens the egress proxy inside its
//! network namespace), enters a cgroup namespace, forks the agent as PID 2 and from then on only reaps
//! zombies. The agent drops to an unprivileged uid of its own (`uids.rs`) with `no_new_privs`, no core
//! dumps, a bounded `RLIMIT_NOFILE`, its own session and `PR_SET_PDEATHSIG`, installs the seccomp
//! filter (`seccomp.rs`) and executes. When the agent exits, init reports its status and
//! exits, and the kernel kills whatever is left in the namespace: killing init (what
//! [`Sandbox::destroy`] does, through a pidfd) takes the whole tree down in one step, and a Berth that
//! dies hard takes its sandboxes with it (init's parent-death signal).
//!
//! [`Sandbox::exec`] runs a command beside the agent (InvokeAgentRuntimeCommand): the helper thread
//! clones a process that waits until it is in the sandbox's cgroups, joins init's namespaces with
//! one `setns` on its pidfd and forks the command through the agent's own last steps (session,
//! uid, rlimits, `no_new_privs`, seccomp) with the agent's environment (`child::exec_main`).
//!
//! The agent listens on `127.0.0.1:<agent_port>` in its own network namespace, so every agent can use
//! 8080. [`Sandbox::connect`] creates the socket inside that namespace on the helper thread and
//! connects it from tokio; [`Connector`] wraps that for hyper-util's pooled client.
//!
//! # Why not hakoniwa (or another sandboxing crate)
//!
//! hakoniwa 1.8 works on this kind of host, but Berth needs control at points such a crate keeps to
//! itself: the child must wait, before exec, until the parent has written it into cgroup v1
//! hierarchies and opened listeners in its network namespace; the init must reap zombies and report
//! the agent's status; the namespace must be entered later from the same long-lived thread for
//! connects (and that thread must also be the parent, for `PR_SET_PDEATHSIG`); the mount view needs
//! masks with bind-backs of the code and venv paths. Writing the clone and mount steps directly costs
//! a few hundred lines of well-contained `unsafe` (all in `child.rs` and `helper.rs`) and keeps the
//! dependency tree small.
//!
//! # Confinement
//!
//! What stands between an agent and the host or another agent, each wall in its own file:
//! - a uid of its own, leased for the sandbox's life from a range Berth owns (`uids.rs`): no shared
//!   keyrings, files or signals between sandboxes, in process isolation too;
//! - a seccomp filter (`seccomp.rs`): no new namespaces, mounts, keyrings, ptrace, bpf, perf,
//!   io_uring, module loading or clock changes; denied calls fail with `EPERM`;
//! - a minimal root (`plan.rs`): a fresh tmpfs with read-only binds of the system directories,
//!   `/etc` essentials, the code, the venv and the interpreter, and nothing else of the host;
//! - `/tmp` and `/mnt/session` as tmpfs of a fixed size ([`SandboxSpec::tmp_bytes`],
//!   [`SandboxSpec::session_bytes`], 512 MiB each by default): a full one is `ENOSPC` in the
//!   sandbox, never a full host disk;
//! - namespaces (PID, mount, network, IPC, UTS, cgroup) and cgroup limits (`cgroup.rs`).
//!
//! tmpfs pages are memory, charged to the sandbox's memory cgroup like its heap: a sandbox's
//! `memory_bytes` covers its processes, its `/tmp`, `/mnt/session` and `/dev/shm` together. The
//! sizes cap each mount on its own; when the sum of what the agent keeps in them and in its heap
//! reaches `memory_bytes`, the kernel reclaims what it can and the OOM killer ends the agent (a
//! write may fail with `ENOMEM` first). Keep `tmp_bytes + session_bytes` well below `memory_bytes`
//! for a predictable `ENOSPC` (the defaults, 1 GiB against Berth's 2 GiB per session, do).
//!
//! # Files
//!
//! Inside `work_root`: `logs/agent.log` (format in `logs.rs`) and, namespaced, the empty mount point
//! `rootfs/`; in process isolation also `tmp/` (the agent's `TMPDIR`) and `storage/` (its `HOME`),
//! owned by the agent's uid and not size-limited. All of it is removed by `destroy`, so the session
//! layer must copy logs it wants to keep before destroying. The uid lease is given back after that,
//! once no process can still hold it.
//!
//! # Resources
//!
//! Limits are cgroup limits (`cgroup.rs`); the cgroup also lets teardown find every process. Init is
//! a copy of Berth (it never executes anything), so its resident set counts Berth's shared pages: the
//! agent's process tree gets `oom_score_adj` 1000 so the OOM killer takes the agent, not init, and
//! init gets -1000 where Berth holds `CAP_SYS_RESOURCE`. A start costs a few ms of Berth's own work
//! (the minimal root is some 40 mount calls, the seccomp programs are compiled once per process)
//! plus one RCU grace period for the first cgroup v1 migration (5 to 15 ms on the reference VM); the
//! rest of an agent's start-up is its interpreter. `bench/notes/B4-confinement.md` has the figures.
//!
//! # Process isolation
//!
//! [`Isolation::Process`] runs the agent as a plain child (own session, parent-death signal,
//! cgroups, a uid of its own when Berth is root, the seccomp filter) on a free host port passed in
//! `PORT`/`AGENT_PORT`;
//! agents must honour it. There is no PID namespace, so descendants that outlive the agent are
//! killed through the process group and the cgroup but re-parented to the host's init for reaping,
//! and [`Network`] is not enforced. The agent sees the host's files (as its uid may) and its `TMPDIR`
//! and `HOME` have no size limit.

mod cgroup;
mod child;
mod error;
mod helper;
mod idmap;
mod logs;
mod plan;
mod probe;
mod proxy;
mod seccomp;
mod spec;
mod status;
mod uids;

use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::ffi::CString;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

pub use cgroup::{ParentLimits, Swept, init_instance, kill_running_from, sweep_instance};
pub use error::Error;

/// The effective uid of this process (builds and sandboxes switch uid only when it is root).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
pub use probe::{Capabilities, CgroupVersion, probe};
pub use proxy::{EgressPolicy, EgressRule, InvalidEgressRule};
pub use spec::{
    DEFAULT_LAYER_BYTES, DEFAULT_LOG_CAP, DEFAULT_SESSION_BYTES, DEFAULT_TMP_BYTES, ImageRoot,
    Isolation, Limits, NOBODY, Network, PROXY_PORT, RunAs, SESSION_DIR, SandboxSpec,
};
pub use status::ExitInfo;
pub use uids::{DEFAULT_FIRST_UID, DEFAULT_UID_COUNT, configure_uids};

use cgroup::Cgroups;
use child::{CStrVec, ExecPlan, NsPlan, Plan, REPORT_SIZE, Report};
use proxy::Egress;

/// How long the child may take from clone to exec before start gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a SIGKILLed sandbox may take to be reaped.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long teardown waits for the log pump and proxy tasks to notice the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const NOFILE: u64 = 65_536;
/// Size of the private `/dev/shm`; its pages are charged to the sandbox's memory cgroup as well.
const SHM_BYTES: u64 = 64 * 1024 * 1024;

/// A running sandbox. Dropping it without [`destroy`](Self::destroy) kills the agent at once and
/// removes cgroups and `work_root` on a background thread.
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    isolation: Isolation,
    work_root: PathBuf,
    log_path: PathBuf,
    /// Where the agent listens: inside its namespace, or on the host in process mode.
    agent_addr: SocketAddr,
    /// Host pid of init (namespaced) or of the agent (process).
    pid: u32,
    pidfd: Arc<OwnedFd>,
    /// The sandbox's network namespace, held open so connects never follow a recycled pid.
    netns: Mutex<Option<Arc<OwnedFd>>>,
    cgroups: Option<Arc<Cgroups>>,
    egress: Arc<Egress>,
    /// The agent's uid lease, given back once cleanup has killed every process that could hold it.
    uid: Mutex<Option<uids::Lease>>,
    exit_rx: watch::Receiver<Option<ExitInfo>>,
    destroying: Arc<AtomicBool>,
    cleaned: AtomicBool,
    /// Stops the proxy, the forwarders and their connections.
    cancel: CancellationToken,
    tasks: TaskTracker,
    log_task: Mutex<Option<JoinHandle<()>>>,
    destroy_lock: tokio::sync::Mutex<()>,
    /// What a command run in the sandbox shares with the agent (see [`Sandbox::exec`]).
    launch: LaunchTemplate,
}

/// The agent's environment, working directory, uid and descriptor limit, kept for commands.
struct LaunchTemplate {
    envp: Vec<CString>,
    cwd: CString,
    creds: Option<(u32, u32)>,
    nofile: u64,
}

/// A command running in a sandbox ([`Sandbox::exec`]): its output pipes, and its end.
pub struct Execution {
    /// The command's stdout.
    pub stdout: pipe::Receiver,
    /// The command's stderr.
    pub stderr: pipe::Receiver,
    /// The command's host pid, which is also its process group id (it runs in a session of its
    /// own).
    pgid: libc::pid_t,
    status_r: pipe::Receiver,
    /// The command's first process (outside the PID namespace), reaped by [`Execution::wait`].
    pidfd: Arc<OwnedFd>,
    exited: bool,
}

impl Execution {
    /// Kills the command's process group. Until the command's first process has reaped the
    /// command (right before it reports the status [`Execution::wait`] reads) the group id
    /// cannot have been recycled; in the microseconds after, only a new group leader that
    /// happened to get the same pid could be hit.
    pub fn kill_group(&self) {
        if self.exited {
            return;
        }
        // SAFETY: kill(2) on the process group of the command; see above for why it is ours.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
    }

    /// Waits for the command to end; its wait status as an [`ExitInfo`]. What the command left
    /// in its process group has been killed by then (its orphans end with it). Then reaps the
    /// command's first process.
    pub async fn wait(&mut self) -> ExitInfo {
        let mut buf = [0u8; 4];
        let read = self.status_r.read_exact(&mut buf).await;
        self.exited = true;
        let pidfd = self.pidfd.clone();
        let _ = tokio::task::spawn_blocking(move || {
            wait_exit_blocking(&pidfd, EXIT_TIMEOUT);
            reap(&pidfd)
        })
        .await;
        match read {
            Ok(_) => ExitInfo::from_wait_status(i32::from_ne_bytes(buf)),
            // The first process died without reporting (the server killed it): no status.
            Err(_) => ExitInfo::default(),
        }
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        if !self.exited {
            // Abandoned (the caller went away): the command ends with its stream, and its first
            // process (killed with it through its parent-death signal) is reaped off the runtime.
            self.kill_group();
            kill_and_reap(&self.pidfd);
        }
    }
}

/// Locks a std mutex; a poisoned one still holds a usable value (only `Option`s are stored).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sandbox {
    /// Starts the agent in a new sandbox and returns once it has been executed (not once it listens:
    /// see [`wait_accepting`](Self::wait_accepting)). On error nothing is left behind.
    pub async fn start(spec: SandboxSpec) -> Result<Sandbox, Error> {
        spec.validate()?;
        probe().check(spec.isolation).map_err(Error::Unsupported)?;
        if spec.isolation == Isolation::Process && spec.network == Network::Isolated {
            warn!(sandbox = %spec.id, "process isolation shares the host network; network isolation is not enforced");
        }
        let began = Instant::now();
        let prepared = tokio::task::spawn_blocking(move || prepare(spec))
            .await
            .map_err(|e| Error::io("prepare sandbox", io::Error::other(e)))??;
        let Prepared {
            id,
            isolation,
            network,
            work_root,
            log_path,
            agent_addr,
            cgroups,
            egress,
            uid,
            plan,
            child_fds,
            fds,
            log,
            context,
            launch,
        } = prepared;

        let spawned = match helper::spawn(plan, child_fds).await {
            Ok(s) => s,
            Err(e) => {
                let cg = cgroups.clone();
                let root = work_root.clone();
                if let Ok(Err(err)) =
                    tokio::task::spawn_blocking(move || cleanup_host(cg.as_deref(), &root)).await
                {
                    warn!(sandbox = %id, error = %err, "cleanup after failed clone");
                }
                return Err(Error::io("clone the sandbox", e));
            }
        };
        let pidfd = Arc::new(spawned.pidfd);
        let (exit_tx, exit_rx) = watch::channel(None);
        let destroying = Arc::new(AtomicBool::new(false));
        tokio::spawn(watch_exit(
            pidfd.clone(),
            spawned.pid,
            isolation,
            cgroups.clone(),
            fds.status_r,
            destroying.clone(),
            exit_tx,
        ));
        let pumps = pipe::Receiver::from_owned_fd(fds.out_r)
            .and_then(|o| Ok((o, pipe::Receiver::from_owned_fd(fds.err_r)?)));
        let (log_task, pump_error) = match pumps {
            Ok((out, err)) => (Some(tokio::spawn(logs::pump(out, err, log))), None),
            Err(e) => (None, Some(e)),
        };
        let sandbox = Sandbox {
            inner: Arc::new(Inner {
                id,
                isolation,
                work_root,
                log_path,
                agent_addr,
                pid: spawned.pid,
                pidfd,
                netns: Mutex::new(None),
                cgroups,
                egress,
                uid: Mutex::new(uid),
                exit_rx,
                destroying,
                cleaned: AtomicBool::new(false),
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                log_task: Mutex::new(log_task),
                destroy_lock: tokio::sync::Mutex::new(()),
                launch,
            }),
        };
        let finished = match pump_error {
            Some(e) => Err(Error::io("watch the agent's output", e)),
            None => {
                sandbox
                    .finish_start(network, fds.sync_w, fds.exec_r, &context)
                    .await
            }
        };
        if let Err(e) = finished {
            if let Err(cleanup) = sandbox.destroy().await {
                warn!(sandbox = %sandbox.inner.id, error = %cleanup, "cleanup after failed start");
            }
            return Err(e);
        }
        info!(
            sandbox = %sandbox.inner.id,
            pid = sandbox.inner.pid,
            isolation = ?isolation,
            elapsed_ms = began.elapsed().as_secs_f64() * 1000.0,
            "sandbox started"
        );
        Ok(sandbox)
    }

    /// Parent's half of the start handshake: cgroups, loopback, proxy, go, then wait for exec.
    async fn finish_start(
        &self,
        network: Network,
        sync_w: OwnedFd,
        exec_r: OwnedFd,
        ctx: &StartContext,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let pid = inner.pid;
        let early = |e: Error| -> Error { child_failure(&exec_r, ctx).unwrap_or(e) };
        let namespaced = inner.isolation == Isolation::Namespaces;
        if namespaced {
            // The child is unreaped until the exit watcher sees it exit, so this pid is still ours.
            let netns = match File::open(format!("/proc/{pid}/ns/net")) {
                Ok(f) => Arc::new(OwnedFd::from(f)),
                Err(e) => return Err(early(Error::io("open the sandbox's network namespace", e))),
            };
            *lock(&inner.netns) = Some(netns);
        }
        if let Some(cg) = &inner.cgroups
            && let Err(e) = cg.attach(pid)
        {
            return Err(early(Error::io("move the sandbox into its cgroups", e)));
        }
        if namespaced {
            // Init's resident set counts Berth's shared pages, which could make it the OOM killer's
            // choice over the agent. Lowering its score needs CAP_SYS_RESOURCE, which some hosts
            // withhold even from root; the agent's raised score (see child.rs) covers that case.
            if let Err(e) = fs::write(format!("/proc/{pid}/oom_score_adj"), "-1000") {
                debug!(sandbox = %inner.id, error = %e, "cannot protect the sandbox init from the oom killer");
            }
            let netns = lock(&inner.netns).clone().ok_or(Error::Destroyed)?;
            if let Err(e) = helper::net(netns.clone(), helper::NetOp::LoopbackUp).await {
                return Err(early(Error::io("bring up loopback in the sandbox", e)));
            }
            if network == Network::Public {
                let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, PROXY_PORT);
                let listener = listen_in(netns, addr)
                    .await
                    .map_err(|e| Error::io("open the egress proxy", e))?;
                let (egress, cancel, tasks) = (
                    inner.egress.clone(),
                    inner.cancel.clone(),
                    inner.tasks.clone(),
                );
                inner
                    .tasks
                    .spawn(proxy::serve_proxy(listener, egress, cancel, tasks));
            }
        }
        let mut sync = File::from(sync_w);
        if let Err(e) = sync.write_all(&[1]) {
            return Err(early(Error::io("release the sandbox child", e)));
        }
        drop(sync);
        wait_exec(exec_r, ctx).await
    }

    /// Host pid of the sandbox's init (namespaced) or of the agent (process mode).
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// The sandbox id from the spec.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The canonical `work_root`.
    pub fn work_root(&self) -> &Path {
        &self.inner.work_root
    }

    /// The agent's address as seen from inside its network namespace (namespaced) or on the host
    /// (process mode, where the port is the one passed in `PORT`).
    pub fn agent_addr(&self) -> SocketAddr {
        self.inner.agent_addr
    }

    /// Combined stdout and stderr of the agent: `work_root/logs/agent.log`, each line prefixed with
    /// `out ` or `err `, rotated to `agent.log.1` at the spec's `log_cap_bytes`.
    pub fn log_path(&self) -> &Path {
        &self.inner.log_path
    }

    /// The sandbox's cgroup directories (one per hierarchy); empty without cgroup support.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.inner
            .cgroups
            .as_ref()
            .map(|c| c.dirs().to_vec())
            .unwrap_or_default()
    }

    /// Opens a TCP connection to the agent's port (inside its network namespace when namespaced).
    pub async fn connect(&self) -> Result<TcpStream, Error> {
        self.inner.connect().await
    }

    /// A connector for hyper-util's pooled client that always dials this sandbox's agent.
    pub fn connector(&self) -> Connector {
        Connector {
            inner: self.inner.clone(),
        }
    }

    /// Polls [`connect`](Self::connect) with a short, growing backoff (2 to 10 ms) until the agent accepts
    /// connections. Fails early if the agent exits.
    pub async fn wait_accepting(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            match self.connect().await {
                Ok(_) => return Ok(()),
                Err(Error::Connect(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!(
                    "agent not accepting connections after {timeout:?}"
                )));
            }
            let mut exit = self.inner.exit_rx.clone();
            tokio::select! {
                _ = tokio::time::sleep(pause.min(deadline - now)) => {}
                _ = exit.wait_for(Option::is_some) => {}
            }
            // A refused connect costs microseconds; a low cap keeps the added start latency small.
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Resolves when the agent's process tree has exited. Cancel-safe; any number of tasks may wait.
    pub async fn exited(&self) -> ExitInfo {
        let mut rx = self.inner.exit_rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(info) => info.clone().unwrap_or_default(),
            // The watcher only goes away with its runtime; the process is gone or being cleaned up.
            Err(_) => ExitInfo {
                destroyed: self.inner.destroying.load(Ordering::SeqCst),
                ..ExitInfo::default()
            },
        }
    }

    /// Waits up to `timeout` until everything the agent's process tree wrote to stdout and stderr
    /// is in the log (every writer of its pipes has gone); `false` on timeout. For callers that read
    /// the whole log after the end, such as builds.
    pub async fn logs_flushed(&self, timeout: Duration) -> bool {
        let Some(mut task) = lock(&self.inner.log_task).take() else {
            return true;
        };
        if tokio::time::timeout(timeout, &mut task).await.is_ok() {
            return true;
        }
        // Still running: `destroy` aborts it.
        *lock(&self.inner.log_task) = Some(task);
        false
    }

    /// A watch that holds how the agent ended once it has (`None` until then).
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.inner.exit_rx.clone()
    }

    /// How the agent ended, if it has.
    pub fn try_exit(&self) -> Option<ExitInfo> {
        self.inner.exit_rx.borrow().clone()
    }

    /// Makes `target` (a host address, e.g. Berth's data plane) reachable from inside the sandbox at
    /// `127.0.0.1:<inside_port>`; returns the port actually bound (pass 0 to let the kernel choose).
    /// Namespaced sandboxes only: in process mode the agent can reach host addresses directly.
    pub async fn expose_host_port(
        &self,
        inside_port: u16,
        target: SocketAddr,
    ) -> Result<u16, Error> {
        let tasks = self.inner.tasks.clone();
        let port = self
            .serve_inside(inside_port, move |listener, cancel| {
                proxy::serve_forward(listener, target, cancel, tasks)
            })
            .await?;
        debug!(sandbox = %self.inner.id, inside_port = port, %target, "host port exposed");
        Ok(port)
    }

    /// Listens on `127.0.0.1:<inside_port>` inside the sandbox and runs `serve` on that listener
    /// (accepting in the host's namespace, like [`Sandbox::expose_host_port`]) until the sandbox
    /// is destroyed, which cancels the token `serve` is given; returns the port bound. Lets the
    /// host serve an API to the agent with limits of the sandbox's own.
    pub async fn serve_inside<F, Fut>(&self, inside_port: u16, serve: F) -> Result<u16, Error>
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let inner = &self.inner;
        if inner.isolation == Isolation::Process {
            return Err(Error::Unsupported(
                "process isolation shares the host network; use the host address".into(),
            ));
        }
        if inner.destroying.load(Ordering::SeqCst) {
            return Err(Error::Destroyed);
        }
        let netns = lock(&inner.netns).clone().ok_or(Error::Destroyed)?;
        let listener = listen_in(netns, SocketAddrV4::new(Ipv4Addr::LOCALHOST, inside_port))
            .await
            .map_err(|e| {
                Error::io(
                    format!("listen on 127.0.0.1:{inside_port} in the sandbox"),
                    e,
                )
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("read the listener address", e))?
            .port();
        inner.tasks.spawn(serve(listener, inner.cancel.clone()));
        Ok(port)
    }

    /// Runs `argv` (resolved in the agent's `PATH`) next to the agent: in its namespaces (so its
    /// mount view, `/tmp`, `/mnt/session`, network and egress proxy), its cgroups, as its uid, with
    /// its environment, working directory, rlimits, `no_new_privs` and seccomp filter; stdin is
    /// `/dev/null`. The command runs in a session (and process group) of its own, which
    /// [`Execution::kill_group`] kills; destroying the sandbox ends it too.
    pub async fn exec(&self, argv: &[String]) -> Result<Execution, Error> {
        let inner = &self.inner;
        if inner.destroying.load(Ordering::SeqCst) {
            return Err(Error::Destroyed);
        }
        if let Some(info) = self.try_exit() {
            return Err(Error::Exited(info));
        }
        let Some(program) = argv.first() else {
            return Err(Error::InvalidSpec("empty command".into()));
        };
        // The program is looked up on the host's /usr, which the sandbox binds read-only.
        let path_var = inner
            .launch
            .envp
            .iter()
            .find_map(|e| e.to_bytes().strip_prefix(b"PATH="))
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or(DEFAULT_PATH);
        let program = resolve_program(program, path_var)?;
        let mut args = vec![cstring(program.as_os_str().as_bytes())?];
        for a in &argv[1..] {
            args.push(cstring(a.as_bytes())?);
        }
        let pipe_err = |e| Error::io("create pipes", e);
        let ChildPipes {
            devnull,
            out_r,
            out_w,
            err_r,
            err_w,
            sync_r,
            sync_w,
            exec_r,
            exec_w,
        } = ChildPipes::new()?;
        let (status_r, status_w) = pipe_pair().map_err(pipe_err)?;
        let status_w = above_stdio(status_w).map_err(pipe_err)?;
        let namespaced = inner.isolation == Isolation::Namespaces;
        let plan = ExecPlan {
            ns_pidfd: namespaced.then(|| inner.pidfd.as_raw_fd()),
            argv: CStrVec::new(args),
            envp: CStrVec::new(inner.launch.envp.clone()),
            cwd: inner.launch.cwd.clone(),
            creds: inner.launch.creds,
            seccomp: seccomp::programs().map_err(Error::Unsupported)?,
            nofile: inner.launch.nofile,
            stdin: devnull.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
            sync_r: sync_r.as_raw_fd(),
            exec_w: exec_w.as_raw_fd(),
            status_w: status_w.as_raw_fd(),
        };
        let child_fds = vec![devnull, out_w, err_w, sync_r, exec_w, status_w];
        let spawned = helper::exec(plan, child_fds)
            .await
            .map_err(|e| Error::io("clone the command", e))?;
        // Until the command is handed over as an `Execution`, an error or this future being
        // dropped (the request's client left) kills and reaps it.
        let unclaimed = Unclaimed {
            pidfd: Arc::new(spawned.pidfd),
            claimed: false,
        };
        if let Some(cg) = &inner.cgroups
            && let Err(e) = cg.attach(spawned.pid)
        {
            return Err(Error::io("move the command into the sandbox's cgroups", e));
        }
        File::from(sync_w)
            .write_all(&[1])
            .map_err(|e| Error::io("release the command", e))?;
        let ctx = StartContext {
            descriptions: Vec::new(),
            program: program.display().to_string(),
        };
        wait_exec(exec_r, &ctx).await?;
        let rx = |fd: OwnedFd| pipe::Receiver::from_owned_fd(fd).map_err(pipe_err);
        let (stdout, stderr, mut status_r) = match (rx(out_r), rx(err_r), rx(status_r)) {
            (Ok(o), Ok(e), Ok(s)) => (o, e, s),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(e),
        };
        let mut pid = [0u8; 4];
        status_r
            .read_exact(&mut pid)
            .await
            .map_err(|e| Error::io("read the command's pid", e))?;
        Ok(Execution {
            stdout,
            stderr,
            pgid: i32::from_ne_bytes(pid),
            status_r,
            pidfd: unclaimed.claim(),
            exited: false,
        })
    }

    /// Asks the agent to end (SIGTERM, passed on by init in a namespaced sandbox), gives it up
    /// to `grace` to exit, flushing what it buffers (an OpenTelemetry SDK's last spans go out
    /// through the sandbox's still-open listeners), then [`destroy`](Self::destroy)s. A zero
    /// `grace` is `destroy`.
    pub async fn stop(&self, grace: Duration) -> Result<(), Error> {
        let inner = &self.inner;
        if !grace.is_zero() && !inner.cleaned.load(Ordering::SeqCst) && self.try_exit().is_none() {
            inner.destroying.store(true, Ordering::SeqCst);
            helper::pidfd_signal(&inner.pidfd, libc::SIGTERM);
            let mut exit = inner.exit_rx.clone();
            // Drop the watch guard before awaiting anything else: it is not Send.
            let _ = tokio::time::timeout(grace, exit.wait_for(Option::is_some))
                .await
                .map(|r| r.map(drop));
        }
        self.destroy().await
    }

    /// Kills the whole process tree, then removes cgroups and `work_root` (mounts live only in the
    /// sandbox's mount namespace and vanish with it). Idempotent; concurrent calls wait for the first.
    pub async fn destroy(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let _guard = inner.destroy_lock.lock().await;
        if inner.cleaned.load(Ordering::SeqCst) {
            return Ok(());
        }
        inner.destroying.store(true, Ordering::SeqCst);
        inner.cancel.cancel();
        helper::pidfd_kill(&inner.pidfd);
        let mut exit = inner.exit_rx.clone();
        // Drop the watch guard before awaiting anything else: it is not Send.
        let waited = tokio::time::timeout(EXIT_TIMEOUT, exit.wait_for(Option::is_some))
            .await
            .map(|r| r.map(drop));
        match waited {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                // The watcher is gone (its runtime shut down): reap here.
                let pidfd = inner.pidfd.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    wait_exit_blocking(&pidfd, EXIT_TIMEOUT);
                    reap(&pidfd)
                })
                .await;
            }
            Err(_) => {
                return Err(Error::Timeout(
                    "the sandbox did not exit after sigkill".into(),
                ));
            }
        }
        inner.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, inner.tasks.wait())
            .await
            .is_err()
        {
            warn!(sandbox = %inner.id, "proxy tasks did not stop in time");
        }
        let log_task = lock(&inner.log_task).take();
        if let Some(mut task) = log_task
            && tokio::time::timeout(DRAIN_TIMEOUT, &mut task)
                .await
                .is_err()
        {
            // Something outside the sandbox still holds a pipe end; the log is about to be removed.
            task.abort();
        }
        lock(&inner.netns).take();
        let (cg, root) = (inner.cgroups.clone(), inner.work_root.clone());
        let cleaned = tokio::task::spawn_blocking(move || cleanup_host(cg.as_deref(), &root))
            .await
            .map_err(|e| Error::io("clean up sandbox", io::Error::other(e)))
            .and_then(|r| r);
        if let Err(e) = cleaned {
            inner.quarantine_uid();
            return Err(e);
        }
        // Every process is dead (init's exit killed the namespace, or the cgroup was emptied).
        lock(&inner.uid).take();
        inner.cleaned.store(true, Ordering::SeqCst);
        info!(sandbox = %inner.id, "sandbox destroyed");
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let inner = &self.inner;
        if inner.cleaned.load(Ordering::SeqCst) {
            return;
        }
        inner.destroying.store(true, Ordering::SeqCst);
        inner.cancel.cancel();
        helper::pidfd_kill(&inner.pidfd);
        if let Some(task) = lock(&inner.log_task).take() {
            task.abort();
        }
        // A plain thread, not a tokio task: the runtime may be shutting down right now (a dropped
        // sandbox at the end of a test or of `main`), and the cleanup must still happen.
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("berth-sandbox-drop".into())
            .spawn(move || inner.cleanup_blocking());
        if let Err(e) = spawned {
            warn!(sandbox = %self.inner.id, error = %e, "cannot start sandbox cleanup; cgroup and work_root left behind");
        }
    }
}

impl Inner {
    async fn connect(&self) -> Result<TcpStream, Error> {
        if self.destroying.load(Ordering::SeqCst) {
            return Err(Error::Destroyed);
        }
        if let Some(info) = self.exit_rx.borrow().clone() {
            return Err(Error::Exited(info));
        }
        let connecting = async {
            match self.isolation {
                Isolation::Namespaces => {
                    let netns = lock(&self.netns).clone().ok_or(Error::Destroyed)?;
                    let fd = helper::net(netns, helper::NetOp::Socket)
                        .await
                        .map_err(Error::Connect)?
                        .ok_or_else(|| Error::Connect(io::Error::other("no socket returned")))?;
                    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
                    socket
                        .connect(self.agent_addr)
                        .await
                        .map_err(Error::Connect)
                }
                Isolation::Process => TcpStream::connect(self.agent_addr)
                    .await
                    .map_err(Error::Connect),
            }
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| {
                Error::Timeout(format!(
                    "connecting to the agent took over {CONNECT_TIMEOUT:?}"
                ))
            })??;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Synchronous teardown for `Drop`.
    fn cleanup_blocking(&self) {
        wait_exit_blocking(&self.pidfd, EXIT_TIMEOUT);
        reap(&self.pidfd);
        lock(&self.netns).take();
        let mut result = cleanup_host(self.cgroups.as_deref(), &self.work_root);
        if result.is_err() {
            // The log pump may have been rotating a file into the directory being removed.
            result = cleanup_host(self.cgroups.as_deref(), &self.work_root);
        }
        match result {
            Ok(()) => {
                lock(&self.uid).take();
                self.cleaned.store(true, Ordering::SeqCst);
                debug!(sandbox = %self.id, "dropped sandbox cleaned up");
            }
            Err(e) => {
                self.quarantine_uid();
                warn!(sandbox = %self.id, error = %e, "cleanup of dropped sandbox failed");
            }
        }
    }

    /// Keeps the uid out of the pool for the life of the process: a failed cleanup may have left
    /// processes running as it.
    fn quarantine_uid(&self) {
        if let Some(lease) = lock(&self.uid).take() {
            warn!(sandbox = %self.id, uid = lease.uid(), "sandbox uid withheld from reuse after a failed cleanup");
            std::mem::forget(lease);
        }
    }
}

/// Connects to one sandbox's agent; a `tower::Service<Uri>` for
/// `hyper_util::client::legacy::Client::builder(..).build(connector)`. The URI is ignored: every
/// connection goes to the agent. Holding a connector does not keep the sandbox alive; after
/// destroy, calls fail with [`Error::Destroyed`].
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("sandbox", &self.inner.id)
            .finish()
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.connect().await.map(TokioIo::new) })
    }
}

async fn listen_in(netns: Arc<OwnedFd>, addr: SocketAddrV4) -> io::Result<TcpListener> {
    let fd = helper::net(netns, helper::NetOp::Listen(addr))
        .await?
        .ok_or_else(|| io::Error::other("no listener returned"))?;
    TcpListener::from_std(std::net::TcpListener::from(fd))
}

/// Waits for the pidfd to report exit, then reaps and reports.
async fn watch_exit(
    pidfd: Arc<OwnedFd>,
    pid: u32,
    isolation: Isolation,
    cgroups: Option<Arc<Cgroups>>,
    status_r: Option<OwnedFd>,
    destroying: Arc<AtomicBool>,
    tx: watch::Sender<Option<ExitInfo>>,
) {
    // SAFETY: the Arc keeps the pidfd open, unchanged, for as long as the AsyncFd lives.
    match unsafe { AsyncFd::register_with_interest(pidfd.clone(), Interest::READABLE) } {
        Ok(fd) => {
            let _ = fd.readable().await;
        }
        Err(_) => {
            let fd = pidfd.clone();
            let _ =
                tokio::task::spawn_blocking(move || wait_exit_blocking(&fd, Duration::MAX)).await;
        }
    }
    if isolation == Isolation::Process {
        // The agent is an unreaped zombie, so its process group id cannot have been recycled yet:
        // kill what it left behind, then anything that escaped the group but not the cgroup.
        // SAFETY: kill(2) on a process group we created.
        unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        if let Some(cg) = cgroups.clone() {
            let _ = tokio::task::spawn_blocking(move || cg.kill_all()).await;
        }
    }
    let own = reap(&pidfd);
    let agent = status_r
        .and_then(|fd| read_status(&fd))
        .map(ExitInfo::from_wait_status);
    let mut info = agent.or(own).unwrap_or_default();
    if let Some(cg) = &cgroups {
        info.oom_killed = cg.oom_killed();
    }
    info.destroyed = destroying.load(Ordering::SeqCst);
    debug!(pid, exit = %info, "sandbox process exited");
    tx.send_replace(Some(info));
}

/// A command started in a sandbox and not yet handed over as an [`Execution`] (whose own drop
/// ends it): dropped unclaimed, it is killed and reaped off the runtime's threads.
struct Unclaimed {
    pidfd: Arc<OwnedFd>,
    claimed: bool,
}

impl Unclaimed {
    fn claim(mut self) -> Arc<OwnedFd> {
        self.claimed = true;
        self.pidfd.clone()
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if !self.claimed {
            kill_and_reap(&self.pidfd);
        }
    }
}

/// Kills a command's first process and reaps it on a thread of its own.
fn kill_and_reap(pidfd: &Arc<OwnedFd>) {
    helper::pidfd_kill(pidfd);
    let pidfd = pidfd.clone();
    let _ = std::thread::Builder::new()
        .name("berth-exec-reap".into())
        .spawn(move || {
            wait_exit_blocking(&pidfd, EXIT_TIMEOUT);
            reap(&pidfd);
        });
}

/// Blocks until the pidfd is readable (the process exited) or `limit` passes.
fn wait_exit_blocking(pidfd: &OwnedFd, limit: Duration) {
    let deadline = Instant::now().checked_add(limit);
    loop {
        let ms = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32,
            None => -1,
        };
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Reaps the process behind `pidfd`; `None` if someone else already did.
fn reap(pidfd: &OwnedFd) -> Option<ExitInfo> {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on a pidfd of our own child, writing into a local.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED,
            )
        };
        if r == 0 {
            // SAFETY: for CLD_* codes the kernel filled si_status.
            let status = unsafe { info.si_status() };
            return Some(match info.si_code {
                libc::CLD_EXITED => ExitInfo {
                    code: Some(status),
                    ..ExitInfo::default()
                },
                _ => ExitInfo {
                    signal: Some(status),
                    ..ExitInfo::default()
                },
            });
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return None;
        }
    }
}

/// The agent's wait status as written by init, if it wrote one.
fn read_status(fd: &OwnedFd) -> Option<i32> {
    let mut buf = [0u8; 4];
    // SAFETY: a non-blocking read into a local buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    (n == 4).then(|| i32::from_ne_bytes(buf))
}

/// Waits for the exec pipe: EOF means the agent executed, a report means setup failed.
async fn wait_exec(exec_r: OwnedFd, ctx: &StartContext) -> Result<(), Error> {
    let mut rx = pipe::Receiver::from_owned_fd(exec_r)
        .map_err(|e| Error::io("watch the sandbox start", e))?;
    let mut buf = [0u8; REPORT_SIZE];
    let mut filled = 0;
    let read = async {
        while filled < REPORT_SIZE {
            match rx.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(Error::io("read the sandbox start report", e)),
            }
        }
        Ok(())
    };
    tokio::time::timeout(START_TIMEOUT, read)
        .await
        .map_err(|_| Error::Timeout(format!("sandbox did not start within {START_TIMEOUT:?}")))??;
    match filled {
        0 => Ok(()),
        REPORT_SIZE => Err(ctx.error(decode_report(&buf))),
        _ => Err(Error::io(
            "read the sandbox start report",
            io::Error::from(io::ErrorKind::UnexpectedEof),
        )),
    }
}

/// A failure report already in the exec pipe (the child died during setup), without waiting.
fn child_failure(exec_r: &OwnedFd, ctx: &StartContext) -> Option<Error> {
    let mut buf = [0u8; REPORT_SIZE];
    let mut pfd = libc::pollfd {
        fd: exec_r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: a zero-timeout poll on a descriptor we own.
    if unsafe { libc::poll(&mut pfd, 1, 0) } != 1 {
        return None;
    }
    let dup = exec_r.try_clone().ok()?;
    let mut file = File::from(dup);
    file.read_exact(&mut buf).ok()?;
    Some(ctx.error(decode_report(&buf)))
}

fn decode_report(buf: &[u8; REPORT_SIZE]) -> Report {
    let stage = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Report { stage, errno }
}

/// What the parent needs to turn a child's report into an error message.
struct StartContext {
    descriptions: Vec<String>,
    program: String,
}

impl StartContext {
    fn error(&self, report: Report) -> Error {
        let step = match report.stage {
            child::STAGE_EXEC => format!("exec {}", self.program),
            s => child::stage_name(s)
                .map(str::to_string)
                .or_else(|| self.descriptions.get(s as usize).cloned())
                .unwrap_or_else(|| format!("step {s}")),
        };
        Error::Setup {
            step,
            source: io::Error::from_raw_os_error(report.errno),
        }
    }
}

/// The parent's ends of the pipes.
struct ParentFds {
    out_r: OwnedFd,
    err_r: OwnedFd,
    sync_w: OwnedFd,
    exec_r: OwnedFd,
    status_r: Option<OwnedFd>,
}

/// Everything `prepare` produced.
struct Prepared {
    id: String,
    isolation: Isolation,
    network: Network,
    work_root: PathBuf,
    log_path: PathBuf,
    agent_addr: SocketAddr,
    cgroups: Option<Arc<Cgroups>>,
    egress: Arc<Egress>,
    uid: Option<uids::Lease>,
    plan: Plan,
    child_fds: Vec<OwnedFd>,
    fds: ParentFds,
    log: logs::LogFile,
    context: StartContext,
    launch: LaunchTemplate,
}

/// Host-side preparation (blocking): directories, cgroups, pipes and the child's plan. Removes
/// whatever it created when it fails.
fn prepare(spec: SandboxSpec) -> Result<Prepared, Error> {
    fs::create_dir_all(&spec.work_root)
        .map_err(|e| Error::io(format!("create {}", spec.work_root.display()), e))?;
    let work_root = fs::canonicalize(&spec.work_root)
        .map_err(|e| Error::io(format!("resolve {}", spec.work_root.display()), e))?;
    let mut cgroups = None;
    let result = prepare_in(&spec, &work_root, &mut cgroups);
    // An id collision means the directories belong to a live sandbox: leave them alone.
    if let Err(e) = &result
        && !matches!(e, Error::InUse(_))
    {
        let _ = cleanup_host(cgroups.as_deref(), &work_root);
    }
    result
}

fn prepare_in(
    spec: &SandboxSpec,
    work_root: &Path,
    cgroups_out: &mut Option<Arc<Cgroups>>,
) -> Result<Prepared, Error> {
    let root = effective_uid() == 0;
    let namespaced = spec.isolation == Isolation::Namespaces;
    let lease = match (root, spec.run_as) {
        (true, RunAs::Own) => Some(uids::lease()?),
        _ => None,
    };
    let creds = match (root, spec.run_as, &lease) {
        (false, _, _) => None,
        (true, RunAs::Fixed { uid, gid }, _) => Some((uid, gid)),
        (true, RunAs::Own, Some(l)) => Some((l.uid(), l.uid())),
        (true, RunAs::Own, None) => return Err(Error::InvalidSpec("no uid leased".into())),
    };

    // Only traversal for others: in process mode the agent reaches tmp/ and storage/ by host path.
    set_mode(work_root, 0o711)?;
    let tmp = work_root.join("tmp");
    let storage = work_root.join("storage");
    let logs_dir = work_root.join("logs");
    if !namespaced {
        // Namespaced sandboxes get both as tmpfs of their own (see plan.rs).
        for dir in [&tmp, &storage] {
            make_dir(dir, 0o700)?;
            if let Some((uid, gid)) = creds {
                chown(dir, Some(uid), Some(gid))
                    .map_err(|e| Error::io(format!("chown {}", dir.display()), e))?;
            }
        }
    }
    make_dir(&logs_dir, 0o700)?;
    let log_path = logs_dir.join("agent.log");

    // In an image root the working directory is a path of the image, not of the host.
    let code_dir = if spec.image.is_some() {
        spec.code_dir.clone()
    } else {
        let dir = fs::canonicalize(&spec.code_dir)
            .map_err(|e| Error::io(format!("resolve code_dir {}", spec.code_dir.display()), e))?;
        if !dir.is_dir() {
            return Err(Error::InvalidSpec(format!(
                "code_dir {} is not a directory",
                dir.display()
            )));
        }
        dir
    };

    let (agent_addr, port) = if namespaced {
        (
            SocketAddr::from((Ipv4Addr::LOCALHOST, spec.agent_port)),
            spec.agent_port,
        )
    } else {
        // The port is free now; the agent binds it a few milliseconds later. Another process could
        // take it in between, which the session layer sees as a start that never becomes ready.
        let probe = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("pick a port for the agent", e))?;
        let addr = probe
            .local_addr()
            .map_err(|e| Error::io("pick a port for the agent", e))?;
        (addr, addr.port())
    };

    let (home, tmpdir) = if namespaced {
        (PathBuf::from(SESSION_DIR), PathBuf::from("/tmp"))
    } else {
        (storage.clone(), tmp.clone())
    };
    let env = build_env(
        spec,
        &home,
        &tmpdir,
        port,
        namespaced && spec.network == Network::Public,
    );
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let mut idmap_fd: Option<OwnedFd> = None;
    // The image's programs are found by the child, which sees the image's root.
    let (program, programs) = match &spec.image {
        Some(_) => (
            PathBuf::from(&spec.argv[0]),
            image_programs(&spec.argv[0], path_var)?,
        ),
        None => {
            let p = resolve_program(&spec.argv[0], path_var)?;
            let c = cstring(p.as_os_str().as_bytes())?;
            (p, vec![c])
        }
    };
    let ns = if let Some(image) = spec.image.as_ref().filter(|_| namespaced) {
        let rootfs = work_root.join("rootfs");
        make_dir(&rootfs, 0o755)?;
        let scratch_dir = work_root.join("layer");
        make_dir(&scratch_dir, 0o700)?;
        let mut layers = Vec::with_capacity(image.layers.len());
        for l in &image.layers {
            let dir = fs::canonicalize(l)
                .map_err(|e| Error::io(format!("resolve layer {}", l.display()), e))?;
            if !dir.is_dir() {
                return Err(Error::InvalidSpec(format!(
                    "layer {} is not a directory",
                    dir.display()
                )));
            }
            layers.push(dir);
        }
        let own = effective_uid();
        let (uid, gid) = creds.unwrap_or((own, own));
        let hosts = etc_files(&spec.id, uid, gid)
            .into_iter()
            .find(|(name, _)| name == "hosts")
            .map(|(_, data)| data)
            .unwrap_or_default();
        // The image user's files become the agent's in an idmapped view of the layers.
        if let (Some(user), Some(agent)) = (image.user, creds)
            && let Some((uids, gids)) = idmap::image_user_maps(user, agent)
        {
            idmap_fd = Some(idmap::userns(&uids, &gids)?);
        }
        let inputs = plan::ImageInputs {
            idmapped: idmap_fd.is_some(),
            rootfs: &rootfs,
            scratch_dir: &scratch_dir,
            layers: &layers,
            layer_bytes: image.layer_bytes,
            hosts: &hosts,
            scratch: plan::Scratch {
                shm_bytes: SHM_BYTES,
                tmp_bytes: spec.tmp_bytes,
                session_bytes: spec.session_bytes,
                owner: (uid, gid),
            },
        };
        let ops = plan::image_mount_ops(&inputs, &host_kind).map_err(Error::InvalidSpec)?;
        Some(ns_plan(
            &spec.id,
            ops,
            idmap_fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
        )?)
    } else if namespaced {
        let rootfs = work_root.join("rootfs");
        make_dir(&rootfs, 0o755)?;
        let mut hidden: Vec<PathBuf> = spec
            .hidden
            .iter()
            .filter_map(|p| fs::canonicalize(p).ok())
            .collect();
        if let Some(parent) = work_root.parent() {
            hidden.push(parent.to_path_buf());
        }
        let mut visible = vec![code_dir.clone()];
        for v in &spec.visible {
            visible.push(
                fs::canonicalize(v)
                    .map_err(|e| Error::io(format!("resolve visible path {}", v.display()), e))?,
            );
        }
        visible.extend(interpreter_trees(&program, &visible));
        let mut writable = Vec::new();
        for w in &spec.writable {
            writable.push(
                fs::canonicalize(w)
                    .map_err(|e| Error::io(format!("resolve writable path {}", w.display()), e))?,
            );
        }
        let own = effective_uid();
        let (uid, gid) = creds.unwrap_or((own, own));
        let etc_files = etc_files(&spec.id, uid, gid);
        let etc = etc_entries();
        let inputs = plan::Inputs {
            rootfs: &rootfs,
            etc_files: &etc_files,
            etc: &etc,
            hidden: &hidden,
            visible: &visible,
            writable: &writable,
            shm_bytes: SHM_BYTES,
            tmp_bytes: spec.tmp_bytes,
            session_bytes: spec.session_bytes,
            owner: (uid, gid),
        };
        let ops = plan::mount_ops(&inputs, &host_kind).map_err(Error::InvalidSpec)?;
        Some(ns_plan(&spec.id, ops, -1)?)
    } else {
        None
    };
    let mut argv = vec![cstring(program.as_os_str().as_bytes())?];
    for a in &spec.argv[1..] {
        argv.push(cstring(a.as_bytes())?);
    }
    let envp = env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let launch = LaunchTemplate {
        envp: envp.clone(),
        cwd: cstring(code_dir.as_os_str().as_bytes())?,
        creds,
        nofile: 0,
    };

    let cgroups = Cgroups::create(cgroup::layout(), &spec.id, &spec.limits)?.map(Arc::new);
    *cgroups_out = cgroups.clone();

    let log = logs::LogFile::create(&log_path, spec.log_cap_bytes)
        .map_err(|e| Error::io(format!("create {}", log_path.display()), e))?;
    let pipe_err = |e| Error::io("create pipes", e);
    let ChildPipes {
        devnull,
        out_r,
        out_w,
        err_r,
        err_w,
        sync_r,
        sync_w,
        exec_r,
        exec_w,
    } = ChildPipes::new()?;
    let status = if namespaced {
        let (r, w) = pipe_pair().map_err(pipe_err)?;
        set_nonblocking(&r).map_err(pipe_err)?;
        Some((r, w))
    } else {
        None
    };
    let (status_r, status_w) = match status {
        Some((r, w)) => (Some(r), Some(above_stdio(w).map_err(pipe_err)?)),
        None => (None, None),
    };

    // Raising a hard limit needs CAP_SYS_RESOURCE, which even root may lack: stay within Berth's own.
    let nofile = current_nofile_hard().min(NOFILE);
    let launch = LaunchTemplate { nofile, ..launch };
    let descriptions = ns
        .as_ref()
        .map(|n| n.ops.iter().map(child::Op::describe).collect())
        .unwrap_or_default();
    let plan = Plan {
        ns,
        programs,
        argv: CStrVec::new(argv),
        envp: CStrVec::new(envp),
        cwd: cstring(code_dir.as_os_str().as_bytes())?,
        creds,
        seccomp: seccomp::programs().map_err(Error::Unsupported)?,
        nofile,
        stdin: devnull.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        sync_r: sync_r.as_raw_fd(),
        exec_w: exec_w.as_raw_fd(),
        status_w: status_w.as_ref().map_or(-1, |f| f.as_raw_fd()),
    };
    let mut child_fds = vec![devnull, out_w, err_w, sync_r, exec_w];
    child_fds.extend(status_w);
    child_fds.extend(idmap_fd);
    Ok(Prepared {
        id: spec.id.clone(),
        isolation: spec.isolation,
        network: spec.network,
        work_root: work_root.to_path_buf(),
        log_path,
        agent_addr,
        cgroups,
        egress: Arc::new(Egress {
            sandbox: spec.id.clone(),
            allowed_local: spec.allowed_local.clone(),
            policy: spec.egress.clone(),
        }),
        uid: lease,
        plan,
        child_fds,
        fds: ParentFds {
            out_r,
            err_r,
            sync_w,
            exec_r,
            status_r,
        },
        log,
        context: StartContext {
            descriptions,
            program: spec.argv[0].clone(),
        },
        launch,
    })
}

/// Defaults, then the spec's variables, then what Berth must control.
fn build_env(
    spec: &SandboxSpec,
    home: &Path,
    tmpdir: &Path,
    port: u16,
    proxy: bool,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), home.display().to_string()),
        ("TMPDIR".into(), tmpdir.display().to_string()),
    ];
    let mut set = |k: &str, v: String| match env.iter_mut().find(|(key, _)| key == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k.to_string(), v)),
    };
    for (k, v) in &spec.env {
        set(k, v.clone());
    }
    set("PORT", port.to_string());
    set("AGENT_PORT", port.to_string());
    if proxy {
        let url = format!("http://127.0.0.1:{PROXY_PORT}");
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            set(k, url.clone());
        }
        for k in ["NO_PROXY", "no_proxy"] {
            set(k, "localhost,127.0.0.1".into());
        }
    }
    env
}

/// The namespaced part of a plan: the mount steps, the hostname (the id, cut to 64 bytes) and the
/// idmap user namespace descriptor (-1 for none).
fn ns_plan(id: &str, ops: Vec<child::Op>, idmap: std::os::raw::c_int) -> Result<NsPlan, Error> {
    let mut host = id.as_bytes().to_vec();
    host.truncate(64);
    Ok(NsPlan {
        ops,
        idmap,
        hostname: CString::new(host).map_err(|_| Error::InvalidSpec("id contains NUL".into()))?,
    })
}

/// The paths an image's program may be at: itself when it names a path, else one per absolute
/// directory of `PATH`, tried in order by the child inside the image's root.
fn image_programs(program: &str, path_var: &str) -> Result<Vec<CString>, Error> {
    if program.contains('/') {
        return Ok(vec![cstring(program.as_bytes())?]);
    }
    let found: Vec<CString> = path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| cstring(Path::new(d).join(program).as_os_str().as_bytes()))
        .collect::<Result<_, _>>()?;
    if found.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "program {program:?} has no absolute directory to be found in (PATH {path_var:?})"
        )));
    }
    Ok(found)
}

/// A program name without a slash is looked up in `PATH` (on the host, whose root the sandbox sees).
fn resolve_program(program: &str, path_var: &str) -> Result<PathBuf, Error> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    for dir in path_var.split(':').filter(|d| d.starts_with('/')) {
        let candidate = Path::new(dir).join(program);
        if fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        {
            return Ok(candidate);
        }
    }
    Err(Error::InvalidSpec(format!(
        "program {program:?} not found in PATH {path_var:?}"
    )))
}

fn host_kind(p: &Path) -> Option<plan::Kind> {
    let meta = fs::symlink_metadata(p).ok()?;
    let ft = meta.file_type();
    Some(if ft.is_dir() {
        plan::Kind::Dir
    } else if ft.is_file() {
        plan::Kind::File
    } else if ft.is_symlink() {
        plan::Kind::Link(fs::read_link(p).ok()?)
    } else {
        plan::Kind::Special
    })
}

/// Host directories a minimal root could not run without although nobody named them: the install
/// tree of the interpreter behind `program` and behind each visible virtualenv (a venv's `python`
/// is a link into it, e.g. `/root/.pyenv/versions/3.12.1/bin/python3.12`, found through the link
/// and the venv's `pyvenv.cfg`). Trees inside the system directories are already there.
fn interpreter_trees(program: &Path, visible: &[PathBuf]) -> Vec<PathBuf> {
    let mut executables = vec![program.to_path_buf()];
    let mut homes = Vec::new();
    for v in visible {
        let Ok(cfg) = fs::read_to_string(v.join("pyvenv.cfg")) else {
            continue;
        };
        executables.push(v.join("bin").join("python"));
        homes.extend(cfg.lines().filter_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "home").then(|| PathBuf::from(value.trim()))
        }));
    }
    let prefix_of_bin = |dir: PathBuf| -> PathBuf {
        match (dir.file_name(), dir.parent()) {
            (Some(name), Some(parent)) if name == "bin" => parent.to_path_buf(),
            _ => dir,
        }
    };
    let mut trees: Vec<PathBuf> = Vec::new();
    let resolved = executables
        .iter()
        .filter_map(|e| fs::canonicalize(e).ok()?.parent().map(Path::to_path_buf))
        .chain(homes.into_iter().filter_map(|h| fs::canonicalize(h).ok()));
    for dir in resolved {
        let tree = prefix_of_bin(dir);
        let system = SYSTEM_TREES
            .iter()
            .any(|s| tree.starts_with(s) || Path::new(s).starts_with(&tree));
        if system || !tree.is_dir() || trees.contains(&tree) {
            continue;
        }
        trees.push(tree);
    }
    trees
}

/// Where the host keeps its system programs and libraries (bound into every root by `plan.rs`).
const SYSTEM_TREES: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Entries of the host's `/etc` bound into the minimal root (when the host has them): name
/// resolution, TLS trust, the dynamic linker, time zone, MIME types, and Python's and pip's
/// configuration (`python3*` directories, `pip.conf`).
const ETC_ESSENTIALS: [&str; 23] = [
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "networks",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/certs",
    "pki/ca-trust",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "alternatives",
    "mime.types",
    "pip.conf",
    "os-release",
    "debian_version",
];

/// `passwd`, `group` and `hosts` of a namespaced sandbox: the agent's uid has a name and `HOME`,
/// the hostname resolves, and no host account or host name is shown.
fn etc_files(hostname: &str, uid: u32, gid: u32) -> Vec<(String, Vec<u8>)> {
    let mut passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/usr/sbin/nologin\n"
    );
    let mut group = format!("root:x:0:\nnogroup:x:{NOBODY}:\n");
    if uid != 0 && uid != NOBODY {
        passwd.push_str(&format!(
            "agent:x:{uid}:{gid}:agent:{SESSION_DIR}:/usr/sbin/nologin\n"
        ));
    }
    if gid != 0 && gid != NOBODY {
        group.push_str(&format!("agent:x:{gid}:\n"));
    }
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    [("passwd", passwd), ("group", group), ("hosts", hosts)]
        .into_iter()
        .map(|(name, text)| (name.to_string(), text.into_bytes()))
        .collect()
}

/// The host's `/etc` essentials that exist here, to be bound into the minimal root.
fn etc_entries() -> Vec<(PathBuf, PathBuf, plan::Kind)> {
    let mut entries = Vec::new();
    let mut names: Vec<String> = ETC_ESSENTIALS.iter().map(|n| n.to_string()).collect();
    if let Ok(listing) = fs::read_dir("/etc") {
        names.extend(
            listing
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("python")),
        );
    }
    names.sort();
    for name in names {
        let host = Path::new("/etc").join(&name);
        // Followed: a link such as /etc/resolv.conf -> /run/... is bound as the file it names.
        let Ok(source) = fs::canonicalize(&host) else {
            continue;
        };
        let kind = match fs::metadata(&source) {
            Ok(m) if m.is_dir() => plan::Kind::Dir,
            Ok(m) if m.is_file() => plan::Kind::File,
            _ => continue,
        };
        entries.push((host, source, kind));
    }
    entries
}

/// Removes the cgroups and `work_root`. Blocking.
fn cleanup_host(cgroups: Option<&Cgroups>, work_root: &Path) -> Result<(), Error> {
    if let Some(cg) = cgroups {
        cg.kill_all()
            .map_err(|e| Error::io("kill the processes left in the sandbox cgroup", e))?;
        cg.remove()
            .map_err(|e| Error::io("remove the sandbox cgroup", e))?;
    }
    match fs::remove_dir_all(work_root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", work_root.display()), e)),
    }
}

fn make_dir(dir: &Path, mode: u32) -> Result<(), Error> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("create {}", dir.display()), e)),
    }
    set_mode(dir, mode)
}

fn set_mode(dir: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {}", dir.display()), e))
}

fn cstring(bytes: &[u8]) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::InvalidSpec("a string contains a NUL byte".into()))
}

/// A close-on-exec pipe: (read end, write end).
/// What every child of a sandbox (an agent's init, a command) is handed: `/dev/null` for stdin,
/// stdout and stderr pipes, the go pipe and the exec report pipe; the child's ends are moved
/// above the standard descriptors.
struct ChildPipes {
    devnull: OwnedFd,
    out_r: OwnedFd,
    out_w: OwnedFd,
    err_r: OwnedFd,
    err_w: OwnedFd,
    sync_r: OwnedFd,
    sync_w: OwnedFd,
    exec_r: OwnedFd,
    exec_w: OwnedFd,
}

impl ChildPipes {
    fn new() -> Result<Self, Error> {
        let pipe_err = |e| Error::io("create pipes", e);
        let (out_r, out_w) = pipe_pair().map_err(pipe_err)?;
        let (err_r, err_w) = pipe_pair().map_err(pipe_err)?;
        let (sync_r, sync_w) = pipe_pair().map_err(pipe_err)?;
        let (exec_r, exec_w) = pipe_pair().map_err(pipe_err)?;
        let devnull = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| Error::io("open /dev/null", e))?;
        Ok(Self {
            devnull: above_stdio(devnull.into()).map_err(pipe_err)?,
            out_r,
            out_w: above_stdio(out_w).map_err(pipe_err)?,
            err_r,
            err_w: above_stdio(err_w).map_err(pipe_err)?,
            sync_r: above_stdio(sync_r).map_err(pipe_err)?,
            sync_w,
            exec_r,
            exec_w: above_stdio(exec_w).map_err(pipe_err)?,
        })
    }
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two new descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Moves a descriptor to 3 or above, so the child's `dup2` onto 0..=2 cannot clobber another source
/// (possible only when Berth itself was started with a standard descriptor closed).
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn current_nofile_hard() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_max
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn env_layers_defaults_spec_and_enforced_values() {
        let mut spec = SandboxSpec::new("a", "/w/a", "/c", vec!["x".into()]);
        spec.env = vec![
            ("HOME".into(), "/custom".into()),
            ("PORT".into(), "1".into()),
            ("A".into(), "b".into()),
        ];
        let env = build_env(
            &spec,
            Path::new("/mnt/session"),
            Path::new("/tmp"),
            8080,
            true,
        );
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("HOME"), Some("/custom"));
        assert_eq!(get("PORT"), Some("8080"));
        assert_eq!(get("A"), Some("b"));
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:3128"));
        assert_eq!(get("no_proxy"), Some("localhost,127.0.0.1"));
        let isolated = build_env(&spec, Path::new("/h"), Path::new("/t"), 8080, false);
        assert!(!isolated.iter().any(|(k, _)| k == "HTTP_PROXY"));
    }

    #[test]
    fn program_lookup() {
        assert_eq!(
            resolve_program("./run.sh", "").unwrap(),
            PathBuf::from("./run.sh")
        );
        assert!(resolve_program("sh", DEFAULT_PATH).unwrap().is_absolute());
        assert!(matches!(
            resolve_program("no-such-program-here", DEFAULT_PATH),
            Err(Error::InvalidSpec(_))
        ));
    }
}
