//! [`SignallingArgs`]: the settings every runtime shares (the self-hosted server, the Lambda
//! function and the local gateway that hands them to the function), declared once as clap
//! arguments that each runtime flattens into its own command line (`#[command(flatten)]`),
//! and converted once, with validation, into the core's [`Config`].
//!
//! Every setting here is a flag and a `MESHCALL_*` environment variable of the same name in
//! every runtime. Secrets are not here: each runtime has its own way to them (the server's
//! flags, the function's SSM parameters) and hands them to [`SignallingArgs::config`].
//!
//! The runtimes that hold sockets share more ([`runtime`]: connection age and idle timeout,
//! the TURN secret and relay policy, the log format); every value is read by the parsers in
//! [`values`], and a runtime reads its command line with [`parse`], for which an empty
//! variable is not set.
//!
//! Only with the `clap` feature.

pub mod runtime;
pub mod values;

use std::time::Duration;

pub use runtime::{ConnectionArgs, LogArgs, LogFormat, TurnArgs, socket_max_age};
pub use values::{duration, parse, positive, switch, try_parse_from};
use values::{duration_text, stun_url, turn_url};

use meshcall_protocol::{IceServer, limits};

use crate::{
    config::{Config, FANOUT_CONCURRENCY},
    resume::{Resume, ResumeKey},
    turn::Turn,
};

/// The signalling settings every runtime shares. Flatten it into a runtime's settings with
/// `#[command(flatten)]`; a runtime that needs a different environment variable or help text
/// for one of them changes it with `#[command(mut_arg(..))]`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SignallingArgs {
    /// Most participants in one room (at least 1).
    #[arg(long, env = "MESHCALL_MAX_ROOM_SIZE", default_value_t = limits::MAX_ROOM_SIZE,
          value_parser = positive)]
    pub max_room_size: usize,

    /// Largest WebSocket message a client may send, in bytes (API Gateway: 131072).
    #[arg(long, env = "MESHCALL_MAX_MESSAGE_BYTES", default_value_t = limits::MAX_MESSAGE_BYTES,
          value_parser = positive)]
    pub max_message_bytes: usize,

    /// STUN server URL handed to browsers in `joined` (repeat, or separate with commas);
    /// `none` for none.
    #[arg(long = "stun", env = "MESHCALL_STUN", value_delimiter = ',', value_parser = stun_url)]
    pub stun: Vec<String>,

    /// TURN server URL (`turn:host:3478?transport=udp`, `turns:…`) for `joined`, with
    /// credentials minted per join from the TURN server's shared secret (repeat, or separate
    /// with commas).
    #[arg(long = "turn", env = "MESHCALL_TURN", value_delimiter = ',', value_parser = turn_url)]
    pub turn: Vec<String>,

    /// How long minted TURN credentials stay valid.
    #[arg(long, env = "MESHCALL_TURN_TTL", default_value = "24h", value_parser = duration)]
    pub turn_ttl: Duration,

    /// Allowed `Origin` of WebSocket clients (repeat, or separate with commas); none means
    /// any origin. Others are refused.
    #[arg(
        long = "allowed-origin",
        alias = "allowed-origins",
        env = "MESHCALL_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// How long a participant whose connection dropped (no close frame) keeps its place
    /// for a `resume`; 0 turns resume off.
    #[arg(long, env = "MESHCALL_RESUME_GRACE", default_value = "30s", value_parser = duration)]
    pub resume_grace: Duration,

    /// Pushes one fan-out (a room message, a departure) keeps in flight at once.
    #[arg(long, env = "MESHCALL_FANOUT_CONCURRENCY", default_value_t = FANOUT_CONCURRENCY,
          value_parser = positive)]
    pub fanout_concurrency: usize,
}

/// The `--stun` value (`MESHCALL_STUN`) that hands out no STUN server (as does an empty one).
pub const NO_STUN: &str = "none";

/// The public STUN server the self-hosted server hands out unless `--stun` says otherwise;
/// the one place it is written in Rust (the AWS template's `StunUrls` default is checked
/// against it by `deploy/aws/tests/test_template.py`).
pub const DEFAULT_STUN: &str = "stun:stun.l.google.com:19302";

/// Shared settings that cannot work together with the secrets a runtime has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A count that must be at least 1 is 0 (only possible by building the settings in code:
    /// the command line refuses it).
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// TURN URLs without the shared secret to mint their credentials.
    #[error("MESHCALL_TURN needs the TURN server's shared secret")]
    NoTurnSecret,
    /// Resume is on (`MESHCALL_RESUME_GRACE` is not 0) but there is no key to sign tokens.
    #[error("MESHCALL_RESUME_GRACE is not 0 but there is no key to sign resume tokens")]
    NoResumeKey,
}

