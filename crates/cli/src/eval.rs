//! `berth eval`: a quality gate for CI. Runs a dataset's scenarios against one version of a
//! runtime (invoked by its version number, so it needs no traffic), scores each session with the
//! chosen evaluators through `Evaluate`, prints a table and fails below the thresholds.
//!
//! Everything goes through Berth's public API: `InvokeAgentRuntime` with the version as the
//! qualifier, the native `/berth/v1/traces/sessions/{id}/documents` (the session's spans in the
//! form `Evaluate` takes) and `POST /evaluations/evaluate/{evaluatorId}`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::ClientArgs;
use crate::client::{Client, seg};
use crate::exec::ExitWith;

/// `berth eval RUNTIME --version N --dataset FILE --evaluator ID[>=MIN]...`
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Runtime id or name.
    runtime: String,
    /// The version to judge (invoked directly: it needs no endpoint or traffic).
    #[arg(long)]
    version: u32,
    /// Scenarios, one JSON object per line, in the AgentCore SDK's dataset form:
    /// `{"scenario_id": .., "turns": [{"input": .., "expected_response": ..}],
    /// "expected_trajectory": [..], "assertions": [..]}`.
    #[arg(long)]
    dataset: PathBuf,
    /// An evaluator, repeatable, with an optional floor on its mean score:
    /// `Builtin.Correctness>=0.8`, `Builtin.TrajectoryExactOrderMatch>=1`, `myjudge-abcdefghij`.
    #[arg(long = "evaluator", value_name = "ID[>=MIN]", required = true)]
    evaluators: Vec<String>,
    /// The payload member each turn's input is sent in.
    #[arg(long, default_value = "prompt")]
    payload_key: String,
    /// Seconds the whole gate may take (invocations, waiting for spans, scoring).
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Seconds to wait, per session, for the agent's spans to arrive after its last turn.
    #[arg(long, default_value_t = 60)]
    settle_timeout: u64,
}

#[derive(Debug, Deserialize)]
struct Scenario {
    #[serde(default)]
    scenario_id: Option<String>,
    turns: Vec<Turn>,
    #[serde(default)]
    expected_trajectory: Option<Vec<String>>,
    #[serde(default)]
    assertions: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Turn {
    input: Value,
    #[serde(default)]
    expected_response: Option<String>,
}

/// One evaluator and its floor.
#[derive(Debug)]
struct Gate {
    id: String,
    min: Option<f64>,
}

fn gate(s: &str) -> anyhow::Result<Gate> {
    match s.split_once(">=") {
        None => Ok(Gate {
            id: s.trim().to_owned(),
            min: None,
        }),
        Some((id, min)) => {
            let min: f64 = min
                .trim()
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite())
                .with_context(|| format!("--evaluator {s:?}: the floor must be a number"))?;
            Ok(Gate {
                id: id.trim().to_owned(),
                min: Some(min),
            })
        }
    }
}

fn scenarios(path: &PathBuf) -> anyhow::Result<Vec<Scenario>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the dataset {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let s: Scenario = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a scenario", path.display(), i + 1))?;
        if s.turns.is_empty() {
            bail!(
                "{}:{}: a scenario needs at least one turn",
                path.display(),
                i + 1
            );
        }
        out.push(s);
    }
    if out.is_empty() {
        bail!("{}: no scenarios", path.display());
    }
    Ok(out)
}

/// What one evaluator scored over the run.
#[derive(Debug, Default)]
struct Tally {
    values: Vec<f64>,
    errors: Vec<String>,
}

