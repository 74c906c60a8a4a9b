//! `InvokeAgentRuntimeCommand`: a shell command run next to a session's agent, its output
//! streamed back as AWS event-stream frames (`berth_api::eventstream`) the way the service model
//! describes `InvokeAgentRuntimeCommandStreamOutput`: a `chunk` event with `contentStart`, then
//! `contentDelta` events (`stdout` or `stderr`, in the order the output was read), then
//! `contentStop` (`exitCode`, `status` `COMPLETED` or `TIMED_OUT`); a failure after the stream
//! began is an exception event (`runtimeClientError`).

use crate::backend::{Error, ExecEvent, ExecRequest, ExecStream};
use crate::session::BodyStream;
use berth_api::eventstream;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

/// The model's default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The documented range of `timeout`, in seconds.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<i64> = 1..=3600;

/// One command, as the caller sent it.
#[derive(Debug, Clone)]
pub struct Command {
    /// Run as `/bin/sh -c COMMAND`.
    pub command: String,
    /// Killed (its process group) when it runs longer.
    pub timeout: Duration,
}

impl Command {
    /// What the session backend runs.
    pub fn request(&self) -> ExecRequest {
        ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), self.command.clone()],
            timeout: self.timeout,
        }
    }
}

/// The command's output as event-stream frames: `contentStart` first, `contentStop` last.
pub fn frames(stream: ExecStream) -> BodyStream {
    let start = futures::stream::once(async { Ok(chunk(json!({"contentStart": {}}))) });
    let mut out = Utf8::default();
    let mut err = Utf8::default();
    let body = stream.filter_map(move |item| {
        let frame = match item {
            Ok(ExecEvent::Stdout(b)) => out
                .push(&b)
                .map(|s| chunk(json!({"contentDelta": {"stdout": s}}))),
            Ok(ExecEvent::Stderr(b)) => err
                .push(&b)
                .map(|s| chunk(json!({"contentDelta": {"stderr": s}}))),
            Ok(ExecEvent::Exit(exit)) => {
                // Bytes of a character cut off by the end: what is left, replaced.
                let mut frames = Vec::new();
                if let Some(s) = out.finish() {
                    frames.extend(chunk(json!({"contentDelta": {"stdout": s}})));
                }
                if let Some(s) = err.finish() {
                    frames.extend(chunk(json!({"contentDelta": {"stderr": s}})));
                }
                let status = if exit.timed_out {
                    "TIMED_OUT"
                } else {
                    "COMPLETED"
                };
                frames.extend(chunk(
                    json!({"contentStop": {"exitCode": exit.code, "status": status}}),
                ));
                Some(Bytes::from(frames))
            }
            Err(e) => Some(failure(&e)),
        };
        futures::future::ready(frame.map(Ok))
    });
    start.chain(body).boxed()
}

/// A `chunk` event.
fn chunk(payload: serde_json::Value) -> Bytes {
    Bytes::from(eventstream::event("chunk", &payload))
}

/// A failure mid-stream: the modelled `runtimeClientError` exception event.
fn failure(e: &Error) -> Bytes {
    Bytes::from(eventstream::exception(
        "runtimeClientError",
        &json!({"message": format!("the command failed: {e}")}),
    ))
}

/// Turns a byte stream into UTF-8 text without splitting a character across two deltas (the
/// model's `stdout`/`stderr` are strings); invalid bytes become U+FFFD.
#[derive(Default)]
struct Utf8 {
    pending: Vec<u8>,
}

impl Utf8 {
    /// The text complete so far, `None` when there is none yet.
    fn push(&mut self, bytes: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    text.push_str(s);
                    self.pending.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    text.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(n) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + n);
                        }
                        None => {
                            // An incomplete character at the end: keep it for the next read.
                            self.pending.drain(..valid);
                            break;
                        }
                    }
                }
            }
        }
        (!text.is_empty()).then_some(text)
    }

    /// What is left at the end.
    fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.is_empty()).then(|| String::from_utf8_lossy(&rest).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_are_never_split_across_deltas() {
        let mut u = Utf8::default();
        let euro = "€".as_bytes();
        assert_eq!(u.push(&[b'a', euro[0]]).as_deref(), Some("a"));
        assert_eq!(u.push(&euro[1..2]), None);
        assert_eq!(u.push(&[euro[2], b'b']).as_deref(), Some("€b"));
        assert_eq!(u.push(&[0xff, b'c']).as_deref(), Some("\u{fffd}c"));
        assert_eq!(u.push(&euro[..1]), None);
        assert_eq!(u.finish().as_deref(), Some("\u{fffd}"));
    }
}
