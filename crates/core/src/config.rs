//! Every limit the routes enforce. Gateways fill a [`Config`] from their settings; the
//! defaults match API Gateway WebSocket wherever it has a limit.

use std::time::Duration;

use meshcall_protocol::{IceServer, limits};

use crate::{resume::Resume, turn::Turn};

/// How many pushes one fan-out keeps in flight at once, by default.
pub const FANOUT_CONCURRENCY: usize = 16;

/// A token bucket's shape: `per_second` tokens are added each second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_second: u32,
    /// Largest burst of messages.
    pub burst: u32,
}

/// The signalling service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most participants in one room.
    pub max_room_size: usize,
    /// Largest frame a client may send, in bytes.
    pub max_message_bytes: usize,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// Per-connection message rate.
    pub rate: RateLimit,
    /// STUN (or TURN with fixed credentials) servers handed to clients in `joined`.
    pub ice_servers: Vec<IceServer>,
    /// TURN servers whose credentials are minted per join.
    pub turn: Option<Turn>,
    /// How many pushes one fan-out keeps in flight at once.
    pub fanout_concurrency: usize,
    /// Resume after a dropped socket; `None` turns it off (a drop is a departure).
    pub resume: Option<Resume>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_room_size: limits::MAX_ROOM_SIZE,
            max_message_bytes: limits::MAX_MESSAGE_BYTES,
            idle_timeout: limits::IDLE_TIMEOUT,
            rate: RateLimit {
                per_second: limits::RATE_PER_SECOND,
                burst: limits::RATE_BURST,
            },
            ice_servers: Vec::new(),
            turn: None,
            fanout_concurrency: FANOUT_CONCURRENCY,
            resume: None,
        }
    }
}

impl Config {
    /// The `iceServers` for `participant`: the configured ones, plus TURN with fresh
    /// credentials.
    pub fn ice_servers_for(
        &self,
        participant: &meshcall_protocol::ConnectionId,
        now: std::time::SystemTime,
    ) -> Vec<IceServer> {
        let mut servers = self.ice_servers.clone();
        if let Some(turn) = &self.turn {
            servers.push(turn.ice_server(participant, now));
        }
        servers
    }
}
