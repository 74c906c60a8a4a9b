//! The mount view of a namespaced sandbox, computed in the parent as a list of steps the child runs.
//!
//! View built inside the new mount namespace (nothing propagates back to the host, so the host's mount
//! table never changes):
//!
//! | path | what |
//! | --- | --- |
//! | `/` | the host root, bound recursively, every mount read-only, nosuid, nodev |
//! | `/proc` | a new procfs of the sandbox's PID namespace, `hidepid=2` (only the agent user's processes) |
//! | `/sys` | a new read-only sysfs (shows only the sandbox's network devices; no cgroup tree) |
//! | `/dev` | read-only tmpfs with `null zero full random urandom tty` bound from the host, `fd`/`std*` links, a private `/dev/shm` |
//! | `/run` and every `hidden` path, plus the parent of `work_root` | an empty read-only tmpfs |
//! | `/tmp` | bind of `work_root/tmp` (disk-backed, private, writable) |
//! | `/mnt` | read-only tmpfs holding only `/mnt/session`, a bind of `work_root/storage` (writable, `HOME`) |
//! | `code_dir`, `visible` paths | bound back read-only at their host path when one of the above covers them |
//!
//! Masking with tmpfs and binding the needed paths back was chosen over assembling a fresh root from
//! an allow-list of host directories: the agent's interpreter may live anywhere on the host (a
//! pyenv, a virtualenv in Berth's data directory, /opt), and a read-only host root runs it unchanged,
//! while the few places that hold other tenants' data or host sockets are masked explicitly.
//! `/run` is masked because read-only mounts do not stop `connect(2)` on Unix sockets (the Docker
//! socket, D-Bus) and nothing an agent needs lives there.
//!
//! Mount points that have to be created under `/tmp` (a `code_dir` below the host's `/tmp`) end up as
//! empty root-owned directories in the sandbox's own `work_root/tmp`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::child::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, Op};

/// What a host path is, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    /// A device node, socket or fifo.
    Special,
}

/// Inputs of the mount plan; every path is absolute and canonical (symlinks resolved, so no mount
/// target inside the new root can resolve through an absolute symlink back into the host).
pub(crate) struct Inputs<'a> {
    /// The empty directory the new root is assembled on (`work_root/rootfs`).
    pub(crate) rootfs: &'a Path,
    /// Source of `/tmp`.
    pub(crate) tmp: &'a Path,
    /// Source of `/mnt/session`.
    pub(crate) storage: &'a Path,
    /// Directories to mask.
    pub(crate) hidden: &'a [PathBuf],
    /// Paths to keep visible (the code directory first).
    pub(crate) visible: &'a [PathBuf],
    /// Directories bound read-write at their host path (a build's target environment).
    pub(crate) writable: &'a [PathBuf],
    /// Size of the private `/dev/shm` tmpfs in bytes.
    pub(crate) shm_bytes: u64,
}

const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];
/// Directories replaced wholesale by the plan; hidden or visible paths below them make no sense.
const REPLACED: [&str; 3] = ["/proc", "/sys", "/dev"];
/// Overlays of the plan whose contents are the sandbox's own.
const OVERLAID: [&str; 2] = ["/tmp", "/mnt"];

const TMPFS_SMALL: &str = "mode=755,size=16k,nr_inodes=4096";

