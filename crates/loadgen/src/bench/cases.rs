//! The benchmark's cases. Each runs against a fresh server and returns its figures; any
//! message lost, refused or duplicated, any socket broken, and any wait that runs out
//! fails the case.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use futures_util::{StreamExt as _, stream};

use super::{
    client::{self, Cmd, Conn, Endpoint, Pace, Tally},
    server::{Kind, Server},
};
use crate::rng::Rng;

/// Rooms opened at once (each room's members join one after the other).
pub const ROOMS_AT_ONCE: usize = 64;

/// Sizes and durations of the cases (`--quick` shrinks them).
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Connections held in the idle cases, one case each.
    pub idle: Vec<usize>,
    /// How long the idle connections are held (keep-alives running) before RSS is read.
    pub idle_hold: Duration,
    /// After every connection closed, RSS counts as settled once it has not fallen for
    /// this long...
    pub rss_stable: Duration,
    /// ...or after this long at most.
    pub rss_wait: Duration,
    /// Connections in the moderate relay cases.
    pub moderate: usize,
    /// Between two payloads of one sender, moderate.
    pub period: Duration,
    /// Connections in the saturated relay cases.
    pub saturated: usize,
    /// Payloads each saturated sender keeps in flight.
    pub inflight: usize,
    /// Load before the measured window starts.
    pub warmup: Duration,
    /// The measured window, moderate.
    pub moderate_window: Duration,
    /// The measured window, saturated.
    pub saturated_window: Duration,
    /// Connections in the join storm (rooms of 2).
    pub storm: usize,
    /// Wait after the server accepts connections, and before memory is read.
    pub settle: Duration,
}

impl Sizes {
    /// The full run (the sizes).
    pub fn full() -> Self {
        Self {
            idle: vec![1000, 5000, 10_000],
            idle_hold: Duration::from_secs(12),
            rss_stable: Duration::from_secs(10),
            rss_wait: Duration::from_secs(30),
            moderate: 1000,
            period: Duration::from_millis(500),
            saturated: 100,
            inflight: 4,
            warmup: Duration::from_secs(3),
            moderate_window: Duration::from_secs(20),
            saturated_window: Duration::from_secs(10),
            storm: 5000,
            settle: Duration::from_secs(1),
        }
    }

    /// About a minute for all cases and servers.
    pub fn quick() -> Self {
        Self {
            idle: vec![1000],
            idle_hold: Duration::from_secs(1),
            rss_stable: Duration::from_secs(1),
            rss_wait: Duration::from_secs(3),
            moderate: 200,
            period: Duration::from_millis(500),
            saturated: 20,
            inflight: 4,
            warmup: Duration::from_millis(500),
            moderate_window: Duration::from_secs(2),
            saturated_window: Duration::from_secs(1),
            storm: 500,
            settle: Duration::from_millis(300),
        }
    }
}

/// One case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// This many joined connections in rooms of 4, idle but for keep-alives.
    Idle(usize),
    /// The moderate relay in rooms of this size.
    Moderate(usize),
    /// The saturated relay in rooms of this size.
    Saturated(usize),
    /// The join storm.
    Storm,
}

impl Case {
    /// Its name in the output (`idle-10000`, `moderate-2`, ...).
    pub fn name(self) -> String {
        match self {
            Self::Idle(n) => format!("idle-{n}"),
            Self::Moderate(r) => format!("moderate-{r}"),
            Self::Saturated(r) => format!("saturated-{r}"),
            Self::Storm => "storm".to_owned(),
        }
    }

    /// Its family, for `--cases` (`idle`, `moderate`, `saturated`, `storm`).
    pub fn family(self) -> &'static str {
        match self {
            Self::Idle(_) => "idle",
            Self::Moderate(_) => "moderate",
            Self::Saturated(_) => "saturated",
            Self::Storm => "storm",
        }
    }

    /// Every case of a run, in order.
    pub fn all(sizes: &Sizes) -> Vec<Self> {
        let mut v: Vec<Self> = sizes.idle.iter().map(|&n| Self::Idle(n)).collect();
        v.extend([
            Self::Moderate(2),
            Self::Moderate(4),
            Self::Saturated(2),
            Self::Saturated(4),
            Self::Storm,
        ]);
        v
    }
}

/// A case's figures (named as in the JSON) and counts.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Measured figures.
    pub figures: BTreeMap<String, f64>,
    /// Counts (sent, delivered, joins, ...).
    pub counts: BTreeMap<String, u64>,
}

impl Outcome {
    fn figure(&mut self, name: &str, value: f64) {
        self.figures.insert(name.to_owned(), value);
    }

