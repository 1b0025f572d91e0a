//! The soak: N WebSocket connections (10 000 by default) to a meshcall server on loopback,
//! with continuous churn for a bounded time, checking delivery as it goes. `scripts/soak`
//! builds and starts the server and runs this against it.
//!
//! Each connection is an agent (one task) that joins a room, then until the churn ends,
//! after a random pause, does one of: a targeted `signal` to a peer (40 %), a room message
//! (30 %), `leaveRoom` and a join elsewhere (10 %), a direct switch to another room (6 %), an
//! abrupt drop (TCP reset, no close frame) and a `resume` with its token on a new socket
//! (8 %), an abrupt drop and a fresh connection (3 %), or a clean leave, close and fresh
//! connection (3 %). Every action waits for its answer (`joined`, an error, or the `pong`
//! of a `ping` sent behind it), so each agent has at most one action in flight. At the end
//! every agent leaves cleanly and closes.
//!
//! # What it checks
//!
//! Every payload (the `data` of a signal, the text of a room message) carries the room, the
//! sender's connection id and agent, a sequence number, the send time, and for a signal the
//! agent it is meant for. All agents live in this one process, so they share one clock.
//!
//! - **Nothing outside its room.** A connection keeps the rooms it asked to join, each with
//!   the time it learnt it had left (the `pong` after `leaveRoom`, the `joined` of the next
//!   room). A payload of room R sent at time t may reach it only if it asked for R and had
//!   not yet confirmed leaving R at t. The server processes a frame after it was sent and
//!   a leave before it is confirmed, so a payload that breaks this reached a connection
//!   that was not a member when the server handled it. Also: a signal's `from` must be the
//!   sender's id (no forgery, no mix-up), a signal must reach the agent it was meant for,
//!   and no sender receives its own room message.
//! - **No signal to a live member is lost.** Each agent publishes its state: connection id,
//!   room, whether its membership is confirmed, and an epoch bumped before every change
//!   (leave, switch, drop, close). A signal counts as *owed* when, both when it was sent and
//!   when the sender's `pong` came back (by then the server has queued it), the receiver
//!   was a confirmed member of the sender's room on that connection in the same epoch. An
//!   owed signal must arrive unless the receiver's epoch ended in an abrupt drop (frames in
//!   flight to a dropped socket are lost by design); a clean end drains the queue first
//!   (its `pong` comes after every earlier frame).
//! - **The server empties.** After everyone left, `/metrics` must show no connections,
//!   members, rooms or suspended participants within the resume grace and 30 s.
//! - **Memory comes back.** The server's `VmRSS` is sampled throughout. The run has
//!   `--rounds` rounds (2) against the same server; at the end of each (once the RSS stops
//!   falling: 12 s without a fall, at most 60 s after the server emptied) the RSS must be within
//!   `--rss-tolerance-percent` (20) or `--rss-slack-mib` (16) of the cold start, and of the
//!   end of the round before (no growth: a leak grows from round to round); the server runs
//!   on jemalloc with background purging (glibc's allocator kept what the first 10 000
//!   connections made it take: docs/operations.md, "Soak").
//! - Unexpected frames, errors, closes by the server, timeouts (20 s per answer) and a
//!   `resumeFailed` less than the grace after the drop are violations too (after the grace,
//!   which a starved machine can reach, it is counted, not failed).
//!
//! Every wait is bounded; the run ends by `--ramp` + `--churn` + the resume grace + about a
//! minute whatever the server does.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use meshcall_loadgen::{
    meshcall::{self, Incoming},
    procfs,
    rng::Rng,
    scrape,
    ws::{self, Ws},
};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

/// Longest wait for any one answer from the server.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// Violations printed in full; the rest are only counted.
const SAMPLES: usize = 25;

/// meshcall soak: many connections with churn, checking room isolation, signal delivery and
/// memory.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// The server's address (loopback only): `ws://ADDR/ws` and `http://ADDR/metrics`.
    #[arg(long)]
    addr: SocketAddr,
    /// The server's process id, for `VmRSS` and CPU time from `/proc`.
    #[arg(long)]
    server_pid: u32,
    /// Connections held open (each agent has one at a time).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Time over which the connections are opened and joined.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    ramp: Duration,
    /// Time of churn after the ramp.
    #[arg(long, default_value = "150s", value_parser = humantime::parse_duration)]
    churn: Duration,
    /// Mean pause between one agent's actions (each pause is 0.5 to 1.5 times this).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    think: Duration,
    /// Members per room at the start (rooms = connections / this).
    #[arg(long, default_value_t = 4)]
    room_fill: usize,
    /// The server's --resume-grace (how long to wait for dropped participants to expire).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    resume_grace: Duration,
    /// Seed of the random choices (same seed, same choices; timing still varies).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rounds of ramp, churn and leaving, against the same server.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Memory passes if the RSS at the end of each round is within this percentage of the
    /// cold start (and of the end of the round before)...
    #[arg(long, default_value_t = 20)]
    rss_tolerance_percent: u64,
    /// ...or within this many MiB of it.
    #[arg(long, default_value_t = 16)]
    rss_slack_mib: u64,
}

