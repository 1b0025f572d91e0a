//! [`Settings`]: the gateway's flags. Gateway flags are also `MESHCALL_GATEWAY_*`
//! variables; the function's settings keep the self-hosted server's flag names and
//! `MESHCALL_*` variables and are handed to every bootstrap process as those variables.
//! Those the runtimes share are [`SignallingArgs`], flattened in, so the gateway, the server
//! and the function read them alike; the gateway hands every one of them on
//! ([`SignallingArgs::env`]). Connection age and idle timeout ([`ConnectionArgs`], here
//! `MESHCALL_GATEWAY_*` with API Gateway's defaults), the TURN secret and relay
//! ([`TurnArgs`]) and the log format ([`LogArgs`]) are declared once in `meshcall-core` and
//! flattened here as in the server. An empty variable is not set ([`Settings::from_env`]).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
pub use meshcall_core::settings::LogFormat;
use meshcall_core::settings::{
    ConnectionArgs, LogArgs, SignallingArgs, TurnArgs, duration, positive, switch,
};

/// meshcall-gateway: a local stand-in for API Gateway WebSocket. Serves the web app, accepts
/// WebSocket connections, and runs meshcall's Lambda bootstrap behind a local Lambda runtime API, with
/// the `@connections` management API on the same port.
#[derive(Debug, Clone, Parser)]
#[command(name = "meshcall-gateway", version)]
#[command(mut_arg("turn", |a| a.requires("turn_secret")))]
#[command(mut_arg("max_message_bytes", |a| a
    .env("MESHCALL_GATEWAY_MAX_MESSAGE_BYTES")
    .help("Largest message the function accepts (its `MESHCALL_MAX_MESSAGE_BYTES`); a larger one, \
           within API Gateway's own limit, is refused by the function with `messageTooLarge`")))]
#[command(mut_arg("idle_timeout", |a| a.env("MESHCALL_GATEWAY_IDLE_TIMEOUT")))]
#[command(mut_arg("max_connection_age", |a| a
    .env("MESHCALL_GATEWAY_MAX_CONNECTION_AGE")
    .alias("max-connection-duration")
    .default_value("2h")
    .help("Close every connection this long after it opened, with 1001 (API Gateway: 2 hours); \
           0 never. The app moves to a fresh socket before")))]
#[command(mut_arg("log_format", |a| a.env("MESHCALL_GATEWAY_LOG_FORMAT")))]
pub struct Settings {
    /// Address and port to listen on (port 0 picks a free port; stdout says which).
    #[arg(
        long,
        env = "MESHCALL_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Where the Lambda runtime API listens for external runtime clients (with
    /// `--instances 0`); spawned instances each get a port of their own on 127.0.0.1.
    #[arg(
        long,
        env = "MESHCALL_GATEWAY_RUNTIME_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    pub runtime_listen: SocketAddr,

    /// The Lambda bootstrap executable (default: `bootstrap` next to this executable).
    #[arg(long, env = "MESHCALL_GATEWAY_BOOTSTRAP")]
    pub bootstrap: Option<PathBuf>,

    /// Bootstrap processes started at once (warm Lambda instances); more are started while
    /// every one is busy, up to `--max-instances`. 0 runs none (an external runtime client
    /// may poll `--runtime-listen`).
    #[arg(long, env = "MESHCALL_GATEWAY_INSTANCES", default_value_t = 2)]
    pub instances: usize,

    /// The most bootstrap processes (the function's concurrency); past it, invocations
    /// wait in the queue for a free instance.
    #[arg(long, env = "MESHCALL_GATEWAY_MAX_INSTANCES", default_value_t = 10, value_parser = positive)]
    pub max_instances: usize,

    /// The DynamoDB table the function uses (`MESHCALL_TABLE`).
    #[arg(long, env = "MESHCALL_GATEWAY_TABLE", default_value = "meshcall")]
    pub table: String,

