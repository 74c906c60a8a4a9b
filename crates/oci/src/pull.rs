//! Pulling images from a Distribution-API registry through `oci-client`.
//!
//! [`Puller::resolve`] turns a reference into the digest a version pins; [`Puller::pull`] fetches
//! the pinned image: the manifest (for an index, the host platform's), the config, and each layer
//! not yet in the cache, every blob checked against its digest and every layer's uncompressed
//! stream against the config's `rootfs.diff_ids`, then unpacked by [`crate::unpack`]. Registry
//! protocol, authentication challenges (anonymous, basic, bearer tokens) and transport are
//! `oci-client`'s; this module decides what to fetch and what the failures mean.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
};
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt;

use crate::reference::{self, Credentials, Digest, Reference, Registries, Scheme, Source};
use crate::unpack::{Compression, remove_tree};
pub use crate::unpack::{Image, ImageConfig, Layer, LayerCache, Limits, Platform};

/// Largest manifest or image config accepted (they are JSON documents of a few KiB).
const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// Why a pull failed. Messages are fit for a version's `failureReason`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference or the registry configuration is invalid.
    #[error(transparent)]
    Reference(#[from] reference::Error),
    /// The registry has no such repository, tag, manifest or blob.
    #[error("image not found: {reference}: {detail}")]
    NotFound {
        /// The reference pulled.
        reference: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry refused the credentials (401/403).
    #[error("access denied by registry {registry}: {detail}")]
    Denied {
        /// The registry host.
        registry: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry could not be reached (connection refused, DNS, timeout).
    #[error("registry {registry} is unreachable: {detail}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// The transport error.
        detail: String,
    },
    /// A multi-platform image offers nothing for this host.
    #[error("image {reference} has no manifest for {wanted}; it offers: {}", if offered.is_empty() { "none".to_string() } else { offered.join(", ") })]
    UnsupportedPlatform {
        /// The reference pulled.
        reference: String,
        /// The host platform (`linux/amd64`).
        wanted: String,
        /// The platforms the index lists.
        offered: Vec<String>,
    },
    /// Content did not hash to the digest that names it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest that names it.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// Content is malformed (bad gzip/zstd/tar, unparsable manifest or config).
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A layer entry would escape the layer or is otherwise refused (absolute path, `..`, a write
    /// through a symlink, a hard link out of the layer).
    #[error("unsafe layer entry {path:?}: {reason}")]
    UnsafeEntry {
        /// The entry's path as in the tar.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// A limit on sizes or entry counts was passed.
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge {
        /// What passed the limit.
        what: String,
        /// The limit (bytes, or entries for an entry count).
        limit: u64,
    },
    /// A manifest or layer media type Berth cannot run.
    #[error("unsupported media type {media_type}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
    },
    /// The registry answered outside the protocol.
    #[error("registry {registry} failed: {detail}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What went wrong.
        detail: String,
    },
    /// Local storage failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The platform this process runs on, in OCI names (`linux`, `amd64`/`arm64`/..., variant).
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "loongarch64" => ("loong64", None),
        "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
        other => (other, None),
    };
    Platform {
        os: std::env::consts::OS.to_string(),
        architecture: architecture.to_string(),
        variant: variant.map(str::to_string),
    }
}

/// Picks the entry of an index for `host`: same OS and architecture, and the same variant when
/// both name one (an exact variant is preferred over an entry without one). `None` when nothing
/// fits.
pub fn choose_platform(offered: &[Platform], host: &Platform) -> Option<usize> {
    let mut fallback = None;
    for (i, p) in offered.iter().enumerate() {
        if p.os != host.os || p.architecture != host.architecture {
            continue;
        }
        match (&p.variant, &host.variant) {
            (Some(a), Some(b)) if a == b => return Some(i),
            (Some(_), Some(_)) => {}
            // arm64 images rarely say v8; an unstated variant fits.
            _ => {
                fallback.get_or_insert(i);
            }
        }
    }
    fallback
}

