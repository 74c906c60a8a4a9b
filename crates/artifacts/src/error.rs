//! What can go wrong in the artifact store, and how S3 reports each failure on the wire.

use std::io;
use std::path::PathBuf;

use crate::checksum::ChecksumAlgorithm;

/// Why an artifact-store operation failed.
///
/// [`Error::s3_code`] and [`Error::http_status`] give the S3 error each variant is reported as, so
/// the server's S3 handler renders errors in one place and the domain never sees HTTP.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket does not exist.
    #[error("bucket {bucket} does not exist")]
    NoSuchBucket {
        /// The bucket named by the request.
        bucket: String,
    },

    /// The bucket exists but holds no object under the key.
    #[error("no object {key:?} in bucket {bucket}")]
    NoSuchKey {
        /// The bucket named by the request.
        bucket: String,
        /// The key named by the request.
        key: String,
    },

    /// No multipart upload with this id exists for the key (never created, completed or aborted).
    #[error("no multipart upload {upload_id}")]
    NoSuchUpload {
        /// The upload id named by the request.
        upload_id: String,
    },

    /// A part named in CompleteMultipartUpload was not uploaded or differs from what was.
    #[error("invalid part {part_number}: {reason}")]
    InvalidPart {
        /// The part number.
        part_number: u32,
        /// What is wrong.
        reason: String,
    },

    /// CompleteMultipartUpload's parts are not in ascending order.
    #[error("parts are not in ascending order")]
    InvalidPartOrder,

    /// A part other than the last is smaller than S3's 5 MiB minimum.
    #[error("part {part_number} is {size} bytes, under the minimum part size")]
    EntityTooSmall {
        /// The part number.
        part_number: u32,
        /// Its size.
        size: u64,
    },

    /// A bucket must be empty before it is deleted.
    #[error("bucket {bucket} is not empty")]
    BucketNotEmpty {
        /// The bucket named by the request.
        bucket: String,
    },

    /// The bucket name breaks S3's naming rules.
    #[error("invalid bucket name {name:?}: {reason}")]
    InvalidBucketName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// The object key is longer than S3's 1024-byte limit.
    #[error("object key is {len} bytes, over the {limit}-byte limit")]
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },

    /// The requested byte range starts beyond the end of the object.
    #[error("range {requested} not satisfiable for an object of {size} bytes")]
    InvalidRange {
        /// The range as requested (`bytes=...`).
        requested: String,
        /// The object's size.
        size: u64,
    },

    /// A conditional write (`If-Match`, `If-None-Match`) did not hold.
    #[error("precondition failed: {condition}")]
    PreconditionFailed {
        /// The condition that did not hold, as a header name.
        condition: &'static str,
    },

    /// `Content-MD5` is not the base64 of 16 bytes.
    #[error("content-md5 is not a base64-encoded md5 digest")]
    InvalidDigest,

    /// The body's MD5 differs from `Content-MD5`.
    #[error("content-md5 does not match the body")]
    Md5Mismatch,

    /// The body's checksum differs from the one the client sent (header or trailer).
    #[error("the {algorithm} checksum does not match the body")]
    ChecksumMismatch {
        /// The algorithm whose value differed.
        algorithm: ChecksumAlgorithm,
    },

    /// A checksum header or trailer is malformed, duplicated or inconsistent with the declared
    /// algorithm, or names an algorithm this store does not implement.
    #[error("invalid checksum: {reason}")]
    InvalidChecksum {
        /// What is wrong, for the client.
        reason: String,
    },

    /// User metadata (`x-amz-meta-*`) exceeds S3's 2 KB limit.
    #[error("user metadata is {size} bytes, over the {limit}-byte limit")]
    MetadataTooLarge {
        /// Size of the names and values sent.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// An object is too large for the operation (whole-object reads are capped).
    #[error("object is {size} bytes, over the {limit}-byte limit for this operation")]
    ObjectTooLarge {
        /// The object's size.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// An `aws-chunked` request body is malformed (bad chunk header, missing CRLF, bad trailer).
    #[error("malformed aws-chunked body: {reason}")]
    MalformedChunkedBody {
        /// What is wrong, for the client.
        reason: String,
    },

    /// The decoded body length differs from `x-amz-decoded-content-length`, or the body ended early.
    #[error("incomplete body: {reason}")]
    IncompleteBody {
        /// What is wrong, for the client.
        reason: String,
    },

    /// A chunk or trailer signature of a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD*` body does not match.
    #[error("chunk signature does not match")]
    ChunkSignatureMismatch,

    /// An XML request body is not well-formed or does not have the expected shape.
    #[error("malformed xml: {reason}")]
    MalformedXml {
        /// What is wrong, for the client.
        reason: String,
    },

    /// A request parameter or header has an invalid value.
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument {
        /// The parameter or header.
        name: String,
        /// What is wrong, for the client.
        reason: String,
    },

    /// The request needs an S3 feature this server does not implement.
    #[error("not implemented: {what}")]
    NotImplemented {
        /// The operation, header or parameter.
        what: String,
    },

    /// The caller's credentials may not use the artifact store.
    #[error("access denied")]
    AccessDenied,

    /// The HTTP method does not apply to the resource (for example `POST` on an object).
    #[error("method not allowed")]
    MethodNotAllowed,

    /// A `partNumber` other than 1 was asked of a single-part object.
    #[error("invalid part number")]
    InvalidPartNumber,

    /// The store is an external S3-compatible service opened with `read_only=true`.
    #[error("the artifact store is read-only (an external s3-compatible store)")]
    ReadOnly,

    /// The store URL or its options are invalid.
    #[error("invalid artifact store configuration: {reason}")]
    Config {
        /// What is wrong, naming the offending key.
        reason: String,
    },

    /// A file in the store directory is not what the store wrote (unreadable metadata...).
    #[error("corrupt artifact store file {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The external S3-compatible store failed.
    #[error("external artifact store: {0}")]
    External(#[source] Box<object_store::Error>),
}

impl Error {
    /// Wraps an IO error with what the store was doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// The S3 error code this failure is reported as.
    pub fn s3_code(&self) -> &'static str {
        match self {
            Error::NoSuchBucket { .. } => "NoSuchBucket",
            Error::NoSuchKey { .. } => "NoSuchKey",
            Error::BucketNotEmpty { .. } => "BucketNotEmpty",
            Error::NoSuchUpload { .. } => "NoSuchUpload",
            Error::InvalidPart { .. } => "InvalidPart",
            Error::InvalidPartOrder => "InvalidPartOrder",
            Error::EntityTooSmall { .. } => "EntityTooSmall",
            Error::InvalidBucketName { .. } => "InvalidBucketName",
            Error::KeyTooLong { .. } => "KeyTooLongError",
            Error::InvalidRange { .. } => "InvalidRange",
            Error::PreconditionFailed { .. } => "PreconditionFailed",
            Error::InvalidDigest => "InvalidDigest",
            Error::Md5Mismatch | Error::ChecksumMismatch { .. } => "BadDigest",
            Error::InvalidChecksum { .. } => "InvalidRequest",
            Error::MetadataTooLarge { .. } => "MetadataTooLarge",
            Error::ObjectTooLarge { .. } => "EntityTooLarge",
            Error::MalformedChunkedBody { .. } => "InvalidRequest",
            Error::IncompleteBody { .. } => "IncompleteBody",
            Error::ChunkSignatureMismatch => "SignatureDoesNotMatch",
            Error::MalformedXml { .. } => "MalformedXML",
            Error::InvalidArgument { .. } => "InvalidArgument",
            Error::NotImplemented { .. } => "NotImplemented",
            Error::AccessDenied => "AccessDenied",
            Error::MethodNotAllowed | Error::ReadOnly => "MethodNotAllowed",
            Error::InvalidPartNumber => "InvalidPartNumber",
            Error::Config { .. }
            | Error::Corrupt { .. }
            | Error::Io { .. }
            | Error::External(_) => "InternalError",
        }
    }

    /// The HTTP status S3 answers this failure with.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::NoSuchBucket { .. } | Error::NoSuchKey { .. } | Error::NoSuchUpload { .. } => {
                404
            }
            Error::BucketNotEmpty { .. } => 409,
            Error::InvalidRange { .. } => 416,
            Error::PreconditionFailed { .. } => 412,
            Error::ChunkSignatureMismatch => 403,
            Error::AccessDenied => 403,
            Error::MethodNotAllowed | Error::ReadOnly => 405,
            Error::InvalidPartNumber => 416,
            Error::NotImplemented { .. } => 501,
            Error::InvalidBucketName { .. }
            | Error::KeyTooLong { .. }
            | Error::InvalidPart { .. }
            | Error::InvalidPartOrder
            | Error::EntityTooSmall { .. }
            | Error::InvalidDigest
            | Error::Md5Mismatch
            | Error::ChecksumMismatch { .. }
            | Error::InvalidChecksum { .. }
            | Error::MetadataTooLarge { .. }
            | Error::ObjectTooLarge { .. }
            | Error::MalformedChunkedBody { .. }
            | Error::IncompleteBody { .. }
            | Error::MalformedXml { .. }
            | Error::InvalidArgument { .. } => 400,
            Error::Config { .. }
            | Error::Corrupt { .. }
            | Error::Io { .. }
            | Error::External(_) => 500,
        }
    }

    /// The message shown to S3 clients. Internal failures get a generic message: their detail
    /// (paths, upstream errors) is for the operator's log, not the client.
    pub fn s3_message(&self) -> String {
        match self {
            Error::NoSuchBucket { .. } => "The specified bucket does not exist".into(),
            Error::NoSuchKey { .. } => "The specified key does not exist.".into(),
            Error::BucketNotEmpty { .. } => "The bucket you tried to delete is not empty".into(),
            Error::NoSuchUpload { .. } => "The specified upload does not exist. The upload ID \
                may be invalid, or the upload may have been aborted or completed."
                .into(),
            Error::InvalidPart { .. } => "One or more of the specified parts could not be found. \
                The part may not have been uploaded, or the specified entity tag may not match \
                the part's entity tag."
                .into(),
            Error::InvalidPartOrder => "The list of parts was not in ascending order. The parts \
                list must be specified in order by part number."
                .into(),
            Error::EntityTooSmall { .. } => {
                "Your proposed upload is smaller than the minimum allowed object size.".into()
            }
            Error::InvalidBucketName { reason, .. } => {
                format!("The specified bucket is not valid: {reason}")
            }
            Error::KeyTooLong { .. } => "Your key is too long".into(),
            Error::InvalidRange { .. } => "The requested range is not satisfiable".into(),
            Error::PreconditionFailed { .. } => {
                "At least one of the pre-conditions you specified did not hold".into()
            }
            Error::InvalidDigest => "The Content-MD5 you specified was invalid.".into(),
            Error::Md5Mismatch => {
                "The Content-MD5 you specified did not match what we received.".into()
            }
            Error::ChecksumMismatch { algorithm } => format!(
                "The {} you specified did not match the calculated checksum.",
                algorithm.as_str()
            ),
            Error::MetadataTooLarge { limit, .. } => {
                format!(
                    "Your metadata headers exceed the maximum allowed metadata size ({limit} bytes)"
                )
            }
            Error::ObjectTooLarge { .. } => {
                "Your proposed upload exceeds the maximum allowed size".into()
            }
            Error::ChunkSignatureMismatch => "The request signature we calculated does not match \
                the signature you provided. Check your key and signing method."
                .into(),
            Error::NotImplemented { what } => format!(
                "A header or parameter you provided implies functionality that is not \
                 implemented: {what}"
            ),
            Error::AccessDenied => "Access Denied".into(),
            Error::MethodNotAllowed => {
                "The specified method is not allowed against this resource.".into()
            }
            Error::InvalidPartNumber => "The requested partnumber is not satisfiable".into(),
            Error::ReadOnly => "The specified method is not allowed against this resource: this \
                server's artifact store is an external S3-compatible store opened read-only."
                .into(),
            Error::InvalidChecksum { reason }
            | Error::MalformedChunkedBody { reason }
            | Error::IncompleteBody { reason }
            | Error::MalformedXml { reason }
            | Error::InvalidArgument { reason, .. } => reason.clone(),
            Error::Config { .. }
            | Error::Corrupt { .. }
            | Error::Io { .. }
            | Error::External(_) => "We encountered an internal error. Please try again.".into(),
        }
    }

    /// True for failures of the server rather than of the request; log these with detail.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Error::Config { .. } | Error::Corrupt { .. } | Error::Io { .. } | Error::External(_)
        )
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Error::External(Box::new(e))
    }
}
