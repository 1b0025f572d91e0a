//! [`Settings`]: the function's configuration, from environment variables only (a Lambda
//! has no command line). The names are the self-hosted server's (`MESHCALL_*`), so one set
//! of settings describes both; the deployment template sets them from its parameters.

use std::time::Duration;

use clap::Parser;
use meshcall_core::{Config, Resume, ResumeKey, Turn};
use meshcall_protocol::{IceServer, limits};

/// How log lines are written (CloudWatch Logs keeps each line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (the default: CloudWatch Logs Insights reads the fields).
    Json,
}

/// The function's settings.
#[derive(Debug, Clone, Parser)]
#[command(name = "bootstrap", version, about = "meshcall's AWS Lambda function")]
pub struct Settings {
    /// The DynamoDB table (the template's `Table`).
    #[arg(long, env = "MESHCALL_TABLE")]
    pub table: String,

    /// The API Gateway Management API endpoint, `https://{api}.execute-api.{region}.amazonaws.com/{stage}`.
    /// `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI` wins over it (a local gateway).
    #[arg(long, env = "MESHCALL_CALLBACK_URL", default_value = "")]
    pub callback_url: String,

    /// Most participants in one room.
    #[arg(long, env = "MESHCALL_MAX_ROOM_SIZE", default_value_t = limits::MAX_ROOM_SIZE)]
    pub max_room_size: usize,

    /// Largest message a client may send, in bytes (API Gateway's own limit is 131072).
    #[arg(long, env = "MESHCALL_MAX_MESSAGE_BYTES", default_value_t = limits::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// STUN server URLs for `joined` (comma-separated).
    #[arg(long, env = "MESHCALL_STUN", value_delimiter = ',')]
    pub stun: Vec<String>,

    /// TURN server URLs for `joined`, with credentials minted per join (comma-separated).
    #[arg(long, env = "MESHCALL_TURN", value_delimiter = ',')]
    pub turn: Vec<String>,

    /// The TURN server's shared secret.
    #[arg(long, env = "MESHCALL_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// How long minted TURN credentials stay valid.
    #[arg(long, env = "MESHCALL_TURN_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub turn_ttl: Duration,

    /// Allowed `Origin`s of WebSocket clients (comma-separated); none means any.
    #[arg(long, env = "MESHCALL_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// How long a dropped participant keeps its place for a `resume`; 0 turns resume off.
    #[arg(long, env = "MESHCALL_RESUME_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub resume_grace: Duration,

    /// The secret that signs resume tokens; every instance must share it.
    #[arg(long, env = "MESHCALL_RESUME_SECRET", hide_env_values = true)]
    pub resume_secret: Option<String>,

    /// Pushes one fan-out keeps in flight at once.
    #[arg(long, env = "MESHCALL_FANOUT_CONCURRENCY", default_value_t = 16)]
    pub fanout_concurrency: usize,

    /// Log format.
    #[arg(long, env = "MESHCALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Resume is on but no secret is shared by the instances.
    #[error(
        "MESHCALL_RESUME_SECRET must be set (32 characters or more) while MESHCALL_RESUME_GRACE is not 0"
    )]
    NoResumeSecret,
    /// TURN URLs without the secret to mint credentials.
    #[error("MESHCALL_TURN needs MESHCALL_TURN_SECRET")]
    NoTurnSecret,
}

impl Settings {
    /// Settings from the environment alone.
    ///
    /// # Errors
    /// [`clap::Error`] for a missing or malformed variable.
    pub fn from_env() -> Result<Self, clap::Error> {
        Self::try_parse_from(["bootstrap"])
    }

