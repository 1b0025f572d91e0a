//! One benchmark client, whichever server it talks to: connect and join a room, learn its
//! own id, send offer-sized payloads to room-mates, receive and time them, send the
//! keep-alives the real client sends. Each connection is one task; the case drives it with
//! [`Cmd`]s and reads what happened from the shared [`Tally`].
//!
//! What "join" means per server (the module docs of [`crate::meshcall`],
//! [`crate::matchbox`], [`crate::peerjs`] have the frames):
//!
//! - meshcall: `ws://ADDR/ws`, then `joinRoom`; ready at `joined` (own id); earlier members
//!   get `newParticipant`.
//! - matchbox: `ws://ADDR/<room>`; ready at `IdAssigned`; earlier members get `NewPeer`.
//! - `PeerJS`: `ws://ADDR/peerjs?key=peerjs&id=ID&token=TOKEN` with an id the harness picks;
//!   ready at `OPEN`. The server has no rooms, so the newcomer tells each earlier member
//!   itself, as a `PeerJS` mesh client does by calling them: a small `OFFER` (the "hello").
//!
//! In every case the harness hands each member its room-mates' ids (it opened the room):
//! meshcall's `joined.participants` would give them too, matchbox and `PeerJS` clients learn
//! them from the first offers.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinHandle,
    time::{Interval, MissedTickBehavior},
};
use tokio_tungstenite::tungstenite::Message;

use super::server::Kind;
use crate::{
    matchbox, meshcall, peerjs,
    rng::Rng,
    ws::{self, AnyWs},
};

/// Where the clients connect: the server's address, and for `wss` the TLS configuration
/// that trusts its certificate.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server's address.
    pub addr: SocketAddr,
    /// `None`: `ws://`; otherwise `wss://` with this configuration.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Endpoint {
    async fn connect(&self, path: &str) -> anyhow::Result<AnyWs> {
        ws::connect_any(self.addr, path, self.tls.as_ref()).await
    }
}

/// Longest wait for a connection, a handshake, a join or a send.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Failure descriptions kept in full; the rest are only counted.
const SAMPLES: usize = 10;
/// The mark of a benchmark payload: `"mcbench":"<sender>.<seq>.<sent µs>"`.
const PAYLOAD_TAG: &str = "\"mcbench\":\"";
/// The mark of a `PeerJS` hello.
const HELLO_TAG: &str = "\"mchello\":";

/// The keep-alive each real client sends, and how often.
pub fn keep_alive(kind: Kind) -> (Duration, String) {
    match kind {
        // web/js/signaling.js: `pingIntervalMs` 5 minutes.
        Kind::Meshcall => (Duration::from_mins(5), meshcall::ping()),
        // matchbox_socket: `keep_alive_interval` 10 s.
        Kind::Matchbox => (Duration::from_secs(10), matchbox::keep_alive()),
        // peerjs client: `pingInterval` 5 000 ms.
        Kind::Peerjs => (Duration::from_secs(5), peerjs::heartbeat()),
    }
}

/// What one connection's state looks like to the case.
#[derive(Debug, Default)]
pub struct Member {
    /// When it started connecting (µs on the harness clock).
    pub started_us: AtomicU64,
    /// When it last learnt that someone joined its room (µs; 0: never).
    pub notified_us: AtomicU64,
}

