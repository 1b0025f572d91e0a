//! Every limit, configured small through the server's flags: room size (also under a race),
//! message size, message rate, idle timeout, and the `Origin` allow-list.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use support::{Client, TestServer, WAIT};

#[tokio::test]
async fn room_size_cap_refuses_the_next_joiner_with_room_full() {
    let server = TestServer::with(&["--max-room-size", "2"]).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut c = server.client().await;
    let mut friend = server.client().await;
    a.join("r").await;
    let b_id = b.id_via("r").await;
    a.expect_new_participant(&b_id).await;
    friend.join("lobby").await;
    let c_id = c.id_via("lobby").await;
    friend.expect_new_participant(&c_id).await;

    c.send_json(json!({"action": "joinRoom", "roomId": "r"}))
        .await;
    c.expect_error("roomFull").await;
    c.expect_only_pong().await;
    a.expect_only_pong().await;
    b.expect_only_pong().await;

    // The refused joiner stays where it was: its old room neither lost nor lacks it.
    friend.expect_only_pong().await;
    c.say("lobby", "still in the lobby").await;
    assert_eq!(friend.recv_text().await, "still in the lobby");

    // A member re-joining its own full room is not refused.
    b.join("r").await;
    a.expect_only_pong().await;

    // The refused client gets in once a seat frees.
    b.leave().await;
    a.expect_participant_left(&b_id).await;
    let joined = c.join("r").await;
    assert_eq!(joined["participants"].as_array().unwrap().len(), 1);
    friend.expect_participant_left(&c_id).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_joins_for_the_last_seat_admit_exactly_one() {
    let server = TestServer::with(&["--max-room-size", "5"]).await;
    let mut members = Vec::new();
    let mut member_ids = Vec::new();
    for _ in 0..4 {
        let mut m = server.client().await;
        member_ids.push(m.id_via("r").await);
        members.push(m);
    }
    for (i, m) in members.iter_mut().enumerate() {
        for id in &member_ids[i + 1..] {
            m.expect_new_participant(id).await;
        }
    }
    let mut racers = Vec::new();
    for _ in 0..10 {
        racers.push(server.client().await);
    }

    // Send every join before reading any reply.
    join_all(
        racers
            .iter_mut()
            .map(|r| r.send_json(json!({"action": "joinRoom", "roomId": "r"}))),
    )
    .await;
    let replies = join_all(racers.iter_mut().map(Client::recv_json)).await;

    let winners: Vec<_> = replies.iter().filter(|v| v["type"] == "joined").collect();
    let full = replies
        .iter()
        .filter(|v| v["type"] == "error" && v["code"] == "roomFull")
        .count();
    assert_eq!(winners.len(), 1, "replies: {replies:#?}");
    assert_eq!(full, 9, "replies: {replies:#?}");
    let winner = winners[0];
    assert_eq!(winner["participants"].as_array().unwrap().len(), 4);
    let winner_id = winner["connectionId"].as_str().unwrap();

    // Each member hears of the one winner, and of no one else.
    for m in &mut members {
        m.expect_new_participant(winner_id).await;
        m.expect_only_pong().await;
    }
    for r in &mut racers {
        r.expect_only_pong().await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_frame_gets_message_too_large_then_close_1009_and_the_room_survives() {
    let server = TestServer::with(&["--max-message-bytes", "1024"]).await;
    let mut big = server.client().await;
    let mut b = server.client().await;
    let mut c = server.client().await;
    let big_id = big.id_via("r").await;
    let b_id = b.id_via("r").await;
    let c_id = c.id_via("r").await;
    big.expect_new_participant(&b_id).await;
    big.expect_new_participant(&c_id).await;
    b.expect_new_participant(&c_id).await;

    let (frame, _) = room_frame_of_len(2000);
    big.send_text(&frame).await;
    big.expect_error("messageTooLarge").await;
    if support::on_gateway() {
        // API Gateway passes messages up to its own 128 KiB to the function, which refuses
        // this one and keeps the connection.
        big.expect_only_pong().await;
    } else {
        big.expect_close_code(1009).await;
        // The others hear that it left.
        b.expect_participant_left(&big_id).await;
        c.expect_participant_left(&big_id).await;
    }
    // Nobody gets its message.
    b.expect_only_pong().await;
    c.expect_only_pong().await;

    // The room and the server carry on.
    b.say("r", "still talking").await;
    assert_eq!(c.recv_text().await, "still talking");
    let mut d = server.client().await;
    let joined = d.join("r").await;
    let d_id = joined["connectionId"].as_str().unwrap();
    b.expect_new_participant(d_id).await;
    c.expect_new_participant(d_id).await;
    server.stop().await.unwrap();
}

/// A `sendMsgToRoom` frame to room `r` of exactly `len` bytes; returns (frame, message).
fn room_frame_of_len(len: usize) -> (String, String) {
    let overhead = json!({"action": "sendMsgToRoom", "roomId": "r", "message": ""})
        .to_string()
        .len();
    let message = "y".repeat(len - overhead);
    let frame = json!({"action": "sendMsgToRoom", "roomId": "r", "message": message}).to_string();
    assert_eq!(frame.len(), len);
    (frame, message)
}

#[tokio::test]
async fn frames_just_under_and_exactly_at_the_size_limit_are_delivered() {
    let server = TestServer::with(&["--max-message-bytes", "1024"]).await;
    let (mut a, _, mut b, _) = server.pair_in("r").await;

    for len in [1000, 1023, 1024] {
        let (frame, message) = room_frame_of_len(len);
        a.send_text(&frame).await;
        assert_eq!(b.recv_text().await, message, "frame of {len} bytes");
    }
    a.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn frame_one_byte_over_the_size_limit_gets_message_too_large_and_close_1009() {
    let server = TestServer::with(&["--max-message-bytes", "1024"]).await;
    let (mut a, a_id, mut b, _) = server.pair_in("r").await;

    let (frame, _) = room_frame_of_len(1025);
    a.send_text(&frame).await;
    a.expect_error("messageTooLarge").await;
    if support::on_gateway() {
        // Refused by the function, under API Gateway's own limit: the connection stays.
        a.expect_only_pong().await;
    } else {
        a.expect_close_code(1009).await;
        b.expect_participant_left(&a_id).await;
    }
    b.expect_only_pong().await;
    server
        .wait_for_metrics(&[("meshcall_errors_total{code=\"messageTooLarge\"}", 1.0)])
        .await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sixth_quick_message_is_rate_limited_not_delivered_and_the_connection_stays_open() {
    if support::self_hosted_only("API Gateway throttles per stage, not per connection") {
        return;
    }
    let server = TestServer::with(&["--rate-per-second", "1", "--rate-burst", "5"]).await;
    let mut receiver = server.client().await;
    receiver.join("r").await;
    let mut sender = server.client().await;

    // Six frames back to back: the join and four messages fit the burst of five.
    sender
        .send_json(json!({"action": "joinRoom", "roomId": "r"}))
        .await;
    for i in 1..=5 {
        sender.say("r", &format!("m{i}")).await;
    }
    let joined = sender.recv_json().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    sender.expect_error("rateLimited").await;

    let sender_id = joined["connectionId"].as_str().unwrap();
    receiver.expect_new_participant(sender_id).await;
    for i in 1..=4 {
        assert_eq!(receiver.recv_text().await, format!("m{i}"));
    }
    receiver.expect_only_pong().await;

    // Still open: each ping is answered (refused while the bucket is empty), and once a
    // token has refilled (one per second) a ping gets its pong.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        sender.send_json(json!({"action": "ping"})).await;
        let v = sender.recv_json().await;
        if v == json!({"type": "pong"}) {
            break;
        }
        assert_eq!(v["code"], "rateLimited", "{v}");
        assert!(tokio::time::Instant::now() < deadline, "no token refilled");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    receiver.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idle_client_is_closed_with_1001_and_its_room_is_told() {
    // 1 s: time enough for the watcher to join and be announced before it starts pinging,
    // also on the serverless path on a busy machine (at 300 ms it was idled out first).
    let server = TestServer::with(&["--idle-timeout", "1s"]).await;
    let mut idle = server.client().await;
    let mut watcher = server.client().await;
    let last_sent = Instant::now();
    let idle_id = idle.id_via("r").await;
    let watcher_id = watcher.id_via("r").await;
    idle.expect_new_participant(&watcher_id).await;

    // The watcher pings to stay alive itself while it waits.
    let news = watcher
        .recv_json_keeping_alive(Duration::from_millis(250))
        .await;
    assert_eq!(
        news,
        json!({"type": "participantLeft", "participantConnectionId": idle_id})
    );
    let reason = idle.expect_close_code(1001).await;
    assert!(
        last_sent.elapsed() >= Duration::from_secs(1),
        "closed before the timeout"
    );
    // API Gateway's reason for its idle timeout is "Going away".
    let expected = if support::on_gateway() {
        "Going away"
    } else {
        "idle"
    };
    assert!(reason.contains(expected), "reason {reason:?}");
    watcher.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn websocket_pings_keep_a_connection_open_past_the_idle_timeout() {
    pings_keep_a_connection_open_past_the_idle_timeout(Ping::WebSocket).await;
}

#[tokio::test]
async fn json_pings_keep_a_connection_open_past_the_idle_timeout() {
    pings_keep_a_connection_open_past_the_idle_timeout(Ping::Json).await;
}

/// How a client keeps itself alive: a WebSocket control frame, or the protocol's `ping`.
#[derive(Clone, Copy)]
enum Ping {
    WebSocket,
    Json,
}

async fn pings_keep_a_connection_open_past_the_idle_timeout(ping: Ping) {
    let server = TestServer::with(&["--idle-timeout", "500ms"]).await;
    let mut silent = server.client().await;
    let mut pinger = server.client().await;
    let started = Instant::now();

    // The behaviour under test is time itself: ten pings, 100 ms apart, against a 500 ms
    // timeout (slack for a loaded machine).
    for _ in 0..10 {
        match ping {
            Ping::WebSocket => pinger.ws_ping().await,
            Ping::Json => pinger.expect_only_pong().await,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "longer than the timeout, twice over"
    );
    pinger.expect_only_pong().await;
    // The control: a connection that sent nothing was closed meanwhile.
    silent.expect_close_code(1001).await;
    server.stop().await.expect("the server stops cleanly");
}

#[tokio::test]
async fn disallowed_or_missing_origin_is_refused_with_403_and_allowed_origins_connect() {
    let server = TestServer::with(&[
        "--allowed-origin",
        "https://good.example,https://also-good.example",
    ])
    .await;
    assert_eq!(
        server
            .client_with_origin("https://evil.example")
            .await
            .err(),
        Some(403)
    );
    assert_eq!(server.try_client().await.err(), Some(403), "no Origin");
    // Exact match only: no prefix or scheme tricks.
    for origin in [
        "https://good.example.evil.example",
        "http://good.example",
        "https://good.example:8443",
    ] {
        assert_eq!(
            server.client_with_origin(origin).await.err(),
            Some(403),
            "{origin}"
        );
    }
    for origin in ["https://good.example", "https://also-good.example"] {
        let Ok(mut ok) = server.client_with_origin(origin).await else {
            panic!("{origin} refused")
        };
        ok.expect_only_pong().await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn without_an_allow_list_any_origin_connects() {
    let server = TestServer::start().await;
    let Ok(mut c) = server.client_with_origin("https://anywhere.example").await else {
        panic!("refused")
    };
    c.expect_only_pong().await;
    let Ok(mut c) = server.try_client().await else {
        panic!("refused without Origin")
    };
    c.expect_only_pong().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_receiver_that_stops_reading_is_dropped_and_its_room_told() {
    if support::self_hosted_only("the server's per-connection send queues") {
        return;
    }
    // Once the kernel's socket buffers are full, the reader's small queue fills up: the
    // server drops it as too slow instead of holding up the sender. A long send timeout, so
    // that the full queue, not a stalled write (a drop the participant may resume from),
    // is what ends it.
    let server = TestServer::with(&["--queue-capacity", "2", "--send-timeout", "30s"]).await;
    let stalled = flood_a_receiver_that_reads_nothing(&server).await;
    server
        .wait_for_metrics(&[("meshcall_room_members", 1.0)])
        .await;
    drop(stalled);
    server.stop().await.unwrap();
}

/// A `stalled` client and a sender in room `r`; the sender sends 190 frames of 120 KB
/// (about 23 MB: far more than loopback TCP buffers hold, within the default burst of 200
/// messages) that `stalled` never reads, and must then hear that `stalled` left, and
/// nothing more. Returns `stalled`, still unread.
async fn flood_a_receiver_that_reads_nothing(server: &TestServer) -> Client {
    let mut stalled = server.client().await;
    let mut sender = server.client().await;
    let stalled_id = stalled.id_via("r").await;
    let sender_id = sender.id_via("r").await;
    stalled.expect_new_participant(&sender_id).await;
    let big = "x".repeat(120 * 1024);
    for _ in 0..190 {
        sender.say("r", &big).await;
    }
    sender.expect_participant_left(&stalled_id).await;
    sender.expect_only_pong().await;
    stalled
}

#[tokio::test]
async fn a_socket_that_accepts_nothing_past_the_send_timeout_is_dropped_and_its_room_told() {
    if support::self_hosted_only("the server's socket writes") {
        return;
    }
    // A queue far larger than what is sent, so only the stalled write can end it: once the
    // kernel's buffers are full, one write waits past --send-timeout and the socket goes.
    let server = TestServer::with(&[
        "--queue-capacity",
        "100000",
        "--send-timeout",
        "300ms",
        "--resume-grace",
        "0s",
    ])
    .await;
    drop(flood_a_receiver_that_reads_nothing(&server).await);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_tiny_read_buffer_still_reads_frames_of_any_size_intact() {
    if support::self_hosted_only("the server's read buffer") {
        return;
    }
    // --read-buffer-bytes only trades memory for read calls: a frame 1 600 times larger
    // than the buffer arrives whole.
    let server = TestServer::with(&["--read-buffer-bytes", "64"]).await;
    let (mut a, _, mut b, _) = server.pair_in("r").await;
    let (frame, message) = room_frame_of_len(100 * 1024);
    a.send_text(&frame).await;
    assert_eq!(b.recv_text().await, message);
    b.say("r", "and back").await;
    assert_eq!(a.recv_text().await, "and back");
    server.stop().await.unwrap();
}

/// A crowd at the door: 64 clients send `joinRoom` for one room at the same moment. Each
/// gets an answer, `joined` or `roomFull` (never silence, never `internal`), exactly the
/// room's cap get in, and each joiner is announced to those already in, all within 3 s.
/// On the serverless path every join writes the same room item at once: contention must
/// cost time, not answers, and not much time. The slowest answer is printed.
#[tokio::test]
async fn a_crowd_at_the_door_each_gets_joined_or_room_full() {
    const CROWD: usize = 64;
    const CAP: usize = 8;
    // The whole crowd comes from 127.0.0.1: past the self-hosted server's per-address
    // limits (256 connections, 240 joins a minute), which tests/abuse.rs covers.
    let mut flags = vec!["--max-room-size", "8"];
    if !support::on_gateway() {
        flags.extend([
            "--max-connections-per-ip",
            "0",
            "--max-joins-per-minute-per-ip",
            "0",
        ]);
    }
    let server = TestServer::with(&flags).await;
    // They connect at once too: on the serverless path the gateway starts Lambda instances
    // for the burst of `$connect`s (up to its 10), as Lambda scales for one, so the joins
    // below are timed on the instances a crowd arriving together would have, not on
    // bootstrap processes starting (debug builds on a busy machine: up to 2 s each).
    let mut crowd = join_all((0..CROWD).map(|_| server.client())).await;
    let started = Instant::now();
    join_all(
        crowd
            .iter_mut()
            .map(|c| c.send_json(json!({"action": "joinRoom", "roomId": "door"}))),
    )
    .await;
    // The answer is the first `joined` or `error`: on the serverless path a winner may hear
    // of a later winner (`newParticipant`) before its own `joined` is posted.
    let replies = join_all(crowd.iter_mut().map(|c| async {
        loop {
            let reply = c.recv_json().await;
            if reply["type"] != "newParticipant" {
                return (reply, started.elapsed());
            }
        }
    }))
    .await;
    let slowest = replies.iter().map(|(_, t)| *t).max().unwrap_or_default();
    println!("{CROWD} joins answered; slowest after {slowest:?}");
    assert!(
        slowest < Duration::from_secs(3),
        "the slowest of {CROWD} joins was answered after {slowest:?}; replies: {replies:#?}"
    );
    let joined: Vec<&Value> = replies
        .iter()
        .map(|(v, _)| v)
        .filter(|v| v["type"] == "joined")
        .collect();
    let full = replies
        .iter()
        .filter(|(v, _)| v["type"] == "error" && v["code"] == "roomFull")
        .count();
    assert_eq!(
        (joined.len(), full),
        (CAP, CROWD - CAP),
        "replies: {replies:#?}"
    );
    // Everyone who got in learns of every later winner: the room's members end up a mesh.
    let ids: Vec<&str> = joined
        .iter()
        .map(|v| v["connectionId"].as_str().unwrap())
        .collect();
    for v in &joined {
        let listed = v["participants"].as_array().unwrap();
        assert!(listed.len() < CAP, "{v}");
        for p in listed {
            assert!(ids.contains(&p.as_str().unwrap()), "{v} lists a loser");
        }
    }
    server.stop().await.unwrap();
}
