//! Multipart uploads in the local store (what boto3's `upload_file` uses from 8 MiB up).
//!
//! Layout of an upload in progress, inside its bucket:
//!
//! ```text
//! uploads/<upload-id>/upload.json            key, metadata, checksum algorithm and type
//! uploads/<upload-id>/<n>.json               part n: size, etag, checksum, content file name
//! uploads/<upload-id>/<n>.<id>.data          part n's content; <id> is unique per upload of n
//! uploads/<upload-id>.completing/            the same, while CompleteMultipartUpload runs
//! ```
//!
//! Parts are written like objects: staged in `tmp/`, fsynced, renamed in under the commit lock,
//! directory fsynced. Completion first renames the upload to `.completing` (under the lock), so
//! parts can no longer be added; then, without holding the lock, it checks the parts and
//! concatenates them into a staged file, hashing as it copies; then it commits that file as an
//! object exactly like a put and removes the upload. If a check fails the upload is renamed back
//! and the client may retry, as with S3. A crash mid-completion leaves a `.completing` directory,
//! which the next open renames back.
//!
//! The external backend stages its multipart uploads in a local store with this same code: its
//! completion uses [`LocalStore::begin_completion`] (seal and check the part list), sends the
//! chosen parts to the external store instead of concatenating them, and ends with
//! [`LocalStore::end_completion`] (remove, or reopen on failure).
//!
//! Uploads are not indexed in memory: they are few and short-lived, so their files are read on
//! each request.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{
    DATA_EXT, IO_CHUNK, LocalStore, SIDECAR_EXT, UPLOADS_DIR, from_millis, no_such_bucket, now,
    read_dir, remove_quietly, sync_dir, to_millis, unique_id, write_synced,
};
use crate::Error;
use crate::checksum::{Checksum, ChecksumAlgorithm, Hasher, parse_content_md5};
use crate::local::etag_matches;
use crate::model::{
    ChecksumType, CompleteMeta, CompletePart, DEFAULT_CONTENT_TYPE, MAX_PART_NUMBER, MIN_PART_SIZE,
    MultipartUpload, ObjectHeaders, ObjectMeta, PartInfo, PartListing, PartMeta, UploadMeta,
    WriteCondition, check_user_metadata,
};
use crate::names::validate_key;

const UPLOAD_FILE: &str = "upload.json";
const COMPLETING: &str = ".completing";

/// `upload.json`.
#[derive(Debug, Serialize, Deserialize)]
struct UploadFile {
    upload_id: String,
    key: String,
    initiated_ms: i64,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    cache_control: Option<String>,
    #[serde(default)]
    content_disposition: Option<String>,
    #[serde(default)]
    content_encoding: Option<String>,
    #[serde(default)]
    content_language: Option<String>,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    user_metadata: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    checksum_algorithm: Option<ChecksumAlgorithm>,
    #[serde(default)]
    checksum_type: Option<ChecksumType>,
}

impl UploadFile {
    fn describe(&self) -> MultipartUpload {
        MultipartUpload {
            upload_id: self.upload_id.clone(),
            key: self.key.clone(),
            initiated: from_millis(self.initiated_ms),
            checksum_algorithm: self.checksum_algorithm,
            checksum_type: self.checksum_type,
        }
    }
}

/// `<n>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct PartFile {
    part_number: u32,
    size: u64,
    /// Raw MD5, hex: the part's entity tag unquoted, and an input of the object's.
    md5: String,
    last_modified_ms: i64,
    #[serde(default)]
    checksum: Option<Checksum>,
    data_file: String,
}

impl PartFile {
    fn describe(&self) -> PartInfo {
        PartInfo {
            part_number: self.part_number,
            size: self.size,
            etag: format!("\"{}\"", self.md5),
            last_modified: from_millis(self.last_modified_ms),
            checksum: self.checksum.clone(),
        }
    }
}

