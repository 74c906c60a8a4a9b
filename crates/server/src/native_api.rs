//! Berth's native JSON API under `/berth/v1`: what AgentCore lacks (session admin, agent logs).
//! Backend-neutral: sessions are listed with their backend and instance, logs are read through
//! the session backend, never by host path. With several nodes, a session is stopped and its log
//! read on the node that runs it, and the list gathers every node's.
//! Signed like the AgentCore APIs; the console and the CLI are its clients.

use crate::AppState;
use crate::error::WireError;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use berth_api::ApiError;
use berth_runtime::session::{valid_runtime_id, valid_session_id};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[derive(Deserialize)]
struct SessionsQuery {
    runtime: Option<String>,
}

/// `GET /berth/v1/sessions[?runtime=ID]`: live sessions, each with the node running it. With
/// several nodes, every other alive node is asked the caller's own request (it answers for
/// itself); nodes that could not be asked are named in `unreachableNodes`.
async fn list_sessions(
    State(s): State<AppState>,
    Query(q): Query<SessionsQuery>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, WireError> {
    let me = s.nodes.cluster.id();
    let mut sessions = Vec::new();
    for info in s.sessions.list(q.runtime.as_deref()) {
        let mut v = serde_json::to_value(info).map_err(ApiError::internal_because)?;
        v["nodeId"] = json!(me);
        sessions.push(v);
    }
    let mut unreachable = Vec::new();
    if !s.nodes.forwarded(&headers)? {
        for node in s.nodes.others().await? {
            match s.nodes.ask(&node, &uri, &headers).await {
                Ok(mut answer) => match answer["sessions"].take() {
                    Value::Array(theirs) => sessions.extend(theirs),
                    other => {
                        tracing::warn!(node = %node.id, answer = %other, "a node listed no sessions");
                        unreachable.push(node.id);
                    }
                },
                Err(e) => {
                    tracing::warn!(node = %node.id, error = %e, "cannot list a node's sessions");
                    unreachable.push(node.id);
                }
            }
        }
    }
    Ok(
        axum::Json(json!({ "sessions": sessions, "unreachableNodes": unreachable }))
            .into_response(),
    )
}

/// `DELETE /berth/v1/runtimes/{id}/sessions/{session}`: stop a session now (on the node that
/// runs it).
async fn stop_session(
    State(s): State<AppState>,
    Path((runtime, session)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, WireError> {
    check_ids(&runtime, Some(&session))?;
    if let Some(node) = owner_elsewhere(&s, &runtime, &session, &headers).await? {
        let to = (runtime.as_str(), session.as_str());
        let stopped = s
            .nodes
            .forward(&node, to, Method::DELETE, &uri, &headers, Bytes::new());
        return Ok(stopped.await?);
    }
    s.sessions.stop(&runtime, &session).await.map_err(|_| {
        ApiError::not_found(format!("no live session {session} of runtime {runtime}"))
    })?;
    Ok(
        axum::Json(json!({ "runtimeId": runtime, "sessionId": session, "status": "STOPPED" }))
            .into_response(),
    )
}

#[derive(Deserialize)]
struct LogsQuery {
    session: Option<String>,
    #[serde(default)]
    follow: bool,
}

/// `GET /berth/v1/runtimes/{id}/logs?session=S[&follow=true]`: an agent's stdout and stderr,
/// followed as it grows while the session lives. Without `session`, lists the sessions with logs.
async fn logs(
    State(s): State<AppState>,
    Path(runtime): Path<String>,
    Query(q): Query<LogsQuery>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, WireError> {
    check_ids(&runtime, q.session.as_deref())?;
    // A live session's log is read (and followed) where the session runs.
    if let Some(session) = &q.session
        && let Some(node) = owner_elsewhere(&s, &runtime, session, &headers).await?
    {
        let to = (runtime.as_str(), session.as_str());
        return Ok(s
            .nodes
            .forward(&node, to, Method::GET, &uri, &headers, Bytes::new())
            .await?);
    }
    let Some(session) = q.session else {
        let names = s
            .sessions
            .sessions_with_logs(&runtime)
            .await
            .map_err(invalid)?;
        return Ok(axum::Json(json!({ "sessions": names })).into_response());
    };
    let not_found = || {
        ApiError::not_found(format!(
            "no logs for session {session} of runtime {runtime}"
        ))
    };
    let reader = s
        .sessions
        .open_log(&runtime, &session)
        .await
        .map_err(invalid)?
        .ok_or_else(not_found)?;
    let sessions = s.sessions.clone();
    let follow = q.follow;
    // Read what is there; when following, poll for growth until the session ends.
    let stream = futures::stream::unfold((reader, false), move |(mut reader, done)| {
        let sessions = sessions.clone();
        let (runtime, session) = (runtime.clone(), session.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let mut buf = vec![0u8; 64 * 1024];
                match reader.read(&mut buf).await {
                    Ok(0) => {
                        if !follow || sessions.existing(&runtime, &session).is_none() {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        return Some((
                            Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                            (reader, false),
                        ));
                    }
                    Err(e) => return Some((Err(e), (reader, true))),
                }
            }
        }
    })
    .boxed();
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_default())
}

/// The other node that runs a session, unless this call was forwarded here (never sent on).
async fn owner_elsewhere(
    s: &AppState,
    runtime: &str,
    session: &str,
    headers: &HeaderMap,
) -> Result<Option<berth_store::nodes::NodeRow>, ApiError> {
    if s.nodes.forwarded(headers)? {
        return Ok(None);
    }
    s.nodes
        .cluster
        .owner(runtime, session)
        .await
        .map_err(|e| ApiError::internal_because(format_args!("node store: {e}")))
}

/// Ids arrive percent-decoded from the path and query: refuse any that cannot be an id before
/// they reach a file name (`..%2F` in a runtime id once read any `*.log` on the host).
fn check_ids(runtime: &str, session: Option<&str>) -> Result<(), ApiError> {
    if !valid_runtime_id(runtime) {
        return Err(ApiError::field(
            "runtimeId",
            format!("{runtime:?} is not a valid agent runtime id"),
        ));
    }
    if let Some(s) = session
        && !valid_session_id(s)
    {
        return Err(ApiError::field(
            "sessionId",
            format!("{s:?} is not a valid session id"),
        ));
    }
    Ok(())
}

fn invalid(e: berth_runtime::session::Error) -> ApiError {
    ApiError::field("runtimeId", e.to_string())
}

/// The native routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/berth/v1/sessions", get(list_sessions))
        .route(
            "/berth/v1/runtimes/{runtime}/sessions/{session}",
            delete(stop_session),
        )
        .route("/berth/v1/runtimes/{runtime}/logs", get(logs))
        .route("/berth/v1/images", get(list_images))
        .route("/berth/v1/images/prune", axum::routing::post(prune_images))
}

fn images(s: &AppState) -> Result<&std::sync::Arc<dyn berth_runtime::image::Images>, ApiError> {
    s.images
        .as_ref()
        .ok_or_else(|| ApiError::conflict("this server runs no container images"))
}

/// `GET /berth/v1/images`: the cached container images, each with the versions pinning it.
async fn list_images(State(s): State<AppState>) -> Result<Response, WireError> {
    let cached = images(&s)?
        .cached()
        .await
        .map_err(ApiError::internal_because)?;
    let versions = s.control.image_versions().await?;
    let listed: Vec<_> = cached
        .into_iter()
        .map(|image| {
            let used_by: Vec<_> = versions
                .iter()
                .filter(|v| v.digest == image.digest)
                .map(|v| json!({"runtimeId": v.runtime_id, "version": v.version}))
                .collect();
            let mut entry = serde_json::to_value(&image).unwrap_or_default();
            entry["usedBy"] = used_by.into();
            entry
        })
        .collect();
    Ok(axum::Json(json!({ "images": listed })).into_response())
}

/// `POST /berth/v1/images/prune`: forgets cached images no version pins, and their layers.
async fn prune_images(State(s): State<AppState>) -> Result<Response, WireError> {
    let keep: Vec<String> = s
        .control
        .image_versions()
        .await?
        .into_iter()
        .map(|v| v.digest)
        .collect();
    let pruned = images(&s)?
        .prune(&keep)
        .await
        .map_err(ApiError::internal_because)?;
    Ok(axum::Json(json!({ "pruned": pruned })).into_response())
}
