//! LLM-as-a-judge: a prompt from the evaluator's instructions and the session, a JSON verdict
//! from the model, the verdict mapped onto the rating scale.
//!
//! Instructions carry AgentCore's placeholders, filled from the session at the evaluator's
//! level:
//!
//! | level | placeholder | filled with |
//! | --- | --- | --- |
//! | SESSION | `{context}` | every turn: user prompt, tool calls, assistant response |
//! | SESSION, TOOL_CALL | `{available_tools}` | the tools the agent had (and called) |
//! | TRACE | `{context}` | previous turns, then this turn's user prompt and tool calls |
//! | TRACE | `{assistant_turn}` | this turn's assistant response |
//! | TOOL_CALL | `{context}` | previous turns, this turn's user prompt and earlier tool calls |
//! | TOOL_CALL | `{tool_turn}` | the tool call judged: name, arguments, result |
//!
//! Berth adds the reference inputs: `{expected_response}` (TRACE), `{assertions}` and
//! `{expected_trajectory}` (SESSION). An evaluator whose instructions do not name a reference
//! placeholder does not use that reference (it is listed in `ignoredReferenceInputFields`).
//! Instructions with none of their level's placeholders get the level's material appended.
//!
//! The prompt lists the rating scale and asks for `{"explanation": ..., "label": ...}`. The
//! answer is parsed leniently (code fences, text around the object, a `score`/`value` instead
//! of a label on numerical scales); the label is matched to the scale case-insensitively and the
//! result carries the scale's value (categorical scales carry the label only). Provider errors
//! and unparsable answers are retried `retries` times; token usage adds up over attempts.

use crate::session::{SessionView, ToolCall, TraceView};
use berth_api::evaluation::{
    CategoricalScaleDefinition, EvaluatorLevel, EvaluatorModelConfig, NumericalScaleDefinition,
    RatingScale, TokenUsage,
};
use berth_memory::provider::{AwsSigning, Completion, ModelProvider, ProviderKind};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

/// `errorCode` when no judge model is configured.
pub const NOT_CONFIGURED: &str = "JudgeModelNotConfigured";
/// `errorCode` when the model provider failed on every attempt.
pub const PROVIDER_ERROR: &str = "JudgeModelError";
/// `errorCode` when no attempt gave a verdict on the scale.
pub const INVALID_VERDICT: &str = "InvalidJudgeResponse";

/// `explanation` is at most this many characters on the wire.
const MAX_EXPLANATION: usize = 2048;

/// Where judges' model calls go; `serve` fills it from its `--eval-model-*` flags (defaulting to
/// the memory model's settings).
#[derive(Debug, Clone)]
pub struct JudgeSettings {
    /// The provider's API; `None` when no judge model is configured (judge evaluators then
    /// answer per-result errors).
    pub provider: Option<ProviderKind>,
    /// Base URL; the provider's public endpoint when `None`.
    pub base_url: Option<String>,
    /// API key / bearer token.
    pub api_key: Option<String>,
    /// SigV4 signing for Bedrock Converse without an API key.
    pub aws: Option<AwsSigning>,
    /// Region for Bedrock's default endpoint.
    pub region: String,
    /// The model built-in judges use (and custom ones whose model id is empty).
    pub default_model: Option<String>,
    /// Per-call timeout.
    pub timeout: Duration,
    /// Further attempts after a provider error or an unparsable verdict.
    pub retries: u32,
}

impl Default for JudgeSettings {
    fn default() -> Self {
        Self {
            provider: None,
            base_url: None,
            api_key: None,
            aws: None,
            region: "us-east-1".into(),
            default_model: None,
            timeout: Duration::from_secs(120),
            retries: 2,
        }
    }
}

impl JudgeSettings {
    /// Settings that call the same provider as `p` (memory extraction's model), with `p`'s model
    /// as the default judge model.
    pub fn from_model_provider(p: &ModelProvider) -> Self {
        Self {
            provider: Some(p.kind),
            base_url: Some(p.base_url.clone()),
            api_key: p.api_key.clone(),
            aws: p.aws.clone(),
            region: p
                .aws
                .as_ref()
                .map(|a| a.region.clone())
                .unwrap_or_else(|| "us-east-1".into()),
            default_model: Some(p.model.clone()),
            timeout: p.timeout,
            ..Self::default()
        }
    }
}

