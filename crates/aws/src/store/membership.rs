//! `join` and `leave`. The room cap lives on the room item: its `members` string set, which
//! a join adds to only if `size(members) < cap`, in the same transaction that moves the
//! participant (and its socket's copy of the room) and takes it out of its old room's set.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use aws_sdk_dynamodb::types::AttributeValue;
use meshcall_core::{
    JoinError, Joined, Member, StoreError,
    protocol::{ConnectionId, RoomId},
};

use super::{DynamoStore, read::key_string};
use crate::{
    table::{
        CHECK, ParticipantRow, epoch_millis, epoch_secs, member_set, n, participant_key, room_key,
        s, set_of, socket_key,
    },
    transaction::{Outcome, Step, Write, retry, transact},
};

/// At most this many stale ids are cleared from a room set per transaction (100 actions,
/// one of them the room's update).
const STALE_PER_PASS: usize = 99;

/// At most this many full rooms are remembered (then those past their holders' first
/// expiry are forgotten, or all of them).
const FULL_ROOMS_KEPT: usize = 1024;

/// Full rooms whose seat holders this store read and found live. A seat is freed only by a
/// transaction that also takes the id out of the room's set, or by its holder's item
/// expiring: so while a room's set is exactly the ids read here and none of them has
/// reached its `expiresAt`, reading them again would find every one live, and a join
/// refuses without that read. A crowd at a full room's door then costs one read per
/// joiner, not two. Kept per store (per Lambda instance).
#[derive(Debug, Clone, Default)]
pub(super) struct FullRooms(Arc<Mutex<HashMap<RoomId, Holders>>>);

#[derive(Debug)]
struct Holders {
    /// The room's set, sorted.
    ids: Vec<ConnectionId>,
    /// Epoch seconds: the first of them reads as absent from then on.
    live_until: i64,
    /// The holders as read, and when (the caller's `now`).
    rows: Vec<ParticipantRow>,
    read_at: SystemTime,
}

impl FullRooms {
    /// Whether `ids` (sorted) are the holders read last time, all still live at `now`.
    fn known_live(&self, room: &RoomId, ids: &[ConnectionId], now: SystemTime) -> bool {
        let rooms = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        rooms
            .get(room)
            .is_some_and(|h| h.ids == ids && epoch_secs(now) < h.live_until)
    }

    /// Remembers that `ids` (sorted), holding every seat of `room`, were read as `live` at
    /// `now`.
    fn record(
        &self,
        room: &RoomId,
        ids: Vec<ConnectionId>,
        live: Vec<ParticipantRow>,
        now: SystemTime,
    ) {
        let live_until = live
            .iter()
            .map(|p| p.expires_at.unwrap_or(i64::MAX))
            .min()
            .unwrap_or(i64::MAX);
        let mut rooms = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if rooms.len() >= FULL_ROOMS_KEPT && !rooms.contains_key(room) {
            let now = epoch_secs(now);
            rooms.retain(|_, h| now < h.live_until);
            if rooms.len() >= FULL_ROOMS_KEPT {
                rooms.clear();
            }
        }
        let holders = Holders {
            ids,
            live_until,
            rows: live,
            read_at: now,
        };
        rooms.insert(room.clone(), holders);
    }

    /// The members of `room` as a join refused at this same `now` read them, if one did.
    fn read_at(&self, room: &RoomId, now: SystemTime) -> Option<Vec<Member>> {
        let rooms = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let holders = rooms.get(room).filter(|h| h.read_at == now)?;
        Some(
            holders
                .rows
                .iter()
                .cloned()
                .map(ParticipantRow::into_member)
                .collect(),
        )
    }
}

