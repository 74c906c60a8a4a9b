//! The one dedicated OS thread that clones sandboxes and makes sockets inside their network namespaces.
//!
//! Why a single long-lived thread:
//! - `setns(CLONE_NEWNET)` changes the namespace of the calling *thread*; doing it on a tokio worker
//!   would leak the sandbox's namespace into unrelated tasks scheduled there. A socket keeps the
//!   namespace it was created in, so the thread enters, creates the socket, and returns right away;
//!   the socket is then used from tokio like any other.
//! - `PR_SET_PDEATHSIG` fires when the *thread* that created the child exits, not the process. Children
//!   cloned from a tokio blocking-pool thread would be killed when that thread idles out. This thread
//!   never exits, so the signal fires only when Berth itself dies.
//! - One thread serves every request over a channel, so a connect costs a channel round trip and two
//!   `setns` calls instead of a thread spawn.
//!
//! The thread blocks every signal: a child cloned from it starts with no handler able to run before it
//! resets its signal dispositions.

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::net::{SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::raw::{c_int, c_short, c_ulong};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::sync::oneshot;
use tracing::error;

use super::child::{self, ExecPlan, Plan};

/// A request to the helper thread.
enum Request {
    Spawn {
        plan: Box<Plan>,
        /// The child's ends of the pipes: closed in the parent right after the clone.
        child_fds: Vec<OwnedFd>,
        reply: oneshot::Sender<io::Result<Spawned>>,
    },
    Exec {
        plan: Box<ExecPlan>,
        /// The child's ends of the pipes: closed in the parent right after the clone.
        child_fds: Vec<OwnedFd>,
        reply: oneshot::Sender<io::Result<Spawned>>,
    },
    Net {
        netns: Arc<OwnedFd>,
        op: NetOp,
        reply: oneshot::Sender<io::Result<Option<OwnedFd>>>,
    },
}

/// What to do inside a network namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NetOp {
    /// Set `lo` up.
    LoopbackUp,
    /// Create an unconnected, non-blocking IPv4 TCP socket (to be connected from tokio).
    Socket,
    /// Bind and listen on an address; returns the non-blocking listener.
    Listen(SocketAddrV4),
}

/// A freshly cloned child.
pub(crate) struct Spawned {
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
}

fn sender() -> io::Result<&'static mpsc::Sender<Request>> {
    static HELPER: OnceLock<Result<mpsc::Sender<Request>, String>> = OnceLock::new();
    let started = HELPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("berth-sandbox".into())
            .spawn(move || run(rx))
            .map(|_| tx)
            .map_err(|e| e.to_string())
    });
    started
        .as_ref()
        .map_err(|e| io::Error::other(format!("cannot start the sandbox helper thread: {e}")))
}

fn send(req: Request) -> io::Result<()> {
    sender()?
        .send(req)
        .map_err(|_| io::Error::other("sandbox helper thread is gone"))
}

/// Clones a child that runs `plan`. `namespaced` adds the PID, mount, network, IPC and UTS namespaces.
pub(crate) async fn spawn(plan: Plan, child_fds: Vec<OwnedFd>) -> io::Result<Spawned> {
    let (reply, rx) = oneshot::channel();
    send(Request::Spawn {
        plan: Box::new(plan),
        child_fds,
        reply,
    })?;
    rx.await
        .map_err(|_| io::Error::other("sandbox helper thread dropped the request"))?
}

/// Clones the first process of a command in a running sandbox (see `child::exec_main`). From
/// this thread like every sandbox child, so its parent-death signal fires only with Berth.
pub(crate) async fn exec(plan: ExecPlan, child_fds: Vec<OwnedFd>) -> io::Result<Spawned> {
    let (reply, rx) = oneshot::channel();
    send(Request::Exec {
        plan: Box::new(plan),
        child_fds,
        reply,
    })?;
    rx.await
        .map_err(|_| io::Error::other("sandbox helper thread dropped the request"))?
}

/// Runs `op` inside the network namespace `netns`.
pub(crate) async fn net(netns: Arc<OwnedFd>, op: NetOp) -> io::Result<Option<OwnedFd>> {
    let (reply, rx) = oneshot::channel();
    send(Request::Net { netns, op, reply })?;
    rx.await
        .map_err(|_| io::Error::other("sandbox helper thread dropped the request"))?
}

fn run(rx: mpsc::Receiver<Request>) {
    // SAFETY: blocking all signals of this thread with a filled sigset.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let home = File::open("/proc/thread-self/ns/net").map(OwnedFd::from);
    // Set when returning to the home namespace failed: this thread would then create sockets and
    // plain-process children in a sandbox's namespace, so it refuses all further work.
    let mut poisoned = false;
    for req in rx {
        let outcome = catch_unwind(AssertUnwindSafe(|| match req {
            Request::Spawn {
                plan,
                child_fds,
                reply,
            } => {
                let result = if poisoned {
                    Err(poisoned_error())
                } else {
                    clone_child(&plan)
                };
                drop(child_fds);
                let _ = reply.send(result);
            }
            Request::Exec {
                plan,
                child_fds,
                reply,
            } => {
                let result = if poisoned {
                    Err(poisoned_error())
                } else {
                    clone_exec(&plan)
                };
                drop(child_fds);
                let _ = reply.send(result);
            }
            Request::Net { netns, op, reply } => {
                let result = match (&home, poisoned) {
                    (_, true) => Err(poisoned_error()),
                    (Err(e), _) => Err(io::Error::new(
                        e.kind(),
                        format!("cannot open this thread's network namespace: {e}"),
                    )),
                    (Ok(home), false) => in_netns(home, &netns, op, &mut poisoned),
                };
                let _ = reply.send(result);
            }
        }));
        if outcome.is_err() {
            error!("sandbox helper request panicked");
        }
    }
}

