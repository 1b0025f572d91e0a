//! Properties of hostile input: arbitrary bytes (read as UTF-8, lossily), arbitrary
//! strings, near-JSON, mangled frames and arbitrary JSON values (objects whose `action` is
//! mostly a real one, with fields of every type) into the frame parser and into
//! [`Signalling::message`] over the `MemoryStore`:
//!
//! - nothing panics;
//! - the parser answers every frame with a message or a [`ProtocolError`] whose code is a
//!   known one and whose text is short (client text is never echoed at length), and it
//!   decides as a model of the protocol does;
//! - every refusal is exactly one well-formed `{"type":"error","code":…,"message":…}`
//!   frame (with `to` only for `peerNotFound`), to the sender alone, and nothing else;
//! - nothing reaches anyone but the sender unless the frame was a valid routed message, and
//!   then only whom that route serves: a `signal` its addressee in the sender's room, a
//!   room message the other members of the sender's room, a join the members of the room
//!   left and of the room joined; no one in no room ever hears anything.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{collections::BTreeSet, time::Duration};

use meshcall_core::{
    Config, ConnectionStore, Kind, Member, Outcome, Resume, ResumeKey, Route,
    protocol::{ClientMessage, ConnectionId, ErrorCode, RoomId},
};
use proptest::{prelude::*, test_runner::TestCaseError};
use serde_json::{Map, Value};
use support::{Push, World, id, now, parse_json, ready, room};

/// Every action a client may name.
const ACTIONS: [&str; 6] = [
    "joinRoom",
    "sendMsgToRoom",
    "signal",
    "leaveRoom",
    "ping",
    "resume",
];
/// The rooms of the world (`r2` starts empty).
const ROOMS: [&str; 3] = ["r0", "r1", "r2"];
/// The sockets of the world: `A=` (the usual sender, in `r0` or in no room), `B=` and `C=`
/// in `r0`, `D=` in no room, `E=` in `r1`.
const SOCKETS: [&str; 5] = ["A=", "B=", "C=", "D=", "E="];
/// Stands for `B=`'s real resume token (known only once the world is built).
const B_TOKEN: &str = "@B_TOKEN@";
/// Longest error message the parser may give (client text is cut, never echoed whole).
const MAX_ERROR_TEXT: usize = 200;

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(&ACTIONS[..]).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field: mostly a value its route takes, sometimes any string or any JSON, or absent.
fn field(good: BoxedStrategy<Value>) -> impl Strategy<Value = Option<Value>> {
    proptest::option::weighted(
        0.85,
        prop_oneof![
            6 => good,
            1 => ".{0,70}".prop_map(Value::String),
            2 => json(),
        ],
    )
}

fn strings(values: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop::sample::select(values).prop_map(Value::from).boxed()
}

/// A client message as a JSON object: a real `action` (mostly), the fields the routes
/// read with values of any type, and extra fields.
fn message_object() -> impl Strategy<Value = Value> {
    let action = prop_oneof![
        8 => strings(&ACTIONS),
        1 => strings(&["fly", "JoinRoom", "", "ping "]),
        1 => json(),
    ];
    let room_id = prop_oneof![
        4 => strings(&ROOMS),
        1 => "[A-Za-z0-9_-]{1,64}".prop_map(Value::String).boxed(),
        1 => strings(&["", "a b", "r0/", "é"]),
        1 => Just(Value::from("x".repeat(65))).boxed(),
    ];
    let to = prop_oneof![
        4 => strings(&SOCKETS),
        1 => "[!-~]{1,130}".prop_map(Value::String).boxed(),
        1 => strings(&["", "a b", "nobody"]),
    ];
    let message = ".{0,20}".prop_map(Value::String).boxed();
    let token = prop_oneof![
        2 => Just(Value::from(B_TOKEN)).boxed(),
        1 => "[!-~]{0,40}".prop_map(Value::String).boxed(),
    ];
    let extra = prop::collection::btree_map("[a-zA-Z]{1,6}", json(), 0..3);
    (
        proptest::option::weighted(0.95, action),
        field(room_id.boxed()),
        field(to.boxed()),
        field(message),
        proptest::option::weighted(0.85, json()),
        field(token.boxed()),
        extra,
    )
        .prop_map(|(action, room_id, to, message, data, token, extra)| {
            let mut object: Map<String, Value> = extra.into_iter().collect();
            for (name, value) in [
                ("action", action),
                ("roomId", room_id),
                ("to", to),
                ("message", message),
                ("data", data),
                ("token", token),
            ] {
                if let Some(value) = value {
                    object.insert(name.to_owned(), value);
                }
            }
            Value::Object(object)
        })
}

