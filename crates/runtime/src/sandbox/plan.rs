//! The mount view of a namespaced sandbox, computed in the parent as a list of steps the child runs.
//!
//! The agent's root is a fresh tmpfs built inside the new mount namespace (nothing propagates back
//! to the host, whose mount table never changes), holding only what an agent needs:
//!
//! | path | what |
//! | --- | --- |
//! | `/` | a small tmpfs, read-only once assembled; every directory in it is Berth's own (root, 0755) |
//! | `/usr`, and `/bin`, `/sbin`, `/lib*` as the host has them | read-only binds, or the same symlinks on merged-usr hosts |
//! | `/etc` | directory of the root tmpfs holding its own `passwd`, `group` and `hosts` and read-only binds of the host's essentials only (`etc` of [`Inputs`]): resolver and TLS configuration, `ld.so.*`, time zone, Python's |
//! | `/proc` | a new procfs of the sandbox's PID namespace, `hidepid=2` (only the agent user's processes) |
//! | `/sys` | a new read-only sysfs (shows only the sandbox's network devices; no cgroup tree) |
//! | `/dev` | read-only tmpfs with `null zero full random urandom tty` bound from the host, `fd`/`std*` links, a private `/dev/shm`, a new `devpts` instance at `/dev/pts` with `/dev/ptmx` |
//! | `/tmp` | a private tmpfs of `tmp_bytes`, mode 1777 |
//! | `/mnt/session` | a private tmpfs of `session_bytes`, owned by the agent, mode 0700 (`HOME`) |
//! | `visible` paths (the code dir first, the venv, the interpreter's install tree) | read-only binds at their host path |
//!
//! Nothing else of the host exists inside: no `/home`, `/root`, `/var`, `/run`, `/opt`, no data
//! directory, and `mountinfo` names only these mounts. Because the binds hang off directories the
//! plan creates itself, a visible path is reachable whatever the permissions of its host ancestors
//! (a data directory under a `0700` home works). A `hidden` path that one of the binds would still
//! include (a data directory under `/usr/local`) is masked with an empty read-only tmpfs.
//!
//! Why a fresh root and not the host's root made read-only with masks (what Berth did first): the
//! masks had to name every place holding other tenants' data or host secrets, and any place
//! forgotten was readable; an allow-list fails closed. The cost is one bind per system directory and
//! `/etc` entry instead of one recursive bind of the whole host tree, which is cheaper on hosts with
//! many mounts.
//!
//! Mount points that have to be created under `/tmp` or `/mnt/session` (a `code_dir` below the host's
//! `/tmp`) end up as empty root-owned directories in the sandbox's own tmpfs.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::child::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, Op};

/// What a host path is, as far as the plan cares (`lstat`, symlinks not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    /// A device node, socket or fifo.
    Special,
    /// A symbolic link with this target.
    Link(PathBuf),
}

/// Inputs of the mount plan; every path is absolute and canonical (symlinks resolved, so no mount
/// target inside the new root can resolve through an absolute symlink back into the host).
pub(crate) struct Inputs<'a> {
    /// The empty directory the new root is assembled on (`work_root/rootfs`).
    pub(crate) rootfs: &'a Path,
    /// Files written into `/etc` of the root (`passwd`, `group`, `hosts`): (name, content).
    pub(crate) etc_files: &'a [(String, Vec<u8>)],
    /// `/etc` entries bound from the host: (path inside, host source, kind of the source with
    /// symlinks followed; only `Dir` and `File` are bound).
    pub(crate) etc: &'a [(PathBuf, PathBuf, Kind)],
    /// Directories that must not appear inside.
    pub(crate) hidden: &'a [PathBuf],
    /// Paths bound read-only at their host path (the code directory first).
    pub(crate) visible: &'a [PathBuf],
    /// Directories bound read-write at their host path (a build's target environment).
    pub(crate) writable: &'a [PathBuf],
    /// Size of the private `/dev/shm` tmpfs in bytes.
    pub(crate) shm_bytes: u64,
    /// Size of `/tmp` in bytes.
    pub(crate) tmp_bytes: u64,
    /// Size of `/mnt/session` in bytes.
    pub(crate) session_bytes: u64,
    /// Owner (uid, gid) of `/mnt/session`.
    pub(crate) owner: (u32, u32),
}

