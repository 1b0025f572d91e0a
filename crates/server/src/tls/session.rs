//! One TLS connection as rustls's sans-IO, unbuffered state ([`UnbufferedServerConnection`]):
//! the caller owns every buffer. [`Session::accept`] runs the handshake on a socket; after
//! it, [`Session::open`] decrypts the records in bytes the caller read and
//! [`Session::seal`] encrypts plaintext into bytes the caller writes. Between the two the
//! session keeps only rustls's keys and state: no read or write buffer, so an idle TLS
//! WebSocket costs little more than a plain one (docs/benchmarks.md).
//!
//! rustls's buffered `ServerConnection` keeps a 4 KiB read buffer per connection for as long
//! as the connection lives; tokio-rustls adds its own. That is why this module exists.

use std::{io, sync::Arc};

use rustls::{
    ServerConfig,
    server::UnbufferedServerConnection,
    unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus},
};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

/// The largest handshake flight kept while it is incomplete (rustls's own bound).
const MAX_HANDSHAKE_BYTES: usize = 64 * 1024 + 5;

/// How much one read during the handshake asks for.
const HANDSHAKE_READ: usize = 4096;

/// A TLS record's largest payload, and what sealing adds to each record at most (TLS 1.3:
/// header 5, content type 1, tag 16; TLS 1.2 with an explicit nonce: 5 + 8 + 16).
const RECORD_PAYLOAD: usize = 16 * 1024;
const RECORD_OVERHEAD: usize = 29;