/// Upload ids are 32 lower-case hex digits; anything else names no upload (and is never used
/// in a path).
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn no_such_upload(upload_id: &str) -> Error {
    Error::NoSuchUpload {
        upload_id: upload_id.to_owned(),
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Error> {
    let raw = fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&raw).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Renames uploads left `.completing` by a crash back, so they can be completed or aborted.
pub(super) fn recover_uploads(uploads: &Path) -> Result<(), Error> {
    if !uploads.exists() {
        return Ok(());
    }
    for entry in read_dir(uploads)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(COMPLETING) {
            let to = uploads.join(id);
            info!(
                upload_id = id,
                "resuming a multipart upload interrupted while completing"
            );
            fs::rename(entry.path(), &to)
                .map_err(|e| Error::io(format!("restoring {}", to.display()), e))?;
        }
    }
    Ok(())
}

/// The checksum type of an upload with `algorithm`, as S3 resolves and restricts it.
fn resolve_checksum_type(
    algorithm: Option<ChecksumAlgorithm>,
    requested: Option<ChecksumType>,
) -> Result<Option<ChecksumType>, Error> {
    let Some(algorithm) = algorithm else {
        return match requested {
            None => Ok(None),
            Some(_) => Err(Error::InvalidChecksum {
                reason: "x-amz-checksum-type requires x-amz-checksum-algorithm".into(),
            }),
        };
    };
    let crc = matches!(
        algorithm,
        ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c | ChecksumAlgorithm::Crc64Nvme
    );
    let resolved = match (requested, algorithm) {
        (Some(t), _) => t,
        (None, ChecksumAlgorithm::Crc64Nvme) => ChecksumType::FullObject,
        (None, _) => ChecksumType::Composite,
    };
    match resolved {
        ChecksumType::FullObject if !crc => Err(Error::InvalidChecksum {
            reason: format!("The {algorithm} checksum algorithm does not support FULL_OBJECT"),
        }),
        ChecksumType::Composite if algorithm == ChecksumAlgorithm::Crc64Nvme => {
            Err(Error::InvalidChecksum {
                reason: "The CRC64NVME checksum algorithm does not support COMPOSITE".into(),
            })
        }
        t => Ok(Some(t)),
    }
}

impl LocalStore {
    fn uploads_dir(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join(UPLOADS_DIR)
    }

    /// Reads an upload's description, checking it belongs to `key`.
    fn load_upload(&self, dir: &Path, key: &str, upload_id: &str) -> Result<UploadFile, Error> {
        let upload: UploadFile = match read_json(&dir.join(UPLOAD_FILE)) {
            Ok(u) => u,
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Err(no_such_upload(upload_id));
            }
            Err(e) => return Err(e),
        };
        if upload.key != key {
            return Err(no_such_upload(upload_id));
        }
        Ok(upload)
    }

    fn check_upload_id(&self, bucket: &str, upload_id: &str) -> Result<PathBuf, Error> {
        self.head_bucket(bucket)?;
        if !valid_upload_id(upload_id) {
            return Err(no_such_upload(upload_id));
        }
        Ok(self.uploads_dir(bucket).join(upload_id))
    }

    /// Starts a multipart upload. Blocking.
    pub(crate) fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        meta: UploadMeta,
    ) -> Result<MultipartUpload, Error> {
        validate_key(key)?;
        check_user_metadata(&meta.user_metadata)?;
        let checksum_type = resolve_checksum_type(meta.checksum_algorithm, meta.checksum_type)?;
        self.head_bucket(bucket)?;
        let upload_id = unique_id();
        let file = UploadFile {
            upload_id: upload_id.clone(),
            key: key.to_owned(),
            initiated_ms: to_millis(now()),
            content_type: meta.content_type,
            cache_control: meta.headers.cache_control,
            content_disposition: meta.headers.content_disposition,
            content_encoding: meta.headers.content_encoding,
            content_language: meta.headers.content_language,
            expires: meta.headers.expires,
            user_metadata: meta.user_metadata,
            checksum_algorithm: meta.checksum_algorithm,
            checksum_type,
        };
        let staging = self.root.join("tmp").join(unique_id());
        let staged = serde_json::to_vec(&file)
            .map_err(std::io::Error::from)
            .and_then(|json| {
                fs::create_dir(&staging)?;
                write_synced(&staging.join(UPLOAD_FILE), &json)?;
                sync_dir(&staging)
            });
        if let Err(e) = staged {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::io(
                format!("creating an upload in bucket {bucket}"),
                e,
            ));
        }
        let _commit = self.lock_commit();
        let uploads = self.uploads_dir(bucket);
        let placed = if self.read_index().contains_key(bucket) {
            // Buckets get uploads/ at creation; create it (durably) if it went missing.
            let ensured = if uploads.exists() {
                Ok(())
            } else {
                fs::create_dir(&uploads).and_then(|()| sync_dir(&self.bucket_dir(bucket)))
            };
            ensured
                .and_then(|()| fs::rename(&staging, uploads.join(&upload_id)))
                .and_then(|()| sync_dir(&uploads))
                .map_err(|e| Error::io(format!("creating an upload in bucket {bucket}"), e))
        } else {
            Err(no_such_bucket(bucket))
        };
        if placed.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        placed?;
        debug!(bucket, key, upload_id, "multipart upload created");
        Ok(file.describe())
    }

    /// Stores one part, replacing an earlier upload of the same part number. Blocking.
    pub(crate) fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: &[u8],
        meta: PartMeta,
    ) -> Result<PartInfo, Error> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(Error::InvalidArgument {
                name: "partNumber".into(),
                reason: format!(
                    "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
                ),
            });
        }
        let dir = self.check_upload_id(bucket, upload_id)?;
        let upload = self.load_upload(&dir, key, upload_id)?;
        let content_md5 = meta
            .content_md5
            .as_deref()
            .map(parse_content_md5)
            .transpose()?;
        if let (Some(sent), Some(algorithm)) = (&meta.checksum, upload.checksum_algorithm)
            && sent.algorithm != algorithm
        {
            return Err(Error::InvalidChecksum {
                reason: format!(
                    "Checksum Type mismatch occurred, expected checksum Type: {algorithm}, \
                     actual checksum Type: {}",
                    sent.algorithm
                ),
            });
        }

        // The upload's algorithm is stored; a checksum of another algorithm sent for an upload
        // without one (botocore sends CRC32 by default) is verified but not kept.
        let mut md5 = Md5::new();
        let mut stored = upload.checksum_algorithm.map(Hasher::new);
        let mut verified = meta
            .checksum
            .as_ref()
            .filter(|c| Some(c.algorithm) != upload.checksum_algorithm)
            .map(|c| Hasher::new(c.algorithm));
        for chunk in body.chunks(IO_CHUNK) {
            md5.update(chunk);
            if let Some(h) = stored.as_mut() {
                h.update(chunk);
            }
            if let Some(h) = verified.as_mut() {
                h.update(chunk);
            }
        }
        let md5: [u8; 16] = md5.finalize().into();
        if content_md5.is_some_and(|expected| expected != md5) {
            return Err(Error::Md5Mismatch);
        }
        let checksum = stored.map(Hasher::finish);
        for computed in [checksum.clone(), verified.map(Hasher::finish)]
            .into_iter()
            .flatten()
        {
            if let Some(sent) = meta
                .checksum
                .as_ref()
                .filter(|c| c.algorithm == computed.algorithm)
                && sent.value != computed.value
            {
                return Err(Error::ChecksumMismatch {
                    algorithm: computed.algorithm,
                });
            }
        }

        let id = unique_id();
        let part = PartFile {
            part_number,
            size: body.len() as u64,
            md5: hex::encode(md5),
            last_modified_ms: to_millis(now()),
            checksum,
            data_file: format!("{part_number}.{id}.{DATA_EXT}"),
        };
        let tmp = self.root.join("tmp");
        let staged_data = tmp.join(format!("{id}.{DATA_EXT}"));
        let staged_json = tmp.join(format!("{id}.{SIDECAR_EXT}"));
        let staged = serde_json::to_vec(&part)
            .map_err(std::io::Error::from)
            .and_then(|json| {
                write_synced(&staged_data, body)?;
                write_synced(&staged_json, &json)
            });
        let cleanup = || {
            remove_quietly(&staged_data);
            remove_quietly(&staged_json);
        };
        if let Err(e) = staged {
            cleanup();
            return Err(Error::io(
                format!("staging part {part_number} of upload {upload_id}"),
                e,
            ));
        }

        let json_path = dir.join(format!("{part_number}.{SIDECAR_EXT}"));
        let replaced = {
            let _commit = self.lock_commit();
            // Completed, aborted or completing since the checks above.
            if !dir.join(UPLOAD_FILE).exists() {
                cleanup();
                return Err(no_such_upload(upload_id));
            }
            let previous: Option<PartFile> = read_json(&json_path).ok();
            let data_path = dir.join(&part.data_file);
            let committed = fs::rename(&staged_data, &data_path)
                .and_then(|()| fs::rename(&staged_json, &json_path))
                .and_then(|()| sync_dir(&dir));
            if let Err(e) = committed {
                cleanup();
                return Err(Error::io(
                    format!("storing part {part_number} of upload {upload_id}"),
                    e,
                ));
            }
            previous
        };
        if let Some(old) = replaced.filter(|old| old.data_file != part.data_file) {
            remove_quietly(&dir.join(old.data_file));
        }
        debug!(
            bucket,
            key,
            upload_id,
            part_number,
            size = part.size,
            "part stored"
        );
        Ok(part.describe())
    }

    /// Reads every part of an upload, by part number.
    fn load_parts(&self, dir: &Path) -> Result<Vec<PartFile>, Error> {
        let mut parts = Vec::new();
        for entry in read_dir(dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(number) = name.strip_suffix(&format!(".{SIDECAR_EXT}")) else {
                continue;
            };
            if number.parse::<u32>().is_err() {
                continue;
            }
            parts.push(read_json::<PartFile>(&entry.path())?);
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    /// Lists an upload's parts after `marker`, at most `max`. Blocking.
    pub(crate) fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max: usize,
    ) -> Result<PartListing, Error> {
        let dir = self.check_upload_id(bucket, upload_id)?;
        let upload = self.load_upload(&dir, key, upload_id)?;
        let mut parts: Vec<PartInfo> = self
            .load_parts(&dir)?
            .iter()
            .filter(|p| p.part_number > marker)
            .map(PartFile::describe)
            .collect();
        let is_truncated = parts.len() > max;
        parts.truncate(max);
        let next_marker = is_truncated
            .then(|| parts.last().map(|p| p.part_number))
            .flatten();
        Ok(PartListing {
            upload: upload.describe(),
            parts,
            is_truncated,
            next_marker,
        })
    }

    /// The bucket's uploads in progress, by key then initiation time. Blocking.
    pub(crate) fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<MultipartUpload>, Error> {
        self.head_bucket(bucket)?;
        let dir = self.uploads_dir(bucket);
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut uploads = Vec::new();
        for entry in read_dir(&dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_upload_id(&name) {
                continue;
            }
            match read_json::<UploadFile>(&entry.path().join(UPLOAD_FILE)) {
                Ok(u) if u.key.starts_with(prefix) => uploads.push(u.describe()),
                Ok(_) => {}
                // Completed or aborted while listing.
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        uploads.sort_by(|a, b| {
            (&a.key, a.initiated, &a.upload_id).cmp(&(&b.key, b.initiated, &b.upload_id))
        });
        Ok(uploads)
    }

    /// Abandons an upload and deletes its parts. Blocking.
    pub(crate) fn abort_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), Error> {
        let dir = self.check_upload_id(bucket, upload_id)?;
        let trash = self.root.join("trash").join(unique_id());
        {
            let _commit = self.lock_commit();
            self.load_upload(&dir, key, upload_id)?;
            fs::rename(&dir, &trash)
                .and_then(|()| sync_dir(&self.uploads_dir(bucket)))
                .map_err(|e| Error::io(format!("aborting upload {upload_id}"), e))?;
        }
        if let Err(e) = fs::remove_dir_all(&trash) {
            warn!(path = %trash.display(), error = %e, "could not remove an aborted upload's parts; the next start removes them");
        }
        debug!(bucket, key, upload_id, "multipart upload aborted");
        Ok(())
    }

    /// Assembles the named parts into the object. Blocking (copies every part once).
    pub(crate) fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletePart],
        meta: CompleteMeta,
    ) -> Result<ObjectMeta, Error> {
        let completion = self.begin_completion(bucket, key, upload_id, parts, &meta)?;
        let result = self.assemble(&completion, &meta.condition);
        self.end_completion(completion, result.is_ok());
        result
    }

    /// Seals an upload for completion and checks the client's part list against it. While
    /// sealed, no part can be added and the upload cannot be aborted or completed again; the
    /// caller stores the object and then calls [`LocalStore::end_completion`]. If the part list
    /// is refused, the upload is open again when this returns, for the client to retry as S3
    /// allows. Blocking.
    pub(crate) fn begin_completion(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[CompletePart],
        meta: &CompleteMeta,
    ) -> Result<Completion, Error> {
        let dir = self.check_upload_id(bucket, upload_id)?;
        let sealed = self
            .uploads_dir(bucket)
            .join(format!("{upload_id}{COMPLETING}"));
        let upload = {
            let _commit = self.lock_commit();
            let upload = self.load_upload(&dir, key, upload_id)?;
            fs::rename(&dir, &sealed)
                .map_err(|e| Error::io(format!("completing upload {upload_id}"), e))?;
            upload
        };
        let mut completion = Completion {
            bucket: bucket.to_owned(),
            upload_id: upload_id.to_owned(),
            dir,
            sealed,
            upload,
            parts: Vec::new(),
            etag: String::new(),
            size: 0,
            composite: None,
            expected: meta.checksum.clone(),
        };
        match self.check_parts(&mut completion, parts, meta) {
            Ok(()) => Ok(completion),
            Err(e) => {
                self.end_completion(completion, false);
                Err(e)
            }
        }
    }

    /// Ends a completion begun by [`LocalStore::begin_completion`]: removes the upload once its
    /// object is `stored`, else reopens it so the client may retry. Blocking.
    pub(crate) fn end_completion(&self, completion: Completion, stored: bool) {
        let Completion {
            bucket,
            upload_id,
            dir,
            sealed,
            upload,
            parts,
            size,
            ..
        } = completion;
        if !stored {
            let _commit = self.lock_commit();
            if let Err(e) = fs::rename(&sealed, &dir) {
                warn!(upload_id, error = %e, "could not reopen an upload after a failed completion");
            }
            return;
        }
        // Durably gone, so a crash cannot resurrect the completed upload.
        let removed =
            fs::remove_dir_all(&sealed).and_then(|()| sync_dir(&self.uploads_dir(&bucket)));
        if let Err(e) = removed {
            warn!(path = %sealed.display(), error = %e, "could not remove a completed upload's parts");
        }
        info!(
            bucket,
            key = upload.key,
            upload_id,
            parts = parts.len(),
            size,
            "multipart upload completed"
        );
    }

    /// Checks the client's part list against the sealed upload and fills in the parts chosen,
    /// the entity tag, size and composite checksum.
    fn check_parts(
        &self,
        completion: &mut Completion,
        requested: &[CompletePart],
        meta: &CompleteMeta,
    ) -> Result<(), Error> {
        if requested.is_empty() {
            return Err(Error::MalformedXml {
                reason: "You must specify at least one part".into(),
            });
        }
        if requested
            .windows(2)
            .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(Error::InvalidPartOrder);
        }
        let sealed = &completion.sealed;
        let upload = &completion.upload;
        let mut stored = self.load_parts(sealed)?;
        let composite = upload.checksum_type == Some(ChecksumType::Composite);
        let mut chosen = Vec::with_capacity(requested.len());
        for (i, want) in requested.iter().enumerate() {
            let invalid = |reason: &str| Error::InvalidPart {
                part_number: want.part_number,
                reason: reason.to_owned(),
            };
            let at = stored
                .iter()
                .position(|p| p.part_number == want.part_number)
                .ok_or_else(|| invalid("the part was not uploaded"))?;
            let part = &stored[at];
            if !etag_matches(&want.etag, &part.md5) {
                return Err(invalid("the entity tag does not match the uploaded part"));
            }
            match (&want.checksum, &part.checksum) {
                (Some(sent), Some(have)) if sent != have => {
                    return Err(invalid("the checksum does not match the uploaded part"));
                }
                (None, Some(_)) if composite => {
                    return Err(Error::InvalidChecksum {
                        reason: format!(
                            "The upload was created using a {} checksum. The complete request \
                             must include the checksum for each part. It was missing for part \
                             {} in the request.",
                            upload
                                .checksum_algorithm
                                .map(|a| a.as_str())
                                .unwrap_or_default(),
                            want.part_number
                        ),
                    });
                }
                _ => {}
            }
            if i + 1 < requested.len() && part.size < MIN_PART_SIZE {
                return Err(Error::EntityTooSmall {
                    part_number: part.part_number,
                    size: part.size,
                });
            }
            // Part numbers ascend strictly, so each stored part is chosen at most once.
            chosen.push(stored.swap_remove(at));
        }
        let total: u64 = chosen.iter().map(|p| p.size).sum();
        if let Some(expected) = meta.object_size
            && expected != total
        {
            return Err(Error::InvalidArgument {
                name: "x-amz-mp-object-size".into(),
                reason: format!(
                    "The provided 'x-amz-mp-object-size' header value {expected} does not match \
                     what was computed: {total}"
                ),
            });
        }

        // Entity tag: MD5 of the parts' binary MD5s, suffixed with the part count.
        let mut etag = Md5::new();
        for p in &chosen {
            let raw = hex::decode(&p.md5).map_err(|_| Error::Corrupt {
                path: sealed.join(format!("{}.{SIDECAR_EXT}", p.part_number)),
                reason: "unreadable md5".into(),
            })?;
            etag.update(&raw);
        }
        completion.etag = format!("\"{}-{}\"", hex::encode(etag.finalize()), chosen.len());
        completion.composite = match (upload.checksum_algorithm, composite) {
            (Some(algorithm), true) => Some(composite_checksum(sealed, &chosen, algorithm)?),
            _ => None,
        };
        completion.size = total;
        completion.parts = chosen;
        Ok(())
    }

    /// Concatenates a sealed upload's parts into a staged file and commits it as the object.
    fn assemble(
        &self,
        completion: &Completion,
        condition: &WriteCondition,
    ) -> Result<ObjectMeta, Error> {
        let staged = self
            .root
            .join("tmp")
            .join(format!("{}.{DATA_EXT}", unique_id()));
        let mut sum = completion.object_checksum();
        let checksum = self
            .concatenate(&completion.part_files(), &staged, &mut sum)
            .and_then(|()| completion.checksum(sum));
        let checksum = match checksum {
            Ok(c) => c,
            Err(e) => {
                remove_quietly(&staged);
                return Err(e);
            }
        };
        let object = completion.object(completion.etag().to_owned(), checksum);
        self.commit_staged(&completion.bucket, object, &staged, condition)
    }

    /// Copies the parts into `staged` (fsynced), feeding `sum` on the way.
    fn concatenate(
        &self,
        parts: &[(PathBuf, u64)],
        staged: &Path,
        sum: &mut ObjectChecksum,
    ) -> Result<(), Error> {
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .open(staged)
            .map_err(|e| Error::io(format!("creating {}", staged.display()), e))?;
        let mut buf = vec![0u8; IO_CHUNK];
        for (path, size) in parts {
            let mut input = File::open(path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            let mut copied = 0u64;
            loop {
                let n = input
                    .read(&mut buf)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                if n == 0 {
                    break;
                }
                sum.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .map_err(|e| Error::io(format!("writing {}", staged.display()), e))?;
                copied += n as u64;
            }
            if copied != *size {
                return Err(Error::Corrupt {
                    path: path.clone(),
                    reason: format!("{copied} bytes on disk, {size} in metadata"),
                });
            }
        }
        out.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", staged.display()), e))
    }
}

