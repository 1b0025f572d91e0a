//! How connections end: a clean close, a dropped or reset TCP stream, and the server's own
//! graceful shutdown. Every departure from a room is announced exactly once.

mod support;

use support::{TestServer, WAIT};
use tokio::net::TcpStream;

#[tokio::test]
async fn clean_close_tells_the_room_participant_left() {
    let server = TestServer::start().await;
    let (leaver, leaver_id, mut stayer, _) = server.pair_in("r").await;
    leaver.close().await;
    stayer.expect_participant_left(&leaver_id).await;
    stayer.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn dropped_tcp_stream_without_close_frame_tells_the_room_participant_left() {
    // A drop is a departure once the resume grace has passed (or at once, with it off).
    let server = TestServer::with(&["--resume-grace", "0s"]).await;
    let (leaver, leaver_id, mut stayer, _) = server.pair_in("r").await;
    leaver.drop_without_close();
    stayer.expect_participant_left(&leaver_id).await;
    stayer.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reset_tcp_connection_tells_the_room_participant_left_after_the_resume_grace() {
    let server = TestServer::with(&["--resume-grace", "200ms"]).await;
    let (leaver, leaver_id, mut stayer, _) = server.pair_in("r").await;
    leaver.reset();
    stayer.expect_participant_left(&leaver_id).await;
    stayer.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn leaving_then_closing_announces_the_departure_once() {
    let server = TestServer::start().await;
    let (mut leaver, leaver_id, mut stayer, _) = server.pair_in("r").await;
    leaver.leave().await;
    stayer.expect_participant_left(&leaver_id).await;
    leaver.close().await;
    // The closing socket's task forgets the connection and would then, in the same step,
    // announce it; wait for the first, then prove nothing more reached the room.
    server
        .wait_for_metrics(&[("meshcall_connections", 1.0)])
        .await;
    stayer.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn closing_a_connection_that_never_joined_tells_no_one() {
    let server = TestServer::start().await;
    let mut member = server.client().await;
    member.join("r").await;
    let mut passer_by = server.client().await;
    passer_by.expect_only_pong().await;
    passer_by.close().await;
    // As above: the connection is forgotten, then nothing is announced.
    server
        .wait_for_metrics(&[("meshcall_connections", 1.0)])
        .await;
    member.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_closes_every_socket_with_1001_then_refuses_connections() {
    if support::self_hosted_only("the server's own shutdown") {
        return;
    }
    let server = TestServer::start().await;
    let (mut a, _, mut b, _) = server.pair_in("r").await;
    let mut lobby = server.client().await;
    lobby.expect_only_pong().await;
    let addr = server.addr;

    server.begin_shutdown();
    for client in [&mut a, &mut b, &mut lobby] {
        let reason = client.expect_close_code(1001).await;
        assert!(reason.contains("shutting down"), "reason {reason:?}");
    }
    server.join_handle().await.unwrap();

    let refused = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out");
    assert!(refused.is_err(), "the listener is closed");
}

#[tokio::test]
async fn client_close_is_answered_with_a_close_frame() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client.expect_only_pong().await;
    client.send_close(1000, "bye").await;
    client.expect_close_code(1000).await;
    server.stop().await.unwrap();
}
