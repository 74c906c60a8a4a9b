//! Berth's S3-compatible artifact store: where agent code zips live.
//!
//! Users upload with boto3's `s3` client pointed at Berth and reference the object in
//! `CreateAgentRuntime` (`codeConfiguration.code.s3 {bucket, prefix}`); the version builder reads
//! it back with [`ArtifactStore::read_object`]. The server's S3 handler (`crates/server/src/s3.rs`)
//! routes requests to the operations here and renders them with [`wire`].
//!
//! Two backends, chosen at start-up by [`ArtifactStore::open`]:
//!
//! - **local** (the default): a durable object store in a directory, described in detail in
//!   the `local` module docs. Summary: each object is a content file plus a small JSON metadata
//!   "sidecar", both named by the SHA-256 of the key (so no key, `../../etc/passwd` included, is
//!   ever used as a path); writes are staged, fsynced, renamed into place (the sidecar rename is
//!   the commit point) and the directory fsynced before the call returns; an in-memory index
//!   answers `HEAD` and listings. JSON sidecars rather than SQLite keep this crate free of a
//!   database (only `berth-store` uses sqlx) and make each object's state one atomic rename.
//! - **external**: an S3-compatible service (AWS S3, MinIO, another Berth...) through the
//!   `object_store` crate, shared by several Berth nodes so that any node can build any version.
//!   Writable: PutObject and DeleteObject go straight to the service (checksums verified by
//!   Berth first); multipart uploads are staged on the node that created them and sent at
//!   completion. Buckets are the operator's to create in the service. `read_only=true` in the
//!   URL refuses every write. See the `external` module docs for the URL format and why
//!   multipart uploads are staged.
//!
//! Semantics follow S3 (us-east-1): creating a bucket you already own succeeds; deleting a
//! missing object succeeds; `ETag` is the quoted hex MD5 of the content; objects uploaded
//! without a checksum get a CRC64NVME one, as S3 does; listings are in UTF-8 binary key order.
//! Multipart uploads (boto3's `upload_file` switches to them at 8 MiB) follow S3's part rules,
//! entity tags and composite or full-object checksums on both backends. Not
//! implemented (clear `NotImplemented` errors from the server): versioning, copy, tagging, ACLs,
//! object lock, SSE-C/KMS.

mod checksum;
mod error;
mod external;
mod listing;
mod local;
mod model;
mod names;
pub mod wire;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

pub use checksum::{Checksum, ChecksumAlgorithm, Hasher};
pub use error::Error;
pub use model::{
    BodyStream, BucketInfo, ByteRange, ChecksumType, CompleteMeta, CompletePart,
    DEFAULT_CONTENT_TYPE, ListQuery, Listing, MAX_LIST_KEYS, MAX_PART_NUMBER, MAX_USER_METADATA,
    MIN_PART_SIZE, MultipartUpload, ObjectBody, ObjectHeaders, ObjectMeta, PartInfo, PartListing,
    PartMeta, PutMeta, UploadMeta, WriteCondition,
};
pub use names::{MAX_KEY_LEN, validate_bucket_name, validate_key};

use external::ExternalStore;
use local::LocalStore;

/// Largest object [`ArtifactStore::read_object`] loads into memory. Agent code zips are far
/// smaller; the cap keeps one bad reference from exhausting memory.
pub const MAX_READ_OBJECT: u64 = 512 * 1024 * 1024;

/// Region recorded for buckets created without one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The artifact store. Cheap to clone; all clones share one backend.
#[derive(Clone)]
pub struct ArtifactStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Local(Arc<LocalStore>),
    External(Arc<ExternalStore>),
}

impl fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Runs blocking filesystem work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::io(
            "artifact store task failed",
            std::io::Error::other(e.to_string()),
        )
    })?
}

impl ArtifactStore {
    /// Opens (creating it if needed) a local store in `dir`, removing leftovers of interrupted
    /// writes and loading its index.
    pub async fn open_local(dir: &Path) -> Result<Self, Error> {
        let dir = dir.to_path_buf();
        let store = blocking(move || LocalStore::open(&dir)).await?;
        Ok(Self {
            backend: Backend::Local(Arc::new(store)),
        })
    }

    /// Opens the store a configuration URL names, reading `AWS_*` settings for an external store
    /// from the process environment:
    ///
    /// - `""` or `"local"`: a local store in `<data_dir>/artifacts`;
    /// - `"file:///absolute/path"`: a local store in that directory;
    /// - `"s3://?endpoint=http://host:9000&region=us-east-1"`: an external S3-compatible store
    ///   (see the crate docs), staging multipart uploads in `<data_dir>/artifact-uploads`;
    ///   `read_only=true` refuses writes.
    pub async fn open(url: &str, data_dir: &Path) -> Result<Self, Error> {
        Self::open_with_env(url, data_dir, std::env::vars()).await
    }

