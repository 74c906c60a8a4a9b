//! An external S3-compatible store (AWS S3, MinIO, Ceph, another Berth...) through the
//! `object_store` crate, shared by every Berth node that names it: an artifact uploaded through
//! one node can be built by any other.
//!
//! Configured by a URL `s3://?endpoint=http://host:9000&region=us-east-1`: every query parameter
//! is an `object_store` S3 option (`endpoint`, `region`, `allow_http`, `skip_signature`...),
//! except Berth's own `read_only=true`, which refuses every write with [`Error::ReadOnly`] (for
//! a store operators fill with their own tools). Credentials and anything else come from `AWS_*`
//! environment variables, as `object_store` reads them. An `http://` endpoint implies
//! `allow_http=true`. Requests use path-style addressing unless
//! `virtual_hosted_style_request=true`.
//!
//! Writes keep the local backend's contract where `object_store` can carry S3's semantics:
//!
//! - **PutObject** verifies `Content-MD5` and the `x-amz-checksum-*` value (or computes
//!   CRC64NVME, as S3 does) *before* anything is sent, then sends one `PUT` with the object's
//!   `Content-Type`, `Cache-Control`, `Content-Disposition`, `Content-Encoding`,
//!   `Content-Language` and `x-amz-meta-*`; it returns once the external store answered, so the
//!   object is as durable as that store makes it. `If-None-Match: *` and `If-Match` become
//!   `object_store`'s conditional puts. The entity tag is the external store's; the checksum is
//!   the one Berth verified (the external store is not asked to keep it, so reads report none).
//!   `Expires` is refused: `object_store` has no attribute for it.
//! - **DeleteObject** sends one `DELETE`; a missing key is not an error.
//! - **Multipart uploads are staged on the node that created them** and sent to the external
//!   store at completion. `object_store`'s resumable multipart API (`MultipartStore`) cannot keep
//!   S3's contract: it creates uploads without `Content-Type` or user metadata, numbers parts by
//!   their position in the completion list (so a list skipping a part number cannot be
//!   expressed), and cannot list parts or uploads. So the parts live in a local store under
//!   `<data-dir>/artifact-uploads` (the local backend's multipart code: same upload ids, part
//!   entity tags and checksums, ListParts, ListMultipartUploads, abort), and
//!   CompleteMultipartUpload checks the part list exactly as the local backend does, then sends
//!   the chosen parts, one external part per client part, through `put_multipart_opts` with the
//!   object's attributes. The external store thus computes the same multipart entity tag the
//!   client's parts give on S3 (`<md5 of part md5s>-<parts>`). If anything fails, the external
//!   upload is aborted and the staged upload reopened for a retry (after a crash, the staged
//!   upload is reopened at the next start; the unfinished external upload is left to the
//!   service's rules for incomplete uploads). Consequence for several nodes: every request of
//!   one upload must reach the node that created it (boto3 sends an upload's requests to one
//!   endpoint; behind a load balancer, keep uploads sticky); completed objects are visible to
//!   all nodes. A conditional CompleteMultipartUpload (`If-None-Match`,
//!   `If-Match`) is refused: `object_store`'s multipart completion has no condition.
//! - **Buckets** are created and deleted by the operator in the external service:
//!   `object_store` has no bucket operations, so CreateBucket and DeleteBucket are refused with
//!   a message saying so, and listing or probing buckets is not offered.
//!
//! Limits of the `object_store` path model: keys with a leading or trailing `/`, empty (`a//b`)
//! or `.`/`..` segments, or ASCII control characters cannot be addressed and are refused with a
//! clear error.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as StorePath;
use object_store::{
    Attribute, Attributes, GetOptions, GetRange, MultipartUpload as StoreUpload, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, UpdateVersion,
};
use percent_encoding::percent_decode_str;
use time::OffsetDateTime;
use tracing::warn;

use crate::checksum::verify_body;
use crate::listing;
use crate::local::{Completion, LocalStore};
use crate::model::{
    ByteRange, CompleteMeta, CompletePart, DEFAULT_CONTENT_TYPE, ListQuery, Listing, MAX_LIST_KEYS,
    MultipartUpload, ObjectBody, ObjectHeaders, ObjectMeta, PartInfo, PartListing, PartMeta,
    PutMeta, UploadMeta, WriteCondition, check_user_metadata,
};
use crate::names::{validate_bucket_name, validate_key};
use crate::{DEFAULT_REGION, Error, MAX_READ_OBJECT, blocking};

