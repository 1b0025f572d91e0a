//! [`Link`]: a WebSocket's socket as the pusher and the connection's task share it, plain
//! or TLS. Frames pushed to a connection are written straight into its socket from the
//! task that produced them (the sender's): no queue hop, no wake-up of another task. What
//! one pass sends to one link goes out at the end of the pass in one write ([`holding`]):
//! a burst read in one system call costs one write per room-mate, a lone message one
//! write. Only when the kernel's buffer is full are frames kept, in order, in the link's
//! pending queue, and the connection's own task writes them out as the socket drains
//! (`--queue-capacity` frames at most, then the connection is dropped as too slow;
//! `--send-timeout` without progress, likewise).
//!
//! Over TLS the link also holds the connection's [`Session`]: frames are sealed when they
//! are written (several frames of a pass into one record, in the thread's scratch
//! buffer), and records read are opened before the frame reader sees them. Sealed bytes
//! the kernel did not take are the only buffer a TLS link keeps.

use std::{
    cell::RefCell,
    collections::VecDeque,
    io::{self, IoSlice},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use meshcall_core::Outbound;
use tokio::{io::Interest, net::TcpStream, sync::Notify};
use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::{
    End, close_code,
    frame::{self, Reader},
    scratch::{LENT, Scratch},
};
use crate::tls::session::Session;

/// Frames a write takes at most.
const FRAMES_PER_WRITE: usize = 32;

/// Plaintext sealed at once over TLS, at most (a frame larger than this is sealed alone).
const SEAL_AT_ONCE: usize = 60 * 1024;

tokio::task_local! {
    /// Links that frames were pushed to during the current pass ([`holding`]).
    static HELD: RefCell<Vec<Arc<Link>>>;
}

/// Runs `pass` (a connection's task handling what it read) with its deliveries held back:
/// the frames it pushes to any link go out when it ends, one `writev` per link. A burst of
/// messages read in one system call to the same room-mate then costs one write, not one
/// each; a lone message is written as soon as it is handled, as before.
pub(super) async fn holding<F: Future>(pass: F) -> F::Output {
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
    pub(super) stream: TcpStream,
    /// Whether `out.tls` is set (it never changes): reads check it without the lock.
    sealed: bool,
    out: Mutex<Out>,
    /// Wakes the connection's task: frames are pending, or the link was ended.
    pub(super) wake: Notify,
}

#[derive(Debug)]
struct Out {
    /// Frames the kernel has not taken yet (over plain TCP the first maybe in part; over
    /// TLS none is sealed yet), in order.
    pending: VecDeque<Chunk>,
    ended: Option<Ended>,
    capacity: usize,
    /// Over TLS: the session and what it sealed that the kernel has not taken.
    tls: Option<Box<Sealed>>,
}

/// A TLS link's session, its sealed bytes not yet written (`bytes[sent..]`), and a record
/// read but not yet complete (`incoming`, kept here rather than in the connection's task
/// so that a plain connection's task keeps no room for it).
#[derive(Debug)]
struct Sealed {
    session: Session,
    bytes: Vec<u8>,
    sent: usize,
    incoming: Vec<u8>,
}

impl Out {
    /// Whether anything waits for the socket.
    fn unsent(&self) -> bool {
        !self.pending.is_empty() || self.tls.as_ref().is_some_and(|t| t.sent < t.bytes.len())
    }
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
    pub(super) fn end(self) -> End {
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
    /// A link on `stream`, plain, or sealed by `tls` with its `unsent` bytes still to
    /// write (what the HTTP upgrade left).
    pub(super) fn new(connection: super::Connection, capacity: usize) -> Self {
        let super::Connection { stream, tls } = connection;
        Self {
            stream,
            sealed: tls.is_some(),
            out: Mutex::new(Out {
                pending: VecDeque::new(),
                ended: None,
                capacity,
                tls: tls.map(|tls| {
                    let super::Tls {
                        session,
                        sealed_in,
                        unsent,
                    } = *tls;
                    Box::new(Sealed {
                        session,
                        bytes: unsent,
                        sent: 0,
                        incoming: sealed_in,
                    })
                }),
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
        if !out.unsent()
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
        } else if out.unsent() {
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
        // stream would be corrupt for the close frame that follows (over TLS: what is
        // sealed, kept apart from `pending`).
        let started = out.pending.front().is_some_and(|c| c.sent > 0);
        out.pending.truncate(usize::from(started));
        self.wake.notify_one();
        why
    }

    /// Queues `chunk` and, if nothing was ahead of it, writes what the socket takes now.
    fn send_locked(&self, out: &mut Out, chunk: Chunk) -> Result<(), Ended> {
        let was_idle = !out.unsent();
        out.pending.push_back(chunk);
        if was_idle {
            if self.write_locked(out).is_err() {
                return Err(self.end_locked(out, Ended::Broken));
            }
            if out.unsent() {
                // The socket is full: the connection's task finishes when it drains.
                self.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Writes pending frames until done or the socket would block.
    fn write_locked(&self, out: &mut Out) -> io::Result<()> {
        match out.tls.as_deref_mut() {
            None => self.write_plain(&mut out.pending),
            Some(tls) => self.write_sealed(&mut out.pending, tls),
        }
    }

    /// Plain TCP: up to [`FRAMES_PER_WRITE`] frames in one `writev`, header and shared
    /// text as they are.
    fn write_plain(&self, pending: &mut VecDeque<Chunk>) -> io::Result<()> {
        while !pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            let mut used = 0;
            for chunk in pending.iter().take(FRAMES_PER_WRITE) {
                let (head, body) = chunk.unsent();
                slices[used] = IoSlice::new(head);
                slices[used + 1] = IoSlice::new(body);
                used += 2;
            }
            let Some(mut written) = self.try_write(|s| s.try_write_vectored(&slices[..used]))?
            else {
                return Ok(());
            };
            while let Some(chunk) = pending.front_mut() {
                let left = chunk.len() - chunk.sent;
                if written < left {
                    chunk.sent += written;
                    break;
                }
                written -= left;
                pending.pop_front();
            }
        }
        Ok(())
    }

    /// TLS: what is sealed first; then up to [`FRAMES_PER_WRITE`] frames (or
    /// [`SEAL_AT_ONCE`] bytes) gathered and sealed together in the thread's scratch, and
    /// written from there; only what the kernel does not take is copied into the link.
    fn write_sealed(&self, pending: &mut VecDeque<Chunk>, tls: &mut Sealed) -> io::Result<()> {
        loop {
            while tls.sent < tls.bytes.len() {
                match self.try_write(|s| s.try_write(&tls.bytes[tls.sent..]))? {
                    Some(n) => tls.sent += n,
                    None => return Ok(()),
                }
            }
            if !tls.bytes.is_empty() {
                tls.bytes = Vec::new();
                tls.sent = 0;
            }
            if pending.is_empty() {
                return Ok(());
            }
            let mut plain = Scratch::PlainOut.borrow();
            let mut frames = 0;
            while let Some(chunk) = pending.front() {
                if frames == FRAMES_PER_WRITE
                    || (frames > 0 && plain.len() + chunk.len() > SEAL_AT_ONCE)
                {
                    break;
                }
                let (head, body) = chunk.unsent();
                plain.extend_from_slice(head);
                plain.extend_from_slice(body);
                pending.pop_front();
                frames += 1;
            }
            let mut sealed = Scratch::SealedOut.borrow();
            let done = tls.session.seal(&plain, &mut sealed);
            Scratch::PlainOut.give_back(plain);
            let written = match done {
                Ok(()) => self.try_write(|s| s.try_write(&sealed)),
                Err(e) => Err(e),
            };
            let written = match written {
                Ok(written) => written.unwrap_or(0),
                Err(e) => {
                    Scratch::SealedOut.give_back(sealed);
                    return Err(e);
                }
            };
            if written < sealed.len() {
                tls.bytes = sealed[written..].to_vec();
                tls.sent = 0;
            }
            Scratch::SealedOut.give_back(sealed);
        }
    }

    /// One write: `Ok(Some(n))`, `Ok(None)` if the socket is full.
    fn try_write(
        &self,
        write: impl FnOnce(&TcpStream) -> io::Result<usize>,
    ) -> io::Result<Option<usize>> {
        match write(&self.stream) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads what the socket has into `reader`, without waiting: `Ok(0)` at the end of the
    /// stream, `WouldBlock` if nothing is there yet. Over TLS the records are opened first;
    /// `sealed_in` keeps a record not yet complete between reads.
    pub(super) fn read(&self, reader: &mut Reader) -> io::Result<usize> {
        if !self.sealed {
            return reader.read_from(&self.stream);
        }
        let mut raw = Scratch::SealedIn.borrow();
        raw.append(&mut self.take_sealed_in());
        let read = self.read_sealed(&mut raw, reader);
        Scratch::SealedIn.give_back(raw);
        read
    }

    /// The record bytes kept since the last read (none on a plain link).
    fn take_sealed_in(&self) -> Vec<u8> {
        self.lock()
            .tls
            .as_deref_mut()
            .map(|tls| std::mem::take(&mut tls.incoming))
            .unwrap_or_default()
    }

    fn read_sealed(&self, raw: &mut Vec<u8>, reader: &mut Reader) -> io::Result<usize> {
        // Up to the lent buffer's size in all (a record kept from the last read is at most
        // about 17 KB), so the buffer never grows past it.
        raw.reserve(LENT.saturating_sub(raw.len()));
        let room = raw.capacity() - raw.len();
        // As for plain reads (frame::Reader::read_from): a short read tells tokio the socket
        // is drained.
        let mut got = 0;
        let read = self.stream.try_io(Interest::READABLE, || {
            got = self.stream.try_read_buf(raw)?;
            if got > 0 && got < room {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(got)
            }
        });
        match read {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {}
            Ok(0) => return Ok(0),
            Ok(_) => {}
            // The connection ends: what was kept does not matter any more.
            Err(e) => return Err(e),
        }
        let closed = self.open(raw, reader)?;
        Ok(if closed { 0 } else { got })
    }

    /// Opens the whole records in `raw` into `reader`, keeping a record not yet complete
    /// for the next read; `true` if the client closed its side.
    fn open(&self, raw: &mut [u8], reader: &mut Reader) -> io::Result<bool> {
        let mut out = self.lock();
        let out = &mut *out;
        let tls = out.tls.as_deref_mut().expect("a TLS link stays TLS");
        let mut answer = Vec::new();
        let opened = tls
            .session
            .open(raw, |plain| reader.feed(plain), &mut answer)?;
        tls.incoming.extend_from_slice(&raw[opened.consumed..]);
        if !answer.is_empty() {
            // The session's own answer (a key update): after what is sealed already, before
            // any frame not yet sealed.
            tls.bytes.drain(..tls.sent);
            tls.sent = 0;
            tls.bytes.append(&mut answer);
            if self.write_locked(out).is_err() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
        }
        Ok(opened.closed)
    }

    /// Opens records read before the link existed (during the HTTP upgrade), as
    /// [`Link::read`] does: `Ok(false)` if the client closed its side.
    pub(super) fn open_unread(&self, reader: &mut Reader) -> io::Result<bool> {
        let mut raw = self.take_sealed_in();
        if raw.is_empty() {
            return Ok(true);
        }
        let closed = self.open(&mut raw, reader);
        closed.map(|closed| !closed)
    }

    /// Seals a `close_notify` after everything else, over TLS: the last thing this link
    /// sends. Best effort; [`Link::flush`] writes it.
    pub(super) fn close_tls(&self) {
        let mut out = self.lock();
        let out = &mut *out;
        let Some(tls) = out.tls.as_deref_mut() else {
            return;
        };
        if self.write_sealed(&mut out.pending, tls).is_err() || !out.pending.is_empty() {
            // Frames still unsealed (a full socket): the close frame is what matters.
            return;
        }
        tls.bytes.drain(..tls.sent);
        tls.sent = 0;
        tls.session.close(&mut tls.bytes);
    }

    /// A frame of the connection's own (pong, close), sent even on an ended link.
    pub(super) fn send_own(&self, opcode: OpCode, payload: Vec<u8>) {
        let mut out = self.lock();
        let _ = self.send_locked(&mut out, Chunk::new(opcode, Payload::Owned(payload)));
    }

    /// Writes everything pending, waiting for the socket as needed; `false` if it fails or
    /// takes nothing for `timeout`.
    /// The connection's task calls it with `until_ended` so that a pusher ending the link
    /// meanwhile (too slow, replaced) is seen at once: it then returns `true` early and the
    /// caller reads [`Link::state`]. Its own closing frames are flushed without.
    pub(super) async fn flush(&self, timeout: Duration, conn: &str, until_ended: bool) -> bool {
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
                if !out.unsent() {
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

    pub(super) fn state(&self) -> (Option<Ended>, bool) {
        let out = self.lock();
        (out.ended, out.unsent())
    }
}
