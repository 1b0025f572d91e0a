//! One task per WebSocket, plain or TLS, on one loop. The task gives the connection an id,
//! registers its [`Link`] with the pusher, then waits for one of these until one ends the
//! connection:
//!
//! - bytes from the client: read (and over TLS opened) in one pass, every whole frame
//!   handled in turn: limits first (binary, size, rate, joins per address), then the core;
//!   the pass's deliveries go out at its end ([`link::holding`]);
//! - the link woken: frames the kernel did not take can be written now, or a pusher ended
//!   the link (too slow, replaced);
//! - the deadline: the idle timeout (any frame received pushes it back) or the age limit
//!   (`--max-connection-age`), one timer for both: close with 1001;
//! - server shutdown: close with 1001.
//!
//! On the way out it always runs the core's `$disconnect` (or, for a drop, suspends the
//! participant for a resume), so the room hears of every departure, clean or not.
//!
//! What this costs an idle connection and a message (no read buffer while idle, the
//! worker thread's buffers lent for a pass, one write per room-mate per pass) is in
//! docs/architecture.md and docs/benchmarks.md.

#[cfg(test)]
mod differential;
pub(crate) mod frame;
pub mod link;
mod scratch;
pub mod upgrade;

use std::{
    io,
    sync::Arc,
    time::{Instant, SystemTime},
};

use meshcall_core::{Route, TokenBucket};
use meshcall_protocol::{ClientMessage, ConnectionId, ErrorCode, ServerMessage};
use tokio::net::TcpStream;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::{
    app::AppState,
    limits::Admission,
    tls::{self, session::Session},
};
use frame::{Event, Fault, Reader};
use link::{Link, holding};

/// WebSocket close codes (RFC 6455, 7.4.1) the server sends.
pub mod close_code {
    /// The server is going away (shutdown, idle timeout, age limit).
    pub const AWAY: u16 = 1001;
    /// The client broke the protocol.
    pub const PROTOCOL: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID: u16 = 1007;
    /// A message over the size limit.
    pub const SIZE: u16 = 1009;
    /// The server failed (the store was unavailable).
    pub const ERROR: u16 = 1011;
    /// Try again later: dropped as too slow, or replaced by a resume.
    pub const AGAIN: u16 = 1013;
}

/// An upgraded connection, before its task starts.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    /// Boxed: the session is about 1 KB, and the connection's task keeps room for its
    /// arguments all its life, plain or not.
    tls: Option<Box<Tls>>,
}

/// A TLS connection's session and the bytes in flight at the upgrade.
#[derive(Debug)]
struct Tls {
    session: Session,
    /// Records read, not yet opened.
    sealed_in: Vec<u8>,
    /// Sealed bytes not yet written.
    unsent: Vec<u8>,
}

impl Connection {
    /// A plain TCP connection.
    pub fn plain(stream: TcpStream) -> Self {
        Self { stream, tls: None }
    }