/// The URL parameter making the store read-only (Berth's own, not an `object_store` option).
const READ_ONLY_PARAM: &str = "read_only";

/// An external S3-compatible service, shared with other nodes.
#[derive(Debug)]
pub(crate) struct ExternalStore {
    config: Vec<(AmazonS3ConfigKey, String)>,
    /// For logs: the endpoint, or "aws" for the default.
    endpoint: String,
    /// `read_only=true`: every write is refused.
    read_only: bool,
    /// `object_store` clients are per bucket; built on first use.
    clients: Mutex<HashMap<String, Arc<AmazonS3>>>,
    /// Where multipart uploads are staged until completed (see the module docs); `None` until
    /// [`ExternalStore::with_staging`], and for a read-only store.
    staging: Option<Arc<LocalStore>>,
}

impl ExternalStore {
    /// Parses an `s3://?...` URL; `env` supplies `AWS_*` settings (credentials, region...).
    pub(crate) fn from_url(
        url: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| Error::Config {
            reason: format!("artifact store url {url:?} must start with s3://"),
        })?;
        let (host, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !host.trim_matches('/').is_empty() {
            return Err(Error::Config {
                reason: format!(
                    "artifact store url {url:?} names a bucket ({host:?}); leave it out: \
                     buckets come from each artifact reference"
                ),
            });
        }
        let mut config = Vec::new();
        for (name, value) in env {
            if let Some(key) = name
                .starts_with("AWS_")
                .then(|| AmazonS3ConfigKey::from_str(&name.to_ascii_lowercase()).ok())
                .flatten()
            {
                config.push((key, value));
            }
        }
        let mut endpoint = None;
        let mut allow_http_set = false;
        let mut read_only = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_decode_str(s)
                    .decode_utf8()
                    .map(|v| v.into_owned())
                    .map_err(|_| Error::Config {
                        reason: format!("artifact store url parameter {name:?} is not utf-8"),
                    })
            };
            let (name, value) = (decode(name)?, decode(value)?);
            if name == READ_ONLY_PARAM {
                read_only = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Error::Config {
                            reason: format!(
                                "artifact store url parameter {READ_ONLY_PARAM:?} must be true \
                                 or false, not {value:?}"
                            ),
                        });
                    }
                };
                continue;
            }
            let key = AmazonS3ConfigKey::from_str(&name).map_err(|_| Error::Config {
                reason: format!("unknown artifact store url parameter {name:?}"),
            })?;
            if matches!(key, AmazonS3ConfigKey::Bucket) {
                return Err(Error::Config {
                    reason: "artifact store url parameter \"bucket\" is not accepted: buckets \
                             come from each artifact reference"
                        .into(),
                });
            }
            if matches!(key, AmazonS3ConfigKey::Endpoint) {
                endpoint = Some(value.clone());
            }
            if name.ends_with("allow_http") {
                allow_http_set = true;
            }
            config.push((key, value));
        }
        if let Some(ep) = &endpoint
            && ep.starts_with("http://")
            && !allow_http_set
        {
            config.push((
                AmazonS3ConfigKey::from_str("allow_http").map_err(|e| Error::Config {
                    reason: e.to_string(),
                })?,
                "true".into(),
            ));
        }
        let store = Self {
            config,
            endpoint: endpoint.unwrap_or_else(|| "aws".into()),
            read_only,
            clients: Mutex::new(HashMap::new()),
            staging: None,
        };
        // Build one client now so configuration errors surface at start-up, not on first use.
        store.build("berth-config-check")?;
        Ok(store)
    }

    /// Gives a writable store the local store its multipart uploads are staged in.
    pub(crate) fn with_staging(mut self, staging: Arc<LocalStore>) -> Self {
        self.staging = Some(staging);
        self
    }

    /// The endpoint, for logs.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// True when opened with `read_only=true`.
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn writable(&self) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    /// The local store uploads are staged in ([`Error::ReadOnly`] for a read-only store).
    fn staging(&self) -> Result<Arc<LocalStore>, Error> {
        self.writable()?;
        self.staging.clone().ok_or_else(|| Error::Config {
            reason: "the external artifact store was opened without a staging directory for \
                     multipart uploads"
                .into(),
        })
    }

    fn build(&self, bucket: &str) -> Result<AmazonS3, Error> {
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        for (key, value) in &self.config {
            builder = builder.with_config(*key, value);
        }
        builder.build().map_err(|e| Error::Config {
            reason: format!("external s3 store: {e}"),
        })
    }

    fn client(&self, bucket: &str) -> Result<Arc<AmazonS3>, Error> {
        validate_bucket_name(bucket)?;
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(bucket) {
            return Ok(c.clone());
        }
        let client = Arc::new(self.build(bucket)?);
        clients.insert(bucket.to_owned(), client.clone());
        Ok(client)
    }

    pub(crate) async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, Error> {
        let client = self.client(bucket)?;
        let path = store_path(key)?;
        // A HEAD through get_opts keeps the attributes (content type, user metadata) that
        // `ObjectStore::head` drops.
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let result = client
            .get_opts(&path, options)
            .await
            .map_err(|e| not_found_as_key(e, bucket, key))?;
        Ok(convert_meta(key, &result.meta, Some(&result.attributes)))
    }

    pub(crate) async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectMeta, ObjectBody), Error> {
        let client = self.client(bucket)?;
        let path = store_path(key)?;
        let mut options = GetOptions::default();
        let mut resolved = None;
        if let Some(range) = range {
            // Resolve against the current size so unsatisfiable ranges get S3's error, and pin
            // the entity tag so the ranged read sees the same object.
            let meta = client
                .head(&path)
                .await
                .map_err(|e| not_found_as_key(e, bucket, key))?;
            let (first, last) = range.resolve(meta.size)?;
            options.range = Some(GetRange::Bounded(first..last + 1));
            options.if_match = meta.e_tag.clone();
            resolved = Some((first, last));
        }
        let result = client
            .get_opts(&path, options)
            .await
            .map_err(|e| not_found_as_key(e, bucket, key))?;
        let meta = convert_meta(key, &result.meta, Some(&result.attributes));
        let len = result.range.end - result.range.start;
        let stream = result
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()));
        Ok((meta, ObjectBody::new(len, resolved, Box::pin(stream))))
    }

    pub(crate) async fn read_object(&self, bucket: &str, key: &str) -> Result<Bytes, Error> {
        let client = self.client(bucket)?;
        let path = store_path(key)?;
        let result = client
            .get(&path)
            .await
            .map_err(|e| not_found_as_key(e, bucket, key))?;
        if result.meta.size > MAX_READ_OBJECT {
            return Err(Error::ObjectTooLarge {
                size: result.meta.size,
                limit: MAX_READ_OBJECT,
            });
        }
        Ok(result.bytes().await?)
    }

    pub(crate) async fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> Result<Listing, Error> {
        let client = self.client(bucket)?;
        // object_store lists whole path segments: list the deepest directory containing the
        // prefix and filter by the prefix here.
        let dir = match query.prefix.rfind('/') {
            Some(i) => Some(store_path(&query.prefix[..i])?),
            None => None,
        };
        let mut stream = match query
            .start_after
            .as_deref()
            .filter(|a| *a > query.prefix.as_str())
        {
            Some(after) => client.list_with_offset(dir.as_ref(), &store_path_lenient(after)),
            None => client.list(dir.as_ref()),
        };
        // Collect in key order until the page is certainly complete: more than max_keys distinct
        // entries (keys or rolled-up prefixes) seen.
        let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
        let wanted = query.max_keys.min(MAX_LIST_KEYS) + 1;
        let mut found: BTreeMap<String, ObjectMeta> = BTreeMap::new();
        let mut entries = 0;
        let mut last_common: Option<String> = None;
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            let key = meta.location.as_ref().to_owned();
            if !key.starts_with(&query.prefix) {
                continue;
            }
            let common = delimiter.and_then(|d| {
                key[query.prefix.len()..]
                    .find(d)
                    .map(|i| key[..query.prefix.len() + i + d.len()].to_owned())
            });
            match common {
                Some(c) if last_common.as_deref() == Some(c.as_str()) => {}
                Some(c) => {
                    last_common = Some(c);
                    entries += 1;
                }
                None => entries += 1,
            }
            found.insert(key.clone(), convert_meta(&key, &meta, None));
            if entries > wanted {
                break;
            }
        }
        Ok(listing::list(&found, query, |_, m| m.clone()))
    }

    /// Stores an object: verified first, then sent in one `PUT` with its attributes.
    pub(crate) async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: PutMeta,
    ) -> Result<ObjectMeta, Error> {
        self.writable()?;
        let client = self.client(bucket)?;
        let path = store_path(key)?;
        check_user_metadata(&meta.user_metadata)?;
        let attributes = attributes(
            meta.content_type.as_deref(),
            &meta.headers,
            &meta.user_metadata,
        )?;
        let mode = match &meta.condition {
            WriteCondition::None => PutMode::Overwrite,
            WriteCondition::IfNoneMatchAny => PutMode::Create,
            WriteCondition::IfMatch(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag.clone()),
                version: None,
            }),
        };
        // A body that fails its checks never reaches the external store.
        let verified = {
            let body = body.clone();
            let (md5, sent, algorithm) = (
                meta.content_md5.clone(),
                meta.checksum.clone(),
                meta.checksum_algorithm,
            );
            blocking(move || verify_body(&body, md5.as_deref(), sent.as_ref(), algorithm)).await?
        };
        let size = body.len() as u64;
        let options = PutOptions {
            mode,
            attributes,
            ..PutOptions::default()
        };
        let result = client
            .put_opts(&path, PutPayload::from(body), options)
            .await
            .map_err(|e| write_error(e, bucket, key))?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size,
            etag: result
                .e_tag
                .map(quote_etag)
                .unwrap_or_else(|| verified.etag()),
            last_modified: now_seconds(),
            content_type: meta
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            headers: meta.headers,
            user_metadata: meta.user_metadata,
            checksum: Some(verified.checksum),
        })
    }

    /// Deletes an object; a missing key is not an error.
    pub(crate) async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), Error> {
        self.writable()?;
        let client = self.client(bucket)?;
        let path = store_path(key)?;
        match client.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e) if s3_error_code(&e) == Some("NoSuchBucket") => Err(no_such_bucket(bucket)),
            // S3 answers 204 for a missing key; stores that answer 404 mean the same.
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a bucket exists in the external store (one listing request of at most one page).
    pub(crate) async fn bucket_exists(&self, bucket: &str) -> Result<bool, Error> {
        validate_bucket_name(bucket)?;
        let client = self.client(bucket)?;
        let mut listing = client.list(None);
        match listing.next().await {
            Some(Err(e)) if s3_error_code(&e) == Some("NoSuchBucket") => Ok(false),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(_)) | None => Ok(true),
        }
    }

    /// Checks that a bucket exists in the external store (one listing request), so a multipart
    /// upload into a missing bucket fails when created, as on S3, not after its parts are sent.
    /// Only a missing bucket fails the probe: credentials allowed to write but not to list, or
    /// a passing outage, are left for the requests that need the store to report.
    async fn probe_bucket(&self, client: &AmazonS3, bucket: &str, key: &str) -> Result<(), Error> {
        // Listing under the key as a directory reads at most one short page.
        let mut listing = client.list(Some(&store_path_lenient(key)));
        match listing.next().await {
            Some(Err(e)) if s3_error_code(&e) == Some("NoSuchBucket") => {
                Err(no_such_bucket(bucket))
            }
            Some(Err(e)) => {
                warn!(bucket, error = %e, "could not check that an external bucket exists");
                Ok(())
            }
            Some(Ok(_)) | None => Ok(()),
        }
    }

    /// Starts a multipart upload, staged locally (see the module docs).
    pub(crate) async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        meta: UploadMeta,
    ) -> Result<MultipartUpload, Error> {
        let staging = self.staging()?;
        let client = self.client(bucket)?;
        store_path(key)?;
        // Refused now rather than at completion, after every part was sent.
        attributes(
            meta.content_type.as_deref(),
            &meta.headers,
            &meta.user_metadata,
        )?;
        self.probe_bucket(&client, bucket, key).await?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        blocking(move || {
            staging.create_bucket(&bucket, DEFAULT_REGION)?;
            staging.create_multipart_upload(&bucket, &key, meta)
        })
        .await
    }

    /// Stages one part of an upload.
    pub(crate) async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
        meta: PartMeta,
    ) -> Result<PartInfo, Error> {
        let staging = self.staging()?;
        validate_bucket_name(bucket)?;
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        blocking(move || {
            staging
                .upload_part(&bucket, &key, &id, part_number, &body, meta)
                .map_err(|e| unknown_upload(e, &id))
        })
        .await
    }

    /// Abandons a staged upload; nothing was sent to the external store yet.
    pub(crate) async fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), Error> {
        let staging = self.staging()?;
        validate_bucket_name(bucket)?;
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        blocking(move || {
            staging
                .abort_multipart_upload(&bucket, &key, &id)
                .map_err(|e| unknown_upload(e, &id))
        })
        .await
    }

    /// A staged upload's parts.
    pub(crate) async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max: usize,
    ) -> Result<PartListing, Error> {
        let staging = self.staging()?;
        validate_bucket_name(bucket)?;
        let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        blocking(move || {
            staging
                .list_parts(&bucket, &key, &id, marker, max)
                .map_err(|e| unknown_upload(e, &id))
        })
        .await
    }

    /// The uploads staged on this node for a bucket.
    pub(crate) async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<MultipartUpload>, Error> {
        let staging = self.staging()?;
        let client = self.client(bucket)?;
        let listed = {
            let (staging, bucket, prefix) = (staging, bucket.to_owned(), prefix.to_owned());
            blocking(move || staging.list_multipart_uploads(&bucket, &prefix)).await
        };
        match listed {
            // No upload was ever staged for this bucket: answer for the external bucket.
            Err(Error::NoSuchBucket { .. }) => {
                self.probe_bucket(&client, bucket, prefix).await?;
                Ok(Vec::new())
            }
            other => other,
        }
    }

    /// Checks the part list against the staged upload, sends the chosen parts to the external
    /// store as one multipart upload (a part per client part) and ends the staged upload.
    pub(crate) async fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletePart>,
        meta: CompleteMeta,
    ) -> Result<ObjectMeta, Error> {
        let staging = self.staging()?;
        let client = self.client(bucket)?;
        let path = store_path(key)?;
        if meta.condition != WriteCondition::None {
            return Err(Error::NotImplemented {
                what: "conditional CompleteMultipartUpload (If-None-Match, If-Match) on an \
                       external artifact store"
                    .into(),
            });
        }
        let completion = {
            let staging = staging.clone();
            let (bucket, key, id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
            blocking(move || {
                staging
                    .begin_completion(&bucket, &key, &id, &parts, &meta)
                    .map_err(|e| unknown_upload(e, &id))
            })
            .await?
        };
        let result = send_completion(&client, bucket, &path, &completion).await;
        let stored = result.is_ok();
        blocking(move || {
            staging.end_completion(completion, stored);
            Ok(())
        })
        .await?;
        result
    }
}

