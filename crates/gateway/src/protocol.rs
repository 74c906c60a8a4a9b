//! What differs between the three model APIs the gateway speaks: where the model is named,
//! whether the call streams, how a credential is put on the upstream request, and how the
//! gateway's own refusals look (each in the shape that API's SDK parses into a typed error).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::SystemTime;

/// A model API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The Anthropic Messages API (`POST /v1/messages`).
    Anthropic,
    /// The OpenAI API (`POST /v1/chat/completions`, `/v1/embeddings`, `/v1/responses`).
    #[serde(rename = "openai")]
    OpenAi,
    /// Bedrock Runtime (`POST /model/{modelId}/converse|converse-stream|invoke|
    /// invoke-with-response-stream`).
    Bedrock,
}

/// The service name Bedrock Runtime requests are signed for.
const BEDROCK_SIGNING_NAME: &str = "bedrock";

/// Characters escaped in a model id put back into a path segment (`:` and `/` included, as
/// botocore does for `modelId`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// What the gateway reads of a request before routing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub model: String,
    pub stream: bool,
    /// The `gen_ai.operation.name` of the call: `chat`, `embeddings` or `text_completion`.
    pub operation: &'static str,
}

/// A request the gateway refuses before any upstream sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: StatusCode,
    pub kind: Kind,
    pub message: String,
}

/// Why the gateway refuses, mapped to each API's error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invalid,
    NotFound,
    Unauthenticated,
    RateLimited,
    Unavailable,
}

