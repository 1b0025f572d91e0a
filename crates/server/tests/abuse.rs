//! The abuse limits of the self-hosted server, each hit over a real socket: connections in
//! total (503) and per client address (429) before the upgrade, joins per minute per
//! address (`rateLimited`), the connection age (close 1001), each counted in
//! `meshcall_limit_hits_total{limit}`; and the client address: the socket's peer, or
//! `X-Forwarded-For` only through a `--trust-proxy` peer.
//!
//! Every client here comes from 127.0.0.1; distinct client addresses are made by trusting
//! 127.0.0.1 as a proxy and sending `X-Forwarded-For`.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Client, TestServer, WAIT};
use tokio_tungstenite::{connect_async, tungstenite::client::IntoClientRequest as _};

/// A refused upgrade: its status and `Retry-After`.
#[derive(Debug, PartialEq, Eq)]
struct Refused {
    status: u16,
    retry_after: Option<String>,
}

/// Connects, sending `X-Forwarded-For: forwarded_for` if given.
async fn connect(server: &TestServer, forwarded_for: Option<&str>) -> Result<Client, Refused> {
    let mut req = server.ws_url().into_client_request().unwrap();
    if let Some(xff) = forwarded_for {
        req.headers_mut()
            .insert("x-forwarded-for", xff.parse().unwrap());
    }
    match tokio::time::timeout(WAIT, connect_async(req))
        .await
        .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(Client { ws: Box::new(ws) }),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(Refused {
            status: resp.status().as_u16(),
            retry_after: resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
        }),
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

fn hits(limit: &str) -> String {
    format!("meshcall_limit_hits_total{{limit=\"{limit}\"}}")
}

/// Connects until the server admits again (the slot of a closed socket is freed when its
/// task ends, just after the store forgets it): polls, and fails after [`WAIT`].
async fn connect_when_admitted(server: &TestServer, forwarded_for: Option<&str>) -> Client {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match connect(server, forwarded_for).await {
            Ok(c) => return c,
            Err(refused) => assert!(
                tokio::time::Instant::now() < deadline,
                "still refused: {refused:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connections_past_the_total_are_refused_with_503_until_one_closes() {
    let server = TestServer::with(&["--max-connections", "2"]).await;
    let mut a = connect(&server, None).await.unwrap();
    let b = connect(&server, None).await.unwrap();
    assert_eq!(
        connect(&server, None).await.err(),
        Some(Refused {
            status: 503,
            retry_after: Some("10".into())
        })
    );
    server
        .wait_for_metrics(&[
            (&hits("connections"), 1.0),
            (&hits("connections_per_ip"), 0.0),
            ("meshcall_connections", 2.0),
        ])
        .await;
    // The admitted ones work.
    a.join("r").await;
    b.close().await;
    let mut c = connect_when_admitted(&server, None).await;
    c.join("r").await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_per_address_limit_are_refused_with_429_and_others_still_get_in() {
    let server = TestServer::with(&[
        "--max-connections-per-ip",
        "2",
        "--trust-proxy",
        "127.0.0.1",
    ])
    .await;
    let from = Some("203.0.113.7");
    let _a = connect(&server, from).await.unwrap();
    let b = connect(&server, from).await.unwrap();
    let refused = Refused {
        status: 429,
        retry_after: Some("30".into()),
    };
    assert_eq!(connect(&server, from).await.err(), Some(refused));
    // What the client writes left of its own address is not believed: still 203.0.113.7.
    assert_eq!(
        connect(&server, Some("198.51.100.1, 203.0.113.7"))
            .await
            .err()
            .map(|r| r.status),
        Some(429)
    );
    // Another address, and the proxy itself (no header), are not affected.
    let mut other = connect(&server, Some("203.0.113.8")).await.unwrap();
    let mut proxy = connect(&server, None).await.unwrap();
    other.join("r").await;
    proxy.join("r").await;
    server
        .wait_for_metrics(&[
            (&hits("connections_per_ip"), 2.0),
            (&hits("connections"), 0.0),
            ("meshcall_client_sources", 3.0),
        ])
        .await;
    b.close().await;
    let _c = connect_when_admitted(&server, from).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_forwarded_for_header_from_an_untrusted_peer_changes_nothing() {
    // No --trust-proxy, and a --trust-proxy that names someone else: the peer 127.0.0.1
    // is the client whatever the header says, so a spoofed address neither escapes the
    // per-address limit nor counts against the address it names.
    for trust in [None, Some("192.0.2.1")] {
        let mut flags = vec!["--max-connections-per-ip", "2"];
        if let Some(proxy) = trust {
            flags.extend(["--trust-proxy", proxy]);
        }
        let server = TestServer::with(&flags).await;
        let _a = connect(&server, Some("203.0.113.1")).await.unwrap();
        let _b = connect(&server, Some("203.0.113.2")).await.unwrap();
        assert_eq!(
            connect(&server, Some("203.0.113.3"))
                .await
                .err()
                .map(|r| r.status),
            Some(429),
            "trusting {trust:?}"
        );
        assert_eq!(
            connect(&server, None).await.err().map(|r| r.status),
            Some(429)
        );
        server
            .wait_for_metrics(&[
                (&hits("connections_per_ip"), 2.0),
                ("meshcall_client_sources", 1.0),
            ])
            .await;
        server.stop().await.unwrap();
    }
}

#[tokio::test]
async fn joins_past_the_per_address_rate_are_answered_rate_limited_and_the_socket_stays() {
    let server = TestServer::with(&[
        "--max-joins-per-minute-per-ip",
        "2",
        "--trust-proxy",
        "127.0.0.1",
    ])
    .await;
    let from = Some("203.0.113.7");
    let mut a = connect(&server, from).await.unwrap();
    a.join("one").await;
    a.join("two").await;
    a.send_json(json!({"action": "joinRoom", "roomId": "three"}))
        .await;
    a.expect_error("rateLimited").await;
    // Still in "two", still connected; a new socket from the same address brings no
    // fresh allowance, and an escaped action is still a join.
    a.expect_only_pong().await;
    let mut again = connect(&server, from).await.unwrap();
    again
        .send_text(r#"{"action":"join\u0052oom","roomId":"two"}"#)
        .await;
    again.expect_error("rateLimited").await;
    // Other frames are not joins; another address joins freely.
    again.expect_only_pong().await;
    let mut other = connect(&server, Some("203.0.113.8")).await.unwrap();
    let other_id = other.id_via("two").await;
    a.expect_new_participant(&other_id).await;
    server
        .wait_for_metrics(&[
            (&hits("joins_per_ip"), 2.0),
            ("meshcall_errors_total{code=\"rateLimited\"}", 2.0),
            ("meshcall_room_members", 2.0),
        ])
        .await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_connection_past_the_age_limit_is_closed_with_1001_and_its_room_told() {
    let server = TestServer::with(&["--max-connection-age", "1500ms"]).await;
    // The app is told to move before the limit: a quarter early (at most 5 minutes).
    assert_eq!(
        server.get("/config.json").await.2,
        r#"{"socketMaxAgeMs":1125}"#
    );
    let started = tokio::time::Instant::now();
    let mut a = server.client().await;
    let a_id = a.id_via("r").await;
    // Setup, not a wait for an outcome: b's socket must outlive a's by more than the
    // server takes to close a and tell the room, so b opens half a second later.
    tokio::time::sleep_until(started + Duration::from_millis(500)).await;
    let mut b = server.client().await;
    b.id_via("r").await;
    assert_eq!(a.expect_close_code(1001).await, "connection age limit");
    // A close is a departure, not a drop: the room hears it at once, as on API Gateway.
    b.expect_participant_left(&a_id).await;
    server
        .wait_for_metrics(&[
            (&hits("connection_age"), 1.0),
            ("meshcall_connections", 1.0),
            ("meshcall_suspended", 0.0),
        ])
        .await;
    assert_eq!(b.expect_close_code(1001).await, "connection age limit");
    server
        .wait_for_metrics(&[
            (&hits("connection_age"), 2.0),
            ("meshcall_connections", 0.0),
        ])
        .await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn limits_at_zero_are_off() {
    let server = TestServer::with(&[
        "--max-connections",
        "0",
        "--max-connections-per-ip",
        "0",
        "--max-joins-per-minute-per-ip",
        "0",
        "--max-connection-age",
        "0s",
    ])
    .await;
    let mut clients = Vec::new();
    for n in 0..40 {
        let mut c = connect(&server, None).await.unwrap();
        c.join(&format!("r{n}")).await;
        c.join(&format!("s{n}")).await;
        clients.push(c);
    }
    assert_eq!(server.get("/config.json").await.2, "{}");
    server
        .wait_for_metrics(&[
            ("meshcall_connections", 40.0),
            (&hits("connections"), 0.0),
            (&hits("connections_per_ip"), 0.0),
            (&hits("joins_per_ip"), 0.0),
        ])
        .await;
    server.stop().await.unwrap();
}