/// Sends a checked completion's parts as one external multipart upload, aborting it on failure.
async fn send_completion(
    client: &AmazonS3,
    bucket: &str,
    path: &StorePath,
    completion: &Completion,
) -> Result<ObjectMeta, Error> {
    let attributes = attributes(
        completion.content_type(),
        &completion.headers(),
        completion.user_metadata(),
    )?;
    let options = PutMultipartOptions {
        attributes,
        ..PutMultipartOptions::default()
    };
    let mut upload = client
        .put_multipart_opts(path, options)
        .await
        .map_err(|e| write_error(e, bucket, path.as_ref()))?;
    let sent = send_parts(upload.as_mut(), completion).await;
    let done = match sent {
        Ok(checksum) => upload
            .complete()
            .await
            .map(|r| (r, checksum))
            .map_err(Error::from),
        Err(e) => Err(e),
    };
    match done {
        Ok((result, checksum)) => {
            let etag = result
                .e_tag
                .map(quote_etag)
                .unwrap_or_else(|| completion.etag().to_owned());
            Ok(completion.object(etag, checksum))
        }
        Err(e) => {
            if let Err(abort) = upload.abort().await {
                warn!(
                    upload_id = completion.upload_id(),
                    error = %abort,
                    "could not abort the external multipart upload of a failed completion"
                );
            }
            Err(e)
        }
    }
}

