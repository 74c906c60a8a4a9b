//! The code that runs in a freshly cloned child until it executes the agent.
//!
//! The child is a copy of a multi-threaded process (tokio workers, the allocator's arenas, locks held
//! by threads that do not exist in the copy), so everything here is restricted to what is
//! async-signal-safe: plain system calls on data prepared by the parent. No allocation, no locks, no
//! formatting, no panics, no destructors (the child leaves through `_exit` or `execve`). glibc wrappers
//! that coordinate threads (`setuid`, `fork` with its atfork handlers) are bypassed with raw
//! `syscall`s, because glibc still believes the other threads exist.
//!
//! Namespaced layout: the cloned child is PID 1 of the new PID namespace and acts as a minimal init.
//! It builds the mount view, waits for the parent's go (sent once it has placed the child in its
//! cgroups and brought up loopback), forks the agent (PID 2), then only reaps: zombies re-parented
//! to it are collected, and when the agent exits init reports the agent's status on a pipe and exits,
//! which makes the kernel kill everything left in the namespace.
//!
//! The agent's last steps before `execve` are, in order: setsid, parent-death signal, OOM score,
//! rlimits, dropping to its uid and gid (no supplementary groups), `no_new_privs`, chdir, and the
//! seccomp programs (prepared by the parent in `seccomp.rs`, installed with the raw `seccomp(2)`
//! call, so nothing after them needs more than `write`, `_exit` and `execve`).

use std::ffi::{CStr, CString};
use std::mem::size_of;
use std::os::raw::{c_char, c_int, c_ulong, c_ushort, c_void};

use seccompiler::BpfProgram;

/// One step of building the mount view, with every path prepared by the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// `mount(2)`.
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// `mount_setattr(2)` with `AT_RECURSIVE`: set mount attributes on a whole subtree.
    SetAttr { target: CString, set: u64 },
    /// `mkdir(2)` with mode 0755; an existing directory is fine.
    Mkdir { path: CString },
    /// A bind of `source` at `target` whose files' owners are shown through the id mapping of
    /// the user namespace [`NsPlan::idmap`] (`open_tree`, `mount_setattr(MOUNT_ATTR_IDMAP)`,
    /// `move_mount`), read-only.
    IdmapBind { source: CString, target: CString },
    /// Removes `path` if it is a symbolic link (`lstat`), so the mount point made next is a real
    /// directory of the new root and no mount follows a link an image planted.
    Unsymlink { path: CString },
    /// Creates an empty file as a bind-mount target.
    Touch { path: CString },
    /// Creates a file (mode 0644) holding `data`, e.g. the sandbox's own `/etc/passwd`.
    Write { path: CString, data: Vec<u8> },
    /// `symlink(2)`.
    Symlink { target: CString, link: CString },
    /// `chdir(2)`.
    Chdir { path: CString },
    /// `pivot_root(".", ".")` then detach the old root stacked on top of the new one.
    PivotRoot,
}

impl Op {
    /// What the step does, for error messages in the parent.
    pub(crate) fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Op::Mount {
                source,
                target,
                fstype,
                flags,
                ..
            } => {
                let what = match (fstype, source) {
                    (Some(fs), _) => s(fs),
                    (None, Some(src)) => s(src),
                    (None, None) => "flags".into(),
                };
                if flags & libc::MS_REMOUNT != 0 {
                    format!("remount {}", s(target))
                } else {
                    format!("mount {what} on {}", s(target))
                }
            }
            Op::SetAttr { target, .. } => format!("make {} read-only", s(target)),
            Op::Mkdir { path } => format!("mkdir {}", s(path)),
            Op::IdmapBind { source, target } => {
                format!("bind {} idmapped at {}", s(source), s(target))
            }
            Op::Touch { path } => format!("create {}", s(path)),
            Op::Unsymlink { path } => format!("remove a link at {}", s(path)),
            Op::Write { path, .. } => format!("write {}", s(path)),
            Op::Symlink { link, .. } => format!("symlink {}", s(link)),
            Op::Chdir { path } => format!("chdir {}", s(path)),
            Op::PivotRoot => "pivot_root".into(),
        }
    }
}