/// A multipart upload sealed for completion with its part list checked (see
/// [`LocalStore::begin_completion`]). What remains is to store the parts' content as the object,
/// locally or in an external store, and to end the completion.
#[derive(Debug)]
pub(crate) struct Completion {
    bucket: String,
    upload_id: String,
    /// Where the upload lives while open, to reopen it if completion fails.
    dir: PathBuf,
    /// Where it lives while completing.
    sealed: PathBuf,
    upload: UploadFile,
    /// The parts the client named, in order.
    parts: Vec<PartFile>,
    /// S3's multipart entity tag: the MD5 of the parts' MD5s, `-<count>`.
    etag: String,
    size: u64,
    /// The object's checksum when it is a composite one (computed from the parts' checksums).
    composite: Option<Checksum>,
    /// The whole object's checksum the client sent with CompleteMultipartUpload, if any.
    expected: Option<Checksum>,
}

/// The completed object's checksum as it is being computed.
pub(crate) enum ObjectChecksum {
    /// Known from the parts' checksums; the content need not be hashed.
    Composite(Checksum),
    /// A full-object checksum: every part's content is fed through the hasher, in order.
    Content(Hasher),
}

impl ObjectChecksum {
    /// Feeds the next bytes of the object's content.
    pub(crate) fn update(&mut self, data: &[u8]) {
        if let ObjectChecksum::Content(h) = self {
            h.update(data);
        }
    }
}

