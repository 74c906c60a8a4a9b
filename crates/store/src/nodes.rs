//! Several Berth nodes over one shared database: which nodes run, which node owns each session,
//! and which node holds each background job's lease.
//!
//! A node is alive while its lease (`lease_until`) is in the future; it renews the lease every
//! few seconds. Nothing here trusts clocks to agree closely: a lease is granted for seconds and
//! judged against the caller's `now`, so a skew well under the lease time is harmless.

use crate::Error;
use async_trait::async_trait;
use berth_types::EpochMillis;

/// A node of the installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Its id (the instance id of its data dir).
    pub id: String,
    /// Where other nodes forward its sessions' calls (`http://host:port`).
    pub address: String,
    /// When it last started.
    pub started_at: EpochMillis,
    /// When it last renewed its lease.
    pub seen_at: EpochMillis,
    /// Its lease: alive until then.
    pub lease_until: EpochMillis,
    /// True when it takes no new sessions (`berth nodes drain`).
    pub draining: bool,
}

impl NodeRow {
    /// True while its lease runs at `now`.
    pub fn alive(&self, now: EpochMillis) -> bool {
        self.lease_until > now
    }
}

/// Who runs a session after [`NodeStore::claim_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The claiming node: it now owns the session.
    Mine,
    /// Another node, alive, owns it: forward there.
    Owner(NodeRow),
}

/// A background job's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The job.
    pub name: String,
    /// The node holding it.
    pub holder: String,
    /// Held until then unless renewed.
    pub until: EpochMillis,
}

/// Storage of nodes, session owners and job leases.
#[async_trait]
pub trait NodeStore: Send + Sync + 'static {
    /// Records a node as started (insert or replace: address, start, lease; not draining).
    async fn register_node(&self, node: &NodeRow) -> Result<(), Error>;
    /// Renews a node's lease; answers its row as stored (another node may have set `draining`),
    /// or `None` when the node is not registered.
    async fn renew_node(
        &self,
        id: &str,
        now: EpochMillis,
        until: EpochMillis,
    ) -> Result<Option<NodeRow>, Error>;
    /// One node.
    async fn node(&self, id: &str) -> Result<Option<NodeRow>, Error>;
    /// Every node, by id.
    async fn nodes(&self) -> Result<Vec<NodeRow>, Error>;
    /// Sets or clears a node's `draining` flag; false when there is no such node.
    async fn set_draining(&self, id: &str, draining: bool) -> Result<bool, Error>;
    /// A node leaving cleanly: its lease ends at `now` and its sessions are released.
    async fn leave(&self, id: &str, now: EpochMillis) -> Result<(), Error>;
    /// Claims a session for `node_id` unless another node alive at `now` owns it; with `force`,
    /// takes it regardless (the owner forwarded it here). One statement: two nodes claiming at
    /// once cannot both get `Mine`.
    async fn claim_session(
        &self,
        runtime_id: &str,
        session_id: &str,
        node_id: &str,
        now: EpochMillis,
        force: bool,
    ) -> Result<Claim, Error>;
    /// The node that owns (or last owned) a session, alive or not.
    async fn session_owner(
        &self,
        runtime_id: &str,
        session_id: &str,
    ) -> Result<Option<NodeRow>, Error>;
    /// Forgets `node_id`'s ownership of a session (no-op if another node owns it).
    async fn release_session(
        &self,
        runtime_id: &str,
        session_id: &str,
        node_id: &str,
    ) -> Result<(), Error>;
    /// Takes or renews the lease `name` for `holder` until `until`, if it is free, lapsed at
    /// `now`, or already `holder`'s. True when `holder` holds it now.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: EpochMillis,
        until: EpochMillis,
    ) -> Result<bool, Error>;
    /// Gives up a lease `holder` holds (no-op otherwise).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), Error>;
    /// Every lease, by name.
    async fn leases(&self) -> Result<Vec<LeaseRow>, Error>;
}
