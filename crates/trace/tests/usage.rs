//! GenAI accounting in the SQLite trace store: usage summed at ingest, counted once per stored
//! span (a retried export adds nothing), filtered and grouped, and the Prometheus totals.
#![allow(clippy::unwrap_used)]

mod backend;
use backend::Backend;
use berth_trace::usage::{GroupBy, Prices, UsageFilter, report};
use berth_trace::{Attribution, Span, TraceStore};
use serde_json::{Value, json};

const MINUTE: i64 = 60_000_000_000;

fn who(version: u32, session: &str, actor: Option<&str>) -> Attribution {
    Attribution {
        runtime_id: "rt".into(),
        version,
        endpoint: "DEFAULT".into(),
        session_id: Some(session.into()),
        actor: actor.map(str::to_owned),
    }
}

fn span(id: u8, end_ns: i64, attributes: Value, who: &Attribution) -> Span {
    Span {
        trace_id: format!("{:032x}", 7),
        span_id: format!("{id:016x}"),
        parent_span_id: None,
        name: format!("span-{id}"),
        kind: "INTERNAL".into(),
        start_ns: end_ns - 1,
        end_ns,
        status_code: "OK".into(),
        status_message: String::new(),
        scope: "strands.telemetry.tracer".into(),
        attributes,
        resource: json!({}),
        events: json!([]),
        service_name: "shop.DEFAULT".into(),
        attribution: who.clone(),
    }
}

fn chat(model: &str, input: i64, output: i64) -> Value {
    json!({
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": input,
        "gen_ai.usage.prompt_tokens": input,
        "gen_ai.usage.output_tokens": output,
        "gen_ai.usage.total_tokens": input + output,
    })
}

