//! Berth's native JSON API under `/berth/v1`: what AgentCore lacks (session admin, agent logs).
//! Signed like the AgentCore APIs; the console and the CLI are its clients.

use crate::AppState;
use crate::error::WireError;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use berth_api::ApiError;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[derive(Deserialize)]
struct SessionsQuery {
    runtime: Option<String>,
}

/// `GET /berth/v1/sessions[?runtime=ID]`: live sessions.
async fn list_sessions(State(s): State<AppState>, Query(q): Query<SessionsQuery>) -> Response {
    axum::Json(json!({ "sessions": s.sessions.list(q.runtime.as_deref()) })).into_response()
}

/// `DELETE /berth/v1/runtimes/{id}/sessions/{session}`: stop a session now.
async fn stop_session(
    State(s): State<AppState>,
    Path((runtime, session)): Path<(String, String)>,
) -> Result<Response, WireError> {
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
) -> Result<Response, WireError> {
    let Some(session) = q.session else {
        let mut names: Vec<String> = Vec::new();
        for info in s.sessions.list(Some(&runtime)) {
            names.push(info.session_id);
        }
        if let Ok(mut rd) = tokio::fs::read_dir(s.sessions.logs_dir(&runtime)).await {
            while let Ok(Some(e)) = rd.next_entry().await {
                if let Some(n) = e.file_name().to_str().and_then(|n| n.strip_suffix(".log"))
                    && !names.iter().any(|x| x == n)
                {
                    names.push(n.to_owned());
                }
            }
        }
        return Ok(axum::Json(json!({ "sessions": names })).into_response());
    };
    let path = s.sessions.log_path(&runtime, &session).ok_or_else(|| {
        ApiError::not_found(format!(
            "no logs for session {session} of runtime {runtime}"
        ))
    })?;
    let file = tokio::fs::File::open(&path).await.map_err(|_| {
        ApiError::not_found(format!(
            "no logs for session {session} of runtime {runtime}"
        ))
    })?;
    let sessions = s.sessions.clone();
    let follow = q.follow;
    // Read what is there; when following, poll for growth until the session ends.
    let stream = futures::stream::unfold((file, 0u64, false), move |(mut file, mut pos, done)| {
        let sessions = sessions.clone();
        let (runtime, session) = (runtime.clone(), session.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let mut buf = vec![0u8; 64 * 1024];
                if file.seek(std::io::SeekFrom::Start(pos)).await.is_err() {
                    return None;
                }
                match file.read(&mut buf).await {
                    Ok(0) => {
                        if !follow || sessions.existing(&runtime, &session).is_none() {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(n) => {
                        pos += n as u64;
                        buf.truncate(n);
                        return Some((
                            Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                            (file, pos, false),
                        ));
                    }
                    Err(e) => return Some((Err(e), (file, pos, true))),
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

/// The native routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/berth/v1/sessions", get(list_sessions))
        .route(
            "/berth/v1/runtimes/{runtime}/sessions/{session}",
            delete(stop_session),
        )
        .route("/berth/v1/runtimes/{runtime}/logs", get(logs))
}
