//! The WebSocket side. The upgrade handler gives the connection an id and invokes
//! `$connect` before it answers the handshake: only a 2xx `statusCode` upgrades, any other
//! status refuses the handshake with that status. Then one task per connection loops over:
//!
//! - a text frame from the client: route selection, then one invocation, started at once
//!   in a task of its own: as on AWS, one connection's messages are invoked concurrently
//!   and may reach the function out of order;
//! - a binary frame: API Gateway does not support them; it closes the connection with
//!   1003 without invoking the function;
//! - a frame posted to `@connections`: written to the socket;
//! - the idle timeout, the connection's maximum duration, gateway shutdown.
//!
//! On the way out the connection leaves the registry first (posts then answer 410), then the
//! close frame is sent, then `$disconnect` is invoked once with the close status (without
//! waiting for the connection's message invocations still running), unless
//! `--lose-disconnects` loses it.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{
        ConnectInfo, Query, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::SinkExt as _;
use rand::RngExt as _;
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::Instrument as _;

use crate::{
    app::AppState,
    clock::now_ms,
    connections::{Connection, TOO_SLOW},
    event,
    peer::Peer,
    runtime::InvokeError,
};

/// How long a write to a client may take before the connection counts as broken.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /ws` (and `/<stage>`): `$connect`, then the upgrade.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let conn = Arc::new(Connection::new(
        meshcall_web::new_connection_id().to_string(),
        peer.addr.ip().to_string(),
        text(header::USER_AGENT),
        text(header::HOST).unwrap_or_else(|| state.callback_addr.to_string()),
    ));
    let span = tracing::info_span!("conn", conn_id = %conn.id);
    let mut handshake = peer.headers(&headers);
    forwarded(&mut handshake, &peer, state.callback_addr.port());
    connect(state, conn, handshake, query, upgrade)
        .instrument(span)
        .await
}

/// Adds the `X-Forwarded-*` headers API Gateway adds, unless the client sent them.
fn forwarded(headers: &mut Vec<(String, String)>, peer: &Peer, port: u16) {
    for (name, value) in [
        ("X-Forwarded-For", peer.addr.ip().to_string()),
        ("X-Forwarded-Port", port.to_string()),
        ("X-Forwarded-Proto", "http".to_owned()),
    ] {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            headers.push((name.to_owned(), value));
        }
    }
}

async fn connect(
    state: AppState,
    conn: Arc<Connection>,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let event = event::connect(&conn, &state.settings.stage, &headers, &query, now_ms());
    let invoker = state.invoker.clone();
    let mut pending = PendingConnect {
        invocation: Some(tokio::spawn(async move { invoker.invoke(&event).await })),
        state: state.clone(),
        conn: conn.clone(),
    };
    let result = match pending.invocation.as_mut() {
        Some(invocation) => invocation.await.unwrap_or(Err(InvokeError::InstanceExited)),
        None => Err(InvokeError::InstanceExited),
    };
    pending.invocation = None;
    let body = match result {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(error = %e, "$connect failed");
            return (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"message": "Internal server error"}"#,
            )
                .into_response();
        }
    };
    let response: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = status_code(&response);
    if !status.is_success() {
        tracing::info!(status = status.as_u16(), "$connect refused the connection");
        let text = response
            .get("body")
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty())
            .map_or_else(
                || status.canonical_reason().unwrap_or("refused").to_owned(),
                str::to_owned,
            );
        return (status, text).into_response();
    }
    // API Gateway answers with the subprotocol the function chose, if any.
    let protocol = response
        .get("headers")
        .and_then(Value::as_object)
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        })
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned);
    let frames = state.connections.open(conn.clone());
    tracing::info!("connected");
    let s = &state.settings;
    let mut upgrade = upgrade
        .max_message_size(s.api_message_limit)
        .max_frame_size(s.api_frame_limit.min(s.api_message_limit));
    if let Some(protocol) = protocol {
        upgrade = upgrade.protocols([protocol]);
    }
    let failed = (state.clone(), conn.clone());
    let span = tracing::Span::current();
    upgrade
        .on_failed_upgrade(move |e| {
            let (state, conn) = failed;
            tracing::info!(conn_id = %conn.id, error = %e, "the upgrade failed");
            let tracker = state.tracker.clone();
            tracker.spawn(async move {
                let _closing = state.connections.close(&conn.id);
                disconnect(&state, &conn, ABNORMAL, "upgrade failed").await;
            });
        })
        .on_upgrade(move |ws| {
            let tracker = state.tracker.clone();
            tracker.track_future(serve(state, ws, conn, frames).instrument(span))
        })
}

