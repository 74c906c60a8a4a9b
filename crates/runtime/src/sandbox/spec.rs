//! What a caller asks for: the sandbox specification and its parts.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use super::Error;
use super::proxy::EgressPolicy;

/// Port of the egress proxy inside a sandbox with [`Network::Public`] (`http://127.0.0.1:3128`).
pub const PROXY_PORT: u16 = 3128;

/// Where the writable per-session storage directory appears inside a namespaced sandbox; also `HOME`.
pub const SESSION_DIR: &str = "/mnt/session";

/// Default cap of the agent log before it is rotated (see [`SandboxSpec::log_cap_bytes`]).
pub const DEFAULT_LOG_CAP: u64 = 10 * 1024 * 1024;

/// The uid and gid of `nobody`/`nogroup` on Debian-like systems.
pub const NOBODY: u32 = 65534;

/// Default size of a namespaced sandbox's `/tmp` (see [`SandboxSpec::tmp_bytes`]).
pub const DEFAULT_TMP_BYTES: u64 = 512 * 1024 * 1024;

/// Default size of a namespaced sandbox's `/mnt/session` (see [`SandboxSpec::session_bytes`]).
pub const DEFAULT_SESSION_BYTES: u64 = 512 * 1024 * 1024;

/// How strongly an agent is separated from the host and from other agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// New PID, mount, network, IPC, UTS (and cgroup) namespaces, a minimal read-only root, private
    /// size-limited `/tmp` and session storage, an unprivileged uid of its own, a seccomp filter.
    /// The default.
    #[default]
    Namespaces,
    /// A plain child process on the host: own process group, cgroup limits, unprivileged user when Berth
    /// runs as root, the seccomp filter, but no namespaces (the host's files, no size limit on its
    /// `TMPDIR` and `HOME`). The agent shares the host network, so it must listen on the
    /// port given in the `PORT` (and `AGENT_PORT`) environment variable instead of 8080; [`Network`] is
    /// not enforced. Meant for development on hosts without namespace support.
    Process,
}

/// Resource limits enforced through cgroups. `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Memory (RSS, page cache and the pages of the sandbox's `/tmp`, `/mnt/session` and `/dev/shm`
    /// tmpfs) in bytes; exceeding it OOM-kills a process of the sandbox.
    pub memory_bytes: Option<u64>,
    /// Maximum number of tasks (processes and threads). In [`Isolation::Namespaces`] the sandbox's
    /// init process counts as one of them.
    pub pids: Option<u64>,
    /// CPU bandwidth in thousandths of a core: 1000 is one full core, 250 a quarter. At least 10.
    pub cpu_millis: Option<u64>,
}

/// What the agent may reach on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Outbound HTTP(S) through Berth's egress proxy at `http://127.0.0.1:3128` inside the sandbox
    /// (`HTTP_PROXY`/`HTTPS_PROXY` are set). Mirrors AgentCore's `PUBLIC` network mode, hence the default.
    #[default]
    Public,
    /// Loopback only: nothing outside the sandbox is reachable.
    Isolated,
}

/// The unprivileged identity the agent runs as (applied only when Berth runs as root).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunAs {
    /// A uid of its own, leased from Berth's range (see [`configure_uids`](super::configure_uids))
    /// for the sandbox's lifetime, with the same number as its only group. No other live sandbox has
    /// it, so none shares its kernel keyrings, its files or its right to signal. The default.
    #[default]
    Own,
    /// A fixed identity, e.g. [`NOBODY`]. Every sandbox given the same one shares it.
    Fixed {
        /// User id.
        uid: u32,
        /// Group id (also the only group; supplementary groups are dropped).
        gid: u32,
    },
}