/// A TLS connection whose handshake is done.
pub struct Session {
    conn: UnbufferedServerConnection,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

/// What a handshake leaves behind besides the session.
#[derive(Debug, Default)]
pub struct Accepted {
    /// Bytes the client sent after its handshake, not yet decrypted.
    pub unread: Vec<u8>,
    /// Plaintext the client sent with its handshake's last flight (the first records of
    /// a request often come with the client's `Finished`), decrypted already.
    pub plain: Vec<u8>,
}

/// What [`Session::open`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Bytes of the input consumed: whole records. The rest (a record not yet complete)
    /// must be given again, in front of what is read next.
    pub consumed: usize,
    /// The client closed its side (`close_notify`): nothing more will come.
    pub closed: bool,
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Session {
    /// Runs the server's side of a handshake on `tcp` (no time limit: the caller sets one).
    ///
    /// # Errors
    /// If the socket fails or closes, or the client's handshake is refused.
    pub async fn accept(
        config: Arc<ServerConfig>,
        tcp: &mut TcpStream,
    ) -> io::Result<(Self, Accepted)> {
        let mut conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut incoming = Vec::new();
        let mut outgoing = Vec::new();
        let mut plain = Vec::new();
        loop {
            let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut incoming);
            let step = match state.map_err(invalid)? {
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(|buf| data.encode(buf), &mut outgoing)?;
                    Step::Again
                }
                ConnectionState::TransmitTlsData(data) => {
                    data.done();
                    Step::Transmit
                }
                ConnectionState::BlockedHandshake => Step::Read,
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        plain.extend_from_slice(record.map_err(invalid)?.payload);
                    }
                    Step::Again
                }
                ConnectionState::WriteTraffic(_) => Step::Done,
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                // Early data is off (`max_early_data_size` 0), and the state is
                // non-exhaustive.
                _ => return Err(invalid("unexpected TLS state in the handshake")),
            };
            incoming.drain(..discard);
            match step {
                Step::Again => {}
                Step::Transmit => {
                    tcp.write_all(&outgoing).await?;
                    outgoing.clear();
                }
                Step::Read => {
                    if incoming.len() >= MAX_HANDSHAKE_BYTES {
                        return Err(invalid("handshake too large"));
                    }
                    let start = incoming.len();
                    incoming.resize(start + HANDSHAKE_READ, 0);
                    let n = loop {
                        tcp.readable().await?;
                        match tcp.try_read(&mut incoming[start..]) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(e),
                        }
                    };
                    incoming.truncate(start + n);
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Step::Done => {
                    // Whatever rustls queued last (the tickets) goes out with the handshake.
                    if !outgoing.is_empty() {
                        tcp.write_all(&outgoing).await?;
                    }
                    incoming.shrink_to_fit();
                    return Ok((
                        Self { conn },
                        Accepted {
                            unread: incoming,
                            plain,
                        },
                    ));
                }
            }
        }
    }

    /// The protocol agreed by ALPN, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Decrypts the whole records at the front of `incoming` (in place; `incoming` is
    /// scratch afterwards), handing each record's plaintext to `plain`. TLS messages the
    /// session must answer (a key update, an alert) are appended, sealed, to `outgoing`.
    ///
    /// # Errors
    /// If a record is malformed or fails to decrypt, or the client sent a fatal alert: the
    /// connection cannot go on.
    pub fn open(
        &mut self,
        incoming: &mut [u8],
        mut plain: impl FnMut(&[u8]),
        outgoing: &mut Vec<u8>,
    ) -> io::Result<Opened> {
        let mut consumed = 0;
        loop {
            let UnbufferedStatus { discard, state } =
                self.conn.process_tls_records(&mut incoming[consumed..]);
            let done = match state.map_err(invalid)? {
                ConnectionState::ReadTraffic(mut records) => {
                    while let Some(record) = records.next_record() {
                        plain(record.map_err(invalid)?.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(|buf| data.encode(buf), outgoing)?;
                    None
                }
                ConnectionState::TransmitTlsData(data) => {
                    // What was encoded is in `outgoing`; the caller writes it.
                    data.done();
                    None
                }
                ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake => Some(false),
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(true),
                _ => return Err(invalid("unexpected TLS state")),
            };
            consumed += discard;
            if let Some(closed) = done {
                return Ok(Opened { consumed, closed });
            }
        }
    }

    /// Encrypts `plain` (split into records as needed) and appends it to `outgoing`.
    ///
    /// # Errors
    /// If the session cannot send any more (closed, or its keys exhausted).
    pub fn seal(&mut self, plain: &[u8], outgoing: &mut Vec<u8>) -> io::Result<()> {
        loop {
            let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
            match state.map_err(invalid)? {
                ConnectionState::WriteTraffic(mut traffic) => {
                    let records = plain.len().div_ceil(RECORD_PAYLOAD).max(1);
                    return encrypt(
                        plain.len() + records * RECORD_OVERHEAD,
                        |buf| traffic.encrypt(plain, buf),
                        outgoing,
                    );
                }
                // A message of the session's own, queued before this one (an alert, a key
                // update): it goes first, in order.
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(|buf| data.encode(buf), outgoing)?;
                }
                ConnectionState::TransmitTlsData(data) => data.done(),
                _ => return Err(io::ErrorKind::BrokenPipe.into()),
            }
        }
    }

    /// Appends a sealed `close_notify` alert to `outgoing`, best effort.
    pub fn close(&mut self, outgoing: &mut Vec<u8>) {
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut []);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
            let _ = encrypt(64, |buf| traffic.queue_close_notify(buf), outgoing);
        }
    }
}

enum Step {
    Again,
    Transmit,
    Read,
    Done,
}

/// Appends what `write` (a sealed record) produces to `outgoing`.
fn encrypt(
    guess: usize,
    write: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    fill(
        guess,
        write,
        |e| match e {
            EncryptError::InsufficientSize(s) => Some(s.required_size),
            EncryptError::EncryptExhausted => None,
        },
        outgoing,
    )
}

/// Appends what `write` (a message of the session's own) produces to `outgoing`.
fn encode(
    write: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    fill(
        256,
        write,
        |e| match e {
            EncodeError::InsufficientSize(s) => Some(s.required_size),
            EncodeError::AlreadyEncoded => None,
        },
        outgoing,
    )
}

/// Appends what `write` produces to `outgoing`, starting from `guess` bytes of room and
/// growing to the size rustls asks for (`required`); on any other error `outgoing` is
/// left as it was.
fn fill<E: std::fmt::Display>(
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    let start = outgoing.len();
    let mut want = guess;
    loop {
        outgoing.resize(start + want, 0);
        match write(&mut outgoing[start..]) {
            Ok(n) => {
                outgoing.truncate(start + n);
                return Ok(());
            }
            Err(e) => match required(&e) {
                Some(size) if size > want => want = size,
                _ => {
                    outgoing.truncate(start);
                    return Err(io::Error::other(e.to_string()));
                }
            },
        }
    }
}