impl Completion {
    /// S3's entity tag for the completed object, computed from the parts' MD5s.
    pub(crate) fn etag(&self) -> &str {
        &self.etag
    }

    /// The upload id.
    pub(crate) fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// The chosen parts' content files with their sizes, in order.
    pub(crate) fn part_files(&self) -> Vec<(PathBuf, u64)> {
        self.parts
            .iter()
            .map(|p| (self.sealed.join(&p.data_file), p.size))
            .collect()
    }

    /// The object's checksum, to be fed the content in order: composite (nothing to hash), or
    /// full-object with the upload's algorithm (CRC64NVME when it named none, as S3 does).
    pub(crate) fn object_checksum(&self) -> ObjectChecksum {
        match &self.composite {
            Some(c) => ObjectChecksum::Composite(c.clone()),
            None => ObjectChecksum::Content(Hasher::new(
                self.upload
                    .checksum_algorithm
                    .unwrap_or(ChecksumAlgorithm::Crc64Nvme),
            )),
        }
    }

    /// Finishes the object's checksum and checks it against the one the client sent, if any.
    pub(crate) fn checksum(&self, sum: ObjectChecksum) -> Result<Checksum, Error> {
        let checksum = match sum {
            ObjectChecksum::Composite(c) => c,
            ObjectChecksum::Content(h) => h.finish(),
        };
        if let Some(sent) = &self.expected {
            // The full-object checksum header, when the client sends one, must agree.
            let sent_base = sent.value.split('-').next().unwrap_or_default();
            let have_base = checksum.value.split('-').next().unwrap_or_default();
            if sent.algorithm != checksum.algorithm || sent_base != have_base {
                return Err(Error::ChecksumMismatch {
                    algorithm: sent.algorithm,
                });
            }
        }
        Ok(checksum)
    }

