//! `PutResourcePolicy`, `GetResourcePolicy`, `DeleteResourcePolicy` (control plane,
//! `/resourcepolicy/{resourceArn}`) on runtimes, runtime endpoints and memories. The resource
//! must exist; its ARN is made canonical (the same string authorization checks actions on), the
//! document is validated and stored by `berth_control::resource_policy`, and enforced by
//! `crate::authz` for every principal but root.

use crate::AppState;
use crate::control_api::{input, respond};
use crate::error::WireError;
use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::response::Response;
use berth_api::ApiError;
use berth_api::model;
use berth_types::{ArnError, ResourceArn};
use serde_json::Value;

/// The canonical ARN of an existing runtime, endpoint or memory named by `raw`.
async fn resource(s: &AppState, raw: &str) -> Result<String, ApiError> {
    let p = s.control.partition();
    let parsed = ResourceArn::parse(raw, p).map_err(|e| match e {
        ArnError::ForeignPartition => ApiError::not_found(format!("no resource {raw}")),
        ArnError::Malformed | ArnError::UnsupportedResource => ApiError::field(
            "resourceArn",
            format!("{raw} is not the ARN of an agent runtime, runtime endpoint or memory"),
        ),
    })?;
    let store = s.control.store();
    let gone = || ApiError::not_found(format!("no resource {raw}"));
    let internal = |_| ApiError::internal();
    match parsed {
        ResourceArn::Runtime { runtime_id } => {
            match store.runtime(&runtime_id).await.map_err(internal)? {
                Some(r) if !r.deleting => Ok(p.runtime_arn(&runtime_id)),
                _ => Err(gone()),
            }
        }
        ResourceArn::Endpoint { runtime_id, name } => {
            let live = store
                .runtime(&runtime_id)
                .await
                .map_err(internal)?
                .is_some_and(|r| !r.deleting);
            if live
                && store
                    .endpoint(&runtime_id, &name)
                    .await
                    .map_err(internal)?
                    .is_some()
            {
                Ok(p.endpoint_arn(&runtime_id, &name))
            } else {
                Err(gone())
            }
        }
        ResourceArn::Memory { memory_id } => {
            let got = s
                .memory
                .get_memory(berth_api::memory::GetMemoryRequest {
                    memory_id: memory_id.clone(),
                })
                .await?;
            if got.memory.status == "DELETING" {
                return Err(gone());
            }
            Ok(crate::authz::memory_arn(p, &memory_id))
        }
    }
}

fn arn_of(v: &Value) -> &str {
    v.get("resourceArn")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

async fn put_resource_policy(
    State(s): State<AppState>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, WireError> {
    let m = model::control();
    let v = input(m, "PutResourcePolicy", path, q.as_deref(), &body, s.relax)?;
    let arn = resource(&s, arn_of(&v)).await?;
    let policy = v.get("policy").and_then(Value::as_str).unwrap_or_default();
    let out = s.control.put_resource_policy(&arn, policy).await?;
    Ok(respond(m, "PutResourcePolicy", out))
}

async fn get_resource_policy(
    State(s): State<AppState>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
) -> Result<Response, WireError> {
    let m = model::control();
    let v = input(m, "GetResourcePolicy", path, q.as_deref(), b"", s.relax)?;
    let arn = resource(&s, arn_of(&v)).await?;
    let out = s.control.get_resource_policy(&arn).await?;
    Ok(respond(m, "GetResourcePolicy", out))
}

async fn delete_resource_policy(
    State(s): State<AppState>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
) -> Result<Response, WireError> {
    let m = model::control();
    let v = input(m, "DeleteResourcePolicy", path, q.as_deref(), b"", s.relax)?;
    let arn = resource(&s, arn_of(&v)).await?;
    let out = s.control.delete_resource_policy(&arn).await?;
    Ok(respond(m, "DeleteResourcePolicy", out))
}

/// The routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route(
        "/resourcepolicy/{resourceArn}",
        axum::routing::put(put_resource_policy)
            .get(get_resource_policy)
            .delete(delete_resource_policy),
    )
}
