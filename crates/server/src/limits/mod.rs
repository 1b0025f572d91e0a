//! The abuse limits a public server needs: TLS handshakes in progress per client address
//! and in all, open connections in total and per client address, joins per minute per
//! client address, and the longest life of one connection. Their flags are [`LimitArgs`]
//! (flattened into [`Settings`](crate::Settings)); their state is [`Limits`], shared by
//! every handler.
//!
//! By concern: [`address`] (who the client is: the socket's peer or, through a trusted
//! proxy, `X-Forwarded-For`; IPv6 by /64), [`admission`] (connections and joins per source,
//! and the decision on a parsed message), [`handshake`] (TLS handshakes in progress),
//! [`refusal`] (what a hit is called, answered, counted and logged), [`args`] (the flags).
//!
//! - Too many connections in total: the upgrade is answered `503` ([`Refusal::Connections`]).
//! - Too many from one address: `429` ([`Refusal::ConnectionsPerIp`]).
//! - Too many TLS handshakes in progress from one address: the new connection is closed
//!   before its handshake ([`handshake`]).
//! - Too many joins from one address: the `joinRoom` is answered `rateLimited` and dropped
//!   (the app asks again a second later); the connection stays.
//! - A connection older than `--max-connection-age` is closed with 1001, as API Gateway
//!   closes one at its 2-hour limit; `/config.json`'s `socketMaxAgeMs` makes the app move
//!   to a fresh socket (a `resume`) before that.
//!
//! Each hit counts in `meshcall_limit_hits_total{limit}` and is logged at most once per
//! client address, limit and minute. The client address is the socket's peer, or, when the
//! peer is a `--trust-proxy` address, the right-most address in `X-Forwarded-For` that is
//! not one. IPv6 clients are counted by their /64, the block one home or host is given.
//!
//! The limits decide on time passed in (`Instant`), so their tests move time by hand.

pub mod address;
pub mod admission;
pub mod args;
pub mod handshake;
pub mod refusal;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError, atomic::AtomicUsize},
    time::Instant,
};

use axum::http::HeaderMap;

pub use address::{Proxy, Source, client_ip};
pub use admission::Admission;
use admission::Sources;
pub use args::{LimitArgs, socket_max_age};
pub use handshake::{Handshake, MAX_HANDSHAKES};
pub use refusal::{Limit, Refusal};

use crate::metrics::Metrics;

/// The limits' shared state. One per server; cheap to share in an `Arc`.
#[derive(Debug)]
pub struct Limits {
    args: LimitArgs,
    /// `--max-connection-age` (0: none).
    max_connection_age: std::time::Duration,
    metrics: Arc<Metrics>,
    start: Instant,
    open: AtomicUsize,
    sources: Mutex<Sources>,
    logged: Mutex<HashMap<(Limit, Source), u64>>,
    /// Handshakes in progress: per source, and in all.
    handshakes: Mutex<(HashMap<Source, usize>, usize)>,
}

impl Limits {
    /// Fresh limits: nothing open, every bucket full.
    pub fn new(
        args: LimitArgs,
        max_connection_age: std::time::Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            args,
            max_connection_age,
            metrics,
            start: Instant::now(),
            open: AtomicUsize::new(0),
            sources: Mutex::new(Sources {
                map: HashMap::new(),
                sweep_at: 1024,
            }),
            logged: Mutex::new(HashMap::new()),
            handshakes: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// The flags these limits were built from.
    pub fn args(&self) -> &LimitArgs {
        &self.args
    }

    /// The client address of a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(peer, headers, &self.args.trust_proxy)
    }

    /// Client addresses (IPv6 /64s) with state held: open connections, or joins not yet
    /// refilled.
    pub fn sources(&self) -> usize {
        self.lock_sources().map.len()
    }

    fn lock_sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
