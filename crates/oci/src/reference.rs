//! Image references and where they are pulled from.
//!
//! A [`Reference`] is what a user writes (`host[:port]/repo/path:tag`, `repo@sha256:...`), read with
//! the Docker defaults (`docker.io`, `library/`, `latest`). [`Registries`] is the operator's
//! configuration: which URL serves a host, with which credentials, and whether plain HTTP is allowed.
//! An AgentCore `containerUri` names an ECR host (`<account>.dkr.ecr.<region>.amazonaws.com`); Berth
//! has no ECR, so such hosts resolve to Berth's built-in registry unless the operator maps the host
//! elsewhere.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The registry a reference without a host names.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a reference without a tag or digest names.
pub const DEFAULT_TAG: &str = "latest";

/// Why a reference or a registry configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not an image reference.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The text is not a `sha256:<64 lowercase hex>` digest.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    /// A registry URL in the configuration is unusable.
    #[error("invalid registry url {url:?} for {host}: {reason}")]
    InvalidUrl {
        /// The host whose URL it is (`builtin` for the built-in registry).
        host: String,
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An ECR-style host was named but no built-in registry is configured and the host is not mapped.
    #[error(
        "{host} is an ECR registry host; Berth serves it from its built-in registry, which is not configured"
    )]
    NoBuiltinRegistry {
        /// The ECR-style host.
        host: String,
    },
}

