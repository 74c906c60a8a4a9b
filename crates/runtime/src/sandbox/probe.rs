//! What the host supports, so `berth serve` can refuse or warn before the first session.

use std::path::Path;
use std::sync::OnceLock;

use super::Isolation;
use super::cgroup::{self, Layout};

/// The cgroup flavour Berth found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// No usable cgroup mount: limits cannot be enforced.
    None,
    /// Legacy per-controller hierarchies (Berth creates `<controller mount>/berth/<id>`).
    V1,
    /// The unified hierarchy (Berth creates `<mount>/berth/<id>`).
    V2,
}

/// What this host offers for sandboxing, as found by [`probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Berth runs with effective uid 0 (needed for namespaces, cgroups and dropping to `nobody`).
    pub root: bool,
    /// PID, mount, network, IPC, UTS and cgroup namespaces exist.
    pub namespaces: bool,
    /// `pidfd_open` works (Linux 5.3+): needed by both isolation modes.
    pub pidfd: bool,
    /// `mount_setattr` works (Linux 5.12+): needed to make the host view recursively read-only.
    pub mount_setattr: bool,
    /// The cgroup flavour in use.
    pub cgroup: CgroupVersion,
    /// Memory limits can be enforced.
    pub memory_controller: bool,
    /// Task-count limits can be enforced.
    pub pids_controller: bool,
    /// CPU bandwidth limits can be enforced.
    pub cpu_controller: bool,
    /// `uname -r`.
    pub kernel: String,
}

impl Capabilities {
    /// `Err` with the reason when sandboxes of this kind cannot start here.
    pub fn check(&self, isolation: Isolation) -> Result<(), String> {
        if !self.pidfd {
            return Err(format!(
                "kernel {} lacks pidfd support (needs Linux 5.3 or later)",
                self.kernel
            ));
        }
        if isolation == Isolation::Process {
            return Ok(());
        }
        if !self.root {
            return Err(
                "namespaced sandboxes need Berth to run as root; use process isolation otherwise"
                    .into(),
            );
        }
        if !self.namespaces {
            return Err(
                "the kernel lacks pid, mount, network, ipc, uts or cgroup namespaces".into(),
            );
        }
        if !self.mount_setattr {
            return Err(format!(
                "kernel {} lacks mount_setattr (needs Linux 5.12 or later)",
                self.kernel
            ));
        }
        Ok(())
    }

    /// Things that work but weaken isolation, to log at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cgroup == CgroupVersion::None {
            out.push(
                "no cgroup hierarchy found: memory, pids and cpu limits are not enforced"
                    .to_string(),
            );
        } else {
            for (ok, name) in [
                (self.memory_controller, "memory"),
                (self.pids_controller, "pids"),
                (self.cpu_controller, "cpu"),
            ] {
                if !ok {
                    out.push(format!(
                        "cgroup controller {name} unavailable: its limit is not enforced"
                    ));
                }
            }
        }
        if !self.root {
            out.push("not running as root: agents run as Berth's own user".to_string());
        }
        out
    }
}

/// Inspects the host (no side effects beyond a few harmless system calls). The result is computed
/// once per process.
pub fn probe() -> Capabilities {
    static CAPS: OnceLock<Capabilities> = OnceLock::new();
    CAPS.get_or_init(detect).clone()
}

fn detect() -> Capabilities {
    let root = super::effective_uid() == 0;
    let namespaces = ["pid", "mnt", "net", "ipc", "uts", "cgroup"]
        .iter()
        .all(|ns| Path::new("/proc/self/ns").join(ns).exists());
    // SAFETY: pidfd_open on our own pid returns a descriptor we close right away, or -1.
    let pidfd = unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0);
        if fd >= 0 {
            libc::close(fd as i32);
        }
        fd >= 0
    };
    // A zero-sized attribute struct is rejected with EINVAL by kernels that have the call and
    // ENOSYS by those that do not; nothing is changed either way.
    // SAFETY: no pointer is dereferenced by the kernel for a zero size.
    let mount_setattr = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            std::ptr::null::<u8>(),
            0usize,
        ) == 0
            || *libc::__errno_location() != libc::ENOSYS
    };
    let (cgroup, memory_controller, pids_controller, cpu_controller) = match cgroup::layout() {
        Layout::None => (CgroupVersion::None, false, false, false),
        Layout::V1 { memory, pids, cpu } => (
            CgroupVersion::V1,
            memory.is_some(),
            pids.is_some(),
            cpu.is_some(),
        ),
        Layout::V2 { controllers, .. } => (
            CgroupVersion::V2,
            controllers.contains("memory"),
            controllers.contains("pids"),
            controllers.contains("cpu"),
        ),
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Capabilities {
        root,
        namespaces,
        pidfd,
        mount_setattr,
        cgroup,
        memory_controller,
        pids_controller,
        cpu_controller,
        kernel,
    }
}
