//! The built-in registry's storage and rules: what the OCI Distribution API (v1.1) does, without
//! HTTP. `berth-server` maps the API's routes onto [`Registry`]; the rest of Berth reads images
//! through [`Registry::resolve`] and [`Registry::open_blob`].
//!
//! On disk, under the directory given at [`Registry::open`]:
//!
//! ```text
//! blobs/sha256/<hex>                               content, by digest (manifests too)
//! repositories/<name>/_layers/<hex>                the repository holds blob <hex> (empty file)
//! repositories/<name>/_manifests/revisions/<hex>   the repository holds manifest <hex> (its media type)
//! repositories/<name>/_manifests/tags/<tag>        the tag's digest
//! repositories/<name>/_manifests/referrers/<subject hex>/<hex>   manifest <hex> names <subject> (empty)
//! uploads/<id>/{repo,data}                         an upload session and the bytes it has so far
//! tmp/                                             small files being written
//! ```
//!
//! Architecture Invariant: nothing half-written is ever visible. A blob is streamed into its
//! upload's file, fsynced, its digest verified, then renamed into `blobs/` (and the directory
//! fsynced) before the call returns; links and tags are written to `tmp/`, fsynced and renamed.
//! A failed chunk is cut off the upload again. Repository names cannot collide with the `_`
//! directories: every name component starts with a letter or digit.
//!
//! Blobs are shared between repositories; deleting removes a repository's link, not the content
//! (there is no garbage collection yet).

mod error;
mod manifest;
mod names;

pub use error::Error;
pub use manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
pub use names::{Digest, MAX_NAME_LEN, ManifestRef, parse_image, validate_name, validate_tag};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

/// The default per-blob size cap: 10 GiB.
pub const DEFAULT_MAX_BLOB_SIZE: u64 = 10 << 30;

/// Largest manifest accepted or read (the spec's suggested minimum a registry must take).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// How the registry is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// The storage directory (`<data dir>/registry` under `berth serve`).
    pub root: PathBuf,
    /// Largest blob an upload may reach.
    pub max_blob_size: u64,
}

/// The registry. Cheap to clone; clones share the storage.
#[derive(Clone, Debug)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    max_blob_size: u64,
    /// Uploads a request is writing to now: a second writer is refused rather than interleaved.
    busy: Mutex<HashSet<String>>,
}

/// A stored manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Its digest (`Docker-Content-Digest`).
    pub digest: Digest,
    /// Its media type (`Content-Type`).
    pub media_type: String,
    /// The exact bytes pushed.
    pub bytes: Bytes,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The names, in lexical order.
    pub items: Vec<String>,
    /// Whether more follow the last item.
    pub more: bool,
}

/// A blob opened for reading.
#[derive(Debug)]
pub struct Blob {
    /// The file, positioned at its start.
    pub file: tokio::fs::File,
    /// Its size in bytes.
    pub size: u64,
}

/// A chunk stream handed to the registry: the request body, frame by frame.
pub type Chunks<'a> = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send + 'a>>;

/// What a completed upload or mount left in the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// Where a blob upload (or mount) request went.
#[derive(Debug)]
pub enum Started {
    /// A new upload session; more requests follow.
    Upload(String),
    /// The blob is in the repository already (mounted from another one, or pushed whole).
    Done(Stored),
}