impl Default for SignallingArgs {
    /// Every setting at its default (as with no flags and no variables).
    fn default() -> Self {
        Self {
            max_room_size: limits::MAX_ROOM_SIZE,
            max_message_bytes: limits::MAX_MESSAGE_BYTES,
            stun: Vec::new(),
            turn: Vec::new(),
            turn_ttl: Duration::from_hours(24),
            allowed_origins: Vec::new(),
            resume_grace: Duration::from_secs(30),
            fanout_concurrency: FANOUT_CONCURRENCY,
        }
    }
}

impl SignallingArgs {
    /// The core's configuration: these settings, with `turn_secret` (needed, non-empty,
    /// when there are TURN URLs) and `resume_key` (needed while the resume grace is not 0).
    /// Empty list entries (an empty deployment parameter arrives as `""`) and a STUN URL
    /// [`NO_STUN`] are dropped. What
    /// is not shared (idle timeout, rate limit) is left at [`Config::default`] for the
    /// runtime to set.
    ///
    /// # Errors
    /// [`SettingsError`] for a zero count, TURN URLs without a secret, or resume without
    /// a key.
    pub fn config(
        &self,
        turn_secret: Option<&str>,
        resume_key: Option<ResumeKey>,
    ) -> Result<Config, SettingsError> {
        for (value, name) in [
            (self.max_room_size, "MESHCALL_MAX_ROOM_SIZE"),
            (self.max_message_bytes, "MESHCALL_MAX_MESSAGE_BYTES"),
            (self.fanout_concurrency, "MESHCALL_FANOUT_CONCURRENCY"),
        ] {
            if value == 0 {
                return Err(SettingsError::Zero(name));
            }
        }
        let resume = if self.resume_grace.is_zero() {
            None
        } else {
            Some(Resume {
                key: resume_key.ok_or(SettingsError::NoResumeKey)?,
                grace: self.resume_grace,
            })
        };
        let stun: Vec<String> = non_empty(&self.stun)
            .into_iter()
            .filter(|u| !u.eq_ignore_ascii_case(NO_STUN))
            .collect();
        let turn_urls = non_empty(&self.turn);
        let turn = if turn_urls.is_empty() {
            None
        } else {
            let secret = turn_secret
                .filter(|s| !s.is_empty())
                .ok_or(SettingsError::NoTurnSecret)?;
            Some(Turn {
                urls: turn_urls,
                secret: secret.to_owned(),
                ttl: self.turn_ttl,
            })
        };
        let ice_servers = if stun.is_empty() {
            Vec::new()
        } else {
            vec![IceServer {
                urls: stun,
                username: None,
                credential: None,
            }]
        };
        Ok(Config {
            max_room_size: self.max_room_size,
            max_message_bytes: self.max_message_bytes,
            ice_servers,
            turn,
            fanout_concurrency: self.fanout_concurrency,
            resume,
            ..Config::default()
        })
    }

    /// The allowed origins, trimmed, empty entries dropped; none means any.
    pub fn origins(&self) -> Vec<String> {
        self.allowed_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }

    /// These settings as the `MESHCALL_*` environment variables that give them, for a
    /// runtime that starts another with them (the local gateway starting the Lambda
    /// bootstrap). Lists are comma-separated, empty ones left out; durations are written as
    /// humantime reads them.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("MESHCALL_MAX_ROOM_SIZE", self.max_room_size.to_string()),
            (
                "MESHCALL_MAX_MESSAGE_BYTES",
                self.max_message_bytes.to_string(),
            ),
            ("MESHCALL_TURN_TTL", duration_text(self.turn_ttl)),
            ("MESHCALL_RESUME_GRACE", duration_text(self.resume_grace)),
            (
                "MESHCALL_FANOUT_CONCURRENCY",
                self.fanout_concurrency.to_string(),
            ),
        ];
        for (name, list) in [
            ("MESHCALL_STUN", &self.stun),
            ("MESHCALL_TURN", &self.turn),
            ("MESHCALL_ALLOWED_ORIGINS", &self.allowed_origins),
        ] {
            let list = non_empty(list);
            if !list.is_empty() {
                env.push((name, list.join(",")));
            }
        }
        env
    }
}

