//! WebSocket connections served straight on their TCP socket: the plain-HTTP path
//! (HTTPS keeps axum's WebSocket over rustls, in [`crate::socket`]). Both share the
//! connection's rules ([`crate::socket`]: limits, the core, how a connection ends); this
//! module only moves frames, in a way that costs an idle connection almost nothing and a
//! message few system calls (docs/benchmarks.md has the figures):
//!
//! - **No read buffer while idle.** The connection task waits for the socket to be readable
//!   and reads, up to 64 KiB at once, into its worker thread's buffer, lent by a
//!   [`frame::Reader`] for the pass over what was read; between passes the reader keeps
//!   only the bytes of a frame not yet complete: an idle connection holds its task, its
//!   [`Link`] and nothing else.
//! - **Deliveries written by the sender.** The pusher writes a frame for a connection
//!   straight into that connection's socket from the task that produced it (the sender's):
//!   no queue hop, no wake-up of another task. What one pass sends to one link goes out at
//!   the end of the pass in one `writev` ([`holding`]): a burst read in one system call
//!   costs one write per room-mate, a lone message one write. Only when the kernel's buffer
//!   is full are frames kept, in order, in the link's pending queue, and the connection's
//!   own task writes them out as the socket drains (`--queue-capacity` frames at most, then
//!   the connection is dropped as too slow; `--send-timeout` without progress, likewise).

pub(crate) mod frame;

use std::{
    cell::RefCell,
    collections::VecDeque,
    io::{self, IoSlice},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse as _, Response},
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use meshcall_core::{Outbound, TokenBucket};
use meshcall_protocol::{ConnectionId, ErrorCode};
use tokio::{net::TcpStream, sync::Notify};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::{
    app::AppState,
    limits::Admission,
    socket::{self, End, Wire, close_code},
};
use frame::{Event, Fault, Reader};

/// Checks a WebSocket upgrade request (RFC 6455, 4.2.1) and takes its upgrade; the answer
/// to give on failure otherwise (400, as axum's extractor answers).
///
/// # Errors
/// The response to send instead of switching protocols.
///
/// # Panics
/// Never: an accept key is base64, a valid header value.
#[allow(clippy::result_large_err)] // the error is the response itself
pub fn handshake(req: &mut Request) -> Result<(OnUpgrade, HeaderValue), Response> {
    let headers = req.headers();
    let bad = |why: &'static str| (StatusCode::BAD_REQUEST, why).into_response();
    if req.method() != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "WebSocket upgrades use GET\n",
        )
            .into_response());
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(bad("Connection header did not include 'upgrade'\n"));
    }
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(bad("`Upgrade` header did not include 'websocket'\n"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(bad("`Sec-WebSocket-Version` header did not include '13'\n"));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(bad("`Sec-WebSocket-Key` header missing\n"));
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = HeaderValue::from_str(&accept).expect("base64 is a valid header value");
    let Some(upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "connection cannot be upgraded\n",
        )
            .into_response());
    };
    Ok((upgrade, accept))
}

fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Answers 101 Switching Protocols and serves the socket once hyper hands it over (served
/// by [`crate::run`], whose plain-HTTP connections are bare `TcpStream`s).
///
/// # Panics
/// Never: the response is built from valid parts.
pub fn switch(
    state: AppState,
    upgrade: OnUpgrade,
    accept: HeaderValue,
    admission: Admission,
) -> Response {
    let tracker = state.tracker.clone();
    tracker.clone().spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        // Served by `meshcall::run` the connection is a `TcpStream` in hyper's adapter;
        // whatever hyper read past the request (a client may send its first frame at once)
        // comes back with it.
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            tracing::error!("an upgraded connection that is not plain TCP: refusing it");
            return;
        };
        let settings = &state.settings;
        let mut reader = Reader::new(settings.max_message_bytes);
        reader.take(&parts.read_buf);
        // The connection's own task holds only what it needs from here on (the upgrade's
        // state would otherwise stay in it for its whole life).
        tracker.spawn(serve(state, parts.io.into_inner(), reader, admission));
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .expect("a valid response")
}

