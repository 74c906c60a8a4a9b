//! The content-addressed layer cache and the layer unpacker.
//!
//! Layout under the directory given to [`LayerCache::open`] (`<data dir>/images`):
//!
//! ```text
//! images/<digest hex>.json        an Image record, by the digest pulled (config, layers bottom to top, size)
//! layers/sha256/<diff_id hex>/    one unpacked layer: a directory an overlay mount stacks (lowerdir)
//! layers/sha256/<diff_id hex>.json  the layer's uncompressed size
//! tmp/                            staging; emptied at open
//! ```
//!
//! A layer is hostile input. It is unpacked into a staging directory under `tmp/` and renamed into
//! place only when every entry was written and its uncompressed digest matched the image config's
//! `diff_id`; any failure removes the staging directory, so the cache holds complete layers or
//! nothing. Entries are created relative to directory file descriptors opened one component at a
//! time with `O_NOFOLLOW`, so no entry (and no symlink an earlier entry made) can direct a write
//! outside the layer; `..` components and absolute paths are refused outright.
//!
//! Architecture Invariant: nothing here follows a symlink found in a layer. Symlinks are created
//! with their target as written and are only ever resolved by the kernel at run time, against the
//! container's root.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps, XattrFlags};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::pull::Error;
use crate::reference::Digest;

/// Limits on what one image may make the cache hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Uncompressed bytes of one layer (tar stream, and the sizes its headers claim).
    pub max_layer_bytes: u64,
    /// Uncompressed bytes of all the layers of one image.
    pub max_image_bytes: u64,
    /// Entries in one layer.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_layer_bytes: 8 << 30,
            max_image_bytes: 16 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// tar+gzip.
    Gzip,
    /// tar+zstd.
    Zstd,
}

impl Compression {
    /// The compression of a layer media type (OCI and Docker schema 2); other types (foreign or
    /// non-distributable layers, artifacts) are refused.
    pub fn from_media_type(media_type: &str) -> Result<Self, Error> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd" => Ok(Self::Zstd),
            other => Err(Error::UnsupportedMediaType {
                media_type: other.to_string(),
            }),
        }
    }
}

/// The OS and CPU an image is built for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// OCI architecture name: `amd64`, `arm64`, ...
    pub architecture: String,
    /// CPU variant (`v8`, `v7`), when the image names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What the image config says about running the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// `Cmd` (arguments to the entrypoint, or the command when there is none).
    #[serde(default)]
    pub cmd: Vec<String>,
    /// `Env` as `NAME=value`.
    #[serde(default)]
    pub env: Vec<String>,
    /// `WorkingDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `User` (`uid`, `uid:gid`, or names resolved against the image's /etc/passwd at run time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `ExposedPorts` keys (`8080/tcp`).
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// `Labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The blob's digest (compressed, as in the manifest).
    pub digest: Digest,
    /// The uncompressed tar's digest (the config's `rootfs.diff_ids` entry): the cache key.
    pub diff_id: Digest,
    /// The blob's media type.
    pub media_type: String,
    /// Uncompressed bytes.
    pub size: u64,
}

/// A pulled image whose layers are all in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The digest pulled (what a version pins): a manifest's, or a multi-platform index's.
    pub digest: Digest,
    /// The platform manifest's digest (equal to `digest` unless `digest` names an index).
    pub manifest_digest: Digest,
    /// The reference as pulled, for display.
    pub reference: String,
    /// The platform the image is built for.
    pub platform: Platform,
    /// How to run it.
    pub config: ImageConfig,
    /// Layers, bottom to top.
    pub layers: Vec<Layer>,
    /// Uncompressed bytes of all layers.
    pub size: u64,
    #[serde(skip)]
    layers_root: PathBuf,
}

