//! The invoker: one `InvokeAgentRuntime` as a domain flow, a stack of layers around the session
//! call. The server's handler only extracts an [`Invocation`] from the request and converts the
//! answer (or [`Error`]) to the wire.
//!
//! The layers compose like tower's (`tower::Layer`, built with `tower::ServiceBuilder`), but the
//! service trait is [`Invoke`], an `async fn` over a [`Call`] boxed once per invocation: the
//! whole stack is one statically composed future, so a layer costs no allocation and no dynamic
//! dispatch per request (tower's `Service` needs nameable futures, which means a box per layer).
//!
//! To add a layer (model-gateway tokens, evaluation sampling, spans to a trace store): write a
//! `Foo<S>` implementing [`Invoke`] and add `.layer(layer_fn(|inner| Foo { inner, .. }))` to
//! [`Invoker::new`] with a one-line comment saying why it is there. A layer that needs the
//! session or its version goes inside `Admitted`; one that must see every call, outside
//! `Routed`.
//!
//! Architecture Invariant: a call to a live session reads nothing from the store and allocates
//! nothing in the stack beyond the call's box and what metering keeps for its record; routing (a
//! store read, and one write per new session) happens only when the session has no live agent.

use crate::cluster::{Cluster, Placement};
use crate::command::Command;
use crate::session::{BodyStream, Error as SessionError, Session, Sessions, Target};
use berth_api::ApiError;
use berth_control::health::{Outcome, Refusal};
use berth_control::{Control, RouteRequest};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, Response};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::layer::layer_fn;
use tracing::Instrument;

/// One invocation as the handler extracted it. Borrowed from the request: building it copies
/// nothing.
#[derive(Debug)]
pub struct Invocation<'a> {
    /// The runtime's id.
    pub runtime_id: &'a str,
    /// Endpoint name or version, if the caller gave one (`DEFAULT` otherwise).
    pub qualifier: Option<&'a str>,
    /// The session id (sent by the caller, or made up by the handler).
    pub session_id: &'a str,
    /// `X-Amzn-Bedrock-AgentCore-Runtime-User-Id`, if sent.
    pub user_id: Option<&'a str>,
    /// The access key id that signed the request.
    pub actor: Option<&'a str>,
    /// `x-amzn-RequestId`, passed to the agent.
    pub request_id: &'a str,
    /// The request headers (the agent sees the contract's and the allow-listed ones).
    pub headers: &'a HeaderMap,
    /// What to do in the session.
    pub action: Action,
    /// True when another node of the installation sent this call here to run (see
    /// `crate::cluster`): it is served here, never sent on.
    pub forwarded: bool,
}

/// What an invocation does once its session is open: every operation on a session takes the
/// same way through the stack (routing, health, quotas, metering), so a command or a WebSocket
/// opens the same session `InvokeAgentRuntime` would.
#[derive(Debug)]
pub enum Action {
    /// `InvokeAgentRuntime`: the payload, posted to the agent's `/invocations`.
    Invoke(Bytes),
    /// `InvokeAgentRuntimeCommand`: a shell command next to the agent, answered as an event
    /// stream (`crate::command`).
    Command(Command),
    /// A WebSocket to the agent's `/ws`: the answer is the agent's `101` with its pending
    /// upgrade and a `session::Lease` in the extensions (`Session::websocket`).
    WebSocket,
    /// `GetAgentCard`: the A2A agent's `/.well-known/agent-card.json`.
    AgentCard,
}

/// An invocation on its way through the stack: what the layers learned so far.
pub struct Call<'a> {
    /// The invocation.
    pub inv: Invocation<'a>,
    /// Set by routing when the session had no live agent: the version it starts on.
    pub target: Option<Target>,
    /// The live session; set by routing (it was live) or by admission (it was opened).
    pub session: Option<Arc<Session>>,
    /// Set by `Spanned`: the `traceparent` the agent gets (Berth's span as the parent) in place
    /// of the caller's.
    pub traceparent: Option<http::HeaderValue>,
    /// What routing and opening took, for Berth's span (`Spanned`).
    pub steps: Steps,
}

