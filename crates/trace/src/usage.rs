//! GenAI accounting: token usage and tool calls read from agents' spans (`gen_ai.*` semantic
//! convention attributes) as they are ingested, summed per runtime, version, endpoint, session,
//! actor and model, and priced by a per-model table.
//!
//! What counts:
//! - **Model calls**: a span with any `gen_ai.usage.*` token count whose `gen_ai.operation.name`
//!   is not an aggregate of other calls. Agent and workflow spans (`invoke_agent`,
//!   `invoke_workflow`, Strands' `invoke_swarm`/`invoke_graph`, `create_agent`) repeat the sum of
//!   their model calls' usage, so counting them too would count every token twice.
//!   Input is `gen_ai.usage.input_tokens` (else the older `prompt_tokens`), output
//!   `output_tokens` (else `completion_tokens`), total `total_tokens` (else input + output), cache
//!   reads `cache_read.input_tokens` (else `cache_read_input_tokens`), cache writes
//!   `cache_creation.input_tokens` (else `cache_write_input_tokens`). The model is
//!   `gen_ai.request.model`, else `gen_ai.response.model`.
//! - **Tool calls**: a span with `gen_ai.operation.name = execute_tool`; it failed when its status
//!   is `ERROR` or `gen_ai.tool.status` is `error` (Strands sets the latter).
//!
//! Architecture Invariant: a span is counted once, in the transaction that stores it, and only
//! when its row was inserted; a retried export adds nothing.

use crate::{Error, Span};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// What one span adds to the accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// The model the span names (`""` for none).
    pub model: String,
    pub model_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub tool_calls: i64,
    pub tool_errors: i64,
}

/// A span attribute Berth sets to `false` on an agent's spans when the model gateway meters its
/// model calls (counting the agent's own report too would count every call twice, and an
/// agent's report is the agent's word). Set and cleared only by Berth at ingest.
pub const COUNTED: &str = "berth.usage.counted";

/// Operations whose usage is the sum of other spans' (see the module docs).
fn is_aggregate(operation: &str) -> bool {
    operation.starts_with("invoke_") || operation == "create_agent"
}

/// The most one span may add to one count. Agents are hostile: without a bound, a few spans
/// claiming `i64::MAX` tokens would overflow the sums (SQLite then turns them into floats, or
/// fails `sum()`). No model call has ever used 2^40 (a trillion) tokens.
const MAX_PER_SPAN: i64 = 1 << 40;

/// A token count: an integer, or a number or string holding one (OTLP/JSON sends int64 as
/// strings; some SDKs record doubles), at most [`MAX_PER_SPAN`]. Negative or unreadable counts
/// are no count.
fn count(attrs: &serde_json::Map<String, Value>, key: &str) -> Option<i64> {
    let n = match attrs.get(key)? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }?;
    (n >= 0).then_some(n.min(MAX_PER_SPAN))
}

fn first_count(attrs: &serde_json::Map<String, Value>, keys: &[&str]) -> Option<i64> {
    keys.iter().find_map(|k| count(attrs, k))
}

fn text<'a>(attrs: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    attrs
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What `span` adds to the accounts, or `None` when it is neither a model call with usage nor
/// a tool call.
pub fn tally(span: &Span) -> Option<Tally> {
    let attrs = span.attributes.as_object()?;
    let operation = text(attrs, "gen_ai.operation.name").unwrap_or("");
    if operation == "execute_tool" {
        let tool_status = text(attrs, "gen_ai.tool.status").unwrap_or("");
        let failed = span.status_code == "ERROR" || tool_status.eq_ignore_ascii_case("error");
        return Some(Tally {
            tool_calls: 1,
            tool_errors: i64::from(failed),
            ..Tally::default()
        });
    }
    if is_aggregate(operation) || attrs.get(COUNTED) == Some(&Value::Bool(false)) {
        return None;
    }
    let input = first_count(
        attrs,
        &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"],
    );
    let output = first_count(
        attrs,
        &[
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
        ],
    );
    let total = count(attrs, "gen_ai.usage.total_tokens");
    let cache_read = first_count(
        attrs,
        &[
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
        ],
    );
    let cache_write = first_count(
        attrs,
        &[
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_write_input_tokens",
        ],
    );
    if input.is_none()
        && output.is_none()
        && total.is_none()
        && cache_read.is_none()
        && cache_write.is_none()
    {
        return None;
    }
    let (input, output) = (input.unwrap_or(0), output.unwrap_or(0));
    let model = text(attrs, "gen_ai.request.model")
        .or_else(|| text(attrs, "gen_ai.response.model"))
        .unwrap_or("");
    Some(Tally {
        model: model.to_owned(),
        model_calls: 1,
        input_tokens: input,
        output_tokens: output,
        total_tokens: total.unwrap_or(input.saturating_add(output)),
        cache_read_tokens: cache_read.unwrap_or(0),
        cache_write_tokens: cache_write.unwrap_or(0),
        ..Tally::default()
    })
}

