//! Resume tokens. A token names a participant and proves the service issued it:
//! `<participant id>.<base64url of the first 16 bytes of HMAC-SHA256(key, id)>`. Nothing is
//! stored for it; a token is only useful while its participant exists (connected, or
//! suspended within its grace window), so leaving or expiring revokes it.

use std::{fmt, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit as _, Mac as _};
use meshcall_protocol::ConnectionId;
use sha2::Sha256;

const TAG_BYTES: usize = 16;

/// The secret that signs resume tokens. Keep it out of logs: `Debug` does not show it.
#[derive(Clone)]
pub struct ResumeKey([u8; 32]);

impl fmt::Debug for ResumeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeKey(..)")
    }
}

impl ResumeKey {
    /// A key from 32 secret bytes (random, from the gateway).
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key derived from a configured secret (its SHA-256), for gateways whose processes
    /// must all accept each other's tokens, such as Lambda instances.
    pub fn from_secret(secret: &str) -> Self {
        use sha2::Digest as _;
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    fn mac(&self, id: &ConnectionId) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_str().as_bytes());
        mac
    }

    /// The token for `id`.
    pub fn token(&self, id: &ConnectionId) -> String {
        let tag = self.mac(id).finalize().into_bytes();
        format!("{id}.{}", URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES]))
    }

    /// The participant a genuine token names; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<ConnectionId> {
        let (id, tag) = token.rsplit_once('.')?;
        let id = ConnectionId::parse(id).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != TAG_BYTES {
            return None;
        }
        self.mac(&id).verify_truncated_left(&tag).ok()?;
        Some(id)
    }
}

/// Resume settings: tokens are issued in `joined`, and a dropped participant keeps its
/// place for `grace`.
#[derive(Debug, Clone)]
pub struct Resume {
    /// Signs tokens.
    pub key: ResumeKey,
    /// How long a dropped participant waits to be resumed before its room is told it left.
    pub grace: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_their_key_and_unaltered() {
        let key = ResumeKey::new([7; 32]);
        let id = ConnectionId::parse("diZbufWlSQ0CFHQ=").unwrap();
        let token = key.token(&id);
        assert_eq!(key.verify(&token), Some(id.clone()));
        assert_eq!(ResumeKey::new([8; 32]).verify(&token), None);
        let other = ConnectionId::parse("AAAAAAAAAAAAAAA=").unwrap();
        let (_, tag) = token.rsplit_once('.').unwrap();
        assert_eq!(
            key.verify(&format!("{other}.{tag}")),
            None,
            "tag bound to the id"
        );
        for bad in [
            "",
            ".",
            "x",
            "diZbufWlSQ0CFHQ=.",
            "a b.AAAA",
            &token[..token.len() - 1],
        ] {
            assert_eq!(key.verify(bad), None, "{bad:?}");
        }
        assert_eq!(format!("{key:?}"), "ResumeKey(..)");
    }
}
