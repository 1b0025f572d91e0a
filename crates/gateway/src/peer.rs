//! A listener that keeps the first request head of every connection as received, so that
//! `$connect` can pass the handshake's header names as the client spelt them (`Origin`,
//! `Sec-WebSocket-Key`), as API Gateway does; hyper keeps only lowercased names.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    extract::connect_info::Connected,
    http::HeaderMap,
    serve::{IncomingStream, Listener},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

/// The most bytes of a request head kept; a longer head is not kept at all.
const MAX_HEAD: usize = 16 * 1024;

/// A TCP listener whose connections keep their first request head.
#[derive(Debug)]
pub struct RecordingListener(pub TcpListener);

impl Listener for RecordingListener {
    type Io = RecordingStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        let _ = io.set_nodelay(true);
        (
            RecordingStream {
                inner: io,
                head: Arc::default(),
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The first request head of a connection, filled as it is read.
#[derive(Debug, Default)]
struct Head {
    bytes: Mutex<Vec<u8>>,
    done: AtomicBool,
}

impl Head {
    fn record(&self, read: &[u8]) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        let start = bytes.len().saturating_sub(3);
        bytes.extend_from_slice(read);
        if let Some(end) = bytes[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            bytes.truncate(start + end + 4);
            self.done.store(true, Ordering::Relaxed);
        } else if bytes.len() > MAX_HEAD {
            bytes.clear();
            self.done.store(true, Ordering::Relaxed);
        }
    }
}

/// A TCP stream that records its first request head.
#[derive(Debug)]
pub struct RecordingStream {
    inner: TcpStream,
    head: Arc<Head>,
}

impl AsyncRead for RecordingStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && !this.head.done.load(Ordering::Relaxed) {
            let read = &buf.filled()[before..];
            if read.is_empty() {
                this.head.done.store(true, Ordering::Relaxed);
            } else {
                this.head.record(read);
            }
        }
        polled
    }
}

impl AsyncWrite for RecordingStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The client of a request: its address, and its connection's first request head.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    head: Arc<Head>,
}

impl Peer {
    /// A peer with no recorded head (its headers are spelt in title case).
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            head: Arc::default(),
        }
    }

    /// The request's headers in order, named as the client wrote them when the recorded
    /// head is this request's (the same headers and values); otherwise in title case
    /// (`sec-websocket-key` becomes `Sec-Websocket-Key`).
    pub fn headers(&self, request: &HeaderMap) -> Vec<(String, String)> {
        let value =
            |v: &axum::http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let parsed: Vec<(String, String)> = request
            .iter()
            .map(|(name, v)| (title_case(name.as_str()), value(v)))
            .collect();
        if let Some(raw) = self.raw_headers() {
            let key = |pairs: &[(String, String)]| {
                let mut k: Vec<(String, String)> = pairs
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                    .collect();
                k.sort();
                k
            };
            if key(&raw) == key(&parsed) {
                return raw;
            }
        }
        parsed
    }

    /// The recorded head's header lines, if a whole head was recorded.
    fn raw_headers(&self) -> Option<Vec<(String, String)>> {
        if !self.head.done.load(Ordering::Relaxed) {
            return None;
        }
        let bytes = self
            .head
            .bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.split("\r\n");
        lines.next()?; // the request line
        let mut headers = Vec::new();
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':')?;
            headers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
        }
        (!headers.is_empty()).then_some(headers)
    }
}

impl Connected<IncomingStream<'_, RecordingListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, RecordingListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            head: stream.io().head.clone(),
        }
    }
}

/// `sec-websocket-key` as `Sec-Websocket-Key`.
fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn peer_with(head: &[u8]) -> Peer {
        let peer = Peer::new("127.0.0.1:1".parse().unwrap());
        for chunk in head.chunks(7) {
            peer.head.record(chunk);
        }
        peer
    }

    #[test]
    fn header_names_keep_the_clients_spelling() {
        let peer = peer_with(
            b"GET /ws HTTP/1.1\r\nHost: h:1\r\nOrigin: http://o\r\nX-Two: a\r\nx-two: b\r\n\r\nBODY",
        );
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static("h:1"));
        map.insert("origin", HeaderValue::from_static("http://o"));
        map.append("x-two", HeaderValue::from_static("a"));
        map.append("x-two", HeaderValue::from_static("b"));
        let names: Vec<String> = peer.headers(&map).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", "Origin", "X-Two", "x-two"]);
    }

    #[test]
    fn another_requests_head_is_not_used() {
        let peer = peer_with(b"GET / HTTP/1.1\r\nhost: h\r\n\r\n");
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static("h"));
        map.insert("sec-websocket-key", HeaderValue::from_static("k"));
        let headers = peer.headers(&map);
        assert_eq!(
            headers,
            [
                ("Host".to_owned(), "h".to_owned()),
                ("Sec-Websocket-Key".to_owned(), "k".to_owned())
            ]
        );
    }
}
