//! Glue between the control plane and the session layer: the [`Deployer`] that builds versions
//! from the artifact store, and the [`Prepare`] that hands sessions a built version.

use crate::builder::{Builder, Built};
use crate::image::{ImageError, ImageFiles, Images, PulledImage};
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
    /// Where container images come from; `None`: this server runs code versions only.
    images: Option<Arc<dyn Images>>,
    /// Image versions' prepared form, by pinned digest.
    pulled: Mutex<HashMap<String, Prepared>>,
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
            images: None,
            pulled: Mutex::new(HashMap::new()),
        }
    }

    /// Also runs container image versions, pulled through `images`.
    pub fn with_images(mut self, images: Arc<dyn Images>) -> Self {
        self.images = Some(images);
        self
    }

    /// Builds a new version: a code version's zip is built, an image version's reference resolved
    /// and pulled. Returns the digest the version pins.
    async fn build_version(&self, spec: &RuntimeSpec) -> Result<String, Error> {
        match &spec.agent_runtime_artifact {
            Artifact::CodeConfiguration(_) => Ok(self.build(spec).await?.digest),
            Artifact::ContainerConfiguration { container_uri } => {
                let image = self
                    .images()?
                    .pull(container_uri)
                    .await
                    .map_err(image_failed)?;
                let digest = image.digest.clone();
                let prepared = image_prepared(image)?;
                self.pulled
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest.clone(), prepared);
                Ok(digest)
            }
        }
    }

    fn images(&self) -> Result<&Arc<dyn Images>, Error> {
        self.images
            .as_ref()
            .ok_or_else(|| Error::Unsupported("this server runs no container images".into()))
    }

    /// An image version, from its pinned digest.
    async fn prepare_image(&self, uri: &str, version: &RuntimeVersion) -> Result<Prepared, Error> {
        let digest = version.artifact_digest.clone().ok_or_else(|| {
            Error::Config(format!("version {} pins no image digest", version.version))
        })?;
        if let Some(p) = self
            .pulled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
        {
            return Ok(p.clone());
        }
        let image = self
            .images()?
            .pinned(uri, &digest)
            .await
            .map_err(image_failed)?;
        if image.digest != digest {
            return Err(Error::ArtifactChanged {
                version: version.version,
                now: image.digest,
                then: digest,
            });
        }
        let prepared = image_prepared(image)?;
        self.pulled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest, prepared.clone());
        Ok(prepared)
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
        image: None,
    }
}

fn image_failed(e: ImageError) -> Error {
    Error::Build(e.to_string())
}

/// What a session of an image version runs: the image's entrypoint and command in its working
/// directory with its environment (the runtime's own variables are laid over it by the session).
fn image_prepared(image: PulledImage) -> Result<Prepared, Error> {
    if image.argv.is_empty() {
        return Err(Error::Build(format!(
            "image {} names no entrypoint or command to run",
            image.digest
        )));
    }
    Ok(Prepared {
        code_dir: image.working_dir,
        argv: image.argv,
        env: image.env,
        visible: Vec::new(),
        image: Some(ImageFiles {
            digest: image.digest,
            layers: image.layers,
            user: image.user,
        }),
    })
}

#[async_trait]
impl Prepare for Preparer {
    async fn prepare(
        &self,
        _runtime: &Runtime,
        version: &RuntimeVersion,
    ) -> Result<Prepared, Error> {
        let spec = spec_of(version)?;
        if let Artifact::ContainerConfiguration { container_uri } = &spec.agent_runtime_artifact {
            return self.prepare_image(container_uri, version).await;
        }
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
        if let Artifact::ContainerConfiguration { .. } = spec.agent_runtime_artifact
            && self.preparer.images.is_none()
        {
            return Err(ApiError::field(
                "agentRuntimeArtifact.containerConfiguration",
                "this server runs no container images; deploy code with codeConfiguration",
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
        let digest = self.preparer.build_version(&spec).await?;
        // Warm the pool of the version that is about to serve, so its first session skips the
        // cold start.
        let mut ready = version.clone();
        ready.status = Status::Ready;
        ready.artifact_digest = Some(digest.clone());
        self.sessions.refill(Target {
            runtime: runtime.clone(),
            version: ready,
            endpoint: String::new(),
        });
        Ok(digest)
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