async fn usage_is_summed_once_per_stored_span<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    let (v1a, v1b, v2) = (
        who(1, "s-a", Some("alice")),
        who(1, "s-b", Some("bob")),
        who(2, "s-c", None),
    );
    let mut failed_tool = span(
        4,
        MINUTE,
        json!({"gen_ai.operation.name": "execute_tool"}),
        &v1a,
    );
    failed_tool.status_code = "ERROR".into();
    let batch = [
        span(1, MINUTE, chat("m1", 100, 20), &v1a),
        span(2, 2 * MINUTE, chat("m2", 150, 10), &v1a),
        // The agent's own span repeats its calls' usage: not counted again.
        span(
            3,
            2 * MINUTE,
            json!({"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 250}),
            &v1a,
        ),
        failed_tool,
        span(
            5,
            MINUTE,
            json!({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.status": "success"}),
            &v1b,
        ),
        span(6, 3 * MINUTE, chat("m1", 1_000, 500), &v2),
    ];
    store.insert(&batch, &[]).await.unwrap();
    // The exporter retries the same request: nothing is counted twice.
    store.insert(&batch, &[]).await.unwrap();

    let all = store.usage(&UsageFilter::default()).await.unwrap();
    let total = report(&all, GroupBy::None, &Prices::default());
    assert_eq!(total.len(), 1);
    let t = &total[0].counts;
    assert_eq!(
        (
            t.model_calls,
            t.input_tokens,
            t.output_tokens,
            t.total_tokens
        ),
        (3, 1_250, 530, 1_780)
    );
    assert_eq!((t.tool_calls, t.tool_errors), (2, 1));
    assert_eq!(total[0].unpriced_tokens, 1_780);

    // Per version, priced.
    let prices = Prices::parse(["m1=1/2", "m2=10/20"]).unwrap();
    let by_version = report(
        &store
            .usage(&UsageFilter {
                group_by: GroupBy::Version,
                ..UsageFilter::default()
            })
            .await
            .unwrap(),
        GroupBy::Version,
        &prices,
    );
    assert_eq!(by_version.len(), 2);
    assert_eq!(by_version[0].version, Some(1));
    assert_eq!(by_version[0].counts.input_tokens, 250);
    assert_eq!(by_version[0].counts.tool_calls, 2);
    let v1_cost = (100.0 * 1.0 + 20.0 * 2.0 + 150.0 * 10.0 + 10.0 * 20.0) / 1e6;
    assert!((by_version[0].cost_usd - v1_cost).abs() < 1e-12);
    assert_eq!(by_version[0].unpriced_tokens, 0);
    assert_eq!(by_version[1].version, Some(2));
    assert_eq!(by_version[1].counts.output_tokens, 500);

    // Per session and per actor (the absent actor is "").
    let by_session = store
        .usage(&UsageFilter {
            group_by: GroupBy::Session,
            ..UsageFilter::default()
        })
        .await
        .unwrap();
    let sessions = report(&by_session, GroupBy::Session, &prices);
    assert_eq!(
        sessions
            .iter()
            .map(|g| (g.session_id.clone().unwrap(), g.counts.total_tokens))
            .collect::<Vec<_>>(),
        vec![
            ("s-a".into(), 280),
            ("s-b".into(), 0),
            ("s-c".into(), 1_500)
        ]
    );
    let by_actor = store
        .usage(&UsageFilter {
            group_by: GroupBy::Actor,
            actor: Some("alice".into()),
            ..UsageFilter::default()
        })
        .await
        .unwrap();
    let alice = report(&by_actor, GroupBy::Actor, &prices);
    assert_eq!(alice.len(), 1);
    assert_eq!(alice[0].actor.as_deref(), Some("alice"));
    assert_eq!(alice[0].counts.model_calls, 2);

    // By model, and a time window to the minute (spans that ended in minute 2 only).
    let window = store
        .usage(&UsageFilter {
            since_ns: Some(2 * MINUTE + 5),
            until_ns: Some(3 * MINUTE),
            group_by: GroupBy::Model,
            ..UsageFilter::default()
        })
        .await
        .unwrap();
    let models = report(&window, GroupBy::Model, &prices);
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].model.as_deref(), Some("m2"));
    assert_eq!(models[0].counts.input_tokens, 150);

    // Prometheus' totals: per runtime, version and model.
    let totals = store.usage_totals().await.unwrap();
    let key = |r: &berth_trace::usage::UsageRow| (r.version.unwrap(), r.model.clone());
    assert_eq!(
        totals.iter().map(key).collect::<Vec<_>>(),
        vec![
            (1, String::new()),
            (1, "m1".into()),
            (1, "m2".into()),
            (2, "m1".into())
        ]
    );
    assert_eq!(totals[0].counts.tool_calls, 2);
    assert_eq!(totals[3].counts.input_tokens, 1_000);
}

async fn accounts_survive_reopening<B: Backend>() {
    let dir = B::new().await;
    {
        let store = dir.open().await;
        store
            .insert(
                &[span(1, MINUTE, chat("m1", 5, 6), &who(1, "s", None))],
                &[],
            )
            .await
            .unwrap();
    }
    let store = dir.open().await;
    let rows = store.usage(&UsageFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].counts.total_tokens, 11);
}

async fn a_large_batch_is_written_in_several_statements_and_summed_exactly<B: Backend>() {
    let dir = B::new().await;
    let store = dir.open().await;
    let w = who(1, "s", None);
    // 1,200 spans in 1,200 minutes: more distinct rows than one statement holds.
    let spans: Vec<Span> = (0..1_200i64)
        .map(|i| {
            let mut s = span(0, (i + 1) * MINUTE, chat("m1", i, 1), &w);
            s.span_id = format!("{i:016x}");
            s
        })
        .collect();
    store.insert(&spans, &[]).await.unwrap();
    let rows = store.usage(&UsageFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].counts.model_calls, 1_200);
    assert_eq!(rows[0].counts.input_tokens, (0..1_200).sum::<i64>());
    assert_eq!(rows[0].counts.output_tokens, 1_200);
    let totals = store.usage_totals().await.unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].counts.model_calls, 1_200);
}

backend::on_both_backends!(
    usage_is_summed_once_per_stored_span,
    accounts_survive_reopening,
    a_large_batch_is_written_in_several_statements_and_summed_exactly,
);
