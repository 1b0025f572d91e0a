//! TLS handshakes in progress, per source and in all: the listener takes a place for each
//! connection on the HTTPS port before its handshake, and never waits for one.

use std::{
    net::IpAddr,
    sync::{Arc, PoisonError},
    time::Instant,
};

use meshcall_core::shrink_if_sparse;

use super::{Limit, Limits, Source};

/// TLS handshakes in progress at once, in all: past this a new connection is closed at
/// once (the listener never waits for a slot). With the default
/// `--max-handshakes-per-ip` it takes 16 addresses flooding together to reach it.
pub const MAX_HANDSHAKES: usize = 4096;

impl Limits {
    /// Takes a place for a TLS handshake from `peer` (the socket's address: no header has
    /// been read yet), or refuses it (counted and logged) when [`MAX_HANDSHAKES`] are in
    /// progress, or `--max-handshakes-per-ip` from its source. Never waits. The place
    /// is held until the returned [`Handshake`] is dropped.
    pub fn begin_handshake(self: &Arc<Self>, peer: IpAddr, now: Instant) -> Option<Handshake> {
        let source = Source::of(peer);
        let exempt = self.args.trust_proxy.iter().any(|p| p.contains(peer));
        let refused = {
            let mut guard = self
                .handshakes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let (per_source, total) = &mut *guard;
            let mine = per_source.get(&source).copied().unwrap_or(0);
            if *total >= MAX_HANDSHAKES {
                Some(Limit::Handshakes)
            } else if !exempt
                && self.args.max_handshakes_per_ip > 0
                && mine >= self.args.max_handshakes_per_ip
            {
                Some(Limit::HandshakesPerIp)
            } else {
                *per_source.entry(source).or_insert(0) += 1;
                *total += 1;
                None
            }
        };
        if let Some(limit) = refused {
            self.hit(limit, source, now, false);
            return None;
        }
        Some(Handshake {
            limits: self.clone(),
            source,
        })
    }
}

/// A TLS handshake's place under the limits; dropping it frees the place.
#[derive(Debug)]
pub struct Handshake {
    limits: Arc<Limits>,
    source: Source,
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut guard = self
            .limits
            .handshakes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (per_source, total) = &mut *guard;
        *total -= 1;
        if let Some(n) = per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                per_source.remove(&self.source);
                shrink_if_sparse(per_source);
            }
        }
    }
}
