//! The model providers and the embeddings-API embedder against a local HTTP double: what goes
//! on the wire (paths, JSON shapes, auth headers, SigV4 signatures checked with Berth's own
//! verifier) and how provider errors come back. Configuration from settings maps.

// Tests fail by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

use berth_auth::{Credentials, Payload, Principal, Scope, StaticKeys};
use berth_memory::embed::Embedder;
use berth_memory::provider::{self, AwsSigning, ModelProvider, ProviderKind};
use berth_memory::{ConfigError, EmbeddingsApi, Options};
use berth_types::Partition;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request as the double received it.
#[derive(Clone, Debug)]
struct Seen {
    method: http::Method,
    /// Origin form, as sent: path and query still percent-encoded.
    target: http::Uri,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// The answer the double gives: status, extra headers, body.
type Reply = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// An HTTP/1 server on 127.0.0.1:0 that records every request and answers with `reply`.
struct Double {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Double {
    async fn start(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(reply);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, reply) = (log.clone(), reply.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let (log, reply) = (log.clone(), reply.clone());
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body.collect().await.unwrap().to_bytes().to_vec();
                                let seen = Seen {
                                    method: parts.method,
                                    target: parts.uri,
                                    headers: parts.headers,
                                    body,
                                };
                                let (status, headers, body) = reply(&seen);
                                log.lock().unwrap().push(seen);
                                let mut resp = hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json");
                                for (k, v) in headers {
                                    resp = resp.header(k, v);
                                }
                                Ok::<_, Infallible>(
                                    resp.body(Full::new(Bytes::from(body))).unwrap(),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { base, seen, task }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ok(body: Value) -> Reply {
    (200, vec![], serde_json::to_vec(&body).unwrap())
}

/// A Converse answer as Bedrock Runtime gives it.
fn converse_answer(text: &str) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42},
        "metrics": {"latencyMs": 120},
    })
}

const MODEL_ID: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn aws() -> AwsSigning {
    AwsSigning {
        region: "eu-west-3".into(),
        credentials: Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: SECRET.into(),
        },
        session_token: Some("IQoJb3JpZ2luX2VjEFixture//token+with=odd/chars".into()),
    }
}

fn provider(kind: ProviderKind, base: &str) -> ModelProvider {
    ModelProvider {
        kind,
        base_url: base.to_owned(),
        model: MODEL_ID.into(),
        api_key: None,
        aws: (kind == ProviderKind::BedrockConverse).then(aws),
        timeout: Duration::from_secs(10),
    }
}

/// Verifies the request's SigV4 signature with `secret`, as a server holding it would.
fn verify(seen: &Seen, secret: &str) -> Result<berth_auth::Verified, berth_auth::Error> {
    let creds = aws().credentials;
    let keys: StaticKeys = [Principal {
        access_key_id: creds.access_key_id,
        secret_access_key: secret.into(),
        scope: Scope::Root,
    }]
    .into_iter()
    .collect();
    berth_auth::verify(
        &seen.method,
        &seen.target,
        &seen.headers,
        &seen.body,
        &keys,
        SystemTime::now(),
    )
}

#[tokio::test]
async fn converse_requests_have_bedrocks_shape_and_a_valid_sigv4_signature() {
    let double = Double::start(|_| ok(converse_answer("{\"memories\": [\"likes tea\"]}"))).await;
    let p = provider(ProviderKind::BedrockConverse, &format!("{}/", double.base));

    let answer = p
        .complete("extract facts", "USER: I like tea")
        .await
        .unwrap();
    assert_eq!(answer, "{\"memories\": [\"likes tea\"]}");

    let [seen] = double.requests().try_into().unwrap();
    assert_eq!(seen.method, http::Method::POST);
    // The model id is one percent-encoded path segment, as botocore sends it.
    assert_eq!(
        seen.target.path(),
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.json(),
        json!({
            "messages": [{"role": "user", "content": [{"text": "USER: I like tea"}]}],
            "system": [{"text": "extract facts"}],
            "inferenceConfig": {"maxTokens": 2048, "temperature": 0},
        })
    );

    let auth = seen.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
            && auth.contains("/eu-west-3/bedrock/aws4_request"),
        "{auth}"
    );
    let verified = verify(&seen, SECRET).unwrap();
    assert_eq!(verified.service, provider::BEDROCK_SIGNING_SERVICE);
    assert_eq!(verified.region, "eu-west-3");
    assert_eq!(verified.session_token, aws().session_token);
    assert_eq!(verified.payload, Payload::Signed);
    // The check can fail: another secret does not verify.
    let wrong = verify(&seen, "another-secret-another-secret-another-se").unwrap_err();
    assert_eq!(wrong.aws_code(), "InvalidSignatureException");
}

