//! Value types shared by every Berth crate: identifiers, ARNs, versions and timestamps.
//!
//! Nothing here does IO. Identifiers are formed exactly the way AWS forms them so that
//! clients which parse ARNs (boto3, the starter toolkit) accept Berth's.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch; the one time representation the store uses.
pub type EpochMillis = i64;

/// The current wall-clock time in epoch milliseconds.
pub fn now_millis() -> EpochMillis {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A duration in milliseconds, saturating: how long leases and windows are in the store's unit.
pub fn duration_millis(d: std::time::Duration) -> EpochMillis {
    EpochMillis::try_from(d.as_millis()).unwrap_or(EpochMillis::MAX)
}

/// Epoch milliseconds as the fractional epoch seconds restJson1 puts in a body for a timestamp
/// member whose model gives no `timestampFormat` (every Memory timestamp): a JSON number, which
/// strict SDKs (the AWS SDK for JavaScript v3) require.
pub fn epoch_seconds(ms: EpochMillis) -> f64 {
    ms as f64 / 1000.0
}

/// Formats epoch milliseconds as the ISO 8601 timestamp AWS puts on the wire for members modelled
/// with `timestampFormat: iso8601`
/// (`2025-01-02T03:04:05.678Z`).
pub fn iso8601(ms: EpochMillis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

/// Where a Berth server claims to live: the region and account that appear in its ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// AWS region name reported in ARNs, such as `us-east-1`.
    pub region: String,
    /// Twelve-digit account id reported in ARNs.
    pub account_id: String,
}

impl Partition {
    /// ARN of a runtime: `arn:aws:bedrock-agentcore:{region}:{account}:runtime/{id}`.
    pub fn runtime_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock-agentcore:{}:{}:runtime/{}",
            self.region, self.account_id, id
        )
    }

    /// ARN of a runtime endpoint: `...:runtime/{id}/runtime-endpoint/{name}`.
    pub fn endpoint_arn(&self, runtime_id: &str, name: &str) -> String {
        format!("{}/runtime-endpoint/{}", self.runtime_arn(runtime_id), name)
    }

    /// ARN of the workload identity AgentCore attaches to every runtime.
    pub fn workload_identity_arn(&self, runtime_name: &str) -> String {
        format!(
            "arn:aws:bedrock-agentcore:{}:{}:workload-identity-directory/default/workload-identity/{}",
            self.region, self.account_id, runtime_name
        )
    }
}

/// A parsed Berth/AgentCore resource ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceArn {
    /// `...:runtime/{id}`
    Runtime { runtime_id: String },
    /// `...:runtime/{id}/runtime-endpoint/{name}`
    Endpoint { runtime_id: String, name: String },
    /// `...:memory/{id}`
    Memory { memory_id: String },
}

/// Why an ARN could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArnError {
    /// Not of the form `arn:aws:bedrock-agentcore:{region}:{account}:{resource}`.
    #[error("not a bedrock-agentcore arn")]
    Malformed,
    /// The region or account is not this server's.
    #[error("arn belongs to another region or account")]
    ForeignPartition,
    /// A well-formed ARN naming a resource type Berth does not have.
    #[error("unsupported resource type in arn")]
    UnsupportedResource,
}

impl ResourceArn {
    /// Parses an ARN issued by the server living in `partition`.
    pub fn parse(arn: &str, partition: &Partition) -> Result<Self, ArnError> {
        let mut parts = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(_aws),
            Some("bedrock-agentcore"),
            Some(region),
            Some(account),
            Some(res),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(ArnError::Malformed);
        };
        if region != partition.region || account != partition.account_id {
            return Err(ArnError::ForeignPartition);
        }
        let segs: Vec<&str> = res.split('/').collect();
        match segs.as_slice() {
            ["runtime", id] if !id.is_empty() => Ok(Self::Runtime {
                runtime_id: (*id).to_owned(),
            }),
            ["runtime", id, "runtime-endpoint", name] if !id.is_empty() && !name.is_empty() => {
                Ok(Self::Endpoint {
                    runtime_id: (*id).to_owned(),
                    name: (*name).to_owned(),
                })
            }
            ["memory", id] if !id.is_empty() => Ok(Self::Memory {
                memory_id: (*id).to_owned(),
            }),
            _ => Err(ArnError::UnsupportedResource),
        }
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `n` random ASCII alphanumerics.
pub fn random_alnum(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
        .collect()
}

/// A new runtime id, `<name>-<10 alphanumerics>` as AWS forms it.
pub fn new_runtime_id(name: &str) -> String {
    format!("{name}-{}", random_alnum(10))
}

/// A request id in the UUID shape AWS uses for `x-amzn-RequestId` (version 4: random, with the
/// version and variant bits set). Written digit by digit: it is made for every request.
pub fn new_request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b: [u8; 16] = rand::thread_rng().r#gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// An immutable runtime version number ("1", "2", ... on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version(pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Version {
    /// Parses the wire form: `[1-9][0-9]{0,4}`.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 5
            && s.bytes().all(|b| b.is_ascii_digit())
            && !s.starts_with('0');
        if ok {
            s.parse().ok().map(Version)
        } else {
            None
        }
    }
}