/// A `$connect` invocation in progress. If the client gives up on the handshake meanwhile
/// (axum drops the handler), a connection the function accepted gets its `$disconnect`
/// (1006) all the same, so the function's records do not outlive it.
struct PendingConnect {
    invocation: Option<JoinHandle<Result<Bytes, InvokeError>>>,
    state: AppState,
    conn: Arc<Connection>,
}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        let Some(invocation) = self.invocation.take() else {
            return;
        };
        let (state, conn) = (self.state.clone(), self.conn.clone());
        let tracker = state.tracker.clone();
        tracker.spawn(
            async move {
                let Ok(Ok(body)) = invocation.await else {
                    return;
                };
                let response: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if status_code(&response).is_success() {
                    tracing::info!("the client left during $connect");
                    disconnect(&state, &conn, ABNORMAL, "Connection closed abnormally").await;
                }
            }
            .in_current_span(),
        );
    }
}

/// The status of a `$connect` response: its `statusCode`, or 200 when it has none.
fn status_code(response: &Value) -> StatusCode {
    let code = match response.get("statusCode") {
        None | Some(Value::Null) => return StatusCode::OK,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    code.and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY)
}

/// Close status for a connection that ended without a close frame.
const ABNORMAL: u16 = 1006;

/// Why a connection ended.
enum End {
    /// The client sent a close frame (its status, or 1005 without one); tungstenite has
    /// queued the reply.
    Closed(u16, String),
    /// The socket broke or ended without a close frame.
    Dropped,
    /// The gateway closes with this status and reason.
    Close(u16, &'static str),
}

/// Serves one upgraded connection until it closes.
async fn serve(
    state: AppState,
    mut socket: WebSocket,
    conn: Arc<Connection>,
    mut frames: mpsc::Receiver<Message>,
) {
    let settings = state.settings.clone();
    let idle = tokio::time::sleep(settings.connection.idle_timeout);
    tokio::pin!(idle);
    // Polled only when limited.
    let limited = !settings.connection.max_connection_age.is_zero();
    let lifetime = tokio::time::sleep(settings.connection.max_connection_age);
    tokio::pin!(lifetime);
    let stats = state.invoker.stats();

    let end = loop {
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => break End::Close(close_code::AWAY, "Going away"),
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if !send_within(&mut socket, frame, SEND_TIMEOUT, &conn.id).await {
                        break End::Dropped;
                    }
                }
                None => break match conn.requested_close() {
                    Some(TOO_SLOW) => End::Close(TOO_SLOW, "Too slow"),
                    _ => End::Close(close_code::NORMAL, ""),
                },
            },
            incoming = socket.recv() => {
                let Some(incoming) = incoming else { break End::Dropped };
                let message = match incoming {
                    Ok(message) => message,
                    Err(e) => break read_failed(&e),
                };
                idle.as_mut().reset(tokio::time::Instant::now() + settings.connection.idle_timeout);
                conn.touch();
                match message {
                    Message::Text(text) => {
                        stats.received(text.len());
                        let route = event::select_route(text.as_str());
                        invoke(&state, &conn, route, text.as_str());
                    }
                    Message::Binary(_) => {
                        stats.received_binary();
                        break End::Close(UNSUPPORTED, "Binary frames are not supported");
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                    Message::Close(frame) => break match frame {
                        Some(f) => End::Closed(f.code, f.reason.as_str().to_owned()),
                        None => End::Closed(close_code::STATUS, "Client-side close frame status not set".to_owned()),
                    },
                }
            }
            () = &mut idle => break End::Close(close_code::AWAY, "Going away"),
            () = &mut lifetime, if limited => break End::Close(close_code::AWAY, "Going away"),
        }
    };

    // Unreachable through @connections from here on.
    let _closing = state.connections.close(&conn.id);
    let (code, reason) = match end {
        End::Closed(code, reason) => {
            tracing::info!(code, "closed by the client");
            let _ = tokio::time::timeout(SEND_TIMEOUT, socket.flush()).await;
            (code, reason)
        }
        End::Dropped => {
            tracing::info!("dropped");
            (ABNORMAL, "Connection closed abnormally".to_owned())
        }
        End::Close(code, reason) => {
            tracing::info!(code, reason, "closing");
            let frame = Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            }));
            let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(frame)).await;
            (code, reason.to_owned())
        }
    };
    drop(socket);
    disconnect(&state, &conn, code, &reason).await;
}

