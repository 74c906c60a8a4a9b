//! Sessions: one agent per (runtime, session id), started by the server's
//! [`SessionBackend`](crate::backend::SessionBackend), the invocation proxy into it, its lifecycle
//! (`/ping` polling, idle timeout, max lifetime, crash detection, stop) and the warm pools.
//!
//! Architecture Invariant: a session id maps to at most one live sandbox per runtime; concurrent
//! first invocations of one session wait on the same start instead of racing two sandboxes.
//! Architecture Invariant: response bodies are never buffered; once the agent has started a
//! `text/event-stream` response, any failure ends the stream with a final `error` event.

use crate::backend::{
    Agent, AgentSpec, ExecEvent, ExecRequest, ExecStream, LogReader, SessionBackend,
};
use crate::quota::{Admission, Quotas, Refusal, Slot};
use berth_api::control::{Lifecycle, Protocol, RuntimeSpec, ServerProtocol};
use berth_types::records::{Runtime, RuntimeVersion};
use berth_types::{EpochMillis, now_millis};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// What a session needs from a built version to start its sandbox.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Unpacked code, read-only inside.
    pub code_dir: PathBuf,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Environment from the build (PYTHONPATH and such).
    pub env: Vec<(String, String)>,
    /// Host paths the agent needs visible although they live in the hidden data dir (its venv).
    pub visible: Vec<PathBuf>,
    /// A container image version's files; `code_dir` is then the working directory inside it.
    pub image: Option<crate::image::ImageFiles>,
}

/// Who a sandbox belongs to (see [`Sessions::sandbox_owner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOwner {
    pub runtime_id: String,
    pub version: u32,
    /// Empty for a warm spare.
    pub endpoint: String,
    /// `None` for a warm spare.
    pub session_id: Option<String>,
    pub user_id: Option<String>,
}

/// Supplies [`Prepared`] versions (built on demand after a restart).
#[async_trait::async_trait]
pub trait Prepare: Send + Sync + 'static {
    /// Everything needed to run `version`; `Err`'s text is shown to the caller.
    async fn prepare(
        &self,
        runtime: &Runtime,
        version: &RuntimeVersion,
    ) -> Result<Prepared, berth_control::deployer::Error>;
}

/// Issues workload access tokens (AgentCore Identity) to runtimes' agents: AgentCore hands the
/// agent one with every invocation (`WorkloadAccessToken` and `X-Amz-Bedrock-AgentCore-Identity-WAT`),
/// which the SDK exchanges for the credentials of `@requires_api_key` and `@requires_access_token`.
#[async_trait::async_trait]
pub trait WorkloadTokens: Send + Sync {
    /// Makes sure the runtime's workload identity (named after the runtime) exists; called once
    /// per session start.
    async fn prepare(&self, runtime_name: &str) -> Result<(), String>;
    /// A token for the runtime's agent acting for `user`, with its expiry (epoch seconds).
    fn token(&self, runtime_name: &str, user: Option<&str>) -> (String, i64);
}

/// What marks a runtime environment variable as a secret reference: its whole value is
/// `berth-secret:NAME`. The configuration keeps the reference; the sandbox gets the value.
pub const SECRET_REFERENCE_PREFIX: &str = "berth-secret:";

/// Resolves secret references in runtimes' environment variables when a sandbox starts (warm
/// spares included), so a put is seen by every sandbox started after it.
#[async_trait::async_trait]
pub trait SecretValues: Send + Sync {
    /// The current value of secret `name`; `Ok(None)` when there is no such secret. `Err`'s
    /// text names what failed, never a value.
    async fn value(&self, name: &str) -> Result<Option<String>, String>;
}

/// The value a runtime environment variable `var` gives the sandbox: `value` itself, or, for a
/// `berth-secret:NAME` reference, the secret's current value. Errors name the variable and the
/// secret, never a value.
pub async fn resolve_env_value(
    secrets: Option<&dyn SecretValues>,
    var: &str,
    value: &str,
) -> Result<String, Error> {
    let Some(name) = value.strip_prefix(SECRET_REFERENCE_PREFIX) else {
        return Ok(value.to_owned());
    };
    let Some(secrets) = secrets else {
        return Err(Error::Start(format!(
            "environment variable {var} references secret {name}, but this server keeps no secrets"
        )));
    };
    match secrets.value(name).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(Error::Start(format!(
            "environment variable {var} references secret {name}, which does not exist \
             (create it with `berth secrets put {name}`)"
        ))),
        Err(e) => Err(Error::Start(format!(
            "environment variable {var} references secret {name}, which could not be read: {e}"
        ))),
    }
}

/// A session's workload access token, renewed before it expires.
struct SessionToken {
    issuer: Arc<dyn WorkloadTokens>,
    workload: String,
    user: Option<String>,
    current: Mutex<(HeaderValue, i64)>,
}

/// A token is renewed once it has less than this left (it lives an hour).
const TOKEN_RENEW_SECS: i64 = 300;

impl SessionToken {
    fn mint(
        issuer: &dyn WorkloadTokens,
        workload: &str,
        user: Option<&str>,
    ) -> Option<(HeaderValue, i64)> {
        let (token, expires) = issuer.token(workload, user);
        HeaderValue::from_str(&token).ok().map(|v| (v, expires))
    }

    fn header(&self) -> HeaderValue {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.1 - now_millis() / 1000 < TOKEN_RENEW_SECS
            && let Some(fresh) =
                Self::mint(self.issuer.as_ref(), &self.workload, self.user.as_deref())
        {
            *current = fresh;
        }
        current.0.clone()
    }
}

/// Options of the session layer (backend-neutral; where agents run is the backend's business).
#[derive(Clone)]
pub struct SessionOptions {
    /// Where agent logs of ended sessions are kept.
    pub logs_dir: PathBuf,
    /// How long an agent may take to answer its first `/ping`.
    pub start_timeout: Duration,
    /// How often `/ping` is polled.
    pub ping_interval: Duration,
    /// Pre-started agents kept per serving version.
    pub warm_pool: usize,
    /// The longest a warm pool's refill waits for the answer of the call that took its agent
    /// ([`SPARE_DEFER`] in a server).
    pub spare_defer: Duration,
    /// Environment given to every agent (region and such).
    pub env: Vec<(String, String)>,
    /// Issues the credentials a runtime's agents sign with (scoped to that runtime).
    pub credentials: Option<Arc<CredentialIssuer>>,
    /// Issues the workload access token each invocation carries to the agent.
    pub workload_tokens: Option<Arc<dyn WorkloadTokens>>,
    /// Issues each sandbox's model gateway key (`None`: no gateway, agents get no model
    /// endpoints from Berth).
    pub gateway_keys: Option<Arc<GatewayKeyIssuer>>,
    /// Resolves `berth-secret:NAME` environment variables at each sandbox start.
    pub secrets: Option<Arc<dyn SecretValues>>,
    /// Caps on agents held and on new sessions per second.
    pub quotas: Quotas,
    /// Region and account, for the ARNs agents are told (`cloud.resource_id`).
    pub partition: berth_types::Partition,
}

pub use crate::backend::PING_BODY_MAX;
pub use crate::backend::namespace::{AGENT_API_PORT, ApiServer};

/// Returns `(access key id, secret)` for a runtime's sandboxes.
pub type CredentialIssuer = dyn Fn(&str) -> (String, String) + Send + Sync;