/// A valid message, with extra fields now and then: these are the frames that reach others.
fn routed() -> impl Strategy<Value = Value> {
    let extra = prop::collection::btree_map("[a-z]{1,4}", json(), 0..2);
    let message = (
        0..5u8,
        prop::sample::select(&ROOMS[..]),
        prop::sample::select(&SOCKETS[..]),
        ".{0,20}",
        json(),
    )
        .prop_map(|(action, room, to, text, data)| match action {
            0 => serde_json::json!({"action": "joinRoom", "roomId": room}),
            1 => serde_json::json!({"action": "sendMsgToRoom", "roomId": "r0", "message": text}),
            2 => serde_json::json!({"action": "signal", "to": to, "data": data}),
            3 => serde_json::json!({"action": "leaveRoom"}),
            _ => serde_json::json!({"action": "resume", "token": B_TOKEN}),
        });
    (message, extra).prop_map(|(mut message, extra)| {
        let object = message.as_object_mut().unwrap();
        for (k, v) in extra {
            object.entry(k).or_insert(v);
        }
        message
    })
}

/// A frame as text: mostly a valid message, a message object or any JSON value; else a mangled message
/// (cut short, a byte spliced in, a duplicate `action`), arbitrary bytes read as UTF-8
/// (lossily), near-JSON made of JSON's own characters, or any string.
fn frame() -> impl Strategy<Value = String> {
    let mangled = (
        message_object(),
        any::<prop::sample::Index>(),
        0..4u8,
        any::<char>(),
    )
        .prop_map(|(v, at, how, c)| {
            let text = v.to_string();
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            match how {
                0 => text[..cut].to_owned(),
                1 => format!("{}{c}{}", &text[..cut], &text[cut..]),
                2 => format!(r#"{{"action":"ping",{}"#, &text[1..]),
                _ => format!(" \t\n{text}\n"),
            }
        });
    let near_json = prop::collection::vec(
        prop::sample::select(b"{}[]\":,\\ 0123456789.-+eEtrufalsn".to_vec()),
        0..40,
    )
    .prop_map(|bytes| String::from_utf8(bytes).unwrap());
    prop_oneof![
        4 => routed().prop_map(|v| v.to_string()),
        8 => message_object().prop_map(|v| v.to_string()),
        1 => json().prop_map(|v| v.to_string()),
        3 => mangled,
        2 => prop::collection::vec(any::<u8>(), 0..80)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => near_json,
        1 => any::<String>(),
    ]
}

/// What the protocol says of a JSON value as a frame: its action, or the refusal's code.
fn model(v: &Value) -> Result<&'static str, ErrorCode> {
    let Value::Object(m) = v else {
        return Err(ErrorCode::BadJson);
    };
    let text = |k: &str| m.get(k).and_then(Value::as_str);
    let room_ok = || text("roomId").is_some_and(|r| RoomId::parse(r).is_ok());
    let Some(action) = text("action") else {
        return Err(ErrorCode::UnknownAction);
    };
    let action = ACTIONS
        .into_iter()
        .find(|a| *a == action)
        .ok_or(ErrorCode::UnknownAction)?;
    if matches!(action, "joinRoom" | "sendMsgToRoom") && !room_ok() {
        return Err(ErrorCode::InvalidRoomId);
    }
    let ok = match action {
        "sendMsgToRoom" => text("message").is_some(),
        "signal" => {
            text("to").is_some_and(|t| ConnectionId::parse(t).is_ok()) && m.contains_key("data")
        }
        "resume" => text("token").is_some(),
        _ => true,
    };
    if ok {
        Ok(action)
    } else {
        Err(ErrorCode::InvalidField)
    }
}

/// Checks an `error` frame's shape and returns its code.
fn error_code(text: &str) -> Result<ErrorCode, TestCaseError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| TestCaseError::fail(format!("error frame {text:?} is not JSON: {e}")))?;
    let Some(m) = v.as_object() else {
        return Err(TestCaseError::fail(format!(
            "error frame {text} is not an object"
        )));
    };
    prop_assert_eq!(m.get("type"), Some(&Value::from("error")), "{}", text);
    prop_assert!(m.get("message").is_some_and(Value::is_string), "{}", text);
    let code = m.get("code").and_then(Value::as_str).unwrap_or_default();
    let code = ErrorCode::ALL
        .into_iter()
        .find(|c| c.as_str() == code)
        .ok_or_else(|| TestCaseError::fail(format!("unknown code in {text}")))?;
    let keys: BTreeSet<&str> = m.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = if code == ErrorCode::PeerNotFound {
        ["type", "code", "message", "to"].into()
    } else {
        ["type", "code", "message"].into()
    };
    prop_assert_eq!(keys, expected, "{}", text);
    Ok(code)
}

