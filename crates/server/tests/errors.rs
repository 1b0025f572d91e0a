//! Every client mistake is answered with an `error` frame carrying its stable code; the
//! connection stays open and usable, and nothing reaches anyone else.

mod support;

use serde_json::json;
use support::{Client, TestServer};

/// What the sender sends.
enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

fn text(s: impl Into<String>) -> Frame {
    Frame::Text(s.into())
}

/// A server with two clients in room `r`, every notice consumed.
struct Pair {
    server: TestServer,
    sender: Client,
    peer: Client,
    sender_id: String,
    peer_id: String,
}

async fn pair_in_r() -> Pair {
    let server = TestServer::start().await;
    let (sender, sender_id, peer, peer_id) = server.pair_in("r").await;
    Pair {
        server,
        sender,
        peer,
        sender_id,
        peer_id,
    }
}

/// The sender, in room `r` with a peer, sends `frame` (built from the sender's and the
/// peer's ids) and gets error `code`. Then: the sender's connection still answers a ping,
/// the peer heard nothing, and the sender is still in `r` (its message reaches the peer).
async fn assert_refused(frame: impl FnOnce(&str, &str) -> Frame, code: &str) {
    let Pair {
        server,
        mut sender,
        mut peer,
        sender_id,
        peer_id,
    } = pair_in_r().await;
    match frame(&sender_id, &peer_id) {
        Frame::Text(t) => sender.send_text(&t).await,
        Frame::Binary(b) => sender.send_binary(&b).await,
    }
    sender.expect_error(code).await;
    sender.expect_only_pong().await;
    peer.expect_only_pong().await;
    sender.say("r", "still here").await;
    assert_eq!(peer.recv_text().await, "still here");
    server.stop().await.expect("the server stops cleanly");
}

#[tokio::test]
async fn text_that_is_not_json_is_bad_json() {
    assert_refused(|_, _| text("hello world!"), "badJson").await;
}

