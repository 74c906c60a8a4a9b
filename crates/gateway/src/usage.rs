//! Token usage read from upstream answers as they pass, without holding a byte back.
//!
//! Each API puts usage somewhere else: a JSON answer's `usage` (Anthropic `input_tokens`/
//! `output_tokens`, OpenAI `prompt_tokens`/`completion_tokens`, Converse `inputTokens`/
//! `outputTokens`), Anthropic's stream in `message_start.message.usage` and the cumulative
//! `message_delta.usage`, OpenAI's stream in its last chunk, ConverseStream in its `metadata`
//! event, InvokeModel in `x-amzn-bedrock-*-token-count` headers and its stream in each chunk's
//! `amazon-bedrock-invocationMetrics`. Counts only grow within one answer (streams repeat
//! cumulative totals), so each count keeps the largest value seen.

use base64::Engine;
use berth_api::eventstream::Decoder;
use http::HeaderMap;
use serde_json::Value;

/// What one call used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    /// The model the upstream says answered.
    pub response_model: Option<String>,
}

/// The most of a JSON answer kept to read its usage (larger answers are passed on unread).
const MAX_JSON: usize = 8 << 20;

/// Reads usage out of an answer's bytes as they stream past.
pub enum Tap {
    Json(Vec<u8>),
    Sse {
        line: Vec<u8>,
        usage: Usage,
    },
    EventStream {
        decoder: Decoder,
        usage: Usage,
    },
    /// Bytes that stopped parsing: the rest passes unread.
    Off(Usage),
}

impl Tap {
    /// A tap for an answer of `content_type`.
    pub fn new(content_type: &str) -> Self {
        let ct = content_type.to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            Tap::Sse {
                line: Vec::new(),
                usage: Usage::default(),
            }
        } else if ct.starts_with("application/vnd.amazon.eventstream") {
            Tap::EventStream {
                decoder: Decoder::default(),
                usage: Usage::default(),
            }
        } else {
            Tap::Json(Vec::new())
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        match self {
            Tap::Json(buf) => {
                if buf.len() + chunk.len() <= MAX_JSON {
                    buf.extend_from_slice(chunk);
                } else {
                    *self = Tap::Off(Usage::default());
                }
            }
            Tap::Sse { line, usage } => {
                for &b in chunk {
                    if b == b'\n' {
                        sse_line(line, usage);
                        line.clear();
                    } else if line.len() < MAX_JSON {
                        line.push(b);
                    }
                }
            }
            Tap::EventStream { decoder, usage } => {
                decoder.push(chunk);
                loop {
                    let m = match decoder.next_message() {
                        Ok(Some(m)) => m,
                        Ok(None) => break,
                        Err(_) => {
                            *self = Tap::Off(std::mem::take(usage));
                            return;
                        }
                    };
                    if !mentions(&m.payload, b"usage")
                        && !mentions(&m.payload, b"\"bytes\"")
                        && !mentions(&m.payload, b"invocationMetrics")
                    {
                        continue;
                    }
                    let Ok(v) = serde_json::from_slice::<Value>(&m.payload) else {
                        continue;
                    };
                    read_usage(&v, usage);
                    // InvokeModelWithResponseStream: the model's own JSON, base64 in `bytes`.
                    if let Some(inner) = v
                        .get("bytes")
                        .and_then(Value::as_str)
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    {
                        read_usage(&inner, usage);
                    }
                }
            }
            Tap::Off(_) => {}
        }
    }

    /// The usage seen, with what the answer's headers add.
    pub fn finish(self, headers: &HeaderMap) -> Usage {
        let mut usage = match self {
            Tap::Json(buf) => {
                let mut u = Usage::default();
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    read_usage(&v, &mut u);
                }
                u
            }
            Tap::Sse {
                mut line,
                mut usage,
            } => {
                sse_line(&mut line, &mut usage);
                usage
            }
            Tap::EventStream { usage, .. } | Tap::Off(usage) => usage,
        };
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        max_into(
            &mut usage.input_tokens,
            header("x-amzn-bedrock-input-token-count"),
        );
        max_into(
            &mut usage.output_tokens,
            header("x-amzn-bedrock-output-token-count"),
        );
        usage
    }
}

fn sse_line(line: &mut Vec<u8>, usage: &mut Usage) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let Some(data) = line.strip_prefix(b"data:") else {
        return;
    };
    // Most events carry text only: parse just those that can hold what is counted.
    if !mentions(data, b"usage")
        && (usage.response_model.is_some() || !mentions(data, b"\"model\""))
    {
        return;
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii()) {
        read_usage(&v, usage);
    }
}

