//! [`Settings`]: the server's flags. Every flag is also an environment variable named
//! `MESHCALL_<FLAG>`; `meshcall --help` lists them all.

use std::{net::SocketAddr, time::Duration};

use clap::{Parser, ValueEnum};
use meshcall_core::{Config, RateLimit, Resume, ResumeKey, Turn};
use meshcall_protocol::{IceServer, limits};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// meshcall: peer-to-peer video calls. Serves the web app and the WebSocket signalling on
/// one port, in memory.
#[derive(Debug, Clone, Parser)]
#[command(name = "meshcall", version)]
pub struct Settings {
    /// Address and port to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "MESHCALL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Most participants in one room.
    #[arg(long, env = "MESHCALL_MAX_ROOM_SIZE", default_value_t = limits::MAX_ROOM_SIZE,
          value_parser = positive)]
    pub max_room_size: usize,

    /// Largest WebSocket message a client may send, in bytes (API Gateway: 131072).
    #[arg(long, env = "MESHCALL_MAX_MESSAGE_BYTES", default_value_t = limits::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Close a connection that sends nothing (not even a WebSocket ping) for this long.
    #[arg(long, env = "MESHCALL_IDLE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Messages per second a connection may send, sustained.
    #[arg(long, env = "MESHCALL_RATE_PER_SECOND", default_value_t = limits::RATE_PER_SECOND)]
    pub rate_per_second: u32,

    /// Messages a connection may send in one burst.
    #[arg(long, env = "MESHCALL_RATE_BURST", default_value_t = limits::RATE_BURST)]
    pub rate_burst: u32,

    /// STUN server URL handed to browsers in `joined` (repeat, or separate with commas).
    #[arg(long = "stun", env = "MESHCALL_STUN", value_delimiter = ',')]
    pub stun: Vec<String>,

    /// TURN server URL (`turn:host:3478?transport=udp`, `turns:…`) for `joined`, with
    /// credentials minted per join from `--turn-secret` (repeat, or separate with commas).
    #[arg(
        long = "turn",
        env = "MESHCALL_TURN",
        value_delimiter = ',',
        requires = "turn_secret"
    )]
    pub turn: Vec<String>,

    /// The TURN server's shared secret (coturn `static-auth-secret` with `use-auth-secret`).
    #[arg(long, env = "MESHCALL_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// How long minted TURN credentials stay valid.
    #[arg(long, env = "MESHCALL_TURN_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub turn_ttl: Duration,

    /// Send all media through the TURN servers (the app sets `iceTransportPolicy: "relay"`),
    /// so peers never see each other's addresses. Needs `--turn`.
    #[arg(long, env = "MESHCALL_FORCE_RELAY", requires = "turn")]
    pub force_relay: bool,

    /// Allowed `Origin` of WebSocket clients (repeat, or separate with commas); none means
    /// any origin. Others get 403.
    #[arg(
        long = "allowed-origin",
        env = "MESHCALL_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// How long a participant whose connection dropped (no close frame) keeps its place
    /// for a `resume`; 0 turns resume off.
    #[arg(long, env = "MESHCALL_RESUME_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub resume_grace: Duration,

    /// Frames queued for one connection before it counts as too slow and is dropped.
    #[arg(long, env = "MESHCALL_QUEUE_CAPACITY", default_value_t = 256,
          value_parser = positive)]
    pub queue_capacity: usize,

    /// Bytes read from a socket at a time (the per-connection read buffer).
    #[arg(long, env = "MESHCALL_READ_BUFFER_BYTES", default_value_t = 4096)]
    pub read_buffer_bytes: usize,

    /// Drop a connection whose socket accepts nothing for this long.
    #[arg(long, env = "MESHCALL_SEND_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub send_timeout: Duration,

    /// On Ctrl-C or SIGTERM, wait this long for sockets to close.
    #[arg(long, env = "MESHCALL_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log format on stderr (`RUST_LOG` sets the level, default info).
    #[arg(long, env = "MESHCALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Parses a whole number of at least 1 (a clap value parser; the gateway uses it too).
///
/// # Errors
/// A message naming the text, for anything else.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self::parse_from(["meshcall"])
    }
}

impl Settings {
    /// The core's configuration from these settings; `resume_key` signs resume tokens.
    pub fn core_config(&self, resume_key: ResumeKey) -> Config {
        let ice_servers = if self.stun.is_empty() {
            Vec::new()
        } else {
            vec![IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            }]
        };
        Config {
            max_room_size: self.max_room_size,
            max_message_bytes: self.max_message_bytes,
            idle_timeout: self.idle_timeout,
            rate: RateLimit {
                per_second: self.rate_per_second,
                burst: self.rate_burst,
            },
            ice_servers,
            turn: match (&self.turn_secret, self.turn.is_empty()) {
                (Some(secret), false) => Some(Turn {
                    urls: self.turn.clone(),
                    secret: secret.clone(),
                    ttl: self.turn_ttl,
                }),
                _ => None,
            },
            resume: (!self.resume_grace.is_zero()).then_some(Resume {
                key: resume_key,
                grace: self.resume_grace,
            }),
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_api_gateway() {
        let s = Settings::default();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.idle_timeout, Duration::from_mins(10));
        assert_eq!(s.max_message_bytes, 128 * 1024);
        assert_eq!(s.max_room_size, 8);
        let config = s.core_config(ResumeKey::new([0; 32]));
        assert!(config.ice_servers.is_empty());
        assert_eq!(
            config.resume.map(|r| r.grace),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn flags_parse() {
        let s = Settings::parse_from([
            "meshcall",
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout",
            "1500ms",
            "--stun",
            "stun:a:3478,stun:b:3478",
            "--max-room-size",
            "2",
        ]);
        assert_eq!(s.idle_timeout, Duration::from_millis(1500));
        assert_eq!(
            s.core_config(ResumeKey::new([0; 32])).ice_servers[0]
                .urls
                .len(),
            2
        );
        assert_eq!(s.max_room_size, 2);
        assert!(Settings::try_parse_from(["meshcall", "--max-room-size", "0"]).is_err());
        let off = Settings::parse_from(["meshcall", "--resume-grace", "0s"]);
        assert!(off.core_config(ResumeKey::new([0; 32])).resume.is_none());
    }
}
