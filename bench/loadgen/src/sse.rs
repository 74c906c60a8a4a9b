//! Server-sent events through a path: time to first byte, and whether events arrive one by one.
//!
//! Streams are requested one after another on one kept-alive connection (a latency probe, not a
//! load test). Each event's arrival is the moment the body chunk completing it was read. An event
//! counts as *merged* when it completed in the same chunk as the event before it, or arrived less
//! than a tenth of the agent's interval after it: either way something between the agent and the
//! client held it back and released it together with another. (A buffering hop releases held
//! events back to back, microseconds apart; a tenth of the interval leaves room for ordinary
//! scheduling jitter, which delays one event but does not bunch them up.)

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::json;

use crate::client::{Connection, Template};
use crate::stats::{Latency, Summary};

/// Settings of an SSE probe.
pub struct SseConfig {
    /// Streams requested, one after another.
    pub count: u64,
    /// Events per stream.
    pub events: u64,
    /// Agent's pause between events.
    pub interval: Duration,
    /// Agent's extra silent pause after the first event.
    pub gap: Duration,
    /// Each event's size.
    pub event_bytes: u64,
    /// Longest a stream may take in all.
    pub timeout: Duration,
    /// Report every event's arrival time.
    pub trace: bool,
    /// Ask in Anthropic's Messages shape for this model (`"stream": true` and the count in
    /// `events`), as a model upstream behind Berth's gateway is asked; `None`: the agent's
    /// `"stream": N`.
    pub model: Option<String>,
}

/// Result of an SSE probe; latencies in microseconds.
#[derive(Debug, Default, Serialize)]
pub struct SseReport {
    /// Streams requested.
    pub streams: u64,
    /// Streams that delivered every event and ended cleanly.
    pub complete: u64,
    /// Streams that failed (status, transport, timeout, missing events).
    pub errors: u64,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// Send to first body byte.
    pub ttfb: Summary,
    /// Events received in all.
    pub events: u64,
    /// Events that arrived merged with the previous one (see the module docs).
    pub merged: u64,
    /// Longest silence between two consecutive events of a stream, milliseconds.
    pub longest_silence_ms: f64,
    /// Longest whole stream, milliseconds.
    pub longest_stream_ms: f64,
    /// With `--trace`: per stream, each event's arrival in ms after the request was sent, and
    /// the body chunk (read) it completed in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<Vec<(f64, u64)>>,
}

/// Runs the probe.
pub async fn run(template: Template, cfg: SseConfig) -> anyhow::Result<SseReport> {
    let mut report = SseReport::default();
    let mut ttfb = Latency::new();
    let body = Bytes::from(stream_body(&cfg).to_string());
    let template = Template {
        body,
        accept: "text/event-stream",
        ..template
    };
    let mut conn: Option<Connection> = None;
    for _ in 0..cfg.count {
        report.streams += 1;
        let built = template.build()?;
        if conn.is_none() {
            conn = Some(Connection::open(template.target.addr).await?);
        }
        let c = conn.as_mut().context("connection")?;
        let outcome = tokio::time::timeout(cfg.timeout, one_stream(c, built.request, &cfg)).await;
        let failure = match outcome {
            Ok(Ok(s)) => {
                ttfb.record(s.ttfb);
                report.events += s.events;
                report.merged += s.merged;
                report.longest_silence_ms = report
                    .longest_silence_ms
                    .max(s.longest_silence.as_secs_f64() * 1e3);
                report.longest_stream_ms =
                    report.longest_stream_ms.max(s.total.as_secs_f64() * 1e3);
                if cfg.trace {
                    report.trace.push(s.arrivals.clone());
                }
                if s.events == cfg.events {
                    report.complete += 1;
                    None
                } else {
                    Some(format!(
                        "stream ended after {} of {} events",
                        s.events, cfg.events
                    ))
                }
            }
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some(format!("stream not finished within {:?}", cfg.timeout)),
        };
        if let Some(message) = failure {
            report.errors += 1;
            if report.error_samples.len() < 5 {
                report.error_samples.push(message);
            }
            conn = None;
        }
    }
    report.ttfb = ttfb.summary();
    Ok(report)
}

/// The request body asking the fast agent for a stream.
fn stream_body(cfg: &SseConfig) -> serde_json::Value {
    let mut body = json!({
        "stream": cfg.events,
        "interval_ms": cfg.interval.as_millis() as u64,
        "gap_ms": cfg.gap.as_millis() as u64,
        "event_bytes": cfg.event_bytes,
    });
    if let Some(model) = &cfg.model {
        body["model"] = model.as_str().into();
        body["stream"] = true.into();
        body["events"] = cfg.events.into();
    }
    body
}

struct Observed {
    arrivals: Vec<(f64, u64)>,
    ttfb: Duration,
    events: u64,
    merged: u64,
    longest_silence: Duration,
    total: Duration,
}

async fn one_stream(
    conn: &mut Connection,
    request: http::Request<http_body_util::Full<Bytes>>,
    cfg: &SseConfig,
) -> anyhow::Result<Observed> {
    let sent = Instant::now();
    let response = conn.send(request).await?;
    if response.status() != 200 {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        anyhow::bail!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut arrivals: Vec<(Instant, u64)> = Vec::new(); // (when, chunk number)
    let mut chunk = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the stream")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let now = Instant::now();
        first_byte.get_or_insert(now);
        chunk += 1;
        pending.extend_from_slice(&data);
        // Every blank line ends one event.
        while let Some(end) = find(&pending, b"\n\n") {
            pending.drain(..end + 2);
            arrivals.push((now, chunk));
        }
    }
    let done = Instant::now();
    let merge_window = cfg.interval / 10;
    let mut merged = 0;
    let mut longest_silence = Duration::ZERO;
    for pair in arrivals.windows(2) {
        let ((t0, c0), (t1, c1)) = (pair[0], pair[1]);
        let silence = t1 - t0;
        longest_silence = longest_silence.max(silence);
        if c0 == c1 || (!merge_window.is_zero() && silence < merge_window) {
            merged += 1;
        }
    }
    Ok(Observed {
        arrivals: arrivals
            .iter()
            .map(|(t, c)| ((*t - sent).as_secs_f64() * 1e3, *c))
            .collect(),
        ttfb: first_byte.unwrap_or(done) - sent,
        events: arrivals.len() as u64,
        merged,
        longest_silence,
        total: done - sent,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::{SseConfig, find, stream_body};
    use std::time::Duration;

    #[test]
    fn stream_body_in_either_shape() {
        let mut cfg = SseConfig {
            count: 1,
            events: 5,
            interval: Duration::from_millis(2),
            gap: Duration::ZERO,
            event_bytes: 64,
            timeout: Duration::from_secs(1),
            trace: false,
            model: None,
        };
        let agent = stream_body(&cfg);
        assert_eq!(agent["stream"], 5);
        assert!(agent.get("model").is_none() && agent.get("events").is_none());
        cfg.model = Some("bench-model".into());
        let messages = stream_body(&cfg);
        assert_eq!(messages["model"], "bench-model");
        assert_eq!(messages["stream"], true);
        assert_eq!(messages["events"], 5);
        assert_eq!(messages["interval_ms"], 2);
    }

    #[test]
    fn find_locates_event_ends() {
        assert_eq!(find(b"data: {}\n\ndata", b"\n\n"), Some(8));
        assert_eq!(find(b"data: {}\n", b"\n\n"), None);
    }
}