/// Pulls images into a [`LayerCache`]; cheap to clone.
#[derive(Clone, Debug)]
pub struct Puller {
    registries: Registries,
    cache: LayerCache,
    platform: Platform,
    connect_timeout: Duration,
    read_timeout: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawIndexEntry>>,
    config: Option<OciDescriptor>,
    #[serde(default)]
    layers: Option<Vec<OciDescriptor>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndexEntry {
    media_type: Option<String>,
    digest: String,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct RawConfig {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RawRunConfig>,
    rootfs: RawRootFs,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawRootFs {
    #[serde(rename = "type")]
    typ: String,
    diff_ids: Vec<String>,
}

/// One registry conversation: the client, the reference as oci-client spells it, credentials.
struct Session {
    client: oci_client::Client,
    auth: RegistryAuth,
    source: Source,
    shown: String,
}

impl Session {
    fn reference(&self, tag: Option<&str>, digest: Option<&Digest>) -> oci_client::Reference {
        let registry = self.source.authority.clone();
        let repository = self.source.repository.clone();
        match (tag, digest) {
            (_, Some(d)) => oci_client::Reference::with_digest(registry, repository, d.to_string()),
            (Some(t), None) => oci_client::Reference::with_tag(registry, repository, t.to_string()),
            (None, None) => oci_client::Reference::with_tag(
                registry,
                repository,
                reference::DEFAULT_TAG.to_string(),
            ),
        }
    }

    /// Maps oci-client's errors onto ours.
    fn error(&self, e: OciDistributionError) -> Error {
        let registry = self.source.authority.clone();
        let not_found = |detail: String| Error::NotFound {
            reference: self.shown.clone(),
            detail,
        };
        let denied = |detail: String| Error::Denied {
            registry: registry.clone(),
            detail,
        };
        match e {
            OciDistributionError::RegistryError { envelope, .. } => {
                use oci_client::errors::OciErrorCode as Code;
                let detail = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let any = |f: fn(&Code) -> bool| envelope.errors.iter().any(|e| f(&e.code));
                if any(|c| {
                    matches!(
                        c,
                        Code::ManifestUnknown
                            | Code::NameUnknown
                            | Code::BlobUnknown
                            | Code::ManifestBlobUnknown
                            | Code::NotFound
                    )
                }) {
                    not_found(detail)
                } else if any(|c| matches!(c, Code::Unauthorized | Code::Denied)) {
                    denied(detail)
                } else {
                    Error::Registry { registry, detail }
                }
            }
            OciDistributionError::ImageManifestNotFoundError(detail) => not_found(detail),
            OciDistributionError::UnauthorizedError { url } => {
                denied(format!("401 unauthorized for {url}"))
            }
            OciDistributionError::AuthenticationFailure(detail) => denied(detail),
            OciDistributionError::ServerError { code, message, url } => match code {
                404 => not_found(format!("404 for {url}")),
                401 | 403 => denied(format!("{code} for {url}: {}", message.trim())),
                _ => Error::Registry {
                    registry,
                    detail: format!("http {code} for {url}: {}", message.trim()),
                },
            },
            OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
                Error::Unreachable {
                    registry,
                    detail: error_chain(&e),
                }
            }
            OciDistributionError::DigestError(e) => match e {
                oci_client::errors::DigestError::VerificationError { expected, actual } => {
                    Error::DigestMismatch {
                        what: format!("content of {}", self.shown),
                        expected,
                        actual,
                    }
                }
                other => Error::Corrupt {
                    what: format!("digest from {registry}"),
                    detail: other.to_string(),
                },
            },
            OciDistributionError::UnsupportedMediaTypeError(media_type)
            | OciDistributionError::IncompatibleLayerMediaTypeError(media_type) => {
                Error::UnsupportedMediaType { media_type }
            }
            OciDistributionError::ManifestParsingError(detail)
            | OciDistributionError::VersionedParsingError(detail) => Error::Corrupt {
                what: format!("manifest of {}", self.shown),
                detail,
            },
            other => Error::Registry {
                registry,
                detail: error_chain(&other),
            },
        }
    }
}

/// An error with its sources (reqwest's top-level message omits the cause, e.g. the refusal).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl Puller {
    /// A puller for the configured registries into `cache`, choosing the host's platform.
    pub fn new(registries: Registries, cache: LayerCache) -> Self {
        Self {
            registries,
            cache,
            platform: host_platform(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }

    /// Chooses `platform` from multi-platform images instead of the host's.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// Sets the connect and read timeouts (defaults 10 s and 60 s).
    pub fn with_timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// The cache images are pulled into.
    pub fn cache(&self) -> &LayerCache {
        &self.cache
    }

    /// The platform chosen from multi-platform images.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    fn session(&self, reference: &Reference) -> Result<Session, Error> {
        let source = self.registries.resolve(reference)?;
        let protocol = match source.scheme {
            Scheme::Http => ClientProtocol::Http,
            Scheme::Https => ClientProtocol::Https,
        };
        install_tls_provider();
        let client = oci_client::Client::try_from(ClientConfig {
            protocol,
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.read_timeout),
            ..ClientConfig::default()
        })
        .map_err(|e| Error::Registry {
            registry: source.authority.clone(),
            detail: format!("client setup: {}", error_chain(&e)),
        })?;
        let auth = match &source.credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer { token } => RegistryAuth::Bearer(token.clone()),
        };
        Ok(Session {
            client,
            auth,
            source,
            shown: reference.to_string(),
        })
    }

