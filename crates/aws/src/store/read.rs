//! The store's reads. All but [`members`](DynamoStore::query_members) and
//! [`due`](DynamoStore::due) are strongly consistent: they decide writes, or tell a joiner
//! who is already there. Every read skips items whose `expiresAt` has passed.

use std::{collections::HashMap, time::SystemTime};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use meshcall_core::{
    Member, StoreError,
    protocol::{ConnectionId, RoomId},
};

use super::DynamoStore;
use crate::{
    table::{
        BY_ROOM, BY_SUSPENSION, DUE, Item, PK, ParticipantRow, SocketRow, epoch_millis, member_set,
        n, names_in, participant_id, participant_key, room_key, s, socket_key,
    },
    transaction::{ATTEMPTS, Contended, backoff},
};

/// `BatchGetItem` takes at most 100 keys.
const BATCH_KEYS: usize = 100;

/// A room as its item's member set says, each member checked against its participant item.
#[derive(Debug, Default)]
pub(super) struct RoomRead {
    /// Members whose participant item is live and in the room, in join order.
    pub(super) live: Vec<ParticipantRow>,
    /// Ids in the set whose participant is gone or elsewhere (it vanished without leaving:
    /// TTL, or a crash between calls that no transaction could span).
    pub(super) stale: Vec<ConnectionId>,
}

impl RoomRead {
    /// The live members.
    pub(super) fn members(self) -> Vec<Member> {
        self.live
            .into_iter()
            .map(ParticipantRow::into_member)
            .collect()
    }
}

fn key_string(key: &AttributeValue) -> String {
    key.as_s().cloned().unwrap_or_default()
}