/// When the steps before the agent call ran, in ns since the epoch (`berth_trace::now_ns`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Steps {
    /// Routing a new session to its version (not run for a live session).
    pub routed: Option<(i64, i64)>,
    /// Opening the session: its agent started, or taken from the warm pool.
    pub opened: Option<(i64, i64)>,
}

/// Why an invocation failed. The server maps each to one AgentCore exception.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No authenticated caller: AccessDeniedException.
    #[error("the invocation carries no authenticated caller")]
    Unauthenticated,
    /// Routing refused (no such runtime, endpoint or version).
    #[error("{0}")]
    Route(ApiError),
    /// The session could not be opened: refused by a quota, or its agent would not start.
    #[error("{0}")]
    Open(SessionError),
    /// The open session's agent could not be reached.
    #[error("{0}")]
    Invoke(SessionError),
    /// Another node of the installation runs the session: the call goes there.
    #[error("the session runs on node {}", .0.id)]
    Elsewhere(berth_store::nodes::NodeRow),
    /// Where the session runs could not be settled (the store failed).
    #[error("placing the session: {0}")]
    Place(berth_store::Error),
}

/// The agent's answer: status and headers at once, the body streamed.
pub type Answer = Response<BodyStream>;

/// One step of the invocation stack.
pub trait Invoke: Send + Sync + 'static {
    /// Handles `call`, usually by passing it on to the layer inside.
    ///
    /// The call is boxed once per invocation. Every layer's future holds it across its await:
    /// by value (512 bytes) it made the stack's future 11.6 KB, copied again at every level it
    /// was passed down (bench/notes/B2.md).
    fn invoke<'a>(
        &'a self,
        call: Box<Call<'a>>,
    ) -> impl Future<Output = Result<Answer, Error>> + Send + 'a;
}

/// What the invoker needs from the control plane: where a new session goes, and where
/// per-version health is counted. [`Control`] implements it; tests use a fake.
#[async_trait::async_trait]
pub trait ControlPlane: Send + Sync + 'static {
    /// The version a new session runs (`Control::route`: assignment, rules, weights).
    async fn route(
        &self,
        runtime_id: &str,
        qualifier: Option<&str>,
        req: &RouteRequest<'_>,
    ) -> Result<Target, ApiError>;

    /// Checks that a qualifier sent with a live session names an endpoint or a version of the
    /// runtime (`Control::check_qualifier`).
    async fn check_qualifier(&self, runtime_id: &str, qualifier: &str) -> Result<(), ApiError>;

    /// Counts one invocation (or failed start) of a version, in memory.
    fn record(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
        outcome: Outcome,
        elapsed: Duration,
    );

    /// Counts a throttled new session or an agent's 4xx answer of a version, in memory (for
    /// Prometheus; health ignores both). A control plane that keeps no such counts ignores it.
    fn refused(&self, runtime_id: &str, endpoint: &str, version: u32, what: Refusal) {
        let _ = (runtime_id, endpoint, version, what);
    }
}

#[async_trait::async_trait]
impl ControlPlane for Control {
    async fn route(
        &self,
        runtime_id: &str,
        qualifier: Option<&str>,
        req: &RouteRequest<'_>,
    ) -> Result<Target, ApiError> {
        let r = Control::route(self, runtime_id, qualifier, req)
            .await?
            .resolved;
        Ok(Target {
            runtime: r.runtime,
            version: r.version,
            endpoint: r.endpoint,
        })
    }

    async fn check_qualifier(&self, runtime_id: &str, qualifier: &str) -> Result<(), ApiError> {
        Control::check_qualifier(self, runtime_id, qualifier).await
    }

    fn record(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        self.health()
            .record(runtime_id, endpoint, version, outcome, elapsed);
    }

    fn refused(&self, runtime_id: &str, endpoint: &str, version: u32, what: Refusal) {
        self.health().refused(runtime_id, endpoint, version, what);
    }
}

/// The invocation stack. Cheap to clone.
#[derive(Clone)]
pub struct Invoker {
    stack: Arc<Stack>,
}