/// What every connection of one case reports: counts, latencies, failures. Shared by all
/// of the case's tasks.
#[derive(Debug)]
pub struct Tally {
    epoch: Instant,
    /// Payloads sent (counted once the frame is written).
    pub sent: AtomicU64,
    /// Payloads received.
    pub delivered: AtomicU64,
    /// Join notifications received (`newParticipant`, `NewPeer`, `PeerJS` hellos).
    pub notified: AtomicU64,
    failures: AtomicU64,
    samples: Mutex<Vec<String>>,
    window_start_us: AtomicU64,
    window_end_us: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
    closed_loop: AtomicBool,
    credits: Vec<Semaphore>,
    /// Per connection, by index.
    pub members: Vec<Member>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tally {
    /// A tally for `n` connections.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            notified: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            window_start_us: AtomicU64::new(u64::MAX),
            window_end_us: AtomicU64::new(u64::MAX),
            latencies_us: Mutex::new(Vec::new()),
            closed_loop: AtomicBool::new(false),
            credits: (0..n).map(|_| Semaphore::new(0)).collect(),
            members: (0..n).map(|_| Member::default()).collect(),
        })
    }

    /// Microseconds on the harness clock.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records a failure (a lost or refused message, an error frame, a broken socket).
    pub fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut samples = lock(&self.samples);
        if samples.len() < SAMPLES {
            samples.push(what);
        }
    }

    /// Failures so far, and the first few described.
    pub fn failures(&self) -> (u64, Vec<String>) {
        (
            self.failures.load(Ordering::Relaxed),
            lock(&self.samples).clone(),
        )
    }

    /// Latencies are kept for payloads sent from now on...
    pub fn open_window(&self) {
        self.window_start_us.store(self.now_us(), Ordering::Relaxed);
    }

    /// ...until now.
    pub fn close_window(&self) {
        self.window_end_us.store(self.now_us(), Ordering::Relaxed);
    }

    /// The latencies (µs) of payloads sent within the window, sorted.
    pub fn latencies(&self) -> Vec<u32> {
        let mut l = lock(&self.latencies_us).clone();
        l.sort_unstable();
        l
    }

    /// Closed loop: each connection may have `inflight` payloads on their way; each
    /// delivery gives its sender one more.
    pub fn close_loop(&self, inflight: usize) {
        self.closed_loop.store(true, Ordering::Relaxed);
        for c in &self.credits {
            c.add_permits(inflight);
        }
    }

    fn delivered(&self, sender: usize, sent_us: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let start = self.window_start_us.load(Ordering::Relaxed);
        let end = self.window_end_us.load(Ordering::Relaxed);
        if sent_us >= start && sent_us < end {
            let latency = self.now_us().saturating_sub(sent_us);
            lock(&self.latencies_us).push(u32::try_from(latency).unwrap_or(u32::MAX));
        }
        if self.closed_loop.load(Ordering::Relaxed)
            && let Some(c) = self.credits.get(sender)
        {
            c.add_permits(1);
        }
    }

    fn joined_seen(&self, index: usize) {
        self.notified.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.members.get(index) {
            m.notified_us.store(self.now_us().max(1), Ordering::Relaxed);
        }
    }
}

/// How a connection sends payloads.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// One payload every `period`, the first after `first`.
    Every {
        /// Between two payloads.
        period: Duration,
        /// Before the first (spreads the senders over the period).
        first: Duration,
    },
    /// Whenever the tally gives it a credit (see [`Tally::close_loop`]).
    ClosedLoop,
}

/// What the case tells a connection.
#[derive(Debug)]
pub enum Cmd {
    /// Send this frame now.
    Send(String),
    /// Send payloads to these peers in turn, at this pace.
    Start(Vec<Arc<str>>, Pace),
    /// Stop sending payloads; the answer comes once no more will be sent.
    Stop(oneshot::Sender<()>),
    /// Close cleanly (close frame, wait for the server's) and end.
    Close,
}

/// An open, joined connection.
#[derive(Debug)]
pub struct Conn {
    /// Its index in the case (and in [`Tally::members`]).
    pub index: usize,
    /// Its id on the server.
    pub id: Arc<str>,
    tx: mpsc::Sender<Cmd>,
    task: JoinHandle<()>,
}

impl Conn {
    /// Hands `cmd` to the connection's task.
    ///
    /// # Errors
    /// If the task has ended (its socket broke: the tally says why) or does not take the
    /// command within [`STEP_TIMEOUT`].
    pub async fn tell(&self, cmd: Cmd) -> anyhow::Result<()> {
        tokio::time::timeout(STEP_TIMEOUT, self.tx.send(cmd))
            .await
            .with_context(|| format!("connection {} is not listening", self.index))?
            .map_err(|_| anyhow::anyhow!("connection {} has ended", self.index))
    }

