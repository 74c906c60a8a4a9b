//! The local filesystem backend.
//!
//! Layout under the store directory:
//!
//! ```text
//! FORMAT                                   "berth-artifacts 1": layout version
//! LOCK                                     flock()ed while a store has the directory open
//! tmp/                                     uploads being staged; emptied at open
//! trash/                                   deleted buckets being removed; emptied at open
//! buckets/<bucket>/bucket.json             creation time and region
//! buckets/<bucket>/objects/<h>.json        an object's metadata ("sidecar"), h = sha256(key) in hex
//! buckets/<bucket>/objects/<h>.<id>.data   its content; <id> is unique per write
//! buckets/<bucket>/uploads/<upload-id>/     a multipart upload in progress (see `multipart`)
//! ```
//!
//! Keys never become paths: an object's files are named by the SHA-256 of its key, and the real
//! key lives in the sidecar, so `../../etc/passwd` is as harmless as any other key. Bucket names
//! are used as directory names only after S3's naming rules (no `/`, no `..`) have been checked.
//!
//! A write stages its content and sidecar in `tmp/` (written and fsynced), then commits under
//! the store's commit lock: the content is renamed into the bucket, the sidecar renamed over
//! the previous one (the atomic commit point), and the bucket's `objects/` directory fsynced
//! before the client hears 2xx. The previous content file is then unlinked; a reader that already
//! opened it keeps reading it. A crash leaves at worst staged files in `tmp/` or unreferenced
//! content files, which the next open removes. Every content file is named uniquely, so it is
//! never modified after it is written.
//!
//! All metadata is also held in an in-memory index (a sorted map per bucket) loaded at open, so
//! `HEAD` and listings touch no disk. Filesystem work runs on tokio's blocking pool.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use tokio_util::io::ReaderStream;
use tracing::{debug, info, warn};

use crate::checksum::{Checksum, parse_content_md5, verify_body};
use crate::listing;
use crate::model::{
    BucketInfo, ByteRange, DEFAULT_CONTENT_TYPE, ListQuery, Listing, ObjectBody, ObjectHeaders,
    ObjectMeta, PutMeta, WriteCondition, check_user_metadata,
};
use crate::names::{validate_bucket_name, validate_key};
use crate::{Error, MAX_READ_OBJECT};

mod multipart;

pub(crate) use multipart::Completion;

const FORMAT_FILE: &str = "FORMAT";
const LOCK_FILE: &str = "LOCK";
const FORMAT: &str = "berth-artifacts 1\n";
const BUCKET_FILE: &str = "bucket.json";
const OBJECTS_DIR: &str = "objects";
const UPLOADS_DIR: &str = "uploads";
const SIDECAR_EXT: &str = "json";
const DATA_EXT: &str = "data";
/// Size of the slices bodies are hashed and written in.
const IO_CHUNK: usize = 1024 * 1024;
/// Read buffer for streaming objects to clients: each read is one trip to the blocking pool, so
/// not too small; the chunks are also what the HTTP layer writes.
const STREAM_CHUNK: usize = 256 * 1024;

/// The local filesystem store.
#[derive(Debug)]
pub(crate) struct LocalStore {
    root: PathBuf,
    index: RwLock<BTreeMap<String, BucketState>>,
    /// Serializes commits (renames + index updates) so the index always mirrors the disk. Taken
    /// only on blocking-pool threads, for a couple of renames and one fsync.
    commit: Mutex<()>,
    /// Held for the store's lifetime: a second process opening the directory would empty `tmp/`
    /// under this one's uploads and diverge from its index.
    _lock: File,
}

#[derive(Debug)]
struct BucketState {
    info: BucketInfo,
    objects: BTreeMap<String, Arc<Entry>>,
}

#[derive(Debug)]
struct Entry {
    meta: ObjectMeta,
    /// File name of the content inside the bucket's `objects/` directory.
    data_file: String,
}

/// `bucket.json`.
#[derive(Serialize, Deserialize)]
struct BucketFile {
    name: String,
    created_ms: i64,
    region: String,
}

/// An object's sidecar. Field names are the on-disk format: change them only with a new
/// [`FORMAT`] version and a migration.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    key: String,
    data_file: String,
    size: u64,
    etag: String,
    last_modified_ms: i64,
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    #[serde(default)]
    user_metadata: BTreeMap<String, String>,
    #[serde(default)]
    checksum: Option<Checksum>,
}

