//! The AWS SDK for Rust against a running `berth serve`: the unmodified public crates
//! `aws-sdk-bedrockagentcore` and `aws-sdk-bedrockagentcorecontrol`, which parse every answer
//! into typed outputs and fail on a required member missing or a timestamp in the wrong form.
//!
//! tests/conformance/test_rust_sdk.py runs it with the server's endpoint, the suite's keys and an
//! agent zip already uploaded to the artifact store. Each check prints `ok NAME`, or `not ok
//! NAME` with the reason on the next line; the exit status is non-zero when any failed. Only a
//! loopback endpoint is accepted, so a missing setting can never send a request to AWS.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail, ensure};
use aws_credential_types::Credentials;
use aws_sdk_bedrockagentcore as data;
use aws_sdk_bedrockagentcore::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockagentcore::primitives::Blob;
use aws_sdk_bedrockagentcore::primitives::DateTime;
use aws_sdk_bedrockagentcorecontrol as control;
use aws_sdk_bedrockagentcorecontrol::types::{
    AgentManagedRuntimeType, AgentRuntimeArtifact, AgentRuntimeStatus, Code, CodeConfiguration,
    MemoryStatus, NetworkConfiguration, NetworkMode, S3Location,
};

/// How long an asynchronous change without a build (deletion, memory activation) may take.
const STATE_TIMEOUT: Duration = Duration::from_secs(60);

struct Env {
    endpoint: String,
    region: String,
    key_id: String,
    secret: String,
    limited_key_id: String,
    limited_secret: String,
    bucket: String,
    key: String,
    python_runtime: String,
    role_arn: String,
    build_timeout: Duration,
}

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run this through tests/conformance/test_rust_sdk.py")
    })
}

/// A client of SDK crate `$sdk` (the same builder in both) to the server under test: plain HTTP,
/// no retries (a retried call would hide an error the check must see).
macro_rules! sdk_client {
    ($sdk:ident, $env:expr, $key_id:expr, $secret:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version_latest()
                .endpoint_url(&$env.endpoint)
                .region($sdk::config::Region::new($env.region.clone()))
                .credentials_provider(Credentials::new($key_id, $secret, None, None, "berth-test"))
                .http_client(aws_smithy_http_client::Builder::new().build_http())
                .retry_config($sdk::config::retry::RetryConfig::disabled())
                .build(),
        )
    };
}

impl Env {
    fn from_env() -> anyhow::Result<Self> {
        let endpoint = var("BERTH_RS_ENDPOINT")?;
        ensure!(
            endpoint.starts_with("http://127.0.0.1:"),
            "only a server on loopback is accepted, not {endpoint}"
        );
        Ok(Self {
            endpoint,
            region: var("BERTH_RS_REGION")?,
            key_id: var("BERTH_RS_KEY_ID")?,
            secret: var("BERTH_RS_SECRET")?,
            limited_key_id: var("BERTH_RS_LIMITED_KEY_ID")?,
            limited_secret: var("BERTH_RS_LIMITED_SECRET")?,
            bucket: var("BERTH_RS_BUCKET")?,
            key: var("BERTH_RS_KEY")?,
            python_runtime: var("BERTH_RS_PYTHON_RUNTIME")?,
            role_arn: var("BERTH_RS_ROLE_ARN")?,
            build_timeout: Duration::from_secs(var("BERTH_RS_BUILD_TIMEOUT")?.parse()?),
        })
    }

    fn control(&self, key_id: &str, secret: &str) -> control::Client {
        sdk_client!(control, self, key_id, secret)
    }

    fn data(&self, key_id: &str, secret: &str) -> data::Client {
        sdk_client!(data, self, key_id, secret)
    }
}

/// The checks' shared state: the clients and what earlier checks made.
struct Suite {
    env: Env,
    control: control::Client,
    data: data::Client,
    runtime_id: String,
    runtime_arn: String,
    failed: usize,
}

/// A name unique to this run (`[a-zA-Z][a-zA-Z0-9_]{0,47}`).
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}_{nanos:x}")
}

/// A runtime session id (33 to 256 characters).
fn session_id(tag: &str) -> String {
    format!("{}-{}", unique(tag), "0123456789abcdef0123456789abcdef")
}

/// An idempotency token (33 to 256 of `[a-zA-Z0-9](-*[a-zA-Z0-9])*`: no underscore).
fn client_token(tag: &str) -> String {
    format!("tok-{}", session_id(tag).replace('_', "-"))
}

