//! Admission of new sandboxes: caps on how many a runtime and the whole host may hold at once
//! (sessions and warm pools alike), and on how fast new sessions may be opened.
//!
//! The caps are counted in [`Slot`]s: one per sandbox from the moment its start is decided until
//! it is destroyed, so a sandbox being started already counts and two racing opens cannot both
//! take the last place. Rates are token buckets refilled continuously.
//!
//! Architecture Invariant: every sandbox Berth starts for a runtime holds a slot; a warm pool
//! refill that cannot get one stops instead of pushing past a cap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Limits on sandboxes and on new sessions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quotas {
    /// Sandboxes (live sessions and warm ones) one runtime may hold.
    pub runtime_live: usize,
    /// Sandboxes the whole server may hold.
    pub host_live: usize,
    /// New sessions per second one runtime may open (burst: twice that, at least one).
    pub runtime_rate: f64,
    /// New sessions per second the whole server may open.
    pub host_rate: f64,
}

impl Quotas {
    /// Defaults derived from the host's memory and the per-session memory limit: four times as
    /// many sandboxes as would fit if each used its whole limit (most use a fraction; the
    /// parent cgroup's limit is what keeps the sum off the host), at least 16; a runtime may take
    /// half of them, at least 8.
    pub fn for_host(host_memory_bytes: u64, session_memory_bytes: Option<u64>) -> Self {
        let per = session_memory_bytes.unwrap_or(2 << 30).max(64 << 20);
        let host_live = ((host_memory_bytes / per) as usize * 4).max(16);
        Self {
            runtime_live: (host_live / 2).max(8),
            host_live,
            runtime_rate: 20.0,
            host_rate: 50.0,
        }
    }
}

/// Why a new sandbox was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A cap on live sandboxes: `ServiceQuotaExceededException`.
    #[error("{0}")]
    Live(String),
    /// A rate: `ThrottlingException`.
    #[error("{0}")]
    Rate(String),
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64) -> Self {
        Self {
            tokens: burst(rate),
            at: Instant::now(),
        }
    }

    /// Refills to `now`, then reports whether a token is there (without taking it).
    fn ready(&mut self, rate: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst(rate));
        self.at = now;
        self.tokens >= 1.0
    }
}

fn burst(rate: f64) -> f64 {
    (rate * 2.0).max(1.0)
}

#[derive(Debug)]
struct State {
    live: HashMap<String, usize>,
    total: usize,
    buckets: HashMap<String, Bucket>,
    host_bucket: Bucket,
}

/// The admission state of one server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    quotas: Quotas,
    state: Arc<Mutex<State>>,
}

impl Admission {
    /// Admission under `quotas`.
    pub fn new(quotas: Quotas) -> Self {
        Self {
            quotas,
            state: Arc::new(Mutex::new(State {
                live: HashMap::new(),
                total: 0,
                buckets: HashMap::new(),
                host_bucket: Bucket::full(quotas.host_rate),
            })),
        }
    }

    /// The limits in force.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters updated in single statements; a panic elsewhere cannot
        // leave it half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a sandbox of `runtime_id`, if both caps leave room.
    pub fn reserve(&self, runtime_id: &str) -> Result<Slot, Refusal> {
        let mut st = self.lock();
        let held = st.live.get(runtime_id).copied().unwrap_or(0);
        if held >= self.quotas.runtime_live {
            return Err(Refusal::Live(format!(
                "runtime {runtime_id} already holds {held} sessions, its quota"
            )));
        }
        if st.total >= self.quotas.host_live {
            return Err(Refusal::Live(format!(
                "the server already holds {} sessions, its quota",
                st.total
            )));
        }
        *st.live.entry(runtime_id.to_owned()).or_default() += 1;
        st.total += 1;
        Ok(Slot {
            admission: self.clone(),
            runtime_id: runtime_id.to_owned(),
            released: AtomicBool::new(false),
        })
    }

