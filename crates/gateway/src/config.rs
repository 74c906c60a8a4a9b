//! The gateway's configuration: the operator's TOML file (`berth serve --gateway FILE`).
//!
//! ```toml
//! queue_timeout_secs = 30          # how long a request may wait for a credential to cool down
//! max_attempts = 4                 # upstream tries per request (credentials, fallbacks)
//!
//! [[upstreams]]
//! name = "anthropic"
//! protocol = "anthropic"           # anthropic | openai | bedrock
//! url = "https://api.anthropic.com"
//! models = ["claude-*"]            # which requested models it serves (`*` globs; default all)
//! secret_prefix = "anthropic/"     # every secret under the prefix is a pooled credential
//! secrets = ["anthropic-main"]     # and/or named secrets
//! cooldown_secs = 30               # after a 429 / overload without Retry-After
//! auth_cooldown_secs = 300         # after a 401 / 403 (a revoked or wrong key)
//! fallbacks = [{ upstream = "anthropic-eu" }, { upstream = "anthropic", model = "claude-haiku-4" }]
//! region = "us-east-1"             # bedrock: the region requests are signed for
//!
//! [limits]
//! runtime_requests_per_minute = 600
//! actor_requests_per_minute = 60
//! runtime_tokens_per_day = 5000000
//! actor_tokens_per_day = 200000
//! [limits.runtimes.my_agent-AbCdEf1234]   # one runtime's own limits replace the defaults above
//! requests_per_minute = 1200
//! tokens_per_day = 10000000
//! ```
//!
//! Credentials are never written in this file: they are Berth secrets (`berth secrets put`),
//! so they rotate without a restart. A Bedrock credential is `ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]`
//! (SigV4) or a Bedrock API key (sent as a bearer token).

use crate::Protocol;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// A configuration the gateway refused, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("gateway configuration: {0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout_secs: u64,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    #[serde(default)]
    pub limits: Limits,
}

fn default_queue_timeout() -> u64 {
    30
}
fn default_attempts() -> u32 {
    4
}
fn default_cooldown() -> u64 {
    30
}
fn default_auth_cooldown() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub name: String,
    pub protocol: Protocol,
    /// The provider's base URL; the agent's path (`/v1/messages`, `/v1/chat/completions`,
    /// `/model/{id}/converse`) is appended.
    pub url: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub secret_prefix: Option<String>,
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    #[serde(default = "default_auth_cooldown")]
    pub auth_cooldown_secs: u64,
    #[serde(default)]
    pub fallbacks: Vec<Fallback>,
    /// Bedrock: the region SigV4 signs for.
    #[serde(default)]
    pub region: Option<String>,
}

/// Where a request goes when an upstream has no usable credential (or failed).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    pub upstream: String,
    /// The model asked of that upstream instead of the one the agent named.
    #[serde(default)]
    pub model: Option<String>,
}

/// Rate limits and token budgets. Absent = unlimited.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub runtime_requests_per_minute: Option<u64>,
    pub actor_requests_per_minute: Option<u64>,
    pub runtime_tokens_per_day: Option<u64>,
    pub actor_tokens_per_day: Option<u64>,
    #[serde(default)]
    pub runtimes: BTreeMap<String, RuntimeLimits>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeLimits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
}

impl Config {
    /// Reads and validates a TOML file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if self.max_attempts == 0 {
            return err("max_attempts must be at least 1".into());
        }
        let mut names = HashSet::new();
        for u in &self.upstreams {
            if u.name.is_empty() {
                return err("upstreams[].name must not be empty".into());
            }
            if !names.insert(u.name.as_str()) {
                return err(format!("upstream {:?} is defined twice", u.name));
            }
            let url = reqwest::Url::parse(&u.url)
                .map_err(|e| ConfigError(format!("upstreams.{}.url {:?}: {e}", u.name, u.url)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return err(format!("upstreams.{}.url must be http or https", u.name));
            }
            if u.secrets.is_empty() && u.secret_prefix.is_none() {
                return err(format!(
                    "upstreams.{} has no credentials: set secrets or secret_prefix",
                    u.name
                ));
            }
            if u.protocol == Protocol::Bedrock && u.region.is_none() {
                return err(format!(
                    "upstreams.{}.region is required for protocol bedrock",
                    u.name
                ));
            }
        }
        for u in &self.upstreams {
            for f in &u.fallbacks {
                let Some(target) = self.upstreams.iter().find(|t| t.name == f.upstream) else {
                    return err(format!(
                        "upstreams.{}.fallbacks names {:?}, which is not an upstream",
                        u.name, f.upstream
                    ));
                };
                if target.protocol != u.protocol {
                    return err(format!(
                        "upstreams.{}.fallbacks: {:?} speaks {}, not {} (the gateway passes \
                         requests through; it does not translate between APIs)",
                        u.name,
                        f.upstream,
                        target.protocol.name(),
                        u.protocol.name()
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn queue_timeout(&self) -> Duration {
        Duration::from_secs(self.queue_timeout_secs)
    }
}

impl Upstream {
    /// Whether this upstream serves `model` (`models` empty = every model).
    pub fn serves(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| glob(p, model))
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_shells_do() {
        assert!(glob("claude-*", "claude-sonnet-4"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(glob("gpt-4o", "gpt-4o"));
        assert!(!glob("gpt-4o", "gpt-4o-mini"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn a_config_names_what_is_wrong() {
        let ok = r#"
            [[upstreams]]
            name = "a"
            protocol = "anthropic"
            url = "http://127.0.0.1:9"
            secret_prefix = "anthropic/"
            fallbacks = [{ upstream = "b", model = "m2" }]
            [[upstreams]]
            name = "b"
            protocol = "anthropic"
            url = "http://127.0.0.1:10"
            secrets = ["k"]
        "#;
        let c = Config::parse(ok).unwrap();
        assert_eq!(c.upstreams.len(), 2);
        assert_eq!(c.max_attempts, 4);
        for (text, needle) in [
            (
                "[[upstreams]]\nname='a'\nprotocol='openai'\nurl='http://x'\n",
                "no credentials",
            ),
            (
                "[[upstreams]]\nname='a'\nprotocol='bedrock'\nurl='http://x'\nsecrets=['k']\n",
                "region is required",
            ),
            (
                "[[upstreams]]\nname='a'\nprotocol='grpc'\nurl='http://x'\nsecrets=['k']\n",
                "unknown variant",
            ),
            (
                "[[upstreams]]\nname='a'\nprotocol='openai'\nurl='ftp://x'\nsecrets=['k']\n",
                "http or https",
            ),
            (
                "[[upstreams]]\nname='a'\nprotocol='openai'\nurl='http://x'\nsecrets=['k']\n\
                 fallbacks=[{upstream='z'}]\n",
                "not an upstream",
            ),
            ("bogus = 1\n", "unknown field"),
        ] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