pub(crate) const MINUTE_NS: i64 = 60_000_000_000;

impl Tally {
    pub(crate) fn add(&mut self, o: &Tally) {
        self.model_calls += o.model_calls;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.total_tokens += o.total_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.tool_calls += o.tool_calls;
        self.tool_errors += o.tool_errors;
    }
}

/// How [`UsageFilter`]'s result is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GroupBy {
    /// One row: everything matching.
    #[default]
    None,
    /// Per runtime and version.
    Version,
    /// Per runtime and session.
    Session,
    /// Per actor (the session's user id).
    Actor,
    /// Per model.
    Model,
}

impl std::str::FromStr for GroupBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "version" => GroupBy::Version,
            "session" => GroupBy::Session,
            "actor" => GroupBy::Actor,
            "model" => GroupBy::Model,
            other => {
                return Err(Error::Invalid(format!(
                    "groupBy must be one of version, session, actor, model, not {other:?}"
                )));
            }
        })
    }
}

/// Filters of [`crate::TraceStore::usage`]; all optional, combined with AND. Times are matched
/// to the minute the counted spans ended in.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub runtime_id: Option<String>,
    pub version: Option<u32>,
    pub endpoint: Option<String>,
    pub session_id: Option<String>,
    pub actor: Option<String>,
    /// Spans that ended in this minute or later.
    pub since_ns: Option<i64>,
    /// Spans that ended before this minute's end.
    pub until_ns: Option<i64>,
    pub group_by: GroupBy,
}

/// Token and tool counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub model_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub tool_calls: i64,
    pub tool_errors: i64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.model_calls += o.model_calls;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.total_tokens += o.total_tokens;
        self.cache_read_tokens += o.cache_read_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.tool_calls += o.tool_calls;
        self.tool_errors += o.tool_errors;
    }
}

/// One model's usage within one group, as the store sums it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    /// The group's key (`None` for the parts the grouping does not use).
    pub runtime_id: Option<String>,
    pub version: Option<u32>,
    pub session_id: Option<String>,
    pub actor: Option<String>,
    /// The model (`""`: spans naming none, such as tool calls).
    pub model: String,
    #[serde(flatten)]
    pub counts: Counts,
}

/// USD per million tokens of one model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

impl Price {
    /// The cost in USD of `c`'s tokens. Cache reads and writes are priced on their own; the
    /// input count is taken as it is reported (the GenAI conventions leave open whether it
    /// includes cached tokens, and providers differ).
    pub fn cost(&self, c: &Counts) -> f64 {
        (c.input_tokens as f64 * self.input
            + c.output_tokens as f64 * self.output
            + c.cache_read_tokens as f64 * self.cache_read
            + c.cache_write_tokens as f64 * self.cache_write)
            / 1_000_000.0
    }
}

/// The price table: model id -> price. A model not in it has no cost (`None`), which is not
/// the same as a cost of 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices(HashMap<String, Price>);

