//! The values the store takes and returns: object metadata, upload options, byte ranges, bodies,
//! bucket descriptions and listings.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use time::OffsetDateTime;

use crate::Error;
use crate::checksum::{Checksum, ChecksumAlgorithm};

/// Content type S3 reports for objects uploaded without one.
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Largest total size of user metadata names and values, as S3 enforces.
pub const MAX_USER_METADATA: usize = 2048;

/// A bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketInfo {
    /// The bucket name.
    pub name: String,
    /// When it was created.
    pub created: OffsetDateTime,
    /// The region it was created for (its `LocationConstraint`, else the region the request was
    /// signed for).
    pub region: String,
}

/// The standard HTTP headers S3 stores with an object and returns on reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Encoding`, without the transfer-only `aws-chunked` token.
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Expires`, as sent.
    pub expires: Option<String>,
}

/// An object's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key.
    pub key: String,
    /// Size of the content in bytes.
    pub size: u64,
    /// The entity tag, quoted as S3 sends it: `"<hex md5 of the content>"`.
    pub etag: String,
    /// When the object was written.
    pub last_modified: OffsetDateTime,
    /// `Content-Type` (defaults to [`DEFAULT_CONTENT_TYPE`]).
    pub content_type: String,
    /// The other standard headers stored with the object.
    pub headers: ObjectHeaders,
    /// User metadata (`x-amz-meta-<name>`), names lower-cased.
    pub user_metadata: BTreeMap<String, String>,
    /// The full-object checksum: the one the client sent, or CRC64NVME computed by the store
    /// when it sent none (as S3 does). `None` only for objects read from an external store.
    pub checksum: Option<Checksum>,
}

/// What a write must find for it to proceed (S3 conditional writes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WriteCondition {
    /// Write unconditionally.
    #[default]
    None,
    /// `If-None-Match: *`: only if no object exists under the key.
    IfNoneMatchAny,
    /// `If-Match: <etag>`: only if the current object has this entity tag.
    IfMatch(String),
}

/// Metadata and integrity checks for an upload.
#[derive(Clone, Debug, Default)]
pub struct PutMeta {
    /// `Content-Type`; [`DEFAULT_CONTENT_TYPE`] when absent.
    pub content_type: Option<String>,
    /// Standard headers to store.
    pub headers: ObjectHeaders,
    /// User metadata, names without the `x-amz-meta-` prefix, lower-cased.
    pub user_metadata: BTreeMap<String, String>,
    /// `Content-MD5` as sent (base64); the body must have this digest.
    pub content_md5: Option<String>,
    /// A checksum the client sent (header or trailer); the body must have it.
    pub checksum: Option<Checksum>,
    /// An algorithm to compute and store when the client sent no value for it. Ignored when
    /// `checksum` is set; CRC64NVME is used when both are absent.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// The write's precondition.
    pub condition: WriteCondition,
}

impl PutMeta {
    /// Size of the user metadata as S3 counts it against [`MAX_USER_METADATA`]: the bytes of
    /// every name and value.
    pub fn user_metadata_size(&self) -> usize {
        self.user_metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

/// Refuses user metadata over S3's [`MAX_USER_METADATA`] (names and values counted).
pub(crate) fn check_user_metadata(metadata: &BTreeMap<String, String>) -> Result<(), Error> {
    let size: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_METADATA {
        return Err(Error::MetadataTooLarge {
            size,
            limit: MAX_USER_METADATA,
        });
    }
    Ok(())
}

/// A byte range from an HTTP `Range` header (one range; S3 serves no multi-range requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last`, both inclusive.
    FromTo(u64, u64),
    /// `bytes=first-`: from `first` to the end.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Last(u64),
}

