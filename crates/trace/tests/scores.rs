//! Evaluation scores in the SQLite trace store in a temp dir: a batch in one transaction, the
//! endpoint/window queries and their filters, the running totals, retention with the traces,
//! and the log records StartQuery finds in the results group.
#![allow(clippy::unwrap_used)]

mod backend;
use backend::Backend;
use berth_trace::logs::wire::*;
use berth_trace::logs::{Caller, Logs};
use berth_trace::scores::{Score, ScoreFilter, ScoreStore, results_group};
use berth_trace::{Error, Retention, TraceStore};
use std::sync::Arc;

const S: i64 = 1_000_000_000;

fn score(version: u32, evaluator: &str, ended_s: i64, value: Option<f64>) -> Score {
    let now = berth_trace::now_ns();
    Score {
        at_ns: now,
        ended_ns: ended_s * S,
        source: "online:cfg-1".into(),
        evaluator_id: evaluator.into(),
        evaluator_name: evaluator.trim_start_matches("Builtin.").into(),
        dimension: None,
        runtime_id: "rt-a".into(),
        endpoint: "DEFAULT".into(),
        version,
        session_id: format!("s-{version}-{ended_s}"),
        trace_id: Some(format!("{:032x}", ended_s)),
        span_id: None,
        value,
        label: value.map(|v| if v >= 0.5 { "Good" } else { "Poor" }.into()),
        explanation: Some("because".into()),
        error: None,
        input_tokens: 10,
        output_tokens: 5,
    }
}

fn filter(from_s: i64, to_s: i64) -> ScoreFilter {
    ScoreFilter {
        runtime_id: "rt-a".into(),
        endpoint: "DEFAULT".into(),
        from_ns: from_s * S,
        to_ns: to_s * S,
        ..ScoreFilter::default()
    }
}

async fn scores_are_queried_by_endpoint_window_version_evaluator_and_source<B: Backend>() {
    let dir = B::new().await;
    let store = Arc::new(dir.open().await);
    let mut batch = vec![
        score(1, "Builtin.Helpfulness", 100, Some(0.9)),
        score(1, "Builtin.Helpfulness", 110, Some(0.7)),
        score(2, "Builtin.Helpfulness", 120, Some(0.4)),
        score(2, "Builtin.Correctness", 130, Some(1.0)),
    ];
    let mut other = score(1, "Builtin.Helpfulness", 105, Some(0.1));
    other.endpoint = "canary".into();
    batch.push(other);
    let mut gate = score(2, "Builtin.Helpfulness", 125, None);
    gate.source = "gate:run-1".into();
    gate.error = Some("judge timed out".into());
    batch.push(gate);
    store.insert_scores(&batch).await.unwrap();

    let all = store.scores(&filter(0, 1000)).await.unwrap();
    assert_eq!(all.len(), 5, "the canary endpoint's score is not DEFAULT's");
    // Oldest first, and read back as written.
    assert_eq!(all[0], batch[0]);
    assert!(all.windows(2).all(|w| w[0].ended_ns <= w[1].ended_ns));

    // The window is [from, to).
    let w = store.scores(&filter(110, 120)).await.unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].value, Some(0.7));

    let v2 = store
        .scores(&ScoreFilter {
            version: Some(2),
            ..filter(0, 1000)
        })
        .await
        .unwrap();
    assert_eq!(v2.len(), 3);
    let correctness = store
        .scores(&ScoreFilter {
            evaluator_id: Some("Builtin.Correctness".into()),
            ..filter(0, 1000)
        })
        .await
        .unwrap();
    assert_eq!(correctness.len(), 1);
    let gates = store
        .scores(&ScoreFilter {
            source: Some("gate:run-1".into()),
            ..filter(0, 1000)
        })
        .await
        .unwrap();
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0].error.as_deref(), Some("judge timed out"));

    // A backwards window is refused.
    assert!(matches!(
        store.scores(&filter(10, 5)).await,
        Err(Error::Invalid(_))
    ));

    // Totals: per runtime, endpoint, version and evaluator; the errored result counts as an error.
    let totals = store.score_totals().await.unwrap();
    let find = |ep: &str, v: u32, e: &str| {
        totals
            .iter()
            .find(|t| t.endpoint == ep && t.version == v && t.evaluator_id == e)
            .unwrap()
            .clone()
    };
    let t = find("DEFAULT", 1, "Builtin.Helpfulness");
    assert_eq!((t.count, t.errors), (2, 0));
    assert!((t.sum - 1.6).abs() < 1e-12);
    let t = find("DEFAULT", 2, "Builtin.Helpfulness");
    assert_eq!((t.count, t.errors), (1, 1));
    assert_eq!(find("canary", 1, "Builtin.Helpfulness").count, 1);
    assert_eq!(totals.len(), 4);
}

async fn an_invalid_score_refuses_the_whole_batch<B: Backend>() {
    let dir = B::new().await;
    let store = Arc::new(dir.open().await);
    let good = score(1, "Builtin.Helpfulness", 100, Some(0.5));
    let mut bad_source = good.clone();
    bad_source.source = "elsewhere".into();
    let mut nan = good.clone();
    nan.value = Some(f64::NAN);
    let mut no_session = good.clone();
    no_session.session_id.clear();
    for bad in [bad_source, nan, no_session] {
        let r = store.insert_scores(&[good.clone(), bad]).await;
        assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    }
    assert!(store.scores(&filter(0, 1000)).await.unwrap().is_empty());
    assert!(store.score_totals().await.unwrap().is_empty());
}

