//! The Prometheus registry behind `GET /metrics`: connections, rooms and members (read from
//! the store at scrape time), frames delivered by kind, errors by code, and how long a join
//! takes to reach the other members' queues.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use meshcall_core::{Kind, memory::Stats};
use meshcall_protocol::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    rooms: Gauge,
    members: Gauge,
    suspended: Gauge,
    delivered: Family<KindLabel, Counter>,
    errors: Family<CodeLabel, Counter>,
    join_notify: Histogram,
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
        for kind in Kind::ALL {
            let _ = delivered.get_or_create(&KindLabel {
                kind: kind.as_str(),
            });
        }
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
        }
    }

    /// Counts one frame queued to a connection.
    pub fn delivered(&self, kind: Kind) {
        self.delivered
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
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