/// Frames a `writev` takes at most.
const FRAMES_PER_WRITE: usize = 32;

tokio::task_local! {
    /// Links that frames were pushed to during the current pass ([`holding`]).
    static HELD: RefCell<Vec<Arc<Link>>>;
}

/// Runs `pass` (a connection's task handling what it read) with its deliveries held back:
/// the frames it pushes to any link go out when it ends, one `writev` per link. A burst of
/// messages read in one system call to the same room-mate then costs one write, not one
/// each; a lone message is written as soon as it is handled, as before.
async fn holding<F: Future>(pass: F) -> F::Output {
    HELD.scope(RefCell::new(Vec::new()), async {
        let output = pass.await;
        let held = HELD.with(RefCell::take);
        for link in held {
            link.release();
        }
        output
    })
    .await
}

/// How a link was ended by someone other than its own task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// More than `--queue-capacity` frames were waiting for the socket.
    TooSlow,
    /// A resume moved its participant to another socket.
    Replaced,
    /// A write failed: the socket is broken.
    Broken,
}

/// A connection's socket as the pusher and the connection's task share it.
#[derive(Debug)]
pub struct Link {
    stream: TcpStream,
    out: Mutex<Out>,
    /// Wakes the connection's task: frames are pending, or the link was ended.
    wake: Notify,
}

#[derive(Debug)]
struct Out {
    /// Frames the kernel has not taken yet (the first maybe in part), in order.
    pending: VecDeque<Chunk>,
    ended: Option<Ended>,
    capacity: usize,
}

/// One server frame: its header and payload, and how much of both is written.
#[derive(Debug)]
struct Chunk {
    head: [u8; 10],
    head_len: usize,
    body: Payload,
    sent: usize,
}

#[derive(Debug)]
enum Payload {
    Shared(Arc<str>),
    Owned(Vec<u8>),
}

impl Chunk {
    fn new(opcode: OpCode, body: Payload) -> Self {
        let len = match &body {
            Payload::Shared(text) => text.len(),
            Payload::Owned(bytes) => bytes.len(),
        };
        let (head, head_len) = frame::header(opcode, len);
        Self {
            head,
            head_len,
            body,
            sent: 0,
        }
    }

    fn body(&self) -> &[u8] {
        match &self.body {
            Payload::Shared(text) => text.as_bytes(),
            Payload::Owned(bytes) => bytes,
        }
    }

    /// What is left to write: the rest of the header, the rest of the body.
    fn unsent(&self) -> (&[u8], &[u8]) {
        let head = &self.head[self.sent.min(self.head_len)..self.head_len];
        let body = &self.body()[self.sent.saturating_sub(self.head_len)..];
        (head, body)
    }

    /// Header and body, in bytes.
    fn len(&self) -> usize {
        self.head_len + self.body().len()
    }
}

impl Ended {
    /// How the connection's task ends a link ended so.
    fn end(self) -> End {
        match self {
            Self::Broken => End::Dropped,
            Self::TooSlow | Self::Replaced => End::Close(
                close_code::AGAIN,
                "dropped by the server: too slow or replaced",
            ),
        }
    }
}