impl Prices {
    /// Parses entries `MODEL=INPUT/OUTPUT[/CACHE_READ[/CACHE_WRITE]]` (USD per million tokens;
    /// cache prices default to 0), e.g. `gpt-4o=2.5/10/1.25`. A model given twice is an error.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut map = HashMap::new();
        for entry in entries {
            let entry = entry.trim();
            let (model, prices) = entry.rsplit_once('=').ok_or_else(|| {
                format!("{entry:?} is not MODEL=INPUT/OUTPUT[/CACHE_READ[/CACHE_WRITE]]")
            })?;
            let model = model.trim();
            if model.is_empty() {
                return Err(format!("{entry:?} names no model"));
            }
            let mut nums = Vec::with_capacity(4);
            for p in prices.split('/') {
                let n: f64 = p.trim().parse().map_err(|_| {
                    format!("{entry:?}: {p:?} is not a price in USD per million tokens")
                })?;
                if !n.is_finite() || n < 0.0 {
                    return Err(format!("{entry:?}: {p:?} is not a price"));
                }
                nums.push(n);
            }
            if !(2..=4).contains(&nums.len()) {
                return Err(format!(
                    "{entry:?} must have 2 to 4 prices: INPUT/OUTPUT[/CACHE_READ[/CACHE_WRITE]]"
                ));
            }
            let price = Price {
                input: nums[0],
                output: nums[1],
                cache_read: nums.get(2).copied().unwrap_or(0.0),
                cache_write: nums.get(3).copied().unwrap_or(0.0),
            };
            if map.insert(model.to_owned(), price).is_some() {
                return Err(format!("model {model:?} is priced twice"));
            }
        }
        Ok(Self(map))
    }

    /// The price of `model`, if the table has one.
    pub fn get(&self, model: &str) -> Option<&Price> {
        self.0.get(model)
    }

    /// The cost of `c` tokens of `model`, if it is priced.
    pub fn cost(&self, model: &str, c: &Counts) -> Option<f64> {
        self.get(model).map(|p| p.cost(c))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One group of a usage report: its key, its counts over every model, and its cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageGroup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Set when grouped by model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
    /// USD, summed over the priced models.
    pub cost_usd: f64,
    /// Tokens of models the price table does not have (their cost is unknown, not 0).
    pub unpriced_tokens: i64,
}

