//! Decoding of S3 `aws-chunked` request bodies, with verification of per-chunk and trailer
//! signatures for the `STREAMING-AWS4-HMAC-SHA256-PAYLOAD*` variants.
//!
//! The encoding: each chunk is `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n`; a zero-size
//! chunk ends the data and is followed by optional trailers (`name:value\r\n`, for example
//! `x-amz-checksum-crc32:vyN5GA==`, and for signed trailers `x-amz-trailer-signature:<sig>`)
//! and an empty line. Chunk signatures chain: each signs the previous signature (the request's
//! own signature for the first chunk) and its data's SHA-256; the trailer signature continues
//! the chain over the canonical trailers. The signatures are computed by `aws-sigv4`, AWS's
//! signer, not by hand.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::http::Headers;
use bytes::{Bytes, BytesMut};
use subtle::ConstantTimeEq;

use crate::Error;

/// Longest chunk header or trailer line accepted. Real ones are under 100 bytes; the bound stops
/// a garbage body from being scanned whole for a line end.
const MAX_LINE: usize = 4096;

/// What is needed to check the chunk signatures of a signed streaming upload.
#[derive(Clone, Copy, Debug)]
pub struct ChunkSigning<'a> {
    /// The signing principal's secret access key.
    pub secret_access_key: &'a str,
    /// The credential scope's region.
    pub region: &'a str,
    /// The credential scope's service (`s3`).
    pub service: &'a str,
    /// The request's `x-amz-date` (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: &'a str,
    /// The request's own signature (the `Signature=` of its `Authorization` header), which seeds
    /// the chain.
    pub seed_signature: &'a str,
}

/// A decoded `aws-chunked` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The payload, chunk framing removed.
    pub body: Bytes,
    /// Trailers in the order sent, names lower-cased, values trimmed (the trailer signature is
    /// checked and not included).
    pub trailers: Vec<(String, String)>,
}

/// Decodes an `aws-chunked` body. With `signing`, every chunk must carry a signature continuing
/// the chain, and a signed trailer block must be present when `signed_trailer` is set.
pub fn decode(
    encoded: &Bytes,
    signing: Option<ChunkSigning<'_>>,
    signed_trailer: bool,
) -> Result<Decoded, Error> {
    let verifier = signing.map(Verifier::new).transpose()?;
    let mut previous = signing.map(|s| s.seed_signature.to_owned());
    // One allocation: the payload is at most the encoded size.
    let mut body = BytesMut::with_capacity(encoded.len());
    let mut pos = 0;
    loop {
        let line = read_line(encoded, &mut pos)?
            .ok_or_else(|| incomplete("the body ended before the final chunk"))?;
        let (size, signature) = parse_chunk_header(line)?;
        let end = pos
            .checked_add(size)
            .filter(|end| *end <= encoded.len())
            .ok_or_else(|| incomplete("the body ended inside a chunk"))?;
        let data = &encoded[pos..end];
        if let (Some(verifier), Some(prev)) = (&verifier, previous.as_mut()) {
            let provided = signature.ok_or_else(|| malformed("a chunk has no chunk-signature"))?;
            let expected = verifier.chunk(data, prev)?;
            check(&expected, provided)?;
            *prev = expected;
        }
        pos = end;
        if size == 0 {
            break;
        }
        body.extend_from_slice(data);
        if encoded.get(pos..pos + 2) != Some(b"\r\n".as_slice()) {
            return Err(malformed("a chunk's data is not followed by CRLF"));
        }
        pos += 2;
    }

    let mut trailers = Vec::new();
    let mut trailer_signature = None;
    // Trailers end with an empty line. Some clients omit that last CRLF; tolerate it.
    while let Some(line) = read_line(encoded, &mut pos)? {
        if line.is_empty() {
            break;
        }
        let line = std::str::from_utf8(line).map_err(|_| malformed("a trailer is not utf-8"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("a trailer has no ':'"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        if name == "x-amz-trailer-signature" {
            trailer_signature = Some(value);
        } else {
            trailers.push((name, value));
        }
    }
    if pos != encoded.len() {
        return Err(malformed("data follows the end of the chunked body"));
    }

    if let (Some(verifier), Some(prev)) = (&verifier, previous.as_ref())
        && signed_trailer
    {
        let provided = trailer_signature
            .as_deref()
            .ok_or_else(|| malformed("the trailers have no x-amz-trailer-signature"))?;
        let expected = verifier.trailer(&trailers, prev)?;
        check(&expected, provided)?;
    }
    Ok(Decoded {
        body: body.freeze(),
        trailers,
    })
}

/// Reads one CRLF-terminated line at `pos`; `None` at the end of the input.
fn read_line<'a>(encoded: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, Error> {
    if *pos >= encoded.len() {
        return Ok(None);
    }
    let window = &encoded[*pos..encoded.len().min(*pos + MAX_LINE + 2)];
    let len = window
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| {
            if window.len() < MAX_LINE {
                incomplete("the body ended inside a chunk header or trailer")
            } else {
                malformed("a chunk header or trailer line is too long")
            }
        })?;
    let line = &window[..len];
    *pos += len + 2;
    Ok(Some(line))
}

/// Parses `<hex size>[;chunk-signature=<sig>]`.
fn parse_chunk_header(line: &[u8]) -> Result<(usize, Option<&str>), Error> {
    let line = std::str::from_utf8(line).map_err(|_| malformed("a chunk header is not ascii"))?;
    let (size, extensions) = line.split_once(';').unwrap_or((line, ""));
    let size = size.trim();
    if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed("a chunk size is not a hexadecimal number"));
    }
    let size = usize::from_str_radix(size, 16)
        .map_err(|_| malformed("a chunk size is not a hexadecimal number"))?;
    let signature = extensions
        .split(';')
        .filter_map(|ext| ext.trim().split_once('='))
        .find(|(name, _)| name.trim() == "chunk-signature")
        .map(|(_, value)| value.trim());
    Ok((size, signature))
}