    /// A TLS connection, taken from its HTTP stream.
    pub fn tls(parts: tls::stream::Parts) -> Self {
        Self {
            stream: parts.tcp,
            tls: Some(Box::new(Tls {
                session: parts.session,
                sealed_in: parts.sealed_in,
                unsent: parts.out,
            })),
        }
    }
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
async fn connect(state: &AppState, conn: &ConnectionId) -> bool {
    if let Err(e) = state.core.connect(conn, SystemTime::now()).await {
        tracing::error!(conn_id = %conn, error = %e, "store refused a connection");
        return false;
    }
    tracing::info!(conn_id = %conn, "connected");
    true
}

/// Serves one upgraded socket until it closes; `reader` holds what was read past the
/// request, `admission` its place under the connection limits.
async fn serve(state: AppState, connection: Connection, mut reader: Reader, admission: Admission) {
    // Events name the connection in a field rather than in a span: tracing's registry
    // keeps a slot for every span ever open at once, so a span per connection would keep
    // memory for the most connections ever held (3 MB after 10 000 had left).
    let conn = meshcall_web::new_connection_id();
    let link = Arc::new(Link::new(connection, state.settings.queue_capacity));
    let core = &state.core;
    core.pusher().register(conn.clone(), link.clone());
    // Rarely running futures are boxed: a task keeps room for its future's largest state
    // all its life, and inlining the core's routes made every idle connection's task 2.4 KB.
    if !Box::pin(connect(&state, &conn)).await {
        core.pusher().unregister(&conn);
        close(&state, &link, &conn, close_code::ERROR, "store unavailable").await;
        return;
    }
    let end = run(&state, &link, &mut reader, &conn, &admission).await;
    drop(reader);
    Box::pin(finish(&state, &link, &conn, end)).await;
}

async fn run(
    state: &AppState,
    link: &Link,
    reader: &mut Reader,
    conn: &ConnectionId,
    admission: &Admission,
) -> End {
    let settings = &state.settings;
    let idle_timeout = settings.connection.idle_timeout;
    let start = Instant::now();
    let mut bucket = TokenBucket::new(state.core.config().rate, start);
    // One timer for both the idle timeout and the age limit, set to the earlier.
    let aged_at = admission.max_age().and_then(|age| start.checked_add(age));
    let mut idle_at = start + idle_timeout;
    let next = |idle_at: Instant| aged_at.map_or(idle_at, |aged_at| idle_at.min(aged_at));
    let deadline = tokio::time::sleep_until(next(idle_at).into());
    tokio::pin!(deadline);
    // Bytes hyper had read past the request are handled before waiting for more.
    let mut ready = match link.open_unread(reader) {
        Ok(open) => open,
        Err(e) => {
            tracing::debug!(conn_id = %conn, error = %e, "TLS failed");
            return End::Dropped;
        }
    };
    if !ready {
        return End::Dropped;
    }
    loop {
        if ready {
            ready = false;
            let received = Instant::now();
            let pass = holding(take_events(
                state,
                link,
                reader,
                conn,
                admission,
                &mut bucket,
                received,
            ))
            .await;
            reader.settle();
            let any = match pass {
                Ok(any) => any,
                Err(end) => return end,
            };
            if any {
                idle_at = received + idle_timeout;
                deadline.as_mut().reset(next(idle_at).into());
            }
        }
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => {
                // Frames already pending (say, a participantLeft) still go out first.
                Box::pin(link.flush(settings.send_timeout, conn.as_str(), false)).await;
                return End::Close(close_code::AWAY, "server shutting down");
            }
            () = link.wake.notified() => {
                let (ended, pending) = link.state();
                if ended.is_none() && pending
                    && !Box::pin(link.flush(settings.send_timeout, conn.as_str(), true)).await
                {
                    return End::Dropped;
                }
                // Ended by a pusher, before or while the pending frames drained.
                if let Some(ended) = link.state().0 {
                    return ended.end();
                }
            }
            readable = link.stream.readable() => {
                if readable.is_err() {
                    return End::Dropped;
                }
                match link.read(reader) {
                    Ok(0) => return End::Dropped,
                    Ok(_) => ready = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        tracing::debug!(conn_id = %conn, error = %e, "read failed");
                        return End::Dropped;
                    }
                }
            }
            () = &mut deadline => {
                let now = Instant::now();
                if aged_at.is_some_and(|aged_at| now >= aged_at) {
                    admission.aged_out(now);
                    return End::Close(close_code::AWAY, "connection age limit");
                }
                return End::Close(close_code::AWAY, "idle timeout");
            }
        }
    }
}