// ---------------------------------------------------------------------------------------
// What the agents share

/// One agent's published state (see "No signal to a live member is lost").
#[derive(Debug, Default)]
struct Cell {
    conn: Option<Arc<str>>,
    room: u32,
    epoch: u64,
    stable: bool,
}

/// Counters, all relaxed: read at phase boundaries only.
#[derive(Debug, Default)]
struct Counters {
    opened: AtomicU64,
    frames_out: AtomicU64,
    frames_in: AtomicU64,
    signals_sent: AtomicU64,
    signals_owed: AtomicU64,
    signals_in: AtomicU64,
    room_sent: AtomicU64,
    room_in: AtomicU64,
    joins: AtomicU64,
    room_full: AtomicU64,
    leaves: AtomicU64,
    switches: AtomicU64,
    resumes: AtomicU64,
    late_resumes: AtomicU64,
    drops_fresh: AtomicU64,
    closes: AtomicU64,
    peer_not_found: AtomicU64,
    violations: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

struct Shared {
    start: Instant,
    addr: SocketAddr,
    rooms: u32,
    think: Duration,
    grace: Duration,
    cells: Vec<Mutex<Cell>>,
    owners: Mutex<HashMap<Arc<str>, usize>>,
    count: Counters,
    samples: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Microseconds since the start: the payloads' clock.
    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn violation(&self, agent: usize, what: &str) {
        bump(&self.count.violations);
        let mut samples = lock(&self.samples);
        if samples.len() < SAMPLES {
            samples.push(format!(
                "[{:>7.3} s] agent {agent}: {what}",
                self.start.elapsed().as_secs_f64()
            ));
        }
    }

    /// The agent and epoch behind connection `to`, if it is a confirmed member of `room`.
    fn peek(&self, to: &str, room: u32) -> Option<(usize, u64)> {
        let agent = *lock(&self.owners).get(to)?;
        let cell = lock(&self.cells[agent]);
        (cell.stable && cell.room == room && cell.conn.as_deref() == Some(to))
            .then_some((agent, cell.epoch))
    }

    /// Whether `agent` is still confirmed in the same epoch.
    fn still(&self, agent: usize, epoch: u64) -> bool {
        let cell = lock(&self.cells[agent]);
        cell.stable && cell.epoch == epoch
    }
}

fn room_name(room: u32) -> String {
    format!("soak{room}")
}

fn room_index(name: &str) -> Option<u32> {
    name.strip_prefix("soak")?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// One agent

/// Why an action could not finish.
#[derive(Debug)]
enum Fault {
    Timeout(&'static str),
    Closed(String),
    Broken(String),
    Connect(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout(what) => write!(f, "no {what} within {ANSWER_TIMEOUT:?}"),
            Self::Closed(frame) => write!(f, "closed by the server: {frame}"),
            Self::Broken(why) => write!(f, "socket broke: {why}"),
            Self::Connect(why) => write!(f, "could not connect: {why}"),
        }
    }
}

/// A room this connection asked to join, and when it learnt it had left (µs).
#[derive(Debug, Clone, Copy)]
struct Interval {
    room: u32,
    left_us: Option<u64>,
}

/// A signal that had to arrive.
#[derive(Debug, Clone, Copy)]
struct Owed {
    to: usize,
    epoch: u64,
    seq: u64,
}

/// What an agent hands back at the end, for the cross-check.
#[derive(Debug, Default)]
struct Report {
    owed: Vec<Owed>,
    received: HashSet<(usize, u64)>,
    dropped_epochs: HashSet<u64>,
}

/// Which answer an action waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Pong,
    Joined,
}

/// A payload's fields (see the module docs).
struct Payload {
    room: u32,
    conn: String,
    agent: usize,
    seq: u64,
    sent_us: u64,
    target: Option<usize>,
}

impl Payload {
    fn read(v: &Value) -> Option<Self> {
        if v.get("k")?.as_str()? != "soak" {
            return None;
        }
        Some(Self {
            room: u32::try_from(v.get("r")?.as_u64()?).ok()?,
            conn: v.get("c")?.as_str()?.to_owned(),
            agent: usize::try_from(v.get("a")?.as_u64()?).ok()?,
            seq: v.get("q")?.as_u64()?,
            sent_us: v.get("t")?.as_u64()?,
            target: v
                .get("p")
                .and_then(Value::as_u64)
                .and_then(|p| usize::try_from(p).ok()),
        })
    }
}

struct Agent {
    idx: usize,
    sh: Arc<Shared>,
    rng: Rng,
    ws: Option<Ws>,
    me: Option<Arc<str>>,
    token: Option<String>,
    room: Option<u32>,
    peers: Vec<String>,
    epoch: u64,
    history: Vec<Interval>,
    seq: u64,
    report: Report,
}

impl Agent {
    fn new(idx: usize, sh: Arc<Shared>, seed: u64) -> Self {
        Self {
            idx,
            sh,
            rng: Rng::new(seed, idx as u64),
            ws: None,
            me: None,
            token: None,
            room: None,
            peers: Vec::new(),
            epoch: 0,
            history: Vec::new(),
            seq: 0,
            report: Report::default(),
        }
    }