impl Image {
    /// A record for layers held under `cache`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cache: &LayerCache,
        digest: Digest,
        manifest_digest: Digest,
        reference: String,
        platform: Platform,
        config: ImageConfig,
        layers: Vec<Layer>,
    ) -> Self {
        let size = layers.iter().map(|l| l.size).sum();
        Self {
            digest,
            manifest_digest,
            reference,
            platform,
            config,
            layers,
            size,
            layers_root: cache.inner.root.join("layers/sha256"),
        }
    }

    /// The layer directories, bottom to top (an overlay's `lowerdir` lists them top to bottom).
    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        self.layers
            .iter()
            .map(|l| self.layers_root.join(l.diff_id.hex()))
            .collect()
    }
}

/// What [`LayerCache::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Image records removed.
    pub images: Vec<Digest>,
    /// Layers removed (by diff_id).
    pub layers: Vec<Digest>,
}

/// The content-addressed cache of unpacked layers and pulled images; cheap to clone.
#[derive(Clone)]
pub struct LayerCache {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    limits: Limits,
    layer_locks: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    // Pulls hold it shared while they use layers; prune holds it exclusively.
    use_lock: Arc<tokio::sync::RwLock<()>>,
    staging_seq: AtomicU64,
}

/// Proof that the holder has the lock of one layer (see [`LayerCache::lock_layer`]).
pub struct LayerGuard {
    diff_id: Digest,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Held while a pull uses layers, so a prune cannot remove them underneath it.
pub struct UseGuard {
    _guard: tokio::sync::OwnedRwLockReadGuard<()>,
}

impl std::fmt::Debug for LayerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerCache")
            .field("root", &self.inner.root)
            .field("limits", &self.inner.limits)
            .finish()
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

impl LayerCache {
    /// Opens (creating) the cache in `dir` with the default [`Limits`], and empties its staging
    /// area (what a crash left half-written).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        Self::open_with(dir, Limits::default())
    }