    /// The core's configuration.
    ///
    /// # Errors
    /// [`SettingsError`] for settings that contradict each other.
    pub fn core_config(&self) -> Result<Config, SettingsError> {
        let resume = if self.resume_grace.is_zero() {
            None
        } else {
            let secret = self
                .resume_secret
                .as_deref()
                .filter(|s| s.len() >= 32)
                .ok_or(SettingsError::NoResumeSecret)?;
            Some(Resume {
                key: ResumeKey::from_secret(secret),
                grace: self.resume_grace,
            })
        };
        let (stun, turn_urls) = (non_empty(&self.stun), non_empty(&self.turn));
        let secret = self.turn_secret.as_deref().filter(|s| !s.is_empty());
        let turn = match (turn_urls.is_empty(), secret) {
            (true, _) => None,
            (false, None) => return Err(SettingsError::NoTurnSecret),
            (false, Some(secret)) => Some(Turn {
                urls: turn_urls,
                secret: secret.to_owned(),
                ttl: self.turn_ttl,
            }),
        };
        Ok(Config {
            max_room_size: self.max_room_size.max(1),
            max_message_bytes: self.max_message_bytes,
            ice_servers: if stun.is_empty() {
                Vec::new()
            } else {
                vec![IceServer {
                    urls: stun,
                    username: None,
                    credential: None,
                }]
            },
            turn,
            fanout_concurrency: self.fanout_concurrency.max(1),
            resume,
            ..Config::default()
        })
    }

    /// The allowed origins, empty entries dropped (an empty template parameter).
    pub fn origins(&self) -> Vec<String> {
        self.allowed_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }
}

/// A list setting without its empty entries (an empty template parameter arrives as `""`).
fn non_empty(values: &[String]) -> Vec<String> {
    values.iter().filter(|v| !v.is_empty()).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from `args` after `--table t` (the only required one).
    fn settings(args: &[&str]) -> Settings {
        let argv = ["bootstrap", "--table", "t"].iter().chain(args);
        Settings::try_parse_from(argv).unwrap()
    }

    #[test]
    fn resume_needs_a_shared_secret_of_32_characters_unless_it_is_off() {
        for args in [&[][..], &["--resume-secret", &"x".repeat(31)]] {
            let refused = settings(args).core_config();
            assert!(
                matches!(refused, Err(SettingsError::NoResumeSecret)),
                "{args:?}: {refused:?}"
            );
        }
        let on = settings(&["--resume-secret", &"x".repeat(32)])
            .core_config()
            .unwrap();
        assert_eq!(on.resume.map(|r| r.grace), Some(Duration::from_secs(30)));
        let off = settings(&["--resume-grace", "0s"]).core_config().unwrap();
        assert!(off.resume.is_none());
    }

    #[test]
    fn turn_needs_its_secret_and_empty_parameters_are_nothing() {
        let no_resume = ["--resume-grace", "0s"];
        let with = |args: &[&str]| settings(&[&no_resume[..], args].concat()).core_config();
        for secret in [&[][..], &["--turn-secret", ""]] {
            let refused = with(&[&["--turn", "turn:t:3478"][..], secret].concat());
            assert!(
                matches!(refused, Err(SettingsError::NoTurnSecret)),
                "{secret:?}: {refused:?}"
            );
        }
        let turn = with(&["--turn", "turn:t:3478", "--turn-secret", "s"]).unwrap();
        assert_eq!(turn.turn.unwrap().urls, ["turn:t:3478"]);
        let stun = with(&["--stun", "stun:a:3478,,stun:b:3478"]).unwrap();
        assert_eq!(stun.ice_servers[0].urls, ["stun:a:3478", "stun:b:3478"]);
        let empty = with(&["--stun", "", "--turn", "", "--turn-secret", ""]).unwrap();
        assert!(empty.ice_servers.is_empty(), "{:?}", empty.ice_servers);
        assert!(empty.turn.is_none());
    }

    #[test]
    fn origins_drop_empty_entries_and_zero_counts_become_one() {
        let s = settings(&[
            "--resume-grace",
            "0s",
            "--allowed-origins",
            " https://a.example ,,",
            "--max-room-size",
            "0",
            "--fanout-concurrency",
            "0",
        ]);
        assert_eq!(s.origins(), ["https://a.example"]);
        let config = s.core_config().unwrap();
        assert_eq!((config.max_room_size, config.fanout_concurrency), (1, 1));
    }
}