/// Returns the model gateway key of a sandbox (by its instance id).
pub type GatewayKeyIssuer = dyn Fn(&str) -> String + Send + Sync;

/// Why an invocation could not reach the agent. Maps to `RuntimeClientError` (424) unless noted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The version could not be prepared or the sandbox would not start.
    #[error("the agent could not be started: {0}")]
    Start(String),
    /// The agent did not answer `/ping` in time.
    #[error("the agent did not become healthy within {0:?}")]
    StartTimeout(Duration),
    /// The agent's process exited.
    #[error("the agent exited: {0}")]
    Crashed(String),
    /// The agent did not answer or answered something that is not HTTP.
    #[error("the agent did not answer: {0}")]
    Unreachable(String),
    /// The session was stopped while the request was waiting.
    #[error("the session was stopped")]
    Stopped,
    /// No such live session (StopRuntimeSession): ResourceNotFoundException.
    #[error("no live session {0}")]
    NotFound(String),
    /// A cap on live sessions is reached: ServiceQuotaExceededException.
    #[error("{0}")]
    QuotaExceeded(String),
    /// Sessions are being opened faster than allowed: ThrottlingException.
    #[error("{0}")]
    Throttled(String),
    /// A runtime or session id that cannot be one: ValidationException.
    #[error("{0}")]
    Invalid(String),
    /// The backend could not do what was asked of a live session (exec, logs).
    #[error(transparent)]
    Backend(#[from] crate::backend::Error),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Live(m) => Error::QuotaExceeded(m),
            Refusal::Rate(m) => Error::Throttled(m),
        }
    }
}

/// A streamed response body.
pub type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// State of a session as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Serving an invocation now (or the agent reports HealthyBusy).
    Busy,
    /// Alive, waiting for work.
    Idle,
    /// Being torn down.
    Ending,
}

/// One row of `berth sessions list`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Runtime id.
    pub runtime_id: String,
    /// Session id.
    pub session_id: String,
    /// Version the session runs (fixed for its life).
    pub version: u32,
    /// Endpoint it was opened through.
    pub endpoint: String,
    /// `X-Amzn-Bedrock-AgentCore-Runtime-User-Id` of the first invocation.
    pub user_id: Option<String>,
    /// When it started.
    pub started_at: EpochMillis,
    /// Last invocation or busy report.
    pub last_activity_at: EpochMillis,
    /// Busy, idle or ending.
    pub state: State,
    /// Invocations in flight.
    pub in_flight: usize,
    /// Where its agent runs (backend, instance, and a host pid where there is one).
    #[serde(flatten)]
    pub placement: crate::backend::Placement,
}

/// Which version a new session runs, and through which endpoint it came.
#[derive(Debug, Clone)]
pub struct Target {
    /// The runtime.
    pub runtime: Runtime,
    /// The version chosen for the session.
    pub version: RuntimeVersion,
    /// Endpoint name.
    pub endpoint: String,
}

type Key = (String, String);

/// A backend's agent and its place under the quotas.
struct Held {
    agent: Box<dyn Agent>,
    slot: Slot,
}

/// A live session.
pub struct Session {
    runtime_id: String,
    session_id: String,
    version: u32,
    endpoint: String,
    user_id: Option<String>,
    started_at: EpochMillis,
    last_activity: AtomicI64,
    in_flight: AtomicUsize,
    busy_reported: std::sync::atomic::AtomicBool,
    held: Held,
    /// The backend's id of the agent (`Placement::instance`), kept so `sandbox_owner` compares
    /// without asking the backend per session.
    instance: String,
    /// The version's protocol, port and path: where invocations go and how `/ping` is read.
    protocol: Protocol,
    header_allowlist: Vec<String>,
    /// What every call's agent request carries when the caller sent no baggage of its own:
    /// made once, cloned per call (a reference count).
    fixed: FixedHeaders,
    /// Who this session's spans belong to, shared by every call's span.
    attribution: Arc<berth_trace::Attribution>,
    /// The workload access token its calls carry to the agent.
    token: Option<SessionToken>,
    /// Its agent came from the warm pool (it was not started for this session).
    warm_start: bool,
    /// Cancelled once the call that opened the session has its answer ([`Session::answered`]):
    /// the warm pool's refill waits for it.
    answered: CancellationToken,
    idle: Duration,
    max_lifetime: Duration,
    ended: CancellationToken,
    /// Set by the first `end`, so teardown runs once however many paths ask for it.
    ending: std::sync::atomic::AtomicBool,
}

struct Inner {
    opts: SessionOptions,
    backend: Arc<dyn SessionBackend>,
    prepare: Arc<dyn Prepare>,
    live: Mutex<HashMap<Key, Arc<OnceCell<Arc<Session>>>>>,
    pools: Mutex<HashMap<(String, u32), VecDeque<Held>>>,
    filling: Mutex<std::collections::HashSet<(String, u32)>>,
    /// Warm starts in progress at once, at most one per CPU. Spares are background work: a burst
    /// of new runtimes (or a restart with many) must not start so many agents at once that none
    /// becomes healthy within its start timeout, nor starve the invocations' own starts, which
    /// never wait for this.
    warm_starts: tokio::sync::Semaphore,
    tasks: TaskTracker,
    /// The runtime the supervisor was made on, where its tasks (starts, supervision, warm-pool
    /// refills) run: an invocation on an edge runtime (`berth_server::edge`) that opens a
    /// session leaves that runtime serving connections only, and a session outlives the edge.
    home: Option<tokio::runtime::Handle>,
    shutdown: CancellationToken,
    admission: Admission,
}

/// The session supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

/// The agent request headers that are the same on every call of a session.
struct FixedHeaders {
    /// `x-amzn-bedrock-agentcore-runtime-session-id`.
    session_id: Option<HeaderValue>,
    /// `baggage: session.id=<id>`.
    baggage: Option<HeaderValue>,
}

/// Headers of the AgentCore contract passed to the agent as they come.
const PASSED: &[&str] = &[
    "content-type",
    "accept",
    "x-amzn-bedrock-agentcore-runtime-session-id",
    "x-amzn-bedrock-agentcore-runtime-user-id",
    "x-amzn-trace-id",
    "traceparent",
    "tracestate",
    "baggage",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    // AgentCore Identity: where the agent's 3LO flows return the user (the SDK's app reads it
    // into its context for `@requires_access_token`); checked by the server's data plane.
    "oauth2callbackurl",
];

/// Agent response headers passed back to the caller besides the content type: the MCP session
/// and protocol version (`InvokeAgentRuntimeResponse` models both).
const RETURNED: [HeaderName; 4] = [
    http::header::CONTENT_TYPE,
    http::header::CACHE_CONTROL,
    HeaderName::from_static("mcp-session-id"),
    HeaderName::from_static("mcp-protocol-version"),
];

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

/// A file-system and cgroup safe sandbox id for a session.
fn sandbox_id(runtime_id: &str, session_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(&Sha256::digest(format!("{runtime_id}\0{session_id}").as_bytes())[..6]);
    let short: String = runtime_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(40)
        .collect();
    format!("{short}-{h}-{}", berth_types::random_alnum(4))
}