    fn count(&mut self, name: &str, value: u64) {
        self.counts.insert(name.to_owned(), value);
    }
}

/// What a case needs of the server.
pub struct Target<'a> {
    /// The server, started for this case.
    pub server: &'a mut Server,
    /// `getconf CLK_TCK`.
    pub clk_tck: u32,
    /// The case sizes.
    pub sizes: &'a Sizes,
}

impl Target<'_> {
    fn kind(&self) -> Kind {
        self.server.kind
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.server.addr,
            tls: self.server.client_tls.clone(),
        }
    }

    fn cpu(&self) -> anyhow::Result<f64> {
        self.server.cpu(self.clk_tck)
    }
}

/// Runs `case`.
///
/// # Errors
/// If it fails (see the module docs).
pub async fn run(case: Case, target: &mut Target<'_>) -> anyhow::Result<Outcome> {
    let outcome = match case {
        Case::Idle(n) => idle(target, n).await,
        Case::Moderate(room) => {
            let n = target.sizes.moderate;
            let period = target.sizes.period;
            relay(target, n, room, Load::Moderate(period)).await
        }
        Case::Saturated(room) => {
            let n = target.sizes.saturated;
            relay(target, n, room, Load::Saturated).await
        }
        Case::Storm => storm(target).await,
    };
    target.server.check_alive()?;
    outcome
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn f(x: u64) -> f64 {
    x as f64
}

fn mib(bytes: u64) -> f64 {
    f(bytes) / (1024.0 * 1024.0)
}

/// `q` (0..=1) of sorted `v`, nearest rank.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "an index into a vector"
)]
fn quantile(v: &[u32], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(f64::from(v[rank - 1]))
}

/// Waits until `done()` or `limit`; whether it was done.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Fails if the tally recorded any failure.
fn check(tally: &Tally) -> anyhow::Result<()> {
    let (n, samples) = tally.failures();
    ensure!(n == 0, "{n} failures, first: {}", samples.join("; "));
    Ok(())
}

/// Opens `n` connections in rooms of `room_size` (`at_once` rooms at a time, the members of
/// a room one after the other) and waits until every earlier member has learnt of every
/// later one. Returns the connections by index, in rooms of `room_size`.
async fn open_rooms(
    kind: Kind,
    endpoint: &Endpoint,
    tally: &Arc<Tally>,
    (n, room_size, at_once): (usize, usize, usize),
) -> anyhow::Result<Vec<Vec<Conn>>> {
    ensure!(
        n % room_size == 0,
        "{n} connections do not fill rooms of {room_size}"
    );
    let rooms = n / room_size;
    let mut opened: Vec<(usize, Vec<Conn>)> = stream::iter(0..rooms)
        .map(|r| open_room(kind, endpoint, Arc::clone(tally), r, room_size))
        .buffer_unordered(at_once)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    opened.sort_by_key(|(r, _)| *r);
    let expected = u64::try_from(rooms * room_size * (room_size - 1) / 2)?;
    let all_told = wait_until(Duration::from_secs(30), || {
        tally.notified.load(Ordering::Relaxed) >= expected
    })
    .await;
    let notified = tally.notified.load(Ordering::Relaxed);
    ensure!(
        all_told && notified == expected,
        "{notified} join notifications reached earlier members, {expected} expected"
    );
    check(tally)?;
    Ok(opened.into_iter().map(|(_, conns)| conns).collect())
}

async fn open_room(
    kind: Kind,
    endpoint: &Endpoint,
    tally: Arc<Tally>,
    room: usize,
    size: usize,
) -> anyhow::Result<(usize, Vec<Conn>)> {
    let name = format!("bench{room}");
    let mut members: Vec<Conn> = Vec::with_capacity(size);
    for k in 0..size {
        let index = room * size + k;
        let conn = client::open(kind, endpoint, &name, index, Arc::clone(&tally)).await?;
        if kind == Kind::Peerjs {
            for earlier in &members {
                conn.tell(Cmd::Send(client::hello(&earlier.id, index)))
                    .await?;
            }
        }
        members.push(conn);
    }
    Ok((room, members))
}

/// Closes every connection, 256 at a time.
async fn close_all(rooms: Vec<Vec<Conn>>) {
    stream::iter(rooms.into_iter().flatten())
        .for_each_concurrent(256, Conn::close)
        .await;
}

/// After every connection closed: RSS once it has not fallen for `stable` (or at `limit`),
/// and when it reached that.
async fn settled_rss(
    server: &Server,
    stable: Duration,
    limit: Duration,
) -> anyhow::Result<(u64, Instant)> {
    let start = Instant::now();
    let mut low = server.rss()?;
    let mut since = Instant::now();
    while since.elapsed() < stable && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = server.rss()?;
        if now < low {
            low = now;
            since = Instant::now();
        }
    }
    Ok((low, since))
}

