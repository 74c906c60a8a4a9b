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

use crate::{Error, SqliteTraceStore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;

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

const COLS: &str = "at_ns, ended_ns, source, evaluator_id, evaluator_name, dimension, runtime_id, \
    endpoint, version, session_id, trace_id, span_id, value, label, explanation, error, \
    input_tokens, output_tokens";

/// Rows per multi-row statement: 18 binds each, under SQLite's 32,766 variables.
const ROWS_PER_STATEMENT: usize = 500;

const MS: i64 = 1_000_000;

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn score_row(row: &sqlx::sqlite::SqliteRow) -> Result<Score, sqlx::Error> {
    let version: i64 = row.try_get("version")?;
    let input: i64 = row.try_get("input_tokens")?;
    let output: i64 = row.try_get("output_tokens")?;
    Ok(Score {
        at_ns: row.try_get("at_ns")?,
        ended_ns: row.try_get("ended_ns")?,
        source: row.try_get("source")?,
        evaluator_id: row.try_get("evaluator_id")?,
        evaluator_name: row.try_get("evaluator_name")?,
        dimension: row.try_get("dimension")?,
        runtime_id: row.try_get("runtime_id")?,
        endpoint: row.try_get("endpoint")?,
        version: u32::try_from(version).unwrap_or_default(),
        session_id: row.try_get("session_id")?,
        trace_id: row.try_get("trace_id")?,
        span_id: row.try_get("span_id")?,
        value: row.try_get("value")?,
        label: row.try_get("label")?,
        explanation: row.try_get("explanation")?,
        error: row.try_get("error")?,
        input_tokens: u64::try_from(input).unwrap_or_default(),
        output_tokens: u64::try_from(output).unwrap_or_default(),
    })
}

/// The totals key: runtime, endpoint, version, evaluator.
type TotalKey<'a> = (&'a str, &'a str, u32, &'a str);

/// The log events of `scores`, per (group, stream): `(timestamp_ms, message)`.
type EventsByStream = HashMap<(String, String), Vec<(i64, String)>>;

/// `SELECT cols` of the scores `f` selects, without an order.
fn select(f: &ScoreFilter, cols: &str) -> Result<QueryBuilder<'static, Sqlite>, Error> {
    if f.from_ns > f.to_ns {
        return Err(Error::Invalid(format!(
            "the window's start {} is after its end {}",
            f.from_ns, f.to_ns
        )));
    }
    let mut q = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {cols} FROM eval_scores WHERE runtime_id = "
    ));
    q.push_bind(f.runtime_id.clone())
        .push(" AND endpoint = ")
        .push_bind(f.endpoint.clone())
        .push(" AND ended_ns >= ")
        .push_bind(f.from_ns)
        .push(" AND ended_ns < ")
        .push_bind(f.to_ns);
    if let Some(v) = f.version {
        q.push(" AND version = ").push_bind(i64::from(v));
    }
    if let Some(e) = &f.evaluator_id {
        q.push(" AND evaluator_id = ").push_bind(e.clone());
    }
    if let Some(s) = &f.source {
        q.push(" AND source = ").push_bind(s.clone());
    }
    Ok(q)
}

