//! meshcall's protocol, client side (README "Protocol", docs/protocol.md): the frames a
//! client sends, and what it receives, parsed.

use serde_json::{Value, json};

/// `joinRoom`.
pub fn join(room: &str) -> String {
    json!({"action": "joinRoom", "roomId": room}).to_string()
}

/// `leaveRoom`.
pub fn leave() -> String {
    r#"{"action":"leaveRoom"}"#.to_owned()
}

/// `ping` (answered with `pong`, after everything the server did for earlier frames).
pub fn ping() -> String {
    r#"{"action":"ping"}"#.to_owned()
}

/// `resume` with a token from `joined`.
pub fn resume(token: &str) -> String {
    json!({"action": "resume", "token": token}).to_string()
}

/// `signal` to one peer, with any JSON as `data`.
pub fn signal(to: &str, data: &Value) -> String {
    json!({"action": "signal", "to": to, "data": data}).to_string()
}

/// `signal` to one peer with `data_json`, text that is already one JSON value (the caller's
/// promise): no serialisation on the sending path.
pub fn signal_raw(to: &str, data_json: &str) -> String {
    format!(
        r#"{{"action":"signal","to":{},"data":{data_json}}}"#,
        Value::from(to)
    )
}

/// `sendMsgToRoom`: `message` reaches the room's other members verbatim.
pub fn send_to_room(room: &str, message: &str) -> String {
    json!({"action": "sendMsgToRoom", "roomId": room, "message": message}).to_string()
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `joined` (after `joinRoom` or `resume`).
    Joined {
        /// The participant's id.
        connection_id: String,
        /// The room joined.
        room: String,
        /// The others already there.
        participants: Vec<String>,
        /// The token for a later `resume`.
        resume_token: Option<String>,
        /// Whether this answered a `resume`.
        resumed: bool,
    },
    /// `newParticipant`: someone joined the room.
    NewParticipant(String),
    /// `participantLeft`: someone left the room.
    ParticipantLeft(String),
    /// `signal`, with the sender's id as the server stamped it.
    Signal {
        /// The sender, stamped by the server.
        from: String,
        /// As the sender sent it.
        data: Value,
    },
    /// `pong`.
    Pong,
    /// `error`.
    Error {
        /// The error code (`roomFull`, `peerNotFound`, ...).
        code: String,
        /// For `peerNotFound`: the id the signal was for.
        to: Option<String>,
    },
    /// Anything else: a room message (relayed verbatim), or a frame this client does not
    /// know.
    Other(String),
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Parses one text frame from the server.
pub fn parse(text: &str) -> Incoming {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Incoming::Other(text.to_owned());
    };
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "joined" => Incoming::Joined {
            connection_id: string(&v, "connectionId").unwrap_or_default(),
            room: string(&v, "roomId").unwrap_or_default(),
            participants: v
                .get("participants")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            resume_token: string(&v, "resumeToken"),
            resumed: v.get("resumed").and_then(Value::as_bool).unwrap_or(false),
        },
        "newParticipant" => {
            Incoming::NewParticipant(string(&v, "participantConnectionId").unwrap_or_default())
        }
        "participantLeft" => {
            Incoming::ParticipantLeft(string(&v, "participantConnectionId").unwrap_or_default())
        }
        "signal" => Incoming::Signal {
            from: string(&v, "from").unwrap_or_default(),
            data: v.get("data").cloned().unwrap_or(Value::Null),
        },
        "pong" => Incoming::Pong,
        "error" => Incoming::Error {
            code: string(&v, "code").unwrap_or_default(),
            to: string(&v, "to"),
        },
        _ => Incoming::Other(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_json() {
        let s: Value = serde_json::from_str(&signal("abc", &json!({"q": 1}))).unwrap_or_default();
        assert_eq!(s["action"], "signal");
        assert_eq!(s["to"], "abc");
        assert_eq!(s["data"]["q"], 1);
        let r: Value = serde_json::from_str(&signal_raw("abc", r#"{"q":1}"#)).unwrap_or_default();
        assert_eq!(r, s);
        let m: Value = serde_json::from_str(&send_to_room("r1", "{\"x\":1}")).unwrap_or_default();
        assert_eq!(m["message"], "{\"x\":1}");
    }

    #[test]
    fn parses_server_frames() {
        let joined = r#"{"type":"joined","roomId":"r","connectionId":"A","participants":["B"],"iceServers":[],"resumeToken":"A.x","resumed":true}"#;
        assert_eq!(
            parse(joined),
            Incoming::Joined {
                connection_id: "A".into(),
                room: "r".into(),
                participants: vec!["B".into()],
                resume_token: Some("A.x".into()),
                resumed: true,
            }
        );
        assert_eq!(
            parse(r#"{"type":"error","code":"peerNotFound","message":"m","to":"Z"}"#),
            Incoming::Error {
                code: "peerNotFound".into(),
                to: Some("Z".into())
            }
        );
        assert_eq!(parse("hello"), Incoming::Other("hello".into()));
        assert_eq!(parse(r#"{"type":"pong"}"#), Incoming::Pong);
    }
}
