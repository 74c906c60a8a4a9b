//! Per-version health on the invocation path, and its Prometheus exposition.
//!
//! The invoker's metering and health layers (`berth_runtime::invoker`) report each invocation to
//! `berth_control::Health` (an in-memory aggregate the controller flushes to the store every
//! tick); nothing here writes to the store.
//! `/metrics` in the OpenMetrics text format (through `prometheus_client`) is served signed at `/berth/v1/metrics` and, for
//! scrapers that cannot sign, unauthenticated on its own listener ([`metrics_router`]).

use crate::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use berth_control::health::LATENCY_BOUNDS_MS;
use berth_store::HealthRow;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;

/// The OpenMetrics text format `prometheus_client` writes (Prometheus scrapes it natively).
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `prometheus_client` writes label values as given; OpenMetrics wants `\`, `"` and newlines
/// escaped.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One series' labels: `runtime_id`, `endpoint`, `version`.
fn labels(r: &HealthRow) -> [(&'static str, String); 3] {
    [
        ("runtime_id", escape(&r.runtime_id)),
        ("endpoint", escape(&r.endpoint)),
        ("version", r.version.to_string()),
    ]
}

/// A series' latency histogram as recorded by `Health` (fixed bounds, the last bucket open).
struct Latency<'a>(&'a HealthRow);

impl EncodeMetric for Latency<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let r = self.0;
        let mut buckets = Vec::with_capacity(LATENCY_BOUNDS_MS.len() + 1);
        let mut seen = 0u64;
        for (i, bound) in LATENCY_BOUNDS_MS.iter().enumerate() {
            let n = r.latency_counts.get(i).copied().unwrap_or(0);
            seen += n;
            buckets.push((*bound as f64 / 1000.0, n));
        }
        // `f64::MAX` is `prometheus_client`'s +Inf bucket, which holds every invocation.
        buckets.push((f64::MAX, r.invocations.saturating_sub(seen)));
        encoder.encode_histogram::<NoLabelSet>(
            r.latency_sum_ms as f64 / 1000.0,
            r.invocations,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A counter family: name (without `_total`), help, and its value in a series.
type Counter = (&'static str, &'static str, fn(&HealthRow) -> u64);

/// Every series' totals since start, read from `Health` at scrape time. The invocation path
/// only updates `Health`'s counters; the exposition costs nothing until someone scrapes.
#[derive(Debug)]
struct Totals(Vec<HealthRow>);

impl Collector for Totals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters: [Counter; 2] = [
            (
                "berth_invocations",
                "Invocations answered, per endpoint and version.",
                |r| r.invocations,
            ),
            (
                "berth_new_sessions",
                "Sessions routed to a version for the first time.",
                |r| r.new_sessions,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for r in &self.0 {
                ConstCounter::new(value(r)).encode(family.encode_family(&labels(r))?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_invocation_errors",
            "Failed invocations by kind: agent_5xx, runtime_client_424, timeout.",
            None,
            MetricType::Counter,
        )?;
        for r in &self.0 {
            for (kind, n) in [
                ("agent_5xx", r.errors_5xx),
                ("runtime_client_424", r.errors_424),
                ("timeout", r.timeouts),
            ] {
                let [a, b, c] = labels(r);
                let set = [a, b, c, ("kind", kind.to_owned())];
                ConstCounter::new(n).encode(family.encode_family(&set)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_invocation_duration_seconds",
            "Invocation latency until the response body ended.",
            None,
            MetricType::Histogram,
        )?;
        for r in &self.0 {
            Latency(r).encode(family.encode_family(&labels(r))?)?;
        }
        Ok(())
    }
}

/// A counter family of the export: name, help, and its value per signal.
type ExportFamily = (&'static str, &'static str, [(&'static str, u64); 2]);

/// The process's OTLP export counters (`berth_trace::export`), per signal.
#[derive(Debug)]
struct ExportTotals(std::sync::Arc<berth_trace::export::ExportStats>);

impl Collector for ExportTotals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.0;
        let families: [ExportFamily; 3] = [
            (
                "berth_trace_exported",
                "Spans and log records an OTLP collector acknowledged.",
                [
                    ("spans", s.spans_exported.load(Relaxed)),
                    ("logs", s.logs_exported.load(Relaxed)),
                ],
            ),
            (
                "berth_trace_export_dropped",
                "Spans and log records given up on: refused by the collector with a status that is not retryable, or rejected in a partial success.",
                [
                    ("spans", s.spans_dropped.load(Relaxed)),
                    ("logs", s.logs_dropped.load(Relaxed)),
                ],
            ),
            (
                "berth_trace_export_failed_requests",
                "Export requests that failed and were retried (transport errors, 429, 502, 503, 504).",
                [
                    ("spans", s.spans_failed_requests.load(Relaxed)),
                    ("logs", s.logs_failed_requests.load(Relaxed)),
                ],
            ),
        ];
        for (name, help, values) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (signal, n) in values {
                ConstCounter::new(n).encode(family.encode_family(&[("signal", signal)])?)?;
            }
        }
        Ok(())
    }
}

/// The OpenMetrics text exposition of every series' totals since start: counters
/// `berth_invocations_total`, `berth_new_sessions_total`, `berth_invocation_errors_total` (with
/// `kind`) and the histogram `berth_invocation_duration_seconds`, each labelled `runtime_id`,
/// `endpoint`, `version`; the OTLP export counters `berth_trace_exported_total`,
/// `berth_trace_export_dropped_total` and `berth_trace_export_failed_requests_total`, each
/// labelled `signal` (`spans`, `logs`). `more` adds further families (GenAI usage, live
/// sessions; `metrics_genai`).
pub(crate) fn render(totals: Vec<HealthRow>, more: Vec<Box<dyn Collector>>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Totals(totals)));
    registry.register_collector(Box::new(ExportTotals(berth_trace::export::export_stats())));
    for c in more {
        registry.register_collector(c);
    }
    let mut out = String::new();
    // Writing into a String cannot fail, and the collector's encoding fails only on a writer error.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}

/// Everything `/metrics` shows: per-version health from `Control`, GenAI usage from the trace
/// store (a failed read leaves its families out and is logged; the rest is still served) and
/// the live sessions.
async fn exposition(state: &AppState) -> Response {
    let mut more: Vec<Box<dyn Collector>> = Vec::with_capacity(4);
    match state.traces.usage_totals().await {
        Ok(rows) => more.push(Box::new(crate::metrics_genai::GenAi {
            rows,
            prices: (*state.prices).clone(),
        })),
        Err(e) => tracing::warn!(error = %e, "reading genai usage for metrics"),
    }
    match state.scores.score_totals().await {
        Ok(rows) => more.push(Box::new(crate::metrics_genai::EvalScores(rows))),
        Err(e) => tracing::warn!(error = %e, "reading evaluation score totals for metrics"),
    }
    more.push(Box::new(crate::metrics_genai::ActiveSessions::of(
        &state.sessions.list(None),
    )));
    if let Some(m) = &state.gateway_meter {
        more.push(Box::new(m.collector()));
    }
    more.push(Box::new(crate::metrics_genai::Refused(
        state.control.health().refusal_totals(),
    )));
    (
        [(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)],
        render(state.control.health().totals(), more),
    )
        .into_response()
}

async fn signed_metrics(State(s): State<AppState>) -> Response {
    exposition(&s).await
}

/// `GET /berth/v1/metrics` on the main (signed) listener.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/berth/v1/metrics", axum::routing::get(signed_metrics))
}

/// `GET /metrics`, unauthenticated, for a separate metrics listener (Prometheus scrapers do
/// not sign requests). It shows only runtime ids, endpoint names, model ids and counts.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = state.clone();
            async move { exposition(&state).await }
        }),
    )
}