impl Sessions {
    /// Creates the supervisor over `backend`. Agents it starts are stopped by
    /// [`Sessions::shutdown`].
    pub fn new(
        opts: SessionOptions,
        backend: Arc<dyn SessionBackend>,
        prepare: Arc<dyn Prepare>,
        shutdown: CancellationToken,
    ) -> Self {
        let opts_quotas = opts.quotas;
        Self {
            inner: Arc::new(Inner {
                opts,
                backend,
                prepare,
                live: Mutex::new(HashMap::new()),
                pools: Mutex::new(HashMap::new()),
                filling: Mutex::new(Default::default()),
                warm_starts: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(1, usize::from),
                ),
                tasks: TaskTracker::new(),
                home: tokio::runtime::Handle::try_current().ok(),
                shutdown,
                admission: Admission::new(opts_quotas),
            }),
        }
    }

    /// The live session `session_id` of `runtime_id`, if it is running.
    pub fn existing(&self, runtime_id: &str, session_id: &str) -> Option<Arc<Session>> {
        let cell = self
            .live()
            .get(&(runtime_id.to_owned(), session_id.to_owned()))
            .cloned()?;
        // An agent that exited is not a session to hand out, even before its supervisor has
        // noticed: the next invocation must start a fresh sandbox, not fail on the dead one.
        cell.get().filter(|s| s.alive()).cloned()
    }

    /// Who a sandbox belongs to, by its backend instance id ([`crate::backend::Placement::instance`]): the
    /// live session it serves, or, for a warm spare no session has adopted yet, its runtime
    /// and version alone. Read at the moment of asking, so data a spare sends after adoption
    /// is its session's.
    pub fn sandbox_owner(&self, instance: &str) -> Option<SandboxOwner> {
        let live = self.live();
        for cell in live.values() {
            let Some(s) = cell.get() else { continue };
            if s.instance == instance {
                return Some(SandboxOwner {
                    runtime_id: s.runtime_id.clone(),
                    version: s.version,
                    endpoint: s.endpoint.clone(),
                    session_id: Some(s.session_id.clone()),
                    user_id: s.user_id.clone(),
                });
            }
        }
        drop(live);
        let pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        for ((runtime_id, version), q) in pools.iter() {
            if q.iter().any(|h| h.agent.placement().instance == instance) {
                return Some(SandboxOwner {
                    runtime_id: runtime_id.clone(),
                    version: *version,
                    endpoint: String::new(),
                    session_id: None,
                    user_id: None,
                });
            }
        }
        None
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<OnceCell<Arc<Session>>>>> {
        // A panic while holding this lock would be a bug in a few lines of map code; recover the map.
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session for `session_id`, starting its sandbox on `target`'s version if needed.
    pub async fn open(
        &self,
        target: &Target,
        session_id: &str,
        user_id: Option<&str>,
    ) -> Result<Arc<Session>, Error> {
        let key = (target.runtime.id.clone(), session_id.to_owned());
        loop {
            let cell = self
                .live()
                .entry(key.clone())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone();
            let session = match cell.get() {
                Some(s) => s.clone(),
                None => self.start_in(&key, &cell, target, user_id).await?,
            };
            if session.alive() {
                return Ok(session);
            }
            // It ended between lookup and use: drop the stale slot and start afresh.
            self.forget(&key, &cell);
        }
    }

    /// Starts the session of `cell` in a task of its own and waits for it. A caller that leaves
    /// (the edge drops a request whose client hangs up) does not cut a sandbox's start short,
    /// which would leave its directories, cgroups and processes to the next start's sweep; the
    /// session serves the caller's retry, or idles out. A failed start removes the entry.
    async fn start_in(
        &self,
        key: &Key,
        cell: &Arc<OnceCell<Arc<Session>>>,
        target: &Target,
        user_id: Option<&str>,
    ) -> Result<Arc<Session>, Error> {
        let this = self.clone();
        let (key, cell, target) = (key.clone(), cell.clone(), target.clone());
        let user_id = user_id.map(str::to_owned);
        let started = self.spawn(async move {
            let res = cell
                .get_or_try_init(|| this.start(&target, &key.1, user_id.as_deref()))
                .await
                .cloned();
            if res.is_err() {
                this.forget(&key, &cell);
            }
            res
        });
        started
            .await
            .map_err(|e| Error::Start(format!("the session's start failed: {e}")))?
    }

    /// Runs `task` on the supervisor's own runtime, tracked for [`Sessions::shutdown`].
    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.inner.home {
            Some(home) => self.inner.tasks.spawn_on(task, home),
            None => self.inner.tasks.spawn(task),
        }
    }

    /// Sessions being opened now: entries whose agent is still starting.
    pub fn opening(&self) -> usize {
        self.live().values().filter(|c| c.get().is_none()).count()
    }

    fn forget(&self, key: &Key, cell: &Arc<OnceCell<Arc<Session>>>) {
        let mut live = self.live();
        if live.get(key).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            live.remove(key);
        }
    }

    async fn start(
        &self,
        target: &Target,
        session_id: &str,
        user_id: Option<&str>,
    ) -> Result<Arc<Session>, Error> {
        let spec: RuntimeSpec = serde_json::from_value(target.version.spec.clone())
            .map_err(|e| Error::Start(format!("unreadable version configuration: {e}")))?;
        self.inner.admission.admit_new_session(&target.runtime.id)?;
        let warm = self.take_warm(&target.runtime.id, target.version.version);
        let warm_start = warm.is_some();
        let held = match warm {
            Some(a) => a,
            None => {
                let slot = self.reserve_for_session(&target.runtime.id).await?;
                self.start_agent(
                    target,
                    &spec,
                    sandbox_id(&target.runtime.id, session_id),
                    slot,
                    false,
                )
                .await?
            }
        };
        let answered = CancellationToken::new();
        self.refill_after(target.clone(), answered.clone());
        let token = match &self.inner.opts.workload_tokens {
            Some(issuer) => {
                if let Err(e) = issuer.prepare(&target.runtime.name).await {
                    warn!(runtime_id = %target.runtime.id, error = %e, "no workload identity: the agent gets no workload access token");
                }
                SessionToken::mint(issuer.as_ref(), &target.runtime.name, user_id).map(|current| {
                    SessionToken {
                        issuer: issuer.clone(),
                        workload: target.runtime.name.clone(),
                        user: user_id.map(str::to_owned),
                        current: Mutex::new(current),
                    }
                })
            }
            None => None,
        };
        let (idle, max) = Lifecycle::effective(spec.lifecycle_configuration.as_ref());
        let now = now_millis();
        let session = Arc::new(Session {
            runtime_id: target.runtime.id.clone(),
            session_id: session_id.to_owned(),
            version: target.version.version,
            endpoint: target.endpoint.clone(),
            user_id: user_id.map(str::to_owned),
            started_at: now,
            last_activity: AtomicI64::new(now),
            in_flight: AtomicUsize::new(0),
            busy_reported: Default::default(),
            instance: held.agent.placement().instance,
            held,
            protocol: spec.protocol(),
            header_allowlist: spec
                .header_allowlist()
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            fixed: FixedHeaders {
                session_id: HeaderValue::from_str(session_id).ok(),
                baggage: HeaderValue::from_str(&berth_trace::session_baggage(None, session_id))
                    .ok(),
            },
            attribution: Arc::new(berth_trace::Attribution {
                runtime_id: target.runtime.id.clone(),
                version: target.version.version,
                endpoint: target.endpoint.clone(),
                session_id: Some(session_id.to_owned()),
                actor: user_id.map(str::to_owned),
            }),
            token,
            warm_start,
            answered,
            idle: Duration::from_secs(idle),
            max_lifetime: Duration::from_secs(max),
            ended: CancellationToken::new(),
            ending: Default::default(),
        });
        info!(runtime_id = %session.runtime_id, session_id, version = session.version, instance = %session.held.agent.placement().instance, "session started");
        let this = self.clone();
        let s = session.clone();
        self.spawn(async move { this.supervise(s).await });
        Ok(session)
    }

    /// A slot for a new session's sandbox. Warm sandboxes give way: a session a caller waits for
    /// matters more than a spare, so at a cap one warm sandbox (of this runtime first) is
    /// destroyed to make room.
    async fn reserve_for_session(&self, runtime_id: &str) -> Result<Slot, Error> {
        loop {
            match self.inner.admission.reserve(runtime_id) {
                Ok(slot) => return Ok(slot),
                Err(refusal) => {
                    let Some(victim) = self.evict_warm(runtime_id) else {
                        warn!(runtime_id, reason = %refusal, "session refused by quota");
                        return Err(refusal.into());
                    };
                    if let Err(e) = victim.agent.stop(Duration::ZERO).await {
                        warn!(error = %e, "stopping an evicted warm agent");
                    }
                    victim.slot.release();
                }
            }
        }
    }

    /// Takes one warm sandbox out of the pools, of `runtime_id` if it has one, else any.
    fn evict_warm(&self, runtime_id: &str) -> Option<Held> {
        let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        let key = pools
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| k)
            .max_by_key(|(r, _)| r == runtime_id)
            .cloned()?;
        pools.get_mut(&key).and_then(VecDeque::pop_back)
    }

    /// Starts an agent for a version (a spare for a warm pool when `spare`) and waits until it
    /// answers `/ping`.
    async fn start_agent(
        &self,
        target: &Target,
        spec: &RuntimeSpec,
        id: String,
        slot: Slot,
        spare: bool,
    ) -> Result<Held, Error> {
        let prepared = self
            .inner
            .prepare
            .prepare(&target.runtime, &target.version)
            .await
            .map_err(|e| Error::Start(e.to_string()))?;
        let o = &self.inner.opts;
        let backend = &self.inner.backend;
        let mut env = o.env.clone();
        let protocol = spec.protocol();
        if let Some(url) = backend.api_url() {
            // The data plane only: the control plane is not for agents (and their credentials
            // are refused there).
            env.push(("AWS_ENDPOINT_URL_BEDROCK_AGENTCORE".into(), url.clone()));
            // The CloudWatch Logs API (the SDK's evaluation client, ADOT's EMF exporter).
            env.push(("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS".into(), url.clone()));
            // Where this runtime is invoked, as AgentCore tells A2A agents (the SDK's A2A app
            // advertises it in its agent card): the address agents reach Berth at.
            env.push((
                "AGENTCORE_RUNTIME_URL".into(),
                format!("{url}/runtimes/{}/invocations/", target.runtime.id),
            ));
            // Where to export traces and logs, and what to call themselves (the env contract
            // of AgentCore-hosted agents; the runtime's own variables, added below, win).
            env.extend(berth_trace::agent_env(&berth_trace::AgentEnv {
                runtime_name: &target.runtime.name,
                runtime_id: &target.runtime.id,
                endpoint: &target.endpoint,
                // The endpoint's ARN, as AgentCore's own agents report it: the starter toolkit's
                // `agentcore obs` finds a runtime's spans by `runtime/<id>/` in it.
                resource_arn: &o
                    .partition
                    .endpoint_arn(&target.runtime.id, &target.endpoint),
                otlp_endpoint: &url,
            }));
            if let Some(issue) = &o.gateway_keys {
                // The model gateway: each SDK's own variables, so agents written for the
                // providers reach Berth unchanged, with a key that names this sandbox and
                // means nothing anywhere else (the runtime's own variables, added below, win).
                let key = issue(&id);
                env.extend([
                    (
                        "ANTHROPIC_BASE_URL".into(),
                        format!("{url}/gateway/anthropic"),
                    ),
                    ("ANTHROPIC_API_KEY".into(), key.clone()),
                    ("OPENAI_BASE_URL".into(), format!("{url}/gateway/openai/v1")),
                    ("OPENAI_API_KEY".into(), key),
                    // Bedrock clients sign with the runtime credentials below (botocore sends a
                    // bearer token only over https).
                    (
                        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME".into(),
                        format!("{url}/gateway/bedrock"),
                    ),
                ]);
            }
            env.push(("BERTH_ENDPOINT_URL".into(), url));
        }
        if let Some(issue) = &o.credentials {
            let (id, secret) = issue(&target.runtime.id);
            env.push(("AWS_ACCESS_KEY_ID".into(), id));
            env.push(("AWS_SECRET_ACCESS_KEY".into(), secret));
        }
        env.extend(prepared.env.iter().cloned());
        if let Some(vars) = &spec.environment_variables {
            for (k, v) in vars {
                let v = resolve_env_value(o.secrets.as_deref(), k, v).await?;
                env.push((k.clone(), v));
            }
        }
        let agent_spec = AgentSpec {
            id,
            runtime_id: target.runtime.id.clone(),
            code_dir: prepared.code_dir,
            argv: prepared.argv,
            env,
            visible: prepared.visible,
            image: prepared.image,
            public_network: spec.public_network(),
            port: protocol.port,
        };
        let started = if spare {
            backend.warm(agent_spec).await
        } else {
            backend.start(agent_spec).await
        };
        let agent = started.map_err(|e| Error::Start(e.to_string()))?;
        let held = Held { agent, slot };
        match self.wait_healthy(held.agent.as_ref(), protocol.kind).await {
            Ok(()) => Ok(held),
            Err(e) => {
                let tail = log_tail(held.agent.as_ref()).await;
                if let Err(d) = held.agent.stop(Duration::ZERO).await {
                    warn!(error = %d, "stopping a failed agent");
                }
                Err(match e {
                    Error::Crashed(m) => Error::Crashed(format!("{m}{tail}")),
                    Error::StartTimeout(d) => Error::Start(format!(
                        "the agent did not become healthy within {d:?}{tail}"
                    )),
                    other => other,
                })
            }
        }
    }

    async fn wait_healthy(&self, agent: &dyn Agent, kind: ServerProtocol) -> Result<(), Error> {
        let timeout = self.inner.opts.start_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Duration::from_millis(2);
        loop {
            // Each probe is bounded by the start deadline itself, so an agent that hangs on /ping
            // or streams an endless body cannot stretch the start past it.
            let probe = probe(
                agent,
                deadline.min(tokio::time::Instant::now() + PING_TIMEOUT),
                kind,
            );
            tokio::select! {
                info = agent.exit().exited() => return Err(Error::Crashed(format!("{info} before answering /ping"))),
                _ = self.inner.shutdown.cancelled() => return Err(Error::Stopped),
                r = probe => if r.is_ok() { return Ok(()) },
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::StartTimeout(timeout));
            }
            // Re-poll the agent's port with a short capped backoff: the condition is the agent
            // answering, and the deadline bounds the wait.
            tokio::select! {
                info = agent.exit().exited() => return Err(Error::Crashed(format!("{info} before answering /ping"))),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    fn take_warm(&self, runtime_id: &str, version: u32) -> Option<Held> {
        let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .get_mut(&(runtime_id.to_owned(), version))
            .and_then(VecDeque::pop_front)
    }

    /// [`Sessions::refill`] once the call that opened a session has its answer (`answered`), or
    /// [`SessionOptions::spare_defer`] later at the latest. A spare's start is a clone of this
    /// process and its agent's start: begun beside the call that took the warm agent, it took
    /// the CPU and the page tables from the very call the pool was there to serve (B4's warm
    /// hit: 6.8 ms to the first byte with it, 3.6 ms without; bench/notes/B4.md).
    fn refill_after(&self, target: Target, answered: CancellationToken) {
        if self.inner.opts.warm_pool == 0 {
            return;
        }
        let (this, defer) = (self.clone(), self.inner.opts.spare_defer);
        self.spawn(async move {
            tokio::select! {
                _ = answered.cancelled() => {}
                _ = tokio::time::sleep(defer) => {}
                _ = this.inner.shutdown.cancelled() => return,
            }
            this.refill(target);
        });
    }

    /// Tops the warm pool of `target`'s version up to its size, in the background.
    pub fn refill(&self, target: Target) {
        let want = self.inner.opts.warm_pool;
        if want == 0 {
            return;
        }
        let key = (target.runtime.id.clone(), target.version.version);
        if !self
            .inner
            .filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            return;
        }
        let this = self.clone();
        self.spawn(async move {
            let spec: Result<RuntimeSpec, _> = serde_json::from_value(target.version.spec.clone());
            if let Ok(spec) = spec {
                loop {
                    let have = this.inner.pools.lock().unwrap_or_else(|p| p.into_inner()).get(&key).map_or(0, VecDeque::len);
                    if have >= want || this.inner.shutdown.is_cancelled() {
                        break;
                    }
                    let permit = tokio::select! {
                        p = this.inner.warm_starts.acquire() => p,
                        _ = this.inner.shutdown.cancelled() => break,
                    };
                    let Ok(_permit) = permit else { break };
                    let id = sandbox_id(&key.0, "warm");
                    // A spare never pushes past a cap: without a free slot the pool stays short.
                    let slot = match this.inner.admission.reserve(&key.0) {
                        Ok(slot) => slot,
                        Err(refusal) => {
                            tracing::debug!(runtime_id = %key.0, reason = %refusal, "warm pool not refilled");
                            break;
                        }
                    };
                    match this.start_agent(&target, &spec, id, slot, true).await {
                        Ok(held) => {
                            // Decided under the pool lock, so shutdown's final drain cannot miss it.
                            let mut pools = this.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
                            if this.inner.shutdown.is_cancelled() {
                                drop(pools);
                                let _ = held.agent.stop(Duration::ZERO).await;
                                break;
                            }
                            pools.entry(key.clone()).or_default().push_back(held);
                        }
                        Err(e) => {
                            warn!(runtime_id = %key.0, version = key.1, error = %e, "warm pool refill failed");
                            break;
                        }
                    }
                }
            }
            this.inner.filling.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        });
    }

    async fn supervise(&self, s: Arc<Session>) {
        let o = &self.inner.opts;
        // maxLifetime is a deadline raced against everything below, so neither a hung /ping nor
        // a never-ending invocation outlives it.
        let lifetime_end = tokio::time::Instant::now() + s.max_lifetime;
        let mut failures = 0u32;
        let reason = loop {
            tokio::select! {
                _ = s.ended.cancelled() => break "stopped".to_owned(),
                _ = self.inner.shutdown.cancelled() => break "server shutdown".to_owned(),
                info = s.held.agent.exit().exited() => break format!("agent exited: {info}"),
                _ = tokio::time::sleep_until(lifetime_end) => break "max lifetime reached".to_owned(),
                _ = tokio::time::sleep(o.ping_interval) => {}
            }
            let now = now_millis();
            if s.in_flight.load(Ordering::Acquire) > 0 {
                s.last_activity.store(now, Ordering::Release);
                continue;
            }
            let probe = probe(
                s.held.agent.as_ref(),
                lifetime_end.min(tokio::time::Instant::now() + PING_TIMEOUT),
                s.protocol.kind,
            );
            let answer = tokio::select! {
                _ = s.ended.cancelled() => break "stopped".to_owned(),
                _ = self.inner.shutdown.cancelled() => break "server shutdown".to_owned(),
                r = probe => r,
            };
            match answer {
                Ok(busy) => {
                    failures = 0;
                    s.busy_reported.store(busy, Ordering::Release);
                    if busy {
                        s.last_activity.store(now, Ordering::Release);
                    } else if now - s.last_activity.load(Ordering::Acquire)
                        >= s.idle.as_millis() as i64
                    {
                        break "idle timeout".to_owned();
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures >= 3 {
                        break format!("agent stopped answering /ping: {e}");
                    }
                }
            }
        };
        self.end(&s, &reason).await;
    }

    async fn end(&self, s: &Arc<Session>, reason: &str) {
        s.ended.cancel();
        if s.ending.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let key = (s.runtime_id.clone(), s.session_id.clone());
            let mut live = self.live();
            if live
                .get(&key)
                .and_then(|c| c.get())
                .is_some_and(|x| Arc::ptr_eq(x, s))
            {
                live.remove(&key);
            }
        }
        self.keep_log(s).await;
        if let Err(e) = s.held.agent.stop(STOP_GRACE).await {
            warn!(runtime_id = %s.runtime_id, session_id = %s.session_id, error = %e, "agent teardown failed");
        }
        // Streams may keep the session alive a while longer; its place under the caps is free now.
        s.held.slot.release();
        info!(runtime_id = %s.runtime_id, session_id = %s.session_id, reason, "session ended");
    }

    /// Copies the agent log out of the backend before the agent is stopped, for `berth logs`.
    async fn keep_log(&self, s: &Session) {
        let dir = self.inner.opts.logs_dir.join(&s.runtime_id);
        if tokio::fs::create_dir_all(&dir).await.is_ok() {
            let dest = dir.join(format!("{}.log", log_name(&s.session_id)));
            if let Err(e) = copy_log(s.held.agent.as_ref(), &dest).await {
                warn!(error = %e, "keeping the agent log failed");
            }
        }
    }

    /// `StopRuntimeSession`: ends a session now, cutting its streams.
    pub async fn stop(&self, runtime_id: &str, session_id: &str) -> Result<(), Error> {
        let s = self
            .existing(runtime_id, session_id)
            .ok_or_else(|| Error::NotFound(session_id.to_owned()))?;
        // supervise() notices the cancellation and tears down; do it here too so the caller
        // returns only once the sandbox is gone.
        self.end(&s, "stopped by request").await;
        Ok(())
    }

    /// Spare agents in the warm pool of a runtime's version now.
    pub fn spares(&self, runtime_id: &str, version: u32) -> usize {
        let pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .get(&(runtime_id.to_owned(), version))
            .map_or(0, VecDeque::len)
    }

    /// Live sessions, optionally of one runtime.
    pub fn list(&self, runtime_id: Option<&str>) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .live()
            .values()
            .filter_map(|c| c.get().cloned())
            .filter(|s| runtime_id.is_none_or(|r| r == s.runtime_id))
            .map(|s| s.info())
            .collect();
        out.sort_by_key(|s| s.started_at);
        out
    }

    /// The agent log of a session: live from its backend, or kept after it ended; `None` when
    /// there is neither.
    pub async fn open_log(
        &self,
        runtime_id: &str,
        session_id: &str,
    ) -> Result<Option<LogReader>, Error> {
        check_ids(runtime_id, Some(session_id))?;
        if let Some(s) = self.existing(runtime_id, session_id) {
            return Ok(s.held.agent.logs().await.ok());
        }
        let p = self
            .inner
            .opts
            .logs_dir
            .join(runtime_id)
            .join(format!("{}.log", log_name(session_id)));
        match tokio::fs::File::open(&p).await {
            Ok(f) => Ok(Some(Box::pin(f))),
            Err(_) => Ok(None),
        }
    }

    /// Runs a command in a live session's agent environment (see [`Session::exec`]).
    pub async fn exec(
        &self,
        runtime_id: &str,
        session_id: &str,
        req: &ExecRequest,
    ) -> Result<ExecStream, Error> {
        check_ids(runtime_id, Some(session_id))?;
        let s = self
            .existing(runtime_id, session_id)
            .ok_or_else(|| Error::NotFound(session_id.to_owned()))?;
        s.exec(req).await
    }

    /// Sessions of a runtime with a log: live ones, then those whose log was kept.
    pub async fn sessions_with_logs(&self, runtime_id: &str) -> Result<Vec<String>, Error> {
        check_ids(runtime_id, None)?;
        let mut names: Vec<String> = self
            .list(Some(runtime_id))
            .into_iter()
            .map(|i| i.session_id)
            .collect();
        let dir = self.inner.opts.logs_dir.join(runtime_id);
        if let Ok(mut rd) = tokio::fs::read_dir(&dir).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                let session = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".log"))
                    .and_then(session_of_log_name);
                if let Some(session) = session
                    && !names.contains(&session)
                {
                    names.push(session);
                }
            }
        }
        Ok(names)
    }

    /// Ends every session (and warm sandbox) of a runtime, or of one of its versions.
    pub async fn retire(&self, runtime_id: &str, version: Option<u32>) {
        let victims: Vec<Arc<Session>> = self
            .live()
            .values()
            .filter_map(|c| c.get().cloned())
            .filter(|s| s.runtime_id == runtime_id && version.is_none_or(|v| v == s.version))
            .collect();
        futures::future::join_all(
            victims
                .iter()
                .map(|s| self.end(s, "runtime or version deleted")),
        )
        .await;
        let warm: Vec<Held> = {
            let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<_> = pools
                .keys()
                .filter(|(r, v)| r == runtime_id && version.is_none_or(|x| x == *v))
                .cloned()
                .collect();
            keys.into_iter()
                .flat_map(|k| pools.remove(&k).unwrap_or_default())
                .collect()
        };
        for a in warm {
            let _ = a.agent.stop(Duration::ZERO).await;
        }
    }

    /// Ends every session and warm sandbox; called once at shutdown, after the shutdown token
    /// was cancelled (which stops supervisors and refills).
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Session>> = self
            .live()
            .values()
            .filter_map(|c| c.get().cloned())
            .collect();
        // Together: each agent may take up to its grace to flush and exit.
        futures::future::join_all(all.iter().map(|s| self.end(s, "server shutdown"))).await;
        // Refills in flight finish (or give up) first, so the drain below sees every sandbox.
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        let warm: Vec<Held> = {
            let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
            pools.drain().flat_map(|(_, v)| v).collect()
        };
        for a in warm {
            let _ = a.agent.stop(Duration::ZERO).await;
        }
    }
}