/// Idle: `n` joined connections in rooms of 4, keep-alives running. Bytes per connection
/// held, and RSS once all have closed.
async fn idle(target: &mut Target<'_>, n: usize) -> anyhow::Result<Outcome> {
    let sizes = target.sizes;
    let mut out = Outcome::default();
    let empty = target.server.rss()?;
    let tally = Tally::new(n);
    let rooms = open_rooms(
        target.kind(),
        &target.endpoint(),
        &tally,
        (n, 4, ROOMS_AT_ONCE),
    )
    .await?;
    tokio::time::sleep(sizes.settle).await;
    let cpu0 = target.cpu()?;
    let t0 = Instant::now();
    tokio::time::sleep(sizes.idle_hold).await;
    let cpu = target.cpu()? - cpu0;
    let held = target.server.rss()?;
    let idle_cpu = cpu / t0.elapsed().as_secs_f64();
    check(&tally)?;
    close_all(rooms).await;
    let closing = Instant::now();
    let (closed, settled_at) = settled_rss(target.server, sizes.rss_stable, sizes.rss_wait).await?;
    out.figure(
        "rss_settled_after_s",
        settled_at.duration_since(closing).as_secs_f64(),
    );
    out.figure("rss_empty_mib", mib(empty));
    out.figure("rss_held_mib", mib(held));
    out.figure("rss_closed_mib", mib(closed));
    out.figure(
        "bytes_per_conn",
        f(held.saturating_sub(empty)) / f(u64::try_from(n)?),
    );
    out.figure("idle_cpu_percent", idle_cpu * 100.0);
    out.count("connections", u64::try_from(n)?);
    out.count("join_notifications", tally.notified.load(Ordering::Relaxed));
    Ok(out)
}

/// How the relay is loaded.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// Every member sends one payload per period to one room-mate, in turn.
    Moderate(Duration),
    /// Every member keeps `Sizes::inflight` payloads in flight.
    Saturated,
}

