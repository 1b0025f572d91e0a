//! TURN configuration: `joined` carries a TURN server with credentials minted for the
//! joiner, in the scheme coturn's `use-auth-secret` checks.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::TestServer;

#[tokio::test]
async fn joined_carries_stun_and_per_join_turn_credentials() {
    let server = TestServer::with(&[
        "--stun",
        "stun:127.0.0.1:3478",
        "--turn",
        "turn:127.0.0.1:3478?transport=udp,turn:127.0.0.1:3478?transport=tcp",
        "--turn-secret",
        "s3cret",
        "--turn-ttl",
        "1h",
    ])
    .await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let ja = a.join("r").await;
    let jb = b.join("r").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    for (joined, other) in [(&ja, &jb), (&jb, &ja)] {
        let servers = joined["iceServers"].as_array().unwrap();
        assert_eq!(servers[0], json!({"urls": ["stun:127.0.0.1:3478"]}));
        let turn = &servers[1];
        assert_eq!(
            turn["urls"],
            json!([
                "turn:127.0.0.1:3478?transport=udp",
                "turn:127.0.0.1:3478?transport=tcp"
            ])
        );
        let user = turn["username"].as_str().unwrap();
        let (expiry, who) = user.split_once(':').unwrap();
        assert_eq!(who, joined["connectionId"].as_str().unwrap());
        let expiry: u64 = expiry.parse().unwrap();
        assert!(
            (now + 3590..=now + 3610).contains(&expiry),
            "{expiry} vs {now}"
        );
        let credential = turn["credential"].as_str().unwrap();
        assert_eq!(credential.len(), 28, "base64 of a SHA-1 HMAC");
        assert_ne!(
            credential, other["iceServers"][1]["credential"],
            "minted per participant"
        );
        assert!(!joined.to_string().contains("s3cret"));
    }
    server.stop().await.unwrap();
}