/// Folds per-model rows into their groups and prices them: the cost of a group is the sum of
/// each model's tokens at that model's price.
pub fn report(rows: &[UsageRow], group_by: GroupBy, prices: &Prices) -> Vec<UsageGroup> {
    type Key = (
        Option<String>,
        Option<u32>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let mut groups: BTreeMap<Key, UsageGroup> = BTreeMap::new();
    for r in rows {
        let model = (group_by == GroupBy::Model).then(|| r.model.clone());
        let key: Key = (
            r.runtime_id.clone(),
            r.version,
            r.session_id.clone(),
            r.actor.clone(),
            model.clone(),
        );
        let g = groups.entry(key).or_insert_with(|| UsageGroup {
            runtime_id: r.runtime_id.clone(),
            version: r.version,
            session_id: r.session_id.clone(),
            actor: r.actor.clone(),
            model,
            counts: Counts::default(),
            cost_usd: 0.0,
            unpriced_tokens: 0,
        });
        g.counts.add(&r.counts);
        match prices.cost(&r.model, &r.counts) {
            Some(c) => g.cost_usd += c,
            None => g.unpriced_tokens += r.counts.total_tokens,
        }
    }
    groups.into_values().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Attribution;
    use serde_json::json;

    fn span(attributes: Value, status: &str) -> Span {
        Span {
            trace_id: "0".repeat(32),
            span_id: "1".repeat(16),
            parent_span_id: None,
            name: "s".into(),
            kind: "INTERNAL".into(),
            start_ns: 0,
            end_ns: 1,
            status_code: status.into(),
            status_message: String::new(),
            scope: String::new(),
            attributes,
            resource: json!({}),
            events: json!([]),
            service_name: "svc".into(),
            attribution: Attribution {
                runtime_id: "rt".into(),
                version: 1,
                endpoint: "DEFAULT".into(),
                session_id: None,
                actor: None,
            },
        }
    }

    #[test]
    fn a_chat_span_counts_its_tokens_once_under_both_names() {
        let t = tally(&span(
            json!({
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "m1",
                "gen_ai.usage.prompt_tokens": 100,
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.completion_tokens": 20,
                "gen_ai.usage.output_tokens": 20,
                "gen_ai.usage.total_tokens": 120,
                "gen_ai.usage.cache_read.input_tokens": 40,
                "gen_ai.usage.cache_read_input_tokens": 40,
            }),
            "OK",
        ))
        .unwrap();
        assert_eq!(
            t,
            Tally {
                model: "m1".into(),
                model_calls: 1,
                input_tokens: 100,
                output_tokens: 20,
                total_tokens: 120,
                cache_read_tokens: 40,
                ..Tally::default()
            }
        );
    }

    #[test]
    fn older_names_strings_and_a_missing_total_are_understood() {
        let t = tally(&span(
            json!({
                "gen_ai.response.model": "m2",
                "gen_ai.usage.prompt_tokens": "7",
                "gen_ai.usage.completion_tokens": 3.0,
                "gen_ai.usage.cache_write_input_tokens": 5,
            }),
            "UNSET",
        ))
        .unwrap();
        assert_eq!(t.model, "m2");
        assert_eq!((t.input_tokens, t.output_tokens), (7, 3));
        assert_eq!(t.total_tokens, 10);
        assert_eq!(t.cache_write_tokens, 5);
    }

    #[test]
    fn usage_the_gateway_meters_is_not_summed_from_agent_spans() {
        let call = json!({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 9, COUNTED: false});
        assert_eq!(tally(&span(call, "OK")), None);
        let tool = json!({"gen_ai.operation.name": "execute_tool", COUNTED: false});
        assert_eq!(tally(&span(tool, "OK")).map(|t| t.tool_calls), Some(1));
    }

    #[test]
    fn agent_spans_repeat_their_calls_usage_and_are_not_counted() {
        for op in ["invoke_agent", "invoke_swarm", "create_agent"] {
            let s = span(
                json!({"gen_ai.operation.name": op, "gen_ai.usage.input_tokens": 250}),
                "OK",
            );
            assert_eq!(tally(&s), None, "{op}");
        }
        assert_eq!(tally(&span(json!({"http.method": "GET"}), "OK")), None);
        // A hostile count is bounded.
        let huge = tally(&span(
            json!({"gen_ai.usage.input_tokens": i64::MAX, "gen_ai.usage.output_tokens": "9223372036854775807"}),
            "OK",
        ))
        .unwrap();
        assert_eq!((huge.input_tokens, huge.output_tokens), (1 << 40, 1 << 40));
        assert_eq!(huge.total_tokens, 1 << 41);
        // A negative count is no count.
        assert_eq!(
            tally(&span(json!({"gen_ai.usage.input_tokens": -3}), "OK")),
            None
        );
    }

    #[test]
    fn tool_calls_and_their_failures() {
        let ok = tally(&span(
            json!({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.status": "success"}),
            "OK",
        ))
        .unwrap();
        assert_eq!((ok.tool_calls, ok.tool_errors, ok.model_calls), (1, 0, 0));
        let by_status = tally(&span(
            json!({"gen_ai.operation.name": "execute_tool"}),
            "ERROR",
        ))
        .unwrap();
        assert_eq!(by_status.tool_errors, 1);
        let by_attr = tally(&span(
            json!({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.status": "error"}),
            "UNSET",
        ))
        .unwrap();
        assert_eq!(by_attr.tool_errors, 1);
    }

    #[test]
    fn prices_parse_and_refuse_what_they_cannot_use() {
        let p = Prices::parse(["gpt-4o=2.5/10/1.25", "anthropic.claude-v2:1=8/24"]).unwrap();
        assert_eq!(
            p.get("gpt-4o"),
            Some(&Price {
                input: 2.5,
                output: 10.0,
                cache_read: 1.25,
                cache_write: 0.0
            })
        );
        assert_eq!(p.get("anthropic.claude-v2:1").unwrap().output, 24.0);
        for bad in ["gpt", "=1/2", "m=1", "m=1/2/3/4/5", "m=a/2", "m=-1/2"] {
            assert!(Prices::parse([bad]).is_err(), "{bad}");
        }
        assert!(Prices::parse(["m=1/2", "m=3/4"]).is_err());
    }

    #[test]
    fn a_report_prices_each_model_and_sums_the_group() {
        let prices = Prices::parse(["a=1/2/0.5"]).unwrap();
        let counts = |i, o, cr| Counts {
            model_calls: 1,
            input_tokens: i,
            output_tokens: o,
            total_tokens: i + o,
            cache_read_tokens: cr,
            ..Counts::default()
        };
        let row = |model: &str, c| UsageRow {
            runtime_id: Some("rt".into()),
            version: Some(1),
            session_id: None,
            actor: None,
            model: model.into(),
            counts: c,
        };
        let rows = [
            row("a", counts(1_000_000, 500_000, 2_000_000)),
            row("b", counts(10, 5, 0)),
        ];
        let g = report(&rows, GroupBy::Version, &prices);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].counts.input_tokens, 1_000_010);
        assert_eq!(g[0].cost_usd, 1.0 + 1.0 + 1.0);
        assert_eq!(g[0].unpriced_tokens, 15);
        assert_eq!(g[0].model, None);
        let by_model = report(&rows, GroupBy::Model, &prices);
        assert_eq!(by_model.len(), 2);
        assert_eq!(by_model[1].model.as_deref(), Some("b"));
        assert_eq!(by_model[1].cost_usd, 0.0);
    }
}