/// A NULL-terminated `char *[]` together with the strings it points into.
pub(crate) struct CStrVec {
    _owned: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

// SAFETY: the pointers point into the heap buffers of the CStrings owned by the same value; those
// buffers do not move when the value moves and are never mutated, so sending it to another thread is
// as safe as sending the CStrings themselves.
unsafe impl Send for CStrVec {}

impl CStrVec {
    pub(crate) fn new(owned: Vec<CString>) -> Self {
        let mut ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Self {
            _owned: owned,
            ptrs,
        }
    }

    fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }

    fn first(&self) -> *const c_char {
        self.ptrs[0]
    }
}

/// The namespaced part of a plan.
pub(crate) struct NsPlan {
    pub(crate) ops: Vec<Op>,
    /// A user namespace descriptor whose mappings [`Op::IdmapBind`] applies; -1 when no op needs
    /// one. Closed once the ops have run.
    pub(crate) idmap: c_int,
    pub(crate) hostname: CString,
}

/// Everything the child needs, prepared by the parent before cloning.
pub(crate) struct Plan {
    /// `Some` for a namespaced sandbox (the child becomes init), `None` for a plain process.
    pub(crate) ns: Option<NsPlan>,
    /// The program's paths to try, in order, until one is found (one path, or a `PATH` search
    /// done in the child because it must see the sandbox's root, an image's).
    pub(crate) programs: Vec<CString>,
    pub(crate) argv: CStrVec,
    pub(crate) envp: CStrVec,
    pub(crate) cwd: CString,
    /// uid and gid to switch to before exec (only when Berth runs as root).
    pub(crate) creds: Option<(u32, u32)>,
    /// seccomp programs installed, in order, right before exec (see `seccomp.rs`).
    pub(crate) seccomp: &'static [BpfProgram],
    pub(crate) nofile: u64,
    /// Descriptors in the child; all are at least 3 (see `Fds` in the parent) and close-on-exec.
    pub(crate) stdin: c_int,
    pub(crate) stdout: c_int,
    pub(crate) stderr: c_int,
    /// Read end of the go pipe: one byte means go, EOF means the parent gave up.
    pub(crate) sync_r: c_int,
    /// Write end of the exec pipe: a [`Report`] on failure, EOF once the agent has executed.
    pub(crate) exec_w: c_int,
    /// Write end of the status pipe (namespaced only): init writes the agent's wait status.
    pub(crate) status_w: c_int,
}

/// Everything a command's processes need ([`exec_main`]), prepared by the parent in
/// `Sandbox::exec`: the agent's environment, uid, limits and filter, and the sandbox to join.
pub(crate) struct ExecPlan {
    /// The sandbox init's pidfd (open in the child), whose namespaces the command joins; `None`
    /// in process isolation.
    pub(crate) ns_pidfd: Option<c_int>,
    pub(crate) argv: CStrVec,
    pub(crate) envp: CStrVec,
    pub(crate) cwd: CString,
    pub(crate) creds: Option<(u32, u32)>,
    pub(crate) seccomp: &'static [BpfProgram],
    pub(crate) nofile: u64,
    pub(crate) stdin: c_int,
    pub(crate) stdout: c_int,
    pub(crate) stderr: c_int,
    /// Read end of the go pipe (sent once the parent has put the child in the sandbox's cgroups).
    pub(crate) sync_r: c_int,
    /// Write end of the exec pipe: a [`Report`] on failure, EOF once the command has executed.
    pub(crate) exec_w: c_int,
    /// Write end of the status pipe: the command's host pid, then its wait status.
    pub(crate) status_w: c_int,
}

/// The parts of a plan [`exec_agent`] needs, borrowed (built on the child's stack: no allocation).
struct Launch<'a> {
    /// Paths to execute, tried in order; empty: `argv[0]`.
    programs: &'a [CString],
    argv: &'a CStrVec,
    envp: &'a CStrVec,
    cwd: &'a CString,
    creds: Option<(u32, u32)>,
    seccomp: &'static [BpfProgram],
    nofile: u64,
    exec_w: c_int,
}