    /// Takes one new-session token of `runtime_id` and of the host, or neither.
    pub fn admit_new_session(&self, runtime_id: &str) -> Result<(), Refusal> {
        let now = Instant::now();
        let q = self.quotas;
        let mut st = self.lock();
        let st = &mut *st;
        let bucket = st
            .buckets
            .entry(runtime_id.to_owned())
            .or_insert_with(|| Bucket::full(q.runtime_rate));
        if !bucket.ready(q.runtime_rate, now) {
            return Err(Refusal::Rate(format!(
                "runtime {runtime_id} is opening sessions faster than {} per second",
                q.runtime_rate
            )));
        }
        if !st.host_bucket.ready(q.host_rate, now) {
            return Err(Refusal::Rate(format!(
                "the server is opening sessions faster than {} per second",
                q.host_rate
            )));
        }
        bucket.tokens -= 1.0;
        st.host_bucket.tokens -= 1.0;
        // Buckets of runtimes that went quiet are full again and carry no state worth keeping.
        if st.buckets.len() > 1024 {
            let r = q.runtime_rate;
            st.buckets.retain(|_, b| {
                b.ready(r, now);
                b.tokens < burst(r)
            });
        }
        Ok(())
    }

    /// Sandboxes held by `runtime_id` (or by everyone).
    pub fn held(&self, runtime_id: Option<&str>) -> usize {
        let st = self.lock();
        match runtime_id {
            Some(r) => st.live.get(r).copied().unwrap_or(0),
            None => st.total,
        }
    }

    fn release(&self, runtime_id: &str) {
        let mut st = self.lock();
        if let Some(n) = st.live.get_mut(runtime_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.live.remove(runtime_id);
            }
        }
        st.total = st.total.saturating_sub(1);
    }
}

/// One sandbox's place under the caps; given back once, by [`Slot::release`] or on drop.
#[derive(Debug)]
pub struct Slot {
    admission: Admission,
    runtime_id: String,
    released: AtomicBool,
}

impl Slot {
    /// Gives the place back (idempotent): called when the sandbox is destroyed, which may be
    /// long before the last reference to its session goes away.
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.admission.release(&self.runtime_id);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn quotas(runtime_live: usize, host_live: usize) -> Quotas {
        Quotas {
            runtime_live,
            host_live,
            runtime_rate: 1000.0,
            host_rate: 1000.0,
        }
    }

    #[test]
    fn live_caps_per_runtime_and_host() {
        let a = Admission::new(quotas(2, 3));
        let s1 = a.reserve("r").unwrap();
        let _s2 = a.reserve("r").unwrap();
        assert!(matches!(a.reserve("r"), Err(Refusal::Live(_))));
        let _t1 = a.reserve("t").unwrap();
        assert!(matches!(a.reserve("t"), Err(Refusal::Live(_))), "host cap");
        s1.release();
        s1.release();
        assert_eq!(a.held(None), 2);
        assert_eq!(a.held(Some("r")), 1);
        drop(s1);
        assert_eq!(a.held(None), 2, "a released slot is not given back twice");
        let _s3 = a.reserve("r").unwrap();
    }

    #[test]
    fn rates_refuse_past_the_burst() {
        let a = Admission::new(Quotas {
            runtime_live: 100,
            host_live: 100,
            runtime_rate: 0.001,
            host_rate: 1000.0,
        });
        // Burst of one at this rate: the second opening within the same instant is refused.
        a.admit_new_session("r").unwrap();
        assert!(matches!(a.admit_new_session("r"), Err(Refusal::Rate(_))));
        a.admit_new_session("other").unwrap();
        let h = Admission::new(Quotas {
            host_rate: 0.001,
            ..a.quotas()
        });
        h.admit_new_session("x").unwrap();
        assert!(matches!(h.admit_new_session("y"), Err(Refusal::Rate(_))));
    }

    #[test]
    fn defaults_follow_host_memory() {
        let q = Quotas::for_host(24 << 30, Some(2 << 30));
        assert_eq!(q.host_live, 48);
        assert_eq!(q.runtime_live, 24);
        assert_eq!(Quotas::for_host(1 << 30, Some(2 << 30)).host_live, 16);
    }
}