/// Sends each chosen part, read from its staged file, and returns the object's checksum
/// (checked against the client's).
async fn send_parts(
    upload: &mut dyn StoreUpload,
    completion: &Completion,
) -> Result<crate::Checksum, Error> {
    let mut sum = completion.object_checksum();
    for (file, size) in completion.part_files() {
        // Reading and hashing a part (up to 5 GiB) is blocking work.
        let (data, fed) = blocking(move || {
            let data = std::fs::read(&file)
                .map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
            if data.len() as u64 != size {
                return Err(Error::Corrupt {
                    path: file,
                    reason: format!("{} bytes on disk, {size} in metadata", data.len()),
                });
            }
            sum.update(&data);
            Ok((Bytes::from(data), sum))
        })
        .await?;
        sum = fed;
        upload.put_part(PutPayload::from(data)).await?;
    }
    completion.checksum(sum)
}

/// The `object_store` attributes of an object's headers and user metadata. `Expires` has no
/// attribute and is refused rather than dropped.
fn attributes(
    content_type: Option<&str>,
    headers: &ObjectHeaders,
    user_metadata: &BTreeMap<String, String>,
) -> Result<Attributes, Error> {
    if headers.expires.is_some() {
        return Err(Error::NotImplemented {
            what: "the Expires header on an external artifact store".into(),
        });
    }
    let mut attributes = Attributes::new();
    let standard = [
        (Attribute::ContentType, content_type),
        (Attribute::CacheControl, headers.cache_control.as_deref()),
        (
            Attribute::ContentDisposition,
            headers.content_disposition.as_deref(),
        ),
        (
            Attribute::ContentEncoding,
            headers.content_encoding.as_deref(),
        ),
        (
            Attribute::ContentLanguage,
            headers.content_language.as_deref(),
        ),
    ];
    for (attribute, value) in standard {
        if let Some(value) = value {
            attributes.insert(attribute, value.to_owned().into());
        }
    }
    for (name, value) in user_metadata {
        attributes.insert(
            Attribute::Metadata(name.clone().into()),
            value.clone().into(),
        );
    }
    Ok(attributes)
}

