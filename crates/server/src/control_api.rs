//! AgentCore control-plane routes (`bedrock-agentcore-control`).

use crate::error::WireError;
use crate::{AppState, model_route};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use berth_api::ApiError;
use berth_api::control::ops;
use berth_api::model::{self, Model};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Document-typed members lifted out of a body before validation: each with the JSON pointer it
/// came from.
pub(crate) type Documents = Vec<(String, Value)>;

/// [`input`] for a body with document-typed members (any JSON, which the embedded model describes
/// as empty structures): `take` lifts them out, leaving `{}` placeholders, the rest is validated,
/// and each is put back at its pointer.
pub(crate) fn input_with_documents(
    model: &Model,
    op: &str,
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Option<&str>,
    body: &[u8],
    relax: model::Relax,
    take: fn(&mut Value) -> Documents,
) -> Result<Value, ApiError> {
    let mut parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::cannot_parse(format!("the request body is not valid JSON: {e}"))
        })?
    };
    let docs = take(&mut parsed);
    let stripped = serde_json::to_vec(&parsed)
        .map_err(|e| ApiError::internal_because(format_args!("re-encoding the body: {e}")))?;
    let mut v = input(model, op, path, query, &stripped, relax)?;
    put_back(&mut v, docs);
    Ok(v)
}

/// Puts documents back where [`input_with_documents`]'s `take` found them.
pub(crate) fn put_back(v: &mut Value, docs: Documents) {
    for (at, doc) in docs {
        if let Some(slot) = v.pointer_mut(&at) {
            *slot = doc;
        }
    }
}

/// Turns path parameters, the query string and the body into one validated input object.
pub(crate) fn input(
    model: &Model,
    op: &str,
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Option<&str>,
    body: &[u8],
    relax: model::Relax,
) -> Result<Value, ApiError> {
    let params = params(path, query)?;
    let refs: Vec<(&str, String)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::cannot_parse(format!("the request body is not valid JSON: {e}"))
        })?
    };
    model.input_with(op, body, &refs, relax)
}

/// Like [`input`], for the GET binding of an operation whose model (botocore's) puts its members
/// in a POST body, as newer SDKs send it: every body member comes from the query string
/// (`Model::body_from_params`), then the input is validated like a body.
pub(crate) fn input_from_query(
    model: &Model,
    op: &str,
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Option<&str>,
    relax: model::Relax,
) -> Result<Value, ApiError> {
    let params = params(path, query)?;
    let refs: Vec<(&str, String)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let body = model.body_from_params(op, &refs)?;
    model.input_with(op, body, &refs, relax)
}

/// The path parameters and the decoded query string, in order.
fn params(
    path: Result<RawPathParams, RawPathParamsRejection>,
    query: Option<&str>,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut params: Vec<(String, String)> = Vec::new();
    if let Ok(p) = &path {
        for (k, v) in p.iter() {
            params.push((k.to_owned(), v.to_owned()));
        }
    } else {
        return Err(ApiError::field(
            "path",
            "the request path is not valid UTF-8 after decoding",
        ));
    }
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| percent_decode_str(s).decode_utf8().map(|c| c.into_owned());
        match (dec(k), dec(v)) {
            (Ok(k), Ok(v)) => params.push((k, v)),
            _ => {
                return Err(ApiError::field(
                    "query",
                    "the query string is not valid UTF-8 after decoding",
                ));
            }
        }
    }
    Ok(params)
}

/// Reads a validated input (see [`input`]) into the operation's typed request. The model
/// already checked every member, so a failure here means the type and the model disagree; it
/// is answered as a ValidationException (`CannotParse`) carrying serde's message, which names
/// the member.
pub(crate) fn typed<T: DeserializeOwned>(input: Value) -> Result<T, ApiError> {
    serde_json::from_value(input)
        .map_err(|e| ApiError::cannot_parse(format!("could not read the request: {e}")))
}

/// A successful response with the operation's modelled status code.
pub(crate) fn respond<T: Serialize>(model: &Model, op: &str, body: T) -> Response {
    let code = model.operation(op).map_or(200, |o| o.http.response_code);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    (status, axum::Json(body)).into_response()
}

macro_rules! control_op {
    ($name:ident, $op:literal, $method:ident) => {
        async fn $name(
            State(s): State<AppState>,
            path: Result<RawPathParams, RawPathParamsRejection>,
            RawQuery(q): RawQuery,
            body: Bytes,
        ) -> Result<Response, WireError> {
            let m = model::control();
            let req = typed(input(m, $op, path, q.as_deref(), &body, s.relax)?)?;
            let out = s.control.$method(req).await?;
            Ok(respond(m, $op, out))
        }
    };
}