/// An LLM judge's definition: instructions, scale, model.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSpec {
    /// Instructions with `{placeholder}`s.
    pub instructions: String,
    /// The scale.
    pub rating_scale: RatingScale,
    /// The model; the configured default when `None` (built-ins).
    pub model: Option<EvaluatorModelConfig>,
}

/// One scale a verdict is given on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale<'a> {
    /// Labelled values.
    Numerical(&'a [NumericalScaleDefinition]),
    /// Labels.
    Categorical(&'a [CategoricalScaleDefinition]),
}

impl Scale<'_> {
    fn points(&self) -> Vec<(&str, Option<f64>, &str)> {
        match self {
            Scale::Numerical(p) => p
                .iter()
                .map(|d| (d.label.as_str(), Some(d.value), d.definition.as_str()))
                .collect(),
            Scale::Categorical(p) => p
                .iter()
                .map(|d| (d.label.as_str(), None, d.definition.as_str()))
                .collect(),
        }
    }
}

/// A judge's answer mapped onto the scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The scale value (`None` on categorical scales).
    pub value: Option<f64>,
    /// The scale label.
    pub label: String,
    /// The judge's reasoning (at most 2048 characters).
    pub explanation: String,
    /// Tokens used over all attempts.
    pub usage: TokenUsage,
}

/// Why no verdict: the result's `errorCode` and `errorMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeError {
    /// `errorCode`.
    pub code: &'static str,
    /// `errorMessage`.
    pub message: String,
    /// Tokens used by failed attempts.
    pub usage: TokenUsage,
}

/// Calls judge models.
#[derive(Debug, Clone)]
pub struct Judge {
    settings: JudgeSettings,
}

/// The system prompt of every judge call.
pub const SYSTEM_PROMPT: &str = "You are an impartial evaluator of an AI agent's behaviour. \
    Read the evaluation instructions and the material, reason briefly, then give your verdict \
    on the rating scale provided. Answer with one JSON object and nothing else: \
    {\"explanation\": \"<your reasoning, at most a few sentences>\", \"label\": \"<one label of \
    the scale, exactly as written>\"}";

impl Judge {
    /// A judge with `settings`.
    pub fn new(settings: JudgeSettings) -> Self {
        Self { settings }
    }

    /// The settings.
    pub fn settings(&self) -> &JudgeSettings {
        &self.settings
    }

    /// The provider call for `model` (the default model when `None` or empty).
    fn provider(&self, model: Option<&EvaluatorModelConfig>) -> Result<ModelProvider, JudgeError> {
        let s = &self.settings;
        let not_configured = |what: &str| JudgeError {
            code: NOT_CONFIGURED,
            message: format!(
                "{what}: start the server with --eval-model-provider (openai, anthropic or \
                 bedrock-converse) and --eval-model (or the --memory-model-* settings they \
                 default to)"
            ),
            usage: TokenUsage::default(),
        };
        let kind = s
            .provider
            .ok_or_else(|| not_configured("no judge model provider is configured"))?;
        let model = model
            .map(|m| m.model_id().trim())
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .or_else(|| s.default_model.clone())
            .ok_or_else(|| not_configured("no default judge model is configured"))?;
        Ok(ModelProvider {
            kind,
            base_url: s
                .base_url
                .clone()
                .unwrap_or_else(|| kind.default_base_url(&s.region)),
            model,
            api_key: s.api_key.clone(),
            aws: s.aws.clone(),
            timeout: s.timeout,
        })
    }

    /// Asks the model for a verdict on `prompt` (the filled instructions) on `scale`.
    pub async fn verdict(
        &self,
        model: Option<&EvaluatorModelConfig>,
        prompt: &str,
        scale: Scale<'_>,
    ) -> Result<Verdict, JudgeError> {
        let provider = self.provider(model)?;
        let user = with_scale(prompt, scale);
        let mut usage = TokenUsage::default();
        let mut last_error = (PROVIDER_ERROR, String::new());
        for attempt in 0..=self.settings.retries {
            if attempt > 0 && last_error.0 == PROVIDER_ERROR {
                // Provider failures (rate limits, overload) get a short, growing pause.
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            }
            match provider.complete_with_usage(SYSTEM_PROMPT, &user).await {
                Err(e) => last_error = (PROVIDER_ERROR, e.to_string()),
                Ok(Completion { text, usage: u }) => {
                    usage = usage.add(TokenUsage {
                        input_tokens: u.input_tokens as i64,
                        output_tokens: u.output_tokens as i64,
                        total_tokens: u.total_tokens as i64,
                    });
                    match parse_verdict(&text, scale) {
                        Ok((label, value, explanation)) => {
                            return Ok(Verdict {
                                value,
                                label,
                                explanation,
                                usage,
                            });
                        }
                        Err(why) => last_error = (INVALID_VERDICT, why),
                    }
                }
            }
        }
        let attempts = self.settings.retries + 1;
        Err(JudgeError {
            code: last_error.0,
            message: cut(
                &format!(
                    "no verdict after {attempts} attempt{}: {}",
                    if attempts == 1 { "" } else { "s" },
                    last_error.1
                ),
                MAX_EXPLANATION,
            ),
            usage,
        })
    }
}