/// The S3 error code (`<Code>...</Code>`) in an `object_store` error's response body, if any.
fn s3_error_code(e: &object_store::Error) -> Option<&'static str> {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&s.to_string());
        source = s.source();
    }
    ["NoSuchBucket", "NoSuchKey", "NoSuchUpload"]
        .into_iter()
        .find(|code| text.contains(&format!("<Code>{code}</Code>")))
}

/// Maps a write's failure to S3's error: conditions that did not hold, a missing bucket.
fn write_error(e: object_store::Error, bucket: &str, key: &str) -> Error {
    match (&e, s3_error_code(&e)) {
        (_, Some("NoSuchKey")) => Error::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        },
        (_, Some("NoSuchBucket")) | (object_store::Error::NotFound { .. }, _) => {
            no_such_bucket(bucket)
        }
        (object_store::Error::AlreadyExists { .. }, _) => Error::PreconditionFailed {
            condition: "If-None-Match",
        },
        (object_store::Error::Precondition { .. }, _) => Error::PreconditionFailed {
            condition: "If-Match",
        },
        _ => e.into(),
    }
}

/// A staged upload in a bucket no upload was ever staged for is an unknown upload, not a
/// missing bucket (the bucket lives in the external store).
fn unknown_upload(e: Error, upload_id: &str) -> Error {
    match e {
        Error::NoSuchBucket { .. } => Error::NoSuchUpload {
            upload_id: upload_id.to_owned(),
        },
        other => other,
    }
}

