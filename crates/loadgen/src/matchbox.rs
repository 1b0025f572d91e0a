//! matchbox's signalling protocol (the `matchbox_server` crate, 0.15), client side.
//!
//! A client opens `ws://HOST:PORT/<room>`: the path is the room, and there is no join
//! message. The server answers at once with the client's id, tells every peer already in
//! the room about the newcomer, and relays signals by peer id. Peer ids are UUIDs. Frames
//! are JSON text, the externally tagged serde form of `matchbox_protocol`'s enums:
//!
//! | direction | frame |
//! |---|---|
//! | server → the new client | `{"IdAssigned":"<uuid>"}` |
//! | server → each earlier member of the room | `{"NewPeer":"<uuid>"}` |
//! | server → each remaining member, when one disconnects | `{"PeerLeft":"<uuid>"}` |
//! | client → server | `{"Signal":{"receiver":"<uuid>","data":<any JSON>}}` |
//! | server → the receiver | `{"Signal":{"sender":"<uuid>","data":<as sent>}}` |
//! | client → server (every 10 s in `matchbox_socket`) | `"KeepAlive"` |
//!
//! The newcomer learns nothing about the earlier members from the server: they learn of it
//! (`NewPeer`) and start the negotiation. A signal to an unknown id is dropped silently.

use serde_json::Value;

/// The WebSocket path of `room` (a room name without `/`).
pub fn path(room: &str) -> String {
    format!("/{room}")
}

/// `Signal` to `receiver`, with `data` (any JSON value) relayed as is.
pub fn signal(receiver: &str, data: &Value) -> String {
    signal_raw(receiver, &data.to_string())
}

/// `Signal` to `receiver` with `data_json`, text that is already one JSON value (the
/// caller's promise): no serialisation on the sending path.
pub fn signal_raw(receiver: &str, data_json: &str) -> String {
    format!(
        r#"{{"Signal":{{"receiver":{},"data":{data_json}}}}}"#,
        Value::from(receiver)
    )
}

/// The keep-alive request (`PeerRequest::KeepAlive`), which the server ignores.
pub fn keep_alive() -> String {
    r#""KeepAlive""#.to_owned()
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `IdAssigned`: this client's own id.
    IdAssigned(String),
    /// `NewPeer`: someone joined the room.
    NewPeer(String),
    /// `PeerLeft`: someone left the room.
    PeerLeft(String),
    /// `Signal`, with the sender's id as the server stamped it.
    Signal {
        /// The sender.
        sender: String,
        /// As the sender sent it.
        data: Value,
    },
    /// A frame this client does not know.
    Other(String),
}

/// Parses one text frame from the server.
pub fn parse(text: &str) -> Incoming {
    let other = || Incoming::Other(text.to_owned());
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        return other();
    };
    let Some((tag, body)) = map.iter().next() else {
        return other();
    };
    let id = || body.as_str().map(str::to_owned);
    match tag.as_str() {
        "IdAssigned" => id().map_or_else(other, Incoming::IdAssigned),
        "NewPeer" => id().map_or_else(other, Incoming::NewPeer),
        "PeerLeft" => id().map_or_else(other, Incoming::PeerLeft),
        "Signal" => match body.get("sender").and_then(Value::as_str) {
            Some(sender) => Incoming::Signal {
                sender: sender.to_owned(),
                data: body.get("data").cloned().unwrap_or(Value::Null),
            },
            None => other(),
        },
        _ => other(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builds_requests() {
        let s: Value =
            serde_json::from_str(&signal("u-1", &json!({"sdp": "x"}))).unwrap_or_default();
        assert_eq!(
            s,
            json!({"Signal": {"receiver": "u-1", "data": {"sdp": "x"}}})
        );
        let k: Value = serde_json::from_str(&keep_alive()).unwrap_or_default();
        assert_eq!(k, json!("KeepAlive"));
        assert_eq!(path("room_a"), "/room_a");
    }

    #[test]
    fn parses_events() {
        assert_eq!(
            parse(r#"{"IdAssigned":"a"}"#),
            Incoming::IdAssigned("a".into())
        );
        assert_eq!(parse(r#"{"NewPeer":"b"}"#), Incoming::NewPeer("b".into()));
        assert_eq!(parse(r#"{"PeerLeft":"c"}"#), Incoming::PeerLeft("c".into()));
        assert_eq!(
            parse(r#"{"Signal":{"sender":"d","data":[1]}}"#),
            Incoming::Signal {
                sender: "d".into(),
                data: json!([1])
            }
        );
        assert_eq!(parse("[]"), Incoming::Other("[]".into()));
        assert_eq!(
            parse(r#"{"NewPeer":3}"#),
            Incoming::Other(r#"{"NewPeer":3}"#.into())
        );
    }
}
