//! The routes, example by example: who receives what, and what each refusal looks like.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
#![allow(
    clippy::many_single_char_names,
    reason = "participants are a, b, c, ... as in a diagram"
)]

mod support;

use std::{
    collections::BTreeSet,
    error::Error,
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use meshcall_core::{
    Config, ConnectionStore, Departure, Due, JoinError, Joined, Kind, Member, MemoryStore,
    Presence, ResumeError, Resumed, Route, Signalling, StoreError, Suspension, Swept,
    protocol::{ConnectionId, ErrorCode, IceServer, RoomId},
};
use serde_json::{Value, json};
use support::{Fate, RecordingPusher, World, id, now, parse_json, ready, room};

const JOIN_123: &str = r#"{"action":"joinRoom","roomId":"123"}"#;

/// `a` and `b` in room 123, `c` in room 456, `d` in no room; no frames recorded yet.
fn two_rooms(world: &World) -> [ConnectionId; 4] {
    let [a, b, c, d] = ["A=", "B=", "C=", "D="].map(|n| world.connect(n));
    world.join(&a, "123");
    world.join(&b, "123");
    world.join(&c, "456");
    world.forget_frames();
    [a, b, c, d]
}

fn participant_left(conn: &ConnectionId) -> Value {
    json!({"type": "participantLeft", "participantConnectionId": conn.as_str()})
}

fn new_participant(conn: &ConnectionId) -> Value {
    json!({"type": "newParticipant", "participantConnectionId": conn.as_str()})
}

/// The one frame `conn` received, which must be an `error` with `code`.
#[track_caller]
fn assert_one_error(world: &World, conn: &ConnectionId, code: ErrorCode) {
    let frames = world.drain_json(conn);
    assert_eq!(frames.len(), 1, "{conn} got {frames:?}");
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["code"], code.as_str());
    let message = frames[0]["message"].as_str().expect("message is a string");
    assert!(!message.is_empty());
}

#[test]
fn join_tells_others_the_joiners_id_not_their_own() {
    let world = World::new();
    let a = world.connect("diZbufWlSQ0CFHQ=");
    let b = world.connect("diZb9fW0yQ0CEdA=");
    let c = world.connect("diZcAdD3iQ0CF9w=");
    world.join(&a, "123");
    world.join(&b, "123");
    world.forget_frames();

    // The tutorial's wscat walkthrough, verbatim.
    let outcome = world.send(&c, JOIN_123);
    assert_eq!(outcome.error, None);

    let expected = r#"{"type":"newParticipant","participantConnectionId":"diZcAdD3iQ0CF9w="}"#;
    for other in [&a, &b] {
        let frames = world.drain(other);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].kind, Kind::NewParticipant);
        assert_eq!(&*frames[0].text, expected);
    }
    let own: Vec<Value> = world.drain_json(&c);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["type"], "joined");
}

#[test]
fn joined_lists_members_already_there() {
    let stun = IceServer {
        urls: vec!["stun:stun.example.org:3478".into()],
        username: None,
        credential: None,
    };
    let world = World::with_config(Config {
        ice_servers: vec![stun],
        ..Config::default()
    });
    let [a, b, c] = ["A=", "B=", "C="].map(|n| world.connect(n));

    world.join(&a, "123");
    assert_eq!(
        world.drain_json(&a),
        [json!({
            "type": "joined",
            "roomId": "123",
            "connectionId": "A=",
            "participants": [],
            "iceServers": [{"urls": ["stun:stun.example.org:3478"]}],
            "resumed": false,
        })]
    );
    world.join(&b, "123");
    world.join(&c, "123");
    let joined = world.drain_json(&c);
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["connectionId"], "C=");
    assert_eq!(joined[0]["roomId"], "123");
    // In join order, the joiner not among them.
    assert_eq!(joined[0]["participants"], json!(["A=", "B="]));
    assert_eq!(world.members("123"), [a, b, c]);
}

#[test]
fn send_msg_to_room_relays_text_verbatim_to_others_only() {
    let world = World::new();
    let [a, b, c, d] = two_rooms(&world);
    let e = world.connect("E=");
    world.join(&e, "123");
    world.forget_frames();

    // The tutorial's frame, spaces and all.
    let outcome = world.send(
        &a,
        r#"{"action": "sendMsgToRoom", "roomId": "123", "message": "hello world!"}"#,
    );
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.route, Route::SendMsgToRoom);
    for other in [&b, &e] {
        let frames = world.drain(other);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].kind, Kind::RoomMessage);
        assert_eq!(&*frames[0].text, "hello world!");
    }
    // Not echoed to the sender, and nothing for the other room or the roomless.
    world.assert_nothing_pushed();
    let _ = (c, d);

    // The JSON string is unescaped once; the text is then relayed as it is, even when it
    // looks like JSON itself.
    world.send(
        &b,
        r#"{"action":"sendMsgToRoom","roomId":"123","message":"{\"x\": 1}\n\u00e9"}"#,
    );
    for other in [&a, &e] {
        let frames = world.drain(other);
        assert_eq!(frames.len(), 1);
        assert_eq!(&*frames[0].text, "{\"x\": 1}\n\u{e9}");
    }
    world.assert_nothing_pushed();
}