#[tokio::test]
async fn converse_with_an_api_key_sends_a_bearer_token_instead_of_signing() {
    let double = Double::start(|_| ok(converse_answer("{\"memories\": []}"))).await;
    let mut p = provider(ProviderKind::BedrockConverse, &double.base);
    p.api_key = Some("ABSKQmVkcm9ja0FQSUtleQ==".into());
    p.aws = None;
    p.model =
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0".into();
    p.complete("s", "u").await.unwrap();
    let [seen] = double.requests().try_into().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some("Bearer ABSKQmVkcm9ja0FQSUtleQ==")
    );
    assert!(seen.header("x-amz-date").is_none());
    assert_eq!(
        seen.target.path(),
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.amazon.nova-lite-v1%3A0/converse"
    );
}

#[tokio::test]
async fn bedrock_errors_quote_the_service() {
    let double = Double::start(|seen| {
        let aws_error = |status, ty: &str, message: &str| -> Reply {
            (
                status,
                vec![(
                    "x-amzn-errortype",
                    format!("{ty}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
                )],
                serde_json::to_vec(&json!({"message": message})).unwrap(),
            )
        };
        match seen.json()["system"][0]["text"].as_str().unwrap() {
            "denied" => aws_error(
                403,
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
            ),
            "throttled" => aws_error(
                429,
                "ThrottlingException",
                "Too many requests, please wait before trying again.",
            ),
            "garbage" => (200, vec![], b"<html>proxy error</html>".to_vec()),
            _ => ok(json!({"output": {}, "stopReason": "end_turn"})),
        }
    })
    .await;
    let p = provider(ProviderKind::BedrockConverse, &double.base);
    let reason = |system: &'static str| {
        let p = p.clone();
        async move { p.complete(system, "u").await.unwrap_err().to_string() }
    };
    assert_eq!(
        reason("denied").await,
        "model provider answered 403 Forbidden: AccessDeniedException: You don't have access \
         to the model with the specified model ID."
    );
    assert_eq!(
        reason("throttled").await,
        "model provider answered 429 Too Many Requests: ThrottlingException: Too many requests, \
         please wait before trying again."
    );
    let garbage = reason("garbage").await;
    assert!(
        garbage.contains("not json") && garbage.contains("proxy error"),
        "{garbage}"
    );
    assert!(reason("empty").await.contains("has no text"));

    // Nothing listening at all.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = provider(ProviderKind::BedrockConverse, &format!("http://{closed}"))
        .complete("s", "u")
        .await
        .unwrap_err();
    assert!(matches!(err, provider::Error::Unreachable(_)), "{err}");
}

