//! cgroup limits and whole-tree tracking for a sandbox.
//!
//! Each sandbox gets `berth/<id>` in every hierarchy Berth uses: with cgroups v1 that is
//! `<memory mount>/berth/<id>`, `<pids mount>/berth/<id>` and `<cpu mount>/berth/<id>`; with a unified
//! v2 hierarchy it is `<mount>/berth/<id>` with the memory, pids and cpu controllers enabled on the
//! way down. The cgroup is created even without limits: it is how teardown finds every process of a
//! sandbox, including ones that left the agent's process group.
//!
//! Every sandbox of one server lives under that server's instance parent, `berth/<instance>`
//! (see [`init_instance`]): the parent carries memory and pids limits for the sum of its
//! sandboxes, so however many there are they cannot take the host, and the instance id (tied to
//! the data dir) lets a restarted server find and sweep what a killed one left
//! ([`sweep_instance`]) without touching another server's sandboxes. Without an instance (tests
//! driving `Sandbox` directly) sandboxes sit directly under `berth/`.
//!
//! v1 is preferred when a controller is mounted there (a hybrid host keeps its controllers on v1 and
//! an empty v2 at `/sys/fs/cgroup/unified`). A controller the host lacks is skipped with a warning.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, ErrorKind};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use tracing::{debug, warn};

use super::{Error, Limits};

/// `berth` or `berth/<instance>`: where this process puts its sandboxes in every hierarchy.
static PARENT: OnceLock<String> = OnceLock::new();

fn parent_rel() -> &'static str {
    PARENT.get().map_or("berth", String::as_str)
}

/// Limits on the sum of one instance's sandboxes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParentLimits {
    /// Memory of all sandboxes together, in bytes.
    pub memory_bytes: Option<u64>,
    /// Processes and threads of all sandboxes together.
    pub pids: Option<u64>,
}

/// What [`sweep_instance`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// cgroup directories removed (one per hierarchy per sandbox).
    pub cgroups: usize,
    /// Processes killed in them.
    pub processes: usize,
}