/// Close status for a binary frame (API Gateway does not support them).
const UNSUPPORTED: u16 = 1003;

/// Starts one message invocation, in a task of its own (counted in `/_gateway/idle` from
/// now, and awaited by shutdown).
fn invoke(state: &AppState, conn: &Connection, route: &'static str, body: &str) {
    let event = event::message(conn, &state.settings.stage, route, body, now_ms());
    let invocation = state.invoker.start(&event);
    let bytes = body.len();
    state.tracker.spawn(
        async move {
            match invocation.await {
                Ok(_) => tracing::debug!(route, bytes, "message"),
                Err(e) => tracing::warn!(route, error = %e, "message invocation failed"),
            }
        }
        .in_current_span(),
    );
}

/// Invokes `$disconnect`, unless `--lose-disconnects` loses it.
async fn disconnect(state: &AppState, conn: &Connection, code: u16, reason: &str) {
    let lose = state.settings.lose_disconnects;
    if lose > 0.0 && rand::rng().random::<f64>() < lose {
        state.invoker.stats().disconnect_lost();
        tracing::info!(code, "$disconnect lost (--lose-disconnects)");
        return;
    }
    let event = event::disconnect(conn, &state.settings.stage, code, reason, now_ms());
    match state.invoker.invoke(&event).await {
        Ok(_) => tracing::info!(code, "disconnected"),
        Err(e) => tracing::warn!(code, error = %e, "$disconnect failed"),
    }
}

/// A read error ends the connection: a message over the limit closes with 1009 (as API
/// Gateway does, with no error frame), a text frame that is not UTF-8 with 1007, anything
/// else is a broken socket.
fn read_failed(e: &axum::Error) -> End {
    let cause = std::error::Error::source(e).and_then(|s| s.downcast_ref::<tungstenite::Error>());
    match cause {
        Some(tungstenite::Error::Capacity(_)) => End::Close(close_code::SIZE, "Message too big"),
        Some(tungstenite::Error::Utf8(_)) => {
            End::Close(close_code::INVALID, "Invalid frame payload data")
        }
        _ => {
            tracing::debug!(error = %e, "read failed");
            End::Dropped
        }
    }
}

/// Writes one frame; `false` if the socket failed or accepted nothing for `timeout` (a
/// stalled peer), either of which ends the connection; `conn` names it in the logs.
async fn send_within(
    socket: &mut WebSocket,
    frame: Message,
    timeout: Duration,
    conn: &str,
) -> bool {
    match tokio::time::timeout(timeout, socket.send(frame)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(conn_id = conn, error = %e, "write failed");
            false
        }
        Err(_) => {
            tracing::warn!(
                conn_id = conn,
                "socket stalled past the send timeout; dropping it"
            );
            false
        }
    }
}
