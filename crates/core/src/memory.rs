//! [`MemoryStore`]: the self-hosted server's [`ConnectionStore`]. One `std` mutex around one
//! state, held only for the few map operations of one call and never across an `.await`.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::SystemTime,
};

use meshcall_protocol::{ConnectionId, RoomId};

use crate::sparse::shrink_if_sparse;
use crate::store::{
    ConnectionStore, Departure, Due, JoinError, Joined, Member, Presence, ResumeError, Resumed,
    StoreError, Suspension,
};

/// Membership kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug)]
struct Participant {
    room: Option<RoomId>,
    /// The socket it is attached to or, while suspended, dropped from.
    socket: ConnectionId,
    /// Set while suspended: when the grace ends.
    until: Option<SystemTime>,
}

impl Participant {
    /// The socket to push to: none while suspended.
    fn reachable(&self) -> Option<ConnectionId> {
        self.until.is_none().then(|| self.socket.clone())
    }
}

#[derive(Debug, Default)]
struct State {
    participants: HashMap<ConnectionId, Participant>,
    /// Socket → the participant attached to it or suspended from it.
    sockets: HashMap<ConnectionId, ConnectionId>,
    /// Every non-empty room, and its members in join order.
    rooms: HashMap<RoomId, Vec<ConnectionId>>,
}

/// Counts for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Participants, suspended ones included.
    pub connections: usize,
    /// Non-empty rooms.
    pub rooms: usize,
    /// Participants that are in a room.
    pub members: usize,
    /// Participants waiting, suspended, to resume.
    pub suspended: usize,
}

impl State {
    fn remove_from_room(&mut self, id: &ConnectionId, room: &RoomId) {
        if let Some(list) = self.rooms.get_mut(room) {
            list.retain(|m| m != id);
            if list.is_empty() {
                self.rooms.remove(room);
                shrink_if_sparse(&mut self.rooms);
            }
        }
    }

    /// Removes a participant entirely.
    fn remove(&mut self, id: &ConnectionId) -> Option<Departure> {
        let p = self.participants.remove(id)?;
        self.sockets.remove(&p.socket);
        shrink_if_sparse(&mut self.participants);
        shrink_if_sparse(&mut self.sockets);
        if let Some(room) = &p.room {
            self.remove_from_room(id, room);
        }
        Some(Departure {
            id: id.clone(),
            room: p.room,
        })
    }

    /// The participant attached to `socket`; `None` if there is none or it is suspended.
    fn attached(&self, socket: &ConnectionId) -> Option<&ConnectionId> {
        self.sockets.get(socket).filter(|id| {
            self.participants
                .get(*id)
                .is_some_and(|p| p.until.is_none())
        })
    }

    fn members(&self, room: &RoomId, except: Option<&ConnectionId>) -> Vec<Member> {
        self.rooms
            .get(room)
            .into_iter()
            .flatten()
            .filter(|m| Some(*m) != except)
            .map(|m| Member {
                id: m.clone(),
                socket: self.participants.get(m).and_then(Participant::reachable),
            })
            .collect()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every method leaves the state consistent before anything can panic, so a
        // poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current counts.
    pub fn stats(&self) -> Stats {
        let s = self.lock();
        Stats {
            connections: s.participants.len(),
            rooms: s.rooms.len(),
            members: s.rooms.values().map(Vec::len).sum(),
            suspended: s
                .participants
                .values()
                .filter(|p| p.until.is_some())
                .count(),
        }
    }

    /// The room a participant is in (a convenience for tests and diagnostics).
    pub fn room_of(&self, id: &ConnectionId) -> Option<RoomId> {
        self.lock()
            .participants
            .get(id)
            .and_then(|p| p.room.clone())
    }
}

impl ConnectionStore for MemoryStore {
    async fn add_connection(
        &self,
        socket: &ConnectionId,
        _now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.participants.insert(
            socket.clone(),
            Participant {
                room: None,
                socket: socket.clone(),
                until: None,
            },
        );
        s.sockets.insert(socket.clone(), socket.clone());
        Ok(())
    }