/// Whether `id` can be a runtime id (`<name>-<10 alphanumerics>`, AgentCore's pattern). Checked
/// before an id becomes part of a path.
pub fn valid_runtime_id(id: &str) -> bool {
    let Some((name, suffix)) = id.rsplit_once('-') else {
        return false;
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 100
        && suffix.len() == 10
        && suffix.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Whether `id` can be a session id: 1 to 256 printable ASCII characters (AgentCore asks 33 or
/// more of new sessions; shorter ones name nothing, but are not malformed).
pub fn valid_session_id(id: &str) -> bool {
    (1..=256).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn check_ids(runtime_id: &str, session_id: Option<&str>) -> Result<(), Error> {
    if !valid_runtime_id(runtime_id) {
        return Err(Error::Invalid(format!(
            "{runtime_id:?} is not a valid agent runtime id"
        )));
    }
    if let Some(s) = session_id
        && !valid_session_id(s)
    {
        return Err(Error::Invalid(format!("{s:?} is not a valid session id")));
    }
    Ok(())
}

/// The kept log's file name (without `.log`) for a session id: alphanumerics and `-` stay, every
/// other byte becomes `_` and two hex digits. Injective (`_` itself is escaped), so `X.alice` and
/// `X_alice` never share a file, and never a path separator or `..`.
fn log_name(session_id: &str) -> String {
    let mut out = String::with_capacity(session_id.len());
    for b in session_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The session id a kept log's file name stands for; `None` for names [`log_name`] never makes.
fn session_of_log_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = name.get(i + 1..i + 3)?;
                let b = u8::from_str_radix(hex, 16).ok()?;
                if b.is_ascii_alphanumeric() || b == b'-' {
                    return None;
                }
                out.push(b);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The last 2000 bytes of an agent's log, for a start failure's message.
async fn log_tail(agent: &dyn Agent) -> String {
    use tokio::io::AsyncReadExt;
    let Ok(mut r) = agent.logs().await else {
        return String::new();
    };
    // Keep a bounded window: the log may be large, the message wants only its end.
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                let excess = tail.len().saturating_sub(2000);
                tail.drain(..excess);
            }
        }
    }
    if tail.is_empty() {
        return String::new();
    }
    format!("; agent output: {}", String::from_utf8_lossy(&tail).trim())
}

/// Copies an agent's log to `dest`, created `0600` like every file under the data dir.
async fn copy_log(agent: &dyn Agent, dest: &std::path::Path) -> std::io::Result<u64> {
    let mut src = agent.logs().await.map_err(std::io::Error::other)?;
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dest)
        .await?;
    let n = tokio::io::copy(&mut src, &mut out).await?;
    use tokio::io::AsyncWriteExt;
    out.flush().await?;
    Ok(n)
}

/// `/ping` as the contract of the version's protocol has it. HTTP and AGUI agents must answer
/// `GET /ping` with a 2xx ([`Agent::ping`]). MCP and A2A servers need not serve `/ping` (the
/// MCP contract asks only for `POST /mcp`, and FastMCP serves nothing else): for them any HTTP
/// answer on their port shows the server is up, so a 404 or 405 counts as Healthy, while a 2xx
/// is read like the HTTP contract's (`HealthyBusy` keeps the session). No answer at all (nothing
/// listening, a hang past the deadline) and any other status fail, as for HTTP.
async fn probe(
    agent: &dyn Agent,
    deadline: tokio::time::Instant,
    kind: ServerProtocol,
) -> Result<bool, String> {
    if matches!(kind, ServerProtocol::Http | ServerProtocol::Agui) {
        return agent.ping(deadline).await;
    }
    let req = Request::get("http://127.0.0.1/ping")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let resp = agent.forward(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(Bytes::new());
        }
        if !status.is_success() {
            return Err(format!("status {status}"));
        }
        http_body_util::Limited::new(resp.into_body(), PING_BODY_MAX)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| format!("unreadable or oversized body (limit {PING_BODY_MAX} bytes): {e}"))
    };
    let body = tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| "timed out".to_owned())??;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    Ok(v.get("status").and_then(|s| s.as_str()) == Some("HealthyBusy"))
}

