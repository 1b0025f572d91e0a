//! [`DynamoStore`]: the [`ConnectionStore`] port on one DynamoDB table, for the Lambda
//! deployment. The layout is in the crate root's docs.
//!
//! - `read`: the reads (consistent `GetItem` and `BatchGetItem`, the `byRoom` Query, and
//!   [`DynamoStore::due`], the `bySuspension` Query).
//! - `membership`: `join` and `leave`, with the room cap.
//! - `session`: sockets and participants coming and going: connect, remove, suspend,
//!   resume, expire.

mod membership;
mod read;
mod session;

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use meshcall_core::{
    ConnectionStore, Departure, JoinError, Joined, Member, Presence, ResumeError, Resumed,
    StoreError,
    protocol::{ConnectionId, RoomId},
};

use crate::{
    calls::{CallCounter, Calls},
    table::{ParticipantRow, SocketRow, participant_key, socket_key},
};

/// Membership in a DynamoDB table. Clones of the SDK client are cheap; build one store per
/// process (per Lambda instance) and share it.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    calls: CallCounter,
    page_size: Option<i32>,
    ttl: Duration,
}

impl DynamoStore {
    /// How long an item lives past its last refresh (`$connect`, a join, a resume): longer
    /// than API Gateway's 2-hour connection limit, so only rows whose `$disconnect` never
    /// ran expire.
    pub const DEFAULT_TTL: Duration = Duration::from_hours(3);

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
        }
    }

    /// Sets how long items live past their last refresh (default [`Self::DEFAULT_TTL`]).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Caps each `byRoom` Query page at `items` (DynamoDB's own cap is 1 MB), so tests can
    /// show that every page is read.
    #[must_use]
    pub fn with_page_size(mut self, items: u16) -> Self {
        self.page_size = Some(i32::from(items.max(1)));
        self
    }

    /// Requests sent so far, by operation: every attempt, SDK retries included.
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
        self.connect(socket, now).await
    }

    async fn remove_connection(
        &self,
        socket: &ConnectionId,
    ) -> Result<Option<Departure>, StoreError> {
        self.remove(socket, SystemTime::now()).await
    }

    async fn suspend(
        &self,
        socket: &ConnectionId,
        until: SystemTime,
    ) -> Result<Option<ConnectionId>, StoreError> {
        self.detach(socket, until, SystemTime::now()).await
    }

    async fn resume(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Resumed, ResumeError> {
        self.reattach(participant, socket, now).await
    }

    async fn expire(
        &self,
        participant: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Departure>, StoreError> {
        self.end_grace(participant, now).await
    }

    async fn join(
        &self,
        socket: &ConnectionId,
        room: &RoomId,
        cap: usize,
        now: SystemTime,
    ) -> Result<Joined, JoinError> {
        self.enter(socket, room, cap, now).await
    }

    async fn leave(
        &self,
        socket: &ConnectionId,
    ) -> Result<Option<(ConnectionId, RoomId)>, StoreError> {
        self.exit(socket, SystemTime::now()).await
    }

    /// One `GetItem`: the socket item carries its participant's room.
    async fn lookup(&self, socket: &ConnectionId) -> Result<Option<Presence>, StoreError> {
        let item = self.get(socket_key(socket)).await?;
        Ok(
            SocketRow::decode(item.as_ref(), SystemTime::now())?.map(|row| Presence {
                id: row.participant,
                room: row.room,
            }),
        )
    }

    /// One `GetItem`.
    async fn participant(
        &self,
        id: &ConnectionId,
    ) -> Result<Option<(Option<RoomId>, Member)>, StoreError> {
        let item = self.get(participant_key(id)).await?;
        Ok(ParticipantRow::decode(item.as_ref(), SystemTime::now())?
            .map(|p| (p.room.clone(), p.into_member())))
    }

    /// One Query per page of the `byRoom` index.
    async fn members(&self, room: &RoomId) -> Result<Vec<Member>, StoreError> {
        self.query_members(room, SystemTime::now()).await
    }
}
