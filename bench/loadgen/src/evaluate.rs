//! `evaluate` (B11): deterministic `Evaluate` calls per second, in process: `--workers`
//! concurrent tasks each calling `berth_eval::evaluate` with `Builtin.TrajectoryExactOrderMatch`
//! (and `Builtin.Berth.Assertions`, alternating) over a Strands session of 22 ADOT documents,
//! sent twice as the SDK sends them (both log groups), with an expected trajectory and
//! assertions: what `POST /evaluations/evaluate/{id}` does after the HTTP layer. No model is
//! involved; judges are bounded by their model, not by Berth.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_api::evaluation::{
    Context, EvaluateInput, EvaluationContent, EvaluationExpectedTrajectory, EvaluationInput,
    EvaluationReferenceInput, SpanContext,
};
use berth_eval::{Judge, JudgeSettings, NoCodeRunner, catalogue, evaluate};
use serde::Serialize;
use serde_json::Value;

use crate::stats::{Latency, Summary};

/// The Strands session the engine's own tests read (an unmodified Strands agent's spans,
/// converted by the SDK's serializer).
const FIXTURE: &str = include_str!("../../../crates/eval/tests/fixtures/strands_events.json");

#[derive(Debug, Serialize)]
pub struct EvaluateReport {
    pub build: &'static str,
    pub workers: usize,
    pub seconds: f64,
    pub documents: usize,
    pub calls: u64,
    pub calls_per_s: f64,
    /// One call, µs.
    pub latency: Summary,
    /// The first call's results, to show what was computed.
    pub sample: Value,
}

fn input() -> anyhow::Result<EvaluateInput> {
    let docs: Vec<Value> = serde_json::from_str(FIXTURE)?;
    let session = docs
        .iter()
        .find_map(|d| d["attributes"]["session.id"].as_str())
        .unwrap_or("session-fixture-0001")
        .to_owned();
    let twice: Vec<Value> = docs.iter().chain(docs.iter()).cloned().collect();
    Ok(EvaluateInput {
        evaluation_input: EvaluationInput::SessionSpans(twice),
        evaluation_target: None,
        evaluation_reference_inputs: Some(vec![EvaluationReferenceInput {
            context: Context::SpanContext(SpanContext {
                session_id: session,
                trace_id: None,
                span_id: None,
            }),
            expected_response: None,
            assertions: Some(vec![
                EvaluationContent::Text("contains: 5".into()),
                EvaluationContent::Text("regex: \\d+".into()),
            ]),
            expected_trajectory: Some(EvaluationExpectedTrajectory {
                tool_names: Some(vec!["add".into()]),
            }),
        }]),
    })
}

pub async fn run(workers: usize, seconds: f64, warmup: f64) -> anyhow::Result<EvaluateReport> {
    let input = Arc::new(input()?);
    let evaluators = Arc::new(
        [
            "Builtin.TrajectoryExactOrderMatch",
            "Builtin.Berth.Assertions",
        ]
        .iter()
        .map(|id| catalogue::builtin(id).ok_or_else(|| anyhow::anyhow!("no {id}")))
        .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let judge = Arc::new(Judge::new(JudgeSettings::default()));
    let first = evaluate(&evaluators[0], &input, &NoCodeRunner, &judge)
        .await
        .map_err(|e| anyhow::anyhow!("evaluate: {}", e.message))?;
    let start = Instant::now() + Duration::from_secs_f64(warmup);
    let end = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (input, evaluators, judge) = (input.clone(), evaluators.clone(), judge.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Latency::new();
            let mut calls = 0u64;
            let mut i = w;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let e = &evaluators[i % evaluators.len()];
                i += 1;
                evaluate(e, &input, &NoCodeRunner, &judge)
                    .await
                    .map_err(|e| anyhow::anyhow!("evaluate: {}", e.message))?;
                if t0 >= start {
                    lat.record(t0.elapsed());
                    calls += 1;
                }
            }
            anyhow::Ok((calls, lat))
        }));
    }
    let mut total = Latency::new();
    let mut calls = 0;
    for t in tasks {
        let (n, lat) = t.await??;
        calls += n;
        total.merge(&lat);
    }
    Ok(EvaluateReport {
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        workers,
        seconds,
        documents: input.evaluation_input.documents().len(),
        calls,
        calls_per_s: calls as f64 / seconds,
        latency: total.summary(),
        sample: serde_json::to_value(&first)?,
    })
}