#[test]
fn send_msg_to_room_from_outside_the_room_is_not_in_room() {
    let world = World::new();
    let [_a, _b, c, d] = two_rooms(&world);
    let hello = r#"{"action":"sendMsgToRoom","roomId":"123","message":"hello"}"#;

    for outsider in [&c, &d] {
        let outcome = world.send(outsider, hello);
        assert_eq!(outcome.route, Route::SendMsgToRoom);
        assert_eq!(outcome.error, Some(ErrorCode::NotInRoom));
        assert_one_error(&world, outsider, ErrorCode::NotInRoom);
        world.assert_nothing_pushed();
    }
    // The refusal changed no membership.
    assert_eq!(world.room_of(&c), Some(room("456")));
    assert_eq!(world.room_of(&d), None);
}

#[test]
fn signal_stamps_the_sender_and_reaches_only_the_target() {
    let world = World::new();
    let [a, b, _c, _d] = two_rooms(&world);
    let e = world.connect("E=");
    world.join(&e, "123");
    world.forget_frames();

    // A forged "from" is ignored; the data goes through byte for byte.
    let outcome = world.send(
        &a,
        r#"{"action":"signal","to":"B=","from":"E=","data":{"type":"offer", "sdp":"v=0\r\n"}}"#,
    );
    assert_eq!(outcome.route, Route::Signal);
    assert_eq!(outcome.error, None);
    let frames = world.drain(&b);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].kind, Kind::Signal);
    assert_eq!(
        &*frames[0].text,
        r#"{"type":"signal","from":"A=","data":{"type":"offer", "sdp":"v=0\r\n"}}"#
    );
    // Not the sender, not the third member, not the other room.
    world.assert_nothing_pushed();

    // Data need not be an object.
    world.send(&e, r#"{"action":"signal","to":"A=","data":[1,"two"]}"#);
    assert_eq!(
        world.drain_json(&a),
        [json!({"type": "signal", "from": "E=", "data": [1, "two"]})]
    );
    world.assert_nothing_pushed();
}