    /// [`ArtifactStore::open`] with the environment passed in, so tests never touch the process
    /// environment.
    pub async fn open_with_env(
        url: &str,
        data_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let url = url.trim();
        if url.is_empty() || url == "local" {
            return Self::open_local(&data_dir.join("artifacts")).await;
        }
        if let Some(path) = url.strip_prefix("file://") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(Error::Config {
                    reason: format!("artifact store url {url:?} must name an absolute path"),
                });
            }
            return Self::open_local(&path).await;
        }
        if url.starts_with("s3://") {
            let mut store = ExternalStore::from_url(url, env)?;
            if !store.is_read_only() {
                let dir = data_dir.join(EXTERNAL_UPLOADS_DIR);
                let staging = blocking(move || LocalStore::open(&dir)).await?;
                store = store.with_staging(Arc::new(staging));
            }
            tracing::info!(
                endpoint = store.endpoint(),
                read_only = store.is_read_only(),
                "artifact store: external s3"
            );
            return Ok(Self {
                backend: Backend::External(Arc::new(store)),
            });
        }
        Err(Error::Config {
            reason: format!(
                "artifact store url {url:?} is not \"local\", file:///path or s3://?endpoint=..."
            ),
        })
    }

    /// True when writes are refused (an external store opened with `read_only=true`).
    pub fn is_read_only(&self) -> bool {
        match &self.backend {
            Backend::Local(_) => false,
            Backend::External(e) => e.is_read_only(),
        }
    }

    /// A one-line description for logs: `local:/var/lib/berth/artifacts`, `s3:<endpoint>` or
    /// `s3:<endpoint> (read-only)`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Local(l) => format!("local:{}", l.root().display()),
            Backend::External(e) if e.is_read_only() => format!("s3:{} (read-only)", e.endpoint()),
            Backend::External(e) => format!("s3:{}", e.endpoint()),
        }
    }

    /// Creates a bucket for `region` ([`DEFAULT_REGION`] when `None`). Creating a bucket that
    /// already exists succeeds, as S3 does in us-east-1 for the bucket's owner (Berth is
    /// single-tenant, so every bucket is the caller's).
    pub async fn create_bucket(&self, bucket: &str, region: Option<&str>) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(l) => {
                let (l, bucket) = (l.clone(), bucket.to_owned());
                let region = region.unwrap_or(DEFAULT_REGION).to_owned();
                blocking(move || l.create_bucket(&bucket, &region)).await
            }
            // As on S3 in us-east-1, creating a bucket one already has succeeds; the operator
            // makes new ones in the external service.
            Backend::External(e) => match e.bucket_exists(bucket).await? {
                true => Ok(()),
                false => Err(external_bucket_writes("creating")),
            },
        }
    }

    /// Describes a bucket, or fails with [`Error::NoSuchBucket`].
    pub async fn head_bucket(&self, bucket: &str) -> Result<BucketInfo, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                l.head_bucket(bucket)
            }
            Backend::External(_) => Err(external_bucket_ops()),
        }
    }

    /// Every bucket, by name.
    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>, Error> {
        match &self.backend {
            Backend::Local(l) => Ok(l.list_buckets()),
            Backend::External(_) => Err(external_bucket_ops()),
        }
    }

    /// Deletes an empty bucket ([`Error::BucketNotEmpty`] otherwise).
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket) = (l.clone(), bucket.to_owned());
                blocking(move || l.delete_bucket(&bucket)).await
            }
            Backend::External(_) => Err(external_bucket_writes("deleting")),
        }
    }

    /// Stores `body` under `key`, replacing any object there, after checking it against
    /// `meta.content_md5` and `meta.checksum`. Durable when it returns.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: PutMeta,
    ) -> Result<ObjectMeta, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, key) = (l.clone(), bucket.to_owned(), key.to_owned());
                blocking(move || l.put_object(&bucket, &key, &body, meta)).await
            }
            Backend::External(e) => e.put_object(bucket, key, body, meta).await,
        }
    }

    /// An object's metadata.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                l.head_object(bucket, key)
            }
            Backend::External(e) => e.head_object(bucket, key).await,
        }
    }

    /// An object's metadata and content (or the part `range` selects), streamed from storage.
    /// The body reflects the object as it was when this returned, even if it is overwritten or
    /// deleted while the stream is read.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectMeta, ObjectBody), Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, key) = (l.clone(), bucket.to_owned(), key.to_owned());
                blocking(move || l.get_object(&bucket, &key, range)).await
            }
            Backend::External(e) => e.get_object(bucket, key, range).await,
        }
    }

    /// The whole content of an object, for the version builder. Objects over
    /// [`MAX_READ_OBJECT`] are refused with [`Error::ObjectTooLarge`].
    pub async fn read_object(&self, bucket: &str, key: &str) -> Result<Bytes, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, key) = (l.clone(), bucket.to_owned(), key.to_owned());
                blocking(move || l.read_object(&bucket, &key)).await
            }
            Backend::External(e) => e.read_object(bucket, key).await,
        }
    }

    /// Deletes an object; a missing key is not an error (S3 answers 204 either way).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, key) = (l.clone(), bucket.to_owned(), key.to_owned());
                blocking(move || l.delete_object(&bucket, &key)).await
            }
            Backend::External(e) => e.delete_object(bucket, key).await,
        }
    }

    /// One page of a bucket's objects (see [`ListQuery`]).
    pub async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<Listing, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                l.list_objects(bucket, query)
            }
            Backend::External(e) => e.list_objects(bucket, query).await,
        }
    }
}

