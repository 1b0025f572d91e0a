//! One task per WebSocket. It gives the connection an id, registers its queue with the
//! pusher, then loops over four events until one ends the connection:
//!
//! - a frame from the client: limits first (binary, size, rate), then the core;
//! - a frame in the connection's queue: written to the socket (with a send timeout);
//! - the idle deadline: any received frame, WebSocket pings included, pushes it back;
//! - the age limit (`--max-connection-age`): close with 1001;
//! - server shutdown: close with 1001.
//!
//! A `joinRoom` also takes a token from its client address's join bucket
//! (`--max-joins-per-minute-per-ip`); without one it is answered `rateLimited`.
//!
//! On the way out it always runs the core's `$disconnect`, so the room hears of every
//! departure, clean or not.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

pub(crate) use axum::extract::ws::close_code;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use futures_util::SinkExt as _;
use meshcall_core::{Kind, Outbound, Route, TokenBucket};
use meshcall_protocol::{ClientMessage, ConnectionId, ErrorCode, ServerMessage};
use rand::RngExt as _;
use tokio::sync::mpsc;

use crate::{
    app::AppState,
    limits::{Admission, may_be_join},
};

/// A fresh, unguessable connection id: 96 random bits, 16 base64 characters, the shape of
/// API Gateway's ids.
///
/// # Panics
/// Never: base64 is printable ASCII, always a valid id.
pub fn new_connection_id() -> ConnectionId {
    let bytes: [u8; 12] = rand::rng().random();
    ConnectionId::parse(&STANDARD.encode(bytes)).expect("base64 is printable ASCII")
}

/// Serves one upgraded WebSocket until it closes; `admission` holds its place under the
/// connection limits until then.
pub async fn serve(state: AppState, socket: WebSocket, admission: Admission) {
    // Events name the connection in a field rather than in a span: tracing's registry
    // keeps a slot for every span ever open at once, so a span per connection would keep
    // memory for the most connections ever held (3 MB after 10 000 had left).
    let conn = new_connection_id();
    run(state, socket, conn, &admission).await;
}

/// Why the loop ended, and what close frame to send, if any.
pub(crate) enum End {
    /// The socket broke or ended without a close frame: the participant may resume.
    Dropped,
    /// The client closed, with this code (echoed in our reply) if it gave one.
    Answered(Option<u16>),
    /// We close with this code and reason.
    Close(u16, &'static str),
    /// The client sent a frame over the size limit: tell it why, then close with 1009.
    TooLarge,
}

/// Runs the core's `$connect` for a new socket; `false` (logged) if the store refused it.
pub(crate) async fn connect(state: &AppState, conn: &ConnectionId) -> bool {
    if let Err(e) = state.core.connect(conn, SystemTime::now()).await {
        tracing::error!(conn_id = %conn, error = %e, "store refused a connection");
        return false;
    }
    tracing::info!(conn_id = %conn, "connected");
    true
}

async fn run(state: AppState, mut socket: WebSocket, conn: ConnectionId, admission: &Admission) {
    let core = &state.core;
    let settings = &state.settings;
    let (queue, mut outbound) = mpsc::channel::<Outbound>(settings.queue_capacity);
    core.pusher().register(conn.clone(), queue);
    if !connect(&state, &conn).await {
        core.pusher().unregister(&conn);
        send_close(&mut socket, close_code::ERROR, "store unavailable", &state).await;
        return;
    }

    let idle_timeout = settings.idle_timeout;
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    let mut bucket = TokenBucket::new(core.config().rate, Instant::now());
    let max_age = admission.max_age();
    let aged = tokio::time::sleep(max_age.unwrap_or(Duration::MAX));
    tokio::pin!(aged);

    let end = loop {
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => {
                // Frames already queued (say, a participantLeft) still go out first.
                while let Ok(frame) = outbound.try_recv() {
                    if !send(&mut socket, &frame, &state, conn.as_str()).await {
                        break;
                    }
                }
                break End::Close(close_code::AWAY, "server shutting down");
            }
            frame = outbound.recv() => match frame {
                Some(frame) => {
                    if !send(&mut socket, &frame, &state, conn.as_str()).await {
                        break End::Dropped;
                    }
                }
                // The pusher dropped our queue: it was full, or a resume moved our
                // participant to another socket.
                None => break End::Close(close_code::AGAIN, "dropped by the server: too slow or replaced"),
            },
            incoming = socket.recv() => {
                let Some(incoming) = incoming else { break End::Dropped };
                let message = match incoming {
                    Ok(message) => message,
                    Err(e) => break read_failed(&e),
                };
                let received = Instant::now();
                idle.as_mut().reset((received + idle_timeout).into());
                match message {
                    Message::Text(text) => {
                        handle_client_text(&state, &conn, &text, received, &mut bucket, admission).await;
                    }
                    Message::Binary(_) => {
                        refuse(&state, &conn, ErrorCode::BinaryNotSupported, "send JSON text frames").await;
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                    // tungstenite has queued the close reply; write it out.
                    Message::Close(frame) => break End::Answered(frame.map(|f| f.code)),
                }
            }
            () = &mut idle => break End::Close(close_code::AWAY, "idle timeout"),
            () = &mut aged, if max_age.is_some() => {
                admission.aged_out(Instant::now());
                break End::Close(close_code::AWAY, "connection age limit");
            }
        }
    };

    let wire = SocketWire {
        socket,
        conn: conn.as_str(),
    };
    finish(&state, wire, &conn, end).await;
}

/// A text frame from the client: the rate limit and the join limit first, then the core.
pub(crate) async fn handle_client_text(
    state: &AppState,
    conn: &ConnectionId,
    text: &str,
    received: Instant,
    bucket: &mut TokenBucket,
    admission: &Admission,
) {
    if !bucket.try_take(received) {
        refuse(
            state,
            conn,
            ErrorCode::RateLimited,
            "too many messages; slow down",
        )
        .await;
    } else if is_join(text) && !admission.try_join(received) {
        let message = "too many joins from your address; try again shortly";
        refuse(state, conn, ErrorCode::RateLimited, message).await;
    } else {
        handle_text(state, conn, text, received).await;
    }
}

/// How the ending of a connection writes to its socket: axum's WebSocket (HTTPS) or a
/// direct link (plain HTTP, [`crate::direct`]).
pub(crate) trait Wire {
    /// Writes one frame; `false` if the socket failed or stalled past the send timeout.
    async fn send(&mut self, frame: &Outbound, state: &AppState) -> bool;
    /// Sends a close frame with `code` and `reason`, best effort, and flushes.
    async fn close(&mut self, code: u16, reason: &'static str, state: &AppState);
    /// Answers the client's close frame (whose code was `code`), best effort.
    async fn answer_close(&mut self, code: Option<u16>, state: &AppState);
}

/// axum's WebSocket as a [`Wire`].
struct SocketWire<'a> {
    socket: WebSocket,
    conn: &'a str,
}

impl Wire for SocketWire<'_> {
    async fn send(&mut self, frame: &Outbound, state: &AppState) -> bool {
        send(&mut self.socket, frame, state, self.conn).await
    }

