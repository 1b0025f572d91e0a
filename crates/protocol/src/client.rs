//! What a client sends. The `action` field selects the route, as API Gateway's route
//! selection expression `$request.body.action` does. Fields the route does not use are
//! ignored, so the tutorial's clients, which send extra fields, keep working.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::{
    error::ProtocolError,
    ids::{ConnectionId, RoomId},
};

/// A parsed, validated client message. Borrowed parts point into the frame's text.
#[derive(Debug, Clone)]
pub enum ClientMessage<'a> {
    /// `{"action":"joinRoom","roomId":…}`: join a room, leaving any other.
    JoinRoom {
        /// The room to join.
        room_id: RoomId,
    },
    /// `{"action":"sendMsgToRoom","roomId":…,"message":…}`: relay `message`, verbatim, to
    /// every other member of the sender's room.
    SendMsgToRoom {
        /// The room the sender names; it must be the sender's room.
        room_id: RoomId,
        /// The text to relay.
        message: Cow<'a, str>,
    },
    /// `{"action":"signal","to":…,"data":…}`: deliver `data` to one peer of the same room.
    Signal {
        /// The peer to deliver to.
        to: ConnectionId,
        /// Any JSON value, relayed as it was sent.
        data: &'a RawValue,
    },
    /// `{"action":"leaveRoom"}`: leave the current room.
    LeaveRoom,
    /// `{"action":"ping"}`: ask for a `pong`; also keeps the connection from idling out.
    Ping,
    /// `{"action":"resume","token":…}`: take back a dropped participant's identity and room.
    Resume {
        /// The `resumeToken` of the last `joined`.
        token: Cow<'a, str>,
    },
}

/// Every field any action reads, each kept raw until the action is known. `None` means
/// absent; a JSON `null` is present (`Some`), so `"data": null` is relayed like any value.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    action: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "roomId", deserialize_with = "present")]
    room_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    message: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    to: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    token: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Reads a raw JSON value as a string, borrowing when it has no escapes.
fn as_string<'a>(raw: &'a RawValue) -> Option<Cow<'a, str>> {
    serde_json::from_str::<&'a str>(raw.get())
        .map(Cow::Borrowed)
        .or_else(|_| serde_json::from_str::<String>(raw.get()).map(Cow::Owned))
        .ok()
}

fn required_string<'a>(
    raw: Option<&'a RawValue>,
    field: &'static str,
) -> Result<Cow<'a, str>, ProtocolError> {
    raw.and_then(as_string).ok_or(ProtocolError::InvalidField {
        field,
        expected: "a string",
    })
}

fn room_id(raw: Option<&RawValue>) -> Result<RoomId, ProtocolError> {
    let s = raw
        .and_then(as_string)
        .ok_or(ProtocolError::InvalidRoomId)?;
    Ok(RoomId::parse(&s)?)
}

impl<'a> ClientMessage<'a> {
    /// Parses and validates one text frame.
    ///
    /// # Errors
    /// A [`ProtocolError`] naming what is wrong: not JSON, not an object, no or unknown
    /// `action`, or a field the action needs that is missing or malformed.
    pub fn parse(text: &'a str) -> Result<Self, ProtocolError> {
        // A derived struct would also accept a JSON array, field by position.
        if !text.trim_start().starts_with('{') {
            return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Err(ProtocolError::NotAnObject),
                Err(e) => Err(ProtocolError::BadJson(e.to_string())),
            };
        }
        let env: Envelope<'a> =
            serde_json::from_str(text).map_err(|e| ProtocolError::BadJson(e.to_string()))?;
        let action = env.action.ok_or(ProtocolError::MissingAction)?;
        let action = as_string(action)
            .ok_or_else(|| ProtocolError::UnknownAction(truncate(action.get())))?;
        match &*action {
            "joinRoom" => Ok(Self::JoinRoom {
                room_id: room_id(env.room_id)?,
            }),
            "sendMsgToRoom" => Ok(Self::SendMsgToRoom {
                room_id: room_id(env.room_id)?,
                message: required_string(env.message, "message")?,
            }),
            "signal" => {
                let to = required_string(env.to, "to")?;
                let to = ConnectionId::parse(&to)?;
                let data = env.data.ok_or(ProtocolError::InvalidField {
                    field: "data",
                    expected: "present (any JSON value)",
                })?;
                Ok(Self::Signal { to, data })
            }
            "leaveRoom" => Ok(Self::LeaveRoom),
            "ping" => Ok(Self::Ping),
            "resume" => Ok(Self::Resume {
                token: required_string(env.token, "token")?,
            }),
            other => Err(ProtocolError::UnknownAction(truncate(other))),
        }
    }

    /// The route's name, as clients write it in `action`.
    pub const fn action(&self) -> &'static str {
        match self {
            Self::JoinRoom { .. } => "joinRoom",
            Self::SendMsgToRoom { .. } => "sendMsgToRoom",
            Self::Signal { .. } => "signal",
            Self::LeaveRoom => "leaveRoom",
            Self::Ping => "ping",
            Self::Resume { .. } => "resume",
        }
    }
}

