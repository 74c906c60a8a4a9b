//! The model APIs extraction calls: OpenAI-compatible chat completions, the Anthropic Messages
//! API, and Bedrock Runtime's Converse (SigV4-signed with the operator's AWS credentials, or a
//! Bedrock API key as a bearer token). One non-streaming request per extraction job.

use crate::ConfigError;
use berth_auth::Credentials;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use std::fmt;
use std::time::{Duration, SystemTime};

/// The reason extraction jobs fail with when no provider is configured.
pub(crate) const NO_PROVIDER: &str = "no model provider is configured for memory extraction: \
    start the server with --memory-model-provider (openai, anthropic or bedrock-converse), \
    --memory-model and, where needed, --memory-model-url and --memory-model-api-key-env \
    (or the BERTH_MEMORY_MODEL_* environment variables); then re-run the job with \
    StartMemoryExtractionJob";

/// The service name Bedrock Runtime requests are signed for (its endpoint prefix is
/// `bedrock-runtime`, but botocore's model gives `signingName: bedrock`).
pub const BEDROCK_SIGNING_SERVICE: &str = "bedrock";

/// Tokens a model may answer with; extraction answers are short JSON lists.
const MAX_ANSWER_TOKENS: u32 = 2048;

/// Provider text quoted in a failure reason at most, so a proxy's HTML page does not flood the
/// job listing.
const MAX_QUOTED: usize = 500;

/// Characters percent-encoded in a path segment: everything but RFC 3986's unreserved ones, as
/// botocore encodes a `{modelId}` label (so `:` and the `/` of an ARN stay inside the segment).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The HTTP API a model provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// `POST {base}/chat/completions` (OpenAI, vLLM, Ollama, LiteLLM, ...).
    OpenAiCompatible,
    /// `POST {base}/v1/messages` (Anthropic Messages API).
    Anthropic,
    /// `POST {base}/model/{modelId}/converse` (Amazon Bedrock Runtime Converse).
    BedrockConverse,
}

impl ProviderKind {
    /// The kind a configuration names: `openai`, `anthropic` or `bedrock-converse`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::OpenAiCompatible),
            "anthropic" => Some(Self::Anthropic),
            "bedrock-converse" => Some(Self::BedrockConverse),
            _ => None,
        }
    }

    /// The name [`ProviderKind::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAiCompatible => "openai",
            Self::Anthropic => "anthropic",
            Self::BedrockConverse => "bedrock-converse",
        }
    }

    /// The provider's public endpoint, used when no base URL is configured.
    pub fn default_base_url(self, region: &str) -> String {
        match self {
            Self::OpenAiCompatible => "https://api.openai.com/v1".into(),
            Self::Anthropic => "https://api.anthropic.com".into(),
            Self::BedrockConverse => format!("https://bedrock-runtime.{region}.amazonaws.com"),
        }
    }
}

/// AWS credentials and the region Bedrock requests are signed for.
#[derive(Clone)]
pub struct AwsSigning {
    /// Region in the credential scope (and in the default endpoint).
    pub region: String,
    /// Access key id and secret.
    pub credentials: Credentials,
    /// Session token of temporary credentials (`AWS_SESSION_TOKEN`), sent as
    /// `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsSigning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSigning")
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The model extraction calls.
#[derive(Clone)]
pub struct ModelProvider {
    /// Its API.
    pub kind: ProviderKind,
    /// Base URL, e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1` or
    /// `https://bedrock-runtime.us-east-1.amazonaws.com`.
    pub base_url: String,
    /// Model name sent with each request (Bedrock: a model id, inference profile id or ARN).
    pub model: String,
    /// Bearer token / API key, if the provider needs one. For Bedrock, an Amazon Bedrock API key,
    /// sent instead of a SigV4 signature.
    pub api_key: Option<String>,
    /// How Bedrock requests are signed when there is no `api_key`; unused by the other kinds.
    pub aws: Option<AwsSigning>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl fmt::Debug for ModelProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelProvider")
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("aws", &self.aws)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Tokens one call used, as the provider reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Answer tokens.
    pub output_tokens: u64,
    /// Their sum (the provider's figure when it gives one).
    pub total_tokens: u64,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The answer's text.
    pub text: String,
    /// What it cost.
    pub usage: Usage,
}

/// Why a model call failed. The message becomes the extraction job's `failureReason`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be built or signed (a configuration problem).
    #[error("cannot build the model request: {0}")]
    Request(String),
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("model provider unreachable: {0}")]
    Unreachable(String),
    /// The provider answered with an error status; `message` quotes what it said.
    #[error("model provider answered {status}: {message}")]
    Status {
        /// HTTP status line, e.g. `403 Forbidden`.
        status: String,
        /// The provider's error type and message, or its body.
        message: String,
    },
    /// The provider answered something that is not JSON.
    #[error("model provider answered {status} with a body that is not json: {detail}")]
    NotJson {
        /// HTTP status line.
        status: String,
        /// Parser error and the start of the body.
        detail: String,
    },
    /// The answer is JSON without the text where the API puts it.
    #[error("model provider answer has no text: {0}")]
    NoText(String),
}

