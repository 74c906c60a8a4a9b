//! OTLP export against a receiver this test runs on 127.0.0.1:0: the protobuf it receives,
//! Berth's attribution on it, a 503 retried without loss or duplicates, the cursor surviving a
//! restart, a non-retryable answer dropping its batch, and row ids never reused after retention.
#![allow(clippy::unwrap_used)]

mod backend;
use backend::Backend;
use berth_trace::export::{self, ExportOptions, ExportSource, ExportStats, Signal};
use berth_trace::{Attribution, LogRecord, Retention, Span, TraceStore};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One request the receiver got, and the status it answered.
#[derive(Debug)]
struct Got {
    path: String,
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// Answers each `/v1/traces` request with the next scripted status (200 once the script is
/// spent), every `/v1/logs` with 200, and reports every request on the channel.
async fn receiver(script: Vec<u16>) -> (String, mpsc::UnboundedReceiver<Got>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let (tx, script) = (tx.clone(), script.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (tx, script) = (tx.clone(), script.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let headers = req.headers().clone();
                        let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
                        let status = if path == "/v1/traces" {
                            script.lock().unwrap().pop_front().unwrap_or(200)
                        } else {
                            200
                        };
                        let _ = tx.send(Got {
                            path,
                            status,
                            headers,
                            body,
                        });
                        let resp = http::Response::builder()
                            .status(status)
                            .header("content-type", "application/x-protobuf")
                            .header("retry-after", "0")
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), rx)
}

fn who(session: &str) -> Attribution {
    Attribution {
        runtime_id: "shop-abc1234567".into(),
        version: 2,
        endpoint: "prod".into(),
        session_id: Some(session.into()),
        actor: Some("alice".into()),
    }
}

fn span(trace: u8, id: u8, session: &str) -> Span {
    Span {
        trace_id: format!("{trace:032x}"),
        span_id: format!("{id:016x}"),
        parent_span_id: None,
        name: format!("span-{id}"),
        kind: "INTERNAL".into(),
        start_ns: 1_000 + i64::from(id),
        end_ns: 2_000 + i64::from(id),
        status_code: "OK".into(),
        status_message: String::new(),
        scope: "test".into(),
        attributes: json!({ "gen_ai.usage.input_tokens": id, "session.id": "forged" }),
        resource: json!({ "service.name": "shop.prod" }),
        events: json!([]),
        service_name: "shop.prod".into(),
        attribution: who(session),
    }
}

fn options(url: &str) -> ExportOptions {
    let mut o = ExportOptions::new(url).unwrap();
    o.poll = Duration::from_millis(20);
    o.min_backoff = Duration::from_millis(10);
    o.max_backoff = Duration::from_millis(50);
    o.headers = ExportOptions::parse_headers("Authorization=Basic%20cGs6c2s=").unwrap();
    o.gzip = true;
    o
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn s(v: Option<&any_value::Value>) -> Option<&str> {
    match v {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// The span names of a received `/v1/traces` body.
fn span_names(got: &Got) -> Vec<String> {
    let req = ExportTraceServiceRequest::decode(gunzip(&got.body).as_slice()).unwrap();
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

/// What the receiver reported, with requests to other paths kept for later (the two signals'
/// tasks post concurrently, in either order).
struct Inbox {
    rx: mpsc::UnboundedReceiver<Got>,
    held: Vec<Got>,
}

/// The next request on `path`.
async fn next_on(inbox: &mut Inbox, path: &str) -> Got {
    if let Some(i) = inbox.held.iter().position(|g| g.path == path) {
        return inbox.held.remove(i);
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let g = inbox.rx.recv().await.unwrap();
            if g.path == path {
                return g;
            }
            inbox.held.push(g);
        }
    })
    .await
    .expect("the exporter sent nothing within a minute")
}

/// Waits until `signal`'s cursor reaches `seq` (the exporter writes it right after the 2xx).
async fn cursor_reaches(store: &impl ExportSource, signal: Signal, seq: i64) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while store.export_cursor(signal).await.unwrap() < seq {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the cursor did not move");
}

async fn max_seq(store: &impl ExportSource, signal: Signal) -> i64 {
    let rows = match signal {
        Signal::Spans => store
            .spans_after(0, i64::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>(),
        Signal::Logs => store
            .logs_after(0, i64::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect(),
    };
    rows.into_iter().max().unwrap_or(0)
}

async fn stop(token: CancellationToken, tasks: Vec<tokio::task::JoinHandle<()>>) {
    token.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

async fn exports_retries_a_503_without_loss_or_duplicates_and_resumes_after_restart<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    store
        .insert(
            &[span(1, 1, "s-1"), span(1, 2, "s-1"), span(2, 3, "s-2")],
            &[LogRecord {
                trace_id: Some(format!("{:032x}", 1)),
                span_id: Some(format!("{:016x}", 1)),
                time_ns: 1_500,
                severity_number: 9,
                severity_text: "INFO".into(),
                body: json!("tool called"),
                attributes: json!({}),
                resource: json!({ "service.name": "shop.prod" }),
                scope: "test".into(),
                service_name: "shop.prod".into(),
                attribution: who("s-1"),
            }],
        )
        .await
        .unwrap();

    let (url, rx) = receiver(vec![503]).await;
    let mut rx = Inbox { rx, held: vec![] };
    let stats = Arc::new(ExportStats::default());
    let token = CancellationToken::new();
    let tasks = export::start(
        Arc::new(store.clone()),
        options(&url),
        stats.clone(),
        token.clone(),
    );

    // First attempt: 503; the same batch again: 200.
    let first = next_on(&mut rx, "/v1/traces").await;
    assert_eq!(first.status, 503);
    let second = next_on(&mut rx, "/v1/traces").await;
    assert_eq!(second.status, 200);
    let mut names = span_names(&second);
    names.sort();
    assert_eq!(names, ["span-1", "span-2", "span-3"]);
    assert_eq!(span_names(&first), span_names(&second));
    assert_eq!(second.headers["content-type"], "application/x-protobuf");
    assert_eq!(second.headers["content-encoding"], "gzip");
    assert_eq!(second.headers["authorization"], "Basic cGs6c2s=");

    // Berth's attribution, not the agent's claims.
    let req = ExportTraceServiceRequest::decode(gunzip(&second.body).as_slice()).unwrap();
    assert_eq!(req.resource_spans.len(), 2, "one resource per session");
    for rs in &req.resource_spans {
        let res = &rs.resource.as_ref().unwrap().attributes;
        assert_eq!(s(attr(res, "service.name")), Some("shop.prod"));
        assert_eq!(s(attr(res, "berth.runtime_id")), Some("shop-abc1234567"));
        assert_eq!(s(attr(res, "berth.endpoint")), Some("prod"));
        assert_eq!(s(attr(res, "berth.actor")), Some("alice"));
        assert!(matches!(
            attr(res, "berth.version"),
            Some(any_value::Value::IntValue(2))
        ));
        let session = s(attr(res, "berth.session_id")).unwrap().to_owned();
        for sp in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            assert_eq!(
                s(attr(&sp.attributes, "session.id")),
                Some(session.as_str())
            );
            assert_eq!(sp.trace_id.len(), 16);
            assert_eq!(sp.span_id.len(), 8);
            assert!(matches!(
                attr(&sp.attributes, "gen_ai.usage.input_tokens"),
                Some(any_value::Value::IntValue(_))
            ));
        }
    }

    // The log record went to /v1/logs with its trace id.
    let logs = next_on(&mut rx, "/v1/logs").await;
    let req = ExportLogsServiceRequest::decode(gunzip(&logs.body).as_slice()).unwrap();
    let rec = &req.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(rec.trace_id, {
        let mut id = vec![0u8; 16];
        id[15] = 1;
        id
    });
    assert_eq!(s(attr(&rec.attributes, "session.id")), Some("s-1"));

    cursor_reaches(&store, Signal::Spans, max_seq(&store, Signal::Spans).await).await;
    cursor_reaches(&store, Signal::Logs, max_seq(&store, Signal::Logs).await).await;
    assert_eq!(stats.spans_exported.load(Ordering::Relaxed), 3);
    assert_eq!(stats.spans_failed_requests.load(Ordering::Relaxed), 1);
    assert_eq!(stats.logs_exported.load(Ordering::Relaxed), 1);
    stop(token, tasks).await;

    // A restart (a new exporter on a reopened store) resumes after the cursor: only new spans.
    drop(store);
    let store = dir.open().await;
    store
        .insert(&[span(3, 4, "s-1"), span(3, 5, "s-1")], &[])
        .await
        .unwrap();
    let stats = Arc::new(ExportStats::default());
    let token = CancellationToken::new();
    let tasks = export::start(
        Arc::new(store.clone()),
        options(&url),
        stats.clone(),
        token.clone(),
    );
    let third = next_on(&mut rx, "/v1/traces").await;
    assert_eq!(third.status, 200);
    let mut names = span_names(&third);
    names.sort();
    assert_eq!(names, ["span-4", "span-5"]);
    cursor_reaches(&store, Signal::Spans, max_seq(&store, Signal::Spans).await).await;

    // Retention deletes every row (the newest included); a span stored afterwards gets a row
    // id past the cursor and is exported, not hidden behind it.
    let before = store.export_cursor(Signal::Spans).await.unwrap();
    store
        .retain(
            Retention {
                max_age_ns: 1,
                max_bytes: u64::MAX,
            },
            i64::MAX / 2,
        )
        .await
        .unwrap();
    assert_eq!(max_seq(&store, Signal::Spans).await, 0);
    store.insert(&[span(4, 6, "s-3")], &[]).await.unwrap();
    assert!(max_seq(&store, Signal::Spans).await > before);
    let fourth = next_on(&mut rx, "/v1/traces").await;
    assert_eq!(span_names(&fourth), ["span-6"]);
    cursor_reaches(&store, Signal::Spans, max_seq(&store, Signal::Spans).await).await;
    assert_eq!(stats.spans_exported.load(Ordering::Relaxed), 3);
    stop(token, tasks).await;
}

async fn a_non_retryable_answer_drops_the_batch_and_moves_on<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    store.insert(&[span(1, 1, "s-1")], &[]).await.unwrap();
    let (url, rx) = receiver(vec![400]).await;
    let mut rx = Inbox { rx, held: vec![] };
    let stats = Arc::new(ExportStats::default());
    let token = CancellationToken::new();
    let mut opts = options(&url);
    opts.gzip = false;
    let tasks = export::start(Arc::new(store.clone()), opts, stats.clone(), token.clone());
    let first = next_on(&mut rx, "/v1/traces").await;
    assert_eq!(first.status, 400);
    assert!(first.headers.get("content-encoding").is_none());
    cursor_reaches(&store, Signal::Spans, max_seq(&store, Signal::Spans).await).await;
    assert_eq!(stats.spans_dropped.load(Ordering::Relaxed), 1);
    assert_eq!(stats.spans_exported.load(Ordering::Relaxed), 0);

    // The next span is exported normally; the dropped one is not sent again.
    store.insert(&[span(1, 2, "s-1")], &[]).await.unwrap();
    let second = next_on(&mut rx, "/v1/traces").await;
    assert_eq!(second.status, 200);
    let req = ExportTraceServiceRequest::decode(second.body.as_slice()).unwrap();
    let names: Vec<_> = req.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["span-2"]);
    stop(token, tasks).await;
}

backend::on_both_backends!(
    exports_retries_a_503_without_loss_or_duplicates_and_resumes_after_restart,
    a_non_retryable_answer_drops_the_batch_and_moves_on,
);