    fn violation(&self, what: &str) {
        self.sh.violation(self.idx, what);
    }

    // --- published state ---

    fn settle(&self) {
        let mut cell = lock(&self.sh.cells[self.idx]);
        cell.conn.clone_from(&self.me);
        cell.room = self.room.unwrap_or(u32::MAX);
        cell.epoch = self.epoch;
        cell.stable = self.room.is_some();
    }

    /// Before any change of membership: a new epoch, not confirmed. `dropping` excuses the
    /// old epoch's frames in flight.
    fn unsettle(&mut self, dropping: bool) {
        if dropping {
            self.report.dropped_epochs.insert(self.epoch);
        }
        self.epoch += 1;
        let mut cell = lock(&self.sh.cells[self.idx]);
        cell.epoch = self.epoch;
        cell.stable = false;
    }

    fn left(&mut self, room: u32) {
        let now = self.sh.now_us();
        for h in &mut self.history {
            if h.room == room && h.left_us.is_none() {
                h.left_us = Some(now);
            }
        }
    }

    fn forget_identity(&mut self) {
        if let Some(me) = self.me.take() {
            lock(&self.sh.owners).remove(&me);
        }
        self.token = None;
        self.room = None;
        self.peers.clear();
        self.history.clear();
    }

    // --- the socket ---

    async fn send(&mut self, text: String) -> Result<(), Fault> {
        let ws = self
            .ws
            .as_mut()
            .ok_or_else(|| Fault::Broken("not connected".into()))?;
        match tokio::time::timeout(ANSWER_TIMEOUT, ws.send(Message::text(text))).await {
            Ok(Ok(())) => {
                bump(&self.sh.count.frames_out);
                Ok(())
            }
            Ok(Err(e)) => Err(Fault::Broken(format!("send: {e}"))),
            Err(_) => Err(Fault::Timeout("send")),
        }
    }

