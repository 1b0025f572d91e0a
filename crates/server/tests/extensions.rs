//! The protocol's extensions to the tutorial (`joined`, `signal`, `leaveRoom`,
//! `participantLeft`, `ping`), spoken over a real socket to the real server.

mod support;

use serde_json::{Value, json};
use support::{Client, TestServer};

/// The `connectionId` of a `joined` reply.
fn id_of(joined: &Value) -> String {
    joined["connectionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no connectionId in {joined}"))
        .to_owned()
}

/// A `participants` list, sorted (the protocol does not promise an order).
fn sorted_participants(joined: &Value) -> Vec<String> {
    let mut ids: Vec<String> = joined["participants"]
        .as_array()
        .unwrap_or_else(|| panic!("no participants in {joined}"))
        .iter()
        .map(|v| v.as_str().expect("ids are strings").to_owned())
        .collect();
    ids.sort();
    ids
}

/// Three clients in `room`, joined in order, every `newParticipant` consumed.
async fn three_in(server: &TestServer, room: &str) -> ([Client; 3], [String; 3]) {
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut c = server.client().await;
    let a_id = a.id_via(room).await;
    let b_id = b.id_via(room).await;
    a.expect_new_participant(&b_id).await;
    let c_id = c.id_via(room).await;
    a.expect_new_participant(&c_id).await;
    b.expect_new_participant(&c_id).await;
    ([a, b, c], [a_id, b_id, c_id])
}

/// The `iceServers` a server started with no `--stun` hands out: the public STUN server on
/// the self-hosted server; none on the local gateway (its function's `MESHCALL_STUN` comes
/// from the AWS template's parameter, which has the same default).
fn default_ice_servers() -> Value {
    if support::on_gateway() {
        json!([])
    } else {
        json!([{"urls": [meshcall_core::settings::DEFAULT_STUN]}])
    }
}