impl DynamoStore {
    /// One strongly consistent `GetItem`.
    pub(super) async fn get(&self, key: AttributeValue) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, key)
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::new)?;
        Ok(out.item)
    }

    /// Strongly consistent `BatchGetItem` calls (100 keys each), following unprocessed keys. Items
    /// by key.
    pub(super) async fn batch_get(
        &self,
        keys: Vec<AttributeValue>,
    ) -> Result<HashMap<String, Item>, StoreError> {
        let mut found = HashMap::new();
        let mut pending: Vec<HashMap<String, AttributeValue>> = keys
            .into_iter()
            .map(|k| HashMap::from([(PK.to_owned(), k)]))
            .collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            if attempt == ATTEMPTS {
                return Err(StoreError::new(Contended));
            }
            let rest = pending.split_off(pending.len().min(BATCH_KEYS));
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::replace(&mut pending, rest)))
                .consistent_read(true)
                .build()
                .map_err(StoreError::new)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(StoreError::new)?;
            for item in out
                .responses
                .into_iter()
                .flatten()
                .flat_map(|(_, items)| items)
            {
                found.insert(item.get(PK).map(key_string).unwrap_or_default(), item);
            }
            let unprocessed: Vec<_> = out
                .unprocessed_keys
                .into_iter()
                .flatten()
                .flat_map(|(_, k)| k.keys)
                .collect();
            if !unprocessed.is_empty() {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                pending.extend(unprocessed);
            }
        }
        Ok(found)
    }

    /// The participant attached to `socket`. One `BatchGetItem` reads both items when the
    /// participant has the socket's id (it never resumed), a `GetItem` more otherwise.
    pub(super) async fn attached(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<ParticipantRow>, StoreError> {
        Ok(self.attached_and(socket, None, now).await?.0)
    }

    /// [`attached`](Self::attached), reading the item at `also` in the same `BatchGetItem`
    /// (`None` for no such item, or when the socket is not there: then it is not read).
    pub(super) async fn attached_and(
        &self,
        socket: &ConnectionId,
        also: Option<AttributeValue>,
        now: SystemTime,
    ) -> Result<(Option<ParticipantRow>, Option<Item>), StoreError> {
        let (skey, pkey) = (socket_key(socket), participant_key(socket));
        let keys = [skey.clone(), pkey.clone()].into_iter().chain(also.clone());
        let mut items = self.batch_get(keys.collect()).await?;
        let Some(socket_row) = SocketRow::decode(items.get(&key_string(&skey)), now)? else {
            return Ok((None, None));
        };
        let also = also.and_then(|k| items.get(&key_string(&k)).cloned());
        let participant_item = if socket_row.participant == *socket {
            items.remove(&key_string(&pkey))
        } else {
            self.get(participant_key(&socket_row.participant)).await?
        };
        let me = ParticipantRow::decode(participant_item.as_ref(), now)?
            .filter(|p| p.id == socket_row.participant && p.socket.as_ref() == Some(socket));
        Ok((me, also))
    }

    /// Who is in `room` other than `except`, strongly consistent: the room item's member
    /// set (`GetItem`), each member's participant item (`BatchGetItem`, skipped when there
    /// is no one else).
    pub(super) async fn room_read(
        &self,
        room: &RoomId,
        except: Option<&ConnectionId>,
        now: SystemTime,
    ) -> Result<RoomRead, StoreError> {
        let mut ids = member_set(self.get(room_key(room)).await?.as_ref())?;
        ids.retain(|id| Some(id) != except);
        if ids.is_empty() {
            return Ok(RoomRead::default());
        }
        let items = self
            .batch_get(ids.iter().map(participant_key).collect())
            .await?;
        let mut read = RoomRead::default();
        for id in ids {
            let key = key_string(&participant_key(&id));
            match ParticipantRow::decode(items.get(&key), now)? {
                Some(p) if p.room.as_ref() == Some(room) => read.live.push(p),
                _ => read.stale.push(id),
            }
        }
        read.live
            .sort_by(|a, b| (a.joined_at, &a.id).cmp(&(b.joined_at, &b.id)));
        Ok(read)
    }

    /// Every member of `room`: Query on the `byRoom` index, page after page until
    /// `LastEvaluatedKey` is gone. Index reads are eventually consistent.
    pub(super) async fn query_members(
        &self,
        room: &RoomId,
        now: SystemTime,
    ) -> Result<Vec<Member>, StoreError> {
        let items = self
            .query_all(BY_ROOM, "#room = :room", vec![(":room", s(room.as_str()))])
            .await?;
        let mut members = Vec::with_capacity(items.len());
        for item in &items {
            if let Some(p) = ParticipantRow::decode(Some(item), now)? {
                members.push(p.into_member());
            }
        }
        Ok(members)
    }

    /// Suspended participants whose resume grace ended by `now`, for a scheduled sweep to
    /// pass to [`Signalling::expire`](meshcall_core::Signalling::expire): one Query per page
    /// of the sparse `bySuspension` index (only suspended participants are in it), never a
    /// Scan. Eventually consistent; `expire` checks each one again.
    ///
    /// # Errors
    /// [`StoreError`] if the Query fails.
    pub async fn due(&self, now: SystemTime) -> Result<Vec<ConnectionId>, StoreError> {
        let items = self
            .query_all(
                BY_SUSPENSION,
                "#sweep = :due AND #until <= :now",
                vec![(":due", s(DUE)), (":now", n(epoch_millis(now)))],
            )
            .await?;
        let mut due = Vec::with_capacity(items.len());
        for item in &items {
            match participant_id(item) {
                Some(id) => due.push(id),
                None => {
                    tracing::warn!(key = ?item.get(PK), "bySuspension holds a non-participant");
                }
            }
        }
        Ok(due)
    }

    /// Every item a Query on `index` finds, following `LastEvaluatedKey` to the last page.
    async fn query_all(
        &self,
        index: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Vec<Item>, StoreError> {
        let values: HashMap<String, AttributeValue> =
            values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(condition)
                .set_expression_attribute_names(Some(names_in(&[condition])))
                .set_expression_attribute_values(Some(values.clone()))
                .set_limit(self.page_size)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::new)?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok(items);
            }
        }
    }
}