/// A list setting without its empty entries, each trimmed.
fn non_empty(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(ToOwned::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A runtime with nothing but the shared settings.
    #[derive(Debug, Parser)]
    struct Runtime {
        #[command(flatten)]
        shared: SignallingArgs,
    }

    fn parse(args: &[&str]) -> Result<SignallingArgs, clap::Error> {
        Runtime::try_parse_from(std::iter::once("runtime").chain(args.iter().copied()))
            .map(|r| r.shared)
    }

    fn key() -> ResumeKey {
        ResumeKey::new([1; 32])
    }

    #[test]
    fn default_is_no_flags() {
        assert_eq!(parse(&[]).unwrap(), SignallingArgs::default());
        let config = SignallingArgs::default().config(None, Some(key())).unwrap();
        assert_eq!(config.max_room_size, limits::MAX_ROOM_SIZE);
        assert_eq!(
            config.fanout_concurrency,
            Config::default().fanout_concurrency
        );
        assert!(config.ice_servers.is_empty() && config.turn.is_none());
        assert_eq!(
            config.resume.map(|r| r.grace),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn zero_counts_and_bad_values_are_refused() {
        for args in [
            &["--max-room-size", "0"][..],
            &["--max-room-size", "-1"],
            &["--max-room-size", "eight"],
            &["--max-message-bytes", "0"],
            &["--fanout-concurrency", "0"],
            &["--turn-ttl", "soon"],
            &["--resume-grace", "30"],
            &["--stun", "bogus"],
            &["--stun", "stun:a:3478,bogus"],
            &["--turn", "bogus"],
            &["--turn", "stun:a:3478"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        for field in 0..3 {
            let mut s = SignallingArgs::default();
            *[
                &mut s.max_room_size,
                &mut s.max_message_bytes,
                &mut s.fanout_concurrency,
            ][field] = 0;
            assert!(
                matches!(s.config(None, Some(key())), Err(SettingsError::Zero(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn secrets_are_required_where_used() {
        let turn = parse(&["--turn", "turn:t:3478"]).unwrap();
        for secret in [None, Some("")] {
            assert_eq!(
                turn.config(secret, Some(key())).unwrap_err(),
                SettingsError::NoTurnSecret
            );
        }
        let config = turn.config(Some("s"), Some(key())).unwrap();
        assert_eq!(config.turn.unwrap().urls, ["turn:t:3478"]);
        assert_eq!(
            parse(&[]).unwrap().config(None, None).unwrap_err(),
            SettingsError::NoResumeKey
        );
        let off = parse(&["--resume-grace", "0"]).unwrap();
        assert!(off.config(None, None).unwrap().resume.is_none());
    }

    #[test]
    fn empty_list_entries_are_nothing() {
        let s = parse(&[
            "--stun",
            "stun:a:3478,,stun:b:3478,none",
            "--turn",
            "",
            "--allowed-origins",
            " https://a.example ,,",
        ])
        .unwrap();
        let config = s.config(None, Some(key())).unwrap();
        assert_eq!(config.ice_servers[0].urls, ["stun:a:3478", "stun:b:3478"]);
        assert!(config.turn.is_none());
        assert_eq!(s.origins(), ["https://a.example"]);
        let none = parse(&["--stun", "none"]).unwrap();
        assert!(
            none.config(None, Some(key()))
                .unwrap()
                .ice_servers
                .is_empty()
        );
    }

    #[test]
    fn env_gives_the_same_settings_back() {
        let s = parse(&[
            "--max-room-size",
            "3",
            "--max-message-bytes",
            "1000",
            "--stun",
            "stun:a:3478,stun:b:3478",
            "--turn",
            "turn:t:3478",
            "--turn-ttl",
            "1h 30m 5ms",
            "--allowed-origin",
            "http://a",
            "--allowed-origin",
            "http://b",
            "--resume-grace",
            "0s",
            "--fanout-concurrency",
            "4",
        ])
        .unwrap();
        let env = s.env();
        let command = <Runtime as clap::CommandFactory>::command();
        let mut argv = vec!["runtime".to_owned()];
        for (name, value) in &env {
            let arg = command
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == *name))
                .unwrap_or_else(|| panic!("no argument reads {name}"));
            argv.push(format!("--{}", arg.get_long().unwrap()));
            argv.push(value.clone());
        }
        assert_eq!(Runtime::try_parse_from(argv).unwrap().shared, s);
        assert_eq!(
            SignallingArgs::default().env().len(),
            5,
            "empty lists are left out"
        );
    }
}
