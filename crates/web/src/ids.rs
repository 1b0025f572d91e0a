//! Connection ids: 12 random bytes in base64, 16 characters, as API Gateway's look.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use meshcall_protocol::ConnectionId;
use rand::RngExt as _;

/// A fresh connection id.
///
/// # Panics
/// Never: base64 is printable ASCII, which `ConnectionId::parse` takes.
pub fn new_connection_id() -> ConnectionId {
    let bytes: [u8; 12] = rand::rng().random();
    ConnectionId::parse(&STANDARD.encode(bytes)).expect("base64 is printable ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sixteen_characters_and_differ() {
        let (a, b) = (new_connection_id(), new_connection_id());
        assert_eq!(a.to_string().len(), 16);
        assert_ne!(a, b);
    }
}