impl ModelProvider {
    /// The provider the settings name (`BERTH_MEMORY_MODEL_*`, see [`crate::Options::configure`]),
    /// or `None` when neither a provider nor a URL is set. `default_region` is the server's,
    /// used for Bedrock when neither `BERTH_MEMORY_MODEL_REGION` nor `AWS_REGION` /
    /// `AWS_DEFAULT_REGION` is set.
    pub(crate) fn from_settings(
        s: &crate::Settings,
        default_region: &str,
    ) -> Result<Option<Self>, ConfigError> {
        let url = s.model_url.clone();
        let model = s.model.clone();
        let kind = match s.model_provider.clone() {
            Some(name) => ProviderKind::parse(&name).ok_or_else(|| ConfigError::Invalid {
                key: "BERTH_MEMORY_MODEL_PROVIDER",
                detail: format!("{name:?} is not one of openai, anthropic, bedrock-converse"),
            })?,
            // An OpenAI-compatible server is what a bare URL has always meant.
            None if url.is_some() => ProviderKind::OpenAiCompatible,
            None => {
                if let Some(m) = model {
                    return Err(ConfigError::Invalid {
                        key: "BERTH_MEMORY_MODEL_PROVIDER",
                        detail: format!(
                            "model {m:?} is named but no provider: name one of openai, \
                             anthropic, bedrock-converse"
                        ),
                    });
                }
                return Ok(None);
            }
        };
        let model = model.ok_or_else(|| ConfigError::Invalid {
            key: "BERTH_MEMORY_MODEL",
            detail: format!("the {} provider needs a model name", kind.name()),
        })?;
        let api_key = s.model_api_key.clone();
        let region = s
            .model_region
            .clone()
            .or_else(|| s.aws_region.clone())
            .unwrap_or_else(|| default_region.to_owned());
        if !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::Invalid {
                key: "BERTH_MEMORY_MODEL_REGION",
                detail: format!("{region:?} is not a region name like us-east-1"),
            });
        }
        let aws = match (kind, &api_key) {
            (ProviderKind::BedrockConverse, None) => {
                let missing = |key: &'static str| ConfigError::Invalid {
                    key,
                    detail: "bedrock-converse signs its requests with AWS credentials: set \
                             AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus \
                             AWS_SESSION_TOKEN for temporary credentials), or give a Bedrock \
                             API key"
                        .into(),
                };
                Some(AwsSigning {
                    region: region.clone(),
                    credentials: Credentials {
                        access_key_id: s
                            .aws_credentials
                            .0
                            .clone()
                            .ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?,
                        secret_access_key: s
                            .aws_credentials
                            .1
                            .clone()
                            .ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?,
                    },
                    session_token: s.aws_credentials.2.clone(),
                })
            }
            _ => None,
        };
        let base_url = url.unwrap_or_else(|| kind.default_base_url(&region));
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "BERTH_MEMORY_MODEL_URL",
                detail: format!("{base_url:?} is not an http:// or https:// url"),
            });
        }
        Ok(Some(Self {
            kind,
            base_url,
            model,
            api_key,
            aws,
            timeout: Duration::from_secs(120),
        }))
    }

    /// Sends one system + user prompt and returns the model's text answer.
    pub async fn complete(&self, system: &str, user: &str) -> Result<String, Error> {
        Ok(self.complete_with_usage(system, user).await?.text)
    }

    /// Sends one system + user prompt and returns the model's text answer with the tokens the
    /// provider says it used (zeros where it does not say).
    pub async fn complete_with_usage(&self, system: &str, user: &str) -> Result<Completion, Error> {
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::Request(format!("http client: {e}")))?;
        let req = self.request(&client, system, user)?;
        let resp = client
            .execute(req)
            .await
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        let status = resp.status();
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::Unreachable(format!("reading the answer: {e}")))?;
        let body: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                return Err(Error::NotJson {
                    status: status.to_string(),
                    detail: format!("{e}: {}", quote(&String::from_utf8_lossy(&bytes))),
                });
            }
        };
        if !status.is_success() {
            return Err(Error::Status {
                status: status.to_string(),
                message: error_message(error_type.as_deref(), &body),
            });
        }
        let text =
            answer_text(self.kind, &body).ok_or_else(|| Error::NoText(quote(&body.to_string())))?;
        Ok(Completion {
            text,
            usage: answer_usage(self.kind, &body),
        })
    }

    fn request(
        &self,
        client: &reqwest::Client,
        system: &str,
        user: &str,
    ) -> Result<reqwest::Request, Error> {
        let base = self.base_url.trim_end_matches('/');
        let built = match self.kind {
            ProviderKind::OpenAiCompatible => {
                let mut r = client
                    .post(format!("{base}/chat/completions"))
                    .json(&json!({
                        "model": self.model,
                        "temperature": 0,
                        "messages": [{"role": "system", "content": system},
                                     {"role": "user", "content": user}],
                    }));
                if let Some(k) = &self.api_key {
                    r = r.bearer_auth(k);
                }
                r.build()
            }
            ProviderKind::Anthropic => {
                let mut r = client
                    .post(format!("{base}/v1/messages"))
                    .header("anthropic-version", "2023-06-01")
                    .json(&json!({
                        "model": self.model,
                        "max_tokens": MAX_ANSWER_TOKENS,
                        "system": system,
                        "messages": [{"role": "user", "content": user}],
                    }));
                if let Some(k) = &self.api_key {
                    r = r.header("x-api-key", k);
                }
                r.build()
            }
            ProviderKind::BedrockConverse => return self.converse_request(base, system, user),
        };
        built.map_err(|e| Error::Request(e.to_string()))
    }

    /// A Converse request, signed with SigV4 (or carrying a Bedrock API key).
    fn converse_request(
        &self,
        base: &str,
        system: &str,
        user: &str,
    ) -> Result<reqwest::Request, Error> {
        let url = format!(
            "{base}/model/{}/converse",
            utf8_percent_encode(&self.model, PATH_SEGMENT)
        );
        let body = serde_json::to_vec(&json!({
            "messages": [{"role": "user", "content": [{"text": user}]}],
            "system": [{"text": system}],
            "inferenceConfig": {"maxTokens": MAX_ANSWER_TOKENS, "temperature": 0},
        }))
        .map_err(|e| Error::Request(e.to_string()))?;
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| Error::Request(format!("{url}: {e}")))?;
        match (&self.api_key, &self.aws) {
            (Some(key), _) => {
                let value =
                    http::HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                        Error::Request("the api key is not a valid header value".into())
                    })?;
                req.headers_mut().insert(http::header::AUTHORIZATION, value);
            }
            (None, Some(aws)) => berth_auth::sign_with_session_token(
                &mut req,
                &aws.credentials,
                aws.session_token.as_deref(),
                &aws.region,
                BEDROCK_SIGNING_SERVICE,
                SystemTime::now(),
            )
            .map_err(|e| Error::Request(format!("signing: {e}")))?,
            (None, None) => {
                return Err(Error::Request(
                    "bedrock-converse needs AWS credentials or an API key".into(),
                ));
            }
        }
        reqwest::Request::try_from(req).map_err(|e| Error::Request(e.to_string()))
    }
}

