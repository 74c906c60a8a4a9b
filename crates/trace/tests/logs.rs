//! The CloudWatch Logs API over the SQLite trace store in a temp dir: span documents in
//! `aws/spans`, log records in a runtime's group, the session pushdown, a runtime caller's row
//! filter, created groups and streams, and GetLogEvents' tokens at the ends of a stream.
#![allow(clippy::unwrap_used)]

mod backend;
use backend::Backend;
use berth_trace::logs::wire::*;
use berth_trace::logs::{Caller, Error, Logs};
use berth_trace::{Attribution, LogRecord, Span, TraceStore};
use serde_json::{Value, json};
use std::sync::Arc;

const NOW_S: i64 = 1_900_000_000;

fn who(runtime: &str, session: &str) -> Attribution {
    Attribution {
        runtime_id: runtime.into(),
        version: 1,
        endpoint: "DEFAULT".into(),
        session_id: Some(session.into()),
        actor: None,
    }
}

fn span(id: u8, start_s: i64, who: &Attribution, claim: &str) -> Span {
    Span {
        trace_id: format!("{id:032x}"),
        span_id: format!("{id:016x}"),
        parent_span_id: None,
        name: format!("span-{id}"),
        kind: "INTERNAL".into(),
        start_ns: start_s * 1_000_000_000,
        end_ns: start_s * 1_000_000_000 + 2_500_000,
        status_code: "OK".into(),
        status_message: String::new(),
        scope: "test.scope".into(),
        attributes: json!({ "session.id": claim, "n": id }),
        resource: json!({ "service.name": "shop.DEFAULT" }),
        events: json!([]),
        service_name: "shop.DEFAULT".into(),
        attribution: who.clone(),
    }
}

fn root() -> Caller {
    Caller {
        access_key_id: "root".into(),
        runtime_id: None,
    }
}

async fn setup<B: Backend>(dir: &B) -> (Logs, Arc<B::Store>) {
    let store = Arc::new(dir.open().await);
    let a = who("rt-a", "s-1");
    let b = who("rt-b", "s-2");
    let log = LogRecord {
        trace_id: Some(format!("{:032x}", 1)),
        span_id: Some(format!("{:016x}", 1)),
        time_ns: NOW_S * 1_000_000_000,
        severity_number: 9,
        severity_text: String::new(),
        body: json!({ "input": "hi" }),
        attributes: json!({ "event.name": "x" }),
        resource: json!({}),
        scope: "test.scope".into(),
        service_name: "shop.DEFAULT".into(),
        attribution: a.clone(),
    };
    store
        .insert(
            &[
                // The agent of s-1 claims s-2 on one span: the documents say s-1.
                span(1, NOW_S, &a, "s-2"),
                span(2, NOW_S + 1, &a, "s-1"),
                span(3, NOW_S + 2, &b, "s-2"),
            ],
            &[log],
        )
        .await
        .unwrap();
    (Logs::new(store.clone(), "us-east-1", "123456789012"), store)
}

async fn query(logs: &Logs, caller: &Caller, group: &str, q: &str) -> Vec<Vec<(String, String)>> {
    let started = logs
        .start_query(
            caller,
            StartQueryRequest {
                query_language: None,
                log_group_name: Some(group.into()),
                log_group_names: None,
                log_group_identifiers: None,
                start_time: NOW_S - 10,
                end_time: NOW_S + 10,
                query_string: q.into(),
                limit: None,
            },
        )
        .await
        .unwrap();
    let got = logs
        .get_query_results(
            caller,
            &GetQueryResultsRequest {
                query_id: started.query_id,
                next_token: None,
                max_items: None,
            },
        )
        .unwrap();
    assert_eq!(got.status, "Complete");
    got.results
        .into_iter()
        .map(|r| r.into_iter().map(|f| (f.field, f.value)).collect())
        .collect()
}

fn col(rows: &[Vec<(String, String)>], field: &str) -> Vec<String> {
    rows.iter()
        .map(|r| r.iter().find(|(f, _)| f == field).unwrap().1.clone())
        .collect()
}