/// `berth eval`.
pub async fn eval(a: EvalArgs, args: ClientArgs) -> anyhow::Result<()> {
    let gates = a
        .evaluators
        .iter()
        .map(|s| gate(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let scenarios = scenarios(&a.dataset)?;
    let c = Client::new(&args)?;
    let runtime = c.runtime_id(&a.runtime).await?;
    let deadline = Duration::from_secs(a.timeout);
    let tallies = tokio::time::timeout(deadline, run(&c, &a, &runtime, &scenarios, &gates))
        .await
        .map_err(|_| anyhow::anyhow!("the gate did not finish within {} s", a.timeout))??;

    let mut failed = false;
    let rows: Vec<Value> = gates
        .iter()
        .zip(&tallies)
        .map(|(g, t)| {
            let n = t.values.len();
            let mean = (n > 0).then(|| t.values.iter().sum::<f64>() / n as f64);
            let pass = match (g.min, mean) {
                (Some(_), None) => false,
                (Some(min), Some(m)) => m + 1e-12 >= min,
                (None, _) => true,
            };
            failed |= !pass;
            json!({
                "evaluatorId": g.id,
                "scored": n,
                "errors": t.errors.len(),
                "mean": mean,
                "min": t.values.iter().copied().reduce(f64::min),
                "threshold": g.min,
                "pass": pass,
                "firstError": t.errors.first(),
            })
        })
        .collect();
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "runtimeId": runtime,
                "version": a.version,
                "scenarios": scenarios.len(),
                "evaluators": rows,
                "pass": !failed,
            }))?
        );
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY);
        t.set_header(vec![
            "EVALUATOR",
            "SCORED",
            "ERRORS",
            "MEAN",
            "MIN",
            "THRESHOLD",
            "RESULT",
        ]);
        let num = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.3}"));
        for r in &rows {
            t.add_row(vec![
                r["evaluatorId"].as_str().unwrap_or_default().to_owned(),
                r["scored"].to_string(),
                r["errors"].to_string(),
                num(&r["mean"]),
                num(&r["min"]),
                num(&r["threshold"]),
                if r["pass"] == true { "pass" } else { "FAIL" }.to_owned(),
            ]);
        }
        outln!("{t}");
        for r in &rows {
            if let Some(e) = r["firstError"].as_str() {
                eprintln!("{}: {} errors, first: {e}", r["evaluatorId"], r["errors"]);
            }
        }
        outln!(
            "{} scenarios against version {} of {runtime}: {}",
            scenarios.len(),
            a.version,
            if failed { "FAILED" } else { "passed" }
        );
    }
    if failed {
        return Err(ExitWith(1).into());
    }
    Ok(())
}

async fn run(
    c: &Client,
    a: &EvalArgs,
    runtime: &str,
    scenarios: &[Scenario],
    gates: &[Gate],
) -> anyhow::Result<Vec<Tally>> {
    let mut tallies: Vec<Tally> = gates.iter().map(|_| Tally::default()).collect();
    let run_id = berth_types::new_request_id();
    for (i, s) in scenarios.iter().enumerate() {
        let name = s
            .scenario_id
            .clone()
            .unwrap_or_else(|| format!("#{}", i + 1));
        let session = format!("berth-eval-{run_id}-{i:05}");
        for turn in &s.turns {
            invoke(c, a, runtime, &session, &turn.input)
                .await
                .with_context(|| format!("scenario {name}"))?;
        }
        let docs = settled(c, runtime, &session, s.turns.len(), a.settle_timeout)
            .await
            .with_context(|| format!("scenario {name}: reading its spans"))?;
        let refs = references(&session, s, &docs);
        for (g, t) in gates.iter().zip(tallies.iter_mut()) {
            let body = json!({
                "evaluationInput": { "sessionSpans": docs },
                "evaluationReferenceInputs": refs,
            });
            let out = c
                .call(
                    "POST",
                    &format!("/evaluations/evaluate/{}", seg(&g.id)),
                    Some(&body),
                )
                .await
                .with_context(|| format!("scenario {name}: evaluating with {}", g.id))?;
            for r in out["evaluationResults"].as_array().into_iter().flatten() {
                match (r["value"].as_f64(), r["errorMessage"].as_str()) {
                    (Some(v), _) => t.values.push(v),
                    (None, Some(e)) => t.errors.push(format!("{name}: {e}")),
                    (None, None) => t.errors.push(format!("{name}: no value")),
                }
            }
        }
    }
    Ok(tallies)
}

async fn invoke(
    c: &Client,
    a: &EvalArgs,
    runtime: &str,
    session: &str,
    input: &Value,
) -> anyhow::Result<()> {
    let payload = json!({ a.payload_key.as_str(): input });
    let path = format!(
        "/runtimes/{}/invocations?qualifier={}",
        seg(runtime),
        a.version
    );
    let extra = [(
        "x-amzn-bedrock-agentcore-runtime-session-id".to_owned(),
        session.to_owned(),
    )];
    let resp = c.send_with("POST", &path, Some(&payload), &extra).await?;
    let resp = Client::success(resp).await?;
    // The answer is read in full: the turn is over when its body ends.
    resp.bytes().await.context("reading the agent's answer")?;
    Ok(())
}