/// Lifecycle state of a runtime version or an endpoint, as AgentCore names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Being built or provisioned.
    Creating,
    /// The build failed; `failureReason` says why.
    CreateFailed,
    /// A change is being applied.
    Updating,
    /// The change failed; `failureReason` says why.
    UpdateFailed,
    /// Serving.
    Ready,
    /// Being torn down.
    Deleting,
    /// Teardown failed.
    DeleteFailed,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "CREATING",
            Status::CreateFailed => "CREATE_FAILED",
            Status::Updating => "UPDATING",
            Status::UpdateFailed => "UPDATE_FAILED",
            Status::Ready => "READY",
            Status::Deleting => "DELETING",
            Status::DeleteFailed => "DELETE_FAILED",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "CREATING" => Status::Creating,
            "CREATE_FAILED" => Status::CreateFailed,
            "UPDATING" => Status::Updating,
            "UPDATE_FAILED" => Status::UpdateFailed,
            "READY" => Status::Ready,
            "DELETING" => Status::Deleting,
            "DELETE_FAILED" => Status::DeleteFailed,
            _ => return None,
        })
    }

    /// True while a build or teardown is in flight.
    pub fn is_transitional(self) -> bool {
        matches!(self, Status::Creating | Status::Updating | Status::Deleting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_random_version_4_uuids() {
        let a = new_request_id();
        assert_ne!(a, new_request_id());
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(
            a.bytes()
                .all(|c| c == b'-' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert!(groups[2].starts_with('4'), "version 4: {a}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "RFC 4122 variant: {a}"
        );
    }

    fn p() -> Partition {
        Partition {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        }
    }

    #[test]
    fn runtime_id_shape() {
        let id = new_runtime_id("my_agent");
        let (name, suffix) = id.rsplit_once('-').unwrap();
        assert_eq!(name, "my_agent");
        assert_eq!(suffix.len(), 10);
        assert!(suffix.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn arns_round_trip() {
        let p = p();
        let a = p.runtime_arn("a-0123456789");
        assert_eq!(
            a,
            "arn:aws:bedrock-agentcore:us-east-1:000000000000:runtime/a-0123456789"
        );
        assert_eq!(
            ResourceArn::parse(&a, &p),
            Ok(ResourceArn::Runtime {
                runtime_id: "a-0123456789".into()
            })
        );
        let e = p.endpoint_arn("a-0123456789", "prod");
        assert_eq!(
            ResourceArn::parse(&e, &p),
            Ok(ResourceArn::Endpoint {
                runtime_id: "a-0123456789".into(),
                name: "prod".into()
            })
        );
        let other = Partition {
            region: "eu-west-1".into(),
            ..p.clone()
        };
        assert_eq!(
            ResourceArn::parse(&a, &other),
            Err(ArnError::ForeignPartition)
        );
        assert_eq!(
            ResourceArn::parse("arn:aws:s3:::b", &p),
            Err(ArnError::Malformed)
        );
    }

    #[test]
    fn versions_parse_like_the_model() {
        assert_eq!(Version::parse("1"), Some(Version(1)));
        assert_eq!(Version::parse("99999"), Some(Version(99999)));
        for bad in ["", "0", "01", "100000", "1a", "-1"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso8601_has_millis() {
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}

pub mod records;