    /// Create, through the SDK's usual configuration (`AWS_ENDPOINT_URL` names the emulator,
    /// moto): the table if it is missing, the SQS expiry queue `<table>-expiry` (then polled
    /// like Lambda's event source mapping), and the SSM `SecureString` parameters
    /// `/<table>/resume-secret` (random, per run) and `/<table>/turn-secret` (with
    /// `--turn-secret`). Without it the function is given the parameters' names (they must
    /// exist) and no expiry queue.
    #[arg(long, env = "MESHCALL_GATEWAY_CREATE_TABLE", value_parser = switch())]
    pub create_table: bool,

    /// How long a message the function took from the expiry queue stays invisible (the
    /// queue's `VisibilityTimeout`): one it reported in `batchItemFailures`, or whose
    /// invocation failed, is delivered again after this. Whole seconds.
    #[arg(long, env = "MESHCALL_GATEWAY_EXPIRY_VISIBILITY_TIMEOUT", default_value = "60s", value_parser = whole_seconds)]
    pub expiry_visibility_timeout: Duration,

    /// How often the expiry queue is polled (short polls: the emulator serves one request
    /// at a time, so no long polls).
    #[arg(long, env = "MESHCALL_GATEWAY_EXPIRY_POLL_INTERVAL", default_value = "200ms", value_parser = duration)]
    pub expiry_poll_interval: Duration,

    /// The API stage: WebSocket connections are also accepted at `/<stage>`, and
    /// `@connections` only at `/<stage>/@connections/{id}` (the function's
    /// `MESHCALL_CALLBACK_URL` is `http://<listen>/<stage>`).
    #[arg(long, env = "MESHCALL_GATEWAY_STAGE", default_value = "local", value_parser = stage)]
    pub stage: String,

    /// How often the function gets an EventBridge scheduled event (the sweep; the
    /// template's `rate(1 minute)`); 0 turns it off.
    #[arg(long, env = "MESHCALL_GATEWAY_SWEEP_EVERY", default_value = "1m", value_parser = duration)]
    pub sweep_every: Duration,

    /// The fraction (0 to 1) of closed connections whose `$disconnect` is never invoked,
    /// as API Gateway's is best-effort: the connection leaves `@connections` (410) but the
    /// function is not told. For tests of ghosts.
    #[arg(long, env = "MESHCALL_GATEWAY_LOSE_DISCONNECTS", default_value_t = 0.0, value_parser = fraction)]
    pub lose_disconnects: f64,

    /// Largest WebSocket message API Gateway itself accepts (128 KiB, fixed on AWS); a
    /// larger one closes the connection with 1009. Smaller values are for tests.
    #[arg(
        long,
        env = "MESHCALL_GATEWAY_API_MESSAGE_LIMIT",
        default_value_t = 131_072
    )]
    pub api_message_limit: usize,

    /// Largest WebSocket frame API Gateway accepts (32 KiB, fixed on AWS); a larger frame
    /// closes the connection with 1009. Browsers send each message as one frame, so for
    /// them this is the real message limit on AWS.
    #[arg(
        long,
        env = "MESHCALL_GATEWAY_API_FRAME_LIMIT",
        default_value_t = 32_768
    )]
    pub api_frame_limit: usize,

    /// `--idle-timeout` (API Gateway: 10 minutes), `--max-connection-age` (API Gateway: 2
    /// hours; once `--max-connection-duration`, still accepted).
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// How long an invocation may take before it counts as failed (the function's timeout;
    /// the template's `Timeout: 10`).
    #[arg(long, env = "MESHCALL_GATEWAY_FUNCTION_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub function_timeout: Duration,

    /// On Ctrl-C or SIGTERM, wait this long for connections to close (and their
    /// `$disconnect` to run) before stopping the bootstrap processes.
    #[arg(long, env = "MESHCALL_GATEWAY_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// The function's signalling settings, which every runtime shares (room size, message
    /// size, STUN, TURN, origins, resume grace, fan-out); all handed to it as `MESHCALL_*`.
    /// Its message size is `--max-message-bytes` (`MESHCALL_GATEWAY_MAX_MESSAGE_BYTES`).
    #[command(flatten)]
    pub signalling: SignallingArgs,

    /// `--turn-secret` (the function reads it from the SSM parameter `--create-table`
    /// writes, never from its environment) and `--force-relay` (`iceTransportPolicy:
    /// "relay"` in `/config.json`).
    #[command(flatten)]
    pub turn_args: TurnArgs,

    /// How often the sweep asks `@connections` whether a room member's socket still exists
    /// (the function's `MESHCALL_CHECK_EVERY`; its default is 5 minutes).
    #[arg(long, env = "MESHCALL_CHECK_EVERY", value_parser = duration_text)]
    pub check_every: Option<String>,

    /// `--log-format` (`MESHCALL_GATEWAY_LOG_FORMAT`).
    #[command(flatten)]
    pub log: LogArgs,
}