/// The answer's text where each API puts it. Converse and Anthropic answer with content blocks;
/// only the text blocks count (a reasoning model may put its thinking in blocks before them).
fn answer_text(kind: ProviderKind, body: &Value) -> Option<String> {
    let blocks = |v: Option<&Value>| -> Option<String> {
        let texts: Vec<&str> = v?
            .as_array()?
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        (!texts.is_empty()).then(|| texts.concat())
    };
    match kind {
        ProviderKind::OpenAiCompatible => body
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ProviderKind::Anthropic => blocks(body.get("content")),
        ProviderKind::BedrockConverse => blocks(body.pointer("/output/message/content")),
    }
}

/// The tokens an answer reports: OpenAI's `usage.prompt_tokens`/`completion_tokens`/
/// `total_tokens`, Anthropic's `usage.input_tokens`/`output_tokens`, Converse's
/// `usage.inputTokens`/`outputTokens`/`totalTokens`. Missing figures are 0; a missing total is
/// the sum.
fn answer_usage(kind: ProviderKind, body: &Value) -> Usage {
    let n = |key: &str| -> u64 {
        body.get("usage")
            .and_then(|u| u.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let (input_tokens, output_tokens, total) = match kind {
        ProviderKind::OpenAiCompatible => (
            n("prompt_tokens"),
            n("completion_tokens"),
            n("total_tokens"),
        ),
        ProviderKind::Anthropic => (n("input_tokens"), n("output_tokens"), 0),
        ProviderKind::BedrockConverse => (n("inputTokens"), n("outputTokens"), n("totalTokens")),
    };
    Usage {
        input_tokens,
        output_tokens,
        total_tokens: if total == 0 {
            input_tokens + output_tokens
        } else {
            total
        },
    }
}

/// What an error answer says: AWS's error type (header `x-amzn-ErrorType` or `__type`) and
/// `message`, OpenAI's and Anthropic's `error.message`, else the body itself.
fn error_message(error_type: Option<&str>, body: &Value) -> String {
    let message = ["/message", "/Message", "/error/message"]
        .iter()
        .find_map(|p| body.pointer(p).and_then(Value::as_str));
    let aws_type = error_type
        .map(str::to_owned)
        .or_else(|| {
            body.get("__type")
                .and_then(Value::as_str)
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
        })
        .or_else(|| {
            body.pointer("/error/type")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    match (aws_type, message) {
        (Some(t), Some(m)) => quote(&format!("{t}: {m}")),
        (None, Some(m)) => quote(m),
        _ => quote(&body.to_string()),
    }
}

/// `text` cut to [`MAX_QUOTED`] characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail by panicking
mod tests {
    use super::*;

    #[test]
    fn converse_answers_join_their_text_blocks() {
        let body = json!({"output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "hmm"}}},
            {"text": "{\"memories\": "}, {"text": "[]}"}]}}, "stopReason": "end_turn"});
        assert_eq!(
            answer_text(ProviderKind::BedrockConverse, &body).unwrap(),
            "{\"memories\": []}"
        );
        assert!(answer_text(ProviderKind::BedrockConverse, &json!({"output": {}})).is_none());
    }

    #[test]
    fn usage_is_read_where_each_api_puts_it() {
        let openai =
            json!({"usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}});
        assert_eq!(
            answer_usage(ProviderKind::OpenAiCompatible, &openai),
            Usage {
                input_tokens: 10,
                output_tokens: 3,
                total_tokens: 13
            }
        );
        let anthropic = json!({"usage": {"input_tokens": 7, "output_tokens": 2}});
        assert_eq!(
            answer_usage(ProviderKind::Anthropic, &anthropic),
            Usage {
                input_tokens: 7,
                output_tokens: 2,
                total_tokens: 9
            }
        );
        let converse = json!({"usage": {"inputTokens": 5, "outputTokens": 1, "totalTokens": 6}});
        assert_eq!(
            answer_usage(ProviderKind::BedrockConverse, &converse),
            Usage {
                input_tokens: 5,
                output_tokens: 1,
                total_tokens: 6
            }
        );
        assert_eq!(
            answer_usage(ProviderKind::OpenAiCompatible, &json!({})),
            Usage::default()
        );
    }

    #[test]
    fn error_messages_quote_the_provider() {
        let aws = json!({"message": "You don't have access to the model"});
        assert_eq!(
            error_message(Some("AccessDeniedException"), &aws),
            "AccessDeniedException: You don't have access to the model"
        );
        let openai =
            json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}});
        assert_eq!(
            error_message(None, &openai),
            "invalid_request_error: Incorrect API key"
        );
        assert_eq!(error_message(None, &json!([1])), "[1]");
        assert_eq!(quote(&"é".repeat(600)).chars().count(), MAX_QUOTED + 3);
    }

    #[test]
    fn model_ids_stay_one_path_segment() {
        let id =
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v1:0";
        assert_eq!(
            utf8_percent_encode(id, PATH_SEGMENT).to_string(),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-v1%3A0"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let p = ModelProvider {
            kind: ProviderKind::BedrockConverse,
            base_url: "http://x".into(),
            model: "m".into(),
            api_key: Some("sk-secret".into()),
            aws: Some(AwsSigning {
                region: "us-east-1".into(),
                credentials: Credentials {
                    access_key_id: "AKIA".into(),
                    secret_access_key: "aws-secret".into(),
                },
                session_token: Some("token-secret".into()),
            }),
            timeout: Duration::from_secs(1),
        };
        let shown = format!("{p:?}");
        for secret in ["sk-secret", "aws-secret", "token-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
