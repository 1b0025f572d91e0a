//! The function's event mapping, in process: the JSON events API Gateway and EventBridge
//! send (fixtures in `tests/fixtures`, shaped as AWS documents them) handled by
//! [`Function`] over `DynamoStore` on the DynamoDB emulator (moto, started by
//! `scripts/test`) and a recording pusher.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

#[path = "../../aws/tests/support/mod.rs"]
mod support;

use std::{
    sync::Mutex,
    time::{Duration, SystemTime},
};

use aws_sdk_sqs::types::QueueAttributeName;
use clap::Parser as _;
use meshcall_aws::DynamoStore;
use meshcall_core::{
    Config, Delivery, Outbound, PushError, Pusher, Resume, ResumeKey, Signalling,
    protocol::ConnectionId,
};
use meshcall_lambda::{Close, Event, EventError, ExpiryQueue, Function, Settings};
use serde_json::{Value, json};
use support::{RecordingPusher, assert_no_scans, id, store};

const GRACE: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Records pushes and closes (`DeleteConnection`).
#[derive(Debug, Default)]
struct Gateway {
    pushes: RecordingPusher,
    closed: Mutex<Vec<ConnectionId>>,
}

impl Pusher for Gateway {
    async fn push(&self, to: &ConnectionId, frame: &Outbound) -> Result<Delivery, PushError> {
        self.pushes.push(to, frame).await
    }

    async fn probe(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        self.pushes.probe(to).await
    }
}

impl Close for Gateway {
    async fn close(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        self.closed.lock().unwrap().push(to.clone());
        Ok(Delivery::Delivered)
    }
}

/// The function over `store`, admitting WebSocket clients from `origins` (any when empty).
fn over(store: DynamoStore, origins: &[&str]) -> Function<Gateway> {
    let config = Config {
        resume: Some(Resume {
            key: ResumeKey::from_secret("a shared secret of at least 32 characters"),
            grace: GRACE,
        }),
        ..Config::default()
    };
    Function::new(
        Signalling::new(store, Gateway::default(), config),
        origins.iter().map(ToString::to_string).collect(),
    )
}

/// The function over a fresh table, or `None` when the test should skip.
async fn function(test: &str, origins: &[&str]) -> Option<Function<Gateway>> {
    Some(over(store(test).await?, origins))
}

fn pushes(f: &Function<Gateway>) -> &RecordingPusher {
    &f.core().pusher().pushes
}

/// A `$connect` event for `conn` with `origin` (none when `None`).
fn connect_event(conn: &str, origin: Option<&str>) -> Value {
    let mut event = fixture("connect");
    event["requestContext"]["connectionId"] = json!(conn);
    if let Some(o) = origin {
        event["headers"]["Origin"] = json!(o);
    } else {
        for headers in ["headers", "multiValueHeaders"] {
            event[headers].as_object_mut().unwrap().remove("Origin");
        }
    }
    event
}

fn message_event(conn: &str, body: &Value) -> Value {
    let mut event = fixture("message");
    event["requestContext"]["connectionId"] = json!(conn);
    event["requestContext"]["routeKey"] = body["action"].clone();
    event["body"] = json!(body.to_string());
    event
}

fn disconnect_event(conn: &str, status: i64) -> Value {
    let mut event = fixture("disconnect");
    event["requestContext"]["connectionId"] = json!(conn);
    event["requestContext"]["disconnectStatusCode"] = json!(status);
    event
}

async fn handle(f: &Function<Gateway>, event: Value, now: SystemTime) -> Value {
    f.handle(event, now).await.unwrap()
}

/// The scheduled sweep at `at`; returns how many participants it expired.
async fn sweep(f: &Function<Gateway>, at: SystemTime) -> Value {
    handle(f, fixture("scheduled"), at).await["expired"].clone()
}

/// The expiry queue's message for `participant`, as the event source mapping delivers it.
fn expiry_event(participant: &str, at: SystemTime) -> Value {
    let mut event = fixture("sqs");
    let at = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    event["Records"][0]["body"] = json!(json!({"expire": participant, "at": at}).to_string());
    event
}

