//! The table's layout: item keys, attribute names, expression helpers, decoding items into
//! rows (where an item whose `expiresAt` has passed reads as absent), and
//! [`create_table`] for emulators and tests. The deployment template defines the same table
//! for AWS; the crate root's docs describe the layout.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use aws_sdk_dynamodb::{
    Client,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, IndexStatus,
        KeySchemaElement, KeyType, Projection, ProjectionType, ScalarAttributeType, TableStatus,
        TimeToLiveSpecification,
    },
};
use meshcall_core::{
    Member, StoreError,
    protocol::{ConnectionId, RoomId},
};

/// The partition key of every item.
pub const PK: &str = "pk";
/// The table's one index, sparse: participants the sweep has something to do with, by
/// partition key `sweep` (`"grace"` or `"check"`) and sort key `sweepAt`, projecting
/// `socketId`.
pub const BY_SWEEP: &str = "bySweep";
/// The TTL attribute (epoch seconds) of every item.
pub const EXPIRES_AT: &str = "expiresAt";

pub(crate) const ROOM_ID: &str = "roomId";
pub(crate) const JOINED_AT: &str = "joinedAt";
pub(crate) const SOCKET_ID: &str = "socketId";
pub(crate) const PARTICIPANT_ID: &str = "participantId";
pub(crate) const SUSPENDED_UNTIL: &str = "suspendedUntil";
pub(crate) const MEMBERS: &str = "members";
pub(crate) const SWEEP: &str = "sweep";
pub(crate) const SWEEP_AT: &str = "sweepAt";
/// `sweep` of a suspended participant: `sweepAt` is the end of its grace.
pub(crate) const GRACE: &str = "grace";
/// `sweep` of an attached member of a room: `sweepAt` is its next liveness check.
pub(crate) const CHECK: &str = "check";

/// Expression placeholders (`#room`) and the attributes they stand for. Expressions name
/// attributes only through these, so no attribute name can collide with a reserved word.
const NAMES: [(&str, &str); 10] = [
    ("#pk", PK),
    ("#room", ROOM_ID),
    ("#joined", JOINED_AT),
    ("#socket", SOCKET_ID),
    ("#part", PARTICIPANT_ID),
    ("#until", SUSPENDED_UNTIL),
    ("#exp", EXPIRES_AT),
    ("#members", MEMBERS),
    ("#sweep", SWEEP),
    ("#sweepAt", SWEEP_AT),
];

/// An item as the SDK holds it.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// The expression attribute names an expression uses (DynamoDB refuses unused ones).
pub(crate) fn names_in(expressions: &[&str]) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for expr in expressions {
        let mut rest = *expr;
        while let Some(at) = rest.find('#') {
            let token_len = rest[at + 1..]
                .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(rest.len() - at - 1);
            let token = &rest[at..=at + token_len];
            if let Some((_, attr)) = NAMES.iter().find(|(t, _)| *t == token) {
                names.insert(token.to_owned(), (*attr).to_owned());
            }
            rest = &rest[at + 1 + token_len..];
        }
    }
    names
}

/// The key of a participant item, `p#<id>`.
pub(crate) fn participant_key(id: &ConnectionId) -> AttributeValue {
    AttributeValue::S(format!("p#{id}"))
}

/// The key of a socket item, `s#<id>`.
pub(crate) fn socket_key(id: &ConnectionId) -> AttributeValue {
    AttributeValue::S(format!("s#{id}"))
}

/// The key of a room item, `r#<id>`.
pub(crate) fn room_key(id: &RoomId) -> AttributeValue {
    AttributeValue::S(format!("r#{id}"))
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A one-element string set.
pub(crate) fn set_of(id: &ConnectionId) -> AttributeValue {
    AttributeValue::Ss(vec![id.to_string()])
}

/// Whole seconds since the epoch (the TTL attribute's unit); 0 before it.
pub(crate) fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Milliseconds since the epoch (for `joinedAt` and `suspendedUntil`); 0 before it.
pub(crate) fn epoch_millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An item the store cannot read: written by something else, or damaged.
#[derive(Debug, thiserror::Error)]
#[error("item {key} has no valid {attribute}")]
pub(crate) struct MalformedItem {
    key: String,
    attribute: &'static str,
}

fn malformed(item: &Item, attribute: &'static str) -> StoreError {
    let key = match item.get(PK) {
        Some(AttributeValue::S(k)) => k.clone(),
        _ => "(no key)".to_owned(),
    };
    StoreError::new(MalformedItem { key, attribute })
}

fn string<'a>(item: &'a Item, attribute: &'static str) -> Result<Option<&'a str>, StoreError> {
    match item.get(attribute) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(malformed(item, attribute)),
    }
}

