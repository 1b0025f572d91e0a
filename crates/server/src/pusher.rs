//! [`ChannelPusher`]: the core's `Pusher` for sockets in this process, by connection id:
//! over plain HTTP a [`Link`] the pusher writes into directly ([`crate::direct`]); over
//! HTTPS the sending end of a bounded queue its socket task drains.
//!
//! A push never waits. When a connection has too many frames waiting, it cannot keep up: the
//! pusher forgets it (its socket task then closes it with 1013) and answers `Gone`, so the
//! core removes it and tells its room, exactly as for a connection API Gateway reports gone.
//! A slow receiver therefore never blocks the sender or the room.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use meshcall_core::{Delivery, Outbound, PushError, Pusher, shrink_if_sparse};
use meshcall_protocol::ConnectionId;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{
    direct::{Ended, Link},
    metrics::Metrics,
};

/// How frames reach one socket.
#[derive(Debug, Clone)]
enum Outlet {
    /// Written into its socket by the pusher (plain HTTP).
    Direct(Arc<Link>),
    /// Queued for its socket task (HTTPS).
    Queue(mpsc::Sender<Outbound>),
}

/// Every socket's outlet.
#[derive(Debug)]
pub struct ChannelPusher {
    queues: Mutex<HashMap<ConnectionId, Outlet>>,
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

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectionId, Outlet>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `conn` reachable through `queue`.
    pub fn register(&self, conn: ConnectionId, queue: mpsc::Sender<Outbound>) {
        self.lock().insert(conn, Outlet::Queue(queue));
    }

    /// Makes `conn` reachable through `link`.
    pub fn register_link(&self, conn: ConnectionId, link: Arc<Link>) {
        self.lock().insert(conn, Outlet::Direct(link));
    }

    /// Makes `conn` unreachable; its socket task, if still running, closes it (1013).
    pub fn unregister(&self, conn: &ConnectionId) {
        if let Some(Outlet::Direct(link)) = self.forget(conn) {
            link.end(Ended::Replaced);
        }
    }

    fn forget(&self, conn: &ConnectionId) -> Option<Outlet> {
        let mut queues = self.lock();
        let removed = queues.remove(conn);
        shrink_if_sparse(&mut queues);
        removed
    }
}

impl Pusher for ChannelPusher {
    async fn push(&self, to: &ConnectionId, frame: &Outbound) -> Result<Delivery, PushError> {
        // The write happens outside the map's lock: deliveries to different sockets do not
        // wait for each other's system calls.
        let Some(outlet) = self.lock().get(to).cloned() else {
            return Ok(Delivery::Gone);
        };
        let too_slow = match outlet {
            Outlet::Direct(link) => match link.push(frame) {
                Ok(()) => None,
                Err(why) => Some(why == Ended::TooSlow),
            },
            Outlet::Queue(queue) => match queue.try_send(frame.clone()) {
                Ok(()) => None,
                Err(TrySendError::Full(_)) => Some(true),
                Err(TrySendError::Closed(_)) => Some(false),
            },
        };
        match too_slow {
            None => {
                self.metrics.delivered(frame.kind);
                Ok(Delivery::Delivered)
            }
            Some(too_slow) => {
                if too_slow {
                    tracing::warn!(conn_id = %to, "outbound queue full; dropping the connection");
                }
                self.forget(to);
                Ok(Delivery::Gone)
            }
        }
    }

    /// A socket exists while its task has its queue registered.
    async fn probe(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        Ok(match self.lock().get(to) {
            Some(Outlet::Queue(queue)) if !queue.is_closed() => Delivery::Delivered,
            Some(Outlet::Direct(link)) if link.is_open() => Delivery::Delivered,
            _ => Delivery::Gone,
        })
    }
}