/// Connects `conn` and resumes on it the participant `joined` (its `joined` frame) names.
async fn resume(f: &Function<Gateway>, conn: &str, joined: &Value, now: SystemTime) {
    handle(f, connect_event(conn, None), now).await;
    let body = json!({"action": "resume", "token": joined["resumeToken"]});
    handle(f, message_event(conn, &body), now).await;
}

/// Connects `conn` and joins `room`; returns the `joined` frame.
async fn join(f: &Function<Gateway>, conn: &str, room: &str, now: SystemTime) -> Value {
    assert_eq!(
        handle(f, connect_event(conn, None), now).await,
        json!({"statusCode": 200})
    );
    let body = json!({"action": "joinRoom", "roomId": room});
    assert_eq!(
        handle(f, message_event(conn, &body), now).await,
        json!({"statusCode": 200})
    );
    let frames = pushes(f).drain_json(&id(conn));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "joined");
    frames[0].clone()
}

/// A1, B1 and C1 in room `r`, their frames so far cleared; returns B1's `joined`.
async fn trio(f: &Function<Gateway>, now: SystemTime) -> Value {
    join(f, "A1", "r", now).await;
    let joined = join(f, "B1", "r", now).await;
    join(f, "C1", "r", now).await;
    pushes(f).clear();
    joined
}

/// `to`'s socket vanished (API Gateway answers 410) and A1 signals it.
async fn signal_gone(f: &Function<Gateway>, to: &str, now: SystemTime) {
    pushes(f).mark_gone(&id(to));
    let signal = json!({"action": "signal", "to": to, "data": {"candidate": "x"}});
    handle(f, message_event("A1", &signal), now).await;
}

