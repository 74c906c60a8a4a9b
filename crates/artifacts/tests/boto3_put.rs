//! Replays PutObject requests captured from boto3 1.44.5 (`fixtures/boto3_put_object.json`, made
//! by `fixtures/capture_boto3.py`) through the wire decoding and into the store: plain bodies
//! with a CRC32 header over HTTP, and `aws-chunked` bodies with checksum trailers over HTTPS,
//! small and 10 MiB.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use berth_artifacts::wire::{self, decode_key};
use berth_artifacts::{ArtifactStore, ChecksumAlgorithm};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    botocore_version: String,
    fixtures: Vec<Fixture>,
}

#[derive(Deserialize)]
struct Fixture {
    tls: bool,
    key: String,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body_b64: Option<String>,
    decoded_b64: Option<String>,
    decoded_len: Option<usize>,
    chunk_lines: Option<Vec<String>>,
    trailer_block: Option<String>,
}

fn load() -> File {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/boto3_put_object.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The deterministic content of the large captures (`decoded_rule` in the fixture).
fn big_body(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + 3) % 251) as u8).collect()
}

impl Fixture {
    fn headers(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            map.append(
                HeaderName::try_from(name.as_str()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn decoded(&self) -> Vec<u8> {
        match (&self.decoded_b64, self.decoded_len) {
            (Some(b64), _) => BASE64.decode(b64).unwrap(),
            (None, Some(len)) => big_body(len),
            _ => panic!("fixture {} has no expected body", self.key),
        }
    }

    /// The body bytes as the server received them (HTTP transfer coding already removed).
    fn wire_body(&self) -> Vec<u8> {
        if let Some(b64) = &self.body_b64 {
            return BASE64.decode(b64).unwrap();
        }
        let decoded = self.decoded();
        let Some(lines) = &self.chunk_lines else {
            return decoded;
        };
        // Rebuild the aws-chunked framing around the generated content.
        let mut out = Vec::new();
        let mut offset = 0;
        for line in lines {
            let size = usize::from_str_radix(line.split(';').next().unwrap(), 16).unwrap();
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
            if size == 0 {
                break;
            }
            out.extend_from_slice(&decoded[offset..offset + size]);
            out.extend_from_slice(b"\r\n");
            offset += size;
        }
        assert_eq!(offset, decoded.len());
        out.extend_from_slice(self.trailer_block.as_deref().unwrap().as_bytes());
        out
    }
}

#[test]
fn fixture_covers_both_transports() {
    let file = load();
    assert_eq!(file.botocore_version, "1.44.5");
    assert!(
        file.fixtures
            .iter()
            .any(|f| f.tls && f.chunk_lines.is_some())
    );
    assert!(
        file.fixtures
            .iter()
            .any(|f| !f.tls && f.decoded_len.is_some())
    );
    let chunked = file
        .fixtures
        .iter()
        .filter(|f| {
            f.headers()
                .get("x-amz-content-sha256")
                .is_some_and(|v| v == "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        })
        .count();
    assert_eq!(chunked, 3);
}

#[tokio::test]
async fn boto3_uploads_decode_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open_local(dir.path()).await.unwrap();
    store.create_bucket("artifacts", None).await.unwrap();
    for f in load().fixtures {
        assert_eq!(f.method, "PUT");
        let headers = f.headers();
        let (bucket, raw_key) = f.target.trim_start_matches('/').split_once('/').unwrap();
        assert_eq!(bucket, "artifacts");
        let key = decode_key(raw_key).unwrap();
        assert_eq!(key, f.key);

        let put = wire::parse_put(&headers, Bytes::from(f.wire_body()), None)
            .unwrap_or_else(|e| panic!("{}: {e}", f.key));
        let expected = f.decoded();
        assert_eq!(put.body.len(), expected.len(), "{}", f.key);
        assert!(put.body[..] == expected[..], "{}", f.key);
        let sent = put
            .meta
            .checksum
            .clone()
            .expect("boto3 always sends a checksum");
        let stored = store
            .put_object(bucket, &key, put.body, put.meta)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.key));
        // The stored checksum is the one boto3 sent, which the store verified.
        assert_eq!(stored.checksum.as_ref(), Some(&sent));
        assert_eq!(stored.size as usize, expected.len());
        assert_eq!(stored.etag, format!("\"{:x}\"", md5_of(&expected)));
        let resp = wire::put_response_headers(&stored);
        assert_eq!(resp[sent.algorithm.header_name()], sent.value.as_str());
        assert_eq!(resp["x-amz-checksum-type"], "FULL_OBJECT");

        if f.key.contains("sha256") {
            assert_eq!(sent.algorithm, ChecksumAlgorithm::Sha256);
            assert_eq!(stored.content_type, "application/zip");
            assert_eq!(stored.user_metadata["team"], "berth");
        } else {
            assert_eq!(sent.algorithm, ChecksumAlgorithm::Crc32);
            assert_eq!(stored.content_type, "binary/octet-stream");
        }
        assert_eq!(
            stored.headers.content_encoding, None,
            "aws-chunked is not stored"
        );
    }
}

#[test]
fn corrupted_captures_are_refused() {
    for f in load().fixtures.into_iter().filter(|f| f.body_b64.is_some()) {
        let headers = f.headers();
        let mut body = f.wire_body();
        // Flip one payload byte: the checksum (header or trailer) no longer matches. The wire
        // layer does not hash; the store does, so run the check the store runs.
        let i = body.iter().position(|b| *b == b'h').unwrap();
        body[i] = b'j';
        let put = wire::parse_put(&headers, Bytes::from(body), None).unwrap();
        let sent = put.meta.checksum.unwrap();
        let actual = berth_artifacts::Checksum::compute(sent.algorithm, &put.body);
        assert_ne!(actual.value, sent.value, "{}", f.key);

        // Truncate a chunked body: refused before the store sees it.
        if headers.contains_key("x-amz-trailer") {
            let body = f.wire_body();
            let err = wire::parse_put(
                &headers,
                Bytes::copy_from_slice(&body[..body.len() - 20]),
                None,
            )
            .unwrap_err();
            assert!(
                matches!(
                    err.s3_code(),
                    "IncompleteBody" | "InvalidRequest" | "InvalidArgument"
                ),
                "{}: {err}",
                f.key
            );
        }
    }
}

fn md5_of(data: &[u8]) -> u128 {
    use md5::{Digest, Md5};
    u128::from_be_bytes(Md5::digest(data).into())
}
