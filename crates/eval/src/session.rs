//! A session's span and log-record documents read into traces, turns and tool calls.
//!
//! The documents are the ADOT JSON forms (wave2 §1.3): span documents (`traceId`, `spanId`,
//! `parentSpanId`, `name`, `startTimeUnixNano`, `endTimeUnixNano`, `attributes`, `status`, and
//! `events` when the exporter keeps them) and OTel log-record documents (`timeUnixNano`,
//! `body.input.messages`, `body.output.messages`, `traceId`, `spanId`). The SDK sends spans from
//! two log groups without de-duplication, so the same document may come twice: it counts once.
//!
//! What is read where:
//! - Messages: log-record bodies (`body.input.messages`, `body.output.messages`: what Strands'
//!   span events become through the SDK's serializer and what ADOT's LLO handler emits), span
//!   attributes `gen_ai.input.messages` / `gen_ai.output.messages` (GenAI latest conventions),
//!   `gen_ai.prompt` / `gen_ai.completion`, traceloop's `gen_ai.prompt.N.*` /
//!   `gen_ai.completion.N.*`, openinference's `input.value` / `output.value`, and span events
//!   (`gen_ai.user.message`, `gen_ai.choice`, `gen_ai.client.inference.operation.details`).
//!   Message content may be text, Bedrock-style content blocks (`[{"text": ...}]`, possibly
//!   JSON-encoded in a string), GenAI `parts`, or `{content|message: ...}` wrappers; only text
//!   counts (tool-use and tool-result blocks are not the user's or the agent's words).
//! - A trace's user input: the last user text of the input of its agent span (`invoke_agent`, or
//!   the root span) when that has messages, else of its earliest message record. Its agent
//!   response: the agent span's output text, else the latest assistant text in the trace.
//! - Tool calls: spans with `gen_ai.operation.name == "execute_tool"`,
//!   `openinference.span.kind == "TOOL"` or `traceloop.span.kind == "tool"` (as the SDK detects
//!   them). Name from `gen_ai.tool.name`, `tool.name`, `traceloop.entity.name`, else the span
//!   name without `execute_tool `; arguments and result from `gen_ai.tool.call.arguments` /
//!   `.result`, `input.value` / `output.value`, `traceloop.entity.input` / `.output`, else the
//!   span's log record. Failed when the status is `ERROR` or `gen_ai.tool.status` is `error`.
//! - Token usage: `gen_ai.usage.input_tokens` (or `prompt_tokens`), `output_tokens` (or
//!   `completion_tokens`), `total_tokens`, summed over the spans that carry usage and have no
//!   descendant carrying usage (Strands' `invoke_agent` span repeats the agent's running total, so
//!   only its `chat` spans count).

use berth_api::ApiError;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One session: its traces in start order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionView {
    /// `session.id` of its spans (empty when no span names one).
    pub session_id: String,
    /// Its traces (turns), ordered by start time.
    pub traces: Vec<TraceView>,
}

/// One trace: a turn from user input to agent response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceView {
    /// 32 hex digits.
    pub trace_id: String,
    /// What the user asked in this turn.
    pub user_input: Option<String>,
    /// What the agent answered.
    pub agent_response: Option<String>,
    /// Tool calls in start order.
    pub tool_calls: Vec<ToolCall>,
    /// Tools the agent had (`gen_ai.agent.tools`), when a span says.
    pub available_tools: Vec<String>,
    /// The agent's system prompt, when a span says.
    pub system_prompt: Option<String>,
    /// Earliest span start (or record time), ns since the epoch.
    pub start_ns: u64,
    /// Latest span end (or record time), ns since the epoch.
    pub end_ns: u64,
    /// Model tokens the turn used.
    pub usage: Tokens,
}

impl TraceView {
    /// `end_ns - start_ns` in milliseconds.
    pub fn latency_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }
}

impl SessionView {
    /// Every tool call of the session, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.traces.iter().flat_map(|t| t.tool_calls.iter())
    }

    /// The session's token usage.
    pub fn usage(&self) -> Tokens {
        self.traces.iter().fold(Tokens::default(), |a, t| Tokens {
            input: a.input + t.usage.input,
            output: a.output + t.usage.output,
            total: a.total + t.usage.total,
        })
    }

    /// First trace start to last trace end, in milliseconds.
    pub fn latency_ms(&self) -> f64 {
        let start = self.traces.iter().map(|t| t.start_ns).min().unwrap_or(0);
        let end = self.traces.iter().map(|t| t.end_ns).max().unwrap_or(0);
        end.saturating_sub(start) as f64 / 1e6
    }

    /// The trace `trace_id`.
    pub fn trace(&self, trace_id: &str) -> Option<&TraceView> {
        self.traces.iter().find(|t| t.trace_id == trace_id)
    }
}

