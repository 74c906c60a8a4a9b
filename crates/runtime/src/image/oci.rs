//! [`Images`] over `berth_oci`: references resolved through the operator's registry mapping
//! (ECR-style hosts to Berth's own registry), images pulled, verified and unpacked into the layer
//! cache.

use std::path::PathBuf;
use std::sync::OnceLock;

use async_trait::async_trait;
use berth_oci::pull::Puller;
use berth_oci::reference::{Digest, HostConfig, Reference, Registries};
use berth_oci::unpack::{Image, LayerCache};

use super::{CachedImage, ImageError, Images, Pruned, PulledImage};

/// Images from registries, cached under the data dir.
pub struct OciImages {
    registries: Registries,
    cache: LayerCache,
    /// Built once Berth's own listener (the built-in registry's address) is known.
    puller: OnceLock<Puller>,
}

impl OciImages {
    /// Images pulled through `registries` into `cache`. [`OciImages::serve_builtin`] must be
    /// called before the first pull when ECR-style references are to reach the built-in registry.
    pub fn new(registries: Registries, cache: LayerCache) -> Self {
        Self {
            registries,
            cache,
            puller: OnceLock::new(),
        }
    }

    /// Names Berth's own registry (its base URL and the credentials to read it with) for
    /// ECR-style hosts the operator did not map elsewhere.
    pub fn serve_builtin(&self, builtin: HostConfig) {
        let mut registries = self.registries.clone();
        registries.builtin = Some(builtin);
        let _ = self.puller.set(Puller::new(registries, self.cache.clone()));
    }

    fn puller(&self) -> Result<&Puller, ImageError> {
        self.puller
            .get()
            .ok_or_else(|| ImageError("the image puller is not ready yet".into()))
    }
}

fn pulled(image: Image) -> Result<PulledImage, ImageError> {
    let config = &image.config;
    let mut argv = config.entrypoint.clone();
    argv.extend(config.cmd.iter().cloned());
    let env = config
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let layers = image.layer_dirs();
    let user = super::resolve_user(&layers, config.user.as_deref().unwrap_or_default())?;
    Ok(PulledImage {
        digest: image.digest.to_string(),
        layers,
        argv,
        env,
        working_dir: config
            .working_dir
            .as_deref()
            .filter(|d| d.starts_with('/'))
            .map_or_else(|| PathBuf::from("/"), PathBuf::from),
        user,
    })
}

fn failed(e: impl std::fmt::Display) -> ImageError {
    ImageError(e.to_string())
}

#[async_trait]
impl Images for OciImages {
    async fn cached(&self) -> Result<Vec<CachedImage>, ImageError> {
        let images = self.cache.images().map_err(failed)?;
        Ok(images
            .into_iter()
            .map(|i| CachedImage {
                digest: i.digest.to_string(),
                reference: i.reference.clone(),
                platform: i.platform.to_string(),
                size_bytes: i.size,
                layers: i.layers.len(),
            })
            .collect())
    }

    async fn prune(&self, keep: &[String]) -> Result<Pruned, ImageError> {
        let keep = keep
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        let pruned = self.cache.prune(&keep).await.map_err(failed)?;
        Ok(Pruned {
            images: pruned.images.iter().map(ToString::to_string).collect(),
            layers: pruned.layers.iter().map(ToString::to_string).collect(),
        })
    }

    async fn pull(&self, uri: &str) -> Result<PulledImage, ImageError> {
        let reference = Reference::parse(uri).map_err(failed)?;
        let image = self.puller()?.pull(&reference).await.map_err(failed)?;
        pulled(image)
    }

    async fn pinned(&self, uri: &str, digest: &str) -> Result<PulledImage, ImageError> {
        let digest = Digest::parse(digest).map_err(failed)?;
        if let Some(image) = self.cache.image(&digest).map_err(failed)? {
            return pulled(image);
        }
        let reference = Reference::parse(uri).map_err(failed)?.pinned(digest);
        let image = self.puller()?.pull(&reference).await.map_err(failed)?;
        pulled(image)
    }
}