/// The host's system directories bound into every root (those the host has).
const SYSTEM: [&str; 7] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];
/// Mounts of the plan that no visible path may lie in or be.
const RESERVED: [&str; 3] = ["/proc", "/sys", "/dev"];
/// Mount points of the plan a visible path may lie below but not be.
const OWN: [&str; 5] = ["/", "/etc", "/tmp", "/mnt", "/mnt/session"];

const TMPFS_SMALL: &str = "mode=755,size=64k,nr_inodes=4096";
const RO: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

/// Builds the steps. `kind` reports what a host path is (`None`: missing); it is a parameter so the
/// plan can be unit-tested without a host.
pub(crate) fn mount_ops(
    inputs: &Inputs<'_>,
    kind: &dyn Fn(&Path) -> Option<Kind>,
) -> Result<Vec<Op>, String> {
    let root = inputs.rootfs;
    let inside = |p: &Path| -> PathBuf { root.join(p.strip_prefix("/").unwrap_or(p)) };
    let mut ops = Vec::new();

    if kind(Path::new("/usr")) != Some(Kind::Dir) {
        return Err("host has no /usr directory".into());
    }

    // Nothing mounted from here on may propagate to the host's namespace.
    ops.push(Op::Mount {
        source: None,
        target: c("/")?,
        fstype: None,
        flags: libc::MS_REC | libc::MS_PRIVATE,
        data: None,
    });
    ops.push(mount_fs(
        "tmpfs",
        root,
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(TMPFS_SMALL),
    )?);

    // Trees bound from the host, for the hidden-path check below.
    let mut bound: Vec<PathBuf> = Vec::new();
    for dir in SYSTEM.iter().map(Path::new) {
        match kind(dir) {
            Some(Kind::Dir) => {
                ops.push(Op::Mkdir {
                    path: cp(&inside(dir))?,
                });
                bind_ro(&mut ops, dir, &inside(dir))?;
                bound.push(dir.to_path_buf());
            }
            Some(Kind::Link(target)) => ops.push(Op::Symlink {
                target: cp(&target)?,
                link: cp(&inside(dir))?,
            }),
            _ => {}
        }
    }

    let etc = inside(Path::new("/etc"));
    ops.push(Op::Mkdir { path: cp(&etc)? });
    // Written, not bound: a bind would name its host source in the agent's mountinfo.
    for (name, data) in inputs.etc_files {
        if name.contains('/') {
            return Err(format!("{name} is not a file name"));
        }
        ops.push(Op::Write {
            path: cp(&etc.join(name))?,
            data: data.clone(),
        });
    }
    for (at, source, what) in inputs.etc {
        if !at.starts_with("/etc") || at == Path::new("/etc") {
            return Err(format!("{} is not an entry of /etc", at.display()));
        }
        if !matches!(what, Kind::Dir | Kind::File) {
            continue;
        }
        // Mount points for the levels between /etc and the entry (`/etc/ssl` of `/etc/ssl/certs`).
        let mut level = PathBuf::from("/etc");
        let below: Vec<_> = at
            .strip_prefix("/etc")
            .map_err(|_| "not in /etc")?
            .components()
            .collect();
        for comp in &below[..below.len().saturating_sub(1)] {
            level.push(comp);
            ops.push(Op::Mkdir {
                path: cp(&inside(&level))?,
            });
        }
        match what {
            Kind::Dir => ops.push(Op::Mkdir {
                path: cp(&inside(at))?,
            }),
            Kind::File => ops.push(Op::Touch {
                path: cp(&inside(at))?,
            }),
            _ => continue,
        }
        bind_ro(&mut ops, source, &inside(at))?;
        bound.push(at.clone());
    }

    let dev = kernel_and_scratch(
        &mut ops,
        root,
        &Scratch {
            shm_bytes: inputs.shm_bytes,
            tmp_bytes: inputs.tmp_bytes,
            session_bytes: inputs.session_bytes,
            owner: inputs.owner,
        },
        kind,
    )?;

    // Visible paths, each at its host path; one inside another is covered by the outer bind.
    let mut visible: Vec<&PathBuf> = inputs.visible.iter().collect();
    visible.sort();
    let mut shown: Vec<&Path> = Vec::new();
    for v in visible {
        if RESERVED.iter().any(|r| v.starts_with(r)) || OWN.iter().any(|o| v == Path::new(o)) {
            return Err(format!(
                "visible path {} collides with a sandbox mount",
                v.display()
            ));
        }
        if shown.iter().any(|b| v.starts_with(b)) || bound.iter().any(|b| v.starts_with(b)) {
            continue;
        }
        let what = kind(v).ok_or_else(|| format!("visible path {} does not exist", v.display()))?;
        let mut at = PathBuf::from("/");
        let components: Vec<_> = v.components().skip(1).collect();
        for (i, comp) in components.iter().enumerate() {
            at.push(comp);
            if i + 1 == components.len() && what != Kind::Dir {
                ops.push(Op::Touch {
                    path: cp(&inside(&at))?,
                });
            } else {
                ops.push(Op::Mkdir {
                    path: cp(&inside(&at))?,
                });
            }
        }
        bind_ro(&mut ops, v, &inside(v))?;
        shown.push(v);
    }

    // Writable directories, each bound read-write at its host path (over a read-only bind that
    // holds it, if any: the mount point then exists already).
    for w in inputs.writable {
        if RESERVED.iter().any(|r| w.starts_with(r))
            || OWN.iter().any(|o| w == Path::new(o))
            || w.starts_with("/mnt/session")
        {
            return Err(format!(
                "writable path {} collides with a sandbox mount",
                w.display()
            ));
        }
        if kind(w) != Some(Kind::Dir) {
            return Err(format!("writable path {} is not a directory", w.display()));
        }
        let mut at = PathBuf::from("/");
        for comp in w.components().skip(1) {
            at.push(comp);
            ops.push(Op::Mkdir {
                path: cp(&inside(&at))?,
            });
        }
        ops.push(mount_bind(w, &inside(w), false)?);
        ops.push(Op::SetAttr {
            target: cp(&inside(w))?,
            set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        });
        shown.push(w);
    }

    // Hidden paths that a bind would still show.
    let masks = masks(inputs.hidden, &bound, &shown, kind)?;
    for m in &masks {
        ops.push(mount_fs(
            "tmpfs",
            &inside(m),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(TMPFS_SMALL),
        )?);
    }

    // Freeze the root, /dev and the masks now that every mount point exists.
    for t in [root.to_path_buf(), dev]
        .into_iter()
        .chain(masks.iter().map(|m| inside(m)))
    {
        ops.push(remount(
            &t,
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        )?);
    }

    ops.push(Op::Chdir { path: cp(root)? });
    ops.push(Op::PivotRoot);
    Ok(ops)
}

