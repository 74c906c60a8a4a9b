//! `sign` against botocore's signatures and against `verify`.

// Tests fail by panicking; unwrap says where.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use berth_auth::{
    Credentials, Error, Payload, Principal, StaticKeys, parse_authorization, sign,
    sign_with_session_token, verify,
};
use http::{HeaderValue, Request, Uri};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Document {
    fixtures: Vec<Fixture>,
}

#[derive(Debug, Deserialize)]
struct Fixture {
    name: String,
    service: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    signed_at: u64,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body_b64: String,
}

fn header<'a>(f: &'a Fixture, name: &str) -> Option<&'a str> {
    f.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// What the server sees: the request target in origin form, the headers and the body.
fn verify_signed(
    req: &Request<Vec<u8>>,
    creds: &Credentials,
    at: SystemTime,
) -> Result<berth_auth::Verified, Error> {
    let keys: StaticKeys = [Principal::root(creds)].into_iter().collect();
    let target: Uri = req
        .uri()
        .path_and_query()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    verify(req.method(), &target, req.headers(), req.body(), &keys, at)
}

#[test]
fn sign_reproduces_botocore_signatures() {
    let doc: Document =
        serde_json::from_str(include_str!("fixtures/botocore_signed.json")).unwrap();
    let mut compared = 0;
    for f in &doc.fixtures {
        let Some(authorization) = header(f, "authorization") else {
            continue; // presigned
        };
        let content_sha = header(f, "x-amz-content-sha256");
        if content_sha.is_some_and(|v| v.starts_with("STREAMING-")) {
            continue; // sign() always signs the body
        }
        // Rebuild the request botocore signed: only the headers it signed (others were added
        // after signing), minus the ones sign() adds itself.
        let signed = parse_authorization(
            &[(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(authorization).unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .unwrap()
        .signed_headers;
        let mut builder = Request::builder()
            .method(f.method.as_str())
            .uri(f.url.as_str());
        for (name, value) in &f.headers {
            let lower = name.to_ascii_lowercase();
            if signed.contains(&lower)
                && !["x-amz-date", "x-amz-content-sha256", "x-amz-security-token"]
                    .contains(&lower.as_str())
            {
                builder = builder.header(lower, value.as_str());
            }
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(&f.body_b64)
            .unwrap();
        let mut req = builder.body(body).unwrap();
        let creds = Credentials {
            access_key_id: f.access_key_id.clone(),
            secret_access_key: f.secret_access_key.clone(),
        };
        let at = UNIX_EPOCH + Duration::from_secs(f.signed_at);
        sign_with_session_token(
            &mut req,
            &creds,
            f.session_token.as_deref(),
            &f.region,
            &f.service,
            at,
        )
        .unwrap();
        assert_eq!(
            req.headers()
                .get("x-amz-security-token")
                .map(|v| v.to_str().unwrap()),
            f.session_token.as_deref(),
            "{}",
            f.name
        );
        assert_eq!(
            req.headers()["authorization"].to_str().unwrap(),
            authorization,
            "{}",
            f.name
        );
        if let Some(sha) = content_sha {
            assert_eq!(req.headers()["x-amz-content-sha256"], sha, "{}", f.name);
        }
        compared += 1;
    }
    // Including the two signed with session tokens.
    assert!(compared >= 14, "only {compared} fixtures compared");
}

#[test]
fn signed_agentcore_requests_verify() {
    let creds = Credentials::generate();
    let mut req = Request::builder()
        .method("POST")
        .uri(
            "http://127.0.0.1:8080/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A000000000000%3Aruntime%2Fa-0123456789/invocations?qualifier=DEFAULT",
        )
        .header("content-type", "application/json")
        .header("x-amzn-bedrock-agentcore-runtime-session-id", "  s-1   spaced\tout ")
        .header("x-multi", "a")
        .header("x-multi", "b  c")
        .header("user-agent", "berth-cli/0.1")
        .body("{\"prompt\":\"héllo ☃\"}".as_bytes().to_vec())
        .unwrap();
    sign(&mut req, &creds, "us-east-1", "bedrock-agentcore", now()).unwrap();

    assert!(req.headers().contains_key("x-amz-date"));
    assert!(!req.headers().contains_key("x-amz-content-sha256"));
    assert_eq!(req.headers()["host"], "127.0.0.1:8080");
    assert_eq!(
        req.headers()["x-amzn-bedrock-agentcore-runtime-session-id"],
        "s-1 spaced out"
    );
    let auth = parse_authorization(req.headers()).unwrap();
    assert_eq!(
        auth.signed_headers,
        [
            "content-type",
            "host",
            "x-amz-date",
            "x-amzn-bedrock-agentcore-runtime-session-id",
            "x-multi"
        ]
    );

    let verified = verify_signed(&req, &creds, now() + Duration::from_secs(60)).unwrap();
    assert_eq!(verified.service, "bedrock-agentcore");
    assert_eq!(verified.region, "us-east-1");
    assert_eq!(verified.principal.access_key_id, creds.access_key_id);
    assert_eq!(verified.payload, Payload::Signed);

    req.body_mut()[0] = b'[';
    let err = verify_signed(&req, &creds, now()).unwrap_err();
    assert_eq!(err.aws_code(), "InvalidSignatureException");
}

#[test]
fn signed_s3_requests_verify() {
    let creds = Credentials::generate();
    let mut put = Request::builder()
        .method("PUT")
        .uri("https://artifacts.local/artifacts/dir%20one/na%C3%AFve%20%E2%98%83.zip")
        .header("content-type", "application/zip")
        .body(b"zip bytes".to_vec())
        .unwrap();
    sign(&mut put, &creds, "us-east-1", "s3", now()).unwrap();
    assert_eq!(
        put.headers()["x-amz-content-sha256"],
        hex_sha256(b"zip bytes").as_str()
    );
    assert_eq!(put.headers()["host"], "artifacts.local");
    let verified = verify_signed(&put, &creds, now()).unwrap();
    assert_eq!(verified.service, "s3");
    assert_eq!(verified.payload, Payload::Signed);

    let mut list = Request::builder()
        .method("GET")
        .uri("http://127.0.0.1:9000/artifacts?list-type=2&prefix=dir%20one%2F&max-keys=5")
        .body(Vec::new())
        .unwrap();
    sign(&mut list, &creds, "eu-west-1", "s3", now()).unwrap();
    let verified = verify_signed(&list, &creds, now()).unwrap();
    assert_eq!(verified.region, "eu-west-1");

    // The body hash header is checked against the body.
    put.body_mut().push(b'!');
    let err = verify_signed(&put, &creds, now()).unwrap_err();
    assert_eq!(err.aws_code(), "XAmzContentSHA256Mismatch");
    assert_eq!(err.http_status(), 400);
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn re_signing_replaces_the_previous_signature() {
    let creds = Credentials::generate();
    let mut req = Request::builder()
        .method("GET")
        .uri("http://127.0.0.1:8080/runtimes/")
        .body(Vec::new())
        .unwrap();
    sign(&mut req, &creds, "us-east-1", "s3", now()).unwrap();
    let later = now() + Duration::from_secs(3600);
    sign(&mut req, &creds, "us-east-1", "bedrock-agentcore", later).unwrap();
    assert_eq!(req.headers().get_all("authorization").iter().count(), 1);
    assert_eq!(req.headers().get_all("x-amz-date").iter().count(), 1);
    assert!(!req.headers().contains_key("x-amz-content-sha256"));
    verify_signed(&req, &creds, later).unwrap();
}

#[test]
fn signing_needs_a_host() {
    let creds = Credentials::generate();
    let mut req = Request::builder()
        .method("GET")
        .uri("/runtimes/")
        .body(Vec::new())
        .unwrap();
    let err = sign(&mut req, &creds, "us-east-1", "bedrock-agentcore", now()).unwrap_err();
    assert!(matches!(err, Error::Signing { .. }), "{err:?}");

    // An explicit host header is enough, and is what gets signed.
    req.headers_mut()
        .insert("host", HeaderValue::from_static("berth.internal:7000"));
    sign(&mut req, &creds, "us-east-1", "bedrock-agentcore", now()).unwrap();
    verify_signed(&req, &creds, now()).unwrap();
}

#[test]
fn default_ports_are_left_out_of_the_host() {
    let creds = Credentials::generate();
    for (uri, host) in [
        (
            "https://berth.example.com:443/runtimes/",
            "berth.example.com",
        ),
        ("http://berth.example.com:80/runtimes/", "berth.example.com"),
        (
            "http://berth.example.com:443/runtimes/",
            "berth.example.com:443",
        ),
    ] {
        let mut req = Request::builder().uri(uri).body(Vec::new()).unwrap();
        sign(&mut req, &creds, "us-east-1", "bedrock-agentcore", now()).unwrap();
        assert_eq!(req.headers()["host"], host, "{uri}");
        verify_signed(&req, &creds, now()).unwrap();
    }
}
