//! `--create-table` against moto (`AWS_ENDPOINT_URL`; skipped without it unless
//! `MESHCALL_MOTO` is set): the SSM `SecureString` parameters the function reads its secrets
//! from, and the SQS expiry queue, polled like Lambda's event source mapping: a delayed
//! message arrives no sooner than its delay, as an SQS event; the messages the function
//! reports in `batchItemFailures` come back after the visibility timeout, the others are
//! deleted.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{
    collections::HashMap,
    io::Write as _,
    time::{Duration, Instant, SystemTime},
};

use aws_config::SdkConfig;
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use support::{Gateway, Invocation, http, within};

/// The emulator's configuration from the environment, or `None` when the test skips.
async fn moto() -> Option<SdkConfig> {
    let required = std::env::var_os("MESHCALL_MOTO").is_some();
    if std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| !e.is_empty()) {
        return Some(aws_config::load_from_env().await);
    }
    assert!(
        !required,
        "MESHCALL_MOTO is set but AWS_ENDPOINT_URL is not: start moto (scripts/test does)"
    );
    let name = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(
        std::io::stderr(),
        "{name}: skipped: no emulator (run scripts/test, or set AWS_ENDPOINT_URL)"
    );
    None
}

/// A table name no other test run uses (moto's state is shared).
fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("gw-{name}-{}-{nanos}", std::process::id())
}

async fn parameter(sdk: &SdkConfig, name: &str) -> (String, String) {
    let p = aws_sdk_ssm::Client::new(sdk)
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap();
    (
        p.r#type.unwrap().as_str().to_owned(),
        p.value.unwrap_or_default(),
    )
}

/// The records of an SQS event, by body.
fn records(invocation: &Invocation) -> Vec<Value> {
    invocation.event["Records"].as_array().unwrap().clone()
}

/// Waits until `url` holds no message, visible or not.
async fn until_empty(sqs: &aws_sdk_sqs::Client, url: &str) {
    within("the queue to empty", async {
        loop {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap_or_default();
            let n = |name: QueueAttributeName| {
                attributes
                    .get(&name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(u64::MAX)
            };
            if n(QueueAttributeName::ApproximateNumberOfMessages) == 0
                && n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible) == 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Checks the SQS record `record` of one message with `body` from `table`'s queue,
/// received for the first time.
fn check_record(record: &Value, body: &str, table: &str) {
    assert_eq!(record["eventSource"], "aws:sqs");
    assert_eq!(record["body"], body);
    assert_eq!(record["awsRegion"], "us-east-1");
    assert!(
        record["eventSourceARN"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{table}-expiry")),
        "{record:#}"
    );
    assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
    for field in ["messageId", "receiptHandle", "md5OfBody"] {
        assert!(
            record[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {record:#}"
        );
    }
    assert_eq!(record["messageAttributes"], json!({}));
}

#[tokio::test]
async fn create_table_makes_the_secret_parameters() {
    let Some(sdk) = moto().await else { return };
    let table = unique("params");
    let gw = Gateway::start(&[
        "--create-table",
        "--table",
        &table,
        "--turn-secret",
        "turn-s3cret",
    ])
    .await;
    // Created before the gateway serves: its first answer means they exist.
    assert_eq!(http(gw.addr, "GET", "/healthz", &[], b"").await.status, 200);
    let (kind, resume) = parameter(&sdk, &format!("/{table}/resume-secret")).await;
    assert_eq!(kind, "SecureString");
    assert_eq!(resume.len(), 64);
    assert!(resume.bytes().all(|b| b.is_ascii_hexdigit()), "{resume}");
    let (kind, turn) = parameter(&sdk, &format!("/{table}/turn-secret")).await;
    assert_eq!(
        (kind.as_str(), turn.as_str()),
        ("SecureString", "turn-s3cret")
    );
    gw.stop().await;

    // A new run, a new resume secret.
    let gw = Gateway::start(&["--create-table", "--table", &table]).await;
    assert_eq!(http(gw.addr, "GET", "/healthz", &[], b"").await.status, 200);
    let (_, again) = parameter(&sdk, &format!("/{table}/resume-secret")).await;
    assert_ne!(again, resume);
    gw.stop().await;
}

#[tokio::test]
async fn the_expiry_queue_is_delivered_like_an_event_source_mapping() {
    let Some(sdk) = moto().await else { return };
    let table = unique("expiry");
    let gw = Gateway::start(&[
        "--create-table",
        "--table",
        &table,
        "--expiry-visibility-timeout",
        "1s",
        "--expiry-poll-interval",
        "50ms",
    ])
    .await;
    assert_eq!(http(gw.addr, "GET", "/healthz", &[], b"").await.status, 200);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .get_queue_url()
        .queue_name(format!("{table}-expiry"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let rt = gw.runtime();

    // A message delayed by 1 s (as the function sends one per suspension) comes no sooner.
    let sent = Instant::now();
    let body = json!({"expire": "AAAAAAAAAAAAAAAA", "at": 1}).to_string();
    sqs.send_message()
        .queue_url(&url)
        .message_body(&body)
        .delay_seconds(1)
        .send()
        .await
        .unwrap();
    let invocation = rt.next().await;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "delivered after {waited:?}"
    );
    let typed: SqsEvent = serde_json::from_value(invocation.event.clone()).unwrap();
    assert_eq!(typed.records.len(), 1);
    check_record(&invocation.event["Records"][0], &body, &table);
    rt.respond(&invocation, &json!({"batchItemFailures": []}))
        .await;

    // Two more: the function fails one; it comes back after the visibility timeout, the
    // other is deleted.
    for who in ["keep", "retry"] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(json!({"expire": who, "at": 2}).to_string())
            .send()
            .await
            .unwrap();
    }
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let mut failed_at = None;
    while seen.get("retry").map_or(0, Vec::len) < 2 {
        let invocation = rt.next().await;
        let mut failures = Vec::new();
        for record in records(&invocation) {
            let who: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
            let who = who["expire"].as_str().unwrap().to_owned();
            let count = record["attributes"]["ApproximateReceiveCount"]
                .as_str()
                .unwrap()
                .to_owned();
            if who == "retry" && count == "1" {
                failures.push(json!({"itemIdentifier": record["messageId"]}));
                failed_at = Some(Instant::now());
            }
            seen.entry(who).or_default().push(count);
        }
        rt.respond(&invocation, &json!({"batchItemFailures": failures}))
            .await;
    }
    let again = failed_at.unwrap().elapsed();
    assert!(
        again >= Duration::from_millis(900),
        "redelivered after {again:?}"
    );
    assert_eq!(seen["retry"], ["1", "2"]);
    assert_eq!(seen["keep"], ["1"]);

    // Everything processed is deleted: the queue empties, and the counters agree.
    until_empty(&sqs, &url).await;
    let s = within("the counters", async {
        loop {
            let s = http(gw.addr, "GET", "/_gateway/stats", &[], b"")
                .await
                .json();
            if s["expiryQueue"]["deleted"] == 3 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(s["expiryQueue"]["received"], 4, "{s:#}");
    assert_eq!(s["expiryQueue"]["failed"], 1, "{s:#}");
    assert!(s["invocations"]["sqs"].as_u64().unwrap() >= 3, "{s:#}");
    // Nothing more arrives.
    assert!(rt.next_within(Duration::from_millis(1500)).await.is_none());
    gw.stop().await;
}