/// Calls `probe` until it answers `Some`, every 200 ms, for at most `timeout`.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A timestamp the server set just now (within ten minutes of this clock).
fn recent(t: &DateTime) -> anyhow::Result<()> {
    let now = DateTime::from(SystemTime::now()).secs();
    ensure!((t.secs() - now).abs() < 600, "{t} is not recent");
    Ok(())
}

/// The error code of a failed call, as the SDK parsed it.
fn code_of<E: ProvideErrorMetadata, R>(result: Result<R, E>) -> anyhow::Result<String> {
    match result {
        Ok(_) => bail!("the call succeeded; an error was expected"),
        Err(e) => e
            .code()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("an error without a code: {}", e.message().unwrap_or(""))),
    }
}

/// Ok when `result` failed with the service error `is` recognises (a variant the SDK parsed into
/// its typed error), else an error naming `what` and what it got instead.
fn expect_error<O: Debug, E: Debug, R: Debug>(
    what: &str,
    result: Result<O, SdkError<E, R>>,
    is: impl FnOnce(&E) -> bool,
) -> anyhow::Result<()> {
    match result {
        Err(e) if e.as_service_error().is_some_and(is) => Ok(()),
        other => bail!("{what}: {other:?}"),
    }
}

impl Suite {
    fn record(&mut self, name: &str, result: anyhow::Result<()>) {
        match result {
            Ok(()) => println!("ok {name}"),
            Err(e) => {
                self.failed += 1;
                println!("not ok {name}\n  # {e:#}");
            }
        }
    }

    fn artifact(&self) -> anyhow::Result<AgentRuntimeArtifact> {
        let code = CodeConfiguration::builder()
            .code(Code::S3(
                S3Location::builder()
                    .bucket(&self.env.bucket)
                    .prefix(&self.env.key)
                    .build()?,
            ))
            .runtime(AgentManagedRuntimeType::from(
                self.env.python_runtime.as_str(),
            ))
            .entry_point("agent.py")
            .build()?;
        Ok(AgentRuntimeArtifact::CodeConfiguration(code))
    }

    async fn wait_runtime(&self, version: &str) -> anyhow::Result<()> {
        let (control, id) = (&self.control, &self.runtime_id);
        poll(
            &format!("runtime {id} v{version} to be READY"),
            self.env.build_timeout,
            || async move {
                let got = control
                    .get_agent_runtime()
                    .agent_runtime_id(id)
                    .agent_runtime_version(version)
                    .send()
                    .await?;
                match got.status() {
                    AgentRuntimeStatus::Ready => Ok(Some(())),
                    AgentRuntimeStatus::CreateFailed | AgentRuntimeStatus::UpdateFailed => {
                        bail!("{:?}: {:?}", got.status(), got.failure_reason())
                    }
                    _ => Ok(None),
                }
            },
        )
        .await
    }

    /// Waits until endpoint `name` is READY with `version` live.
    async fn wait_endpoint(&self, name: &str, version: &str) -> anyhow::Result<()> {
        let (control, id) = (&self.control, &self.runtime_id);
        poll(
            &format!("endpoint {name} READY at v{version}"),
            STATE_TIMEOUT * 5,
            || async move {
                let got = control
                    .get_agent_runtime_endpoint()
                    .agent_runtime_id(id)
                    .endpoint_name(name)
                    .send()
                    .await?;
                Ok(
                    (got.status().as_str() == "READY" && got.live_version() == Some(version))
                        .then_some(()),
                )
            },
        )
        .await
    }