impl Plan {
    fn launch(&self) -> Launch<'_> {
        Launch {
            programs: &self.programs,
            argv: &self.argv,
            envp: &self.envp,
            cwd: &self.cwd,
            creds: self.creds,
            seccomp: self.seccomp,
            nofile: self.nofile,
            exec_w: self.exec_w,
        }
    }
}

/// The record a failing child writes to the exec pipe.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Report {
    /// An index into the plan's ops, or one of the `STAGE_*` values.
    pub(crate) stage: u32,
    pub(crate) errno: i32,
}

pub(crate) const REPORT_SIZE: usize = size_of::<Report>();

const STAGE_BASE: u32 = 1_000_000;
pub(crate) const STAGE_STDIO: u32 = STAGE_BASE;
pub(crate) const STAGE_HOSTNAME: u32 = STAGE_BASE + 1;
pub(crate) const STAGE_CGROUPNS: u32 = STAGE_BASE + 2;
pub(crate) const STAGE_FORK: u32 = STAGE_BASE + 3;
pub(crate) const STAGE_SETSID: u32 = STAGE_BASE + 4;
pub(crate) const STAGE_OOM_ADJ: u32 = STAGE_BASE + 5;
pub(crate) const STAGE_RLIMIT: u32 = STAGE_BASE + 6;
pub(crate) const STAGE_CREDS: u32 = STAGE_BASE + 7;
pub(crate) const STAGE_NO_NEW_PRIVS: u32 = STAGE_BASE + 8;
pub(crate) const STAGE_CHDIR: u32 = STAGE_BASE + 9;
pub(crate) const STAGE_EXEC: u32 = STAGE_BASE + 10;
pub(crate) const STAGE_PDEATHSIG: u32 = STAGE_BASE + 11;
pub(crate) const STAGE_SECCOMP: u32 = STAGE_BASE + 12;
pub(crate) const STAGE_SETNS: u32 = STAGE_BASE + 13;

/// Names a named stage for error messages.
pub(crate) fn stage_name(stage: u32) -> Option<&'static str> {
    Some(match stage {
        STAGE_STDIO => "redirect stdio",
        STAGE_HOSTNAME => "set hostname",
        STAGE_CGROUPNS => "enter a new cgroup namespace",
        STAGE_FORK => "fork the agent",
        STAGE_SETSID => "setsid",
        STAGE_OOM_ADJ => "set oom_score_adj",
        STAGE_RLIMIT => "set rlimits",
        STAGE_CREDS => "switch to the agent user",
        STAGE_NO_NEW_PRIVS => "set no_new_privs",
        STAGE_CHDIR => "chdir to the code directory",
        STAGE_EXEC => "exec the agent",
        STAGE_PDEATHSIG => "set the parent-death signal",
        STAGE_SECCOMP => "install the seccomp filter",
        STAGE_SETNS => "enter the sandbox's namespaces",
        _ => return None,
    })
}

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
/// `MOUNT_ATTR_IDMAP` of `<linux/mount.h>`.
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// Entry point of the cloned child. Never returns.
///
/// # Safety
/// Must only be called in the child of a `clone`/`fork` of this process, with a plan whose
/// descriptors are open in the child.
pub(crate) unsafe fn child_main(plan: &Plan) -> ! {
    // SAFETY (whole body): only async-signal-safe system calls on memory the plan owns; the function
    // leaves through `_exit` or `execve`, so no destructor of the copied process state runs.
    unsafe {
        reset_signals();
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0) != 0 {
            fail(plan.exec_w, STAGE_PDEATHSIG, errno());
        }
        if plan.ns.is_none() && libc::setsid() < 0 {
            fail(plan.exec_w, STAGE_SETSID, errno());
        }
        if let Err(e) = setup_stdio(plan) {
            fail(plan.exec_w, STAGE_STDIO, e);
        }
        let idmap = plan.ns.as_ref().map_or(-1, |ns| ns.idmap);
        close_other_fds(&[plan.sync_r, plan.exec_w, plan.status_w, idmap]);

        let Some(ns) = &plan.ns else {
            wait_go(plan.sync_r);
            exec_agent(&plan.launch(), false);
        };
        for (i, op) in ns.ops.iter().enumerate() {
            if let Err(e) = run_op(op, ns.idmap) {
                fail(plan.exec_w, i as u32, e);
            }
        }
        if ns.idmap >= 0 {
            libc::close(ns.idmap);
        }
        let name = ns.hostname.as_bytes();
        if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
            fail(plan.exec_w, STAGE_HOSTNAME, errno());
        }
        wait_go(plan.sync_r);
        // Only now is init inside the sandbox's cgroups, so the new cgroup namespace is rooted there
        // and the agent sees "/" in /proc/self/cgroup instead of Berth's hierarchy.
        if libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
            fail(plan.exec_w, STAGE_CGROUPNS, errno());
        }
        let agent = raw_fork();
        if agent < 0 {
            fail(plan.exec_w, STAGE_FORK, errno());
        }
        if agent == 0 {
            exec_agent(&plan.launch(), true);
        }
        // Init from here on. Its copy of the exec pipe must go so the parent sees EOF at exec.
        libc::close(plan.exec_w);
        forward_sigterm(agent as libc::pid_t);
        reap_until(agent as libc::pid_t, plan.status_w)
    }
}

