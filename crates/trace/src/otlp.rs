//! OTLP/HTTP export requests (traces and logs), protobuf or JSON, optionally gzipped, decoded
//! into stored [`Span`]s and [`LogRecord`]s under an [`Attribution`] the caller decides.
//! Responses follow the OTLP/HTTP spec: an empty `Export*ServiceResponse` in the request's
//! encoding, or a `google.rpc.Status` for a body that cannot be decoded.

use crate::{Attribution, Error, LogRecord, Span};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Map, Value, json};
use std::io::Read;

/// The encodings OTLP/HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a `Content-Type`; `None` for one OTLP does not define (a 415).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Self::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => "application/x-protobuf",
            Self::Json => "application/json",
        }
    }

    /// The empty success response (`Export*ServiceResponse` without `partial_success`).
    pub fn empty_response(self) -> Vec<u8> {
        match self {
            Self::Protobuf => Vec::new(),
            Self::Json => b"{}".to_vec(),
        }
    }

    /// A `google.rpc.Status` with `INVALID_ARGUMENT` (3) and `message`.
    pub fn bad_request(self, message: &str) -> Vec<u8> {
        match self {
            Self::Protobuf => RpcStatus {
                code: 3,
                message: message.to_owned(),
            }
            .encode_to_vec(),
            Self::Json => json!({ "code": 3, "message": message })
                .to_string()
                .into_bytes(),
        }
    }
}

/// `google.rpc.Status` without details.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The body with its `Content-Encoding` undone (`gzip` or `identity`), at most `limit` bytes.
pub fn decompress(
    body: &[u8],
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    match content_encoding.map(str::trim) {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            let mut dec = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
            dec.read_to_end(&mut out)
                .map_err(|e| Error::Malformed(format!("gzip: {e}")))?;
            if out.len() > limit {
                return Err(Error::Malformed(format!(
                    "the decompressed body exceeds the {limit}-byte limit"
                )));
            }
            Ok(out)
        }
        Some(other) => Err(Error::Malformed(format!(
            "unsupported content encoding {other:?}"
        ))),
    }
}

fn malformed(e: impl std::fmt::Display) -> Error {
    Error::Malformed(e.to_string())
}

