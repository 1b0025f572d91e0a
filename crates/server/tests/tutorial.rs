//! The tutorial's wscat walkthrough, typed verbatim, behaves as the tutorial promises
//! (and without its bug: `newParticipant` carries the joiner's id).

mod support;

use serde_json::json;
use support::TestServer;

#[tokio::test]
async fn tutorial_walkthrough_works_verbatim() {
    let server = TestServer::start().await;
    let mut first = server.client().await;
    let mut second = server.client().await;

    first
        .send_text(r#"{ "action": "joinRoom", "roomId": "123" }"#)
        .await;
    let joined_first = first.recv_json().await;
    assert_eq!(joined_first["type"], "joined");
    assert_eq!(joined_first["participants"], json!([]));

    second
        .send_text(r#"{ "action": "joinRoom", "roomId": "123" }"#)
        .await;
    let joined_second = second.recv_json().await;
    let second_id = joined_second["connectionId"].as_str().unwrap();
    assert_eq!(
        joined_second["participants"],
        json!([joined_first["connectionId"]])
    );

    let news = first.recv_json().await;
    assert_eq!(
        news,
        json!({"type": "newParticipant", "participantConnectionId": second_id}),
        "the joiner's id, not the receiver's"
    );

    first
        .send_text(r#"{"action": "sendMsgToRoom", "roomId": "123", "message": "hello world!"}"#)
        .await;
    assert_eq!(second.recv_text().await, "hello world!");
    first.expect_only_pong().await;

    server.stop().await.unwrap();
}