impl Sidecar {
    fn from_meta(meta: &ObjectMeta, data_file: &str) -> Self {
        Self {
            key: meta.key.clone(),
            data_file: data_file.to_owned(),
            size: meta.size,
            etag: meta.etag.clone(),
            last_modified_ms: to_millis(meta.last_modified),
            content_type: meta.content_type.clone(),
            cache_control: meta.headers.cache_control.clone(),
            content_disposition: meta.headers.content_disposition.clone(),
            content_encoding: meta.headers.content_encoding.clone(),
            content_language: meta.headers.content_language.clone(),
            expires: meta.headers.expires.clone(),
            user_metadata: meta.user_metadata.clone(),
            checksum: meta.checksum.clone(),
        }
    }

    fn into_entry(self) -> Entry {
        Entry {
            meta: ObjectMeta {
                key: self.key,
                size: self.size,
                etag: self.etag,
                last_modified: from_millis(self.last_modified_ms),
                content_type: self.content_type,
                headers: ObjectHeaders {
                    cache_control: self.cache_control,
                    content_disposition: self.content_disposition,
                    content_encoding: self.content_encoding,
                    content_language: self.content_language,
                    expires: self.expires,
                },
                user_metadata: self.user_metadata,
                checksum: self.checksum,
            },
            data_file: self.data_file,
        }
    }
}

impl LocalStore {
    /// Opens (creating if needed) the store at `root`, removes leftovers of interrupted writes,
    /// and loads the index. Blocking.
    pub(crate) fn open(root: &Path) -> Result<Self, Error> {
        for dir in [
            root.to_path_buf(),
            root.join("tmp"),
            root.join("trash"),
            root.join("buckets"),
        ] {
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let lock = lock_dir(root)?;
        check_format(root)?;
        for dir in ["tmp", "trash"] {
            empty_dir(&root.join(dir))?;
        }
        let buckets_dir = root.join("buckets");
        let mut index = BTreeMap::new();
        for entry in read_dir(&buckets_dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate_bucket_name(&name).is_err() {
                warn!(path = %entry.path().display(), "ignoring a directory that is not a valid bucket name");
                continue;
            }
            let bucket = load_bucket(&entry.path(), &name)?;
            index.insert(name, bucket);
        }
        let objects: usize = index.values().map(|b: &BucketState| b.objects.len()).sum();
        info!(root = %root.display(), buckets = index.len(), objects, "artifact store opened");
        Ok(Self {
            root: root.to_path_buf(),
            index: RwLock::new(index),
            commit: Mutex::new(()),
            _lock: lock,
        })
    }

    /// Where the store lives.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join("buckets").join(bucket)
    }

