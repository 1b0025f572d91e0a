//! What a public server needs by default: a STUN server for NAT traversal
//! ([`DEFAULT_STUN`]), and abuse limits: open connections in total and per client address, joins
//! per minute per client address, and the longest life of one connection. Their flags are
//! [`LimitArgs`] (flattened into [`Settings`](crate::Settings)); their state is [`Limits`],
//! shared by every handler.
//!
//! - Too many connections in total: the upgrade is answered `503` ([`Refusal::Connections`]).
//! - Too many from one address: `429` ([`Refusal::ConnectionsPerIp`]).
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

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::{
        Arc, LazyLock, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, StatusCode};
use memchr::memmem::Finder;
use meshcall_core::shrink_if_sparse;
use meshcall_protocol::IceServer;

use crate::metrics::Metrics;

/// The public STUN server `joined.iceServers` carries unless `--stun` says otherwise (the
/// AWS template's default too).
pub const DEFAULT_STUN: &str = "stun:stun.l.google.com:19302";

/// The `--stun` value that hands out no STUN server.
pub const NO_STUN: &str = "none";

/// Removes the `--stun none` entries (and any server left without a URL), so that `none`
/// hands out no STUN server.
pub fn drop_stun_none(servers: &mut Vec<IceServer>) {
    for server in servers.iter_mut() {
        server
            .urls
            .retain(|u| !u.trim().eq_ignore_ascii_case(NO_STUN));
    }
    servers.retain(|s| !s.urls.is_empty());
}

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

/// A trusted proxy: one address, or a CIDR block (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxy {
    net: IpAddr,
    prefix: u8,
}