type Stack = Traced<Authenticated<Placed<Routed<Health<Admitted<Spanned<Metered<Forward>>>>>>>>;

impl Invoker {
    /// The stack over `sessions`, routing and counting through `control`; no spans recorded.
    pub fn new(control: Arc<dyn ControlPlane>, sessions: Sessions) -> Self {
        Self::with_spans(control, sessions, None)
    }

    /// Like [`Invoker::new`], recording a span per call of an open session into `spans`.
    pub fn with_spans(
        control: Arc<dyn ControlPlane>,
        sessions: Sessions,
        spans: Option<berth_trace::SpanSink>,
    ) -> Self {
        Self::clustered(control, sessions, spans, Cluster::standalone("local"))
    }

    /// Like [`Invoker::with_spans`], on a node of an installation of several: a session no
    /// node runs is claimed here, one another node runs is answered [`Error::Elsewhere`].
    pub fn clustered(
        control: Arc<dyn ControlPlane>,
        sessions: Sessions,
        spans: Option<berth_trace::SpanSink>,
        cluster: Cluster,
    ) -> Self {
        let (c1, c2, s1, s2) = (
            control.clone(),
            control.clone(),
            sessions.clone(),
            sessions.clone(),
        );
        let failed_starts = spans.clone();
        let stack = tower::ServiceBuilder::new()
            // Tracing span: every log line of the call carries its runtime and session.
            .layer(layer_fn(Traced))
            // Auth context: only a verified caller reaches an agent, and routing rules match on it.
            .layer(layer_fn(Authenticated))
            // Placement: a session another node runs is served there (one store write per new
            // session, none on a standalone node or for a live session).
            .layer(layer_fn(move |inner| Placed {
                inner,
                cluster: cluster.clone(),
                sessions: s2.clone(),
            }))
            // Routing: a live session is used as it is; only a new one is routed (a store read).
            .layer(layer_fn(move |inner| Routed {
                inner,
                control: c1.clone(),
                sessions: s1.clone(),
            }))
            // Health: a version whose agents fail to start counts as failing, so rollouts abort.
            .layer(layer_fn(move |inner| Health {
                inner,
                control: c2.clone(),
            }))
            // Quotas: a new session opens only under the live caps and the new-session rate.
            .layer(layer_fn(move |inner| Admitted {
                inner,
                sessions: sessions.clone(),
                spans: failed_starts.clone(),
            }))
            // Berth's span: one per call of an open session, continuing the caller's
            // traceparent and handed to the agent as its parent.
            .layer(layer_fn(move |inner| Spanned {
                inner,
                sink: spans.clone(),
            }))
            // Metering: each call counted and timed per version until its body ends.
            .layer(layer_fn(move |inner| Metered {
                inner,
                control: control.clone(),
            }))
            .service(Forward);
        Self {
            stack: Arc::new(stack),
        }
    }

    /// Invokes the agent of `inv`'s session, opening the session if it has no live agent.
    pub async fn invoke(&self, inv: Invocation<'_>) -> Result<Answer, Error> {
        self.stack
            .invoke(Box::new(Call {
                inv,
                target: None,
                session: None,
                traceparent: None,
                steps: Steps::default(),
            }))
            .await
    }
}

/// Runs the call in an `invoke` span (debug level: free unless asked for).
pub struct Traced<S>(S);

impl<S: Invoke> Invoke for Traced<S> {
    fn invoke<'a>(
        &'a self,
        call: Box<Call<'a>>,
    ) -> impl Future<Output = Result<Answer, Error>> + Send + 'a {
        let span = tracing::debug_span!(
            "invoke",
            runtime_id = call.inv.runtime_id,
            session_id = call.inv.session_id
        );
        self.0.invoke(call).instrument(span)
    }
}

/// Refuses a call without a verified caller.
pub struct Authenticated<S>(S);

