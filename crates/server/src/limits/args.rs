//! The limits' flags (the connection age is the shared `ConnectionArgs`'s).

use super::Proxy;

/// Default `--max-connections-per-ip`: a class of 40 behind one school NAT with every
/// socket doubled while it moves or a dropped one awaits its idle timeout (80), three such
/// classes at once, and room to spare; 2.5 % of the default `--max-connections`.
pub const MAX_CONNECTIONS_PER_IP: usize = 256;

/// Default `--max-joins-per-minute-per-ip`: a class of 40 joining at the bell, each pupil
/// joining six times in that minute (reloads, room changes), or six classes at once.
pub const MAX_JOINS_PER_MINUTE_PER_IP: u32 = 240;

/// The abuse limits' flags (0 turns a limit off).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LimitArgs {
    /// Most open WebSocket connections in total; more are refused with 503 (0: no limit).
    #[arg(long, env = "MESHCALL_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most open WebSocket connections from one client address (an IPv6 /64); more are
    /// refused with 429 (0: no limit). The default fits a school or office behind one NAT
    /// (docs/operations.md says how it was chosen).
    #[arg(long, env = "MESHCALL_MAX_CONNECTIONS_PER_IP", default_value_t = MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,

    /// Most `joinRoom`s per minute from one client address (an IPv6 /64), in a burst or
    /// spread out; more are answered `rateLimited` (0: no limit).
    #[arg(
        long,
        env = "MESHCALL_MAX_JOINS_PER_MINUTE_PER_IP",
        default_value_t = MAX_JOINS_PER_MINUTE_PER_IP
    )]
    pub max_joins_per_minute_per_ip: u32,

    /// Most TLS handshakes in progress at once from one client address (an IPv6 /64); a
    /// connection past it is closed at once, so sockets held open without a handshake
    /// cost only their own address (0: no limit; a `--trust-proxy` address has none).
    #[arg(long, env = "MESHCALL_MAX_HANDSHAKES_PER_IP", default_value_t = 256)]
    pub max_handshakes_per_ip: usize,

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
            max_connections_per_ip: MAX_CONNECTIONS_PER_IP,
            max_joins_per_minute_per_ip: MAX_JOINS_PER_MINUTE_PER_IP,
            max_handshakes_per_ip: 256,
            trust_proxy: Vec::new(),
        }
    }
}

/// The rule by which the app moves to a fresh socket before the age limit, written once in
/// `meshcall-core` for every runtime.
pub use meshcall_core::settings::socket_max_age;

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::Settings;

    #[test]
    fn defaults_fit_a_class_of_40_behind_one_address() {
        let s = Settings::parse_from(["meshcall"]);
        assert_eq!(s.limits, super::LimitArgs::default());
        // Every pupil with a socket moving (two at once), and each joining six times.
        assert!(s.limits.max_connections_per_ip >= 2 * 40);
        assert!(s.limits.max_joins_per_minute_per_ip >= 6 * 40);
        // One address still holds a small share of the server.
        assert!(s.limits.max_connections_per_ip * 20 <= s.limits.max_connections);
    }
}
