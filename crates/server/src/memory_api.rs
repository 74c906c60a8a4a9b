//! AgentCore Memory routes: the memory resources of `bedrock-agentcore-control`, the events,
//! records and extraction jobs of `bedrock-agentcore`, and Berth's native context call.

use crate::control_api::{Documents, input_with_documents, respond};
use crate::error::WireError;
use crate::{AppState, model_route};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use berth_api::ApiError;
use berth_api::memory::ContextRequest;
use berth_api::model::{self, Model};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Document-typed members (`blob` payloads, `json.content`) hold any JSON, but the embedded
/// model describes them as empty structures. They are taken out before validation and put
/// back after, so a blob that is a string or a list is accepted as AgentCore accepts it.
fn take_documents(body: &mut Value) -> Documents {
    let mut out = Vec::new();
    if let Some(items) = body.get_mut("payload").and_then(Value::as_array_mut) {
        for (i, item) in items.iter_mut().enumerate() {
            if let Some(b) = item.get_mut("blob") {
                out.push((
                    format!("/payload/{i}/blob"),
                    std::mem::replace(b, Value::Object(Default::default())),
                ));
            }
            if let Some(c) = item.get_mut("json").and_then(|j| j.get_mut("content")) {
                out.push((
                    format!("/payload/{i}/json/content"),
                    std::mem::replace(c, Value::Object(Default::default())),
                ));
            }
        }
    }
    out
}

/// Reads a validated request into its typed form. The model check already refused most bad
/// input; what it cannot express (a timestamp's form, a union's one member) fails here, as a
/// ValidationException naming the member.
/// Members are named as the model check names them: dotted, list positions from 1
/// (`payload.1.conversational.role`).
pub(crate) fn typed<T: DeserializeOwned>(input: Value) -> Result<T, ApiError> {
    use serde_path_to_error::Segment;
    serde_path_to_error::deserialize(input).map_err(|e| {
        let parts: Vec<String> = e
            .path()
            .iter()
            .map(|s| match s {
                Segment::Seq { index } => (index + 1).to_string(),
                Segment::Map { key } => key.clone(),
                Segment::Enum { variant } => variant.clone(),
                Segment::Unknown => "?".to_owned(),
            })
            .collect();
        let member = if parts.is_empty() {
            "body".to_owned()
        } else {
            parts.join(".")
        };
        let message = format!(
            "Value at '{member}' failed to satisfy constraint: {}",
            e.into_inner()
        );
        ApiError::field(member, message)
    })
}

/// The response of `op` with a typed body.
pub(crate) fn respond_typed(
    m: &Model,
    op: &str,
    out: &impl Serialize,
) -> Result<Response, ApiError> {
    let body = serde_json::to_value(out)
        .map_err(|e| ApiError::internal_because(format_args!("encoding the {op} response: {e}")))?;
    Ok(respond(m, op, body))
}

/// A memory route: validate against the model, read the typed request, call `Memory`, answer
/// the typed response. The request and response types are the method's.
macro_rules! memory_op {
    ($name:ident, $model:ident, $op:literal, $method:ident) => {
        async fn $name(
            State(s): State<AppState>,
            path: Result<RawPathParams, RawPathParamsRejection>,
            RawQuery(q): RawQuery,
            body: Bytes,
        ) -> Result<Response, WireError> {
            let m = model::$model();
            let input =
                input_with_documents(m, $op, path, q.as_deref(), &body, s.relax, take_documents)?;
            let out = s.memory.$method(typed(input)?).await?;
            Ok(respond_typed(m, $op, &out)?)
        }
    };
}

