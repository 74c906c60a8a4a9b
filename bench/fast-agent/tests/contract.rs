//! The agent contract over real sockets: the server runs in-process on an OS-chosen port.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A running agent; dropping it stops the server.
struct Agent {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Agent {
    start_with(berth_fast_agent::Config::default()).await
}

async fn start_with(config: berth_fast_agent::Config) -> Agent {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(berth_fast_agent::serve_with(
        listener,
        async {
            let _ = stopped.await;
        },
        config,
    ));
    Agent { addr, _stop: stop }
}

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

fn post(body: &str) -> Request<Full<Bytes>> {
    Request::post("/invocations")
        .header("host", "agent")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

async fn ping(sender: &mut SendRequest<Full<Bytes>>) -> Value {
    let req = Request::get("/ping")
        .header("host", "agent")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("ping");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&body).expect("ping json")
}

#[tokio::test]
async fn ping_reports_healthy_with_a_timestamp() {
    let agent = start().await;
    let mut c = connect(agent.addr).await;
    let v = ping(&mut c).await;
    assert_eq!(v["status"], "Healthy");
    assert!(v["time_of_last_update"].as_u64().expect("timestamp") > 1_600_000_000);
}

#[tokio::test]
async fn invocation_answers_one_kib_of_json_on_a_kept_alive_connection() {
    let agent = start().await;
    let mut c = connect(agent.addr).await;
    for _ in 0..3 {
        let resp = c
            .send_request(post(r#"{"prompt": "hi"}"#))
            .await
            .expect("invoke");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body.len(), 1024);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["ok"], true);
        assert_eq!(v["bytes_in"], 16);
        assert!(v["uptime_ms"].is_u64());
        assert!(v.get("tag").is_none(), "untagged agents carry no tag");
    }
}

#[tokio::test]
async fn a_tagged_agent_names_itself_in_answers_of_the_same_size() {
    let agent = start_with(berth_fast_agent::Config {
        tag: Some("v2".into()),
    })
    .await;
    let mut c = connect(agent.addr).await;
    let resp = c.send_request(post("{}")).await.expect("invoke");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), 1024);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["tag"], "v2");

    let resp = c
        .send_request(post(r#"{"stream": 2}"#))
        .await
        .expect("invoke");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = std::str::from_utf8(&body).expect("utf-8");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").expect("data")).expect("json"))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["tag"], "v2");
    assert!(events[1].get("tag").is_none());
}

#[tokio::test]
async fn response_size_follows_the_payload() {
    let agent = start().await;
    let mut c = connect(agent.addr).await;
    let resp = c
        .send_request(post(r#"{"response_bytes": 5000}"#))
        .await
        .expect("invoke");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), 5000);
}

#[tokio::test]
async fn bad_payload_is_a_400_with_an_error() {
    let agent = start().await;
    let mut c = connect(agent.addr).await;
    let resp = c.send_request(post("{nope")).await.expect("invoke");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert!(v["error"].as_str().expect("error").contains("json"));
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let agent = start().await;
    let mut c = connect(agent.addr).await;
    let req = Request::get("/nope")
        .header("host", "agent")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = c.send_request(req).await.expect("get");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn stream_sends_each_event_as_its_own_frame() {
    let agent = start().await;
    let mut c = connect(agent.addr).await;
    let resp = c
        .send_request(post(r#"{"stream": 5, "event_bytes": 100}"#))
        .await
        .expect("invoke");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut events = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.expect("frame").into_data().expect("data frame");
        events.push(data);
    }
    assert_eq!(events.len(), 5);
    for (i, event) in events.iter().enumerate() {
        let text = std::str::from_utf8(event).expect("utf-8");
        let json = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .expect("one sse event per frame");
        assert_eq!(json.len(), 100);
        let v: Value = serde_json::from_str(json).expect("event json");
        assert_eq!(v["index"], i);
        assert_eq!(v["of"], 5);
    }
}

#[tokio::test]
async fn busy_while_a_stream_is_open_then_healthy_again() {
    let agent = start().await;
    let mut streaming = connect(agent.addr).await;
    let mut pinger = connect(agent.addr).await;
    // The silent gap keeps the stream open after its first event for as long as the test needs.
    let resp = streaming
        .send_request(post(r#"{"stream": 2, "gap_ms": 3600000}"#))
        .await
        .expect("invoke");
    let mut body = resp.into_body();
    let first = body.frame().await.expect("first event").expect("frame");
    assert!(first.is_data());
    assert_eq!(ping(&mut pinger).await["status"], "HealthyBusy");

    // Closing the connection drops the stream, which ends the busy period.
    drop(body);
    drop(streaming);
    let mut status = ping(&mut pinger).await["status"].clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status != "Healthy" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still busy after the stream was dropped"
        );
        // The server notices the closed socket asynchronously; poll the observable state.
        tokio::task::yield_now().await;
        status = ping(&mut pinger).await["status"].clone();
    }
}

fn post_to(path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "agent")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

/// `/v1/messages` stands in for a model upstream behind Berth's gateway (B13): the same answers,
/// and Anthropic's boolean streaming flag with the count in `events`.
#[tokio::test]
async fn messages_path_answers_json_and_streams_with_the_boolean_flag() {
    let agent = start().await;
    let mut c = connect(agent.addr).await;
    let resp = c
        .send_request(post_to(
            "/v1/messages",
            r#"{"model": "m", "max_tokens": 5}"#,
        ))
        .await
        .expect("messages");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body.len(), 1024);

    for (payload, expected) in [
        (r#"{"model": "m", "stream": true, "events": 4}"#, 4),
        (r#"{"model": "m", "stream": true}"#, 3),
        (r#"{"stream": 2}"#, 2),
    ] {
        let resp = c
            .send_request(post_to("/v1/messages", payload))
            .await
            .expect("stream");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut body = resp.into_body();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.expect("frame").into_data().expect("data frame");
            assert!(data.starts_with(b"data: ") && data.ends_with(b"\n\n"));
            frames += 1;
        }
        assert_eq!(frames, expected, "{payload}");
    }

    let resp = c
        .send_request(post_to("/v1/messages", r#"{"stream": true, "events": 0}"#))
        .await
        .expect("bad");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert!(v["error"].as_str().expect("error").contains("events"));
    let get = Request::get("/v1/messages")
        .header("host", "agent")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = c.send_request(get).await.expect("get");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}
