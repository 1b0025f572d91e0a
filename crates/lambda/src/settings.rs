//! [`Settings`]: the function's configuration, from environment variables only (a Lambda
//! has no command line). The names are the self-hosted server's (`MESHCALL_*`), so one set
//! of settings describes both; the deployment template sets them from its parameters. The
//! signalling settings every runtime shares are [`SignallingArgs`], flattened in and
//! converted into the core's [`Config`] by the same code as the server's.
//!
//! Secrets are not settings: the environment names the SSM Parameter Store `SecureString`
//! parameters that hold them (`MESHCALL_RESUME_SECRET_PARAMETER`,
//! `MESHCALL_TURN_SECRET_PARAMETER`), read once at init ([`crate::secrets`]), so they never
//! sit in the function's configuration, where `lambda:GetFunctionConfiguration` shows it.

use std::time::Duration;

use clap::Parser;
pub use meshcall_core::settings::LogFormat;
use meshcall_core::{
    Config, ResumeKey,
    settings::{self, SignallingArgs},
};

/// The function's settings.
#[derive(Debug, Clone, Parser)]
#[command(name = "bootstrap", version, about = "meshcall's AWS Lambda function")]
#[command(mut_arg("log_format", |a| a.default_value("json")))]
pub struct Settings {
    /// The DynamoDB table (the template's `Table`).
    #[arg(long, env = "MESHCALL_TABLE")]
    pub table: String,

    /// The API Gateway Management API endpoint, `https://{api}.execute-api.{region}.amazonaws.com/{stage}`.
    /// `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI` wins over it (a local gateway).
    #[arg(long, env = "MESHCALL_CALLBACK_URL", default_value = "")]
    pub callback_url: String,

    /// The signalling settings every runtime shares (room size, message size, STUN, TURN,
    /// origins, resume grace, fan-out).
    #[command(flatten)]
    pub signalling: SignallingArgs,

    /// The SSM Parameter Store `SecureString` parameter holding the TURN server's shared
    /// secret.
    #[arg(long, env = "MESHCALL_TURN_SECRET_PARAMETER")]
    pub turn_secret_parameter: Option<String>,

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
    #[arg(long, env = "MESHCALL_CHECK_EVERY", default_value = "5m", value_parser = settings::duration)]
    pub check_every: Duration,

    /// Log format (the default here is JSON: CloudWatch Logs Insights reads the fields).
    #[command(flatten)]
    pub log: settings::LogArgs,
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
    /// A shared setting that cannot work.
    #[error(transparent)]
    Shared(settings::SettingsError),
}

impl Settings {
    /// Settings from the environment alone; an empty variable is not set (as a template
    /// parameter left empty).
    ///
    /// # Errors
    /// [`clap::Error`] for a missing or malformed variable.
    pub fn from_env() -> Result<Self, clap::Error> {
        settings::try_parse_from(["bootstrap"])
    }

    /// The core's configuration, with the `secrets` read at init: the shared settings'
    /// one conversion ([`SignallingArgs::config`]), with the resume key derived from the
    /// shared resume secret (of 32 characters or more).
    ///
    /// # Errors
    /// [`SettingsError`] for settings that contradict each other.
    pub fn core_config(&self, secrets: &Secrets) -> Result<Config, SettingsError> {
        let key = secrets
            .resume
            .as_deref()
            .filter(|s| s.len() >= 32)
            .map(ResumeKey::from_secret);
        self.signalling
            .config(secrets.turn.as_deref(), key)
            .map_err(|e| match e {
                settings::SettingsError::NoResumeKey => SettingsError::NoResumeSecret,
                settings::SettingsError::NoTurnSecret => SettingsError::NoTurnSecret,
                e @ settings::SettingsError::Zero(_) => SettingsError::Shared(e),
            })
    }

    /// The allowed origins, empty entries dropped (an empty template parameter).
    pub fn origins(&self) -> Vec<String> {
        self.signalling.origins()
    }
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
    fn logs_are_json_unless_asked() {
        assert_eq!(settings(&[]).log.log_format, LogFormat::Json);
        let text = settings(&["--log-format", "text"]);
        assert_eq!(text.log.log_format, LogFormat::Text);
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
    fn origins_drop_empty_entries_and_zero_counts_are_refused() {
        let s = settings(&[
            "--resume-grace",
            "0s",
            "--allowed-origins",
            " https://a.example ,,",
        ]);
        assert_eq!(s.origins(), ["https://a.example"]);
        // A zero was once clamped to 1 here while the server refused it; now both refuse it,
        // at init (the variable's value parser), naming the variable.
        for name in [
            "--max-room-size",
            "--fanout-concurrency",
            "--max-message-bytes",
        ] {
            let argv = ["bootstrap", "--table", "t", name, "0"];
            let refused = Settings::try_parse_from(argv).unwrap_err().to_string();
            assert!(refused.contains(name), "{refused}");
        }
        let mut zero = s.clone();
        zero.signalling.max_room_size = 0;
        assert!(matches!(
            zero.core_config(&Secrets::default()),
            Err(SettingsError::Shared(_))
        ));
    }

    #[test]
    fn shared_settings_are_flattened_under_their_variables() {
        let s = settings(&[
            "--max-room-size",
            "3",
            "--fanout-concurrency",
            "4",
            "--turn-ttl",
            "1h",
            "--resume-grace",
            "5s",
        ]);
        let config = s.core_config(&resume_secret(&"x".repeat(32))).unwrap();
        assert_eq!((config.max_room_size, config.fanout_concurrency), (3, 4));
        assert_eq!(config.resume.map(|r| r.grace), Some(Duration::from_secs(5)));
        let command = <Settings as clap::CommandFactory>::command();
        for (name, _) in s.signalling.env() {
            assert!(
                command
                    .get_arguments()
                    .any(|a| a.get_env() == Some(name.as_ref())),
                "{name}"
            );
        }
    }
}