fn number(item: &Item, attribute: &'static str) -> Result<Option<i64>, StoreError> {
    match item.get(attribute) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| malformed(item, attribute)),
        Some(_) => Err(malformed(item, attribute)),
    }
}

fn connection(item: &Item, attribute: &'static str) -> Result<Option<ConnectionId>, StoreError> {
    string(item, attribute)?
        .map(|v| ConnectionId::parse(v).map_err(|_| malformed(item, attribute)))
        .transpose()
}

fn room(item: &Item) -> Result<Option<RoomId>, StoreError> {
    string(item, ROOM_ID)?
        .map(|v| RoomId::parse(v).map_err(|_| malformed(item, ROOM_ID)))
        .transpose()
}

/// An item counts only until its `expiresAt` (TTL deletes it late, or never on emulators).
fn live(item: &Item, now: SystemTime) -> Result<bool, StoreError> {
    Ok(number(item, EXPIRES_AT)?.is_none_or(|exp| exp > epoch_secs(now)))
}

/// A socket item: which participant the socket carries (or, while that participant is
/// suspended, dropped from), and that participant's room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketRow {
    pub(crate) participant: ConnectionId,
    pub(crate) room: Option<RoomId>,
    /// Its participant is suspended from it (a copy of the participant's
    /// `suspendedUntil`): the socket is no one's to speak through.
    pub(crate) suspended: bool,
}

impl SocketRow {
    /// `None` for no item or an expired one.
    pub(crate) fn decode(item: Option<&Item>, now: SystemTime) -> Result<Option<Self>, StoreError> {
        let Some(item) = item else { return Ok(None) };
        if !live(item, now)? {
            return Ok(None);
        }
        Ok(Some(Self {
            participant: connection(item, PARTICIPANT_ID)?
                .ok_or_else(|| malformed(item, PARTICIPANT_ID))?,
            room: room(item)?,
            suspended: number(item, SUSPENDED_UNTIL)?.is_some(),
        }))
    }
}

/// A participant item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParticipantRow {
    pub(crate) id: ConnectionId,
    pub(crate) room: Option<RoomId>,
    /// The socket it is attached to or, while suspended, dropped from.
    pub(crate) socket: ConnectionId,
    /// Set while suspended: the end of the grace, in epoch milliseconds.
    pub(crate) suspended_until: Option<i64>,
    /// When it joined its room, in epoch milliseconds (orders a room's members).
    pub(crate) joined_at: i64,
    /// Its `expiresAt` (epoch seconds), if it has one: it reads as absent from then on.
    pub(crate) expires_at: Option<i64>,
}

impl ParticipantRow {
    /// `None` for no item or an expired one.
    pub(crate) fn decode(item: Option<&Item>, now: SystemTime) -> Result<Option<Self>, StoreError> {
        let Some(item) = item else { return Ok(None) };
        if !live(item, now)? {
            return Ok(None);
        }
        Ok(Some(Self {
            id: participant_id(item).ok_or_else(|| malformed(item, PK))?,
            room: room(item)?,
            socket: connection(item, SOCKET_ID)?.ok_or_else(|| malformed(item, SOCKET_ID))?,
            suspended_until: number(item, SUSPENDED_UNTIL)?,
            joined_at: number(item, JOINED_AT)?.unwrap_or(0),
            expires_at: number(item, EXPIRES_AT)?,
        }))
    }

    /// Attached to `socket` (not suspended from it).
    pub(crate) fn attached_to(&self, socket: &ConnectionId) -> bool {
        self.socket == *socket && self.suspended_until.is_none()
    }

    /// The socket to push to: none while suspended.
    pub(crate) fn reachable(&self) -> Option<ConnectionId> {
        self.suspended_until.is_none().then(|| self.socket.clone())
    }

    /// The participant as the core sees a room member.
    pub(crate) fn into_member(self) -> Member {
        Member {
            socket: self.reachable(),
            id: self.id,
        }
    }
}

/// The participant a participant item's key (`p#<id>`) names; `None` for any other key.
pub(crate) fn participant_id(item: &Item) -> Option<ConnectionId> {
    let key = item.get(PK)?.as_s().ok()?;
    ConnectionId::parse(key.strip_prefix("p#")?).ok()
}

