//! Sockets and participants coming and going: `add_connection`, `remove_connection`,
//! `suspend`, `resume` and `expire`, each one transaction after a consistent read.

use std::{collections::HashMap, time::SystemTime};

use meshcall_core::{
    Departure, ResumeError, Resumed, StoreError,
    protocol::{ConnectionId, RoomId},
};

use super::DynamoStore;
use crate::{
    table::{
        DUE, EXPIRES_AT, PARTICIPANT_ID, ParticipantRow, SOCKET_ID, epoch_millis, n,
        participant_key, room_key, s, set_of, socket_key,
    },
    transaction::{ATTEMPTS, Contended, Outcome, Write, pause, transact},
};

impl DynamoStore {
    /// `add_connection`: one transaction of two Puts, the participant and its socket.
    pub(super) async fn connect(
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
        for attempt in 0..ATTEMPTS {
            let outcome = transact(&self.client, &self.table, writes.clone()).await?;
            if outcome == Outcome::Committed {
                return Ok(());
            }
            pause(attempt, &outcome).await;
        }
        Err(StoreError::new(Contended))
    }

    /// The writes that remove an attached participant: its socket, itself, its seat.
    fn removal(me: &ParticipantRow, socket: &ConnectionId) -> Vec<Write> {
        let id = &me.id;
        let values = [
            (":me", s(id.as_str())),
            (":meSet", set_of(id)),
            (":socket", s(socket.as_str())),
        ];
        let room = me.room.as_ref();
        let mut writes = vec![
            Write::delete(socket_key(socket))
                .when("#part = :me")
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

    /// `remove_connection`: one `BatchGetItem`, one transaction.
    pub(super) async fn remove(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        for attempt in 0..ATTEMPTS {
            let Some(me) = self.attached(socket, now).await? else {
                return Ok(None);
            };
            let outcome = transact(&self.client, &self.table, Self::removal(&me, socket)).await?;
            if outcome == Outcome::Committed {
                return Ok(Some(Departure {
                    id: me.id,
                    room: me.room,
                }));
            }
            pause(attempt, &outcome).await;
        }
        Err(StoreError::new(Contended))
    }

    /// `suspend`: one `BatchGetItem`, one transaction. The socket item goes; the participant
    /// keeps its room and seat, with `suspendedUntil` instead of a socket.
    pub(super) async fn detach(
        &self,
        socket: &ConnectionId,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<Option<ConnectionId>, StoreError> {
        for attempt in 0..ATTEMPTS {
            let Some(me) = self.attached(socket, now).await? else {
                return Ok(None);
            };
            let writes = match &me.room {
                // Nothing to keep for a participant in no room.
                None => Self::removal(&me, socket),
                Some(room) => {
                    let values = [
                        (":me", s(me.id.as_str())),
                        (":socket", s(socket.as_str())),
                        (":room", s(room.as_str())),
                        (":until", n(epoch_millis(until))),
                        (":exp", n(self.expires_at(until))),
                        (":due", s(DUE)),
                    ];
                    vec![
                        Write::delete(socket_key(socket))
                            .when("#part = :me")
                            .values(values.clone()),
                        Write::update(
                            participant_key(&me.id),
                            "SET #until = :until, #exp = :exp, #sweep = :due REMOVE #socket",
                        )
                        .when("#socket = :socket AND #room = :room")
                        .values(values),
                    ]
                }
            };
            let outcome = transact(&self.client, &self.table, writes).await?;
            if outcome == Outcome::Committed {
                return Ok(me.room.is_some().then_some(me.id));
            }
            pause(attempt, &outcome).await;
        }
        Err(StoreError::new(Contended))
    }

    /// `resume`: one `BatchGetItem` (the new socket, its placeholder participant, the
    /// participant resuming), one transaction, then the room read consistently for
    /// `others`.
    pub(super) async fn reattach(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Resumed, ResumeError> {
        if participant == socket {
            return Err(ResumeError::NotResumable);
        }
        for attempt in 0..ATTEMPTS {
            let Some((placeholder, target, room)) =
                self.resumable(participant, socket, now).await?
            else {
                return Err(ResumeError::NotResumable);
            };
            let replaced = target.socket.clone();
            let values = [
                (":me", s(participant.as_str())),
                (":meSet", set_of(participant)),
                (":socket", s(socket.as_str())),
                (":placeholder", s(placeholder.as_str())),
                (":room", s(room.as_str())),
                (":exp", n(self.expires_at(now))),
            ];
            let participant_was = match (&replaced, target.suspended_until) {
                (Some(_), _) => "#room = :room AND #socket = :old AND attribute_not_exists(#until)",
                (None, Some(_)) => {
                    "#room = :room AND attribute_not_exists(#socket) AND #until = :until"
                }
                (None, None) => {
                    "#room = :room AND attribute_not_exists(#socket) AND attribute_not_exists(#until)"
                }
            };
            let mut writes = vec![
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
                    "SET #socket = :socket, #exp = :exp REMOVE #until, #sweep",
                )
                .when(participant_was)
                .values(values.clone())
                .values(replaced.iter().map(|old| (":old", s(old.as_str()))))
                .values(target.suspended_until.map(|u| (":until", n(u)))),
                // Refreshes the room's TTL, and puts the id back in the set should the room
                // item have been lost.
                Write::update(room_key(&room), "SET #exp = :exp ADD #members :meSet")
                    .values(values.clone()),
            ];
            if let Some(old) = &replaced {
                // Gone already is as good as deleted.
                writes.push(
                    Write::delete(socket_key(old))
                        .when("attribute_not_exists(#pk) OR #part = :me")
                        .values(values),
                );
            }
            let outcome = transact(&self.client, &self.table, writes).await?;
            if outcome == Outcome::Committed {
                let others = self
                    .room_read(&room, Some(participant), now)
                    .await?
                    .members();
                return Ok(Resumed {
                    room,
                    others,
                    replaced,
                });
            }
            pause(attempt, &outcome).await;
        }
        Err(ResumeError::Store(StoreError::new(Contended)))
    }

    /// Whether `participant` may resume on `socket`: the socket is new (its participant,
    /// the placeholder, is in no room), and the participant is in a room and within its
    /// grace. Returns the placeholder, the participant and its room.
    async fn resumable(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(ConnectionId, ParticipantRow, RoomId)>, StoreError> {
        let (placeholder, target) = self
            .attached_and(socket, Some(participant_key(participant)), now)
            .await?;
        let target = ParticipantRow::decode(target.as_ref(), now)?;
        let Some(placeholder) = placeholder.filter(|p| p.room.is_none()) else {
            return Ok(None);
        };
        let now_ms = epoch_millis(now);
        let Some((target, room)) = target.and_then(|t| {
            let within_grace = t.suspended_until.is_none_or(|until| now_ms < until);
            let room = t.room.clone().filter(|_| within_grace)?;
            Some((t, room))
        }) else {
            return Ok(None);
        };
        Ok(Some((placeholder.id, target, room)))
    }

    /// `expire`: one `GetItem`; if the grace is over, one transaction.
    pub(super) async fn end_grace(
        &self,
        participant: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        for attempt in 0..ATTEMPTS {
            let item = self.get(participant_key(participant)).await?;
            let Some(p) = ParticipantRow::decode(item.as_ref(), now)? else {
                return Ok(None);
            };
            let Some(until) = p.suspended_until.filter(|u| *u <= epoch_millis(now)) else {
                return Ok(None);
            };
            let values = [(":meSet", set_of(participant)), (":until", n(until))];
            let mut writes = vec![
                Write::delete(participant_key(participant))
                    .when("#until = :until AND attribute_not_exists(#socket)")
                    .values(values.clone()),
            ];
            if let Some(room) = &p.room {
                writes.push(Write::update(room_key(room), "DELETE #members :meSet").values(values));
            }
            let outcome = transact(&self.client, &self.table, writes).await?;
            if outcome == Outcome::Committed {
                return Ok(Some(Departure {
                    id: p.id,
                    room: p.room,
                }));
            }
            pause(attempt, &outcome).await;
        }
        Err(StoreError::new(Contended))
    }
}
