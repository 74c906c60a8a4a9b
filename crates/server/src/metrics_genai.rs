//! The Prometheus families beyond per-version invocation health (`metrics.rs`): GenAI usage
//! summed from agents' spans (`berth_trace::usage`, read from the trace store's totals at scrape
//! time), the sessions live now, and throttles and user errors per version.
//!
//! - `berth_genai_model_calls_total{runtime_id,version,model}`
//! - `berth_genai_tokens_total{runtime_id,version,model,type}`, `type` one of `input`, `output`,
//!   `cache_read`, `cache_write`
//! - `berth_genai_cost_usd_total{runtime_id,version,model}`, for models in the price table only
//! - `berth_genai_tool_calls_total{runtime_id,version}`, `berth_genai_tool_errors_total{...}`
//! - `berth_active_sessions{runtime_id,endpoint,version}` (gauge): AgentCore's
//!   ActiveSessionCount
//! - `berth_throttles_total{runtime_id,endpoint,version}`, `berth_user_errors_total{...}`:
//!   AgentCore's Throttles and UserErrors (in memory since the process started)
//! - `berth_eval_scores_total{runtime_id,endpoint,version,evaluator}`,
//!   `berth_eval_score_sum_total{...}` (the sum of those scores' values: sum / count is the
//!   mean), `berth_eval_score_errors_total{...}`: evaluation scores, read from the trace store's
//!   running totals (`berth_trace::scores`) at scrape time

use berth_trace::usage::{Prices, UsageRow};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::collections::BTreeMap;

use crate::metrics::escape;

/// GenAI totals per runtime, version and model, and the price table.
#[derive(Debug)]
pub(crate) struct GenAi {
    pub rows: Vec<UsageRow>,
    pub prices: Prices,
}

