//! The AWS event-stream framing (`application/vnd.amazon.eventstream`), as botocore's
//! `EventStream` parser reads it: each message is
//! `total length (u32) | headers length (u32) | CRC32 of those 8 bytes | headers | payload |
//! CRC32 of everything before`, big-endian, with string headers
//! (`name length (u8) | name | 7 | value length (u16) | value`).
//!
//! The server writes event streams (InvokeAgentRuntimeCommand); the CLI (`berth exec`) reads
//! them with [`Decoder`].

use crc::{CRC_32_ISO_HDLC, Crc};

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);
/// Header value type 7: a UTF-8 string.
const STRING: u8 = 7;
/// The content type of an event-stream response.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// One message with string headers. Header names are at most 255 bytes and values at most
/// 65535 (every header Berth sends is a short constant).
pub fn message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let headers_len: usize = headers
        .iter()
        .map(|(k, v)| 1 + k.len().min(255) + 1 + 2 + v.len().min(65_535))
        .sum();
    let total = 12 + headers_len + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(headers_len as u32).to_be_bytes());
    let prelude_crc = CRC32.checksum(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    for (k, v) in headers {
        let (k, v) = (
            &k.as_bytes()[..k.len().min(255)],
            &v.as_bytes()[..v.len().min(65_535)],
        );
        out.push(k.len() as u8);
        out.extend_from_slice(k);
        out.push(STRING);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(payload);
    let crc = CRC32.checksum(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// An event of the stream's member `event_type` (`:message-type event`), JSON payload.
pub fn event(event_type: &str, payload: &serde_json::Value) -> Vec<u8> {
    message(
        &[
            (":message-type", "event"),
            (":event-type", event_type),
            (":content-type", "application/json"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// An exception event (`:message-type exception`) of the modelled member `exception_type`
/// (`validationException`, `runtimeClientError`...), JSON payload.
pub fn exception(exception_type: &str, payload: &serde_json::Value) -> Vec<u8> {
    message(
        &[
            (":message-type", "exception"),
            (":exception-type", exception_type),
            (":content-type", "application/json"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// One decoded message: its string headers and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Headers whose value is a string (other types are skipped).
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Message {
    /// The value of a string header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why bytes are not an event stream.
#[derive(Debug, thiserror::Error)]
#[error("malformed event-stream message: {0}")]
pub struct DecodeError(&'static str);

/// Reads messages out of bytes that arrive in arbitrary pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

/// The largest message accepted (AWS caps event-stream messages at 16 MiB).
const MAX_MESSAGE: usize = 16 * 1024 * 1024 + 16;

impl Decoder {
    /// Adds bytes as they arrive.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if self.buf.len() < 12 {
            return Ok(None);
        }
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let total = be(&self.buf[0..4]) as usize;
        let headers_len = be(&self.buf[4..8]) as usize;
        if be(&self.buf[8..12]) != CRC32.checksum(&self.buf[0..8]) {
            return Err(DecodeError("prelude checksum"));
        }
        if !(16..=MAX_MESSAGE).contains(&total) || headers_len > total - 16 {
            return Err(DecodeError("lengths"));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let m: Vec<u8> = self.buf.drain(..total).collect();
        if be(&m[total - 4..]) != CRC32.checksum(&m[..total - 4]) {
            return Err(DecodeError("message checksum"));
        }
        let mut headers = Vec::new();
        let mut h = &m[12..12 + headers_len];
        while !h.is_empty() {
            let n = h[0] as usize;
            let name = h.get(1..1 + n).ok_or(DecodeError("header name"))?;
            let kind = *h.get(1 + n).ok_or(DecodeError("header type"))?;
            let rest = &h[2 + n..];
            let (value, used) = match kind {
                0 | 1 => (None, 0),
                2 => (None, 1),
                3 => (None, 2),
                4 => (None, 4),
                5 | 8 => (None, 8),
                9 => (None, 16),
                6 | 7 => {
                    let len = rest
                        .get(0..2)
                        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                        .ok_or(DecodeError("header value"))?;
                    let v = rest.get(2..2 + len).ok_or(DecodeError("header value"))?;
                    ((kind == 7).then_some(v), 2 + len)
                }
                _ => return Err(DecodeError("header type")),
            };
            if rest.len() < used {
                return Err(DecodeError("header value"));
            }
            if let Some(v) = value {
                headers.push((
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
            h = &rest[used..];
        }
        let payload = m[12 + headers_len..total - 4].to_vec();
        Ok(Some(Message { headers, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout_and_checksums() {
        let m = message(&[("a", "bc")], b"xyz");
        // 12 prelude + (1+1+1+2+2) headers + 3 payload + 4 crc
        assert_eq!(m.len(), 26);
        assert_eq!(&m[0..4], &26u32.to_be_bytes());
        assert_eq!(&m[4..8], &7u32.to_be_bytes());
        assert_eq!(&m[8..12], &CRC32.checksum(&m[0..8]).to_be_bytes());
        assert_eq!(&m[12..19], &[1, b'a', 7, 0, 2, b'b', b'c']);
        assert_eq!(&m[19..22], b"xyz");
        assert_eq!(&m[22..26], &CRC32.checksum(&m[..22]).to_be_bytes());
        // The well-known CRC-32 check value, so the polynomial is the one AWS uses.
        assert_eq!(CRC32.checksum(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn decoder_reads_what_the_encoder_wrote_in_any_pieces() {
        let mut bytes = event("chunk", &serde_json::json!({"contentStart": {}}));
        bytes.extend(exception(
            "runtimeClientError",
            &serde_json::json!({"message": "x"}),
        ));
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in bytes.chunks(5) {
            d.push(b);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].header(":event-type"), Some("chunk"));
        assert_eq!(got[0].payload, br#"{"contentStart":{}}"#);
        assert_eq!(got[1].header(":exception-type"), Some("runtimeClientError"));
        let mut bad = event("chunk", &serde_json::json!({}));
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut d = Decoder::default();
        d.push(&bad);
        assert!(d.next_message().is_err());
    }
}
