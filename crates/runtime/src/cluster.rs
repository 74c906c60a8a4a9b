//! Several Berth nodes serving one installation: this node's membership, where a session runs,
//! and which node runs each background job.
//!
//! Every node registers in the shared store with the address the others reach it at, and
//! renews a lease every third of [`ClusterOptions::lease`]. A session belongs to the node that
//! claimed it ([`NodeStore::claim_session`]) for as long as that node is alive; a call arriving
//! at another node is forwarded there (the server's `cluster_api`), and a dead node's sessions
//! are claimed afresh by whichever node their next call reaches. Background jobs that must run
//! once per installation run under a lease ([`Cluster::singleton`]).
//!
//! A node started without an advertised address is standalone: it claims nothing, holds every
//! lease, and touches the store for none of this, so one node pays nothing for the feature.

use berth_control::Leases;
use berth_store::nodes::{Claim, NodeRow, NodeStore};
use berth_types::{EpochMillis, duration_millis, now_millis};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The header a forwarding node sets: `<node id>:<hex HMAC>` over the request's authorization.
pub const FORWARDED_HEADER: &str = "x-berth-forwarded-by";

/// How long a node trusts what it read about another node owning a session. A session moves
/// only when its owner dies (forwarding then fails and the entry is dropped) or drains (the
/// stale entry sends a call to the old owner, which answers it unavailable, for at most this).
const OWNER_TTL: Duration = Duration::from_secs(1);
/// Entries kept before expired ones are swept.
const OWNERS_SWEEP_FROM: usize = 10_000;

/// How this node takes part.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// This node's id (its data dir's instance id).
    pub node_id: String,
    /// Where other nodes reach this node (`http://host:port`); `None`: standalone.
    pub advertise: Option<String>,
    /// How long a node is taken as alive after its last renewal.
    pub lease: Duration,
}

/// Where a session's call is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Here: this node owns the session now.
    Here,
    /// On another node, alive, which owns it (or takes it from a draining node).
    Elsewhere(NodeRow),
}