#[test]
fn signal_to_peer_in_other_room_is_peer_not_found() {
    let world = World::new();
    let [a, _b, c, d] = two_rooms(&world);

    // In another room, in no room, never connected: all look alike to the sender.
    for to in [&c, &d, &id("nobody")] {
        let text = format!(r#"{{"action":"signal","to":"{to}","data":{{}}}}"#);
        let outcome = world.send(&a, &text);
        assert_eq!(outcome.error, Some(ErrorCode::PeerNotFound));
        assert_one_error(&world, &a, ErrorCode::PeerNotFound);
        world.assert_nothing_pushed();
    }
}

#[test]
fn signal_to_self_is_refused() {
    let world = World::new();
    let [a, _b, _c, d] = two_rooms(&world);
    for sender in [&a, &d] {
        let text = format!(r#"{{"action":"signal","to":"{sender}","data":{{}}}}"#);
        let outcome = world.send(sender, &text);
        assert_eq!(outcome.error, Some(ErrorCode::SignalToSelf));
        assert_one_error(&world, sender, ErrorCode::SignalToSelf);
        world.assert_nothing_pushed();
    }
}

#[test]
fn signal_before_joining_is_not_in_room() {
    let world = World::new();
    let [_a, b, _c, d] = two_rooms(&world);
    let text = format!(r#"{{"action":"signal","to":"{b}","data":{{"sdp":"x"}}}}"#);
    let outcome = world.send(&d, &text);
    assert_eq!(outcome.error, Some(ErrorCode::NotInRoom));
    assert_one_error(&world, &d, ErrorCode::NotInRoom);
    world.assert_nothing_pushed();
}

#[test]
fn joining_another_room_tells_the_old_room() {
    let world = World::new();
    let [a, b, c, _d] = two_rooms(&world);

    let outcome = world.join(&a, "456");
    assert_eq!(outcome.error, None);
    assert_eq!(world.drain_json(&b), [participant_left(&a)]);
    assert_eq!(world.drain_json(&c), [new_participant(&a)]);
    let joined = world.drain_json(&a);
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["roomId"], "456");
    assert_eq!(joined[0]["participants"], json!([c.as_str()]));
    world.assert_nothing_pushed();

    assert_eq!(world.members("123"), [b]);
    assert_eq!(world.members("456"), [c, a]);
}

#[test]
fn leave_room_tells_the_others() {
    let world = World::new();
    let [a, b, c, _d] = two_rooms(&world);
    let e = world.connect("E=");
    world.join(&e, "123");
    world.forget_frames();

    let outcome = world.send(&a, r#"{"action":"leaveRoom"}"#);
    assert_eq!(outcome.route, Route::LeaveRoom);
    assert_eq!(outcome.error, None);
    for other in [&b, &e] {
        assert_eq!(world.drain_json(other), [participant_left(&a)]);
    }
    world.assert_nothing_pushed();
    assert_eq!(world.room_of(&a), None);
    assert_eq!(world.members("123"), [b, e]);
    assert_eq!(world.members("456"), [c]);

    // Still connected, and may leave only once.
    let outcome = world.send(&a, r#"{"action":"leaveRoom"}"#);
    assert_eq!(outcome.error, Some(ErrorCode::NotInRoom));
    assert_one_error(&world, &a, ErrorCode::NotInRoom);
    world.assert_nothing_pushed();
    assert_eq!(world.store().stats().connections, 5);
}

#[test]
fn last_one_out_leaves_no_empty_room() {
    let world = World::new();
    let [a, b, c, _d] = two_rooms(&world);
    world.send(&c, r#"{"action":"leaveRoom"}"#);
    world.assert_nothing_pushed();
    world.send(&a, r#"{"action":"leaveRoom"}"#);
    world.disconnect(&b);
    let stats = world.store().stats();
    assert_eq!((stats.rooms, stats.members, stats.connections), (0, 0, 3));
}

#[test]
fn disconnect_tells_the_room_and_is_idempotent() {
    let world = World::new();
    let [a, b, c, d] = two_rooms(&world);

    world.disconnect(&a);
    assert_eq!(world.drain_json(&b), [participant_left(&a)]);
    world.assert_nothing_pushed();
    assert_eq!(world.members("123"), std::slice::from_ref(&b));
    assert_eq!(world.store().stats().connections, 3);

    // A second $disconnect (a retried Lambda, a cleanup racing a close) tells no one.
    world.disconnect(&a);
    world.assert_nothing_pushed();
    // Neither does a connection in no room, nor one never seen.
    world.disconnect(&d);
    world.disconnect(&id("nobody"));
    world.assert_nothing_pushed();
    assert_eq!(world.store().stats().connections, 2);
    assert_eq!(world.members("456"), [c]);
}

#[test]
fn rejoining_the_same_room_does_not_renotify() {
    let world = World::new();
    let [a, b, _c, _d] = two_rooms(&world);

    let outcome = world.join(&b, "123");
    assert_eq!(outcome.error, None);
    // The rejoiner is told the room again, and no one else hears of it.
    let joined = world.drain_json(&b);
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["type"], "joined");
    assert_eq!(joined[0]["participants"], json!([a.as_str()]));
    world.assert_nothing_pushed();
    assert_eq!(world.members("123"), [a, b]);
}

#[test]
fn room_cap_refuses_the_extra_joiner_with_room_full() {
    let world = World::with_room_cap(2);
    let [a, b, c, d] = two_rooms(&world);

    for joiner in [&c, &d] {
        let outcome = world.send(joiner, JOIN_123);
        assert_eq!(outcome.route, Route::JoinRoom);
        assert_eq!(outcome.error, Some(ErrorCode::RoomFull));
        assert_one_error(&world, joiner, ErrorCode::RoomFull);
        world.assert_nothing_pushed();
    }
    // The refused joiner stays where it was; the full room is unchanged.
    assert_eq!(world.room_of(&c), Some(room("456")));
    assert_eq!(world.room_of(&d), None);
    assert_eq!(world.members("123"), [a.clone(), b.clone()]);

    // A member re-joining a full room is not refused.
    assert_eq!(world.join(&b, "123").error, None);
    world.forget_frames();

    // Once someone leaves, there is room again.
    world.send(&a, r#"{"action":"leaveRoom"}"#);
    assert_eq!(world.send(&d, JOIN_123).error, None);
    assert_eq!(world.members("123"), [b, d]);
}

/// `from` sends `joinRoom` 123 at `at`.
fn join_123_at(world: &World, from: &ConnectionId, at: SystemTime) -> Option<ErrorCode> {
    ready(world.sig.message(from, JOIN_123, at)).error
}

/// The sockets probed since the last call, sorted.
fn probed(world: &World) -> Vec<ConnectionId> {
    let mut probed = world.pusher().take_probes();
    probed.sort();
    probed
}

#[test]
fn a_full_rooms_ghost_is_removed_and_its_room_told_so_the_joiner_gets_in() {
    let world = World::with_room_cap(2);
    let [a, b, _c, d] = two_rooms(&world);
    // b vanished and its `$disconnect` never came; nothing has been pushed to it since.
    world.pusher().mark_gone(&b);

    let outcome = world.send(&d, JOIN_123);

    assert_eq!(outcome.error, None);
    assert_eq!(probed(&world), [a.clone(), b.clone()]);
    assert_eq!(world.members("123"), [a.clone(), d.clone()]);
    assert_eq!(world.room_of(&b), None);
    // a hears b leave, then d arrive; d's `joined` does not list the ghost.
    assert_eq!(
        world.drain_json(&a),
        [participant_left(&b), new_participant(&d)]
    );
    let joined = world.drain_json(&d);
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(joined[0]["participants"], json!([a.as_str()]));
    assert!(world.take_suspensions().is_empty());
}

#[test]
fn a_full_room_of_live_members_is_probed_at_most_once_per_five_seconds() {
    let world = World::with_room_cap(2);
    let [a, b, c, d] = two_rooms(&world);
    let e = world.connect("E=");
    world.join(&e, "456");
    world.forget_frames();

    assert_eq!(join_123_at(&world, &d, now()), Some(ErrorCode::RoomFull));
    assert_eq!(probed(&world), [a.clone(), b.clone()]);
    // Knocking again soon probes no one: a crowd at the door cannot turn into a probe storm.
    let soon = now() + Duration::from_millis(4_999);
    assert_eq!(join_123_at(&world, &d, now()), Some(ErrorCode::RoomFull));
    assert_eq!(join_123_at(&world, &d, soon), Some(ErrorCode::RoomFull));
    assert_eq!(probed(&world), []);
    // Another full room is probed on its own account.
    assert_eq!(
        ready(
            world
                .sig
                .message(&d, r#"{"action":"joinRoom","roomId":"456"}"#, soon)
        )
        .error,
        Some(ErrorCode::RoomFull)
    );
    assert_eq!(probed(&world), [c, e]);

    // A ghost that appears meanwhile is found only when the five seconds are up.
    world.pusher().mark_gone(&b);
    assert_eq!(join_123_at(&world, &d, soon), Some(ErrorCode::RoomFull));
    assert_eq!(probed(&world), []);
    assert_eq!(world.members("123"), [a.clone(), b.clone()]);
    let later = now() + Duration::from_secs(5);
    assert_eq!(join_123_at(&world, &d, later), None);
    assert_eq!(probed(&world), [a.clone(), b]);
    assert_eq!(world.members("123"), [a, d]);
}

#[test]
fn gone_receiver_is_dropped_and_its_room_told_while_the_rest_still_get_the_frame() {
    let world = World::new();
    let [a, b, c, _d] = two_rooms(&world);
    let [e, f] = ["E=", "F="].map(|n| world.connect(n));
    world.join(&e, "123");
    world.join(&f, "123");
    world.forget_frames();
    world.pusher().mark_gone(&b);

    let outcome = world.send(
        &a,
        r#"{"action":"sendMsgToRoom","roomId":"123","message":"hi"}"#,
    );
    // The stale connection is not the sender's problem (the tutorial answered 500).
    assert_eq!(outcome.error, None);
    for other in [&e, &f] {
        let frames = world.drain(other);
        assert_eq!(frames.len(), 2, "{other}: {frames:?}");
        assert_eq!(&*frames[0].text, "hi");
        assert_eq!(frames[1].kind, Kind::ParticipantLeft);
        assert_eq!(parse_json(&frames[1].text), participant_left(&b));
    }
    // The sender is told too, and the other room hears nothing.
    assert_eq!(world.drain_json(&a), [participant_left(&b)]);
    let rest = world.pusher().take();
    assert!(
        rest.iter().all(|p| p.to == b && p.fate == Fate::Gone),
        "{rest:#?}"
    );
    assert_eq!(rest.len(), 1);

    assert_eq!(world.room_of(&b), None);
    assert_eq!(world.members("123"), [a, e, f]);
    assert_eq!(world.members("456"), [c]);
    assert_eq!(world.store().stats().connections, 5);

    // The gateway's own $disconnect for it later is a no-op.
    world.disconnect(&b);
    world.assert_nothing_pushed();
}

#[test]
fn gone_members_found_while_telling_a_room_are_dropped_too() {
    let world = World::new();
    let [a, b, _c, _d] = two_rooms(&world);
    let [e, f] = ["E=", "F="].map(|n| world.connect(n));
    world.join(&e, "123");
    world.join(&f, "123");
    world.forget_frames();
    world.pusher().mark_gone(&b);
    world.pusher().mark_gone(&e);

    world.send(&a, r#"{"action":"ping"}"#);
    world.send(&f, &format!(r#"{{"action":"signal","to":"{b}","data":1}}"#));

    // b's drop is announced to e, found gone in turn; both are dropped and the survivors
    // hear of both, once each.
    let heard = |conn| -> BTreeSet<String> {
        world
            .drain_json(conn)
            .into_iter()
            .filter(|v| v["type"] == "participantLeft")
            .map(|v| v["participantConnectionId"].as_str().unwrap().to_owned())
            .collect()
    };
    let both: BTreeSet<String> = ["B=".to_owned(), "E=".to_owned()].into();
    assert_eq!(heard(&a), both);
    assert_eq!(heard(&f), both);
    assert_eq!(world.members("123"), [a, f]);
    assert_eq!(world.store().stats().connections, 4);
}

#[test]
fn gone_sender_is_dropped_when_its_reply_cannot_be_delivered() {
    let world = World::new();
    let [a, b, _c, _d] = two_rooms(&world);
    world.pusher().mark_gone(&a);

    // A frame that was in flight when the socket closed: its pong finds the sender gone.
    let outcome = world.send(&a, r#"{"action":"ping"}"#);
    assert_eq!(outcome.error, None);
    assert_eq!(world.drain_json(&b), [participant_left(&a)]);
    assert_eq!(world.members("123"), [b]);
    assert_eq!(world.room_of(&a), None);
}

#[test]
fn joiner_gone_before_its_joined_is_not_announced_to_the_room() {
    let world = World::new();
    let [a, b, _c, d] = two_rooms(&world);
    // d's joinRoom was in flight when its socket closed (or its queue overflowed).
    world.pusher().mark_gone(&d);

    world.send(&d, JOIN_123);

    assert_eq!(world.room_of(&d), None);
    assert_eq!(world.members("123"), [a.clone(), b.clone()]);
    // Whatever a and b were told, it must add up to "d is not here".
    for member in [&a, &b] {
        let mut present = false;
        for frame in world.drain_json(member) {
            if frame == new_participant(&d) {
                present = true;
            } else if frame == participant_left(&d) {
                present = false;
            }
        }
        assert!(!present, "{member} is left believing {d} is in the room");
    }
}

#[test]
fn a_removed_connection_cannot_rejoin() {
    let world = World::new();
    let [a, b, _c, d] = two_rooms(&world);
    world.pusher().mark_gone(&d);
    // The first frame finds d gone and removes it; frames still in flight from its socket
    // must not bring it back.
    world.send(&d, r#"{"action":"ping"}"#);
    world.forget_frames();

    let outcome = world.send(&d, JOIN_123);

    assert_eq!(outcome.error, None);
    assert_eq!(world.room_of(&d), None);
    assert_eq!(world.members("123"), [a, b]);
    world.assert_nothing_pushed();
}

#[test]
fn failed_push_keeps_the_connection() {
    let world = World::new();
    let [a, b, _c, _d] = two_rooms(&world);
    let e = world.connect("E=");
    world.join(&e, "123");
    world.forget_frames();
    world.pusher().mark_failing(&b);

    let outcome = world.send(
        &a,
        r#"{"action":"sendMsgToRoom","roomId":"123","message":"hi"}"#,
    );
    assert_eq!(outcome.error, None);
    assert_eq!(&*world.drain(&e)[0].text, "hi");
    // A transport error is not "gone": b's one push failed, b stays, and no one is told
    // it left.
    let rest = world.pusher().take();
    assert_eq!(rest.len(), 1, "{rest:#?}");
    assert_eq!((&rest[0].to, rest[0].fate), (&b, Fate::Failed));
    assert_eq!(world.members("123"), [a, b, e]);
}

#[test]
fn ping_answers_pong_to_the_sender_only() {
    let world = World::new();
    let [a, _b, _c, d] = two_rooms(&world);
    for sender in [&a, &d] {
        let outcome = world.send(sender, r#"{"action":"ping"}"#);
        assert_eq!(outcome.route, Route::Ping);
        assert_eq!(outcome.error, None);
        let frames = world.drain(sender);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].kind, Kind::Pong);
        assert_eq!(&*frames[0].text, r#"{"type":"pong"}"#);
        world.assert_nothing_pushed();
    }
}

#[test]
fn refuse_sends_the_gateways_own_errors_to_the_sender_only() {
    let world = World::new();
    let [a, _b, _c, _d] = two_rooms(&world);
    for code in [
        ErrorCode::MessageTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::BinaryNotSupported,
    ] {
        ready(world.sig.refuse(&a, code, "refused by the gateway", now()));
        let frames = world.drain(&a);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].kind, Kind::Error);
        assert_eq!(
            parse_json(&frames[0].text),
            json!({"type": "error", "code": code.as_str(), "message": "refused by the gateway"})
        );
        world.assert_nothing_pushed();
    }
}

/// Frames refused in the world of [`two_rooms`] with room 123 full (A and B in it; C in
/// 456; D in no room): who sends what, and the code it is refused with.
fn bad_frames<'a>(
    a: &'a ConnectionId,
    c: &'a ConnectionId,
    d: &'a ConnectionId,
) -> Vec<(&'a ConnectionId, String, ErrorCode)> {
    let signal_to = |to: &str| format!(r#"{{"action":"signal","to":"{to}","data":{{}}}}"#);
    vec![
        (d, "hello".into(), ErrorCode::BadJson),
        (a, r#"{"action":"ping""#.into(), ErrorCode::BadJson),
        (a, "[1,2]".into(), ErrorCode::BadJson),
        (a, r#""joinRoom""#.into(), ErrorCode::BadJson),
        (a, String::new(), ErrorCode::BadJson),
        (a, "{}".into(), ErrorCode::UnknownAction),
        (a, r#"{"action":7}"#.into(), ErrorCode::UnknownAction),
        (a, r#"{"action":"fly"}"#.into(), ErrorCode::UnknownAction),
        (
            a,
            r#"{"action":"$connect"}"#.into(),
            ErrorCode::UnknownAction,
        ),
        (
            a,
            r#"{"action":"sendMsgToRoom","roomId":"123"}"#.into(),
            ErrorCode::InvalidField,
        ),
        (
            a,
            r#"{"action":"sendMsgToRoom","roomId":"123","message":{"a":1}}"#.into(),
            ErrorCode::InvalidField,
        ),
        (
            a,
            r#"{"action":"signal","to":5,"data":{}}"#.into(),
            ErrorCode::InvalidField,
        ),
        (
            a,
            r#"{"action":"signal","to":"B="}"#.into(),
            ErrorCode::InvalidField,
        ),
        (a, signal_to("a b"), ErrorCode::InvalidField),
        // The tutorial put these in the room "undefined".
        (
            d,
            r#"{"action":"joinRoom"}"#.into(),
            ErrorCode::InvalidRoomId,
        ),
        (
            d,
            r#"{"action":"joinRoom","roomId":"a/b"}"#.into(),
            ErrorCode::InvalidRoomId,
        ),
        (
            a,
            r#"{"action":"sendMsgToRoom","message":"hi"}"#.into(),
            ErrorCode::InvalidRoomId,
        ),
        (d, r#"{"action":"leaveRoom"}"#.into(), ErrorCode::NotInRoom),
        (
            c,
            r#"{"action":"sendMsgToRoom","roomId":"123","message":"hi"}"#.into(),
            ErrorCode::NotInRoom,
        ),
        (d, signal_to("A="), ErrorCode::NotInRoom),
        (a, signal_to("C="), ErrorCode::PeerNotFound),
        (a, signal_to("D="), ErrorCode::PeerNotFound),
        (a, signal_to("ghost"), ErrorCode::PeerNotFound),
        (a, signal_to("A="), ErrorCode::SignalToSelf),
        (d, signal_to("D="), ErrorCode::SignalToSelf),
        (c, JOIN_123.into(), ErrorCode::RoomFull),
        (d, JOIN_123.into(), ErrorCode::RoomFull),
    ]
}

#[test]
fn bad_frames_get_error_codes_and_reach_no_one() {
    let world = World::with_room_cap(2);
    // 123 is full (A, B); C is in 456; D is in no room.
    let [a, _b, c, d] = two_rooms(&world);
    let cases = bad_frames(&a, &c, &d);
    let every_code_from_text: BTreeSet<&str> = [
        ErrorCode::BadJson,
        ErrorCode::UnknownAction,
        ErrorCode::InvalidField,
        ErrorCode::InvalidRoomId,
        ErrorCode::NotInRoom,
        ErrorCode::PeerNotFound,
        ErrorCode::SignalToSelf,
        ErrorCode::RoomFull,
    ]
    .map(ErrorCode::as_str)
    .into();
    let covered: BTreeSet<&str> = cases.iter().map(|(_, _, code)| code.as_str()).collect();
    assert_eq!(covered, every_code_from_text);

    let rooms_before = (world.members("123"), world.members("456"));
    let stats_before = world.store().stats();
    for (sender, text, code) in &cases {
        let outcome = world.send(sender, text);
        assert_eq!(outcome.error, Some(*code), "{text:?}");
        let pushes = world.pusher().take();
        assert_eq!(pushes.len(), 1, "{text:?}: {pushes:#?}");
        assert_eq!(&pushes[0].to, *sender, "{text:?}");
        assert_eq!(pushes[0].frame.kind, Kind::Error);
        let frame = parse_json(&pushes[0].frame.text);
        assert_eq!(frame["type"], "error");
        assert_eq!(frame["code"], code.as_str(), "{text:?}");
        assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()));
        // The connection stays, where it was.
        assert_eq!(world.store().stats(), stats_before, "{text:?}");
        assert_eq!(
            (world.members("123"), world.members("456")),
            rooms_before,
            "{text:?}"
        );
    }
}

#[test]
fn echoed_client_text_in_errors_is_bounded() {
    let world = World::new();
    let a = world.connect("A=");
    let long = format!(r#"{{"action":"{}"}}"#, "x".repeat(100_000));
    world.send(&a, &long);
    let frames = world.drain(&a);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].text.len() < 200, "{} bytes", frames[0].text.len());
}

#[test]
fn message_outcome_names_the_route_and_the_error() {
    let world = World::new();
    let [a, _b, _c, d] = two_rooms(&world);
    let cases = [
        (&d, "nonsense", Route::Default, Some(ErrorCode::BadJson)),
        (
            &d,
            r#"{"action":"fly"}"#,
            Route::Default,
            Some(ErrorCode::UnknownAction),
        ),
        (&d, r#"{"action":"ping"}"#, Route::Ping, None),
        (
            &d,
            r#"{"action":"leaveRoom"}"#,
            Route::LeaveRoom,
            Some(ErrorCode::NotInRoom),
        ),
        (
            &d,
            r#"{"action":"joinRoom","roomId":"789"}"#,
            Route::JoinRoom,
            None,
        ),
        (
            &d,
            r#"{"action":"joinRoom","roomId":"a b"}"#,
            Route::Default,
            Some(ErrorCode::InvalidRoomId),
        ),
        (
            &d,
            r#"{"action":"sendMsgToRoom","roomId":"789","message":"m"}"#,
            Route::SendMsgToRoom,
            None,
        ),
        (
            &d,
            r#"{"action":"sendMsgToRoom","roomId":"123","message":"m"}"#,
            Route::SendMsgToRoom,
            Some(ErrorCode::NotInRoom),
        ),
        (
            &d,
            r#"{"action":"signal","to":"A=","data":{}}"#,
            Route::Signal,
            Some(ErrorCode::PeerNotFound),
        ),
        (
            &a,
            r#"{"action":"signal","to":"B=","data":{}}"#,
            Route::Signal,
            None,
        ),
        (&d, r#"{"action":"leaveRoom"}"#, Route::LeaveRoom, None),
    ];
    for (sender, text, route, error) in cases {
        let outcome = world.send(sender, text);
        assert_eq!((outcome.route, outcome.error), (route, error), "{text:?}");
    }
    assert_eq!(Route::Default.as_str(), "$default");
}

/// A [`MemoryStore`] that can be broken, to play an unreachable database, and can list
/// members due for a liveness check (as `DynamoStore` does), recording the checks made.
#[derive(Debug, Default)]
struct BreakableStore {
    inner: MemoryStore,
    broken: AtomicBool,
    /// Listed by `due` as unchecked.
    unchecked: Mutex<Vec<Member>>,
    /// Every `checked(participant, socket, next)`.
    checks: Mutex<Vec<(ConnectionId, ConnectionId, SystemTime)>>,
}

#[derive(Debug)]
struct Unreachable;

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("database unreachable")
    }
}

impl Error for Unreachable {}

impl BreakableStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            Err(StoreError::new(Unreachable))
        } else {
            Ok(())
        }
    }
}

impl ConnectionStore for BreakableStore {
    async fn add_connection(&self, conn: &ConnectionId, now: SystemTime) -> Result<(), StoreError> {
        self.check()?;
        self.inner.add_connection(conn, now).await
    }

    async fn remove_connection(
        &self,
        conn: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        self.check()?;
        self.inner.remove_connection(conn, now).await
    }

    async fn suspend(
        &self,
        socket: &ConnectionId,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<Option<Suspension>, StoreError> {
        self.check()?;
        self.inner.suspend(socket, until, now).await
    }

    async fn resume(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Resumed, ResumeError> {
        self.check()?;
        self.inner.resume(participant, socket, now).await
    }

    async fn expire(
        &self,
        participant: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        self.check()?;
        self.inner.expire(participant, now).await
    }

    async fn join(
        &self,
        conn: &ConnectionId,
        room: &RoomId,
        cap: usize,
        now: SystemTime,
    ) -> Result<Joined, JoinError> {
        self.check()?;
        self.inner.join(conn, room, cap, now).await
    }

    async fn leave(
        &self,
        conn: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(ConnectionId, RoomId)>, StoreError> {
        self.check()?;
        self.inner.leave(conn, now).await
    }

    async fn lookup(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Presence>, StoreError> {
        self.check()?;
        self.inner.lookup(socket, now).await
    }

    async fn participant(
        &self,
        id: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(Option<RoomId>, Member)>, StoreError> {
        self.check()?;
        self.inner.participant(id, now).await
    }

    async fn members(&self, room: &RoomId, now: SystemTime) -> Result<Vec<Member>, StoreError> {
        self.check()?;
        self.inner.members(room, now).await
    }

    async fn due(&self, now: SystemTime) -> Result<Due, StoreError> {
        self.check()?;
        let mut due = self.inner.due(now).await?;
        due.unchecked
            .extend(self.unchecked.lock().unwrap().iter().cloned());
        Ok(due)
    }

    async fn checked(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        next: SystemTime,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.checks
            .lock()
            .unwrap()
            .push((participant.clone(), socket.clone(), next));
        self.inner.checked(participant, socket, next, now).await
    }
}

#[test]
fn the_sweep_probes_unchecked_members_drops_the_gone_and_reschedules_the_live() {
    let sig = Signalling::new(
        BreakableStore::default(),
        RecordingPusher::new(),
        Config::default(),
    );
    let [a, b, c] = ["A=", "B=", "C="].map(id);
    for x in [&a, &b, &c] {
        ready(sig.connect(x, now())).unwrap();
        ready(sig.message(x, JOIN_123, now()));
    }
    sig.pusher().clear();
    *sig.store().unchecked.lock().unwrap() = [&a, &b]
        .map(|x| Member {
            id: x.clone(),
            socket: Some(x.clone()),
        })
        .into();
    // b vanished and its `$disconnect` never came.
    sig.pusher().mark_gone(&b);
    let every = Duration::from_mins(5);

    let swept = ready(sig.sweep(now(), every)).unwrap();

    assert_eq!(
        swept,
        Swept {
            expired: 0,
            probed: 2,
            gone: 1
        }
    );
    let mut probed = sig.pusher().probes();
    probed.sort();
    assert_eq!(probed, [a.clone(), b.clone()]);
    // With resume off the ghost is removed and its room told.
    for x in [&a, &c] {
        assert_eq!(sig.pusher().drain_json(x), [participant_left(&b)]);
    }
    assert!(sig.pusher().pushes().is_empty());
    assert_eq!(sig.store().inner.room_of(&b), None);
    // The live one is checked again after `every`; c was not due, the ghost is gone.
    assert_eq!(
        *sig.store().checks.lock().unwrap(),
        [(a.clone(), a, now() + every)]
    );
}

#[test]
fn store_failure_is_answered_internal_and_reported_to_the_gateway() {
    let sig = Signalling::new(
        BreakableStore::default(),
        RecordingPusher::new(),
        Config::default(),
    );
    let a = id("A=");
    ready(sig.connect(&a, now())).unwrap();
    sig.store().broken.store(true, Ordering::SeqCst);

    for text in [
        JOIN_123,
        r#"{"action":"leaveRoom"}"#,
        r#"{"action":"sendMsgToRoom","roomId":"123","message":"m"}"#,
        r#"{"action":"signal","to":"B=","data":{}}"#,
    ] {
        let outcome = ready(sig.message(&a, text, now()));
        assert_eq!(outcome.error, Some(ErrorCode::Internal), "{text:?}");
        let frames = sig.pusher().drain_json(&a);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["code"], "internal");
        // The store's own words stay out of the client's message.
        assert!(!frames[0]["message"].as_str().unwrap().contains("database"));
    }
    // $connect and $disconnect surface the failure to the gateway instead.
    assert!(ready(sig.connect(&id("B="), now())).is_err());
    assert!(ready(sig.disconnect(&a, now())).is_err());
    assert!(sig.pusher().pushes().is_empty());
}