impl Refusal {
    pub fn new(status: StatusCode, kind: Kind, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Anthropic => "anthropic",
            Protocol::OpenAi => "openai",
            Protocol::Bedrock => "bedrock",
        }
    }

    /// The path segment after `/gateway/` that selects this API.
    pub fn from_segment(s: &str) -> Option<Self> {
        match s {
            "anthropic" => Some(Protocol::Anthropic),
            "openai" => Some(Protocol::OpenAi),
            "bedrock" => Some(Protocol::Bedrock),
            _ => None,
        }
    }

    /// `gen_ai.provider.name` of a call through this API.
    pub fn provider(self) -> &'static str {
        match self {
            Protocol::Anthropic => "anthropic",
            Protocol::OpenAi => "openai",
            Protocol::Bedrock => "aws.bedrock",
        }
    }

    /// Reads the model and streaming flag from a request to `path` (the path after the
    /// gateway's prefix, without the query).
    pub fn parse(self, path: &str, body: &[u8]) -> Result<Parsed, Refusal> {
        let invalid = |m: String| Refusal::new(StatusCode::BAD_REQUEST, Kind::Invalid, m);
        let not_found = || {
            Refusal::new(
                StatusCode::NOT_FOUND,
                Kind::NotFound,
                format!(
                    "the model gateway has no {} operation at {path}",
                    self.name()
                ),
            )
        };
        match self {
            Protocol::Anthropic | Protocol::OpenAi => {
                let operation = match (self, path) {
                    (Protocol::Anthropic, "/v1/messages") => "chat",
                    (Protocol::Anthropic, "/v1/messages/count_tokens") => "count_tokens",
                    (Protocol::OpenAi, "/v1/chat/completions" | "/v1/responses") => "chat",
                    (Protocol::OpenAi, "/v1/completions") => "text_completion",
                    (Protocol::OpenAi, "/v1/embeddings") => "embeddings",
                    _ => return Err(not_found()),
                };
                #[derive(Deserialize)]
                struct Head {
                    model: Option<String>,
                    #[serde(default)]
                    stream: Option<bool>,
                }
                let head: Head = serde_json::from_slice(body)
                    .map_err(|e| invalid(format!("the request body is not a JSON object: {e}")))?;
                let model = head
                    .model
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| invalid("model: field required".into()))?;
                Ok(Parsed {
                    model,
                    stream: head.stream.unwrap_or(false),
                    operation,
                })
            }
            Protocol::Bedrock => {
                let rest = path.strip_prefix("/model/").ok_or_else(not_found)?;
                let (id, op) = rest.rsplit_once('/').ok_or_else(not_found)?;
                let stream = match op {
                    "converse" | "invoke" => false,
                    "converse-stream" | "invoke-with-response-stream" => true,
                    _ => return Err(not_found()),
                };
                let model = percent_decode_str(id).decode_utf8_lossy().into_owned();
                if model.is_empty() {
                    return Err(invalid("modelId: must not be empty".into()));
                }
                Ok(Parsed {
                    model,
                    stream,
                    operation: "chat",
                })
            }
        }
    }

    /// The request's path and body asking `model` instead of what the agent named.
    pub fn with_model(self, path: &str, body: &Bytes, model: &str) -> (String, Bytes) {
        match self {
            Protocol::Anthropic | Protocol::OpenAi => {
                let mut v: Value = match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(_) => return (path.to_owned(), body.clone()),
                };
                v["model"] = json!(model);
                let bytes = serde_json::to_vec(&v).map(Bytes::from);
                (path.to_owned(), bytes.unwrap_or_else(|_| body.clone()))
            }
            Protocol::Bedrock => {
                let op = path
                    .rsplit_once('/')
                    .map(|(_, op)| op)
                    .unwrap_or("converse");
                let id = utf8_percent_encode(model, SEGMENT);
                (format!("/model/{id}/{op}"), body.clone())
            }
        }
    }

    /// OpenAI streams report usage only when asked: a streaming chat request that did not set
    /// `stream_options.include_usage` gets it, so every call is metered. The SDKs read the
    /// extra final chunk (no choices, a `usage`) as the API documents it.
    pub fn ask_for_usage(self, parsed: &Parsed, body: Bytes) -> Bytes {
        if self != Protocol::OpenAi || !parsed.stream {
            return body;
        }
        let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
            return body;
        };
        let Some(obj) = v.as_object_mut() else {
            return body;
        };
        let opts = obj.entry("stream_options").or_insert_with(|| json!({}));
        match opts.as_object_mut() {
            Some(o) if !o.contains_key("include_usage") => {
                o.insert("include_usage".into(), json!(true));
            }
            _ => return body,
        }
        serde_json::to_vec(&v).map(Bytes::from).unwrap_or(body)
    }

    /// Puts `credential` on an upstream request (Anthropic: `x-api-key`; OpenAI: a bearer
    /// token; Bedrock: SigV4 for `ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]`, else a bearer API key).
    pub fn authorize(
        self,
        req: &mut http::Request<Bytes>,
        credential: &str,
        region: Option<&str>,
    ) -> Result<(), String> {
        let value = |s: String| {
            HeaderValue::from_str(&s).map_err(|_| "the credential is not a valid header value")
        };
        match self {
            Protocol::Anthropic => {
                let mut v = value(credential.to_owned())?;
                v.set_sensitive(true);
                req.headers_mut().insert("x-api-key", v);
            }
            Protocol::OpenAi => {
                let mut v = value(format!("Bearer {credential}"))?;
                v.set_sensitive(true);
                req.headers_mut().insert(header::AUTHORIZATION, v);
            }
            Protocol::Bedrock => match aws_credential(credential) {
                Some((id, secret, token)) => {
                    let creds = berth_auth::Credentials {
                        access_key_id: id.to_owned(),
                        secret_access_key: secret.to_owned(),
                    };
                    berth_auth::sign_with_session_token(
                        req,
                        &creds,
                        token,
                        region.unwrap_or("us-east-1"),
                        BEDROCK_SIGNING_NAME,
                        SystemTime::now(),
                    )
                    .map_err(|e| format!("signing: {e}"))?;
                }
                None => {
                    let mut v = value(format!("Bearer {credential}"))?;
                    v.set_sensitive(true);
                    req.headers_mut().insert(header::AUTHORIZATION, v);
                }
            },
        }
        Ok(())
    }

    /// The gateway's own refusal in this API's error shape.
    pub fn refusal(self, r: &Refusal) -> Response<Bytes> {
        let (body, extra): (Value, Option<&'static str>) = match self {
            Protocol::Anthropic => {
                let kind = match (r.kind, r.status.as_u16()) {
                    (Kind::Invalid, _) => "invalid_request_error",
                    (Kind::NotFound, _) => "not_found_error",
                    (Kind::Unauthenticated, _) => "authentication_error",
                    (Kind::RateLimited, _) => "rate_limit_error",
                    (Kind::Unavailable, 529) => "overloaded_error",
                    (Kind::Unavailable, _) => "api_error",
                };
                (
                    json!({"type": "error", "error": {"type": kind, "message": r.message}}),
                    None,
                )
            }
            Protocol::OpenAi => {
                let (kind, code) = match r.kind {
                    Kind::Invalid => ("invalid_request_error", "invalid_request"),
                    Kind::NotFound => ("invalid_request_error", "not_found"),
                    Kind::Unauthenticated => ("invalid_request_error", "invalid_api_key"),
                    Kind::RateLimited => ("rate_limit_exceeded", "rate_limit_exceeded"),
                    Kind::Unavailable => ("server_error", "service_unavailable"),
                };
                (
                    json!({"error": {"message": r.message, "type": kind, "param": null, "code": code}}),
                    None,
                )
            }
            Protocol::Bedrock => {
                let kind = match r.kind {
                    Kind::Invalid => "ValidationException",
                    Kind::NotFound => "ResourceNotFoundException",
                    Kind::Unauthenticated => "AccessDeniedException",
                    Kind::RateLimited => "ThrottlingException",
                    Kind::Unavailable => "ServiceUnavailableException",
                };
                (json!({"message": r.message}), Some(kind))
            }
        };
        let mut resp = Response::new(Bytes::from(body.to_string()));
        *resp.status_mut() = r.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(kind) = extra {
            h.insert("x-amzn-errortype", HeaderValue::from_static(kind));
        }
        if r.kind == Kind::RateLimited {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }

    /// The key an agent's SDK sends: Anthropic's `x-api-key` or any `Authorization: Bearer`.
    pub fn presented_key(self, headers: &HeaderMap) -> Option<&str> {
        if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return Some(k.trim());
        }
        let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = auth.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }
}

