//! The [`ConnectionStore`] port: which participants exist, which socket each is reached
//! through, and which room each is in. Implementations: [`MemoryStore`](crate::MemoryStore)
//! here, a DynamoDB store in `meshcall-aws`.
//!
//! Two kinds of id, both [`ConnectionId`]s: a *socket* is the gateway's connection (API
//! Gateway's `connectionId`, or one WebSocket of the self-hosted server); a *participant* is
//! who the others see. A participant is born with the id of its first socket and keeps it
//! when it resumes on a new socket after a drop, so its peers never notice the blip. Events
//! from gateways name sockets; protocol messages name participants.

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
    /// No participant is attached to the socket (it was removed, say as too slow).
    #[error("socket has no participant")]
    NotConnected,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a resume did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The participant is gone (left, expired, never existed), or the resuming socket is
    /// already in a room of its own.
    #[error("nothing to resume")]
    NotResumable,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A room member and the socket it is reached through (`None` while it is suspended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The participant.
    pub id: ConnectionId,
    /// Its current socket.
    pub socket: Option<ConnectionId>,
}

/// A participant as its socket sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The participant attached to the socket.
    pub id: ConnectionId,
    /// The room it is in.
    pub room: Option<RoomId>,
}

/// A participant that is no longer anywhere, and the room it was in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    /// The participant removed.
    pub id: ConnectionId,
    /// The room it was in, whose members must be told.
    pub room: Option<RoomId>,
}

/// A participant kept in its room, unseen, after its socket dropped: it may `resume` until
/// `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    /// The suspended participant.
    pub id: ConnectionId,
    /// When its grace ends.
    pub until: SystemTime,
}

/// What the periodic sweep has to do (see [`ConnectionStore::due`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// Suspended participants whose grace ended: to expire.
    pub expired: Vec<ConnectionId>,
    /// Members attached to a socket that has not been confirmed alive for a while: to probe
    /// (a gateway that loses `$disconnect` events leaves such ghosts). `socket` is `Some`.
    pub unchecked: Vec<Member>,
}

/// What a successful join changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The participant that joined.
    pub id: ConnectionId,
    /// The room it was in before, if it was in another one.
    pub left: Option<RoomId>,
    /// It was already a member of this room; nothing changed.
    pub already_member: bool,
    /// The room's other members.
    pub others: Vec<Member>,
}

/// What a successful resume changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The participant's room.
    pub room: RoomId,
    /// The room's other members.
    pub others: Vec<Member>,
    /// The socket the participant was attached to until now, if it still had one (its
    /// gateway may close it).
    pub replaced: Option<ConnectionId>,
}

/// Who is connected, through which socket, in which room. A participant is in at most one
/// room.
///
/// Every method is one atomic step as seen by concurrent callers; in particular `join`
/// must never let a room grow past `cap`, however many joins race.
pub trait ConnectionStore: Send + Sync {
    /// Records a new socket and its participant (same id), in no room.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn add_connection(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets a socket and the participant attached to it or suspended from it. Returns
    /// what was removed. A socket with no participant (already removed, or whose
    /// participant resumed elsewhere) is not an error: `None`, so cleanup may run twice.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn remove_connection(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<Departure>, StoreError>> + Send;

    /// Suspends the participant of a dropped socket: it stays in its room, unseen and
    /// receiving nothing, until `until`, and remembers the socket it dropped from (a clean
    /// close reported later for that socket ends it). A participant already suspended from
    /// this socket is left as it is (its grace is not extended) and returned with its own
    /// `until`, so a drop reported twice (a push answered 410, then `$disconnect`) changes
    /// nothing. A participant in no room has nothing to keep: it is removed instead (`None`).
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn suspend(
        &self,
        socket: &ConnectionId,
        until: SystemTime,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<Suspension>, StoreError>> + Send;

    /// Attaches `participant` to `socket`, which must be new (its own participant in no
    /// room; that placeholder is removed). The participant must exist, be in a room (there
    /// is nothing else to return to) and, if suspended, be within its grace
    /// (`now < until`). Its previous socket is forgotten; [`Resumed::replaced`] names it
    /// only if it was still attached (not suspended), for the gateway to close.
    ///
    /// # Errors
    /// [`ResumeError::NotResumable`] if not; [`ResumeError::Store`] if the store fails.
    fn resume(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> impl Future<Output = Result<Resumed, ResumeError>> + Send;

    /// Removes `participant` if it is still suspended and its grace ended by `now`.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn expire(
        &self,
        participant: &ConnectionId,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<Departure>, StoreError>> + Send;

    /// Puts the socket's participant in `room`, leaving any other room, unless `room`
    /// already has `cap` members.
    ///
    /// # Errors
    /// [`JoinError::RoomFull`] if the room is full (the participant then stays where it
    /// was); [`JoinError::NotConnected`] if no participant is attached to the socket;
    /// [`JoinError::Store`] if the store fails.
    fn join(
        &self,
        socket: &ConnectionId,
        room: &RoomId,
        cap: usize,
        now: SystemTime,
    ) -> impl Future<Output = Result<Joined, JoinError>> + Send;

    /// Takes the socket's participant out of its room. Returns it and the room it left, if
    /// it was in one.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn leave(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<(ConnectionId, RoomId)>, StoreError>> + Send;

    /// The participant attached to a socket (not one suspended from it), and its room.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn lookup(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<Presence>, StoreError>> + Send;

    /// A participant's room and socket (`None` for an unknown participant; the socket is
    /// `None` while it is suspended).
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn participant(
        &self,
        id: &ConnectionId,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<(Option<RoomId>, Member)>, StoreError>> + Send;

    /// Every member of a room, in join order, read consistently: a member whose join has
    /// returned is listed (an eventually consistent index is not enough; fan-outs depend on
    /// it).
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn members(
        &self,
        room: &RoomId,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<Member>, StoreError>> + Send;

    /// The members of `room` to probe for ghosts after a [`join`](Self::join) at the same
    /// `now` was refused with [`JoinError::RoomFull`]. By default [`members`](Self::members);
    /// a store whose refusal has just read the room's members may answer from that read
    /// instead of reading them again (a probe is best effort: a member who left meanwhile
    /// is probed for nothing, one who came in meanwhile waits for the next probe).
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn members_to_probe(
        &self,
        room: &RoomId,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<Member>, StoreError>> + Send {
        self.members(room, now)
    }

    /// What the periodic sweep must do at `now`: suspended participants whose grace ended,
    /// and members due for a liveness check.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn due(&self, now: SystemTime) -> impl Future<Output = Result<Due, StoreError>> + Send;

    /// `participant`'s `socket` was found alive at `now`: its next liveness check is at
    /// `next`. Nothing happens if it is no longer attached to that socket.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    fn checked(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        next: SystemTime,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
