//! An experiment read from a real SQLite trace store in a temp dir: only the endpoint's scores in
//! the window count, per evaluator (and dimension) and version, against the baseline.
#![allow(clippy::unwrap_used)]

use berth_eval::drift::{DriftPolicy, Verdict, decide, points};
use berth_eval::experiment::{ExperimentQuery, run};
use berth_trace::SqliteTraceStore;
use berth_trace::scores::{Score, ScoreFilter, ScoreStore};

const S: i64 = 1_000_000_000;

fn score(endpoint: &str, version: u32, dimension: Option<&str>, ended_s: i64, v: f64) -> Score {
    Score {
        at_ns: ended_s * S + 1,
        ended_ns: ended_s * S,
        source: "online:cfg".into(),
        evaluator_id: "Builtin.Helpfulness".into(),
        evaluator_name: "Helpfulness".into(),
        dimension: dimension.map(str::to_owned),
        runtime_id: "rt".into(),
        endpoint: endpoint.into(),
        version,
        session_id: format!("s-{ended_s}"),
        trace_id: Some(format!("{ended_s:032x}")),
        span_id: None,
        value: Some(v),
        label: None,
        explanation: None,
        error: None,
        input_tokens: 0,
        output_tokens: 0,
    }
}

#[tokio::test]
async fn the_window_endpoint_and_dimensions_decide_what_is_compared() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteTraceStore::open(&dir.path().join("traces.db"))
        .await
        .unwrap();
    let mut scores = Vec::new();
    for (i, v) in [0.8, 0.9, 0.85, 0.95].into_iter().enumerate() {
        scores.push(score("prod", 1, None, 100 + i as i64, v));
    }
    for (i, v) in [0.5, 0.6, 0.55].into_iter().enumerate() {
        scores.push(score("prod", 2, None, 200 + i as i64, v));
    }
    // Outside the window, another endpoint, another dimension.
    scores.push(score("prod", 2, None, 999, 0.0));
    scores.push(score("canary", 2, None, 150, 0.0));
    scores.push(score("prod", 2, Some("tone"), 150, 0.3));
    store.insert_scores(&scores).await.unwrap();

    let exp = run(
        &store,
        &ExperimentQuery {
            runtime_id: "rt".into(),
            endpoint: "prod".into(),
            from_ns: 0,
            to_ns: 500 * S,
            baseline: Some(1),
        },
    )
    .await
    .unwrap();
    assert_eq!(exp.baseline_version, Some(1));
    assert_eq!(exp.evaluators.len(), 2);
    let plain = &exp.evaluators[0];
    assert_eq!(plain.dimension, None);
    assert_eq!(
        plain
            .versions
            .iter()
            .map(|v| (v.version, v.n))
            .collect::<Vec<_>>(),
        [(1, 4), (2, 3)]
    );
    let c = plain.versions[1].vs_baseline.unwrap();
    assert!((c.absolute_change.unwrap() - (0.55 - 0.875)).abs() < 1e-12);
    assert!(c.is_significant);
    // The dimension has no baseline values: nothing to compare it with.
    let tone = &exp.evaluators[1];
    assert_eq!(tone.dimension.as_deref(), Some("tone"));
    assert_eq!(tone.versions[0].vs_baseline, None);

    // Drift over the same store: version 2's recent window against version 1's scores.
    let read = |version, from_s: i64, to_s: i64| {
        let store = store.clone();
        async move {
            store
                .scores(&ScoreFilter {
                    runtime_id: "rt".into(),
                    endpoint: "prod".into(),
                    version: Some(version),
                    from_ns: from_s * S,
                    to_ns: to_s * S,
                    ..ScoreFilter::default()
                })
                .await
                .unwrap()
        }
    };
    // The drift caller picks one evaluator and dimension (scores() filters by evaluator only).
    let no_dimension = |scores: Vec<Score>| -> Vec<Score> {
        scores
            .into_iter()
            .filter(|s| s.dimension.is_none())
            .collect()
    };
    let base = points(&no_dimension(read(1, 0, 500).await));
    let recent = points(&no_dimension(read(2, 0, 500).await));
    let policy = DriftPolicy {
        min_drop: 0.1,
        min_count: 3,
        alpha: Some(0.05),
        worst: 1,
    };
    let d = decide(&policy, &base, &recent);
    assert_eq!(d.verdict, Verdict::Drift);
    assert_eq!(d.recent.n, 3);
    assert_eq!(d.worst[0].value, 0.5);
    assert_eq!(
        d.worst[0].trace_id.as_deref(),
        Some(&*format!("{:032x}", 200))
    );
}