impl Proxy {
    /// Whether `ip` is this proxy (or in its block).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Proxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR block (10.0.0.1, 10.0.0.0/8)");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let net = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { net, prefix })
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The client's address: `peer`, unless `peer` is a trusted proxy; then the right-most
/// address in `X-Forwarded-For` (every such header, in order) that is not a trusted proxy.
/// Entries left of it were written by the client and are never believed. If every entry is
/// trusted, the left-most; if an entry cannot be read, the last trusted address before it.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Proxy]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|p| p.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(client) {
        return client;
    }
    let values: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    for value in values.into_iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for entry in value.rsplit(',') {
            let Some(ip) = forwarded_ip(entry) else {
                return client;
            };
            client = ip;
            if !is_trusted(ip) {
                return client;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:5`,
/// `[::1]:5`), as some proxies write them.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// What the per-address limits count by: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & (u128::MAX << 64);
                Self(IpAddr::V6(Ipv6Addr::from(bits)))
            }
            v4 @ IpAddr::V4(_) => Self(v4),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 @ IpAddr::V4(_) => v4.fmt(f),
        }
    }
}

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
const LOGGED_CAPACITY: usize = 4096;

/// One source's state: its open connections and its join bucket.
#[derive(Debug)]
struct SourceState {
    connections: usize,
    joins: Bucket,
}

/// A token bucket of `capacity` joins, refilled at `capacity` a minute.
#[derive(Debug, Clone, Copy)]
struct Bucket {
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
struct Sources {
    map: HashMap<Source, SourceState>,
    /// Sweep the map for forgettable entries when it grows past this.
    sweep_at: usize,
}

/// TLS handshakes in progress at once, in all: past this a new connection is closed at
/// once (the listener never waits for a slot). With the default
/// `--max-handshakes-per-ip` it takes 16 addresses flooding together to reach it.
pub const MAX_HANDSHAKES: usize = 4096;

/// The limits' shared state. One per server; cheap to share in an `Arc`.
#[derive(Debug)]
pub struct Limits {
    args: LimitArgs,
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
    pub fn new(args: LimitArgs, metrics: Arc<Metrics>) -> Self {
        Self {
            args,
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

    /// Counts a hit of `limit` by `source`, and logs it unless this source already hit this
    /// limit in the current minute.
    fn hit(&self, limit: Limit, source: Source, now: Instant, forwarded_ignored: bool) {
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

    fn first_this_minute(&self, limit: Limit, source: Source, now: Instant) -> bool {
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

    fn lock_sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.sources.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Counts and logs that this connection reached `--max-connection-age`.
    pub fn aged_out(&self, now: Instant) {
        self.limits
            .hit(Limit::ConnectionAge, self.source, now, false);
    }

    /// The longest this connection may live, if limited.
    pub fn max_age(&self) -> Option<Duration> {
        let age = self.limits.args.max_connection_age;
        (!age.is_zero()).then_some(age)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limits.release(self.source, Instant::now());
    }
}

/// Whether a client frame may be a `joinRoom`, without parsing it: the word, or a `\u`
/// escape that could spell it. Frames that pass are parsed to be sure.
///
/// Both searches are memchr's vectorised ones: `str::contains` showed as 1.6 % of the
/// server's CPU at moderate relay load (every 4 KB signal is scanned twice).
pub fn may_be_join(text: &str) -> bool {
    static JOIN: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("joinRoom"));
    static ESCAPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("\\u"));
    let text = text.as_bytes();
    JOIN.find(text).is_some() || ESCAPE.find(text).is_some()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn proxies(list: &[&str]) -> Vec<Proxy> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_read_only_through_a_trusted_peer() {
        let trusted = proxies(&["10.0.0.1", "192.168.0.0/16"]);
        let h = xff(&["198.51.100.7, 203.0.113.9"]);
        // Not through a trusted proxy: the header changes nothing.
        assert_eq!(
            client_ip(ip("203.0.113.1"), &h, &trusted),
            ip("203.0.113.1")
        );
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("10.0.0.2"));
        // Through one: the right-most entry that is not trusted, never the client's own
        // left-most claims.
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("203.0.113.9"));
        let chain = xff(&["1.1.1.1", "203.0.113.9, 192.168.4.4"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &chain, &trusted),
            ip("203.0.113.9")
        );
        // Ports, IPv6, mapped IPv4.
        let ported = xff(&["[2001:db8::5]:443"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &ported, &trusted),
            ip("2001:db8::5")
        );
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &xff(&["203.0.113.2:9"]), &trusted),
            ip("203.0.113.2")
        );
        // No header, garbage, all trusted.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff(&["203.0.113.9, nonsense"]), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff(&["192.168.1.1, 10.0.0.1"]), &trusted),
            ip("192.168.1.1")
        );
    }

    #[test]
    fn proxies_parse_as_addresses_or_blocks() {
        assert!(proxies(&["10.0.0.0/8"])[0].contains(ip("10.200.3.4")));
        assert!(!proxies(&["10.0.0.0/8"])[0].contains(ip("11.0.0.1")));
        assert!(proxies(&["::1"])[0].contains(ip("::1")));
        assert!(proxies(&["0.0.0.0/0"])[0].contains(ip("8.8.8.8")));
        assert!(proxies(&["fd00::/8"])[0].contains(ip("fd12::1")));
        assert!(!proxies(&["fd00::/8"])[0].contains(ip("10.0.0.1")));
        for bad in ["", "10.0.0.1/33", "::/129", "host.example", "10.0.0.0/x"] {
            assert!(bad.parse::<Proxy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(Source::of(ip("::ffff:1.2.3.4")), Source::of(ip("1.2.3.4")));
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    fn limits(args: LimitArgs) -> Arc<Limits> {
        Arc::new(Limits::new(args, Arc::new(Metrics::new())))
    }

    #[test]
    fn connections_are_limited_in_total_and_per_source_and_freed_on_drop() {
        let l = limits(LimitArgs {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..LimitArgs::default()
        });
        let now = Instant::now();
        let a1 = l.admit(ip("192.0.2.1"), &HeaderMap::new(), now).unwrap();
        let a2 = l.admit(ip("192.0.2.1"), &HeaderMap::new(), now).unwrap();
        assert_eq!(
            l.admit(ip("192.0.2.1"), &HeaderMap::new(), now)
                .unwrap_err(),
            Refusal::ConnectionsPerIp
        );
        let b1 = l.admit(ip("192.0.2.2"), &HeaderMap::new(), now).unwrap();
        assert_eq!(
            l.admit(ip("192.0.2.3"), &HeaderMap::new(), now)
                .unwrap_err(),
            Refusal::Connections
        );
        drop(a1);
        let a3 = l.admit(ip("192.0.2.1"), &HeaderMap::new(), now).unwrap();
        drop((a2, a3, b1));
        assert_eq!(l.sources(), 0, "nothing open, buckets full: forgotten");
    }

    #[test]
    fn joins_refill_at_the_rate_per_minute_and_survive_reconnects() {
        let l = limits(LimitArgs {
            max_joins_per_minute_per_ip: 2,
            ..LimitArgs::default()
        });
        let t0 = Instant::now();
        let a = l.admit(ip("192.0.2.1"), &HeaderMap::new(), t0).unwrap();
        assert!(a.try_join(t0) && a.try_join(t0));
        assert!(!a.try_join(t0));
        // A new connection from the same address does not bring a fresh bucket.
        drop(a);
        let a = l.admit(ip("192.0.2.1"), &HeaderMap::new(), t0).unwrap();
        assert!(!a.try_join(t0 + Duration::from_secs(10)));
        assert!(a.try_join(t0 + Duration::from_secs(31)));
        assert!(!a.try_join(t0 + Duration::from_secs(31)));
        // Another address has its own.
        let b = l.admit(ip("192.0.2.2"), &HeaderMap::new(), t0).unwrap();
        assert!(b.try_join(t0));
    }

    #[test]
    fn each_source_is_logged_once_a_minute() {
        let l = limits(LimitArgs::default());
        let t0 = l.start;
        let s = Source::of(ip("192.0.2.1"));
        assert!(l.first_this_minute(Limit::JoinsPerIp, s, t0));
        assert!(!l.first_this_minute(Limit::JoinsPerIp, s, t0 + Duration::from_secs(59)));
        assert!(l.first_this_minute(Limit::ConnectionsPerIp, s, t0));
        assert!(l.first_this_minute(Limit::JoinsPerIp, s, t0 + Duration::from_mins(1)));
        // Bounded: past the capacity, old minutes are forgotten; a full current minute
        // stops logging new sources rather than growing.
        for n in 0..u32::try_from(LOGGED_CAPACITY).unwrap() {
            let s = Source::of(IpAddr::V4(n.into()));
            l.first_this_minute(Limit::Connections, s, t0 + Duration::from_mins(2));
        }
        assert!(l.logged.lock().unwrap().len() <= LOGGED_CAPACITY);
        let late = Source::of(ip("203.0.113.1"));
        assert!(!l.first_this_minute(Limit::Connections, late, t0 + Duration::from_mins(2)));
        assert!(l.first_this_minute(Limit::Connections, late, t0 + Duration::from_mins(3)));
        assert!(l.logged.lock().unwrap().len() <= LOGGED_CAPACITY);
    }

    #[test]
    fn may_be_join_never_misses_a_join() {
        for join in [
            r#"{"action":"joinRoom","roomId":"a"}"#,
            r#"{"action":"join\u0052oom","roomId":"a"}"#,
        ] {
            assert!(may_be_join(join));
        }
        assert!(!may_be_join(
            r#"{"action":"signal","to":"x","data":"v=0\r\n"}"#
        ));
    }

    #[test]
    fn the_default_is_what_no_flags_give() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            limits: LimitArgs,
        }
        let parsed = <Cli as clap::Parser>::try_parse_from(["meshcall"]).unwrap();
        assert_eq!(parsed.limits, LimitArgs::default());
        let flags = <Cli as clap::Parser>::try_parse_from([
            "meshcall",
            "--trust-proxy",
            "10.0.0.1,fd00::/8",
            "--max-connection-age",
            "2h",
        ])
        .unwrap();
        assert_eq!(flags.limits.trust_proxy.len(), 2);
        assert_eq!(flags.limits.max_connection_age, Duration::from_hours(2));
        assert!(
            <Cli as clap::Parser>::try_parse_from(["meshcall", "--trust-proxy", "proxy"]).is_err()
        );
    }

    #[test]
    fn stun_none_turns_it_off_and_the_age_hint_leaves_a_margin() {
        let stun = |urls: &[&str]| IceServer {
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            username: None,
            credential: None,
        };
        let mut off = vec![stun(&["none"])];
        drop_stun_none(&mut off);
        assert!(off.is_empty());
        let mut on = vec![stun(&[DEFAULT_STUN, "NONE"])];
        drop_stun_none(&mut on);
        assert_eq!(on[0].urls, [DEFAULT_STUN]);
        assert_eq!(socket_max_age(Duration::ZERO), None);
        assert_eq!(
            socket_max_age(Duration::from_hours(2)),
            Some(Duration::from_mins(115))
        );
        assert_eq!(
            socket_max_age(Duration::from_secs(8)),
            Some(Duration::from_secs(6))
        );
    }
}