    /// The digest `reference` names now: its own digest if pinned (checked to exist), else the
    /// tag's current manifest (or index) digest. This is what a version pins.
    pub async fn resolve(&self, reference: &Reference) -> Result<Digest, Error> {
        let session = self.session(reference)?;
        let oci_ref = session.reference(reference.tag(), reference.digest());
        let digest = session
            .client
            .fetch_manifest_digest(&oci_ref, &session.auth)
            .await
            .map_err(|e| session.error(e))?;
        let digest = Digest::parse(&digest).map_err(|_| Error::Registry {
            registry: session.source.authority.clone(),
            detail: format!("answered digest {digest:?}, which is not sha256"),
        })?;
        if let Some(pinned) = reference.digest()
            && pinned != &digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest of {reference}"),
                expected: pinned.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok(digest)
    }

    /// Pulls the image into the cache and returns its record. A reference without a digest is
    /// resolved first; an image already in the cache is returned without contacting the registry.
    pub async fn pull(&self, reference: &Reference) -> Result<Image, Error> {
        let digest = match reference.digest() {
            Some(d) => d.clone(),
            None => self.resolve(reference).await?,
        };
        if let Some(image) = self.cache.image(&digest)?
            && image.platform.os == self.platform.os
            && image.platform.architecture == self.platform.architecture
        {
            return Ok(image);
        }
        let session = self.session(reference)?;
        let raw = self.manifest(&session, &digest).await?;
        let (manifest_digest, manifest) = match raw.manifests {
            Some(entries) => {
                let offered: Vec<Platform> = entries
                    .iter()
                    .map(|e| {
                        e.platform.clone().unwrap_or(Platform {
                            os: "unknown".to_string(),
                            architecture: "unknown".to_string(),
                            variant: None,
                        })
                    })
                    .collect();
                let Some(i) = choose_platform(&offered, &self.platform) else {
                    return Err(Error::UnsupportedPlatform {
                        reference: reference.to_string(),
                        wanted: self.platform.to_string(),
                        offered: offered.iter().map(|p| p.to_string()).collect(),
                    });
                };
                let entry = &entries[i];
                if let Some(mt) = &entry.media_type
                    && mt != OCI_IMAGE_MEDIA_TYPE
                    && mt != IMAGE_MANIFEST_MEDIA_TYPE
                {
                    return Err(Error::UnsupportedMediaType {
                        media_type: mt.clone(),
                    });
                }
                let child = Digest::parse(&entry.digest).map_err(|_| Error::Corrupt {
                    what: format!("index of {reference}"),
                    detail: format!("manifest digest {:?} is not sha256", entry.digest),
                })?;
                let manifest = self.manifest(&session, &child).await?;
                if manifest.manifests.is_some() {
                    return Err(Error::Corrupt {
                        what: format!("index of {reference}"),
                        detail: "an index nested in an index".to_string(),
                    });
                }
                (child, manifest)
            }
            None => (digest.clone(), raw),
        };
        let (Some(config_desc), Some(layer_descs)) = (manifest.config, manifest.layers) else {
            return Err(Error::Corrupt {
                what: format!("manifest {manifest_digest}"),
                detail: "no config or layers".to_string(),
            });
        };

        if ![
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.docker.container.image.v1+json",
        ]
        .contains(&config_desc.media_type.as_str())
        {
            // An artifact (a chart, a wasm module, model weights), not a runnable image.
            return Err(Error::UnsupportedMediaType {
                media_type: config_desc.media_type.clone(),
            });
        }
        let config = self.config(&session, &config_desc).await?;
        if config.os != self.platform.os || config.architecture != self.platform.architecture {
            let built_for = Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone(),
            };
            return Err(Error::UnsupportedPlatform {
                reference: reference.to_string(),
                wanted: self.platform.to_string(),
                offered: vec![built_for.to_string()],
            });
        }
        if config.rootfs.typ != "layers" || config.rootfs.diff_ids.len() != layer_descs.len() {
            return Err(Error::Corrupt {
                what: format!("config {}", config_desc.digest),
                detail: format!(
                    "rootfs lists {} diff_ids for {} layers",
                    config.rootfs.diff_ids.len(),
                    layer_descs.len()
                ),
            });
        }
        let limits = self.cache.limits();
        // Everything refusable without downloading is refused first.
        let mut plan = Vec::new();
        for (desc, diff_id) in layer_descs.iter().zip(&config.rootfs.diff_ids) {
            let compression = Compression::from_media_type(&desc.media_type)?;
            let blob = Digest::parse(&desc.digest).map_err(|_| Error::Corrupt {
                what: format!("manifest {manifest_digest}"),
                detail: format!("layer digest {:?} is not sha256", desc.digest),
            })?;
            let diff = Digest::parse(diff_id).map_err(|_| Error::Corrupt {
                what: format!("config {}", config_desc.digest),
                detail: format!("diff_id {diff_id:?} is not sha256"),
            })?;
            if u64::try_from(desc.size).unwrap_or(u64::MAX) > limits.max_layer_bytes {
                return Err(Error::TooLarge {
                    what: format!("layer {blob} ({} bytes compressed)", desc.size),
                    limit: limits.max_layer_bytes,
                });
            }
            plan.push((desc, blob, diff, compression));
        }