impl<S: Invoke> Invoke for Authenticated<S> {
    async fn invoke<'a>(&'a self, call: Box<Call<'a>>) -> Result<Answer, Error> {
        if call.inv.actor.is_none() {
            return Err(Error::Unauthenticated);
        }
        self.0.invoke(call).await
    }
}

/// Claims a session with no live agent here for this node, or sends it to the node that runs it.
pub struct Placed<S> {
    inner: S,
    cluster: Cluster,
    sessions: Sessions,
}

impl<S: Invoke> Invoke for Placed<S> {
    async fn invoke<'a>(&'a self, call: Box<Call<'a>>) -> Result<Answer, Error> {
        let inv = &call.inv;
        if !self.cluster.is_standalone()
            && self
                .sessions
                .existing(inv.runtime_id, inv.session_id)
                .is_none()
        {
            match self
                .cluster
                .place(inv.runtime_id, inv.session_id, inv.forwarded)
                .await
                .map_err(Error::Place)?
            {
                Placement::Here => {}
                Placement::Elsewhere(node) => return Err(Error::Elsewhere(node)),
            }
        }
        self.inner.invoke(call).await
    }
}

/// Finds the live session, or routes a new one to its version.
pub struct Routed<S> {
    inner: S,
    control: Arc<dyn ControlPlane>,
    sessions: Sessions,
}

impl<S: Invoke> Invoke for Routed<S> {
    async fn invoke<'a>(&'a self, mut call: Box<Call<'a>>) -> Result<Answer, Error> {
        let inv = &call.inv;
        match self.sessions.existing(inv.runtime_id, inv.session_id) {
            Some(s) => {
                // The session keeps its version, but a qualifier naming nothing is still
                // ResourceNotFoundException; its own endpoint or version needs no store read.
                if let Some(q) = inv.qualifier
                    && q != s.endpoint()
                    && q.parse::<u32>().ok() != Some(s.version())
                {
                    self.control
                        .check_qualifier(inv.runtime_id, q)
                        .await
                        .map_err(Error::Route)?;
                }
                call.session = Some(s);
            }
            None => {
                let headers = inv.headers;
                let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                let req = RouteRequest {
                    session_id: inv.session_id,
                    user_id: inv.user_id,
                    actor: inv.actor,
                    header: &lookup,
                };
                let start = berth_trace::now_ns();
                let target = self
                    .control
                    .route(inv.runtime_id, inv.qualifier, &req)
                    .await
                    .map_err(Error::Route)?;
                call.steps.routed = Some((start, berth_trace::now_ns()));
                call.target = Some(target);
            }
        }
        self.inner.invoke(call).await
    }
}

/// Records a session that could not be opened as a failed invocation of its version; a refusal
/// by quota says nothing about the version and is not recorded.
pub struct Health<S> {
    inner: S,
    control: Arc<dyn ControlPlane>,
}

impl<S: Invoke> Invoke for Health<S> {
    async fn invoke<'a>(&'a self, call: Box<Call<'a>>) -> Result<Answer, Error> {
        // A live session has nothing to open: pass it through untouched.
        let Some(target) = &call.target else {
            return self.inner.invoke(call).await;
        };
        let (endpoint, version) = (target.endpoint.clone(), target.version.version);
        let runtime_id = call.inv.runtime_id;
        let opening = Instant::now();
        let res = self.inner.invoke(call).await;
        if let Err(Error::Open(e)) = &res {
            if !is_refusal(e) {
                self.control.record(
                    runtime_id,
                    &endpoint,
                    version,
                    outcome_of(e),
                    opening.elapsed(),
                );
            } else if matches!(
                e,
                SessionError::QuotaExceeded(_) | SessionError::Throttled(_)
            ) {
                // AgentCore's Throttles: refused by a quota, not the version's fault.
                self.control
                    .refused(runtime_id, &endpoint, version, Refusal::Throttled);
            }
        }
        res
    }
}

/// Refusals by quota or of a malformed id: the caller's problem, not the version's.
fn is_refusal(e: &SessionError) -> bool {
    matches!(
        e,
        SessionError::QuotaExceeded(_) | SessionError::Throttled(_) | SessionError::Invalid(_)
    )
}