/// The session's documents once every turn's trace holds the agent's own top span (a span whose
/// parent is Berth's `InvokeAgentRuntime` span: it ends last, after everything under it), or
/// what there is when `settle` seconds pass first (an agent that exports no spans).
async fn settled(
    c: &Client,
    runtime: &str,
    session: &str,
    turns: usize,
    settle: u64,
) -> anyhow::Result<Vec<Value>> {
    let path = format!(
        "/berth/v1/traces/sessions/{}/documents?runtime={}",
        seg(session),
        seg(runtime)
    );
    let start = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        let v = c.call("GET", &path, None).await?;
        let docs = v["sessionSpans"].as_array().cloned().unwrap_or_default();
        let berth: Vec<&str> = docs
            .iter()
            .filter(|d| is_berth_call(d))
            .filter_map(|d| d["spanId"].as_str())
            .collect();
        let parents: BTreeSet<&str> = docs
            .iter()
            .filter(|d| !is_berth(d))
            .filter_map(|d| d["parentSpanId"].as_str())
            .collect();
        let done = berth.len() >= turns && berth.iter().all(|id| parents.contains(id));
        if done || start.elapsed() >= Duration::from_secs(settle) {
            if !done {
                eprintln!(
                    "session {session}: the agent's spans did not all arrive within {settle} s; \
                     scoring what there is"
                );
            }
            return Ok(docs);
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

fn is_berth(d: &Value) -> bool {
    d["resource"]["attributes"]["service.name"] == "berth"
}

fn is_berth_call(d: &Value) -> bool {
    is_berth(d) && d["name"] == "InvokeAgentRuntime"
}

/// The scenario's references: expected responses per turn (turn i is the i-th trace Berth
/// started, in time order), assertions and the expected trajectory for the session.
fn references(session: &str, s: &Scenario, docs: &[Value]) -> Vec<Value> {
    let mut calls: Vec<(i64, &str)> = docs
        .iter()
        .filter(|d| is_berth_call(d))
        .filter_map(|d| Some((d["startTimeUnixNano"].as_i64()?, d["traceId"].as_str()?)))
        .collect();
    calls.sort();
    let mut refs = Vec::new();
    let mut whole = json!({ "context": { "spanContext": { "sessionId": session } } });
    if let Some(a) = &s.assertions {
        whole["assertions"] = a.iter().map(|t| json!({ "text": t })).collect();
    }
    if let Some(t) = &s.expected_trajectory {
        whole["expectedTrajectory"] = json!({ "toolNames": t });
    }
    if whole.as_object().is_some_and(|o| o.len() > 1) {
        refs.push(whole);
    }
    for (turn, (_, trace)) in s.turns.iter().zip(&calls) {
        if let Some(e) = &turn.expected_response {
            refs.push(json!({
                "context": { "spanContext": { "sessionId": session, "traceId": trace } },
                "expectedResponse": { "text": e },
            }));
        }
    }
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_with_and_without_a_floor() {
        let g = gate("Builtin.Correctness>=0.75").unwrap();
        assert_eq!((g.id.as_str(), g.min), ("Builtin.Correctness", Some(0.75)));
        let g = gate("judge-abcdefghij").unwrap();
        assert_eq!((g.id.as_str(), g.min), ("judge-abcdefghij", None));
        assert!(gate("X>=high").is_err());
    }

    #[test]
    fn references_map_turns_to_traces_in_time_order() {
        let s: Scenario = serde_json::from_value(json!({
            "turns": [{"input": "a", "expected_response": "A"}, {"input": "b", "expected_response": "B"}],
            "expected_trajectory": ["add"],
        }))
        .unwrap();
        let call = |trace: &str, start: i64| {
            json!({"resource": {"attributes": {"service.name": "berth"}}, "name": "InvokeAgentRuntime",
                   "traceId": trace, "spanId": "0000000000000001", "startTimeUnixNano": start})
        };
        let refs = references("sess", &s, &[call("t2", 20), call("t1", 10)]);
        assert_eq!(refs[0]["expectedTrajectory"]["toolNames"], json!(["add"]));
        assert_eq!(refs[1]["context"]["spanContext"]["traceId"], "t1");
        assert_eq!(refs[1]["expectedResponse"]["text"], "A");
        assert_eq!(refs[2]["context"]["spanContext"]["traceId"], "t2");
    }
}