impl ByteRange {
    /// Parses a `Range` header value. `None` when the header should be ignored and the whole
    /// object served, which is what HTTP prescribes (and S3 does) for syntactically invalid
    /// values, other units and multiple ranges.
    pub fn parse(header: &str) -> Option<Self> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (true, true) => None,
            (true, false) => Some(ByteRange::Last(num(last)?)),
            (false, true) => Some(ByteRange::From(num(first)?)),
            (false, false) => {
                let (first, last) = (num(first)?, num(last)?);
                (first <= last).then_some(ByteRange::FromTo(first, last))
            }
        }
    }

    /// The inclusive `(first, last)` offsets this range selects in an object of `size` bytes, or
    /// [`Error::InvalidRange`] when it selects nothing.
    pub fn resolve(self, size: u64) -> Result<(u64, u64), Error> {
        let unsatisfiable = || Error::InvalidRange {
            requested: self.to_string(),
            size,
        };
        match self {
            ByteRange::FromTo(first, last) if first < size => Ok((first, last.min(size - 1))),
            ByteRange::From(first) if first < size => Ok((first, size - 1)),
            ByteRange::Last(n) if n > 0 && size > 0 => Ok((size - n.min(size), size - 1)),
            _ => Err(unsatisfiable()),
        }
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRange::FromTo(a, b) => write!(f, "bytes={a}-{b}"),
            ByteRange::From(a) => write!(f, "bytes={a}-"),
            ByteRange::Last(n) => write!(f, "bytes=-{n}"),
        }
    }
}

/// A boxed stream of body chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'static>>;

/// An object's content (or the requested range of it), streamed from storage.
pub struct ObjectBody {
    len: u64,
    range: Option<(u64, u64)>,
    stream: BodyStream,
}

impl ObjectBody {
    /// A body of `len` bytes; `range` is the inclusive span served when a range was requested.
    pub(crate) fn new(len: u64, range: Option<(u64, u64)>, stream: BodyStream) -> Self {
        Self { len, range, stream }
    }

    /// Number of bytes the stream yields.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inclusive `(first, last)` offsets served, when a range was requested.
    pub fn range(&self) -> Option<(u64, u64)> {
        self.range
    }

    /// The content as a stream of chunks.
    pub fn into_stream(self) -> BodyStream {
        self.stream
    }

    /// Reads the whole body into memory.
    pub async fn collect(self) -> Result<Bytes, Error> {
        let mut buf = BytesMut::with_capacity(usize::try_from(self.len).unwrap_or(0));
        let mut stream = self.stream;
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| Error::io("reading object body", e))?);
        }
        Ok(buf.freeze())
    }
}

impl fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectBody")
            .field("len", &self.len)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// How an object's checksum covers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChecksumType {
    /// A checksum of the whole content.
    FullObject,
    /// A multipart object's checksum of its parts' checksums, written `<base64>-<part count>`.
    Composite,
}

impl ChecksumType {
    /// The name S3 uses (`FULL_OBJECT`, `COMPOSITE`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumType::FullObject => "FULL_OBJECT",
            ChecksumType::Composite => "COMPOSITE",
        }
    }

    /// Parses S3's name, case-insensitively.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_uppercase().as_str() {
            "FULL_OBJECT" => Ok(ChecksumType::FullObject),
            "COMPOSITE" => Ok(ChecksumType::Composite),
            _ => Err(Error::InvalidChecksum {
                reason: format!("Value for x-amz-checksum-type header is invalid: {s}"),
            }),
        }
    }
}

/// Smallest size of a multipart upload's parts other than the last, as S3 enforces.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Highest part number of a multipart upload.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// What a multipart upload will store with its object (CreateMultipartUpload's headers).
#[derive(Clone, Debug, Default)]
pub struct UploadMeta {
    /// `Content-Type`; [`DEFAULT_CONTENT_TYPE`] when absent.
    pub content_type: Option<String>,
    /// Standard headers to store.
    pub headers: ObjectHeaders,
    /// User metadata, names without the `x-amz-meta-` prefix, lower-cased.
    pub user_metadata: BTreeMap<String, String>,
    /// `x-amz-checksum-algorithm`: each part carries a checksum of this algorithm.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// `x-amz-checksum-type`; defaults as in S3 (full-object for CRC64NVME, composite otherwise).
    pub checksum_type: Option<ChecksumType>,
}

/// A multipart upload in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultipartUpload {
    /// The upload id.
    pub upload_id: String,
    /// The key the object will have.
    pub key: String,
    /// When the upload was created.
    pub initiated: OffsetDateTime,
    /// The parts' checksum algorithm, if the upload has one.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// How the completed object's checksum will cover it (with `checksum_algorithm`).
    pub checksum_type: Option<ChecksumType>,
}

/// An uploaded part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    /// 1 to [`MAX_PART_NUMBER`].
    pub part_number: u32,
    /// Size in bytes.
    pub size: u64,
    /// Quoted hex MD5 of the part.
    pub etag: String,
    /// When the part was uploaded.
    pub last_modified: OffsetDateTime,
    /// The part's checksum with the upload's algorithm.
    pub checksum: Option<Checksum>,
}