/// Route paths the gateway serves itself, which a stage may not shadow.
const RESERVED: [&str; 2] = ["r", "healthz"];

/// A stage name as API Gateway allows it: 1–128 of `A-Z a-z 0-9 _ -`.
fn stage(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(format!(
            "{s:?} is not a stage name (1-128 of A-Z a-z 0-9 _ -)"
        ));
    }
    if RESERVED.contains(&s) {
        return Err(format!("{s:?} is a path the gateway serves itself"));
    }
    Ok(s.to_owned())
}

/// A number from 0 to 1.
fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a number from 0 to 1")),
    }
}

/// A whole number of seconds from 0 to 12 hours (SQS's `VisibilityTimeout`).
fn whole_seconds(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.subsec_nanos() != 0 || d > Duration::from_hours(12) {
        return Err(format!("{s:?} is not whole seconds from 0 to 12h"));
    }
    Ok(d)
}

/// A duration (`30s`, `24h`), checked here and handed on as written.
fn duration_text(s: &str) -> Result<String, String> {
    duration(s).map(|_| s.trim().to_owned())
}

impl Default for Settings {
    fn default() -> Self {
        Self::parse_from(["meshcall-gateway"])
    }
}

impl Settings {
    /// The settings from this process's command line and variables, an empty variable
    /// counting as not set; on a mistake, prints it and exits.
    pub fn from_env() -> Self {
        meshcall_core::settings::parse()
    }

    /// The TURN secret (`--turn-secret`).
    pub fn turn_secret(&self) -> Option<&str> {
        self.turn_args.turn_secret.as_deref()
    }

