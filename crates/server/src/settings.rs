//! [`Settings`]: the server's flags. Every flag is also an environment variable named
//! `MESHCALL_<FLAG>` (an empty one is not set; on/off ones take 1/0, yes/no, true/false,
//! on/off); `meshcall --help` lists them all. The signalling settings every runtime shares
//! are [`SignallingArgs`], flattened in (and reachable as fields of [`Settings`] through
//! `Deref`); the TURN secret, relay and log format are declared once in `meshcall-core`
//! ([`TurnArgs`], [`LogArgs`]) and flattened here as in the gateway; the rest are the
//! server's own. Read them with [`Settings::from_env`].
//!
//! `meshcall app-config` ([`Command::AppConfig`]) prints the app's settings as JSON for a
//! static host (the AWS deploy script).

use std::{net::SocketAddr, ops::Deref, time::Duration};

use clap::{Parser, Subcommand};
pub use meshcall_core::settings::{LogFormat, positive};
use meshcall_core::{
    Config, RateLimit, ResumeKey,
    settings::{ConnectionArgs, LogArgs, SignallingArgs, TurnArgs, duration},
};
use meshcall_protocol::limits;
use meshcall_web::AppConfigArgs;

/// What `meshcall` does besides serving.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Print the app's settings (`/config.json`, the page's `meshcall-config` meta) as JSON
    /// for a static host, and exit: `meshcall app-config --ws-url wss://… [--force-relay]`.
    AppConfig(AppConfigArgs),
}

/// meshcall: peer-to-peer video calls. Serves the web app and the WebSocket signalling on
/// one port, in memory.
#[derive(Debug, Clone, Parser)]
#[command(name = "meshcall", version, args_conflicts_with_subcommands = true)]
#[command(mut_arg("turn", |a| a.requires("turn_secret")))]
#[command(mut_arg("stun", |a| a.default_value(meshcall_core::settings::DEFAULT_STUN)
    .help("STUN server URL handed to browsers in `joined` (repeat, or separate with commas); `none` for none")))]
pub struct Settings {
    /// Address and port to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "MESHCALL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The signalling settings every runtime shares (room size, message size, STUN, TURN,
    /// origins, resume grace, fan-out).
    #[command(flatten)]
    pub signalling: SignallingArgs,

    /// `--idle-timeout`, `--max-connection-age`: shared with the gateway.
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Messages per second a connection may send, sustained.
    #[arg(long, env = "MESHCALL_RATE_PER_SECOND", default_value_t = limits::RATE_PER_SECOND)]
    pub rate_per_second: u32,

    /// Messages a connection may send in one burst.
    #[arg(long, env = "MESHCALL_RATE_BURST", default_value_t = limits::RATE_BURST)]
    pub rate_burst: u32,

    /// `--turn-secret`, `--force-relay`: shared with the gateway.
    #[command(flatten)]
    pub turn_args: TurnArgs,

    /// Frames queued for one connection before it counts as too slow and is dropped.
    #[arg(long, env = "MESHCALL_QUEUE_CAPACITY", default_value_t = 256,
          value_parser = positive)]
    pub queue_capacity: usize,

    /// Bytes read at a time while a frame's length is unknown; over plain HTTP no buffer is
    /// kept while a connection is idle (over HTTPS: the per-connection read buffer).
    #[arg(long, env = "MESHCALL_READ_BUFFER_BYTES", default_value_t = 4096)]
    pub read_buffer_bytes: usize,

    /// Drop a connection whose socket accepts nothing for this long.
    #[arg(long, env = "MESHCALL_SEND_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub send_timeout: Duration,

    /// On Ctrl-C or SIGTERM, wait this long for sockets to close.
    #[arg(long, env = "MESHCALL_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// `--log-format`: shared with the gateway and the function.
    #[command(flatten)]
    pub log: LogArgs,

    /// HTTPS: `--tls-self-signed`, `--tls-cert`/`--tls-key`, `--acme-*`, `--redirect-http`.
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,

    /// Abuse limits: `--max-connections[-per-ip]`, `--max-joins-per-minute-per-ip`,
    /// `--max-connection-age`, `--trust-proxy`.
    #[command(flatten)]
    pub limits: crate::limits::LimitArgs,

    /// A subcommand instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Default for Settings {
    fn default() -> Self {
        Self::parse_from(["meshcall"])
    }
}