    async fn create_runtime(&mut self) -> anyhow::Result<()> {
        let name = unique("rsctl");
        let created = self
            .control
            .create_agent_runtime()
            .agent_runtime_name(&name)
            .description("from the AWS SDK for Rust")
            .agent_runtime_artifact(self.artifact()?)
            .role_arn(&self.env.role_arn)
            .network_configuration(
                NetworkConfiguration::builder()
                    .network_mode(NetworkMode::Public)
                    .build()?,
            )
            .environment_variables("GREETING", "hello")
            .client_token(client_token("c"))
            .send()
            .await?;
        ensure!(
            created.agent_runtime_id().starts_with(&format!("{name}-")),
            "{}",
            created.agent_runtime_id()
        );
        ensure!(created.agent_runtime_version() == "1");
        ensure!(
            created
                .agent_runtime_arn()
                .ends_with(created.agent_runtime_id())
        );
        recent(created.created_at())?;
        self.runtime_id = created.agent_runtime_id().to_owned();
        self.runtime_arn = created.agent_runtime_arn().to_owned();
        self.wait_runtime("1").await?;

        let got = self
            .control
            .get_agent_runtime()
            .agent_runtime_id(&self.runtime_id)
            .send()
            .await?;
        ensure!(got.agent_runtime_name() == name);
        ensure!(got.description() == Some("from the AWS SDK for Rust"));
        ensure!(got.role_arn() == self.env.role_arn);
        recent(got.last_updated_at())?;
        recent(got.created_at())?;
        let env = got
            .environment_variables()
            .context("no environment variables")?;
        ensure!(env.get("GREETING").map(String::as_str) == Some("hello"));
        Ok(())
    }

    async fn list_and_versions(&self) -> anyhow::Result<()> {
        // Every page, through the SDK's own paginator.
        let mut pages = self
            .control
            .list_agent_runtimes()
            .max_results(1)
            .into_paginator()
            .send();
        let mut seen = false;
        let mut count = 0;
        while let Some(page) = pages.next().await {
            for r in page?.agent_runtimes() {
                count += 1;
                // Other tests' runtimes on the same server may be older: only this one is dated.
                if r.agent_runtime_id() == self.runtime_id {
                    recent(r.last_updated_at())?;
                    seen = true;
                }
            }
        }
        ensure!(seen, "the runtime is not listed ({count} listed)");
        let versions = self
            .control
            .list_agent_runtime_versions()
            .agent_runtime_id(&self.runtime_id)
            .send()
            .await?;
        let listed: Vec<&str> = versions
            .agent_runtimes()
            .iter()
            .map(|r| r.agent_runtime_version())
            .collect();
        ensure!(listed == ["1"], "{listed:?}");
        Ok(())
    }

    async fn update_and_endpoints(&self) -> anyhow::Result<()> {
        let updated = self
            .control
            .update_agent_runtime()
            .agent_runtime_id(&self.runtime_id)
            .agent_runtime_artifact(self.artifact()?)
            .role_arn(&self.env.role_arn)
            .network_configuration(
                NetworkConfiguration::builder()
                    .network_mode(NetworkMode::Public)
                    .build()?,
            )
            .description("second version")
            .send()
            .await?;
        ensure!(updated.agent_runtime_version() == "2");
        recent(updated.last_updated_at())?;
        self.wait_runtime("2").await?;

        let default = self
            .control
            .get_agent_runtime_endpoint()
            .agent_runtime_id(&self.runtime_id)
            .endpoint_name("DEFAULT")
            .send()
            .await?;
        ensure!(default.name() == "DEFAULT");
        recent(default.created_at())?;
        self.wait_endpoint("DEFAULT", "2").await?;

        let name = unique("rsep");
        let made = self
            .control
            .create_agent_runtime_endpoint()
            .agent_runtime_id(&self.runtime_id)
            .name(&name)
            .agent_runtime_version("1")
            .send()
            .await?;
        ensure!(made.endpoint_name() == Some(name.as_str()));
        recent(made.created_at())?;
        self.wait_endpoint(&name, "1").await?;
        let moved = self
            .control
            .update_agent_runtime_endpoint()
            .agent_runtime_id(&self.runtime_id)
            .endpoint_name(&name)
            .agent_runtime_version("2")
            .send()
            .await?;
        recent(moved.last_updated_at())?;
        self.wait_endpoint(&name, "2").await?;
        let listed = self
            .control
            .list_agent_runtime_endpoints()
            .agent_runtime_id(&self.runtime_id)
            .send()
            .await?;
        let mut names: Vec<&str> = listed
            .runtime_endpoints()
            .iter()
            .map(|e| e.name())
            .collect();
        names.sort_unstable();
        ensure!(names == ["DEFAULT", name.as_str()], "{names:?}");
        let deleted = self
            .control
            .delete_agent_runtime_endpoint()
            .agent_runtime_id(&self.runtime_id)
            .endpoint_name(&name)
            .send()
            .await?;
        ensure!(deleted.endpoint_name() == Some(name.as_str()));
        Ok(())
    }