fn outcome_of(e: &SessionError) -> Outcome {
    match e {
        SessionError::StartTimeout(_) => Outcome::Timeout,
        _ => Outcome::RuntimeClient,
    }
}

/// Opens a routed session through the supervisor, which admits it under the quotas (a slot per
/// agent, the new-session rate) before any agent starts.
pub struct Admitted<S> {
    inner: S,
    sessions: Sessions,
    /// Where a failed start's span goes (the call's own span needs an open session).
    spans: Option<berth_trace::SpanSink>,
}

impl<S: Invoke> Invoke for Admitted<S> {
    async fn invoke<'a>(&'a self, mut call: Box<Call<'a>>) -> Result<Answer, Error> {
        if call.session.is_none()
            && let Some(target) = &call.target
        {
            let start = berth_trace::now_ns();
            let session = self
                .sessions
                .open(target, call.inv.session_id, call.inv.user_id)
                .await;
            let end = berth_trace::now_ns();
            let session = match session {
                Ok(s) => s,
                Err(e) => {
                    // A version whose agents fail to start is what a trace is looked up for.
                    if let Some(sink) = &self.spans
                        && !is_refusal(&e)
                    {
                        let attribution = Arc::new(berth_trace::Attribution {
                            runtime_id: call.inv.runtime_id.to_owned(),
                            version: target.version.version,
                            endpoint: target.endpoint.clone(),
                            session_id: Some(call.inv.session_id.to_owned()),
                            actor: call.inv.user_id.map(str::to_owned),
                        });
                        let steps = Steps {
                            opened: Some((start, end)),
                            ..call.steps
                        };
                        let (mut span, _) = call_span(&call.inv, &steps, attribution);
                        span.status = berth_trace::CallStatus::Error;
                        span.status_message = e.to_string().into();
                        span.end_ns = end;
                        let parent = span.clone();
                        sink.record(span);
                        record_steps(sink, &parent, &steps);
                    }
                    return Err(Error::Open(e));
                }
            };
            call.steps.opened = Some((start, end));
            call.session = Some(session.clone());
            let answer = self.inner.invoke(call).await;
            // The warm pool's refill waited for this answer, so as not to slow it.
            session.answered();
            return answer;
        }
        self.inner.invoke(call).await
    }
}

/// Counts and times each call of a version until its response body ends.
pub struct Metered<S> {
    inner: S,
    control: Arc<dyn ControlPlane>,
}

impl<S: Invoke> Invoke for Metered<S> {
    async fn invoke<'a>(&'a self, call: Box<Call<'a>>) -> Result<Answer, Error> {
        let Some(session) = &call.session else {
            return self.inner.invoke(call).await;
        };
        let endpoint = call
            .inv
            .qualifier
            .unwrap_or(berth_types::records::DEFAULT_ENDPOINT);
        let observed = Observed::start(
            &self.control,
            call.inv.runtime_id,
            endpoint,
            session.version(),
        );
        match self.inner.invoke(call).await {
            Ok(answer) => {
                let (parts, stream) = answer.into_parts();
                let stream = observed.body(parts.status.as_u16(), stream);
                Ok(Response::from_parts(parts, stream))
            }
            Err(e) => {
                if let Error::Invoke(se) = &e {
                    observed.failed(se);
                }
                Err(e)
            }
        }
    }
}

/// Records Berth's own span of each call of an open session (runtime, version, endpoint,
/// session, user, outcome) until its response body ends, in the caller's trace when it sent a
/// `traceparent`, and gives the agent a `traceparent` naming this span as the parent.
pub struct Spanned<S> {
    inner: S,
    sink: Option<berth_trace::SpanSink>,
}