/// `settings.max_room_size` and the other shared settings read as the server's own.
impl Deref for Settings {
    type Target = SignallingArgs;

    fn deref(&self) -> &SignallingArgs {
        &self.signalling
    }
}

impl Settings {
    /// The settings from this process's command line and `MESHCALL_*` variables, an empty
    /// variable counting as not set; on a mistake, prints it and exits.
    pub fn from_env() -> Self {
        meshcall_core::settings::parse()
    }

    /// The TURN secret (`--turn-secret`).
    pub fn turn_secret(&self) -> Option<&str> {
        self.turn_args.turn_secret.as_deref()
    }

    /// The app's settings as this server serves them (`/config.json`, the page's meta):
    /// no `wsUrl` (the app signals at `/ws` on its own origin), `socketMaxAgeMs` before
    /// `--max-connection-age`, `iceTransportPolicy: "relay"` with `--force-relay`.
    pub fn app_config(&self) -> meshcall_web::AppConfig {
        meshcall_web::AppConfig::new(
            self.connection.max_connection_age,
            self.turn_args.force_relay,
        )
    }

    /// The core's configuration from these settings; `resume_key` signs resume tokens.
    ///
    /// # Panics
    /// For settings the command line refuses: TURN URLs without `--turn-secret`, or a zero
    /// count (only settings built in code can have them).
    pub fn core_config(&self, resume_key: ResumeKey) -> Config {
        let shared = self
            .signalling
            .config(self.turn_secret(), Some(resume_key))
            .unwrap_or_else(|e| panic!("settings clap refuses: {e}"));
        Config {
            idle_timeout: self.connection.idle_timeout,
            rate: RateLimit {
                per_second: self.rate_per_second,
                burst: self.rate_burst,
            },
            ..shared
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
        assert_eq!(s.connection.idle_timeout, Duration::from_mins(10));
        assert_eq!(s.max_message_bytes, 128 * 1024);
        assert_eq!(s.max_room_size, 8);
        let config = s.core_config(ResumeKey::new([0; 32]));
        assert_eq!(config.ice_servers.len(), 1);
        assert_eq!(
            config.ice_servers[0].urls,
            [meshcall_core::settings::DEFAULT_STUN]
        );
        let none = Settings::parse_from(["meshcall", "--stun", "none"]);
        assert!(
            none.core_config(ResumeKey::new([0; 32]))
                .ice_servers
                .is_empty()
        );
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
        assert_eq!(s.connection.idle_timeout, Duration::from_millis(1500));
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

    #[test]
    fn shared_settings_keep_their_names_and_refuse_zero() {
        for args in [
            &["--max-room-size", "0"][..],
            &["--fanout-concurrency", "0"],
            &["--max-message-bytes", "0"],
            &["--turn", "turn:t:3478"],
            &["--turn", "turn:t:3478", "--turn-secret", ""],
        ] {
            let argv = std::iter::once("meshcall").chain(args.iter().copied());
            assert!(Settings::try_parse_from(argv).is_err(), "{args:?}");
        }
        let s = Settings::parse_from([
            "meshcall",
            "--allowed-origin",
            "http://a",
            "--allowed-origin",
            "http://b",
            "--turn",
            "turn:t:3478",
            "--turn-secret",
            "s",
            "--turn-ttl",
            "1h",
            "--fanout-concurrency",
            "3",
            "--rate-burst",
            "9",
        ]);
        assert_eq!(s.allowed_origins, ["http://a", "http://b"]);
        let config = s.core_config(ResumeKey::new([0; 32]));
        assert_eq!(config.fanout_concurrency, 3);
        assert_eq!(config.rate.burst, 9);
        let turn = config.turn.unwrap();
        assert_eq!(
            (turn.secret.as_str(), turn.ttl),
            ("s", Duration::from_hours(1))
        );
    }
}