/// One tool call (a tool span).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolCall {
    /// The tool's name.
    pub name: String,
    /// The tool span (16 hex digits).
    pub span_id: String,
    /// Its trace.
    pub trace_id: String,
    /// The arguments (usually JSON text).
    pub input: Option<String>,
    /// The result.
    pub output: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Start, ns since the epoch.
    pub start_ns: u64,
    /// End, ns since the epoch.
    pub end_ns: u64,
}

/// Model token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
    /// Their sum.
    pub total: u64,
}

/// A message as a record carries it: role and its text (None when it has no text, e.g. only
/// tool-use blocks).
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    role: String,
    text: Option<String>,
}

/// Messages one document (or one span's attributes or events) carries.
#[derive(Debug, Clone)]
struct Record {
    span_id: String,
    time_ns: u64,
    input: Vec<Msg>,
    output: Vec<Msg>,
    /// The raw first input/output message contents (tool log records carry arguments and results
    /// there).
    raw_input: Option<Value>,
    raw_output: Option<Value>,
}

#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: Option<String>,
    name: String,
    start_ns: u64,
    end_ns: u64,
    attrs: Map<String, Value>,
    status_code: String,
    status_message: Option<String>,
    events: Vec<Value>,
}

/// Reads `documents` into a session. Documents that are neither span nor log-record documents
/// (no `traceId`) are ignored; a document that is not a JSON object is refused, as is a set of
/// documents naming more than one `session.id`.
pub fn read_session(documents: &[Value]) -> Result<SessionView, ApiError> {
    let mut spans: Vec<Span> = Vec::new();
    let mut logs: Vec<(String, Record)> = Vec::new();
    let mut seen_spans: HashSet<(String, String)> = HashSet::new();
    let mut seen_logs: HashSet<String> = HashSet::new();
    let mut sessions: Vec<String> = Vec::new();

    for (i, doc) in documents.iter().enumerate() {
        let Some(obj) = doc.as_object() else {
            return Err(ApiError::field(
                format!("evaluationInput.sessionSpans.{i}"),
                "a span document must be a JSON object",
            ));
        };
        let Some(trace_id) = obj.get("traceId").and_then(Value::as_str) else {
            continue;
        };
        let trace_id = trace_id.to_owned();
        let span_id = str_of(obj.get("spanId")).unwrap_or_default();
        for attrs in [obj.get("attributes"), doc.pointer("/resource/attributes")] {
            if let Some(s) = attrs
                .and_then(|a| a.get("session.id"))
                .and_then(Value::as_str)
                && !s.is_empty()
                && !sessions.iter().any(|x| x == s)
            {
                sessions.push(s.to_owned());
            }
        }
        if let Some(body) = obj.get("body") {
            // A log record; identical copies (both log groups) count once.
            let key = format!(
                "{trace_id}/{span_id}/{}/{}",
                num(obj.get("timeUnixNano")),
                body
            );
            if !seen_logs.insert(key) {
                continue;
            }
            let input = body.pointer("/input/messages").and_then(Value::as_array);
            let output = body.pointer("/output/messages").and_then(Value::as_array);
            logs.push((
                trace_id,
                Record {
                    span_id,
                    time_ns: num(obj.get("timeUnixNano")).max(num(obj.get("observedTimeUnixNano"))),
                    input: input.map(|m| messages(m)).unwrap_or_default(),
                    output: output.map(|m| messages(m)).unwrap_or_default(),
                    raw_input: input
                        .and_then(|m| m.first())
                        .and_then(|m| m.get("content"))
                        .cloned(),
                    raw_output: output
                        .and_then(|m| m.first())
                        .and_then(|m| m.get("content"))
                        .cloned(),
                },
            ));
            continue;
        }
        if span_id.is_empty() || !seen_spans.insert((trace_id.clone(), span_id.clone())) {
            continue;
        }
        let start_ns = num(obj.get("startTimeUnixNano"));
        let end_ns = num(obj.get("endTimeUnixNano")).max(start_ns);
        spans.push(Span {
            trace_id,
            span_id,
            parent: str_of(obj.get("parentSpanId")).filter(|p| !p.is_empty()),
            name: str_of(obj.get("name")).unwrap_or_default(),
            start_ns,
            end_ns,
            attrs: obj
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            status_code: doc
                .pointer("/status/code")
                .map(|c| match c {
                    // OTLP JSON's numeric codes: 0 unset, 1 ok, 2 error.
                    Value::Number(n) if n.as_u64() == Some(2) => "ERROR".to_owned(),
                    Value::String(s) => s.trim_start_matches("STATUS_CODE_").to_uppercase(),
                    _ => String::new(),
                })
                .unwrap_or_default(),
            status_message: doc
                .pointer("/status/message")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
            events: obj
                .get("events")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        });
    }
    if sessions.len() > 1 {
        return Err(ApiError::field(
            "evaluationInput.sessionSpans",
            format!(
                "the documents belong to more than one session ({}); send one session's spans",
                sessions.join(", ")
            ),
        ));
    }

    // Group by trace, in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut by_trace: HashMap<String, (Vec<Span>, Vec<Record>)> = HashMap::new();
    for s in spans {
        let e = by_trace.entry(s.trace_id.clone()).or_insert_with(|| {
            order.push(s.trace_id.clone());
            Default::default()
        });
        e.0.push(s);
    }
    for (t, r) in logs {
        let e = by_trace.entry(t.clone()).or_insert_with(|| {
            order.push(t.clone());
            Default::default()
        });
        e.1.push(r);
    }
    let mut traces: Vec<TraceView> = order
        .into_iter()
        .filter_map(|t| {
            let (spans, logs) = by_trace.remove(&t)?;
            Some(trace_view(t, spans, logs))
        })
        .collect();
    traces.sort_by_key(|t| t.start_ns);
    Ok(SessionView {
        session_id: sessions.into_iter().next().unwrap_or_default(),
        traces,
    })
}