/// Resets every signal disposition to default and unblocks all signals. The parent thread keeps all
/// signals blocked while cloning, so no handler of the parent process can run in the child before this.
unsafe fn reset_signals() {
    // SAFETY: sigaction/sigprocmask on zero-initialised sigaction/sigset_t values.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // Signals reserved by glibc fail with EINVAL; nothing to reset there.
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

unsafe fn setup_stdio(plan: &Plan) -> Result<(), c_int> {
    // SAFETY: as in dup_stdio.
    unsafe { dup_stdio([plan.stdin, plan.stdout, plan.stderr]) }
}

unsafe fn dup_stdio(fds: [c_int; 3]) -> Result<(), c_int> {
    for (src, dst) in [(fds[0], 0), (fds[1], 1), (fds[2], 2)] {
        // SAFETY: dup2 on descriptors the parent opened; sources are >= 3 so none is clobbered.
        if unsafe { libc::dup2(src, dst) } < 0 {
            return Err(unsafe { errno() });
        }
    }
    Ok(())
}

/// Closes every descriptor >= 3 except `keep` (negative entries are ignored): the child inherited all
/// of Berth's descriptors, including other sandboxes' pipes, which must not stay open in a long-lived init.
unsafe fn close_other_fds(keep: &[c_int; 4]) {
    let mut sorted = *keep;
    sorted.sort_unstable();
    let mut low: u32 = 3;
    for &k in &sorted {
        if k < 3 {
            continue;
        }
        let k = k as u32;
        if k > low {
            // SAFETY: closing descriptors of this single-threaded child.
            unsafe { close_range(low, k - 1) };
        }
        low = k + 1;
    }
    // SAFETY: as above.
    unsafe { close_range(low, u32::MAX) };
}

unsafe fn close_range(first: u32, last: u32) {
    // SAFETY: close_range(2) with no flags only closes descriptors.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if r != 0 {
        // Kernels before 5.9: close one by one up to a generous bound.
        let end = last.min(65_535);
        for fd in first..=end {
            // SAFETY: closing a descriptor number that may or may not be open.
            unsafe { libc::close(fd as c_int) };
        }
    }
}

