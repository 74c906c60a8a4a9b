//! Background jobs that must run once per installation, however many nodes share its store: a
//! build, a runtime's teardown, a batch evaluation, the rollout controller. Each runs under a
//! named lease in the store ([`NodeStore::acquire_lease`]), renewed while it runs; a node that
//! dies stops renewing, and whichever node next finds the job unfinished takes the lease and
//! runs it again.
//!
//! A standalone node (no store leases) still keeps one run per job name within the process, so
//! a job found unfinished while it is already running here is not started twice.

use berth_store::nodes::NodeStore;
use berth_types::{duration_millis, now_millis};
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// This node's hold on job leases. Cheap to clone.
#[derive(Clone)]
pub struct Leases {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: standalone, every lease is this node's.
    store: Option<Arc<dyn NodeStore>>,
    holder: String,
    lease: Duration,
    /// Jobs running in this process.
    running: Mutex<HashSet<String>>,
}

impl Default for Leases {
    fn default() -> Self {
        Self::standalone()
    }
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("holder", &self.inner.holder)
            .field("shared", &self.inner.store.is_some())
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// A node serving alone: every lease is held.
    pub fn standalone() -> Self {
        Self::build(None, String::new(), Duration::from_secs(10))
    }

    /// Leases held as `holder` in `store`, each granted for `lease` and renewed every third of it.
    pub fn shared(store: Arc<dyn NodeStore>, holder: &str, lease: Duration) -> Self {
        Self::build(Some(store), holder.to_owned(), lease)
    }

    fn build(store: Option<Arc<dyn NodeStore>>, holder: String, lease: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                holder,
                lease,
                running: Mutex::default(),
            }),
        }
    }

    /// How often a waiting node tries again for a lease someone else holds.
    pub fn retry_every(&self) -> Duration {
        self.inner.lease / 3
    }

    /// Runs `job` if no one else runs the job `name`: takes the lease, renews it while the job
    /// runs, cancels the job's token if the lease is lost (then waits for the job to stop), and
    /// gives the lease up after. `None` when another node holds the lease, the job already runs
    /// in this process, or the store could not be asked (the job is found again later).
    pub async fn run<F, Fut>(&self, name: &str, job: F) -> Option<Fut::Output>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future,
    {
        let _running = Running::enter(&self.inner, name)?;
        let Some(store) = &self.inner.store else {
            return Some(job(CancellationToken::new()).await);
        };
        if !self.acquire(store.as_ref(), name).await {
            return None;
        }
        let token = CancellationToken::new();
        let run = job(token.clone());
        tokio::pin!(run);
        let out = loop {
            tokio::select! {
                out = &mut run => break out,
                _ = tokio::time::sleep(self.retry_every()) => {}
            }
            if !self.acquire(store.as_ref(), name).await {
                warn!(job = name, "lost a job's lease; stopping it here");
                token.cancel();
                run.await;
                return None;
            }
        };
        if let Err(e) = store.release_lease(name, &self.inner.holder).await {
            warn!(job = name, error = %e, "giving up a job's lease failed; it lapses on its own");
        }
        Some(out)
    }

    async fn acquire(&self, store: &dyn NodeStore, name: &str) -> bool {
        let now = now_millis();
        let until = now + duration_millis(self.inner.lease);
        store
            .acquire_lease(name, &self.inner.holder, now, until)
            .await
            .unwrap_or_else(|e| {
                warn!(job = name, error = %e, "cannot take a job's lease");
                false
            })
    }
}

/// A job's entry in [`Inner::running`], removed when dropped.
struct Running<'a> {
    inner: &'a Inner,
    name: String,
}

impl<'a> Running<'a> {
    fn enter(inner: &'a Inner, name: &str) -> Option<Self> {
        let mut running = inner.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.insert(name.to_owned()).then(|| Self {
            inner,
            name: name.to_owned(),
        })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.name);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn NodeStore> {
        berth_store::open_all(&format!("sqlite://{}", dir.path().join("b.db").display()))
            .await
            .unwrap()
            .nodes
    }

    #[tokio::test]
    async fn a_job_runs_on_one_node_at_a_time_and_once_per_process() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let a = Leases::shared(store.clone(), "node-a", Duration::from_secs(30));
        let b = Leases::shared(store.clone(), "node-b", Duration::from_secs(30));
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let a = a.clone();
            async move {
                a.run("build/x/1", |_| async move {
                    started_tx.send(()).unwrap();
                    finish_rx.await.unwrap();
                    7
                })
                .await
            }
        });
        started_rx.await.unwrap();
        // Held by node a: neither node b nor a second run on node a starts it.
        assert_eq!(b.run("build/x/1", |_| async { 1 }).await, None);
        assert_eq!(a.run("build/x/1", |_| async { 2 }).await, None);
        // Another job is free.
        assert_eq!(b.run("build/x/2", |_| async { 3 }).await, Some(3));
        finish_tx.send(()).unwrap();
        assert_eq!(running.await.unwrap(), Some(7));
        // Given up when done: the next node takes it at once.
        assert_eq!(b.run("build/x/1", |_| async { 4 }).await, Some(4));
        // Standalone: one run per name in the process, and no store.
        let alone = Leases::standalone();
        assert_eq!(alone.run("j", |_| async { 5 }).await, Some(5));
    }

    #[tokio::test]
    async fn a_lapsed_lease_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        // A node that died holding the lease (granted until a moment ago).
        let now = now_millis();
        assert!(
            store
                .acquire_lease("batch/b", "dead", now - 10, now - 1)
                .await
                .unwrap()
        );
        let b = Leases::shared(store.clone(), "node-b", Duration::from_secs(30));
        assert_eq!(b.run("batch/b", |_| async { "ran" }).await, Some("ran"));
    }
}