    async fn close(&mut self, code: u16, reason: &'static str, state: &AppState) {
        send_close(&mut self.socket, code, reason, state).await;
    }

    async fn answer_close(&mut self, _code: Option<u16>, state: &AppState) {
        // tungstenite has queued its reply: write it out.
        let _ = tokio::time::timeout(state.settings.send_timeout, self.socket.flush()).await;
    }
}

/// Ends a connection: a drop suspends its participant (it may resume); every other end
/// closes the socket as `end` says and removes the participant, telling its room.
pub(crate) async fn finish(state: &AppState, mut wire: impl Wire, conn: &ConnectionId, end: End) {
    let core = &state.core;
    if matches!(end, End::Dropped) {
        // A push may have found the queue gone already and suspended the participant;
        // suspending again is harmless and returns when its grace ends.
        tracing::info!(conn_id = %conn, "dropped");
        match core.suspend(conn, SystemTime::now()).await {
            Ok(Some(s)) => schedule_expiry(state, s.id, s.until),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(conn_id = %conn, error = %e, "store failed on a dropped socket");
            }
        }
        core.pusher().unregister(conn);
        return;
    }
    core.pusher().unregister(conn);
    // The room hears first: closing politely may wait up to the send timeout on a
    // socket that takes nothing.
    if let Err(e) = core.disconnect(conn, SystemTime::now()).await {
        tracing::error!(conn_id = %conn, error = %e, "store failed on disconnect");
    }
    match end {
        End::Dropped => {}
        End::Answered(code) => {
            tracing::info!(conn_id = %conn, "closed by the client");
            wire.answer_close(code, state).await;
        }
        End::Close(code, reason) => {
            tracing::info!(conn_id = %conn, code, reason, "closing");
            wire.close(code, reason, state).await;
        }
        End::TooLarge => {
            let code = ErrorCode::MessageTooLarge;
            tracing::info!(conn_id = %conn, code = code.as_str(), "closing");
            state.metrics.error(code);
            let limit = state.settings.max_message_bytes;
            let text = ServerMessage::Error {
                code,
                message: &format!("frames are limited to {limit} bytes"),
                to: None,
            }
            .to_json();
            if wire.send(&Outbound::new(Kind::Error, text), state).await {
                wire.close(close_code::SIZE, "message too large", state)
                    .await;
            }
        }
    }
}

