//! Resume over real sockets: a connection that drops without a close frame keeps its
//! identity and seat for the grace window; a new socket takes them back with the token.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use serde_json::{Value, json};
use support::{Client, TestServer};

/// a and b in room `r`; returns them, a's id, a's token and b's id.
async fn pair(server: &TestServer) -> (Client, Client, String, String, String) {
    let mut a = server.client().await;
    let mut b = server.client().await;
    let joined = a.join("r").await;
    let a_id = joined["connectionId"].as_str().unwrap().to_owned();
    let token = joined["resumeToken"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let b_id = b.id_via("r").await;
    a.expect_new_participant(&b_id).await;
    (a, b, a_id, token, b_id)
}

async fn resume(client: &mut Client, token: &str) -> Value {
    client
        .send_json(json!({"action": "resume", "token": token}))
        .await;
    client.recv_json().await
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_its_id_and_the_room_never_sees_it_leave() {
    let server = TestServer::start().await;
    let (a, mut b, a_id, token, b_id) = pair(&server).await;

    a.drop_without_close();
    server
        .wait_for_metrics(&[("meshcall_suspended", 1.0), ("meshcall_room_members", 2.0)])
        .await;
    b.expect_only_pong().await;

    let mut again = server.client().await;
    let joined = resume(&mut again, &token).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["connectionId"], a_id.as_str());
    assert_eq!(joined["roomId"], "r");
    assert_eq!(joined["participants"], json!([b_id]));
    assert_eq!(joined["resumed"], true);
    server
        .wait_for_metrics(&[("meshcall_suspended", 0.0), ("meshcall_connections", 2.0)])
        .await;
    b.expect_only_pong().await;

    // Signals to a's id reach the new socket; the new socket speaks as a.
    b.send_json(json!({"action": "signal", "to": a_id, "data": {"ice": "restart"}}))
        .await;
    assert_eq!(
        again.recv_json().await,
        json!({"type": "signal", "from": b_id, "data": {"ice": "restart"}})
    );
    again
        .send_json(json!({"action": "signal", "to": b_id, "data": 1}))
        .await;
    assert_eq!(
        b.recv_json().await,
        json!({"type": "signal", "from": a_id, "data": 1})
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn after_the_grace_the_room_is_told_and_the_token_fails() {
    let server = TestServer::with(&["--resume-grace", "200ms"]).await;
    let (a, mut b, a_id, token, _) = pair(&server).await;
    a.drop_without_close();
    b.expect_participant_left(&a_id).await;

    let mut again = server.client().await;
    let answer = resume(&mut again, &token).await;
    assert_eq!(answer["code"], "resumeFailed", "{answer}");
    // The socket is still usable: it joins afresh, with a new id.
    let joined = again.join("r").await;
    assert_ne!(joined["connectionId"], a_id.as_str());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_clean_close_is_announced_at_once_and_cannot_be_resumed() {
    let server = TestServer::start().await;
    let (a, mut b, a_id, token, _) = pair(&server).await;
    a.close().await;
    b.expect_participant_left(&a_id).await;
    let mut again = server.client().await;
    assert_eq!(resume(&mut again, &token).await["code"], "resumeFailed");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn resuming_while_the_old_socket_is_still_open_takes_over_and_closes_it() {
    let server = TestServer::start().await;
    let (mut a, mut b, a_id, token, _) = pair(&server).await;
    let mut again = server.client().await;
    let joined = resume(&mut again, &token).await;
    assert_eq!(joined["connectionId"], a_id.as_str());
    if support::on_gateway() {
        // The function closes it through `DeleteConnection`.
        a.expect_close_code(1000).await;
    } else {
        let reason = a.expect_close_code(1013).await;
        assert!(reason.contains("replaced"), "{reason}");
    }
    // The old socket's end is no departure.
    server
        .wait_for_metrics(&[
            ("meshcall_connections", 2.0),
            ("meshcall_room_members", 2.0),
        ])
        .await;
    b.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn forged_tokens_and_resume_turned_off_fail() {
    let server = TestServer::start().await;
    let (_a, b, _a_id, token, _) = pair(&server).await;
    // The same signature under another id.
    let forged = token.replacen(token.split('.').next().unwrap(), "x", 1);
    let mut c = server.client().await;
    for bad in ["", "nope", forged.as_str()] {
        assert_eq!(resume(&mut c, bad).await["code"], "resumeFailed", "{bad}");
    }
    drop(b);
    server.stop().await.unwrap();

    let off = TestServer::with(&["--resume-grace", "0s"]).await;
    let (a, mut b, a_id, token, _) = pair(&off).await;
    assert_eq!(token, "", "no token is issued");
    a.drop_without_close();
    b.expect_participant_left(&a_id).await;
    let mut again = off.client().await;
    let guess = format!("{a_id}.AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(resume(&mut again, &guess).await["code"], "resumeFailed");
    off.stop().await.unwrap();
}

/// Gone is not left. A socket that vanishes (TCP reset, no close frame: a phone leaving
/// Wi-Fi) while a room-mate is still signalling it keeps its seat: on the serverless path
/// the room-mate's signals are posted to a connection API Gateway already forgot (410)
/// before, or after, its `$disconnect` runs; either way the participant is only
/// suspended, its resume succeeds and the room never hears it left. Ten rounds, each a
/// fresh race.
#[tokio::test]
async fn a_socket_reset_while_signalled_keeps_its_seat_every_time() {
    const ROUNDS: usize = 10;
    let server = TestServer::start().await;
    let mut lost = Vec::new();
    for round in 0..ROUNDS {
        let room = format!("race{round}");
        let mut a = server.client().await;
        let joined = a.join(&room).await;
        let a_id = joined["connectionId"].as_str().unwrap().to_owned();
        let token = joined["resumeToken"].as_str().unwrap().to_owned();
        let mut b = server.client().await;
        let b_id = b.id_via(&room).await;
        a.expect_new_participant(&b_id).await;

        a.reset();
        for n in 0..20 {
            b.send_json(json!({"action": "signal", "to": a_id, "data": {"candidate": n}}))
                .await;
        }
        let mut again = server.client().await;
        let mut reply = resume(&mut again, &token).await;
        // On the serverless path b's signals still in flight may reach the new socket
        // before `joined` does (API Gateway invokes the function for each on its own).
        while reply["type"] == "signal" {
            reply = again.recv_json().await;
        }
        if reply["type"] != "joined" || reply["resumed"] != true {
            lost.push((round, reply));
            continue;
        }
        // The room never heard a leave: b sees only its pong (a signal to a suspended
        // participant is dropped without an error).
        b.expect_only_pong().await;
        again
            .send_json(json!({"action": "signal", "to": b_id, "data": "back"}))
            .await;
        assert_eq!(
            b.recv_json().await,
            json!({"type": "signal", "from": a_id, "data": "back"})
        );
    }
    println!("{} of {ROUNDS} rounds lost the seat", lost.len());
    assert!(lost.is_empty(), "rounds that lost the seat: {lost:#?}");
    server.stop().await.unwrap();
}