/// The ids in a room item's member set (empty for no item). A room item never expires on
/// read: its set is checked against the participants it names instead.
pub(crate) fn member_set(item: Option<&Item>) -> Result<Vec<ConnectionId>, StoreError> {
    let Some(item) = item else {
        return Ok(Vec::new());
    };
    match item.get(MEMBERS) {
        None => Ok(Vec::new()),
        Some(AttributeValue::Ss(ids)) => ids
            .iter()
            .map(|id| ConnectionId::parse(id).map_err(|_| malformed(item, MEMBERS)))
            .collect(),
        Some(_) => Err(malformed(item, MEMBERS)),
    }
}

/// Creates the table as the deployment template does: on-demand, `pk` key, the one sparse
/// index `bySweep`, TTL on `expiresAt`. Waits (up to a minute) until the table and its
/// index are active. For emulators, tests and local development; AWS deployments use the
/// template.
///
/// # Errors
/// [`StoreError`] if a call fails, or the table is not active within a minute.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(StoreError::new)
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(StoreError::new)
    };
    let by_sweep = GlobalSecondaryIndex::builder()
        .index_name(BY_SWEEP)
        .key_schema(key(SWEEP, KeyType::Hash)?)
        .key_schema(key(SWEEP_AT, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .non_key_attributes(SOCKET_ID)
                .build(),
        )
        .build()
        .map_err(StoreError::new)?;
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(SWEEP, ScalarAttributeType::S)?)
        .attribute_definitions(attribute(SWEEP_AT, ScalarAttributeType::N)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .global_secondary_indexes(by_sweep)
        .send()
        .await
        .map_err(StoreError::new)?;
    wait_active(client, table).await?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(EXPIRES_AT)
                .build()
                .map_err(StoreError::new)?,
        )
        .send()
        .await
        .map_err(StoreError::new)?;
    Ok(())
}

/// The table was not active in time.
#[derive(Debug, thiserror::Error)]
#[error("table {0} did not become active")]
struct NotActive(String);

async fn wait_active(client: &Client, table: &str) -> Result<(), StoreError> {
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(StoreError::new)?;
        if let Some(t) = described.table() {
            let indexes_active = t
                .global_secondary_indexes()
                .iter()
                .all(|i| i.index_status() == Some(&IndexStatus::Active));
            if t.table_status() == Some(&TableStatus::Active) && indexes_active {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(StoreError::new(NotActive(table.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_finds_only_the_placeholders_used() {
        let names = names_in(&["SET #room = :r, #joined = :j", "#socket = :s AND #exp > :n"]);
        let mut keys: Vec<&str> = names.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["#exp", "#joined", "#room", "#socket"]);
        assert_eq!(names["#room"], ROOM_ID);
        assert!(names_in(&["attribute_not_exists(#pk)"]).contains_key("#pk"));
        assert!(names_in(&["#unknown = :x"]).is_empty());
    }

    #[test]
    fn expired_items_read_as_absent_and_bad_items_as_errors() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut item: Item = [
            (PK.to_owned(), s("p#A=")),
            (ROOM_ID.to_owned(), s("r1")),
            (SOCKET_ID.to_owned(), s("A=")),
            (EXPIRES_AT.to_owned(), n(1_001)),
        ]
        .into();
        let row = ParticipantRow::decode(Some(&item), now).unwrap().unwrap();
        assert_eq!(row.id.as_str(), "A=");
        assert_eq!(row.room.unwrap().as_str(), "r1");
        item.insert(EXPIRES_AT.to_owned(), n(1_000));
        assert_eq!(ParticipantRow::decode(Some(&item), now).unwrap(), None);
        item.insert(EXPIRES_AT.to_owned(), n(2_000));
        item.insert(ROOM_ID.to_owned(), s("not a room"));
        assert!(ParticipantRow::decode(Some(&item), now).is_err());
        item.insert(ROOM_ID.to_owned(), n(5));
        assert!(ParticipantRow::decode(Some(&item), now).is_err());
        let socket: Item = [(PK.to_owned(), s("s#A="))].into();
        assert!(
            SocketRow::decode(Some(&socket), now).is_err(),
            "no participantId"
        );
    }

    #[test]
    fn times_before_the_epoch_are_zero() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!((epoch_secs(before), epoch_millis(before)), (0, 0));
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!((epoch_secs(t), epoch_millis(t)), (1, 1_500));
    }
}
