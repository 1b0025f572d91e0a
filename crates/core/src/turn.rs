//! TURN credentials in the "TURN REST API" scheme that coturn checks with
//! `use-auth-secret`: the user name is `<expiry unix seconds>:<participant id>` and the
//! password is base64(HMAC-SHA1(shared secret, user name)). They are minted per join, so
//! nothing long-lived ever reaches a browser.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit as _, Mac as _};
use meshcall_protocol::{ConnectionId, IceServer};
use sha1::Sha1;

/// TURN servers that share a secret with meshcall.
#[derive(Clone)]
pub struct Turn {
    /// `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: String,
    /// How long minted credentials stay valid.
    pub ttl: Duration,
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn")
            .field("urls", &self.urls)
            .field("secret", &"..")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Turn {
    /// An `RTCIceServer` with fresh credentials for `participant`, valid for `ttl` from
    /// `now`.
    ///
    /// # Panics
    /// Never: HMAC accepts keys of any length.
    pub fn ice_server(&self, participant: &ConnectionId, now: SystemTime) -> IceServer {
        let expiry = (now + self.ttl)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let username = format!("{expiry}:{participant}");
        let mut mac =
            Hmac::<Sha1>::new_from_slice(self.secret.as_bytes()).expect("HMAC takes any key");
        mac.update(username.as_bytes());
        IceServer {
            urls: self.urls.clone(),
            username: Some(username),
            credential: Some(STANDARD.encode(mac.finalize().into_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_api_scheme() {
        let turn = Turn {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            secret: "north".into(),
            ttl: Duration::from_hours(1),
        };
        let id = ConnectionId::parse("abc=").unwrap();
        let server = turn.ice_server(&id, UNIX_EPOCH + Duration::from_secs(1_000_000));
        assert_eq!(server.username.as_deref(), Some("1003600:abc="));
        // base64(HMAC-SHA1("north", "1003600:abc=")), computed independently with
        // `printf %s '1003600:abc=' | openssl dgst -sha1 -hmac north -binary | base64`.
        assert_eq!(server.credential.as_deref(), Some(EXPECTED));
        assert!(!format!("{turn:?}").contains("north"));
    }

    const EXPECTED: &str = "SELqNxirzwYUQ79uM1ZDf7GzYsU=";
}