/// Like `control_op!`, for operations that give a runtime a role: the caller must be allowed
/// `iam:PassRole` on it (see `crate::authz::pass_role`).
macro_rules! control_op_passing_role {
    ($name:ident, $op:literal, $req:ident, $method:ident) => {
        async fn $name(
            State(s): State<AppState>,
            axum::Extension(rid): axum::Extension<crate::RequestId>,
            verified: Option<axum::Extension<berth_auth::Verified>>,
            path: Result<RawPathParams, RawPathParamsRejection>,
            RawQuery(q): RawQuery,
            body: Bytes,
        ) -> Result<Response, WireError> {
            let m = model::control();
            let req: ops::$req = typed(input(m, $op, path, q.as_deref(), &body, s.relax)?)?;
            crate::authz::pass_role(&s, verified.as_deref(), &req.spec.role_arn, &rid.0).await?;
            let out = s.control.$method(req).await?;
            Ok(respond(m, $op, out))
        }
    };
}

/// `CreateAgentRuntime`, which also gives the runtime its workload identity (named after it,
/// as `workloadIdentityDetails` says), as AgentCore does.
async fn create_runtime(
    State(s): State<AppState>,
    axum::Extension(rid): axum::Extension<crate::RequestId>,
    verified: Option<axum::Extension<berth_auth::Verified>>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, WireError> {
    let m = model::control();
    let op = "CreateAgentRuntime";
    let req: ops::CreateAgentRuntime = typed(input(m, op, path, q.as_deref(), &body, s.relax)?)?;
    crate::authz::pass_role(&s, verified.as_deref(), &req.spec.role_arn, &rid.0).await?;
    let name = req.agent_runtime_name.clone();
    let out = s.control.create_runtime(req).await?;
    s.identity.ensure_runtime_identity(&name).await?;
    Ok(respond(m, op, out))
}
control_op!(list_runtimes, "ListAgentRuntimes", list_runtimes);
control_op!(get_runtime, "GetAgentRuntime", get_runtime);
control_op_passing_role!(
    update_runtime,
    "UpdateAgentRuntime",
    UpdateAgentRuntime,
    update_runtime
);

/// `DeleteAgentRuntime`. Deleting the whole runtime (not one version) also deletes the workload
/// identity it was given, as AgentCore does.
async fn delete_runtime(
    State(s): State<AppState>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, WireError> {
    let m = model::control();
    let op = "DeleteAgentRuntime";
    let req = typed(input(m, op, path, q.as_deref(), &body, s.relax)?)?;
    let out = s.control.delete_runtime(req).await?;
    // A runtime id is `<name>-<10 characters>`, and a name has no `-`.
    if out.agent_runtime_version.is_none()
        && let Some((name, _)) = out.agent_runtime_id.rsplit_once('-')
    {
        s.identity.delete_runtime_identity(name).await?;
    }
    Ok(respond(m, op, out))
}
control_op!(list_versions, "ListAgentRuntimeVersions", list_versions);
control_op!(
    create_endpoint,
    "CreateAgentRuntimeEndpoint",
    create_endpoint
);
control_op!(list_endpoints, "ListAgentRuntimeEndpoints", list_endpoints);
control_op!(get_endpoint, "GetAgentRuntimeEndpoint", get_endpoint);
control_op!(
    update_endpoint,
    "UpdateAgentRuntimeEndpoint",
    update_endpoint
);
control_op!(
    delete_endpoint,
    "DeleteAgentRuntimeEndpoint",
    delete_endpoint
);
control_op!(tag_resource, "TagResource", tag_resource);
control_op!(untag_resource, "UntagResource", untag_resource);
control_op!(list_tags, "ListTagsForResource", list_tags);

/// The control-plane routes. Path parameter names are shared with the data-plane routes at the
/// same positions (`{agentRuntimeId}` also carries an ARN there) because the router requires it.
pub fn routes() -> Router<AppState> {
    let r = Router::new();
    let r = model_route(r, "/runtimes/", put(create_runtime).post(list_runtimes));
    let r = model_route(
        r,
        "/runtimes/{agentRuntimeId}/",
        get(get_runtime).put(update_runtime).delete(delete_runtime),
    );
    let r = model_route(
        r,
        "/runtimes/{agentRuntimeId}/versions/",
        post(list_versions),
    );
    let r = model_route(
        r,
        "/runtimes/{agentRuntimeId}/runtime-endpoints/",
        put(create_endpoint).post(list_endpoints),
    );
    let r = model_route(
        r,
        "/runtimes/{agentRuntimeId}/runtime-endpoints/{endpointName}/",
        get(get_endpoint)
            .put(update_endpoint)
            .delete(delete_endpoint),
    );
    r.route(
        "/tags/{resourceArn}",
        post(tag_resource).delete(untag_resource).get(list_tags),
    )
}
