//! [`AppConfig`]: the app's settings, as `/config.json` serves them and the page's
//! `meshcall-config` meta carries them; read by `web/js/boot.js`. One serde type for every
//! runtime: the self-hosted server, the gateway (which adds its `wsUrl`), and the AWS
//! deploy script, which writes the static site's copy with `meshcall app-config`
//! ([`AppConfigArgs`]) instead of building JSON by hand.

use std::time::Duration;

use meshcall_core::settings::{duration, socket_max_age, switch};
use serde::{Deserialize, Serialize};

/// The app's settings. Fields left `None` are left out of the JSON, and the app uses its
/// own default (its own origin's `/ws`; no socket move; any ICE transport).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppConfig {
    /// The signalling socket's URL, when it is not `/ws` on the page's own origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// After this many milliseconds the app moves to a fresh socket (a resume), before the
    /// runtime's connection age limit closes this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_max_age_ms: Option<u64>,
    /// `relay` when media must go through TURN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_transport_policy: Option<IceTransportPolicy>,
}

/// `RTCConfiguration.iceTransportPolicy` when not the browser's default (`all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceTransportPolicy {
    /// Only TURN relay candidates: peers never see each other's addresses.
    Relay,
}

impl AppConfig {
    /// The settings for a runtime that closes connections at `max_connection_age` (0:
    /// never) and, with `force_relay`, sends media only through TURN.
    pub fn new(max_connection_age: Duration, force_relay: bool) -> Self {
        Self {
            ws_url: None,
            socket_max_age_ms: socket_max_age(max_connection_age)
                .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            ice_transport_policy: force_relay.then_some(IceTransportPolicy::Relay),
        }
    }

    /// These settings with the socket at `url`.
    #[must_use]
    pub fn with_ws_url(mut self, url: impl Into<String>) -> Self {
        self.ws_url = Some(url.into());
        self
    }

    /// As JSON, on one line.
    ///
    /// # Panics
    /// Never: strings and numbers always serialise.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("AppConfig serialises: strings and numbers only")
    }
}

/// `meshcall app-config`: prints the app's settings as JSON, for a static host (the AWS
/// deploy script writes them into config.json and the page).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct AppConfigArgs {
    /// The signalling socket's URL (`wss://…`).
    #[arg(long)]
    pub ws_url: Option<String>,

    /// The connection age after which the runtime closes a socket (API Gateway: 2 hours); 0
    /// for none.
    #[arg(long, default_value = "2h", value_parser = duration)]
    pub max_connection_age: Duration,

    /// Media only through TURN (`iceTransportPolicy: "relay"`). Takes an optional on/off
    /// value (`--force-relay=false`), as a deployment's parameter is written.
    #[arg(long, value_parser = switch(), num_args = 0..=1, default_missing_value = "true",
          default_value = "false", require_equals = true)]
    pub force_relay: bool,
}

impl AppConfigArgs {
    /// The settings these flags describe.
    pub fn config(&self) -> AppConfig {
        let config = AppConfig::new(self.max_connection_age, self.force_relay);
        match &self.ws_url {
            Some(url) => config.with_ws_url(url.clone()),
            None => config,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: AppConfigArgs,
    }

    fn json(args: &[&str]) -> serde_json::Value {
        let cli =
            Cli::try_parse_from(std::iter::once("app-config").chain(args.iter().copied())).unwrap();
        serde_json::from_str(&cli.args.config().to_json()).unwrap()
    }

    #[test]
    fn the_json_has_only_what_is_set() {
        assert_eq!(AppConfig::default().to_json(), "{}");
        assert_eq!(
            AppConfig::new(Duration::ZERO, false).to_json(),
            "{}",
            "no age limit, no move"
        );
        assert_eq!(
            AppConfig::new(Duration::from_hours(24), true).to_json(),
            r#"{"socketMaxAgeMs":86100000,"iceTransportPolicy":"relay"}"#
        );
    }

    #[test]
    fn app_config_prints_what_the_deploy_script_wrote() {
        // What deploy/aws/deploy wrote by hand: API Gateway's 2-hour limit less 5 minutes.
        assert_eq!(
            json(&["--ws-url", "wss://x.example/prod"]),
            serde_json::json!({"wsUrl": "wss://x.example/prod", "socketMaxAgeMs": 6_900_000})
        );
        for on in ["--force-relay", "--force-relay=true", "--force-relay=1"] {
            assert_eq!(
                json(&["--ws-url", "wss://x", on])["iceTransportPolicy"],
                "relay",
                "{on}"
            );
        }
        assert!(
            json(&["--force-relay=false"])
                .get("iceTransportPolicy")
                .is_none()
        );
        assert!(
            json(&["--max-connection-age", "0"])
                .get("socketMaxAgeMs")
                .is_none()
        );
    }

    #[test]
    fn it_reads_back() {
        let config = AppConfig::new(Duration::from_hours(2), true).with_ws_url("ws://h/ws");
        let back: AppConfig = serde_json::from_str(&config.to_json()).unwrap();
        assert_eq!(back, config);
    }
}
