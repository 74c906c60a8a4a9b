//! User namespaces that only describe an id mapping, for idmapped mounts (`mount_setattr(2)` with
//! `MOUNT_ATTR_IDMAP`): an image's layers are shared by every session of every version using
//! them, with the owners the image gave its files, while each agent runs as a uid of its own. An
//! idmapped view of the layers shows the image user's files as owned by the agent's uid (so its
//! home and working files are its own, as under a container runtime), root's as root's, and any
//! other owner as the overflow id. No process ever runs in such a namespace.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::error::Error;

/// One line of a `uid_map` or `gid_map`: `count` ids from `inside` (the ids files have on disk)
/// shown as `outside` (the ids the agent sees) through the idmapped mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) inside: u32,
    pub(crate) outside: u32,
    pub(crate) count: u32,
}

fn map_text(ranges: &[Range]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
        .collect()
}

/// A user namespace with these mappings, as a descriptor (`/proc/<pid>/ns/user` of a short-lived
/// child that created it). Needs root (`CAP_SETUID`/`CAP_SETGID` for arbitrary mappings).
pub(crate) fn userns(uids: &[Range], gids: &[Range]) -> Result<OwnedFd, Error> {
    let io_err = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| Error::io(format!("idmap namespace: {what}"), e)
    };
    let (ready_r, ready_w) = pipe().map_err(io_err("pipe"))?;
    let (go_r, go_w) = pipe().map_err(io_err("pipe"))?;
    // SAFETY: the child only makes system calls (unshare, write, read, _exit), all
    // async-signal-safe, so forking a multi-threaded process is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io_err("fork")(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: as above; the descriptors are the pipes made before the fork.
        unsafe {
            // Only the parent's copy of the go pipe's write end may keep it open.
            libc::close(go_w.as_raw_fd());
            libc::close(ready_r.as_raw_fd());
            let ok: u8 = u8::from(libc::unshare(libc::CLONE_NEWUSER) == 0);
            libc::write(ready_w.as_raw_fd(), (&ok as *const u8).cast(), 1);
            let mut b = 0u8;
            libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(go_r);
    let result = (|| {
        let mut ok = 0u8;
        // SAFETY: reading one byte into a local.
        let n = unsafe { libc::read(ready_r.as_raw_fd(), (&mut ok as *mut u8).cast(), 1) };
        if n != 1 || ok != 1 {
            return Err(Error::Unsupported(
                "cannot create a user namespace for idmapped image layers".into(),
            ));
        }
        let proc = format!("/proc/{pid}");
        fs::write(format!("{proc}/uid_map"), map_text(uids)).map_err(io_err("write uid_map"))?;
        fs::write(format!("{proc}/gid_map"), map_text(gids)).map_err(io_err("write gid_map"))?;
        let ns = fs::File::open(format!("{proc}/ns/user")).map_err(io_err("open ns/user"))?;
        Ok(OwnedFd::from(ns))
    })();
    // The child exits once the go pipe closes; the namespace lives on through the descriptor.
    drop(go_w);
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two new descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The mappings that show an image user's files (`image`: uid, gid) as the agent's (`agent`),
/// root's as root's. `None` when there is nothing to map (the image runs as root, whose files
/// stay root's and are never the agent's).
pub(crate) fn image_user_maps(
    image: (u32, u32),
    agent: (u32, u32),
) -> Option<(Vec<Range>, Vec<Range>)> {
    let (uid, gid) = image;
    if uid == 0 {
        return None;
    }
    let root = Range {
        inside: 0,
        outside: 0,
        count: 1,
    };
    let uids = vec![
        root,
        Range {
            inside: uid,
            outside: agent.0,
            count: 1,
        },
    ];
    let mut gids = vec![root];
    if gid != 0 {
        gids.push(Range {
            inside: gid,
            outside: agent.1,
            count: 1,
        });
    }
    Some((uids, gids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_show_the_image_user_as_the_agent_and_root_as_root() {
        let (uids, gids) = image_user_maps((1000, 1000), (70123, 70123)).expect("maps");
        assert_eq!(map_text(&uids), "0 0 1\n1000 70123 1\n");
        assert_eq!(map_text(&gids), "0 0 1\n1000 70123 1\n");
        let (_, gids) = image_user_maps((1000, 0), (70123, 70123)).expect("maps");
        assert_eq!(map_text(&gids), "0 0 1\n");
        assert!(image_user_maps((0, 0), (70123, 70123)).is_none());
    }
}
