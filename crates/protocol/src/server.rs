//! What the service sends. Every message but the verbatim `sendMsgToRoom` relay is a JSON
//! object tagged by `type`.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::{
    error::ErrorCode,
    ids::{ConnectionId, RoomId},
};

/// One STUN or TURN server, in the shape of `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    /// `stun:` or `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A message from the service to one connection.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage<'a> {
    /// To every other member: someone joined. The id is the joiner's.
    NewParticipant {
        /// The joiner's connection id.
        participant_connection_id: &'a ConnectionId,
    },
    /// To the joiner: you are in the room.
    Joined {
        /// The room joined.
        room_id: &'a RoomId,
        /// The joiner's own connection id.
        connection_id: &'a ConnectionId,
        /// The members who were already there.
        participants: &'a [ConnectionId],
        /// STUN and TURN servers for `RTCPeerConnection`.
        ice_servers: &'a [IceServer],
        /// Send this in `resume` to get this identity back after a dropped socket.
        #[serde(skip_serializing_if = "Option::is_none")]
        resume_token: Option<&'a str>,
        /// `true` when this answers a `resume`.
        resumed: bool,
    },
    /// To the addressee of a `signal`: `data` as sent, with the sender stamped by the service.
    Signal {
        /// The sender's connection id.
        from: &'a ConnectionId,
        /// The payload, verbatim.
        data: &'a RawValue,
    },
    /// To every other member: someone left, switched rooms, closed or dropped.
    ParticipantLeft {
        /// The leaver's connection id.
        participant_connection_id: &'a ConnectionId,
    },
    /// The answer to `ping`.
    Pong,
    /// The sender's last frame was refused; the connection stays open.
    Error {
        /// The stable code.
        code: ErrorCode,
        /// A sentence for people.
        message: &'a str,
        /// For `peerNotFound`: the peer the refused `signal` was addressed to.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a ConnectionId>,
    },
}

impl ServerMessage<'_> {
    /// The message as a JSON text frame.
    ///
    /// # Panics
    /// Never: every field serialises (strings, ids and raw JSON that was parsed before).
    pub fn to_json(&self) -> String {
        // Sized up front: a relayed offer is kilobytes, and growing from serde_json's
        // default 128 bytes copies it several times over.
        let hint = match self {
            Self::Signal { data, .. } => data.get().len() + 128,
            _ => 128,
        };
        let mut out = Vec::with_capacity(hint);
        serde_json::to_writer(&mut out, self).expect("server messages always serialise");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_shape() {
        let a = ConnectionId::parse("A=").unwrap();
        let r = RoomId::parse("123").unwrap();
        assert_eq!(
            ServerMessage::NewParticipant {
                participant_connection_id: &a
            }
            .to_json(),
            r#"{"type":"newParticipant","participantConnectionId":"A="}"#
        );
        let stun = IceServer {
            urls: vec!["stun:stun.example.org:3478".into()],
            username: None,
            credential: None,
        };
        assert_eq!(
            ServerMessage::Joined {
                room_id: &r,
                connection_id: &a,
                participants: &[],
                ice_servers: &[stun],
                resume_token: Some("A=.xyz"),
                resumed: false,
            }
            .to_json(),
            r#"{"type":"joined","roomId":"123","connectionId":"A=","participants":[],"iceServers":[{"urls":["stun:stun.example.org:3478"]}],"resumeToken":"A=.xyz","resumed":false}"#
        );
        let data = RawValue::from_string(r#"{"x": 1}"#.into()).unwrap();
        assert_eq!(
            ServerMessage::Signal {
                from: &a,
                data: &data
            }
            .to_json(),
            r#"{"type":"signal","from":"A=","data":{"x": 1}}"#
        );
        assert_eq!(ServerMessage::Pong.to_json(), r#"{"type":"pong"}"#);
        assert_eq!(
            ServerMessage::Error {
                code: ErrorCode::RoomFull,
                message: "full",
                to: None,
            }
            .to_json(),
            r#"{"type":"error","code":"roomFull","message":"full"}"#
        );
    }
}
