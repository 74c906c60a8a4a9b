//! The JSON documents Berth's own log groups hold: a span in `aws/spans` and an agent's log
//! record in its runtime's group, in the layout ADOT writes and the AgentCore SDK reads
//! (`span_to_adot_serializer/adot_models.py`).
//!
//! `attributes["session.id"]` is the session Berth attributed the data to (when it has one),
//! whatever the agent put there: queries by session then see exactly what the session index
//! holds, and no agent can place its spans in another session's evaluation.

use crate::{LogRecord, Span};
use serde_json::{Map, Value, json};

fn with_session(attributes: &Value, session: Option<&str>) -> Value {
    let mut m = match attributes {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Some(s) = session {
        m.insert("session.id".into(), Value::String(s.to_owned()));
    }
    Value::Object(m)
}

fn object_or_empty(v: &Value) -> Value {
    if v.is_object() { v.clone() } else { json!({}) }
}

/// A span as its `aws/spans` document.
pub fn span_document(s: &Span) -> Value {
    let mut status = json!({ "code": s.status_code });
    if !s.status_message.is_empty() {
        status["message"] = Value::String(s.status_message.clone());
    }
    let mut doc = json!({
        "resource": { "attributes": object_or_empty(&s.resource) },
        "scope": { "name": s.scope },
        "traceId": s.trace_id,
        "spanId": s.span_id,
        "parentSpanId": s.parent_span_id.clone().unwrap_or_default(),
        "name": s.name,
        "kind": s.kind,
        "startTimeUnixNano": s.start_ns,
        "endTimeUnixNano": s.end_ns,
        "durationNano": s.duration_ns(),
        "attributes": with_session(&s.attributes, s.attribution.session_id.as_deref()),
        "status": status,
    });
    if let Value::Array(events) = &s.events
        && !events.is_empty()
    {
        let events: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({
                    "name": e.get("name").cloned().unwrap_or(Value::Null),
                    "timeUnixNano": e.get("timeNs").cloned().unwrap_or(Value::Null),
                    "attributes": e.get("attributes").cloned().unwrap_or_else(|| json!({})),
                })
            })
            .collect();
        doc["events"] = Value::Array(events);
    }
    doc
}

/// An agent's log record as its runtime group's document.
pub fn log_document(l: &LogRecord) -> Value {
    let mut doc = json!({
        "resource": { "attributes": object_or_empty(&l.resource) },
        "scope": { "name": l.scope },
        "timeUnixNano": l.time_ns,
        "observedTimeUnixNano": l.time_ns,
        "severityNumber": l.severity_number,
        "severityText": l.severity_text,
        "body": l.body,
        "attributes": with_session(&l.attributes, l.attribution.session_id.as_deref()),
    });
    if let Some(t) = &l.trace_id {
        doc["traceId"] = Value::String(t.clone());
    }
    if let Some(s) = &l.span_id {
        doc["spanId"] = Value::String(s.clone());
    }
    doc
}
