//! [`ChannelPusher`]: the core's `Pusher` for sockets in this process, by connection id:
//! each a [`Link`] the pusher writes into directly ([`crate::socket`]), plain or TLS.
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

use crate::{
    metrics::Metrics,
    socket::link::{Ended, Link},
};

/// Every socket's link.
#[derive(Debug)]
pub struct ChannelPusher {
    links: Mutex<HashMap<ConnectionId, Arc<Link>>>,
    metrics: Arc<Metrics>,
}

impl ChannelPusher {
    /// No queues yet; deliveries are counted in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            links: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectionId, Arc<Link>>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `conn` reachable through `link`.
    pub fn register(&self, conn: ConnectionId, link: Arc<Link>) {
        self.lock().insert(conn, link);
    }

    /// Makes `conn` unreachable; its socket task, if still running, closes it (1013).
    pub fn unregister(&self, conn: &ConnectionId) {
        if let Some(link) = self.forget(conn) {
            link.end(Ended::Replaced);
        }
    }

    fn forget(&self, conn: &ConnectionId) -> Option<Arc<Link>> {
        let mut links = self.lock();
        let removed = links.remove(conn);
        shrink_if_sparse(&mut links);
        removed
    }
}

impl Pusher for ChannelPusher {
    async fn push(&self, to: &ConnectionId, frame: &Outbound) -> Result<Delivery, PushError> {
        // The write happens outside the map's lock: deliveries to different sockets do not
        // wait for each other's system calls.
        let Some(link) = self.lock().get(to).cloned() else {
            return Ok(Delivery::Gone);
        };
        let too_slow = match link.push(frame) {
            Ok(()) => None,
            Err(why) => Some(why == Ended::TooSlow),
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

    /// A socket exists while its link is registered and open.
    async fn probe(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        Ok(match self.lock().get(to) {
            Some(link) if link.is_open() => Delivery::Delivered,
            _ => Delivery::Gone,
        })
    }
}
