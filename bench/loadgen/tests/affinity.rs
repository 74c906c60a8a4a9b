//! `berth-bench affinity` end to end against an in-process stand-in for Berth's data plane that
//! routes sessions by the hash of their id (as Berth's weights do) and answers with the
//! version's tag; one variant breaks affinity on purpose, to show the probe catches it.

use std::convert::Infallible;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

const SESSION: &str = "x-amzn-bedrock-agentcore-runtime-session-id";

/// Counts of what the stand-in served.
#[derive(Default)]
struct Served {
    invocations: AtomicU64,
    stops: AtomicU64,
}

/// The version a 90/10 split sends a session to.
fn tag(session: &str) -> &'static str {
    if berth_control::traffic::session_bucket(session) < 9000 {
        "v1"
    } else {
        "v2"
    }
}

async fn handle(
    req: Request<Incoming>,
    served: Arc<Served>,
    flip_every: u64,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let session = req
        .headers()
        .get(SESSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let path = req.uri().path().to_owned();
    let _ = req.into_body().collect().await;
    if path.ends_with("/stopruntimesession") {
        served.stops.fetch_add(1, Ordering::Relaxed);
        return Ok(Response::new(Full::new(Bytes::from_static(b"{}"))));
    }
    if session.is_empty() {
        let mut r = Response::new(Full::new(Bytes::from_static(b"{\"error\":\"no session\"}")));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(r);
    }
    let n = served.invocations.fetch_add(1, Ordering::Relaxed) + 1;
    let mut answer = tag(&session);
    // The broken variant answers every n-th call from the other version.
    if flip_every > 0 && n.is_multiple_of(flip_every) {
        answer = if answer == "v1" { "v2" } else { "v1" };
    }
    let body = serde_json::json!({ "ok": true, "tag": answer }).to_string();
    Ok(Response::new(Full::new(Bytes::from(body))))
}

async fn stand_in(flip_every: u64) -> (String, Arc<Served>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/runtimes/rt/invocations?qualifier=bench",
        listener.local_addr().expect("addr")
    );
    let served = Arc::new(Served::default());
    let counts = served.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = counts.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, served.clone(), flip_every));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, served)
}

async fn affinity(url: &str) -> Value {
    let args: Vec<String> = [
        "affinity",
        "--url",
        url,
        "--sign",
        "--sessions",
        "40",
        "--invocations",
        "3",
        "--rate",
        "200",
        "--active",
        "10",
        "--connections",
        "4",
        "--reroute-every",
        "4",
        "--split",
        "v1=90,v2=10",
        "--timeout",
        "10",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_berth-bench"))
            .args(&args)
            .env("BERTH_ACCESS_KEY_ID", "AKIABERTHLOADGENTEST")
            .env(
                "BERTH_SECRET_ACCESS_KEY",
                "berthLoadgenTestSecretKey/0123456789abcd",
            )
            .output()
            .expect("run berth-bench")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "berth-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_answered_by_its_sessions_version_is_no_violation() {
    let (url, served) = stand_in(0).await;
    let r = affinity(&url).await;
    assert_eq!(r["invocations"], 120, "{r}");
    assert_eq!(r["ok"], 120, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["sessions_answered"], 40);
    assert_eq!(r["violations"], 0);
    assert_eq!(r["misrouted_sessions"], 0);
    // Sessions 0, 4, 8, ... are stopped after their first answer (unless their next call was
    // already out, which a slow machine can cause), then every session at its end.
    let rerouted = r["rerouted_sessions"].as_u64().expect("rerouted");
    assert_eq!(
        rerouted + r["reroutes_skipped"].as_u64().expect("skipped"),
        10
    );
    assert_eq!(r["rerouted_follow_ups"].as_u64(), Some(2 * rerouted));
    assert_eq!(r["sessions_stopped"], 40);
    assert_eq!(served.stops.load(Ordering::Relaxed), 40 + rerouted);
    assert_eq!(served.invocations.load(Ordering::Relaxed), 120);
    let v1 = r["versions"]["v1"]["sessions"].as_u64().unwrap_or(0);
    let v2 = r["versions"]["v2"]["sessions"].as_u64().unwrap_or(0);
    assert_eq!(v1 + v2, 40);
    assert_eq!(r["versions"]["v1"]["expected_percent"], 90);
    assert_eq!(r["latency_first"]["count"], 40);
    assert_eq!(r["latency_follow_up"]["count"], 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_from_another_version_is_a_violation() {
    let (url, _served) = stand_in(7).await;
    let r = affinity(&url).await;
    assert_eq!(r["ok"], 120, "{r}");
    let violations = r["violations"].as_u64().expect("violations");
    assert!(violations > 0, "{r}");
    assert!(r["sessions_with_violations"].as_u64().expect("sessions") > 0);
    assert!(
        !r["violation_samples"]
            .as_array()
            .expect("samples")
            .is_empty()
    );
}