    async fn tags(&self) -> anyhow::Result<()> {
        self.control
            .tag_resource()
            .resource_arn(&self.runtime_arn)
            .tags("team", "rust")
            .send()
            .await?;
        let tags = self
            .control
            .list_tags_for_resource()
            .resource_arn(&self.runtime_arn)
            .send()
            .await?;
        let got = tags.tags().context("no tags")?;
        ensure!(
            got.get("team").map(String::as_str) == Some("rust"),
            "{got:?}"
        );
        self.control
            .untag_resource()
            .resource_arn(&self.runtime_arn)
            .tag_keys("team")
            .send()
            .await?;
        Ok(())
    }

    async fn control_errors(&self) -> anyhow::Result<()> {
        let missing = self
            .control
            .get_agent_runtime()
            .agent_runtime_id("nosuch_runtime-0123456789")
            .send()
            .await;
        expect_error("GetAgentRuntime of a missing runtime", missing, |e| {
            e.is_resource_not_found_exception()
        })?;
        let got = self
            .control
            .get_agent_runtime()
            .agent_runtime_id(&self.runtime_id)
            .send()
            .await?;
        let again = self
            .control
            .create_agent_runtime()
            .agent_runtime_name(got.agent_runtime_name())
            .agent_runtime_artifact(self.artifact()?)
            .role_arn(&self.env.role_arn)
            .network_configuration(
                NetworkConfiguration::builder()
                    .network_mode(NetworkMode::Public)
                    .build()?,
            )
            .send()
            .await;
        expect_error("a second runtime of the same name", again, |e| {
            e.is_conflict_exception()
        })?;
        let code = code_of(
            self.control
                .get_agent_runtime()
                .agent_runtime_id("not a valid id!")
                .send()
                .await,
        )?;
        ensure!(code == "ValidationException", "{code}");
        Ok(())
    }

    async fn limited_key(&self) -> anyhow::Result<()> {
        let limited = self
            .env
            .control(&self.env.limited_key_id, &self.env.limited_secret);
        limited
            .get_agent_runtime()
            .agent_runtime_id(&self.runtime_id)
            .send()
            .await?;
        expect_error(
            "ListAgentRuntimes with a key allowed only GetAgentRuntime",
            limited.list_agent_runtimes().send().await,
            |e| e.is_access_denied_exception(),
        )?;
        let limited_data = self
            .env
            .data(&self.env.limited_key_id, &self.env.limited_secret);
        let denied = limited_data
            .invoke_agent_runtime()
            .agent_runtime_arn(&self.runtime_arn)
            .runtime_session_id(session_id("denied"))
            .payload(Blob::new(b"{}".to_vec()))
            .send()
            .await;
        expect_error(
            "InvokeAgentRuntime with a key allowed only GetAgentRuntime",
            denied,
            |e| e.is_access_denied_exception(),
        )
    }

    async fn invoke(
        &self,
        session: &str,
        payload: serde_json::Value,
    ) -> Result<
        data::operation::invoke_agent_runtime::InvokeAgentRuntimeOutput,
        data::error::SdkError<data::operation::invoke_agent_runtime::InvokeAgentRuntimeError>,
    > {
        self.data
            .invoke_agent_runtime()
            .agent_runtime_arn(&self.runtime_arn)
            .runtime_session_id(session)
            .content_type("application/json")
            .payload(Blob::new(payload.to_string().into_bytes()))
            .send()
            .await
    }