/// Relay: `n` connections in rooms of `room`, each sending offer-sized payloads to its
/// room-mates in turn. Deliveries per second and server CPU per delivery over the window,
/// latency of the payloads sent in the window (moderate), memory per connection after.
async fn relay(
    target: &mut Target<'_>,
    n: usize,
    room: usize,
    load: Load,
) -> anyhow::Result<Outcome> {
    let sizes = target.sizes;
    let mut out = Outcome::default();
    let empty = target.server.rss()?;
    let tally = Tally::new(n);
    let rooms = open_rooms(
        target.kind(),
        &target.endpoint(),
        &tally,
        (n, room, ROOMS_AT_ONCE),
    )
    .await?;
    if matches!(load, Load::Saturated) {
        tally.close_loop(sizes.inflight);
    }
    for (r, members) in rooms.iter().enumerate() {
        for m in members {
            let mates: Vec<Arc<str>> = members
                .iter()
                .filter(|o| o.index != m.index)
                .map(|o| Arc::clone(&o.id))
                .collect();
            let pace = match load {
                Load::Moderate(period) => {
                    let mut rng = Rng::new(11, u64::try_from(m.index)? ^ (u64::try_from(r)? << 32));
                    let first = rng.below(u64::try_from(period.as_micros())?);
                    Pace::Every {
                        period,
                        first: Duration::from_micros(first),
                    }
                }
                Load::Saturated => Pace::ClosedLoop,
            };
            m.tell(Cmd::Start(mates, pace)).await?;
        }
    }
    let window = match load {
        Load::Moderate(_) => sizes.moderate_window,
        Load::Saturated => sizes.saturated_window,
    };
    tokio::time::sleep(sizes.warmup).await;
    tally.open_window();
    let (cpu0, d0, t0) = (
        target.cpu()?,
        tally.delivered.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(window).await;
    let (cpu1, d1, secs) = (
        target.cpu()?,
        tally.delivered.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
    );
    tally.close_window();
    for m in rooms.iter().flatten() {
        m.stop().await?;
    }
    let sent = tally.sent.load(Ordering::Relaxed);
    let arrived = wait_until(Duration::from_secs(20), || {
        tally.delivered.load(Ordering::Relaxed) >= sent
    })
    .await;
    // Anything more that arrives is a duplicate.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delivered = tally.delivered.load(Ordering::Relaxed);
    check(&tally)?;
    if !arrived || delivered != sent {
        bail!(
            "{sent} payloads sent, {delivered} delivered ({} lost)",
            i128::from(sent) - i128::from(delivered)
        );
    }
    tokio::time::sleep(sizes.settle).await;
    let after = target.server.rss()?;
    let in_window = d1 - d0;
    ensure!(in_window > 0, "nothing delivered in the window");
    out.figure("deliveries_per_s", f(in_window) / secs);
    out.figure("cpu_us_per_delivery", (cpu1 - cpu0) * 1e6 / f(in_window));
    out.figure(
        "bytes_per_conn_after_relay",
        f(after.saturating_sub(empty)) / f(u64::try_from(n)?),
    );
    out.figure("rss_after_relay_mib", mib(after));
    if matches!(load, Load::Moderate(_)) {
        let lat = tally.latencies();
        for (name, q) in [("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999)] {
            if let Some(us) = quantile(&lat, q) {
                out.figure(name, us / 1000.0);
            }
        }
        out.count("latency_samples", u64::try_from(lat.len())?);
    }
    out.count("connections", u64::try_from(n)?);
    out.count("sent", sent);
    out.count("delivered", delivered);
    out.count("delivered_in_window", in_window);
    close_all(rooms).await;
    Ok(out)
}

/// Rooms of 2 opened one at a time on the idle server before the storm.
const CALM_ROOMS: usize = 50;

/// In rooms of 2: the second member's connect → the first told (µs), sorted.
fn notify_latencies(tally: &Tally, rooms: &[Vec<Conn>]) -> Vec<u32> {
    let mut v: Vec<u32> = rooms
        .iter()
        .map(|members| {
            let first = &tally.members[members[0].index];
            let second = &tally.members[members[1].index];
            let told = first.notified_us.load(Ordering::Relaxed);
            let started = second.started_us.load(Ordering::Relaxed);
            u32::try_from(told.saturating_sub(started)).unwrap_or(u32::MAX)
        })
        .collect();
    v.sort_unstable();
    v
}

/// Join storm: first 50 rooms of 2 one at a time on the idle server (connect → notified
/// without load), then `Sizes::storm` connections into rooms of 2, `ROOMS_AT_ONCE` rooms at a time.
/// Joins per second and CPU per join until every first member has learnt of its second;
/// the second's connect → the first told.
async fn storm(target: &mut Target<'_>) -> anyhow::Result<Outcome> {
    let n = target.sizes.storm;
    let mut out = Outcome::default();
    // First, on the idle server, rooms of 2 one at a time: connect → notified without load.
    let calm = Tally::new(2 * CALM_ROOMS);
    let rooms = open_rooms(
        target.kind(),
        &target.endpoint(),
        &calm,
        (2 * CALM_ROOMS, 2, 1),
    )
    .await?;
    let calm_notify = notify_latencies(&calm, &rooms);
    close_all(rooms).await;
    check(&calm).context("while closing")?;
    if let Some(m) = quantile(&calm_notify, 0.5) {
        out.figure("notify_idle_p50_ms", m / 1000.0);
    }
    tokio::time::sleep(target.sizes.settle).await;

    let tally = Tally::new(n);
    let cpu0 = target.cpu()?;
    let t0 = Instant::now();
    let rooms = open_rooms(
        target.kind(),
        &target.endpoint(),
        &tally,
        (n, 2, ROOMS_AT_ONCE),
    )
    .await?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = target.cpu()? - cpu0;
    let notify = notify_latencies(&tally, &rooms);
    let joins = f(u64::try_from(n)?);
    out.figure("joins_per_s", joins / secs);
    out.figure("cpu_us_per_join", cpu * 1e6 / joins);
    if let Some(m) = quantile(&notify, 0.5) {
        out.figure("notify_p50_ms", m / 1000.0);
    }
    if let Some(m) = quantile(&notify, 0.99) {
        out.figure("notify_p99_ms", m / 1000.0);
    }
    out.count("connections", u64::try_from(n)?);
    out.count("join_notifications", tally.notified.load(Ordering::Relaxed));
    close_all(rooms).await;
    check(&tally).context("while closing")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), Some(500.0));
        assert_eq!(quantile(&v, 0.99), Some(990.0));
        assert_eq!(quantile(&v, 0.999), Some(999.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.999), Some(7.0));
    }

    #[test]
    fn case_names() {
        let all = Case::all(&Sizes::full());
        let names: Vec<String> = all.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "idle-1000",
                "idle-5000",
                "idle-10000",
                "moderate-2",
                "moderate-4",
                "saturated-2",
                "saturated-4",
                "storm"
            ]
        );
    }
}