/// Where an A2A agent serves its card.
const AGENT_CARD_PATH: &str = "/.well-known/agent-card.json";

/// The URI of `path` on the agent (the authority is ignored by [`Agent::forward`]). The path
/// was validated against `ServerPath` (`/[A-Za-z0-9\-._~/%]*`), so it is a valid URI path.
fn agent_uri(path: &str) -> String {
    format!("http://127.0.0.1{path}")
}

/// The longest a live session's `/ping` may take, headers and body.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an ending session's agent has between SIGTERM and SIGKILL: enough for an
/// OpenTelemetry SDK's shutdown flush (the last spans of the session, which online evaluation
/// scores) and a web server's graceful exit, short enough that a stop stays prompt.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// The longest a warm pool's refill waits for the answer of the call that took its agent
/// ([`SessionOptions::spare_defer`]): a warm hit answers in milliseconds, and an agent slow to
/// its first byte does not keep the pool short for long.
pub const SPARE_DEFER: Duration = Duration::from_millis(100);

impl Session {
    /// Admin view.
    pub fn info(&self) -> SessionInfo {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        SessionInfo {
            runtime_id: self.runtime_id.clone(),
            session_id: self.session_id.clone(),
            version: self.version,
            endpoint: self.endpoint.clone(),
            user_id: self.user_id.clone(),
            started_at: self.started_at,
            last_activity_at: self.last_activity.load(Ordering::Acquire),
            state: if self.ended.is_cancelled() {
                State::Ending
            } else if in_flight > 0 || self.busy_reported.load(Ordering::Acquire) {
                State::Busy
            } else {
                State::Idle
            },
            in_flight,
            placement: self.held.agent.placement(),
        }
    }