fn no_such_bucket(bucket: &str) -> Error {
    Error::NoSuchBucket {
        bucket: bucket.to_owned(),
    }
}

/// An entity tag quoted as S3 sends it.
fn quote_etag(tag: String) -> String {
    if tag.starts_with('"') {
        tag
    } else {
        format!("\"{tag}\"")
    }
}

/// Now, at the one-second precision S3's `Last-Modified` has.
fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// The `object_store` path of a key, refusing keys it would rewrite.
fn store_path(key: &str) -> Result<StorePath, Error> {
    validate_key(key)?;
    let path = StorePath::parse(key).map_err(|e| Error::InvalidArgument {
        name: "key".into(),
        reason: format!("this key cannot be read from the external artifact store: {e}"),
    })?;
    if path.as_ref() != key {
        return Err(Error::InvalidArgument {
            name: "key".into(),
            reason: "keys with a leading or trailing '/' cannot be read from the external \
                     artifact store"
                .into(),
        });
    }
    Ok(path)
}

/// A listing offset: any string works as a lower bound, so encode what the path model rejects.
fn store_path_lenient(key: &str) -> StorePath {
    StorePath::parse(key).unwrap_or_else(|_| StorePath::from(key))
}

fn not_found_as_key(e: object_store::Error, bucket: &str, key: &str) -> Error {
    if s3_error_code(&e) == Some("NoSuchBucket") {
        return no_such_bucket(bucket);
    }
    match e {
        object_store::Error::NotFound { .. } => Error::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        },
        other => other.into(),
    }
}

