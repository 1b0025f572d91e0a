//! The plain HTTP side: the embedded web app, `/healthz`, unknown paths, and `/metrics`,
//! whose values follow what clients do.

mod support;

use serde_json::json;
use support::{TestServer, header, metric_is};

/// The `content-type` of a response, which must have one.
fn content_type(headers: &[(String, String)]) -> &str {
    header(headers, "content-type").unwrap_or_else(|| panic!("no content-type in {headers:?}"))
}

#[tokio::test]
async fn index_is_an_html_page_mentioning_meshcall() {
    let server = TestServer::start().await;
    let (status, headers, body) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(
        content_type(&headers).starts_with("text/html"),
        "{headers:?}"
    );
    assert!(body.contains("meshcall"), "{body}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn healthz_answers_200_ok() {
    let server = TestServer::start().await;
    let (status, _, body) = server.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = TestServer::start().await;
    for path in ["/nope", "/ws/extra", "/index.html/.."] {
        let (status, _, _) = server.get(path).await;
        assert_eq!(status, 404, "{path}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn plain_get_on_the_websocket_path_is_400() {
    let server = TestServer::start().await;
    let (status, _, _) = server.get("/ws").await;
    assert_eq!(status, 400);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_start_at_zero_in_prometheus_text() {
    let server = TestServer::start().await;
    let (status, headers, body) = server.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type(&headers).starts_with("text/plain")
            || content_type(&headers).starts_with("application/openmetrics-text"),
        "{headers:?}"
    );
    for name in [
        "meshcall_connections",
        "meshcall_rooms",
        "meshcall_room_members",
        "meshcall_join_notify_seconds_count",
    ] {
        assert!(metric_is(&body, name, 0.0), "{name}:\n{body}");
    }
    // Every label exists from the start, so dashboards see a zero rather than nothing.
    for kind in [
        "joined",
        "newParticipant",
        "sendMsgToRoom",
        "signal",
        "participantLeft",
        "pong",
        "error",
    ] {
        let name = format!("meshcall_messages_delivered_total{{kind=\"{kind}\"}}");
        assert!(metric_is(&body, &name, 0.0), "{name}:\n{body}");
    }
    for code in [
        "badJson",
        "unknownAction",
        "invalidField",
        "invalidRoomId",
        "notInRoom",
        "peerNotFound",
        "signalToSelf",
        "roomFull",
        "messageTooLarge",
        "rateLimited",
        "binaryNotSupported",
        "resumeFailed",
        "internal",
    ] {
        let name = format!("meshcall_errors_total{{code=\"{code}\"}}");
        assert!(metric_is(&body, &name, 0.0), "{name}:\n{body}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_gauges_follow_connections_rooms_and_members() {
    let server = TestServer::with(&["--resume-grace", "300ms"]).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut c = server.client().await;
    for client in [&mut a, &mut b, &mut c] {
        client.expect_only_pong().await;
    }
    server
        .wait_for_metrics(&[
            ("meshcall_connections", 3.0),
            ("meshcall_rooms", 0.0),
            ("meshcall_room_members", 0.0),
        ])
        .await;

    a.join("one").await;
    let b_id = b.id_via("one").await;
    c.join("two").await;
    server
        .wait_for_metrics(&[
            ("meshcall_connections", 3.0),
            ("meshcall_rooms", 2.0),
            ("meshcall_room_members", 3.0),
        ])
        .await;

    a.expect_new_participant(&b_id).await;
    a.leave().await;
    server
        .wait_for_metrics(&[
            ("meshcall_connections", 3.0),
            ("meshcall_rooms", 2.0),
            ("meshcall_room_members", 2.0),
        ])
        .await;

    b.close().await;
    server
        .wait_for_metrics(&[
            ("meshcall_connections", 2.0),
            ("meshcall_rooms", 1.0),
            ("meshcall_room_members", 1.0),
        ])
        .await;

    c.drop_without_close();
    a.close().await;
    // c is held for a resume, then its grace ends.
    server
        .wait_for_metrics(&[("meshcall_connections", 1.0), ("meshcall_suspended", 1.0)])
        .await;
    server
        .wait_for_metrics(&[
            ("meshcall_suspended", 0.0),
            ("meshcall_connections", 0.0),
            ("meshcall_rooms", 0.0),
            ("meshcall_room_members", 0.0),
        ])
        .await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_deliveries_by_kind_errors_by_code_and_joins() {
    let server = TestServer::start().await;
    let (mut a, _, mut b, b_id) = server.pair_in("r").await;

    a.say("r", "hello").await;
    assert_eq!(b.recv_text().await, "hello");
    a.send_json(json!({"action": "signal", "to": b_id, "data": {"type": "offer"}}))
        .await;
    b.recv_json().await;
    a.send_text("not json").await;
    a.expect_error("badJson").await;
    a.send_text("[]").await;
    a.expect_error("badJson").await;
    a.send_json(json!({"action": "fly"})).await;
    a.expect_error("unknownAction").await;
    a.send_binary(b"\x00").await;
    a.expect_error("binaryNotSupported").await;
    a.send_json(json!({"action": "joinRoom", "roomId": "no way"}))
        .await;
    a.expect_error("invalidRoomId").await;
    // The pong also proves every frame before it was handled, counters included.
    a.expect_only_pong().await;
    b.leave().await;
    a.expect_participant_left(&b_id).await;

    server
        .wait_for_metrics(&[
            ("meshcall_messages_delivered_total{kind=\"joined\"}", 2.0),
            (
                "meshcall_messages_delivered_total{kind=\"newParticipant\"}",
                1.0,
            ),
            (
                "meshcall_messages_delivered_total{kind=\"sendMsgToRoom\"}",
                1.0,
            ),
            ("meshcall_messages_delivered_total{kind=\"signal\"}", 1.0),
            (
                "meshcall_messages_delivered_total{kind=\"participantLeft\"}",
                1.0,
            ),
            ("meshcall_messages_delivered_total{kind=\"pong\"}", 2.0),
            ("meshcall_messages_delivered_total{kind=\"error\"}", 5.0),
            ("meshcall_errors_total{code=\"badJson\"}", 2.0),
            ("meshcall_errors_total{code=\"unknownAction\"}", 1.0),
            ("meshcall_errors_total{code=\"binaryNotSupported\"}", 1.0),
            ("meshcall_errors_total{code=\"invalidRoomId\"}", 1.0),
            ("meshcall_errors_total{code=\"notInRoom\"}", 0.0),
            ("meshcall_join_notify_seconds_count", 2.0),
        ])
        .await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_content_type_matches_the_exposition_format() {
    let server = TestServer::start().await;
    let (_, headers, body) = server.get("/metrics").await;
    let content_type = content_type(&headers);
    let openmetrics_body = body.trim_end().ends_with("# EOF");
    assert_eq!(
        content_type.starts_with("application/openmetrics-text"),
        openmetrics_body,
        "content-type {content_type:?}, body ends with # EOF: {openmetrics_body}"
    );
    server.stop().await.unwrap();
}