/// `prompt` followed by the scale and the answer format.
fn with_scale(prompt: &str, scale: Scale<'_>) -> String {
    let mut out = String::with_capacity(prompt.len() + 512);
    out.push_str(prompt.trim_end());
    out.push_str("\n\n# Rating scale\n");
    for (label, value, definition) in scale.points() {
        match value {
            Some(v) => {
                let _ = writeln!(out, "- \"{label}\" (score {v}): {definition}");
            }
            None => {
                let _ = writeln!(out, "- \"{label}\": {definition}");
            }
        }
    }
    out.push_str(
        "\n# Answer\nAnswer with one JSON object and nothing else: \
         {\"explanation\": \"<your reasoning>\", \"label\": \"<one of the labels above>\"}\n",
    );
    out
}

/// Parses a judge's answer: the first JSON object in `text` (code fences and surrounding text
/// are skipped) with a `label` on the scale, or (numerical scales) a `score`/`value` that is one
/// of the scale's values. Returns the label as the scale writes it, its value, and the
/// explanation (`explanation`, `reasoning` or `reason`).
pub fn parse_verdict(
    text: &str,
    scale: Scale<'_>,
) -> Result<(String, Option<f64>, String), String> {
    let obj = first_object(text).ok_or_else(|| {
        format!(
            "the judge's answer holds no JSON object: {}",
            cut(text.trim(), 200)
        )
    })?;
    let points = scale.points();
    let explanation = ["explanation", "reasoning", "reason", "rationale"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .unwrap_or_default();
    let explanation = cut(explanation.trim(), MAX_EXPLANATION);
    let norm = |s: &str| -> String {
        s.trim()
            .trim_matches(|c: char| c == '"' || c == '\'' || c == '.' || c == '*')
            .to_lowercase()
    };
    let label = ["label", "rating", "verdict", "category"]
        .iter()
        .find_map(|k| obj.get(*k))
        .and_then(|v| match v {
            Value::String(s) => Some(norm(s)),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    if let Some(l) = &label
        && let Some((name, value, _)) = points.iter().find(|(name, _, _)| norm(name) == *l)
    {
        return Ok(((*name).to_owned(), *value, explanation));
    }
    // A number in place of a label, on numerical scales.
    let number = ["score", "value", "label", "rating"]
        .iter()
        .find_map(|k| match obj.get(*k) {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        });
    if let Some(n) = number
        && let Some((name, value, _)) = points
            .iter()
            .find(|(_, v, _)| v.is_some_and(|v| (v - n).abs() < 1e-9))
    {
        return Ok(((*name).to_owned(), *value, explanation));
    }
    let labels: Vec<&str> = points.iter().map(|(n, _, _)| *n).collect();
    Err(format!(
        "the judge's label {} is not on the scale ({})",
        label
            .map(|l| format!("{l:?}"))
            .unwrap_or_else(|| "(none)".into()),
        labels.join(", ")
    ))
}

/// The first JSON object in `text`.
fn first_object(text: &str) -> Option<serde_json::Map<String, Value>> {
    for (i, _) in text.match_indices('{') {
        let mut de = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        if let Some(Ok(Value::Object(o))) = de.next() {
            return Some(o);
        }
    }
    None
}

/// `s` cut to `max` characters.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// What one result judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// The session.
    Session,
    /// Trace `i` of the session.
    Trace(usize),
    /// Tool call `call` of trace `trace`.
    ToolCall {
        /// The trace's index.
        trace: usize,
        /// The call's index in the trace.
        call: usize,
    },
}

/// Reference inputs a prompt may name.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct References<'a> {
    /// `expectedResponse` of the trace.
    pub expected_response: Option<&'a str>,
    /// `assertions` of the session.
    pub assertions: &'a [String],
    /// `expectedTrajectory.toolNames` of the session.
    pub expected_trajectory: Option<&'a [String]>,
}

/// Reference placeholders and the reference-input member each stands for.
pub const REFERENCE_PLACEHOLDERS: &[(&str, &str)] = &[
    ("{expected_response}", "expectedResponse"),
    ("{assertions}", "assertions"),
    ("{expected_trajectory}", "expectedTrajectory"),
];

/// The placeholders instructions of `level` may use (AgentCore's, then Berth's reference ones).
pub fn placeholders(level: EvaluatorLevel) -> &'static [&'static str] {
    match level {
        EvaluatorLevel::Session => &[
            "{context}",
            "{available_tools}",
            "{assertions}",
            "{expected_trajectory}",
        ],
        EvaluatorLevel::Trace => &["{context}", "{assistant_turn}", "{expected_response}"],
        EvaluatorLevel::ToolCall => &["{context}", "{tool_turn}", "{available_tools}"],
    }
}

