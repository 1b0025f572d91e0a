//! [`DynamoStore`]: the [`ConnectionStore`] port on one DynamoDB table, for the Lambda
//! deployment. The layout is in the crate root's docs. Each port method is a method of the
//! same name in one of the submodules:
//!
//! - `read`: the reads every operation builds on (consistent `GetItem` and `BatchGetItem`),
//!   and `lookup`, `participant`, `members`.
//! - `membership`: `join` and `leave`, with the room cap.
//! - `session`: sockets and participants coming and going: `add_connection`,
//!   `remove_connection`, `suspend`, `resume`, `expire`.
//! - `sweep`: `due` (the one Query, on `bySweep`) and `checked`.
//!
//! The store never reads a clock: every method takes `now` from its caller.

mod membership;
mod read;
mod session;
mod sweep;

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use meshcall_core::{
    ConnectionStore, Departure, Due, JoinError, Joined, Member, Presence, ResumeError, Resumed,
    StoreError, Suspension,
    protocol::{ConnectionId, RoomId},
};

use crate::calls::{CallCounter, Calls};

/// Membership in a DynamoDB table. Clones of the SDK client are cheap; build one store per
/// process (per Lambda instance) and share it.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    calls: CallCounter,
    page_size: Option<i32>,
    ttl: Duration,
    check_every: Duration,
    full_rooms: membership::FullRooms,
}

impl DynamoStore {
    /// How long an item lives past its last refresh (`$connect`, a join, a resume): longer
    /// than API Gateway's 2-hour connection limit, so only rows whose `$disconnect` never
    /// ran expire.
    pub const DEFAULT_TTL: Duration = Duration::from_hours(3);

    /// How long after a join or resume (or its last check) a member's socket is due for a
    /// liveness check by the sweep ([`ConnectionStore::due`]).
    pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_mins(5);

    /// A store on `table`, with a client built from `sdk` (endpoint, region, credentials).
    pub fn new(sdk: &SdkConfig, table: impl Into<String>) -> Self {
        let calls = CallCounter::default();
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(calls.clone())
            .build();
        Self {
            client: Client::from_conf(config),
            table: table.into(),
            calls,
            page_size: None,
            ttl: Self::DEFAULT_TTL,
            check_every: Self::DEFAULT_CHECK_EVERY,
            full_rooms: membership::FullRooms::default(),
        }
    }

    /// Sets how long items live past their last refresh (default [`Self::DEFAULT_TTL`]).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how long after a join or resume a member is first due for a liveness check
    /// (default [`Self::DEFAULT_CHECK_EVERY`]); [`ConnectionStore::checked`] sets the next.
    #[must_use]
    pub fn with_check_every(mut self, every: Duration) -> Self {
        self.check_every = every;
        self
    }

    /// How long a member found alive goes unprobed (set by [`Self::with_check_every`]).
    pub fn check_every(&self) -> Duration {
        self.check_every
    }

    /// Caps each `bySweep` Query page at `items` (DynamoDB's own cap is 1 MB), so tests can
    /// show that every page is read.
    #[must_use]
    pub fn with_page_size(mut self, items: u16) -> Self {
        self.page_size = Some(i32::from(items.max(1)));
        self
    }

    /// Requests sent so far, by operation and by kind of read: every attempt, SDK retries
    /// included.
    pub fn calls(&self) -> Calls {
        self.calls.snapshot()
    }

    /// The DynamoDB client (it counts into [`Self::calls`] too).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// When an item refreshed at `now` expires, in epoch seconds.
    fn expires_at(&self, now: SystemTime) -> i64 {
        crate::table::epoch_secs(now + self.ttl)
    }
}

impl ConnectionStore for DynamoStore {
    async fn add_connection(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.add_connection(socket, now).await
    }

    async fn remove_connection(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        self.remove_connection(socket, now).await
    }

    async fn suspend(
        &self,
        socket: &ConnectionId,
        until: SystemTime,
        now: SystemTime,
    ) -> Result<Option<Suspension>, StoreError> {
        self.suspend(socket, until, now).await
    }

    async fn resume(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Resumed, ResumeError> {
        self.resume(participant, socket, now).await
    }

    async fn expire(
        &self,
        participant: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        self.expire(participant, now).await
    }

    async fn join(
        &self,
        socket: &ConnectionId,
        room: &RoomId,
        cap: usize,
        now: SystemTime,
    ) -> Result<Joined, JoinError> {
        self.join(socket, room, cap, now).await
    }

    async fn leave(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(ConnectionId, RoomId)>, StoreError> {
        self.leave(socket, now).await
    }

    async fn lookup(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Presence>, StoreError> {
        self.lookup(socket, now).await
    }

    async fn participant(
        &self,
        id: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(Option<RoomId>, Member)>, StoreError> {
        self.participant(id, now).await
    }

    async fn members(&self, room: &RoomId, now: SystemTime) -> Result<Vec<Member>, StoreError> {
        self.members(room, now).await
    }

    async fn members_to_probe(
        &self,
        room: &RoomId,
        now: SystemTime,
    ) -> Result<Vec<Member>, StoreError> {
        self.members_to_probe(room, now).await
    }

    async fn due(&self, now: SystemTime) -> Result<Due, StoreError> {
        self.due(now).await
    }

    async fn checked(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        next: SystemTime,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.checked(participant, socket, next, now).await
    }
}