    /// Neither ended nor exited: an agent that exited is not a session to hand out, even
    /// before its supervisor has noticed.
    fn alive(&self) -> bool {
        !self.ended.is_cancelled() && self.held.agent.exit().try_exit().is_none()
    }

    /// Endpoint the session was opened through.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Version this session runs.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether its agent came from the warm pool.
    pub fn warm_start(&self) -> bool {
        self.warm_start
    }

    /// Says that the call which opened this session has its answer (its head, or its failure):
    /// the warm pool's refill, held back until now, may start.
    pub fn answered(&self) {
        self.answered.cancel();
    }

    /// Who this session's spans belong to (runtime, version, endpoint, session, user).
    pub fn attribution(&self) -> &Arc<berth_trace::Attribution> {
        &self.attribution
    }

    /// Runs a command next to the session's agent (`Agent::exec`) and streams its output. The
    /// command counts as an invocation in flight until its stream ends (the session is busy,
    /// not idle), and ending the session cuts the stream (the backend kills the command with
    /// the agent).
    pub async fn exec(self: &Arc<Self>, req: &ExecRequest) -> Result<ExecStream, Error> {
        let guard = InFlight::new(self.clone());
        let stream = tokio::select! {
            _ = self.ended.cancelled() => return Err(Error::Stopped),
            r = self.held.agent.exec(req) => r?,
        };
        let session = self.clone();
        let ended = async move { session.ended.cancelled().await };
        let stopped = futures::stream::once(async {
            Err(crate::backend::Error::Io {
                context: "the command's session",
                source: io_err("the session was stopped"),
            })
        });
        // Cut at the session's end, with one error item saying why, unless the command's exit
        // came first; the in-flight guard lives as long as the stream.
        let relayed = stream
            .take_until(Box::pin(ended))
            .chain(stopped)
            .scan(false, |exited, item| {
                if *exited {
                    return futures::future::ready(None);
                }
                *exited = matches!(item, Ok(ExecEvent::Exit(_)));
                futures::future::ready(Some(item))
            })
            .map(move |item| {
                let _in_flight = &guard;
                item
            });
        Ok(relayed.boxed())
    }