/// Keeps echoed client text short.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn code(text: &str) -> ErrorCode {
        ClientMessage::parse(text).unwrap_err().code()
    }

    #[test]
    fn parses_the_tutorial_messages_verbatim() {
        let m = ClientMessage::parse(r#"{"action":"joinRoom","roomId":"123"}"#).unwrap();
        assert!(matches!(m, ClientMessage::JoinRoom { room_id } if room_id.as_str() == "123"));
        let m = ClientMessage::parse(
            r#"{"action": "sendMsgToRoom", "roomId": "123", "message": "hello world!"}"#,
        )
        .unwrap();
        assert!(
            matches!(m, ClientMessage::SendMsgToRoom { message, .. } if message == "hello world!")
        );
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let m = ClientMessage::parse(
            r#"{"action":"sendMsgToRoom","roomId":"r\u0031","message":"a\"b\n"}"#,
        )
        .unwrap();
        let ClientMessage::SendMsgToRoom { room_id, message } = m else {
            panic!("wrong variant")
        };
        assert_eq!(room_id.as_str(), "r1");
        assert_eq!(message, "a\"b\n");
    }

    #[test]
    fn signal_keeps_data_verbatim_and_ignores_extra_fields() {
        let m = ClientMessage::parse(
            r#"{"action":"signal","to":"abc=","data":{"sdp":"v=0\r\n","type":"offer"},"from":"forged"}"#,
        )
        .unwrap();
        let ClientMessage::Signal { to, data } = m else {
            panic!("wrong variant")
        };
        assert_eq!(to.as_str(), "abc=");
        assert_eq!(data.get(), r#"{"sdp":"v=0\r\n","type":"offer"}"#);
    }

    #[test]
    fn signal_data_may_be_null() {
        let m = ClientMessage::parse(r#"{"action":"signal","to":"abc","data":null}"#).unwrap();
        assert!(matches!(m, ClientMessage::Signal { data, .. } if data.get() == "null"));
    }

    #[test]
    fn bad_frames_get_stable_codes() {
        assert_eq!(code("hello"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"action":"ping""#), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code("42"), ErrorCode::BadJson);
        assert_eq!(code(r#""joinRoom""#), ErrorCode::BadJson);
        assert_eq!(
            code(r#"{"action":"ping","action":"ping"}"#),
            ErrorCode::BadJson
        );
        assert_eq!(code("{}"), ErrorCode::UnknownAction);
        assert_eq!(code(r#"{"action":7}"#), ErrorCode::UnknownAction);
        assert_eq!(code(r#"{"action":"fly"}"#), ErrorCode::UnknownAction);
        assert_eq!(code(r#"{"action":"joinRoom"}"#), ErrorCode::InvalidRoomId);
        assert_eq!(
            code(r#"{"action":"joinRoom","roomId":123}"#),
            ErrorCode::InvalidRoomId
        );
        assert_eq!(
            code(r#"{"action":"joinRoom","roomId":null}"#),
            ErrorCode::InvalidRoomId
        );
        assert_eq!(
            code(r#"{"action":"joinRoom","roomId":"a b"}"#),
            ErrorCode::InvalidRoomId
        );
        assert_eq!(
            code(r#"{"action":"joinRoom","roomId":""}"#),
            ErrorCode::InvalidRoomId
        );
        assert_eq!(
            code(r#"{"action":"sendMsgToRoom","roomId":"1"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"action":"sendMsgToRoom","roomId":"1","message":{"a":1}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"action":"signal","data":{}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"action":"signal","to":5,"data":{}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"action":"signal","to":"a b","data":{}}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"action":"signal","to":"abc"}"#),
            ErrorCode::InvalidField
        );
    }

    #[test]
    fn unknown_action_echo_is_bounded() {
        let long = format!(r#"{{"action":"{}"}}"#, "x".repeat(10_000));
        let err = ClientMessage::parse(&long).unwrap_err();
        assert!(err.to_string().len() < 100);
    }
}