#[tokio::test]
async fn openai_and_anthropic_requests_keep_their_shapes() {
    let double = Double::start(|seen| match seen.target.path() {
        "/v1/chat/completions" => ok(json!({"choices": [{"message": {"content": "openai"}}]})),
        "/v1/messages" => ok(json!({"content": [{"type": "text", "text": "anthropic"}]})),
        _ => (404, vec![], b"{}".to_vec()),
    })
    .await;
    let mut openai = provider(
        ProviderKind::OpenAiCompatible,
        &format!("{}/v1", double.base),
    );
    openai.api_key = Some("sk-test".into());
    assert_eq!(openai.complete("s", "u").await.unwrap(), "openai");
    let mut anthropic = provider(ProviderKind::Anthropic, &double.base);
    anthropic.api_key = Some("ak-test".into());
    assert_eq!(anthropic.complete("s", "u").await.unwrap(), "anthropic");

    let [o, a] = double.requests().try_into().unwrap();
    assert_eq!(o.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(
        o.json()["messages"][0],
        json!({"role": "system", "content": "s"})
    );
    assert_eq!(a.header("x-api-key"), Some("ak-test"));
    assert_eq!(a.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(a.json()["system"], "s");
}

#[tokio::test]
async fn the_embeddings_api_returns_unit_vectors_in_input_order() {
    let double = Double::start(|seen| {
        if seen.header("authorization") != Some("Bearer emb-key") {
            let e = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}});
            return (401, vec![], serde_json::to_vec(&e).unwrap());
        }
        let inputs = seen.json()["input"].as_array().unwrap().clone();
        // Reversed order with explicit indexes, and vectors of length 2 * (index + 1).
        let data: Vec<Value> = (0..inputs.len())
            .rev()
            .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.0, 2.0 * (i as f64 + 1.0), 0.0]}))
            .collect();
        ok(json!({"object": "list", "data": data, "model": "emb"}))
    })
    .await;
    let api = Arc::new(EmbeddingsApi::new(
        &format!("{}/v1/", double.base),
        "emb",
        Some("emb-key".into()),
        None,
    ));
    assert_eq!(api.dims(), 0);
    let texts: Vec<String> = (0..70).map(|i| format!("text {i}")).collect();
    let (e, t) = (api.clone(), texts.clone());
    let vectors = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = t.iter().map(String::as_str).collect();
        e.embed(&refs)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(vectors.len(), 70);
    assert!(vectors.iter().all(|v| v == &[0.0, 1.0, 0.0]));
    assert_eq!(api.dims(), 3);
    assert_eq!(api.name(), "emb");

    // Two batches, in order, each naming the model.
    let seen = double.requests();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.method, http::Method::POST);
        assert_eq!(s.target.path(), "/v1/embeddings");
        assert_eq!(s.json()["model"], "emb");
    }
    let sent: Vec<Value> = seen
        .iter()
        .flat_map(|s| s.json()["input"].as_array().unwrap().clone())
        .collect();
    assert_eq!(sent, texts.iter().map(|t| json!(t)).collect::<Vec<_>>());

    // The API's own error message comes back.
    let bad = EmbeddingsApi::new(&format!("{}/v1", double.base), "emb", None, None);
    let err = tokio::task::spawn_blocking(move || bad.embed(&["x"]))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("401") && err.contains("Incorrect API key provided"),
        "{err}"
    );
}

fn configure(pairs: &[(&str, &str)]) -> Result<Options, ConfigError> {
    let mut settings: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Keep MiniLM out of these tests unless one names an embedder.
    settings
        .entry("BERTH_EMBEDDING_MODEL".into())
        .or_insert_with(|| "none".into());
    let dir = tempfile::tempdir().unwrap();
    Options::configure(
        Partition {
            region: "ap-south-1".into(),
            account_id: "000000000000".into(),
        },
        dir.path(),
        &berth_memory::Settings::from_vars(&settings)?,
    )
}

fn invalid_key(r: Result<Options, ConfigError>) -> &'static str {
    match r {
        Err(ConfigError::Invalid { key, .. }) => key,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("configured"),
    }
}

#[test]
fn bedrock_is_configured_from_settings() {
    let creds = [
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut all = vec![
            ("BERTH_MEMORY_MODEL_PROVIDER", "bedrock-converse"),
            ("BERTH_MEMORY_MODEL", MODEL_ID),
        ];
        all.extend_from_slice(&creds);
        all.extend_from_slice(extra);
        configure(&all).unwrap().provider.unwrap()
    };
    let p = with(&[("BERTH_MEMORY_MODEL_REGION", "eu-west-3")]);
    assert_eq!(p.kind, ProviderKind::BedrockConverse);
    assert_eq!(
        p.base_url,
        "https://bedrock-runtime.eu-west-3.amazonaws.com"
    );
    let aws = p.aws.unwrap();
    assert_eq!(aws.region, "eu-west-3");
    assert_eq!(aws.session_token, None);
    // Region from the AWS environment, then from the server's partition.
    let p = with(&[("AWS_REGION", "us-west-2"), ("AWS_SESSION_TOKEN", "tok")]);
    assert_eq!(p.aws.as_ref().unwrap().region, "us-west-2");
    assert_eq!(p.aws.unwrap().session_token.as_deref(), Some("tok"));
    assert_eq!(
        with(&[]).base_url,
        "https://bedrock-runtime.ap-south-1.amazonaws.com"
    );
    let p = with(&[("BERTH_MEMORY_MODEL_URL", "http://127.0.0.1:9/")]);
    assert_eq!(p.base_url, "http://127.0.0.1:9/");
    // An API key replaces signing.
    let p = configure(&[
        ("BERTH_MEMORY_MODEL_PROVIDER", "bedrock-converse"),
        ("BERTH_MEMORY_MODEL", MODEL_ID),
        ("BERTH_MEMORY_MODEL_API_KEY", "key"),
    ])
    .unwrap()
    .provider
    .unwrap();
    assert!(p.aws.is_none() && p.api_key.is_some());
}

