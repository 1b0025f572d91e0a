//! The open connections, as `@connections` reaches them: one bounded frame queue per
//! connection, drained by that connection's socket task. A connection is in the registry
//! from the moment `$connect` accepted it until it closes; `$disconnect` runs only after it
//! has left, as on API Gateway.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicI64, AtomicU16, AtomicUsize, Ordering},
    },
};

use axum::extract::ws::Message;
use tokio::sync::mpsc;

use crate::clock::now_ms;

/// Frames queued for one connection before it counts as too slow and is closed (1013).
pub const QUEUE_CAPACITY: usize = 1024;

/// Close status when a connection fell too far behind its queue.
pub const TOO_SLOW: u16 = 1013;

/// What API Gateway knows of one connection.
#[derive(Debug)]
pub struct Connection {
    /// The connection id.
    pub id: String,
    /// When `$connect` began, in epoch milliseconds.
    pub connected_at: i64,
    /// The client's address (`identity.sourceIp`).
    pub source_ip: String,
    /// The handshake's `User-Agent` (`identity.userAgent`).
    pub user_agent: Option<String>,
    /// The handshake's `Host` (`requestContext.domainName`).
    pub domain_name: String,
    last_active: AtomicI64,
    close_code: AtomicU16,
}

impl Connection {
    /// A connection opened now.
    pub fn new(
        id: String,
        source_ip: String,
        user_agent: Option<String>,
        domain_name: String,
    ) -> Self {
        let now = now_ms();
        Self {
            id,
            connected_at: now,
            source_ip,
            user_agent,
            domain_name,
            last_active: AtomicI64::new(now),
            close_code: AtomicU16::new(0),
        }
    }

    /// Records activity (a frame from the client).
    pub fn touch(&self) {
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }

    /// The last activity, in epoch milliseconds.
    pub fn last_active(&self) -> i64 {
        self.last_active.load(Ordering::Relaxed)
    }

    /// The close status the registry asked for when it let the connection go (1000 for
    /// `DeleteConnection`, 1013 for a full queue), if it did.
    pub fn requested_close(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Relaxed) {
            0 => None,
            code => Some(code),
        }
    }
}

/// The answer to a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// Queued for the socket.
    Queued,
    /// No such open connection (410).
    Gone,
}

#[derive(Debug)]
struct Entry {
    conn: Arc<Connection>,
    queue: mpsc::Sender<Message>,
}

/// Every open connection by id.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<HashMap<String, Entry>>,
    /// Connections that left the registry and whose `$disconnect` has not returned yet.
    closing: Arc<AtomicUsize>,
}

/// A connection on its way out: counted in [`Connections::closing`] until dropped, after
/// its `$disconnect`.
#[derive(Debug)]
pub struct Closing(Arc<AtomicUsize>);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `conn`; the socket task drains the returned queue. The queue ends when
    /// the registry lets the connection go ([`Self::delete`], or a full queue).
    pub fn open(&self, conn: Arc<Connection>) -> mpsc::Receiver<Message> {
        let (queue, frames) = mpsc::channel(QUEUE_CAPACITY);
        self.lock().insert(conn.id.clone(), Entry { conn, queue });
        frames
    }

    /// Queues `frame` for connection `id`. A connection whose queue is full is let go with
    /// [`TOO_SLOW`] and the post answers [`Posted::Gone`].
    pub fn post(&self, id: &str, frame: Message) -> Posted {
        let mut open = self.lock();
        let Some(entry) = open.get(id) else {
            return Posted::Gone;
        };
        match entry.queue.try_send(frame) {
            Ok(()) => Posted::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Some(entry) = open.remove(id) {
                    tracing::warn!(
                        conn_id = id,
                        "queue full: closing a connection too slow to read"
                    );
                    entry.conn.close_code.store(TOO_SLOW, Ordering::Relaxed);
                }
                Posted::Gone
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Posted::Gone,
        }
    }

    /// The open connection `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Connection>> {
        self.lock().get(id).map(|e| e.conn.clone())
    }

    /// Lets connection `id` go: from now on it is unknown here, and its socket task closes
    /// it with `code` once the frames already queued are written. `false` if it was not
    /// open.
    pub fn delete(&self, id: &str, code: u16) -> bool {
        let Some(entry) = self.lock().remove(id) else {
            return false;
        };
        entry.conn.close_code.store(code, Ordering::Relaxed);
        true
    }

    /// Removes `id` from the registry (its socket closed) and counts it as closing until
    /// the returned guard is dropped (hold it until its `$disconnect` returns).
    pub fn close(&self, id: &str) -> Closing {
        self.closing.fetch_add(1, Ordering::SeqCst);
        self.lock().remove(id);
        Closing(self.closing.clone())
    }

    /// How many connections are closed but their `$disconnect` has not returned.
    pub fn closing(&self) -> usize {
        self.closing.load(Ordering::SeqCst)
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: &str) -> Arc<Connection> {
        Arc::new(Connection::new(
            id.to_owned(),
            "127.0.0.1".into(),
            None,
            "h".into(),
        ))
    }

    #[tokio::test]
    async fn posts_reach_open_connections_only() {
        let registry = Connections::default();
        let a = conn("a");
        let mut frames = registry.open(a.clone());
        assert_eq!(registry.post("a", Message::text("1")), Posted::Queued);
        assert_eq!(registry.post("b", Message::text("1")), Posted::Gone);
        assert!(registry.get("a").is_some());
        assert!(registry.delete("a", 1000));
        assert!(!registry.delete("a", 1000));
        assert_eq!(registry.post("a", Message::text("2")), Posted::Gone);
        assert_eq!(frames.recv().await, Some(Message::text("1")));
        assert_eq!(frames.recv().await, None, "the queue ends after a delete");
        assert_eq!(a.requested_close(), Some(1000));
        assert!(registry.is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_lets_the_connection_go() {
        let registry = Connections::default();
        let a = conn("a");
        let _frames = registry.open(a.clone());
        for _ in 0..QUEUE_CAPACITY {
            assert_eq!(registry.post("a", Message::text("x")), Posted::Queued);
        }
        assert_eq!(registry.post("a", Message::text("x")), Posted::Gone);
        assert_eq!(a.requested_close(), Some(TOO_SLOW));
        assert_eq!(registry.len(), 0);
    }
}
