//! Per-version health on the invocation path, and its Prometheus exposition.
//!
//! The invoker's metering and health layers (`berth_runtime::invoker`) report each invocation to
//! `berth_control::Health` (an in-memory aggregate the controller flushes to the store every
//! tick); nothing here writes to the store.
//! `/metrics` in the Prometheus text format is served signed at `/berth/v1/metrics` and, for
//! scrapers that cannot sign, unauthenticated on its own listener ([`metrics_router`]).

use crate::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use berth_control::Control;
use berth_control::health::LATENCY_BOUNDS_MS;
use berth_store::HealthRow;
use std::fmt::Write as _;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition (format 0.0.4) of every series' totals since start.
pub fn render(totals: &[HealthRow]) -> String {
    let mut out = String::new();
    let labels = |r: &HealthRow| {
        format!(
            "runtime_id=\"{}\",endpoint=\"{}\",version=\"{}\"",
            escape(&r.runtime_id),
            escape(&r.endpoint),
            r.version
        )
    };
    let counter = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&HealthRow) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for r in totals {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(r), f(r));
        }
    };
    counter(
        &mut out,
        "berth_invocations_total",
        "Invocations answered, per endpoint and version.",
        &|r| r.invocations,
    );
    counter(
        &mut out,
        "berth_new_sessions_total",
        "Sessions routed to a version for the first time.",
        &|r| r.new_sessions,
    );
    let _ = writeln!(
        out,
        "# HELP berth_invocation_errors_total Failed invocations by kind: agent_5xx, runtime_client_424, timeout.\n# TYPE berth_invocation_errors_total counter"
    );
    for r in totals {
        for (kind, n) in [
            ("agent_5xx", r.errors_5xx),
            ("runtime_client_424", r.errors_424),
            ("timeout", r.timeouts),
        ] {
            let _ = writeln!(
                out,
                "berth_invocation_errors_total{{{},kind=\"{kind}\"}} {n}",
                labels(r)
            );
        }
    }
    let name = "berth_invocation_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Invocation latency until the response body ended.\n# TYPE {name} histogram"
    );
    for r in totals {
        let l = labels(r);
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BOUNDS_MS.iter().enumerate() {
            cumulative += r.latency_counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}_bucket{{{l},le=\"{}\"}} {cumulative}",
                *bound as f64 / 1000.0
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", r.invocations);
        let _ = writeln!(
            out,
            "{name}_sum{{{l}}} {}",
            r.latency_sum_ms as f64 / 1000.0
        );
        let _ = writeln!(out, "{name}_count{{{l}}} {}", r.invocations);
    }
    out
}

fn exposition(control: &Control) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render(&control.health().totals()),
    )
        .into_response()
}

async fn signed_metrics(State(s): State<AppState>) -> Response {
    exposition(&s.control)
}

/// `GET /berth/v1/metrics` on the main (signed) listener.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/berth/v1/metrics", axum::routing::get(signed_metrics))
}

/// `GET /metrics`, unauthenticated, for a separate metrics listener (Prometheus scrapers do
/// not sign requests). It shows only runtime ids, endpoint names and counts.
pub fn metrics_router(control: Control) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let control = control.clone();
            async move { exposition(&control) }
        }),
    )
}

/// Serves [`metrics_router`] on `listener` until `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    control: Control,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(control))
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
        let text = render(&[row]);
        assert!(text.contains("berth_invocations_total{runtime_id=\"rt-1\",endpoint=\"prod\\\"x\",version=\"2\"} 3"), "{text}");
        assert!(text.contains("kind=\"agent_5xx\"} 1"), "{text}");
        assert!(text.contains("le=\"0.001\"} 2"), "{text}");
        assert!(text.contains("le=\"0.01\"} 3"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("berth_invocation_duration_seconds_sum{runtime_id=\"rt-1\",endpoint=\"prod\\\"x\",version=\"2\"} 0.012"), "{text}");
    }
}
