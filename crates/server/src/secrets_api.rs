//! Native API for secrets under `/berth/v1/secrets`: what `berth secrets` calls. Answers carry
//! a secret's metadata, never its value: values go in (PUT) and come out only inside the server
//! (a sandbox's start, the model gateway). Authorization (`berth:PutSecret`, `berth:GetSecret`,
//! `berth:ListSecrets`, `berth:DeleteSecret` on `...:secret/NAME`, refused to runtimes'
//! credentials whatever their role) and the audit of puts and deletes (method and path, no body)
//! are in `crate::authz`; the domain is `berth_identity::secrets`.

use crate::AppState;
use crate::error::WireError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_api::{ApiError, ErrorKind};
use berth_identity::secrets::{Error, SecretMeta};
use serde::{Deserialize, Serialize};

/// A secret as the native API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecretView {
    name: String,
    version: u64,
    /// ISO 8601.
    created_at: String,
    /// ISO 8601.
    updated_at: String,
}

impl From<SecretMeta> for SecretView {
    fn from(m: SecretMeta) -> Self {
        Self {
            name: m.name,
            version: m.version,
            created_at: berth_types::iso8601(m.created_at),
            updated_at: berth_types::iso8601(m.updated_at),
        }
    }
}

#[derive(Serialize)]
struct SecretList {
    secrets: Vec<SecretView>,
}

/// `PUT` body: the value, and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSecret {
    value: String,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
}

fn wire(e: Error) -> WireError {
    WireError(match e {
        Error::InvalidName { .. } => ApiError::field("name", e.to_string()),
        Error::InvalidPrefix { .. } => ApiError::field("prefix", e.to_string()),
        Error::InvalidValue { .. } => ApiError::field("value", e.to_string()),
        Error::Unsealable { .. } | Error::Store(_) => ApiError::internal_because(e),
    })
}

fn not_found(name: &str) -> WireError {
    WireError(ApiError::new(
        ErrorKind::ResourceNotFound,
        format!("secret {name} does not exist"),
    ))
}

/// `PUT /berth/v1/secrets/{name}` `{"value": "..."}`: create or replace; answers the metadata.
async fn put_secret(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, WireError> {
    // serde's message may quote the input: say what is wrong without echoing the body.
    let put: PutSecret = serde_json::from_slice(&body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => {
                "the body must be {\"value\": \"...\"} (a string value, no other members)"
            }
            _ => "the request body is not valid JSON",
        };
        WireError(ApiError::cannot_parse(what))
    })?;
    let meta = s.secrets.put(&name, &put.value).await.map_err(wire)?;
    Ok(axum::Json(SecretView::from(meta)).into_response())
}

/// `GET /berth/v1/secrets?prefix=P`: metadata of the secrets under a prefix, by name.
async fn list_secrets(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WireError> {
    let secrets = s.secrets.list(&q.prefix).await.map_err(wire)?;
    Ok(axum::Json(SecretList {
        secrets: secrets.into_iter().map(SecretView::from).collect(),
    })
    .into_response())
}

/// `GET /berth/v1/secrets/{name}`: one secret's metadata (never its value).
async fn get_secret(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, WireError> {
    match s.secrets.meta(&name).await.map_err(wire)? {
        Some(m) => Ok(axum::Json(SecretView::from(m)).into_response()),
        None => Err(not_found(&name)),
    }
}

/// `DELETE /berth/v1/secrets/{name}`: 204, or 404 when there is no such secret.
async fn delete_secret(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, WireError> {
    if s.secrets.delete(&name).await.map_err(wire)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&name))
    }
}

/// The secret routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/berth/v1/secrets", get(list_secrets))
        .route(
            "/berth/v1/secrets/{name}",
            get(get_secret).put(put_secret).delete(delete_secret),
        )
        // Secrets are not in the control store's transactions: puts and deletes are audited
        // after success (method and path: the value is never in an audit entry).
        .route_layer(axum::middleware::from_fn(crate::authz::audit_writes))
}