    /// Stops its payloads and waits until it has (bounded).
    ///
    /// # Errors
    /// If the task has ended or does not answer.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tell(Cmd::Stop(tx)).await?;
        tokio::time::timeout(STEP_TIMEOUT, rx)
            .await
            .context("no answer to stop")?
            .context("connection ended")
    }

    /// Closes cleanly and waits for the task to end (bounded).
    pub async fn close(self) {
        let _ = tokio::time::timeout(STEP_TIMEOUT, self.tx.send(Cmd::Close)).await;
        let _ = tokio::time::timeout(STEP_TIMEOUT, self.task).await;
    }
}

/// The id a `PeerJS` client would get from the server's `/id` (a UUID v4 shape), from the
/// connection's index.
fn peerjs_id(index: usize) -> String {
    let mut rng = Rng::new(0x5eed, index as u64);
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// Opens connection `index` into `room` and waits until the server has given it its id;
/// then its task runs (keep-alives start at a random point of their period).
///
/// # Errors
/// If the connection, the handshake or the join fails or times out, or the server answers
/// something else first.
pub async fn open(
    kind: Kind,
    endpoint: &Endpoint,
    room: &str,
    index: usize,
    tally: Arc<Tally>,
) -> anyhow::Result<Conn> {
    if let Some(m) = tally.members.get(index) {
        m.started_us.store(tally.now_us(), Ordering::Relaxed);
    }
    let joined = tokio::time::timeout(STEP_TIMEOUT, async {
        match kind {
            Kind::Meshcall => {
                let mut ws = endpoint.connect("/ws").await?;
                ws.send(Message::text(meshcall::join(room))).await?;
                let first = first_text(&mut ws).await?;
                match meshcall::parse(&first) {
                    meshcall::Incoming::Joined { connection_id, .. } => Ok((ws, connection_id)),
                    _ => bail!("meshcall answered joinRoom with {first}"),
                }
            }
            Kind::Matchbox => {
                let mut ws = endpoint.connect(&matchbox::path(room)).await?;
                let first = first_text(&mut ws).await?;
                match matchbox::parse(&first) {
                    matchbox::Incoming::IdAssigned(id) => Ok((ws, id)),
                    _ => bail!("matchbox opened with {first}"),
                }
            }
            Kind::Peerjs => {
                let id = peerjs_id(index);
                let token = format!("t{index}");
                let mut ws = endpoint
                    .connect(&peerjs::path("peerjs", &id, &token))
                    .await?;
                let first = first_text(&mut ws).await?;
                match peerjs::parse(&first) {
                    peerjs::Incoming::Open => Ok((ws, id)),
                    _ => bail!("the PeerJS server opened with {first}"),
                }
            }
        }
    })
    .await;
    let (ws, id) = joined.with_context(|| format!("join {index} timed out"))??;
    let (tx, rx) = mpsc::channel(4);
    let (period, ping) = keep_alive(kind);
    let phase = Rng::new(7, index as u64).below(u64::try_from(period.as_millis()).unwrap_or(1));
    let keep = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(phase),
        period,
    );
    let task = Task {
        kind,
        index,
        tally,
        ws,
        keep,
        ping,
        seq: 0,
    };
    Ok(Conn {
        index,
        id: id.into(),
        tx,
        task: tokio::spawn(task.run(rx)),
    })
}

/// The first text frame (pings and pongs are skipped).
async fn first_text(ws: &mut AnyWs) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => bail!("closed by the server: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("closed by the server"),
        }
    }
}

/// The `PeerJS` hello to an earlier member of the room.
pub fn hello(to: &str, from: usize) -> String {
    peerjs::message_raw("OFFER", to, &format!("{{{HELLO_TAG}{from}}}"))
}

