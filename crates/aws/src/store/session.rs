//! Sockets and participants coming and going: `add_connection`, `remove_connection`,
//! `suspend`, `resume` and `expire`, each one transaction after a consistent read, run by
//! [`retry`].

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use meshcall_core::{
    Departure, ResumeError, Resumed, StoreError, Suspension,
    protocol::{ConnectionId, RoomId},
};

use super::{DynamoStore, read::key_string};
use crate::{
    table::{
        CHECK, EXPIRES_AT, GRACE, PARTICIPANT_ID, ParticipantRow, SOCKET_ID, epoch_millis, n,
        participant_key, room_key, s, set_of, socket_key,
    },
    transaction::{Outcome, Step, Write, retry, transact},
};

/// The instant `millis` after the epoch.
fn from_millis(millis: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

impl DynamoStore {
    /// `add_connection`: one transaction of two Puts, the participant and its socket.
    pub(super) async fn add_connection(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let exp = n(self.expires_at(now));
        let writes = vec![
            Write::put(
                participant_key(socket),
                HashMap::from([
                    (SOCKET_ID.to_owned(), s(socket.as_str())),
                    (EXPIRES_AT.to_owned(), exp.clone()),
                ]),
            ),
            Write::put(
                socket_key(socket),
                HashMap::from([
                    (PARTICIPANT_ID.to_owned(), s(socket.as_str())),
                    (EXPIRES_AT.to_owned(), exp),
                ]),
            ),
        ];
        // Unconditional: only a conflict can cancel it.
        retry(|_| async {
            let outcome = transact(&self.client, &self.table, writes.clone()).await?;
            Ok::<_, StoreError>(Step::after(outcome, || ()))
        })
        .await
    }

    /// The writes that remove a participant and the socket it is attached to or suspended
    /// from (`me.socket`): the socket item, the participant item, its seat.
    fn removal(me: &ParticipantRow) -> Vec<Write> {
        let (id, socket) = (&me.id, &me.socket);
        let values = [
            (":me", s(id.as_str())),
            (":meSet", set_of(id)),
            (":socket", s(socket.as_str())),
        ];
        let room = me.room.as_ref();
        let mut writes = vec![
            Write::delete(socket_key(socket))
                .when("attribute_not_exists(#pk) OR #part = :me")
                .values(values.clone()),
            Write::delete(participant_key(id))
                .when(match room {
                    Some(_) => "#socket = :socket AND #room = :room",
                    None => "#socket = :socket AND attribute_not_exists(#room)",
                })
                .values(values.clone())
                .values(room.map(|r| (":room", s(r.as_str())))),
        ];
        if let Some(room) = room {
            writes.push(Write::update(room_key(room), "DELETE #members :meSet").values(values));
        }
        writes
    }

    /// Removes `me` (read just before) in one transaction.
    async fn remove(&self, me: ParticipantRow) -> Result<Step<Option<Departure>>, StoreError> {
        let outcome = transact(&self.client, &self.table, Self::removal(&me)).await?;
        Ok(Step::after(outcome, || {
            Some(Departure {
                id: me.id,
                room: me.room,
            })
        }))
    }

    /// `remove_connection`: one `BatchGetItem`, one transaction. Removes the participant
    /// attached to the socket or suspended from it; one that moved on to another socket is
    /// not this socket's to remove.
    pub(super) async fn remove_connection(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        retry(|_| async {
            let (me, _) = self.owner(socket, Vec::new(), now).await?;
            match me {
                None => Ok(Step::Done(None)),
                Some(me) => self.remove(me).await,
            }
        })
        .await
    }

    /// `suspend`: one `BatchGetItem`, one transaction. The participant keeps its room, its
    /// seat and its `socketId` (the socket it dropped from), gains `suspendedUntil` and
    /// `sweep = grace`; the socket item stays too, marked with the same `suspendedUntil`,
    /// so that `lookup` of it finds no one and `remove_connection` of it still ends the
    /// participant. Already suspended from this socket: nothing is written, and its own
    /// `until` is returned.
    pub(super) async fn suspend(
        &self,
        socket: &ConnectionId,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<Option<Suspension>, StoreError> {
        retry(|_| async {
            let (me, _) = self.owner(socket, Vec::new(), now).await?;
            let Some(me) = me else {
                return Ok(Step::Done(None));
            };
            if let Some(since) = me.suspended_until {
                return Ok(Step::Done(Some(Suspension {
                    id: me.id,
                    until: from_millis(since),
                })));
            }
            let Some(room) = &me.room else {
                // Nothing to keep for a participant in no room.
                return Ok(match self.remove(me).await? {
                    Step::Done(_) => Step::Done(None),
                    Step::Again(outcome) => Step::Again(outcome),
                });
            };
            let values = [
                (":me", s(me.id.as_str())),
                (":socket", s(socket.as_str())),
                (":room", s(room.as_str())),
                (":until", n(epoch_millis(until))),
                (":exp", n(self.expires_at(until))),
                (":grace", s(GRACE)),
            ];
            let writes = vec![
                Write::update(socket_key(socket), "SET #until = :until, #exp = :exp")
                    .when("#part = :me AND attribute_not_exists(#until)")
                    .values(values.clone()),
                Write::update(
                    participant_key(&me.id),
                    "SET #until = :until, #sweep = :grace, #sweepAt = :until, #exp = :exp",
                )
                .when("#socket = :socket AND #room = :room AND attribute_not_exists(#until)")
                .values(values),
            ];
            let outcome = transact(&self.client, &self.table, writes).await?;
            Ok(Step::after(outcome, || {
                Some(Suspension { id: me.id, until })
            }))
        })
        .await
    }

    /// `resume`: one `BatchGetItem` (the new socket, its placeholder participant, the
    /// participant resuming), one transaction, then the room read consistently for
    /// `others`. The old socket's item goes in the same transaction.
    pub(super) async fn resume(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Resumed, ResumeError> {
        if participant == socket {
            return Err(ResumeError::NotResumable);
        }
        retry(|_| async {
            let Some((placeholder, target, room)) =
                self.resumable(participant, socket, now).await?
            else {
                return Err(ResumeError::NotResumable);
            };
            let old = target.socket.clone();
            let values = [
                (":me", s(participant.as_str())),
                (":meSet", set_of(participant)),
                (":socket", s(socket.as_str())),
                (":old", s(old.as_str())),
                (":placeholder", s(placeholder.as_str())),
                (":room", s(room.as_str())),
                (":exp", n(self.expires_at(now))),
                (":check", s(CHECK)),
                (":checkAt", n(epoch_millis(now + self.check_every))),
            ];
            let participant_was = match target.suspended_until {
                Some(_) => "#room = :room AND #socket = :old AND #until = :until",
                None => "#room = :room AND #socket = :old AND attribute_not_exists(#until)",
            };
            let writes = vec![
                Write::delete(participant_key(&placeholder))
                    .when("#socket = :socket AND attribute_not_exists(#room)")
                    .values(values.clone()),
                Write::update(
                    socket_key(socket),
                    "SET #part = :me, #room = :room, #exp = :exp",
                )
                .when("#part = :placeholder AND attribute_not_exists(#room)")
                .values(values.clone()),
                Write::update(
                    participant_key(participant),
                    "SET #socket = :socket, #exp = :exp, #sweep = :check, #sweepAt = :checkAt \
                     REMOVE #until",
                )
                .when(participant_was)
                .values(values.clone())
                .values(target.suspended_until.map(|u| (":until", n(u)))),
                // Refreshes the room's TTL, and puts the id back in the set should the room
                // item have been lost.
                Write::update(room_key(&room), "SET #exp = :exp ADD #members :meSet")
                    .values(values.clone()),
                // The socket it was attached to or dropped from; gone already is as good.
                Write::delete(socket_key(&old))
                    .when("attribute_not_exists(#pk) OR #part = :me")
                    .values(values),
            ];
            let outcome = transact(&self.client, &self.table, writes).await?;
            if outcome != Outcome::Committed {
                return Ok(Step::Again(outcome));
            }
            let others = self
                .room_read(&room, Some(participant), now)
                .await?
                .members();
            let replaced = target.suspended_until.is_none().then_some(old);
            Ok(Step::Done(Resumed {
                room,
                others,
                replaced,
            }))
        })
        .await
    }

    /// Whether `participant` may resume on `socket`: the socket is new (its participant,
    /// the placeholder, is attached and in no room), and the participant is in a room,
    /// within its grace, and on another socket. Returns the placeholder, the participant
    /// and its room.
    async fn resumable(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(ConnectionId, ParticipantRow, RoomId)>, StoreError> {
        let target_key = participant_key(participant);
        let (placeholder, items) = self.owner(socket, vec![target_key.clone()], now).await?;
        let Some(placeholder) = placeholder.filter(|p| p.attached_to(socket) && p.room.is_none())
        else {
            return Ok(None);
        };
        let target = ParticipantRow::decode(items.get(&key_string(&target_key)), now)?;
        let now_ms = epoch_millis(now);
        Ok(target.and_then(|t| {
            let within_grace = t.suspended_until.is_none_or(|until| now_ms < until);
            let room = t
                .room
                .clone()
                .filter(|_| within_grace && t.socket != *socket)?;
            Some((placeholder.id, t, room))
        }))
    }

    /// `expire`: one `GetItem`; if the grace is over, one transaction that removes the
    /// participant, the socket it dropped from, and its seat.
    pub(super) async fn expire(
        &self,
        participant: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        retry(|_| async {
            let item = self.get(participant_key(participant)).await?;
            let Some(p) = ParticipantRow::decode(item.as_ref(), now)? else {
                return Ok(Step::Done(None));
            };
            let Some(until) = p.suspended_until.filter(|u| *u <= epoch_millis(now)) else {
                return Ok(Step::Done(None));
            };
            let values = [
                (":me", s(participant.as_str())),
                (":meSet", set_of(participant)),
                (":socket", s(p.socket.as_str())),
                (":until", n(until)),
            ];
            let mut writes = vec![
                Write::delete(participant_key(participant))
                    .when("#until = :until AND #socket = :socket")
                    .values(values.clone()),
                Write::delete(socket_key(&p.socket))
                    .when("attribute_not_exists(#pk) OR #part = :me")
                    .values(values.clone()),
            ];
            if let Some(room) = &p.room {
                writes.push(Write::update(room_key(room), "DELETE #members :meSet").values(values));
            }
            let outcome = transact(&self.client, &self.table, writes).await?;
            Ok::<_, StoreError>(Step::after(outcome, || {
                Some(Departure {
                    id: p.id,
                    room: p.room,
                })
            }))
        })
        .await
    }
}