#[tokio::test]
async fn joined_reports_own_id_the_members_already_present_and_the_default_stun_server() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut c = server.client().await;

    let ja = a.join("room-1").await;
    let a_id = id_of(&ja);
    let token = ja["resumeToken"]
        .as_str()
        .expect("a resume token")
        .to_owned();
    assert_eq!(
        ja,
        json!({"type": "joined", "roomId": "room-1", "connectionId": a_id,
               "participants": [], "iceServers": default_ice_servers(), "resumeToken": token,
               "resumed": false})
    );

    let jb = b.join("room-1").await;
    let b_id = id_of(&jb);
    assert_eq!(jb["participants"], json!([a_id]));
    assert_eq!(jb["iceServers"], default_ice_servers());

    let jc = c.join("room-1").await;
    let c_id = id_of(&jc);
    let mut both = vec![a_id.clone(), b_id.clone()];
    both.sort();
    assert_eq!(sorted_participants(&jc), both);

    assert!(
        a_id != b_id && b_id != c_id && a_id != c_id,
        "ids are unique"
    );
    a.expect_new_participant(&b_id).await;
    a.expect_new_participant(&c_id).await;
    b.expect_new_participant(&c_id).await;
    // Nobody is told of their own arrival.
    for client in [&mut a, &mut b, &mut c] {
        client.expect_only_pong().await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn joined_lists_the_stun_servers_given_by_the_stun_flag() {
    let server = TestServer::with(&[
        "--stun",
        "stun:stun.example.org:3478,stun:stun2.example.org:19302",
    ])
    .await;
    let mut a = server.client().await;
    let joined = a.join("r").await;
    assert_eq!(
        joined["iceServers"],
        json!([{"urls": ["stun:stun.example.org:3478", "stun:stun2.example.org:19302"]}])
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn stun_none_hands_out_no_ice_servers() {
    if support::self_hosted_only("`--stun none` is the server's flag value") {
        return;
    }
    let server = TestServer::with(&["--stun", "none"]).await;
    let mut a = server.client().await;
    assert_eq!(a.join("r").await["iceServers"], json!([]));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn new_participant_reaches_every_other_member_with_the_joiners_id() {
    let server = TestServer::start().await;
    let ([mut a, mut b, mut c], _) = three_in(&server, "r").await;
    let mut d = server.client().await;
    let d_id = d.id_via("r").await;
    a.expect_new_participant(&d_id).await;
    b.expect_new_participant(&d_id).await;
    c.expect_new_participant(&d_id).await;
    d.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn signal_reaches_only_its_target_with_from_stamped_by_the_server() {
    let server = TestServer::start().await;
    let ([mut a, mut b, mut c], [a_id, b_id, _]) = three_in(&server, "r").await;
    let data = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});

    a.send_json(json!({"action": "signal", "to": b_id, "from": "forged-id", "data": data}))
        .await;
    b.expect_json(json!({"type": "signal", "from": a_id, "data": data}))
        .await;
    // The sender gets no echo, and the third member hears nothing.
    a.expect_only_pong().await;
    c.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn signal_data_is_relayed_byte_for_byte() {
    let server = TestServer::start().await;
    let (mut a, a_id, mut b, b_id) = server.pair_in("r").await;

    // Whitespace, number spelling and escapes survive: `data` is never re-encoded.
    let data = r#"{"n": 2.50, "list": [1,  2], "s": "\u00e9\n"}"#;
    a.send_text(&format!(
        r#"{{"action":"signal","to":"{b_id}","data":{data}}}"#
    ))
    .await;
    assert_eq!(
        b.recv_text().await,
        format!(r#"{{"type":"signal","from":"{a_id}","data":{data}}}"#)
    );

    // Any JSON value, not only objects.
    for data in [json!("a string"), json!(42), json!([1, "two"]), json!(true)] {
        a.send_json(json!({"action": "signal", "to": b_id, "data": data}))
            .await;
        b.expect_json(json!({"type": "signal", "from": a_id, "data": data}))
            .await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn signal_to_peer_in_another_room_is_peer_not_found_and_that_room_hears_nothing() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join("room-a").await;
    let b_id = b.id_via("room-b").await;

    a.send_json(json!({"action": "signal", "to": b_id, "data": {"type": "offer"}}))
        .await;
    let error = a.expect_error("peerNotFound").await;
    assert_eq!(error["to"], b_id.as_str(), "the error names the peer");
    a.expect_only_pong().await;
    b.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn signal_to_a_member_who_left_is_peer_not_found() {
    let server = TestServer::start().await;
    let (mut a, _, mut b, b_id) = server.pair_in("r").await;

    b.leave().await;
    a.expect_participant_left(&b_id).await;
    a.send_json(json!({"action": "signal", "to": b_id, "data": {}}))
        .await;
    let error = a.expect_error("peerNotFound").await;
    assert_eq!(error["to"], b_id.as_str(), "the error names the peer");
    b.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn send_msg_to_room_relays_the_text_verbatim_to_every_other_member() {
    let server = TestServer::start().await;
    let ([mut a, mut b, mut c], _) = three_in(&server, "r").await;
    let text = r#"{"looks": "like json"} but is "just" text"#;
    a.say("r", text).await;
    assert_eq!(b.recv_text().await, text);
    assert_eq!(c.recv_text().await, text);
    a.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn leave_room_tells_the_others_and_stops_delivery_to_the_leaver() {
    let server = TestServer::start().await;
    let ([mut a, mut b, mut c], [a_id, _, _]) = three_in(&server, "r").await;

    a.leave().await;
    b.expect_participant_left(&a_id).await;
    c.expect_participant_left(&a_id).await;

    b.say("r", "after a left").await;
    assert_eq!(c.recv_text().await, "after a left");
    b.expect_only_pong().await;
    a.expect_only_pong().await;

    // The leaver may not write into the room it left.
    a.say("r", "from outside").await;
    a.expect_error("notInRoom").await;
    b.expect_only_pong().await;
    c.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn ping_is_answered_with_pong_in_or_out_of_a_room() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    a.send_text(r#"{"action":"ping"}"#).await;
    assert_eq!(a.recv_text().await, r#"{"type":"pong"}"#);
    a.join("r").await;
    a.send_text(r#"{"action":"ping","extra":"ignored"}"#).await;
    assert_eq!(a.recv_text().await, r#"{"type":"pong"}"#);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn rejoining_the_same_room_answers_joined_again_and_does_not_renotify() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join("r").await;
    let jb = b.join("r").await;
    let b_id = id_of(&jb);
    a.expect_new_participant(&b_id).await;

    let again = b.join("r").await;
    assert_eq!(again, jb, "same id, same room, same members");
    b.expect_only_pong().await;
    a.expect_only_pong().await;

    // Still a member: messages flow both ways.
    a.say("r", "to b").await;
    assert_eq!(b.recv_text().await, "to b");
    b.say("r", "to a").await;
    assert_eq!(a.recv_text().await, "to a");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn joining_another_room_leaves_the_first_and_both_rooms_are_told() {
    let server = TestServer::start().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut c = server.client().await;
    let a_id = a.id_via("first").await;
    let b_id = b.id_via("first").await;
    a.expect_new_participant(&b_id).await;
    let c_id = c.id_via("second").await;

    let joined = a.join("second").await;
    assert_eq!(joined["roomId"], "second");
    assert_eq!(joined["connectionId"], a_id.as_str());
    assert_eq!(joined["participants"], json!([c_id]));
    b.expect_participant_left(&a_id).await;
    c.expect_new_participant(&a_id).await;

    // a is in one room only: the first room no longer reaches it.
    b.say("first", "anyone?").await;
    b.expect_only_pong().await;
    a.expect_only_pong().await;
    c.say("second", "hi a").await;
    assert_eq!(a.recv_text().await, "hi a");
    a.say("first", "back?").await;
    a.expect_error("notInRoom").await;
    b.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn signal_data_null_is_relayed_like_any_other_json_value() {
    let server = TestServer::start().await;
    let (mut a, a_id, mut b, b_id) = server.pair_in("r").await;
    a.send_json(json!({"action": "signal", "to": b_id, "data": null}))
        .await;
    b.expect_json(json!({"type": "signal", "from": a_id, "data": null}))
        .await;
    a.expect_only_pong().await;
    server.stop().await.unwrap();
}

/// Frames are not held back by Nagle's algorithm: the server sets `TCP_NODELAY` on every
/// accepted socket. Without it, a frame written while the receiver's kernel still delays
/// its ACK of the previous one waits for that ACK, about 40 ms on Linux; the issue measured
/// `newParticipant` arriving 43.6 ms after a join. Each of seven rounds (the room's cap is
/// 8): a newcomer joins and at once signals the member, who gets `newParticipant` and then
/// the signal (the second frame is the one Nagle would hold), then pings so its ACK goes
/// out. The median from the newcomer's signal to the member's receipt of it must stay well
/// below 40 ms: about half a millisecond with `TCP_NODELAY`, 42 ms without.
#[tokio::test]
async fn frames_to_a_member_are_not_held_back_by_nagle() {
    if support::self_hosted_only(
        "an invocation costs ~20 ms in a debug build on moto; crates/gateway/tests has its own",
    ) {
        return;
    }
    let server = TestServer::start().await;
    let mut member = server.client().await;
    let member_id = member.join("nagle").await["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut joiners = Vec::new();
    let mut latencies = Vec::new();
    for round in 0..7 {
        let mut joiner = server.client().await;
        joiner.join("nagle").await;
        let started = std::time::Instant::now();
        joiner
            .send_json(json!({"action": "signal", "to": member_id, "data": round}))
            .await;
        assert_eq!(member.recv_json().await["type"], "newParticipant");
        assert_eq!(member.recv_json().await["data"], round);
        latencies.push(started.elapsed());
        member.expect_only_pong().await;
        joiners.push(joiner);
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    println!("signal sent -> received: median {median:?}, all {latencies:?}");
    assert!(
        median < std::time::Duration::from_millis(30),
        "median {median:?} ({latencies:?}): is TCP_NODELAY off?"
    );
    server.stop().await.unwrap();
}

/// A burst of signals sent in one go reaches the room-mate whole and in order, also when
/// the room-mate starts reading only once megabytes wait for it: the server then writes
/// what the kernel takes, several frames to a system call, cutting frames anywhere, and
/// the rest as the socket drains.
#[tokio::test]
async fn a_burst_arrives_whole_and_in_order_even_at_a_late_reader() {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    const FRAMES: u64 = 150;
    const FILLER: usize = 60_000;
    if support::self_hosted_only("frames over API Gateway's 32 KiB limit") {
        return;
    }
    let server = TestServer::start().await;
    let (mut a, _, mut b, b_id) = server.pair_in("burst").await;
    let filler = "x".repeat(FILLER);
    for n in 0..FRAMES {
        let frame = json!({"action": "signal", "to": b_id, "data": {"n": n, "f": filler}});
        a.ws.feed(Message::text(frame.to_string())).await.unwrap();
    }
    a.ws.flush().await.unwrap();
    for n in 0..FRAMES {
        let got = b.recv_json().await;
        assert_eq!(got["data"]["n"], n);
        assert_eq!(got["data"]["f"].as_str().map(str::len), Some(FILLER));
    }
    server.stop().await.unwrap();
}
