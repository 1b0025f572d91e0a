//! The settings of the runtimes that hold the browsers' sockets themselves (the self-hosted
//! server, and the local gateway standing in for API Gateway), declared once and flattened
//! by both: how long a connection may live ([`ConnectionArgs`]), the TURN secret and relay
//! policy ([`TurnArgs`]), and the log format ([`LogArgs`]; the Lambda function flattens it
//! too). A runtime changes a name, a variable or a default with `#[command(mut_arg(..))]`.

use std::time::Duration;

use super::values::{duration, switch};

/// How long one connection may live: idle, and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ConnectionArgs {
    /// Close a connection that sends nothing (not even a WebSocket ping) for this long
    /// (API Gateway: 10 minutes).
    #[arg(long, env = "MESHCALL_IDLE_TIMEOUT", default_value = "10m", value_parser = duration)]
    pub idle_timeout: Duration,

    /// Close a connection this old with 1001; the app moves to a fresh socket before (0:
    /// no limit).
    #[arg(long, env = "MESHCALL_MAX_CONNECTION_AGE", default_value = "24h",
          value_parser = duration)]
    pub max_connection_age: Duration,
}

impl Default for ConnectionArgs {
    /// The self-hosted server's defaults.
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_mins(10),
            max_connection_age: Duration::from_hours(24),
        }
    }
}

impl ConnectionArgs {
    /// When the app should move to a fresh socket: [`socket_max_age`] of
    /// `--max-connection-age`.
    pub fn socket_max_age(&self) -> Option<Duration> {
        socket_max_age(self.max_connection_age)
    }
}

/// When the app should move to a fresh socket, for a connection limit of `limit`: 5
/// minutes or a quarter of the limit before it, whichever is less; `None` without a limit.
/// Every runtime uses this rule (the AWS deploy script through `meshcall app-config`).
pub fn socket_max_age(limit: Duration) -> Option<Duration> {
    if limit.is_zero() {
        return None;
    }
    Some(limit.saturating_sub((limit / 4).min(Duration::from_mins(5))))
}

/// What a runtime that mints TURN credentials itself needs besides the shared TURN URLs
/// (`SignallingArgs::turn`): the secret, and whether media must go through TURN. The
/// flattening command makes `--turn` require `--turn-secret`
/// (`mut_arg("turn", |a| a.requires("turn_secret"))`); the Lambda function reads its secret
/// from SSM instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TurnArgs {
    /// The TURN server's shared secret (coturn `static-auth-secret` with `use-auth-secret`),
    /// which `--turn` needs.
    #[arg(long, env = "MESHCALL_TURN_SECRET", hide_env_values = true,
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub turn_secret: Option<String>,

    /// Send all media through the TURN servers (the app sets `iceTransportPolicy: "relay"`),
    /// so peers never see each other's addresses. Needs `--turn`.
    #[arg(long, env = "MESHCALL_FORCE_RELAY", requires = "turn", value_parser = switch())]
    pub force_relay: bool,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The log format flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr (`RUST_LOG` sets the level, default info).
    #[arg(long, env = "MESHCALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::settings::SignallingArgs;

    /// A runtime that holds its sockets, as the server and the gateway flatten these.
    #[derive(Debug, Parser)]
    #[command(mut_arg("turn", |a| a.requires("turn_secret")))]
    struct Runtime {
        #[command(flatten)]
        connection: ConnectionArgs,
        #[command(flatten)]
        signalling: SignallingArgs,
        #[command(flatten)]
        turn: TurnArgs,
        #[command(flatten)]
        log: LogArgs,
    }

    /// The gateway's way: its own variables and defaults for the same flags.
    #[derive(Debug, Parser)]
    #[command(mut_arg("max_connection_age", |a| a.default_value("2h")
        .env("MESHCALL_GATEWAY_MAX_CONNECTION_AGE")))]
    struct Gateway {
        #[command(flatten)]
        connection: ConnectionArgs,
    }

    fn parse(args: &[&str]) -> Result<Runtime, clap::Error> {
        Runtime::try_parse_from(std::iter::once("runtime").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_and_a_runtime_s_own() {
        let r = parse(&[]).unwrap();
        assert_eq!(r.connection, ConnectionArgs::default());
        assert_eq!(r.turn, TurnArgs::default());
        assert_eq!(r.log.log_format, LogFormat::Text);
        let g = Gateway::try_parse_from(["gateway"]).unwrap();
        assert_eq!(g.connection.max_connection_age, Duration::from_hours(2));
        assert_eq!(
            g.connection.socket_max_age(),
            Some(Duration::from_mins(115))
        );
    }

    #[test]
    fn turn_needs_its_secret_and_relay_needs_turn() {
        for bad in [
            &["--turn", "turn:t:3478"][..],
            &["--force-relay"],
            &["--turn", "turn:t:3478", "--turn-secret", ""],
            &["--max-connection-age", "24"],
            &["--log-format", "xml"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let r = parse(&[
            "--turn",
            "turn:t:3478",
            "--turn-secret",
            "s",
            "--force-relay",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert!(r.turn.force_relay);
        assert_eq!(r.turn.turn_secret.as_deref(), Some("s"));
        assert_eq!(r.log.log_format, LogFormat::Json);
    }

    #[test]
    fn the_socket_moves_before_the_limit() {
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