/// Sizes and owner of the sandbox's own memory-backed places.
pub(crate) struct Scratch {
    /// Size of the private `/dev/shm` tmpfs in bytes.
    pub(crate) shm_bytes: u64,
    /// Size of `/tmp` in bytes.
    pub(crate) tmp_bytes: u64,
    /// Size of `/mnt/session` in bytes.
    pub(crate) session_bytes: u64,
    /// Owner (uid, gid) of `/mnt/session`.
    pub(crate) owner: (u32, u32),
}

/// What every root gets, whatever it is made of: `/proc` and `/sys` of the new namespaces, a
/// minimal `/dev`, and the private `/tmp` and `/mnt/session`. Returns the `/dev` mount point (made
/// read-only once the plan is complete).
fn kernel_and_scratch(
    ops: &mut Vec<Op>,
    root: &Path,
    scratch: &Scratch,
    kind: &dyn Fn(&Path) -> Option<Kind>,
) -> Result<PathBuf, String> {
    let inside = |p: &Path| -> PathBuf { root.join(p.strip_prefix("/").unwrap_or(p)) };
    // /proc and /sys of the new PID and network namespaces.
    let proc = inside(Path::new("/proc"));
    fresh_dir(ops, &proc)?;
    // hidepid=2: processes of other users are invisible, so the agent never sees init (root, a copy
    // of Berth whose command line would otherwise be readable at /proc/1/cmdline).
    ops.push(mount_fs(
        "proc",
        &proc,
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("hidepid=2"),
    )?);
    let sys = inside(Path::new("/sys"));
    fresh_dir(ops, &sys)?;
    ops.push(mount_fs(
        "sysfs",
        &sys,
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?);

    // A minimal /dev.
    let dev = inside(Path::new("/dev"));
    fresh_dir(ops, &dev)?;
    ops.push(mount_fs(
        "tmpfs",
        &dev,
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(TMPFS_SMALL),
    )?);
    for node in DEV_NODES {
        let host = Path::new("/dev").join(node);
        if kind(&host) != Some(Kind::Special) {
            continue;
        }
        ops.push(Op::Touch {
            path: cp(&dev.join(node))?,
        });
        ops.push(mount_bind(&host, &dev.join(node), false)?);
    }
    for (link, target) in DEV_LINKS {
        ops.push(Op::Symlink {
            target: c(target)?,
            link: cp(&dev.join(link))?,
        });
    }
    fresh_dir(ops, &dev.join("shm"))?;
    let shm = format!("mode=1777,size={}", scratch.shm_bytes);
    ops.push(mount_fs(
        "tmpfs",
        &dev.join("shm"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(&shm),
    )?);
    fresh_dir(ops, &dev.join("pts"))?;
    // A private instance: the agent sees only terminals it opened itself.
    ops.push(mount_fs(
        "devpts",
        &dev.join("pts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?);

    // The sandbox's own writable places: memory-backed, bounded, gone with the namespace.
    let tmp = inside(Path::new("/tmp"));
    fresh_dir(ops, &tmp)?;
    let tmp_data = format!("mode=1777,size={}", scratch.tmp_bytes);
    ops.push(mount_fs(
        "tmpfs",
        &tmp,
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&tmp_data),
    )?);
    let session = inside(Path::new("/mnt/session"));
    fresh_dir(ops, &inside(Path::new("/mnt")))?;
    fresh_dir(ops, &session)?;
    let (uid, gid) = scratch.owner;
    let session_data = format!(
        "mode=0700,uid={uid},gid={gid},size={}",
        scratch.session_bytes
    );
    ops.push(mount_fs(
        "tmpfs",
        &session,
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&session_data),
    )?);
    Ok(dev)
}

/// Inputs of the mount plan of a sandbox whose root is a container image.
pub(crate) struct ImageInputs<'a> {
    /// Whether the layers are shown through an idmapped mount (the user namespace of
    /// `NsPlan::idmap`), each at `scratch_dir/lower/<n>`.
    pub(crate) idmapped: bool,
    /// The empty directory the merged root is mounted on (`work_root/rootfs`).
    pub(crate) rootfs: &'a Path,
    /// An empty directory (`work_root/layer`) a tmpfs of `layer_bytes` is mounted on: the
    /// session's writable layer (`upper/`, `work/`) and the files Berth puts into the root.
    pub(crate) scratch_dir: &'a Path,
    /// The image's unpacked layers, bottom first: overlayfs lower directories, never written.
    pub(crate) layers: &'a [PathBuf],
    /// Size of the writable layer in bytes (its pages count against the memory limit).
    pub(crate) layer_bytes: u64,
    /// The root's `/etc/hosts` (an image's own is written by whoever runs it, not by its build).
    pub(crate) hosts: &'a [u8],
    /// `/dev/shm`, `/tmp`, `/mnt/session`.
    pub(crate) scratch: Scratch,
}

/// Characters overlayfs's mount options cannot carry in a layer path unescaped.
const OVERLAY_SPECIAL: [char; 3] = [',', ':', '\\'];

/// Builds the steps for an image root: the image's layers under a per-session writable layer
/// (overlayfs), then the same `/proc`, `/sys`, `/dev`, `/tmp` and `/mnt/session` as every
/// sandbox. Nothing of the host is bound in but the `/dev` nodes. Every mount point inside the
/// image is first cleared of a symbolic link the image may hold there, so no mount lands outside
/// the new root (which would be harmless, on the detached old root, but is refused anyway).
pub(crate) fn image_mount_ops(
    inputs: &ImageInputs<'_>,
    kind: &dyn Fn(&Path) -> Option<Kind>,
) -> Result<Vec<Op>, String> {
    let root = inputs.rootfs;
    if inputs.layers.is_empty() {
        return Err("an image root needs at least one layer".into());
    }
    let mut ops = vec![Op::Mount {
        source: None,
        target: c("/")?,
        fstype: None,
        flags: libc::MS_REC | libc::MS_PRIVATE,
        data: None,
    }];
    let scratch = inputs.scratch_dir;
    ops.push(mount_fs(
        "tmpfs",
        scratch,
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&format!("mode=0755,size={}", inputs.layer_bytes)),
    )?);
    let (upper, work) = (scratch.join("upper"), scratch.join("work"));
    ops.push(Op::Mkdir { path: cp(&upper)? });
    ops.push(Op::Mkdir { path: cp(&work)? });
    let hosts = scratch.join("hosts");
    ops.push(Op::Write {
        path: cp(&hosts)?,
        data: inputs.hosts.to_vec(),
    });
    // The layers as overlayfs gets them: in place, or idmapped views of them in the scratch tmpfs.
    let layers: Vec<PathBuf> = if inputs.idmapped {
        let views = scratch.join("lower");
        ops.push(Op::Mkdir { path: cp(&views)? });
        let mut out = Vec::with_capacity(inputs.layers.len());
        for (n, layer) in inputs.layers.iter().enumerate() {
            let view = views.join(n.to_string());
            ops.push(Op::Mkdir { path: cp(&view)? });
            ops.push(Op::IdmapBind {
                source: cp(layer)?,
                target: cp(&view)?,
            });
            out.push(view);
        }
        out
    } else {
        inputs.layers.to_vec()
    };
    let mut lower = Vec::with_capacity(layers.len());
    // overlayfs lists lower directories top first.
    for layer in layers.iter().rev() {
        let text = layer
            .to_str()
            .ok_or_else(|| format!("layer path {} is not UTF-8", layer.display()))?;
        if text.contains(OVERLAY_SPECIAL) {
            return Err(format!(
                "layer path {text} holds a character overlayfs options cannot carry (, : \\)"
            ));
        }
        lower.push(text);
    }
    for p in [&upper, &work] {
        if p.to_string_lossy().contains(OVERLAY_SPECIAL) {
            return Err(format!(
                "work root {} holds a character overlayfs options cannot carry (, : \\)",
                scratch.display()
            ));
        }
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    // One page is all mount(2) passes on.
    if data.len() >= 4000 {
        return Err(format!(
            "the image has too many layers ({}) for one overlay mount",
            inputs.layers.len()
        ));
    }
    ops.push(mount_fs(
        "overlay",
        root,
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&data),
    )?);

    let dev = kernel_and_scratch(&mut ops, root, &inputs.scratch, kind)?;

    let etc = root.join("etc");
    fresh_dir(&mut ops, &etc)?;
    let etc_hosts = etc.join("hosts");
    ops.push(Op::Unsymlink {
        path: cp(&etc_hosts)?,
    });
    ops.push(Op::Touch {
        path: cp(&etc_hosts)?,
    });
    ops.push(mount_bind(&hosts, &etc_hosts, false)?);
    ops.push(remount(
        &etc_hosts,
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
    )?);
    ops.push(remount(
        &dev,
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
    )?);
    ops.push(Op::Chdir { path: cp(root)? });
    ops.push(Op::PivotRoot);
    Ok(ops)
}

/// A mount point directory made fresh: a symbolic link there is removed first.
fn fresh_dir(ops: &mut Vec<Op>, path: &Path) -> Result<(), String> {
    ops.push(Op::Unsymlink { path: cp(path)? });
    ops.push(Op::Mkdir { path: cp(path)? });
    Ok(())
}

/// The masks to mount: hidden directories inside a tree bound from the host (not counting those
/// inside another mask). A hidden path inside a visible path is an error: the visible path was
/// asked for whole.
fn masks(
    hidden: &[PathBuf],
    bound: &[PathBuf],
    shown: &[&Path],
    kind: &dyn Fn(&Path) -> Option<Kind>,
) -> Result<Vec<PathBuf>, String> {
    let mut all = hidden.to_vec();
    all.sort();
    all.dedup();
    let mut out: Vec<PathBuf> = Vec::new();
    for h in all {
        if let Some(v) = shown.iter().find(|v| h.starts_with(v)) {
            return Err(format!(
                "hidden path {} lies inside visible path {}",
                h.display(),
                v.display()
            ));
        }
        if !bound.iter().any(|b| h.starts_with(b)) || out.iter().any(|o| h.starts_with(o)) {
            continue;
        }
        if bound.iter().any(|b| b.starts_with(&h)) {
            return Err(format!(
                "hidden path {} would hide a system directory",
                h.display()
            ));
        }
        match kind(&h) {
            None => continue,
            Some(Kind::Dir) => out.push(h),
            Some(_) => return Err(format!("hidden path {} is not a directory", h.display())),
        }
    }
    Ok(out)
}

fn c(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("path {s:?} contains a NUL byte"))
}