/// The world as one frame found it.
struct Before {
    /// The sender's participant and room.
    sender: Option<(ConnectionId, Option<RoomId>)>,
    /// Each room's members: participant and socket.
    rooms: Vec<(RoomId, Vec<Member>)>,
}

impl Before {
    fn take(world: &World, socket: &ConnectionId) -> Self {
        let sender = ready(world.store().lookup(socket, now()))
            .unwrap()
            .map(|p| (p.id, p.room));
        let rooms = ROOMS
            .iter()
            .map(|r| {
                (
                    room(r),
                    ready(world.store().members(&room(r), now())).unwrap(),
                )
            })
            .collect();
        Self { sender, rooms }
    }

    /// The sockets of `r`'s members.
    fn sockets(&self, r: Option<&RoomId>) -> BTreeSet<ConnectionId> {
        self.rooms
            .iter()
            .filter(|(q, _)| Some(q) == r)
            .flat_map(|(_, members)| members.iter().filter_map(|m| m.socket.clone()))
            .collect()
    }

    fn own_room(&self) -> Option<&RoomId> {
        self.sender.as_ref().and_then(|(_, r)| r.as_ref())
    }
}

fn config() -> Config {
    Config {
        max_room_size: 4,
        resume: Some(Resume {
            key: ResumeKey::new([9; 32]),
            grace: Duration::from_secs(30),
        }),
        ..Config::default()
    }
}

/// The world of [`SOCKETS`], and `B=`'s resume token.
fn world(a_in_room: bool) -> (World, String) {
    let world = World::with_config(config());
    let [a, b, c, _, e] = SOCKETS.map(|s| world.connect(s));
    world.join(&b, "r0");
    let token = world.drain_json(&b)[0]["resumeToken"]
        .as_str()
        .unwrap()
        .to_owned();
    world.join(&c, "r0");
    world.join(&e, "r1");
    if a_in_room {
        world.join(&a, "r0");
    }
    world.forget_frames();
    (world, token)
}

