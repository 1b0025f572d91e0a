//! The frame [`Reader`] against tungstenite's server-side reader, on arbitrary client byte
//! streams cut into arbitrary reads: both must see the same messages, and fail on the same
//! frame for the same reason (size, UTF-8, protocol).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::io::{self, Read, Write};

use proptest::prelude::*;
use tungstenite::{
    Message,
    error::{CapacityError, Error, ProtocolError},
    protocol::{Role, WebSocket, WebSocketConfig, frame::coding::CloseCode},
};

use super::frame::{Event, Fault, Reader};

/// The size limit both readers get: above the 125 bytes of a control frame, below what the
/// generated frames reach, so both sides of it are tried.
const MAX: usize = 200;

/// What a reader saw: the events, then how it stopped.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    events: Vec<Event>,
    end: End,
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Nothing wrong so far: it waits for more bytes (or the client closed).
    More,
    TooLarge,
    InvalidUtf8,
    Protocol,
}

/// One client frame as the generator describes it.
#[derive(Debug, Clone)]
struct Spec {
    fin: bool,
    rsv: bool,
    opcode: u8,
    masked: bool,
    payload: Vec<u8>,
}

fn encode(spec: &Spec, out: &mut Vec<u8>) {
    out.push(u8::from(spec.fin) << 7 | u8::from(spec.rsv) << 6 | spec.opcode);
    let mask_bit = u8::from(spec.masked) << 7;
    let n = spec.payload.len();
    if n < 126 {
        out.push(mask_bit | u8::try_from(n).unwrap());
    } else {
        out.push(mask_bit | 0x7E);
        out.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
    }
    let mask = [0xA5, 0x0F, 0x3C, 0x81];
    if spec.masked {
        out.extend_from_slice(&mask);
        out.extend(
            spec.payload
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4]),
        );
    } else {
        out.extend_from_slice(&spec.payload);
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    let opcode = prop_oneof![
        6 => Just(0x1u8),
        3 => Just(0x0),
        2 => Just(0x2),
        2 => Just(0x8),
        2 => Just(0x9),
        1 => Just(0xA),
        1 => 0u8..16,
    ];
    let payload = prop_oneof![
        4 => "[a-zé€ {}\":,]{0,40}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
        1 => proptest::collection::vec(any::<u8>(), 120..260),
        1 => Just(vec![0x03, 0xE8, b'o', b'k']),
        1 => Just(vec![0xE2, 0x82]),
    ];
    (
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.03),
        opcode,
        prop::bool::weighted(0.97),
        payload,
    )
        .prop_map(|(fin, rsv, opcode, masked, payload)| Spec {
            fin,
            rsv,
            opcode,
            masked,
            payload,
        })
}

/// Our reader, fed `bytes` in reads of the given sizes.
fn ours(bytes: &[u8], cuts: &[usize]) -> Seen {
    let mut reader = Reader::new(MAX);
    let mut events = Vec::new();
    let mut at = 0;
    let mut sizes = cuts.iter().copied().cycle();
    while at < bytes.len() {
        let n = sizes.next().unwrap_or(1).clamp(1, bytes.len() - at);
        reader.take(&bytes[at..at + n]);
        at += n;
        while let Some(event) = reader.next() {
            match event {
                Ok(Event::Close(code)) => {
                    events.push(Event::Close(code));
                    return Seen {
                        events,
                        end: End::More,
                    };
                }
                Ok(event) => events.push(event),
                Err(fault) => {
                    let end = match fault {
                        Fault::TooLarge => End::TooLarge,
                        Fault::InvalidUtf8 => End::InvalidUtf8,
                        Fault::Protocol(_) => End::Protocol,
                    };
                    return Seen { events, end };
                }
            }
        }
        reader.settle();
    }
    Seen {
        events,
        end: End::More,
    }
}

/// The client's bytes in reads of the given sizes, then "no more yet"; writes go nowhere.
struct Chunks<'a> {
    bytes: &'a [u8],
    sizes: std::iter::Cycle<std::iter::Copied<std::slice::Iter<'a, usize>>>,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.bytes.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self
            .sizes
            .next()
            .unwrap_or(1)
            .clamp(1, self.bytes.len())
            .min(buf.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// tungstenite's reader (server role, the same limit) on the same reads.
fn theirs(bytes: &[u8], cuts: &[usize]) -> Seen {
    let stream = Chunks {
        bytes,
        sizes: cuts.iter().copied().cycle(),
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX))
        .max_frame_size(Some(MAX));
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(config));
    let mut events = Vec::new();
    loop {
        let end = match ws.read() {
            Ok(Message::Text(text)) => {
                events.push(Event::Text(text.as_str().to_owned()));
                continue;
            }
            Ok(Message::Binary(_)) => {
                events.push(Event::Binary);
                continue;
            }
            Ok(Message::Ping(payload)) => {
                events.push(Event::Ping(payload.to_vec()));
                continue;
            }
            Ok(Message::Pong(_)) => {
                events.push(Event::Pong);
                continue;
            }
            // A close code no endpoint may send: tungstenite answers 1002 "Protocol
            // violation" in the client's stead (a failure, as ours says).
            Ok(Message::Close(Some(frame)))
                if frame.code == CloseCode::Protocol && frame.reason == "Protocol violation" =>
            {
                End::Protocol
            }
            Ok(Message::Close(frame)) => {
                events.push(Event::Close(frame.map(|f| u16::from(f.code))));
                End::More
            }
            Ok(Message::Frame(_)) => unreachable!("only written, never read"),
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => End::More,
            Err(Error::Capacity(CapacityError::MessageTooLong { .. })) => End::TooLarge,
            Err(Error::Utf8(_)) => End::InvalidUtf8,
            Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => End::More,
            Err(Error::Protocol(_)) => End::Protocol,
            Err(e) => panic!("unexpected error from tungstenite: {e:?}"),
        };
        return Seen { events, end };
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_reader_agrees_with_tungstenite(
        specs in proptest::collection::vec(spec(), 1..8),
        tail in proptest::collection::vec(any::<u8>(), 0..4),
        cuts in proptest::collection::vec(1usize..64, 1..6),
    ) {
        let mut bytes = Vec::new();
        for spec in &specs {
            encode(spec, &mut bytes);
        }
        bytes.extend_from_slice(&tail);
        // Zeros after: a frame cut short is completed, then empty unmasked continuation
        // frames follow, which both must refuse. Every stream thus ends in a fault, and
        // when a reader refuses a frame (ours at its header, tungstenite once it is whole)
        // cannot make them differ.
        bytes.extend_from_slice(&[0; MAX + 8]);
        prop_assert_eq!(ours(&bytes, &cuts), theirs(&bytes, &cuts), "bytes {:02x?}", bytes);
    }
}