fn key(r: &UsageRow) -> [(&'static str, String); 3] {
    [
        ("runtime_id", escape(r.runtime_id.as_deref().unwrap_or(""))),
        ("version", r.version.unwrap_or(0).to_string()),
        ("model", escape(&r.model)),
    ]
}

impl Collector for GenAi {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "berth_genai_model_calls",
            "Model calls in agents' spans (gen_ai usage), per version and model.",
            None,
            MetricType::Counter,
        )?;
        for r in self.rows.iter().filter(|r| r.counts.model_calls > 0) {
            ConstCounter::new(r.counts.model_calls as u64)
                .encode(family.encode_family(&key(r))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "berth_genai_tokens",
            "Tokens in agents' spans (gen_ai.usage.*), per version, model and type.",
            None,
            MetricType::Counter,
        )?;
        for r in self.rows.iter().filter(|r| r.counts.model_calls > 0) {
            let c = &r.counts;
            for (kind, n) in [
                ("input", c.input_tokens),
                ("output", c.output_tokens),
                ("cache_read", c.cache_read_tokens),
                ("cache_write", c.cache_write_tokens),
            ] {
                let [a, b, m] = key(r);
                let set = [a, b, m, ("type", kind.to_owned())];
                ConstCounter::new(n.max(0) as u64).encode(family.encode_family(&set)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "berth_genai_cost_usd",
            "Cost of those tokens in USD at the server's price table (priced models only).",
            None,
            MetricType::Counter,
        )?;
        for r in &self.rows {
            if let Some(cost) = self.prices.cost(&r.model, &r.counts) {
                ConstCounter::new(cost).encode(family.encode_family(&key(r))?)?;
            }
        }
        // Tool calls carry no model: summed per runtime and version.
        let mut tools: BTreeMap<(&str, u32), (i64, i64)> = BTreeMap::new();
        for r in &self.rows {
            let t = tools
                .entry((
                    r.runtime_id.as_deref().unwrap_or(""),
                    r.version.unwrap_or(0),
                ))
                .or_default();
            t.0 += r.counts.tool_calls;
            t.1 += r.counts.tool_errors;
        }
        for (name, help, pick) in [
            (
                "berth_genai_tool_calls",
                "Tool calls (execute_tool spans) per version.",
                (|t: &(i64, i64)| t.0) as fn(&(i64, i64)) -> i64,
            ),
            (
                "berth_genai_tool_errors",
                "Failed tool calls (status ERROR or gen_ai.tool.status error) per version.",
                |t: &(i64, i64)| t.1,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((runtime, version), t) in tools.iter().filter(|(_, t)| t.0 > 0) {
                let set = [
                    ("runtime_id", escape(runtime)),
                    ("version", version.to_string()),
                ];
                ConstCounter::new(pick(t).max(0) as u64).encode(family.encode_family(&set)?)?;
            }
        }
        Ok(())
    }
}

/// Live sessions per runtime, endpoint and version.
#[derive(Debug)]
pub(crate) struct ActiveSessions(pub BTreeMap<(String, String, u32), i64>);

impl ActiveSessions {
    pub fn of(sessions: &[berth_runtime::session::SessionInfo]) -> Self {
        let mut map = BTreeMap::new();
        for s in sessions {
            *map.entry((s.runtime_id.clone(), s.endpoint.clone(), s.version))
                .or_default() += 1;
        }
        Self(map)
    }
}

impl Collector for ActiveSessions {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "berth_active_sessions",
            "Sessions live now (AgentCore's ActiveSessionCount), per endpoint and version.",
            None,
            MetricType::Gauge,
        )?;
        for ((runtime, endpoint, version), n) in &self.0 {
            let set = [
                ("runtime_id", escape(runtime)),
                ("endpoint", escape(endpoint)),
                ("version", version.to_string()),
            ];
            ConstGauge::new(*n).encode(family.encode_family(&set)?)?;
        }
        Ok(())
    }
}

/// Throttled new sessions and agents' 4xx answers per runtime, endpoint and version
/// (`Health::refusal_totals`): `berth_throttles_total` (AgentCore's Throttles) and
/// `berth_user_errors_total` (UserErrors).
#[derive(Debug)]
pub(crate) struct Refused(pub Vec<((String, String, u32), berth_control::health::Refusals)>);

impl Collector for Refused {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Pick = fn(&berth_control::health::Refusals) -> u64;
        let families: [(&str, &str, Pick); 2] = [
            (
                "berth_throttles",
                "New sessions refused by a quota or the new-session rate (AgentCore's Throttles).",
                |r| r.throttles,
            ),
            (
                "berth_user_errors",
                "Invocations the agent answered with a 4xx (AgentCore's UserErrors).",
                |r| r.user_errors,
            ),
        ];
        for (name, help, pick) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((runtime, endpoint, version), r) in &self.0 {
                let set = [
                    ("runtime_id", escape(runtime)),
                    ("endpoint", escape(endpoint)),
                    ("version", version.to_string()),
                ];
                ConstCounter::new(pick(r)).encode(family.encode_family(&set)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_trace::usage::Counts;

    #[test]
    fn genai_families_carry_version_model_and_type() {
        let row = |model: &str, counts| UsageRow {
            runtime_id: Some("rt-1".into()),
            version: Some(2),
            session_id: None,
            actor: None,
            model: model.into(),
            counts,
        };
        let rows = vec![
            row(
                "",
                Counts {
                    tool_calls: 3,
                    tool_errors: 1,
                    ..Counts::default()
                },
            ),
            row(
                "m1",
                Counts {
                    model_calls: 2,
                    input_tokens: 250,
                    output_tokens: 30,
                    total_tokens: 280,
                    cache_read_tokens: 40,
                    ..Counts::default()
                },
            ),
        ];
        let genai = GenAi {
            rows,
            prices: Prices::parse(["m1=4/8"]).unwrap(),
        };
        let mut sessions = BTreeMap::new();
        sessions.insert(("rt-1".to_owned(), "DEFAULT".to_owned(), 2), 5);
        let text = crate::metrics::render(
            Vec::new(),
            vec![Box::new(genai), Box::new(ActiveSessions(sessions))],
        );
        let l = "runtime_id=\"rt-1\",version=\"2\"";
        for line in [
            format!("berth_genai_model_calls_total{{{l},model=\"m1\"}} 2"),
            format!("berth_genai_tokens_total{{{l},model=\"m1\",type=\"input\"}} 250"),
            format!("berth_genai_tokens_total{{{l},model=\"m1\",type=\"output\"}} 30"),
            format!("berth_genai_tokens_total{{{l},model=\"m1\",type=\"cache_read\"}} 40"),
            // (250 * 4 + 30 * 8) / 1e6
            format!("berth_genai_cost_usd_total{{{l},model=\"m1\"}} 0.00124"),
            format!("berth_genai_tool_calls_total{{{l}}} 3"),
            format!("berth_genai_tool_errors_total{{{l}}} 1"),
            "berth_active_sessions{runtime_id=\"rt-1\",endpoint=\"DEFAULT\",version=\"2\"} 5"
                .to_owned(),
        ] {
            assert!(
                text.lines().any(|t| t == line),
                "no line {line:?} in\n{text}"
            );
        }
        let refused = crate::metrics::render(
            Vec::new(),
            vec![Box::new(Refused(vec![(
                ("rt-1".into(), "prod".into(), 3),
                berth_control::health::Refusals {
                    throttles: 4,
                    user_errors: 1,
                },
            )]))],
        );
        let l3 = "runtime_id=\"rt-1\",endpoint=\"prod\",version=\"3\"";
        assert!(
            refused.contains(&format!("berth_throttles_total{{{l3}}} 4\n")),
            "{refused}"
        );
        assert!(
            refused.contains(&format!("berth_user_errors_total{{{l3}}} 1\n")),
            "{refused}"
        );
        // An unpriced model has no cost series (unknown is not 0).
        assert!(!text.contains("model=\"\"} 0\nberth_genai_cost"));
        assert_eq!(text.matches("berth_genai_cost_usd_total{").count(), 1);
    }
}

/// Evaluation score totals per runtime, endpoint, version and evaluator.
#[derive(Debug)]
pub(crate) struct EvalScores(pub Vec<berth_trace::scores::ScoreTotal>);

impl Collector for EvalScores {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let key = |t: &berth_trace::scores::ScoreTotal| {
            [
                ("runtime_id", escape(&t.runtime_id)),
                ("endpoint", escape(&t.endpoint)),
                ("version", t.version.to_string()),
                ("evaluator", escape(&t.evaluator_id)),
            ]
        };
        let mut family = encoder.encode_descriptor(
            "berth_eval_scores",
            "Evaluation scores with a value, per endpoint, version and evaluator.",
            None,
            MetricType::Counter,
        )?;
        for t in &self.0 {
            ConstCounter::new(t.count).encode(family.encode_family(&key(t))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "berth_eval_score_sum",
            "The sum of those scores' values (divide by berth_eval_scores_total for the mean).",
            None,
            MetricType::Counter,
        )?;
        for t in &self.0 {
            ConstCounter::new(t.sum).encode(family.encode_family(&key(t))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "berth_eval_score_errors",
            "Evaluation results that failed (an error instead of a score).",
            None,
            MetricType::Counter,
        )?;
        for t in &self.0 {
            ConstCounter::new(t.errors).encode(family.encode_family(&key(t))?)?;
        }
        Ok(())
    }
}