/// Handles every whole event the reader holds, received at `received`: `Ok(whether there
/// was any)`, or how the connection ends.
async fn take_events(
    state: &AppState,
    link: &Link,
    reader: &mut Reader,
    conn: &ConnectionId,
    admission: &Admission,
    bucket: &mut TokenBucket,
    received: Instant,
) -> Result<bool, End> {
    let mut any = false;
    while let Some(event) = reader.next() {
        any = true;
        let event = match event {
            Ok(event) => event,
            Err(Fault::TooLarge) => return Err(End::TooLarge),
            Err(Fault::InvalidUtf8) => {
                return Err(End::Close(close_code::INVALID, "invalid UTF-8"));
            }
            Err(Fault::Protocol(why)) => {
                tracing::debug!(conn_id = %conn, why, "protocol error");
                return Err(End::Close(close_code::PROTOCOL, "protocol error"));
            }
        };
        match event {
            Event::Text(text) => {
                Box::pin(handle_client_text(
                    state, conn, &text, received, bucket, admission,
                ))
                .await;
            }
            Event::Binary => {
                Box::pin(refuse(
                    state,
                    conn,
                    ErrorCode::BinaryNotSupported,
                    "send JSON text frames",
                ))
                .await;
            }
            Event::Ping(payload) => link.send_own(OpCode::Control(Control::Pong), payload),
            Event::Pong => {}
            Event::Close(code) => return Err(End::Answered(code)),
        }
    }
    Ok(any)
}

/// A text frame from the client: the rate limit first, then the join limit on the parsed
/// message, then the core.
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
        return;
    }
    // Parsed once: the limits decide on the message, then the core routes it.
    let parsed = ClientMessage::parse(text);
    if let Ok(message) = &parsed
        && !admission.allows(message, received)
    {
        let message = "too many joins from your address; try again shortly";
        refuse(state, conn, ErrorCode::RateLimited, message).await;
        return;
    }
    let outcome = state.core.dispatch(conn, parsed, SystemTime::now()).await;
    tracing::debug!(
        conn_id = %conn,
        route = outcome.route.as_str(),
        bytes = text.len(),
        "message"
    );
    if let Some(old) = &outcome.replaced {
        // A resume took this socket's participant from a socket the server still held:
        // close that one (its task sees its link end).
        tracing::info!(conn_id = %conn, replaced = %old, "resumed over a half-open socket");
        state.core.pusher().unregister(old);
    }
    if let Some(code) = outcome.error {
        state.metrics.error(code);
    } else if outcome.route == Route::JoinRoom {
        state.metrics.join_notify(received.elapsed().as_secs_f64());
    }
}

/// Ends a connection: a drop suspends its participant (it may resume); every other end
/// closes the socket as `end` says and removes the participant, telling its room.
async fn finish(state: &AppState, link: &Link, conn: &ConnectionId, end: End) {
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
            // RFC 6455, 5.5.1: the reply echoes the status code.
            let payload = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
            link.send_own(OpCode::Control(Control::Close), payload);
            link.close_tls();
            link.flush(state.settings.send_timeout, conn.as_str(), false)
                .await;
        }
        End::Close(code, reason) => {
            tracing::info!(conn_id = %conn, code, reason, "closing");
            close(state, link, conn, code, reason).await;
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
            link.send_own(OpCode::Data(Data::Text), text.into_bytes());
            close(state, link, conn, close_code::SIZE, "message too large").await;
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

/// Answers the client with an `error` frame, counted in the metrics.
pub(crate) async fn refuse(state: &AppState, conn: &ConnectionId, code: ErrorCode, message: &str) {
    tracing::debug!(conn_id = %conn, code = code.as_str(), "refused");
    state.metrics.error(code);
    state
        .core
        .refuse(conn, code, message, SystemTime::now())
        .await;
}

/// Sends a close frame with `code` and `reason` (and over TLS a `close_notify`), best
/// effort, and flushes.
async fn close(state: &AppState, link: &Link, conn: &ConnectionId, code: u16, reason: &str) {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    link.send_own(OpCode::Control(Control::Close), payload);
    link.close_tls();
    link.flush(state.settings.send_timeout, conn.as_str(), false)
        .await;
}
