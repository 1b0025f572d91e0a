//! [`Settings`]: the function's configuration, from environment variables only (a Lambda
//! has no command line). The names are the self-hosted server's (`MESHCALL_*`), so one set
//! of settings describes both; the deployment template sets them from its parameters.
//!
//! Secrets are not settings: the environment names the SSM Parameter Store `SecureString`
//! parameters that hold them (`MESHCALL_RESUME_SECRET_PARAMETER`,
//! `MESHCALL_TURN_SECRET_PARAMETER`), read once at init ([`crate::secrets`]), so they never
//! sit in the function's configuration, where `lambda:GetFunctionConfiguration` shows it.

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

    /// The SSM Parameter Store `SecureString` parameter holding the TURN server's shared
    /// secret.
    #[arg(long, env = "MESHCALL_TURN_SECRET_PARAMETER")]
    pub turn_secret_parameter: Option<String>,

    /// How long minted TURN credentials stay valid.
    #[arg(long, env = "MESHCALL_TURN_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub turn_ttl: Duration,

    /// Allowed `Origin`s of WebSocket clients (comma-separated); none means any.
    #[arg(long, env = "MESHCALL_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// How long a dropped participant keeps its place for a `resume`; 0 turns resume off.
    #[arg(long, env = "MESHCALL_RESUME_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub resume_grace: Duration,

    /// The SSM Parameter Store `SecureString` parameter holding the secret that signs resume
    /// tokens (every instance must share it).
    #[arg(long, env = "MESHCALL_RESUME_SECRET_PARAMETER")]
    pub resume_secret_parameter: Option<String>,

    /// The SQS queue that brings each suspension back when its grace ends (a message
    /// delayed by the grace); without it only the scheduled sweep ends graces.
    #[arg(long, env = "MESHCALL_EXPIRY_QUEUE_URL")]
    pub expiry_queue_url: Option<String>,

    /// How often the sweep asks API Gateway whether a room member's socket still exists
    /// (a lost `$disconnect` leaves a ghost).
    #[arg(long, env = "MESHCALL_CHECK_EVERY", default_value = "5m", value_parser = humantime::parse_duration)]
    pub check_every: Duration,

    /// Pushes one fan-out keeps in flight at once.
    #[arg(long, env = "MESHCALL_FANOUT_CONCURRENCY", default_value_t = 16)]
    pub fanout_concurrency: usize,

    /// Log format.
    #[arg(long, env = "MESHCALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

/// The secrets, as read at init from the parameters the settings name.
#[derive(Clone, Default)]
pub struct Secrets {
    /// Signs resume tokens.
    pub resume: Option<String>,
    /// The TURN server's shared secret.
    pub turn: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("resume", &self.resume.as_ref().map(|_| "<redacted>"))
            .field("turn", &self.turn.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Resume is on but no secret is shared by the instances.
    #[error(
        "MESHCALL_RESUME_SECRET_PARAMETER must name a SecureString of 32 characters or more while MESHCALL_RESUME_GRACE is not 0"
    )]
    NoResumeSecret,
    /// TURN URLs without the secret to mint credentials.
    #[error("MESHCALL_TURN needs MESHCALL_TURN_SECRET_PARAMETER")]
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

    /// The core's configuration, with the `secrets` read at init.
    ///
    /// # Errors
    /// [`SettingsError`] for settings that contradict each other.
    pub fn core_config(&self, secrets: &Secrets) -> Result<Config, SettingsError> {
        let resume = if self.resume_grace.is_zero() {
            None
        } else {
            let secret = secrets
                .resume
                .as_deref()
                .filter(|s| s.len() >= 32)
                .ok_or(SettingsError::NoResumeSecret)?;
            Some(Resume {
                key: ResumeKey::from_secret(secret),
                grace: self.resume_grace,
            })
        };
        let (stun, turn_urls) = (non_empty(&self.stun), non_empty(&self.turn));
        let secret = secrets.turn.as_deref().filter(|s| !s.is_empty());
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

    fn resume_secret(secret: &str) -> Secrets {
        Secrets {
            resume: Some(secret.to_owned()),
            turn: None,
        }
    }

    #[test]
    fn resume_needs_a_shared_secret_of_32_characters_unless_it_is_off() {
        for secrets in [Secrets::default(), resume_secret(&"x".repeat(31))] {
            let refused = settings(&[]).core_config(&secrets);
            assert!(
                matches!(refused, Err(SettingsError::NoResumeSecret)),
                "{refused:?}"
            );
        }
        let on = settings(&[])
            .core_config(&resume_secret(&"x".repeat(32)))
            .unwrap();
        assert_eq!(on.resume.map(|r| r.grace), Some(Duration::from_secs(30)));
        let off = settings(&["--resume-grace", "0s"])
            .core_config(&Secrets::default())
            .unwrap();
        assert!(off.resume.is_none());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secrets = Secrets {
            resume: Some("resume-secret-value".into()),
            turn: Some("turn-secret-value".into()),
        };
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("secret-value"), "{shown}");
    }

    #[test]
    fn turn_needs_its_secret_and_empty_parameters_are_nothing() {
        let no_resume = ["--resume-grace", "0s"];
        let with_turn = |args: &[&str], turn: Option<&str>| {
            let secrets = Secrets {
                resume: None,
                turn: turn.map(ToOwned::to_owned),
            };
            settings(&[&no_resume[..], args].concat()).core_config(&secrets)
        };
        let with = |args: &[&str]| with_turn(args, None);
        for secret in [None, Some("")] {
            let refused = with_turn(&["--turn", "turn:t:3478"], secret);
            assert!(
                matches!(refused, Err(SettingsError::NoTurnSecret)),
                "{secret:?}: {refused:?}"
            );
        }
        let turn = with_turn(&["--turn", "turn:t:3478"], Some("s")).unwrap();
        assert_eq!(turn.turn.unwrap().urls, ["turn:t:3478"]);
        let stun = with(&["--stun", "stun:a:3478,,stun:b:3478"]).unwrap();
        assert_eq!(stun.ice_servers[0].urls, ["stun:a:3478", "stun:b:3478"]);
        let empty = with_turn(&["--stun", "", "--turn", ""], Some("")).unwrap();
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
        let config = s.core_config(&Secrets::default()).unwrap();
        assert_eq!((config.max_room_size, config.fanout_concurrency), (1, 1));
    }
}