impl DynamoStore {
    /// `join`: one `BatchGetItem` reads the socket, its participant and the room item. A
    /// room that is full by its set costs one `BatchGetItem` more (its members, to find
    /// seats held by participants that vanished without leaving; skipped while the same
    /// holders are known live, see [`FullRooms`]) and no write: a crowd at a full room's
    /// door reads, it does not contend for the room item. Otherwise one transaction, then
    /// the room read again consistently for the joiner's `others`.
    pub(super) async fn join(
        &self,
        socket: &ConnectionId,
        room: &RoomId,
        cap: usize,
        now: SystemTime,
    ) -> Result<Joined, JoinError> {
        let rkey = room_key(room);
        // After a conflict (another transaction on one of the items in flight: in a crowd,
        // on the room item) only the room item is read again. The participant and its
        // socket are pinned by the transaction's conditions: had they changed meanwhile, the
        // next transaction is cancelled for a failed condition, and that reads everything.
        let conflicted: Mutex<Option<ParticipantRow>> = Mutex::new(None);
        retry(|_| async {
            let reused = conflicted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let (me, room_item) = if let Some(me) = reused {
                (me, self.get(rkey.clone()).await?)
            } else {
                let (me, mut items) = self.owner(socket, vec![rkey.clone()], now).await?;
                let Some(me) = me.filter(|p| p.attached_to(socket)) else {
                    return Err(JoinError::NotConnected);
                };
                (me, items.remove(&key_string(&rkey)))
            };
            let room_item = room_item.as_ref();
            let (id, old) = (me.id.clone(), me.room.clone());
            if old.as_ref() == Some(room) {
                let others = self.room_read_from(room, room_item, Some(&id), now).await?;
                return Ok(Step::Done(Joined {
                    id,
                    left: None,
                    already_member: true,
                    others: others.members(),
                }));
            }
            let mut holders = member_set(room_item)?;
            if holders.len() >= cap {
                // Full, unless some seats are held by participants that vanished without
                // leaving: free those and read again.
                holders.sort();
                if self.full_rooms.known_live(room, &holders, now) {
                    return Err(JoinError::RoomFull);
                }
                let read = self.room_read_from(room, room_item, None, now).await?;
                if read.stale.is_empty() {
                    self.full_rooms.record(room, holders, read.live, now);
                    return Err(JoinError::RoomFull);
                }
                return Ok(Step::Again(self.clear_stale(room, read.stale, now).await?));
            }
            let values = [
                (":me", s(id.as_str())),
                (":meSet", set_of(&id)),
                (":socket", s(socket.as_str())),
                (":room", s(room.as_str())),
                (":joined", n(epoch_millis(now))),
                (":exp", n(self.expires_at(now))),
                (":cap", n(i64::try_from(cap).unwrap_or(i64::MAX))),
                (":check", s(CHECK)),
                (":checkAt", n(epoch_millis(now + self.check_every))),
            ];
            let in_old_room = match &old {
                Some(_) => "#socket = :socket AND #room = :old AND attribute_not_exists(#until)",
                None => {
                    "#socket = :socket AND attribute_not_exists(#room) \
                     AND attribute_not_exists(#until)"
                }
            };
            let mut writes = vec![
                Write::update(rkey.clone(), "SET #exp = :exp ADD #members :meSet")
                    .when("attribute_not_exists(#members) OR size(#members) < :cap")
                    .values(values.clone()),
                Write::update(
                    participant_key(&id),
                    "SET #room = :room, #joined = :joined, #exp = :exp, \
                     #sweep = :check, #sweepAt = :checkAt",
                )
                .when(in_old_room)
                .values(values.clone())
                .values(old.iter().map(|r| (":old", s(r.as_str())))),
                Write::update(socket_key(socket), "SET #room = :room, #exp = :exp")
                    .when("#part = :me AND attribute_not_exists(#until)")
                    .values(values.clone()),
            ];
            if let Some(old) = &old {
                writes.push(
                    Write::update(room_key(old), "DELETE #members :meSet").values(values.clone()),
                );
            }
            // A cancellation (the room filled up in between, a conflict) reads again: the
            // next read says whether the room is full now.
            let outcome = transact(&self.client, &self.table, writes).await?;
            if outcome != Outcome::Committed {
                if outcome.busy() {
                    *conflicted.lock().unwrap_or_else(PoisonError::into_inner) = Some(me);
                }
                return Ok(Step::Again(outcome));
            }
            let others = self.room_read(room, Some(&id), now).await?.members();
            Ok(Step::Done(Joined {
                id,
                left: old,
                already_member: false,
                others,
            }))
        })
        .await
    }

