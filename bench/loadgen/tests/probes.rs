//! The probes end to end against the fast agent, run in-process on an OS-chosen port. Only
//! counts and shapes are checked: timings never decide a test.

use std::process::Command;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A fast agent serving on 127.0.0.1 until the returned sender is dropped.
async fn agent() -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/invocations",
        listener.local_addr().expect("addr")
    );
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(berth_fast_agent::serve(listener, async {
        let _ = stopped.await;
    }));
    (url, stop)
}

/// Runs berth-bench (off the async runtime, which keeps serving the agent) and parses its report.
async fn bench(args: Vec<String>) -> Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_berth-bench"))
            .args(&args)
            // Test credentials for --sign: the fast agent ignores the signature.
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

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_sends_every_slot_and_reports_latencies() {
    let (url, _stop) = agent().await;
    let r = bench(args(&[
        "rate",
        "--url",
        &url,
        "--body-bytes",
        "1024",
        "--rate",
        "200",
        "--duration",
        "0.25",
        "--warmup",
        "0.05",
        "--connections",
        "4",
        "--threads",
        "2",
    ]))
    .await;
    assert_eq!(r["intended"], 50);
    assert_eq!(r["ok"], 50);
    assert_eq!(r["errors"], 0);
    assert_eq!(r["status"]["200"], 50);
    assert_eq!(r["latency"]["count"], 50);
    assert!(r["latency"]["p50"].as_u64().expect("p50") > 0);
    assert_eq!(r["sign"]["count"], 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_counts_unexpected_statuses_as_errors() {
    let (url, _stop) = agent().await;
    let r = bench(args(&[
        "rate",
        "--url",
        &url,
        "--body",
        "not json",
        "--rate",
        "100",
        "--duration",
        "0.1",
        "--warmup",
        "0",
        "--connections",
        "2",
        "--threads",
        "1",
    ]))
    .await;
    assert_eq!(r["ok"], 0);
    assert_eq!(r["errors"], 10);
    assert_eq!(r["status"]["400"], 10);
    assert!(
        r["error_samples"][0]
            .as_str()
            .expect("sample")
            .starts_with("status 400")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_receives_and_traces_every_event() {
    let (url, _stop) = agent().await;
    let r = bench(args(&[
        "sse",
        "--url",
        &url,
        "--count",
        "3",
        "--events",
        "4",
        "--interval-ms",
        "20",
        "--trace",
    ]))
    .await;
    assert_eq!(r["streams"], 3);
    assert_eq!(r["complete"], 3);
    assert_eq!(r["events"], 12);
    // Whether events count as merged depends on timing, which a test must not judge; the trace
    // must hold every event of every stream.
    let trace = r["trace"].as_array().expect("trace");
    assert_eq!(trace.len(), 3);
    assert!(
        trace
            .iter()
            .all(|t| t.as_array().expect("events").len() == 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_reports_a_silent_gap() {
    let (url, _stop) = agent().await;
    let r = bench(args(&[
        "sse",
        "--url",
        &url,
        "--count",
        "1",
        "--events",
        "2",
        "--interval-ms",
        "0",
        "--gap-ms",
        "300",
        "--trace",
    ]))
    .await;
    assert_eq!(r["complete"], 1);
    assert_eq!(r["events"], 2);
    // How long the silence looked depends on scheduling, which a test must not judge (a first
    // event read late shortens it); that the report is the longest gap between the arrivals it
    // traced does not.
    let arrivals: Vec<f64> = r["trace"][0]
        .as_array()
        .expect("trace")
        .iter()
        .map(|e| e[0].as_f64().expect("arrival"))
        .collect();
    assert_eq!(arrivals.len(), 2);
    let traced = arrivals[1] - arrivals[0];
    let reported = r["longest_silence_ms"].as_f64().expect("silence");
    assert!((reported - traced).abs() < 0.01, "{reported} vs {traced}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_classifies_an_agent_older_than_the_request_as_warm() {
    // Off Berth every "new session" reaches the same long-running agent: all warm hits.
    let (url, _stop) = agent().await;
    let r = bench(args(&[
        "cold", "--url", &url, "--count", "3", "--body", "{}",
    ]))
    .await;
    assert_eq!(r["ok"], 3);
    assert_eq!(r["session_ids"].as_array().expect("ids").len(), 3);
    assert_eq!(
        r["warm_hits"].as_u64().expect("hits") + r["cold_starts"].as_u64().expect("cold"),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presign_prints_signed_headers() {
    let r = bench(args(&[
        "presign",
        "--url",
        "http://127.0.0.1:9/invocations",
        "--sign",
        "--session",
        "bench-0123456789abcdef0123456789abcdef",
        "--body-bytes",
        "100",
    ]))
    .await;
    assert!(
        r["headers"]["authorization"]
            .as_str()
            .expect("auth")
            .starts_with("AWS4-HMAC-SHA256")
    );
    assert_eq!(r["body"].as_str().expect("body").len(), 100);
}

/// A server that answers one request per connection and then closes it, as a server may at any
/// time between requests (nginx does after `keepalive_requests`).
async fn one_request_per_connection() -> String {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/invocations",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_between_requests_is_not_an_error() {
    let url = one_request_per_connection().await;
    let r = bench(args(&[
        "rate",
        "--url",
        &url,
        "--rate",
        "100",
        "--duration",
        "0.1",
        "--warmup",
        "0",
        "--connections",
        "1",
        "--threads",
        "1",
    ]))
    .await;
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["ok"], 10);
}

/// B13's requests: the Messages API's path and shape (`--model`), with the gateway's key as an
/// extra header (`--header`); the fast agent answers both as a model upstream would be asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_shaped_streams_and_extra_headers() {
    let (url, _stop) = agent().await;
    let url = url.replace("/invocations", "/v1/messages");
    let r = bench(args(&[
        "sse",
        "--url",
        &url,
        "--header",
        "x-api-key: berth-gw.test",
        "--model",
        "bench-model",
        "--count",
        "2",
        "--events",
        "5",
        "--interval-ms",
        "1",
    ]))
    .await;
    assert_eq!(r["complete"], 2, "{r}");
    assert_eq!(r["events"], 10);
    let r = bench(args(&[
        "rate",
        "--url",
        &url,
        "--header",
        "x-api-key:berth-gw.test",
        "--header",
        "anthropic-version:2023-06-01",
        "--body",
        r#"{"model":"bench-model","stream":true,"events":3}"#,
        "--rate",
        "50",
        "--duration",
        "0.2",
        "--warmup",
        "0",
        "--connections",
        "2",
        "--threads",
        "1",
    ]))
    .await;
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["ok"], r["intended"]);
}