impl<S: Invoke> Invoke for Spanned<S> {
    async fn invoke<'a>(&'a self, mut call: Box<Call<'a>>) -> Result<Answer, Error> {
        let (Some(sink), Some(session)) = (&self.sink, &call.session) else {
            return self.inner.invoke(call).await;
        };
        let inv = &call.inv;
        // The session's attribution, unless this call names another user than its first.
        let shared = session.attribution();
        let attribution = if shared.actor.as_deref() == inv.user_id {
            shared.clone()
        } else {
            Arc::new(berth_trace::Attribution {
                actor: inv.user_id.map(str::to_owned),
                ..(**shared).clone()
            })
        };
        let (mut span, flags) = call_span(inv, &call.steps, attribution);
        span.session_start = Some(match call.steps.opened {
            None => berth_trace::SessionStart::Live,
            Some(_) if session.warm_start() => berth_trace::SessionStart::Warm,
            Some(_) => berth_trace::SessionStart::Cold,
        });
        call.traceparent = Some(span.traceparent(flags));
        let open = OpenSpan {
            sink: sink.clone(),
            span: Some(span),
            steps: call.steps,
        };
        match self.inner.invoke(call).await {
            Ok(answer) => {
                let (parts, stream) = answer.into_parts();
                let stream = open.body(parts.status.as_u16(), stream);
                Ok(Response::from_parts(parts, stream))
            }
            Err(e) => {
                open.end(e.to_string());
                Err(e)
            }
        }
    }
}

/// Berth's span of `inv`, starting when its first step did (routing, else opening, else now).
fn call_span(
    inv: &Invocation<'_>,
    steps: &Steps,
    attribution: Arc<berth_trace::Attribution>,
) -> (berth_trace::CallSpan, u8) {
    let name = match inv.action {
        Action::Invoke(_) => "InvokeAgentRuntime",
        Action::Command(_) => "InvokeAgentRuntimeCommand",
        Action::WebSocket => "InvokeAgentRuntimeWithWebSocketStream",
        Action::AgentCard => "GetAgentCard",
    };
    let (mut span, flags) = berth_trace::CallSpan::start(
        inv.headers.get("traceparent").map(|v| v.as_bytes()),
        name,
        inv.request_id,
        inv.actor,
        attribution,
    );
    if let Some(first) = steps.routed.or(steps.opened) {
        span.start_ns = first.0;
    }
    (span, flags)
}

/// The routing and session-start steps of a call, as children of its span. Recorded after it,
/// so a trace's root is the call's span when they start at the same instant (the store names a
/// trace after its earliest span, the first stored on a tie).
fn record_steps(sink: &berth_trace::SpanSink, parent: &berth_trace::CallSpan, steps: &Steps) {
    let child = |name: &'static str, (start_ns, end_ns): (i64, i64)| {
        let mut s = parent.child(name);
        s.start_ns = start_ns;
        s.end_ns = end_ns;
        s.status = berth_trace::CallStatus::Ok;
        s
    };
    if let Some(t) = steps.routed {
        sink.record(child("Route", t));
    }
    if let Some(t) = steps.opened {
        let mut s = child("StartSession", t);
        s.session_start = parent.session_start;
        if parent.session_start.is_none() {
            // It failed: its call never reached an agent.
            s.status = parent.status;
            s.status_message = parent.status_message.clone();
        }
        sink.record(s);
    }
}

/// Berth's span of one call, recorded when it ends (the body finished, failed or was dropped).
struct OpenSpan {
    sink: berth_trace::SpanSink,
    /// Taken when recorded.
    span: Option<berth_trace::CallSpan>,
    /// Recorded as its children.
    steps: Steps,
}

impl OpenSpan {
    fn end(mut self, message: String) {
        if let Some(s) = self.span.as_mut() {
            s.status = berth_trace::CallStatus::Error;
            s.status_message = message.into();
        }
    }