fn mentions(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn max_into(slot: &mut Option<u64>, v: Option<u64>) {
    if let Some(v) = v {
        *slot = Some(slot.map_or(v, |s| s.max(v)));
    }
}

fn num(obj: &Value, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| {
        let mut v = obj;
        for part in k.split('.') {
            v = v.get(part)?;
        }
        v.as_u64()
    })
}

/// Reads every place an API puts usage in one JSON value.
fn read_usage(v: &Value, u: &mut Usage) {
    for holder in [
        v.get("usage"),
        v.get("message").and_then(|m| m.get("usage")),
        v.get("response").and_then(|m| m.get("usage")),
    ]
    .into_iter()
    .flatten()
    {
        max_into(
            &mut u.input_tokens,
            num(holder, &["input_tokens", "prompt_tokens", "inputTokens"]),
        );
        max_into(
            &mut u.output_tokens,
            num(
                holder,
                &["output_tokens", "completion_tokens", "outputTokens"],
            ),
        );
        max_into(
            &mut u.cache_read_tokens,
            num(
                holder,
                &[
                    "cache_read_input_tokens",
                    "cacheReadInputTokens",
                    "prompt_tokens_details.cached_tokens",
                    "input_tokens_details.cached_tokens",
                ],
            ),
        );
        max_into(
            &mut u.cache_write_tokens,
            num(
                holder,
                &["cache_creation_input_tokens", "cacheWriteInputTokens"],
            ),
        );
    }
    if let Some(m) = v.get("amazon-bedrock-invocationMetrics") {
        max_into(&mut u.input_tokens, num(m, &["inputTokenCount"]));
        max_into(&mut u.output_tokens, num(m, &["outputTokenCount"]));
    }
    let model = v
        .get("model")
        .or_else(|| v.get("message").and_then(|m| m.get("model")))
        .or_else(|| v.get("response").and_then(|m| m.get("model")))
        .and_then(Value::as_str);
    if let Some(m) = model.filter(|m| !m.is_empty())
        && u.response_model.is_none()
    {
        u.response_model = Some(m.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(ct: &str, parts: &[&[u8]]) -> Usage {
        let mut t = Tap::new(ct);
        for p in parts {
            t.push(p);
        }
        t.finish(&HeaderMap::new())
    }

    #[test]
    fn anthropic_streams_count_their_start_and_cumulative_deltas() {
        let body = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_read_input_tokens\":3}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n";
        // Split mid-line: the tap must not depend on chunk boundaries.
        let (a, b) = body.split_at(40);
        let u = tap("text/event-stream; charset=utf-8", &[a, b]);
        assert_eq!(u.input_tokens, Some(25));
        assert_eq!(u.output_tokens, Some(15));
        assert_eq!(u.cache_read_tokens, Some(3));
        assert_eq!(u.response_model.as_deref(), Some("claude-x"));
    }

    #[test]
    fn openai_and_converse_answers() {
        let u = tap(
            "application/json",
            &[br#"{"model":"gpt","usage":{"prompt_tokens":7,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}}"#],
        );
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.cache_read_tokens),
            (Some(7), Some(2), Some(4))
        );
        let u = tap(
            "text/event-stream",
            &[b"data: {\"choices\":[{\"delta\":{}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n"],
        );
        assert_eq!((u.input_tokens, u.output_tokens), (Some(9), Some(3)));
        let u = tap(
            "application/json",
            &[br#"{"output":{},"usage":{"inputTokens":11,"outputTokens":5,"totalTokens":16}}"#],
        );
        assert_eq!((u.input_tokens, u.output_tokens), (Some(11), Some(5)));
    }

    #[test]
    fn converse_stream_metadata_and_invoke_headers() {
        let mut bytes =
            berth_api::eventstream::event("messageStart", &serde_json::json!({"role":"assistant"}));
        bytes.extend(berth_api::eventstream::event(
            "metadata",
            &serde_json::json!({"usage":{"inputTokens":30,"outputTokens":8},"metrics":{"latencyMs":1}}),
        ));
        let (a, b) = bytes.split_at(17);
        let u = tap("application/vnd.amazon.eventstream", &[a, b]);
        assert_eq!((u.input_tokens, u.output_tokens), (Some(30), Some(8)));
        let mut h = HeaderMap::new();
        h.insert("x-amzn-bedrock-input-token-count", "12".parse().unwrap());
        h.insert("x-amzn-bedrock-output-token-count", "4".parse().unwrap());
        let u = Tap::new("application/json").finish(&h);
        assert_eq!((u.input_tokens, u.output_tokens), (Some(12), Some(4)));
    }
}