memory_op!(create_memory, control, "CreateMemory", create_memory);
memory_op!(get_memory, control, "GetMemory", get_memory);
memory_op!(list_memories, control, "ListMemories", list_memories);
memory_op!(update_memory, control, "UpdateMemory", update_memory);
/// `DeleteMemory`, which also deletes the memory's resource policy.
async fn delete_memory(
    State(s): State<AppState>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, WireError> {
    let m = model::control();
    let input = input_with_documents(
        m,
        "DeleteMemory",
        path,
        q.as_deref(),
        &body,
        s.relax,
        take_documents,
    )?;
    let out = s.memory.delete_memory(typed(input)?).await?;
    let arn = crate::authz::memory_arn(s.control.partition(), &out.memory_id);
    s.control.forget_resource_policy(&arn).await?;
    Ok(respond_typed(m, "DeleteMemory", &out)?)
}

memory_op!(create_event, data, "CreateEvent", create_event);
memory_op!(get_event, data, "GetEvent", get_event);
memory_op!(list_events, data, "ListEvents", list_events);
memory_op!(delete_event, data, "DeleteEvent", delete_event);
memory_op!(list_sessions, data, "ListSessions", list_sessions);
memory_op!(list_actors, data, "ListActors", list_actors);
memory_op!(
    retrieve_records,
    data,
    "RetrieveMemoryRecords",
    retrieve_records
);
memory_op!(list_records, data, "ListMemoryRecords", list_records);
memory_op!(get_record, data, "GetMemoryRecord", get_record);
memory_op!(delete_record, data, "DeleteMemoryRecord", delete_record);
memory_op!(
    batch_create,
    data,
    "BatchCreateMemoryRecords",
    batch_create_records
);
memory_op!(
    batch_update,
    data,
    "BatchUpdateMemoryRecords",
    batch_update_records
);
memory_op!(
    batch_delete,
    data,
    "BatchDeleteMemoryRecords",
    batch_delete_records
);
memory_op!(
    list_jobs,
    data,
    "ListMemoryExtractionJobs",
    list_extraction_jobs
);
memory_op!(
    start_job,
    data,
    "StartMemoryExtractionJob",
    start_extraction_job
);

/// `POST /berth/v1/memories/{memoryId}/actors/{actorId}/context`: Berth's one-round-trip
/// context for an agent (recent turns of the actor's last session and the top records for
/// `query`). Body: `{"query"?, "maxTurns"?, "topK"?, "namespacePath"?}`.
async fn context(
    State(s): State<AppState>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    body: Bytes,
) -> Result<Response, WireError> {
    let mut v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::cannot_parse(format!("the request body is not valid JSON: {e}"))
        })?
    };
    let Some(obj) = v.as_object_mut() else {
        return Err(ApiError::cannot_parse("the request body must be a JSON object").into());
    };
    let path = path.map_err(|_| ApiError::field("path", "the request path is not valid UTF-8"))?;
    for (k, val) in path.iter() {
        obj.insert(k.to_owned(), Value::String(val.to_owned()));
    }
    let out = s.memory.context(typed::<ContextRequest>(v)?).await?;
    Ok(axum::Json(out).into_response())
}

/// The memory routes. They share no path with the runtime routes.
pub fn routes() -> Router<AppState> {
    model_route(Router::new(), "/memories/", post(list_memories))
        // Control plane.
        .route("/memories/create", post(create_memory))
        .route("/memories/{memoryId}/details", get(get_memory))
        .route("/memories/{memoryId}/update", put(update_memory))
        .route("/memories/{memoryId}/delete", delete(delete_memory))
        // Short-term memory.
        .route("/memories/{memoryId}/events", post(create_event))
        .route("/memories/{memoryId}/actors", post(list_actors))
        .route(
            "/memories/{memoryId}/actor/{actorId}/sessions",
            post(list_sessions),
        )
        .route(
            "/memories/{memoryId}/actor/{actorId}/sessions/{sessionId}",
            post(list_events),
        )
        .route(
            "/memories/{memoryId}/actor/{actorId}/sessions/{sessionId}/events/{eventId}",
            get(get_event).delete(delete_event),
        )
        // Long-term memory.
        .route("/memories/{memoryId}/retrieve", post(retrieve_records))
        .route("/memories/{memoryId}/memoryRecords", post(list_records))
        .route(
            "/memories/{memoryId}/memoryRecords/batchCreate",
            post(batch_create),
        )
        .route(
            "/memories/{memoryId}/memoryRecords/batchUpdate",
            post(batch_update),
        )
        .route(
            "/memories/{memoryId}/memoryRecords/batchDelete",
            post(batch_delete),
        )
        .route(
            "/memories/{memoryId}/memoryRecords/{memoryRecordId}",
            delete(delete_record),
        )
        .route(
            "/memories/{memoryId}/memoryRecord/{memoryRecordId}",
            get(get_record),
        )
        .route("/memories/{memoryId}/extractionJobs", post(list_jobs))
        .route("/memories/{memoryId}/extractionJobs/start", post(start_job))
        // Native.
        .route(
            "/berth/v1/memories/{memoryId}/actors/{actorId}/context",
            post(context),
        )
        // Memory writes are not in the control store's transactions: audited after success.
        .route_layer(axum::middleware::from_fn(crate::authz::audit_writes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_survive_validation_unchanged() {
        let mut body = json!({"payload": [{"blob": "a string"}, {"blob": [1, 2]},
                                          {"conversational": {"role": "USER", "content": {"text": "hi"}}}]});
        let original = body.clone();
        let docs = take_documents(&mut body);
        assert_eq!(body["payload"][0]["blob"], json!({}));
        crate::control_api::put_back(&mut body, docs);
        assert_eq!(body, original);
    }

    #[test]
    fn typed_requests_name_the_member_they_refuse() {
        use berth_api::ErrorKind;
        use berth_api::memory::{CreateEventRequest, ListEventsRequest};
        let ok: ListEventsRequest = typed(json!({"memoryId": "m", "actorId": "a",
                                               "sessionId": "s", "maxResults": 5}))
        .unwrap();
        assert_eq!(ok.max_results, Some(5));
        let e = typed::<CreateEventRequest>(json!({"memoryId": "m", "actorId": "a",
            "eventTimestamp": 1, "payload": [{"conversational": {"role": "USER",
                                                                 "content": {"text": 3}}}]}))
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert_eq!(
            e.field_list[0].name,
            "payload.1.conversational.content.text"
        );
        let e = typed::<ListEventsRequest>(json!({"memoryId": "m"})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Validation);
        assert!(e.message.contains("actorId"), "{}", e.message);
    }
}