/// Whether `id` can name an instance: it becomes a cgroup directory name.
fn valid_instance(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The instance parent's directory in each hierarchy the layout has.
fn instance_dirs(layout: &Layout, instance: &str) -> Vec<(PathBuf, bool)> {
    match layout {
        Layout::V1 { memory, pids, cpu } => [memory, pids, cpu]
            .into_iter()
            .flatten()
            .map(|m| (m.join("berth").join(instance), false))
            .collect(),
        Layout::V2 { mount, .. } => vec![(mount.join("berth").join(instance), true)],
        Layout::None => Vec::new(),
    }
}

/// Makes `berth/<instance>` the parent of every sandbox this process starts from now on, and
/// applies `limits` to it. Called once, at server start, after [`sweep_instance`].
pub fn init_instance(instance: &str, limits: &ParentLimits) -> Result<(), Error> {
    if !valid_instance(instance) {
        return Err(Error::io(
            format!("use {instance:?} as an instance id"),
            io::Error::from(ErrorKind::InvalidInput),
        ));
    }
    let layout = layout();
    if let Layout::V2 { mount, controllers } = layout {
        let parent = mount.join("berth");
        make_dir(&parent)?;
        for level in [mount.as_path(), parent.as_path()] {
            for c in ["memory", "pids", "cpu"]
                .into_iter()
                .filter(|c| controllers.contains(*c))
            {
                if let Err(e) = fs::write(level.join("cgroup.subtree_control"), format!("+{c}")) {
                    debug!(cgroup = %level.display(), controller = c, error = %e, "cannot enable controller");
                }
            }
        }
    }
    for (dir, v2) in instance_dirs(layout, instance) {
        make_dir(&dir)?;
        if v2 {
            for c in ["memory", "pids", "cpu"] {
                // Children need the controllers enabled here; a missing one is reported when
                // the sandbox's own limit file is missing.
                let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
        let write = |file: &str, value: String| -> Result<(), Error> {
            let path = dir.join(file);
            if !path.exists() {
                return Ok(());
            }
            fs::write(&path, &value)
                .map_err(|e| Error::io(format!("write {value} to {}", path.display()), e))
        };
        let memory = limits.memory_bytes.map(|b| b.to_string());
        let pids = limits.pids.map_or("max".to_string(), |p| p.to_string());
        if v2 {
            write("memory.max", memory.unwrap_or_else(|| "max".into()))?;
            write("pids.max", pids)?;
        } else {
            write(
                "memory.limit_in_bytes",
                memory.unwrap_or_else(|| "-1".into()),
            )?;
            write("pids.max", pids)?;
        }
    }
    let rel = format!("berth/{instance}");
    if let Err(set) = PARENT.set(rel.clone())
        && set != rel
    {
        return Err(Error::io(
            format!("switch to instance {instance}"),
            io::Error::other("this process already serves another instance"),
        ));
    }
    Ok(())
}

/// Kills every process left in `berth/<instance>`'s sandbox cgroups and removes them, in every
/// hierarchy: what a previous run of the same instance (killed before it could tear down) left.
/// Other instances' cgroups are never read. Blocking, bounded per cgroup.
pub fn sweep_instance(instance: &str) -> Result<Swept, Error> {
    if !valid_instance(instance) {
        return Err(Error::io(
            format!("sweep {instance:?}"),
            io::Error::from(ErrorKind::InvalidInput),
        ));
    }
    sweep_dirs(layout(), instance)
}

fn sweep_dirs(layout: &Layout, instance: &str) -> Result<Swept, Error> {
    let mut swept = Swept::default();
    for (root, v2) in instance_dirs(layout, instance) {
        // Deepest first, so a cgroup is empty of children when it is removed.
        let mut stale = Vec::new();
        collect_children(&root, &mut stale);
        stale.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        let mount = root.parent().and_then(Path::parent).map(Path::to_path_buf);
        for dir in stale {
            let rel = match mount.as_deref().and_then(|m| dir.strip_prefix(m).ok()) {
                Some(r) => format!("/{}", r.display()),
                None => continue,
            };
            let cg = Cgroups {
                dirs: vec![dir.clone()],
                memory: None,
                v2,
                rel,
            };
            swept.processes += cg.procs().map(|p| p.len()).unwrap_or(0);
            cg.remove()
                .map_err(|e| Error::io(format!("remove stale cgroup {}", dir.display()), e))?;
            swept.cgroups += 1;
        }
    }
    Ok(swept)
}

/// SIGKILLs every process whose program (`argv[0]`, as started) lies under `dir`: build tools a
/// killed server started from its own data dir outside any cgroup (a venv's `pip`). The data
/// dir is locked by the caller, so nothing else runs programs from it. Returns how many were hit.
pub fn kill_running_from(dir: &Path) -> usize {
    let Ok(dir) = fs::canonicalize(dir) else {
        return 0;
    };
    let Ok(rd) = fs::read_dir("/proc") else {
        return 0;
    };
    let me = std::process::id();
    let mut killed = 0;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // SAFETY: pidfd_open returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            continue;
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Read after the pidfd pins the process, so a recycled pid is judged by its own argv.
        let runs_from_dir = fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let argv0 = c.split(|b| *b == 0).next().unwrap_or_default();
            let p = Path::new(std::ffi::OsStr::from_bytes(argv0));
            p.is_absolute() && p.starts_with(&dir)
        });
        if runs_from_dir {
            super::helper::pidfd_kill(&fd);
            killed += 1;
        }
    }
    killed
}

fn collect_children(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            collect_children(&p, out);
            out.push(p);
        }
    }
}

/// The cgroup mounts of the host, as Berth uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Controllers on v1 hierarchies: mount point of each one found.
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
    },
    /// A unified v2 hierarchy and the controllers it offers.
    V2 {
        mount: PathBuf,
        controllers: BTreeSet<String>,
    },
    /// No usable cgroup mount.
    None,
}

