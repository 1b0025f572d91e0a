//! WebSocket frames (RFC 6455, section 5) for [`super`]: a [`Reader`] that holds bytes only
//! while a frame is incomplete, and the header of a server frame.
//!
//! Headers are parsed by tungstenite's [`FrameHeader`]; the rules a server must enforce on
//! what a client sends (masking, control frames, fragments, UTF-8, the size limit) are here.

use std::io::{self, Cursor};

use tokio::{io::Interest, net::TcpStream};

use super::scratch::Scratch;
use tungstenite::protocol::frame::{
    FrameHeader,
    coding::{CloseCode, Control, Data, OpCode},
};

/// Something the client sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A whole text message (fragments joined), valid UTF-8.
    Text(String),
    /// A whole binary message (its bytes are not kept: meshcall refuses binary).
    Binary,
    /// A ping, with its payload for the pong.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame, with its status code if it had one.
    Close(Option<u16>),
}

/// Why the client's bytes cannot be read on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A message over the size limit (answered with 1009).
    TooLarge,
    /// A text message, or a close reason, that is not UTF-8 (1007).
    InvalidUtf8,
    /// Anything else RFC 6455 forbids (1002).
    Protocol(&'static str),
}

/// The longest header a client frame can have: 2 bytes, 8 of length, 4 of mask.
const MAX_HEADER: usize = 14;

/// How much one read may take: a busy connection's frames come several to a system call.
/// The buffer read into is the worker thread's ([`Scratch::Read`]), lent for one pass.
const READ_AT_ONCE: usize = super::scratch::LENT;

/// A frame in progress up to this size moves into the lent buffer for the next read; a
/// larger one is read into its own buffer, the rest of the frame only (so a client dribbling
/// a large frame does not make the server copy it over and over).
const MOVE_AT_MOST: usize = 4 * 1024;

/// Reads a client's frames. Between passes ([`Reader::settle`]) it holds only the bytes of
/// a frame not yet complete (and the fragments of a message not yet complete): between
/// messages it owns no memory, so an idle connection costs no read buffer. While reading it
/// borrows its thread's [`READ_AT_ONCE`] buffer.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Vec<u8>,
    /// `buf[..start]` is parsed.
    start: usize,
    /// Whether `buf` is the thread's lent buffer, to give back at [`Reader::settle`].
    lent: bool,
    /// Fragments of a message in progress: its bytes, and whether it is text.
    message: Option<(Vec<u8>, bool)>,
    /// The largest message accepted, in bytes.
    max: usize,
}