/// An SDP offer's body, about 3.9 KB: the size of a browser's audio+video offer with a
/// data channel. Built once.
fn sdp() -> &'static str {
    static SDP: OnceLock<String> = OnceLock::new();
    SDP.get_or_init(|| {
        let mut s = String::from(
            "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\n\
             a=group:BUNDLE 0 1 2\\r\\na=extmap-allow-mixed\\r\\na=msid-semantic: WMS stream\\r\\n",
        );
        let mut line = 0;
        while s.len() < 3900 {
            let _ = write!(
                s,
                "a=rtpmap:{} VP8/90000\\r\\na=rtcp-fb:{} nack pli\\r\\na=fmtp:{} x-google-start-bitrate=800;level-asymmetry-allowed=1\\r\\n\
                 a=candidate:{} 1 udp 2122260223 192.168.1.{} {} typ host generation 0\\r\\n",
                96 + line % 32,
                96 + line % 32,
                96 + line % 32,
                1_000_000 + line,
                line % 250,
                50_000 + line
            );
            line += 1;
        }
        s
    })
}

/// A payload from `sender`: `{"mcbench":"<sender>.<seq>.<sent µs>","type":"offer","sdp":…}`.
pub fn payload(sender: usize, seq: u64, sent_us: u64) -> String {
    format!(
        r#"{{{PAYLOAD_TAG}{sender}.{seq}.{sent_us}","type":"offer","sdp":"{}"}}"#,
        sdp()
    )
}

/// The sender and send time in a frame carrying a payload.
fn read_tag(text: &str) -> Option<(usize, u64)> {
    let at = text.find(PAYLOAD_TAG)? + PAYLOAD_TAG.len();
    let rest = &text[at..];
    let tag = &rest[..rest.find('"')?];
    let mut parts = tag.split('.');
    let sender = parts.next()?.parse().ok()?;
    let _seq: u64 = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((sender, sent))
}

/// A frame to `to` carrying `data` (JSON), in `kind`'s protocol.
fn addressed(kind: Kind, to: &str, data: &str) -> String {
    match kind {
        Kind::Meshcall => meshcall::signal_raw(to, data),
        Kind::Matchbox => matchbox::signal_raw(to, data),
        Kind::Peerjs => peerjs::message_raw("OFFER", to, data),
    }
}

/// What a received frame means to the benchmark.
enum Seen {
    Payload(usize, u64),
    Joined,
    Ignored,
    Wrong(String),
}

fn classify(kind: Kind, text: &str) -> Seen {
    if let Some((sender, sent)) = read_tag(text) {
        return Seen::Payload(sender, sent);
    }
    let short = || text.chars().take(200).collect::<String>();
    match kind {
        Kind::Meshcall => match meshcall::parse(text) {
            meshcall::Incoming::NewParticipant(_) => Seen::Joined,
            meshcall::Incoming::ParticipantLeft(_) | meshcall::Incoming::Pong => Seen::Ignored,
            _ => Seen::Wrong(short()),
        },
        Kind::Matchbox => match matchbox::parse(text) {
            matchbox::Incoming::NewPeer(_) => Seen::Joined,
            matchbox::Incoming::PeerLeft(_) => Seen::Ignored,
            _ => Seen::Wrong(short()),
        },
        Kind::Peerjs => match peerjs::parse(text) {
            peerjs::Incoming::Relayed { .. } if text.contains(HELLO_TAG) => Seen::Joined,
            _ => Seen::Wrong(short()),
        },
    }
}

/// A connection's task.
struct Task {
    kind: Kind,
    index: usize,
    tally: Arc<Tally>,
    ws: AnyWs,
    keep: Interval,
    ping: String,
    seq: u64,
}

