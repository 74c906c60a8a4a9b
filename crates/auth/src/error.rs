//! Authentication failures and how AWS reports each of them on the wire.

use crate::S3_SERVICE;

/// Why a request could not be authenticated (or, for [`crate::sign`], signed).
///
/// Variants carry the service named in the credential scope whenever it was parsed, because the
/// wire code depends on it: the AgentCore planes (`bedrock-agentcore`) report JSON-protocol
/// exceptions such as `InvalidSignatureException`, while the S3-compatible artifact store (`s3`)
/// reports S3 codes such as `SignatureDoesNotMatch`. [`Error::aws_code`] picks the right one;
/// [`Error::aws_code_for`] lets the caller choose when no scope was parsed (for example a request
/// without any authentication, routed by path).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither an `Authorization` header nor presigned query parameters were present.
    #[error("request carries no authentication")]
    MissingAuthentication,

    /// The `Authorization` header is malformed or lacks a required part.
    #[error("malformed authorization header: {reason}")]
    MalformedAuthorization {
        /// Service from the credential scope, when it could be parsed.
        service: Option<String>,
        /// What is wrong, for the client.
        reason: String,
    },

    /// The presigned query parameters (`X-Amz-*`) are malformed or incomplete.
    #[error("malformed presigned query: {reason}")]
    MalformedPresignedQuery {
        /// Service from the credential scope, when it could be parsed.
        service: Option<String>,
        /// What is wrong, for the client.
        reason: String,
    },

    /// The `Authorization` scheme or `X-Amz-Algorithm` is not `AWS4-HMAC-SHA256`.
    #[error("unsupported authorization algorithm {algorithm:?}")]
    UnsupportedAlgorithm {
        /// The scheme as sent (for example `Bearer` or `AWS4-ECDSA-P256-SHA256`).
        algorithm: String,
    },

    /// `x-amz-date` (or `X-Amz-Date`) is missing or not `YYYYMMDDTHHMMSSZ`.
    #[error("missing or invalid request date: {reason}")]
    InvalidDate {
        /// Service from the credential scope, when it could be parsed.
        service: Option<String>,
        /// What is wrong, for the client.
        reason: String,
    },

    /// The credential scope's date is not the day of the request timestamp.
    #[error("credential scope date {scope_date} does not match request date {amz_date}")]
    ScopeDateMismatch {
        /// Service from the credential scope.
        service: String,
        /// `YYYYMMDD` from the credential scope.
        scope_date: String,
        /// The full `x-amz-date` value.
        amz_date: String,
    },

    /// The request time is more than 15 minutes away from the server's clock.
    #[error("request time {amz_date} is more than 15 minutes from server time {server_time}")]
    RequestTimeSkewed {
        /// Service from the credential scope.
        service: String,
        /// The request's `x-amz-date` value.
        amz_date: String,
        /// The server's time, formatted like `x-amz-date`.
        server_time: String,
        /// True when the request is dated in the future, false when it is too old.
        future: bool,
    },

    /// A presigned request's `X-Amz-Expires` window has passed.
    #[error("presigned request expired at {expired_at}, server time {server_time}")]
    PresignedExpired {
        /// Service from the credential scope.
        service: String,
        /// When the request stopped being valid, formatted like `x-amz-date`.
        expired_at: String,
        /// The server's time, formatted like `x-amz-date`.
        server_time: String,
    },

    /// No principal is known for the access key id.
    #[error("unknown access key id {access_key_id}")]
    UnknownAccessKey {
        /// Service from the credential scope.
        service: String,
        /// The access key id from the credential scope.
        access_key_id: String,
    },

    /// The signature does not match the one computed with the principal's secret.
    #[error("signature does not match")]
    SignatureMismatch {
        /// Service from the credential scope.
        service: String,
    },

    /// An S3 request without the mandatory `x-amz-content-sha256` header.
    #[error("missing x-amz-content-sha256 header")]
    MissingContentSha256 {
        /// Service from the credential scope.
        service: String,
    },

    /// `x-amz-content-sha256` is neither a sha256 hex digest nor a known sentinel value.
    #[error("invalid x-amz-content-sha256 header {value:?}")]
    InvalidContentSha256 {
        /// Service from the credential scope.
        service: String,
        /// The header value as sent.
        value: String,
    },

    /// `x-amz-content-sha256` names a digest the body does not have.
    #[error("x-amz-content-sha256 does not match the request body")]
    ContentSha256Mismatch {
        /// Service from the credential scope.
        service: String,
    },

    /// [`crate::sign`] could not sign the request (no host, a header value that is not text...).
    #[error("cannot sign request: {reason}")]
    Signing {
        /// What is wrong with the request.
        reason: String,
    },
}