/// Detects the layout once per process.
pub(crate) fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        if super::effective_uid() != 0 {
            // Only root may create cgroups on a stock host: a normal user's server (process
            // isolation) runs its agents without limits rather than failing every start.
            warn!("not running as root: cgroup limits are not enforced");
            return Layout::None;
        }
        match fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => detect(&text, |p| fs::read_to_string(p).ok()),
            Err(e) => {
                warn!(error = %e, "cannot read /proc/self/mountinfo; cgroups disabled");
                Layout::None
            }
        }
    })
}

/// Picks the layout from a mountinfo text; `read` returns a file's contents (the v2 controller list).
fn detect(mountinfo: &str, read: impl Fn(&Path) -> Option<String>) -> Layout {
    let mut memory = None;
    let mut pids = None;
    let mut cpu = None;
    let mut unified = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = pre.split(' ').nth(4).map(unescape) else {
            continue;
        };
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or_default();
        let super_opts = post.nth(1).unwrap_or_default();
        match fstype {
            "cgroup" => {
                for opt in super_opts.split(',') {
                    let slot = match opt {
                        "memory" => &mut memory,
                        "pids" => &mut pids,
                        "cpu" => &mut cpu,
                        _ => continue,
                    };
                    slot.get_or_insert_with(|| PathBuf::from(&mount_point));
                }
            }
            "cgroup2" => unified.push(PathBuf::from(&mount_point)),
            _ => {}
        }
    }
    if memory.is_some() || pids.is_some() || cpu.is_some() {
        return Layout::V1 { memory, pids, cpu };
    }
    for mount in unified {
        let Some(list) = read(&mount.join("cgroup.controllers")) else {
            continue;
        };
        let controllers: BTreeSet<String> = list.split_whitespace().map(str::to_string).collect();
        if !controllers.is_empty() {
            return Layout::V2 { mount, controllers };
        }
    }
    Layout::None
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One sandbox's cgroup directories.
#[derive(Debug)]
pub(crate) struct Cgroups {
    /// Every directory created, one per hierarchy.
    dirs: Vec<PathBuf>,
    /// The directory holding the memory controller's files, if any.
    memory: Option<PathBuf>,
    v2: bool,
    /// `/berth/<id>`: the path as it appears in `/proc/<pid>/cgroup`.
    rel: String,
}

const CPU_PERIOD_US: u64 = 100_000;

