//! The control plane's domain: runtimes, immutable versions, endpoints, tags and idempotency.
//!
//! Handlers hand this crate a request already validated against the service model (as JSON in
//! AgentCore member names) and get back the response body. The work of turning a version into
//! something runnable belongs to a [`Deployer`]; this crate drives the status state machine
//! around it:
//!
//! ```text
//! version:  CREATING|UPDATING --build ok--> READY
//!                             --build err-> CREATE_FAILED|UPDATE_FAILED (failureReason)
//! runtime:  any --DeleteAgentRuntime--> DELETING --teardown--> gone
//! endpoint: follows its target version; live := target once the target is READY
//! ```
//!
//! Beyond AgentCore: traffic policies on endpoints (weights, routing rules, durable session
//! assignments, drains: [`traffic`]), per-version health ([`health`]), rollouts driven by the
//! [`Controller`] ([`rollout`]) and a hash-chained audit log of every mutation ([`audit`]).

pub mod access;
pub mod audit;
mod controller;
pub mod deployer;
pub mod health;
mod leases;
mod paging;
pub mod resource_policy;
pub mod rollout;
pub mod traffic;

use berth_api::ApiError;
use berth_api::control::ops::{self, Tags};
use berth_api::control::{RuntimeSpec, endpoint_body, runtime_summary, runtime_version_body};
use berth_store::{ControlStore, Idempotency, RuntimeCursor, Write};
use berth_types::records::{DEFAULT_ENDPOINT, Endpoint, Runtime, RuntimeVersion};
use berth_types::{
    Partition, ResourceArn, Status, Version, iso8601, new_runtime_id, now_millis, random_alnum,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub use audit::Caller;
pub use controller::{Controller, Options, Role};
pub use deployer::Deployer;
pub use health::Health;
pub use leases::Leases;
pub use traffic::{Decision, RouteRequest, Routed, RoutingPolicy, decide};

/// Largest number of tags a resource may carry (AWS: 50).
const MAX_TAGS: usize = 50;

/// The control-plane service. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ControlStore>,
    partition: Partition,
    deployer: Arc<dyn Deployer>,
    /// Serialises this node's mutations so read-modify-write sequences see each other. Reads
    /// never take it, and neither does slow work: builds, teardown (`Deployer::retire`,
    /// `drain`), warming and rollout signal evaluation run with it released, and what they
    /// commit afterwards is checked against a fresh read and the store's conditional writes
    /// (`Write::UpdateRuntime`, `Write::UpdateRollout`), which is also what keeps several nodes
    /// on one store correct.
    write_lock: Mutex<()>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Traffic, rollout and health settings.
    options: Options,
    /// Per-version health, recorded by the data plane and flushed by the controller.
    health: Health,
}

/// A store failure as the caller sees it: InternalServerException, the cause kept for the one
/// log line the server writes with the request id (`server::error`).
/// A version running a container image, and the digest it pins.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageVersion {
    /// The runtime.
    pub runtime_id: String,
    /// The version.
    pub version: u32,
    /// The image as the version names it.
    pub container_uri: String,
    /// The digest it pinned when it was built.
    pub digest: String,
}

fn internal(e: berth_store::Error) -> ApiError {
    ApiError::internal_because(format_args!("control store: {e}"))
}

/// A value as JSON, for audit records and idempotency rows (records of the wire).
fn to_json<T: Serialize>(t: &T) -> Result<Value, ApiError> {
    serde_json::to_value(t)
        .map_err(|e| ApiError::internal_because(format_args!("encoding a control record: {e}")))
}

/// An idempotency token and what it binds to: the hash of the request's canonical JSON
/// without its `clientToken` (the typed request serialized, so member order does not matter).
struct Idem<'a> {
    op: &'static str,
    token: Option<&'a str>,
    hash: String,
}

impl<'a> Idem<'a> {
    fn new<T: Serialize>(
        op: &'static str,
        request: &T,
        token: Option<&'a str>,
    ) -> Result<Self, ApiError> {
        let hash = match token {
            Some(_) => {
                let mut v = to_json(request)?;
                if let Some(o) = v.as_object_mut() {
                    o.remove("clientToken");
                }
                hex::encode(Sha256::digest(v.to_string().as_bytes()))
            }
            None => String::new(),
        };
        Ok(Self { op, token, hash })
    }
}

fn parse_version(s: &str) -> Result<u32, ApiError> {
    Version::parse(s)
        .map(|v| v.0)
        .ok_or_else(|| ApiError::field("agentRuntimeVersion", format!("Value '{s}' at 'agentRuntimeVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: ([1-9][0-9]{{0,4}})")))
}

fn tags_body(tags: &[(String, String)]) -> Value {
    let m: serde_json::Map<String, Value> = tags
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({ "tags": m })
}

