//! The SQLite trace store against a temp dir: inserts, filters, paging, retention, reopening.
#![allow(clippy::unwrap_used)]

mod backend;
use backend::Backend;
use berth_trace::online::SessionFeed;
use berth_trace::{Attribution, LogRecord, Retention, Span, TraceFilter, TraceStore};
use serde_json::json;

fn who(runtime: &str, session: &str, actor: Option<&str>) -> Attribution {
    Attribution {
        runtime_id: runtime.into(),
        version: 1,
        endpoint: "DEFAULT".into(),
        session_id: Some(session.into()),
        actor: actor.map(str::to_owned),
    }
}

fn span(trace: u8, id: u8, parent: Option<u8>, start: i64, end: i64, who: &Attribution) -> Span {
    Span {
        trace_id: format!("{trace:032x}"),
        span_id: format!("{id:016x}"),
        parent_span_id: parent.map(|p| format!("{p:016x}")),
        name: format!("span-{id}"),
        kind: "INTERNAL".into(),
        start_ns: start,
        end_ns: end,
        status_code: "UNSET".into(),
        status_message: String::new(),
        scope: "test".into(),
        attributes: json!({ "n": id }),
        resource: json!({ "service.name": "shop.DEFAULT" }),
        events: json!([]),
        service_name: "shop.DEFAULT".into(),
        attribution: who.clone(),
    }
}