/// A content digest: `sha256:<64 lowercase hex digits>`, the only algorithm Berth accepts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<hex>`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| Error::InvalidDigest(text.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::InvalidDigest(text.to_string()));
        }
        Ok(Self(text.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::from_sha256(sha2::Sha256::digest(bytes).into())
    }

    /// The digest whose SHA-256 is `hash`.
    pub fn from_sha256(hash: [u8; 32]) -> Self {
        Self(format!("sha256:{}", hex::encode(hash)))
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part, which names files in the cache.
    pub fn hex(&self) -> &str {
        // The constructor guarantees the prefix.
        &self.0["sha256:".len()..]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

/// An image reference: registry host, repository, and a tag and/or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `[host[:port]/]repo[/path...][:tag][@sha256:...]` with the Docker defaults: no host
    /// means `docker.io`, a one-component repository on `docker.io` gets `library/`, and neither tag
    /// nor digest means `latest`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.len() > 4096 {
            return Err(bad("longer than 4096 characters"));
        }
        if text.contains("://") {
            return Err(bad("a reference has no scheme (write host/repo:tag)"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(Digest::parse(digest)?)),
            None => (text, None),
        };
        // The tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(tag) = &tag
            && !valid_tag(tag)
        {
            return Err(bad(
                "the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -",
            ));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if !valid_host(&registry) {
            return Err(bad("the registry host is not host[:port]"));
        }
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(bad(
                "the repository must be lowercase path components of [a-z0-9] joined by . _ __ or -",
            ));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host (`host[:port]`) as written, or `docker.io`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`library/alpine`, `team/agent`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference is pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same image pinned to `digest` (the tag is kept for display).
    pub fn pinned(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return false;
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_path_component(component: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*
    let bytes = component.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !bytes.last().copied().is_some_and(is_alnum) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Whether `host` (without port) is an ECR registry host:
/// `<12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
pub fn is_ecr_host(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let labels: Vec<&str> = name.split('.').collect();
    let tail_ok = match labels.len() {
        6 => labels[4..] == ["amazonaws", "com"],
        7 => labels[4..] == ["amazonaws", "com", "cn"],
        _ => false,
    };
    tail_ok
        && labels[0].len() == 12
        && labels[0].bytes().all(|b| b.is_ascii_digit())
        && labels[1] == "dkr"
        && (labels[2] == "ecr" || labels[2] == "ecr-fips")
        && !labels[3].is_empty()
        && labels[3]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Credentials for a registry.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Credentials {
    /// No credentials (registries that answer with a bearer challenge still hand out anonymous
    /// tokens).
    #[default]
    Anonymous,
    /// HTTP basic credentials, also sent to a bearer challenge's token service.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token sent as is.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach logs.
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer { .. } => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// How one registry host is reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The base URL that serves this host (`https://mirror.example:5000`); `None` means the host
    /// itself over HTTPS (plain HTTP for a loopback host).
    #[serde(default)]
    pub url: Option<String>,
    /// Credentials sent to it.
    #[serde(default)]
    pub credentials: Credentials,
    /// Whether plain HTTP is allowed to a non-loopback address (loopback always may).
    #[serde(default)]
    pub allow_http: bool,
}

/// The operator's registry configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    /// Berth's built-in registry (`url` is its base URL, e.g. `http://127.0.0.1:8080`), which serves
    /// ECR-style hosts that are not in `hosts`.
    #[serde(default)]
    pub builtin: Option<HostConfig>,
    /// Per registry host (`host[:port]` as written in references).
    #[serde(default)]
    pub hosts: BTreeMap<String, HostConfig>,
}

/// The transport of a resolved [`Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

/// Where a reference is pulled from, after the operator's mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    /// `host[:port]` to connect to.
    pub authority: String,
    /// The repository path on that registry.
    pub repository: String,
    /// Credentials to send.
    pub credentials: Credentials,
}

impl Registries {
    /// Where `reference` is pulled from: the host's mapping if configured, else the built-in
    /// registry for an ECR-style host, else the host itself (HTTPS, or HTTP for loopback).
    pub fn resolve(&self, reference: &Reference) -> Result<Source, Error> {
        let host = reference.registry();
        let (config, label) = match self.hosts.get(host) {
            Some(config) => (config.clone(), host.to_string()),
            None if is_ecr_host(host) => match &self.builtin {
                Some(builtin) if builtin.url.is_some() => (builtin.clone(), "builtin".to_string()),
                _ => {
                    return Err(Error::NoBuiltinRegistry {
                        host: host.to_string(),
                    });
                }
            },
            None => (HostConfig::default(), host.to_string()),
        };
        let (scheme, authority) = match &config.url {
            Some(url) => parse_base_url(&label, url)?,
            None if is_loopback(host) => (Scheme::Http, registry_authority(host)),
            None => (Scheme::Https, registry_authority(host)),
        };
        if scheme == Scheme::Http && !config.allow_http && !is_loopback(&authority) {
            return Err(Error::InvalidUrl {
                host: label,
                url: config.url.unwrap_or_default(),
                reason: "plain http to a non-loopback address needs allow_http".to_string(),
            });
        }
        Ok(Source {
            scheme,
            authority,
            repository: reference.repository().to_string(),
            credentials: config.credentials,
        })
    }
}

/// Docker Hub's API is served from `registry-1.docker.io`.
fn registry_authority(host: &str) -> String {
    if host == DEFAULT_REGISTRY {
        "registry-1.docker.io".to_string()
    } else {
        host.to_string()
    }
}

fn parse_base_url(label: &str, url: &str) -> Result<(Scheme, String), Error> {
    let bad = |reason: &str| Error::InvalidUrl {
        host: label.to_string(),
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(bad("expected http://host[:port] or https://host[:port]"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('?') || authority.contains('@') {
        return Err(bad(
            "the Distribution API lives at /v2/ of a host: give no path, query or user info",
        ));
    }
    let host_ok = if let Some(inner) = authority.strip_prefix('[') {
        // [v6]:port
        inner.split_once(']').is_some_and(|(ip, port)| {
            ip.parse::<std::net::Ipv6Addr>().is_ok()
                && (port.is_empty()
                    || port
                        .strip_prefix(':')
                        .is_some_and(|p| p.parse::<u16>().is_ok()))
        })
    } else {
        valid_host(authority)
    };
    if !host_ok {
        return Err(bad("the host is not host[:port]"));
    }
    Ok((scheme, authority.to_string()))
}

/// Whether `authority` (`host[:port]`, IPv6 in brackets) names a loopback address.
fn is_loopback(authority: &str) -> bool {
    let host = if let Some(inner) = authority.strip_prefix('[') {
        inner.split_once(']').map_or(inner, |(ip, _)| ip)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_defaults() {
        let a = r("alpine");
        assert_eq!(a.registry(), "docker.io");
        assert_eq!(a.repository(), "library/alpine");
        assert_eq!(a.tag(), Some("latest"));
        assert_eq!(a.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(r("team/agent:v1").repository(), "team/agent");
        assert_eq!(r("team/agent:v1").tag(), Some("v1"));
    }

    #[test]
    fn hosts_ports_tags_and_digests() {
        let a = r("localhost:5000/a/b/c:1.0");
        assert_eq!(
            (a.registry(), a.repository(), a.tag()),
            ("localhost:5000", "a/b/c", Some("1.0"))
        );
        let b = r("127.0.0.1:5000/agent");
        assert_eq!((b.registry(), b.tag()), ("127.0.0.1:5000", Some("latest")));
        let c = r(&format!("ghcr.io/o/agent@{D}"));
        assert_eq!(c.tag(), None);
        assert_eq!(c.digest().map(Digest::as_str), Some(D));
        let d = r(&format!("ghcr.io/o/agent:v2@{D}"));
        assert_eq!(d.tag(), Some("v2"));
        assert_eq!(d.to_string(), format!("ghcr.io/o/agent:v2@{D}"));
        let ecr = r("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-agent:latest");
        assert_eq!(
            ecr.registry(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(ecr.repository(), "my-agent");
        assert_eq!(
            r("a")
                .pinned(Digest::parse(D).unwrap())
                .digest()
                .unwrap()
                .hex()
                .len(),
            64
        );
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "Upper/case",
            "https://ghcr.io/a",
            "a:",
            "a:-x",
            "a@sha256:abc",
            "a@md5:0123",
            "ghcr.io/",
            "ghcr.io//a",
            "a/../b",
            "host:99999/a",
            "a_/b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Digest::parse(&D.to_uppercase()).is_err());
    }

    #[test]
    fn ecr_hosts() {
        assert!(is_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com"));
        assert!(is_ecr_host(
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"
        ));
        assert!(is_ecr_host(
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        ));
        assert!(!is_ecr_host("12345.dkr.ecr.us-east-1.amazonaws.com"));
        assert!(!is_ecr_host(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io"
        ));
        assert!(!is_ecr_host("public.ecr.aws"));
    }

    fn builtin() -> Registries {
        Registries {
            builtin: Some(HostConfig {
                url: Some("http://127.0.0.1:8080".into()),
                credentials: Credentials::Basic {
                    username: "berth".into(),
                    password: "pw".into(),
                },
                allow_http: false,
            }),
            hosts: BTreeMap::new(),
        }
    }

    #[test]
    fn ecr_maps_to_builtin_unless_mapped() {
        let ecr = r("123456789012.dkr.ecr.us-west-2.amazonaws.com/team/agent:v1");
        let s = builtin().resolve(&ecr).unwrap();
        assert_eq!(
            (s.scheme, s.authority.as_str(), s.repository.as_str()),
            (Scheme::Http, "127.0.0.1:8080", "team/agent")
        );
        assert!(matches!(s.credentials, Credentials::Basic { .. }));

        let mut mapped = builtin();
        mapped.hosts.insert(
            "123456789012.dkr.ecr.us-west-2.amazonaws.com".into(),
            HostConfig {
                url: Some("https://mirror.example:5000/".into()),
                ..HostConfig::default()
            },
        );
        let s = mapped.resolve(&ecr).unwrap();
        assert_eq!(
            (s.scheme, s.authority.as_str()),
            (Scheme::Https, "mirror.example:5000")
        );
        assert_eq!(s.credentials, Credentials::Anonymous);

        let err = Registries::default().resolve(&ecr).unwrap_err();
        assert!(matches!(err, Error::NoBuiltinRegistry { .. }), "{err}");
    }

    #[test]
    fn other_hosts_and_plain_http() {
        let regs = builtin();
        let s = regs.resolve(&r("ghcr.io/o/a:1")).unwrap();
        assert_eq!((s.scheme, s.authority.as_str()), (Scheme::Https, "ghcr.io"));
        let s = regs.resolve(&r("alpine")).unwrap();
        assert_eq!(s.authority, "registry-1.docker.io");
        let s = regs.resolve(&r("localhost:5000/a")).unwrap();
        assert_eq!(s.scheme, Scheme::Http);

        let mut regs = Registries::default();
        regs.hosts.insert(
            "corp.example".into(),
            HostConfig {
                url: Some("http://10.0.0.5:5000".into()),
                ..HostConfig::default()
            },
        );
        let err = regs.resolve(&r("corp.example/a")).unwrap_err();
        assert!(err.to_string().contains("allow_http"), "{err}");
        regs.hosts.get_mut("corp.example").unwrap().allow_http = true;
        assert_eq!(
            regs.resolve(&r("corp.example/a")).unwrap().scheme,
            Scheme::Http
        );

        regs.hosts.get_mut("corp.example").unwrap().url = Some("ftp://x".into());
        assert!(regs.resolve(&r("corp.example/a")).is_err());
        regs.hosts.get_mut("corp.example").unwrap().url = Some("https://x/path".into());
        assert!(regs.resolve(&r("corp.example/a")).is_err());
    }

    #[test]
    fn credentials_are_redacted_and_config_deserialises() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
        let regs: Registries = serde_json::from_str(
            r#"{"builtin":{"url":"http://127.0.0.1:1"},"hosts":{"ghcr.io":{"credentials":{"bearer":{"token":"t"}}}}}"#,
        )
        .unwrap();
        assert!(matches!(
            regs.hosts["ghcr.io"].credentials,
            Credentials::Bearer { .. }
        ));
        assert!(serde_json::from_str::<Registries>(r#"{"nope":1}"#).is_err());
    }
}
