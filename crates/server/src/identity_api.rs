//! AgentCore Identity routes: workload identities, credential providers and the token vault of
//! `bedrock-agentcore-control`, and the workload access token and credential operations of
//! `bedrock-agentcore`. All are `POST /identities/...`; each handler validates against the
//! model, reads the typed request (`berth_api::identity`), calls `berth_identity::Identity` and
//! answers its typed response.

use crate::AppState;
use crate::control_api::input;
use crate::error::WireError;
use crate::memory_api::{respond_typed, typed};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{Query, RawPathParams, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::model;
use std::collections::BTreeMap;

/// An Identity route: validate against the model, read the typed request, call `Identity`,
/// answer the typed response with the model's status code.
macro_rules! identity_op {
    ($name:ident, $model:ident, $op:literal, $method:ident) => {
        async fn $name(
            State(s): State<AppState>,
            path: Result<RawPathParams, RawPathParamsRejection>,
            RawQuery(q): RawQuery,
            body: Bytes,
        ) -> Result<Response, WireError> {
            let m = model::$model();
            let input = input(m, $op, path, q.as_deref(), &body, s.relax)?;
            let out = s.identity.$method(typed(input)?).await?;
            Ok(respond_typed(m, $op, &out)?)
        }
    };
}

identity_op!(
    create_wi,
    control,
    "CreateWorkloadIdentity",
    create_workload_identity
);
identity_op!(
    get_wi,
    control,
    "GetWorkloadIdentity",
    get_workload_identity
);
identity_op!(
    update_wi,
    control,
    "UpdateWorkloadIdentity",
    update_workload_identity
);
identity_op!(
    list_wi,
    control,
    "ListWorkloadIdentities",
    list_workload_identities
);
identity_op!(
    delete_wi,
    control,
    "DeleteWorkloadIdentity",
    delete_workload_identity
);
identity_op!(
    create_ak,
    control,
    "CreateApiKeyCredentialProvider",
    create_api_key_provider
);
identity_op!(
    get_ak,
    control,
    "GetApiKeyCredentialProvider",
    get_api_key_provider
);
identity_op!(
    update_ak,
    control,
    "UpdateApiKeyCredentialProvider",
    update_api_key_provider
);
identity_op!(
    list_ak,
    control,
    "ListApiKeyCredentialProviders",
    list_api_key_providers
);
identity_op!(
    delete_ak,
    control,
    "DeleteApiKeyCredentialProvider",
    delete_api_key_provider
);
identity_op!(
    create_o2,
    control,
    "CreateOauth2CredentialProvider",
    create_oauth2_provider
);
identity_op!(
    get_o2,
    control,
    "GetOauth2CredentialProvider",
    get_oauth2_provider
);
identity_op!(
    update_o2,
    control,
    "UpdateOauth2CredentialProvider",
    update_oauth2_provider
);
identity_op!(
    list_o2,
    control,
    "ListOauth2CredentialProviders",
    list_oauth2_providers
);
identity_op!(
    delete_o2,
    control,
    "DeleteOauth2CredentialProvider",
    delete_oauth2_provider
);
identity_op!(get_vault, control, "GetTokenVault", get_token_vault);
identity_op!(
    wat,
    data,
    "GetWorkloadAccessToken",
    get_workload_access_token
);
identity_op!(
    wat_user,
    data,
    "GetWorkloadAccessTokenForUserId",
    get_workload_access_token_for_user_id
);
identity_op!(
    wat_jwt,
    data,
    "GetWorkloadAccessTokenForJWT",
    get_workload_access_token_for_jwt
);
identity_op!(api_key, data, "GetResourceApiKey", get_resource_api_key);
identity_op!(
    oauth2_token,
    data,
    "GetResourceOauth2Token",
    get_resource_oauth2_token
);

identity_op!(
    complete_auth,
    data,
    "CompleteResourceTokenAuth",
    complete_resource_token_auth
);

/// The OAuth2 provider's redirect back to Berth (`callbackUrl`): the user's browser, unsigned.
/// The session id in `state` is the credential (random, single use, ten minutes).
async fn oauth2_callback(
    State(s): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, WireError> {
    let state = q.get("state").map(String::as_str).unwrap_or_default();
    let to = s
        .identity
        .oauth2_callback(
            q.get("code").map(String::as_str),
            state,
            q.get("error").map(String::as_str),
        )
        .await?;
    Ok(match to.0 {
        Some(url) => axum::response::Redirect::to(&url).into_response(),
        None => "Authorization received: return to the application.\n".into_response(),
    })
}

/// Routes outside SigV4: the OAuth2 callback a browser follows.
pub fn unsigned_routes() -> Router<AppState> {
    Router::new().route(
        &format!("{}/{{callbackId}}", berth_identity::CALLBACK_PATH),
        get(oauth2_callback),
    )
}

/// The Identity routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        // Control plane.
        .route("/identities/CreateWorkloadIdentity", post(create_wi))
        .route("/identities/GetWorkloadIdentity", post(get_wi))
        .route("/identities/UpdateWorkloadIdentity", post(update_wi))
        .route("/identities/ListWorkloadIdentities", post(list_wi))
        .route("/identities/DeleteWorkloadIdentity", post(delete_wi))
        .route(
            "/identities/CreateApiKeyCredentialProvider",
            post(create_ak),
        )
        .route("/identities/GetApiKeyCredentialProvider", post(get_ak))
        .route(
            "/identities/UpdateApiKeyCredentialProvider",
            post(update_ak),
        )
        .route("/identities/ListApiKeyCredentialProviders", post(list_ak))
        .route(
            "/identities/DeleteApiKeyCredentialProvider",
            post(delete_ak),
        )
        .route(
            "/identities/CreateOauth2CredentialProvider",
            post(create_o2),
        )
        .route("/identities/GetOauth2CredentialProvider", post(get_o2))
        .route(
            "/identities/UpdateOauth2CredentialProvider",
            post(update_o2),
        )
        .route("/identities/ListOauth2CredentialProviders", post(list_o2))
        .route(
            "/identities/DeleteOauth2CredentialProvider",
            post(delete_o2),
        )
        .route("/identities/get-token-vault", post(get_vault))
        // Data plane.
        .route("/identities/GetWorkloadAccessToken", post(wat))
        .route(
            "/identities/GetWorkloadAccessTokenForUserId",
            post(wat_user),
        )
        .route("/identities/GetWorkloadAccessTokenForJWT", post(wat_jwt))
        .route("/identities/api-key", post(api_key))
        .route("/identities/oauth2/token", post(oauth2_token))
        .route("/identities/CompleteResourceTokenAuth", post(complete_auth))
        // Identity writes are not in the control store's transactions: audited after success.
        .route_layer(axum::middleware::from_fn(crate::authz::audit_writes))
}
