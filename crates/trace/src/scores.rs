//! Evaluation scores: what evaluators said about sessions and traces, kept beside the traces they
//! judged (the `eval_scores` table) and keyed by runtime, endpoint and version so experiments,
//! drift and rollout signals can compare versions.
//!
//! Writers (online evaluation, batch runs, rollout gates) call [`ScoreStore::insert_scores`];
//! readers call [`ScoreStore::scores`] with a [`ScoreFilter`] and Prometheus reads
//! [`ScoreStore::score_totals`]. One insert is one transaction that also
//! - adds to the running totals per runtime, endpoint, version and evaluator (`eval_score_totals`,
//!   read at scrape time: nothing on the invocation path pays for the metrics), and
//! - writes each score as a log record (an OTel `gen_ai.evaluation.result` event with
//!   `gen_ai.evaluation.*` attributes, [`score_document`]) into the CloudWatch Logs group
//!   [`results_group`] of its source, stream `<runtimeId>-<endpoint>`, so `StartQuery` finds
//!   scores beside the spans in `aws/spans`.
//!
//! Retention: scores go with the traces (`TraceStore::retain` deletes those whose `ended_ns` is
//! older than the age limit); their log records are stored events, deleted by the Logs API's
//! retention at the same age. Totals are never deleted (they are counters).

use crate::Error;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Where evaluation result log groups' names start.
pub const RESULTS_GROUP_PREFIX: &str = "/aws/bedrock-agentcore/evaluations/results/";

/// One evaluator result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Score {
    /// When it was scored (Unix ns).
    pub at_ns: i64,
    /// When the scored session or trace ended (Unix ns): places it in windows.
    pub ended_ns: i64,
    /// Who scored it: `online:<configId>`, `batch:<id>`, `gate:<run id>`.
    pub source: String,
    /// `Builtin.Helpfulness`, `name-XXXXXXXXXX`.
    pub evaluator_id: String,
    pub evaluator_name: String,
    /// For evaluators that score several dimensions.
    pub dimension: Option<String>,
    pub runtime_id: String,
    pub endpoint: String,
    pub version: u32,
    pub session_id: String,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    /// The numeric score; `None` for label-only results and errors.
    pub value: Option<f64>,
    pub label: Option<String>,
    pub explanation: Option<String>,
    /// Why the evaluator failed; such a score has no value.
    pub error: Option<String>,
    /// The judge's token usage.
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Which scores [`ScoreStore::scores`] returns: one endpoint's, in an `ended_ns` window.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreFilter {
    pub runtime_id: String,
    pub endpoint: String,
    pub version: Option<u32>,
    pub evaluator_id: Option<String>,
    pub source: Option<String>,
    /// Scores of sessions or traces that ended at or after this time (Unix ns).
    pub from_ns: i64,
    /// And before this time.
    pub to_ns: i64,
}

/// Running totals of one runtime, endpoint, version and evaluator since the store was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreTotal {
    pub runtime_id: String,
    pub endpoint: String,
    pub version: u32,
    pub evaluator_id: String,
    /// Scores with a value.
    pub count: u64,
    /// The sum of their values.
    pub sum: f64,
    /// Results that carried an error.
    pub errors: u64,
}

/// Where scores are kept.
#[async_trait::async_trait]
pub trait ScoreStore: Send + Sync + 'static {
    /// Stores `scores` (and their log records and totals) in one transaction; durable when this
    /// returns `Ok`. Refuses the whole batch if any score is invalid ([`validate`]).
    async fn insert_scores(&self, scores: &[Score]) -> Result<(), Error>;
    /// The scores `filter` selects, oldest `ended_ns` first.
    async fn scores(&self, filter: &ScoreFilter) -> Result<Vec<Score>, Error>;
    /// The oldest `n` and the newest `n` scores with a value and no error that `filter`
    /// selects, each oldest first and never sharing a score (with fewer than `2n`, the newest
    /// are the rest): a baseline and a recent window read in two bounded queries, however many
    /// scores a version has.
    async fn ends(&self, filter: &ScoreFilter, n: u32) -> Result<(Vec<Score>, Vec<Score>), Error>;
    /// Totals per runtime, endpoint, version and evaluator (what Prometheus shows).
    async fn score_totals(&self) -> Result<Vec<ScoreTotal>, Error>;
}

