//! Each worker thread's buffers, lent to one connection at a time for one pass: what a
//! connection reads, decrypts or seals goes through them, so that between passes a
//! connection owns only the bytes it must keep (a frame or record not yet complete, bytes
//! the kernel has not taken yet).

use std::{cell::Cell, thread::LocalKey};

/// How much a lent buffer holds at least: one read takes up to this much.
pub(crate) const LENT: usize = 64 * 1024;

thread_local! {
    static READ: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static SEALED_IN: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static PLAIN_OUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static SEALED_OUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Which of the thread's buffers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scratch {
    /// WebSocket bytes read (plaintext), for [`super::frame::Reader`].
    Read,
    /// TLS records read, before they are decrypted.
    SealedIn,
    /// Frames gathered for sealing.
    PlainOut,
    /// Sealed frames, before the kernel takes them.
    SealedOut,
}

impl Scratch {
    fn key(self) -> &'static LocalKey<Cell<Vec<u8>>> {
        match self {
            Self::Read => &READ,
            Self::SealedIn => &SEALED_IN,
            Self::PlainOut => &PLAIN_OUT,
            Self::SealedOut => &SEALED_OUT,
        }
    }

    /// Lends the buffer, empty, with room for at least [`LENT`] bytes. A buffer already
    /// lent on this thread (a pass within a pass) is replaced by a new one.
    pub(crate) fn borrow(self) -> Vec<u8> {
        let buf = self.key().take();
        if buf.capacity() >= LENT {
            buf
        } else {
            Vec::with_capacity(LENT)
        }
    }

    /// Takes a lent buffer back; one grown past its size (a large frame) is freed
    /// instead, so that what a thread keeps stays at [`LENT`] a buffer.
    pub(crate) fn give_back(self, mut buf: Vec<u8>) {
        if buf.capacity() <= LENT {
            buf.clear();
            self.key().set(buf);
        }
    }
}
