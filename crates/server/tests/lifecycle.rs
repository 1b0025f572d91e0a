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

/// On AWS `$disconnect` is best-effort: a client that vanishes may never be reported. The
/// local gateway loses every `$disconnect` here (`--lose-disconnects 1`). Nobody signals
/// the vanished member, yet the sweep's liveness check (`GET @connections` for members not
/// confirmed alive for `--check-every`) finds its socket gone: it is suspended, and when
/// its grace ends its room is told. Without the check the room would hear nothing until
/// API Gateway's 10-minute idle timeout, which itself may never be reported.
#[tokio::test]
async fn a_member_whose_disconnect_was_lost_is_found_by_the_sweep() {
    if !support::on_gateway() {
        return; // The self-hosted server knows its own sockets: no event can be lost.
    }
    let server = TestServer::with(&[
        "--lose-disconnects",
        "1",
        "--sweep-every",
        "300ms",
        "--check-every",
        "1s",
        "--resume-grace",
        "1s",
    ])
    .await;
    let (mut a, _, ghost, ghost_id) = server.pair_in("haunted").await;
    ghost.reset();
    a.expect_participant_left(&ghost_id).await;
    server.stop().await.unwrap();
}

/// A room kept full by a ghost (its `$disconnect` lost): a join that finds the room full
/// asks `@connections` about the members, suspends the one API Gateway no longer knows
/// (it might still resume), refuses this join with `roomFull`, and the seat is free once
/// the ghost's grace ends; the room is told then.
#[tokio::test]
async fn a_room_kept_full_by_a_ghost_frees_the_seat_after_its_grace() {
    if !support::on_gateway() {
        return; // The self-hosted server knows its own sockets: no event can be lost.
    }
    let server = TestServer::with(&[
        "--lose-disconnects",
        "1",
        "--max-room-size",
        "2",
        "--resume-grace",
        "1s",
    ])
    .await;
    let (mut a, _, ghost, ghost_id) = server.pair_in("full").await;
    ghost.reset();
    let mut c = server.client().await;
    c.send_json(serde_json::json!({"action": "joinRoom", "roomId": "full"}))
        .await;
    c.expect_error("roomFull").await;
    a.expect_participant_left(&ghost_id).await;
    let joined = c.join("full").await;
    assert_eq!(
        joined["participants"].as_array().unwrap().len(),
        1,
        "{joined}"
    );
    server.stop().await.unwrap();
}

/// A dropped participant who does not resume is announced on time: after its grace, and
/// within 10 s of the grace's end. On the serverless path the sweep runs once a minute
/// (the template's schedule), so only the per-drop expiry message (SQS, delayed by the
/// grace) can meet this; the time is printed.
#[tokio::test]
async fn a_drop_not_resumed_is_announced_soon_after_the_grace() {
    const GRACE: std::time::Duration = std::time::Duration::from_secs(2);
    let server = TestServer::with(&["--resume-grace", "2s"]).await;
    let (leaver, leaver_id, mut stayer, _) = server.pair_in("r").await;
    let dropped = std::time::Instant::now();
    leaver.reset();
    stayer.expect_participant_left(&leaver_id).await;
    let after = dropped.elapsed();
    println!("drop -> participantLeft: {after:?} (grace {GRACE:?})");
    assert!(
        after >= GRACE,
        "announced before the grace ended: {after:?}"
    );
    assert!(
        after < GRACE + std::time::Duration::from_secs(10),
        "announced late: {after:?}"
    );
    server.stop().await.unwrap();
}
