//! The core's routes, unchanged, over `DynamoStore` (moto) and a recording pusher: the
//! scenarios of the self-hosted server hold on the AWS store, and each message kind costs
//! the DynamoDB requests the crate docs state.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
#![allow(
    clippy::many_single_char_names,
    reason = "participants are a, b, c, ... as in a diagram"
)]

mod support;

use std::time::{Duration, SystemTime};

use meshcall_aws::{Calls, DynamoStore};
use meshcall_core::{
    Config, ConnectionStore, Resume, ResumeKey, Signalling, Suspension,
    protocol::{ConnectionId, ErrorCode},
};
use serde_json::{Value, json};
use support::{RecordingPusher, assert_no_scans, id, member_ids, store};

const GRACE: Duration = Duration::from_secs(30);
/// Signs the resume tokens of every `World`.
const KEY: ResumeKey = ResumeKey::new([9; 32]);

/// `Signalling` over a fresh table, with a clock that moves a millisecond per step so join
/// order is well defined.
struct World {
    sig: Signalling<DynamoStore, RecordingPusher>,
    t0: SystemTime,
    step: std::sync::atomic::AtomicU64,
}

impl World {
    async fn new(test: &str, max_room_size: usize) -> Option<Self> {
        let config = Config {
            max_room_size,
            resume: Some(Resume {
                key: KEY,
                grace: GRACE,
            }),
            ..Config::default()
        };
        Some(Self {
            sig: Signalling::new(store(test).await?, RecordingPusher::default(), config),
            t0: SystemTime::now(),
            step: 0.into(),
        })
    }

    fn now(&self) -> SystemTime {
        let step = self.step.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.t0 + Duration::from_millis(step)
    }

    fn pusher(&self) -> &RecordingPusher {
        self.sig.pusher()
    }

    async fn connect(&self, name: &str) -> ConnectionId {
        let conn = id(name);
        self.sig.connect(&conn, self.now()).await.unwrap();
        conn
    }

    /// Connects each of `names`, in order.
    async fn connect_all<const N: usize>(&self, names: [&str; N]) -> [ConnectionId; N] {
        let mut conns = Vec::with_capacity(N);
        for name in names {
            conns.push(self.connect(name).await);
        }
        conns.try_into().unwrap()
    }

    async fn send(&self, from: &ConnectionId, text: &str) -> Option<ErrorCode> {
        self.sig.message(from, text, self.now()).await.error
    }

    async fn join(&self, from: &ConnectionId, r: &str) -> Option<ErrorCode> {
        self.send(
            from,
            &json!({"action": "joinRoom", "roomId": r}).to_string(),
        )
        .await
    }

    async fn members(&self, r: &str) -> Vec<String> {
        member_ids(self.sig.store(), r).await
    }

    fn calls(&self) -> Calls {
        self.sig.store().calls()
    }
}

fn left(conn: &str) -> Value {
    json!({"type": "participantLeft", "participantConnectionId": conn})
}

fn newcomer(conn: &str) -> Value {
    json!({"type": "newParticipant", "participantConnectionId": conn})
}

#[tokio::test]
async fn the_tutorial_walkthrough_works_on_dynamodb() {
    let Some(w) = World::new("routes-tutorial", 8).await else {
        return;
    };
    let [a, b, c] = w.connect_all(["A=", "B=", "C="]).await;
    w.join(&a, "123").await;
    w.join(&b, "123").await;
    w.pusher().clear();

    assert_eq!(w.join(&c, "123").await, None);
    for other in [&a, &b] {
        assert_eq!(w.pusher().drain_json(other), [newcomer("C=")]);
    }
    let joined = w.pusher().drain_json(&c);
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["type"], "joined");
    assert_eq!(joined[0]["connectionId"], "C=");
    assert_eq!(joined[0]["participants"], json!(["A=", "B="]));

    let hello = r#"{"action": "sendMsgToRoom", "roomId": "123", "message": "hello world!"}"#;
    assert_eq!(w.send(&a, hello).await, None);
    for other in [&b, &c] {
        assert_eq!(w.pusher().drain(other), ["hello world!"]);
    }
    w.pusher().assert_drained();
    assert_no_scans(w.sig.store());
}

