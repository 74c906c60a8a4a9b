//! Per-version health on the invocation path, and its Prometheus exposition.
//!
//! The data plane reports each invocation to `berth_control::Health` (an in-memory aggregate
//! the controller flushes to the store every tick); nothing here writes to the store.
//! `/metrics` in the Prometheus text format is served signed at `/berth/v1/metrics` and, for
//! scrapers that cannot sign, unauthenticated on its own listener ([`metrics_router`]).

use crate::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use berth_control::Control;
use berth_control::health::{LATENCY_BOUNDS_MS, Outcome};
use berth_runtime::session::{BodyStream, Error as SessionError};
use berth_store::HealthRow;
use futures::StreamExt;
use std::fmt::Write as _;
use std::time::Instant;

/// One invocation being observed; records itself when dropped (the response body finished,
/// failed, or the client went away), so streamed answers count their full duration. Dropped
/// before an outcome was known (the request was abandoned, or a path forgot to report), it
/// counts as a RuntimeClientError rather than as a success.
pub(crate) struct Observed {
    control: Control,
    runtime_id: String,
    endpoint: String,
    version: u32,
    started: Instant,
    outcome: Option<Outcome>,
}

impl Observed {
    /// Starts timing an invocation of `version` through `endpoint`.
    pub(crate) fn start(control: &Control, runtime_id: &str, endpoint: &str, version: u32) -> Self {
        Self {
            control: control.clone(),
            runtime_id: runtime_id.to_owned(),
            endpoint: endpoint.to_owned(),
            version,
            started: Instant::now(),
            outcome: None,
        }
    }

    /// Records a failure to reach the agent (the value is dropped, and so recorded, here).
    pub(crate) fn failed(mut self, e: &SessionError) {
        self.outcome = Some(outcome_of(e));
    }

    /// Wraps the agent's response body: a 5xx status or a failure mid-body is an error.
    pub(crate) fn body(mut self, status: u16, stream: BodyStream) -> BodyStream {
        self.outcome = Some(Outcome::of_status(status));
        let mut observed = self;
        stream
            .map(move |item| {
                // Borrow the whole value, not just the field, so the closure owns `observed`
                // and it is dropped (recorded) when the body is.
                let o = &mut observed;
                if item.is_err() {
                    o.outcome = Some(Outcome::AgentError);
                }
                item
            })
            .boxed()
    }
}

fn outcome_of(e: &SessionError) -> Outcome {
    match e {
        SessionError::StartTimeout(_) => Outcome::Timeout,
        _ => Outcome::RuntimeClient,
    }
}

/// Records a session that could not be opened (its sandbox would not start) as a failed
/// invocation of the version it was routed to.
pub(crate) fn open_failed(
    control: &Control,
    runtime_id: &str,
    endpoint: &str,
    version: u32,
    started: Instant,
    e: &SessionError,
) {
    control.health().record(
        runtime_id,
        endpoint,
        version,
        outcome_of(e),
        started.elapsed(),
    );
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.control.health().record(
            &self.runtime_id,
            &self.endpoint,
            self.version,
            self.outcome.unwrap_or(Outcome::RuntimeClient),
            self.started.elapsed(),
        );
    }
}

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