unsafe fn run_op(op: &Op, idmap: c_int) -> Result<(), c_int> {
    // SAFETY (whole body): every pointer comes from a CString owned by the plan.
    let r = unsafe {
        match op {
            Op::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => libc::mount(
                opt_ptr(source),
                target.as_ptr(),
                opt_ptr(fstype),
                *flags,
                opt_ptr(data) as *const c_void,
            ),
            Op::SetAttr { target, set } => {
                let attr = MountAttr {
                    attr_set: *set,
                    attr_clr: 0,
                    propagation: 0,
                    userns_fd: 0,
                };
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    libc::AT_RECURSIVE as c_ulong,
                    &attr as *const MountAttr,
                    size_of::<MountAttr>(),
                ) as c_int
            }
            Op::IdmapBind { source, target } => {
                let tree = libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    source.as_ptr(),
                    (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as c_ulong,
                ) as c_int;
                if tree < 0 {
                    -1
                } else {
                    let attr = MountAttr {
                        attr_set: MOUNT_ATTR_IDMAP
                            | MOUNT_ATTR_RDONLY
                            | MOUNT_ATTR_NOSUID
                            | MOUNT_ATTR_NODEV,
                        attr_clr: 0,
                        propagation: 0,
                        userns_fd: idmap as u64,
                    };
                    let set = libc::syscall(
                        libc::SYS_mount_setattr,
                        tree,
                        c"".as_ptr(),
                        libc::AT_EMPTY_PATH as c_ulong,
                        &attr as *const MountAttr,
                        size_of::<MountAttr>(),
                    ) == 0;
                    let moved = set
                        && libc::syscall(
                            libc::SYS_move_mount,
                            tree,
                            c"".as_ptr(),
                            libc::AT_FDCWD,
                            target.as_ptr(),
                            libc::MOVE_MOUNT_F_EMPTY_PATH as c_ulong,
                        ) == 0;
                    let e = errno();
                    libc::close(tree);
                    if moved {
                        0
                    } else {
                        *libc::__errno_location() = e;
                        -1
                    }
                }
            }
            Op::Mkdir { path } => {
                if libc::mkdir(path.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                    -1
                } else {
                    0
                }
            }
            Op::Unsymlink { path } => {
                let mut st: libc::stat = std::mem::zeroed();
                if libc::lstat(path.as_ptr(), &mut st) == 0
                    && st.st_mode & libc::S_IFMT == libc::S_IFLNK
                {
                    libc::unlink(path.as_ptr())
                } else {
                    0
                }
            }
            Op::Touch { path } => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                    0
                } else {
                    -1
                }
            }
            Op::Write { path, data } => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                if fd < 0 {
                    -1
                } else {
                    let mut done = 0;
                    while done < data.len() {
                        let n = libc::write(fd, data[done..].as_ptr().cast(), data.len() - done);
                        if n <= 0 {
                            break;
                        }
                        done += n as usize;
                    }
                    // A short write leaves errno set by the failed write (or ENOSPC below).
                    let complete = done == data.len();
                    libc::close(fd);
                    if complete {
                        0
                    } else {
                        *libc::__errno_location() = libc::ENOSPC;
                        -1
                    }
                }
            }
            Op::Symlink { target, link } => libc::symlink(target.as_ptr(), link.as_ptr()),
            Op::Chdir { path } => libc::chdir(path.as_ptr()),
            Op::PivotRoot => {
                // pivot_root(".", ".") stacks the old root on top of the new one at "/"; detaching "."
                // then removes it, so no directory for the old root has to exist in a read-only tree.
                let dot: &CStr = c".";
                let pivoted = libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) == 0;
                if pivoted && libc::umount2(dot.as_ptr(), libc::MNT_DETACH) == 0 {
                    libc::chdir(c"/".as_ptr())
                } else {
                    -1
                }
            }
        }
    };
    if r != 0 {
        // SAFETY: reading this thread's errno.
        return Err(unsafe { errno() });
    }
    Ok(())
}

fn opt_ptr(c: &Option<CString>) -> *const c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

/// Blocks until the parent sends the go byte; exits quietly if the parent closed the pipe instead.
unsafe fn wait_go(sync_r: c_int) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reading one byte into a local.
        let n = unsafe { libc::read(sync_r, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            break;
        }
        // SAFETY: reading errno, then leaving the child.
        if n < 0 && unsafe { errno() } == libc::EINTR {
            continue;
        }
        unsafe { libc::_exit(1) };
    }
    // SAFETY: the go pipe is not needed any more and must not leak into the agent.
    unsafe { libc::close(sync_r) };
}