/// Everything needed to start one sandbox.
///
/// The agent runs as [`RunAs`] (a uid of its own by default), so `code_dir`, the interpreter and
/// everything it loads must be readable by other users: a builder running with the usual `022` umask
/// produces world-readable files, which is what is expected here. Their host ancestors need not be
/// searchable: a namespaced sandbox binds them into a root of its own.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Unique name, used for the cgroup directory and the hostname: 1 to 64 characters out of
    /// `A-Z a-z 0-9 . _ -`, not starting with a dot, e.g. `"<runtime>-<session-hash>"`.
    pub id: String,
    /// A per-sandbox directory owned by this sandbox; created if missing. `tmp/`, `storage/`, `logs/`
    /// (and, namespaced, an empty `rootfs/` mount point) are made inside it, and the whole directory is
    /// removed by [`destroy`](super::Sandbox::destroy). Its parent directory is hidden from the agent,
    /// since sibling sandboxes live there.
    pub work_root: PathBuf,
    /// The built version's code: the agent's working directory, read-only inside. Kept visible at its
    /// host path even when it lies under a hidden directory.
    pub code_dir: PathBuf,
    /// Program and arguments, e.g. `["/data/builds/v1/venv/bin/python", "agent.py"]`. A program name
    /// without a slash is looked up in the `PATH` of the agent's environment.
    pub argv: Vec<String>,
    /// Extra environment. Berth sets `HOME`, `TMPDIR` and `PATH` defaults (overridable here) and
    /// always sets `PORT`, `AGENT_PORT` and, for [`Network::Public`], the proxy variables.
    pub env: Vec<(String, String)>,
    /// cgroup limits.
    pub limits: Limits,
    /// Namespaces (default) or a plain process.
    pub isolation: Isolation,
    /// Egress policy (namespaced sandboxes only).
    pub network: Network,
    /// The port the agent listens on inside its network namespace (8080 for the HTTP protocol).
    /// Ignored in [`Isolation::Process`], where a free host port is chosen.
    pub agent_port: u16,
    /// Host addresses the egress proxy may reach although they are local to the host (loopback,
    /// link-local, the host's own interface addresses), e.g. Berth's own API. Everything else local
    /// is refused so a sandbox cannot reach other sessions' agents or host services.
    pub allowed_local: Vec<SocketAddr>,
    /// Host directories that must never appear inside the sandbox, e.g. Berth's data directory. The
    /// minimal root holds none of the host tree except the system directories, `/etc` essentials and
    /// the visible paths, so these matter only where one of those would include them: such a part
    /// is masked with an empty read-only tmpfs, and one lying inside `code_dir` or a `visible` path
    /// is an error.
    pub hidden: Vec<PathBuf>,
    /// Extra host paths bound read-only at the same path in the sandbox's root, e.g. the version's
    /// virtualenv when it is not inside `code_dir` (a venv only works at the path it was created
    /// at). The interpreter's own install tree (the target of the venv's `python` link, or of
    /// `argv[0]`) is added by the sandbox.
    pub visible: Vec<PathBuf>,
    /// Host directories bound read-write at the same path (namespaced sandboxes only), e.g. the
    /// environment a build sandbox creates; everything else outside `/tmp` and `/mnt/session` stays
    /// read-only. They must exist and be writable by [`RunAs`].
    pub writable: Vec<PathBuf>,
    /// What the egress proxy lets through beyond the default policy (see [`EgressPolicy`]).
    pub egress: EgressPolicy,
    /// The identity the agent runs as. Only applied when Berth runs as root.
    pub run_as: RunAs,
    /// Size of `/tmp` (a tmpfs) in bytes; writing past it is `ENOSPC`. Namespaced sandboxes only.
    /// Its pages count against [`Limits::memory_bytes`] too.
    pub tmp_bytes: u64,
    /// Size of `/mnt/session` (a tmpfs, also `HOME`) in bytes; writing past it is `ENOSPC`.
    /// Namespaced sandboxes only. Its pages count against [`Limits::memory_bytes`] too.
    pub session_bytes: u64,
    /// The agent log is rotated once it would grow past this many bytes; one previous generation is
    /// kept (`agent.log.1`), so at most twice this much is on disk.
    pub log_cap_bytes: u64,
    /// A container image as the root instead of the host's system directories (namespaced
    /// sandboxes only). `code_dir` is then the working directory inside the image, `visible` and
    /// `writable` must be empty, and a program name without a slash is looked up in the `PATH`
    /// of the agent's environment inside the image.
    pub image: Option<ImageRoot>,
}

/// Default size of an image root's per-session writable layer.
pub const DEFAULT_LAYER_BYTES: u64 = 512 * 1024 * 1024;

/// The root of a sandbox made of a container image's unpacked layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRoot {
    /// Unpacked layer directories, bottom first, never written (overlayfs lower directories;
    /// whiteouts as overlayfs marks them).
    pub layers: Vec<PathBuf>,
    /// Size of the session's writable layer on top (a tmpfs: its pages count against
    /// [`Limits::memory_bytes`]; writing past it is `ENOSPC`).
    pub layer_bytes: u64,
    /// The image's user (uid, gid, as its `User` resolves in the image). The agent still runs as
    /// [`RunAs`]; when Berth runs as root, the layers are shown through an idmapped mount in
    /// which this user's files are the agent's own (and root's stay root's), as they would be
    /// the user's under a container runtime.
    pub user: Option<(u32, u32)>,
}

impl SandboxSpec {
    /// A namespaced sandbox with public egress, no cgroup limits, the default `/tmp` and
    /// `/mnt/session` sizes, no extra environment, port 8080, agent running as a uid of its own.
    pub fn new(
        id: impl Into<String>,
        work_root: impl Into<PathBuf>,
        code_dir: impl Into<PathBuf>,
        argv: Vec<String>,
    ) -> Self {
        Self {
            id: id.into(),
            work_root: work_root.into(),
            code_dir: code_dir.into(),
            argv,
            env: Vec::new(),
            limits: Limits::default(),
            isolation: Isolation::Namespaces,
            network: Network::Public,
            agent_port: 8080,
            allowed_local: Vec::new(),
            hidden: Vec::new(),
            visible: Vec::new(),
            writable: Vec::new(),
            egress: EgressPolicy::default(),
            run_as: RunAs::default(),
            tmp_bytes: DEFAULT_TMP_BYTES,
            session_bytes: DEFAULT_SESSION_BYTES,
            log_cap_bytes: DEFAULT_LOG_CAP,
            image: None,
        }
    }