fn tag_pairs(tags: Option<&Tags>) -> Vec<(String, String)> {
    tags.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Control {
    /// Creates the service and resumes work a previous process left unfinished (builds in
    /// flight, runtimes being deleted).
    pub async fn start(
        store: Arc<dyn ControlStore>,
        partition: Partition,
        deployer: Arc<dyn Deployer>,
        shutdown: CancellationToken,
    ) -> Result<Self, berth_store::Error> {
        Self::start_with(store, partition, deployer, shutdown, Options::default()).await
    }

    /// Like [`Control::start`], with traffic settings; runs the [`Controller`] as one of its
    /// tasks unless `options.run_controller` is off.
    pub async fn start_with(
        store: Arc<dyn ControlStore>,
        partition: Partition,
        deployer: Arc<dyn Deployer>,
        shutdown: CancellationToken,
        options: Options,
    ) -> Result<Self, berth_store::Error> {
        let run_controller = options.run_controller;
        let this = Self {
            inner: Arc::new(Inner {
                store,
                partition,
                deployer,
                write_lock: Mutex::new(()),
                tasks: TaskTracker::new(),
                shutdown: shutdown.clone(),
                health: Health::new(options.health_bucket_ms),
                options,
            }),
        };
        if run_controller {
            let controller = Controller::new(this.clone());
            this.inner.tasks.spawn(controller.run(shutdown));
        }
        this.resume_unfinished().await?;
        Ok(this)
    }

    /// Resumes builds and deletions no one is running: at start, what a previous process left;
    /// with several nodes, also what a dead node left (each runs under a lease, so a job another
    /// node is running is left to it).
    pub async fn resume_unfinished(&self) -> Result<(), berth_store::Error> {
        for v in self.inner.store.unfinished_versions().await? {
            self.spawn_build(v.runtime_id, v.version);
        }
        for id in self.inner.store.deleting_runtimes().await? {
            self.spawn_teardown(id);
        }
        Ok(())
    }

    /// The region and account in this server's ARNs.
    pub fn partition(&self) -> &Partition {
        &self.inner.partition
    }

    /// The store, for read paths of other components (the data plane resolves endpoints here).
    pub fn store(&self) -> &Arc<dyn ControlStore> {
        &self.inner.store
    }

    /// The per-version health recorder the data plane reports invocations to.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// The traffic settings this service runs with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Waits for background builds and teardowns to stop after shutdown was signalled.
    pub async fn closed(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Looks up an idempotency token: `Ok(Some(response))` replays a previous success.
    async fn replay<R: DeserializeOwned>(&self, idem: &Idem<'_>) -> Result<Option<R>, ApiError> {
        let Some(token) = idem.token else {
            return Ok(None);
        };
        match self
            .inner
            .store
            .idempotency(idem.op, token)
            .await
            .map_err(internal)?
        {
            Some(i) if i.request_hash == idem.hash => {
                serde_json::from_value(i.response).map(Some).map_err(|e| {
                    ApiError::internal_because(format_args!("stored {} response: {e}", idem.op))
                })
            }
            Some(_) => Err(ApiError::idempotent_mismatch()),
            None => Ok(None),
        }
    }

    fn remember(idem: &Idem<'_>, response: &Value) -> Option<Write> {
        idem.token.map(|token| {
            Write::PutIdempotency(Idempotency {
                operation: idem.op.to_owned(),
                token: token.to_owned(),
                request_hash: idem.hash.clone(),
                response: response.clone(),
                created_at: now_millis(),
            })
        })
    }

    async fn live_runtime(&self, id: &str) -> Result<Runtime, ApiError> {
        match self.inner.store.runtime(id).await.map_err(internal)? {
            Some(rt) => Ok(rt),
            None => Err(ApiError::not_found(format!(
                "no agent runtime with id {id}"
            ))),
        }
    }

    fn check_spec(&self, spec: &RuntimeSpec) -> Result<(), ApiError> {
        spec.check_protocol()?;
        self.inner.deployer.check(spec)
    }

    /// `CreateAgentRuntime`.
    pub async fn create_runtime(
        &self,
        req: ops::CreateAgentRuntime,
    ) -> Result<ops::CreateAgentRuntimeOutput, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let idem = Idem::new("CreateAgentRuntime", &req, req.client_token.as_deref())?;
        if let Some(r) = self.replay(&idem).await? {
            return Ok(r);
        }
        self.check_spec(&req.spec)?;
        let name = req.agent_runtime_name.clone();
        let now = now_millis();
        let rt = Runtime {
            id: new_runtime_id(&name),
            name: name.clone(),
            latest_version: 1,
            deleting: false,
            created_at: now,
            updated_at: now,
        };
        let v = RuntimeVersion {
            runtime_id: rt.id.clone(),
            version: 1,
            spec: to_json(&req.spec)?,
            status: Status::Creating,
            failure_reason: None,
            artifact_digest: None,
            created_at: now,
            updated_at: now,
        };
        let ep = Endpoint {
            runtime_id: rt.id.clone(),
            name: DEFAULT_ENDPOINT.into(),
            id: format!("{DEFAULT_ENDPOINT}-{}", random_alnum(10)),
            description: None,
            live_version: None,
            target_version: Some(1),
            status: Status::Creating,
            failure_reason: None,
            created_at: now,
            updated_at: now,
        };
        let p = &self.inner.partition;
        let arn = p.runtime_arn(&rt.id);
        let response = ops::CreateAgentRuntimeOutput {
            agent_runtime_arn: arn.clone(),
            workload_identity_details: ops::WorkloadIdentityDetails {
                workload_identity_arn: p.workload_identity_arn(&name),
            },
            agent_runtime_id: rt.id.clone(),
            agent_runtime_version: "1".into(),
            created_at: iso8601(now),
            status: Status::Creating,
        };
        let record = to_json(&response)?;
        let mut writes = vec![
            Write::InsertRuntime(rt.clone()),
            Write::PutVersion(v),
            Write::InsertEndpoint(ep),
            audit::entry("CreateAgentRuntime", &arn, Value::Null, record.clone()),
        ];
        let tags = tag_pairs(req.tags.as_ref());
        if !tags.is_empty() {
            writes.push(Write::PutTags { arn, tags });
        }
        writes.extend(Self::remember(&idem, &record));
        match self.inner.store.apply(writes).await {
            Ok(()) => {}
            Err(berth_store::Error::AlreadyExists("runtime name")) => {
                return Err(ApiError::conflict(format!(
                    "an agent runtime named {name} already exists"
                )));
            }
            Err(e) => return Err(internal(e)),
        }
        info!(runtime_id = %rt.id, "runtime created");
        self.spawn_build(rt.id, 1);
        Ok(response)
    }

    /// `UpdateAgentRuntime`: always a new immutable version.
    pub async fn update_runtime(
        &self,
        req: ops::UpdateAgentRuntime,
    ) -> Result<ops::UpdateAgentRuntimeOutput, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let idem = Idem::new("UpdateAgentRuntime", &req, req.client_token.as_deref())?;
        if let Some(r) = self.replay(&idem).await? {
            return Ok(r);
        }
        let id = req.agent_runtime_id.as_str();
        let rt = self.live_runtime(id).await?;
        if rt.deleting {
            return Err(ApiError::conflict(format!(
                "agent runtime {id} is being deleted"
            )));
        }
        self.check_spec(&req.spec)?;
        let now = now_millis();
        let version = rt.latest_version + 1;
        if Version::parse(&version.to_string()).is_none() {
            return Err(ApiError::new(
                berth_api::ErrorKind::ServiceQuotaExceeded,
                "the runtime has reached the maximum number of versions",
            ));
        }
        let v = RuntimeVersion {
            runtime_id: rt.id.clone(),
            version,
            spec: to_json(&req.spec)?,
            status: Status::Updating,
            failure_reason: None,
            artifact_digest: None,
            created_at: now,
            updated_at: now,
        };
        let mut default = self
            .inner
            .store
            .endpoint(&rt.id, DEFAULT_ENDPOINT)
            .await
            .map_err(internal)?
            .ok_or_else(ApiError::internal)?;
        default.target_version = Some(version);
        default.status = Status::Updating;
        default.failure_reason = None;
        default.updated_at = now;
        let p = &self.inner.partition;
        let response = ops::UpdateAgentRuntimeOutput {
            agent_runtime_arn: p.runtime_arn(&rt.id),
            agent_runtime_id: rt.id.clone(),
            workload_identity_details: ops::WorkloadIdentityDetails {
                workload_identity_arn: p.workload_identity_arn(&rt.name),
            },
            agent_runtime_version: version.to_string(),
            created_at: iso8601(rt.created_at),
            last_updated_at: iso8601(now),
            status: Status::Updating,
        };
        let record = to_json(&response)?;
        let mut writes = vec![
            Write::UpdateRuntime {
                runtime: Runtime {
                    latest_version: version,
                    updated_at: now,
                    ..rt.clone()
                },
                expect_latest: rt.latest_version,
            },
            Write::PutVersion(v),
            Write::PutEndpoint(default),
            audit::entry(
                "UpdateAgentRuntime",
                &p.runtime_arn(&rt.id),
                json!({ "agentRuntimeVersion": rt.latest_version.to_string() }),
                record.clone(),
            ),
        ];
        writes.extend(Self::remember(&idem, &record));
        self.inner.store.apply(writes).await.map_err(internal)?;
        info!(runtime_id = %rt.id, version, "runtime updated");
        self.spawn_build(rt.id, version);
        Ok(response)
    }

    /// `GetAgentRuntime`, optionally of one version.
    pub async fn get_runtime(
        &self,
        req: ops::GetAgentRuntime,
    ) -> Result<ops::GetAgentRuntimeOutput, ApiError> {
        let id = req.agent_runtime_id.as_str();
        let rt = self.live_runtime(id).await?;
        let version = match req.agent_runtime_version.as_deref() {
            Some(s) => parse_version(s)?,
            None => rt.latest_version,
        };
        let v = self
            .inner
            .store
            .version(&rt.id, version)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::not_found(format!("agent runtime {id} has no version {version}"))
            })?;
        runtime_version_body(&self.inner.partition, &rt, &v).map_err(|e| {
            ApiError::internal_because(format_args!(
                "stored configuration of {id} version {version}: {e}"
            ))
        })
    }

    /// `ListAgentRuntimes`: each runtime with its latest version.
    pub async fn list_runtimes(
        &self,
        req: ops::ListAgentRuntimes,
    ) -> Result<ops::ListAgentRuntimesOutput, ApiError> {
        let limit = paging::max_results(req.max_results);
        let after = match req.next_token.as_deref() {
            Some(t) => {
                let (ms, id) = paging::decode(t)?;
                Some(RuntimeCursor { created_at: ms, id })
            }
            None => None,
        };
        let mut rts = self
            .inner
            .store
            .list_runtimes(after.as_ref(), limit + 1)
            .await
            .map_err(internal)?;
        let more = rts.len() > limit as usize;
        rts.truncate(limit as usize);
        let mut items = Vec::with_capacity(rts.len());
        for rt in &rts {
            // A runtime whose latest version row is missing is mid-deletion: skip it.
            if let Some(v) = self
                .inner
                .store
                .version(&rt.id, rt.latest_version)
                .await
                .map_err(internal)?
            {
                items.push(runtime_summary(&self.inner.partition, rt, &v));
            }
        }
        Ok(ops::ListAgentRuntimesOutput {
            agent_runtimes: items,
            next_token: rts
                .last()
                .filter(|_| more)
                .map(|last| paging::encode(last.created_at, &last.id)),
        })
    }

    /// `ListAgentRuntimeVersions`, newest first.
    pub async fn list_versions(
        &self,
        req: ops::ListAgentRuntimeVersions,
    ) -> Result<ops::ListAgentRuntimesOutput, ApiError> {
        let rt = self.live_runtime(&req.agent_runtime_id).await?;
        let limit = paging::max_results(req.max_results);
        let below = match req.next_token.as_deref() {
            Some(t) => Some(paging::decode(t)?.0 as u32),
            None => None,
        };
        let mut vs = self
            .inner
            .store
            .list_versions(&rt.id, below, limit + 1)
            .await
            .map_err(internal)?;
        let more = vs.len() > limit as usize;
        vs.truncate(limit as usize);
        Ok(ops::ListAgentRuntimesOutput {
            agent_runtimes: vs
                .iter()
                .map(|v| runtime_summary(&self.inner.partition, &rt, v))
                .collect(),
            next_token: vs
                .last()
                .filter(|_| more)
                .map(|last| paging::encode(i64::from(last.version), "")),
        })
    }

    /// Every version that runs a container image and has pinned its digest (deleted runtimes
    /// included until they are gone): what pruning the image cache must keep.
    pub async fn image_versions(&self) -> Result<Vec<ImageVersion>, ApiError> {
        let store = &self.inner.store;
        let mut out = Vec::new();
        let mut after: Option<berth_store::RuntimeCursor> = None;
        loop {
            let page = store
                .list_runtimes(after.as_ref(), 500)
                .await
                .map_err(internal)?;
            let Some(last) = page.last() else { break };
            after = Some(berth_store::RuntimeCursor {
                created_at: last.created_at,
                id: last.id.clone(),
            });
            for rt in &page {
                let mut below = None;
                loop {
                    let vs = store
                        .list_versions(&rt.id, below, 500)
                        .await
                        .map_err(internal)?;
                    let Some(oldest) = vs.last() else { break };
                    below = Some(oldest.version);
                    for v in &vs {
                        let uri = v.spec["agentRuntimeArtifact"]["containerConfiguration"]
                            ["containerUri"]
                            .as_str();
                        if let (Some(uri), Some(digest)) = (uri, &v.artifact_digest) {
                            out.push(ImageVersion {
                                runtime_id: rt.id.clone(),
                                version: v.version,
                                container_uri: uri.to_string(),
                                digest: digest.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// `DeleteAgentRuntime`: one version (`?version=`) or the whole runtime.
    pub async fn delete_runtime(
        &self,
        req: ops::DeleteAgentRuntime,
    ) -> Result<ops::DeleteAgentRuntimeOutput, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let id = req.agent_runtime_id.as_str();
        let rt = self.live_runtime(id).await?;
        if let Some(s) = req.agent_runtime_version.as_deref() {
            let version = parse_version(s)?;
            if rt.deleting {
                return Err(ApiError::conflict(format!(
                    "agent runtime {id} is being deleted"
                )));
            }
            if self
                .inner
                .store
                .version(&rt.id, version)
                .await
                .map_err(internal)?
                .is_none()
            {
                return Err(ApiError::not_found(format!(
                    "agent runtime {id} has no version {version}"
                )));
            }
            let eps = self.all_endpoints(&rt.id).await?;
            if let Some(e) = eps
                .iter()
                .find(|e| e.live_version == Some(version) || e.target_version == Some(version))
            {
                return Err(ApiError::conflict(format!(
                    "version {version} is in use by endpoint {}; point the endpoint elsewhere first",
                    e.name
                )));
            }
            for e in &eps {
                let st = self.endpoint_state(&rt.id, &e.name).await?;
                if st.routing().versions().contains(&version) {
                    return Err(ApiError::conflict(format!(
                        "version {version} is in the traffic policy of endpoint {}; change its weights or rules first",
                        e.name
                    )));
                }
            }
            self.inner
                .store
                .apply(vec![
                    Write::DeleteVersion {
                        runtime_id: rt.id.clone(),
                        version,
                    },
                    audit::entry(
                        "DeleteAgentRuntime",
                        &self.inner.partition.runtime_arn(&rt.id),
                        json!({ "agentRuntimeVersion": version.to_string() }),
                        Value::Null,
                    ),
                ])
                .await
                .map_err(internal)?;
            // The version row is gone, so nothing routes to it any more; stopping its sessions
            // and freeing its build is slow and stays outside the write lock.
            drop(_g);
            self.inner.deployer.retire(&rt.id, Some(version)).await;
            return Ok(ops::DeleteAgentRuntimeOutput {
                status: Status::Deleting,
                agent_runtime_id: rt.id,
                agent_runtime_version: Some(version.to_string()),
            });
        }
        if !rt.deleting {
            // AWS refuses while named endpoints exist ("This agent has endpoints that must be
            // deleted first"); DEFAULT goes with the runtime.
            if let Some(e) = self
                .all_endpoints(&rt.id)
                .await?
                .iter()
                .find(|e| e.name != DEFAULT_ENDPOINT)
            {
                return Err(ApiError::conflict(format!(
                    "this agent runtime has endpoints that must be deleted first (endpoint {})",
                    e.name
                )));
            }
            self.inner
                .store
                .apply(vec![
                    Write::UpdateRuntime {
                        runtime: Runtime {
                            deleting: true,
                            updated_at: now_millis(),
                            ..rt.clone()
                        },
                        expect_latest: rt.latest_version,
                    },
                    audit::entry(
                        "DeleteAgentRuntime",
                        &self.inner.partition.runtime_arn(&rt.id),
                        json!({ "agentRuntimeId": rt.id, "latestVersion": rt.latest_version.to_string() }),
                        json!({ "status": "DELETING" }),
                    ),
                ])
                .await
                .map_err(internal)?;
            info!(runtime_id = %rt.id, "runtime deletion accepted");
            self.spawn_teardown(rt.id.clone());
        }
        Ok(ops::DeleteAgentRuntimeOutput {
            status: Status::Deleting,
            agent_runtime_id: rt.id,
            agent_runtime_version: None,
        })
    }

    async fn all_endpoints(&self, runtime_id: &str) -> Result<Vec<Endpoint>, ApiError> {
        let mut out = Vec::new();
        loop {
            let after = out.last().map(|e: &Endpoint| e.name.clone());
            let page = self
                .inner
                .store
                .list_endpoints(runtime_id, after.as_deref(), 100)
                .await
                .map_err(internal)?;
            let done = page.len() < 100;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    async fn endpoint_of(&self, rt: &Runtime, name: &str) -> Result<Endpoint, ApiError> {
        self.inner
            .store
            .endpoint(&rt.id, name)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::not_found(format!("agent runtime {} has no endpoint {name}", rt.id))
            })
    }

    /// Points `ep` at `version`, settling at once when that version is already built.
    async fn retarget(
        &self,
        ep: &mut Endpoint,
        rt: &Runtime,
        version: u32,
    ) -> Result<(), ApiError> {
        let v = self
            .inner
            .store
            .version(&rt.id, version)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::not_found(format!("agent runtime {} has no version {version}", rt.id))
            })?;
        ep.target_version = Some(version);
        ep.failure_reason = None;
        match v.status {
            Status::Ready => {
                ep.live_version = Some(version);
                ep.status = Status::Ready;
            }
            Status::CreateFailed | Status::UpdateFailed => {
                return Err(ApiError::field(
                    "agentRuntimeVersion",
                    format!(
                        "version {version} failed to build and cannot serve: {}",
                        v.failure_reason.unwrap_or_default()
                    ),
                ));
            }
            _ => {
                ep.status = if ep.live_version.is_some() {
                    Status::Updating
                } else {
                    Status::Creating
                };
            }
        }
        Ok(())
    }

    /// `CreateAgentRuntimeEndpoint`.
    pub async fn create_endpoint(
        &self,
        req: ops::CreateAgentRuntimeEndpoint,
    ) -> Result<ops::CreateAgentRuntimeEndpointOutput, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let idem = Idem::new(
            "CreateAgentRuntimeEndpoint",
            &req,
            req.client_token.as_deref(),
        )?;
        if let Some(r) = self.replay(&idem).await? {
            return Ok(r);
        }
        let id = req.agent_runtime_id.as_str();
        let rt = self.live_runtime(id).await?;
        if rt.deleting {
            return Err(ApiError::conflict(format!(
                "agent runtime {id} is being deleted"
            )));
        }
        let name = req.name.clone();
        let version = match req.agent_runtime_version.as_deref() {
            Some(s) => parse_version(s)?,
            None => rt.latest_version,
        };
        let now = now_millis();
        let mut ep = Endpoint {
            runtime_id: rt.id.clone(),
            name: name.clone(),
            id: format!("{name}-{}", random_alnum(10)),
            description: req.description.clone(),
            live_version: None,
            target_version: None,
            status: Status::Creating,
            failure_reason: None,
            created_at: now,
            updated_at: now,
        };
        self.retarget(&mut ep, &rt, version).await?;
        let p = &self.inner.partition;
        let arn = p.endpoint_arn(&rt.id, &name);
        let response = ops::CreateAgentRuntimeEndpointOutput {
            target_version: version.to_string(),
            agent_runtime_endpoint_arn: arn.clone(),
            agent_runtime_arn: p.runtime_arn(&rt.id),
            agent_runtime_id: rt.id.clone(),
            endpoint_name: name.clone(),
            status: ep.status,
            created_at: iso8601(now),
        };
        let record = to_json(&response)?;
        let mut writes = vec![
            Write::InsertEndpoint(ep),
            audit::entry(
                "CreateAgentRuntimeEndpoint",
                &arn,
                Value::Null,
                record.clone(),
            ),
        ];
        let tags = tag_pairs(req.tags.as_ref());
        if !tags.is_empty() {
            writes.push(Write::PutTags { arn, tags });
        }
        writes.extend(Self::remember(&idem, &record));
        match self.inner.store.apply(writes).await {
            Ok(()) => Ok(response),
            Err(berth_store::Error::AlreadyExists("endpoint name")) => Err(ApiError::conflict(
                format!("agent runtime {id} already has an endpoint named {name}"),
            )),
            Err(e) => Err(internal(e)),
        }
    }

    /// `GetAgentRuntimeEndpoint`.
    pub async fn get_endpoint(
        &self,
        req: ops::GetAgentRuntimeEndpoint,
    ) -> Result<ops::AgentRuntimeEndpoint, ApiError> {
        let rt = self.live_runtime(&req.agent_runtime_id).await?;
        let ep = self.endpoint_of(&rt, &req.endpoint_name).await?;
        let mut body = endpoint_body(&self.inner.partition, &ep);
        if rt.deleting {
            body.status = Status::Deleting;
        }
        Ok(body)
    }

    /// `UpdateAgentRuntimeEndpoint`.
    pub async fn update_endpoint(
        &self,
        req: ops::UpdateAgentRuntimeEndpoint,
    ) -> Result<ops::UpdateAgentRuntimeEndpointOutput, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let idem = Idem::new(
            "UpdateAgentRuntimeEndpoint",
            &req,
            req.client_token.as_deref(),
        )?;
        if let Some(r) = self.replay(&idem).await? {
            return Ok(r);
        }
        let rt = self.live_runtime(&req.agent_runtime_id).await?;
        if rt.deleting {
            return Err(ApiError::conflict(format!(
                "agent runtime {} is being deleted",
                rt.id
            )));
        }
        let mut ep = self.endpoint_of(&rt, &req.endpoint_name).await?;
        let old = ep.clone();
        if let Some(s) = req.agent_runtime_version.as_deref() {
            let version = parse_version(s)?;
            if ep.name == DEFAULT_ENDPOINT && version != rt.latest_version {
                return Err(ApiError::field(
                    "agentRuntimeVersion",
                    "the DEFAULT endpoint always serves the latest version; create a named endpoint to pin a version",
                ));
            }
            self.retarget(&mut ep, &rt, version).await?;
        }
        if let Some(d) = &req.description {
            ep.description = Some(d.clone());
        }
        ep.updated_at = now_millis();
        let p = &self.inner.partition;
        let response = ops::UpdateAgentRuntimeEndpointOutput::from(endpoint_body(p, &ep));
        let record = to_json(&response)?;
        let arn = p.endpoint_arn(&rt.id, &ep.name);
        let mut writes = vec![audit::entry(
            "UpdateAgentRuntimeEndpoint",
            &arn,
            to_json(&endpoint_body(p, &old))?,
            to_json(&endpoint_body(p, &ep))?,
        )];
        // The endpoint serves 100% of its (new) version from now on: a split or rollout in
        // force ends, and versions leaving drain.
        writes.extend(
            self.endpoint_moved(&old, &ep, "superseded by UpdateAgentRuntimeEndpoint")
                .await?,
        );
        writes.push(Write::PutEndpoint(ep));
        writes.extend(Self::remember(&idem, &record));
        self.inner.store.apply(writes).await.map_err(internal)?;
        Ok(response)
    }

    /// `ListAgentRuntimeEndpoints`.
    pub async fn list_endpoints(
        &self,
        req: ops::ListAgentRuntimeEndpoints,
    ) -> Result<ops::ListAgentRuntimeEndpointsOutput, ApiError> {
        let rt = self.live_runtime(&req.agent_runtime_id).await?;
        let limit = paging::max_results(req.max_results);
        let after = match req.next_token.as_deref() {
            Some(t) => Some(paging::decode(t)?.1),
            None => None,
        };
        let mut eps = self
            .inner
            .store
            .list_endpoints(&rt.id, after.as_deref(), limit + 1)
            .await
            .map_err(internal)?;
        let more = eps.len() > limit as usize;
        eps.truncate(limit as usize);
        Ok(ops::ListAgentRuntimeEndpointsOutput {
            runtime_endpoints: eps
                .iter()
                .map(|e| endpoint_body(&self.inner.partition, e))
                .collect(),
            next_token: eps
                .last()
                .filter(|_| more)
                .map(|last| paging::encode(0, &last.name)),
        })
    }

    /// `DeleteAgentRuntimeEndpoint`. `DEFAULT` goes only with its runtime.
    pub async fn delete_endpoint(
        &self,
        req: ops::DeleteAgentRuntimeEndpoint,
    ) -> Result<ops::DeleteAgentRuntimeEndpointOutput, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let rt = self.live_runtime(&req.agent_runtime_id).await?;
        let name = req.endpoint_name.as_str();
        let ep = self.endpoint_of(&rt, name).await?;
        if ep.name == DEFAULT_ENDPOINT {
            return Err(ApiError::conflict(
                "the DEFAULT endpoint cannot be deleted on its own; delete the agent runtime instead",
            ));
        }
        let arn = self.inner.partition.endpoint_arn(&rt.id, name);
        self.inner
            .store
            .apply(vec![
                audit::entry(
                    "DeleteAgentRuntimeEndpoint",
                    &arn,
                    to_json(&endpoint_body(&self.inner.partition, &ep))?,
                    Value::Null,
                ),
                Write::DeleteEndpoint {
                    runtime_id: rt.id.clone(),
                    name: name.to_owned(),
                },
                Write::DeleteResourcePolicy {
                    arn: arn.clone(),
                    children: false,
                },
                Write::RemoveTags {
                    arn: arn.clone(),
                    keys: self
                        .inner
                        .store
                        .tags(&arn)
                        .await
                        .map_err(internal)?
                        .into_iter()
                        .map(|(k, _)| k)
                        .collect(),
                },
            ])
            .await
            .map_err(internal)?;
        Ok(ops::DeleteAgentRuntimeEndpointOutput {
            status: Status::Deleting,
            agent_runtime_id: rt.id,
            endpoint_name: req.endpoint_name,
        })
    }

    /// Resolves a taggable ARN to an existing resource.
    async fn taggable(&self, arn: &str) -> Result<(), ApiError> {
        let parsed = ResourceArn::parse(arn, &self.inner.partition).map_err(|e| {
            if e == berth_types::ArnError::ForeignPartition {
                ApiError::not_found(format!("no resource {arn}"))
            } else {
                ApiError::field("resourceArn", format!("{e}: {arn}"))
            }
        })?;
        match parsed {
            ResourceArn::Runtime { runtime_id } => {
                self.live_runtime(&runtime_id).await?;
            }
            ResourceArn::Endpoint { runtime_id, name } => {
                let rt = self.live_runtime(&runtime_id).await?;
                self.endpoint_of(&rt, &name).await?;
            }
            ResourceArn::Memory { .. } => {
                return Err(ApiError::not_found(format!("no resource {arn}")));
            }
        }
        Ok(())
    }

    /// `TagResource`.
    pub async fn tag_resource(&self, req: ops::TagResource) -> Result<ops::Empty, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let arn = req.resource_arn.as_str();
        self.taggable(arn).await?;
        let new = tag_pairs(Some(&req.tags));
        let old_tags = self.inner.store.tags(arn).await.map_err(internal)?;
        let mut keys: std::collections::BTreeSet<String> =
            old_tags.iter().map(|(k, _)| k.clone()).collect();
        keys.extend(new.iter().map(|(k, _)| k.clone()));
        if keys.len() > MAX_TAGS {
            return Err(ApiError::field(
                "tags",
                format!(
                    "a resource can carry at most {MAX_TAGS} tags; this request would leave {}",
                    keys.len()
                ),
            ));
        }
        let mut after: serde_json::Map<String, Value> = old_tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        for (k, v) in &new {
            after.insert(k.clone(), Value::String(v.clone()));
        }
        let audit = audit::entry(
            "TagResource",
            arn,
            tags_body(&old_tags),
            json!({ "tags": after }),
        );
        self.inner
            .store
            .apply(vec![
                Write::PutTags {
                    arn: arn.to_owned(),
                    tags: new,
                },
                audit,
            ])
            .await
            .map_err(internal)?;
        Ok(ops::Empty {})
    }

    /// `UntagResource`.
    pub async fn untag_resource(&self, req: ops::UntagResource) -> Result<ops::Empty, ApiError> {
        let _g = self.inner.write_lock.lock().await;
        let arn = req.resource_arn.as_str();
        self.taggable(arn).await?;
        let keys = req.tag_keys.clone();
        let old_tags = self.inner.store.tags(arn).await.map_err(internal)?;
        let kept: Vec<(String, String)> = old_tags
            .iter()
            .filter(|(k, _)| !keys.contains(k))
            .cloned()
            .collect();
        let audit = audit::entry("UntagResource", arn, tags_body(&old_tags), tags_body(&kept));
        self.inner
            .store
            .apply(vec![
                Write::RemoveTags {
                    arn: arn.to_owned(),
                    keys,
                },
                audit,
            ])
            .await
            .map_err(internal)?;
        Ok(ops::Empty {})
    }

    /// `ListTagsForResource`.
    pub async fn list_tags(
        &self,
        req: ops::ListTagsForResource,
    ) -> Result<ops::ListTagsOutput, ApiError> {
        let arn = req.resource_arn.as_str();
        self.taggable(arn).await?;
        let tags = self
            .inner
            .store
            .tags(arn)
            .await
            .map_err(internal)?
            .into_iter()
            .collect();
        Ok(ops::ListTagsOutput { tags })
    }

    /// Builds a version in the background, under its lease (one build per version however
    /// many nodes find it unfinished).
    fn spawn_build(&self, runtime_id: String, version: u32) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let job = format!("build/{runtime_id}/{version}");
            let cancel = this.inner.shutdown.clone();
            let (this, runtime_id) = (&this, &runtime_id);
            let build = |lost: CancellationToken| async move {
                info!(%runtime_id, version, "building");
                tokio::select! {
                    // Shutdown or a lost lease abandons the build; the version stays
                    // transitional and is resumed at start or by another node.
                    _ = cancel.cancelled() => {}
                    _ = lost.cancelled() => {}
                    r = this.build(runtime_id, version) => {
                        if let Err(e) = r {
                            error!(%runtime_id, version, error = %e, "recording build result failed");
                        }
                    }
                }
            };
            this.inner.options.leases.run(&job, build).await;
        });
    }

    async fn build(&self, runtime_id: &str, version: u32) -> Result<(), berth_store::Error> {
        let store = &self.inner.store;
        let (Some(rt), Some(v)) = (
            store.runtime(runtime_id).await?,
            store.version(runtime_id, version).await?,
        ) else {
            return Ok(());
        };
        let result = self.inner.deployer.build(&rt, &v).await;
        let _g = self.inner.write_lock.lock().await;
        // Re-read: the runtime may have been deleted while building.
        let Some(mut v) = store.version(runtime_id, version).await? else {
            return Ok(());
        };
        let now = now_millis();
        v.updated_at = now;
        match &result {
            Ok(digest) => {
                v.status = Status::Ready;
                v.artifact_digest = Some(digest.clone());
                v.failure_reason = None;
                info!(%runtime_id, version, "version ready");
            }
            Err(reason) => {
                v.status = if version == 1 {
                    Status::CreateFailed
                } else {
                    Status::UpdateFailed
                };
                v.failure_reason = Some(reason.to_string());
                warn!(%runtime_id, version, %reason, "version build failed");
            }
        }
        let mut writes = vec![Write::PutVersion(v)];
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list_endpoints(runtime_id, after.as_deref(), 100)
                .await?;
            let done = page.len() < 100;
            after = page.last().map(|e| e.name.clone());
            for mut e in page {
                if e.target_version != Some(version) {
                    continue;
                }
                let old = e.clone();
                e.updated_at = now;
                match &result {
                    Ok(_) => {
                        e.live_version = Some(version);
                        e.status = Status::Ready;
                        e.failure_reason = None;
                        match self
                            .endpoint_moved(&old, &e, &format!("superseded by version {version}"))
                            .await
                        {
                            Ok(w) => writes.extend(w),
                            // The endpoint still moves; its previous version just does not
                            // drain by deadline.
                            Err(err) => {
                                warn!(%runtime_id, endpoint = %e.name, error = %err.detail(), "recording the traffic change failed")
                            }
                        }
                    }
                    Err(reason) => {
                        e.status = if e.live_version.is_some() {
                            Status::UpdateFailed
                        } else {
                            Status::CreateFailed
                        };
                        e.failure_reason =
                            Some(format!("version {version} failed to build: {reason}"));
                    }
                }
                writes.push(Write::PutEndpoint(e));
            }
            if done {
                break;
            }
        }
        store.apply(writes).await
    }

    /// Deletes a runtime in the background, under its lease.
    fn spawn_teardown(&self, runtime_id: String) {
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let job = format!("teardown/{runtime_id}");
            let teardown = |_lost| async {
                this.inner.deployer.retire(&runtime_id, None).await;
                let _g = this.inner.write_lock.lock().await;
                let arn = this.inner.partition.runtime_arn(&runtime_id);
                match this.inner.store.apply(vec![Write::DeleteRuntime { runtime_id: runtime_id.clone(), arn }]).await {
                    Ok(()) => info!(%runtime_id, "runtime deleted"),
                    Err(e) => error!(%runtime_id, error = %e, "deleting runtime failed; retried at the next start or by another node"),
                }
            };
            this.inner.options.leases.run(&job, teardown).await;
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

/// Where an invocation of a new session goes.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The runtime.
    pub runtime: Runtime,
    /// The endpoint name the qualifier named (`DEFAULT` when absent).
    pub endpoint: String,
    /// The version to run.
    pub version: RuntimeVersion,
}

