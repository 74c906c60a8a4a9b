//! Experiments: an endpoint's versions compared on their evaluation scores in a window. Per
//! evaluator (and dimension) and version: how many values, their mean and 95% confidence
//! interval, errored results, and against a baseline version the absolute and relative change of
//! the mean and Welch's p-value.
//!
//! The baseline is the caller's choice (the endpoint's live version unless one is named); a
//! baseline with no scores for an evaluator leaves that evaluator's comparisons empty.
//! Definitions of every statistic, including small samples, are in [`crate::stats`].

use crate::stats::{Interval, Summary, absolute_change, relative_change, welch};
use berth_trace::scores::{Score, ScoreFilter, ScoreStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The two-sided significance level of [`Comparison::is_significant`].
pub const ALPHA: f64 = 0.05;

/// What to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentQuery {
    pub runtime_id: String,
    pub endpoint: String,
    /// Scores of sessions or traces that ended in `[from_ns, to_ns)`.
    pub from_ns: i64,
    pub to_ns: i64,
    /// The version the others are compared with (`None`: no comparisons).
    pub baseline: Option<u32>,
}

/// The experiment's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Experiment {
    pub runtime_id: String,
    pub endpoint: String,
    pub from_ns: i64,
    pub to_ns: i64,
    pub baseline_version: Option<u32>,
    /// By evaluator id, then dimension.
    pub evaluators: Vec<EvaluatorResult>,
}

/// One evaluator's (and dimension's) scores per version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluatorResult {
    pub evaluator_id: String,
    pub evaluator_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension: Option<String>,
    /// By version, ascending.
    pub versions: Vec<VersionResult>,
}

/// One version's scores for one evaluator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionResult {
    pub version: u32,
    /// Values (results with a value and no error).
    pub n: usize,
    /// Results that carried an error.
    pub errors: usize,
    pub mean: Option<f64>,
    pub variance: Option<f64>,
    pub confidence_interval: Option<Interval>,
    /// Against the baseline; `None` for the baseline itself and when the baseline has no values.
    pub vs_baseline: Option<Comparison>,
}

/// A version against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// `mean − baseline mean`.
    pub absolute_change: Option<f64>,
    /// `(mean − baseline mean) / |baseline mean|`, a fraction; `None` for a zero baseline.
    pub relative_change: Option<f64>,
    /// Welch's t statistic, degrees of freedom and two-sided p-value; `None` below two values
    /// on either side.
    pub t: Option<f64>,
    pub df: Option<f64>,
    pub p_value: Option<f64>,
    /// `p_value < ALPHA`.
    pub is_significant: bool,
}

type Key = (String, Option<String>);

#[derive(Default)]
struct Bucket {
    name: String,
    values: BTreeMap<u32, (Vec<f64>, usize)>,
}

/// The experiment over `scores` (already narrowed to one endpoint and window).
pub fn compute(scores: &[Score], baseline: Option<u32>) -> Vec<EvaluatorResult> {
    let mut by: BTreeMap<Key, Bucket> = BTreeMap::new();
    for s in scores {
        let b = by
            .entry((s.evaluator_id.clone(), s.dimension.clone()))
            .or_default();
        if b.name.is_empty() {
            b.name.clone_from(&s.evaluator_name);
        }
        let (values, errors) = b.values.entry(s.version).or_default();
        match (s.value, &s.error) {
            (_, Some(_)) => *errors += 1,
            (Some(v), None) if v.is_finite() => values.push(v),
            _ => {}
        }
    }
    by.into_iter()
        .map(|((evaluator_id, dimension), b)| {
            let base = baseline
                .and_then(|v| b.values.get(&v))
                .map(|(vals, _)| Summary::of(vals))
                .filter(|s| s.n > 0);
            let versions = b
                .values
                .iter()
                .map(|(version, (vals, errors))| {
                    let s = Summary::of(vals);
                    let vs_baseline = match &base {
                        Some(base) if Some(*version) != baseline && s.n > 0 => {
                            let w = welch(&s, base);
                            Some(Comparison {
                                absolute_change: absolute_change(&s, base),
                                relative_change: relative_change(&s, base),
                                t: w.map(|w| w.t),
                                df: w.map(|w| w.df),
                                p_value: w.map(|w| w.p_value),
                                is_significant: w.is_some_and(|w| w.p_value < ALPHA),
                            })
                        }
                        _ => None,
                    };
                    VersionResult {
                        version: *version,
                        n: s.n,
                        errors: *errors,
                        mean: s.mean,
                        variance: s.variance,
                        confidence_interval: s.ci95,
                        vs_baseline,
                    }
                })
                .collect();
            EvaluatorResult {
                evaluator_id,
                evaluator_name: b.name,
                dimension,
                versions,
            }
        })
        .collect()
}

