//! The uids agents run as: one per sandbox, leased from a range Berth owns.
//!
//! Every sandbox started with [`RunAs::Own`](super::RunAs::Own) gets a uid (and a gid of the same
//! number) that no other live sandbox has. The kernel keys the things one agent could use against
//! another by uid: the user and user-session keyrings, file ownership (a file one agent leaves
//! `0600` in a shared place is another's to read if they share a uid), `kill(2)` and `ptrace(2)`
//! permission, `RLIMIT_NPROC` accounting. Distinct uids make each of these private without giving the
//! agent any privilege.
//!
//! Why not a user namespace per sandbox (agent as root inside, mapped to an unprivileged host uid):
//! it would still need one host uid per sandbox for the same separation, and root inside a user
//! namespace reaches a large amount of kernel code (mounting, network configuration, namespaced
//! capabilities) that the seccomp filter exists to keep agents away from. Plain uids need no
//! id-mapped mounts for the read-only binds either, and cost nothing at start.
//!
//! The range defaults to [`DEFAULT_FIRST_UID`]`..+`[`DEFAULT_UID_COUNT`], far above the uids of
//! normal users; uids and gids named in `/etc/passwd` and `/etc/group` and the subordinate ranges of
//! `/etc/subuid` and `/etc/subgid` (rootless containers) are skipped. Leases are handed out
//! next-fit, so a uid given back is reused only after the whole range has gone round: a uid's
//! previous holder is long gone by then, and its keyrings were unreachable anyway (`keyctl` is denied).
//! A lease is given back only once its sandbox's processes are known to be dead.

use std::collections::HashSet;
use std::fs;
use std::sync::{Mutex, OnceLock};

use super::Error;

/// First uid of the default range.
pub const DEFAULT_FIRST_UID: u32 = 1_000_000;
/// Size of the default range: more sandboxes than one host can hold at once.
pub const DEFAULT_UID_COUNT: u32 = 65_536;

static POOL: OnceLock<Pool> = OnceLock::new();

/// Sets the range sandbox uids are leased from (`count` uids starting at `first`). Must be called
/// before the first sandbox starts; later calls fail.
pub fn configure_uids(first: u32, count: u32) -> Result<(), Error> {
    if first < 1000 || count == 0 || first.checked_add(count).is_none() {
        return Err(Error::InvalidSpec(format!(
            "uid range {first}+{count} must start at 1000 or above, be non-empty and fit in 32 bits"
        )));
    }
    POOL.set(Pool::new(first, count, &host_ids()))
        .map_err(|_| Error::InvalidSpec("the uid range is already in use".into()))
}

/// A uid (and gid of the same number) held by one sandbox; given back on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    uid: u32,
}

impl Lease {
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pool) = POOL.get() {
            pool.release(self.uid);
        }
    }
}

/// Leases a free uid from the configured (or default) range.
pub(crate) fn lease() -> Result<Lease, Error> {
    let pool = POOL.get_or_init(|| Pool::new(DEFAULT_FIRST_UID, DEFAULT_UID_COUNT, &host_ids()));
    pool.take().map(|uid| Lease { uid })
}

/// The uid ranges (first, count) already used on the host.
fn host_ids() -> Vec<(u32, u32)> {
    let mut taken = Vec::new();
    for path in ["/etc/passwd", "/etc/group"] {
        if let Ok(text) = fs::read_to_string(path) {
            taken.extend(
                text.lines()
                    .filter_map(|l| l.split(':').nth(2)?.parse::<u32>().ok())
                    .map(|id| (id, 1)),
            );
        }
    }
    for path in ["/etc/subuid", "/etc/subgid"] {
        if let Ok(text) = fs::read_to_string(path) {
            taken.extend(text.lines().filter_map(|l| {
                let mut f = l.split(':').skip(1);
                Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
            }));
        }
    }
    taken
}

struct Pool {
    first: u32,
    count: u32,
    state: Mutex<State>,
}

struct State {
    /// Offset of the next candidate.
    next: u32,
    used: HashSet<u32>,
    excluded: HashSet<u32>,
}

impl Pool {
    fn new(first: u32, count: u32, taken: &[(u32, u32)]) -> Pool {
        let end = u64::from(first) + u64::from(count);
        let mut excluded = HashSet::new();
        for &(start, n) in taken {
            let lo = u64::from(start).max(u64::from(first));
            let hi = (u64::from(start) + u64::from(n)).min(end);
            // Both bounds lie within the u32 range [first, end) here.
            excluded.extend((lo..hi).filter_map(|id| u32::try_from(id).ok()));
        }
        Pool {
            first,
            count,
            state: Mutex::new(State {
                next: 0,
                used: HashSet::new(),
                excluded,
            }),
        }
    }

    fn take(&self) -> Result<u32, Error> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..self.count {
            let uid = self.first + st.next;
            st.next = (st.next + 1) % self.count;
            if !st.used.contains(&uid) && !st.excluded.contains(&uid) {
                st.used.insert(uid);
                return Ok(uid);
            }
        }
        Err(Error::NoFreeUid {
            first: self.first,
            count: self.count,
        })
    }

    fn release(&self, uid: u32) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.used.remove(&uid);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_distinct_next_fit_and_skip_host_ids() {
        let pool = Pool::new(5000, 4, &[(5001, 1), (4000, 1)]);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        let c = pool.take().unwrap();
        assert_eq!((a, b, c), (5000, 5002, 5003));
        assert!(matches!(pool.take(), Err(Error::NoFreeUid { .. })));
        pool.release(b);
        // Next-fit: the freed uid is found once the cursor comes round to it.
        assert_eq!(pool.take().unwrap(), 5002);
        pool.release(a);
        pool.release(c);
        assert_eq!(pool.take().unwrap(), 5003);
        assert_eq!(pool.take().unwrap(), 5000);
    }

    #[test]
    fn subordinate_ranges_overlapping_the_pool_are_excluded() {
        let pool = Pool::new(100, 10, &[(95, 8)]);
        assert_eq!(pool.take().unwrap(), 103);
    }
}