/// Marks an upload busy while a request writes to it.
struct Busy<'a> {
    inner: &'a Inner,
    id: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Registry {
    /// Opens (creating) the registry's storage at `opts.root`, removing small files a crash
    /// left half-written in `tmp/`.
    pub async fn open(opts: Options) -> Result<Self, Error> {
        let root = opts.root;
        for d in ["blobs/sha256", "repositories", "uploads", "tmp"] {
            tokio::fs::create_dir_all(root.join(d)).await?;
        }
        let mut tmp = tokio::fs::read_dir(root.join("tmp")).await?;
        while let Some(e) = tmp.next_entry().await? {
            tokio::fs::remove_file(e.path()).await?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                max_blob_size: opts.max_blob_size,
                busy: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The per-blob size cap.
    pub fn max_blob_size(&self) -> u64 {
        self.inner.max_blob_size
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.inner.root.join("blobs/sha256").join(d.hex())
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.inner.root.join("repositories").join(name)
    }

    fn layer_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name).join("_layers").join(d.hex())
    }

    fn revision(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name).join("_manifests/revisions").join(d.hex())
    }

    fn referrer_link(&self, name: &str, subject: &Digest, d: &Digest) -> PathBuf {
        self.repo(name)
            .join("_manifests/referrers")
            .join(subject.hex())
            .join(d.hex())
    }

    fn tag_path(&self, name: &str, tag: &str) -> PathBuf {
        self.repo(name).join("_manifests/tags").join(tag)
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.inner.root.join("uploads").join(id)
    }

    /// Writes `bytes` to `path` so that it appears whole or not at all, durably.
    async fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let tmp = self
            .inner
            .root
            .join("tmp")
            .join(uuid::Uuid::new_v4().to_string());
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(bytes).await?;
        f.sync_all().await?;
        drop(f);
        let parent = path
            .parent()
            .ok_or_else(|| std::io::Error::other("a registry path has a parent"))?;
        tokio::fs::create_dir_all(parent).await?;
        if let Err(e) = tokio::fs::rename(&tmp, path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        sync_dir(parent).await
    }

    // ------------------------------------------------------------------------------- blobs

    /// The size of blob `digest` if repository `name` holds it.
    pub async fn stat_blob(&self, name: &str, digest: &Digest) -> Result<u64, Error> {
        validate_name(name)?;
        if !exists(&self.layer_link(name, digest)).await? {
            return Err(Error::BlobUnknown);
        }
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::BlobUnknown),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens blob `digest` of repository `name` for reading.
    pub async fn open_blob(&self, name: &str, digest: &Digest) -> Result<Blob, Error> {
        let size = self.stat_blob(name, digest).await?;
        match tokio::fs::File::open(self.blob_path(digest)).await {
            Ok(file) => Ok(Blob { file, size }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::BlobUnknown),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes blob `digest` from repository `name` (the content stays while other
    /// repositories or manifests may use it).
    pub async fn delete_blob(&self, name: &str, digest: &Digest) -> Result<(), Error> {
        validate_name(name)?;
        match tokio::fs::remove_file(self.layer_link(name, digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::BlobUnknown),
            Err(e) => Err(e.into()),
        }
    }

    async fn link_blob(&self, name: &str, digest: &Digest) -> Result<(), Error> {
        let link = self.layer_link(name, digest);
        if exists(&link).await? {
            return Ok(());
        }
        self.write_atomic(&link, b"").await
    }

    // ----------------------------------------------------------------------------- uploads

    /// Starts an upload session in repository `name`; returns its id.
    pub async fn start_upload(&self, name: &str) -> Result<String, Error> {
        validate_name(name)?;
        let id = uuid::Uuid::new_v4().to_string();
        let dir = self.upload_dir(&id);
        tokio::fs::create_dir(&dir).await?;
        tokio::fs::File::create(dir.join("data")).await?;
        // The repository file last: an upload without one is not found (and is removed).
        tokio::fs::write(dir.join("repo"), name.as_bytes()).await?;
        Ok(id)
    }

    /// `POST ...?mount=<digest>&from=<repo>`: links the blob into `name` when `from` holds it;
    /// otherwise starts an upload, as the spec asks.
    pub async fn mount_or_start(
        &self,
        name: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<Started, Error> {
        validate_name(name)?;
        if validate_name(from).is_ok()
            && let Ok(size) = self.stat_blob(from, digest).await
        {
            self.link_blob(name, digest).await?;
            return Ok(Started::Done(Stored {
                digest: digest.clone(),
                size,
            }));
        }
        self.start_upload(name).await.map(Started::Upload)
    }

    /// A monolithic upload (`POST ...?digest=`): the whole blob in one body.
    pub async fn put_blob(
        &self,
        name: &str,
        digest: &Digest,
        declared: Option<u64>,
        body: Chunks<'_>,
    ) -> Result<Stored, Error> {
        let id = self.start_upload(name).await?;
        let r = self.complete(name, &id, digest, None, declared, body).await;
        if r.is_err() {
            // A failed monolithic upload has no session to resume.
            let _ = tokio::fs::remove_dir_all(self.upload_dir(&id)).await;
        }
        r
    }

    /// Claims upload `id` of repository `name` for one request.
    fn claim(&self, id: &str) -> Result<Busy<'_>, Error> {
        // Ids are uuids; anything else would be a path outside `uploads/`.
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(Error::BlobUploadUnknown);
        }
        let mut busy = self
            .inner
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !busy.insert(id.to_owned()) {
            return Err(Error::BlobUploadInvalid(
                "another request is writing to this upload".into(),
            ));
        }
        Ok(Busy {
            inner: &self.inner,
            id: id.to_owned(),
        })
    }

    /// The upload's data file and size, if `id` is an upload of repository `name`.
    async fn upload(&self, name: &str, id: &str) -> Result<(PathBuf, u64), Error> {
        validate_name(name)?;
        let dir = self.upload_dir(id);
        let owner = match tokio::fs::read(dir.join("repo")).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::BlobUploadUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        if owner != name.as_bytes() {
            return Err(Error::BlobUploadUnknown);
        }
        let data = dir.join("data");
        let size = tokio::fs::metadata(&data).await?.len();
        Ok((data, size))
    }

    /// Bytes upload `id` holds (`GET` on the upload).
    pub async fn upload_size(&self, name: &str, id: &str) -> Result<u64, Error> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(Error::BlobUploadUnknown);
        }
        Ok(self.upload(name, id).await?.1)
    }

    /// Cancels upload `id` (`DELETE` on the upload).
    pub async fn cancel_upload(&self, name: &str, id: &str) -> Result<(), Error> {
        let _busy = self.claim(id)?;
        self.upload(name, id).await?;
        tokio::fs::remove_dir_all(self.upload_dir(id)).await?;
        Ok(())
    }

    /// `PATCH`: appends a chunk. `start` is the first byte of a `Content-Range` (it must be
    /// where the upload ends); `declared` the `Content-Length`. Returns the upload's new size.
    /// A chunk that fails is cut off again.
    pub async fn append(
        &self,
        name: &str,
        id: &str,
        start: Option<u64>,
        declared: Option<u64>,
        body: Chunks<'_>,
    ) -> Result<u64, Error> {
        let _busy = self.claim(id)?;
        self.append_claimed(name, id, start, declared, body).await
    }

    async fn append_claimed(
        &self,
        name: &str,
        id: &str,
        start: Option<u64>,
        declared: Option<u64>,
        mut body: Chunks<'_>,
    ) -> Result<u64, Error> {
        let (data, size) = self.upload(name, id).await?;
        if start.is_some_and(|s| s != size) {
            return Err(Error::RangeInvalid { size });
        }
        let max = self.inner.max_blob_size;
        if declared.is_some_and(|n| size.saturating_add(n) > max) {
            return Err(Error::TooLarge { limit: max });
        }
        let mut f = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&data)
            .await?;
        let mut len = size;
        let written: Result<(), Error> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                len += chunk.len() as u64;
                if len > max {
                    return Err(Error::TooLarge { limit: max });
                }
                f.write_all(&chunk).await?;
            }
            if let Some(n) = declared
                && len - size != n
            {
                return Err(Error::SizeInvalid(format!(
                    "{n} bytes announced, {} sent",
                    len - size
                )));
            }
            f.flush().await?;
            Ok(())
        }
        .await;
        if let Err(e) = written {
            // Cut the failed chunk off: the upload resumes from where it was.
            f.set_len(size).await?;
            return Err(e);
        }
        Ok(len)
    }

    /// `PUT ...?digest=`: appends the last chunk (if any), verifies the digest and stores the
    /// blob durably. On a digest mismatch the upload is removed, nothing stored.
    pub async fn complete(
        &self,
        name: &str,
        id: &str,
        digest: &Digest,
        start: Option<u64>,
        declared: Option<u64>,
        body: Chunks<'_>,
    ) -> Result<Stored, Error> {
        let _busy = self.claim(id)?;
        let size = self.append_claimed(name, id, start, declared, body).await?;
        let (data, _) = self.upload(name, id).await?;
        let path = data.clone();
        let actual = tokio::task::spawn_blocking(move || -> std::io::Result<Digest> {
            let mut f = std::fs::File::open(&path)?;
            f.sync_all()?;
            let mut h = Sha256::new();
            let mut buf = vec![0; 1 << 20];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(Digest::from_hasher(h))
        })
        .await
        .map_err(|e| std::io::Error::other(format!("hashing task: {e}")))??;
        if &actual != digest {
            tokio::fs::remove_dir_all(self.upload_dir(id)).await?;
            return Err(Error::DigestInvalid(format!(
                "the upload's digest is {actual}, not {digest}"
            )));
        }
        let blob = self.blob_path(digest);
        if exists(&blob).await? {
            // Same digest, same content: the copy already stored is kept.
            tokio::fs::remove_dir_all(self.upload_dir(id)).await?;
        } else {
            tokio::fs::rename(&data, &blob).await?;
            sync_dir(&self.inner.root.join("blobs/sha256")).await?;
            tokio::fs::remove_dir_all(self.upload_dir(id)).await?;
        }
        self.link_blob(name, digest).await?;
        Ok(Stored {
            digest: digest.clone(),
            size,
        })
    }

    // --------------------------------------------------------------------------- manifests

    /// Stores a manifest under `reference` (a tag, or the digest it must have). Every blob and
    /// child manifest it references must be in the repository already.
    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &ManifestRef,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<Manifest, Error> {
        validate_name(name)?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(Error::ManifestInvalid(format!(
                "a manifest is at most {MAX_MANIFEST_SIZE} bytes"
            )));
        }
        let parsed = manifest::parse(content_type, &bytes)?;
        let digest = Digest::of(&bytes);
        if let ManifestRef::Digest(d) = reference
            && d != &digest
        {
            return Err(Error::DigestInvalid(format!(
                "the manifest's digest is {digest}, not {d}"
            )));
        }
        for b in &parsed.blobs {
            if self.stat_blob(name, b).await.is_err() {
                return Err(Error::ManifestBlobUnknown(format!("blob {b}")));
            }
        }
        for m in &parsed.manifests {
            if !exists(&self.revision(name, m)).await? {
                return Err(Error::ManifestBlobUnknown(format!("manifest {m}")));
            }
        }
        let blob = self.blob_path(&digest);
        if !exists(&blob).await? {
            self.write_atomic(&blob, &bytes).await?;
        }
        self.write_atomic(&self.revision(name, &digest), parsed.media_type.as_bytes())
            .await?;
        if let Some(subject) = &parsed.subject {
            self.write_atomic(&self.referrer_link(name, subject, &digest), b"")
                .await?;
        }
        if let ManifestRef::Tag(t) = reference {
            self.write_atomic(&self.tag_path(name, t), digest.as_str().as_bytes())
                .await?;
        }
        Ok(Manifest {
            digest,
            media_type: parsed.media_type,
            bytes,
        })
    }

    /// The subject a manifest's bytes name, if any (for the `OCI-Subject` header).
    pub fn subject_of(bytes: &[u8]) -> Option<Digest> {
        manifest::parse(None, bytes).ok().and_then(|p| p.subject)
    }

    async fn digest_of(&self, name: &str, reference: &ManifestRef) -> Result<Digest, Error> {
        validate_name(name)?;
        match reference {
            ManifestRef::Digest(d) => Ok(d.clone()),
            ManifestRef::Tag(t) => match tokio::fs::read_to_string(self.tag_path(name, t)).await {
                Ok(s) => Digest::parse(s.trim()).map_err(|_| {
                    std::io::Error::other(format!("tag file {name}:{t} is corrupt")).into()
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ManifestUnknown),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// The manifest `reference` names in repository `name`.
    pub async fn get_manifest(
        &self,
        name: &str,
        reference: &ManifestRef,
    ) -> Result<Manifest, Error> {
        let digest = self.digest_of(name, reference).await?;
        let media_type = match tokio::fs::read_to_string(self.revision(name, &digest)).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ManifestUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = match tokio::fs::read(self.blob_path(&digest)).await {
            Ok(b) => Bytes::from(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::ManifestUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Manifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Resolves `repo:tag`, `repo@sha256:...` or `repo` (`:latest`): the read API for the
    /// rest of Berth.
    pub async fn resolve(&self, image: &str) -> Result<(String, Manifest), Error> {
        let (name, reference) = parse_image(image)?;
        let m = self.get_manifest(&name, &reference).await?;
        Ok((name, m))
    }

    /// Deletes a tag, or a manifest by digest with every tag pointing at it.
    pub async fn delete_manifest(&self, name: &str, reference: &ManifestRef) -> Result<(), Error> {
        validate_name(name)?;
        match reference {
            ManifestRef::Tag(t) => match tokio::fs::remove_file(self.tag_path(name, t)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ManifestUnknown),
                Err(e) => Err(e.into()),
            },
            ManifestRef::Digest(d) => {
                // Its entry in the referrers index goes with it (the bytes say which subject).
                if let Ok(bytes) = tokio::fs::read(self.blob_path(d)).await
                    && let Some(subject) = Self::subject_of(&bytes)
                {
                    let _ = tokio::fs::remove_file(self.referrer_link(name, &subject, d)).await;
                }
                match tokio::fs::remove_file(self.revision(name, d)).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(Error::ManifestUnknown);
                    }
                    Err(e) => return Err(e.into()),
                }
                for t in self.all_tags(name).await? {
                    if self
                        .digest_of(name, &ManifestRef::Tag(t.clone()))
                        .await
                        .ok()
                        == Some(d.clone())
                    {
                        let _ = tokio::fs::remove_file(self.tag_path(name, &t)).await;
                    }
                }
                Ok(())
            }
        }
    }

    /// The referrers API: descriptors of the manifests in repository `name` whose `subject` is
    /// `subject`, in digest order, only those of `artifact_type` when given. Empty (never an
    /// error) when there are none, as the spec asks.
    pub async fn referrers(
        &self,
        name: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, Error> {
        validate_name(name)?;
        let dir = self
            .repo(name)
            .join("_manifests/referrers")
            .join(subject.hex());
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut digests = Vec::new();
        while let Some(e) = entries.next_entry().await? {
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|h| Digest::parse(&format!("sha256:{h}")).ok())
            {
                digests.push(d);
            }
        }
        digests.sort();
        let mut out = Vec::new();
        for d in digests {
            let m = match self.get_manifest(name, &ManifestRef::Digest(d)).await {
                Ok(m) => m,
                // Deleted since it was indexed.
                Err(Error::ManifestUnknown) => continue,
                Err(e) => return Err(e),
            };
            let Ok(parsed) = manifest::parse(Some(&m.media_type), &m.bytes) else {
                continue;
            };
            if artifact_type.is_some_and(|t| parsed.artifact_type.as_deref() != Some(t)) {
                continue;
            }
            let mut desc = serde_json::json!({
                "mediaType": m.media_type,
                "digest": m.digest.as_str(),
                "size": m.bytes.len(),
            });
            if let Some(t) = parsed.artifact_type {
                desc["artifactType"] = t.into();
            }
            if let Some(a) = parsed.annotations {
                desc["annotations"] = a;
            }
            out.push(desc);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------------------- listings

    async fn all_tags(&self, name: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut dir = match tokio::fs::read_dir(self.repo(name).join("_manifests/tags")).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(e) = dir.next_entry().await? {
            if let Some(t) = e.file_name().to_str() {
                out.push(t.to_owned());
            }
        }
        Ok(out)
    }

    /// The repository's tags after `last`, at most `n` of them.
    pub async fn tags(
        &self,
        name: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page, Error> {
        validate_name(name)?;
        let repo = self.repo(name);
        if !(exists(&repo.join("_manifests")).await? || exists(&repo.join("_layers")).await?) {
            return Err(Error::NameUnknown);
        }
        Ok(page(self.all_tags(name).await?, n, last))
    }

    /// The repositories after `last`, at most `n` of them.
    pub async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<Page, Error> {
        let root = self.inner.root.join("repositories");
        let names = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk_repositories(&root, "", &mut out)?;
            Ok::<_, std::io::Error>(out)
        })
        .await
        .map_err(|e| std::io::Error::other(format!("catalog task: {e}")))??;
        Ok(page(names, n, last))
    }
}

fn page(mut items: Vec<String>, n: Option<usize>, last: Option<&str>) -> Page {
    items.sort();
    if let Some(l) = last {
        items.retain(|i| i.as_str() > l);
    }
    let more = n.is_some_and(|n| items.len() > n);
    if let Some(n) = n {
        items.truncate(n);
    }
    Page { items, more }
}

fn is_repository(dir: &Path) -> bool {
    dir.join("_manifests").is_dir() || dir.join("_layers").is_dir()
}

fn walk_repositories(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let Some(component) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if component.starts_with('_') || !e.file_type()?.is_dir() {
            continue;
        }
        let name = if prefix.is_empty() {
            component
        } else {
            format!("{prefix}/{component}")
        };
        let path = e.path();
        if is_repository(&path) {
            out.push(name.clone());
        }
        walk_repositories(&path, &name, out)?;
    }
    Ok(())
}

async fn exists(p: &Path) -> Result<bool, Error> {
    Ok(tokio::fs::try_exists(p).await?)
}

async fn sync_dir(dir: &Path) -> Result<(), Error> {
    tokio::fs::File::open(dir).await?.sync_all().await?;
    Ok(())
}

#[cfg(test)]
mod tests;