    /// The `Content-Type` the upload stores with its object, if the client gave one.
    pub(crate) fn content_type(&self) -> Option<&str> {
        self.upload.content_type.as_deref()
    }

    /// The user metadata the upload stores with its object.
    pub(crate) fn user_metadata(&self) -> &std::collections::BTreeMap<String, String> {
        &self.upload.user_metadata
    }

    /// The standard headers the upload stores with its object.
    pub(crate) fn headers(&self) -> ObjectHeaders {
        ObjectHeaders {
            cache_control: self.upload.cache_control.clone(),
            content_disposition: self.upload.content_disposition.clone(),
            content_encoding: self.upload.content_encoding.clone(),
            content_language: self.upload.content_language.clone(),
            expires: self.upload.expires.clone(),
        }
    }

    /// The completed object's metadata, with the entity tag its store assigned.
    pub(crate) fn object(&self, etag: String, checksum: Checksum) -> ObjectMeta {
        ObjectMeta {
            key: self.upload.key.clone(),
            size: self.size,
            etag,
            last_modified: now(),
            content_type: self
                .upload
                .content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            headers: self.headers(),
            user_metadata: self.upload.user_metadata.clone(),
            checksum: Some(checksum),
        }
    }
}

/// S3's composite checksum: the algorithm over the parts' binary checksums, then `-<count>`.
fn composite_checksum(
    sealed: &Path,
    parts: &[PartFile],
    algorithm: ChecksumAlgorithm,
) -> Result<Checksum, Error> {
    let mut h = Hasher::new(algorithm);
    for p in parts {
        let raw = p
            .checksum
            .as_ref()
            .filter(|c| c.algorithm == algorithm)
            .and_then(|c| BASE64.decode(&c.value).ok())
            .ok_or_else(|| Error::Corrupt {
                path: sealed.join(format!("{}.{SIDECAR_EXT}", p.part_number)),
                reason: format!("part checksum missing for {algorithm}"),
            })?;
        h.update(&raw);
    }
    Ok(Checksum {
        algorithm,
        value: format!("{}-{}", h.finish().value, parts.len()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checksum_types_follow_s3() {
        use ChecksumAlgorithm::*;
        use ChecksumType::*;
        assert_eq!(resolve_checksum_type(None, None).unwrap(), None);
        assert!(resolve_checksum_type(None, Some(FullObject)).is_err());
        assert_eq!(
            resolve_checksum_type(Some(Crc32), None).unwrap(),
            Some(Composite)
        );
        assert_eq!(
            resolve_checksum_type(Some(Crc64Nvme), None).unwrap(),
            Some(FullObject)
        );
        assert_eq!(
            resolve_checksum_type(Some(Crc32c), Some(FullObject)).unwrap(),
            Some(FullObject)
        );
        assert!(resolve_checksum_type(Some(Sha256), Some(FullObject)).is_err());
        assert!(resolve_checksum_type(Some(Crc64Nvme), Some(Composite)).is_err());
    }

    #[test]
    fn upload_ids_are_hex() {
        assert!(valid_upload_id(&"a".repeat(32)));
        assert!(!valid_upload_id("../../../../etc/passwd"));
        assert!(!valid_upload_id(&"A".repeat(32)));
        assert!(!valid_upload_id(&"a".repeat(31)));
    }
}
