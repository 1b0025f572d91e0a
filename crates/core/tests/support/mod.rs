//! Shared by the core's integration tests: a [`RecordingPusher`] that keeps every push in
//! order and can play a gone or failing connection, and a [`World`] that drives
//! [`Signalling`] over a [`MemoryStore`] synchronously.
//!
//! `MemoryStore` and `RecordingPusher` futures never pend, so every call is resolved with
//! `now_or_never` and no runtime is needed.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::{
    collections::HashSet,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use futures_util::FutureExt;
use meshcall_core::{
    Config, ConnectionStore, Delivery, MemoryStore, Outbound, Outcome, PushError, Pusher,
    Signalling, Suspension,
    protocol::{ConnectionId, RoomId},
};
use serde_json::Value;

/// Resolves a future that never pends (everything over `MemoryStore` and `RecordingPusher`).
pub(crate) fn ready<F: Future>(f: F) -> F::Output {
    f.now_or_never()
        .expect("MemoryStore and RecordingPusher futures never pend")
}

/// A fixed clock: the core only passes time through to the store.
pub(crate) fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub(crate) fn id(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

pub(crate) fn room(s: &str) -> RoomId {
    RoomId::parse(s).unwrap()
}

/// What became of one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Handed to the connection.
    Delivered,
    /// Answered [`Delivery::Gone`].
    Gone,
    /// Answered a [`PushError`].
    Failed,
}

/// One push the core made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Push {
    pub(crate) to: ConnectionId,
    pub(crate) frame: Outbound,
    pub(crate) fate: Fate,
}

/// A [`Pusher`] that records every push, in order. Connections marked gone answer
/// [`Delivery::Gone`] from then on; connections marked failing answer a [`PushError`].
#[derive(Debug, Default)]
pub(crate) struct RecordingPusher {
    pushes: Mutex<Vec<Push>>,
    gone: Mutex<HashSet<ConnectionId>>,
    failing: Mutex<HashSet<ConnectionId>>,
    probes: Mutex<Vec<ConnectionId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingPusher {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Every later push to `conn` answers `Gone`, as a closed socket or a 410 from API
    /// Gateway would.
    pub(crate) fn mark_gone(&self, conn: &ConnectionId) {
        lock(&self.gone).insert(conn.clone());
    }

    /// Every later push to `conn` fails with a transport error (the connection may still be
    /// there).
    pub(crate) fn mark_failing(&self, conn: &ConnectionId) {
        lock(&self.failing).insert(conn.clone());
    }

    /// Sockets probed so far, in order, without clearing them.
    pub(crate) fn probes(&self) -> Vec<ConnectionId> {
        lock(&self.probes).clone()
    }

    /// Sockets probed so far, in order; the record is cleared.
    pub(crate) fn take_probes(&self) -> Vec<ConnectionId> {
        std::mem::take(&mut *lock(&self.probes))
    }

    /// Every push so far, in order, without clearing them.
    pub(crate) fn pushes(&self) -> Vec<Push> {
        lock(&self.pushes).clone()
    }

    /// Every push so far, in order; the record is cleared.
    pub(crate) fn take(&self) -> Vec<Push> {
        std::mem::take(&mut *lock(&self.pushes))
    }

    /// Forgets everything pushed so far.
    pub(crate) fn clear(&self) {
        lock(&self.pushes).clear();
    }

    /// The frames `conn` received (delivered pushes), in order. Every push to `conn` is
    /// removed from the record; pushes to others are kept.
    pub(crate) fn drain(&self, conn: &ConnectionId) -> Vec<Outbound> {
        let mut pushes = lock(&self.pushes);
        let (mine, rest): (Vec<Push>, Vec<Push>) = pushes.drain(..).partition(|p| &p.to == conn);
        *pushes = rest;
        mine.into_iter()
            .filter(|p| p.fate == Fate::Delivered)
            .map(|p| p.frame)
            .collect()
    }

    /// As [`Self::drain`], each frame parsed as JSON (panics on a frame that is not JSON,
    /// such as a verbatim room message).
    pub(crate) fn drain_json(&self, conn: &ConnectionId) -> Vec<Value> {
        self.drain(conn)
            .iter()
            .map(|f| parse_json(&f.text))
            .collect()
    }
}

/// Parses a frame's text as JSON, naming the frame if it is not.
pub(crate) fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("frame {text:?} is not JSON: {e}"))
}

