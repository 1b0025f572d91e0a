//! Connections and joins per source: the decision on an upgrade ([`Limits::admit`]) and on
//! a parsed message ([`Admission::allows`]), and what each source holds meanwhile.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use axum::http::HeaderMap;
use meshcall_core::shrink_if_sparse;
use meshcall_protocol::ClientMessage;

use super::{Limit, Limits, Refusal, Source};

/// One source's state: its open connections and its join bucket.
#[derive(Debug)]
pub(super) struct SourceState {
    connections: usize,
    joins: Bucket,
}

/// A token bucket of `capacity` joins, refilled at `capacity` a minute.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(capacity: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(capacity),
            last: now,
        }
    }

    fn refill(&mut self, capacity: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let cap = f64::from(capacity);
        self.tokens = (self.tokens + elapsed * cap / 60.0).min(cap);
    }

    fn is_full(&self, capacity: u32, now: Instant) -> bool {
        let mut b = *self;
        b.refill(capacity, now);
        b.tokens >= f64::from(capacity)
    }
}

#[derive(Debug, Default)]
pub(super) struct Sources {
    pub(super) map: HashMap<Source, SourceState>,
    /// Sweep the map for forgettable entries when it grows past this.
    pub(super) sweep_at: usize,
}

impl Limits {
    /// Admits one more connection from the client of a request from `peer` with
    /// `headers`, or says which limit refuses it (counted and logged). The returned
    /// [`Admission`] holds the connection's place until dropped.
    ///
    /// # Errors
    /// The [`Refusal`] when a connection limit is reached.
    pub fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<Admission, Refusal> {
        let ip = self.client_ip(peer, headers);
        let forwarded_ignored = headers.contains_key("x-forwarded-for")
            && !self.args.trust_proxy.iter().any(|p| p.contains(peer));
        let source = Source::of(ip);
        let max = self.args.max_connections;
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        if max > 0 && open >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.hit(Limit::Connections, source, now, forwarded_ignored);
            return Err(Refusal::Connections);
        }
        {
            let mut sources = self.lock_sources();
            let per_ip = self.args.max_connections_per_ip;
            let joins = self.args.max_joins_per_minute_per_ip;
            let state = sources.map.entry(source).or_insert_with(|| SourceState {
                connections: 0,
                joins: Bucket::full(joins, now),
            });
            if per_ip > 0 && state.connections >= per_ip {
                drop(sources);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.hit(Limit::ConnectionsPerIp, source, now, forwarded_ignored);
                return Err(Refusal::ConnectionsPerIp);
            }
            state.connections += 1;
            if sources.map.len() > sources.sweep_at {
                self.sweep(&mut sources, now);
            }
        }
        Ok(Admission {
            limits: self.clone(),
            source,
            ip,
        })
    }

    /// Forgets sources with nothing open and a full bucket (the map stays proportional to
    /// the sources that matter now), and sets the next sweep at twice what is left.
    fn sweep(&self, sources: &mut Sources, now: Instant) {
        let cap = self.args.max_joins_per_minute_per_ip;
        sources
            .map
            .retain(|_, s| s.connections > 0 || !s.joins.is_full(cap, now));
        shrink_if_sparse(&mut sources.map);
        sources.sweep_at = (sources.map.len() * 2).max(1024);
    }

    fn release(&self, source: Source, now: Instant) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        let cap = self.args.max_joins_per_minute_per_ip;
        let mut sources = self.lock_sources();
        if let Some(state) = sources.map.get_mut(&source) {
            state.connections = state.connections.saturating_sub(1);
            if state.connections == 0 && state.joins.is_full(cap, now) {
                sources.map.remove(&source);
                shrink_if_sparse(&mut sources.map);
            }
        }
    }

    fn try_join(&self, source: Source, now: Instant) -> bool {
        let cap = self.args.max_joins_per_minute_per_ip;
        if cap == 0 {
            return true;
        }
        let allowed = {
            let mut sources = self.lock_sources();
            // The entry exists while the connection asking is admitted.
            sources.map.get_mut(&source).is_none_or(|state| {
                state.joins.refill(cap, now);
                if state.joins.tokens >= 1.0 {
                    state.joins.tokens -= 1.0;
                    true
                } else {
                    false
                }
            })
        };
        if !allowed {
            self.hit(Limit::JoinsPerIp, source, now, false);
        }
        allowed
    }
}

/// One admitted connection's place under the limits; dropping it frees the place.
#[derive(Debug)]
pub struct Admission {
    limits: Arc<Limits>,
    source: Source,
    ip: IpAddr,
}

impl Admission {
    /// The client's address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The source (address or IPv6 /64) this connection counts under.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Takes one join from this source's bucket; `false` (counted and logged) when it is
    /// empty.
    pub fn try_join(&self, now: Instant) -> bool {
        self.limits.try_join(self.source, now)
    }

    /// Whether the limits let this connection's `message` through: a `joinRoom` takes one
    /// join from the source's bucket (`false`, counted and logged, when it is empty);
    /// anything else passes.
    pub fn allows(&self, message: &ClientMessage<'_>, now: Instant) -> bool {
        match message {
            ClientMessage::JoinRoom { .. } => self.try_join(now),
            _ => true,
        }
    }

    /// Counts and logs that this connection reached `--max-connection-age`.
    pub fn aged_out(&self, now: Instant) {
        self.limits
            .hit(Limit::ConnectionAge, self.source, now, false);
    }

    /// The longest this connection may live, if limited.
    pub fn max_age(&self) -> Option<Duration> {
        let age = self.limits.max_connection_age;
        (!age.is_zero()).then_some(age)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limits.release(self.source, Instant::now());
    }
}