fn trace_view(trace_id: String, mut spans: Vec<Span>, logs: Vec<Record>) -> TraceView {
    spans.sort_by_key(|s| (s.start_ns, s.end_ns));
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    // The agent span: the first invoke_agent span, else the root (no parent in the trace).
    let agent = spans
        .iter()
        .find(|s| op(s) == Some("invoke_agent"))
        .or_else(|| {
            spans
                .iter()
                .find(|s| s.parent.as_deref().is_none_or(|p| !ids.contains(p)))
        })
        .map(|s| s.span_id.clone());

    // Message records: log records plus what spans carry themselves.
    let mut records: Vec<Record> = logs;
    for s in &spans {
        records.extend(span_records(s));
    }
    records.sort_by_key(|r| r.time_ns);

    let last_text = |msgs: &[Msg], role: &str| -> Option<String> {
        msgs.iter()
            .rev()
            .filter(|m| m.role == role)
            .find_map(|m| m.text.clone())
    };
    let agent_records: Vec<&Record> = records
        .iter()
        .filter(|r| Some(&r.span_id) == agent.as_ref())
        .collect();
    let user_input = agent_records
        .iter()
        .find_map(|r| last_text(&r.input, "user"))
        .or_else(|| records.iter().find_map(|r| last_text(&r.input, "user")));
    let agent_response = agent_records
        .iter()
        .rev()
        .find_map(|r| last_text(&r.output, "assistant"))
        .or_else(|| {
            records
                .iter()
                .rev()
                .find_map(|r| last_text(&r.output, "assistant"))
        });

    let tool_calls = spans
        .iter()
        .filter(|s| is_tool(s))
        .map(|s| tool_call(s, &records))
        .collect();

    let available_tools = spans
        .iter()
        .find_map(|s| s.attrs.get("gen_ai.agent.tools"))
        .and_then(|v| match v {
            Value::String(s) => serde_json::from_str::<Vec<String>>(s).ok(),
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default();
    let system_prompt = spans.iter().find_map(|s| {
        [
            "gen_ai.system_instructions",
            "system_prompt",
            "gen_ai.system_prompt",
        ]
        .iter()
        .find_map(|k| s.attrs.get(*k))
        .and_then(text_of)
    });

    let (mut start_ns, mut end_ns) = (u64::MAX, 0u64);
    for s in &spans {
        start_ns = start_ns.min(s.start_ns);
        end_ns = end_ns.max(s.end_ns);
    }
    if spans.is_empty() {
        for r in &records {
            start_ns = start_ns.min(r.time_ns);
            end_ns = end_ns.max(r.time_ns);
        }
    }
    if start_ns == u64::MAX {
        start_ns = 0;
    }

    TraceView {
        usage: usage(&spans),
        trace_id,
        user_input,
        agent_response,
        tool_calls,
        available_tools,
        system_prompt,
        start_ns,
        end_ns,
    }
}

/// Usage summed over spans that carry it and have no descendant carrying it.
fn usage(spans: &[Span]) -> Tokens {
    let get = |s: &Span, keys: &[&str]| -> Option<u64> {
        keys.iter()
            .find_map(|k| s.attrs.get(*k))
            .map(|v| num(Some(v)))
    };
    let counts: HashMap<&str, Tokens> = spans
        .iter()
        .filter_map(|s| {
            let input = get(
                s,
                &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"],
            );
            let output = get(
                s,
                &[
                    "gen_ai.usage.output_tokens",
                    "gen_ai.usage.completion_tokens",
                ],
            );
            let total = get(s, &["gen_ai.usage.total_tokens", "llm.usage.total_tokens"]);
            if input.is_none() && output.is_none() && total.is_none() {
                return None;
            }
            let (i, o) = (input.unwrap_or(0), output.unwrap_or(0));
            Some((
                s.span_id.as_str(),
                Tokens {
                    input: i,
                    output: o,
                    total: total.unwrap_or(i + o),
                },
            ))
        })
        .collect();
    // Spans with a usage-carrying descendant: walk each usage span's ancestors.
    let parent: HashMap<&str, &str> = spans
        .iter()
        .filter_map(|s| Some((s.span_id.as_str(), s.parent.as_deref()?)))
        .collect();
    let mut covered: HashSet<&str> = HashSet::new();
    for id in counts.keys() {
        let mut cur = *id;
        let mut hops = 0;
        while let Some(p) = parent.get(cur) {
            if !covered.insert(p) || hops > spans.len() {
                break;
            }
            cur = p;
            hops += 1;
        }
    }
    counts
        .iter()
        .filter(|(id, _)| !covered.contains(**id))
        .fold(Tokens::default(), |a, (_, t)| Tokens {
            input: a.input + t.input,
            output: a.output + t.output,
            total: a.total + t.total,
        })
}

fn op(s: &Span) -> Option<&str> {
    s.attrs.get("gen_ai.operation.name").and_then(Value::as_str)
}

/// The SDK's tool-span test (SDK/evaluation/spans.py).
fn is_tool(s: &Span) -> bool {
    op(s) == Some("execute_tool")
        || s.attrs
            .get("openinference.span.kind")
            .and_then(Value::as_str)
            == Some("TOOL")
        || s.attrs.get("traceloop.span.kind").and_then(Value::as_str) == Some("tool")
}

fn tool_call(s: &Span, records: &[Record]) -> ToolCall {
    let attr = |keys: &[&str]| -> Option<String> {
        keys.iter().find_map(|k| s.attrs.get(*k)).and_then(raw_text)
    };
    let name =
        attr(&["gen_ai.tool.name", "tool.name", "traceloop.entity.name"]).unwrap_or_else(|| {
            s.name
                .strip_prefix("execute_tool ")
                .unwrap_or(&s.name)
                .to_owned()
        });
    let own: Vec<&Record> = records.iter().filter(|r| r.span_id == s.span_id).collect();
    // A tool log record: input.messages[0].content.content, output.messages[0].content.message.
    let unwrap = |v: &Value, keys: &[&str]| -> Option<String> {
        match v {
            Value::Object(o) => keys.iter().find_map(|k| o.get(*k)).and_then(raw_text),
            other => raw_text(other),
        }
    };
    let input = attr(&[
        "gen_ai.tool.call.arguments",
        "input.value",
        "traceloop.entity.input",
        "tool.parameters",
    ])
    .or_else(|| {
        own.iter().find_map(|r| {
            r.raw_input
                .as_ref()
                .and_then(|v| unwrap(v, &["content", "arguments"]))
        })
    });
    let output = attr(&[
        "gen_ai.tool.call.result",
        "output.value",
        "traceloop.entity.output",
    ])
    .or_else(|| {
        own.iter().find_map(|r| {
            r.raw_output
                .as_ref()
                .and_then(|v| unwrap(v, &["message", "content"]))
        })
    });
    let failed = s.status_code == "ERROR"
        || s.attrs.get("gen_ai.tool.status").and_then(Value::as_str) == Some("error");
    let exception = s.events.iter().find_map(|e| {
        (e.get("name").and_then(Value::as_str) == Some("exception"))
            .then(|| {
                e.pointer("/attributes/exception.message")
                    .and_then(Value::as_str)
            })
            .flatten()
            .map(str::to_owned)
    });
    let error = failed.then(|| {
        s.status_message
            .clone()
            .or(exception)
            .or_else(|| {
                output
                    .as_deref()
                    .and_then(|o| text_of(&Value::String(o.to_owned())))
            })
            .unwrap_or_else(|| "the tool call failed".to_owned())
    });
    ToolCall {
        name,
        span_id: s.span_id.clone(),
        trace_id: s.trace_id.clone(),
        input,
        output,
        error,
        start_ns: s.start_ns,
        end_ns: s.end_ns,
    }
}

/// Message records a span carries in its attributes and events.
fn span_records(s: &Span) -> Vec<Record> {
    let mut out = Vec::new();
    let a = &s.attrs;
    let parse = |v: &Value| -> Vec<Msg> {
        match v {
            Value::String(t) => match serde_json::from_str::<Value>(t) {
                Ok(Value::Array(m)) => messages(&m),
                _ => Vec::new(),
            },
            Value::Array(m) => messages(m),
            _ => Vec::new(),
        }
    };
    let record = |input: Vec<Msg>, output: Vec<Msg>, time_ns: u64| Record {
        span_id: s.span_id.clone(),
        time_ns,
        input,
        output,
        raw_input: None,
        raw_output: None,
    };
    // GenAI latest conventions and older Strands attributes: JSON lists of messages.
    for (i, o) in [
        ("gen_ai.input.messages", "gen_ai.output.messages"),
        ("gen_ai.prompt", "gen_ai.completion"),
    ] {
        let input = a.get(i).map(parse).unwrap_or_default();
        let output = a.get(o).map(parse).unwrap_or_default();
        if !input.is_empty() || !output.is_empty() {
            out.push(record(input, output, s.end_ns));
        }
    }
    // traceloop: gen_ai.prompt.N.role / .content, gen_ai.completion.N.role / .content.
    let indexed = |prefix: &str, default_role: &str| -> Vec<Msg> {
        let mut by_index: BTreeMap<u64, (Option<String>, Option<String>)> = BTreeMap::new();
        for (k, v) in a {
            let Some(rest) = k.strip_prefix(prefix) else {
                continue;
            };
            let Some((n, field)) = rest.split_once('.') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            let e = by_index.entry(n).or_default();
            match field {
                "role" => e.0 = v.as_str().map(str::to_owned),
                "content" => e.1 = text_of(v),
                _ => {}
            }
        }
        by_index
            .into_values()
            .map(|(role, text)| Msg {
                role: role.unwrap_or_else(|| default_role.to_owned()),
                text,
            })
            .collect()
    };
    let (ti, to) = (
        indexed("gen_ai.prompt.", "user"),
        indexed("gen_ai.completion.", "assistant"),
    );
    if !ti.is_empty() || !to.is_empty() {
        out.push(record(ti, to, s.end_ns));
    }
    // openinference (not on tool spans: there they are the tool's arguments and result).
    if !is_tool(s) {
        let i = a.get("input.value").and_then(text_of);
        let o = a.get("output.value").and_then(text_of);
        if i.is_some() || o.is_some() {
            out.push(record(
                i.map(|t| {
                    vec![Msg {
                        role: "user".into(),
                        text: Some(t),
                    }]
                })
                .unwrap_or_default(),
                o.map(|t| {
                    vec![Msg {
                        role: "assistant".into(),
                        text: Some(t),
                    }]
                })
                .unwrap_or_default(),
                s.end_ns,
            ));
        }
    }
    // Span events (when the exporter keeps them).
    for e in &s.events {
        let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
        let ea = e.get("attributes").cloned().unwrap_or(Value::Null);
        let t = num(e.get("timeUnixNano")).max(s.start_ns);
        let text = |k: &str| ea.get(k).and_then(text_of);
        match name {
            "gen_ai.user.message" => out.push(record(
                vec![Msg {
                    role: "user".into(),
                    text: text("content"),
                }],
                Vec::new(),
                t,
            )),
            "gen_ai.choice" if !is_tool(s) => out.push(record(
                Vec::new(),
                vec![Msg {
                    role: "assistant".into(),
                    text: text("message"),
                }],
                t,
            )),
            "gen_ai.client.inference.operation.details" => {
                let input = ea
                    .get("gen_ai.input.messages")
                    .map(parse)
                    .unwrap_or_default();
                let output = ea
                    .get("gen_ai.output.messages")
                    .map(parse)
                    .unwrap_or_default();
                if !input.is_empty() || !output.is_empty() {
                    out.push(record(input, output, t));
                }
            }
            _ => {}
        }
    }
    out
}

fn messages(list: &[Value]) -> Vec<Msg> {
    list.iter()
        .filter_map(|m| {
            let role = m.get("role").and_then(Value::as_str)?.to_owned();
            let text = m
                .get("content")
                .or_else(|| m.get("parts"))
                .and_then(text_of);
            Some(Msg { role, text })
        })
        .collect()
}

/// Block keys of Bedrock/Strands content blocks: a JSON list of objects with one of these is
/// content, not a user's literal JSON.
const BLOCK_KEYS: &[&str] = &[
    "text",
    "toolUse",
    "toolResult",
    "reasoningContent",
    "image",
    "document",
    "video",
    "cachePoint",
    "type",
    "json",
];

/// The text a message content holds: strings (JSON-encoded blocks are decoded), text blocks,
/// GenAI text parts, `{content|message|text: ...}` wrappers. Tool-use and tool-result blocks,
/// reasoning and media hold no text. `None` when there is no text.
pub(crate) fn text_of(v: &Value) -> Option<String> {
    let t = match v {
        Value::String(s) => {
            let trimmed = s.trim_start();
            if trimmed.starts_with('[') || trimmed.starts_with('{') {
                match serde_json::from_str::<Value>(s) {
                    Ok(parsed) if looks_like_content(&parsed) => return text_of(&parsed),
                    _ => Some(s.clone()),
                }
            } else {
                Some(s.clone())
            }
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(block_text).collect();
            (!parts.is_empty()).then(|| parts.join("\n"))
        }
        Value::Object(o) => {
            if let Some(t) = o.get("text").and_then(Value::as_str) {
                Some(t.to_owned())
            } else if o.get("type").and_then(Value::as_str) == Some("text") {
                o.get("content").and_then(Value::as_str).map(str::to_owned)
            } else {
                ["content", "message", "parts"]
                    .iter()
                    .find_map(|k| o.get(*k))
                    .and_then(text_of)
            }
        }
        _ => None,
    }?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn block_text(b: &Value) -> Option<String> {
    match b {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            if let Some(t) = o.get("text").and_then(Value::as_str) {
                return Some(t.to_owned());
            }
            if o.get("type").and_then(Value::as_str) == Some("text") {
                return o.get("content").and_then(Value::as_str).map(str::to_owned);
            }
            // A message nested in a list ({role, content}).
            if o.contains_key("role") {
                return o
                    .get("content")
                    .or_else(|| o.get("parts"))
                    .and_then(text_of);
            }
            None
        }
        _ => None,
    }
}

fn looks_like_content(v: &Value) -> bool {
    match v {
        Value::Array(items) => {
            !items.is_empty()
                && items.iter().all(|i| {
                    i.as_object().is_some_and(|o| {
                        o.contains_key("role") || BLOCK_KEYS.iter().any(|k| o.contains_key(*k))
                    })
                })
        }
        Value::Object(o) => ["text", "content", "message", "parts"]
            .iter()
            .any(|k| o.contains_key(*k)),
        _ => false,
    }
}

/// A value as raw text: strings as they are, anything else as compact JSON.
fn raw_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// A number that may come as a JSON number or a string (OTLP JSON sends 64-bit integers as
/// strings).
fn num(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Vec<Value> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("fixture");
        serde_json::from_str(&text).expect("fixture json")
    }

    #[test]
    fn strands_events_session_reads_into_two_turns() {
        let docs = fixture("strands_events.json");
        let s = read_session(&docs).expect("reads");
        assert_eq!(s.session_id, "session-fixture-0001");
        assert_eq!(s.traces.len(), 2);
        let (t1, t2) = (&s.traces[0], &s.traces[1]);
        assert_eq!(t1.user_input.as_deref(), Some("add 2 and 3"));
        assert_eq!(t1.agent_response.as_deref(), Some("the tool said 5"));
        assert_eq!(t1.tool_calls.len(), 1);
        let add = &t1.tool_calls[0];
        assert_eq!(add.name, "add");
        assert_eq!(add.input.as_deref(), Some("{\"a\": 2, \"b\": 3}"));
        assert_eq!(add.output.as_deref(), Some("[{\"text\": \"5\"}]"));
        assert_eq!(add.error, None);
        assert_eq!(add.trace_id, t1.trace_id);
        assert_eq!(t1.available_tools, vec!["add", "broken"]);
        // Only the chat spans count: 100+150 in, 20+10 out (invoke_agent repeats the total).
        assert_eq!(
            t1.usage,
            Tokens {
                input: 250,
                output: 30,
                total: 280
            }
        );
        // The second turn's invoke_agent span says 500 (the agent's running total); its chat
        // spans say 250.
        assert_eq!(t2.usage.total, 280);
        assert_eq!(t2.user_input.as_deref(), Some("now try the broken tool"));
        assert_eq!(
            t2.agent_response.as_deref(),
            Some("the tool said Error: RuntimeError - the broken tool broke")
        );
        let broken = &t2.tool_calls[0];
        assert_eq!(broken.name, "broken");
        assert_eq!(
            broken.error.as_deref(),
            Some("Error: RuntimeError - the broken tool broke")
        );
        assert!(t1.start_ns < t1.end_ns && t1.end_ns <= t2.start_ns);
        assert!(t1.latency_ms() > 0.0);
        assert_eq!(s.usage().total, 560);
    }

    #[test]
    fn duplicated_documents_count_once() {
        let docs = fixture("strands_events.json");
        let once = read_session(&docs).expect("reads");
        // What the SDK sends: both log groups' results concatenated, sorted by end time.
        let mut twice: Vec<Value> = docs.iter().chain(docs.iter()).cloned().collect();
        twice.sort_by_key(|d| num(d.get("endTimeUnixNano")));
        assert_eq!(read_session(&twice).expect("reads"), once);
    }

    #[test]
    fn latest_conventions_read_tool_attributes() {
        let docs = fixture("strands_latest.json");
        let s = read_session(&docs).expect("reads");
        assert_eq!(s.traces.len(), 2);
        let add = &s.traces[0].tool_calls[0];
        assert_eq!(add.name, "add");
        assert_eq!(add.input.as_deref(), Some("{\"a\": 2, \"b\": 3}"));
        assert_eq!(add.output.as_deref(), Some("[{\"text\": \"5\"}]"));
        assert_eq!(
            s.traces[0].system_prompt.as_deref(),
            Some("You add numbers with tools.")
        );
        let broken = &s.traces[1].tool_calls[0];
        assert!(broken.error.is_some());
        assert_eq!(s.traces[1].usage.total, 280);
    }

    #[test]
    fn genai_latest_messages_and_openinference_and_traceloop() {
        let docs = vec![
            json!({"traceId": "a".repeat(32), "spanId": "1".repeat(16), "name": "invoke_agent x",
                   "startTimeUnixNano": "1000", "endTimeUnixNano": "5000",
                   "attributes": {"session.id": "s1", "gen_ai.operation.name": "invoke_agent",
                     "gen_ai.input.messages": "[{\"role\": \"user\", \"parts\": [{\"type\": \"text\", \"content\": \"hi there\"}]}]",
                     "gen_ai.output.messages": "[{\"role\": \"assistant\", \"parts\": [{\"type\": \"text\", \"content\": \"hello\"}], \"finish_reason\": \"end_turn\"}]"},
                   "status": {"code": "OK"}}),
            json!({"traceId": "a".repeat(32), "spanId": "2".repeat(16), "parentSpanId": "1".repeat(16),
                   "name": "search", "startTimeUnixNano": 2000, "endTimeUnixNano": 3000,
                   "attributes": {"openinference.span.kind": "TOOL", "tool.name": "search",
                     "input.value": "{\"q\": 1}", "output.value": "found"},
                   "status": {"code": "ERROR", "message": "timeout"}}),
            json!({"traceId": "b".repeat(32), "spanId": "3".repeat(16), "name": "llm",
                   "startTimeUnixNano": 6000, "endTimeUnixNano": 7000,
                   "attributes": {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "second?",
                     "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "second!",
                     "llm.usage.total_tokens": 9}}),
            json!({"traceId": "b".repeat(32), "spanId": "4".repeat(16), "parentSpanId": "3".repeat(16),
                   "name": "calc.tool", "startTimeUnixNano": 6500, "endTimeUnixNano": 6600,
                   "attributes": {"traceloop.span.kind": "tool", "traceloop.entity.name": "calc",
                     "traceloop.entity.input": "{\"x\": 2}", "traceloop.entity.output": "4"}}),
            json!({"not": "a span"}),
        ];
        let s = read_session(&docs).expect("reads");
        assert_eq!(s.session_id, "s1");
        let t = &s.traces[0];
        assert_eq!(t.user_input.as_deref(), Some("hi there"));
        assert_eq!(t.agent_response.as_deref(), Some("hello"));
        assert_eq!(t.tool_calls[0].name, "search");
        assert_eq!(t.tool_calls[0].input.as_deref(), Some("{\"q\": 1}"));
        assert_eq!(t.tool_calls[0].error.as_deref(), Some("timeout"));
        let t = &s.traces[1];
        assert_eq!(t.user_input.as_deref(), Some("second?"));
        assert_eq!(t.agent_response.as_deref(), Some("second!"));
        assert_eq!(t.tool_calls[0].name, "calc");
        assert_eq!(t.tool_calls[0].output.as_deref(), Some("4"));
        assert_eq!(t.usage.total, 9);
    }

    #[test]
    fn adot_log_records_with_plain_string_content() {
        // ADOT's LLO handler: body.input/output.messages with string content.
        let docs = vec![
            json!({"resource": {"attributes": {"service.name": "agent"}}, "scope": {"name": "x"},
                   "timeUnixNano": 1500, "observedTimeUnixNano": 1500, "severityNumber": 9,
                   "body": {"input": {"messages": [{"role": "system", "content": "be nice"},
                                                   {"role": "user", "content": "what is 2+2?"}]},
                            "output": {"messages": [{"role": "assistant", "content": "4"}]}},
                   "attributes": {"event.name": "x"}, "flags": 1,
                   "traceId": "c".repeat(32), "spanId": "5".repeat(16)}),
            json!({"traceId": "c".repeat(32), "spanId": "5".repeat(16), "name": "chat",
                   "startTimeUnixNano": 1000, "endTimeUnixNano": 1400,
                   "attributes": {"session.id": "s2"}}),
        ];
        let s = read_session(&docs).expect("reads");
        let t = &s.traces[0];
        assert_eq!(t.user_input.as_deref(), Some("what is 2+2?"));
        assert_eq!(t.agent_response.as_deref(), Some("4"));
        assert_eq!((t.start_ns, t.end_ns), (1000, 1400));
    }

    #[test]
    fn two_sessions_and_non_objects_are_refused() {
        let two = vec![
            json!({"traceId": "a", "spanId": "1", "attributes": {"session.id": "x"}}),
            json!({"traceId": "b", "spanId": "2", "attributes": {"session.id": "y"}}),
        ];
        let e = read_session(&two).expect_err("two sessions");
        assert!(e.message.contains("more than one session"), "{e}");
        let e = read_session(&[json!(3)]).expect_err("not an object");
        assert_eq!(e.field_list[0].name, "evaluationInput.sessionSpans.0");
    }

    #[test]
    fn text_of_reads_content_forms() {
        assert_eq!(text_of(&json!("[{\"text\": \"a\"}]")).as_deref(), Some("a"));
        assert_eq!(
            text_of(&json!("[{\"toolUse\": {\"name\": \"x\", \"input\": {}}}]")),
            None
        );
        assert_eq!(text_of(&json!("{\"x\": 1}")).as_deref(), Some("{\"x\": 1}"));
        assert_eq!(text_of(&json!({"content": "hi"})).as_deref(), Some("hi"));
        assert_eq!(
            text_of(&json!({"message": "[{\"text\": \"yo\"}]", "finish_reason": "end_turn"}))
                .as_deref(),
            Some("yo")
        );
        assert_eq!(
            text_of(&json!([{"type": "text", "content": "p"}, {"type": "tool_call"}])).as_deref(),
            Some("p")
        );
        assert_eq!(text_of(&json!("  ")), None);
    }
}