/// This node's membership. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    store: Option<Arc<dyn NodeStore>>,
    /// Owners of sessions other nodes run, as last read, so a forwarded call's placement reads
    /// the store once per [`OWNER_TTL`] and session rather than per call.
    owners: Mutex<HashMap<(String, String), (NodeRow, Instant)>>,
    options: ClusterOptions,
    /// Set from the store on each renewal (an operator drains through any node).
    draining: AtomicBool,
    /// Signs forwarded calls; every node derives the same key from the root secret.
    key: Vec<u8>,
    /// The leases this node's background jobs run under.
    leases: Leases,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A standalone node: every session is placed here and every lease is held.
    pub fn standalone(node_id: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: None,
                owners: Mutex::default(),
                options: ClusterOptions {
                    node_id: node_id.to_owned(),
                    advertise: None,
                    lease: Duration::from_secs(10),
                },
                draining: AtomicBool::new(false),
                key: Vec::new(),
                leases: Leases::standalone(),
            }),
        }
    }

    /// Joins the installation: registers this node and renews its lease until `shutdown`, then
    /// leaves (its sessions and leases released at once). Standalone without `advertise`.
    pub async fn join(
        store: Arc<dyn NodeStore>,
        options: ClusterOptions,
        key: Vec<u8>,
        shutdown: CancellationToken,
    ) -> Result<Self, berth_store::Error> {
        let Some(address) = options.advertise.clone() else {
            return Ok(Self::standalone(&options.node_id));
        };
        let now = now_millis();
        store
            .register_node(&NodeRow {
                id: options.node_id.clone(),
                address: address.clone(),
                started_at: now,
                seen_at: now,
                lease_until: now + duration_millis(options.lease),
                draining: false,
            })
            .await?;
        info!(node_id = %options.node_id, %address, "joined the installation");
        let leases = Leases::shared(store.clone(), &options.node_id, options.lease);
        let this = Self {
            inner: Arc::new(Inner {
                leases,
                store: Some(store),
                owners: Mutex::default(),
                options,
                draining: AtomicBool::new(false),
                key,
            }),
        };
        tokio::spawn(this.clone().renew(shutdown));
        Ok(this)
    }

    async fn renew(self, shutdown: CancellationToken) {
        let Some(store) = &self.inner.store else {
            return;
        };
        let every = self.inner.options.lease / 3;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
            let now = now_millis();
            match store
                .renew_node(
                    self.id(),
                    now,
                    now + duration_millis(self.inner.options.lease),
                )
                .await
            {
                Ok(Some(row)) => self.inner.draining.store(row.draining, Ordering::Relaxed),
                Ok(None) => {
                    warn!("this node's row is gone from the store; sessions are not claimed")
                }
                Err(e) => warn!(error = %e, "cannot renew this node's lease"),
            }
        }
        if let Err(e) = store.leave(self.id(), now_millis()).await {
            warn!(error = %e, "cannot leave the installation cleanly; the lease will lapse");
        }
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.inner.options.node_id
    }

    /// True when this node serves alone.
    pub fn is_standalone(&self) -> bool {
        self.inner.store.is_none()
    }

    /// True when this node takes no new sessions.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Sets this node's draining flag here and in the store.
    pub async fn set_draining(&self, draining: bool) -> Result<(), berth_store::Error> {
        if let Some(store) = &self.inner.store {
            store.set_draining(self.id(), draining).await?;
        }
        self.inner.draining.store(draining, Ordering::Relaxed);
        Ok(())
    }

    /// Where a session with no live agent on this node is served: here (claimed), or on the
    /// node that owns it. A draining node hands a session it would start to another node, which
    /// claims it as any other (the drained node released its own claim first).
    /// `forwarded`: another node sent the call here believing this node owns it; it is never
    /// sent on, so the caller answers it unavailable if another node owns it after all.
    pub async fn place(
        &self,
        runtime_id: &str,
        session_id: &str,
        forwarded: bool,
    ) -> Result<Placement, berth_store::Error> {
        let Some(store) = &self.inner.store else {
            return Ok(Placement::Here);
        };
        let key = (runtime_id.to_owned(), session_id.to_owned());
        if !forwarded && let Some(node) = self.cached_owner(&key) {
            return Ok(Placement::Elsewhere(node));
        }
        let now = now_millis();
        if self.draining()
            && !forwarded
            && let Some(other) = self.successor(now).await?
        {
            store
                .release_session(runtime_id, session_id, self.id())
                .await?;
            return Ok(Placement::Elsewhere(other));
        }
        match store
            .claim_session(runtime_id, session_id, self.id(), now, false)
            .await?
        {
            Claim::Mine => Ok(Placement::Here),
            Claim::Owner(node) => {
                self.remember_owner(key, node.clone());
                Ok(Placement::Elsewhere(node))
            }
        }
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), (NodeRow, Instant)>> {
        self.inner
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn cached_owner(&self, key: &(String, String)) -> Option<NodeRow> {
        self.owners()
            .get(key)
            .filter(|(_, at)| at.elapsed() < OWNER_TTL)
            .map(|(n, _)| n.clone())
    }

    fn remember_owner(&self, key: (String, String), node: NodeRow) {
        let mut owners = self.owners();
        if owners.len() >= OWNERS_SWEEP_FROM {
            owners.retain(|_, (_, at)| at.elapsed() < OWNER_TTL);
        }
        owners.insert(key, (node, Instant::now()));
    }

    /// Forgets what this node read about who runs a session (forwarding to that node failed).
    pub fn forget_owner(&self, runtime_id: &str, session_id: &str) {
        self.owners()
            .remove(&(runtime_id.to_owned(), session_id.to_owned()));
    }

    /// Another alive node taking new sessions, chosen by id after this one's.
    async fn successor(&self, now: EpochMillis) -> Result<Option<NodeRow>, berth_store::Error> {
        let Some(store) = &self.inner.store else {
            return Ok(None);
        };
        let nodes: Vec<_> = store
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.alive(now) && !n.draining && n.id != self.id())
            .collect();
        Ok(nodes
            .iter()
            .find(|n| n.id.as_str() > self.id())
            .or(nodes.first())
            .cloned())
    }

    /// The node owning a session, when it is another alive node.
    pub async fn owner(
        &self,
        runtime_id: &str,
        session_id: &str,
    ) -> Result<Option<NodeRow>, berth_store::Error> {
        let Some(store) = &self.inner.store else {
            return Ok(None);
        };
        let now = now_millis();
        Ok(store
            .session_owner(runtime_id, session_id)
            .await?
            .filter(|n| n.id != self.id() && n.alive(now)))
    }

    /// Forgets this node's ownership of a session that ended here.
    pub async fn release(&self, runtime_id: &str, session_id: &str) {
        if let Some(store) = &self.inner.store
            && let Err(e) = store
                .release_session(runtime_id, session_id, self.id())
                .await
        {
            warn!(error = %e, "cannot release a session's ownership; it lapses with this node");
        }
    }

    /// The value of [`FORWARDED_HEADER`] for a call this node forwards, bound to the call's
    /// `Authorization` header (so it is good for that request only).
    pub fn forward_proof(&self, authorization: &[u8]) -> String {
        format!(
            "{}:{}",
            self.id(),
            hex::encode(self.mac(self.id(), authorization))
        )
    }

    /// True when `proof` was made by a node of this installation for a call with this
    /// `Authorization` header.
    pub fn verify_forward(&self, proof: &str, authorization: &[u8]) -> bool {
        if self.is_standalone() {
            return false;
        }
        let Some((node, mac)) = proof.split_once(':') else {
            return false;
        };
        let Ok(mac) = hex::decode(mac) else {
            return false;
        };
        self.hmac(node, authorization).verify_slice(&mac).is_ok()
    }

    fn hmac(&self, node: &str, authorization: &[u8]) -> Hmac<Sha256> {
        // Any key length is accepted by HMAC.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.inner.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(node.as_bytes());
        m.update(&[0]);
        m.update(authorization);
        m
    }

    fn mac(&self, node: &str, authorization: &[u8]) -> Vec<u8> {
        self.hmac(node, authorization)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// The job leases of this node (standalone: every lease held).
    pub fn leases(&self) -> Leases {
        self.inner.leases.clone()
    }

    /// Runs `job` while this node holds the lease `name`: waits for the lease, runs the job with
    /// a token cancelled when the lease is lost or at `shutdown`, and tries again after. A
    /// standalone node runs it at once until `shutdown`.
    pub fn singleton<F, Fut>(&self, name: &'static str, shutdown: CancellationToken, job: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let leases = self.leases();
        tokio::spawn(async move {
            let (job, stop) = (&job, &shutdown);
            while !shutdown.is_cancelled() {
                let ran = leases
                    .run(name, |lost| async move {
                        info!(job = name, "running a job of the installation on this node");
                        let token = stop.child_token();
                        let run = job(token.clone());
                        tokio::pin!(run);
                        tokio::select! {
                            _ = &mut run => return,
                            _ = lost.cancelled() => token.cancel(),
                        }
                        run.await
                    })
                    .await;
                if ran.is_none() || !shutdown.is_cancelled() {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(leases.retry_every()) => {}
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn NodeStore> {
        berth_store::open_all(&format!("sqlite://{}", dir.path().join("b.db").display()))
            .await
            .unwrap()
            .nodes
    }

    fn opts(id: &str) -> ClusterOptions {
        ClusterOptions {
            node_id: id.into(),
            advertise: Some(format!("http://{id}.test:1")),
            lease: Duration::from_secs(30),
        }
    }

    #[tokio::test]
    async fn a_session_is_placed_on_its_owner_and_a_draining_node_hands_new_ones_on() {
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let a = Cluster::join(store(&dir).await, opts("a"), b"k".to_vec(), stop.clone())
            .await
            .unwrap();
        let b = Cluster::join(store(&dir).await, opts("b"), b"k".to_vec(), stop.clone())
            .await
            .unwrap();
        assert_eq!(a.place("rt", "s1", false).await.unwrap(), Placement::Here);
        match b.place("rt", "s1", false).await.unwrap() {
            Placement::Elsewhere(n) => assert_eq!(n.id, "a"),
            Placement::Here => panic!("b took a's session"),
        }
        assert_eq!(b.owner("rt", "s1").await.unwrap().unwrap().id, "a");
        assert_eq!(a.owner("rt", "s1").await.unwrap(), None);
        // a drains: a session it would start goes to b, which runs it when forwarded.
        a.set_draining(true).await.unwrap();
        match a.place("rt", "s2", false).await.unwrap() {
            Placement::Elsewhere(n) => assert_eq!(n.id, "b"),
            Placement::Here => panic!("a draining node started a session"),
        }
        assert_eq!(b.place("rt", "s2", true).await.unwrap(), Placement::Here);
        // A call forwarded to a node that does not own the session is not taken over.
        assert!(
            matches!(b.place("rt", "s1", true).await.unwrap(), Placement::Elsewhere(n) if n.id == "a")
        );
        // A live session of a is still a's.
        assert!(
            matches!(b.place("rt", "s1", false).await.unwrap(), Placement::Elsewhere(n) if n.id == "a")
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_forward_proof_is_bound_to_its_request_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let join = |id: &'static str, key: &'static [u8]| {
            let (dir, stop) = (&dir, stop.clone());
            async move {
                Cluster::join(store(dir).await, opts(id), key.to_vec(), stop)
                    .await
                    .unwrap()
            }
        };
        let (a, b, stranger) = (
            join("a", b"k").await,
            join("b", b"k").await,
            join("c", b"other").await,
        );
        let auth = b"AWS4-HMAC-SHA256 Credential=x, Signature=1";
        let proof = a.forward_proof(auth);
        assert!(b.verify_forward(&proof, auth));
        assert!(!b.verify_forward(&proof, b"AWS4-HMAC-SHA256 Credential=x, Signature=2"));
        assert!(!stranger.verify_forward(&proof, auth));
        assert!(!b.verify_forward(&proof.replacen("a:", "b:", 1), auth));
        assert!(!b.verify_forward("a:zz", auth));
        // A standalone node accepts no forwarded call at all.
        assert!(!Cluster::standalone("d").verify_forward(&proof, auth));
        stop.cancel();
    }
}