#[tokio::test]
async fn truncated_json_is_bad_json() {
    assert_refused(|_, _| text(r#"{"action":"ping""#), "badJson").await;
}

#[tokio::test]
async fn json_array_is_bad_json() {
    assert_refused(|_, _| text(r#"["joinRoom","r"]"#), "badJson").await;
}

#[tokio::test]
async fn json_number_is_bad_json() {
    assert_refused(|_, _| text("42"), "badJson").await;
}

#[tokio::test]
async fn json_string_is_bad_json() {
    assert_refused(|_, _| text(r#""joinRoom""#), "badJson").await;
}

#[tokio::test]
async fn duplicated_field_is_bad_json() {
    assert_refused(
        |_, _| text(r#"{"action":"joinRoom","roomId":"r","roomId":"s"}"#),
        "badJson",
    )
    .await;
}

#[tokio::test]
async fn missing_action_is_unknown_action() {
    assert_refused(
        |_, _| text(r#"{"roomId":"r","message":"hi"}"#),
        "unknownAction",
    )
    .await;
}

#[tokio::test]
async fn unknown_action_is_unknown_action() {
    assert_refused(
        |_, _| text(r#"{"action":"fly","roomId":"r"}"#),
        "unknownAction",
    )
    .await;
}

#[tokio::test]
async fn action_that_is_not_a_string_is_unknown_action() {
    assert_refused(|_, _| text(r#"{"action":7}"#), "unknownAction").await;
}

#[tokio::test]
async fn numeric_room_id_is_invalid_room_id() {
    assert_refused(
        |_, _| text(r#"{"action":"joinRoom","roomId":123}"#),
        "invalidRoomId",
    )
    .await;
}

#[tokio::test]
async fn message_that_is_an_object_is_invalid_field() {
    assert_refused(
        |_, _| text(r#"{"action":"sendMsgToRoom","roomId":"r","message":{"a":1}}"#),
        "invalidField",
    )
    .await;
}

#[tokio::test]
async fn missing_message_is_invalid_field() {
    assert_refused(
        |_, _| text(r#"{"action":"sendMsgToRoom","roomId":"r"}"#),
        "invalidField",
    )
    .await;
}

#[tokio::test]
async fn signal_target_that_is_a_number_is_invalid_field() {
    assert_refused(
        |_, _| text(r#"{"action":"signal","to":5,"data":{}}"#),
        "invalidField",
    )
    .await;
}

#[tokio::test]
async fn signal_without_data_is_invalid_field() {
    assert_refused(
        |_, peer| text(json!({"action": "signal", "to": peer}).to_string()),
        "invalidField",
    )
    .await;
}

#[tokio::test]
async fn empty_room_id_is_invalid_room_id() {
    assert_refused(
        |_, _| text(r#"{"action":"joinRoom","roomId":""}"#),
        "invalidRoomId",
    )
    .await;
}

#[tokio::test]
async fn room_id_of_65_characters_is_invalid_room_id() {
    let room = "x".repeat(65);
    assert_refused(
        |_, _| text(json!({"action": "joinRoom", "roomId": room}).to_string()),
        "invalidRoomId",
    )
    .await;
}

#[tokio::test]
async fn room_id_with_spaces_is_invalid_room_id() {
    assert_refused(
        |_, _| text(r#"{"action":"joinRoom","roomId":"my room"}"#),
        "invalidRoomId",
    )
    .await;
}

#[tokio::test]
async fn room_id_with_a_slash_is_invalid_room_id() {
    assert_refused(
        |_, _| text(r#"{"action":"joinRoom","roomId":"a/b"}"#),
        "invalidRoomId",
    )
    .await;
}

#[tokio::test]
async fn non_ascii_room_id_is_invalid_room_id() {
    assert_refused(
        |_, _| text(r#"{"action":"joinRoom","roomId":"café"}"#),
        "invalidRoomId",
    )
    .await;
}

#[tokio::test]
async fn bad_room_id_in_send_msg_to_room_is_invalid_room_id() {
    assert_refused(
        |_, _| text(r#"{"action":"sendMsgToRoom","roomId":"r r","message":"hi"}"#),
        "invalidRoomId",
    )
    .await;
}

#[tokio::test]
async fn signal_to_yourself_is_signal_to_self() {
    assert_refused(
        |me, _| text(json!({"action": "signal", "to": me, "data": {}}).to_string()),
        "signalToSelf",
    )
    .await;
}

#[tokio::test]
async fn signal_to_an_unknown_id_is_peer_not_found() {
    assert_refused(
        |_, _| text(r#"{"action":"signal","to":"AAAAAAAAAAAAAAAA","data":{}}"#),
        "peerNotFound",
    )
    .await;
}

#[tokio::test]
async fn binary_frame_is_binary_not_supported() {
    if support::on_gateway() {
        // API Gateway closes the connection with 1003 and never invokes the function; the
        // room hears that the sender left.
        let server = TestServer::start().await;
        let (mut a, _, mut b, b_id) = server.pair_in("r").await;
        b.send_binary(br#"{"action":"ping"}"#).await;
        b.expect_close_code(1003).await;
        a.expect_participant_left(&b_id).await;
        server.stop().await.unwrap();
        return;
    }
    assert_refused(
        |_, _| Frame::Binary(br#"{"action":"ping"}"#.to_vec()),
        "binaryNotSupported",
    )
    .await;
}

#[tokio::test]
async fn missing_room_id_is_invalid_room_id_and_never_the_room_undefined() {
    let server = TestServer::start().await;
    let mut listener = server.client().await;
    listener.join("undefined").await;
    let mut x = server.client().await;

    x.send_text(r#"{"action":"joinRoom"}"#).await;
    x.expect_error("invalidRoomId").await;
    x.send_text(r#"{"action":"joinRoom","roomId":null}"#).await;
    x.expect_error("invalidRoomId").await;
    x.send_text(r#"{"action":"sendMsgToRoom","message":"hello"}"#)
        .await;
    x.expect_error("invalidRoomId").await;
    x.expect_only_pong().await;
    listener.expect_only_pong().await;

    // The connection is still usable: it can join a room properly.
    let joined = x.join("r").await;
    assert_eq!(joined["participants"], json!([]));
    listener.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn room_id_of_64_characters_is_accepted() {
    let server = TestServer::start().await;
    let room = "a".repeat(64);
    let mut a = server.client().await;
    let mut b = server.client().await;
    assert_eq!(a.join(&room).await["roomId"], room.as_str());
    let b_id = b.id_via(&room).await;
    a.expect_new_participant(&b_id).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn room_ids_are_case_sensitive() {
    let server = TestServer::start().await;
    let mut upper = server.client().await;
    let mut lower = server.client().await;
    upper.join("Room").await;
    let joined = lower.join("room").await;
    assert_eq!(joined["participants"], json!([]), "a different room");
    upper.say("Room", "hello Room").await;
    upper.expect_only_pong().await;
    lower.expect_only_pong().await;
    // Naming the other spelling is naming a room you are not in.
    lower.say("Room", "hello?").await;
    lower.expect_error("notInRoom").await;
    upper.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn signal_before_joining_is_not_in_room_and_the_connection_can_then_join() {
    let server = TestServer::start().await;
    let mut member = server.client().await;
    let member_id = member.id_via("r").await;
    let mut outsider = server.client().await;

    outsider
        .send_json(json!({"action": "signal", "to": member_id, "data": {}}))
        .await;
    outsider.expect_error("notInRoom").await;
    outsider.expect_only_pong().await;
    member.expect_only_pong().await;

    let joined = outsider.join("r").await;
    assert_eq!(joined["participants"], json!([member_id]));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn send_msg_to_a_room_you_are_not_in_is_not_in_room_and_that_room_hears_nothing() {
    let server = TestServer::start().await;
    let mut target = server.client().await;
    target.join("target").await;
    let mut own_peer = server.client().await;
    let mut sender = server.client().await;
    own_peer.join("own").await;
    let sender_id = sender.id_via("own").await;
    own_peer.expect_new_participant(&sender_id).await;

    sender.say("target", "let me in").await;
    sender.expect_error("notInRoom").await;
    sender.expect_only_pong().await;
    target.expect_only_pong().await;
    own_peer.expect_only_pong().await;

    // A connection in no room is refused the same way.
    let mut roomless = server.client().await;
    roomless.say("target", "let me in").await;
    roomless.expect_error("notInRoom").await;
    roomless.expect_only_pong().await;
    target.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn leave_room_when_in_no_room_is_not_in_room() {
    let server = TestServer::start().await;
    let mut member = server.client().await;
    member.join("r").await;
    let mut x = server.client().await;

    x.send_json(json!({"action": "leaveRoom"})).await;
    x.expect_error("notInRoom").await;
    x.expect_only_pong().await;
    member.expect_only_pong().await;

    // Leaving twice: the second is refused too.
    let x_id = x.id_via("r").await;
    member.expect_new_participant(&x_id).await;
    x.leave().await;
    member.expect_participant_left(&x_id).await;
    x.send_json(json!({"action": "leaveRoom"})).await;
    x.expect_error("notInRoom").await;
    member.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn text_frame_that_is_not_utf8_is_closed_with_1007() {
    let Pair {
        server,
        mut sender,
        mut peer,
        sender_id,
        ..
    } = pair_in_r().await;
    sender.send_raw_text(&[b'"', 0xff, 0xfe, b'"']).await;
    sender.expect_close_code(1007).await;
    peer.expect_participant_left(&sender_id).await;
    server.stop().await.unwrap();
}

/// A frame RFC 6455 forbids (a reserved bit set without an agreed extension) ends the
/// connection with 1002, and the room hears that its sender left.
#[tokio::test]
async fn a_frame_with_a_reserved_bit_is_closed_with_1002() {
    if support::self_hosted_only("API Gateway's own framing") {
        return;
    }
    let Pair {
        server,
        mut sender,
        mut peer,
        sender_id,
        ..
    } = pair_in_r().await;
    sender
        .send_text_frame_with(b"{}", |header| header.rsv1 = true)
        .await;
    sender.expect_close_code(1002).await;
    peer.expect_participant_left(&sender_id).await;
    server.stop().await.unwrap();
}