    async fn remove_connection(
        &self,
        socket: &ConnectionId,
        _now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        let mut s = self.lock();
        let Some(id) = s.sockets.get(socket).cloned() else {
            return Ok(None);
        };
        Ok(s.remove(&id))
    }

    async fn suspend(
        &self,
        socket: &ConnectionId,
        until: SystemTime,
        _now: SystemTime,
    ) -> Result<Option<Suspension>, StoreError> {
        let mut s = self.lock();
        let Some(id) = s.sockets.get(socket).cloned() else {
            return Ok(None);
        };
        match s.participants.get_mut(&id) {
            Some(p) if p.room.is_some() => {
                let until = *p.until.get_or_insert(until);
                Ok(Some(Suspension { id, until }))
            }
            _ => {
                s.remove(&id);
                Ok(None)
            }
        }
    }

    async fn resume(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Resumed, ResumeError> {
        let mut s = self.lock();
        // The new socket's own placeholder must be fresh: attached, in no room.
        let placeholder = s
            .attached(socket)
            .filter(|id| s.participants.get(*id).is_some_and(|p| p.room.is_none()))
            .cloned();
        let resumable = s
            .participants
            .get(participant)
            .is_some_and(|p| p.room.is_some() && p.until.is_none_or(|until| now < until));
        let placeholder = match placeholder {
            Some(placeholder) if resumable && participant != socket => placeholder,
            _ => return Err(ResumeError::NotResumable),
        };
        s.remove(&placeholder);
        let p = s
            .participants
            .get_mut(participant)
            .expect("checked above, under the same lock");
        let old = std::mem::replace(&mut p.socket, socket.clone());
        let replaced = p.until.take().is_none().then(|| old.clone());
        let room = p.room.clone().expect("checked above, under the same lock");
        s.sockets.remove(&old);
        s.sockets.insert(socket.clone(), participant.clone());
        let others = s.members(&room, Some(participant));
        Ok(Resumed {
            room,
            others,
            replaced,
        })
    }

    async fn expire(
        &self,
        participant: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        let mut s = self.lock();
        let due = s
            .participants
            .get(participant)
            .and_then(|p| p.until)
            .is_some_and(|until| until <= now);
        Ok(if due { s.remove(participant) } else { None })
    }

    async fn join(
        &self,
        socket: &ConnectionId,
        room: &RoomId,
        cap: usize,
        _now: SystemTime,
    ) -> Result<Joined, JoinError> {
        let mut s = self.lock();
        let Some(id) = s.attached(socket).cloned() else {
            return Err(JoinError::NotConnected);
        };
        let current = s.participants.get(&id).and_then(|p| p.room.clone());
        if current.as_ref() == Some(room) {
            return Ok(Joined {
                others: s.members(room, Some(&id)),
                id,
                left: None,
                already_member: true,
            });
        }
        if s.rooms.get(room).map_or(0, Vec::len) >= cap {
            return Err(JoinError::RoomFull);
        }
        if let Some(old) = &current {
            s.remove_from_room(&id, old);
        }
        let others = s.members(room, Some(&id));
        s.rooms.entry(room.clone()).or_default().push(id.clone());
        if let Some(p) = s.participants.get_mut(&id) {
            p.room = Some(room.clone());
        }
        Ok(Joined {
            id,
            left: current,
            already_member: false,
            others,
        })
    }

    async fn leave(
        &self,
        socket: &ConnectionId,
        _now: SystemTime,
    ) -> Result<Option<(ConnectionId, RoomId)>, StoreError> {
        let mut s = self.lock();
        let Some(id) = s.attached(socket).cloned() else {
            return Ok(None);
        };
        let room = s.participants.get_mut(&id).and_then(|p| p.room.take());
        Ok(room.map(|room| {
            s.remove_from_room(&id, &room);
            (id, room)
        }))
    }

    async fn lookup(
        &self,
        socket: &ConnectionId,
        _now: SystemTime,
    ) -> Result<Option<Presence>, StoreError> {
        let s = self.lock();
        Ok(s.attached(socket).map(|id| Presence {
            id: id.clone(),
            room: s.participants.get(id).and_then(|p| p.room.clone()),
        }))
    }

    async fn participant(
        &self,
        id: &ConnectionId,
        _now: SystemTime,
    ) -> Result<Option<(Option<RoomId>, Member)>, StoreError> {
        let s = self.lock();
        Ok(s.participants.get(id).map(|p| {
            (
                p.room.clone(),
                Member {
                    id: id.clone(),
                    socket: p.reachable(),
                },
            )
        }))
    }

    async fn members(&self, room: &RoomId, _now: SystemTime) -> Result<Vec<Member>, StoreError> {
        Ok(self.lock().members(room, None))
    }

    /// Suspended participants past their grace. Never any to check: the self-hosted server
    /// knows its own sockets, so it has no ghosts.
    async fn due(&self, now: SystemTime) -> Result<Due, StoreError> {
        let s = self.lock();
        let mut expired: Vec<ConnectionId> = s
            .participants
            .iter()
            .filter(|(_, p)| p.until.is_some_and(|until| until <= now))
            .map(|(id, _)| id.clone())
            .collect();
        expired.sort();
        Ok(Due {
            expired,
            unchecked: Vec::new(),
        })
    }

    async fn checked(
        &self,
        _participant: &ConnectionId,
        _socket: &ConnectionId,
        _next: SystemTime,
        _now: SystemTime,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;

    /// Resolves a store future; `MemoryStore` never pends.
    fn ready<F: std::future::Future>(f: F) -> F::Output {
        f.now_or_never().expect("MemoryStore futures never pend")
    }

    fn id(s: &str) -> ConnectionId {
        ConnectionId::parse(s).unwrap()
    }
    fn room(s: &str) -> RoomId {
        RoomId::parse(s).unwrap()
    }
    fn ids(members: &[Member]) -> Vec<&str> {
        members.iter().map(|m| m.id.as_str()).collect()
    }

    #[test]
    fn join_switch_leave_and_remove_keep_counts_consistent() {
        let st = MemoryStore::new();
        let now = SystemTime::now();
        for c in ["a", "b", "c"] {
            ready(st.add_connection(&id(c), now)).unwrap();
        }
        let j = ready(st.join(&id("a"), &room("r"), 2, now)).unwrap();
        assert_eq!((j.left, j.already_member, j.others), (None, false, vec![]));
        let j = ready(st.join(&id("b"), &room("r"), 2, now)).unwrap();
        assert_eq!(ids(&j.others), ["a"]);
        assert_eq!(j.others[0].socket, Some(id("a")));
        let full = ready(st.join(&id("c"), &room("r"), 2, now));
        assert!(matches!(full, Err(JoinError::RoomFull)));
        // Re-joining your own room is not refused by the cap.
        let j = ready(st.join(&id("b"), &room("r"), 2, now)).unwrap();
        assert!(j.already_member);
        let j = ready(st.join(&id("b"), &room("s"), 2, now)).unwrap();
        assert_eq!(j.left, Some(room("r")));
        assert_eq!(
            st.stats(),
            Stats {
                connections: 3,
                rooms: 2,
                members: 2,
                suspended: 0
            }
        );
        let left = ready(st.leave(&id("a"), now)).unwrap();
        assert_eq!(left, Some((id("a"), room("r"))));
        assert_eq!(ready(st.leave(&id("a"), now)).unwrap(), None);
        let gone = ready(st.remove_connection(&id("b"), now)).unwrap();
        assert_eq!(
            gone,
            Some(Departure {
                id: id("b"),
                room: Some(room("s"))
            })
        );
        assert_eq!(ready(st.remove_connection(&id("b"), now)).unwrap(), None);
        assert_eq!(
            st.stats(),
            Stats {
                connections: 2,
                rooms: 0,
                members: 0,
                suspended: 0
            }
        );
    }

    #[test]
    fn a_suspended_participant_keeps_its_seat_and_resumes_on_a_new_socket() {
        let st = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let grace = t0 + Duration::from_secs(30);
        for c in ["a", "b", "n"] {
            ready(st.add_connection(&id(c), t0)).unwrap();
        }
        ready(st.join(&id("a"), &room("r"), 8, t0)).unwrap();
        ready(st.join(&id("b"), &room("r"), 8, t0)).unwrap();

        let suspended = ready(st.suspend(&id("a"), grace, t0)).unwrap();
        let expected = Some(Suspension {
            id: id("a"),
            until: grace,
        });
        assert_eq!(suspended, expected);
        // The same drop reported again (a 410, then `$disconnect`) changes nothing: the
        // grace is not extended.
        let later = grace + Duration::from_secs(5);
        assert_eq!(ready(st.suspend(&id("a"), later, t0)).unwrap(), expected);
        let members = ready(st.members(&room("r"), t0)).unwrap();
        assert_eq!(
            members[0],
            Member {
                id: id("a"),
                socket: None
            }
        );
        // The socket it dropped from speaks for no one.
        assert_eq!(ready(st.lookup(&id("a"), t0)).unwrap(), None);
        assert_eq!(ready(st.leave(&id("a"), t0)).unwrap(), None);
        // Not yet due.
        assert_eq!(ready(st.expire(&id("a"), t0)).unwrap(), None);
        assert_eq!(ready(st.due(t0)).unwrap(), Due::default());
        assert_eq!(ready(st.due(grace)).unwrap().expired, [id("a")]);

        let resumed = ready(st.resume(&id("a"), &id("n"), t0)).unwrap();
        assert_eq!(resumed.room, room("r"));
        assert_eq!(ids(&resumed.others), ["b"]);
        assert_eq!(resumed.replaced, None);
        // The socket it dropped from is forgotten: closing it takes no one.
        assert_eq!(ready(st.remove_connection(&id("a"), t0)).unwrap(), None);
        let presence = ready(st.lookup(&id("n"), t0)).unwrap().unwrap();
        assert_eq!(
            presence,
            Presence {
                id: id("a"),
                room: Some(room("r"))
            }
        );
        assert_eq!(
            st.stats(),
            Stats {
                connections: 2,
                rooms: 1,
                members: 2,
                suspended: 0
            }
        );
    }

    #[test]
    fn resume_is_refused_after_the_grace_or_into_a_used_socket() {
        let st = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let grace = t0 + Duration::from_secs(30);
        for c in ["a", "n", "m"] {
            ready(st.add_connection(&id(c), t0)).unwrap();
        }
        ready(st.join(&id("a"), &room("r"), 8, t0)).unwrap();
        ready(st.join(&id("m"), &room("q"), 8, t0)).unwrap();
        ready(st.suspend(&id("a"), grace, t0)).unwrap();
        // A socket already in a room cannot take a participant over.
        let used = ready(st.resume(&id("a"), &id("m"), t0));
        assert!(matches!(used, Err(ResumeError::NotResumable)));
        let late = ready(st.resume(&id("a"), &id("n"), grace));
        assert!(matches!(late, Err(ResumeError::NotResumable)));
        let gone = ready(st.expire(&id("a"), grace)).unwrap();
        assert_eq!(
            gone,
            Some(Departure {
                id: id("a"),
                room: Some(room("r"))
            })
        );
    }

    #[test]
    fn suspending_a_participant_in_no_room_removes_it() {
        let st = MemoryStore::new();
        let now = SystemTime::now();
        ready(st.add_connection(&id("a"), now)).unwrap();
        assert_eq!(ready(st.suspend(&id("a"), now, now)).unwrap(), None);
        assert_eq!(st.stats().connections, 0);
    }

    #[test]
    fn a_clean_close_after_a_drop_ends_the_suspended_participant() {
        let st = MemoryStore::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for c in ["a", "b"] {
            ready(st.add_connection(&id(c), t0)).unwrap();
            ready(st.join(&id(c), &room("r"), 8, t0)).unwrap();
        }
        ready(st.suspend(&id("a"), t0 + Duration::from_secs(30), t0)).unwrap();
        let ended = ready(st.remove_connection(&id("a"), t0)).unwrap();
        assert_eq!(
            ended,
            Some(Departure {
                id: id("a"),
                room: Some(room("r"))
            })
        );
        assert_eq!(ids(&ready(st.members(&room("r"), t0)).unwrap()), ["b"]);
        assert_eq!(st.stats().suspended, 0);
    }
}