        let _in_use = self.cache.use_guard().await;
        let mut layers = Vec::new();
        let mut total: u64 = 0;
        for (desc, blob, diff_id, compression) in plan {
            let budget = limits.max_image_bytes.saturating_sub(total);
            let size = self
                .layer(&session, desc, &blob, &diff_id, compression, budget)
                .await?;
            total = total.saturating_add(size);
            if total > limits.max_image_bytes {
                return Err(Error::TooLarge {
                    what: format!("image {reference}"),
                    limit: limits.max_image_bytes,
                });
            }
            layers.push(Layer {
                digest: blob,
                diff_id,
                media_type: desc.media_type.clone(),
                size,
            });
        }
        let run = config.config.unwrap_or_default();
        let image = Image::new(
            &self.cache,
            digest,
            manifest_digest,
            reference.to_string(),
            Platform {
                os: config.os,
                architecture: config.architecture,
                variant: config.variant,
            },
            ImageConfig {
                entrypoint: run.entrypoint.unwrap_or_default(),
                cmd: run.cmd.unwrap_or_default(),
                env: run.env.unwrap_or_default(),
                working_dir: run.working_dir.filter(|w| !w.is_empty()),
                user: run.user.filter(|u| !u.is_empty()),
                exposed_ports: run.exposed_ports.unwrap_or_default().into_keys().collect(),
                labels: run.labels.unwrap_or_default(),
            },
            layers,
        );
        self.cache.save_image(&image)?;
        Ok(image)
    }

    /// Fetches a manifest or index by digest and checks its bytes against the digest.
    async fn manifest(&self, session: &Session, digest: &Digest) -> Result<RawManifest, Error> {
        let oci_ref = session.reference(None, Some(digest));
        let (body, _) = session
            .client
            .pull_manifest_raw(
                &oci_ref,
                &session.auth,
                &[
                    OCI_IMAGE_MEDIA_TYPE,
                    OCI_IMAGE_INDEX_MEDIA_TYPE,
                    IMAGE_MANIFEST_MEDIA_TYPE,
                    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
                ],
            )
            .await
            .map_err(|e| session.error(e))?;
        if body.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(Error::TooLarge {
                what: format!("manifest {digest}"),
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let actual = Digest::of(&body);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("manifest of {}", session.shown),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        let raw: RawManifest = serde_json::from_slice(&body).map_err(|e| Error::Corrupt {
            what: format!("manifest {digest}"),
            detail: e.to_string(),
        })?;
        if raw.schema_version != Some(2) {
            return Err(Error::UnsupportedMediaType {
                media_type: format!(
                    "{} (schemaVersion {:?})",
                    raw.media_type.as_deref().unwrap_or("manifest"),
                    raw.schema_version
                ),
            });
        }
        if let Some(mt) = &raw.media_type
            && ![
                OCI_IMAGE_MEDIA_TYPE,
                OCI_IMAGE_INDEX_MEDIA_TYPE,
                IMAGE_MANIFEST_MEDIA_TYPE,
                IMAGE_MANIFEST_LIST_MEDIA_TYPE,
            ]
            .contains(&mt.as_str())
        {
            return Err(Error::UnsupportedMediaType {
                media_type: mt.clone(),
            });
        }
        Ok(raw)
    }

    async fn config(&self, session: &Session, desc: &OciDescriptor) -> Result<RawConfig, Error> {
        if u64::try_from(desc.size).unwrap_or(u64::MAX) > MAX_DOCUMENT_BYTES {
            return Err(Error::TooLarge {
                what: format!("image config {}", desc.digest),
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let expected = Digest::parse(&desc.digest).map_err(|_| Error::Corrupt {
            what: format!("manifest of {}", session.shown),
            detail: format!("config digest {:?} is not sha256", desc.digest),
        })?;
        let mut body = Vec::new();
        let oci_ref = session.reference(None, Some(&expected));
        session
            .client
            .pull_blob(&oci_ref, desc, &mut body)
            .await
            .map_err(|e| session.error(e))?;
        let actual = Digest::of(&body);
        if actual != expected {
            return Err(Error::DigestMismatch {
                what: "image config".to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::Corrupt {
            what: format!("image config {expected}"),
            detail: e.to_string(),
        })
    }

    /// Makes one layer present in the cache: under its lock, either it is there already or its
    /// blob is downloaded to staging (digest checked), then unpacked.
    async fn layer(
        &self,
        session: &Session,
        desc: &OciDescriptor,
        blob: &Digest,
        diff_id: &Digest,
        compression: Compression,
        budget: u64,
    ) -> Result<u64, Error> {
        let guard = self.cache.lock_layer(diff_id).await;
        if let Some(size) = self.cache.layer_size(diff_id) {
            return Ok(size);
        }
        let limit = self.cache.limits().max_layer_bytes;
        let path = self
            .cache
            .staging_path(&format!("blob-{}", &blob.hex()[..12]));
        let downloaded = async {
            let oci_ref = session.reference(None, Some(blob));
            let mut stream = session
                .client
                .pull_blob_stream(&oci_ref, desc)
                .await
                .map_err(|e| session.error(e))?;
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(|e| Error::Io {
                    context: format!("create {}", path.display()),
                    source: e,
                })?;
            let mut hasher = sha2::Sha256::new();
            let mut bytes: u64 = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        // oci-client checks the digest as the stream ends.
                        let digest_error = e.get_ref().and_then(|inner| {
                            inner.downcast_ref::<oci_client::errors::DigestError>()
                        });
                        return Err(match digest_error {
                            Some(oci_client::errors::DigestError::VerificationError {
                                expected,
                                actual,
                            }) => Error::DigestMismatch {
                                what: format!("layer blob {blob}"),
                                expected: expected.clone(),
                                actual: actual.clone(),
                            },
                            _ => Error::Unreachable {
                                registry: session.source.authority.clone(),
                                detail: format!(
                                    "download of layer {blob} failed: {}",
                                    error_chain(&e)
                                ),
                            },
                        });
                    }
                };
                bytes += chunk.len() as u64;
                if bytes > limit {
                    return Err(Error::TooLarge {
                        what: format!("layer blob {blob}"),
                        limit,
                    });
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(|e| Error::Io {
                    context: format!("write {}", path.display()),
                    source: e,
                })?;
            }
            file.flush().await.map_err(|e| Error::Io {
                context: format!("write {}", path.display()),
                source: e,
            })?;
            let actual = Digest::from_sha256(hasher.finalize().into());
            if &actual != blob {
                return Err(Error::DigestMismatch {
                    what: format!("layer blob {blob}"),
                    expected: blob.to_string(),
                    actual: actual.to_string(),
                });
            }
            Ok(())
        }
        .await;
        if let Err(e) = downloaded {
            let _ = remove_tree(&path);
            return Err(e);
        }
        let cache = self.cache.clone();
        let blob_path = path.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&blob_path).map_err(|e| Error::Io {
                context: format!("open {}", blob_path.display()),
                source: e,
            })?;
            cache.unpack_layer(&guard, std::io::BufReader::new(file), compression, budget)
        })
        .await;
        let _ = remove_tree(&path);
        unpacked.map_err(|e| Error::Io {
            context: "layer unpack task".to_string(),
            source: std::io::Error::other(e),
        })?
    }
}

/// Makes ring the process's rustls provider, once, unless something installed one before.
/// oci-client's reqwest is built without a provider of its own (Cargo.toml) and takes the
/// process default when a client is made; without one it would panic.
fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means a default is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn host_platform_uses_oci_names() {
        let host = host_platform();
        assert_eq!(host.os, "linux");
        assert!(!["x86_64", "aarch64"].contains(&host.architecture.as_str()));
    }

    #[test]
    fn chooses_the_host_platform() {
        let amd = p("linux", "amd64", None);
        let offered = [
            p("unknown", "unknown", None),
            p("linux", "arm", Some("v7")),
            p("linux", "arm64", None),
            p("linux", "arm64", Some("v8")),
            p("linux", "amd64", None),
            p("windows", "amd64", None),
        ];
        assert_eq!(choose_platform(&offered, &amd), Some(4));
        assert_eq!(
            choose_platform(&offered, &p("linux", "arm64", Some("v8"))),
            Some(3)
        );
        assert_eq!(
            choose_platform(&offered[..3], &p("linux", "arm64", Some("v8"))),
            Some(2)
        );
        assert_eq!(
            choose_platform(&offered[..2], &p("linux", "arm", Some("v6"))),
            None
        );
        assert_eq!(choose_platform(&[p("linux", "s390x", None)], &amd), None);
    }

    #[test]
    fn unsupported_platform_names_what_is_offered() {
        let e = Error::UnsupportedPlatform {
            reference: "r".into(),
            wanted: "linux/amd64".into(),
            offered: vec!["linux/s390x".into(), "linux/arm64/v8".into()],
        };
        assert_eq!(
            e.to_string(),
            "image r has no manifest for linux/amd64; it offers: linux/s390x, linux/arm64/v8"
        );
    }
}
