//! The `PeerJS` server's protocol (npm package `peer`, 1.0), client side.
//!
//! `PeerJS` has no rooms: a client picks its own id (or asks `GET <path>/<key>/id` for one)
//! and a token, opens `ws://HOST:PORT<path>peerjs?key=<key>&id=<id>&token=<token>`, and
//! addresses messages to other ids it learnt some other way (an application keeps its
//! rooms itself). Frames are JSON text:
//!
//! | direction | frame |
//! |---|---|
//! | server → the new client | `{"type":"OPEN"}` |
//! | server → a client refused | `{"type":"ERROR","payload":{"msg":…}}` or `{"type":"ID-TAKEN",…}`, then close |
//! | client → server | `{"type":"OFFER"\|"ANSWER"\|"CANDIDATE"\|"LEAVE","dst":<id>,"payload":<any JSON>}` |
//! | server → `dst` | the same with `"src":<sender's id>` added: `{"type":…,"src":…,"dst":…,"payload":…}` |
//! | client → server (every 5 s in the `peerjs` client) | `{"type":"HEARTBEAT"}` |
//! | server → a sender, when a message to an absent id was queued and not read in time | `{"type":"EXPIRE","src":<dst>,"dst":<sender>}` |
//!
//! A message to an id that is not connected is queued for it and expires after
//! `--expire_timeout` (5 s); a client that sends nothing for `--alive_timeout` (60 s) is
//! dropped.

use serde_json::Value;

/// The WebSocket path for `id` under the server's `--path` `/` and `--key` `key`.
pub fn path(key: &str, id: &str, token: &str) -> String {
    format!("/peerjs?key={key}&id={id}&token={token}")
}

/// A message of `kind` (`OFFER`, `ANSWER`, `CANDIDATE`, `LEAVE`) to `dst`.
pub fn message(kind: &str, dst: &str, payload: &Value) -> String {
    message_raw(kind, dst, &payload.to_string())
}

/// A message of `kind` to `dst` with `payload_json`, text that is already one JSON value
/// (the caller's promise): no serialisation on the sending path.
pub fn message_raw(kind: &str, dst: &str, payload_json: &str) -> String {
    format!(
        r#"{{"type":{},"dst":{},"payload":{payload_json}}}"#,
        Value::from(kind),
        Value::from(dst)
    )
}

/// The keep-alive.
pub fn heartbeat() -> String {
    r#"{"type":"HEARTBEAT"}"#.to_owned()
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `OPEN`: the id is registered.
    Open,
    /// A relayed message (`OFFER`, `ANSWER`, `CANDIDATE`, `LEAVE`).
    Relayed {
        /// Its `type`.
        kind: String,
        /// The sender, stamped by the server.
        src: String,
        /// As the sender sent it.
        payload: Value,
    },
    /// `EXPIRE`: a message to `src` was never picked up.
    Expire {
        /// The id the message was for.
        src: String,
    },
    /// `ERROR` or `ID-TAKEN`: the server refuses this client.
    Refused(String),
    /// A frame this client does not know.
    Other(String),
}

/// Parses one text frame from the server.
pub fn parse(text: &str) -> Incoming {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Incoming::Other(text.to_owned());
    };
    let field = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "OPEN" => Incoming::Open,
        "EXPIRE" => Incoming::Expire {
            src: field("src").to_owned(),
        },
        "ERROR" | "ID-TAKEN" => Incoming::Refused(text.to_owned()),
        kind @ ("OFFER" | "ANSWER" | "CANDIDATE" | "LEAVE") => Incoming::Relayed {
            kind: kind.to_owned(),
            src: field("src").to_owned(),
            payload: v.get("payload").cloned().unwrap_or(Value::Null),
        },
        _ => Incoming::Other(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builds_requests() {
        let m: Value =
            serde_json::from_str(&message("OFFER", "b", &json!({"sdp": "x"}))).unwrap_or_default();
        assert_eq!(
            m,
            json!({"type": "OFFER", "dst": "b", "payload": {"sdp": "x"}})
        );
        assert_eq!(path("peerjs", "a", "t"), "/peerjs?key=peerjs&id=a&token=t");
        let h: Value = serde_json::from_str(&heartbeat()).unwrap_or_default();
        assert_eq!(h["type"], "HEARTBEAT");
    }

    #[test]
    fn parses_frames() {
        assert_eq!(parse(r#"{"type":"OPEN"}"#), Incoming::Open);
        assert_eq!(
            parse(r#"{"type":"OFFER","src":"a","dst":"b","payload":{"q":1}}"#),
            Incoming::Relayed {
                kind: "OFFER".into(),
                src: "a".into(),
                payload: json!({"q": 1})
            }
        );
        assert_eq!(
            parse(r#"{"type":"EXPIRE","src":"b","dst":"a"}"#),
            Incoming::Expire { src: "b".into() }
        );
        assert!(matches!(
            parse(r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#),
            Incoming::Refused(_)
        ));
        assert_eq!(parse("nope"), Incoming::Other("nope".into()));
    }
}