    fn objects_dir(&self, bucket: &str) -> PathBuf {
        self.bucket_dir(bucket).join(OBJECTS_DIR)
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, BucketState>> {
        // The index is only mutated in short sections that cannot panic half-way, so a poisoned
        // lock still guards a consistent map.
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, BucketState>> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_commit(&self) -> std::sync::MutexGuard<'_, ()> {
        self.commit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a bucket; creating one that exists succeeds (S3's us-east-1 behaviour). Blocking.
    pub(crate) fn create_bucket(&self, bucket: &str, region: &str) -> Result<(), Error> {
        validate_bucket_name(bucket)?;
        let _commit = self.lock_commit();
        if self.read_index().contains_key(bucket) {
            return Ok(());
        }
        // Build the bucket directory in tmp/ and rename it into place, so a bucket directory
        // is either complete or absent.
        let staging = self.root.join("tmp").join(unique_id());
        let created = now();
        let result = (|| {
            fs::create_dir(&staging)?;
            fs::create_dir(staging.join(OBJECTS_DIR))?;
            fs::create_dir(staging.join(UPLOADS_DIR))?;
            let file = BucketFile {
                name: bucket.to_owned(),
                created_ms: to_millis(created),
                region: region.to_owned(),
            };
            write_synced(&staging.join(BUCKET_FILE), &serde_json::to_vec(&file)?)?;
            sync_dir(&staging)?;
            fs::rename(&staging, self.bucket_dir(bucket))?;
            sync_dir(&self.root.join("buckets"))
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&staging);
            return Err(Error::io(format!("creating bucket {bucket}"), e));
        }
        self.write_index().insert(
            bucket.to_owned(),
            BucketState {
                info: BucketInfo {
                    name: bucket.to_owned(),
                    created,
                    region: region.to_owned(),
                },
                objects: BTreeMap::new(),
            },
        );
        info!(bucket, "bucket created");
        Ok(())
    }

    pub(crate) fn head_bucket(&self, bucket: &str) -> Result<BucketInfo, Error> {
        self.read_index()
            .get(bucket)
            .map(|b| b.info.clone())
            .ok_or_else(|| no_such_bucket(bucket))
    }

    pub(crate) fn list_buckets(&self) -> Vec<BucketInfo> {
        self.read_index().values().map(|b| b.info.clone()).collect()
    }

    /// Deletes an empty bucket. Blocking.
    pub(crate) fn delete_bucket(&self, bucket: &str) -> Result<(), Error> {
        let trash = self.root.join("trash").join(unique_id());
        {
            let _commit = self.lock_commit();
            match self.read_index().get(bucket) {
                None => return Err(no_such_bucket(bucket)),
                Some(b) if !b.objects.is_empty() => {
                    return Err(Error::BucketNotEmpty {
                        bucket: bucket.to_owned(),
                    });
                }
                Some(_) => {}
            }
            // One rename removes the bucket atomically; its files are deleted afterwards.
            fs::rename(self.bucket_dir(bucket), &trash)
                .and_then(|()| sync_dir(&self.root.join("buckets")))
                .map_err(|e| Error::io(format!("deleting bucket {bucket}"), e))?;
            self.write_index().remove(bucket);
        }
        if let Err(e) = fs::remove_dir_all(&trash) {
            warn!(path = %trash.display(), error = %e, "could not remove a deleted bucket's files; the next start removes them");
        }
        info!(bucket, "bucket deleted");
        Ok(())
    }

    /// Stores an object durably. Blocking (hashes and writes the body).
    pub(crate) fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: &[u8],
        meta: PutMeta,
    ) -> Result<ObjectMeta, Error> {
        validate_key(key)?;
        check_user_metadata(&meta.user_metadata)?;
        // Fail fast, before hashing or writing anything.
        meta.content_md5
            .as_deref()
            .map(parse_content_md5)
            .transpose()?;
        self.head_bucket(bucket)?;

        // Hash first: a body that fails its checks is never written.
        let verified = verify_body(
            body,
            meta.content_md5.as_deref(),
            meta.checksum.as_ref(),
            meta.checksum_algorithm,
        )?;
        let object = ObjectMeta {
            key: key.to_owned(),
            size: body.len() as u64,
            etag: verified.etag(),
            last_modified: now(),
            content_type: meta
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
            headers: meta.headers,
            user_metadata: meta.user_metadata,
            checksum: Some(verified.checksum),
        };
        let staged_data = self
            .root
            .join("tmp")
            .join(format!("{}.{DATA_EXT}", unique_id()));
        if let Err(e) = write_synced(&staged_data, body) {
            remove_quietly(&staged_data);
            return Err(Error::io(
                format!("staging object {key:?} in bucket {bucket}"),
                e,
            ));
        }
        self.commit_staged(bucket, object, &staged_data, &meta.condition)
    }

    /// Makes a staged (written and fsynced) content file the object `object`, replacing any
    /// object under its key if `condition` holds. The staged file is consumed either way.
    fn commit_staged(
        &self,
        bucket: &str,
        object: ObjectMeta,
        staged_data: &Path,
        condition: &WriteCondition,
    ) -> Result<ObjectMeta, Error> {
        let key = object.key.as_str();
        let hash = key_hash(key);
        let id = unique_id();
        let data_file = format!("{hash}.{id}.{DATA_EXT}");
        let staged_sidecar = self.root.join("tmp").join(format!("{id}.{SIDECAR_EXT}"));
        let staged = serde_json::to_vec(&Sidecar::from_meta(&object, &data_file))
            .map_err(std::io::Error::from)
            .and_then(|sidecar| write_synced(&staged_sidecar, &sidecar));
        if let Err(e) = staged {
            remove_quietly(staged_data);
            remove_quietly(&staged_sidecar);
            return Err(Error::io(
                format!("staging object {key:?} in bucket {bucket}"),
                e,
            ));
        }

        let replaced = {
            let _commit = self.lock_commit();
            let committed = self.commit_put(
                bucket,
                key,
                &hash,
                &data_file,
                staged_data,
                &staged_sidecar,
                &object,
                condition,
            );
            if committed.is_err() {
                remove_quietly(staged_data);
                remove_quietly(&staged_sidecar);
            }
            committed?
        };
        if let Some(old) = replaced {
            remove_quietly(&self.objects_dir(bucket).join(&old.data_file));
        }
        debug!(bucket, key, size = object.size, "object stored");
        Ok(object)
    }

    /// The commit step of a put; the caller holds the commit lock. Returns the entry replaced.
    #[allow(clippy::too_many_arguments)]
    fn commit_put(
        &self,
        bucket: &str,
        key: &str,
        hash: &str,
        data_file: &str,
        staged_data: &Path,
        staged_sidecar: &Path,
        object: &ObjectMeta,
        condition: &WriteCondition,
    ) -> Result<Option<Arc<Entry>>, Error> {
        {
            let index = self.read_index();
            let current = index
                .get(bucket)
                .ok_or_else(|| no_such_bucket(bucket))?
                .objects
                .get(key);
            match (condition, current) {
                (WriteCondition::None, _) => {}
                (WriteCondition::IfNoneMatchAny, Some(_)) => {
                    return Err(Error::PreconditionFailed {
                        condition: "If-None-Match",
                    });
                }
                (WriteCondition::IfNoneMatchAny, None) => {}
                (WriteCondition::IfMatch(etag), Some(cur))
                    if etag_matches(etag, &cur.meta.etag) => {}
                (WriteCondition::IfMatch(_), None) => {
                    // S3 answers a conditional write on a missing key with 404.
                    return Err(Error::NoSuchKey {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    });
                }
                (WriteCondition::IfMatch(_), Some(_)) => {
                    return Err(Error::PreconditionFailed {
                        condition: "If-Match",
                    });
                }
            }
        }
        let objects = self.objects_dir(bucket);
        let data_path = objects.join(data_file);
        fs::rename(staged_data, &data_path)
            .map_err(|e| Error::io(format!("committing object {key:?} in bucket {bucket}"), e))?;
        if let Err(e) = fs::rename(
            staged_sidecar,
            objects.join(format!("{hash}.{SIDECAR_EXT}")),
        ) {
            remove_quietly(&data_path);
            return Err(Error::io(
                format!("committing object {key:?} in bucket {bucket}"),
                e,
            ));
        }
        // The sidecar rename is the commit point: from here the new object is visible.
        let entry = Arc::new(Entry {
            meta: object.clone(),
            data_file: data_file.to_owned(),
        });
        let replaced = self
            .write_index()
            .get_mut(bucket)
            .and_then(|b| b.objects.insert(key.to_owned(), entry));
        sync_dir(&objects)
            .map_err(|e| Error::io(format!("syncing bucket {bucket} after a write"), e))?;
        Ok(replaced)
    }

    pub(crate) fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectMeta, Error> {
        Ok(self.entry(bucket, key)?.meta.clone())
    }

    fn entry(&self, bucket: &str, key: &str) -> Result<Arc<Entry>, Error> {
        self.read_index()
            .get(bucket)
            .ok_or_else(|| no_such_bucket(bucket))?
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NoSuchKey {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            })
    }

    /// Opens an object's content file. A concurrent overwrite or delete may unlink the file
    /// between the index lookup and the open; the lookup is then retried.
    fn open_entry(&self, bucket: &str, key: &str) -> Result<(Arc<Entry>, File), Error> {
        let mut attempts = 0;
        loop {
            let entry = self.entry(bucket, key)?;
            let path = self.objects_dir(bucket).join(&entry.data_file);
            match File::open(&path) {
                Ok(file) => return Ok((entry, file)),
                Err(e) if e.kind() == ErrorKind::NotFound && attempts < 3 => {
                    let current = self.entry(bucket, key);
                    let replaced = match &current {
                        Ok(cur) => !Arc::ptr_eq(cur, &entry),
                        Err(_) => true,
                    };
                    if !replaced {
                        return Err(Error::Corrupt {
                            path,
                            reason: "the object's content file is missing".into(),
                        });
                    }
                    attempts += 1;
                }
                Err(e) => {
                    return Err(Error::io(format!("opening {}", path.display()), e));
                }
            }
        }
    }

    /// Opens an object for streaming, positioned at the range's start. Blocking.
    pub(crate) fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectMeta, ObjectBody), Error> {
        let (entry, mut file) = self.open_entry(bucket, key)?;
        let size = entry.meta.size;
        let resolved = range.map(|r| r.resolve(size)).transpose()?;
        let (start, len) = match resolved {
            Some((first, last)) => (first, last - first + 1),
            None => (0, size),
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .map_err(|e| Error::io(format!("seeking in object {key:?}"), e))?;
        }
        let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len);
        let stream = ReaderStream::with_capacity(reader, STREAM_CHUNK);
        Ok((
            entry.meta.clone(),
            ObjectBody::new(len, resolved, Box::pin(stream)),
        ))
    }

    /// Reads a whole object into memory (capped). Blocking.
    pub(crate) fn read_object(&self, bucket: &str, key: &str) -> Result<Bytes, Error> {
        let (entry, mut file) = self.open_entry(bucket, key)?;
        if entry.meta.size > MAX_READ_OBJECT {
            return Err(Error::ObjectTooLarge {
                size: entry.meta.size,
                limit: MAX_READ_OBJECT,
            });
        }
        let mut buf = Vec::with_capacity(usize::try_from(entry.meta.size).unwrap_or(0));
        file.read_to_end(&mut buf)
            .map_err(|e| Error::io(format!("reading object {key:?}"), e))?;
        if buf.len() as u64 != entry.meta.size {
            return Err(Error::Corrupt {
                path: self.objects_dir(bucket).join(&entry.data_file),
                reason: format!(
                    "{} bytes on disk, {} in metadata",
                    buf.len(),
                    entry.meta.size
                ),
            });
        }
        Ok(Bytes::from(buf))
    }

    /// Deletes an object; deleting a missing key succeeds, as in S3. Blocking.
    pub(crate) fn delete_object(&self, bucket: &str, key: &str) -> Result<(), Error> {
        let removed = {
            let _commit = self.lock_commit();
            let exists = self
                .read_index()
                .get(bucket)
                .ok_or_else(|| no_such_bucket(bucket))?
                .objects
                .contains_key(key);
            if !exists {
                return Ok(());
            }
            let objects = self.objects_dir(bucket);
            fs::remove_file(objects.join(format!("{}.{SIDECAR_EXT}", key_hash(key))))
                .map_err(|e| Error::io(format!("deleting object {key:?} in bucket {bucket}"), e))?;
            let removed = self
                .write_index()
                .get_mut(bucket)
                .and_then(|b| b.objects.remove(key));
            sync_dir(&objects)
                .map_err(|e| Error::io(format!("syncing bucket {bucket} after a delete"), e))?;
            removed
        };
        if let Some(old) = removed {
            remove_quietly(&self.objects_dir(bucket).join(&old.data_file));
        }
        debug!(bucket, key, "object deleted");
        Ok(())
    }

    pub(crate) fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<Listing, Error> {
        let index = self.read_index();
        let state = index.get(bucket).ok_or_else(|| no_such_bucket(bucket))?;
        Ok(listing::list(&state.objects, query, |_, e| e.meta.clone()))
    }
}