fn check(expected: &str, provided: &str) -> Result<(), Error> {
    // Constant time, so timing does not reveal how much of a forged signature was right.
    if bool::from(expected.as_bytes().ct_eq(provided.as_bytes())) {
        Ok(())
    } else {
        Err(Error::ChunkSignatureMismatch)
    }
}

struct Verifier {
    identity: Identity,
    region: String,
    service: String,
    time: SystemTime,
}

impl Verifier {
    fn new(s: ChunkSigning<'_>) -> Result<Self, Error> {
        Ok(Self {
            identity: Credentials::new("", s.secret_access_key, None, None, "berth-artifacts")
                .into(),
            region: s.region.to_owned(),
            service: s.service.to_owned(),
            time: parse_amz_date(s.amz_date)?,
        })
    }

    fn params(&self) -> Result<v4::SigningParams<'_, ()>, Error> {
        v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(&self.service)
            .time(self.time)
            .settings(())
            .build()
            .map_err(|_| Error::ChunkSignatureMismatch)
    }

    fn chunk(&self, data: &[u8], previous: &str) -> Result<String, Error> {
        let params = self.params()?;
        let out = v4::sign_chunk(&Bytes::copy_from_slice(data), previous, &params)
            .map_err(|_| Error::ChunkSignatureMismatch)?;
        Ok(out.signature().to_owned())
    }

    fn trailer(&self, trailers: &[(String, String)], previous: &str) -> Result<String, Error> {
        let params = self.params()?;
        let mut headers = Headers::new();
        for (name, value) in trailers {
            headers
                .try_insert(name.clone(), value.clone())
                .map_err(|_| malformed("a trailer is not a valid header"))?;
        }
        let out = v4::sign_trailer(&headers, previous, &params)
            .map_err(|_| Error::ChunkSignatureMismatch)?;
        Ok(out.signature().to_owned())
    }
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Result<SystemTime, Error> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, format)
        .map(|t| t.assume_utc().into())
        .map_err(|_| malformed("x-amz-date is not YYYYMMDDTHHMMSSZ"))
}

fn malformed(reason: &str) -> Error {
    Error::MalformedChunkedBody {
        reason: reason.to_owned(),
    }
}

