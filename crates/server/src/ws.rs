//! `InvokeAgentRuntime` over WebSocket: `GET /runtimes/{arn}/ws`, bridged to the agent's `/ws`.
//!
//! The upgrade request is authenticated like every request (SigV4 in headers, as
//! `AgentCoreRuntimeClient.generate_ws_connection` signs it, or presigned in the query, as
//! `generate_presigned_url` does) before any handler runs, so a bad signature is refused with
//! the usual error and never upgraded. The handler opens (or finds) the session through the
//! invoker like `InvokeAgentRuntime` (`invoker::Action::WebSocket`), and only once the agent has
//! answered its own upgrade with `101` does it upgrade the client. Then [`bridge`] relays text and
//! binary messages both ways and passes a close frame (code and reason) from either side to the
//! other. Each side answers its own pings. The session's end closes both sockets (1001). When
//! another node runs the session, the upgrade request goes there as it came (with this node's
//! forwarding proof) and the client's socket is bridged to that node's the same way.
//!
//! Limits: a message or frame larger than the edge's small-body limit (`--small-body-mib`) ends
//! the connection (tungstenite refuses it while reading, before buffering it whole). The socket
//! keeps counting against the listener's `--max-connections` (busy, so never shed) until it
//! closes.

use crate::AppState;
use crate::data_api::{SESSION_HEADER, invoke_error, parse_ws_call};
use crate::error::{RequestId, WireError};
use axum::Extension;
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::ws::{self, CloseFrame, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, RawPathParams, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use berth_api::{ApiError, ErrorKind};
use berth_auth::Verified;
use berth_runtime::invoker::{Action, Error as InvokeError};
use berth_runtime::session::Lease;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self as tung, protocol::frame::coding::CloseCode};

/// The message and frame limit of a router served outside the edge (unit tests).
const DEFAULT_MAX: usize = 8 * 1024 * 1024;

/// `GET /runtimes/{agentRuntimeArn}/ws`.
#[allow(clippy::too_many_arguments)]
pub async fn websocket(
    State(s): State<AppState>,
    Extension(rid): Extension<RequestId>,
    ctx: Option<Extension<crate::edge::Context>>,
    conn: Option<Extension<crate::edge::ConnSlot>>,
    verified: Option<Extension<Verified>>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    RawQuery(q): RawQuery,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, WireError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            ErrorKind::Validation,
            format!("/ws takes a WebSocket upgrade request: {e}"),
        )
    })?;
    let (call, sid) = parse_ws_call(&s, path, q.as_deref(), &headers)?;
    crate::data_api::check_callback_url(&headers)?;
    let actor = verified
        .as_ref()
        .map(|v| v.principal.access_key_id.as_str());
    let forwarded = s.nodes.forwarded(&headers)?;
    let inv = call.invocation(&sid, &headers, actor, &rid, Action::WebSocket, forwarded);
    let (parts, lease) = match s.invoker.invoke(inv).await {
        Ok(answer) => {
            if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
                let status = answer.status().as_u16();
                return Err(ApiError::new(
                    ErrorKind::RuntimeClient,
                    format!("Received error ({status}) from runtime: the agent did not accept the WebSocket on /ws"),
                )
                .into());
            }
            let (mut parts, _) = answer.into_parts();
            let lease = parts.extensions.remove::<Lease>();
            (parts, lease)
        }
        // Another node runs the session: the socket is bridged to that node's, which bridges
        // it to the agent (the owner holds the session's lease).
        Err(InvokeError::Elsewhere(node)) if !forwarded => {
            let session = (call.runtime_id.as_str(), sid.as_str());
            let answer = s
                .nodes
                .forward_upgrade(&node, session, &uri, &headers)
                .await?;
            if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
                // The owner's refusal, as it answered.
                let (parts, body) = answer.into_parts();
                return Ok(Response::from_parts(parts, axum::body::Body::new(body)));
            }
            (answer.into_parts().0, None)
        }
        Err(e) => return Err(invoke_error(e).into()),
    };
    let agent = hyper::upgrade::on(Response::from_parts(parts, ()));
    let max = ctx.map_or(DEFAULT_MAX, |c| c.limits.small);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    // The upgraded socket keeps its connection counted against --max-connections.
    let held = conn.map(|c| c.hold());
    let mut out = upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |client| async move {
            let io = match agent.await {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!(error = %e, "the agent's websocket upgrade failed");
                    return;
                }
            };
            let agent =
                WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Client, Some(config))
                    .await;
            bridge(client, agent, lease).await;
            drop(held);
        });
    if let Ok(v) = HeaderValue::from_str(&sid) {
        out.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(out)
}