async fn insert_get_and_filter<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    let a = who("rt-a", "s-1", Some("alice"));
    let b = who("rt-b", "s-2", Some("bob"));
    let mut failed = span(2, 3, None, 2_000, 9_000, &b);
    failed.status_code = "ERROR".into();
    store
        .insert(
            &[
                span(1, 1, None, 1_000, 5_000, &a),
                span(1, 2, Some(1), 1_500, 2_000, &a),
                failed,
            ],
            &[],
        )
        .await
        .unwrap();
    // A retried export is stored once.
    store
        .insert(&[span(1, 2, Some(1), 1_500, 2_000, &a)], &[])
        .await
        .unwrap();

    let t = store.trace(&format!("{:032x}", 1), None).await.unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].name, "span-1");
    assert_eq!(t[1].parent_span_id.as_deref(), Some("0000000000000001"));
    assert_eq!(t[0].attributes, json!({ "n": 1 }));
    assert_eq!(t[0].attribution, a);

    let all = store.list(&TraceFilter::default()).await.unwrap();
    assert_eq!(all.traces.len(), 2);
    // Newest first.
    assert_eq!(all.traces[0].trace_id, format!("{:032x}", 2));
    assert_eq!(all.traces[1].span_count, 2);
    assert_eq!(all.traces[1].root_name.as_deref(), Some("span-1"));
    assert_eq!(all.traces[1].duration_ns, 4_000);

    let q = |f: TraceFilter| {
        let store = store.clone();
        async move {
            store
                .list(&f)
                .await
                .unwrap()
                .traces
                .into_iter()
                .map(|t| t.trace_id)
                .collect::<Vec<_>>()
        }
    };
    let one = vec![format!("{:032x}", 1)];
    let two = vec![format!("{:032x}", 2)];
    assert_eq!(
        q(TraceFilter {
            runtime_id: Some("rt-a".into()),
            ..Default::default()
        })
        .await,
        one
    );
    assert_eq!(
        q(TraceFilter {
            session_id: Some("s-2".into()),
            ..Default::default()
        })
        .await,
        two
    );
    assert_eq!(
        q(TraceFilter {
            actor: Some("alice".into()),
            ..Default::default()
        })
        .await,
        one
    );
    assert_eq!(
        q(TraceFilter {
            status: Some("ERROR".into()),
            ..Default::default()
        })
        .await,
        two
    );
    assert_eq!(
        q(TraceFilter {
            status: Some("OK".into()),
            ..Default::default()
        })
        .await,
        one
    );
    assert_eq!(
        q(TraceFilter {
            since_ns: Some(1_800),
            ..Default::default()
        })
        .await,
        two
    );
    assert_eq!(
        q(TraceFilter {
            until_ns: Some(1_800),
            ..Default::default()
        })
        .await,
        one
    );
    assert_eq!(
        q(TraceFilter {
            min_duration_ns: Some(6_000),
            ..Default::default()
        })
        .await,
        two
    );
    assert_eq!(
        q(TraceFilter {
            version: Some(2),
            ..Default::default()
        })
        .await,
        Vec::<String>::new()
    );
    assert!(
        store
            .list(&TraceFilter {
                status: Some("MAYBE".into()),
                ..Default::default()
            })
            .await
            .is_err()
    );

    let s = store.session_spans(Some("rt-a"), "s-1").await.unwrap();
    assert_eq!(s.len(), 2);
    assert!(
        store
            .session_spans(Some("rt-b"), "s-1")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_reused_trace_id_stays_apart_per_session<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    let a = who("rt", "s-1", None);
    let b = who("rt", "s-2", None);
    store
        .insert(&[span(1, 1, None, 0, 10, &a)], &[])
        .await
        .unwrap();
    // Another session sends the same ids: its own row, the first session's is untouched.
    let mut forged = span(1, 1, None, 0, 10, &b);
    forged.name = "forged".into();
    store.insert(&[forged], &[]).await.unwrap();
    let mine = store
        .trace(&format!("{:032x}", 1), Some("s-1"))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].name, "span-1");
    let listed = store
        .list(&TraceFilter {
            session_id: Some("s-1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.traces.len(), 1);
    assert_eq!(listed.traces[0].span_count, 1);
}

async fn paging_walks_every_trace_once<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    let a = who("rt", "s", None);
    let spans: Vec<Span> = (1..=7)
        .map(|i| span(i, i, None, i64::from(i) * 10, i64::from(i) * 10 + 5, &a))
        .collect();
    store.insert(&spans, &[]).await.unwrap();
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list(&TraceFilter {
                limit: Some(3),
                next_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.traces.iter().map(|t| t.start_ns));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, vec![70, 60, 50, 40, 30, 20, 10]);
}

async fn retention_deletes_by_age_then_the_oldest_by_size<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    let a = who("rt", "s", None);
    let log = LogRecord {
        trace_id: Some(format!("{:032x}", 1)),
        span_id: None,
        time_ns: 100,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: json!("hello"),
        attributes: json!({}),
        resource: json!({}),
        scope: "s".into(),
        service_name: "x".into(),
        attribution: a.clone(),
    };
    let spans: Vec<Span> = (1..=10)
        .map(|i| {
            span(
                i,
                i,
                None,
                i64::from(i) * 1_000,
                i64::from(i) * 1_000 + 10,
                &a,
            )
        })
        .collect();
    store.insert(&spans, &[log]).await.unwrap();
    assert_eq!(
        store
            .trace_logs(&format!("{:032x}", 1))
            .await
            .unwrap()
            .len(),
        1
    );

    // By age: traces that ended before now - max_age (now = 3_500, age 1_000: 1 and 2 go).
    let r = store
        .retain(
            Retention {
                max_age_ns: 1_000,
                max_bytes: u64::MAX,
            },
            3_500,
        )
        .await
        .unwrap();
    assert_eq!(r.traces_deleted, 2);
    assert_eq!(r.logs_deleted, 1);
    assert!(
        store
            .trace(&format!("{:032x}", 1), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .trace_logs(&format!("{:032x}", 1))
            .await
            .unwrap()
            .is_empty()
    );

    // By size: keep roughly three traces' worth; the oldest go first.
    let total = store.stored_bytes().await.unwrap();
    let per = total / 8;
    let r = store
        .retain(
            Retention {
                max_age_ns: i64::MAX,
                max_bytes: per * 3 + per / 2,
            },
            3_500,
        )
        .await
        .unwrap();
    assert_eq!(r.traces_deleted, 5);
    let left: Vec<i64> = store
        .list(&TraceFilter::default())
        .await
        .unwrap()
        .traces
        .iter()
        .map(|t| t.start_ns)
        .collect();
    assert_eq!(left, vec![10_000, 9_000, 8_000]);
    assert!(store.stored_bytes().await.unwrap() <= per * 3 + per / 2);
}

async fn reopening_keeps_the_data<B: Backend>() {
    let dir = B::new().await;
    {
        let store = dir.open().await;
        store
            .insert(&[span(9, 9, None, 5, 6, &who("rt", "s", None))], &[])
            .await
            .unwrap();
    }
    let store = dir.open().await;
    assert_eq!(
        store
            .trace(&format!("{:032x}", 9), None)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn a_large_batch_counts_each_new_span_once<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    let a = who("rt", "s-1", None);
    // Stored before: its retry in the next batch is not counted again.
    store
        .insert(&[span(1, 1, None, 100, 200, &a)], &[])
        .await
        .unwrap();
    // Over a thousand spans (more than one multi-row statement), one of them sent twice and
    // one stored already.
    let mut batch: Vec<Span> = (0..1_200u32)
        .map(|i| {
            let mut s = span(1, 0, Some(1), 50 + i64::from(i), 300, &a);
            s.span_id = format!("{:016x}", 1_000 + i);
            s.name = format!("n-{i}");
            s
        })
        .collect();
    batch.push(batch[7].clone());
    batch.push(span(1, 1, None, 100, 200, &a));
    store.insert(&batch, &[]).await.unwrap();
    let page = store.list(&TraceFilter::default()).await.unwrap();
    assert_eq!(page.traces.len(), 1);
    let t = &page.traces[0];
    assert_eq!(t.span_count, 1 + 1_200);
    // The earliest span names the trace, whichever batch it came in.
    assert_eq!(t.root_name.as_deref(), Some("n-0"));
    assert_eq!((t.start_ns, t.end_ns), (50, 300));
    assert_eq!(
        store
            .trace(&format!("{:032x}", 1), None)
            .await
            .unwrap()
            .len(),
        1 + 1_200
    );
}

/// Berth's own spans (`insert_fresh`, no question for stored copies) are stored and counted like
/// any; one stored already (a colliding id) is skipped and not counted again, the rest of its
/// batch kept.
async fn fresh_spans_are_stored_and_a_stored_one_is_skipped<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    let a = who("rt", "s-1", None);
    store
        .insert_fresh(&[
            span(1, 1, None, 100, 200, &a),
            span(1, 2, Some(1), 120, 180, &a),
        ])
        .await
        .unwrap();
    store
        .insert_fresh(&[
            span(1, 2, Some(1), 120, 180, &a),
            span(1, 3, Some(1), 130, 250, &a),
        ])
        .await
        .unwrap();
    let stored = store.trace(&format!("{:032x}", 1), None).await.unwrap();
    let names: Vec<&str> = stored.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["span-1", "span-2", "span-3"]);
    let page = store.list(&TraceFilter::default()).await.unwrap();
    assert_eq!(page.traces.len(), 1);
    assert_eq!(page.traces[0].root_name.as_deref(), Some("span-1"));
    assert_eq!((page.traces[0].start_ns, page.traces[0].end_ns), (100, 250));
    // The skipped copy is not counted twice.
    assert_eq!(page.traces[0].span_count, 3);
}