#[test]
fn other_providers_and_defaults() {
    // A bare URL means an OpenAI-compatible server, as it always did.
    let p = configure(&[
        ("BERTH_MEMORY_MODEL_URL", "http://127.0.0.1:9/v1"),
        ("BERTH_MEMORY_MODEL", "m"),
    ])
    .unwrap()
    .provider
    .unwrap();
    assert_eq!(p.kind, ProviderKind::OpenAiCompatible);
    let p = configure(&[
        ("BERTH_MEMORY_MODEL_PROVIDER", "anthropic"),
        ("BERTH_MEMORY_MODEL", "claude"),
    ])
    .unwrap()
    .provider
    .unwrap();
    assert_eq!(p.base_url, "https://api.anthropic.com");
    assert!(configure(&[]).unwrap().provider.is_none());
}

#[test]
fn invalid_settings_name_the_setting() {
    assert_eq!(
        invalid_key(configure(&[
            ("BERTH_MEMORY_MODEL_PROVIDER", "bogus"),
            ("BERTH_MEMORY_MODEL", "m")
        ])),
        "BERTH_MEMORY_MODEL_PROVIDER"
    );
    assert_eq!(
        invalid_key(configure(&[("BERTH_MEMORY_MODEL_PROVIDER", "openai")])),
        "BERTH_MEMORY_MODEL"
    );
    assert_eq!(
        invalid_key(configure(&[("BERTH_MEMORY_MODEL", "m")])),
        "BERTH_MEMORY_MODEL_PROVIDER"
    );
    assert_eq!(
        invalid_key(configure(&[
            ("BERTH_MEMORY_MODEL_PROVIDER", "bedrock-converse"),
            ("BERTH_MEMORY_MODEL", "m")
        ])),
        "AWS_ACCESS_KEY_ID"
    );
    assert_eq!(
        invalid_key(configure(&[
            ("BERTH_MEMORY_MODEL_URL", "ftp://x"),
            ("BERTH_MEMORY_MODEL", "m")
        ])),
        "BERTH_MEMORY_MODEL_URL"
    );
    assert_eq!(
        invalid_key(configure(&[("BERTH_MEMORY_EXTRACTION_DELAY_MS", "soon")])),
        "BERTH_MEMORY_EXTRACTION_DELAY_MS"
    );
    assert_eq!(
        invalid_key(configure(&[("BERTH_EMBEDDING_API_URL", "http://x/v1")])),
        "BERTH_EMBEDDING_API_URL"
    );
    let only_api = |extra: (&'static str, &'static str)| {
        let dir = tempfile::tempdir().unwrap();
        let settings: HashMap<String, String> = [("BERTH_EMBEDDING_API_URL", "http://x/v1"), extra]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::configure(
            Partition {
                region: "us-east-1".into(),
                account_id: "000000000000".into(),
            },
            dir.path(),
            &berth_memory::Settings::from_vars(&settings)?,
        )
    };
    assert_eq!(
        invalid_key(only_api(("BERTH_EMBEDDING_API_DIMS", "0"))),
        "BERTH_EMBEDDING_API_DIMS"
    );
    assert_eq!(
        invalid_key(only_api(("BERTH_EMBEDDING_API_DIMS", "8"))),
        "BERTH_EMBEDDING_API_MODEL"
    );
    let o = only_api(("BERTH_EMBEDDING_API_MODEL", "text-embedding-3-small")).unwrap();
    assert_eq!(o.embedder.unwrap().name(), "text-embedding-3-small");
}
