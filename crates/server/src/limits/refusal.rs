//! What a limit's hit is called (the metric label), how a refused upgrade is answered, and
//! how hits are counted and logged (once a minute per source and limit).

use std::{sync::PoisonError, time::Instant};

use axum::http::StatusCode;

use super::{Limits, Source};

/// Which limit a hit was: the `limit` label of `meshcall_limit_hits_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// `--max-connections`.
    Connections,
    /// `--max-connections-per-ip`.
    ConnectionsPerIp,
    /// `--max-joins-per-minute-per-ip`.
    JoinsPerIp,
    /// `--max-connection-age`.
    ConnectionAge,
    /// TLS handshakes in progress, in all ([`MAX_HANDSHAKES`]).
    Handshakes,
    /// `--max-handshakes-per-ip`.
    HandshakesPerIp,
}

impl Limit {
    /// Every limit, in a stable order.
    pub const ALL: [Self; 6] = [
        Self::Connections,
        Self::ConnectionsPerIp,
        Self::JoinsPerIp,
        Self::ConnectionAge,
        Self::Handshakes,
        Self::HandshakesPerIp,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::ConnectionsPerIp => "connections_per_ip",
            Self::JoinsPerIp => "joins_per_ip",
            Self::ConnectionAge => "connection_age",
            Self::Handshakes => "handshakes",
            Self::HandshakesPerIp => "handshakes_per_ip",
        }
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` are open.
    Connections,
    /// `--max-connections-per-ip` are open from this source.
    ConnectionsPerIp,
}

impl Refusal {
    /// The limit this refusal hit.
    pub fn limit(self) -> Limit {
        match self {
            Self::Connections => Limit::Connections,
            Self::ConnectionsPerIp => Limit::ConnectionsPerIp,
        }
    }

    /// The HTTP status of the refused upgrade: 503 when the server is full, 429 when one
    /// source has too many.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Connections => StatusCode::SERVICE_UNAVAILABLE,
            Self::ConnectionsPerIp => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Seconds for the `Retry-After` header.
    pub fn retry_after(self) -> &'static str {
        match self {
            Self::Connections => "10",
            Self::ConnectionsPerIp => "30",
        }
    }

    /// The response body.
    pub fn body(self) -> &'static str {
        match self {
            Self::Connections => "too many connections; try again later\n",
            Self::ConnectionsPerIp => "too many connections from your address\n",
        }
    }
}

/// How many distinct (limit, source) pairs are remembered for log suppression; past that,
/// hits from new sources in the same minute are counted but not logged.
pub(super) const LOGGED_CAPACITY: usize = 4096;

impl Limits {
    /// Counts a hit of `limit` by `source`, and logs it unless this source already hit this
    /// limit in the current minute.
    pub(super) fn hit(&self, limit: Limit, source: Source, now: Instant, forwarded_ignored: bool) {
        self.metrics.limit_hit(limit);
        if !self.first_this_minute(limit, source, now) {
            return;
        }
        let (label, client) = (limit.as_str(), source.to_string());
        if limit == Limit::ConnectionAge {
            tracing::info!(limit = label, %client, "connection age limit: closing (logged once a minute per client address)");
        } else if forwarded_ignored {
            tracing::warn!(limit = label, %client, "limit reached: refusing (logged once a minute per client address); this address sends X-Forwarded-For: if it is your reverse proxy, pass --trust-proxy");
        } else {
            tracing::warn!(limit = label, %client, "limit reached: refusing (logged once a minute per client address)");
        }
    }

    pub(super) fn first_this_minute(&self, limit: Limit, source: Source, now: Instant) -> bool {
        let minute = now.saturating_duration_since(self.start).as_secs() / 60;
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if logged.get(&(limit, source)) == Some(&minute) {
            return false;
        }
        if logged.len() >= LOGGED_CAPACITY && !logged.contains_key(&(limit, source)) {
            logged.retain(|_, m| *m == minute);
            if logged.len() >= LOGGED_CAPACITY {
                return false;
            }
        }
        logged.insert((limit, source), minute);
        true
    }
}