/// Berth's span writer holds spans up to a second for company; a flush (the server's shutdown)
/// writes what is queued at once and returns once it is stored.
async fn a_flush_writes_the_queued_spans_at_once<B: Backend>() {
    let dir = B::new().await;
    let store: std::sync::Arc<dyn TraceStore> = std::sync::Arc::new(dir.open().await);
    let sink = berth_trace::SpanSink::start(store.clone()).unwrap();
    let a = std::sync::Arc::new(who("rt", "s-1", None));
    for i in 0..3 {
        let (mut span, _) = berth_trace::CallSpan::start(
            None,
            "InvokeAgentRuntime",
            &format!("req-{i}"),
            Some("AKIDEXAMPLE"),
            a.clone(),
        );
        span.end_ns = span.start_ns + 1;
        sink.record(span);
    }
    sink.flush().await;
    let page = store.list(&TraceFilter::default()).await.unwrap();
    assert_eq!(page.traces.len(), 3);
    // Nothing queued: a flush returns at once.
    sink.flush().await;
}

/// Two handles onto one store (two server nodes on one PostgreSQL) write spans of the same
/// trace at once, each span sent through both (a retried export landing on another node): every
/// span is stored once, and the trace row, the usage accounts and the export order add up.
async fn two_nodes_write_one_trace_at_once<B: Backend>() {
    use berth_trace::export::ExportSource;
    let dir = B::new().await;
    let nodes = [dir.open().await, dir.open().await];
    let a = who("rt-a", "s-1", None);
    let mut tasks = Vec::new();
    // The two nodes send the same span ids: each is stored once.
    for node in &nodes {
        for w in 0..4u8 {
            let (node, a) = (node.clone(), a.clone());
            tasks.push(tokio::spawn(async move {
                for k in 0..10u8 {
                    let batch: Vec<Span> = (0..5u8)
                        .map(|i| {
                            let id = w * 50 + k * 5 + i;
                            let mut s = span(1, id, None, 1_000 + i64::from(id), 5_000, &a);
                            s.attributes = json!({
                                "gen_ai.operation.name": "chat",
                                "gen_ai.request.model": "m",
                                "gen_ai.usage.input_tokens": 1,
                            });
                            s
                        })
                        .collect();
                    node.insert(&batch, &[]).await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let spans = 4 * 10 * 5;
    for node in &nodes {
        let page = node.list(&TraceFilter::default()).await.unwrap();
        assert_eq!(page.traces.len(), 1);
        assert_eq!(page.traces[0].span_count, spans);
        assert_eq!(page.traces[0].start_ns, 1_000);
        let totals = node.usage_totals().await.unwrap();
        assert_eq!(totals.len(), 1);
        assert_eq!(totals[0].counts.input_tokens, spans);
        assert_eq!(totals[0].counts.model_calls, spans);
        let seqs: Vec<i64> = node
            .spans_after(0, i64::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(seqs.len() as i64, spans);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }
}

async fn finished_sessions_page_by_end_time_and_cursors_persist<B: Backend>() {
    use berth_trace::online::{OnlineCursor, session_documents};
    let dir = B::new().await;
    let store = dir.open().await;
    let (a, b, c) = (
        who("rt-a", "s-1", None),
        who("rt-a", "s-2", None),
        who("rt-a", "s-3", None),
    );
    let other = who("rt-b", "s-9", None);
    // s-1 ends at 200 (two traces), s-2 at 150, s-3 at 900 (still active at the cutoff).
    store
        .insert(
            &[
                span(1, 1, None, 100, 120, &a),
                span(2, 2, None, 180, 200, &a),
                span(3, 3, None, 140, 150, &b),
                span(4, 4, None, 800, 900, &c),
                span(5, 5, None, 100, 110, &other),
            ],
            &[],
        )
        .await
        .unwrap();
    let start = OnlineCursor::default();
    let found = store
        .finished_sessions("rt-a", "DEFAULT", &start, 500, 10)
        .await
        .unwrap();
    let ids: Vec<(&str, i64, u32)> = found
        .iter()
        .map(|f| (f.session_id.as_str(), f.ended_ns, f.traces))
        .collect();
    assert_eq!(ids, [("s-2", 150, 1), ("s-1", 200, 2)]);
    // Paging: after s-2, only s-1; a limit of one takes the oldest.
    let after = OnlineCursor {
        ended_ns: 150,
        runtime_id: "rt-a".into(),
        session_id: "s-2".into(),
    };
    let next = store
        .finished_sessions("rt-a", "DEFAULT", &after, 500, 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].session_id, "s-1");
    let one = store
        .finished_sessions("rt-a", "DEFAULT", &start, 500, 1)
        .await
        .unwrap();
    assert_eq!(one[0].session_id, "s-2");

    assert_eq!(store.online_cursor("cfg").await.unwrap(), None);
    store.set_online_cursor("cfg", &after).await.unwrap();
    drop(store);
    let store = dir.open().await;
    assert_eq!(store.online_cursor("cfg").await.unwrap(), Some(after));

    // The session's documents: what Evaluate takes, in end-time order.
    let docs = session_documents(&store, "rt-a", "s-1").await.unwrap();
    let names: Vec<&str> = docs.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["span-1", "span-2"]);
    assert_eq!(docs[0]["attributes"]["session.id"], "s-1");
}

backend::on_both_backends!(
    two_nodes_write_one_trace_at_once,
    insert_get_and_filter,
    a_reused_trace_id_stays_apart_per_session,
    paging_walks_every_trace_once,
    retention_deletes_by_age_then_the_oldest_by_size,
    reopening_keeps_the_data,
    a_large_batch_counts_each_new_span_once,
    fresh_spans_are_stored_and_a_stored_one_is_skipped,
    a_flush_writes_the_queued_spans_at_once,
    finished_sessions_page_by_end_time_and_cursors_persist,
);
