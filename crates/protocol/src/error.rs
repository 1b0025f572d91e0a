//! Errors a client can cause. Each maps to one stable [`ErrorCode`] string that is sent back
//! in `{"type":"error","code":…,"message":…}`; the message is for people and may change.

use serde::Serialize;

use crate::ids::InvalidId;

/// The stable error codes of the protocol. Clients may match on these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorCode {
    /// The frame is not JSON, or not a JSON object.
    BadJson,
    /// The `action` field is missing, not a string, or names no route.
    UnknownAction,
    /// A field the action needs is missing or has the wrong type.
    InvalidField,
    /// `roomId` is missing or not 1-64 characters of `A-Z a-z 0-9 _ -`.
    InvalidRoomId,
    /// The action needs the sender to be in a room (the named room, for `sendMsgToRoom`).
    NotInRoom,
    /// `signal` named a connection that is not in the sender's room.
    PeerNotFound,
    /// `signal` named the sender itself.
    SignalToSelf,
    /// The room already has as many participants as the server allows.
    RoomFull,
    /// The frame is larger than the server's message limit.
    MessageTooLarge,
    /// The connection sent more messages than its rate limit allows; the frame was dropped.
    RateLimited,
    /// Binary frames carry nothing in this protocol.
    BinaryNotSupported,
    /// `resume` with a token that is wrong, or whose grace window has passed.
    ResumeFailed,
    /// The service failed (for example its store was unreachable); the request may be retried.
    Internal,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 13] = [
        Self::BadJson,
        Self::UnknownAction,
        Self::InvalidField,
        Self::InvalidRoomId,
        Self::NotInRoom,
        Self::PeerNotFound,
        Self::SignalToSelf,
        Self::RoomFull,
        Self::MessageTooLarge,
        Self::RateLimited,
        Self::BinaryNotSupported,
        Self::ResumeFailed,
        Self::Internal,
    ];

    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "badJson",
            Self::UnknownAction => "unknownAction",
            Self::InvalidField => "invalidField",
            Self::InvalidRoomId => "invalidRoomId",
            Self::NotInRoom => "notInRoom",
            Self::PeerNotFound => "peerNotFound",
            Self::SignalToSelf => "signalToSelf",
            Self::RoomFull => "roomFull",
            Self::MessageTooLarge => "messageTooLarge",
            Self::RateLimited => "rateLimited",
            Self::BinaryNotSupported => "binaryNotSupported",
            Self::ResumeFailed => "resumeFailed",
            Self::Internal => "internal",
        }
    }
}

/// A frame that could not be turned into a [`ClientMessage`](crate::ClientMessage).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is not valid JSON.
    #[error("frame is not valid JSON: {0}")]
    BadJson(String),
    /// The frame is JSON but not an object.
    #[error("frame must be a JSON object")]
    NotAnObject,
    /// The object has no `action` field.
    #[error("missing \"action\" field")]
    MissingAction,
    /// `action` names no route.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    /// A field is missing or has the wrong type.
    #[error("field {field:?} must be {expected}")]
    InvalidField {
        /// The field's JSON name.
        field: &'static str,
        /// What it should have been, in words.
        expected: &'static str,
    },
    /// `roomId` is missing or malformed.
    #[error("\"roomId\" must be a string of 1-64 characters of A-Z a-z 0-9 _ -")]
    InvalidRoomId,
}

impl ProtocolError {
    /// The stable code sent to the client for this error.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::BadJson(_) | Self::NotAnObject => ErrorCode::BadJson,
            Self::MissingAction | Self::UnknownAction(_) => ErrorCode::UnknownAction,
            Self::InvalidField { .. } => ErrorCode::InvalidField,
            Self::InvalidRoomId => ErrorCode::InvalidRoomId,
        }
    }
}

impl From<InvalidId> for ProtocolError {
    fn from(e: InvalidId) -> Self {
        match e {
            InvalidId::Room => Self::InvalidRoomId,
            InvalidId::Connection => Self::InvalidField {
                field: "to",
                expected: "a connection id",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_to_their_wire_strings() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
