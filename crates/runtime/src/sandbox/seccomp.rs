//! The seccomp filter every agent runs under, installed by the child right before `execve`.
//!
//! In the spirit of the default profile of container runtimes (Docker, containerd), but written as a
//! deny list: everything an interpreter, a native wheel or a subprocess needs keeps working, and
//! the calls that reach kernel surface an agent has no business with fail with `EPERM` (never a
//! kill, so an agent gets an error it can handle):
//!
//! - new namespaces: `unshare` and `clone` with any `CLONE_NEW*` flag (above all `CLONE_NEWUSER`,
//!   which would make the agent root of a namespace of its own), and `setns`. `clone3` passes its
//!   flags in memory a filter cannot read, so it fails with `ENOSYS` instead: glibc (and every
//!   runtime that uses `clone3`) then falls back to `clone`, whose flags are checked;
//! - mounts: `mount`, `umount2`, `pivot_root`, `chroot` and the new mount API (`open_tree`,
//!   `move_mount`, `fsopen`, `fsconfig`, `fsmount`, `fspick`, `mount_setattr`);
//! - kernel keyrings: `keyctl`, `add_key`, `request_key`, so no keyring, shared or not, is reachable;
//! - other processes' memory: `ptrace`, `process_vm_readv`/`writev`, `pidfd_getfd`;
//! - kernel programmability and introspection: `bpf`, `perf_event_open`, `userfaultfd`,
//!   `io_uring_*`, `lookup_dcookie`, `syslog`;
//! - the machine: `kexec_*`, module loading, `reboot`, `swapon`/`swapoff`, `acct`, `quotactl`,
//!   `settimeofday`, `clock_settime`, `clock_adjtime`, `sethostname`, `setdomainname`, and on
//!   x86 `iopl`, `ioperm`;
//! - file handles that bypass path permissions: `open_by_handle_at`, `name_to_handle_at`;
//! - obsolete calls: `uselib`, `ustat`, `sysfs`, `_sysctl`.
//!
//! Most of these already fail for an unprivileged uid; the filter closes the ones that do not
//! (`unshare(CLONE_NEWUSER)`, `keyctl`, `bpf` and `perf_event_open` where sysctls allow them,
//! `userfaultfd`, `io_uring`) and keeps the rest shut should a kernel bug hand out a capability.
//!
//! The filter checks the architecture and kills a process that makes a system call of another ABI
//! (32-bit `int 0x80` on x86-64); a second, hand-written program refuses the x32 ABI's numbers
//! (`nr >= 0x40000000`), which would otherwise bypass the per-number rules on kernels built with it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// Every `CLONE_NEW*` flag: none of them is of use to an unprivileged agent.
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    0x80, // CLONE_NEWTIME, not in every libc release
];

/// System calls denied whatever their arguments.
fn denied() -> Vec<libc::c_long> {
    let mut calls = vec![
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_lookup_dcookie,
        libc::SYS_syslog,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_quotactl_fd,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS_ustat,
        libc::SYS_sysfs,
        libc::SYS__sysctl,
    ]);
    calls
}

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("no seccomp filter for this architecture: {e}"))
}

fn any_namespace_flag() -> Result<Vec<SeccompRule>, String> {
    NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .map_err(|e| e.to_string())?;
            SeccompRule::new(vec![cond]).map_err(|e| e.to_string())
        })
        .collect()
}

fn compile() -> Result<Vec<BpfProgram>, String> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        denied().into_iter().map(|nr| (nr, Vec::new())).collect();
    rules.insert(libc::SYS_unshare, any_namespace_flag()?);
    rules.insert(libc::SYS_clone, any_namespace_flag()?);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let mut programs: Vec<BpfProgram> = vec![
        deny.try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?,
        clone3
            .try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?,
    ];
    if cfg!(target_arch = "x86_64") {
        programs.push(no_x32());
    }
    Ok(programs)
}

/// `nr >= __X32_SYSCALL_BIT` fails with `ENOSYS` (what a kernel without x32 support answers).
fn no_x32() -> BpfProgram {
    const LD_W_ABS: u16 = 0x20;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        // seccomp_data.nr is the first field.
        insn(LD_W_ABS, 0, 0, 0),
        insn(JGE_K, 0, 1, X32_SYSCALL_BIT),
        insn(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32),
        insn(RET_K, 0, 0, RET_ALLOW),
    ]
}

/// The compiled programs, in the order the child installs them. Compiled once per process.
pub(crate) fn programs() -> Result<&'static [BpfProgram], String> {
    static PROGRAMS: OnceLock<Result<Vec<BpfProgram>, String>> = OnceLock::new();
    PROGRAMS
        .get_or_init(compile)
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn compiles_for_this_architecture() {
        let programs = programs().unwrap();
        assert!(programs.len() >= 2);
        assert!(programs.iter().all(|p| !p.is_empty() && p.len() < 4096));
    }
}