/// One frame from `sender`, and everything the properties say of what it did.
#[allow(
    clippy::too_many_lines,
    reason = "one match over the routes, each arm the property for that route"
)]
fn step(world: &World, sender: &ConnectionId, text: &str) -> Result<(), TestCaseError> {
    let before = Before::take(world, sender);
    let outcome: Outcome = ready(world.sig.message(sender, text, now()));
    let pushes: Vec<Push> = world.pusher().take();
    let parsed = ClientMessage::parse(text);

    // Every refusal: one well-formed error frame to the sender, and nothing else.
    let errors: Vec<&Push> = pushes
        .iter()
        .filter(|p| p.frame.kind == Kind::Error)
        .collect();
    for e in &errors {
        prop_assert_eq!(&e.to, sender, "an error frame to someone else");
        prop_assert_eq!(Some(error_code(&e.frame.text)?), outcome.error);
    }
    if let Err(e) = &parsed {
        prop_assert_eq!(outcome.route, Route::Default);
        prop_assert_eq!(outcome.error, Some(e.code()));
    }
    if let Some(code) = outcome.error {
        prop_assert_ne!(code, ErrorCode::Internal, "the memory store does not fail");
        prop_assert_eq!(pushes.len(), 1, "a refusal pushed {:?}", pushes);
        prop_assert_eq!(errors.len(), 1);
        return Ok(());
    }
    prop_assert!(errors.is_empty());

    // A frame accepted: only whom its route serves hears of it. A socket that speaks for
    // no one (its participant was taken over by a `resume` elsewhere) is ignored, but for
    // what concerns itself alone (a `pong`, a `resume`).
    let Ok(message) = parsed else { unreachable!() };
    if before.sender.is_none() {
        for p in &pushes {
            prop_assert_eq!(
                &p.to,
                sender,
                "{:?} for a socket with no participant",
                message
            );
        }
        return Ok(());
    }
    let own = before.sockets(before.own_room());
    let to_sender = |p: &Push| &p.to == sender;
    let count = |kind: Kind| pushes.iter().filter(|p| p.frame.kind == kind).count();
    match message {
        ClientMessage::Ping => {
            prop_assert_eq!(pushes.len(), 1);
            prop_assert!(to_sender(&pushes[0]) && pushes[0].frame.kind == Kind::Pong);
        }
        ClientMessage::Resume { .. } => {
            prop_assert_eq!(pushes.len(), 1);
            prop_assert!(to_sender(&pushes[0]) && pushes[0].frame.kind == Kind::Joined);
            prop_assert!(
                before.own_room().is_none(),
                "resumed from a socket in a room"
            );
        }
        ClientMessage::Signal { to, data } => {
            let (from, _) = before.sender.clone().unwrap();
            prop_assert_ne!(&to, &from, "a signal to oneself");
            // The addressee's socket, if it is in the sender's room (a suspended one has
            // none and misses the signal).
            let addressee = before
                .rooms
                .iter()
                .filter(|(r, _)| Some(r) == before.own_room())
                .flat_map(|(_, m)| m)
                .find(|m| m.id == to)
                .map(|m| m.socket.clone());
            prop_assert!(addressee.is_some(), "a signal to {} outside the room", to);
            let reached: Vec<&ConnectionId> = pushes.iter().map(|p| &p.to).collect();
            let addressee = addressee.flatten();
            prop_assert_eq!(reached, addressee.iter().collect::<Vec<_>>());
            for push in &pushes {
                prop_assert_eq!(push.frame.kind, Kind::Signal);
                let v = parse_json(&push.frame.text);
                prop_assert_eq!(&v["from"], &Value::from(from.as_str()));
                prop_assert_eq!(&v["data"], &parse_json(data.get()));
            }
        }
        ClientMessage::SendMsgToRoom { room_id, message } => {
            prop_assert_eq!(Some(&room_id), before.own_room());
            for p in &pushes {
                prop_assert_eq!(p.frame.kind, Kind::RoomMessage);
                prop_assert_eq!(&*p.frame.text, &*message);
                prop_assert!(own.contains(&p.to) && !to_sender(p), "to {}", p.to);
            }
            let others: BTreeSet<&ConnectionId> = own.iter().filter(|s| *s != sender).collect();
            let reached: BTreeSet<&ConnectionId> = pushes.iter().map(|p| &p.to).collect();
            prop_assert_eq!(reached, others, "every other member");
        }
        ClientMessage::JoinRoom { room_id } => {
            prop_assert_eq!(count(Kind::Joined), 1);
            let joined = before.sockets(Some(&room_id));
            for p in &pushes {
                let ok = match p.frame.kind {
                    Kind::Joined => to_sender(p),
                    Kind::NewParticipant => joined.contains(&p.to) && !to_sender(p),
                    Kind::ParticipantLeft => own.contains(&p.to) && !to_sender(p),
                    _ => false,
                };
                prop_assert!(ok, "{:?} to {} on a join", p.frame.kind, p.to);
            }
        }
        ClientMessage::LeaveRoom => {
            for p in &pushes {
                prop_assert_eq!(p.frame.kind, Kind::ParticipantLeft);
                prop_assert!(own.contains(&p.to) && !to_sender(p), "to {}", p.to);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn the_parser_never_panics_and_its_errors_are_known_and_short(text in frame()) {
        if let Err(e) = ClientMessage::parse(&text) {
            prop_assert!(ErrorCode::ALL.contains(&e.code()));
            let shown = e.to_string();
            prop_assert!(!shown.is_empty() && shown.chars().count() <= MAX_ERROR_TEXT, "{}", shown);
        }
    }

    #[test]
    fn the_parser_decides_json_as_the_protocol_says(v in prop_oneof![4 => message_object(), 1 => json()]) {
        let text = v.to_string();
        let parsed = ClientMessage::parse(&text).map(|m| m.action()).map_err(|e| e.code());
        prop_assert_eq!(parsed, model(&v), "{}", text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_core_answers_any_frame_to_the_sender_alone_unless_it_is_routed(
        a_in_room in any::<bool>(),
        frames in prop::collection::vec((prop_oneof![4 => Just(0), 1 => Just(3), 1 => Just(1)], frame()), 1..8),
    ) {
        let (world, token) = world(a_in_room);
        for (sender, text) in frames {
            let text = text.replace(B_TOKEN, &token);
            step(&world, &id(SOCKETS[sender]), &text)?;
        }
        // No room grew past its cap, and no one was found gone.
        for r in ROOMS {
            prop_assert!(world.members(r).len() <= config().max_room_size, "{}", r);
        }
        prop_assert_eq!(world.store().stats().suspended, 0);
    }
}