    /// Checks everything that can be checked without touching the host.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |msg: String| Err(Error::InvalidSpec(msg));
        if self.id.is_empty() || self.id.len() > 64 || self.id.starts_with('.') {
            return invalid(format!(
                "id {:?} must be 1 to 64 characters, not starting with '.'",
                self.id
            ));
        }
        if let Some(c) = self
            .id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return invalid(format!(
                "id {:?} contains {c:?}; allowed are A-Z a-z 0-9 . _ -",
                self.id
            ));
        }
        check_abs("work_root", &self.work_root)?;
        match self.work_root.parent() {
            Some(parent) if parent != Path::new("/") => {}
            _ => return invalid(
                "work_root must not be a top-level directory: its parent is hidden from the agent"
                    .into(),
            ),
        }
        check_abs("code_dir", &self.code_dir)?;
        for p in &self.hidden {
            check_abs("hidden path", p)?;
            if p == Path::new("/") {
                return invalid("the root directory cannot be hidden".into());
            }
        }
        for p in &self.visible {
            check_abs("visible path", p)?;
        }
        for p in &self.writable {
            check_abs("writable path", p)?;
        }
        let Some(program) = self.argv.first() else {
            return invalid("argv is empty".into());
        };
        if program.is_empty() {
            return invalid("argv[0] is empty".into());
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return invalid("argv contains a NUL byte".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return invalid(format!(
                    "environment variable {k:?} has an invalid name or value"
                ));
            }
        }
        if self.agent_port == 0 && self.isolation == Isolation::Namespaces {
            return invalid("agent_port must not be 0".into());
        }
        if self.agent_port == PROXY_PORT
            && self.network == Network::Public
            && self.isolation == Isolation::Namespaces
        {
            return invalid(format!(
                "agent_port {PROXY_PORT} is taken by the egress proxy"
            ));
        }
        if let Some(cpu) = self.limits.cpu_millis
            && cpu < 10
        {
            return invalid(format!("cpu_millis {cpu} is below the minimum of 10"));
        }
        if self.limits.pids == Some(0) || self.limits.memory_bytes == Some(0) {
            return invalid("a limit of zero would stop the agent from starting".into());
        }
        if self.tmp_bytes < 64 * 1024 || self.session_bytes < 64 * 1024 {
            return invalid("tmp_bytes and session_bytes must be at least 64 KiB".into());
        }
        if let RunAs::Fixed { uid: 0, .. } = self.run_as {
            return invalid("the agent must not run as root".into());
        }
        if let Some(image) = &self.image {
            if self.isolation != Isolation::Namespaces {
                return invalid("an image root needs namespace isolation".into());
            }
            if !self.visible.is_empty() || !self.writable.is_empty() {
                return invalid("an image root takes no visible or writable host paths".into());
            }
            if image.layers.is_empty() {
                return invalid("an image root needs at least one layer".into());
            }
            for l in &image.layers {
                check_abs("layer", l)?;
            }
            if image.layer_bytes < 64 * 1024 {
                return invalid("layer_bytes must be at least 64 KiB".into());
            }
        }
        if self.log_cap_bytes < 4096 {
            return invalid("log_cap_bytes must be at least 4096".into());
        }
        Ok(())
    }
}

/// Requires an absolute path without `..` (lexical `..` would make the mount plan's prefix checks lie).
fn check_abs(what: &str, p: &Path) -> Result<(), Error> {
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(Error::InvalidSpec(format!(
            "{what} {} must be absolute without '..'",
            p.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        SandboxSpec::new(
            "rt-1",
            "/var/lib/berth/sandboxes/rt-1",
            "/var/lib/berth/code",
            vec!["/usr/bin/python3".into()],
        )
    }

    #[test]
    fn default_spec_is_valid() {
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn rejects_bad_ids() {
        for id in ["", ".x", "a/b", "a b", &"x".repeat(65)] {
            let mut s = spec();
            s.id = id.to_string();
            assert!(matches!(s.validate(), Err(Error::InvalidSpec(_))), "{id:?}");
        }
    }

    #[test]
    fn rejects_relative_or_dotdot_paths() {
        let mut s = spec();
        s.code_dir = "code".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.hidden = vec!["/var/../etc".into()];
        assert!(s.validate().is_err());
        let mut s = spec();
        s.work_root = "/sandbox".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn rejects_proxy_port_clash_and_tiny_limits() {
        let mut s = spec();
        s.agent_port = PROXY_PORT;
        assert!(s.validate().is_err());
        s.network = Network::Isolated;
        assert!(s.validate().is_ok());
        let mut s = spec();
        s.limits.cpu_millis = Some(5);
        assert!(s.validate().is_err());
        let mut s = spec();
        s.env.push(("A=B".into(), "x".into()));
        assert!(s.validate().is_err());
    }
}