/// Integrity checks for an uploaded part.
#[derive(Clone, Debug, Default)]
pub struct PartMeta {
    /// `Content-MD5` as sent (base64).
    pub content_md5: Option<String>,
    /// A checksum the client sent (header or trailer).
    pub checksum: Option<Checksum>,
}

/// A part named in CompleteMultipartUpload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletePart {
    /// The part number.
    pub part_number: u32,
    /// The entity tag the client got when uploading it.
    pub etag: String,
    /// The part's checksum as the client got it, if sent.
    pub checksum: Option<Checksum>,
}

/// CompleteMultipartUpload's header parameters.
#[derive(Clone, Debug, Default)]
pub struct CompleteMeta {
    /// The whole object's checksum (`x-amz-checksum-*`), checked when sent.
    pub checksum: Option<Checksum>,
    /// `x-amz-mp-object-size`: the object's expected size, checked when sent.
    pub object_size: Option<u64>,
    /// The write's precondition.
    pub condition: WriteCondition,
}

/// One page of an upload's parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartListing {
    /// The upload.
    pub upload: MultipartUpload,
    /// Parts in order.
    pub parts: Vec<PartInfo>,
    /// True when more parts follow.
    pub is_truncated: bool,
    /// When truncated, the last part number returned.
    pub next_marker: Option<u32>,
}

/// Most keys one listing page returns, as S3 caps `max-keys`.
pub const MAX_LIST_KEYS: usize = 1000;

/// Which objects to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys containing this (after the prefix) up into common prefixes. Empty means none.
    pub delimiter: Option<String>,
    /// Most keys plus common prefixes to return (at most [`MAX_LIST_KEYS`]).
    pub max_keys: usize,
    /// Start after this key (exclusive). When it is one of this listing's common prefixes, every
    /// key under it is skipped too, so a page can resume after a rolled-up prefix.
    pub start_after: Option<String>,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Objects, in UTF-8 binary key order.
    pub objects: Vec<ObjectMeta>,
    /// Common prefixes (each ends with the delimiter), in order.
    pub common_prefixes: Vec<String>,
    /// True when more entries follow.
    pub is_truncated: bool,
    /// When truncated: the last key or common prefix returned, to resume after
    /// (`ListQuery::start_after` of the next page).
    pub next_marker: Option<String>,
}

impl Listing {
    /// Number of keys plus common prefixes, S3's `KeyCount`.
    pub fn key_count(&self) -> usize {
        self.objects.len() + self.common_prefixes.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_ranges() {
        assert_eq!(
            ByteRange::parse("bytes=0-99"),
            Some(ByteRange::FromTo(0, 99))
        );
        assert_eq!(ByteRange::parse("bytes=100-"), Some(ByteRange::From(100)));
        assert_eq!(ByteRange::parse("bytes=-500"), Some(ByteRange::Last(500)));
        assert_eq!(
            ByteRange::parse(" bytes= 5 - 9 "),
            Some(ByteRange::FromTo(5, 9))
        );
        for ignored in [
            "bytes=9-5",
            "bytes=0-1,5-9",
            "items=0-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "",
        ] {
            assert_eq!(ByteRange::parse(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn resolves_against_size() {
        assert_eq!(ByteRange::FromTo(0, 99).resolve(50).unwrap(), (0, 49));
        assert_eq!(ByteRange::FromTo(10, 19).resolve(50).unwrap(), (10, 19));
        assert_eq!(ByteRange::From(49).resolve(50).unwrap(), (49, 49));
        assert_eq!(ByteRange::Last(10).resolve(50).unwrap(), (40, 49));
        assert_eq!(ByteRange::Last(100).resolve(50).unwrap(), (0, 49));
        for unsatisfiable in [
            ByteRange::FromTo(50, 60),
            ByteRange::From(50),
            ByteRange::Last(0),
        ] {
            assert!(matches!(
                unsatisfiable.resolve(50),
                Err(Error::InvalidRange { size: 50, .. })
            ));
        }
        // Nothing can be selected from an empty object.
        assert!(ByteRange::Last(5).resolve(0).is_err());
        assert!(ByteRange::FromTo(0, 0).resolve(0).is_err());
    }
}