impl Reader {
    /// A reader of messages up to `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            lent: false,
            message: None,
            max,
        }
    }

    /// Takes bytes read elsewhere (what hyper read past the upgrade request).
    pub(crate) fn take(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes bytes decrypted in this pass (TLS), into the lent buffer as [`Reader::read_from`]
    /// reads; [`Reader::settle`] ends the pass.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if !self.lent {
            let mut lent = borrow();
            lent.extend_from_slice(&self.buf[self.start..]);
            self.buf = lent;
            self.start = 0;
            self.lent = true;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Whether it holds no bytes at all (so owns no buffer).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.capacity() == 0 && self.message.is_none() && !self.lent
    }

    /// Ends a pass over what was read: keeps only the unparsed bytes, in a buffer of their
    /// own size, and gives the lent buffer back to the thread.
    pub(crate) fn settle(&mut self) {
        let rest = self.buf.len() - self.start;
        if self.lent {
            let kept = if rest == 0 {
                Vec::new()
            } else {
                self.buf[self.start..].to_vec()
            };
            let lent = std::mem::replace(&mut self.buf, kept);
            self.lent = false;
            give_back(lent);
        } else if rest == 0 {
            self.buf = Vec::new();
        } else if self.start > 0 {
            self.buf.drain(..self.start);
        }
        self.start = 0;
    }

    /// Reads what `stream` has, without waiting: `Ok(0)` at the end of the stream,
    /// `WouldBlock` if nothing is there yet. Reads into the thread's buffer as much as it
    /// takes (at least the rest of the frame in progress), or only the rest of a large
    /// frame in progress into that frame's own buffer.
    pub(crate) fn read_from(&mut self, stream: &TcpStream) -> io::Result<usize> {
        if !self.lent && self.buf.len() - self.start <= MOVE_AT_MOST {
            let mut lent = borrow();
            lent.extend_from_slice(&self.buf[self.start..]);
            self.buf = lent;
            self.start = 0;
            self.lent = true;
        }
        let rest = self.wanted().unwrap_or(MAX_HEADER).max(1);
        let want = if self.lent {
            rest.max(READ_AT_ONCE.saturating_sub(self.buf.len()))
        } else {
            rest
        };
        if self.start > 0 && self.buf.capacity() - self.buf.len() < want {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(want);
        let room = self.buf.capacity() - self.buf.len();
        // A read that comes back short has emptied the socket's buffer: tell tokio so (by
        // answering `WouldBlock` from `try_io`), and the next wait goes straight to epoll
        // instead of through one more `read` that finds nothing. tokio clears the
        // readiness only if no new data was signalled meanwhile.
        let mut got = 0;
        let read = stream.try_io(Interest::READABLE, || {
            got = stream.try_read_buf(&mut self.buf)?;
            if got > 0 && got < room {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(got)
            }
        });
        match read {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            read => read,
        }
    }

    /// Bytes still missing from the frame in progress, when its header is complete.
    fn wanted(&self) -> Option<usize> {
        let pending = &self.buf[self.start..];
        let mut cursor = Cursor::new(pending);
        match FrameHeader::parse(&mut cursor) {
            Ok(Some((_, len))) => {
                let total = usize::try_from(cursor.position()).ok()? + usize::try_from(len).ok()?;
                // Over-long frames are refused by `next` before their payload is read.
                (total <= self.max + MAX_HEADER).then(|| total.saturating_sub(pending.len()))
            }
            _ => None,
        }
    }

    /// The next whole event in what was read, if any. After a fault nothing more should be
    /// read: the connection closes.
    pub(crate) fn next(&mut self) -> Option<Result<Event, Fault>> {
        loop {
            let (header, len, head) = {
                let mut cursor = Cursor::new(&self.buf[self.start..]);
                match FrameHeader::parse(&mut cursor) {
                    Ok(Some((header, len))) => (header, len, cursor.position()),
                    Ok(None) => return None,
                    // tungstenite refuses reserved opcodes here already.
                    Err(_) => {
                        return Some(Err(Fault::Protocol("malformed header or reserved opcode")));
                    }
                }
            };
            if let Err(fault) = self.check(&header, len) {
                return Some(Err(fault));
            }
            let head = usize::try_from(head).expect("a header is at most 14 bytes");
            let len = usize::try_from(len).expect("checked against the size limit");
            let at = self.start + head;
            if self.buf.len() < at + len {
                return None;
            }
            let payload = &mut self.buf[at..at + len];
            if let Some(mask) = header.mask {
                unmask(payload, mask);
            }
            let payload = &self.buf[at..at + len];
            let event = match header.opcode {
                OpCode::Control(Control::Ping) => Some(Ok(Event::Ping(payload.to_vec()))),
                OpCode::Control(Control::Pong) => Some(Ok(Event::Pong)),
                OpCode::Control(Control::Close) => Some(close(payload)),
                OpCode::Data(Data::Continue) => {
                    let (bytes, text) = self.message.as_mut().expect("checked: a message is open");
                    bytes.extend_from_slice(payload);
                    if header.is_final {
                        let (bytes, text) = self.message.take().expect("open");
                        Some(whole(bytes, text))
                    } else if *text && !utf8_so_far(bytes) {
                        Some(Err(Fault::InvalidUtf8))
                    } else {
                        None
                    }
                }
                OpCode::Data(data) => {
                    let text = data == Data::Text;
                    if header.is_final {
                        Some(whole(payload.to_vec(), text))
                    } else if text && !utf8_so_far(payload) {
                        // As tungstenite does: a text message fails at its first fragment
                        // that cannot begin valid UTF-8, not only once it is whole.
                        Some(Err(Fault::InvalidUtf8))
                    } else {
                        self.message = Some((payload.to_vec(), text));
                        None
                    }
                }
                OpCode::Control(Control::Reserved(_)) => unreachable!("refused by check"),
            };
            self.start = at + len;
            if event.is_some() {
                return event;
            }
        }
    }

    /// The rules on a client frame, checked from its header alone.
    fn check(&self, header: &FrameHeader, len: u64) -> Result<(), Fault> {
        // The size first, as tungstenite checks it (socket/differential.rs holds the two
        // readers to the same answers).
        if len > self.max as u64 {
            return Err(Fault::TooLarge);
        }
        if header.mask.is_none() {
            return Err(Fault::Protocol("client frames must be masked"));
        }
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Fault::Protocol(
                "reserved bits set (no extension was agreed)",
            ));
        }
        match header.opcode {
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                Err(Fault::Protocol("malformed header or reserved opcode"))
            }
            OpCode::Control(_) if !header.is_final || len > 125 => Err(Fault::Protocol(
                "control frames are single frames of at most 125 bytes",
            )),
            OpCode::Data(Data::Continue) => match &self.message {
                None => Err(Fault::Protocol("a continuation frame without a message")),
                Some((bytes, _)) if bytes.len() as u64 + len > self.max as u64 => {
                    Err(Fault::TooLarge)
                }
                Some(_) => Ok(()),
            },
            OpCode::Data(_) if self.message.is_some() => Err(Fault::Protocol(
                "a new message before the last one's final fragment",
            )),
            OpCode::Data(_) if len > self.max as u64 => Err(Fault::TooLarge),
            OpCode::Control(_) | OpCode::Data(_) => Ok(()),
        }
    }
}