    /// Opens a WebSocket to the agent's `/ws` (the contract's path on its port): sends the
    /// upgrade request with the contract headers and the client's WebSocket headers, and answers
    /// the agent's `101` with its upgrade still pending in the extensions (`hyper::upgrade::on`)
    /// and a [`Lease`] there too, which keeps the session busy and tells when it ends. Any other
    /// answer is returned as it is, its body streamed (the caller refuses it).
    pub async fn websocket(
        self: &Arc<Self>,
        headers: &HeaderMap,
        request_id: &str,
        traceparent: Option<&HeaderValue>,
    ) -> Result<Response<BodyStream>, Error> {
        let mut req = Request::get("http://127.0.0.1/ws")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        let h = req.headers_mut();
        self.contract_headers(h, headers, request_id, WS_PASSED, traceparent)?;
        h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        );
        let lease = Lease {
            _in_flight: Arc::new(InFlight::new(self.clone())),
            ended: self.ended.clone(),
        };
        let resp = tokio::select! {
            _ = self.ended.cancelled() => return Err(Error::Stopped),
            info = self.held.agent.exit().exited() => return Err(Error::Crashed(info.to_string())),
            r = self.held.agent.forward(req) => r.map_err(|e| Error::Unreachable(e.to_string()))?,
        };
        let (mut parts, body) = resp.into_parts();
        parts.extensions.insert(lease);
        let stream = body
            .into_data_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed();
        Ok(Response::from_parts(parts, stream))
    }

    /// The headers the agent gets: the contract's, `also`, the runtime's allow-listed custom
    /// ones (AgentCore's rule) as the caller sent them, then the session and request ids, and
    /// `traceparent` in place of the caller's when Berth records a span of the call.
    fn contract_headers(
        &self,
        h: &mut HeaderMap,
        headers: &HeaderMap,
        request_id: &str,
        also: &[&str],
        traceparent: Option<&HeaderValue>,
    ) -> Result<(), Error> {
        let mut caller_baggage = false;
        for (name, value) in headers {
            let n = name.as_str();
            if traceparent.is_some() && n == "traceparent" {
                continue;
            }
            if PASSED.contains(&n)
                || also.contains(&n)
                || self.header_allowlist.iter().any(|a| a == n)
            {
                caller_baggage |= n == "baggage";
                h.append(name.clone(), value.clone());
            }
        }
        if let Some(tp) = traceparent {
            h.insert(HeaderName::from_static("traceparent"), tp.clone());
        }
        // `session.id` in W3C baggage, which OTel SDKs (ADOT) copy onto the agent's spans;
        // the caller's other members are kept, a `session.id` of its own is not.
        let bad = |e: http::header::InvalidHeaderValue| Error::Unreachable(e.to_string());
        let baggage = match (&self.fixed.baggage, caller_baggage) {
            (Some(v), false) => v.clone(),
            _ => {
                let caller = h
                    .get_all(HeaderName::from_static("baggage"))
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(",");
                HeaderValue::from_str(&berth_trace::session_baggage(
                    Some(&caller),
                    &self.session_id,
                ))
                .map_err(bad)?
            }
        };
        h.insert(HeaderName::from_static("baggage"), baggage);
        let session_id = match &self.fixed.session_id {
            Some(v) => v.clone(),
            None => HeaderValue::from_str(&self.session_id).map_err(bad)?,
        };
        h.insert(
            HeaderName::from_static("x-amzn-bedrock-agentcore-runtime-session-id"),
            session_id,
        );
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert(
                HeaderName::from_static("x-amzn-bedrock-agentcore-runtime-request-id"),
                v,
            );
        }
        // Both names AgentCore uses; the SDK's app prefers the second.
        if let Some(token) = &self.token {
            let v = token.header();
            h.insert(HeaderName::from_static("workloadaccesstoken"), v.clone());
            h.insert(
                HeaderName::from_static("x-amz-bedrock-agentcore-identity-wat"),
                v,
            );
        }
        Ok(())
    }

    /// Forwards one invocation to the agent (`POST` to the version's protocol path) and streams
    /// its answer back.
    pub async fn invoke(
        self: &Arc<Self>,
        headers: &HeaderMap,
        request_id: &str,
        traceparent: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Response<BodyStream>, Error> {
        let uri = agent_uri(&self.protocol.path);
        self.exchange(
            http::Method::POST,
            &uri,
            headers,
            request_id,
            traceparent,
            body,
        )
        .await
    }

    /// `GetAgentCard`: the agent's `GET /.well-known/agent-card.json` (the A2A contract's
    /// card location), answered like an invocation.
    pub async fn agent_card(
        self: &Arc<Self>,
        headers: &HeaderMap,
        request_id: &str,
        traceparent: Option<&HeaderValue>,
    ) -> Result<Response<BodyStream>, Error> {
        let uri = agent_uri(AGENT_CARD_PATH);
        self.exchange(
            http::Method::GET,
            &uri,
            headers,
            request_id,
            traceparent,
            Bytes::new(),
        )
        .await
    }

    async fn exchange(
        self: &Arc<Self>,
        method: http::Method,
        uri: &str,
        headers: &HeaderMap,
        request_id: &str,
        traceparent: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Response<BodyStream>, Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        self.contract_headers(req.headers_mut(), headers, request_id, &[], traceparent)?;
        let guard = InFlight::new(self.clone());
        let resp = tokio::select! {
            _ = self.ended.cancelled() => return Err(Error::Stopped),
            info = self.held.agent.exit().exited() => return Err(Error::Crashed(info.to_string())),
            r = self.held.agent.forward(req) => match r {
                Ok(r) => r,
                Err(e) => {
                    // A transport failure means the agent is gone or broken: end the session so
                    // the next call with this id gets a fresh sandbox, and say why if it died.
                    self.ended.cancel();
                    let exited = tokio::time::timeout(Duration::from_millis(200), self.held.agent.exit().exited()).await;
                    return Err(match exited {
                        Ok(info) => Error::Crashed(info.to_string()),
                        Err(_) => Error::Unreachable(format!("{e}")),
                    });
                }
            },
        };
        let (parts, body) = resp.into_parts();
        let sse = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let stream = relay(body, self.clone(), sse, guard);
        let mut out = Response::new(stream);
        *out.status_mut() = parts.status;
        for k in RETURNED {
            if let Some(v) = parts.headers.get(&k) {
                out.headers_mut().insert(k, v.clone());
            }
        }
        // A sized answer leaves sized (hyper already holds the agent to its length), so the
        // client gets no chunked framing it did not ask for. Not for SSE: a stream cut short
        // gains a final error event.
        if !sse && let Some(v) = parts.headers.get(http::header::CONTENT_LENGTH) {
            out.headers_mut()
                .insert(http::header::CONTENT_LENGTH, v.clone());
        }
        if out.status() == StatusCode::SWITCHING_PROTOCOLS {
            *out.status_mut() = StatusCode::BAD_GATEWAY;
        }
        Ok(out)
    }
}