/// Decodes a `/v1/traces` body into spans attributed to `who`.
pub fn decode_traces(body: &[u8], enc: Encoding, who: &Attribution) -> Result<Vec<Span>, Error> {
    let req: ExportTraceServiceRequest = match enc {
        Encoding::Protobuf => Message::decode(body).map_err(malformed)?,
        Encoding::Json => serde_json::from_slice(body).map_err(malformed)?,
    };
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = attrs(
            rs.resource
                .as_ref()
                .map(|r| &r.attributes[..])
                .unwrap_or(&[]),
        );
        let service = service_name(&resource);
        for ss in rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for s in ss.spans {
                let status = s.status.unwrap_or_default();
                out.push(Span {
                    trace_id: trace_id(&s.trace_id)?
                        .ok_or_else(|| malformed("a span without a trace id"))?,
                    span_id: span_id(&s.span_id)?
                        .ok_or_else(|| malformed("a span without a span id"))?,
                    parent_span_id: span_id(&s.parent_span_id)?,
                    name: s.name,
                    kind: kind(s.kind).to_owned(),
                    start_ns: nanos(s.start_time_unix_nano),
                    end_ns: nanos(s.end_time_unix_nano.max(s.start_time_unix_nano)),
                    status_code: match status.code {
                        1 => "OK",
                        2 => "ERROR",
                        _ => "UNSET",
                    }
                    .to_owned(),
                    status_message: status.message,
                    scope: scope.clone(),
                    attributes: attrs(&s.attributes),
                    resource: resource.clone(),
                    events: Value::Array(
                        s.events
                            .iter()
                            .map(|e| {
                                json!({
                                    "name": e.name,
                                    "timeNs": nanos(e.time_unix_nano),
                                    "attributes": attrs(&e.attributes),
                                })
                            })
                            .collect(),
                    ),
                    service_name: service.clone(),
                    attribution: who.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// Decodes a `/v1/logs` body into log records attributed to `who`.
pub fn decode_logs(body: &[u8], enc: Encoding, who: &Attribution) -> Result<Vec<LogRecord>, Error> {
    let req: ExportLogsServiceRequest = match enc {
        Encoding::Protobuf => Message::decode(body).map_err(malformed)?,
        Encoding::Json => serde_json::from_slice(body).map_err(malformed)?,
    };
    let mut out = Vec::new();
    for rl in req.resource_logs {
        let resource = attrs(
            rl.resource
                .as_ref()
                .map(|r| &r.attributes[..])
                .unwrap_or(&[]),
        );
        let service = service_name(&resource);
        for sl in rl.scope_logs {
            let scope = sl
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for l in sl.log_records {
                let time = if l.time_unix_nano != 0 {
                    l.time_unix_nano
                } else {
                    l.observed_time_unix_nano
                };
                out.push(LogRecord {
                    trace_id: trace_id(&l.trace_id)?,
                    span_id: span_id(&l.span_id)?,
                    time_ns: nanos(time),
                    severity_number: l.severity_number,
                    severity_text: l.severity_text,
                    body: l.body.as_ref().map(any_value).unwrap_or(Value::Null),
                    attributes: attrs(&l.attributes),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    service_name: service.clone(),
                    attribution: who.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn nanos(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A 16-byte trace id as hex; empty or all-zero is none, any other length is malformed.
fn trace_id(b: &[u8]) -> Result<Option<String>, Error> {
    id(b, 16, "trace")
}

fn span_id(b: &[u8]) -> Result<Option<String>, Error> {
    id(b, 8, "span")
}

fn id(b: &[u8], len: usize, what: &str) -> Result<Option<String>, Error> {
    if b.is_empty() || b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    if b.len() != len {
        return Err(malformed(format!(
            "a {what} id of {} bytes (must be {len})",
            b.len()
        )));
    }
    Ok(Some(hex::encode(b)))
}

fn kind(k: i32) -> &'static str {
    match k {
        1 => "INTERNAL",
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

fn service_name(resource: &Value) -> String {
    resource
        .get("service.name")
        .and_then(Value::as_str)
        .unwrap_or("unknown_service")
        .to_owned()
}

/// Key-values as a flat JSON object (a repeated key keeps its last value).
fn attrs(kvs: &[KeyValue]) -> Value {
    let mut m = Map::new();
    for kv in kvs {
        m.insert(
            kv.key.clone(),
            kv.value.as_ref().map(any_value).unwrap_or(Value::Null),
        );
    }
    Value::Object(m)
}

fn any_value(v: &AnyValue) -> Value {
    use any_value::Value as V;
    match &v.value {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::from(*i),
        Some(V::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        Some(V::ArrayValue(a)) => Value::Array(a.values.iter().map(any_value).collect()),
        Some(V::KvlistValue(kv)) => attrs(&kv.values),
        Some(V::BytesValue(b)) => Value::String(hex::encode(b)),
        #[allow(unreachable_patterns)]
        Some(_) => Value::Null,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn who() -> Attribution {
        Attribution {
            runtime_id: "rt".into(),
            version: 1,
            endpoint: "DEFAULT".into(),
            session_id: Some("s".into()),
            actor: None,
        }
    }

    #[test]
    fn json_export_uses_hex_ids_and_string_int64s() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop.DEFAULT"}}]},
          "scopeSpans":[{"scope":{"name":"strands.telemetry.tracer"},"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"chat","kind":3,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000500000000",
            "attributes":[{"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}}],
            "status":{"code":2,"message":"boom"}}]}]}]}"#;
        let spans = decode_traces(body, Encoding::Json, &who()).unwrap();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(s.span_id, "eee19b7ec3c1b174");
        assert_eq!(s.kind, "CLIENT");
        assert_eq!(s.duration_ns(), 500_000_000);
        assert_eq!(s.status_code, "ERROR");
        assert_eq!(s.attributes["gen_ai.usage.input_tokens"], json!(12));
        assert_eq!(s.service_name, "shop.DEFAULT");
        assert_eq!(s.scope, "strands.telemetry.tracer");
    }

    #[test]
    fn protobuf_and_gzip_round_trip_and_garbage_is_malformed() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PSpan};
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![PSpan {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "invoke_agent".into(),
                        start_time_unix_nano: 10,
                        end_time_unix_nano: 30,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let raw = req.encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let zipped = gz.finish().unwrap();
        let body = decompress(&zipped, Some("gzip"), 1 << 20).unwrap();
        let spans = decode_traces(&body, Encoding::Protobuf, &who()).unwrap();
        assert_eq!(spans[0].trace_id, "01".repeat(16));
        assert_eq!(spans[0].duration_ns(), 20);
        assert_eq!(spans[0].service_name, "unknown_service");
        assert!(matches!(
            decode_traces(b"\xff\xff\xff", Encoding::Protobuf, &who()),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode_traces(b"{not json", Encoding::Json, &who()),
            Err(Error::Malformed(_))
        ));
        // A gzip bomb is cut at the limit.
        assert!(decompress(&zipped, Some("gzip"), 4).is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type("application/json; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }
}
