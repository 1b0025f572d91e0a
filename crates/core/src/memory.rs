//! [`MemoryStore`]: the self-hosted server's [`ConnectionStore`]. One `std` mutex around one
//! state, held only for the few map operations of one call and never across an `.await`.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::SystemTime,
};

use meshcall_protocol::{ConnectionId, RoomId};

use crate::store::{ConnectionStore, JoinError, Joined, StoreError};

/// Membership kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every connection, and the room it is in.
    rooms_by_conn: HashMap<ConnectionId, Option<RoomId>>,
    /// Every non-empty room, and its members in join order.
    members: HashMap<RoomId, Vec<ConnectionId>>,
}

/// Counts for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open connections.
    pub connections: usize,
    /// Non-empty rooms.
    pub rooms: usize,
    /// Connections that are in a room.
    pub members: usize,
}

impl State {
    fn remove_from_room(&mut self, conn: &ConnectionId, room: &RoomId) {
        if let Some(list) = self.members.get_mut(room) {
            list.retain(|m| m != conn);
            if list.is_empty() {
                self.members.remove(room);
            }
        }
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
            connections: s.rooms_by_conn.len(),
            rooms: s.members.len(),
            members: s.members.values().map(Vec::len).sum(),
        }
    }
}

impl ConnectionStore for MemoryStore {
    async fn add_connection(
        &self,
        conn: &ConnectionId,
        _now: SystemTime,
    ) -> Result<(), StoreError> {
        self.lock().rooms_by_conn.insert(conn.clone(), None);
        Ok(())
    }

    async fn remove_connection(&self, conn: &ConnectionId) -> Result<Option<RoomId>, StoreError> {
        let mut s = self.lock();
        let room = s.rooms_by_conn.remove(conn).flatten();
        if let Some(room) = &room {
            s.remove_from_room(conn, room);
        }
        Ok(room)
    }

    async fn join(
        &self,
        conn: &ConnectionId,
        room: &RoomId,
        cap: usize,
        _now: SystemTime,
    ) -> Result<Joined, JoinError> {
        let mut s = self.lock();
        let Some(current) = s.rooms_by_conn.get(conn).cloned() else {
            return Err(JoinError::NotConnected);
        };
        let others = |s: &State| -> Vec<ConnectionId> {
            s.members
                .get(room)
                .map(|list| list.iter().filter(|m| *m != conn).cloned().collect())
                .unwrap_or_default()
        };
        if current.as_ref() == Some(room) {
            return Ok(Joined {
                left: None,
                already_member: true,
                others: others(&s),
            });
        }
        if s.members.get(room).map_or(0, Vec::len) >= cap {
            return Err(JoinError::RoomFull);
        }
        if let Some(old) = &current {
            s.remove_from_room(conn, old);
        }
        let others = others(&s);
        s.members
            .entry(room.clone())
            .or_default()
            .push(conn.clone());
        s.rooms_by_conn.insert(conn.clone(), Some(room.clone()));
        Ok(Joined {
            left: current,
            already_member: false,
            others,
        })
    }

    async fn leave(&self, conn: &ConnectionId) -> Result<Option<RoomId>, StoreError> {
        let mut s = self.lock();
        let room = s.rooms_by_conn.get_mut(conn).and_then(Option::take);
        if let Some(room) = &room {
            s.remove_from_room(conn, room);
        }
        Ok(room)
    }

    async fn room_of(&self, conn: &ConnectionId) -> Result<Option<RoomId>, StoreError> {
        Ok(self.lock().rooms_by_conn.get(conn).cloned().flatten())
    }

    async fn members(&self, room: &RoomId) -> Result<Vec<ConnectionId>, StoreError> {
        Ok(self.lock().members.get(room).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn id(s: &str) -> ConnectionId {
        ConnectionId::parse(s).unwrap()
    }
    fn room(s: &str) -> RoomId {
        RoomId::parse(s).unwrap()
    }

    #[test]
    fn join_switch_leave_and_remove_keep_counts_consistent() {
        let st = MemoryStore::new();
        let now = SystemTime::now();
        for c in ["a", "b", "c"] {
            st.add_connection(&id(c), now)
                .now_or_never()
                .unwrap()
                .unwrap();
        }
        let j = st
            .join(&id("a"), &room("r"), 2, now)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!((j.left, j.already_member, j.others), (None, false, vec![]));
        let j = st
            .join(&id("b"), &room("r"), 2, now)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(j.others, vec![id("a")]);
        let full = st
            .join(&id("c"), &room("r"), 2, now)
            .now_or_never()
            .unwrap();
        assert!(matches!(full, Err(JoinError::RoomFull)));
        // Re-joining your own room is not refused by the cap.
        let j = st
            .join(&id("b"), &room("r"), 2, now)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert!(j.already_member);
        let j = st
            .join(&id("b"), &room("s"), 2, now)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(j.left, Some(room("r")));
        assert_eq!(
            st.stats(),
            Stats {
                connections: 3,
                rooms: 2,
                members: 2
            }
        );
        assert_eq!(
            st.leave(&id("a")).now_or_never().unwrap().unwrap(),
            Some(room("r"))
        );
        assert_eq!(st.leave(&id("a")).now_or_never().unwrap().unwrap(), None);
        assert_eq!(
            st.remove_connection(&id("b"))
                .now_or_never()
                .unwrap()
                .unwrap(),
            Some(room("s"))
        );
        assert_eq!(
            st.remove_connection(&id("b"))
                .now_or_never()
                .unwrap()
                .unwrap(),
            None
        );
        assert_eq!(
            st.stats(),
            Stats {
                connections: 2,
                rooms: 0,
                members: 0
            }
        );
    }
}
