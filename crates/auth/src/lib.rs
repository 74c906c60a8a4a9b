//! AWS Signature Version 4 for Berth: verification of incoming requests (server side) and
//! signing of outgoing ones (for the `berth` CLI, and for calls to AWS such as Bedrock).
//!
//! Berth answers boto3's `bedrock-agentcore-control` and `bedrock-agentcore` clients (both sign
//! with the service name `bedrock-agentcore`) and an S3-compatible artifact store (service `s3`)
//! on one listener. [`verify`] checks a request against the secret a [`KeyLookup`] returns for its
//! access key id and reports the credential scope's service, which the server routes on.
//!
//! The signature itself is recomputed with the `aws-sigv4` crate, AWS's own signer, fed only the
//! headers the client listed in `SignedHeaders`; this crate supplies the parsing, the per-service
//! rules (S3 single-encodes paths and takes the payload hash from `x-amz-content-sha256`), the
//! clock-skew and expiry checks, and AWS's error codes. `tests/fixtures/botocore_signed.json`
//! holds requests signed by real botocore clients, replayed by the tests.
//!
//! This crate does no IO and knows nothing of axum: it works on `http` types.
//!
//! Not covered: SigV4A (`AWS4-ECDSA-P256-SHA256`), the `Date` header in place of `x-amz-date`,
//! and the per-chunk signatures of `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` bodies (the request
//! signature is checked; see [`Payload::Streaming`]).

mod canonical;
mod credentials;
mod direct;
mod error;
mod keyring;
mod parse;
mod sign;
mod time;
mod verify;

pub use credentials::{ACCESS_KEY_ID_PREFIX, Credentials, KeyLookup, Principal, Scope, StaticKeys};
pub use error::Error;
pub use keyring::{ACCESS_KEY_PREFIX, KeyRing, RUNTIME_KEY_PREFIX};
pub use parse::{AuthHeader, parse_authorization};
pub use sign::{sign, sign_with_session_token};
pub use verify::{MAX_CLOCK_SKEW, Payload, Prechecked, Verified, precheck, verify};

/// The credential-scope service of the S3-compatible artifact store. Requests scoped to it follow
/// S3's signing rules and get S3 error codes.
pub const S3_SERVICE: &str = "s3";

/// The credential-scope service both AgentCore planes sign for.
pub const AGENTCORE_SERVICE: &str = "bedrock-agentcore";