/// Waits for the next tick of `interval`, or forever without one.
async fn tick(interval: Option<&mut Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut mates: Vec<Arc<str>> = Vec::new();
        let mut every: Option<Interval> = None;
        let mut closed_loop = false;
        let tally = Arc::clone(&self.tally);
        let credits = &tally.credits[self.index];
        loop {
            let outcome = tokio::select! {
                frame = self.ws.next() => self.received(frame),
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Send(text)) => self.send(text).await,
                    Some(Cmd::Start(to, pace)) => {
                        mates = to;
                        match pace {
                            Pace::Every { period, first } => {
                                let mut i = tokio::time::interval_at(
                                    tokio::time::Instant::now() + first,
                                    period,
                                );
                                i.set_missed_tick_behavior(MissedTickBehavior::Delay);
                                every = Some(i);
                            }
                            Pace::ClosedLoop => closed_loop = true,
                        }
                        Ok(())
                    }
                    Some(Cmd::Stop(done)) => {
                        every = None;
                        closed_loop = false;
                        let _ = done.send(());
                        Ok(())
                    }
                    Some(Cmd::Close) | None => {
                        ws::close(self.ws, STEP_TIMEOUT).await;
                        return;
                    }
                },
                () = tick(Some(&mut self.keep)) => {
                    let ping = self.ping.clone();
                    self.send(ping).await
                }
                () = tick(every.as_mut()) => self.send_payload(&mates).await,
                permit = credits.acquire(), if closed_loop => {
                    if let Ok(p) = permit {
                        p.forget();
                    }
                    self.send_payload(&mates).await
                }
            };
            if let Err(e) = outcome {
                self.tally.fail(format!("connection {}: {e}", self.index));
                return;
            }
        }
    }

    fn received(
        &self,
        frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> anyhow::Result<()> {
        match frame {
            Some(Ok(Message::Text(text))) => {
                match classify(self.kind, text.as_str()) {
                    Seen::Payload(sender, sent) => self.tally.delivered(sender, sent),
                    Seen::Joined => self.tally.joined_seen(self.index),
                    Seen::Ignored => {}
                    Seen::Wrong(what) => {
                        self.tally
                            .fail(format!("connection {} received {what}", self.index));
                    }
                }
                Ok(())
            }
            Some(Ok(Message::Close(c))) => bail!("closed by the server: {c:?}"),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => bail!("socket: {e}"),
            None => bail!("closed by the server"),
        }
    }

    async fn send(&mut self, text: String) -> anyhow::Result<()> {
        tokio::time::timeout(STEP_TIMEOUT, self.ws.send(Message::text(text)))
            .await
            .context("send timed out")?
            .context("send")
    }

    async fn send_payload(&mut self, mates: &[Arc<str>]) -> anyhow::Result<()> {
        if mates.is_empty() {
            return Ok(());
        }
        let to = &mates[usize::try_from(self.seq).unwrap_or(0) % mates.len()];
        let data = payload(self.index, self.seq, self.tally.now_us());
        self.seq += 1;
        let frame = addressed(self.kind, to, &data);
        self.send(frame).await?;
        self.tally.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn payload_is_offer_sized_json_with_a_tag() {
        let p = payload(12, 3, 456_789);
        assert!((3900..4300).contains(&p.len()), "{}", p.len());
        let v: Value = serde_json::from_str(&p).unwrap_or_default();
        assert_eq!(v["type"], "offer");
        assert!(v["sdp"].as_str().is_some_and(|s| s.contains("\r\n")));
        for kind in Kind::ALL {
            let frame = addressed(kind, "peer", &p);
            assert!(serde_json::from_str::<Value>(&frame).is_ok());
            assert_eq!(read_tag(&frame), Some((12, 456_789)));
        }
    }

    #[test]
    fn classifies_frames() {
        assert!(matches!(
            classify(
                Kind::Meshcall,
                r#"{"type":"newParticipant","participantConnectionId":"x"}"#
            ),
            Seen::Joined
        ));
        assert!(matches!(
            classify(Kind::Matchbox, r#"{"NewPeer":"x"}"#),
            Seen::Joined
        ));
        let relayed = hello("a", 7).replace(r#""dst""#, r#""src":"b","dst""#);
        assert!(matches!(classify(Kind::Peerjs, &relayed), Seen::Joined));
        assert!(matches!(
            classify(Kind::Peerjs, r#"{"type":"EXPIRE","src":"b","dst":"a"}"#),
            Seen::Wrong(_)
        ));
        assert!(matches!(
            classify(Kind::Meshcall, r#"{"type":"error","code":"rateLimited"}"#),
            Seen::Wrong(_)
        ));
    }

    #[test]
    fn peerjs_ids_are_uuid_shaped_and_distinct() {
        let a = peerjs_id(1);
        assert_eq!(a.len(), 36);
        assert_ne!(a, peerjs_id(2));
    }
}