impl Pusher for RecordingPusher {
    async fn push(&self, to: &ConnectionId, frame: &Outbound) -> Result<Delivery, PushError> {
        let fate = if lock(&self.gone).contains(to) {
            Fate::Gone
        } else if lock(&self.failing).contains(to) {
            Fate::Failed
        } else {
            Fate::Delivered
        };
        lock(&self.pushes).push(Push {
            to: to.clone(),
            frame: frame.clone(),
            fate,
        });
        match fate {
            Fate::Delivered => Ok(Delivery::Delivered),
            Fate::Gone => Ok(Delivery::Gone),
            Fate::Failed => Err(PushError::new("test transport refused the push")),
        }
    }

    async fn probe(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        lock(&self.probes).push(to.clone());
        if lock(&self.gone).contains(to) {
            Ok(Delivery::Gone)
        } else if lock(&self.failing).contains(to) {
            Err(PushError::new("test transport refused the probe"))
        } else {
            Ok(Delivery::Delivered)
        }
    }
}

/// [`Signalling`] over a [`MemoryStore`] and a [`RecordingPusher`], driven synchronously.
/// Its `on_suspend` hook records every suspension.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) sig: Signalling<MemoryStore, RecordingPusher>,
    suspensions: Arc<Mutex<Vec<Suspension>>>,
}

impl World {
    pub(crate) fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub(crate) fn with_room_cap(cap: usize) -> Self {
        Self::with_config(Config {
            max_room_size: cap,
            ..Config::default()
        })
    }

    pub(crate) fn with_config(config: Config) -> Self {
        let suspensions = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&suspensions);
        let sig = Signalling::new(MemoryStore::new(), RecordingPusher::new(), config)
            .on_suspend(Arc::new(move |s: &Suspension| lock(&seen).push(s.clone())));
        Self { sig, suspensions }
    }

    /// Every suspension the `on_suspend` hook was called with since the last call, in order.
    pub(crate) fn take_suspensions(&self) -> Vec<Suspension> {
        std::mem::take(&mut *lock(&self.suspensions))
    }

    pub(crate) fn pusher(&self) -> &RecordingPusher {
        self.sig.pusher()
    }

    pub(crate) fn store(&self) -> &MemoryStore {
        self.sig.store()
    }

    /// `$connect` for a connection named `name`.
    pub(crate) fn connect(&self, name: &str) -> ConnectionId {
        let conn = id(name);
        ready(self.sig.connect(&conn, now())).unwrap();
        conn
    }

    /// One text frame from `from`.
    pub(crate) fn send(&self, from: &ConnectionId, text: &str) -> Outcome {
        ready(self.sig.message(from, text, now()))
    }

    /// `{"action":"joinRoom","roomId":room}` from `from`.
    pub(crate) fn join(&self, from: &ConnectionId, room: &str) -> Outcome {
        self.send(
            from,
            &format!(r#"{{"action":"joinRoom","roomId":"{room}"}}"#),
        )
    }

    /// `$disconnect`.
    pub(crate) fn disconnect(&self, conn: &ConnectionId) {
        ready(self.sig.disconnect(conn, now())).unwrap();
    }

    pub(crate) fn members(&self, name: &str) -> Vec<ConnectionId> {
        ready(self.store().members(&room(name), now()))
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect()
    }

    pub(crate) fn room_of(&self, conn: &ConnectionId) -> Option<RoomId> {
        self.store().room_of(conn)
    }

    pub(crate) fn drain(&self, conn: &ConnectionId) -> Vec<Outbound> {
        self.pusher().drain(conn)
    }

    pub(crate) fn drain_json(&self, conn: &ConnectionId) -> Vec<Value> {
        self.pusher().drain_json(conn)
    }

    /// Forgets every frame pushed so far (say, the `joined` and `newParticipant` of a setup).
    pub(crate) fn forget_frames(&self) {
        self.pusher().clear();
    }

    /// Asserts that nothing was pushed to `conn` since the record was last cleared.
    #[track_caller]
    pub(crate) fn assert_nothing_pushed_to(&self, conn: &ConnectionId) {
        let frames = self.drain(conn);
        assert!(
            frames.is_empty(),
            "expected nothing to {conn}, got {frames:#?}"
        );
    }

    /// Asserts that nothing at all was pushed since the record was last cleared.
    #[track_caller]
    pub(crate) fn assert_nothing_pushed(&self) {
        let pushes = self.pusher().pushes();
        assert!(pushes.is_empty(), "expected no pushes, got {pushes:#?}");
    }
}