/// Builds the steps. `kind` reports what a host path is (`None`: missing); it is a parameter so the
/// plan can be unit-tested without a host.
pub(crate) fn mount_ops(
    inputs: &Inputs<'_>,
    kind: &dyn Fn(&Path) -> Option<Kind>,
) -> Result<Vec<Op>, String> {
    let root = inputs.rootfs;
    let inside = |p: &Path| -> PathBuf { root.join(p.strip_prefix("/").unwrap_or(p)) };
    let mut ops = Vec::new();

    for required in ["/proc", "/sys", "/dev", "/tmp", "/mnt"] {
        if kind(Path::new(required)) != Some(Kind::Dir) {
            return Err(format!("host has no {required} directory to mount over"));
        }
    }

    // Nothing mounted from here on may propagate to the host's namespace.
    ops.push(Op::Mount {
        source: None,
        target: c("/")?,
        fstype: None,
        flags: libc::MS_REC | libc::MS_PRIVATE,
        data: None,
    });
    ops.push(mount_bind(Path::new("/"), root, true)?);
    ops.push(Op::SetAttr {
        target: cp(root)?,
        set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    });

    // /proc and /sys of the new PID and network namespaces.
    ops.push(Op::Detach {
        target: cp(&inside(Path::new("/proc")))?,
    });
    // hidepid=2: processes of other users are invisible, so the agent never sees init (root, a copy
    // of Berth whose command line would otherwise be readable at /proc/1/cmdline).
    ops.push(mount_fs(
        "proc",
        &inside(Path::new("/proc")),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("hidepid=2"),
    )?);
    ops.push(Op::Detach {
        target: cp(&inside(Path::new("/sys")))?,
    });
    ops.push(mount_fs(
        "sysfs",
        &inside(Path::new("/sys")),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )?);

    // A minimal /dev.
    let dev = inside(Path::new("/dev"));
    ops.push(Op::Detach { target: cp(&dev)? });
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
    ops.push(Op::Mkdir {
        path: cp(&dev.join("shm"))?,
    });
    let shm = format!("mode=1777,size={}", inputs.shm_bytes);
    ops.push(mount_fs(
        "tmpfs",
        &dev.join("shm"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(&shm),
    )?);

    // Masks.
    let hidden = effective_hidden(inputs.hidden, inputs.visible, kind)?;
    for h in &hidden {
        ops.push(mount_fs(
            "tmpfs",
            &inside(h),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(TMPFS_SMALL),
        )?);
    }

    // The sandbox's own writable places.
    let tmp = inside(Path::new("/tmp"));
    ops.push(mount_bind(inputs.tmp, &tmp, false)?);
    ops.push(remount(&tmp, libc::MS_NOSUID | libc::MS_NODEV)?);
    let mnt = inside(Path::new("/mnt"));
    let session = mnt.join("session");
    ops.push(mount_fs(
        "tmpfs",
        &mnt,
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(TMPFS_SMALL),
    )?);
    ops.push(Op::Mkdir {
        path: cp(&session)?,
    });
    ops.push(mount_bind(inputs.storage, &session, false)?);
    ops.push(remount(&session, libc::MS_NOSUID | libc::MS_NODEV)?);

    // Visible paths that one of the overlays covers are bound back read-only at their host path.
    let mut overlays: Vec<PathBuf> = hidden.clone();
    overlays.extend(OVERLAID.iter().map(PathBuf::from));
    let mut bound: Vec<&Path> = Vec::new();
    let mut visible: Vec<&PathBuf> = inputs.visible.iter().collect();
    visible.sort();
    for v in visible {
        if bound.iter().any(|b| v.starts_with(b)) {
            continue;
        }
        if REPLACED
            .iter()
            .chain(OVERLAID.iter())
            .any(|r| v.as_path() == Path::new(r))
            || is_under_replaced(v)
        {
            return Err(format!(
                "visible path {} collides with a sandbox mount",
                v.display()
            ));
        }
        let Some(cover) = overlays
            .iter()
            .filter(|o| v.starts_with(o))
            .max_by_key(|o| o.as_os_str().len())
        else {
            continue;
        };
        let what = kind(v).ok_or_else(|| format!("visible path {} does not exist", v.display()))?;
        // Mount points for each level below the covering overlay.
        let rel = v
            .strip_prefix(cover)
            .map_err(|_| "visible path outside its overlay".to_string())?;
        let mut at = cover.clone();
        let components: Vec<_> = rel.components().collect();
        for (i, comp) in components.iter().enumerate() {
            at.push(comp);
            let last = i + 1 == components.len();
            if last && what != Kind::Dir {
                ops.push(Op::Touch {
                    path: cp(&inside(&at))?,
                });
            } else {
                ops.push(Op::Mkdir {
                    path: cp(&inside(&at))?,
                });
            }
        }
        ops.push(mount_bind(v, &inside(v), true)?);
        ops.push(Op::SetAttr {
            target: cp(&inside(v))?,
            set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        });
        bound.push(v);
    }

    // Writable directories are bound at their host path whether or not an overlay covers them: the
    // host root is read-only, so only their own bind makes them writable.
    for w in inputs.writable {
        if is_under_replaced(w)
            || OVERLAID.iter().any(|o| w == Path::new(o))
            || w.starts_with("/mnt/session")
            || w == Path::new("/")
        {
            return Err(format!(
                "writable path {} collides with a sandbox mount",
                w.display()
            ));
        }
        if kind(w) != Some(Kind::Dir) {
            return Err(format!("writable path {} is not a directory", w.display()));
        }
        if let Some(cover) = overlays
            .iter()
            .filter(|o| w.starts_with(o))
            .max_by_key(|o| o.as_os_str().len())
        {
            let rel = w
                .strip_prefix(cover)
                .map_err(|_| "writable path outside its overlay".to_string())?;
            let mut at = cover.clone();
            for comp in rel.components() {
                at.push(comp);
                ops.push(Op::Mkdir {
                    path: cp(&inside(&at))?,
                });
            }
        }
        ops.push(mount_bind(w, &inside(w), false)?);
        ops.push(Op::SetAttr {
            target: cp(&inside(w))?,
            set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        });
    }

    // Freeze the tmpfs overlays now that their mount points exist.
    for t in hidden.iter().map(|h| inside(h)).chain([mnt, dev]) {
        ops.push(remount(
            &t,
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        )?);
    }

    ops.push(Op::Chdir { path: cp(root)? });
    ops.push(Op::PivotRoot);
    Ok(ops)
}

/// The masks actually mounted: `/run` plus the requested ones that exist, minus those covered by
/// another mask or by the plan's own overlays. A mask inside a visible path would be undone by the
/// bind that makes the path visible, so that is an error.
fn effective_hidden(
    requested: &[PathBuf],
    visible: &[PathBuf],
    kind: &dyn Fn(&Path) -> Option<Kind>,
) -> Result<Vec<PathBuf>, String> {
    let mut all: Vec<PathBuf> = requested.to_vec();
    all.push(PathBuf::from("/run"));
    all.sort();
    all.dedup();
    let mut out: Vec<PathBuf> = Vec::new();
    for h in all {
        if is_under_replaced(&h) || OVERLAID.iter().any(|o| h.starts_with(o)) {
            continue;
        }
        if REPLACED.iter().any(|r| Path::new(r).starts_with(&h)) {
            return Err(format!(
                "hidden path {} would hide {}",
                h.display(),
                REPLACED.join(", ")
            ));
        }
        if out.iter().any(|o| h.starts_with(o)) {
            continue;
        }
        match kind(&h) {
            None => continue,
            Some(Kind::Dir) => {}
            Some(_) => return Err(format!("hidden path {} is not a directory", h.display())),
        }
        if let Some(v) = visible.iter().find(|v| h.starts_with(v)) {
            return Err(format!(
                "hidden path {} lies inside visible path {}",
                h.display(),
                v.display()
            ));
        }
        out.push(h);
    }
    Ok(out)
}

fn is_under_replaced(p: &Path) -> bool {
    REPLACED.iter().any(|r| p.starts_with(r))
}

fn c(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("path {s:?} contains a NUL byte"))
}