#[tokio::test]
async fn signal_reaches_only_its_target_in_the_senders_room() {
    let Some(w) = World::new("routes-signal", 8).await else {
        return;
    };
    let [a, b, c, d] = w.connect_all(["A=", "B=", "C=", "D="]).await;
    w.join(&a, "123").await;
    w.join(&b, "123").await;
    w.join(&c, "456").await;
    w.pusher().clear();

    let offer = r#"{"action":"signal","to":"B=","from":"C=","data":{"sdp":"v=0"}}"#;
    assert_eq!(w.send(&a, offer).await, None);
    assert_eq!(
        w.pusher().drain(&b),
        [r#"{"type":"signal","from":"A=","data":{"sdp":"v=0"}}"#]
    );
    for to in ["C=", "D=", "ghost"] {
        let text = format!(r#"{{"action":"signal","to":"{to}","data":{{}}}}"#);
        assert_eq!(
            w.send(&a, &text).await,
            Some(ErrorCode::PeerNotFound),
            "{to}"
        );
        assert_eq!(w.pusher().drain_json(&a)[0]["to"], to);
    }
    let text = r#"{"action":"signal","to":"A=","data":{}}"#;
    assert_eq!(w.send(&d, text).await, Some(ErrorCode::NotInRoom));
    assert_eq!(w.pusher().drain_json(&d)[0]["code"], "notInRoom");
    w.pusher().assert_drained();
}

#[tokio::test]
async fn leaving_switching_and_disconnecting_tell_the_room() {
    let Some(w) = World::new("routes-leave", 8).await else {
        return;
    };
    let [a, b, c] = w.connect_all(["A=", "B=", "C="]).await;
    for conn in [&a, &b, &c] {
        w.join(conn, "123").await;
    }
    w.pusher().clear();

    assert_eq!(w.send(&a, r#"{"action":"leaveRoom"}"#).await, None);
    assert_eq!(w.pusher().drain_json(&b), [left("A=")]);
    assert_eq!(w.pusher().drain_json(&c), [left("A=")]);
    assert_eq!(
        w.send(&a, r#"{"action":"leaveRoom"}"#).await,
        Some(ErrorCode::NotInRoom)
    );
    w.pusher().clear();

    w.join(&b, "456").await;
    assert_eq!(w.pusher().drain_json(&c), [left("B=")]);
    w.pusher().clear();

    w.sig.disconnect(&c, w.now()).await.unwrap();
    w.sig.disconnect(&c, w.now()).await.unwrap();
    assert!(
        w.pusher().pending().is_empty(),
        "no one left in 123 to tell"
    );
    assert!(w.members("123").await.is_empty());
    assert_eq!(w.members("456").await, ["B="]);
}

#[tokio::test]
async fn a_full_room_refuses_with_room_full() {
    let Some(w) = World::new("routes-full", 2).await else {
        return;
    };
    let [a, b, c] = w.connect_all(["A=", "B=", "C="]).await;
    w.join(&a, "123").await;
    w.join(&b, "123").await;
    w.pusher().clear();
    assert_eq!(w.join(&c, "123").await, Some(ErrorCode::RoomFull));
    assert_eq!(w.pusher().drain_json(&c)[0]["code"], "roomFull");
    w.pusher().assert_drained();
    assert_eq!(w.members("123").await, ["A=", "B="]);
}

#[tokio::test]
async fn a_gone_receiver_is_suspended_not_left_and_a_clean_close_then_ends_it() {
    let Some(w) = World::new("routes-gone", 8).await else {
        return;
    };
    let [a, b, c] = w.connect_all(["A=", "B=", "C="]).await;
    for conn in [&a, &b, &c] {
        w.join(conn, "123").await;
    }
    w.pusher().clear();
    w.pusher().mark_gone(&b);

    let hi = r#"{"action":"sendMsgToRoom","roomId":"123","message":"hi"}"#;
    assert_eq!(w.send(&a, hi).await, None);
    assert_eq!(w.pusher().drain(&c), ["hi"]);
    assert!(w.pusher().drain(&a).is_empty(), "no one is told b left");
    assert_eq!(
        w.members("123").await,
        ["A=", "B=", "C="],
        "b keeps its seat"
    );
    assert_eq!(w.sig.store().lookup(&b, w.now()).await.unwrap(), None);
    // API Gateway's $disconnect for the same socket, reported as a drop: nothing changes.
    assert!(w.sig.suspend(&b, w.now()).await.unwrap().is_some());
    assert!(w.pusher().pending().iter().all(|p| p.to == b));

    w.pusher().clear();
    w.sig.disconnect(&b, w.now()).await.unwrap();
    assert_eq!(w.pusher().drain_json(&a), [left("B=")]);
    assert_eq!(w.pusher().drain_json(&c), [left("B=")]);
    assert_eq!(w.members("123").await, ["A=", "C="]);
}

#[tokio::test]
async fn a_dropped_participant_resumes_unseen_or_its_room_is_told_when_the_grace_ends() {
    let Some(w) = World::new("routes-resume", 8).await else {
        return;
    };
    let [a, b] = w.connect_all(["A=", "B="]).await;
    w.join(&a, "123").await;
    w.join(&b, "123").await;
    let token = w.pusher().drain_json(&a)[0]["resumeToken"]
        .as_str()
        .unwrap()
        .to_owned();
    w.pusher().clear();

    let Suspension { id: who, until } = w.sig.suspend(&a, w.now()).await.unwrap().unwrap();
    assert_eq!(who, a);
    let n = w.connect("N=").await;
    let resume = json!({"action": "resume", "token": token}).to_string();
    assert_eq!(w.send(&n, &resume).await, None);
    let joined = w.pusher().drain_json(&n);
    assert_eq!(joined[0]["connectionId"], "A=");
    assert_eq!(joined[0]["resumed"], true);
    assert_eq!(joined[0]["participants"], json!(["B="]));
    assert!(w.pusher().drain_json(&b).is_empty(), "b never saw a leave");
    w.sig.expire(&a, until).await.unwrap();
    assert_eq!(w.members("123").await, ["A=", "B="]);

    // Frames to A reach the new socket.
    w.send(&b, r#"{"action":"signal","to":"A=","data":1}"#)
        .await;
    assert_eq!(
        w.pusher().drain_json(&n),
        [json!({"type": "signal", "from": "B=", "data": 1})]
    );

    // Dropped again, and not back in time.
    let until = w.sig.suspend(&n, w.now()).await.unwrap().unwrap().until;
    w.sig.expire(&a, until).await.unwrap();
    assert_eq!(w.pusher().drain_json(&b), [left("A=")]);
    assert_eq!(w.members("123").await, ["B="]);
    let m = w.connect("M=").await;
    assert_eq!(w.send(&m, &resume).await, Some(ErrorCode::ResumeFailed));
}

/// The requests one step made.
async fn cost<F: std::future::Future>(w: &World, step: F) -> Calls {
    let before = w.calls();
    step.await;
    w.calls().since(&before)
}

/// Asserts a route's requests, by operation, and that none of its reads touched an index
/// or was eventually consistent (fan-outs must see every member whose join returned).
#[track_caller]
fn assert_calls(route: &str, calls: &Calls, expected: &[(&str, u64)]) {
    let got: Vec<(&str, u64)> = calls.iter().collect();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "{route}: {calls}");
    let reads: Vec<String> = calls.reads().map(|(r, n)| format!("{r} {n}")).collect();
    assert_eq!(
        (calls.index_reads(), calls.eventual_reads()),
        (0, 0),
        "{route} reads: {reads:?}"
    );
    eprintln!("{route:<40} {calls}");
}

#[tokio::test]
#[allow(
    clippy::too_many_lines,
    reason = "one table of routes, read top to bottom"
)]
async fn each_message_kind_costs_the_documented_requests_and_reads_consistently() {
    let Some(w) = World::new("routes-calls", 8).await else {
        return;
    };
    let [a, b, c, d] = w.connect_all(["A=", "B=", "C=", "D="]).await;
    w.join(&a, "123").await;
    w.join(&b, "123").await;
    w.join(&c, "456").await;

    let (get, batch, tx, query) = ("GetItem", "BatchGetItem", "TransactWriteItems", "Query");
    let e = id("E=");
    let calls = cost(&w, w.sig.connect(&e, w.now())).await;
    assert_calls("$connect", &calls, &[(tx, 1)]);
    let calls = cost(&w, w.join(&e, "789")).await;
    assert_calls(
        "joinRoom (empty room)",
        &calls,
        &[(batch, 1), (get, 1), (tx, 1)],
    );
    let calls = cost(&w, w.join(&e, "123")).await;
    assert_calls(
        "joinRoom (switching rooms, old one empty)",
        &calls,
        &[(batch, 2), (get, 2), (tx, 1)],
    );
    w.send(&e, r#"{"action":"leaveRoom"}"#).await;
    let calls = cost(&w, w.join(&e, "456")).await;
    assert_calls(
        "joinRoom (newParticipant to 1)",
        &calls,
        &[(batch, 2), (get, 1), (tx, 1)],
    );
    let calls = cost(&w, w.join(&e, "456")).await;
    assert_calls("joinRoom (already there)", &calls, &[(batch, 2)]);
    let calls = cost(&w, w.join(&e, "123")).await;
    assert_calls(
        "joinRoom (switching, participantLeft)",
        &calls,
        &[(batch, 3), (get, 2), (tx, 1)],
    );
    let hi = r#"{"action":"sendMsgToRoom","roomId":"123","message":"hi"}"#;
    let calls = cost(&w, w.send(&a, hi)).await;
    assert_calls("sendMsgToRoom", &calls, &[(get, 2), (batch, 1)]);
    let signal = r#"{"action":"signal","to":"B=","data":{}}"#;
    let calls = cost(&w, w.send(&a, signal)).await;
    assert_calls("signal", &calls, &[(get, 2)]);
    let calls = cost(&w, w.send(&a, r#"{"action":"ping"}"#)).await;
    assert_calls("ping", &calls, &[]);
    let calls = cost(&w, w.send(&e, r#"{"action":"leaveRoom"}"#)).await;
    assert_calls("leaveRoom", &calls, &[(batch, 2), (tx, 1), (get, 1)]);
    let calls = cost(&w, async { w.sig.disconnect(&d, w.now()).await.unwrap() }).await;
    assert_calls("$disconnect (in no room)", &calls, &[(batch, 1), (tx, 1)]);
    let calls = cost(&w, async { w.sig.disconnect(&c, w.now()).await.unwrap() }).await;
    assert_calls(
        "$disconnect (last one out of a room)",
        &calls,
        &[(batch, 1), (tx, 1), (get, 1)],
    );
    let full = World::new("routes-calls-full", 1).await.unwrap();
    let [f, g] = full.connect_all(["F=", "G="]).await;
    full.join(&f, "1").await;
    let calls = cost(&full, full.join(&g, "1")).await;
    let probes = full.pusher().probed();
    assert_calls("joinRoom (full)", &calls, &[(batch, 2)]);
    assert_eq!(
        probes,
        std::slice::from_ref(&f),
        "the full room's members are probed (as the refusal read them)"
    );
    // Knocking again: the same holder, known live, is not read again, nor probed (the
    // core probes a full room at most every 5 s).
    let calls = cost(&full, full.join(&g, "1")).await;
    assert_calls("joinRoom (full, knocking again)", &calls, &[(batch, 1)]);
    assert_eq!(full.pusher().probed().len(), 1, "not probed again");
    // Five seconds on: probed again, its members read for that.
    let later = full.now() + Duration::from_secs(5);
    let knock = json!({"action": "joinRoom", "roomId": "1"}).to_string();
    let calls = cost(&full, full.sig.message(&g, &knock, later)).await;
    assert_calls(
        "joinRoom (full, probed again)",
        &calls,
        &[(batch, 2), (get, 1)],
    );
    assert_eq!(full.pusher().probed(), [f.clone(), f.clone()]);

    let token = KEY.token(&b);
    let calls = cost(&w, async { w.sig.suspend(&b, w.now()).await.unwrap() }).await;
    assert_calls("drop (suspend)", &calls, &[(batch, 1), (tx, 1)]);
    let calls = cost(&w, async { w.sig.suspend(&b, w.now()).await.unwrap() }).await;
    assert_calls("drop reported again", &calls, &[(batch, 1)]);
    let n = w.connect("N=").await;
    let resume = json!({"action": "resume", "token": token}).to_string();
    let calls = cost(&w, w.send(&n, &resume)).await;
    assert_calls("resume", &calls, &[(batch, 2), (get, 1), (tx, 1)]);
    let calls = cost(&w, async { w.sig.expire(&b, w.now()).await.unwrap() }).await;
    assert_calls("expire (resumed: nothing to do)", &calls, &[(get, 1)]);

    w.pusher().mark_gone(&a);
    let calls = cost(&w, w.send(&n, hi)).await;
    assert_calls(
        "sendMsgToRoom, one receiver gone",
        &calls,
        &[(get, 2), (batch, 2), (tx, 1)],
    );
    let until = w.sig.suspend(&n, w.now()).await.unwrap().unwrap().until;
    let calls = cost(&w, async { w.sig.expire(&b, until).await.unwrap() }).await;
    assert_calls(
        "expire (grace over, participantLeft)",
        &calls,
        &[(get, 2), (tx, 1), (batch, 1)],
    );

    // Only the sweep reads an index: bySweep, eventually consistent (a Query on an index
    // cannot be anything else); what it finds is read again consistently.
    let s = w.connect("S=").await;
    w.join(&s, "999").await;
    let before = w.calls();
    let swept = w
        .sig
        .sweep(until + Duration::from_hours(1), Duration::from_mins(5))
        .await
        .unwrap();
    let calls = w.calls().since(&before);
    eprintln!("{:<40} {calls}  ({swept:?})", "the sweep");
    let queries: Vec<(String, u64)> = calls
        .reads()
        .filter(|(r, _)| r.operation == query)
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    assert_eq!(
        queries,
        [("Query bySweep eventual".to_owned(), 2)],
        "{calls}"
    );
    assert_eq!(calls.index_reads(), 2);
    assert_eq!(calls.eventual_reads(), 2, "only the index Queries");
    assert_eq!(
        (swept.expired, swept.probed, swept.gone),
        (1, 1, 0),
        "{swept:?}"
    );
    assert_eq!(
        calls.get("UpdateItem"),
        1,
        "the live one's next check: {calls}"
    );
    assert_no_scans(w.sig.store());
}