impl Link {
    fn new(stream: TcpStream, capacity: usize) -> Self {
        Self {
            stream,
            out: Mutex::new(Out {
                pending: VecDeque::new(),
                ended: None,
                capacity,
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Out> {
        // Every method leaves `Out` consistent before anything can panic.
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a text frame: written now if the socket takes it, else queued behind what is
    /// pending. Pushed while a connection's task handles what it read ([`holding`]), it is
    /// written when that pass ends, with whatever else the pass sent this link. `Err` if the
    /// link is ended (this push may be what ended it: too slow).
    ///
    /// # Errors
    /// How the link ended; the frame is not sent.
    pub fn push(self: &Arc<Self>, frame: &Outbound) -> Result<(), Ended> {
        let mut out = self.lock();
        if let Some(ended) = out.ended {
            return Err(ended);
        }
        if out.pending.len() >= out.capacity {
            return Err(self.end_locked(&mut out, Ended::TooSlow));
        }
        let chunk = Chunk::new(
            OpCode::Data(Data::Text),
            Payload::Shared(frame.text.clone()),
        );
        if out.pending.is_empty()
            && HELD
                .try_with(|held| held.borrow_mut().push(self.clone()))
                .is_ok()
        {
            out.pending.push_back(chunk);
            return Ok(());
        }
        self.send_locked(&mut out, chunk)
    }

    /// Writes what a pass held back for this link ([`holding`]).
    fn release(&self) {
        let mut out = self.lock();
        if out.ended.is_some() {
            // Its task sees the end and finishes a frame already started.
            return;
        }
        if self.write_locked(&mut out).is_err() {
            self.end_locked(&mut out, Ended::Broken);
        } else if !out.pending.is_empty() {
            // The socket is full: the connection's task finishes when it drains.
            self.wake.notify_one();
        }
    }

    /// Ends the link from outside (its participant moved to another socket).
    pub fn end(&self, why: Ended) {
        let mut out = self.lock();
        if out.ended.is_none() {
            self.end_locked(&mut out, why);
        }
    }

    /// Whether the link still takes frames.
    pub fn is_open(&self) -> bool {
        self.lock().ended.is_none()
    }

    fn end_locked(&self, out: &mut Out, why: Ended) -> Ended {
        out.ended = Some(why);
        // What was never started is dropped; a frame half written must be finished, or the
        // stream would be corrupt for the close frame that follows.
        let started = out.pending.front().is_some_and(|c| c.sent > 0);
        out.pending.truncate(usize::from(started));
        self.wake.notify_one();
        why
    }

    /// Queues `chunk` and, if nothing was ahead of it, writes what the socket takes now.
    fn send_locked(&self, out: &mut Out, chunk: Chunk) -> Result<(), Ended> {
        let was_idle = out.pending.is_empty();
        out.pending.push_back(chunk);
        if was_idle {
            if self.write_locked(out).is_err() {
                return Err(self.end_locked(out, Ended::Broken));
            }
            if !out.pending.is_empty() {
                // The socket is full: the connection's task finishes when it drains.
                self.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Writes pending frames until done or the socket would block, up to
    /// [`FRAMES_PER_WRITE`] in one `writev`.
    fn write_locked(&self, out: &mut Out) -> io::Result<()> {
        while !out.pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            let mut used = 0;
            for chunk in out.pending.iter().take(FRAMES_PER_WRITE) {
                let (head, body) = chunk.unsent();
                slices[used] = IoSlice::new(head);
                slices[used + 1] = IoSlice::new(body);
                used += 2;
            }
            let mut written = match self.stream.try_write_vectored(&slices[..used]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            while let Some(chunk) = out.pending.front_mut() {
                let left = chunk.len() - chunk.sent;
                if written < left {
                    chunk.sent += written;
                    break;
                }
                written -= left;
                out.pending.pop_front();
            }
        }
        Ok(())
    }

    /// A frame of the connection's own (pong, close), sent even on an ended link.
    fn send_own(&self, opcode: OpCode, payload: Vec<u8>) {
        let mut out = self.lock();
        let _ = self.send_locked(&mut out, Chunk::new(opcode, Payload::Owned(payload)));
    }

    /// Writes everything pending, waiting for the socket as needed; `false` if it fails or
    /// takes nothing for `timeout`.
    /// The connection's task calls it with `until_ended` so that a pusher ending the link
    /// meanwhile (too slow, replaced) is seen at once: it then returns `true` early and the
    /// caller reads [`Link::state`]. Its own closing frames are flushed without.
    async fn flush(&self, timeout: Duration, conn: &str, until_ended: bool) -> bool {
        loop {
            {
                let mut out = self.lock();
                if until_ended && out.ended.is_some() {
                    return true;
                }
                if self.write_locked(&mut out).is_err() {
                    self.end_locked(&mut out, Ended::Broken);
                    return false;
                }
                if out.pending.is_empty() {
                    return true;
                }
            }
            let ended = async {
                if until_ended {
                    self.wake.notified().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let writable = tokio::select! {
                writable = tokio::time::timeout(timeout, self.stream.writable()) => writable,
                () = ended => continue,
            };
            match writable {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(conn_id = conn, error = %e, "write failed");
                    return false;
                }
                Err(_) => {
                    tracing::warn!(
                        conn_id = conn,
                        "socket stalled past the send timeout; dropping it"
                    );
                    return false;
                }
            }
        }
    }

    fn state(&self) -> (Option<Ended>, bool) {
        let out = self.lock();
        (out.ended, !out.pending.is_empty())
    }
}

/// The link as the shared ending code writes to it.
struct LinkWire<'a> {
    link: &'a Link,
    conn: &'a str,
}

impl Wire for LinkWire<'_> {
    async fn send(&mut self, frame: &Outbound, state: &AppState) -> bool {
        self.link
            .send_own(OpCode::Data(Data::Text), frame.text.as_bytes().to_vec());
        self.link
            .flush(state.settings.send_timeout, self.conn, false)
            .await
    }

    async fn close(&mut self, code: u16, reason: &'static str, state: &AppState) {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.link.send_own(OpCode::Control(Control::Close), payload);
        self.link
            .flush(state.settings.send_timeout, self.conn, false)
            .await;
    }

    async fn answer_close(&mut self, code: Option<u16>, state: &AppState) {
        // RFC 6455, 5.5.1: the reply echoes the status code.
        let payload = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
        self.link.send_own(OpCode::Control(Control::Close), payload);
        self.link
            .flush(state.settings.send_timeout, self.conn, false)
            .await;
    }
}

/// Serves one upgraded socket until it closes; `early` is what hyper read past the request.
async fn serve(state: AppState, stream: TcpStream, mut reader: Reader, admission: Admission) {
    let conn = socket::new_connection_id();
    let link = Arc::new(Link::new(stream, state.settings.queue_capacity));
    let core = &state.core;
    core.pusher().register_link(conn.clone(), link.clone());
    // Rarely running futures are boxed: a task keeps room for its future's largest state
    // all its life, and inlining the core's routes made every idle connection's task 2.4 KB.
    if !Box::pin(socket::connect(&state, &conn)).await {
        core.pusher().unregister(&conn);
        LinkWire {
            link: &link,
            conn: conn.as_str(),
        }
        .close(close_code::ERROR, "store unavailable", &state)
        .await;
        return;
    }
    let end = run(&state, &link, &mut reader, &conn, &admission).await;
    drop(reader);
    let wire = LinkWire {
        link: &link,
        conn: conn.as_str(),
    };
    Box::pin(socket::finish(&state, wire, &conn, end)).await;
}

async fn run(
    state: &AppState,
    link: &Link,
    reader: &mut Reader,
    conn: &ConnectionId,
    admission: &Admission,
) -> End {
    let settings = &state.settings;
    let idle_timeout = settings.idle_timeout;
    let start = Instant::now();
    let mut bucket = TokenBucket::new(state.core.config().rate, start);
    // One timer for both the idle timeout and the age limit, set to the earlier.
    let aged_at = admission.max_age().and_then(|age| start.checked_add(age));
    let mut idle_at = start + idle_timeout;
    let next = |idle_at: Instant| aged_at.map_or(idle_at, |aged_at| idle_at.min(aged_at));
    let deadline = tokio::time::sleep_until(next(idle_at).into());
    tokio::pin!(deadline);
    // Bytes hyper had read past the request are handled before waiting for more.
    let mut ready = true;
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
                match reader.read_from(&link.stream) {
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
                Box::pin(socket::handle_client_text(
                    state, conn, &text, received, bucket, admission,
                ))
                .await;
            }
            Event::Binary => {
                Box::pin(socket::refuse(
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