/// Serves [`metrics_router`] on `listener` until `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_version_labels_and_a_cumulative_histogram() {
        let mut counts = vec![0; LATENCY_BOUNDS_MS.len() + 1];
        counts[0] = 2;
        counts[5] = 1;
        let row = HealthRow {
            runtime_id: "rt-1".into(),
            endpoint: "prod\"x".into(),
            version: 2,
            invocations: 3,
            errors_5xx: 1,
            new_sessions: 2,
            latency_sum_ms: 12,
            latency_counts: counts,
            ..HealthRow::default()
        };
        let text = render(vec![row], Vec::new());
        let l = "runtime_id=\"rt-1\",endpoint=\"prod\\\"x\",version=\"2\"";
        for line in [
            "# TYPE berth_invocations counter".to_owned(),
            format!("berth_invocations_total{{{l}}} 3"),
            format!("berth_new_sessions_total{{{l}}} 2"),
            format!("berth_invocation_errors_total{{{l},kind=\"agent_5xx\"}} 1"),
            format!("berth_invocation_errors_total{{{l},kind=\"timeout\"}} 0"),
            "# TYPE berth_invocation_duration_seconds histogram".to_owned(),
            format!("berth_invocation_duration_seconds_bucket{{le=\"0.001\",{l}}} 2"),
            format!("berth_invocation_duration_seconds_bucket{{le=\"0.01\",{l}}} 3"),
            format!("berth_invocation_duration_seconds_bucket{{le=\"+Inf\",{l}}} 3"),
            format!("berth_invocation_duration_seconds_sum{{{l}}} 0.012"),
            format!("berth_invocation_duration_seconds_count{{{l}}} 3"),
            "# TYPE berth_trace_exported counter".to_owned(),
            "berth_trace_exported_total{signal=\"spans\"} 0".to_owned(),
            "berth_trace_export_dropped_total{signal=\"logs\"} 0".to_owned(),
            "berth_trace_export_failed_requests_total{signal=\"spans\"} 0".to_owned(),
            "# EOF".to_owned(),
        ] {
            assert!(
                text.lines().any(|t| t == line),
                "no line {line:?} in\n{text}"
            );
        }
    }
}