fn poisoned_error() -> io::Error {
    io::Error::other("sandbox helper thread is stuck in a foreign network namespace")
}

fn in_netns(
    home: &OwnedFd,
    target: &OwnedFd,
    op: NetOp,
    poisoned: &mut bool,
) -> io::Result<Option<OwnedFd>> {
    setns(target)?;
    let result = net_op(op);
    if let Err(e) = setns(home) {
        error!(error = %e, "cannot return the sandbox helper thread to its network namespace");
        *poisoned = true;
    }
    result
}

fn setns(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns on a namespace descriptor we own; affects only this thread.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn net_op(op: NetOp) -> io::Result<Option<OwnedFd>> {
    match op {
        NetOp::Socket => {
            // SAFETY: socket(2) returns a new descriptor or -1.
            let fd = unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    0,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is fresh and owned by nobody else.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        }
        NetOp::Listen(addr) => {
            let listener = TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(Some(listener.into()))
        }
        NetOp::LoopbackUp => {
            loopback_up()?;
            Ok(None)
        }
    }
}

/// `struct ifreq` with the flags member of its union; padded to the kernel's 40 bytes.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: c_short,
    _pad: [u8; 22],
}

const SIOCGIFFLAGS: c_ulong = 0x8913;
const SIOCSIFFLAGS: c_ulong = 0x8914;

fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write a struct ifreq we own, sized as the kernel expects.
    unsafe {
        if libc::ioctl(
            sock.as_raw_fd(),
            SIOCGIFFLAGS as _,
            &mut req as *mut IfReqFlags,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as c_short;
        if libc::ioctl(
            sock.as_raw_fd(),
            SIOCSIFFLAGS as _,
            &req as *const IfReqFlags,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `struct clone_args` of `<linux/sched.h>` (version 2, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

fn clone_child(plan: &Plan) -> io::Result<Spawned> {
    let mut flags = libc::CLONE_PIDFD as u64;
    if plan.ns.is_some() {
        flags |= (libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS) as u64;
    }
    // SAFETY: the child enters child_main, which never returns and only makes async-signal-safe
    // calls on the plan (see child.rs).
    unsafe { clone_then(flags, || child::child_main(plan)) }
}

/// Clones a plain child (no new namespaces) that runs a command's plan.
fn clone_exec(plan: &ExecPlan) -> io::Result<Spawned> {
    // SAFETY: the child enters exec_main, which never returns and only makes async-signal-safe
    // calls on the plan (see child.rs).
    unsafe { clone_then(libc::CLONE_PIDFD as u64, || child::exec_main(plan)) }
}

/// Clones this thread like fork with `flags` (plus a pidfd) and runs `child` in the child.
///
/// # Safety
/// `child` runs in a copy of a multi-threaded process: it must never return and may only make
/// async-signal-safe calls.
unsafe fn clone_then(flags: u64, child: impl FnOnce()) -> io::Result<Spawned> {
    let mut pidfd: c_int = -1;
    let mut args = CloneArgs {
        flags,
        pidfd: &mut pidfd as *mut c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without a stack behaves like fork: the child continues here on a copy of this
    // thread's stack and immediately enters `child`, which never returns and only makes
    // async-signal-safe calls (the caller's promise).
    let mut ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // Kernels before 5.3 (or seccomp filters that hide clone3): legacy clone stores the pidfd
        // through the parent_tid argument, the third on every architecture.
        // SAFETY: as above.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                flags | libc::SIGCHLD as u64,
                0usize,
                &mut pidfd as *mut c_int,
                0usize,
                0usize,
            )
        };
    }
    if ret == 0 {
        // We are the child of the clone above; the plan's descriptors are open here.
        child();
        // SAFETY: `child` never returns (the caller's promise); should it, leave at once.
        unsafe { libc::_exit(127) }
    }
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel stored a new pidfd that nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Spawned {
        pid: ret as u32,
        pidfd,
    })
}

/// Sends SIGKILL through a pidfd (never hits a recycled pid). Errors (already reaped) are ignored.
pub(crate) fn pidfd_kill(pidfd: &OwnedFd) {
    pidfd_signal(pidfd, libc::SIGKILL);
}

/// Sends `sig` through a pidfd. Errors (already reaped) are ignored.
pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: libc::c_int) {
    // SAFETY: pidfd_send_signal with no siginfo on a pidfd we hold.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}
