//! The registry's errors, one variant per Distribution API error code (plus storage failures).

/// Why a registry operation failed. [`Error::code`] and [`Error::status`] give the Distribution
/// API's error code and HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The blob is not in the repository.
    #[error("blob unknown to registry")]
    BlobUnknown,
    /// The upload cannot take this request.
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// A chunk that does not start where the upload ends (answered 416 with the upload's range).
    #[error("the chunk does not continue the upload, which holds {size} bytes")]
    RangeInvalid {
        /// Bytes the upload holds.
        size: u64,
    },
    /// No such upload in this repository.
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    /// A digest that does not parse, or does not match the content.
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    /// A manifest names a blob or child manifest the repository does not hold.
    #[error("manifest references a blob or manifest unknown to the repository: {0}")]
    ManifestBlobUnknown(String),
    /// A manifest that is not valid JSON of a supported media type.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// No such manifest (tag or digest) in the repository.
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    /// A repository name outside the spec's grammar.
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    /// The repository holds nothing.
    #[error("repository name not known to registry")]
    NameUnknown,
    /// A length that does not match the content.
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    /// A blob over the registry's size cap (answered 413).
    #[error("the blob exceeds the registry's {limit}-byte limit")]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// No valid credentials.
    #[error("authentication required")]
    Unauthorized,
    /// The credentials do not allow the operation.
    #[error("requested access to the resource is denied: {0}")]
    Denied(String),
    /// An operation this registry does not implement.
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    /// Too many requests in flight.
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    /// The request body failed or stalled while it was streamed to disk.
    #[error("the request body could not be read: {0}")]
    Body(String),
    /// The storage directory failed.
    #[error("registry storage: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The Distribution API error code (`UNKNOWN` for storage failures).
    pub fn code(&self) -> &'static str {
        match self {
            Error::BlobUnknown => "BLOB_UNKNOWN",
            Error::BlobUploadInvalid(_) | Error::RangeInvalid { .. } | Error::Body(_) => {
                "BLOB_UPLOAD_INVALID"
            }
            Error::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Error::DigestInvalid(_) => "DIGEST_INVALID",
            Error::ManifestBlobUnknown(_) => "MANIFEST_BLOB_UNKNOWN",
            Error::ManifestInvalid(_) => "MANIFEST_INVALID",
            Error::ManifestUnknown => "MANIFEST_UNKNOWN",
            Error::NameInvalid(_) => "NAME_INVALID",
            Error::NameUnknown => "NAME_UNKNOWN",
            Error::SizeInvalid(_) | Error::TooLarge { .. } => "SIZE_INVALID",
            Error::Unauthorized => "UNAUTHORIZED",
            Error::Denied(_) => "DENIED",
            Error::Unsupported(_) => "UNSUPPORTED",
            Error::TooManyRequests(_) => "TOO_MANY_REQUESTS",
            Error::Io(_) => "UNKNOWN",
        }
    }

    /// The HTTP status the spec gives the error.
    pub fn status(&self) -> u16 {
        match self {
            Error::BlobUnknown
            | Error::BlobUploadUnknown
            | Error::ManifestUnknown
            | Error::NameUnknown => 404,
            Error::RangeInvalid { .. } => 416,
            Error::TooLarge { .. } => 413,
            Error::Unauthorized => 401,
            Error::Denied(_) => 403,
            Error::Unsupported(_) => 405,
            Error::TooManyRequests(_) => 429,
            Error::Io(_) => 500,
            Error::BlobUploadInvalid(_)
            | Error::Body(_)
            | Error::DigestInvalid(_)
            | Error::ManifestBlobUnknown(_)
            | Error::ManifestInvalid(_)
            | Error::NameInvalid(_)
            | Error::SizeInvalid(_) => 400,
        }
    }
}