impl Cgroups {
    /// Creates the directories and applies the limits. `None` when the host has no usable cgroups
    /// (then limits are skipped with a warning).
    pub(crate) fn create(
        layout: &Layout,
        id: &str,
        limits: &Limits,
    ) -> Result<Option<Self>, Error> {
        let parent_rel = parent_rel();
        let rel = format!("/{parent_rel}/{id}");
        let cg = match layout {
            Layout::None => {
                if *limits != Limits::default() {
                    warn!(
                        sandbox = id,
                        "no cgroup hierarchy found; resource limits are not enforced"
                    );
                }
                return Ok(None);
            }
            Layout::V1 { memory, pids, cpu } => {
                let mut dirs = Vec::new();
                let mut mem_dir = None;
                for (name, mount, wanted) in [
                    ("memory", memory, limits.memory_bytes.is_some()),
                    ("pids", pids, limits.pids.is_some()),
                    ("cpu", cpu, limits.cpu_millis.is_some()),
                ] {
                    let Some(mount) = mount else {
                        if wanted {
                            warn!(
                                sandbox = id,
                                controller = name,
                                "cgroup controller not mounted; limit not enforced"
                            );
                        }
                        continue;
                    };
                    let dir = mount.join(parent_rel).join(id);
                    make_dir(&dir)?;
                    if name == "memory" {
                        mem_dir = Some(dir.clone());
                    }
                    dirs.push(dir);
                }
                Self {
                    dirs,
                    memory: mem_dir,
                    v2: false,
                    rel,
                }
            }
            Layout::V2 { mount, controllers } => {
                let wanted: Vec<&str> = ["memory", "pids", "cpu"]
                    .into_iter()
                    .filter(|c| controllers.contains(*c))
                    .collect();
                let parent = mount.join(parent_rel);
                make_dir(&parent)?;
                let top = mount.join("berth");
                let levels: Vec<&Path> = if parent == top {
                    vec![mount.as_path(), parent.as_path()]
                } else {
                    vec![mount.as_path(), top.as_path(), parent.as_path()]
                };
                for level in levels {
                    for c in &wanted {
                        // Enabling an already enabled controller is a no-op; failures mean the limit
                        // files will be missing, which is reported below.
                        if let Err(e) =
                            fs::write(level.join("cgroup.subtree_control"), format!("+{c}"))
                        {
                            debug!(cgroup = %level.display(), controller = c, error = %e, "cannot enable controller");
                        }
                    }
                }
                let dir = parent.join(id);
                make_dir(&dir)?;
                Self {
                    dirs: vec![dir.clone()],
                    memory: Some(dir),
                    v2: true,
                    rel,
                }
            }
        };
        // A directory with the same id may exist: left empty by a Berth that crashed (its sandboxes
        // died with it), or, if ids collide, belonging to a live sandbox that must not be touched.
        match cg.procs() {
            Ok(procs) if procs.is_empty() => {}
            Ok(_) => return Err(Error::InUse(id.to_string())),
            Err(e) => return Err(Error::io(format!("read cgroup {}", cg.rel), e)),
        }
        if let Err(e) = cg.apply(limits, id) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(Some(cg))
    }

    fn apply(&self, limits: &Limits, id: &str) -> Result<(), Error> {
        let find = |file: &str| self.dirs.iter().map(|d| d.join(file)).find(|p| p.exists());
        let set = |file: &str, value: String, required: bool| -> Result<(), Error> {
            match find(file) {
                Some(path) => fs::write(&path, &value)
                    .map_err(|e| Error::io(format!("write {value} to {}", path.display()), e)),
                None if required => {
                    warn!(
                        sandbox = id,
                        file, "cgroup file missing; limit not enforced"
                    );
                    Ok(())
                }
                None => Ok(()),
            }
        };
        // Every value is written, limited or not, so a directory left by an earlier sandbox with the
        // same id keeps no stale limit.
        match (limits.memory_bytes, self.v2) {
            (Some(bytes), true) => {
                set("memory.max", bytes.to_string(), true)?;
                // No swapping past the limit where the host has swap accounting.
                set("memory.swap.max", "0".into(), false)?;
            }
            (None, true) => set("memory.max", "max".into(), false)?,
            // v1 requires memsw >= limit at every step: lower the limit first, raise memsw first.
            (Some(bytes), false) => {
                set("memory.limit_in_bytes", bytes.to_string(), true)?;
                set("memory.memsw.limit_in_bytes", bytes.to_string(), false)?;
            }
            (None, false) => {
                set("memory.memsw.limit_in_bytes", "-1".into(), false)?;
                set("memory.limit_in_bytes", "-1".into(), false)?;
            }
        }
        let pids = limits.pids.map_or("max".to_string(), |p| p.to_string());
        set("pids.max", pids, limits.pids.is_some())?;
        let quota = limits.cpu_millis.map(|m| m * CPU_PERIOD_US / 1000);
        if self.v2 {
            let value = quota.map_or("max".to_string(), |q| q.to_string());
            set(
                "cpu.max",
                format!("{value} {CPU_PERIOD_US}"),
                quota.is_some(),
            )?;
        } else {
            set(
                "cpu.cfs_period_us",
                CPU_PERIOD_US.to_string(),
                quota.is_some(),
            )?;
            set(
                "cpu.cfs_quota_us",
                quota.map_or("-1".to_string(), |q| q.to_string()),
                quota.is_some(),
            )?;
        }
        Ok(())
    }