async fn retention_deletes_scores_with_the_traces_and_keeps_the_totals<B: Backend>() {
    let dir = B::new().await;
    let store = Arc::new(dir.open().await);
    store
        .insert_scores(&[
            score(1, "Builtin.Helpfulness", 100, Some(0.9)),
            score(1, "Builtin.Helpfulness", 200, Some(0.8)),
        ])
        .await
        .unwrap();
    let done = store
        .retain(
            Retention {
                max_age_ns: 50 * S,
                max_bytes: u64::MAX,
            },
            210 * S,
        )
        .await
        .unwrap();
    assert_eq!(done.scores_deleted, 1);
    let left = store.scores(&filter(0, 1000)).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].ended_ns, 200 * S);
    assert_eq!(store.score_totals().await.unwrap()[0].count, 2);
}

async fn scores_are_log_records_that_start_query_finds<B: Backend>() {
    let dir = B::new().await;
    let store = Arc::new(dir.open().await);
    let mut a = score(1, "Builtin.Helpfulness", 100, Some(0.9));
    a.session_id = "s-find".into();
    let b = score(2, "Builtin.Helpfulness", 101, Some(0.2));
    store.insert_scores(&[a.clone(), b]).await.unwrap();

    let logs = Logs::new(store.clone(), "us-east-1", "123456789012");
    let root = Caller {
        access_key_id: "root".into(),
        runtime_id: None,
    };
    let group = results_group("online:cfg-1");
    let groups = logs
        .describe_log_groups(
            &root,
            &DescribeLogGroupsRequest {
                log_group_name_prefix: Some("/aws/bedrock-agentcore/evaluations/".into()),
                ..DescribeLogGroupsRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        groups
            .log_groups
            .iter()
            .map(|g| g.log_group_name.as_str())
            .collect::<Vec<_>>(),
        [group.as_str()]
    );
    let now_s = berth_trace::now_ns() / S;
    let started = logs
        .start_query(
            &root,
            StartQueryRequest {
                query_language: None,
                log_group_name: Some(group.clone()),
                log_group_names: None,
                log_group_identifiers: None,
                start_time: now_s - 60,
                end_time: now_s + 60,
                query_string: "fields attributes.gen_ai.evaluation.name as name, \
                    attributes.gen_ai.evaluation.score.value as value, \
                    attributes.gen_ai.evaluation.score.label as label, \
                    attributes.berth.version as version, traceId \
                    | filter attributes.session.id = \"s-find\""
                    .into(),
                limit: None,
            },
        )
        .await
        .unwrap();
    let got = logs
        .get_query_results(
            &root,
            &GetQueryResultsRequest {
                query_id: started.query_id,
                next_token: None,
                max_items: None,
            },
        )
        .unwrap();
    assert_eq!(got.results.len(), 1, "{:?}", got.results);
    let row: std::collections::HashMap<_, _> = got.results[0]
        .iter()
        .map(|f| (f.field.as_str(), f.value.as_str()))
        .collect();
    assert_eq!(row["name"], "Helpfulness");
    assert_eq!(row["value"], "0.9");
    assert_eq!(row["label"], "Good");
    assert_eq!(row["version"], "1");
    assert_eq!(row["traceId"], a.trace_id.as_deref().unwrap());
}

async fn ends_are_the_oldest_and_newest_valued_scores_never_shared<B: Backend>() {
    let dir = B::new().await;
    let store = Arc::new(dir.open().await);
    let mut batch: Vec<Score> = (1..=5)
        .map(|i| score(1, "Builtin.Helpfulness", 100 + i, Some(i as f64 / 10.0)))
        .collect();
    let mut errored = score(1, "Builtin.Helpfulness", 100, None);
    errored.error = Some("judge timed out".into());
    batch.push(errored);
    batch.push(score(2, "Builtin.Helpfulness", 90, Some(1.0)));
    store.insert_scores(&batch).await.unwrap();
    let f = ScoreFilter {
        version: Some(1),
        ..filter(0, 1000)
    };
    let values = |s: &[Score]| s.iter().map(|s| s.value.unwrap()).collect::<Vec<_>>();

    let (oldest, newest) = store.ends(&f, 2).await.unwrap();
    assert_eq!(
        values(&oldest),
        [0.1, 0.2],
        "the errored score and v2's are not values"
    );
    assert_eq!(values(&newest), [0.4, 0.5], "oldest first");

    // Fewer than 2n: the newest are what the oldest n leave.
    let (oldest, newest) = store.ends(&f, 4).await.unwrap();
    assert_eq!(values(&oldest), [0.1, 0.2, 0.3, 0.4]);
    assert_eq!(values(&newest), [0.5]);
    let (oldest, newest) = store.ends(&f, 9).await.unwrap();
    assert_eq!(oldest.len(), 5);
    assert!(newest.is_empty());

    let bad = ScoreFilter {
        from_ns: 2,
        to_ns: 1,
        ..f
    };
    assert!(matches!(store.ends(&bad, 2).await, Err(Error::Invalid(_))));
}

backend::on_both_backends!(
    scores_are_queried_by_endpoint_window_version_evaluator_and_source,
    an_invalid_score_refuses_the_whole_batch,
    retention_deletes_scores_with_the_traces_and_keeps_the_totals,
    scores_are_log_records_that_start_query_finds,
    ends_are_the_oldest_and_newest_valued_scores_never_shared,
);