fn convert_meta(
    key: &str,
    meta: &object_store::ObjectMeta,
    attributes: Option<&object_store::Attributes>,
) -> ObjectMeta {
    let attr = |a: Attribute| {
        attributes
            .and_then(|attrs| attrs.get(&a))
            .map(|v| v.as_ref().to_owned())
    };
    ObjectMeta {
        key: key.to_owned(),
        size: meta.size,
        etag: meta.e_tag.clone().map(quote_etag).unwrap_or_default(),
        last_modified: OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(meta.last_modified.timestamp_millis()) * 1_000_000,
        )
        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        content_type: attr(Attribute::ContentType).unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
        headers: ObjectHeaders {
            cache_control: attr(Attribute::CacheControl),
            content_disposition: attr(Attribute::ContentDisposition),
            content_encoding: attr(Attribute::ContentEncoding),
            content_language: attr(Attribute::ContentLanguage),
            expires: None,
        },
        user_metadata: user_metadata(attributes),
        checksum: None,
    }
}

/// The user metadata (`x-amz-meta-*`) among a read's attributes, names lower-cased as S3
/// reports them.
fn user_metadata(attributes: Option<&Attributes>) -> BTreeMap<String, String> {
    attributes
        .into_iter()
        .flat_map(|attrs| attrs.iter())
        .filter_map(|(a, v)| match a {
            Attribute::Metadata(name) => Some((name.to_ascii_lowercase(), v.as_ref().to_owned())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "AKIDEXAMPLE".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "secret".into()),
            ("HOME".into(), "/root".into()),
        ]
    }

    #[test]
    fn parses_urls() {
        let store = ExternalStore::from_url(
            "s3://?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1",
            env(),
        )
        .unwrap();
        assert_eq!(store.endpoint(), "http://127.0.0.1:9000");
        assert!(
            store
                .config
                .iter()
                .any(|(k, v)| matches!(k, AmazonS3ConfigKey::Region) && v == "eu-west-1")
        );
        assert!(
            store
                .config
                .iter()
                .any(|(k, _)| matches!(k, AmazonS3ConfigKey::AccessKeyId))
        );
        // An http endpoint needs allow_http, added implicitly.
        assert!(
            store
                .config
                .iter()
                .any(|(k, v)| k.as_ref().contains("allow_http") && v == "true")
        );

        assert!(ExternalStore::from_url("s3://", env()).is_ok());
        assert!(ExternalStore::from_url("s3://?endpoint=http://h:9000", env()).is_ok());
    }

    #[test]
    fn rejects_bad_urls() {
        for (url, needle) in [
            ("s3://mybucket?region=us-east-1", "names a bucket"),
            ("s3://?bucket=x", "bucket"),
            ("s3://?no_such_option=1", "no_such_option"),
            ("gs://x", "must start with s3://"),
        ] {
            let err = ExternalStore::from_url(url, env()).unwrap_err();
            assert!(err.to_string().contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn read_only_is_a_berth_parameter() {
        let store = ExternalStore::from_url("s3://?endpoint=http://h:9000", env()).unwrap();
        assert!(!store.is_read_only());
        // Writable, but opened without a staging directory: multipart uploads say so.
        assert!(matches!(store.staging(), Err(Error::Config { .. })));
        let store =
            ExternalStore::from_url("s3://?endpoint=http://h:9000&read_only=true", env()).unwrap();
        assert!(store.is_read_only());
        assert!(matches!(store.staging(), Err(Error::ReadOnly)));
        // Not passed on to object_store, which would reject it.
        assert!(
            !store
                .config
                .iter()
                .any(|(k, _)| k.as_ref().contains("read_only"))
        );
        let err = ExternalStore::from_url("s3://?read_only=1", env()).unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn attributes_carry_headers_and_user_metadata() {
        let headers = ObjectHeaders {
            cache_control: Some("no-cache".into()),
            content_language: Some("en".into()),
            ..ObjectHeaders::default()
        };
        let metadata = BTreeMap::from([("owner".to_owned(), "team-a".to_owned())]);
        let attrs = attributes(Some("application/zip"), &headers, &metadata).unwrap();
        let get = |a: Attribute| attrs.get(&a).map(|v| v.as_ref().to_owned());
        assert_eq!(
            get(Attribute::ContentType).as_deref(),
            Some("application/zip")
        );
        assert_eq!(get(Attribute::CacheControl).as_deref(), Some("no-cache"));
        assert_eq!(get(Attribute::ContentLanguage).as_deref(), Some("en"));
        assert_eq!(get(Attribute::ContentEncoding), None);
        assert_eq!(
            get(Attribute::Metadata("owner".into())).as_deref(),
            Some("team-a")
        );
        assert_eq!(attrs.len(), 4);

        // Expires has no attribute: refused rather than silently dropped.
        let expires = ObjectHeaders {
            expires: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            ..ObjectHeaders::default()
        };
        assert!(matches!(
            attributes(None, &expires, &BTreeMap::new()),
            Err(Error::NotImplemented { .. })
        ));

        // Read back: the user metadata in a get's attributes.
        assert_eq!(user_metadata(Some(&attrs)), metadata);
        assert!(user_metadata(None).is_empty());
    }

    #[test]
    fn errors_name_the_missing_bucket() {
        let body = |code: &str| {
            object_store::Error::NotFound {
            path: "k".into(),
            source: format!("Server returned non-2xx status code: 404 Not Found: <Error><Code>{code}</Code></Error>").into(),
        }
        };
        assert_eq!(s3_error_code(&body("NoSuchBucket")), Some("NoSuchBucket"));
        assert!(matches!(
            write_error(body("NoSuchBucket"), "b", "k"),
            Error::NoSuchBucket { .. }
        ));
        assert!(matches!(
            write_error(body("NoSuchKey"), "b", "k"),
            Error::NoSuchKey { .. }
        ));
        assert!(matches!(
            not_found_as_key(body("NoSuchBucket"), "b", "k"),
            Error::NoSuchBucket { .. }
        ));
        // A 404 without a body (HEAD) is a missing key on reads, a missing bucket on writes.
        let bare = || object_store::Error::NotFound {
            path: "k".into(),
            source: "404".into(),
        };
        assert!(matches!(
            not_found_as_key(bare(), "b", "k"),
            Error::NoSuchKey { .. }
        ));
        assert!(matches!(
            write_error(bare(), "b", "k"),
            Error::NoSuchBucket { .. }
        ));
        let exists = object_store::Error::AlreadyExists {
            path: "k".into(),
            source: "412".into(),
        };
        assert!(matches!(
            write_error(exists, "b", "k"),
            Error::PreconditionFailed {
                condition: "If-None-Match"
            }
        ));
    }

    #[test]
    fn keys_object_store_cannot_address_are_refused() {
        assert!(store_path("agents/app.zip").is_ok());
        assert!(store_path("odd ~%[]#?*.zip").is_ok());
        for key in ["/abs", "dir/", "a//b", "a/../b", "ctl\u{1}"] {
            assert!(
                matches!(store_path(key), Err(Error::InvalidArgument { .. })),
                "{key}"
            );
        }
    }
}