/// Compares entity tags as S3 does for `If-Match`: quotes optional, `*` matches anything.
pub(crate) fn etag_matches(condition: &str, etag: &str) -> bool {
    let bare = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let etag = bare(etag);
    condition
        .split(',')
        .any(|c| c.trim() == "*" || bare(c) == etag)
}

fn no_such_bucket(bucket: &str) -> Error {
    Error::NoSuchBucket {
        bucket: bucket.to_owned(),
    }
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn unique_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn now() -> OffsetDateTime {
    // Millisecond precision is all the sidecar keeps; truncating here keeps the value returned
    // by a put equal to what later reads report.
    from_millis(to_millis(OffsetDateTime::now_utc()))
}

fn to_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Takes the directory's exclusive lock, failing at once if another store holds it.
fn lock_dir(root: &Path) -> Result<File, Error> {
    let path = root.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Config {
            reason: format!(
                "the artifact store at {} is in use by another process",
                root.display()
            ),
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
    }
}

fn check_format(root: &Path) -> Result<(), Error> {
    let path = root.join(FORMAT_FILE);
    match fs::read_to_string(&path) {
        Ok(found) if found == FORMAT => Ok(()),
        Ok(found) => Err(Error::Corrupt {
            path,
            reason: format!(
                "unknown store format {:?} (this build reads {:?})",
                found.trim(),
                FORMAT.trim()
            ),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => write_synced(&path, FORMAT.as_bytes())
            .and_then(|()| sync_dir(root))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e)),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, Error> {
    fs::read_dir(dir)
        .and_then(|entries| entries.collect::<io::Result<Vec<_>>>())
        .map_err(|e| Error::io(format!("reading directory {}", dir.display()), e))
}

fn empty_dir(dir: &Path) -> Result<(), Error> {
    for entry in read_dir(dir)? {
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(format!("removing leftover {}", path.display()), e))?;
    }
    Ok(())
}

fn load_bucket(dir: &Path, name: &str) -> Result<BucketState, Error> {
    let bucket_file = dir.join(BUCKET_FILE);
    let raw = fs::read(&bucket_file)
        .map_err(|e| Error::io(format!("reading {}", bucket_file.display()), e))?;
    let file: BucketFile = serde_json::from_slice(&raw).map_err(|e| Error::Corrupt {
        path: bucket_file.clone(),
        reason: e.to_string(),
    })?;
    if file.name != name {
        return Err(Error::Corrupt {
            path: bucket_file,
            reason: format!("names bucket {:?}, found in directory {name:?}", file.name),
        });
    }
    multipart::recover_uploads(&dir.join(UPLOADS_DIR))?;
    let objects_dir = dir.join(OBJECTS_DIR);
    let mut objects = BTreeMap::new();
    let mut data_files = Vec::new();
    for entry in read_dir(&objects_dir)? {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if file_name.ends_with(&format!(".{DATA_EXT}")) {
            data_files.push(file_name);
            continue;
        }
        let Some(hash) = file_name.strip_suffix(&format!(".{SIDECAR_EXT}")) else {
            warn!(path = %path.display(), "ignoring an unexpected file in a bucket");
            continue;
        };
        let raw =
            fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let sidecar: Sidecar = serde_json::from_slice(&raw).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // A sidecar must sit under its own key's hash and point at a content file of that hash
        // in the same directory: anything else was not written by this store.
        let consistent = key_hash(&sidecar.key) == hash
            && sidecar
                .data_file
                .strip_prefix(hash)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|rest| rest.strip_suffix(&format!(".{DATA_EXT}")))
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
        if !consistent {
            return Err(Error::Corrupt {
                path,
                reason: "metadata does not match its file name".into(),
            });
        }
        let entry = sidecar.into_entry();
        objects.insert(entry.meta.key.clone(), Arc::new(entry));
    }
    // Content files no sidecar references are leftovers of writes interrupted between their two
    // renames, or of replaced objects whose old content was not yet unlinked.
    let referenced: std::collections::HashSet<&str> = objects
        .values()
        .map(|e: &Arc<Entry>| e.data_file.as_str())
        .collect();
    for file in data_files
        .iter()
        .filter(|f| !referenced.contains(f.as_str()))
    {
        let path = objects_dir.join(file);
        debug!(path = %path.display(), "removing unreferenced object content");
        remove_quietly(&path);
    }
    let present: std::collections::HashSet<&str> = data_files.iter().map(String::as_str).collect();
    for entry in objects.values() {
        if !present.contains(entry.data_file.as_str()) {
            return Err(Error::Corrupt {
                path: objects_dir.join(&entry.data_file),
                reason: format!("content of object {:?} is missing", entry.meta.key),
            });
        }
    }
    Ok(BucketState {
        info: BucketInfo {
            name: file.name,
            created: from_millis(file.created_ms),
            region: file.region,
        },
        objects,
    })
}

/// Writes `data` to a new file at `path` and fsyncs it.
fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = File::options().write(true).create_new(true).open(path)?;
    for chunk in data.chunks(IO_CHUNK) {
        file.write_all(chunk)?;
    }
    file.sync_all()
}

/// Fsyncs a directory, making renames and creations inside it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != ErrorKind::NotFound
    {
        warn!(path = %path.display(), error = %e, "could not remove a file; the next start removes it");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn etag_conditions() {
        let etag = "\"5d41402abc4b2a76b9719d911017c592\"";
        assert!(etag_matches(etag, etag));
        assert!(etag_matches("5d41402abc4b2a76b9719d911017c592", etag));
        assert!(etag_matches(
            "\"x\", \"5d41402abc4b2a76b9719d911017c592\"",
            etag
        ));
        assert!(etag_matches("*", etag));
        assert!(!etag_matches("\"other\"", etag));
    }

    #[test]
    fn key_hashes_are_file_names() {
        let h = key_hash("../../etc/passwd");
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