#[async_trait::async_trait]
impl ScoreStore for SqliteTraceStore {
    async fn insert_scores(&self, scores: &[Score]) -> Result<(), Error> {
        if scores.is_empty() {
            return Ok(());
        }
        scores.iter().try_for_each(validate)?;
        let mut totals: HashMap<TotalKey<'_>, (i64, f64, i64)> = HashMap::new();
        let mut events: EventsByStream = HashMap::new();
        for s in scores {
            let t = totals
                .entry((&s.runtime_id, &s.endpoint, s.version, &s.evaluator_id))
                .or_default();
            if let Some(v) = s.value.filter(|_| s.error.is_none()) {
                t.0 += 1;
                t.1 += v;
            }
            t.2 += i64::from(s.error.is_some());
            events
                .entry((results_group(&s.source), results_stream(s)))
                .or_default()
                .push((s.at_ns.div_euclid(MS), score_document(s).to_string()));
        }
        let mut tx = self.writer.begin().await?;
        for chunk in scores.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(format!("INSERT INTO eval_scores ({COLS}) "));
            q.push_values(chunk, |mut b, s| {
                b.push_bind(s.at_ns)
                    .push_bind(s.ended_ns)
                    .push_bind(s.source.as_str())
                    .push_bind(s.evaluator_id.as_str())
                    .push_bind(s.evaluator_name.as_str())
                    .push_bind(s.dimension.as_deref())
                    .push_bind(s.runtime_id.as_str())
                    .push_bind(s.endpoint.as_str())
                    .push_bind(i64::from(s.version))
                    .push_bind(s.session_id.as_str())
                    .push_bind(s.trace_id.as_deref())
                    .push_bind(s.span_id.as_deref())
                    .push_bind(s.value)
                    .push_bind(s.label.as_deref())
                    .push_bind(s.explanation.as_deref())
                    .push_bind(s.error.as_deref())
                    .push_bind(tokens(s.input_tokens))
                    .push_bind(tokens(s.output_tokens));
            });
            q.build().persistent(false).execute(&mut *tx).await?;
        }
        for ((rt, ep, version, evaluator), (n, sum, errors)) in &totals {
            sqlx::query(
                "INSERT INTO eval_score_totals \
                   (runtime_id, endpoint, version, evaluator_id, scores, value_sum, errors) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (runtime_id, endpoint, version, evaluator_id) DO UPDATE SET \
                   scores = scores + excluded.scores, value_sum = value_sum + excluded.value_sum, \
                   errors = errors + excluded.errors",
            )
            .bind(*rt)
            .bind(*ep)
            .bind(i64::from(*version))
            .bind(*evaluator)
            .bind(n)
            .bind(sum)
            .bind(errors)
            .execute(&mut *tx)
            .await?;
        }
        let now_ms = crate::now_ns().div_euclid(MS);
        for ((group, stream), evs) in &events {
            sqlx::query("INSERT OR IGNORE INTO log_groups (name, created_ms) VALUES (?, ?)")
                .bind(group)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT OR IGNORE INTO log_streams (group_name, name, created_ms) VALUES (?, ?, ?)",
            )
            .bind(group)
            .bind(stream)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            let mut bytes = 0i64;
            for chunk in evs.chunks(ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO log_events (group_name, stream, timestamp_ms, ingestion_ms, \
                     message) ",
                );
                q.push_values(chunk, |mut b, (ts, message)| {
                    b.push_bind(group.as_str())
                        .push_bind(stream.as_str())
                        .push_bind(*ts)
                        .push_bind(now_ms)
                        .push_bind(message.as_str());
                });
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            for (_, m) in evs {
                bytes = bytes.saturating_add(i64::try_from(m.len()).unwrap_or(i64::MAX));
            }
            let first = evs.iter().map(|(t, _)| *t).min();
            let last = evs.iter().map(|(t, _)| *t).max();
            sqlx::query(
                "UPDATE log_streams SET \
                   first_event_ms = min(coalesce(first_event_ms, ?1), ?1), \
                   last_event_ms = max(coalesce(last_event_ms, ?2), ?2), \
                   last_ingestion_ms = ?3, \
                   stored_bytes = stored_bytes + ?4 \
                 WHERE group_name = ?5 AND name = ?6",
            )
            .bind(first)
            .bind(last)
            .bind(now_ms)
            .bind(bytes)
            .bind(group)
            .bind(stream)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn scores(&self, f: &ScoreFilter) -> Result<Vec<Score>, Error> {
        let mut q = select(f, COLS)?;
        q.push(" ORDER BY ended_ns, id");
        let rows = q.build().fetch_all(&self.reader).await?;
        Ok(rows.iter().map(score_row).collect::<Result<_, _>>()?)
    }

    async fn ends(&self, f: &ScoreFilter, n: u32) -> Result<(Vec<Score>, Vec<Score>), Error> {
        let cols = format!("{COLS}, id");
        let valued = " AND value IS NOT NULL AND error IS NULL";
        let mut first = select(f, &cols)?;
        first
            .push(valued)
            .push(" ORDER BY ended_ns, id LIMIT ")
            .push_bind(i64::from(n));
        let first = first.build().fetch_all(&self.reader).await?;
        let mut last = select(f, &cols)?;
        last.push(valued)
            .push(" ORDER BY ended_ns DESC, id DESC LIMIT ")
            .push_bind(i64::from(n));
        let mut last = last.build().fetch_all(&self.reader).await?;
        // Fewer than 2n: the newest are only those the oldest n do not hold.
        let oldest: std::collections::HashSet<i64> = first
            .iter()
            .map(|r| r.try_get::<i64, _>("id"))
            .collect::<Result<_, _>>()?;
        last.retain(|r| {
            r.try_get::<i64, _>("id")
                .is_ok_and(|id| !oldest.contains(&id))
        });
        Ok((
            first.iter().map(score_row).collect::<Result<_, _>>()?,
            last.iter().rev().map(score_row).collect::<Result<_, _>>()?,
        ))
    }

    async fn score_totals(&self) -> Result<Vec<ScoreTotal>, Error> {
        let rows = sqlx::query(
            "SELECT runtime_id, endpoint, version, evaluator_id, scores, value_sum, errors \
             FROM eval_score_totals ORDER BY runtime_id, endpoint, version, evaluator_id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version")?;
                let n: i64 = r.try_get("scores")?;
                let errors: i64 = r.try_get("errors")?;
                Ok(ScoreTotal {
                    runtime_id: r.try_get("runtime_id")?,
                    endpoint: r.try_get("endpoint")?,
                    version: u32::try_from(version).unwrap_or_default(),
                    evaluator_id: r.try_get("evaluator_id")?,
                    count: u64::try_from(n).unwrap_or_default(),
                    sum: r.try_get("value_sum")?,
                    errors: u64::try_from(errors).unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }
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