impl ArtifactStore {
    /// Starts a multipart upload of `key`.
    pub async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        meta: UploadMeta,
    ) -> Result<MultipartUpload, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, key) = (l.clone(), bucket.to_owned(), key.to_owned());
                blocking(move || l.create_multipart_upload(&bucket, &key, meta)).await
            }
            Backend::External(e) => e.create_multipart_upload(bucket, key, meta).await,
        }
    }

    /// Stores part `part_number` (1 to [`MAX_PART_NUMBER`]) of an upload, replacing an earlier
    /// upload of that part.
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
        meta: PartMeta,
    ) -> Result<PartInfo, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, key, id) = (
                    l.clone(),
                    bucket.to_owned(),
                    key.to_owned(),
                    upload_id.to_owned(),
                );
                blocking(move || l.upload_part(&bucket, &key, &id, part_number, &body, meta)).await
            }
            Backend::External(e) => {
                e.upload_part(bucket, key, upload_id, part_number, body, meta)
                    .await
            }
        }
    }

    /// Assembles the listed parts (ascending, each but the last at least [`MIN_PART_SIZE`])
    /// into the object, durably, and ends the upload.
    pub async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletePart>,
        meta: CompleteMeta,
    ) -> Result<ObjectMeta, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, key, id) = (
                    l.clone(),
                    bucket.to_owned(),
                    key.to_owned(),
                    upload_id.to_owned(),
                );
                blocking(move || l.complete_multipart_upload(&bucket, &key, &id, &parts, meta))
                    .await
            }
            Backend::External(e) => {
                e.complete_multipart_upload(bucket, key, upload_id, parts, meta)
                    .await
            }
        }
    }

    /// Abandons an upload and deletes its parts.
    pub async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, key, id) = (
                    l.clone(),
                    bucket.to_owned(),
                    key.to_owned(),
                    upload_id.to_owned(),
                );
                blocking(move || l.abort_multipart_upload(&bucket, &key, &id)).await
            }
            Backend::External(e) => e.abort_multipart_upload(bucket, key, upload_id).await,
        }
    }

    /// An upload's parts numbered above `marker`, at most `max`.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max: usize,
    ) -> Result<PartListing, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, key, id) = (
                    l.clone(),
                    bucket.to_owned(),
                    key.to_owned(),
                    upload_id.to_owned(),
                );
                blocking(move || l.list_parts(&bucket, &key, &id, marker, max)).await
            }
            Backend::External(e) => e.list_parts(bucket, key, upload_id, marker, max).await,
        }
    }

    /// A bucket's uploads in progress whose key starts with `prefix`, by key then initiation.
    /// On an external store: the uploads staged on this node.
    pub async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<MultipartUpload>, Error> {
        match &self.backend {
            Backend::Local(l) => {
                validate_bucket_name(bucket)?;
                let (l, bucket, prefix) = (l.clone(), bucket.to_owned(), prefix.to_owned());
                blocking(move || l.list_multipart_uploads(&bucket, &prefix)).await
            }
            Backend::External(e) => e.list_multipart_uploads(bucket, prefix).await,
        }
    }
}

/// Where a writable external store stages multipart uploads, under the data directory.
const EXTERNAL_UPLOADS_DIR: &str = "artifact-uploads";

/// Why an external store refuses bucket writes.
fn external_bucket_writes(verb: &str) -> Error {
    Error::NotImplemented {
        what: format!(
            "{verb} buckets on an external artifact store: the operator creates and deletes \
             buckets in the external S3-compatible service"
        ),
    }
}

fn external_bucket_ops() -> Error {
    Error::NotImplemented {
        what: "bucket operations on an external artifact store".into(),
    }
}
