//! `ApiGatewayPusher` with the real SDK against a stub of API Gateway's `@connections`
//! endpoint (moto's never answers 410), and end to end with `DynamoStore` on moto: a 410
//! removes that connection and tells its room.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use aws_config::{BehaviorVersion, Region, retry::RetryConfig};
use meshcall_aws::{ApiGatewayPusher, Posts};
use meshcall_core::{Config, ConnectionStore, Delivery, Kind, Outbound, Pusher, Signalling};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

use support::{id, member_ids, store, test_config};

/// One request the stub received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Posted {
    method: String,
    path: String,
    body: String,
}

/// A stand-in for API Gateway's Management API: `POST` or `GET [/stage]/@connections/{id}`
/// answers 200 for the connections it knows, 403 `ForbiddenException` for `forbidden`, and
/// 410 `GoneException` for the rest. A `GET` of a known connection answers what moto
/// answers (`connectedAt` in epoch seconds, which the SDK cannot parse), except for ids
/// starting with `iso`, answered as API Gateway does (ISO-8601 dates).
struct Gateway {
    addr: SocketAddr,
    known: Arc<Mutex<HashSet<String>>>,
    posted: Arc<Mutex<Vec<Posted>>>,
}

impl Gateway {
    async fn start(known: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = Self {
            addr: listener.local_addr().unwrap(),
            known: Arc::new(Mutex::new(known.iter().map(|k| (*k).to_owned()).collect())),
            posted: Arc::default(),
        };
        let (known, posted) = (Arc::clone(&gateway.known), Arc::clone(&gateway.posted));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&known), Arc::clone(&posted)));
            }
        });
        gateway
    }

    fn url(&self, stage: &str) -> String {
        format!("http://{}{stage}", self.addr)
    }

    fn forget(&self, conn: &str) {
        self.known.lock().unwrap().remove(conn);
    }

    fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let escaped = s.as_bytes()[i] == b'%';
        if let Some(b) = s
            .get(i + 1..i + 3)
            .filter(|_| escaped)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(s.as_bytes()[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// HTTP/1.1 with keep-alive: requests one after another on one connection.
async fn serve(
    stream: TcpStream,
    known: Arc<Mutex<HashSet<String>>>,
    posted: Arc<Mutex<Vec<Posted>>>,
) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or("").to_owned();
        let path = words.next().unwrap_or("").to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            read.read_line(&mut header).await.unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await.unwrap();
        let conn = percent_decode(path.rsplit_once("/@connections/").map_or("", |(_, c)| c));
        posted.lock().unwrap().push(Posted {
            method: method.clone(),
            path: path.clone(),
            body: String::from_utf8(body).unwrap(),
        });
        let response = if known.lock().unwrap().contains(&conn) {
            let body = match (method.as_str(), conn.starts_with("iso")) {
                ("GET", false) => {
                    r#"{"connectedAt":1767225600,"identity":{"sourceIp":"127.0.0.1"},"lastActiveAt":1767225600}"#
                }
                ("GET", true) => {
                    r#"{"connectedAt":"2026-01-01T00:00:00Z","identity":{"sourceIp":"127.0.0.1","userAgent":"t"},"lastActiveAt":"2026-01-01T00:00:01Z"}"#
                }
                _ => "",
            };
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            let (status, kind, message) = if conn == "forbidden" {
                (
                    "403 Forbidden",
                    "ForbiddenException",
                    r#"{"message":"Forbidden"}"#,
                )
            } else {
                ("410 Gone", "GoneException", r#"{"message":null}"#)
            };
            format!(
                "HTTP/1.1 {status}\r\nx-amzn-ErrorType: {kind}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{message}",
                message.len()
            )
        };
        if write.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn frame(text: &str) -> Outbound {
    Outbound::new(Kind::Signal, text)
}

#[tokio::test]
async fn posts_the_frame_text_and_reads_410_as_gone() {
    let gateway = Gateway::start(&["A=", "B/+="]).await;
    let pusher = ApiGatewayPusher::at(&test_config(None), &gateway.url(""));
    let text = r#"{"type":"signal","from":"B=","data":{"sdp":"v=0\r\n","n":"é"}}"#;

    assert_eq!(
        pusher.push(&id("A="), &frame(text)).await.unwrap(),
        Delivery::Delivered
    );
    assert_eq!(
        pusher.push(&id("B/+="), &frame("x")).await.unwrap(),
        Delivery::Delivered
    );
    assert_eq!(
        pusher.push(&id("Z="), &frame("y")).await.unwrap(),
        Delivery::Gone
    );
    assert_eq!(
        pusher.posts(),
        Posts {
            delivered: 2,
            gone: 1,
            failed: 0
        }
    );
    let posted = gateway.posted();
    assert_eq!(
        posted[0].body, text,
        "the body is the frame's text, byte for byte"
    );
    assert_eq!(percent_decode(&posted[0].path), "/@connections/A=");
    assert_eq!(percent_decode(&posted[1].path), "/@connections/B/+=");
}

#[tokio::test]
async fn probe_asks_get_connection_and_reads_410_as_gone() {
    let gateway = Gateway::start(&["A=", "iso1"]).await;
    let pusher = ApiGatewayPusher::at(&test_config(None), &gateway.url("/prod"));
    // moto's body (numeric dates) fails the SDK's parsing; the 200 still says "there".
    assert_eq!(pusher.probe(&id("A=")).await.unwrap(), Delivery::Delivered);
    assert_eq!(
        pusher.probe(&id("iso1")).await.unwrap(),
        Delivery::Delivered
    );
    assert_eq!(pusher.probe(&id("Z=")).await.unwrap(), Delivery::Gone);
    gateway.forget("A=");
    assert_eq!(pusher.probe(&id("A=")).await.unwrap(), Delivery::Gone);
    let no_retries = test_config(None)
        .into_builder()
        .retry_config(RetryConfig::disabled())
        .build();
    let strict = ApiGatewayPusher::at(&no_retries, &gateway.url("/prod"));
    assert!(strict.probe(&id("forbidden")).await.is_err());
    let asked: Vec<(String, String)> = gateway
        .posted()
        .iter()
        .map(|p| (p.method.clone(), percent_decode(&p.path)))
        .collect();
    assert_eq!(
        asked[0],
        ("GET".to_owned(), "/prod/@connections/A=".to_owned())
    );
    assert!(asked.iter().all(|(m, _)| m == "GET"), "{asked:?}");
    assert_eq!(pusher.posts(), Posts::default(), "probes are not posts");
}

#[tokio::test]
async fn the_stage_in_the_endpoint_prefixes_the_path() {
    let gateway = Gateway::start(&["A="]).await;
    let pusher = ApiGatewayPusher::at(&test_config(None), &gateway.url("/prod"));
    assert_eq!(
        pusher.push(&id("A="), &frame("hi")).await.unwrap(),
        Delivery::Delivered
    );
    assert_eq!(
        percent_decode(&gateway.posted()[0].path),
        "/prod/@connections/A="
    );
}

#[tokio::test]
async fn other_failures_are_push_errors_not_gone() {
    let gateway = Gateway::start(&[]).await;
    let no_retries = test_config(None)
        .into_builder()
        .retry_config(RetryConfig::disabled())
        .build();
    let pusher = ApiGatewayPusher::at(&no_retries, &gateway.url(""));
    assert!(pusher.push(&id("forbidden"), &frame("x")).await.is_err());

    // Nothing listens there any more.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let pusher_nowhere = ApiGatewayPusher::at(&no_retries, &url);
    assert!(pusher_nowhere.push(&id("A="), &frame("x")).await.is_err());
    assert_eq!(
        pusher.posts(),
        Posts {
            delivered: 0,
            gone: 0,
            failed: 1
        }
    );
    assert_eq!(pusher_nowhere.posts().failed, 1);
}

#[tokio::test]
async fn an_endpoint_in_the_environment_wins_over_the_one_in_code() {
    // scripts/test points AWS_ENDPOINT_URL at moto, whose @connections accepts any id.
    if support::moto().await.is_none() {
        return;
    }
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(support::REGION))
        .credentials_provider(support::credentials())
        .load()
        .await;
    let pusher = ApiGatewayPusher::new(&config, "https://nowhere.invalid/prod");
    assert_eq!(
        pusher.push(&id("A="), &frame("hi")).await.unwrap(),
        Delivery::Delivered
    );
}

#[tokio::test]
async fn a_410_removes_that_connection_and_tells_its_room_while_the_rest_get_the_frame() {
    let Some(store) = store("gone-e2e").await else {
        return;
    };
    let gateway = Gateway::start(&["A=", "B=", "C="]).await;
    let pusher = ApiGatewayPusher::at(&test_config(None), &gateway.url("/prod"));
    let sig = Signalling::new(store, pusher, Config::default());
    let now = SystemTime::now();
    let [a, b, c] = [id("A="), id("B="), id("C=")];
    for (i, conn) in [&a, &b, &c].into_iter().enumerate() {
        let at = now + Duration::from_millis(u64::try_from(i).unwrap());
        sig.connect(conn, at).await.unwrap();
        sig.message(conn, r#"{"action":"joinRoom","roomId":"r1"}"#, at)
            .await;
    }
    gateway.forget("B=");
    let before = gateway.posted().len();

    let outcome = sig
        .message(
            &a,
            r#"{"action":"sendMsgToRoom","roomId":"r1","message":"hi"}"#,
            now,
        )
        .await;
    assert_eq!(outcome.error, None);

    let posts: Vec<(String, String)> = gateway.posted()[before..]
        .iter()
        .map(|p| (percent_decode(&p.path), p.body.clone()))
        .collect();
    let to = |conn: &str| -> Vec<String> {
        let path = format!("/prod/@connections/{conn}");
        posts
            .iter()
            .filter(|(p, _)| *p == path)
            .map(|(_, b)| b.clone())
            .collect()
    };
    let b_left = r#"{"type":"participantLeft","participantConnectionId":"B="}"#;
    assert_eq!(to("C="), ["hi", b_left]);
    assert_eq!(to("A="), [b_left]);
    assert_eq!(to("B="), ["hi"], "one post, answered 410");
    assert_eq!(sig.pusher().posts().gone, 1);
    assert_eq!(member_ids(sig.store(), "r1").await, ["A=", "C="]);
    assert_eq!(sig.store().lookup(&b, now).await.unwrap(), None);
}