impl Error {
    /// The service named in the request's credential scope, when it was parsed.
    pub fn service(&self) -> Option<&str> {
        match self {
            Error::MissingAuthentication
            | Error::UnsupportedAlgorithm { .. }
            | Error::Signing { .. } => None,
            Error::MalformedAuthorization { service, .. }
            | Error::MalformedPresignedQuery { service, .. }
            | Error::InvalidDate { service, .. } => service.as_deref(),
            Error::ScopeDateMismatch { service, .. }
            | Error::RequestTimeSkewed { service, .. }
            | Error::PresignedExpired { service, .. }
            | Error::UnknownAccessKey { service, .. }
            | Error::SignatureMismatch { service }
            | Error::MissingContentSha256 { service }
            | Error::InvalidContentSha256 { service, .. }
            | Error::ContentSha256Mismatch { service } => Some(service),
        }
    }

    /// The AWS error code for the service in the credential scope (AgentCore codes when unknown).
    pub fn aws_code(&self) -> &'static str {
        self.aws_code_for(self.service().unwrap_or_default())
    }

    /// The HTTP status for the service in the credential scope (AgentCore statuses when unknown).
    pub fn http_status(&self) -> u16 {
        self.http_status_for(self.service().unwrap_or_default())
    }

    /// The client-facing message for the service in the credential scope, worded as AWS words it.
    pub fn aws_message(&self) -> String {
        self.aws_message_for(self.service().unwrap_or_default())
    }

    /// The AWS error code as `service` reports it (`"s3"` gives S3 codes, anything else the
    /// AgentCore JSON-protocol codes).
    pub fn aws_code_for(&self, service: &str) -> &'static str {
        self.wire(service == S3_SERVICE).0
    }

    /// The HTTP status as `service` reports it; see [`Error::aws_code_for`].
    pub fn http_status_for(&self, service: &str) -> u16 {
        self.wire(service == S3_SERVICE).1
    }

    /// The client-facing message as `service` words it; see [`Error::aws_code_for`].
    pub fn aws_message_for(&self, service: &str) -> String {
        let s3 = service == S3_SERVICE;
        match self {
            Error::MissingAuthentication if s3 => "Access Denied".into(),
            Error::MissingAuthentication => "Missing Authentication Token".into(),
            Error::MalformedAuthorization { reason, .. } if s3 => {
                format!("The authorization header is malformed; {reason}")
            }
            Error::MalformedPresignedQuery { reason, .. } if s3 => {
                format!("Query-string authentication is malformed; {reason}")
            }
            Error::MalformedAuthorization { reason, .. }
            | Error::MalformedPresignedQuery { reason, .. } => reason.clone(),
            Error::UnsupportedAlgorithm { .. } if s3 => "Unsupported Authorization Type".into(),
            Error::UnsupportedAlgorithm { algorithm } => {
                format!("Unsupported AWS 'algorithm': '{algorithm}'")
            }
            Error::InvalidDate { .. } if s3 => {
                "AWS authentication requires a valid Date or x-amz-date header".into()
            }
            Error::InvalidDate { .. } => "Authorization header requires existence of either a \
                'X-Amz-Date' or a 'Date' header."
                .into(),
            Error::ScopeDateMismatch { .. } if s3 => {
                "The authorization header is malformed; Invalid credential date. Date is not \
                 the same as X-Amz-Date."
                    .into()
            }
            Error::ScopeDateMismatch {
                scope_date,
                amz_date,
                ..
            } => format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
                 from HTTP: '{scope_date}' != '{}', from '{amz_date}'.",
                amz_date.get(..8).unwrap_or(amz_date)
            ),
            Error::RequestTimeSkewed { .. } if s3 => {
                "The difference between the request time and the current time is too large.".into()
            }
            Error::RequestTimeSkewed {
                amz_date,
                server_time,
                future,
                ..
            } => skew_message(amz_date, server_time, *future),
            Error::PresignedExpired { .. } => "Request has expired".into(),
            Error::UnknownAccessKey { .. } if s3 => {
                "The AWS Access Key Id you provided does not exist in our records.".into()
            }
            Error::UnknownAccessKey { .. } => {
                "The security token included in the request is invalid.".into()
            }
            Error::SignatureMismatch { .. } if s3 => {
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method."
                    .into()
            }
            Error::SignatureMismatch { .. } => SIGNATURE_MISMATCH.into(),
            Error::MissingContentSha256 { .. } => {
                "Missing required header for this request: x-amz-content-sha256".into()
            }
            Error::InvalidContentSha256 { .. } if s3 => "x-amz-content-sha256 must be \
                UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
                STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, \
                or a valid sha256 value."
                .into(),
            Error::ContentSha256Mismatch { .. } if s3 => {
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .into()
            }
            // Outside S3 the body hash is part of the signature, so a wrong one is a bad signature.
            Error::InvalidContentSha256 { .. } | Error::ContentSha256Mismatch { .. } => {
                SIGNATURE_MISMATCH.into()
            }
            Error::Signing { .. } => "The request could not be signed.".into(),
        }
    }

    /// (code, status) for either the S3 protocol or the AgentCore JSON protocol.
    fn wire(&self, s3: bool) -> (&'static str, u16) {
        match (self, s3) {
            (Error::MissingAuthentication, true) => ("AccessDenied", 403),
            (Error::MissingAuthentication, false) => ("MissingAuthenticationTokenException", 403),
            (Error::MalformedAuthorization { .. }, true) => ("AuthorizationHeaderMalformed", 400),
            (Error::MalformedPresignedQuery { .. }, true) => {
                ("AuthorizationQueryParametersError", 400)
            }
            (
                Error::MalformedAuthorization { .. } | Error::MalformedPresignedQuery { .. },
                false,
            ) => ("IncompleteSignatureException", 403),
            (Error::UnsupportedAlgorithm { .. }, true) => ("InvalidArgument", 400),
            (Error::UnsupportedAlgorithm { .. }, false) => ("IncompleteSignatureException", 403),
            (Error::InvalidDate { .. }, true) => ("AccessDenied", 403),
            (Error::InvalidDate { .. }, false) => ("IncompleteSignatureException", 403),
            (Error::ScopeDateMismatch { .. }, true) => ("AuthorizationHeaderMalformed", 400),
            (Error::ScopeDateMismatch { .. }, false) => ("InvalidSignatureException", 403),
            (Error::RequestTimeSkewed { .. }, true) => ("RequestTimeTooSkewed", 403),
            (Error::RequestTimeSkewed { .. }, false) => ("InvalidSignatureException", 403),
            (Error::PresignedExpired { .. }, true) => ("AccessDenied", 403),
            (Error::PresignedExpired { .. }, false) => ("InvalidSignatureException", 403),
            (Error::UnknownAccessKey { .. }, true) => ("InvalidAccessKeyId", 403),
            (Error::UnknownAccessKey { .. }, false) => ("UnrecognizedClientException", 403),
            (Error::SignatureMismatch { .. }, true) => ("SignatureDoesNotMatch", 403),
            (Error::SignatureMismatch { .. }, false) => ("InvalidSignatureException", 403),
            (Error::MissingContentSha256 { .. }, true) => ("InvalidRequest", 400),
            (Error::MissingContentSha256 { .. }, false) => ("IncompleteSignatureException", 403),
            (Error::InvalidContentSha256 { .. }, true) => ("InvalidArgument", 400),
            (Error::InvalidContentSha256 { .. }, false) => ("InvalidSignatureException", 403),
            (Error::ContentSha256Mismatch { .. }, true) => ("XAmzContentSHA256Mismatch", 400),
            (Error::ContentSha256Mismatch { .. }, false) => ("InvalidSignatureException", 403),
            (Error::Signing { .. }, _) => ("InternalFailure", 500),
        }
    }
}

/// The AgentCore wording of a signature mismatch.
const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the \
    signature you provided. Check your AWS Secret Access Key and signing method. Consult the \
    service documentation for details.";

fn skew_message(amz_date: &str, server_time: &str, future: bool) -> String {
    // AWS spells out the bound it compared against: now - 15 min (expired) or now + 15 min.
    let bound = crate::time::parse_amz_date(server_time)
        .ok()
        .and_then(|now| {
            if future {
                now.checked_add(crate::MAX_CLOCK_SKEW)
            } else {
                now.checked_sub(crate::MAX_CLOCK_SKEW)
            }
        })
        .map(crate::time::format_amz_date)
        .unwrap_or_default();
    if future {
        format!(
            "Signature not yet current: {amz_date} is still later than {bound} \
             ({server_time} + 15 min.)"
        )
    } else {
        format!(
            "Signature expired: {amz_date} is now earlier than {bound} ({server_time} - 15 min.)"
        )
    }
}
