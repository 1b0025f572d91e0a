//! The limits' flags, and the connection-age hint derived from them.

use std::time::Duration;

use super::Proxy;

/// The abuse limits' flags (0 turns a limit off).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LimitArgs {
    /// Most open WebSocket connections in total; more are refused with 503 (0: no limit).
    #[arg(long, env = "MESHCALL_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most open WebSocket connections from one client address (an IPv6 /64); more are
    /// refused with 429 (0: no limit).
    #[arg(long, env = "MESHCALL_MAX_CONNECTIONS_PER_IP", default_value_t = 32)]
    pub max_connections_per_ip: usize,

    /// Most `joinRoom`s per minute from one client address (an IPv6 /64), in a burst or
    /// spread out; more are answered `rateLimited` (0: no limit).
    #[arg(
        long,
        env = "MESHCALL_MAX_JOINS_PER_MINUTE_PER_IP",
        default_value_t = 60
    )]
    pub max_joins_per_minute_per_ip: u32,

    /// Most TLS handshakes in progress at once from one client address (an IPv6 /64); a
    /// connection past it is closed at once, so sockets held open without a handshake
    /// cost only their own address (0: no limit; a `--trust-proxy` address has none).
    #[arg(long, env = "MESHCALL_MAX_HANDSHAKES_PER_IP", default_value_t = 256)]
    pub max_handshakes_per_ip: usize,

    /// Close a connection this old with 1001; the app moves to a fresh socket before (0:
    /// no limit).
    #[arg(long, env = "MESHCALL_MAX_CONNECTION_AGE", default_value = "24h",
          value_parser = humantime::parse_duration)]
    pub max_connection_age: Duration,

    /// A reverse proxy (address or CIDR block) whose `X-Forwarded-For` names the client
    /// (repeat, or separate with commas). From anyone else the header is ignored.
    #[arg(
        long = "trust-proxy",
        env = "MESHCALL_TRUST_PROXY",
        value_delimiter = ','
    )]
    pub trust_proxy: Vec<Proxy>,
}

impl Default for LimitArgs {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 32,
            max_joins_per_minute_per_ip: 60,
            max_handshakes_per_ip: 256,
            max_connection_age: Duration::from_hours(24),
            trust_proxy: Vec::new(),
        }
    }
}

/// When the app should move to a fresh socket, for a connection limit of `limit`: 5
/// minutes or a quarter of the limit before it, whichever is less; `None` without a limit.
/// `meshcall-gateway` and the AWS deploy script use the same rule.
pub fn socket_max_age(limit: Duration) -> Option<Duration> {
    if limit.is_zero() {
        return None;
    }
    Some(limit.saturating_sub((limit / 4).min(Duration::from_mins(5))))
}
