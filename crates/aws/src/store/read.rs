//! The store's reads, all strongly consistent on the base table (no index: index reads are
//! eventually consistent, and every read here either decides a write or tells someone who
//! is in a room). Every read skips items whose `expiresAt` has passed. The sweep's Query is
//! in `sweep`.

use std::{collections::HashMap, time::SystemTime};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use meshcall_core::{
    Member, Presence, StoreError,
    protocol::{ConnectionId, RoomId},
};

use super::DynamoStore;
use crate::{
    table::{
        Item, PK, ParticipantRow, SocketRow, member_set, participant_key, room_key, socket_key,
    },
    transaction::{PAUSE_BUDGET, backoff},
};

/// `BatchGetItem` takes at most 100 keys.
const BATCH_KEYS: usize = 100;

/// `BatchGetItem` left keys unprocessed (throttling) for longer than the pause budget.
#[derive(Debug, thiserror::Error)]
#[error("BatchGetItem kept leaving {0} keys unprocessed")]
struct Unprocessed(usize);

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

/// The key string of an item key (`p#<id>`).
pub(super) fn key_string(key: &AttributeValue) -> String {
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

    /// Strongly consistent `BatchGetItem` calls (100 keys each), retrying unprocessed keys
    /// after a backoff. Items by key string.
    pub(super) async fn batch_get(
        &self,
        keys: Vec<AttributeValue>,
    ) -> Result<HashMap<String, Item>, StoreError> {
        let mut found = HashMap::new();
        let mut pending: Vec<HashMap<String, AttributeValue>> = keys
            .into_iter()
            .map(|k| HashMap::from([(PK.to_owned(), k)]))
            .collect();
        let (mut retries, mut paused) = (0, std::time::Duration::ZERO);
        while !pending.is_empty() {
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
                if paused >= PAUSE_BUDGET {
                    return Err(StoreError::new(Unprocessed(unprocessed.len())));
                }
                let pause = backoff(retries);
                tokio::time::sleep(pause).await;
                (retries, paused) = (retries + 1, paused + pause);
                pending.extend(unprocessed);
            }
        }
        Ok(found)
    }

    /// The participant whose socket is `socket`: attached to it, or suspended from it
    /// (callers tell which by [`ParticipantRow::attached_to`]). One `BatchGetItem` reads
    /// the socket item, the participant item of the same id (the participant, unless it
    /// resumed from another socket: then one `GetItem` more), and the items at `also`,
    /// which it returns by key string (read even when the socket is not there).
    pub(super) async fn owner(
        &self,
        socket: &ConnectionId,
        also: Vec<AttributeValue>,
        now: SystemTime,
    ) -> Result<(Option<ParticipantRow>, HashMap<String, Item>), StoreError> {
        let (skey, pkey) = (socket_key(socket), participant_key(socket));
        let mut keys = vec![skey.clone(), pkey.clone()];
        keys.extend(also);
        let mut items = self.batch_get(keys).await?;
        let socket_item = items.remove(&key_string(&skey));
        let same_id = items.remove(&key_string(&pkey));
        let Some(row) = SocketRow::decode(socket_item.as_ref(), now)? else {
            return Ok((None, items));
        };
        let participant_item = if row.participant == *socket {
            same_id
        } else {
            self.get(participant_key(&row.participant)).await?
        };
        let me = ParticipantRow::decode(participant_item.as_ref(), now)?
            .filter(|p| p.id == row.participant && p.socket == *socket);
        Ok((me, items))
    }

    /// The participant attached to `socket` (not one suspended from it).
    pub(super) async fn attached(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<ParticipantRow>, StoreError> {
        let (me, _) = self.owner(socket, Vec::new(), now).await?;
        Ok(me.filter(|p| p.attached_to(socket)))
    }

    /// Who is in `room` other than `except`, strongly consistent: the ids in the room
    /// item's set (`GetItem`), each one's participant item (`BatchGetItem`, skipped when
    /// there is no one else).
    pub(super) async fn room_read(
        &self,
        room: &RoomId,
        except: Option<&ConnectionId>,
        now: SystemTime,
    ) -> Result<RoomRead, StoreError> {
        let item = self.get(room_key(room)).await?;
        self.room_read_from(room, item.as_ref(), except, now).await
    }

    /// [`room_read`](Self::room_read) from a room item the caller read already.
    pub(super) async fn room_read_from(
        &self,
        room: &RoomId,
        room_item: Option<&Item>,
        except: Option<&ConnectionId>,
        now: SystemTime,
    ) -> Result<RoomRead, StoreError> {
        let mut ids = member_set(room_item)?;
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

    /// `lookup`: one `GetItem` of the socket item, which carries its participant's room and
    /// whether it is suspended from this socket (then the socket speaks for no one).
    pub(super) async fn lookup(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Presence>, StoreError> {
        let item = self.get(socket_key(socket)).await?;
        Ok(SocketRow::decode(item.as_ref(), now)?
            .filter(|row| !row.suspended)
            .map(|row| Presence {
                id: row.participant,
                room: row.room,
            }))
    }

    /// `participant`: one `GetItem`.
    pub(super) async fn participant(
        &self,
        id: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(Option<RoomId>, Member)>, StoreError> {
        let item = self.get(participant_key(id)).await?;
        Ok(ParticipantRow::decode(item.as_ref(), now)?.map(|p| (p.room.clone(), p.into_member())))
    }

    /// `members`: the room item's set (`GetItem`) and its members' items (`BatchGetItem`,
    /// 100 keys a call), both strongly consistent; in join order.
    pub(super) async fn members(
        &self,
        room: &RoomId,
        now: SystemTime,
    ) -> Result<Vec<Member>, StoreError> {
        Ok(self.room_read(room, None, now).await?.members())
    }
}