    /// Moves a process into every hierarchy.
    pub(crate) fn attach(&self, pid: u32) -> io::Result<()> {
        for dir in &self.dirs {
            fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// The directories, for diagnostics and tests.
    pub(crate) fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Process ids currently in any of the directories.
    fn procs(&self) -> io::Result<BTreeSet<u32>> {
        let mut out = BTreeSet::new();
        for dir in &self.dirs {
            match fs::read_to_string(dir.join("cgroup.procs")) {
                Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok())),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// SIGKILLs every process in the cgroup and waits until it is empty. Blocking, bounded (~2 s).
    pub(crate) fn kill_all(&self) -> io::Result<()> {
        if self.v2 {
            for dir in &self.dirs {
                let kill = dir.join("cgroup.kill");
                if kill.exists() {
                    fs::write(kill, "1")?;
                }
            }
        }
        let mut pause = Duration::from_micros(200);
        for _ in 0..60 {
            let procs = self.procs()?;
            if procs.is_empty() {
                return Ok(());
            }
            for pid in procs {
                self.kill_member(pid);
            }
            // Killed tasks leave the cgroup once the kernel has finished tearing them down; poll for
            // that with a growing pause.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Err(io::Error::other(
            "processes remain in the cgroup after sigkill",
        ))
    }

    /// Kills `pid` only if it is still a member: the pidfd pins the process, so a pid reused by an
    /// unrelated process between reading `cgroup.procs` and the kill is never hit.
    fn kill_member(&self, pid: u32) {
        // SAFETY: pidfd_open returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return;
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let member = fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
            text.lines()
                .filter_map(|l| l.splitn(3, ':').nth(2))
                .any(|p| p == self.rel || p.starts_with(&format!("{}/", self.rel)))
        });
        if member {
            super::helper::pidfd_kill(&fd);
        }
    }

    /// Whether the memory controller recorded an OOM kill in this cgroup.
    pub(crate) fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory else {
            return false;
        };
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        fs::read_to_string(dir.join(file)).is_ok_and(|text| {
            text.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    }

    /// Removes the directories (killing stragglers first). Blocking, bounded.
    pub(crate) fn remove(&self) -> io::Result<()> {
        let mut pause = Duration::from_micros(500);
        for attempt in 0..40 {
            let mut busy = false;
            for dir in &self.dirs {
                match fs::remove_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => busy = true,
                    Err(e) => return Err(e),
                }
            }
            if !busy {
                return Ok(());
            }
            if attempt % 8 == 0 {
                self.kill_all()?;
            }
            // The last tasks are still being torn down by the kernel; poll until they are gone.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Err(io::Error::other("cgroup still busy"))
    }
}

fn make_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("create cgroup {}", dir.display()), e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
33 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn prefers_v1_controllers_on_hybrid_hosts() {
        let layout = detect(HYBRID, |_| Some(String::new()));
        assert_eq!(
            layout,
            Layout::V1 {
                memory: Some("/sys/fs/cgroup/memory".into()),
                pids: Some("/sys/fs/cgroup/pids".into()),
                cpu: Some("/sys/fs/cgroup/cpu".into()),
            }
        );
    }

    #[test]
    fn combined_cpu_hierarchy_and_pure_v2() {
        let text = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        assert!(
            matches!(detect(text, |_| None), Layout::V1 { cpu: Some(p), memory: None, .. } if p == Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        let v2 = "29 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let layout = detect(v2, |p| {
            (p == Path::new("/sys/fs/cgroup/cgroup.controllers"))
                .then(|| "cpu io memory pids\n".into())
        });
        assert!(
            matches!(layout, Layout::V2 { ref controllers, .. } if controllers.contains("memory") && controllers.len() == 4)
        );
        assert_eq!(detect(v2, |_| Some(String::new())), Layout::None);
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
