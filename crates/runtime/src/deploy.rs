//! Glue between the control plane and the session layer: the [`Deployer`] that builds versions
//! from the artifact store, and the [`Prepare`] that hands sessions a built version.

use crate::builder::{Builder, Built};
use crate::session::{Prepare, Prepared, Sessions, Target};
use async_trait::async_trait;
use berth_api::ApiError;
use berth_api::control::{Artifact, RuntimeSpec};
use berth_artifacts::ArtifactStore;
use berth_control::Deployer;
use berth_control::deployer::Error;
use berth_types::Status;
use berth_types::records::{Runtime, RuntimeVersion};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Builds versions and finds their builds again.
pub struct Preparer {
    builder: Builder,
    artifacts: ArtifactStore,
    built: Mutex<HashMap<String, Arc<Built>>>,
}

fn code_config(spec: &RuntimeSpec) -> Result<&berth_api::control::CodeConfiguration, Error> {
    match &spec.agent_runtime_artifact {
        Artifact::CodeConfiguration(c) => Ok(c),
        Artifact::ContainerConfiguration { .. } => Err(Error::Unsupported(
            "container images need the container backend".into(),
        )),
    }
}

fn spec_of(v: &RuntimeVersion) -> Result<RuntimeSpec, Error> {
    serde_json::from_value(v.spec.clone()).map_err(|e| Error::Config(e.to_string()))
}

impl Preparer {
    /// A preparer building with `builder` from `artifacts`.
    pub fn new(builder: Builder, artifacts: ArtifactStore) -> Self {
        Self {
            builder,
            artifacts,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// Fetches the version's zip and builds it.
    async fn build(&self, spec: &RuntimeSpec) -> Result<Built, Error> {
        let code = code_config(spec)?;
        let s3 = &code.code.s3;
        let zip = self
            .artifacts
            .read_object(&s3.bucket, &s3.prefix)
            .await
            .map_err(|e| Error::Artifact {
                bucket: s3.bucket.clone(),
                key: s3.prefix.clone(),
                reason: e.to_string(),
            })?;
        self.builder
            .build(zip, &code.runtime, &code.entry_point)
            .await
            .map_err(|e| Error::Build(e.to_string()))
    }
}

fn prepared(b: &Built) -> Prepared {
    Prepared {
        code_dir: b.code_dir.clone(),
        argv: b.argv.clone(),
        env: b.env.clone(),
        visible: vec![b.env_dir.clone()],
    }
}

#[async_trait]
impl Prepare for Preparer {
    async fn prepare(
        &self,
        _runtime: &Runtime,
        version: &RuntimeVersion,
    ) -> Result<Prepared, Error> {
        let spec = spec_of(version)?;
        let code = code_config(&spec)?;
        let digest = version.artifact_digest.clone().unwrap_or_default();
        let key = format!("{digest}|{}|{}", code.runtime, code.entry_point.join(" "));
        if let Some(b) = self
            .built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(prepared(b));
        }
        let built = match self
            .builder
            .lookup(&digest, &code.runtime, &code.entry_point)
            .await
        {
            Some(b) => b,
            // The build was garbage-collected or the data dir moved: rebuild, and insist on the
            // same content so an immutable version never changes code.
            None => {
                let b = self.build(&spec).await?;
                if !digest.is_empty() && b.digest != digest {
                    return Err(Error::ArtifactChanged {
                        version: version.version,
                        now: b.digest.clone(),
                        then: digest,
                    });
                }
                b
            }
        };
        let p = prepared(&built);
        self.built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Arc::new(built));
        Ok(p)
    }
}

/// The [`Deployer`] of the embedded runtime: builds with [`Preparer`], warms pools, and ends
/// sessions of deleted runtimes.
pub struct Deploy {
    preparer: Arc<Preparer>,
    sessions: Sessions,
}

impl Deploy {
    /// Ties a preparer to the session layer that runs what it builds.
    pub fn new(preparer: Arc<Preparer>, sessions: Sessions) -> Self {
        Self { preparer, sessions }
    }
}

#[async_trait]
impl Deployer for Deploy {
    fn check(&self, spec: &RuntimeSpec) -> Result<(), ApiError> {
        if let Artifact::ContainerConfiguration { .. } = spec.agent_runtime_artifact {
            return Err(ApiError::field(
                "agentRuntimeArtifact.containerConfiguration",
                "container images need the container backend, which this server does not have yet; deploy code with codeConfiguration",
            ));
        }
        // Inside a sandbox Berth's own API answers on this port (AGENT_API_PORT), so an agent
        // could not listen there: refused up front rather than failing every session start.
        if spec.protocol().port == crate::backend::namespace::AGENT_API_PORT {
            return Err(ApiError::field(
                "protocolConfiguration.port",
                format!(
                    "port {} is where Berth's API answers inside the agent's sandbox; choose another port",
                    crate::backend::namespace::AGENT_API_PORT
                ),
            ));
        }
        Ok(())
    }

    async fn build(&self, runtime: &Runtime, version: &RuntimeVersion) -> Result<String, Error> {
        let spec = spec_of(version)?;
        let built = self.preparer.build(&spec).await?;
        // Warm the pool of the version that is about to serve, so its first session skips the
        // cold start.
        let mut ready = version.clone();
        ready.status = Status::Ready;
        ready.artifact_digest = Some(built.digest.clone());
        self.sessions.refill(Target {
            runtime: runtime.clone(),
            version: ready,
            endpoint: String::new(),
        });
        Ok(built.digest)
    }

    async fn retire(&self, runtime_id: &str, version: Option<u32>) {
        self.sessions.retire(runtime_id, version).await;
    }

    async fn drain(&self, runtime_id: &str, endpoint: &str, version: u32) -> Result<usize, Error> {
        let victims: Vec<String> = self
            .sessions
            .list(Some(runtime_id))
            .into_iter()
            .filter(|s| s.version == version && s.endpoint == endpoint)
            .map(|s| s.session_id)
            .collect();
        let mut stopped = 0;
        for session_id in victims {
            // A session may end on its own between listing and stopping; that is not a failure.
            if self.sessions.stop(runtime_id, &session_id).await.is_ok() {
                stopped += 1;
            }
        }
        Ok(stopped)
    }

    async fn warm(&self, runtime: &Runtime, version: &RuntimeVersion) {
        self.sessions.refill(Target {
            runtime: runtime.clone(),
            version: version.clone(),
            endpoint: String::new(),
        });
    }
}