/// The thread's read buffer (a new one if it is lent out already).
fn borrow() -> Vec<u8> {
    Scratch::Read.borrow()
}

fn give_back(buf: Vec<u8>) {
    Scratch::Read.give_back(buf);
}

/// Whether `bytes` are UTF-8 but maybe for a character cut at the end (a fragment's).
fn utf8_so_far(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fn whole(bytes: Vec<u8>, text: bool) -> Result<Event, Fault> {
    if !text {
        return Ok(Event::Binary);
    }
    String::from_utf8(bytes)
        .map(Event::Text)
        .map_err(|_| Fault::InvalidUtf8)
}

fn close(payload: &[u8]) -> Result<Event, Fault> {
    match payload {
        [] => Ok(Event::Close(None)),
        [_] => Err(Fault::Protocol("a close frame with a one-byte body")),
        [a, b, reason @ ..] => {
            std::str::from_utf8(reason).map_err(|_| Fault::InvalidUtf8)?;
            let code = u16::from_be_bytes([*a, *b]);
            // RFC 6455, 7.4: a code no endpoint may send (0-999, 1004-1006, 1014-2999,
            // 5000 and up) fails the connection rather than being echoed back.
            if !CloseCode::from(code).is_allowed() {
                return Err(Fault::Protocol(
                    "a close frame with a code no endpoint may send",
                ));
            }
            Ok(Event::Close(Some(code)))
        }
    }
}

/// Removes the client's mask (XOR with the 4-byte key, repeated).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let key = u32::from_ne_bytes(mask);
    let mut words = payload.chunks_exact_mut(4);
    for word in &mut words {
        let value = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]) ^ key;
        word.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// The header of an unmasked, final server frame of `len` payload bytes, and its length.