    /// Opens the cache with explicit limits.
    pub fn open_with(dir: impl Into<PathBuf>, limits: Limits) -> Result<Self, Error> {
        let root = dir.into();
        for sub in ["images", "layers/sha256", "tmp"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(io_err(format!("create {}", root.join(sub).display())))?;
        }
        let tmp = root.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(io_err(format!("read {}", tmp.display())))? {
            let entry = entry.map_err(io_err(format!("read {}", tmp.display())))?;
            remove_tree(&entry.path())
                .map_err(io_err(format!("remove {}", entry.path().display())))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                limits,
                layer_locks: Mutex::new(HashMap::new()),
                use_lock: Arc::new(tokio::sync::RwLock::new(())),
                staging_seq: AtomicU64::new(0),
            }),
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Where the layer with this diff_id is (or would be) unpacked.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.inner.root.join("layers/sha256").join(diff_id.hex())
    }

    /// A staging path under `tmp/`, unique in this process (and across processes by pid).
    pub(crate) fn staging_path(&self, label: &str) -> PathBuf {
        let n = self.inner.staging_seq.fetch_add(1, Ordering::Relaxed);
        self.inner
            .root
            .join("tmp")
            .join(format!("{label}-{}-{n}", std::process::id()))
    }

    /// The uncompressed size of a cached layer, `None` when the layer is not in the cache.
    pub fn layer_size(&self, diff_id: &Digest) -> Option<u64> {
        if !self.layer_dir(diff_id).is_dir() {
            return None;
        }
        let meta = std::fs::read(self.layer_meta(diff_id)).ok()?;
        serde_json::from_slice::<LayerMeta>(&meta)
            .ok()
            .map(|m| m.size)
    }

    fn layer_meta(&self, diff_id: &Digest) -> PathBuf {
        self.inner
            .root
            .join("layers/sha256")
            .join(format!("{}.json", diff_id.hex()))
    }

    fn image_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .root
            .join("images")
            .join(format!("{}.json", digest.hex()))
    }

    /// Waits for the lock of one layer: two pulls of a layer unpack it once (the second finds it
    /// in the cache when it gets the lock).
    pub async fn lock_layer(&self, diff_id: &Digest) -> LayerGuard {
        let lock = {
            let mut locks = self
                .inner
                .layer_locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Forget locks nobody holds or waits for.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(diff_id.clone()).or_default().clone()
        };
        LayerGuard {
            diff_id: diff_id.clone(),
            _guard: lock.lock_owned().await,
        }
    }

    /// Held by a pull while it uses cached layers; [`LayerCache::prune`] waits for it.
    pub async fn use_guard(&self) -> UseGuard {
        UseGuard {
            _guard: self.inner.use_lock.clone().read_owned().await,
        }
    }

    /// The image record for a manifest digest, if it was pulled and its layers are all present.
    pub fn image(&self, digest: &Digest) -> Result<Option<Image>, Error> {
        let path = self.image_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("read {}", path.display()))(e)),
        };
        let mut image: Image = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            what: format!("image record {}", path.display()),
            detail: e.to_string(),
        })?;
        image.layers_root = self.inner.root.join("layers/sha256");
        if image.layer_dirs().iter().any(|d| !d.is_dir()) {
            return Ok(None);
        }
        Ok(Some(image))
    }

    /// Every image record in the cache.
    pub fn images(&self) -> Result<Vec<Image>, Error> {
        let dir = self.inner.root.join("images");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))? {
            let entry = entry.map_err(io_err(format!("read {}", dir.display())))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let Ok(digest) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            if let Some(image) = self.image(&digest)? {
                out.push(image);
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Persists an image record (staged and renamed, so a reader sees all of it or nothing).
    pub fn save_image(&self, image: &Image) -> Result<(), Error> {
        let path = self.image_path(&image.digest);
        let json = serde_json::to_vec_pretty(image).map_err(|e| Error::Io {
            context: "serialise image record".to_string(),
            source: io::Error::other(e),
        })?;
        write_atomic(&self.staging_path("image"), &path, &json)
    }

    /// Removes the image records not in `keep` and every layer no kept image uses (and stray
    /// layers no record names). Waits for pulls in progress.
    pub async fn prune(&self, keep: &[Digest]) -> Result<Pruned, Error> {
        let exclusive = self.inner.use_lock.clone().write_owned().await;
        let cache = self.clone();
        let keep: HashSet<Digest> = keep.iter().cloned().collect();
        // The lock goes with the work: were this future dropped (its request's client left),
        // the deletion would run on with the lock released under it.
        tokio::task::spawn_blocking(move || {
            let _exclusive = exclusive;
            cache.prune_blocking(&keep)
        })
        .await
        .map_err(|e| Error::Io {
            context: "prune task".to_string(),
            source: io::Error::other(e),
        })?
    }

    fn prune_blocking(&self, keep: &HashSet<Digest>) -> Result<Pruned, Error> {
        let mut pruned = Pruned::default();
        let mut used = HashSet::new();
        let images_dir = self.inner.root.join("images");
        let entries = std::fs::read_dir(&images_dir)
            .map_err(io_err(format!("read {}", images_dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("read {}", images_dir.display())))?;
            let name = entry.file_name();
            let digest = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
            let Some(digest) = digest else { continue };
            let kept = keep.contains(&digest);
            if kept {
                // A kept record that cannot be read keeps nothing alive: say so rather than prune
                // layers it might use.
                let bytes = std::fs::read(entry.path())
                    .map_err(io_err(format!("read {}", entry.path().display())))?;
                let image: Image = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                    what: format!("image record {}", entry.path().display()),
                    detail: e.to_string(),
                })?;
                used.extend(image.layers.into_iter().map(|l| l.diff_id));
            } else {
                std::fs::remove_file(entry.path())
                    .map_err(io_err(format!("remove {}", entry.path().display())))?;
                pruned.images.push(digest);
            }
        }
        let layers_dir = self.inner.root.join("layers/sha256");
        let entries = std::fs::read_dir(&layers_dir)
            .map_err(io_err(format!("read {}", layers_dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_err(format!("read {}", layers_dir.display())))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let hex = name.strip_suffix(".json").unwrap_or(name);
            let Ok(diff_id) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            if used.contains(&diff_id) {
                continue;
            }
            if name.ends_with(".json") {
                // A sidecar goes with its layer, below; one left without its layer goes now.
                if !self.layer_dir(&diff_id).exists()
                    && let Err(e) = std::fs::remove_file(entry.path())
                    && e.kind() != io::ErrorKind::NotFound
                {
                    return Err(io_err(format!("remove {}", entry.path().display()))(e));
                }
                continue;
            }
            // Move it out of the cache first, so a crash mid-removal leaves no partial layer.
            let doomed = self.staging_path("prune");
            std::fs::rename(entry.path(), &doomed)
                .map_err(io_err(format!("move {}", entry.path().display())))?;
            remove_tree(&doomed).map_err(io_err(format!("remove {}", doomed.display())))?;
            let meta = self.layer_meta(&diff_id);
            if let Err(e) = std::fs::remove_file(&meta)
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(io_err(format!("remove {}", meta.display()))(e));
            }
            pruned.layers.push(diff_id);
        }
        pruned.images.sort();
        pruned.layers.sort();
        Ok(pruned)
    }

    /// Unpacks one layer blob into the cache under its diff_id, unless it is already there, and
    /// returns its uncompressed size. The blob's own digest is the caller's to verify; the
    /// uncompressed stream is checked here against `diff_id`. `image_budget` is what the image
    /// may still add (the per-image limit less its other layers). Blocking: run it off the async
    /// runtime.
    pub fn unpack_layer(
        &self,
        guard: &LayerGuard,
        blob: impl Read,
        compression: Compression,
        image_budget: u64,
    ) -> Result<u64, Error> {
        let diff_id = &guard.diff_id;
        if let Some(size) = self.layer_size(diff_id) {
            return Ok(size);
        }
        let limits = self.inner.limits;
        let limit = limits.max_layer_bytes.min(image_budget);
        let staging = self.staging_path(&format!("layer-{}", &diff_id.hex()[..12]));
        let result = (|| {
            std::fs::create_dir(&staging)
                .map_err(io_err(format!("create {}", staging.display())))?;
            let size = unpack_into(&staging, blob, compression, diff_id, limit, limits)?;
            let meta = serde_json::to_vec(&LayerMeta { size }).map_err(|e| Error::Io {
                context: "serialise layer size".to_string(),
                source: io::Error::other(e),
            })?;
            // The sidecar first: the layer directory's rename is what commits the layer.
            write_atomic(&self.staging_path("meta"), &self.layer_meta(diff_id), &meta)?;
            let dest = self.layer_dir(diff_id);
            match std::fs::rename(&staging, &dest) {
                Ok(()) => {
                    tracing::info!(%diff_id, bytes = size, "layer unpacked");
                    Ok(size)
                }
                // Another process committed it first (the lock is per process): theirs is
                // the same content.
                Err(_) if dest.is_dir() => {
                    let _ = remove_tree(&staging);
                    Ok(size)
                }
                Err(e) => Err(io_err(format!("rename into {}", dest.display()))(e)),
            }
        })();
        if result.is_err()
            && staging.exists()
            && let Err(e) = remove_tree(&staging)
        {
            tracing::warn!(path = %staging.display(), error = %e, "could not remove a failed layer's staging directory");
        }
        match result {
            Err(Error::TooLarge { what, limit: hit })
                if hit == limit && limit < limits.max_layer_bytes =>
            {
                Err(Error::TooLarge {
                    what: format!("{what} (the image's total)"),
                    limit: limits.max_image_bytes,
                })
            }
            other => other,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct LayerMeta {
    size: u64,
}

fn write_atomic(staging: &Path, dest: &Path, bytes: &[u8]) -> Result<(), Error> {
    let result = (|| -> io::Result<()> {
        let mut f = File::create(staging)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(staging, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(staging);
    }
    result.map_err(io_err(format!("write {}", dest.display())))
}

/// Removes a tree, making directories writable first when that is what stopped it (a layer may
/// hold read-only directories, which an unprivileged owner cannot empty otherwise).
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path);
            std::fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn make_dirs_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

/// Reads the decompressed stream: hashes it (diff_id), counts it, and fails once it passes the
/// limit, setting `exceeded` so the caller can tell a bomb from a corrupt stream whatever
/// wrapping the tar reader puts around the error.
///
/// It also caps what is read between two entries the unpacker sees (`between`, reset by the
/// unpacker): the tar reader buffers GNU long names and PAX headers in memory whole, so a header
/// claiming gigabytes of "metadata" would otherwise be held in memory.
struct Metered<R> {
    inner: R,
    hasher: sha2::Sha256,
    bytes: u64,
    limit: u64,
    exceeded: Arc<std::sync::atomic::AtomicBool>,
    between: Arc<AtomicU64>,
    metadata_exceeded: Arc<std::sync::atomic::AtomicBool>,
    cap_metadata: bool,
}

/// Most bytes of tar metadata (headers, long names, PAX records) before one entry.
const MAX_METADATA_BYTES: u64 = 16 << 20;

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        if self.bytes > self.limit {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(io::Error::other("layer exceeds its size limit"));
        }
        if self.cap_metadata
            && self.between.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > MAX_METADATA_BYTES
        {
            self.metadata_exceeded.store(true, Ordering::Relaxed);
            return Err(io::Error::other("tar metadata exceeds its size limit"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct Decoded<'a>(Box<dyn Read + 'a>);

fn decoder<'a>(blob: impl Read + 'a, compression: Compression) -> Result<Decoded<'a>, Error> {
    Ok(Decoded(match compression {
        Compression::None => Box::new(blob),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(blob)),
        Compression::Zstd => {
            Box::new(
                zstd::stream::read::Decoder::new(blob).map_err(|e| Error::Corrupt {
                    what: "zstd layer".to_string(),
                    detail: e.to_string(),
                })?,
            )
        }
    }))
}

/// A directory whose mode and owner are applied once the layer's entries are all written (a
/// read-only directory must stay writable while entries are created in it).
struct DeferredDir {
    components: Vec<OsString>,
    mode: u32,
    uid: u64,
    gid: u64,
}

struct Unpacker {
    root: OwnedFd,
    as_root: bool,
    dirs: Vec<DeferredDir>,
}

fn unpack_into(
    staging: &Path,
    blob: impl Read,
    compression: Compression,
    diff_id: &Digest,
    limit: u64,
    limits: Limits,
) -> Result<u64, Error> {
    let exceeded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let too_large = || Error::TooLarge {
        what: format!("layer {diff_id}"),
        limit,
    };
    let between = Arc::new(AtomicU64::new(0));
    let metadata_exceeded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut metered = Metered {
        inner: decoder(blob, compression)?.0,
        hasher: sha2::Sha256::new(),
        bytes: 0,
        limit,
        exceeded: exceeded.clone(),
        between: between.clone(),
        metadata_exceeded: metadata_exceeded.clone(),
        cap_metadata: true,
    };
    // A read error is a bomb if a meter tripped, else a corrupt stream.
    let read_error = |e: io::Error| {
        if exceeded.load(Ordering::Relaxed) {
            too_large()
        } else if metadata_exceeded.load(Ordering::Relaxed) {
            Error::TooLarge {
                what: format!("tar metadata (long names, pax headers) of layer {diff_id}"),
                limit: MAX_METADATA_BYTES,
            }
        } else {
            Error::Corrupt {
                what: format!("layer {diff_id}"),
                detail: e.to_string(),
            }
        }
    };
    let root = rustix::fs::open(
        staging,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(format!("open {}", staging.display()))(e.into()))?;
    let mut unpacker = Unpacker {
        root,
        as_root: rustix::process::geteuid().is_root(),
        dirs: Vec::new(),
    };
    let mut claimed: u64 = 0;
    let mut count: u64 = 0;
    {
        let mut archive = tar::Archive::new(&mut metered);
        let entries = archive.entries().map_err(read_error)?;
        for entry in entries {
            let mut entry = entry.map_err(read_error)?;
            // An entry's data is not metadata.
            between.store(0, Ordering::Relaxed);
            count += 1;
            if count > limits.max_entries {
                return Err(Error::TooLarge {
                    what: format!("layer {diff_id} entry count"),
                    limit: limits.max_entries,
                });
            }
            // What the headers claim counts before a byte is written: a sparse entry claiming
            // terabytes fails here, not after writing them.
            let header_size = entry.header().size().map_err(read_error)?;
            let claim = header_size.max(entry.size());
            claimed = claimed.saturating_add(claim);
            if claimed > limit {
                return Err(too_large());
            }
            unpacker.entry(&mut entry, &read_error)?;
            // What the unpacker did not read (skipped entries' data) is not metadata either.
            io::copy(&mut entry, &mut io::sink()).map_err(read_error)?;
            between.store(0, Ordering::Relaxed);
        }
    }
    // Whatever follows the end-of-archive blocks is part of the diff_id too.
    metered.cap_metadata = false;
    io::copy(&mut metered, &mut io::sink()).map_err(read_error)?;
    unpacker.finish()?;
    let actual = Digest::from_sha256(metered.hasher.finalize().into());
    if &actual != diff_id {
        return Err(Error::DigestMismatch {
            what: "uncompressed layer (config rootfs.diff_ids)".to_string(),
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(metered.bytes)
}

/// The path's components, refusing absolute paths and `..` (`.` and empty components dropped).
fn components(raw: &[u8], what: &str) -> Result<Vec<OsString>, Error> {
    let text = String::from_utf8_lossy(raw);
    let unsafe_entry = |reason: &str| Error::UnsafeEntry {
        path: text.to_string(),
        reason: format!("{what} {reason}"),
    };
    if raw.first() == Some(&b'/') {
        return Err(unsafe_entry("is absolute"));
    }
    if raw.contains(&0) {
        return Err(unsafe_entry("contains a NUL byte"));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry("has a .. component")),
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

fn errno_io(e: rustix::io::Errno) -> io::Error {
    e.into()
}

impl Unpacker {
    /// Opens the directory at `components` beneath the root one component at a time, never
    /// following a symlink (creating missing directories when `create`).
    fn open_dir(
        &self,
        components: &[OsString],
        create: bool,
        shown: &str,
    ) -> Result<OwnedFd, Error> {
        let mut fd = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open the staging directory")(errno_io(e)))?;
        for c in components {
            if create {
                match rustix::fs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => {
                        return Err(io_err(format!("create directory for {shown}"))(errno_io(e)));
                    }
                }
            }
            fd = match rustix::fs::openat(
                &fd,
                c.as_os_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    return Err(Error::UnsafeEntry {
                        path: shown.to_string(),
                        reason: format!(
                            "its parent {:?} is a symlink or not a directory",
                            c.to_string_lossy()
                        ),
                    });
                }
                Err(e) => return Err(io_err(format!("open the parent of {shown}"))(errno_io(e))),
            };
        }
        Ok(fd)
    }

    /// Removes what is at `name` so a new entry can take its place (a later entry replaces an
    /// earlier one of the same path); an existing directory stays when `keep_dir`.
    fn clear(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        keep_dir: bool,
        shown: &str,
    ) -> Result<(), Error> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err(format!("stat {shown}"))(errno_io(e))),
            Ok(st) => {
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if is_dir && keep_dir {
                    return Ok(());
                }
                let flags = if is_dir {
                    AtFlags::REMOVEDIR
                } else {
                    AtFlags::empty()
                };
                rustix::fs::unlinkat(parent, name, flags).map_err(|e| {
                    if e == rustix::io::Errno::NOTEMPTY {
                        Error::Corrupt {
                            what: format!("layer entry {shown}"),
                            detail: "replaces a non-empty directory".to_string(),
                        }
                    } else {
                        io_err(format!("replace {shown}"))(errno_io(e))
                    }
                })
            }
        }
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        read_error: &dyn Fn(io::Error) -> Error,
    ) -> Result<(), Error> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).to_string();
        let mut comps = components(&raw_path, "path")?;
        let kind = entry.header().entry_type();
        let Some(name) = comps.pop() else {
            // The layer root itself ("./"): its mode is the overlay's business, not the layer's.
            return Ok(());
        };
        let header = entry.header();
        let mode = header.mode().map_err(read_error)? & 0o7777 & !0o6000;
        // Some writers leave these empty; they only matter for chown and times.
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);

        let name_bytes = name.as_bytes();
        if name_bytes == b".wh..wh..opq" {
            let dir = self.open_dir(&comps, true, &shown)?;
            return self.make_opaque(&dir, &shown);
        }
        if let Some(hidden) = name_bytes.strip_prefix(b".wh.") {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(Error::UnsafeEntry {
                    path: shown,
                    reason: "whiteout of no name".to_string(),
                });
            }
            let parent = self.open_dir(&comps, true, &shown)?;
            let hidden = OsStr::from_bytes(hidden);
            self.clear(&parent, hidden, false, &shown)?;
            // An overlay whiteout is a 0/0 character device (Linux >= 5.8 lets unprivileged
            // users make one).
            return rustix::fs::mknodat(
                &parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| io_err(format!("create the overlay whiteout for {shown}"))(errno_io(e)));
        }

        match kind {
            tar::EntryType::Directory => {
                let parent = self.open_dir(&comps, true, &shown)?;
                self.clear(&parent, &name, true, &shown)?;
                match rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(io_err(format!("create directory {shown}"))(errno_io(e))),
                }
                comps.push(name);
                self.dirs.push(DeferredDir {
                    components: comps,
                    mode,
                    uid,
                    gid,
                });
                Ok(())
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let parent = self.open_dir(&comps, true, &shown)?;
                self.clear(&parent, &name, false, &shown)?;
                let fd = rustix::fs::openat(
                    &parent,
                    name.as_os_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err(format!("create {shown}"))(errno_io(e)))?;
                let mut file = File::from(fd);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = entry.read(&mut buf).map_err(read_error)?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&buf[..n])
                        .map_err(io_err(format!("write {shown}")))?;
                }
                if self.as_root {
                    rustix::fs::fchown(&file, Some(uid_of(uid)), Some(gid_of(gid)))
                        .map_err(|e| io_err(format!("chown {shown}"))(errno_io(e)))?;
                }
                // After chown, which clears set-id bits anyway; they are never kept.
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                    .map_err(|e| io_err(format!("chmod {shown}"))(errno_io(e)))?;
                let when = rustix::fs::Timespec {
                    tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
                    tv_nsec: 0,
                };
                // Kept because interpreters compare them (Python's .pyc checks its source's).
                rustix::fs::futimens(
                    &file,
                    &Timestamps {
                        last_access: when,
                        last_modification: when,
                    },
                )
                .map_err(|e| io_err(format!("set times of {shown}"))(errno_io(e)))?;
                Ok(())
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.is_empty() || target.contains(&0) {
                    return Err(Error::Corrupt {
                        what: format!("layer entry {shown}"),
                        detail: "symlink without a valid target".to_string(),
                    });
                }
                let parent = self.open_dir(&comps, true, &shown)?;
                self.clear(&parent, &name, false, &shown)?;
                // The target as written: it is resolved at run time against the container's root.
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str())
                    .map_err(|e| io_err(format!("create symlink {shown}"))(errno_io(e)))?;
                if self.as_root {
                    rustix::fs::chownat(
                        &parent,
                        name.as_os_str(),
                        Some(uid_of(uid)),
                        Some(gid_of(gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_err(format!("chown {shown}"))(errno_io(e)))?;
                }
                Ok(())
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let mut target_comps = components(&target, "hard link target")?;
                let Some(target_name) = target_comps.pop() else {
                    return Err(Error::UnsafeEntry {
                        path: shown,
                        reason: "hard link to the layer root".to_string(),
                    });
                };
                let target_parent = self.open_dir(&target_comps, false, &shown).map_err(
                    |e| match e {
                        Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                            Error::UnsafeEntry {
                                path: shown.clone(),
                                reason: format!(
                                    "hard link to {:?}, which is not an earlier entry of the layer",
                                    String::from_utf8_lossy(&target)
                                ),
                            }
                        }
                        other => other,
                    },
                )?;
                let parent = self.open_dir(&comps, true, &shown)?;
                self.clear(&parent, &name, false, &shown)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                rustix::fs::linkat(
                    &target_parent,
                    target_name.as_os_str(),
                    &parent,
                    name.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| match e {
                    rustix::io::Errno::NOENT => Error::UnsafeEntry {
                        path: shown.clone(),
                        reason: format!(
                            "hard link to {:?}, which is not an earlier entry of the layer",
                            String::from_utf8_lossy(&target)
                        ),
                    },
                    rustix::io::Errno::PERM => Error::UnsafeEntry {
                        path: shown.clone(),
                        reason: "hard link to a directory".to_string(),
                    },
                    e => io_err(format!("create hard link {shown}"))(errno_io(e)),
                })
            }
            // The sandbox supplies /dev; device nodes and fifos from an image are not made.
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                tracing::debug!(path = %shown, "skipped a device or fifo entry");
                Ok(())
            }
            other => {
                tracing::debug!(path = %shown, kind = ?other, "skipped a tar entry of an unhandled type");
                Ok(())
            }
        }
    }

    fn make_opaque(&self, dir: &OwnedFd, shown: &str) -> Result<(), Error> {
        // trusted.* for an overlay mounted by real root, user.* for one mounted with `userxattr`
        // in a user namespace; at least one must stick.
        let trusted =
            rustix::fs::fsetxattr(dir, "trusted.overlay.opaque", b"y", XattrFlags::empty());
        let user = rustix::fs::fsetxattr(dir, "user.overlay.opaque", b"y", XattrFlags::empty());
        match (trusted, user) {
            (Err(e), Err(_)) => Err(io_err(format!("mark {shown} opaque"))(errno_io(e))),
            (Err(e), Ok(())) if self.as_root => Err(io_err(format!(
                "mark {shown} opaque (trusted.overlay.opaque)"
            ))(errno_io(e))),
            _ => Ok(()),
        }
    }

    /// Applies the deferred directory modes and owners, deepest first.
    fn finish(&mut self) -> Result<(), Error> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components.len()));
        for d in dirs {
            let shown = d
                .components
                .iter()
                .map(|c| c.to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let fd = match self.open_dir(&d.components, false, &shown) {
                Ok(fd) => fd,
                // A later entry replaced it: nothing to apply.
                Err(Error::UnsafeEntry { .. }) => continue,
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            if self.as_root {
                rustix::fs::fchown(&fd, Some(uid_of(d.uid)), Some(gid_of(d.gid)))
                    .map_err(|e| io_err(format!("chown {shown}"))(errno_io(e)))?;
            }
            rustix::fs::fchmod(fd.as_fd(), Mode::from_raw_mode(d.mode))
                .map_err(|e| io_err(format!("chmod {shown}"))(errno_io(e)))?;
        }
        // The rename that commits the layer must not reach the disk before its files do.
        rustix::fs::syncfs(&self.root).map_err(|e| io_err("sync the layer")(errno_io(e)))
    }
}

fn uid_of(id: u64) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u32::try_from(id).unwrap_or(u32::MAX - 1))
}

fn gid_of(id: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(u32::try_from(id).unwrap_or(u32::MAX - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_normalise_and_refuse_escapes() {
        let c = components(b"./a//b/./c/", "path").unwrap();
        assert_eq!(c, vec![OsString::from("a"), "b".into(), "c".into()]);
        assert!(components(b"/etc/passwd", "path").is_err());
        assert!(components(b"a/../../x", "path").is_err());
        assert!(components(b"..", "path").is_err());
        assert!(components(b"./", "path").unwrap().is_empty());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
                .unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        assert!(matches!(
            Compression::from_media_type(
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            ),
            Err(Error::UnsupportedMediaType { .. })
        ));
    }
}
