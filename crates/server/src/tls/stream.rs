//! [`TlsStream`]: a [`Session`] on its socket as tokio's `AsyncRead` + `AsyncWrite`, for
//! hyper's HTTP/1 connection (the pages, `/healthz`, the WebSocket upgrade request). A
//! WebSocket takes the session back out ([`TlsStream::into_parts`]) and runs on the same
//! socket loop as plain connections (`crate::socket`).
//!
//! Its buffers live only while there is something in them: a request's records until
//! they are decrypted and read, a response's until the kernel takes it.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use super::session::{Accepted, Session};

/// How much one read from the socket asks for.
const READ_SIZE: usize = 16 * 1024 + 512;

/// Sealed bytes kept for the socket before a write waits for it to drain.
const WRITE_BACKLOG: usize = 64 * 1024;

/// A TLS connection after its handshake, as a byte stream.
#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    session: Session,
    /// Bytes read and not yet decrypted (a record not yet complete).
    sealed_in: Vec<u8>,
    /// Plaintext decrypted and not yet read, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// Sealed bytes not yet written, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// The client closed its side.
    eof: bool,
    /// Our `close_notify` is sealed.
    closing: bool,
}

/// A [`TlsStream`] taken apart, for the WebSocket loop.
#[derive(Debug)]
pub struct Parts {
    /// The socket.
    pub tcp: TcpStream,
    /// The session.
    pub session: Session,
    /// Bytes read and not yet decrypted.
    pub sealed_in: Vec<u8>,
    /// Plaintext decrypted and not yet read.
    pub plain: Vec<u8>,
    /// Sealed bytes not yet written.
    pub out: Vec<u8>,
}

impl TlsStream {
    /// The stream after a handshake on `tcp`.
    pub fn new(tcp: TcpStream, session: Session, accepted: Accepted) -> Self {
        Self {
            tcp,
            session,
            sealed_in: accepted.unread,
            plain: accepted.plain,
            plain_at: 0,
            out: Vec::new(),
            out_at: 0,
            eof: false,
            closing: false,
        }
    }

    /// The session, for what the handshake agreed (ALPN).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Takes the stream apart, keeping every byte in flight.
    pub fn into_parts(self) -> Parts {
        let mut plain = self.plain;
        plain.drain(..self.plain_at);
        let mut out = self.out;
        out.drain(..self.out_at);
        Parts {
            tcp: self.tcp,
            session: self.session,
            sealed_in: self.sealed_in,
            plain,
            out,
        }
    }

    /// Decrypts what was read; what the session must answer goes to `out`.
    fn open(&mut self) -> io::Result<()> {
        if self.sealed_in.is_empty() {
            return Ok(());
        }
        if self.plain_at == self.plain.len() {
            self.plain.clear();
            self.plain_at = 0;
        }
        let plain = &mut self.plain;
        let opened = self.session.open(
            &mut self.sealed_in,
            |bytes| plain.extend_from_slice(bytes),
            &mut self.out,
        )?;
        self.sealed_in.drain(..opened.consumed);
        if self.sealed_in.is_empty() {
            self.sealed_in = Vec::new();
        }
        self.eof |= opened.closed;
        Ok(())
    }

    /// Writes `out` until it is empty or the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.out.len() {
            match self.tcp.try_write(&self.out[self.out_at..]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.out = Vec::new();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.plain_at < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_at);
                buf.put_slice(&this.plain[this.plain_at..this.plain_at + n]);
                this.plain_at += n;
                if this.plain_at == this.plain.len() {
                    this.plain = Vec::new();
                    this.plain_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            this.open()?;
            if this.out_at < this.out.len() {
                // An answer of the session's own (a key update): out before reading on.
                ready!(this.poll_drain(cx))?;
            }
            if this.plain_at < this.plain.len() || this.eof {
                continue;
            }
            let start = this.sealed_in.len();
            this.sealed_in.resize(start + READ_SIZE, 0);
            let read = this.tcp.try_read(&mut this.sealed_in[start..]);
            this.sealed_in
                .truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                // The socket ended without `close_notify`: an end all the same.
                Ok(0) => this.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() - this.out_at >= WRITE_BACKLOG {
            ready!(this.poll_drain(cx))?;
        }
        let n = buf.len().min(WRITE_BACKLOG);
        this.session.seal(&buf[..n], &mut this.out)?;
        // Start the write now; what the socket does not take waits for the next call or
        // the flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.session.close(&mut this.out);
            this.closing = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