/// Entry point of a command's first child (`Sandbox::exec`). Never returns.
///
/// It waits for the parent's go (sent once it is in the sandbox's cgroups), joins the sandbox's
/// namespaces (mount, network, IPC, UTS, cgroup, and PID for its children), forks the command,
/// reports the command's host pid (its process group: it calls `setsid`) on the status pipe, waits
/// for it, kills what it left in its process group (before reaping it, so the group id cannot
/// have been recycled), and reports its wait status there too. The command itself goes through the same last
/// steps as the agent ([`exec_agent`]): its own session, the agent's uid, rlimits,
/// `no_new_privs` and seccomp filter. This process stays outside the PID namespace (joining one
/// only places later children in it), so the pid it reports is the host's.
///
/// # Safety
/// Must only be called in the child of a `clone` of this process, with a plan whose descriptors
/// are open in the child.
pub(crate) unsafe fn exec_main(plan: &ExecPlan) -> ! {
    // SAFETY (whole body): only async-signal-safe system calls on memory the plan owns; the
    // function leaves through `_exit` or `execve`.
    unsafe {
        reset_signals();
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0) != 0 {
            fail(plan.exec_w, STAGE_PDEATHSIG, errno());
        }
        if let Err(e) = dup_stdio([plan.stdin, plan.stdout, plan.stderr]) {
            fail(plan.exec_w, STAGE_STDIO, e);
        }
        let ns = plan.ns_pidfd.unwrap_or(-1);
        close_other_fds(&[plan.sync_r, plan.exec_w, plan.status_w, ns]);
        wait_go(plan.sync_r);
        if ns >= 0 {
            let all = libc::CLONE_NEWNS
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWCGROUP;
            // setns with a pidfd joins all of them at once, and the pidfd cannot name a
            // recycled pid.
            if libc::setns(ns, all) != 0 {
                fail(plan.exec_w, STAGE_SETNS, errno());
            }
            libc::close(ns);
        }
        let launch = Launch {
            programs: &[],
            argv: &plan.argv,
            envp: &plan.envp,
            cwd: &plan.cwd,
            creds: plan.creds,
            seccomp: plan.seccomp,
            nofile: plan.nofile,
            exec_w: plan.exec_w,
        };
        let cmd = raw_fork();
        if cmd < 0 {
            fail(plan.exec_w, STAGE_FORK, errno());
        }
        if cmd == 0 {
            exec_agent(&launch, true);
        }
        // The parent must see EOF on the exec pipe once the command has executed.
        libc::close(plan.exec_w);
        let pid: c_int = cmd;
        libc::write(
            plan.status_w,
            (&pid as *const c_int).cast(),
            size_of::<c_int>(),
        );
        // Wait without reaping, so the command's pid (its process group id) stays taken while
        // what it left in its group is killed; then reap and report.
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                cmd as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            );
            if r == 0 {
                break;
            }
            if errno() != libc::EINTR {
                libc::_exit(1);
            }
        }
        libc::kill(-cmd, libc::SIGKILL);
        loop {
            let mut status: c_int = 0;
            let r = libc::waitpid(cmd, &mut status, 0);
            if r == cmd {
                libc::write(
                    plan.status_w,
                    (&status as *const c_int).cast(),
                    size_of::<c_int>(),
                );
                libc::_exit(0);
            }
            if r < 0 && errno() != libc::EINTR {
                libc::_exit(1);
            }
        }
    }
}

