//! The [`ConnectionStore`] port: which connections exist and which room each is in.
//! Implementations: [`MemoryStore`](crate::MemoryStore) here, a DynamoDB store in
//! `meshcall-aws`.

use std::{error::Error, future::Future, time::SystemTime};

use meshcall_protocol::{ConnectionId, RoomId};

/// The store could not be read or written (an infrastructure failure, not a client mistake).
#[derive(Debug, thiserror::Error)]
#[error("connection store failed")]
pub struct StoreError {
    #[source]
    source: Box<dyn Error + Send + Sync>,
}

impl StoreError {
    /// Wraps the backing store's own error.
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// Why a join did not happen.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The room already holds the maximum number of members.
    #[error("room is full")]
    RoomFull,
    /// The connection is not (or no longer) known to the store.
    #[error("connection is not connected")]
    NotConnected,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a successful join changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The room the connection was in before, if it was in another one.
    pub left: Option<RoomId>,
    /// The connection was already a member of this room; nothing changed.
    pub already_member: bool,
    /// The room's other members.
    pub others: Vec<ConnectionId>,
}

/// Who is connected and who is in which room. A connection is in at most one room.
///
/// Every method is one atomic step as seen by concurrent callers; in particular `join`
/// must never let a room grow past `cap`, however many joins race.
pub trait ConnectionStore: Send + Sync {
    /// Records a new connection, in no room.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn add_connection(
        &self,
        conn: &ConnectionId,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets a connection. Returns the room it was in. Removing an unknown connection is
    /// not an error (it returns `None`), so cleanup may run more than once.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn remove_connection(
        &self,
        conn: &ConnectionId,
    ) -> impl Future<Output = Result<Option<RoomId>, StoreError>> + Send;

    /// Puts a connection in `room`, leaving any other room, unless `room` already has `cap`
    /// members.
    ///
    /// # Errors
    /// [`JoinError::RoomFull`] if the room is full (the connection then stays where it
    /// was); [`JoinError::NotConnected`] if the connection was never added or has been
    /// removed (a removed connection never comes back); [`JoinError::Store`] if the store
    /// fails.
    fn join(
        &self,
        conn: &ConnectionId,
        room: &RoomId,
        cap: usize,
        now: SystemTime,
    ) -> impl Future<Output = Result<Joined, JoinError>> + Send;

    /// Takes a connection out of its room. Returns the room it left, if it was in one.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn leave(
        &self,
        conn: &ConnectionId,
    ) -> impl Future<Output = Result<Option<RoomId>, StoreError>> + Send;

    /// The room a connection is in (`None` for no room or an unknown connection).
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn room_of(
        &self,
        conn: &ConnectionId,
    ) -> impl Future<Output = Result<Option<RoomId>, StoreError>> + Send;

    /// Every member of a room, all of them (stores that page must read every page).
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn members(
        &self,
        room: &RoomId,
    ) -> impl Future<Output = Result<Vec<ConnectionId>, StoreError>> + Send;
}