    /// The next frame before `until`, or `None` at `until`.
    async fn read(&mut self, until: Instant) -> Result<Option<Incoming>, Fault> {
        let ws = self
            .ws
            .as_mut()
            .ok_or_else(|| Fault::Broken("not connected".into()))?;
        loop {
            match tokio::time::timeout_at(until.into(), ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(Fault::Broken("stream ended".into())),
                Ok(Some(Err(e))) => return Err(Fault::Broken(format!("read: {e}"))),
                Ok(Some(Ok(Message::Text(text)))) => {
                    bump(&self.sh.count.frames_in);
                    return Ok(Some(meshcall::parse(&text)));
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(Fault::Closed(format!("{frame:?}")));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Handles frames until the answer `want` arrives.
    async fn wait_for(&mut self, want: Want) -> Result<Incoming, Fault> {
        let until = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let Some(frame) = self.read(until).await? else {
                return Err(Fault::Timeout(match want {
                    Want::Pong => "pong",
                    Want::Joined => "joined",
                }));
            };
            let answer = match (&frame, want) {
                (Incoming::Pong, Want::Pong) | (Incoming::Joined { .. }, Want::Joined) => true,
                (Incoming::Error { code, .. }, Want::Joined) => {
                    code == "roomFull" || code == "resumeFailed"
                }
                _ => false,
            };
            if answer {
                return Ok(frame);
            }
            self.on_frame(frame);
        }
    }

    /// Handles frames until `until`.
    async fn idle(&mut self, until: Instant) -> Result<(), Fault> {
        while let Some(frame) = self.read(until).await? {
            self.on_frame(frame);
        }
        Ok(())
    }

    async fn ping(&mut self) -> Result<(), Fault> {
        self.send(meshcall::ping()).await?;
        self.wait_for(Want::Pong).await.map(drop)
    }

    // --- checks on what arrives ---

    fn check_room(&self, p: &Payload, what: &str) {
        let inside = self
            .history
            .iter()
            .any(|h| h.room == p.room && h.left_us.is_none_or(|left| left >= p.sent_us));
        if !inside {
            self.violation(&format!(
                "{what} {}#{} of room {} reached a connection outside that room",
                p.agent,
                p.seq,
                room_name(p.room)
            ));
        }
    }

    fn on_frame(&mut self, frame: Incoming) {
        match frame {
            Incoming::NewParticipant(id) => {
                if !self.peers.contains(&id) {
                    self.peers.push(id);
                }
            }
            Incoming::ParticipantLeft(id) => self.peers.retain(|p| *p != id),
            Incoming::Signal { from, data } => {
                bump(&self.sh.count.signals_in);
                let Some(p) = Payload::read(&data) else {
                    self.violation(&format!("signal with foreign data {data}"));
                    return;
                };
                if from != p.conn {
                    self.violation(&format!(
                        "signal {}#{} stamped from {from}, sent by {}",
                        p.agent, p.seq, p.conn
                    ));
                }
                if p.target.is_some_and(|t| t != self.idx) {
                    self.violation(&format!(
                        "signal {}#{} for agent {:?} delivered here",
                        p.agent, p.seq, p.target
                    ));
                }
                self.check_room(&p, "signal");
                self.report.received.insert((p.agent, p.seq));
            }
            Incoming::Other(text) => {
                bump(&self.sh.count.room_in);
                let p = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| Payload::read(&v));
                let Some(p) = p else {
                    self.violation(&format!("unknown frame {text}"));
                    return;
                };
                if self.me.as_deref() == Some(p.conn.as_str()) {
                    self.violation("own room message echoed back");
                }
                self.check_room(&p, "room message");
            }
            Incoming::Error { code, .. } if code == "peerNotFound" => {
                bump(&self.sh.count.peer_not_found);
            }
            Incoming::Error { code, .. } => {
                self.violation(&format!("unexpected error {code}"));
            }
            Incoming::Joined { .. } => self.violation("joined without a join"),
            Incoming::Pong => self.violation("pong without a ping"),
        }
    }

    // --- actions ---

    fn payload(&mut self, room: u32, target: Option<usize>) -> Value {
        self.seq += 1;
        json!({
            "k": "soak",
            "r": room,
            "c": self.me.as_deref().unwrap_or_default(),
            "a": self.idx,
            "q": self.seq,
            "t": self.sh.now_us(),
            "p": target,
        })
    }

    fn random_room(&mut self, not: Option<u32>) -> u32 {
        loop {
            let r = u32::try_from(self.rng.below(u64::from(self.sh.rooms))).unwrap_or(0);
            if Some(r) != not || self.sh.rooms < 2 {
                return r;
            }
        }
    }

    /// Takes in a `joined` for `room`.
    fn joined(&mut self, room: u32, frame: Incoming) {
        let Incoming::Joined {
            connection_id,
            room: name,
            participants,
            resume_token,
            ..
        } = frame
        else {
            return;
        };
        if room_index(&name) != Some(room) {
            self.violation(&format!(
                "joined {name} when asking for {}",
                room_name(room)
            ));
        }
        match &self.me {
            Some(me) if **me != *connection_id => {
                self.violation(&format!("joined as {connection_id}, was {me}"));
            }
            Some(_) => {}
            None => {
                let me: Arc<str> = connection_id.into();
                lock(&self.sh.owners).insert(me.clone(), self.idx);
                self.me = Some(me);
            }
        }
        self.token = resume_token.or(self.token.take());
        self.room = Some(room);
        self.peers = participants;
        self.settle();
    }

    /// Joins `first`, or a random room, trying up to five rooms while they are full.
    async fn join_some(&mut self, first: Option<u32>) -> Result<(), Fault> {
        for attempt in 0..5 {
            let room = match first {
                Some(r) if attempt == 0 => r,
                _ => self.random_room(None),
            };
            self.history.push(Interval {
                room,
                left_us: None,
            });
            self.send(meshcall::join(&room_name(room))).await?;
            match self.wait_for(Want::Joined).await? {
                frame @ Incoming::Joined { .. } => {
                    bump(&self.sh.count.joins);
                    self.joined(room, frame);
                    return Ok(());
                }
                other => {
                    self.left(room);
                    self.note_join_refusal(&other);
                }
            }
        }
        Ok(())
    }

    fn note_join_refusal(&self, frame: &Incoming) {
        match frame {
            Incoming::Error { code, .. } if code == "roomFull" => {
                bump(&self.sh.count.room_full);
            }
            other => self.violation(&format!("join answered {other:?}")),
        }
    }

    async fn connect(&mut self) -> Result<(), Fault> {
        let ws = ws::connect(self.sh.addr, "/ws")
            .await
            .map_err(|e| Fault::Connect(format!("{e:#}")))?;
        bump(&self.sh.count.opened);
        self.ws = Some(ws);
        Ok(())
    }

    /// A new participant on a new socket.
    async fn fresh(&mut self, room: Option<u32>) -> Result<(), Fault> {
        self.forget_identity();
        self.connect().await?;
        self.join_some(room).await
    }

    async fn signal(&mut self, room: u32) -> Result<(), Fault> {
        if self.peers.is_empty() {
            return self.room_message(room).await;
        }
        let pick = usize::try_from(self.rng.below(self.peers.len() as u64)).unwrap_or(0);
        let to = self.peers[pick].clone();
        let snap = self.sh.peek(&to, room);
        let data = self.payload(room, snap.map(|(agent, _)| agent));
        let seq = self.seq;
        self.send(meshcall::signal(&to, &data)).await?;
        self.ping().await?;
        bump(&self.sh.count.signals_sent);
        if let Some((agent, epoch)) = snap
            && self.sh.still(agent, epoch)
        {
            bump(&self.sh.count.signals_owed);
            self.report.owed.push(Owed {
                to: agent,
                epoch,
                seq,
            });
        }
        Ok(())
    }

    async fn room_message(&mut self, room: u32) -> Result<(), Fault> {
        let text = self.payload(room, None).to_string();
        self.send(meshcall::send_to_room(&room_name(room), &text))
            .await?;
        self.ping().await?;
        bump(&self.sh.count.room_sent);
        Ok(())
    }

    /// `leaveRoom`, confirmed by the `pong` behind it.
    async fn leave(&mut self, room: u32) -> Result<(), Fault> {
        self.send(meshcall::leave()).await?;
        self.ping().await?;
        self.left(room);
        self.room = None;
        self.peers.clear();
        bump(&self.sh.count.leaves);
        Ok(())
    }

    async fn switch(&mut self, room: u32) -> Result<(), Fault> {
        let next = self.random_room(Some(room));
        self.history.push(Interval {
            room: next,
            left_us: None,
        });
        self.send(meshcall::join(&room_name(next))).await?;
        match self.wait_for(Want::Joined).await? {
            frame @ Incoming::Joined { .. } => {
                self.left(room);
                bump(&self.sh.count.switches);
                self.joined(next, frame);
            }
            other => {
                // Refused: still in the old room.
                self.left(next);
                self.note_join_refusal(&other);
                self.settle();
            }
        }
        Ok(())
    }

    async fn drop_and_resume(&mut self) -> Result<(), Fault> {
        let dropped_at = Instant::now();
        if let Some(ws) = self.ws.take() {
            ws::reset(ws);
        }
        let offline = Duration::from_millis(self.rng.between(100, 2000));
        tokio::time::sleep(offline).await;
        let Some(token) = self.token.clone() else {
            return self.fresh(None).await;
        };
        self.connect().await?;
        self.send(meshcall::resume(&token)).await?;
        match self.wait_for(Want::Joined).await? {
            frame @ Incoming::Joined { resumed: true, .. } => {
                bump(&self.sh.count.resumes);
                let room = self.room.unwrap_or(u32::MAX);
                self.joined(room, frame);
                Ok(())
            }
            // Refused after the grace (a starved machine can take that long): not a fault.
            Incoming::Error { code, .. }
                if code == "resumeFailed" && dropped_at.elapsed() >= self.sh.grace =>
            {
                bump(&self.sh.count.late_resumes);
                self.fresh(None).await
            }
            other => {
                self.violation(&format!(
                    "resume answered {other:?} {} ms after the drop ({} ms meant offline)",
                    dropped_at.elapsed().as_millis(),
                    offline.as_millis()
                ));
                self.fresh(None).await
            }
        }
    }

    async fn act(&mut self) -> Result<(), Fault> {
        if self.ws.is_none() {
            return self.fresh(None).await;
        }
        let Some(room) = self.room else {
            return self.join_some(None).await;
        };
        match self.rng.below(100) {
            0..40 => self.signal(room).await,
            40..70 => self.room_message(room).await,
            70..80 => {
                self.unsettle(false);
                self.leave(room).await?;
                self.join_some(None).await
            }
            80..86 => {
                self.unsettle(false);
                self.switch(room).await
            }
            86..94 => {
                self.unsettle(true);
                self.drop_and_resume().await
            }
            94..97 => {
                self.unsettle(true);
                if let Some(ws) = self.ws.take() {
                    ws::reset(ws);
                }
                bump(&self.sh.count.drops_fresh);
                self.fresh(None).await
            }
            _ => {
                self.unsettle(false);
                self.leave(room).await?;
                if let Some(ws) = self.ws.take() {
                    ws::close(ws, Duration::from_secs(5)).await;
                }
                bump(&self.sh.count.closes);
                self.fresh(None).await
            }
        }
    }

    /// After a fault: count it, excuse the epoch, and start again on a new socket (up to
    /// three tries, a second apart).
    async fn recover(&mut self, fault: Fault) {
        self.violation(&fault.to_string());
        self.unsettle(true);
        if let Some(ws) = self.ws.take() {
            ws::reset(ws);
        }
        for _ in 0..3 {
            match self.fresh(None).await {
                Ok(()) => return,
                Err(f) => {
                    self.violation(&format!("reconnecting: {f}"));
                    if let Some(ws) = self.ws.take() {
                        ws::reset(ws);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// The agent's whole life: start at `start_at`, churn until `churn_until`, leave cleanly.
    async fn run(mut self, start_at: Instant, churn_until: Instant, room: u32) -> Report {
        tokio::time::sleep_until(start_at.into()).await;
        if let Err(f) = self.fresh(Some(room)).await {
            self.recover(f).await;
        }
        let think = self.sh.think;
        let half = u64::try_from(think.as_millis() / 2).unwrap_or(1).max(1);
        loop {
            let pause = Duration::from_millis(self.rng.between(half, 3 * half));
            let until = (Instant::now() + pause).min(churn_until);
            let done = match self.idle(until).await {
                Ok(()) if Instant::now() >= churn_until => break,
                Ok(()) => self.act().await,
                Err(f) => Err(f),
            };
            if let Err(f) = done {
                self.recover(f).await;
            }
            if Instant::now() >= churn_until {
                break;
            }
        }
        // The end: a clean leave (its pong drains every owed signal), then a close.
        self.unsettle(false);
        if let Some(room) = self.room
            && self.ws.is_some()
            && let Err(f) = self.leave(room).await
        {
            self.violation(&format!("final leave: {f}"));
            self.report.dropped_epochs.insert(self.epoch - 1);
        }
        if let Some(ws) = self.ws.take() {
            ws::close(ws, Duration::from_secs(5)).await;
        }
        self.forget_identity();
        self.report
    }
}

// ---------------------------------------------------------------------------------------
// The run

#[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Samples the server's RSS until told to stop; returns the peak.
fn sample_peak(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(rss) = procfs::rss_bytes(pid) {
                peak = peak.max(rss);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        peak
    })
}

struct Point {
    at: Instant,
    cpu: f64,
    rss: u64,
    frames_in: u64,
    frames_out: u64,
    delivered: f64,
}

async fn point(args: &Args, clk: u32, count: &Counters) -> Point {
    let delivered = match scrape::fetch(args.addr).await {
        Ok(text) => scrape::sum(&text, "meshcall_messages_delivered_total").unwrap_or(0.0),
        Err(_) => 0.0,
    };
    Point {
        at: Instant::now(),
        cpu: procfs::cpu_seconds(args.server_pid, clk).unwrap_or(f64::NAN),
        rss: procfs::rss_bytes(args.server_pid).unwrap_or(0),
        frames_in: get(&count.frames_in),
        frames_out: get(&count.frames_out),
        delivered,
    }
}

/// Waits until `/metrics` shows no connections, members, rooms or suspended participants.
async fn wait_empty(args: &Args, limit: Duration) -> Result<(), String> {
    let until = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < until {
        if let Ok(text) = scrape::fetch(args.addr).await {
            let gauges = [
                "meshcall_connections",
                "meshcall_room_members",
                "meshcall_rooms",
                "meshcall_suspended",
            ]
            .map(|name| (name, scrape::sum(&text, name).unwrap_or(-1.0)));
            if gauges.iter().all(|&(_, value)| value == 0.0) {
                return Ok(());
            }
            last = format!("{gauges:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("server not empty after {limit:?}: {last}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match soak(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("SOAK FAILED");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn soak(args: &Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.addr.ip().is_loopback(), "loopback addresses only");
    anyhow::ensure!(args.connections > 0 && args.room_fill > 0, "nothing to do");
    anyhow::ensure!(args.rounds > 0, "at least one round");
    let clk = procfs::clk_tck();
    let cold = procfs::rss_bytes(args.server_pid)?;
    let mut violations = 0;
    let mut ends = Vec::new();
    for round_no in 1..=args.rounds {
        println!("\n== round {round_no} of {}", args.rounds);
        let (v, end) = round(args, clk).await?;
        violations += v;
        ends.push(end);
    }
    // The memory must come back near the cold start once everyone left (the server's
    // allocator returns freed pages about 10 s after they are freed: docs/operations.md),
    // and must not grow from round to round (a leak would).
    let (base, what) = (cold, "the cold start");
    let end = ends.last().copied().unwrap_or(cold);
    let slack = args.rss_slack_mib * 1024 * 1024;
    let near = |end: u64, base: u64| {
        end * 100 <= base * (100 + args.rss_tolerance_percent) || end <= base + slack
    };
    let no_growth = ends.windows(2).all(|w| near(w[1], w[0]));
    let memory_ok = near(end, base) && no_growth;
    println!();
    println!("== memory");
    println!(
        "server RSS: cold start {:.1} MiB, end of each round {}",
        mib(cold),
        ends.iter()
            .map(|e| format!("{:.1} MiB", mib(*e)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "end {:.1} MiB within {} % or {} MiB of {what} ({:.1} MiB): {memory_ok}",
        mib(end),
        args.rss_tolerance_percent,
        args.rss_slack_mib,
        mib(base)
    );
    if !memory_ok {
        violations += 1;
    }
    if violations == 0 {
        println!("SOAK OK");
    }
    Ok(violations == 0)
}

/// One round: ramp, churn, everyone leaves, the server empties. Returns the violations
/// and the server's RSS at the end.
#[expect(clippy::too_many_lines, reason = "one report, printed in order")]
#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
async fn round(args: &Args, clk: u32) -> anyhow::Result<(u64, u64)> {
    let rooms = u32::try_from(args.connections.div_ceil(args.room_fill))?;
    let sh = Arc::new(Shared {
        start: Instant::now(),
        addr: args.addr,
        rooms,
        think: args.think,
        grace: args.resume_grace,
        cells: (0..args.connections)
            .map(|_| Mutex::new(Cell::default()))
            .collect(),
        owners: Mutex::new(HashMap::new()),
        count: Counters::default(),
        samples: Mutex::new(Vec::new()),
    });
    let start = point(args, clk, &sh.count).await;
    println!(
        "soak: {} connections in {} rooms of {}, ramp {:?}, churn {:?}, think {:?}, seed {}",
        args.connections, rooms, args.room_fill, args.ramp, args.churn, args.think, args.seed
    );
    println!(
        "server pid {} start: RSS {:.1} MiB, CPU {:.2} s",
        args.server_pid,
        mib(start.rss),
        start.cpu
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(args.server_pid, stop.clone());

    let ramp_end = start.at + args.ramp;
    let churn_until = ramp_end + args.churn;
    let mut agents = JoinSet::new();
    let n = u32::try_from(args.connections)?;
    for i in 0..n {
        let idx = i as usize;
        let start_at = start.at + args.ramp.mul_f64(f64::from(i) / f64::from(n)) / 2;
        let agent = Agent::new(idx, sh.clone(), args.seed);
        let room = u32::try_from(idx / args.room_fill)?;
        agents.spawn(async move { (idx, agent.run(start_at, churn_until, room).await) });
    }

    tokio::time::sleep_until(ramp_end.into()).await;
    let ramped = point(args, clk, &sh.count).await;
    let open = scrape::fetch(args.addr)
        .await
        .ok()
        .and_then(|t| scrape::sum(&t, "meshcall_connections"))
        .unwrap_or(-1.0);
    println!(
        "after the ramp ({:.0} s): {open} connections open on the server, RSS {:.1} MiB, CPU {:.2} s",
        args.ramp.as_secs_f64(),
        mib(ramped.rss),
        ramped.cpu
    );

    tokio::time::sleep_until(churn_until.into()).await;
    let churned = point(args, clk, &sh.count).await;

    // Every agent ends within the answer timeouts of its last action and its final leave.
    let mut reports: Vec<Report> = (0..args.connections).map(|_| Report::default()).collect();
    let collect = async {
        while let Some(done) = agents.join_next().await {
            match done {
                Ok((idx, report)) => reports[idx] = report,
                Err(e) => sh.violation(usize::MAX, &format!("agent task failed: {e}")),
            }
        }
    };
    if tokio::time::timeout(ANSWER_TIMEOUT * 4 + Duration::from_secs(10), collect)
        .await
        .is_err()
    {
        sh.violation(usize::MAX, "agents still running long after the churn");
        agents.abort_all();
    }
    let left_at = Instant::now();

    // Dropped participants that did not resume leave when their grace ends.
    let empty = wait_empty(args, args.resume_grace + Duration::from_secs(30)).await;
    let emptied_after = left_at.elapsed();
    if let Err(e) = &empty {
        sh.violation(usize::MAX, e);
    }
    // Let the allocator give back what it freed. jemalloc purges freed pages over its
    // 10-second decay time, in steps seconds apart: the RSS has settled once it has not
    // fallen for 12 s (at most 60 s in all).
    let mut low = procfs::rss_bytes(args.server_pid).unwrap_or(0);
    let mut flat = 0;
    for _ in 0..60 {
        if flat >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = procfs::rss_bytes(args.server_pid).unwrap_or(0);
        if now + 64 * 1024 < low {
            low = now;
            flat = 0;
        } else {
            flat += 1;
        }
    }
    let end = point(args, clk, &sh.count).await;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await.unwrap_or(0).max(end.rss).max(ramped.rss);

    // Owed signals: each must be in its receiver's set unless that epoch ended in a drop.
    let mut lost = 0u64;
    for (from, report) in reports.iter().enumerate() {
        for owed in &report.owed {
            let to = &reports[owed.to];
            if !to.dropped_epochs.contains(&owed.epoch) && !to.received.contains(&(from, owed.seq))
            {
                lost += 1;
                sh.violation(
                    from,
                    &format!(
                        "signal #{} to agent {} (epoch {}) never arrived",
                        owed.seq, owed.to, owed.epoch
                    ),
                );
            }
        }
    }

    let c = &sh.count;
    let churn_secs = churned.at.duration_since(ramped.at).as_secs_f64();
    let per_sec = |a: u64, b: u64| (b - a) as f64 / churn_secs;
    println!();
    println!("== figures");
    println!(
        "connections: {} held, {} opened in all (fresh joins and resumes)",
        args.connections,
        get(&c.opened)
    );
    println!(
        "actions: joins {}, roomFull {}, leaves {}, switches {}, drops+resume {} (+{} answered after the grace), drops+fresh {}, closes+fresh {}",
        get(&c.joins),
        get(&c.room_full),
        get(&c.leaves),
        get(&c.switches),
        get(&c.resumes),
        get(&c.late_resumes),
        get(&c.drops_fresh),
        get(&c.closes)
    );
    println!(
        "signals: {} sent, {} owed, {} received, {} peerNotFound; room messages: {} sent, {} received",
        get(&c.signals_sent),
        get(&c.signals_owed),
        get(&c.signals_in),
        get(&c.peer_not_found),
        get(&c.room_sent),
        get(&c.room_in)
    );
    println!(
        "during the churn ({churn_secs:.0} s): client frames sent {:.0}/s, received {:.0}/s; server deliveries {:.0}/s",
        per_sec(ramped.frames_out, churned.frames_out),
        per_sec(ramped.frames_in, churned.frames_in),
        (churned.delivered - ramped.delivered) / churn_secs
    );
    println!(
        "server RSS: start {:.1} MiB, after ramp {:.1} MiB, peak {:.1} MiB, end {:.1} MiB ({:+.1} MiB)",
        mib(start.rss),
        mib(ramped.rss),
        mib(peak),
        mib(end.rss),
        mib(end.rss).max(0.0) - mib(start.rss)
    );
    println!(
        "server CPU: ramp {:.1} s, churn {:.1} s ({:.0} % of one core), total {:.1} s",
        ramped.cpu - start.cpu,
        churned.cpu - ramped.cpu,
        100.0 * (churned.cpu - ramped.cpu) / churn_secs,
        end.cpu - start.cpu
    );
    println!(
        "empty again {:.1} s after the last agent left",
        emptied_after.as_secs_f64()
    );

    let violations = get(&c.violations);
    println!();
    println!("== checks");
    println!("lost owed signals: {lost}");
    println!("server empty at the end: {}", empty.is_ok());
    println!("violations: {violations}");
    for s in lock(&sh.samples).iter() {
        println!("  {s}");
    }
    Ok((violations, end.rss))
}