impl Control {
    /// Checks that `qualifier` names an endpoint or a version of the runtime, for an invocation
    /// of a live session: the session keeps the version it runs, but a qualifier that names
    /// nothing is ResourceNotFoundException, as it is for a new session (and never becomes an
    /// endpoint label in the metrics).
    pub async fn check_qualifier(&self, runtime_id: &str, qualifier: &str) -> Result<(), ApiError> {
        let rt = self.live_runtime(runtime_id).await?;
        let store = &self.inner.store;
        if store
            .endpoint(&rt.id, qualifier)
            .await
            .map_err(internal)?
            .is_some()
        {
            return Ok(());
        }
        let version = match Version::parse(qualifier) {
            Some(v) => store.version(&rt.id, v.0).await.map_err(internal)?,
            None => None,
        };
        if version.is_some() {
            return Ok(());
        }
        Err(ApiError::not_found(format!(
            "agent runtime {runtime_id} has no endpoint or version {qualifier}"
        )))
    }

    /// Resolves `qualifier` (an endpoint name, or a version number) of a runtime to the version a
    /// new session should run.
    pub async fn resolve(
        &self,
        runtime_id: &str,
        qualifier: Option<&str>,
    ) -> Result<Resolved, ApiError> {
        let rt = self.live_runtime(runtime_id).await?;
        if rt.deleting {
            return Err(ApiError::not_found(format!(
                "agent runtime {runtime_id} is being deleted"
            )));
        }
        let q = qualifier.unwrap_or(DEFAULT_ENDPOINT);
        let store = &self.inner.store;
        let (endpoint, version) = match store.endpoint(&rt.id, q).await.map_err(internal)? {
            Some(ep) => match ep.live_version {
                Some(v) => (ep.name, v),
                None if ep.status.is_transitional() => {
                    return Err(ApiError::new(
                        berth_api::ErrorKind::RetryableConflict,
                        format!(
                            "endpoint {q} of agent runtime {runtime_id} is still being created; retry once it is READY"
                        ),
                    ));
                }
                None => {
                    return Err(ApiError::not_found(format!(
                        "endpoint {q} of agent runtime {runtime_id} has no version that built successfully: {}",
                        ep.failure_reason.unwrap_or_default()
                    )));
                }
            },
            None => match Version::parse(q) {
                Some(v) => (q.to_owned(), v.0),
                None => {
                    return Err(ApiError::not_found(format!(
                        "agent runtime {runtime_id} has no endpoint {q}"
                    )));
                }
            },
        };
        let v = store
            .version(&rt.id, version)
            .await
            .map_err(internal)?
            .filter(|v| v.status == Status::Ready)
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "version {version} of agent runtime {runtime_id} is not ready"
                ))
            })?;
        Ok(Resolved {
            runtime: rt,
            endpoint,
            version: v,
        })
    }
}