/// Turns the current process into the agent (or a command). Never returns.
unsafe fn exec_agent(plan: &Launch<'_>, namespaced: bool) -> ! {
    // SAFETY (whole body): raw system calls on plan-owned memory and locals; see the module docs for
    // why the glibc wrappers of setuid/setgid/setgroups are avoided.
    unsafe {
        if namespaced {
            if libc::setsid() < 0 {
                fail(plan.exec_w, STAGE_SETSID, errno());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0) != 0 {
                fail(plan.exec_w, STAGE_PDEATHSIG, errno());
            }
            // Init is a copy of Berth, and its resident set counts Berth's shared pages: the OOM
            // killer could take it for the biggest process of the sandbox. The agent's tree is marked
            // as the preferred victim instead (raising the score needs no privilege; the parent also
            // lowers init's where it holds CAP_SYS_RESOURCE). Host-wide, sandboxes then go before
            // Berth and the host's services, which is the order an operator wants.
            let fd = libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd < 0 || libc::write(fd, b"1000".as_ptr().cast(), 4) != 4 {
                fail(plan.exec_w, STAGE_OOM_ADJ, errno());
            }
            libc::close(fd);
        }
        let nofile = libc::rlimit {
            rlim_cur: plan.nofile,
            rlim_max: plan.nofile,
        };
        let nocore = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) != 0
            || libc::setrlimit(libc::RLIMIT_CORE, &nocore) != 0
        {
            fail(plan.exec_w, STAGE_RLIMIT, errno());
        }
        if let Some((uid, gid)) = plan.creds {
            let groups_cleared =
                libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) == 0;
            if !groups_cleared
                || libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0
                || libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0
            {
                fail(plan.exec_w, STAGE_CREDS, errno());
            }
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as c_ulong, 0, 0, 0) != 0 {
            fail(plan.exec_w, STAGE_NO_NEW_PRIVS, errno());
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            fail(plan.exec_w, STAGE_CHDIR, errno());
        }
        // Last, so nothing above runs under the filter; execve, write and _exit stay allowed.
        for program in plan.seccomp {
            let fprog = libc::sock_fprog {
                len: program.len() as c_ushort,
                // seccompiler's sock_filter is declared with the kernel's layout, like libc's.
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            if libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as c_ulong,
                &fprog as *const libc::sock_fprog,
            ) != 0
            {
                fail(plan.exec_w, STAGE_SECCOMP, errno());
            }
        }
        if plan.programs.is_empty() {
            libc::execve(plan.argv.first(), plan.argv.as_ptr(), plan.envp.as_ptr());
            fail(plan.exec_w, STAGE_EXEC, errno());
        }
        // As execvp does: a candidate that is not there is skipped; any other failure is the
        // one reported (the first such), else "not found".
        let mut reported = libc::ENOENT;
        for program in plan.programs {
            libc::execve(program.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            let e = errno();
            if e != libc::ENOENT && e != libc::ENOTDIR && reported == libc::ENOENT {
                reported = e;
            }
        }
        fail(plan.exec_w, STAGE_EXEC, reported);
    }
}

/// Init's life after forking the agent: reap everything, report the agent's status, exit.
/// The agent init forwards SIGTERM to (init's only state a signal handler reads).
static AGENT_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_to_agent(sig: c_int) {
    let agent = AGENT_PID.load(std::sync::atomic::Ordering::Relaxed);
    if agent > 0 {
        // SAFETY: kill(2) is async-signal-safe; `agent` is init's child, not yet reaped while
        // init runs (init exits as soon as it reaps it).
        unsafe { libc::kill(agent, sig) };
    }
}

/// Makes init pass SIGTERM on to the agent. A PID namespace's init gets a signal from outside
/// only if it has a handler for it; without this, [`super::Sandbox::stop`]'s request to end
/// would never reach the agent.
unsafe fn forward_sigterm(agent: libc::pid_t) {
    AGENT_PID.store(agent, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: sigaction with a zeroed struct naming an async-signal-safe handler; SA_RESTART
    // keeps init's waitpid loop going.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = forward_to_agent as *const () as libc::sighandler_t;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGTERM, &act, std::ptr::null_mut());
    }
}

unsafe fn reap_until(agent: libc::pid_t, status_w: c_int) -> ! {
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid into a local.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == agent {
            // SAFETY: a 4-byte write to a pipe is atomic; init exits right after, and its exit makes
            // the kernel kill whatever is left in the namespace.
            unsafe {
                libc::write(
                    status_w,
                    (&status as *const c_int).cast(),
                    size_of::<c_int>(),
                );
                libc::_exit(0);
            }
        }
        // SAFETY: reading errno and exiting.
        if pid < 0 && unsafe { errno() } != libc::EINTR {
            unsafe { libc::_exit(0) };
        }
    }
}

/// `fork` without glibc's atfork handlers (which may take locks held by threads absent in this copy).
unsafe fn raw_fork() -> libc::pid_t {
    // SAFETY: clone with only SIGCHLD and no stack behaves like fork(2).
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        ) as libc::pid_t
    }
}

unsafe fn errno() -> c_int {
    // SAFETY: the thread-local errno of the (single) current thread.
    unsafe { *libc::__errno_location() }
}

unsafe fn fail(exec_w: c_int, stage: u32, errno: c_int) -> ! {
    let report = Report { stage, errno };
    // SAFETY: an 8-byte write to a pipe is atomic; the process exits right after.
    unsafe {
        libc::write(exec_w, (&report as *const Report).cast(), REPORT_SIZE);
        libc::_exit(126)
    }
}