fn cp(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("path {} contains a NUL byte", p.display()))
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

    fn host(p: &Path) -> Option<Kind> {
        let s = p.to_str()?;
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
        mount_ops(
            &Inputs {
                rootfs: Path::new("/data/sbx/a/rootfs"),
                tmp: Path::new("/data/sbx/a/tmp"),
                storage: Path::new("/data/sbx/a/storage"),
                hidden: &hidden,
                visible: &visible,
                writable: &[],
                shm_bytes: 1 << 20,
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
    fn hides_data_dir_and_binds_code_back_before_freezing() {
        let ops = described(&plan(&["/data", "/data/sbx"], &["/data/builds/v1/code"]).unwrap());
        let mask = position(&ops, "mount tmpfs on /data/sbx/a/rootfs/data");
        let mkdir = position(&ops, "mkdir /data/sbx/a/rootfs/data/builds");
        let bind = position(
            &ops,
            "mount /data/builds/v1/code on /data/sbx/a/rootfs/data/builds/v1/code",
        );
        let freeze = position(&ops, "remount /data/sbx/a/rootfs/data");
        assert!(mask < mkdir && mkdir < bind && bind < freeze);
        // The nested mask is redundant and dropped; /run is always masked.
        assert!(
            !ops.iter()
                .any(|o| o == "mount tmpfs on /data/sbx/a/rootfs/data/sbx")
        );
        assert!(ops.contains(&"mount tmpfs on /data/sbx/a/rootfs/run".to_string()));
        assert_eq!(ops.last().map(String::as_str), Some("pivot_root"));
    }

    #[test]
    fn first_steps_make_everything_private_and_read_only() {
        let ops = plan(&[], &["/srv/code"]).unwrap();
        assert!(
            matches!(&ops[0], Op::Mount { flags, .. } if *flags == libc::MS_REC | libc::MS_PRIVATE)
        );
        assert!(matches!(&ops[2], Op::SetAttr { set, .. } if set & MOUNT_ATTR_RDONLY != 0));
        // /srv/code is not covered by any overlay: already visible read-only, no bind needed.
        assert!(
            !described(&ops)
                .iter()
                .any(|o| o.starts_with("mount /srv/code"))
        );
    }

    #[test]
    fn code_under_tmp_gets_mount_points_in_the_private_tmp() {
        let ops = described(&plan(&[], &["/tmp/x/code", "/tmp/x/code/venv"]).unwrap());
        let tmp = position(&ops, "mount /data/sbx/a/tmp on /data/sbx/a/rootfs/tmp");
        let mkdir = position(&ops, "mkdir /data/sbx/a/rootfs/tmp/x");
        assert!(tmp < mkdir);
        // The venv inside the code dir is covered by the code dir's bind.
        assert!(!ops.iter().any(|o| o.starts_with("mount /tmp/x/code/venv")));
    }

    #[test]
    fn rejects_conflicts() {
        assert!(plan(&["/data/builds/v1/code/secret"], &["/data/builds/v1/code"]).is_err());
        assert!(plan(&["/data/file.txt"], &[]).is_err());
        assert!(plan(&[], &["/proc/1"]).is_err());
        assert!(plan(&["/dev/shm"], &[]).is_ok());
        assert!(plan(&["/missing/dir"], &[]).is_ok());
    }

    #[test]
    fn visible_file_gets_a_file_mount_point() {
        let ops = plan(&["/data"], &["/data/conf.txt"]).unwrap();
        assert!(ops.iter().any(|o| matches!(o, Op::Touch { path } if path.to_str() == Ok("/data/sbx/a/rootfs/data/conf.txt"))));
    }
}
