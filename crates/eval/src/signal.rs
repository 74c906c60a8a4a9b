//! Quality as a rollout signal: the canary's mean evaluation score, per evaluator the rollout
//! names, against an absolute floor or the stable version's mean over the same window.

use std::sync::Arc;

use async_trait::async_trait;
use berth_control::rollout::{EvaluationGate, Signal, Verdict, Window};
use berth_trace::scores::{ScoreFilter, ScoreStore};

use crate::drift::{Point, points};

/// Where the signal reads points: the scored values (errored ones left out) of `evaluator_id`
/// for sessions of `version` on `runtime_id`'s `endpoint` that ended in `[from_ns, to_ns)`.
/// [`Stored`] reads a [`ScoreStore`]; tests give fixed points.
#[async_trait]
pub trait ScoreSource: Send + Sync + 'static {
    async fn points(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
        evaluator_id: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<Point>, String>;
}

/// The points of a [`ScoreStore`] (every source: online, batch and imported scores).
pub struct Stored(pub Arc<dyn ScoreStore>);

#[async_trait]
impl ScoreSource for Stored {
    async fn points(
        &self,
        runtime_id: &str,
        endpoint: &str,
        version: u32,
        evaluator_id: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<Point>, String> {
        let scores = self
            .0
            .scores(&ScoreFilter {
                runtime_id: runtime_id.to_owned(),
                endpoint: endpoint.to_owned(),
                version: Some(version),
                evaluator_id: Some(evaluator_id.to_owned()),
                source: None,
                from_ns,
                to_ns,
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(points(&scores))
    }
}

/// The `evaluation` signal.
pub struct EvaluationSignal {
    scores: Arc<dyn ScoreSource>,
}

impl EvaluationSignal {
    pub fn new(scores: Arc<dyn ScoreSource>) -> Self {
        Self { scores }
    }

    /// The signal over stored scores.
    pub fn over(store: Arc<dyn ScoreStore>) -> Self {
        Self::new(Arc::new(Stored(store)))
    }

    /// `version`'s points over the rollout, or why the gate holds: unreadable, or fewer than
    /// `minScored` (`role` names the version in that reason).
    async fn enough(
        &self,
        w: &Window,
        g: &EvaluationGate,
        version: u32,
        role: &str,
    ) -> Result<Vec<Point>, Verdict> {
        let (from, to) = (ms_to_ns(w.since), ms_to_ns(w.to).saturating_add(1));
        let points = self
            .scores
            .points(
                &w.runtime_id,
                &w.endpoint,
                version,
                &g.evaluator_id,
                from,
                to,
            )
            .await
            .map_err(|e| Verdict::Inconclusive(format!("scores unreadable: {e}")))?;
        if (points.len() as u64) < g.min_scored {
            return Err(Verdict::Inconclusive(format!(
                "{}: {role} version {version} has {} of {} scored sessions needed",
                g.evaluator_id,
                points.len(),
                g.min_scored
            )));
        }
        Ok(points)
    }

    async fn gate(&self, w: &Window, g: &EvaluationGate) -> Verdict {
        let canary = match self.enough(w, g, w.canary_version, "canary").await {
            Ok(p) => p,
            Err(v) => return v,
        };
        let stable = if g.min_score.is_relative() {
            match self.enough(w, g, w.stable_version, "stable").await {
                Ok(p) => Some(mean(&p)),
                Err(v) => return v,
            }
        } else {
            None
        };
        let Some(floor) = g.min_score.limit(stable) else {
            return Verdict::Inconclusive(format!("{}: no stable mean", g.evaluator_id));
        };
        let m = mean(&canary);
        if m + 1e-12 < floor {
            Verdict::Breach(format!(
                "{}: mean score {m:.3} over {} scored sessions of version {} is below {floor:.3} \
                 ({}); lowest scored: {}",
                g.evaluator_id,
                canary.len(),
                w.canary_version,
                g.min_score,
                evidence(&canary).join(", ")
            ))
        } else {
            Verdict::Pass
        }
    }
}

#[async_trait]
impl Signal for EvaluationSignal {
    fn name(&self) -> &str {
        "evaluation"
    }

    async fn judge(&self, w: &Window) -> Verdict {
        let mut held = None;
        for g in &w.spec.evaluations {
            match self.gate(w, g).await {
                Verdict::Pass => {}
                b @ Verdict::Breach(_) => return b,
                i @ Verdict::Inconclusive(_) => {
                    held.get_or_insert(i);
                }
            }
        }
        held.unwrap_or(Verdict::Pass)
    }
}

fn ms_to_ns(ms: i64) -> i64 {
    ms.saturating_mul(1_000_000)
}

fn mean(p: &[Point]) -> f64 {
    p.iter().map(|p| p.value).sum::<f64>() / p.len().max(1) as f64
}

/// The five lowest scores' traces (`trace <id>`), or sessions (`session <id>`) for scores of a
/// whole session.
fn evidence(p: &[Point]) -> Vec<String> {
    let mut low: Vec<&Point> = p.iter().collect();
    low.sort_by(|a, b| a.value.total_cmp(&b.value));
    let mut out: Vec<String> = Vec::new();
    for s in low {
        let id = match &s.trace_id {
            Some(t) => format!("trace {t}"),
            None => format!("session {}", s.session_id),
        };
        if !out.contains(&id) {
            out.push(id);
        }
        if out.len() == 5 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_control::rollout::RolloutSpec;
    use serde_json::json;
    use std::collections::HashMap;

    /// Scores by version.
    struct Fixed(HashMap<u32, Vec<f64>>);

    #[async_trait]
    impl ScoreSource for Fixed {
        async fn points(
            &self,
            _: &str,
            _: &str,
            version: u32,
            _: &str,
            _: i64,
            _: i64,
        ) -> Result<Vec<Point>, String> {
            Ok(self
                .0
                .get(&version)
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, v)| Point {
                    value: *v,
                    session_id: format!("s{version}-{i}"),
                    trace_id: Some(format!("t{version}-{i}")),
                })
                .collect())
        }
    }

    fn window(gates: serde_json::Value) -> Window {
        Window {
            runtime_id: "rt".into(),
            endpoint: "prod".into(),
            stable_version: 1,
            canary_version: 2,
            from: 0,
            to: 1,
            since: 0,
            canary: Default::default(),
            stable: Default::default(),
            spec: RolloutSpec::from_input(&json!({ "evaluations": gates })).unwrap(),
        }
    }

    fn signal(stable: &[f64], canary: &[f64]) -> EvaluationSignal {
        EvaluationSignal::new(Arc::new(Fixed(HashMap::from([
            (1, stable.to_vec()),
            (2, canary.to_vec()),
        ]))))
    }

    #[tokio::test]
    async fn an_absolute_floor_holds_until_enough_scores_then_passes_or_breaches_with_evidence() {
        let w = window(
            json!([{"evaluatorId": "Builtin.Correctness", "minScore": "0.7", "minScored": 3}]),
        );
        let v = signal(&[], &[1.0, 1.0]).judge(&w).await;
        assert!(
            matches!(&v, Verdict::Inconclusive(r) if r.contains("2 of 3")),
            "{v:?}"
        );
        assert_eq!(signal(&[], &[1.0, 0.5, 1.0]).judge(&w).await, Verdict::Pass);
        let v = signal(&[], &[0.0, 0.5, 1.0, 0.25]).judge(&w).await;
        let Verdict::Breach(r) = v else {
            panic!("{v:?}")
        };
        assert!(
            r.starts_with("Builtin.Correctness: mean score 0.438"),
            "{r}"
        );
        assert!(
            r.ends_with("lowest scored: trace t2-0, trace t2-3, trace t2-1, trace t2-2"),
            "{r}"
        );
    }

    #[tokio::test]
    async fn a_relative_floor_compares_with_the_stable_version() {
        let w = window(json!([{"evaluatorId": "X", "minScore": "stable-0.1", "minScored": 2}]));
        let v = signal(&[0.9], &[0.9, 0.9]).judge(&w).await;
        assert!(
            matches!(&v, Verdict::Inconclusive(r) if r.contains("stable version 1")),
            "{v:?}"
        );
        assert_eq!(
            signal(&[0.9, 0.9], &[0.85, 0.8]).judge(&w).await,
            Verdict::Pass
        );
        assert!(matches!(
            signal(&[0.9, 0.9], &[0.7, 0.8]).judge(&w).await,
            Verdict::Breach(_)
        ));
    }

    #[tokio::test]
    async fn no_gates_pass_and_a_breach_wins_over_a_hold() {
        assert_eq!(
            signal(&[], &[]).judge(&window(json!([]))).await,
            Verdict::Pass
        );
        let w = window(json!([
            {"evaluatorId": "A", "minScore": "0.5", "minScored": 5},
            {"evaluatorId": "B", "minScore": "0.5", "minScored": 1},
        ]));
        assert!(
            matches!(signal(&[], &[0.1]).judge(&w).await, Verdict::Breach(r) if r.starts_with("B:"))
        );
    }
}
