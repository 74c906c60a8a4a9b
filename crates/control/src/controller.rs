//! The traffic controller: the one background task that moves traffic without a request.
//!
//! Every tick it flushes the in-memory health buckets to the store, analyses running rollouts,
//! ends expired drains (stopping their sessions through the [`crate::Deployer`]) and, now and
//! then, forgets old assignments and health buckets. All of its state is in the store, so a
//! restarted server carries on where the last one stopped. It acts as `rollout-controller` in
//! the audit log.
//!
//! Tests drive [`Controller::tick`] with their own clock instead of running the loop.

use crate::audit::{self, Caller};
use crate::rollout::{RolloutState, Signal, builtin_signals};
use crate::traffic::{EndpointState, Policy};
use crate::{Control, internal};
use berth_api::ApiError;
use berth_store::{DrainRow, Write};
use berth_types::{EpochMillis, now_millis};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Settings of the traffic layer. The defaults give a working single-node server.
#[derive(Clone)]
pub struct Options {
    /// Milliseconds in one second of traffic time: rollout intervals and drain deadlines are
    /// given in seconds and multiplied by this. 1000 in production; tests compress time with a
    /// smaller value instead of sleeping.
    pub second_ms: u64,
    /// How often the controller runs (health flush, rollout analysis, drain deadlines).
    pub tick: Duration,
    /// Width of a stored health bucket in ms.
    pub health_bucket_ms: i64,
    /// How long health buckets are kept.
    pub health_retention: Duration,
    /// Default drain deadline in traffic seconds: how long a version leaving an endpoint keeps
    /// its sessions (and their assignments).
    pub drain_seconds: u64,
    /// How long a session assignment lives at most (wall-clock). AgentCore sessions live at most
    /// 8 hours, so an older assignment can only belong to a new session reusing an id.
    pub assignment_ttl: Duration,
    /// Run the controller as a task of [`Control`] (tests turn it off and call
    /// [`Controller::tick`] themselves).
    pub run_controller: bool,
    /// What rollout analysis judges; starts with the built-in error rate and p99 latency.
    /// Evaluation scores or cost join the analysis by adding a [`Signal`] here.
    pub signals: Vec<Arc<dyn Signal>>,
    /// The leases builds and deletions run under (standalone unless several nodes share the
    /// store).
    pub leases: crate::Leases,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            second_ms: 1000,
            tick: Duration::from_secs(1),
            health_bucket_ms: 10_000,
            health_retention: Duration::from_secs(7 * 24 * 3600),
            drain_seconds: 3600,
            assignment_ttl: Duration::from_secs(8 * 3600),
            run_controller: true,
            signals: builtin_signals(),
            leases: crate::Leases::standalone(),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("second_ms", &self.second_ms)
            .field("tick", &self.tick)
            .field("health_bucket_ms", &self.health_bucket_ms)
            .field("health_retention", &self.health_retention)
            .field("drain_seconds", &self.drain_seconds)
            .field("assignment_ttl", &self.assignment_ttl)
            .field("run_controller", &self.run_controller)
            .field("leases", &self.leases)
            .field(
                "signals",
                &self
                    .signals
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// How often the slow sweeps (assignment expiry, health retention) run.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The controller service.
pub struct Controller {
    control: Control,
    last_sweep: EpochMillis,
    last_resume: EpochMillis,
    role: Role,
}

/// Which of the controller's work a node does when several nodes share one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: a node serving alone.
    All,
    /// What each node does for itself: flush the health it recorded, stop its own sessions of
    /// versions whose drain deadline passed.
    Local,
    /// What one node does for all (under a lease): rollouts, ending drains (`grace` after their
    /// deadline, so every node's local tick stopped its sessions first), sweeps.
    Shared {
        /// How long after a drain's deadline it is ended.
        grace: Duration,
    },
}

impl Controller {
    /// A controller acting on `control`.
    pub fn new(control: Control) -> Self {
        Self::with_role(control, Role::All)
    }

    /// A controller doing `role`'s share of the work.
    pub fn with_role(control: Control, role: Role) -> Self {
        Self {
            control,
            last_sweep: 0,
            last_resume: 0,
            role,
        }
    }