    /// The function's settings as environment variables: every shared one
    /// ([`SignallingArgs::env`], so the function reads what this command line says, defaults
    /// included), and `MESHCALL_CHECK_EVERY` if given (the function has its own default).
    /// Secrets are not among them: the function reads them from SSM (`crate::aws`).
    pub fn function_env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.signalling.env();
        if let Some(every) = &self.check_every {
            env.push(("MESHCALL_CHECK_EVERY", every.clone()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_api_gateway() {
        let s = Settings::default();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.instances, 2);
        assert_eq!(s.max_instances, 10);
        assert!(s.lose_disconnects.abs() < f64::EPSILON);
        assert_eq!(s.expiry_visibility_timeout, Duration::from_mins(1));
        assert!(!s.create_table);
        assert_eq!(s.table, "meshcall");
        assert_eq!(s.stage, "local");
        assert_eq!(s.sweep_every, Duration::from_mins(1));
        assert_eq!(s.signalling.max_message_bytes, 128 * 1024);
        assert_eq!(s.connection.idle_timeout, Duration::from_mins(10));
        assert_eq!(s.connection.max_connection_age, Duration::from_hours(2));
        assert_eq!(s.function_timeout, Duration::from_secs(10));
        // The function gets every shared setting, defaults included.
        assert_eq!(s.function_env(), SignallingArgs::default().env());
        let env: std::collections::HashMap<_, _> = s.function_env().into_iter().collect();
        assert_eq!(env["MESHCALL_MAX_MESSAGE_BYTES"], "131072");
        assert_eq!(env["MESHCALL_MAX_ROOM_SIZE"], "8");
        assert_eq!(env["MESHCALL_RESUME_GRACE"], "30s");
    }

    #[test]
    fn function_settings_become_its_variables() {
        let s = Settings::try_parse_from([
            "meshcall-gateway",
            "--max-room-size",
            "3",
            "--stun",
            "stun:a:3478,stun:b:3478",
            "--turn",
            "turn:t:3478",
            "--turn-secret",
            "s3cret",
            "--turn-ttl",
            "1h",
            "--allowed-origin",
            "http://a",
            "--allowed-origin",
            "http://b",
            "--resume-grace",
            "5s",
            "--max-message-bytes",
            "1000",
            "--force-relay",
        ])
        .unwrap();
        let env: std::collections::HashMap<_, _> = s.function_env().into_iter().collect();
        assert_eq!(env["MESHCALL_MAX_ROOM_SIZE"], "3");
        assert_eq!(env["MESHCALL_STUN"], "stun:a:3478,stun:b:3478");
        assert_eq!(env["MESHCALL_TURN"], "turn:t:3478");
        assert!(
            !env.contains_key("MESHCALL_TURN_SECRET"),
            "secrets go through SSM"
        );
        assert_eq!(s.turn_secret(), Some("s3cret"));
        assert_eq!(env["MESHCALL_TURN_TTL"], "1h");
        assert_eq!(env["MESHCALL_ALLOWED_ORIGINS"], "http://a,http://b");
        assert_eq!(env["MESHCALL_RESUME_GRACE"], "5s");
        assert_eq!(env["MESHCALL_MAX_MESSAGE_BYTES"], "1000");
        assert_eq!(env["MESHCALL_FANOUT_CONCURRENCY"], "16");
        assert_eq!(env.len(), 8);
        assert!(s.turn_args.force_relay);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--max-room-size", "0"][..],
            &["--fanout-concurrency", "0"],
            &["--max-message-bytes", "0"],
            &["--turn-ttl", "soon"],
            &["--stage", "a/b"],
            &["--stage", "healthz"],
            &["--turn", "turn:t"],
            &["--force-relay"],
            &["--lose-disconnects", "1.5"],
            &["--lose-disconnects", "-0.1"],
            &["--max-instances", "0"],
            &["--expiry-visibility-timeout", "1500ms"],
            // API Gateway has no per-connection rate limit: the flags are not accepted.
            &["--rate-burst", "9"],
            &["--rate-per-second", "9"],
            &["--stun", "bogus"],
            &["--turn", "bogus", "--turn-secret", "s"],
            &["--turn", "turn:t:3478", "--turn-secret", ""],
        ] {
            let argv = std::iter::once("meshcall-gateway").chain(args.iter().copied());
            assert!(Settings::try_parse_from(argv).is_err(), "{args:?}");
        }
        assert_eq!(
            Settings::try_parse_from(["meshcall-gateway", "--stage", "prod_1"])
                .unwrap()
                .stage,
            "prod_1"
        );
        let s = Settings::try_parse_from([
            "meshcall-gateway",
            "--lose-disconnects",
            "0.25",
            "--expiry-visibility-timeout",
            "2s",
        ])
        .unwrap();
        assert!((s.lose_disconnects - 0.25).abs() < f64::EPSILON);
        let old = Settings::try_parse_from(["meshcall-gateway", "--max-connection-duration", "1h"]);
        assert_eq!(
            old.unwrap().connection.max_connection_age,
            Duration::from_hours(1),
            "the flag's old name"
        );
        assert_eq!(s.expiry_visibility_timeout, Duration::from_secs(2));
    }
}
