//! `join` and `leave`. The room cap lives on the room item: its `members` string set, which
//! a join adds to only if `size(members) < cap`, in the same transaction that moves the
//! participant (and its socket's copy of the room) and takes it out of its old room's set.

use std::time::SystemTime;

use aws_sdk_dynamodb::types::AttributeValue;
use meshcall_core::{
    JoinError, Joined, StoreError,
    protocol::{ConnectionId, RoomId},
};

use super::DynamoStore;
use crate::{
    table::{epoch_millis, epoch_secs, n, participant_key, room_key, s, set_of, socket_key},
    transaction::{ATTEMPTS, Contended, Outcome, Write, pause, transact},
};

/// At most this many stale ids are cleared from a room set per transaction (100 actions,
/// one of them the room's update).
const STALE_PER_PASS: usize = 99;

impl DynamoStore {
    /// `join`: reads the socket and its participant (one `BatchGetItem`), writes one
    /// transaction, then reads the room consistently for the joiner's `others`.
    pub(super) async fn enter(
        &self,
        socket: &ConnectionId,
        room: &RoomId,
        cap: usize,
        now: SystemTime,
    ) -> Result<Joined, JoinError> {
        let mut swept = false;
        for attempt in 0..ATTEMPTS {
            let Some(me) = self.attached(socket, now).await? else {
                return Err(JoinError::NotConnected);
            };
            let id = me.id;
            let old = me.room;
            if old.as_ref() == Some(room) {
                let others = self.room_read(room, Some(&id), now).await?.members();
                return Ok(Joined {
                    id,
                    left: None,
                    already_member: true,
                    others,
                });
            }
            let values = [
                (":me", s(id.as_str())),
                (":meSet", set_of(&id)),
                (":socket", s(socket.as_str())),
                (":room", s(room.as_str())),
                (":joined", n(epoch_millis(now))),
                (":exp", n(self.expires_at(now))),
                (":cap", n(i64::try_from(cap).unwrap_or(i64::MAX))),
            ];
            let in_old_room = match &old {
                Some(_) => "#socket = :socket AND #room = :old",
                None => "#socket = :socket AND attribute_not_exists(#room)",
            };
            let mut writes = vec![
                // First, so a cancellation's first reason says whether the room was full.
                Write::update(room_key(room), "SET #exp = :exp ADD #members :meSet")
                    .when("attribute_not_exists(#members) OR size(#members) < :cap")
                    .values(values.clone()),
                Write::update(
                    participant_key(&id),
                    "SET #room = :room, #joined = :joined, #exp = :exp",
                )
                .when(in_old_room)
                .values(values.clone())
                .values(old.iter().map(|r| (":old", s(r.as_str())))),
                Write::update(socket_key(socket), "SET #room = :room, #exp = :exp")
                    .when("#part = :me")
                    .values(values.clone()),
            ];
            if let Some(old) = &old {
                writes.push(
                    Write::update(room_key(old), "DELETE #members :meSet").values(values.clone()),
                );
            }
            let outcome = transact(&self.client, &self.table, writes).await?;
            if outcome == Outcome::Committed {
                let others = self.room_read(room, Some(&id), now).await?.members();
                return Ok(Joined {
                    id,
                    left: old,
                    already_member: false,
                    others,
                });
            }
            if outcome.failed_at(0) {
                // Full, unless some members vanished without leaving: clear those once and
                // try again.
                if swept || self.sweep(room, now).await? == 0 {
                    return Err(JoinError::RoomFull);
                }
                swept = true;
                continue;
            }
            pause(attempt, &outcome).await;
        }
        Err(JoinError::Store(StoreError::new(Contended)))
    }

    /// Takes from the room's set the ids whose participant is gone, expired or elsewhere,
    /// each checked again in the same transaction. Returns how many were taken out.
    async fn sweep(&self, room: &RoomId, now: SystemTime) -> Result<usize, StoreError> {
        let mut stale = self.room_read(room, None, now).await?.stale;
        stale.truncate(STALE_PER_PASS);
        if stale.is_empty() {
            return Ok(0);
        }
        let values = [
            (":room", s(room.as_str())),
            (":now", n(epoch_secs(now))),
            (
                ":stale",
                AttributeValue::Ss(stale.iter().map(ToString::to_string).collect()),
            ),
        ];
        let mut writes: Vec<Write> = stale
            .iter()
            .map(|id| {
                Write::check(
                    participant_key(id),
                    "attribute_not_exists(#pk) OR #exp <= :now \
                     OR attribute_not_exists(#room) OR #room <> :room",
                )
                .values(values.clone())
            })
            .collect();
        writes.push(Write::update(room_key(room), "DELETE #members :stale").values(values));
        let outcome = transact(&self.client, &self.table, writes).await?;
        if outcome == Outcome::Committed {
            tracing::warn!(room_id = %room, count = stale.len(), "cleared members that vanished without leaving");
            Ok(stale.len())
        } else {
            Ok(0)
        }
    }

    /// `leave`: one `BatchGetItem`, one transaction.
    pub(super) async fn exit(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(ConnectionId, RoomId)>, StoreError> {
        for attempt in 0..ATTEMPTS {
            let Some(me) = self.attached(socket, now).await? else {
                return Ok(None);
            };
            let id = me.id;
            let Some(room) = me.room else {
                return Ok(None);
            };
            let values = [
                (":me", s(id.as_str())),
                (":meSet", set_of(&id)),
                (":socket", s(socket.as_str())),
                (":room", s(room.as_str())),
            ];
            let writes = vec![
                Write::update(participant_key(&id), "REMOVE #room, #joined")
                    .when("#socket = :socket AND #room = :room")
                    .values(values.clone()),
                Write::update(socket_key(socket), "REMOVE #room")
                    .when("#part = :me")
                    .values(values.clone()),
                Write::update(room_key(&room), "DELETE #members :meSet").values(values),
            ];
            let outcome = transact(&self.client, &self.table, writes).await?;
            if outcome == Outcome::Committed {
                return Ok(Some((id, room)));
            }
            pause(attempt, &outcome).await;
        }
        Err(StoreError::new(Contended))
    }
}
