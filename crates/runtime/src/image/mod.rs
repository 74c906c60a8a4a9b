//! Container images as versions: the seam between a version's `containerUri` and what a session
//! backend runs. [`Images`] resolves a reference to the digest the version pins and makes the
//! image's files available; `berth_oci` implements it (pull, verify, unpack into the layer cache).
//! The namespace backend stacks the layers into the sandbox's root; a container or Kubernetes
//! backend would hand the pinned reference to its own runtime instead.

use std::path::PathBuf;

use async_trait::async_trait;

mod oci;
pub use oci::OciImages;

/// An image ready to run: the digest a version pins, and what its configuration says to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The image manifest's digest (`sha256:...`) for this host's platform.
    pub digest: String,
    /// The unpacked layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// The image's entrypoint followed by its command.
    pub argv: Vec<String>,
    /// The image's environment, in order.
    pub env: Vec<(String, String)>,
    /// The working directory inside the image (`/` when the image names none).
    pub working_dir: PathBuf,
    /// The user the image names (`USER`), kept for operators; the agent runs as a uid of its own
    /// like every agent.
    pub user: Option<String>,
}

/// The files of an image version, as session backends get them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFiles {
    /// The pinned manifest digest.
    pub digest: String,
    /// Unpacked layers, bottom first.
    pub layers: Vec<PathBuf>,
}

/// Why an image cannot be had; the text becomes the version's `failureReason`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImageError(pub String);

/// An image in the cache, for operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedImage {
    /// The digest versions pin.
    pub digest: String,
    /// The reference it was pulled by.
    pub reference: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Uncompressed bytes of its layers.
    pub size_bytes: u64,
    /// How many layers it has.
    pub layers: usize,
}

/// What a prune removed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    /// Digests of the images forgotten.
    pub images: Vec<String>,
    /// Layers removed (by uncompressed digest).
    pub layers: Vec<String>,
}

/// Where images come from.
#[async_trait]
pub trait Images: Send + Sync {
    /// The images in the cache.
    async fn cached(&self) -> Result<Vec<CachedImage>, ImageError>;

    /// Removes every cached image not in `keep` (digests), and the layers no kept image uses.
    async fn prune(&self, keep: &[String]) -> Result<Pruned, ImageError>;

    /// Resolves `uri` (a tag or a digest) to the image for this host and makes its files
    /// available: what a new version pins.
    async fn pull(&self, uri: &str) -> Result<PulledImage, ImageError>;

    /// The image a version pinned: from the cache, else pulled again by `digest` (never by tag,
    /// so a moved tag cannot change a version).
    async fn pinned(&self, uri: &str, digest: &str) -> Result<PulledImage, ImageError>;
}