fn cp(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("path {} contains a NUL byte", p.display()))
}

/// A recursive bind made read-only, nosuid and nodev (with every mount below it).
fn bind_ro(ops: &mut Vec<Op>, src: &Path, target: &Path) -> Result<(), String> {
    ops.push(mount_bind(src, target, true)?);
    ops.push(Op::SetAttr {
        target: cp(target)?,
        set: RO,
    });
    Ok(())
}

fn mount_bind(src: &Path, target: &Path, recursive: bool) -> Result<Op, String> {
    let flags = if recursive {
        libc::MS_BIND | libc::MS_REC
    } else {
        libc::MS_BIND
    };
    Ok(Op::Mount {
        source: Some(cp(src)?),
        target: cp(target)?,
        fstype: None,
        flags,
        data: None,
    })
}

fn mount_fs(
    fstype: &str,
    target: &Path,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<Op, String> {
    Ok(Op::Mount {
        source: Some(c(fstype)?),
        target: cp(target)?,
        fstype: Some(c(fstype)?),
        flags,
        data: data.map(c).transpose()?,
    })
}

/// Changes the per-mount flags of a bind or tmpfs mount without touching its superblock.
fn remount(target: &Path, flags: libc::c_ulong) -> Result<Op, String> {
    Ok(Op::Mount {
        source: None,
        target: cp(target)?,
        fstype: None,
        flags: libc::MS_REMOUNT | libc::MS_BIND | flags,
        data: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A merged-usr host: /bin, /lib are links; /usr/local/berth is a data directory.
    fn host(p: &Path) -> Option<Kind> {
        let s = p.to_str()?;
        match s {
            "/bin" => return Some(Kind::Link("usr/bin".into())),
            "/lib" => return Some(Kind::Link("usr/lib".into())),
            "/sbin" | "/lib32" | "/libx32" => return None,
            _ => {}
        }
        if s.starts_with("/dev/") {
            return Some(Kind::Special);
        }
        if s.ends_with(".txt") {
            return Some(Kind::File);
        }
        if s.starts_with("/missing") {
            return None;
        }
        Some(Kind::Dir)
    }

    fn plan(hidden: &[&str], visible: &[&str]) -> Result<Vec<Op>, String> {
        let hidden: Vec<PathBuf> = hidden.iter().map(PathBuf::from).collect();
        let visible: Vec<PathBuf> = visible.iter().map(PathBuf::from).collect();
        let etc_files = vec![("passwd".to_string(), b"root:x:0:0::/:/bin/sh\n".to_vec())];
        let etc = vec![(
            PathBuf::from("/etc/ssl/certs"),
            PathBuf::from("/etc/ssl/certs"),
            Kind::Dir,
        )];
        mount_ops(
            &Inputs {
                rootfs: Path::new("/data/sbx/a/rootfs"),
                etc_files: &etc_files,
                etc: &etc,
                hidden: &hidden,
                visible: &visible,
                writable: &[],
                shm_bytes: 1 << 20,
                tmp_bytes: 2 << 20,
                session_bytes: 3 << 20,
                owner: (1_000_000, 1_000_000),
            },
            &host,
        )
    }

    fn described(ops: &[Op]) -> Vec<String> {
        ops.iter().map(Op::describe).collect()
    }

    fn position(ops: &[String], needle: &str) -> usize {
        ops.iter()
            .position(|o| o == needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {ops:#?}"))
    }

    #[test]
    fn root_is_a_fresh_tmpfs_with_system_dirs_and_links() {
        let ops = plan(&[], &["/data/builds/v1/code"]).unwrap();
        assert!(
            matches!(&ops[0], Op::Mount { flags, .. } if *flags == libc::MS_REC | libc::MS_PRIVATE)
        );
        let d = described(&ops);
        assert_eq!(d[1], "mount tmpfs on /data/sbx/a/rootfs");
        let usr = position(&d, "mount /usr on /data/sbx/a/rootfs/usr");
        assert_eq!(d[usr + 1], "make /data/sbx/a/rootfs/usr read-only");
        assert!(d.contains(&"symlink /data/sbx/a/rootfs/bin".to_string()));
        assert!(d.contains(&"symlink /data/sbx/a/rootfs/lib".to_string()));
        // Nothing of the host root itself is bound.
        assert!(!d.iter().any(|o| o.starts_with("mount / on")));
        assert!(
            !d.iter()
                .any(|o| o.contains("rootfs/home") || o.contains("rootfs/root"))
        );
        // The root is frozen after the last mount point was made, then pivoted into.
        let code = position(
            &d,
            "mount /data/builds/v1/code on /data/sbx/a/rootfs/data/builds/v1/code",
        );
        let freeze = position(&d, "remount /data/sbx/a/rootfs");
        assert!(code < freeze);
        assert_eq!(d.last().map(String::as_str), Some("pivot_root"));
    }

    #[test]
    fn tmp_and_session_are_sized_tmpfs_owned_by_the_agent() {
        let ops = plan(&[], &["/srv/code"]).unwrap();
        let data_of = |target: &str| {
            ops.iter().find_map(|o| match o {
                Op::Mount {
                    target: t,
                    fstype: Some(_),
                    data,
                    ..
                } if t.to_str() == Ok(target) => {
                    data.as_ref().map(|d| d.to_str().unwrap().to_string())
                }
                _ => None,
            })
        };
        assert_eq!(
            data_of("/data/sbx/a/rootfs/tmp").unwrap(),
            format!("mode=1777,size={}", 2 << 20)
        );
        assert_eq!(
            data_of("/data/sbx/a/rootfs/mnt/session").unwrap(),
            format!("mode=0700,uid=1000000,gid=1000000,size={}", 3 << 20)
        );
    }

    #[test]
    fn etc_holds_only_the_given_entries() {
        let d = described(&plan(&[], &["/srv/code"]).unwrap());
        let mkdir = position(&d, "mkdir /data/sbx/a/rootfs/etc");
        let passwd = position(&d, "write /data/sbx/a/rootfs/etc/passwd");
        assert!(mkdir < passwd);
        let ssl = position(&d, "mkdir /data/sbx/a/rootfs/etc/ssl");
        let certs = position(
            &d,
            "mount /etc/ssl/certs on /data/sbx/a/rootfs/etc/ssl/certs",
        );
        assert!(ssl < certs);
        assert!(!d.iter().any(|o| o.starts_with("mount /etc on")));
    }

    #[test]
    fn code_under_tmp_gets_mount_points_in_the_private_tmp() {
        let d = described(&plan(&[], &["/tmp/x/code", "/tmp/x/code/venv"]).unwrap());
        let tmp = position(&d, "mount tmpfs on /data/sbx/a/rootfs/tmp");
        let mkdir = position(&d, "mkdir /data/sbx/a/rootfs/tmp/x");
        assert!(tmp < mkdir);
        // The venv inside the code dir is covered by the code dir's bind.
        assert!(!d.iter().any(|o| o.starts_with("mount /tmp/x/code/venv")));
    }

    #[test]
    fn hidden_paths_are_masked_only_where_a_bind_shows_them() {
        let d = described(&plan(&["/usr/local/berth", "/data"], &["/data/code"]).unwrap());
        assert!(d.contains(&"mount tmpfs on /data/sbx/a/rootfs/usr/local/berth".to_string()));
        // /data is not bound at all: nothing to mask, the code dir inside it is still shown.
        assert!(!d.contains(&"mount tmpfs on /data/sbx/a/rootfs/data".to_string()));
        assert!(d.contains(&"mount /data/code on /data/sbx/a/rootfs/data/code".to_string()));
    }

    #[test]
    fn rejects_conflicts() {
        assert!(plan(&["/data/builds/v1/code/secret"], &["/data/builds/v1/code"]).is_err());
        assert!(plan(&["/usr/file.txt"], &[]).is_err());
        assert!(plan(&["/usr"], &[]).is_err());
        assert!(plan(&[], &["/proc/1"]).is_err());
        assert!(plan(&[], &["/tmp"]).is_err());
        assert!(plan(&[], &["/missing/code"]).is_err());
        assert!(plan(&["/missing/dir"], &[]).is_ok());
    }

    #[test]
    fn visible_file_gets_a_file_mount_point() {
        let ops = plan(&[], &["/data/conf.txt"]).unwrap();
        assert!(ops.iter().any(|o| matches!(o, Op::Touch { path } if path.to_str() == Ok("/data/sbx/a/rootfs/data/conf.txt"))));
    }
}