/// After the grace of a dropped participant, removes it unless it resumed. The timer is
/// tracked like a socket and ends early on shutdown (the memory store ends with the
/// process anyway).
fn schedule_expiry(state: &AppState, participant: ConnectionId, until: SystemTime) {
    let delay = until.duration_since(SystemTime::now()).unwrap_or_default();
    let core = state.core.clone();
    let shutdown = state.shutdown.clone();
    state.tracker.spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(delay) => {
                // The wall clock may lag the timer slightly; the grace is over either way.
                let now = SystemTime::now().max(until);
                if let Err(e) = core.expire(&participant, now).await {
                    tracing::error!(conn_id = %participant, error = %e, "store failed expiring a dropped participant");
                }
            }
            () = shutdown.cancelled() => {}
        }
    });
}

/// Whether a text frame is a valid `joinRoom` (parsed again only if it may be one).
fn is_join(text: &str) -> bool {
    may_be_join(text)
        && matches!(
            ClientMessage::parse(text),
            Ok(ClientMessage::JoinRoom { .. })
        )
}

/// Hands one text frame, received at `received`, to the core.
async fn handle_text(state: &AppState, conn: &ConnectionId, text: &str, received: Instant) {
    let outcome = state.core.message(conn, text, SystemTime::now()).await;
    tracing::debug!(
        conn_id = %conn,
        route = outcome.route.as_str(),
        bytes = text.len(),
        "message"
    );
    if let Some(old) = &outcome.replaced {
        // A resume took this socket's participant from a socket the server still held:
        // close that one (its task sees its queue end).
        tracing::info!(conn_id = %conn, replaced = %old, "resumed over a half-open socket");
        state.core.pusher().unregister(old);
    }
    if let Some(code) = outcome.error {
        state.metrics.error(code);
    } else if outcome.route == Route::JoinRoom {
        state.metrics.join_notify(received.elapsed().as_secs_f64());
    }
}

/// Answers the client with an `error` frame, counted in the metrics.
pub(crate) async fn refuse(state: &AppState, conn: &ConnectionId, code: ErrorCode, message: &str) {
    tracing::debug!(conn_id = %conn, code = code.as_str(), "refused");
    state.metrics.error(code);
    state
        .core
        .refuse(conn, code, message, SystemTime::now())
        .await;
}

/// A read error ends the connection. A frame over the size limit is answered with
/// `messageTooLarge` and close code 1009, as API Gateway closes; a text frame that is not
/// UTF-8 gets 1007 (RFC 6455, 7.4.1), a frame the RFC forbids 1002, as on the plain-HTTP
/// path; anything else is a broken socket.
fn read_failed(e: &axum::Error) -> End {
    use tungstenite::error::ProtocolError;
    let cause = std::error::Error::source(e).and_then(|s| s.downcast_ref::<tungstenite::Error>());
    match cause {
        Some(tungstenite::Error::Capacity(_)) => End::TooLarge,
        Some(tungstenite::Error::Utf8(_)) => End::Close(close_code::INVALID, "invalid UTF-8"),
        Some(tungstenite::Error::Protocol(
            why @ (ProtocolError::NonZeroReservedBits
            | ProtocolError::UnmaskedFrameFromClient
            | ProtocolError::FragmentedControlFrame
            | ProtocolError::ControlFrameTooBig
            | ProtocolError::UnknownControlFrameType(_)
            | ProtocolError::UnknownDataFrameType(_)
            | ProtocolError::UnexpectedContinueFrame
            | ProtocolError::ExpectedFragment(_)
            | ProtocolError::InvalidOpcode(_)
            | ProtocolError::InvalidCloseSequence),
        )) => {
            // The client's framing, not a lost socket (a reset stays a drop: resumable).
            tracing::debug!(error = %why, "protocol error");
            End::Close(close_code::PROTOCOL, "protocol error")
        }
        _ => {
            tracing::debug!(error = %e, "read failed");
            End::Dropped
        }
    }
}

/// Writes one queued frame; `false` if the socket failed or stalled past the send timeout.
async fn send(socket: &mut WebSocket, frame: &Outbound, state: &AppState, conn: &str) -> bool {
    let text = Utf8Bytes::try_from(Bytes::from_owner(SharedText(frame.text.clone())))
        .expect("frames are built from strings");
    send_within(
        socket,
        Message::Text(text),
        state.settings.send_timeout,
        conn,
    )
    .await
}

/// Writes one frame; `false` if the socket failed or accepted nothing for `timeout` (a
/// stalled peer), either of which ends the connection; `conn` names it in the logs. Shared
/// with `meshcall-gateway`.
pub async fn send_within(
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

/// Sends a close frame, best effort: the connection ends either way.
async fn send_close(socket: &mut WebSocket, code: u16, reason: &'static str, state: &AppState) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = tokio::time::timeout(state.settings.send_timeout, socket.send(frame)).await;
}

/// Lets a shared frame text back a `Bytes` without copying it.
struct SharedText(Arc<str>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
