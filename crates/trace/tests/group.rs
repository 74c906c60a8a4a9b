//! Group commit: requests queued while a transaction commits share the next one; a failing
//! group is retried request by request so only the bad request fails; everything lands in a
//! real store.
#![allow(clippy::unwrap_used)]

mod backend;
use backend::Backend;
use berth_trace::{
    Attribution, Error, GroupCommit, LogRecord, Retained, Retention, Span, TraceFilter, TracePage,
    TraceStore,
};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

fn span(trace: u8, id: u8, name: &str) -> Span {
    Span {
        trace_id: format!("{trace:032x}"),
        span_id: format!("{id:016x}"),
        parent_span_id: None,
        name: name.into(),
        kind: "INTERNAL".into(),
        start_ns: 1_000 + i64::from(id),
        end_ns: 2_000,
        status_code: "UNSET".into(),
        status_message: String::new(),
        scope: "test".into(),
        attributes: json!({}),
        resource: json!({}),
        events: json!([]),
        service_name: "svc".into(),
        attribution: Attribution {
            runtime_id: "rt".into(),
            version: 1,
            endpoint: "DEFAULT".into(),
            session_id: Some("s".into()),
            actor: None,
        },
    }
}

/// Records each insert's span names; the first insert waits for `gate`; a batch holding a span
/// named `poison` fails.
struct Recording {
    calls: Mutex<Vec<Vec<String>>>,
    gate: Semaphore,
}

#[async_trait::async_trait]
impl TraceStore for Recording {
    async fn insert(&self, spans: &[Span], _logs: &[LogRecord]) -> Result<(), Error> {
        let first = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(spans.iter().map(|s| s.name.clone()).collect());
            calls.len() == 1
        };
        if first {
            self.gate.acquire().await.unwrap().forget();
        }
        if spans.iter().any(|s| s.name == "poison") {
            return Err(Error::Invalid("poisoned".into()));
        }
        Ok(())
    }
    async fn trace(&self, _: &str, _: Option<&str>) -> Result<Vec<Span>, Error> {
        Ok(vec![])
    }
    async fn list(&self, _: &TraceFilter) -> Result<TracePage, Error> {
        Ok(TracePage {
            traces: vec![],
            next_token: None,
        })
    }
    async fn session_spans(&self, _: Option<&str>, _: &str) -> Result<Vec<Span>, Error> {
        Ok(vec![])
    }
    async fn trace_logs(&self, _: &str) -> Result<Vec<LogRecord>, Error> {
        Ok(vec![])
    }
    async fn retain(&self, _: Retention, _: i64) -> Result<Retained, Error> {
        Ok(Retained::default())
    }
    async fn stored_bytes(&self) -> Result<u64, Error> {
        Ok(0)
    }
    async fn usage(
        &self,
        _: &berth_trace::usage::UsageFilter,
    ) -> Result<Vec<berth_trace::usage::UsageRow>, berth_trace::Error> {
        Err(berth_trace::Error::Invalid("no usage here".into()))
    }
    async fn usage_totals(&self) -> Result<Vec<berth_trace::usage::UsageRow>, berth_trace::Error> {
        Err(berth_trace::Error::Invalid("no usage here".into()))
    }
    async fn session_logs(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Vec<berth_trace::LogRecord>, berth_trace::Error> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn queued_requests_share_one_insert_and_a_bad_one_fails_alone() {
    let inner = Arc::new(Recording {
        calls: Mutex::new(vec![]),
        gate: Semaphore::new(0),
    });
    let store = GroupCommit::new(inner.clone());
    // The first request holds the writer inside its insert ...
    let first = {
        let store = store.clone();
        tokio::spawn(async move { store.insert(&[span(1, 1, "first")], &[]).await })
    };
    while inner.calls.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    // ... while four more queue up, one of them poisoned.
    let mut rest = Vec::new();
    for (i, name) in ["a", "b", "poison", "c"].into_iter().enumerate() {
        let store = store.clone();
        let s = span(2, i as u8 + 2, name);
        rest.push(tokio::spawn(async move { store.insert(&[s], &[]).await }));
    }
    while store.queued() < 4 {
        tokio::task::yield_now().await;
    }
    inner.gate.add_permits(1);
    first.await.unwrap().unwrap();
    let results: Vec<_> = futures_join(rest).await;
    assert!(results[0].is_ok() && results[1].is_ok() && results[3].is_ok());
    assert!(matches!(results[2], Err(Error::Invalid(_))));
    let calls = inner.calls.lock().unwrap().clone();
    // One insert for the first, one for the group of four (failed), then each of the four alone.
    assert_eq!(calls[0], ["first"]);
    assert_eq!(calls[1], ["a", "b", "poison", "c"]);
    assert_eq!(calls[2..], [["a"], ["b"], ["poison"], ["c"]]);
}

async fn futures_join(
    tasks: Vec<tokio::task::JoinHandle<Result<(), Error>>>,
) -> Vec<Result<(), Error>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn concurrent_requests_all_land_in_a_real_store_once<B: Backend>() {
    let dir = B::new().await;
    let sqlite = dir.open().await;
    let store = GroupCommit::new(Arc::new(sqlite.clone()));
    let mut tasks = Vec::new();
    for w in 0..16u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..5u8 {
                // Every request also repeats the writer's first span (a retried export).
                let spans = [span(w, 1, "again"), span(w, 10 + k, "new")];
                store.insert(&spans, &[]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for w in 0..16u8 {
        let spans = store.trace(&format!("{w:032x}"), None).await.unwrap();
        assert_eq!(spans.len(), 6, "trace {w}");
    }
    let page = store
        .list(&TraceFilter {
            limit: Some(100),
            ..TraceFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.traces.len(), 16);
    assert!(page.traces.iter().all(|t| t.span_count == 6));
}

backend::on_both_backends!(concurrent_requests_all_land_in_a_real_store_once,);
