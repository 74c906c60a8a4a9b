//! Drift: whether one evaluator's recent scores of a version fell below that version's baseline.
//! Pure (no IO): the caller reads the two windows' scores (`berth_trace::scores`) and wires
//! alerts and rollbacks around the decision.
//!
//! A version drifted for an evaluator when all of these hold:
//! 1. both windows have at least [`DriftPolicy::min_count`] values;
//! 2. the mean dropped by more than [`DriftPolicy::min_drop`] (baseline − recent, absolute);
//! 3. with [`DriftPolicy::alpha`] set, Welch's two-sided p-value is below it.
//!
//! Errored results and results without a value are not values: they are left out of both windows
//! (their count is evidence of a different problem).

use crate::stats::{Summary, welch};
use berth_trace::scores::Score;
use serde::{Deserialize, Serialize};

/// When a drop counts as drift.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftPolicy {
    /// The mean must fall by more than this (in score units).
    pub min_drop: f64,
    /// Values needed in each window before anything is decided (at least 2 when `alpha` is set:
    /// a t-test needs two values a side).
    pub min_count: usize,
    /// With this, the drop must also be significant: Welch's p-value below `alpha`.
    pub alpha: Option<f64>,
    /// How many of the lowest recent scores to return as evidence.
    pub worst: usize,
}

impl Default for DriftPolicy {
    fn default() -> Self {
        Self {
            min_drop: 0.1,
            min_count: 20,
            alpha: Some(0.05),
            worst: 5,
        }
    }
}

/// One scored value with what it scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub value: f64,
    pub session_id: String,
    pub trace_id: Option<String>,
}

/// The values of `scores` (errored and valueless results left out).
pub fn points(scores: &[Score]) -> Vec<Point> {
    scores
        .iter()
        .filter(|s| s.error.is_none())
        .filter_map(|s| {
            Some(Point {
                value: s.value.filter(|v| v.is_finite())?,
                session_id: s.session_id.clone(),
                trace_id: s.trace_id.clone(),
            })
        })
        .collect()
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The drop is beyond the threshold (and significant, when asked).
    Drift,
    /// Enough values, and no drift.
    Stable,
    /// Fewer than `min_count` values in a window: nothing decided.
    InsufficientData,
}

/// The decision and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    pub verdict: Verdict,
    pub baseline: Summary,
    pub recent: Summary,
    /// `baseline mean − recent mean` (positive when scores fell).
    pub drop: Option<f64>,
    /// Welch's two-sided p-value of recent against baseline, when it is defined.
    pub p_value: Option<f64>,
    /// The lowest recent scores, lowest first (ties keep their order).
    pub worst: Vec<Point>,
}

/// Decides drift of `recent` against `baseline` under `policy`.
pub fn decide(policy: &DriftPolicy, baseline: &[Point], recent: &[Point]) -> Drift {
    let values = |ps: &[Point]| ps.iter().map(|p| p.value).collect::<Vec<_>>();
    let b = Summary::of(&values(baseline));
    let r = Summary::of(&values(recent));
    let drop = b.mean.zip(r.mean).map(|(b, r)| b - r);
    let p_value = welch(&r, &b).map(|w| w.p_value);
    let mut worst: Vec<Point> = recent.to_vec();
    worst.sort_by(|x, y| x.value.total_cmp(&y.value));
    worst.truncate(policy.worst);
    let enough = b.n >= policy.min_count.max(1) && r.n >= policy.min_count.max(1);
    let verdict = if !enough {
        Verdict::InsufficientData
    } else {
        let dropped = drop.is_some_and(|d| d > policy.min_drop);
        let significant = match policy.alpha {
            None => true,
            Some(alpha) => p_value.is_some_and(|p| p < alpha),
        };
        if dropped && significant {
            Verdict::Drift
        } else {
            Verdict::Stable
        }
    };
    Drift {
        verdict,
        baseline: b,
        recent: r,
        drop,
        p_value,
        worst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Point {
                value: *v,
                session_id: format!("s{i}"),
                trace_id: Some(format!("t{i}")),
            })
            .collect()
    }

    fn policy(alpha: Option<f64>) -> DriftPolicy {
        DriftPolicy {
            min_drop: 0.1,
            min_count: 4,
            alpha,
            worst: 2,
        }
    }

    #[test]
    fn a_clear_drop_is_drift_with_evidence() {
        let base = pts(&[0.9, 0.85, 0.95, 0.9, 0.88]);
        let recent = pts(&[0.5, 0.55, 0.45, 0.6, 0.4]);
        let d = decide(&policy(Some(0.05)), &base, &recent);
        assert_eq!(d.verdict, Verdict::Drift);
        assert!((d.drop.unwrap() - (0.896 - 0.5)).abs() < 1e-9);
        assert!(d.p_value.unwrap() < 0.001);
        let worst: Vec<_> = d.worst.iter().map(|p| p.trace_id.as_deref()).collect();
        assert_eq!(worst, [Some("t4"), Some("t2")]);
        assert_eq!((d.baseline.n, d.recent.n), (5, 5));
    }

    #[test]
    fn a_small_or_rising_change_is_stable() {
        let base = pts(&[0.9, 0.85, 0.95, 0.9]);
        assert_eq!(
            decide(&policy(None), &base, &pts(&[0.85, 0.88, 0.86, 0.84])).verdict,
            Verdict::Stable
        );
        assert_eq!(
            decide(&policy(None), &base, &pts(&[1.0, 1.0, 0.99, 0.98])).verdict,
            Verdict::Stable
        );
    }

    #[test]
    fn a_noisy_drop_is_not_significant() {
        let base = pts(&[1.0, 0.0, 1.0, 0.0, 1.0]);
        let recent = pts(&[0.0, 1.0, 0.0, 1.0, 0.0]);
        // The mean fell by 0.2 but the spread is huge: no drift with a significance test,
        // drift without one.
        assert_eq!(
            decide(&policy(Some(0.05)), &base, &recent).verdict,
            Verdict::Stable
        );
        assert_eq!(
            decide(&policy(None), &base, &recent).verdict,
            Verdict::Drift
        );
    }

    #[test]
    fn too_few_values_decide_nothing() {
        let d = decide(&policy(None), &pts(&[0.9; 10]), &pts(&[0.1, 0.1, 0.1]));
        assert_eq!(d.verdict, Verdict::InsufficientData);
        assert_eq!(d.recent.n, 3);
        let d = decide(&policy(None), &[], &[]);
        assert_eq!(
            (d.verdict, d.drop, d.p_value),
            (Verdict::InsufficientData, None, None)
        );
    }

    #[test]
    fn errored_and_valueless_scores_are_not_points() {
        let s = |value: Option<f64>, error: Option<&str>| Score {
            at_ns: 0,
            ended_ns: 0,
            source: "online:c".into(),
            evaluator_id: "Builtin.Helpfulness".into(),
            evaluator_name: "Helpfulness".into(),
            dimension: None,
            runtime_id: "r".into(),
            endpoint: "DEFAULT".into(),
            version: 1,
            session_id: "s".into(),
            trace_id: None,
            span_id: None,
            value,
            label: None,
            explanation: None,
            error: error.map(str::to_owned),
            input_tokens: 0,
            output_tokens: 0,
        };
        let p = points(&[
            s(Some(0.5), None),
            s(None, None),
            s(Some(0.1), Some("judge failed")),
        ]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].value, 0.5);
    }
}