fn incomplete(reason: &str) -> Error {
    Error::IncompleteBody {
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn enc(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn decodes_unsigned_with_trailer() {
        let d = decode(
            &enc(b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"),
            None,
            false,
        )
        .unwrap();
        assert_eq!(&d.body[..], b"hello world");
        assert_eq!(
            d.trailers,
            vec![("x-amz-checksum-crc32".into(), "DUoRhQ==".into())]
        );
    }

    #[test]
    fn decodes_without_trailers_and_tolerates_missing_final_crlf() {
        let d = decode(&enc(b"3\r\nabc\r\n0\r\n\r\n"), None, false).unwrap();
        assert_eq!(&d.body[..], b"abc");
        assert!(d.trailers.is_empty());
        let d = decode(&enc(b"3\r\nabc\r\n0\r\n"), None, false).unwrap();
        assert_eq!(&d.body[..], b"abc");
        let d = decode(&enc(b"0\r\n\r\n"), None, false).unwrap();
        assert!(d.body.is_empty());
    }

    #[test]
    fn rejects_malformed_bodies() {
        for (body, code) in [
            (&b"zz\r\nabc\r\n0\r\n\r\n"[..], "InvalidRequest"),
            (b"3\r\nabcd\r\n0\r\n\r\n", "InvalidRequest"),
            (b"10\r\nabc", "IncompleteBody"),
            (b"3\r\nabc\r\n", "IncompleteBody"),
            (b"3\r\nabc\r\n0\r\n\r\ntrailing", "InvalidRequest"),
            (b"3\r\nabc\r\n0\r\nno-colon\r\n\r\n", "InvalidRequest"),
            (b"", "IncompleteBody"),
            (b"fffffffffffffffffff\r\n", "InvalidRequest"),
        ] {
            let err = decode(&enc(body), None, false).unwrap_err();
            assert_eq!(
                err.s3_code(),
                code,
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
        }
        let long = [b"1".repeat(MAX_LINE + 10), b"\r\n".to_vec()].concat();
        assert_eq!(
            decode(&enc(&long), None, false).unwrap_err().s3_code(),
            "InvalidRequest"
        );
    }

    /// The worked example of AWS's "Signature calculations for the Authorization header:
    /// transferring payload in multiple chunks": 66560 bytes of 'a' in 64 KiB chunks.
    #[test]
    fn verifies_aws_documented_chunk_signatures() {
        let signing = ChunkSigning {
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "s3",
            amz_date: "20130524T000000Z",
            seed_signature: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        };
        let mut body = Vec::new();
        body.extend_from_slice(b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
        body.extend_from_slice(&[b'a'; 65536]);
        body.extend_from_slice(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
        let d = decode(&enc(&body), Some(signing), false).unwrap();
        assert_eq!(d.body.len(), 66560);

        // One flipped payload byte breaks the chain.
        let mut tampered = body.clone();
        tampered[200] = b'b';
        assert!(matches!(
            decode(&enc(&tampered), Some(signing), false),
            Err(Error::ChunkSignatureMismatch)
        ));
        // So does another seed (the request signature).
        let other_seed = ChunkSigning {
            seed_signature: "0000000000000000000000000000000000000000000000000000000000000000",
            ..signing
        };
        assert!(matches!(
            decode(&enc(&body), Some(other_seed), false),
            Err(Error::ChunkSignatureMismatch)
        ));
        // And a missing signature.
        let unsigned = b"3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(
            decode(&enc(unsigned), Some(signing), false)
                .unwrap_err()
                .s3_code(),
            "InvalidRequest"
        );
    }

    /// The worked example of AWS's "Signature calculation: transferring a payload in multiple
    /// chunks with trailing headers" (signed chunks and a signed CRC32C trailer).
    #[test]
    fn verifies_aws_documented_trailer_signature() {
        let signing = ChunkSigning {
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "s3",
            amz_date: "20130524T000000Z",
            seed_signature: "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        };
        let mut body = Vec::new();
        body.extend_from_slice(b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n");
        body.extend_from_slice(&[b'a'; 65536]);
        body.extend_from_slice(b"\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n");
        body.extend_from_slice(&[b'a'; 1024]);
        body.extend_from_slice(b"\r\n0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n");
        body.extend_from_slice(b"x-amz-checksum-crc32c:sOO8/Q==\r\n");
        body.extend_from_slice(b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n");
        let d = decode(&enc(&body), Some(signing), true).unwrap();
        assert_eq!(d.body.len(), 66560);
        assert_eq!(
            d.trailers,
            vec![("x-amz-checksum-crc32c".into(), "sOO8/Q==".into())]
        );

        let tampered = [
            &body[..body.len() - 120],
            &String::from_utf8_lossy(&body[body.len() - 120..])
                .replace("sOO8/Q==", "AAAAAA==")
                .into_bytes()[..],
        ]
        .concat();
        assert!(matches!(
            decode(&enc(&tampered), Some(signing), true),
            Err(Error::ChunkSignatureMismatch)
        ));
    }
}
