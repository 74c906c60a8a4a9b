//! Native API for roles and access keys, under `/berth/v1`: what `berth roles` and `berth keys`
//! call. Authorization of these routes (`berth:PutRole`, `berth:CreateAccessKey`...) is in
//! `crate::authz`; the domain is `berth_control::access`.

use crate::AppState;
use crate::error::WireError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use berth_api::ApiError;
use berth_control::access::NewAccessKey;
use serde::Serialize;
use serde_json::Value;

fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::cannot_parse(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::cannot_parse(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

fn ok<T: Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

/// `GET /berth/v1/roles`.
async fn list_roles(State(s): State<AppState>) -> Result<Response, WireError> {
    Ok(ok(s.control.list_roles().await?))
}

/// `GET /berth/v1/roles/{role}` (a name or an ARN).
async fn get_role(
    State(s): State<AppState>,
    Path(role): Path<String>,
) -> Result<Response, WireError> {
    Ok(ok(s.control.get_role(&role).await?))
}

/// `PUT /berth/v1/roles/{role}` `{"policies": [DOCUMENT, ...]}` (or `{"policy": DOCUMENT}`).
async fn put_role(
    State(s): State<AppState>,
    Path(role): Path<String>,
    body: Bytes,
) -> Result<Response, WireError> {
    let mut o = json_object(&body)?;
    let policies = match (o.remove("policies"), o.remove("policy")) {
        (Some(Value::Array(list)), None) => list,
        (None, Some(doc)) => vec![doc],
        _ => {
            return Err(ApiError::field(
                "policies",
                "give either \"policies\" (a list of policy documents) or \"policy\" (one)",
            )
            .into());
        }
    };
    Ok(ok(s.control.put_role(&role, policies).await?))
}

/// `DELETE /berth/v1/roles/{role}`.
async fn delete_role(
    State(s): State<AppState>,
    Path(role): Path<String>,
) -> Result<Response, WireError> {
    Ok(ok(s.control.delete_role(&role).await?))
}

/// `POST /berth/v1/keys` `{"policy": DOCUMENT, "name"?: "ci"}`: the only answer that ever
/// carries the secret.
async fn create_key(State(s): State<AppState>, body: Bytes) -> Result<Response, WireError> {
    let mut o = json_object(&body)?;
    let policy = o
        .remove("policy")
        .ok_or_else(|| ApiError::field("policy", "a policy document is required"))?;
    let creds = s.ring.mint_access_key();
    let name = match o.remove("name") {
        Some(Value::String(n)) if !n.is_empty() && n.len() <= 128 => n,
        None => creds.access_key_id.clone(),
        Some(_) => {
            return Err(
                ApiError::field("name", "the name must be a string of 1-128 characters").into(),
            );
        }
    };
    let key = s
        .control
        .create_access_key(&creds.access_key_id, &name, policy)
        .await?;
    let out = NewAccessKey {
        key,
        secret_access_key: creds.secret_access_key,
    };
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// `GET /berth/v1/keys`.
async fn list_keys(State(s): State<AppState>) -> Result<Response, WireError> {
    Ok(ok(s.control.list_access_keys().await?))
}

/// `DELETE /berth/v1/keys/{id}`.
async fn revoke_key(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, WireError> {
    Ok(ok(s.control.revoke_access_key(&id).await?))
}

/// The role and key routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/berth/v1/roles", get(list_roles))
        .route(
            "/berth/v1/roles/{role}",
            get(get_role).put(put_role).delete(delete_role),
        )
        .route("/berth/v1/keys", get(list_keys).post(create_key))
        .route("/berth/v1/keys/{id}", delete(revoke_key))
}