/// `ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]`, when a Bedrock credential has that form (an access
/// key id is 16-128 uppercase letters and digits).
fn aws_credential(c: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut parts = c.splitn(3, ':');
    let id = parts.next()?;
    let secret = parts.next()?;
    let token = parts.next();
    let id_ok = (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    (id_ok && !secret.is_empty()).then_some((id, secret, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_names_its_model_where_its_sdk_puts_it() {
        let p = Protocol::Anthropic
            .parse("/v1/messages", br#"{"model":"claude-x","stream":true}"#)
            .unwrap();
        assert_eq!((p.model.as_str(), p.stream), ("claude-x", true));
        let p = Protocol::OpenAi
            .parse("/v1/embeddings", br#"{"model":"e","input":"x"}"#)
            .unwrap();
        assert_eq!((p.operation, p.stream), ("embeddings", false));
        let p = Protocol::Bedrock
            .parse("/model/anthropic.claude%3A1/converse-stream", b"{}")
            .unwrap();
        assert_eq!((p.model.as_str(), p.stream), ("anthropic.claude:1", true));
        assert_eq!(
            Protocol::Bedrock
                .parse("/model/x/delete", b"")
                .unwrap_err()
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Protocol::OpenAi
                .parse("/v1/chat/completions", b"{}")
                .unwrap_err()
                .kind,
            Kind::Invalid
        );
    }

    #[test]
    fn a_fallback_model_replaces_the_named_one() {
        let body = Bytes::from_static(br#"{"model":"a","messages":[]}"#);
        let (_, b) = Protocol::Anthropic.with_model("/v1/messages", &body, "b");
        assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["model"], "b");
        let (p, _) = Protocol::Bedrock.with_model("/model/a/converse", &body, "us.x:0");
        assert_eq!(p, "/model/us.x%3A0/converse");
    }

    #[test]
    fn openai_streams_are_asked_for_usage_once() {
        let parsed = Protocol::OpenAi
            .parse("/v1/chat/completions", br#"{"model":"m","stream":true}"#)
            .unwrap();
        let b = Protocol::OpenAi.ask_for_usage(
            &parsed,
            Bytes::from_static(br#"{"model":"m","stream":true}"#),
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let mine = Bytes::from_static(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#,
        );
        assert_eq!(Protocol::OpenAi.ask_for_usage(&parsed, mine.clone()), mine);
    }

    #[test]
    fn bedrock_credentials_sign_or_bear() {
        assert_eq!(
            aws_credential("AKIAABCDEFGHIJKLMNOP:s3cret"),
            Some(("AKIAABCDEFGHIJKLMNOP", "s3cret", None))
        );
        assert_eq!(aws_credential("bedrock-api-key-xyz"), None);
        let mut req = http::Request::builder()
            .uri("http://127.0.0.1:1/model/m/converse")
            .body(Bytes::new())
            .unwrap();
        Protocol::Bedrock
            .authorize(&mut req, "AKIAABCDEFGHIJKLMNOP:s3cret", Some("eu-west-1"))
            .unwrap();
        let auth = req.headers()[header::AUTHORIZATION].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAABCDEFGHIJKLMNOP/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-1/bedrock/aws4_request"), "{auth}");
    }

    #[test]
    fn refusals_take_each_apis_error_shape() {
        let r = Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            Kind::RateLimited,
            "slow down",
        );
        let a: Value = serde_json::from_slice(Protocol::Anthropic.refusal(&r).body()).unwrap();
        assert_eq!(a["error"]["type"], "rate_limit_error");
        let o: Value = serde_json::from_slice(Protocol::OpenAi.refusal(&r).body()).unwrap();
        assert_eq!(o["error"]["message"], "slow down");
        let b = Protocol::Bedrock.refusal(&r);
        assert_eq!(b.headers()["x-amzn-errortype"], "ThrottlingException");
    }
}