pub(crate) fn header(opcode: OpCode, len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    out[0] = 0x80 | u8::from(opcode);
    let head = if len < 126 {
        out[1] = u8::try_from(len).expect("below 126");
        2
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (out, head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: FIN as given, `opcode`, masked with a fixed key.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | u8::try_from(n).unwrap_or(0)),
            n if n <= 0xFFFF => {
                out.push(0x80 | 0x7E);
                out.extend_from_slice(&u16::try_from(n).unwrap_or(0).to_be_bytes());
            }
            n => {
                out.push(0x80 | 0x7F);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Events from `bytes`, up to and including the first fault (after which the server
    /// reads no more).
    fn feed(reader: &mut Reader, bytes: &[u8]) -> Vec<Result<Event, Fault>> {
        reader.take(bytes);
        let mut events = Vec::new();
        while let Some(event) = reader.next() {
            let fault = event.is_err();
            events.push(event);
            if fault {
                break;
            }
        }
        reader.settle();
        events
    }

    #[test]
    fn a_text_frame_arriving_byte_by_byte_is_one_message_and_nothing_is_kept_after() {
        let mut reader = Reader::new(1024);
        let bytes = frame(true, 0x1, "héllo, room".as_bytes());
        let mut events = Vec::new();
        for b in &bytes {
            events.extend(feed(&mut reader, std::slice::from_ref(b)));
        }
        assert_eq!(events, vec![Ok(Event::Text("héllo, room".into()))]);
        assert!(reader.is_empty(), "no buffer kept between messages");
    }

    #[test]
    fn several_frames_in_one_read_come_out_in_order() {
        let mut reader = Reader::new(1024);
        let mut bytes = frame(true, 0x9, b"p");
        bytes.extend(frame(true, 0x1, b"one"));
        bytes.extend(frame(true, 0xA, b""));
        bytes.extend(frame(true, 0x1, &[b'x'; 300]));
        bytes.extend(frame(true, 0x8, &[0x03, 0xE8, b'o', b'k']));
        let events = feed(&mut reader, &bytes);
        assert_eq!(
            events,
            vec![
                Ok(Event::Ping(b"p".to_vec())),
                Ok(Event::Text("one".into())),
                Ok(Event::Pong),
                Ok(Event::Text("x".repeat(300))),
                Ok(Event::Close(Some(1000))),
            ]
        );
    }

    #[test]
    fn fragments_are_joined_and_a_ping_may_come_between_them() {
        let mut reader = Reader::new(1024);
        let mut bytes = frame(false, 0x1, b"hel");
        bytes.extend(frame(true, 0x9, b""));
        bytes.extend(frame(false, 0x0, b"lo "));
        bytes.extend(frame(true, 0x0, b"there"));
        let events = feed(&mut reader, &bytes);
        assert_eq!(
            events,
            vec![
                Ok(Event::Ping(vec![])),
                Ok(Event::Text("hello there".into()))
            ]
        );
        assert!(reader.is_empty());
    }

    #[test]
    fn the_size_limit_counts_whole_messages_and_is_checked_before_the_payload_comes() {
        let mut reader = Reader::new(100);
        assert_eq!(
            feed(&mut reader, &frame(true, 0x1, &[b'a'; 100])),
            vec![Ok(Event::Text("a".repeat(100)))]
        );
        // Only the header of a 101-byte frame: refused at once.
        let over = frame(true, 0x1, &[b'a'; 101]);
        assert_eq!(feed(&mut reader, &over[..8]), vec![Err(Fault::TooLarge)]);

        let mut reader = Reader::new(100);
        let mut bytes = frame(false, 0x1, &[b'a'; 60]);
        bytes.extend(frame(true, 0x0, &[b'a'; 41]));
        assert_eq!(feed(&mut reader, &bytes), vec![Err(Fault::TooLarge)]);
    }

    #[test]
    fn what_rfc_6455_forbids_is_a_fault() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        let cases: Vec<(Vec<u8>, Fault)> = vec![
            (
                unmasked.to_vec(),
                Fault::Protocol("client frames must be masked"),
            ),
            (
                frame(true, 0x1 | 0x40, b"x"),
                Fault::Protocol("reserved bits set (no extension was agreed)"),
            ),
            (
                frame(true, 0x3, b"x"),
                Fault::Protocol("malformed header or reserved opcode"),
            ),
            (
                frame(true, 0xB, b"x"),
                Fault::Protocol("malformed header or reserved opcode"),
            ),
            (
                frame(false, 0x9, b"x"),
                Fault::Protocol("control frames are single frames of at most 125 bytes"),
            ),
            (
                frame(true, 0x9, &[0; 126]),
                Fault::Protocol("control frames are single frames of at most 125 bytes"),
            ),
            (
                frame(true, 0x0, b"x"),
                Fault::Protocol("a continuation frame without a message"),
            ),
            (frame(true, 0x1, &[0xC3, 0x28]), Fault::InvalidUtf8),
            (
                frame(true, 0x8, &[0x03]),
                Fault::Protocol("a close frame with a one-byte body"),
            ),
            (frame(true, 0x8, &[0x03, 0xE8, 0xFF]), Fault::InvalidUtf8),
        ];
        for (bytes, fault) in cases {
            let mut reader = Reader::new(1024);
            assert_eq!(feed(&mut reader, &bytes), vec![Err(fault)], "{bytes:02x?}");
        }
        let mut reader = Reader::new(1024);
        let mut bytes = frame(false, 0x1, b"a");
        bytes.extend(frame(true, 0x1, b"b"));
        assert_eq!(
            feed(&mut reader, &bytes),
            vec![Err(Fault::Protocol(
                "a new message before the last one's final fragment"
            ))]
        );
    }

    #[test]
    fn binary_messages_are_reported_without_their_bytes() {
        let mut reader = Reader::new(1024);
        assert_eq!(
            feed(&mut reader, &frame(true, 0x2, &[0, 1, 2])),
            vec![Ok(Event::Binary)]
        );
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        let text = OpCode::Data(Data::Text);
        assert_eq!(header(text, 5), ([0x81, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2));
        assert_eq!(header(text, 126).1, 4);
        assert_eq!(&header(text, 4096).0[..4], &[0x81, 126, 0x10, 0x00]);
        let (big, len) = header(text, 70_000);
        assert_eq!((big[1], len), (127, 10));
        assert_eq!(&big[2..10], &70_000u64.to_be_bytes());
    }

    #[test]
    fn unmasking_handles_every_length() {
        let mask = [1, 2, 3, 4];
        for n in 0..20 {
            let plain: Vec<u8> = (0..n).map(|i| u8::try_from(i * 7).unwrap_or(0)).collect();
            let mut masked: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            unmask(&mut masked, mask);
            assert_eq!(masked, plain);
        }
    }
}
