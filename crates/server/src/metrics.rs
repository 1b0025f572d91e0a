//! The Prometheus registry behind `GET /metrics`: connections, rooms and members (read from
//! the store at scrape time), frames delivered by kind, errors by code, and how long a join
//! takes to reach the other members' queues; abuse limits hit, by limit.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use meshcall_core::{Kind, memory::Stats};
use meshcall_protocol::ErrorCode;

use crate::limits::Limit;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    rooms: Gauge,
    members: Gauge,
    suspended: Gauge,
    /// One counter of the `messages_delivered` family per [`Kind`], in `Kind::ALL`'s order:
    /// counted on every delivery without looking the label up.
    delivered: Vec<(Kind, Counter)>,
    errors: Family<CodeLabel, Counter>,
    join_notify: Histogram,
    limit_hits: Family<LimitLabel, Counter>,
    sources: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero (labels pre-registered, so each series exists
    /// from the start).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("meshcall");
        let connections = Gauge::default();
        let rooms = Gauge::default();
        let members = Gauge::default();
        let suspended = Gauge::default();
        let delivered = Family::<KindLabel, Counter>::default();
        let errors = Family::<CodeLabel, Counter>::default();
        let limit_hits = Family::<LimitLabel, Counter>::default();
        let sources = Gauge::default();
        // 50 µs .. ~0.8 s
        let join_notify = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 15),
        );
        registry.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        registry.register("rooms", "Rooms with at least one member", rooms.clone());
        registry.register(
            "room_members",
            "Connections that are in a room",
            members.clone(),
        );
        registry.register(
            "suspended",
            "Participants whose connection dropped, held for a resume",
            suspended.clone(),
        );
        registry.register(
            "messages_delivered",
            "Frames queued to connections, by kind",
            delivered.clone(),
        );
        registry.register(
            "errors",
            "Error frames sent to clients, by code",
            errors.clone(),
        );
        registry.register(
            "join_notify_seconds",
            "Time from receiving joinRoom to queueing joined and every newParticipant",
            join_notify.clone(),
        );
        registry.register(
            "limit_hits",
            "Connections refused (connections, connections_per_ip), joins refused \
             (joins_per_ip) and connections closed (connection_age) by an abuse limit",
            limit_hits.clone(),
        );
        registry.register(
            "client_sources",
            "Client addresses (IPv6: /64s) the per-address limits hold state for",
            sources.clone(),
        );
        for limit in Limit::ALL {
            let _ = limit_hits.get_or_create(&LimitLabel {
                limit: limit.as_str(),
            });
        }
        let delivered = Kind::ALL
            .into_iter()
            .map(|kind| {
                let counter = delivered
                    .get_or_create(&KindLabel {
                        kind: kind.as_str(),
                    })
                    .clone();
                (kind, counter)
            })
            .collect();
        for code in ErrorCode::ALL {
            let _ = errors.get_or_create(&CodeLabel {
                code: code.as_str(),
            });
        }
        Self {
            registry,
            connections,
            rooms,
            members,
            suspended,
            delivered,
            errors,
            join_notify,
            limit_hits,
            sources,
        }
    }

    /// Counts one hit of an abuse limit.
    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hits
            .get_or_create(&LimitLabel {
                limit: limit.as_str(),
            })
            .inc();
    }

    /// Sets how many client addresses the per-address limits track (read at scrape time).
    pub fn set_sources(&self, n: usize) {
        self.sources.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts one frame queued to a connection.
    pub fn delivered(&self, kind: Kind) {
        if let Some((_, counter)) = self.delivered.iter().find(|(k, _)| *k == kind) {
            counter.inc();
        }
    }

    /// Counts one error frame sent.
    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&CodeLabel {
                code: code.as_str(),
            })
            .inc();
    }

    /// Records one join's latency.
    pub fn join_notify(&self, seconds: f64) {
        self.join_notify.observe(seconds);
    }

    /// The OpenMetrics text exposition, with gauges set from `stats`.
    ///
    /// # Panics
    /// Never: encoding into a `String` cannot fail.
    pub fn render(&self, stats: Stats) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.connections.set(gauge(stats.connections));
        self.rooms.set(gauge(stats.rooms));
        self.members.set(gauge(stats.members));
        self.suspended.set(gauge(stats.suspended));
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
