//! The fan-out's bound: at most `fanout_concurrency` pushes in flight at once, and every
//! receiver still gets the frame. The pusher here pends once per push, as a network call
//! would, so pushes overlap.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use meshcall_core::{
    Config, Delivery, Kind, MemoryStore, Outbound, PushError, Pusher, Signalling,
    protocol::ConnectionId,
};
use support::{id, now};

/// Counts the pushes in flight and remembers the most there ever were.
#[derive(Debug, Default)]
struct SlowPusher {
    in_flight: AtomicUsize,
    most: AtomicUsize,
    room_messages: Mutex<Vec<ConnectionId>>,
}

impl Pusher for SlowPusher {
    async fn push(&self, to: &ConnectionId, frame: &Outbound) -> Result<Delivery, PushError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        YieldOnce(false).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if frame.kind == Kind::RoomMessage {
            self.room_messages.lock().unwrap().push(to.clone());
        }
        Ok(Delivery::Delivered)
    }

    async fn probe(&self, _to: &ConnectionId) -> Result<Delivery, PushError> {
        Ok(Delivery::Delivered)
    }
}

/// Pending on its first poll (waking itself), ready on the next.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// A sender and `receivers` others in one room; the sender's message fans out with
/// `fanout_concurrency` set to `limit`. Returns the most pushes in flight during that
/// fan-out and who received the message.
async fn fan_out(receivers: usize, limit: usize) -> (usize, Vec<ConnectionId>) {
    let sig = Signalling::new(
        MemoryStore::new(),
        SlowPusher::default(),
        Config {
            fanout_concurrency: limit,
            max_room_size: receivers + 1,
            ..Config::default()
        },
    );
    let join = r#"{"action":"joinRoom","roomId":"r"}"#;
    let sender = id("sender");
    sig.connect(&sender, now()).await.unwrap();
    assert_eq!(sig.message(&sender, join, now()).await.error, None);
    for i in 0..receivers {
        let receiver = id(&format!("r{i}"));
        sig.connect(&receiver, now()).await.unwrap();
        assert_eq!(sig.message(&receiver, join, now()).await.error, None);
    }
    sig.pusher().most.store(0, Ordering::SeqCst);

    let text = r#"{"action":"sendMsgToRoom","roomId":"r","message":"hi"}"#;
    assert_eq!(sig.message(&sender, text, now()).await.error, None);
    let pusher = sig.pusher();
    assert_eq!(pusher.in_flight.load(Ordering::SeqCst), 0);
    let mut received = pusher.room_messages.lock().unwrap().clone();
    received.sort();
    (pusher.most.load(Ordering::SeqCst), received)
}

#[tokio::test]
async fn a_fan_out_keeps_at_most_fanout_concurrency_pushes_in_flight_and_reaches_everyone() {
    let (most, received) = fan_out(20, 4).await;
    assert_eq!(most, 4);
    let mut everyone: Vec<ConnectionId> = (0..20).map(|i| id(&format!("r{i}"))).collect();
    everyone.sort();
    assert_eq!(received, everyone);
}

#[tokio::test]
async fn a_fanout_concurrency_of_zero_still_pushes_one_at_a_time() {
    let (most, received) = fan_out(5, 0).await;
    assert_eq!(most, 1);
    assert_eq!(received.len(), 5);
}
