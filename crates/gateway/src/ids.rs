//! The ids AWS gives events and requests: API Gateway's short ids, UUIDs, hex. Connection
//! ids are `meshcall_web::new_connection_id`, as the self-hosted server makes them.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use rand::RngExt as _;

/// An id in API Gateway's style (`requestId`, `messageId`): 11 random bytes in base64,
/// 16 characters ending in `=`.
pub fn short_id() -> String {
    let bytes: [u8; 11] = rand::rng().random();
    STANDARD.encode(bytes)
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A random UUID (version 4), as Lambda request ids and EventBridge event ids are.
pub fn uuid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_api_gateway_shapes() {
        let id = short_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(uuid(), u);
        assert_eq!(hex(&[0, 0xab]), "00ab");
    }
}