#[test]
fn every_fixture_is_recognised() {
    for name in ["connect", "message", "disconnect"] {
        assert!(
            matches!(Event::classify(fixture(name)), Ok(Event::WebSocket(_))),
            "{name}"
        );
    }
    assert!(matches!(
        Event::classify(fixture("scheduled")),
        Ok(Event::Sweep)
    ));
    assert!(matches!(
        Event::classify(fixture("sqs")),
        Ok(Event::Expiry(records)) if records.len() == 1
    ));
    assert!(Event::classify(json!({"hello": "world"})).is_err());
    let mut broken = fixture("message");
    broken["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("connectedAt");
    assert!(Event::classify(broken).is_err());
}

#[tokio::test]
async fn connect_checks_the_origin_like_the_self_hosted_server() {
    let Some(f) = function("origin", &["https://d1example.cloudfront.net"]).await else {
        return;
    };
    let now = SystemTime::now();
    let allowed = handle(
        &f,
        connect_event("A1", Some("https://d1example.cloudfront.net")),
        now,
    )
    .await;
    assert_eq!(allowed, json!({"statusCode": 200}));
    for origin in [Some("https://evil.example"), None] {
        let refused = handle(&f, connect_event("B1", origin), now).await;
        assert_eq!(refused["statusCode"], 403, "{origin:?}");
    }
    // The refused socket was never stored: a join from it (API Gateway would not pass one
    // on) is ignored, and no room learns of it.
    handle(
        &f,
        message_event("A1", &json!({"action": "joinRoom", "roomId": "r"})),
        now,
    )
    .await;
    handle(
        &f,
        message_event("B1", &json!({"action": "joinRoom", "roomId": "r"})),
        now,
    )
    .await;
    assert_eq!(
        pushes(&f).drain_json(&id("A1"))[0]["participants"],
        json!([])
    );
    pushes(&f).assert_drained();
}

#[tokio::test]
async fn messages_route_through_the_core_and_replies_are_pushed() {
    let Some(f) = function("messages", &[]).await else {
        return;
    };
    let now = SystemTime::now();
    let a = join(&f, "A1", "standup", now).await;
    assert_eq!(a["participants"], json!([]));
    let b = join(&f, "B1", "standup", now).await;
    assert_eq!(b["participants"], json!(["A1"]));
    assert_eq!(
        pushes(&f).drain_json(&id("A1")),
        [json!({"type": "newParticipant", "participantConnectionId": "B1"})]
    );
    let signal = json!({"action": "signal", "to": "A1", "data": {"sdp": "x"}});
    handle(&f, message_event("B1", &signal), now).await;
    assert_eq!(
        pushes(&f).drain_json(&id("A1")),
        [json!({"type": "signal", "from": "B1", "data": {"sdp": "x"}})]
    );
    // An unknown action reaches the function on `$default` and is answered there.
    let mut unknown = message_event("B1", &json!({"action": "dance"}));
    unknown["requestContext"]["routeKey"] = json!("$default");
    handle(&f, unknown, now).await;
    assert_eq!(pushes(&f).drain_json(&id("B1"))[0]["code"], "unknownAction");
    pushes(&f).assert_drained();
    assert_no_scans(f.core().store());
}

#[tokio::test]
async fn messages_over_the_configured_limit_are_refused() {
    let Some(f) = function("oversize", &[]).await else {
        return;
    };
    let now = SystemTime::now();
    join(&f, "A1", "r", now).await;
    // (Binary frames never reach the function: API Gateway closes with 1003.)
    // A body of `len` bytes.
    let sized = |len: usize| {
        let empty = json!({"action": "sendMsgToRoom", "roomId": "r", "message": ""});
        let message = "x".repeat(len - empty.to_string().len());
        let body = json!({"action": "sendMsgToRoom", "roomId": "r", "message": message});
        assert_eq!(body.to_string().len(), len);
        message_event("A1", &body)
    };
    let limit = f.core().config().max_message_bytes;
    // At the limit it reaches the room (where A1 is alone: nothing is pushed).
    handle(&f, sized(limit), now).await;
    pushes(&f).assert_drained();
    handle(&f, sized(limit + 1), now).await;
    assert_eq!(
        pushes(&f).drain_json(&id("A1"))[0]["code"],
        "messageTooLarge"
    );
}

#[tokio::test]
async fn events_without_a_connection_id_and_unknown_events_fail_the_invocation() {
    // Nothing reaches the store: one whose endpoint does not answer will do.
    let sdk = support::test_config(Some("http://127.0.0.1:9"));
    let f = over(DynamoStore::new(&sdk, "unused"), &[]);
    let now = SystemTime::now();
    for conn in [json!(null), json!(""), json!("not an id")] {
        let mut event = fixture("message");
        event["requestContext"]["connectionId"] = conn.clone();
        let result = f.handle(event, now).await;
        assert!(
            matches!(result, Err(EventError::NoConnection)),
            "{conn}: {result:?}"
        );
    }
    let result = f.handle(json!({"hello": "world"}), now).await;
    assert!(
        matches!(result, Err(EventError::Unrecognised)),
        "{result:?}"
    );
}

#[tokio::test]
async fn store_failures_answer_500_and_a_failed_sweep_fails_the_invocation() {
    let Some(sdk) = support::moto().await else {
        return;
    };
    let never_created = support::table_name("lambda-no-table");
    let f = over(DynamoStore::new(&sdk, never_created), &[]);
    let now = SystemTime::now();
    let failed = json!({"statusCode": 500});
    assert_eq!(handle(&f, connect_event("A1", None), now).await, failed);
    for status in [1001, 1006] {
        let response = handle(&f, disconnect_event("A1", status), now).await;
        assert_eq!(response, failed, "{status}");
    }
    // A message is still answered 200: the sender hears of the failure in an error frame.
    let body = json!({"action": "joinRoom", "roomId": "r"});
    assert_eq!(
        handle(&f, message_event("A1", &body), now).await,
        json!({"statusCode": 200})
    );
    assert_eq!(pushes(&f).drain_json(&id("A1"))[0]["code"], "internal");
    let result = f.handle(fixture("scheduled"), now).await;
    assert!(matches!(result, Err(EventError::Sweep(_))), "{result:?}");
}

#[tokio::test]
async fn a_clean_disconnect_tells_the_room_at_once() {
    let Some(f) = function("clean", &[]).await else {
        return;
    };
    let now = SystemTime::now();
    join(&f, "A1", "r", now).await;
    join(&f, "B1", "r", now).await;
    pushes(&f).clear();
    handle(&f, disconnect_event("B1", 1001), now).await;
    assert_eq!(
        pushes(&f).drain_json(&id("A1")),
        [json!({"type": "participantLeft", "participantConnectionId": "B1"})]
    );
    // Nothing is due for the sweep.
    let later = now + GRACE * 2;
    assert_eq!(sweep(&f, later).await, 0);
}

#[tokio::test]
async fn a_dropped_socket_is_kept_for_resume_until_the_sweep_after_its_grace() {
    let Some(f) = function("drop", &[]).await else {
        return;
    };
    let now = SystemTime::now();
    join(&f, "A1", "r", now).await;
    join(&f, "B1", "r", now).await;
    pushes(&f).clear();
    handle(&f, disconnect_event("B1", 1006), now).await;
    assert!(pushes(&f).pending().is_empty(), "a drop is not announced");
    // Within the grace the sweep finds nothing due.
    let within = now + GRACE / 2;
    assert_eq!(sweep(&f, within).await, 0);
    pushes(&f).assert_drained();
    let after = now + GRACE + Duration::from_secs(1);
    assert_eq!(sweep(&f, after).await, 1);
    assert_eq!(
        pushes(&f).drain_json(&id("A1")),
        [json!({"type": "participantLeft", "participantConnectionId": "B1"})]
    );
    // Swept once only.
    assert_eq!(sweep(&f, after).await, 0);
    assert_no_scans(f.core().store());
}

#[tokio::test]
async fn the_expiry_queue_ends_a_grace_and_a_resume_makes_its_message_harmless() {
    let Some(f) = function("expiry", &[]).await else {
        return;
    };
    let now = SystemTime::now();
    let joined = trio(&f, now).await;
    handle(&f, disconnect_event("B1", 1006), now).await;
    handle(&f, disconnect_event("C1", 1006), now).await;
    // B resumes; C does not. Both messages arrive after the grace.
    resume(&f, "B2", &joined, now).await;
    pushes(&f).clear();
    let after = now + GRACE + Duration::from_secs(1);
    for who in ["B1", "C1"] {
        let response = handle(&f, expiry_event(who, after), after).await;
        assert_eq!(response, json!({"batchItemFailures": []}), "{who}");
    }
    assert_eq!(
        pushes(&f).drain_json(&id("A1")),
        [json!({"type": "participantLeft", "participantConnectionId": "C1"})]
    );
    assert_eq!(
        pushes(&f).drain_json(&id("B2")),
        [json!({"type": "participantLeft", "participantConnectionId": "C1"})]
    );
    pushes(&f).assert_drained();
    // A malformed message is dropped, not retried forever.
    let mut bad = fixture("sqs");
    bad["Records"][0]["body"] = json!("not json");
    assert_eq!(
        handle(&f, bad, after).await,
        json!({"batchItemFailures": []})
    );
}

#[tokio::test]
async fn gone_is_not_left_a_pushed_410_suspends_and_a_later_drop_report_changes_nothing() {
    let Some(f) = function("gone-suspends", &[]).await else {
        return;
    };
    let now = SystemTime::now();
    let joined = trio(&f, now).await;
    // B's socket vanished: API Gateway answers 410 before its $disconnect runs.
    signal_gone(&f, "B1", now).await;
    pushes(&f).clear();
    let later = now + Duration::from_secs(2);
    handle(&f, disconnect_event("B1", 1006), later).await;
    // Nobody was told B left; its resume works within the grace counted from the 410.
    resume(&f, "B2", &joined, now + GRACE - Duration::from_secs(1)).await;
    let frames = pushes(&f).drain_json(&id("B2"));
    assert_eq!(frames[0]["type"], "joined", "{frames:?}");
    assert_eq!(frames[0]["connectionId"], "B1");
    assert_eq!(frames[0]["resumed"], true);
    pushes(&f).assert_drained();

    // C's socket vanishes too, and then its client closes cleanly: that ends it.
    signal_gone(&f, "C1", now).await;
    pushes(&f).clear();
    handle(&f, disconnect_event("C1", 1000), now).await;
    assert_eq!(
        pushes(&f).drain_json(&id("A1")),
        [json!({"type": "participantLeft", "participantConnectionId": "C1"})]
    );
}

#[tokio::test]
async fn a_resumed_participant_leaves_the_sweep_index() {
    let Some(f) = function("resume", &[]).await else {
        return;
    };
    let now = SystemTime::now();
    join(&f, "A1", "r", now).await;
    let joined = join(&f, "B1", "r", now).await;
    handle(&f, disconnect_event("B1", 1006), now).await;
    resume(&f, "B2", &joined, now).await;
    let frames = pushes(&f).drain_json(&id("B2"));
    assert_eq!(frames[0]["type"], "joined", "{frames:?}");
    assert_eq!(frames[0]["connectionId"], "B1");
    pushes(&f).clear();
    let after = now + GRACE * 2;
    assert_eq!(sweep(&f, after).await, 0);
    pushes(&f).assert_drained();
}

#[tokio::test]
async fn resuming_over_a_socket_still_open_closes_that_socket() {
    let Some(f) = function("takeover", &[]).await else {
        return;
    };
    let now = SystemTime::now();
    join(&f, "A1", "r", now).await;
    let joined = join(&f, "B1", "r", now).await;
    // No $disconnect for B1: API Gateway still holds it (a half-open socket).
    resume(&f, "B2", &joined, now).await;
    assert_eq!(pushes(&f).drain_json(&id("B2"))[0]["type"], "joined");
    assert_eq!(*f.core().pusher().closed.lock().unwrap(), [id("B1")]);
}

#[tokio::test]
async fn every_suspension_sends_one_message_delayed_until_its_grace_ends() {
    let Some(sdk) = support::moto().await else {
        return;
    };
    let Some(store) = store("expiry-queue").await else {
        return;
    };
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .create_queue()
        .queue_name(support::table_name("expiry"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let f = over(store, &[]).with_expiry_queue(ExpiryQueue::new(sqs.clone(), &queue));
    let now = SystemTime::now();
    trio(&f, now).await;
    // B drops; C's socket is found gone by a push (a signal from A); B's drop is reported
    // twice: each report schedules the grace's end again (the same end: the grace is not
    // extended), which costs one message and is harmless (`expire` is idempotent).
    handle(&f, disconnect_event("B1", 1006), now).await;
    handle(&f, disconnect_event("B1", 1006), now).await;
    signal_gone(&f, "C1", now).await;

    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let count = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .map_or(0, |v| v.parse::<u32>().unwrap())
    };
    // Three reports (B twice, C once), none visible before the grace ends.
    assert_eq!(
        count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        3,
        "{attributes:?}"
    );
    assert_eq!(
        count(QueueAttributeName::ApproximateNumberOfMessages),
        0,
        "{attributes:?}"
    );
}

#[tokio::test]
async fn secrets_are_read_from_secure_string_parameters() {
    let Some(sdk) = support::moto().await else {
        return;
    };
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let name = format!("/meshcall/{}/resume-secret", support::table_name("secrets"));
    ssm.put_parameter()
        .name(&name)
        .value("a resume secret of at least thirty-two characters")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let settings = Settings::try_parse_from([
        "bootstrap",
        "--table",
        "t",
        "--resume-secret-parameter",
        &name,
    ])
    .unwrap();
    let secrets = meshcall_lambda::secrets::read(&ssm, &settings)
        .await
        .unwrap();
    assert_eq!(
        secrets.resume.as_deref(),
        Some("a resume secret of at least thirty-two characters")
    );
    assert!(secrets.turn.is_none());
    assert!(settings.core_config(&secrets).unwrap().resume.is_some());
    // A parameter that does not exist fails the init, naming it.
    let missing = Settings::try_parse_from([
        "bootstrap",
        "--table",
        "t",
        "--turn-secret-parameter",
        "/meshcall/nowhere/turn-secret",
    ])
    .unwrap();
    let error = meshcall_lambda::secrets::read(&ssm, &missing)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("/meshcall/nowhere/turn-secret"));
}

#[tokio::test]
async fn an_expiry_the_store_cannot_make_is_reported_for_redelivery() {
    let Some(sdk) = support::moto().await else {
        return;
    };
    let never_created = support::table_name("lambda-no-table-expiry");
    let f = over(DynamoStore::new(&sdk, never_created), &[]);
    let event = fixture("sqs");
    let message_id = event["Records"][0]["messageId"].clone();
    assert_eq!(
        handle(&f, event, SystemTime::now()).await,
        json!({"batchItemFailures": [{"itemIdentifier": message_id}]})
    );
}