/// Checks `instructions` for `level` as CreateEvaluator does: at least one of the level's
/// placeholders. `Err` says which it may use.
pub fn check_instructions(level: EvaluatorLevel, instructions: &str) -> Result<(), String> {
    let allowed = placeholders(level);
    if allowed.iter().any(|p| instructions.contains(p)) {
        Ok(())
    } else {
        Err(format!(
            "instructions of a {} evaluator must include at least one of the placeholders {}",
            level.as_str(),
            allowed.join(", ")
        ))
    }
}

/// `instructions` with its placeholders filled for `unit` of `session`.
pub fn fill_instructions(
    instructions: &str,
    level: EvaluatorLevel,
    session: &SessionView,
    unit: Unit,
    refs: &References<'_>,
) -> String {
    let (trace_index, call_index) = match unit {
        Unit::Session => (None, None),
        Unit::Trace(t) => (Some(t), None),
        Unit::ToolCall { trace, call } => (Some(trace), Some(call)),
    };
    let context = match unit {
        Unit::Session => turns(&session.traces, None, None),
        Unit::Trace(t) => turns(
            &session.traces[..=t.min(session.traces.len().saturating_sub(1))],
            Some(t),
            None,
        ),
        Unit::ToolCall { trace, call } => turns(
            &session.traces[..=trace.min(session.traces.len().saturating_sub(1))],
            Some(trace),
            Some(call),
        ),
    };
    let trace = trace_index.and_then(|t| session.traces.get(t));
    let assistant_turn = trace
        .and_then(|t| t.agent_response.clone())
        .unwrap_or_else(|| "(no assistant response was recorded)".into());
    let tool_turn = trace
        .zip(call_index)
        .and_then(|(t, c)| t.tool_calls.get(c))
        .map(describe_call)
        .unwrap_or_else(|| "(no tool call)".into());
    let tools = available_tools(session);
    let expected_response = refs
        .expected_response
        .unwrap_or("(no expected response was given)")
        .to_owned();
    let assertions = if refs.assertions.is_empty() {
        "(no assertions were given)".to_owned()
    } else {
        refs.assertions
            .iter()
            .map(|a| format!("- {a}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let trajectory = refs
        .expected_trajectory
        .map(|t| t.join(" -> "))
        .unwrap_or_else(|| "(no expected trajectory was given)".into());

    let values: Vec<(&str, &str)> = vec![
        ("{context}", &context),
        ("{assistant_turn}", &assistant_turn),
        ("{tool_turn}", &tool_turn),
        ("{available_tools}", &tools),
        ("{expected_response}", &expected_response),
        ("{assertions}", &assertions),
        ("{expected_trajectory}", &trajectory),
    ];
    let allowed = placeholders(level);
    let mut out = instructions.to_owned();
    let mut any = false;
    // One pass over the text so that filled material containing `{...}` is not filled again.
    let mut filled = String::with_capacity(out.len() * 2);
    let mut rest = out.as_str();
    while let Some(start) = rest.find('{') {
        filled.push_str(&rest[..start]);
        let tail = &rest[start..];
        match values
            .iter()
            .find(|(p, _)| allowed.contains(p) && tail.starts_with(*p))
        {
            Some((p, v)) => {
                filled.push_str(v);
                rest = &tail[p.len()..];
                any = true;
            }
            None => {
                filled.push('{');
                rest = &tail[1..];
            }
        }
    }
    filled.push_str(rest);
    out = filled;
    if !any {
        // No placeholder: append the level's material.
        let _ = write!(out, "\n\n# Context\n{context}");
        match level {
            EvaluatorLevel::Trace => {
                let _ = write!(out, "\n\n# Assistant turn\n{assistant_turn}");
            }
            EvaluatorLevel::ToolCall => {
                let _ = write!(out, "\n\n# Tool call\n{tool_turn}");
            }
            EvaluatorLevel::Session => {}
        }
    }
    out
}

/// Turns as text. `current` is the index of the turn judged (its response is left out when a
/// trace is judged; its later tool calls when tool call `call` is judged).
fn turns(traces: &[TraceView], current: Option<usize>, call: Option<usize>) -> String {
    let mut out = String::new();
    for (i, t) in traces.iter().enumerate() {
        let is_current = current == Some(i);
        let _ = writeln!(
            out,
            "Turn {}{}:",
            i + 1,
            if is_current { " (current)" } else { "" }
        );
        if let Some(u) = &t.user_input {
            let _ = writeln!(out, "User: {u}");
        }
        let calls: &[ToolCall] = match (is_current, call) {
            (true, Some(c)) => &t.tool_calls[..c.min(t.tool_calls.len())],
            _ => &t.tool_calls,
        };
        for c in calls {
            let _ = writeln!(out, "{}", describe_call(c));
        }
        if !is_current && let Some(r) = &t.agent_response {
            let _ = writeln!(out, "Assistant: {r}");
        }
        out.push('\n');
    }
    out.trim_end().to_owned()
}

fn describe_call(c: &ToolCall) -> String {
    let mut s = format!(
        "Tool call: {}({})",
        c.name,
        c.input.as_deref().unwrap_or("")
    );
    match (&c.error, &c.output) {
        (Some(e), _) => {
            let _ = write!(s, " -> error: {e}");
        }
        (None, Some(o)) => {
            let _ = write!(s, " -> {o}");
        }
        (None, None) => {}
    }
    s
}

fn available_tools(session: &SessionView) -> String {
    let mut names: Vec<&str> = Vec::new();
    for t in &session.traces {
        for n in &t.available_tools {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
        for c in &t.tool_calls {
            if !names.contains(&c.name.as_str()) {
                names.push(&c.name);
            }
        }
    }
    if names.is_empty() {
        "(no tools were recorded)".into()
    } else {
        names
            .iter()
            .map(|n| format!("- {n}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numerical() -> Vec<NumericalScaleDefinition> {
        [
            ("Not Helpful", 0.0),
            ("Somewhat Helpful", 0.5),
            ("Very Helpful", 1.0),
        ]
        .iter()
        .map(|(l, v)| NumericalScaleDefinition {
            definition: format!("{l} answer"),
            value: *v,
            label: (*l).into(),
        })
        .collect()
    }

    #[test]
    fn verdicts_parse_leniently() {
        let n = numerical();
        let s = Scale::Numerical(&n);
        let ok = |t: &str| parse_verdict(t, s).expect("parses");
        assert_eq!(
            ok(r#"{"explanation": "good", "label": "Very Helpful"}"#),
            ("Very Helpful".into(), Some(1.0), "good".into())
        );
        assert_eq!(
            ok("Here is my verdict:\n```json\n{\"reasoning\": \"meh\", \"label\": \"somewhat helpful.\"}\n```\nThanks").0,
            "Somewhat Helpful"
        );
        assert_eq!(ok(r#"{"score": 0.5, "explanation": "x"}"#).1, Some(0.5));
        assert_eq!(ok(r#"{"label": "0"}"#).0, "Not Helpful");
        // A brace in prose before the object.
        assert_eq!(
            ok(r#"I think {this} is {"label": "Not Helpful"}"#).0,
            "Not Helpful"
        );
        assert!(
            parse_verdict("no json here", s)
                .unwrap_err()
                .contains("no JSON object")
        );
        assert!(
            parse_verdict(r#"{"label": "Great"}"#, s)
                .unwrap_err()
                .contains("not on the scale (Not Helpful, Somewhat Helpful, Very Helpful)")
        );
        let c = vec![
            CategoricalScaleDefinition {
                definition: "yes".into(),
                label: "Pass".into(),
            },
            CategoricalScaleDefinition {
                definition: "no".into(),
                label: "Fail".into(),
            },
        ];
        assert_eq!(
            parse_verdict(
                r#"{"label": "FAIL", "explanation": "e"}"#,
                Scale::Categorical(&c)
            )
            .expect("parses"),
            ("Fail".into(), None, "e".into())
        );
        let long = format!(
            r#"{{"label": "Pass", "explanation": "{}"}}"#,
            "x".repeat(3000)
        );
        assert_eq!(
            parse_verdict(&long, Scale::Categorical(&c))
                .expect("parses")
                .2
                .len(),
            MAX_EXPLANATION
        );
    }

    fn session() -> SessionView {
        SessionView {
            session_id: "s".into(),
            traces: vec![
                TraceView {
                    trace_id: "t1".into(),
                    user_input: Some("add 2 and 3".into()),
                    agent_response: Some("5".into()),
                    tool_calls: vec![ToolCall {
                        name: "add".into(),
                        input: Some("{\"a\": 2, \"b\": 3}".into()),
                        output: Some("5".into()),
                        ..Default::default()
                    }],
                    available_tools: vec!["add".into(), "mul".into()],
                    ..Default::default()
                },
                TraceView {
                    trace_id: "t2".into(),
                    user_input: Some("times 4?".into()),
                    agent_response: Some("20".into()),
                    tool_calls: vec![
                        ToolCall {
                            name: "mul".into(),
                            input: Some("{\"a\": 5, \"b\": 4}".into()),
                            output: Some("20".into()),
                            ..Default::default()
                        },
                        ToolCall {
                            name: "log".into(),
                            error: Some("disk full".into()),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn placeholders_fill_by_level() {
        let s = session();
        let r = References::default();
        let trace = fill_instructions(
            "Judge {assistant_turn} given {context}.",
            EvaluatorLevel::Trace,
            &s,
            Unit::Trace(1),
            &r,
        );
        assert!(trace.starts_with("Judge 20 given Turn 1:"), "{trace}");
        assert!(trace.contains("Assistant: 5"), "{trace}");
        assert!(
            trace.contains("Turn 2 (current):\nUser: times 4?\nTool call: mul"),
            "{trace}"
        );
        assert!(!trace.contains("Assistant: 20"), "{trace}");

        let tool = fill_instructions(
            "Was {tool_turn} right? Tools: {available_tools}. {context}",
            EvaluatorLevel::ToolCall,
            &s,
            Unit::ToolCall { trace: 1, call: 1 },
            &r,
        );
        assert!(
            tool.starts_with("Was Tool call: log() -> error: disk full right?"),
            "{tool}"
        );
        assert!(tool.contains("- add\n- mul\n- log"), "{tool}");
        assert!(tool.contains("Tool call: mul("), "{tool}");
        assert!(!tool.contains("Assistant: 20"), "{tool}");

        let session_prompt = fill_instructions(
            "{context}\nGoals:\n{assertions}\n{assistant_turn}",
            EvaluatorLevel::Session,
            &s,
            Unit::Session,
            &References {
                assertions: &["adds".to_owned()],
                ..Default::default()
            },
        );
        assert!(session_prompt.contains("Assistant: 20"), "{session_prompt}");
        assert!(
            session_prompt.contains("Goals:\n- adds"),
            "{session_prompt}"
        );
        // Not a SESSION placeholder: left as written.
        assert!(
            session_prompt.ends_with("{assistant_turn}"),
            "{session_prompt}"
        );

        let bare = fill_instructions("Be strict.", EvaluatorLevel::Trace, &s, Unit::Trace(0), &r);
        assert!(bare.contains("# Context\nTurn 1 (current):"), "{bare}");
        assert!(bare.ends_with("# Assistant turn\n5"), "{bare}");
    }

    #[test]
    fn instructions_need_a_level_placeholder() {
        assert!(check_instructions(EvaluatorLevel::Trace, "x {assistant_turn}").is_ok());
        let e = check_instructions(EvaluatorLevel::ToolCall, "x {assistant_turn}").unwrap_err();
        assert!(e.contains("{tool_turn}"), "{e}");
    }
}