/// Checks what the store relies on: ids present, a finite value, a known source kind.
pub fn validate(s: &Score) -> Result<(), Error> {
    let bad = |m: String| Err(Error::Invalid(m));
    for (name, v) in [
        ("runtimeId", &s.runtime_id),
        ("endpoint", &s.endpoint),
        ("evaluatorId", &s.evaluator_id),
        ("sessionId", &s.session_id),
    ] {
        if v.is_empty() {
            return bad(format!("a score's {name} must not be empty"));
        }
    }
    match s.source.split_once(':') {
        Some(("online" | "batch" | "gate", id)) if !id.is_empty() => {}
        _ => {
            return bad(format!(
                "a score's source must be online:<id>, batch:<id> or gate:<id>, not {:?}",
                s.source
            ));
        }
    }
    if let Some(v) = s.value
        && !v.is_finite()
    {
        return bad(format!("a score's value must be finite, not {v}"));
    }
    Ok(())
}

/// The log group of a source's results: `online:<configId>` writes where AgentCore's online
/// evaluation does (`.../results/<configId>`); `batch:<id>` and `gate:<id>` into
/// `.../results/batch/<id>` and `.../results/gate/<id>`. Characters a group name cannot hold
/// become `_`.
pub fn results_group(source: &str) -> String {
    let tail = match source.split_once(':') {
        Some(("online", id)) => id.to_owned(),
        Some((kind, id)) => format!("{kind}/{id}"),
        None => source.to_owned(),
    };
    let clean: String = tail
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-/#".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{RESULTS_GROUP_PREFIX}{clean}")
}

/// The stream of an endpoint's results in its source's group.
pub fn results_stream(s: &Score) -> String {
    format!("{}-{}", s.runtime_id, s.endpoint)
}

/// A score as its log record document (the OTel log-record layout of the runtime groups): event
/// `gen_ai.evaluation.result` with `gen_ai.evaluation.name`, `.score.value`, `.score.label`,
/// `.explanation`, `error.type`, the session, trace and span, and Berth's attribution.
pub fn score_document(s: &Score) -> Value {
    let mut a = Map::new();
    let mut put = |k: &str, v: Value| {
        a.insert(k.to_owned(), v);
    };
    put("event.name", json!("gen_ai.evaluation.result"));
    put("gen_ai.evaluation.name", json!(s.evaluator_name));
    put("gen_ai.evaluation.evaluator.id", json!(s.evaluator_id));
    if let Some(d) = &s.dimension {
        put("gen_ai.evaluation.dimension", json!(d));
    }
    if let Some(v) = s.value {
        put("gen_ai.evaluation.score.value", json!(v));
    }
    if let Some(l) = &s.label {
        put("gen_ai.evaluation.score.label", json!(l));
    }
    if let Some(e) = &s.explanation {
        put("gen_ai.evaluation.explanation", json!(e));
    }
    if let Some(e) = &s.error {
        put("error.type", json!("EvaluationError"));
        put("error.message", json!(e));
    }
    put("gen_ai.usage.input_tokens", json!(s.input_tokens));
    put("gen_ai.usage.output_tokens", json!(s.output_tokens));
    put("session.id", json!(s.session_id));
    put("berth.source", json!(s.source));
    put("berth.runtime_id", json!(s.runtime_id));
    put("berth.endpoint", json!(s.endpoint));
    put("berth.version", json!(s.version));
    put("berth.session_id", json!(s.session_id));
    put("berth.ended_ns", json!(s.ended_ns));
    let mut doc = json!({
        "resource": { "attributes": { "service.name": "berth.evaluations" } },
        "scope": { "name": "berth.evaluations" },
        "timeUnixNano": s.at_ns,
        "observedTimeUnixNano": s.at_ns,
        "severityNumber": if s.error.is_some() { 17 } else { 9 },
        "severityText": if s.error.is_some() { "ERROR" } else { "INFO" },
        "body": "gen_ai.evaluation.result",
        "attributes": Value::Object(a),
    });
    if let Some(t) = &s.trace_id {
        doc["traceId"] = json!(t);
    }
    if let Some(sp) = &s.span_id {
        doc["spanId"] = json!(sp);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_source() {
        assert_eq!(
            results_group("online:cfg-1"),
            "/aws/bedrock-agentcore/evaluations/results/cfg-1"
        );
        assert_eq!(
            results_group("batch:b 1"),
            "/aws/bedrock-agentcore/evaluations/results/batch/b_1"
        );
        assert_eq!(
            results_group("gate:r1"),
            "/aws/bedrock-agentcore/evaluations/results/gate/r1"
        );
    }
}
