//! [`Stats`]: what the gateway counted since it started, for `GET /_gateway/stats`. The
//! invoker counts invocations ([`crate::runtime::Invoker::stats`] hands the counters out),
//! the sockets the frames they receive, the Management API its calls.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use serde_json::{Value, json};

/// What a `@connections` call did, as [`Stats`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOutcome {
    /// Queued for the connection (200).
    Delivered,
    /// No such open connection (410).
    Gone,
    /// Over the payload limit (413).
    TooLarge,
}

/// Counters since the gateway started, for `GET /_gateway/stats`: what API Gateway and
/// Lambda would bill for. Invocations by route key (`$connect`, `joinRoom`, ...,
/// `$disconnect`; `sweep` for the scheduled event), the frames the clients sent (each one a
/// message invocation) and the Management API calls the function made.
#[derive(Debug, Default)]
pub struct Stats {
    invocations: Mutex<BTreeMap<String, u64>>,
    failed: AtomicU64,
    received_frames: AtomicU64,
    received_bytes: AtomicU64,
    received_binary: AtomicU64,
    disconnects_lost: AtomicU64,
    sqs_received: AtomicU64,
    sqs_deleted: AtomicU64,
    sqs_failed: AtomicU64,
    instances: AtomicUsize,
    posts_delivered: AtomicU64,
    posts_gone: AtomicU64,
    posts_too_large: AtomicU64,
    posted_bytes: AtomicU64,
    deletes: AtomicU64,
    deletes_gone: AtomicU64,
    gets: AtomicU64,
}

impl Stats {
    /// Counts one invocation that failed (timed out, or the function or its instance did).
    pub(crate) fn invocation_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one invocation with `event`, by its route key.
    pub(crate) fn invoked(&self, event: &Value) {
        let route = match event
            .pointer("/requestContext/routeKey")
            .and_then(Value::as_str)
        {
            Some(route) => route,
            None if event.get("source").and_then(Value::as_str) == Some("aws.events") => "sweep",
            None if event
                .pointer("/Records/0/eventSource")
                .and_then(Value::as_str)
                == Some("aws:sqs") =>
            {
                "sqs"
            }
            None => "other",
        };
        *self
            .invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route.to_owned())
            .or_default() += 1;
    }

    /// Counts one frame received from a client (each one a message invocation), of
    /// `bytes` as the client sent them.
    pub fn received(&self, bytes: usize) {
        self.received_frames.fetch_add(1, Ordering::Relaxed);
        self.received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts one binary frame from a client: the connection was closed with 1003 and the
    /// function was not invoked.
    pub fn received_binary(&self) {
        self.received_binary.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `$disconnect` lost on purpose (`--lose-disconnects`).
    pub fn disconnect_lost(&self) {
        self.disconnects_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts expiry queue messages: `received` in a batch, then `deleted` (processed) and
    /// `failed` (left in the queue for redelivery).
    pub fn sqs(&self, received: usize, deleted: usize, failed: usize) {
        for (counter, n) in [
            (&self.sqs_received, received),
            (&self.sqs_deleted, deleted),
            (&self.sqs_failed, failed),
        ] {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Counts one more bootstrap process started (the first time; respawns do not count).
    pub fn instance_started(&self) {
        self.instances.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `PostToConnection` of `bytes`.
    pub fn posted(&self, outcome: PostOutcome, bytes: usize) {
        let counter = match outcome {
            PostOutcome::Delivered => {
                self.posted_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                &self.posts_delivered
            }
            PostOutcome::Gone => &self.posts_gone,
            PostOutcome::TooLarge => &self.posts_too_large,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `DeleteConnection` (`deleted` false: the connection was gone).
    pub fn deleted(&self, deleted: bool) {
        let counter = if deleted {
            &self.deletes
        } else {
            &self.deletes_gone
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `GetConnection`.
    pub fn got(&self) {
        self.gets.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as JSON.
    pub fn to_json(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let invocations = self
            .invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        json!({
            "invocations": invocations,
            "invocationsTotal": invocations.values().sum::<u64>(),
            "invocationsFailed": n(&self.failed),
            "received": {
                "frames": n(&self.received_frames),
                "bytes": n(&self.received_bytes),
                "binary": n(&self.received_binary),
            },
            "disconnectsLost": n(&self.disconnects_lost),
            "instances": self.instances.load(Ordering::Relaxed),
            "expiryQueue": {
                "received": n(&self.sqs_received),
                "deleted": n(&self.sqs_deleted),
                "failed": n(&self.sqs_failed),
            },
            "posts": {
                "delivered": n(&self.posts_delivered),
                "gone": n(&self.posts_gone),
                "tooLarge": n(&self.posts_too_large),
                "bytes": n(&self.posted_bytes),
            },
            "deletes": {
                "deleted": n(&self.deletes),
                "gone": n(&self.deletes_gone),
            },
            "gets": n(&self.gets),
        })
    }
}
