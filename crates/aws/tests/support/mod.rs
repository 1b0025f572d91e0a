//! Shared by the AWS adapter tests: the SDK configuration for the local DynamoDB emulator
//! (moto's server, started by `scripts/test`), a fresh table per test, and a recording
//! pusher.
//!
//! With `MESHCALL_MOTO` set (as `scripts/test` does), a missing or unreachable emulator
//! fails the test. Without it, tests that need the emulator skip with a message unless
//! `AWS_ENDPOINT_URL` names one, so a plain `cargo test` works anywhere and never reaches
//! real AWS.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::{
    collections::HashSet,
    io::Write as _,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime},
};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use meshcall_aws::{DynamoStore, create_table};
use meshcall_core::{
    ConnectionStore, Delivery, Outbound, PushError, Pusher,
    protocol::{ConnectionId, RoomId},
};
use serde_json::Value;

pub(crate) fn id(s: &str) -> ConnectionId {
    ConnectionId::parse(s).unwrap()
}

pub(crate) fn room(s: &str) -> RoomId {
    RoomId::parse(s).unwrap()
}

/// The region of every test client.
pub(crate) const REGION: &str = "us-east-1";

/// Static credentials, for emulators and stubs (requests are still signed).
pub(crate) fn credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        "test",
        "test",
        None,
        None,
        "meshcall-tests",
    ))
}

/// Static credentials and a region, for emulators and stubs.
pub(crate) fn test_config(endpoint: Option<&str>) -> SdkConfig {
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials());
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    config.build()
}

/// The emulator's SDK configuration, or `None` (with a message) when the test should skip.
///
/// # Panics
/// With `MESHCALL_MOTO` set, if the emulator is not configured or does not answer.
pub(crate) async fn moto() -> Option<SdkConfig> {
    let required = std::env::var_os("MESHCALL_MOTO").is_some();
    let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        assert!(
            !required,
            "MESHCALL_MOTO is set but AWS_ENDPOINT_URL is not: start moto (scripts/test does)"
        );
        skipped("no DynamoDB emulator (run scripts/test, or set AWS_ENDPOINT_URL)");
        return None;
    };
    let config = test_config(Some(&endpoint));
    let client = aws_sdk_dynamodb::Client::new(&config);
    let probe = tokio::time::timeout(
        Duration::from_secs(10),
        client.list_tables().limit(1).send(),
    )
    .await;
    let failure = match probe {
        Ok(Ok(_)) => return Some(config),
        Ok(Err(e)) => format!(
            "failed: {}",
            aws_sdk_dynamodb::error::DisplayErrorContext(e)
        ),
        Err(elapsed) => format!("did not answer: {elapsed}"),
    };
    assert!(
        !required,
        "MESHCALL_MOTO is set but the emulator at {endpoint} {failure}"
    );
    skipped(&format!("the DynamoDB emulator at {endpoint} {failure}"));
    None
}

/// Says a test skipped, past the test harness's output capture (which hides what passing
/// tests print).
fn skipped(why: &str) {
    let name = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "{name}: skipped: {why}");
}

/// A unique table name for `test` (moto's state is shared by every test process).
pub(crate) fn table_name(test: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("meshcall-{test}-{}-{nanos}-{seq}", std::process::id())
}

/// A store on a fresh table of its own, or `None` when the test should skip.
pub(crate) async fn store(test: &str) -> Option<DynamoStore> {
    let config = moto().await?;
    let table = table_name(test);
    let store = DynamoStore::new(&config, &table);
    create_table(store.client(), &table)
        .await
        .unwrap_or_else(|e| panic!("creating table {table}: {e:?}"));
    Some(store)
}

/// The ids of `r`'s members, in the order `members` gives them (join order).
pub(crate) async fn member_ids(store: &DynamoStore, r: &str) -> Vec<String> {
    let members = store.members(&room(r), SystemTime::now()).await.unwrap();
    members.into_iter().map(|m| m.id.to_string()).collect()
}

/// Asserts the store never scanned.
#[track_caller]
pub(crate) fn assert_no_scans(store: &DynamoStore) {
    let calls = store.calls();
    assert_eq!(calls.get("Scan"), 0, "a Scan was made: {calls}");
    assert!(
        calls.get("Query") + calls.get("GetItem") > 0,
        "nothing counted: {calls}"
    );
}

/// One push the core made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Push {
    pub(crate) to: ConnectionId,
    pub(crate) frame: Outbound,
    pub(crate) gone: bool,
}

/// A [`Pusher`] that records every push and probe; connections marked gone answer
/// [`Delivery::Gone`], as API Gateway's 410 would.
#[derive(Debug, Default)]
pub(crate) struct RecordingPusher {
    pushes: Mutex<Vec<Push>>,
    probes: Mutex<Vec<ConnectionId>>,
    gone: Mutex<HashSet<ConnectionId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingPusher {
    pub(crate) fn mark_gone(&self, conn: &ConnectionId) {
        lock(&self.gone).insert(conn.clone());
    }

    /// The connections probed so far, in order.
    pub(crate) fn probed(&self) -> Vec<ConnectionId> {
        lock(&self.probes).clone()
    }

    /// Forgets every push so far.
    pub(crate) fn clear(&self) {
        lock(&self.pushes).clear();
    }

    /// The frames delivered to `conn`, in order, as text; every push to it is forgotten.
    pub(crate) fn drain(&self, conn: &ConnectionId) -> Vec<String> {
        let mut pushes = lock(&self.pushes);
        let (mine, rest): (Vec<Push>, Vec<Push>) = pushes.drain(..).partition(|p| &p.to == conn);
        *pushes = rest;
        mine.into_iter()
            .filter(|p| !p.gone)
            .map(|p| p.frame.text.to_string())
            .collect()
    }

    /// As [`Self::drain`], parsed as JSON.
    pub(crate) fn drain_json(&self, conn: &ConnectionId) -> Vec<Value> {
        self.drain(conn)
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or_else(|e| panic!("{t:?}: {e}")))
            .collect()
    }

    /// Every push not drained yet.
    pub(crate) fn pending(&self) -> Vec<Push> {
        lock(&self.pushes).clone()
    }

    /// Asserts that every push was drained (or cleared).
    #[track_caller]
    pub(crate) fn assert_drained(&self) {
        let pending = self.pending();
        assert!(pending.is_empty(), "pushes not drained: {pending:?}");
    }
}

impl Pusher for RecordingPusher {
    async fn push(&self, to: &ConnectionId, frame: &Outbound) -> Result<Delivery, PushError> {
        let gone = lock(&self.gone).contains(to);
        lock(&self.pushes).push(Push {
            to: to.clone(),
            frame: frame.clone(),
            gone,
        });
        Ok(if gone {
            Delivery::Gone
        } else {
            Delivery::Delivered
        })
    }

    async fn probe(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        lock(&self.probes).push(to.clone());
        Ok(if lock(&self.gone).contains(to) {
            Delivery::Gone
        } else {
            Delivery::Delivered
        })
    }
}