async fn span_documents_are_queried_by_attributed_session_and_runtime<B: Backend>() {
    let dir = B::new().await;
    let (logs, _) = setup(&dir).await;
    let q = "fields spanId, durationNano / 1000000 as ms | filter attributes.session.id = 's-1' | sort spanId";
    let rows = query(&logs, &root(), "aws/spans", q).await;
    assert_eq!(
        col(&rows, "spanId"),
        [format!("{:016x}", 1), format!("{:016x}", 2)]
    );
    assert_eq!(col(&rows, "ms"), ["2.5", "2.5"]);
    let rows = query(
        &logs,
        &root(),
        "aws/spans",
        "fields @message | filter spanId = '0000000000000001'",
    )
    .await;
    let doc: Value = serde_json::from_str(&col(&rows, "@message")[0]).unwrap();
    assert_eq!(doc["attributes"]["session.id"], "s-1");
    assert_eq!(doc["attributes"]["n"], 1);
    assert_eq!(
        doc["resource"]["attributes"]["service.name"],
        "shop.DEFAULT"
    );
    assert_eq!(doc["scope"]["name"], "test.scope");
    assert_eq!(doc["durationNano"], 2_500_000);
    assert_eq!(doc["status"], json!({ "code": "OK" }));

    // Runtime rt-a's credentials see only rt-a's spans.
    let rt_a = Caller {
        access_key_id: "BKRTa".into(),
        runtime_id: Some("rt-a".into()),
    };
    let count = "stats count(*) as n";
    assert_eq!(
        col(&query(&logs, &root(), "aws/spans", count).await, "n"),
        ["3"]
    );
    assert_eq!(
        col(&query(&logs, &rt_a, "aws/spans", count).await, "n"),
        ["2"]
    );
    // Another key cannot read the query's results.
    let started = logs
        .start_query(
            &rt_a,
            StartQueryRequest {
                query_language: None,
                log_group_name: Some("aws/spans".into()),
                log_group_names: None,
                log_group_identifiers: None,
                start_time: NOW_S - 10,
                end_time: NOW_S + 10,
                query_string: count.into(),
                limit: None,
            },
        )
        .await
        .unwrap();
    let req = GetQueryResultsRequest {
        query_id: started.query_id,
        next_token: None,
        max_items: None,
    };
    assert!(matches!(
        logs.get_query_results(&root(), &req),
        Err(Error::NotFound(_))
    ));

    // The runtime's group holds its log records, and outside the window there is nothing.
    let rows = query(
        &logs,
        &root(),
        "/aws/bedrock-agentcore/runtimes/rt-a-DEFAULT",
        "fields @logStream, body.input",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            ("@logStream".to_owned(), "runtime-logs".to_owned()),
            ("body.input".to_owned(), "hi".to_owned()),
        ]]
    );
    let groups = logs
        .describe_log_groups(&root(), &DescribeLogGroupsRequest::default())
        .await
        .unwrap();
    let names: Vec<&str> = groups
        .log_groups
        .iter()
        .map(|g| g.log_group_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "/aws/bedrock-agentcore/runtimes/rt-a-DEFAULT",
            "/aws/bedrock-agentcore/runtimes/rt-b-DEFAULT",
            "aws/spans"
        ]
    );
    let mine = logs
        .describe_log_groups(&rt_a, &DescribeLogGroupsRequest::default())
        .await
        .unwrap();
    assert_eq!(mine.log_groups.len(), 2);
}

async fn created_streams_page_and_the_token_comes_back_at_the_end<B: Backend>() {
    let dir = B::new().await;
    let (logs, store) = setup(&dir).await;
    let group = "/aws/bedrock-agentcore/evaluations/results/x";
    logs.create_log_group(&CreateLogGroupRequest {
        log_group_name: group.into(),
        kms_key_id: None,
        tags: None,
        log_group_class: None,
        deletion_protection_enabled: None,
    })
    .await
    .unwrap();
    logs.create_log_stream(&CreateLogStreamRequest {
        log_group_name: group.into(),
        log_stream_name: "s".into(),
    })
    .await
    .unwrap();
    let now_ms = berth_trace::now_ns() / 1_000_000;
    let events: Vec<InputLogEvent> = (0..5)
        .map(|i| InputLogEvent {
            timestamp: now_ms - 1000 + i,
            message: format!("event {i}"),
        })
        .collect();
    logs.put_log_events(&PutLogEventsRequest {
        log_group_name: group.into(),
        log_stream_name: "s".into(),
        log_events: events,
        sequence_token: None,
        entity: None,
    })
    .await
    .unwrap();
    let mut req = GetLogEventsRequest {
        log_group_name: Some(group.into()),
        log_stream_name: "s".into(),
        start_from_head: Some(true),
        limit: Some(3),
        ..GetLogEventsRequest::default()
    };
    let first = logs.get_log_events(&root(), &req).await.unwrap();
    assert_eq!(first.events.len(), 3);
    req.next_token = Some(first.next_forward_token.clone());
    let second = logs.get_log_events(&root(), &req).await.unwrap();
    assert_eq!(
        second
            .events
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
        ["event 3", "event 4"]
    );
    req.next_token = Some(second.next_forward_token.clone());
    let end = logs.get_log_events(&root(), &req).await.unwrap();
    assert!(end.events.is_empty());
    assert_eq!(end.next_forward_token, second.next_forward_token);
    // Backwards from the end reaches the first page again.
    req.next_token = Some(second.next_backward_token);
    let back = logs.get_log_events(&root(), &req).await.unwrap();
    assert_eq!(
        back.events
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
        ["event 0", "event 1", "event 2"]
    );

    // A group exists once.
    let err = logs
        .create_log_group(&CreateLogGroupRequest {
            log_group_name: group.into(),
            kms_key_id: None,
            tags: None,
            log_group_class: None,
            deletion_protection_enabled: None,
        })
        .await;
    assert!(matches!(err, Err(Error::AlreadyExists(_))));

    // Retention drops events older than its cutoff.
    let dropped = berth_trace::logs::LogStore::retain_events(&*store, now_ms - 997)
        .await
        .unwrap();
    assert_eq!(dropped, 3);
    req.next_token = None;
    req.limit = None;
    let left = logs.get_log_events(&root(), &req).await.unwrap();
    assert_eq!(
        left.events
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
        ["event 3", "event 4"]
    );
}

backend::on_both_backends!(
    span_documents_are_queried_by_attributed_session_and_runtime,
    created_streams_page_and_the_token_comes_back_at_the_end,
);