/// Reads the window's scores from `store` and computes the experiment.
pub async fn run(
    store: &dyn ScoreStore,
    q: &ExperimentQuery,
) -> Result<Experiment, berth_trace::Error> {
    let scores = store
        .scores(&ScoreFilter {
            runtime_id: q.runtime_id.clone(),
            endpoint: q.endpoint.clone(),
            from_ns: q.from_ns,
            to_ns: q.to_ns,
            ..ScoreFilter::default()
        })
        .await?;
    Ok(Experiment {
        runtime_id: q.runtime_id.clone(),
        endpoint: q.endpoint.clone(),
        from_ns: q.from_ns,
        to_ns: q.to_ns,
        baseline_version: q.baseline,
        evaluators: compute(&scores, q.baseline),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(evaluator: &str, version: u32, value: Option<f64>, error: bool) -> Score {
        Score {
            at_ns: 0,
            ended_ns: 0,
            source: "online:c".into(),
            evaluator_id: evaluator.into(),
            evaluator_name: evaluator.trim_start_matches("Builtin.").into(),
            dimension: None,
            runtime_id: "r".into(),
            endpoint: "DEFAULT".into(),
            version,
            session_id: "s".into(),
            trace_id: None,
            span_id: None,
            value,
            label: None,
            explanation: None,
            error: error.then(|| "judge failed".into()),
            input_tokens: 0,
            output_tokens: 0,
        }
    }

    #[test]
    fn groups_by_evaluator_and_version_and_compares_with_the_baseline() {
        let mut scores = vec![];
        for v in [0.8, 0.9, 0.85] {
            scores.push(score("Builtin.Helpfulness", 1, Some(v), false));
        }
        for v in [0.6, 0.7, 0.65, 0.7] {
            scores.push(score("Builtin.Helpfulness", 2, Some(v), false));
        }
        scores.push(score("Builtin.Helpfulness", 2, None, true));
        scores.push(score("Builtin.Correctness", 2, Some(1.0), false));
        let out = compute(&scores, Some(1));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].evaluator_id, "Builtin.Correctness");
        // No baseline values for Correctness: no comparison.
        assert_eq!(out[0].versions[0].vs_baseline, None);
        let h = &out[1];
        assert_eq!(h.evaluator_name, "Helpfulness");
        let (v1, v2) = (&h.versions[0], &h.versions[1]);
        assert_eq!((v1.version, v1.n, v1.errors), (1, 3, 0));
        assert_eq!((v2.version, v2.n, v2.errors), (2, 4, 1));
        assert!(v1.vs_baseline.is_none());
        let c = v2.vs_baseline.unwrap();
        assert!((c.absolute_change.unwrap() - (0.6625 - 0.85)).abs() < 1e-12);
        assert!((c.relative_change.unwrap() - (0.6625 - 0.85) / 0.85).abs() < 1e-12);
        assert!(c.p_value.unwrap() < ALPHA && c.is_significant);
        assert!(c.t.unwrap() < 0.0);
    }

    #[test]
    fn without_a_baseline_nothing_is_compared() {
        let scores = vec![
            score("e", 1, Some(0.1), false),
            score("e", 2, Some(0.2), false),
        ];
        let out = compute(&scores, None);
        assert!(out[0].versions.iter().all(|v| v.vs_baseline.is_none()));
        let out = compute(&scores, Some(7));
        assert!(out[0].versions.iter().all(|v| v.vs_baseline.is_none()));
    }
}