    /// Ends with the response body: a 5xx or a failure mid-body is an error.
    fn body(mut self, status: u16, stream: BodyStream) -> BodyStream {
        if let Some(s) = self.span.as_mut() {
            s.http_status = Some(status);
            s.status = if status >= 500 {
                berth_trace::CallStatus::Error
            } else {
                berth_trace::CallStatus::Ok
            };
        }
        let mut open = self;
        stream
            .map(move |item| {
                // Borrow the whole value so the closure owns `open`: it is dropped (recorded)
                // with the body.
                let o = &mut open;
                if let Some(s) = o.span.as_mut() {
                    if item.is_err() {
                        s.status = berth_trace::CallStatus::Error;
                        s.status_message = "the response body failed".into();
                    } else if s.first_byte_ns.is_none() {
                        s.first_byte_ns = Some(berth_trace::now_ns());
                    }
                }
                item
            })
            .boxed()
    }
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.end_ns = berth_trace::now_ns();
            let steps =
                (self.steps.routed.is_some() || self.steps.opened.is_some()).then(|| span.clone());
            self.sink.record(span);
            if let Some(parent) = steps {
                record_steps(&self.sink, &parent, &self.steps);
            }
        }
    }
}

/// The innermost step: forwards the call to its session's agent (or runs its command there).
pub struct Forward;

impl Invoke for Forward {
    async fn invoke<'a>(&'a self, call: Box<Call<'a>>) -> Result<Answer, Error> {
        // Routing sets the session or a target, and admission opens the target: a call
        // without either is a stack built wrong.
        debug_assert!(call.session.is_some(), "a call reached Forward unopened");
        let Some(session) = call.session else {
            return Err(Error::Invoke(SessionError::Stopped));
        };
        // With Berth's span recorded, the agent's parent is that span.
        let (headers, tp) = (call.inv.headers, call.traceparent.as_ref());
        match call.inv.action {
            Action::Invoke(body) => session
                .invoke(headers, call.inv.request_id, tp, body)
                .await
                .map_err(Error::Invoke),
            Action::AgentCard => session
                .agent_card(headers, call.inv.request_id, tp)
                .await
                .map_err(Error::Invoke),
            Action::WebSocket => session
                .websocket(headers, call.inv.request_id, tp)
                .await
                .map_err(Error::Invoke),
            Action::Command(cmd) => {
                let stream = session.exec(&cmd.request()).await.map_err(Error::Invoke)?;
                let mut answer = Response::new(crate::command::frames(stream));
                answer.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(berth_api::eventstream::CONTENT_TYPE),
                );
                Ok(answer)
            }
        }
    }
}

/// One invocation being observed; records itself when dropped (the response body finished,
/// failed, or the client went away), so streamed answers count their full duration. Dropped
/// before an outcome was known (the request was abandoned, or a path forgot to report), it
/// counts as a RuntimeClientError rather than as a success.
struct Observed {
    control: Arc<dyn ControlPlane>,
    runtime_id: String,
    endpoint: String,
    version: u32,
    started: Instant,
    outcome: Option<Outcome>,
}

impl Observed {
    fn start(
        control: &Arc<dyn ControlPlane>,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
    ) -> Self {
        Self {
            control: control.clone(),
            runtime_id: runtime_id.to_owned(),
            endpoint: endpoint.to_owned(),
            version,
            started: Instant::now(),
            outcome: None,
        }
    }

    /// Records a failure to reach the agent (the value is dropped, and so recorded, here).
    fn failed(mut self, e: &SessionError) {
        self.outcome = Some(outcome_of(e));
    }

    /// Wraps the agent's response body: a 5xx status or a failure mid-body is an error.
    fn body(mut self, status: u16, stream: BodyStream) -> BodyStream {
        self.outcome = Some(Outcome::of_status(status));
        if (400..500).contains(&status) {
            // AgentCore's UserErrors: the agent refused the caller's request.
            self.control.refused(
                &self.runtime_id,
                &self.endpoint,
                self.version,
                Refusal::UserError,
            );
        }
        let mut observed = self;
        stream
            .map(move |item| {
                // Borrow the whole value, not just the field, so the closure owns `observed`
                // and it is dropped (recorded) when the body is.
                let o = &mut observed;
                if item.is_err() {
                    o.outcome = Some(Outcome::AgentError);
                }
                item
            })
            .boxed()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.control.record(
            &self.runtime_id,
            &self.endpoint,
            self.version,
            self.outcome.unwrap_or(Outcome::RuntimeClient),
            self.started.elapsed(),
        );
    }
}