    async fn invoke_json(&self) -> anyhow::Result<()> {
        let session = session_id("rs");
        let resp = self
            .invoke(
                &session,
                serde_json::json!({"op": "whoami", "prompt": "hi from rust"}),
            )
            .await?;
        ensure!(resp.status_code() == Some(200), "{:?}", resp.status_code());
        ensure!(resp.runtime_session_id() == Some(session.as_str()));
        let ct = resp.content_type();
        ensure!(ct.starts_with("application/json"), "{ct}");
        let body = resp.response.collect().await?.into_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body)?;
        ensure!(body["sessionId"] == session.as_str(), "{body}");
        ensure!(body["prompt"] == "hi from rust", "{body}");
        ensure!(body["counter"] == 1, "{body}");
        let again = self
            .invoke(&session, serde_json::json!({"op": "whoami"}))
            .await?;
        let again: serde_json::Value =
            serde_json::from_slice(&again.response.collect().await?.into_bytes())?;
        ensure!(
            again["token"] == body["token"] && again["counter"] == 2,
            "{again}"
        );
        Ok(())
    }

    async fn invoke_sse(&self) -> anyhow::Result<()> {
        let session = session_id("sse");
        let resp = self
            .data
            .invoke_agent_runtime()
            .agent_runtime_arn(&self.runtime_arn)
            .runtime_session_id(&session)
            .accept("text/event-stream")
            .payload(Blob::new(
                serde_json::json!({"op": "stream", "count": 5, "interval": 0.05})
                    .to_string()
                    .into_bytes(),
            ))
            .send()
            .await?;
        ensure!(resp.content_type().starts_with("text/event-stream"));
        // Read as it arrives, chunk by chunk, not collected.
        let mut stream = resp.response;
        let (mut text, mut chunks) = (String::new(), 0);
        while let Some(chunk) = stream.try_next().await? {
            chunks += 1;
            text.push_str(std::str::from_utf8(&chunk)?);
        }
        let events: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter_map(|frame| frame.strip_prefix("data: "))
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let indexes: Vec<i64> = events.iter().filter_map(|e| e["index"].as_i64()).collect();
        ensure!(indexes == [0, 1, 2, 3, 4], "{text:?} in {chunks} chunks");
        Ok(())
    }

    async fn data_errors(&self) -> anyhow::Result<()> {
        let unknown = self
            .data
            .invoke_agent_runtime()
            .agent_runtime_arn(&self.runtime_arn)
            .runtime_session_id(session_id("q"))
            .qualifier("no_such_endpoint")
            .payload(Blob::new(b"{}".to_vec()))
            .send()
            .await;
        expect_error("an unknown qualifier", unknown, |e| {
            e.is_resource_not_found_exception()
        })?;
        // RuntimeClientError is not in the model: the SDK names it from x-amzn-ErrorType.
        let code = code_of(
            self.invoke(&session_id("exit"), serde_json::json!({"op": "exit"}))
                .await,
        )?;
        ensure!(code == "RuntimeClientError", "{code}");
        Ok(())
    }

    async fn stop_session(&self) -> anyhow::Result<()> {
        let session = session_id("stop");
        let first = self
            .invoke(&session, serde_json::json!({"op": "whoami"}))
            .await?;
        let first: serde_json::Value =
            serde_json::from_slice(&first.response.collect().await?.into_bytes())?;
        let stopped = self
            .data
            .stop_runtime_session()
            .agent_runtime_arn(&self.runtime_arn)
            .runtime_session_id(&session)
            .send()
            .await?;
        ensure!(stopped.runtime_session_id() == Some(session.as_str()));
        let after = self
            .invoke(&session, serde_json::json!({"op": "whoami"}))
            .await?;
        let after: serde_json::Value =
            serde_json::from_slice(&after.response.collect().await?.into_bytes())?;
        ensure!(
            after["token"] != first["token"] && after["counter"] == 1,
            "{after}"
        );
        let never = self
            .data
            .stop_runtime_session()
            .agent_runtime_arn(&self.runtime_arn)
            .runtime_session_id(session_id("never"))
            .send()
            .await;
        expect_error("StopRuntimeSession of a session never opened", never, |e| {
            e.is_resource_not_found_exception()
        })
    }

    async fn memory(&self) -> anyhow::Result<()> {
        let name = unique("rsmem");
        let made = self
            .control
            .create_memory()
            .name(&name)
            .event_expiry_duration(30)
            .client_token(client_token("m"))
            .send()
            .await?;
        let memory = made.memory().context("CreateMemory answered no memory")?;
        ensure!(memory.name() == name);
        recent(memory.created_at())?;
        let id = memory.id().to_owned();
        let control = &self.control;
        let id_ref = id.as_str();
        poll("the memory to be ACTIVE", STATE_TIMEOUT, || async move {
            let got = control.get_memory().memory_id(id_ref).send().await?;
            let m = got.memory().context("GetMemory answered no memory")?;
            Ok((*m.status() == MemoryStatus::Active).then_some(()))
        })
        .await?;
        // Every page: other tests' memories may share the server.
        let mut pages = self.control.list_memories().into_paginator().send();
        let mut listed = false;
        while let Some(page) = pages.next().await {
            listed |= page?.memories().iter().any(|m| m.id() == Some(id.as_str()));
        }
        ensure!(listed, "ListMemories does not list {id}");

        let (actor, session) = ("rust-actor", session_id("mem"));
        let event = self
            .data
            .create_event()
            .memory_id(&id)
            .actor_id(actor)
            .session_id(&session)
            .event_timestamp(DateTime::from(SystemTime::now()))
            .payload(data::types::PayloadType::Conversational(
                data::types::Conversational::builder()
                    .content(data::types::Content::Text("hello from rust".into()))
                    .role(data::types::Role::User)
                    .build()?,
            ))
            .send()
            .await?;
        let event = event.event().context("CreateEvent answered no event")?;
        recent(event.event_timestamp())?;
        let event_id = event.event_id().to_owned();
        let got = self
            .data
            .get_event()
            .memory_id(&id)
            .actor_id(actor)
            .session_id(&session)
            .event_id(&event_id)
            .send()
            .await?;
        let got = got.event().context("GetEvent answered no event")?;
        match got.payload().first() {
            Some(data::types::PayloadType::Conversational(c)) => {
                ensure!(
                    matches!(c.content(), Some(data::types::Content::Text(t)) if t == "hello from rust"),
                    "{c:?}"
                );
            }
            other => bail!("the event's payload: {other:?}"),
        }
        let events = self
            .data
            .list_events()
            .memory_id(&id)
            .actor_id(actor)
            .session_id(&session)
            .include_payloads(true)
            .send()
            .await?;
        ensure!(events.events().len() == 1);
        let sessions = self
            .data
            .list_sessions()
            .memory_id(&id)
            .actor_id(actor)
            .send()
            .await?;
        ensure!(
            sessions
                .session_summaries()
                .iter()
                .any(|s| s.session_id() == session)
        );
        let actors = self.data.list_actors().memory_id(&id).send().await?;
        ensure!(
            actors
                .actor_summaries()
                .iter()
                .any(|a| a.actor_id() == actor)
        );
        self.data
            .delete_event()
            .memory_id(&id)
            .actor_id(actor)
            .session_id(&session)
            .event_id(&event_id)
            .send()
            .await?;
        let deleted = self.control.delete_memory().memory_id(&id).send().await?;
        ensure!(deleted.memory_id() == id);
        Ok(())
    }

    async fn delete_runtime(&self) -> anyhow::Result<()> {
        let deleted = self
            .control
            .delete_agent_runtime()
            .agent_runtime_id(&self.runtime_id)
            .send()
            .await?;
        ensure!(deleted.agent_runtime_id() == Some(self.runtime_id.as_str()));
        let (control, id) = (&self.control, &self.runtime_id);
        poll("the runtime to be gone", STATE_TIMEOUT, || async move {
            match control
                .get_agent_runtime()
                .agent_runtime_id(id)
                .send()
                .await
            {
                Ok(_) => Ok(None),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    Ok(Some(()))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_env()?;
    let mut s = Suite {
        control: env.control(&env.key_id, &env.secret),
        data: env.data(&env.key_id, &env.secret),
        env,
        runtime_id: String::new(),
        runtime_arn: String::new(),
        failed: 0,
    };
    // Everything after needs the runtime: a failure here ends the run.
    let created = s.create_runtime().await;
    let ok = created.is_ok();
    s.record("create a runtime from S3 and wait until READY", created);
    if ok {
        let r = s.list_and_versions().await;
        s.record("list runtimes (paginated) and versions", r);
        let r = s.invoke_json().await;
        s.record("invoke: a JSON answer, the same session twice", r);
        let r = s.invoke_sse().await;
        s.record("invoke: an SSE answer read as it streams", r);
        let r = s.data_errors().await;
        s.record("invoke: unknown qualifier, RuntimeClientError", r);
        let r = s.stop_session().await;
        s.record("StopRuntimeSession", r);
        let r = s.update_and_endpoints().await;
        s.record(
            "update to v2; DEFAULT and a named endpoint moved from v1 to v2",
            r,
        );
        let r = s.tags().await;
        s.record("tag, list tags, untag", r);
        let r = s.control_errors().await;
        s.record("control-plane errors", r);
        let r = s.limited_key().await;
        s.record("a key allowed only GetAgentRuntime", r);
    }
    let r = s.memory().await;
    s.record("memory: create, events, sessions, actors, delete", r);
    if ok {
        let r = s.delete_runtime().await;
        s.record("delete the runtime", r);
    }
    if s.failed > 0 {
        bail!("{} check(s) failed", s.failed);
    }
    Ok(())
}