    /// `members_to_probe`: the holders a join refused at this `now` has just read (no
    /// request), or else `members`.
    pub(super) async fn members_to_probe(
        &self,
        room: &RoomId,
        now: SystemTime,
    ) -> Result<Vec<Member>, StoreError> {
        match self.full_rooms.read_at(room, now) {
            Some(members) => Ok(members),
            None => self.members(room, now).await,
        }
    }

    /// Takes `stale` ids (participants gone, expired or elsewhere) out of the room's set,
    /// each checked again in the same transaction.
    async fn clear_stale(
        &self,
        room: &RoomId,
        mut stale: Vec<ConnectionId>,
        now: SystemTime,
    ) -> Result<Outcome, StoreError> {
        stale.truncate(STALE_PER_PASS);
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
        }
        Ok(outcome)
    }

    /// `leave`: one `BatchGetItem`, one transaction.
    pub(super) async fn leave(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(ConnectionId, RoomId)>, StoreError> {
        retry(|_| async {
            let Some(me) = self.attached(socket, now).await? else {
                return Ok(Step::Done(None));
            };
            let id = me.id;
            let Some(room) = me.room else {
                return Ok(Step::Done(None));
            };
            let values = [
                (":me", s(id.as_str())),
                (":meSet", set_of(&id)),
                (":socket", s(socket.as_str())),
                (":room", s(room.as_str())),
            ];
            let writes = vec![
                Write::update(
                    participant_key(&id),
                    "REMOVE #room, #joined, #sweep, #sweepAt",
                )
                .when("#socket = :socket AND #room = :room AND attribute_not_exists(#until)")
                .values(values.clone()),
                Write::update(socket_key(socket), "REMOVE #room")
                    .when("#part = :me")
                    .values(values.clone()),
                Write::update(room_key(&room), "DELETE #members :meSet").values(values),
            ];
            let outcome = transact(&self.client, &self.table, writes).await?;
            Ok::<_, StoreError>(Step::after(outcome, || Some((id, room))))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn holder(id: &str, expires_at: i64) -> ParticipantRow {
        ParticipantRow {
            id: ConnectionId::parse(id).unwrap(),
            room: None,
            socket: ConnectionId::parse(id).unwrap(),
            suspended_until: None,
            joined_at: 0,
            expires_at: Some(expires_at),
        }
    }

    /// At `FULL_ROOMS_KEPT` rooms, a new one makes room by forgetting those whose first
    /// holder may have expired, or, when none may have, all of them.
    #[test]
    fn the_full_rooms_kept_are_bounded() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let full = FullRooms::default();
        let record = |name: String, expires_at: i64| {
            let row = holder("a", expires_at);
            full.record(
                &RoomId::parse(&name).unwrap(),
                vec![row.id.clone()],
                vec![row],
                now,
            );
        };
        // Half expire at 1 100 s, half much later.
        for i in 0..FULL_ROOMS_KEPT {
            record(format!("r{i}"), if i % 2 == 0 { 1_100 } else { 9_000 });
        }
        let len = || full.0.lock().unwrap().len();
        assert_eq!(len(), FULL_ROOMS_KEPT);
        let known = |name: &str, at: SystemTime| {
            let ids = [ConnectionId::parse("a").unwrap()];
            full.known_live(&RoomId::parse(name).unwrap(), &ids, at)
        };
        assert!(known("r0", now) && known("r1", now));
        // Recorded after 1 100 s: the rooms whose holder expired then are forgotten.
        let later = now + Duration::from_secs(200);
        let row = holder("a", 9_000);
        full.record(
            &RoomId::parse("new").unwrap(),
            vec![row.id.clone()],
            vec![row],
            later,
        );
        assert_eq!(len(), FULL_ROOMS_KEPT / 2 + 1);
        assert!(!known("r0", later) && known("r1", later) && known("new", later));
        // Full again with rooms none of which may have expired: all are forgotten, and the
        // later ones kept (513 + 511 fill it; the 512th new one clears it).
        for i in 0..FULL_ROOMS_KEPT {
            record(format!("s{i}"), 9_000);
        }
        assert_eq!(
            len(),
            FULL_ROOMS_KEPT / 2 + 1,
            "cleared once, then refilled"
        );
        assert!(!known("r1", now) && !known("s510", now));
        assert!(known("s511", now) && known("s1023", now));
    }
}
