//! Identifier newtypes. Both are cheap to clone (a shared string) and can only be built
//! through a validating constructor, so a value of either type is always well formed.

use std::{fmt, sync::Arc};

use serde::{Serialize, Serializer};

use crate::limits::{MAX_CONNECTION_ID_LEN, MAX_ROOM_ID_LEN};

/// Why a string is not a valid id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// A room id must be 1-64 characters of `A-Z a-z 0-9 _ -`.
    #[error("room id must be 1-{MAX_ROOM_ID_LEN} characters of A-Z a-z 0-9 _ -")]
    Room,
    /// A connection id must be 1-128 printable ASCII characters.
    #[error("connection id must be 1-{MAX_CONNECTION_ID_LEN} printable ASCII characters")]
    Connection,
}

/// The name of a room: 1-64 characters of `A-Z a-z 0-9 _ -`, case-sensitive.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

impl RoomId {
    /// Validates `s` as a room id.
    ///
    /// # Errors
    /// [`InvalidId::Room`] if `s` is empty, longer than 64 characters, or holds a character
    /// other than ASCII letters, digits, `_` and `-`.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_ROOM_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(InvalidId::Room)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of one WebSocket connection, given by the gateway (the self-hosted server or API
/// Gateway). Clients only ever name ids they were told by the service.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Arc<str>);

impl ConnectionId {
    /// Validates `s` as a connection id.
    ///
    /// # Errors
    /// [`InvalidId::Connection`] if `s` is empty, longer than 128 characters, or holds a
    /// character that is not printable ASCII (space excluded).
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_CONNECTION_ID_LEN
            && s.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(InvalidId::Connection)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_like {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
string_like!(RoomId);
string_like!(ConnectionId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_follow_the_charset_and_length_rule() {
        for ok in ["123", "a", "Room_1-b", &"x".repeat(64)] {
            assert_eq!(RoomId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "undefined room",
            "a/b",
            "é",
            "a.b",
            &"x".repeat(65),
            "a\n",
        ] {
            assert_eq!(RoomId::parse(bad), Err(InvalidId::Room), "{bad:?}");
        }
    }

    #[test]
    fn room_ids_are_case_sensitive() {
        assert_ne!(RoomId::parse("Abc").unwrap(), RoomId::parse("abc").unwrap());
    }

    #[test]
    fn connection_ids_are_printable_ascii() {
        assert!(ConnectionId::parse("diZbufWlSQ0CFHQ=").is_ok());
        for bad in ["", "a b", "tab\t", "é", &"x".repeat(129)] {
            assert_eq!(
                ConnectionId::parse(bad),
                Err(InvalidId::Connection),
                "{bad:?}"
            );
        }
    }
}
