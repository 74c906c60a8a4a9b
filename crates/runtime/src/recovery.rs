//! Recovery at start: what a previous run of the same data dir left behind after it was killed
//! (sandbox cgroups and the processes in them, sandbox work dirs holding session data, build
//! processes started from the data dir) is found through the data dir's instance id and removed
//! before anything new starts. Another server's instance id is different, so its sandboxes are
//! never touched.

use crate::sandbox::{self, ParentLimits};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use tracing::{info, warn};

/// File in the data dir holding its instance id.
pub const INSTANCE_FILE: &str = "instance-id";

/// The data dir's instance id, created (random, 16 characters) on first use. It names the
/// data dir's cgroup parent, `berth/<instance id>`, in every hierarchy.
pub fn instance_id(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join(INSTANCE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if valid(s.trim()) => return Ok(s.trim().to_owned()),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold an instance id", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = berth_types::random_alnum(16).to_ascii_lowercase();
    let tmp = data_dir.join(format!("{INSTANCE_FILE}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(id.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

fn valid(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The host's memory (`MemTotal`), if it can be read.
pub fn host_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Default limits of the sandboxes' parent cgroup: all of the host's memory but an eighth (at
/// least 512 MiB) left to the host and Berth itself; half of the host's process and thread ids,
/// at most 65 536.
pub fn default_parent_limits(host_memory: Option<u64>) -> ParentLimits {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let ids = match (
        read("/proc/sys/kernel/pid_max"),
        read("/proc/sys/kernel/threads-max"),
    ) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 32_768,
    };
    ParentLimits {
        memory_bytes: host_memory.map(|m| m - (m / 8).max(512 << 20).min(m / 2)),
        pids: Some((ids / 2).clamp(1024, 65_536)),
    }
}

/// What [`recover`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// cgroup directories of the instance's old sandboxes.
    pub cgroups: usize,
    /// Processes killed in them.
    pub processes: usize,
    /// Sandbox work dirs removed.
    pub work_dirs: usize,
    /// Processes killed because they ran programs from the data dir's builds.
    pub build_processes: usize,
}

/// Sweeps what a previous run of this instance left, then makes `berth/<instance>` (with
/// `limits`) the parent of every sandbox this process starts. Blocking; run before any sandbox
/// starts. `sessions_dir` holds only sandbox work dirs; `builds_dir` is where build tools run from.
pub fn recover(
    instance: &str,
    sessions_dir: &Path,
    builds_dir: &Path,
    limits: &ParentLimits,
) -> Result<Recovered, sandbox::Error> {
    // Processes first, so nothing writes into a directory being removed.
    let build_processes = sandbox::kill_running_from(builds_dir);
    let swept = sandbox::sweep_instance(instance)?;
    let mut out = Recovered {
        cgroups: swept.cgroups,
        processes: swept.processes,
        work_dirs: 0,
        build_processes,
    };
    match std::fs::read_dir(sessions_dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let p = e.path();
                let res = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                match res {
                    Ok(()) => out.work_dirs += 1,
                    Err(err) => {
                        warn!(path = %p.display(), error = %err, "cannot remove a stale sandbox work dir")
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(sandbox::Error::io(
                format!("read {}", sessions_dir.display()),
                e,
            ));
        }
    }
    sandbox::init_instance(instance, limits)?;
    if out != Recovered::default() {
        info!(
            instance,
            cgroups = out.cgroups,
            processes = out.processes,
            work_dirs = out.work_dirs,
            build_processes = out.build_processes,
            "removed what a previous run left"
        );
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_is_stable_per_data_dir() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let id = instance_id(a.path()).unwrap();
        assert!(valid(&id));
        assert_eq!(instance_id(a.path()).unwrap(), id);
        assert_ne!(instance_id(b.path()).unwrap(), id);
        std::fs::write(a.path().join(INSTANCE_FILE), "../x").unwrap();
        assert!(instance_id(a.path()).is_err());
    }

    #[test]
    fn parent_limits_leave_memory_to_the_host() {
        let l = default_parent_limits(Some(24 << 30));
        assert_eq!(l.memory_bytes, Some(21 << 30));
        let small = default_parent_limits(Some(1 << 30));
        assert_eq!(small.memory_bytes, Some(512 << 20));
        assert!(l.pids.is_some_and(|p| (1024..=65_536).contains(&p)));
    }
}