    /// Ticks until `shutdown`, then flushes health one last time.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.control.inner.options.tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            self.tick(now_millis()).await;
        }
        if !self.shared_only() {
            self.flush_health().await;
        }
    }

    fn shared_only(&self) -> bool {
        matches!(self.role, Role::Shared { .. })
    }

    /// One round of work at `now`. Failures are logged and retried at the next tick.
    pub async fn tick(&mut self, now: EpochMillis) {
        match self.role {
            Role::Local => {
                self.flush_health().await;
                self.stop_drained(now).await;
                return;
            }
            Role::All => {
                self.flush_health().await;
                self.drains(now).await;
            }
            Role::Shared { grace } => {
                self.drains(now.saturating_sub(berth_types::duration_millis(grace)))
                    .await;
                // Builds and deletions a dead node left: taken over once its leases lapse.
                let every = self.control.inner.options.leases.retry_every();
                if now.saturating_sub(self.last_resume) >= berth_types::duration_millis(every) {
                    self.last_resume = now;
                    if let Err(e) = self.control.resume_unfinished().await {
                        warn!(error = %e, "listing unfinished builds failed");
                    }
                }
            }
        }
        self.rollouts(now).await;
        if now.saturating_sub(self.last_sweep) >= berth_types::duration_millis(SWEEP_EVERY) {
            self.last_sweep = now;
            self.sweep(now).await;
        }
    }

    /// Writes the health recorded since the last flush.
    pub async fn flush_health(&self) {
        let rows = self.control.inner.health.take_pending();
        if rows.is_empty() {
            return;
        }
        let writes = rows.iter().cloned().map(Write::AddHealth).collect();
        if let Err(e) = self.control.inner.store.apply(writes).await {
            warn!(error = %e, buckets = rows.len(), "flushing health failed; retrying at the next tick");
            self.control.inner.health.restore(rows);
        }
    }

    async fn rollouts(&self, now: EpochMillis) {
        let active = match self.control.inner.store.active_rollouts().await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "listing rollouts failed");
                return;
            }
        };
        for r in active
            .into_iter()
            .filter(|r| RolloutState::parse(&r.state) == Some(RolloutState::Running))
        {
            let result = Caller::controller()
                .scope(self.control.analyse_rollout(&r.id, now))
                .await;
            if let Err(e) = result {
                warn!(rollout = %r.id, error = %e.detail(), "rollout analysis failed");
            }
        }
    }

    async fn drains(&self, now: EpochMillis) {
        let expired = match self.control.inner.store.expired_drains(now).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "listing drains failed");
                return;
            }
        };
        for d in expired {
            match self.control.end_drain(&d).await {
                Ok(true) => {
                    let stopped = self
                        .control
                        .inner
                        .deployer
                        .drain(&d.runtime_id, &d.endpoint, d.version)
                        .await;
                    match stopped {
                        Ok(n) => {
                            info!(runtime_id = %d.runtime_id, endpoint = %d.endpoint, version = d.version, stopped = n, "drain deadline passed")
                        }
                        Err(e) => {
                            warn!(runtime_id = %d.runtime_id, endpoint = %d.endpoint, version = d.version, error = %e, "stopping drained sessions failed")
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(runtime_id = %d.runtime_id, endpoint = %d.endpoint, version = d.version, error = %e.detail(), "ending a drain failed")
                }
            }
        }
    }

    /// Stops this node's sessions of versions whose drain deadline passed (a node's share of
    /// ending a drain when several share the store; the shared controller ends it after).
    async fn stop_drained(&self, now: EpochMillis) {
        let expired = match self.control.inner.store.expired_drains(now).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "listing drains failed");
                return;
            }
        };
        for d in expired {
            let stopped = self
                .control
                .inner
                .deployer
                .drain(&d.runtime_id, &d.endpoint, d.version)
                .await;
            match stopped {
                Ok(0) => {}
                Ok(n) => {
                    info!(runtime_id = %d.runtime_id, endpoint = %d.endpoint, version = d.version, stopped = n, "drain deadline passed; stopped this node's sessions")
                }
                Err(e) => {
                    warn!(runtime_id = %d.runtime_id, endpoint = %d.endpoint, version = d.version, error = %e, "stopping drained sessions failed")
                }
            }
        }
    }

    async fn sweep(&self, now: EpochMillis) {
        let opts = &self.control.inner.options;
        let writes = vec![
            Write::ExpireAssignments {
                before: now.saturating_sub(berth_types::duration_millis(opts.assignment_ttl)),
            },
            Write::PruneHealth {
                before: now.saturating_sub(berth_types::duration_millis(opts.health_retention)),
            },
        ];
        if let Err(e) = self.control.inner.store.apply(writes).await {
            warn!(error = %e, "sweeping old assignments and health failed");
        }
    }
}

impl Control {
    /// Ends a drain whose deadline passed: its assignments are forgotten, so the sessions route
    /// afresh next time. `Ok(true)` when the caller should now stop the version's sessions on
    /// the endpoint; `Ok(false)` when the version is routable again (the drain was stale).
    pub(crate) async fn end_drain(&self, d: &DrainRow) -> Result<bool, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let store = &self.inner.store;
        let delete = Write::DeleteDrain {
            runtime_id: d.runtime_id.clone(),
            endpoint: d.endpoint.clone(),
            version: d.version,
        };
        let Some(runtime) = store.runtime(&d.runtime_id).await.map_err(internal)? else {
            return Ok(false);
        };
        let Some(endpoint) = store
            .endpoint(&d.runtime_id, &d.endpoint)
            .await
            .map_err(internal)?
        else {
            store.apply(vec![delete]).await.map_err(internal)?;
            return Ok(false);
        };
        let policy = Policy::of(
            store
                .policy(&d.runtime_id, &d.endpoint)
                .await
                .map_err(internal)?,
        )?;
        let st = EndpointState {
            runtime,
            endpoint,
            policy,
            drains: vec![],
        };
        if st.routing().versions().contains(&d.version)
            || st.endpoint.target_version == Some(d.version)
        {
            store.apply(vec![delete]).await.map_err(internal)?;
            return Ok(false);
        }
        let arn = self
            .inner
            .partition
            .endpoint_arn(&d.runtime_id, &d.endpoint);
        let writes = vec![
            delete,
            Write::DeleteAssignments {
                runtime_id: d.runtime_id.clone(),
                endpoint: d.endpoint.clone(),
                version: d.version,
            },
            audit::entry_as(
                &Caller::controller(),
                "drain.expire",
                &arn,
                json!({ "drainingVersion": d.version, "deadline": berth_types::iso8601(d.deadline) }),
                json!({ "stoppedVersion": d.version }),
            ),
        ];
        store.apply(writes).await.map_err(internal)?;
        Ok(true)
    }
}
