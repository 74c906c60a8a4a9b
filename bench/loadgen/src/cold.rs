//! New session to first byte, one session at a time, through Berth.
//!
//! Every request carries a fresh session id, so Berth has to place it in a sandbox: a pre-started
//! one from the warm pool if there is one, else a new one (start, wait for `/ping`, invoke). The
//! connection to Berth is kept alive across sessions, as a real client's is, so TCP set-up is not
//! counted. The fast agent reports its own age (`uptime_ms`) in each answer: an agent older than
//! the request that reached it was started before the request was sent, i.e. a warm-pool hit.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::Method;
use serde::Serialize;

use crate::client::{Connection, Session, Template, receive};
use crate::rate::stop_path;
use crate::stats::{Latency, Summary};

/// Settings of a new-session probe.
pub struct ColdConfig {
    /// Sessions started.
    pub count: u64,
    /// Pause after each session (lets a warm pool refill before the next sample).
    pub pause: Duration,
    /// Stop each session after its sample (outside the timing).
    pub stop: bool,
    /// Longest one request may take.
    pub timeout: Duration,
}

/// Result; latencies in microseconds.
#[derive(Debug, Default, Serialize)]
pub struct ColdReport {
    /// Sessions attempted.
    pub sessions: u64,
    /// Answered 200.
    pub ok: u64,
    /// Failed.
    pub errors: u64,
    /// A few error messages.
    pub error_samples: Vec<String>,
    /// Send to first body byte, every successful sample.
    pub ttfb: Summary,
    /// Send to last body byte.
    pub total: Summary,
    /// Samples the agent's age shows were served by a pre-started sandbox.
    pub warm_hits: u64,
    /// First-byte latency of those.
    pub ttfb_warm: Summary,
    /// Samples served by an agent started for the request.
    pub cold_starts: u64,
    /// First-byte latency of those.
    pub ttfb_cold: Summary,
    /// Samples whose answer carried no `uptime_ms` (not the fast agent).
    pub unclassified: u64,
    /// Session ids started and still running (when not stopped).
    pub session_ids: Vec<String>,
}

/// Runs the probe with fresh session ids from `template` (its session policy is overridden).
pub async fn run(template: Template, cfg: ColdConfig) -> anyhow::Result<ColdReport> {
    let template = Template {
        session: Session::New,
        ..template
    };
    let stop = stop_path(&template.target.path_and_query);
    let mut report = ColdReport::default();
    let (mut ttfb, mut total, mut warm, mut cold) = (
        Latency::new(),
        Latency::new(),
        Latency::new(),
        Latency::new(),
    );
    let mut conn: Option<Connection> = None;
    for i in 0..cfg.count {
        if i > 0 && !cfg.pause.is_zero() {
            // Spacing between samples, not synchronisation: the warm pool refills in the
            // background and each sample reports whether it found a pre-started sandbox.
            tokio::time::sleep(cfg.pause).await;
        }
        report.sessions += 1;
        let built = template.build()?;
        let session_id = built.session_id.clone().context("a session id")?;
        if conn.is_none() {
            conn = Some(Connection::open(template.target.addr).await?);
        }
        let c = conn.as_mut().context("connection")?;
        let sent = Instant::now();
        let outcome = tokio::time::timeout(cfg.timeout, async {
            receive(c.send(built.request).await?).await
        })
        .await;
        let failure = match outcome {
            Ok(Ok(r)) if r.status == 200 => {
                report.ok += 1;
                let first = r.first_byte - sent;
                ttfb.record(first);
                total.record(r.done - sent);
                match agent_uptime_ms(&r.body) {
                    Some(age) if age as f64 > first.as_secs_f64() * 1e3 + 1.0 => {
                        report.warm_hits += 1;
                        warm.record(first);
                    }
                    Some(_) => {
                        report.cold_starts += 1;
                        cold.record(first);
                    }
                    None => report.unclassified += 1,
                }
                None
            }
            Ok(Ok(r)) => Some(format!(
                "status {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body[..r.body.len().min(400)])
            )),
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some(format!("no answer within {:?}", cfg.timeout)),
        };
        if let Some(message) = failure {
            report.errors += 1;
            if report.error_samples.len() < 5 {
                report.error_samples.push(message);
            }
            conn = None;
            continue;
        }
        match (&stop, cfg.stop) {
            (Some(path), true) => {
                let c = conn.as_mut().context("connection")?;
                let built =
                    template.build_for(Method::POST, path, Some(session_id), Bytes::new())?;
                let r = receive(c.send(built.request).await?).await?;
                if r.status != 200 {
                    anyhow::bail!("stopping a session answered {}", r.status);
                }
            }
            _ => report.session_ids.push(session_id),
        }
    }
    report.ttfb = ttfb.summary();
    report.total = total.summary();
    report.ttfb_warm = warm.summary();
    report.ttfb_cold = cold.summary();
    Ok(report)
}

/// `uptime_ms` from a fast-agent answer.
fn agent_uptime_ms(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("uptime_ms")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::agent_uptime_ms;

    #[test]
    fn uptime_is_read_from_fast_agent_answers_only() {
        assert_eq!(
            agent_uptime_ms(br#"{"ok":true,"uptime_ms":42,"pad":""}"#),
            Some(42)
        );
        assert_eq!(agent_uptime_ms(br#"{"result":"hi"}"#), None);
        assert_eq!(agent_uptime_ms(b"not json"), None);
    }
}