/// Relays messages both ways until either side closes, fails, or the session ends.
async fn bridge<S>(mut client: WebSocket, mut agent: WebSocketStream<S>, lease: Option<Lease>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let ended = async {
        match &lease {
            Some(l) => l.ended().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(ended);
    loop {
        tokio::select! {
            m = client.recv() => match m {
                Some(Ok(msg)) => {
                    let closing = matches!(msg, ws::Message::Close(_));
                    if let Some(m) = to_agent(msg)
                        && agent.send(m).await.is_err()
                    {
                        let _ = client.send(ws::Message::Close(None)).await;
                        break;
                    }
                    if closing {
                        // Wait for the agent's answer to the close (or its end), then stop.
                        while let Some(Ok(m)) = agent.next().await {
                            if let Some(m @ ws::Message::Close(_)) = to_client(m) {
                                let _ = client.send(m).await;
                                break;
                            }
                        }
                        break;
                    }
                }
                Some(Err(_)) | None => {
                    let _ = agent.close(None).await;
                    break;
                }
            },
            m = agent.next() => match m {
                Some(Ok(msg)) => {
                    let closing = matches!(msg, tung::Message::Close(_));
                    if let Some(m) = to_client(msg)
                        && client.send(m).await.is_err()
                    {
                        break;
                    }
                    if closing {
                        // tungstenite has queued its reply to the agent; flush it and stop
                        // once the client has answered too.
                        let _ = agent.flush().await;
                        while let Some(Ok(m)) = client.recv().await {
                            if matches!(m, ws::Message::Close(_)) {
                                break;
                            }
                        }
                        break;
                    }
                }
                Some(Err(_)) | None => {
                    let _ = client
                        .send(ws::Message::Close(Some(CloseFrame {
                            code: 1011,
                            reason: "the agent's connection ended".into(),
                        })))
                        .await;
                    break;
                }
            },
            _ = &mut ended => {
                let reason = "the session ended";
                let _ = client
                    .send(ws::Message::Close(Some(CloseFrame { code: 1001, reason: reason.into() })))
                    .await;
                let _ = agent
                    .close(Some(tung::protocol::CloseFrame {
                        code: CloseCode::Away,
                        reason: reason.into(),
                    }))
                    .await;
                break;
            }
        }
    }
}

/// A client message for the agent; pings and pongs stay on their hop.
fn to_agent(m: ws::Message) -> Option<tung::Message> {
    Some(match m {
        ws::Message::Text(t) => tung::Message::Text(t.as_str().into()),
        ws::Message::Binary(b) => tung::Message::Binary(b),
        ws::Message::Close(c) => tung::Message::Close(c.map(|c| tung::protocol::CloseFrame {
            code: CloseCode::from(c.code),
            reason: c.reason.as_str().into(),
        })),
        ws::Message::Ping(_) | ws::Message::Pong(_) => return None,
    })
}

/// An agent message for the client; pings, pongs and raw frames stay on their hop.
fn to_client(m: tung::Message) -> Option<ws::Message> {
    Some(match m {
        tung::Message::Text(t) => ws::Message::Text(t.as_str().into()),
        tung::Message::Binary(b) => ws::Message::Binary(b),
        tung::Message::Close(c) => ws::Message::Close(c.map(|c| CloseFrame {
            code: u16::from(c.code),
            reason: c.reason.as_str().into(),
        })),
        tung::Message::Ping(_) | tung::Message::Pong(_) | tung::Message::Frame(_) => return None,
    })
}