/// A WebSocket's hold on its session ([`Session::websocket`]): counted as in flight (the session
/// is busy) while held, and [`Lease::ended`] resolves when the session ends, so the socket
/// closes with it.
#[derive(Clone)]
pub struct Lease {
    _in_flight: Arc<InFlight>,
    ended: CancellationToken,
}

impl Lease {
    /// Resolves when the session has ended (stopped, idle, lifetime, crash, shutdown).
    pub async fn ended(&self) {
        self.ended.cancelled().await
    }
}

/// WebSocket handshake headers passed to the agent as the client sent them.
const WS_PASSED: &[&str] = &[
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
];

/// Counts an invocation in flight for the idle clock; dropping it (end of the response stream,
/// or the client going away) marks the session active now.
struct InFlight(Arc<Session>);

impl InFlight {
    fn new(s: Arc<Session>) -> Self {
        s.in_flight.fetch_add(1, Ordering::AcqRel);
        s.last_activity.store(now_millis(), Ordering::Release);
        Self(s)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_activity.store(now_millis(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Relays the agent's body frame by frame. A stop cuts the stream; an agent failure after an
/// SSE stream began becomes a final `error` event.
fn relay(
    body: crate::backend::AgentBody,
    session: Arc<Session>,
    sse: bool,
    guard: InFlight,
) -> BodyStream {
    struct St {
        body: crate::backend::AgentBody,
        session: Arc<Session>,
        sse: bool,
        done: bool,
        _guard: InFlight,
    }
    let st = St {
        body,
        session,
        sse,
        done: false,
        _guard: guard,
    };
    futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let frame = tokio::select! {
                _ = st.session.ended.cancelled() => {
                    st.done = true;
                    return Some((Err(io_err("the session was stopped")), st));
                }
                f = st.body.frame() => f,
            };
            match frame {
                None => return None,
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        return Some((Ok(data), st));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    // A body cut short means the agent died or broke its connection: end the
                    // session now so the next invocation with this id starts a fresh sandbox
                    // instead of meeting the dead one.
                    st.session.ended.cancel();
                    if st.sse {
                        let ev = serde_json::json!({"error": format!("the agent failed mid-stream: {e}"), "error_type": "RuntimeClientError"});
                        return Some((Ok(Bytes::from(format!("data: {ev}\n\n"))), st));
                    }
                    return Some((Err(io_err(format!("the agent failed mid-response: {e}"))), st));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn log_names_are_injective_and_path_free() {
        let ids = [
            "X.alice",
            "X_alice",
            "X-alice",
            "a/../../etc",
            "..",
            "x_2ealice",
        ];
        let names: Vec<String> = ids.iter().map(|i| log_name(i)).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!n.contains('/') && !n.contains('.'), "{n}");
            assert_eq!(session_of_log_name(n).as_deref(), Some(ids[i]));
            for m in &names[i + 1..] {
                assert_ne!(n, m);
            }
        }
        assert_eq!(session_of_log_name("_2"), None);
        assert_eq!(
            session_of_log_name("_61"),
            None,
            "escape of a kept character"
        );
        assert_eq!(session_of_log_name("a.b"), None);
    }

    #[test]
    fn runtime_and_session_ids() {
        assert!(valid_runtime_id("agent_1-AbCdE12345"));
        for bad in [
            "..%2F..%2Fetc",
            "../../x-AbCdE12345",
            "agent-short",
            "1agent-AbCdE12345",
            "-AbCdE12345",
            "",
        ] {
            assert!(!valid_runtime_id(bad), "{bad}");
        }
        assert!(valid_session_id("X.alice/with:odd-chars"));
        assert!(!valid_session_id(""));
        assert!(!valid_session_id("tab\there"));
        assert!(!valid_session_id(&"x".repeat(257)));
    }
}
