//! [`ChannelPusher`]: the core's `Pusher` for sockets in this process. Each socket task owns
//! the receiving end of one bounded queue; the pusher holds the sending ends by connection id.
//!
//! A push never waits. When a connection's queue is full, the connection cannot keep up: the
//! pusher forgets its queue (its socket task then closes it with 1013) and answers `Gone`, so
//! the core removes it and tells its room, exactly as for a connection API Gateway reports
//! gone. A slow receiver therefore never blocks the sender or the room.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use meshcall_core::{Delivery, Outbound, PushError, Pusher, shrink_if_sparse};
use meshcall_protocol::ConnectionId;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::metrics::Metrics;

/// The sending ends of every socket's queue.
#[derive(Debug)]
pub struct ChannelPusher {
    queues: Mutex<HashMap<ConnectionId, mpsc::Sender<Outbound>>>,
    metrics: Arc<Metrics>,
}

impl ChannelPusher {
    /// No queues yet; deliveries are counted in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            queues: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectionId, mpsc::Sender<Outbound>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `conn` reachable through `queue`.
    pub fn register(&self, conn: ConnectionId, queue: mpsc::Sender<Outbound>) {
        self.lock().insert(conn, queue);
    }

    /// Makes `conn` unreachable.
    pub fn unregister(&self, conn: &ConnectionId) {
        let mut queues = self.lock();
        queues.remove(conn);
        shrink_if_sparse(&mut queues);
    }
}

impl Pusher for ChannelPusher {
    async fn push(&self, to: &ConnectionId, frame: &Outbound) -> Result<Delivery, PushError> {
        let mut queues = self.lock();
        let Some(queue) = queues.get(to) else {
            return Ok(Delivery::Gone);
        };
        match queue.try_send(frame.clone()) {
            Ok(()) => {
                drop(queues);
                self.metrics.delivered(frame.kind);
                Ok(Delivery::Delivered)
            }
            Err(TrySendError::Full(_)) => {
                queues.remove(to);
                tracing::warn!(conn_id = %to, "outbound queue full; dropping the connection");
                Ok(Delivery::Gone)
            }
            Err(TrySendError::Closed(_)) => {
                queues.remove(to);
                Ok(Delivery::Gone)
            }
        }
    }

    /// A socket exists while its task has its queue registered.
    async fn probe(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        Ok(match self.lock().get(to) {
            Some(queue) if !queue.is_closed() => Delivery::Delivered,
            _ => Delivery::Gone,
        })
    }
}
