//! [`Signalling`]: the routes, and the delivery helpers they share. One module per route, in
//! the style of API Gateway's route keys.

mod connect;
mod default;
mod disconnect;
mod join_room;
mod leave_room;
mod ping;
mod resume;
mod send_msg_to_room;
mod signal;

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use futures_util::{StreamExt, stream::FuturesUnordered};
use meshcall_protocol::{
    ClientMessage, ConnectionId, ErrorCode, ProtocolError, RoomId, ServerMessage,
};

use crate::{
    config::Config,
    pusher::{Delivery, Kind, Outbound, Pusher},
    store::{ConnectionStore, Departure, Member, StoreError, Suspension},
};

/// Called with every suspension the core makes, for gateways without timers to schedule the
/// participant's [`Signalling::expire`] (the Lambda sends a delayed queue message).
pub type SuspensionHook = Arc<dyn Fn(&Suspension) + Send + Sync>;

/// A full room's members are probed for ghosts at most this often per room and process.
const PROBE_FULL_ROOM_EVERY: Duration = Duration::from_secs(5);

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Suspended participants whose grace had ended, removed and announced.
    pub expired: usize,
    /// Members whose socket was probed.
    pub probed: usize,
    /// Probed sockets the gateway no longer knew (their participants were dropped as gone).
    pub gone: usize,
}

/// Which route handled an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `$connect`.
    Connect,
    /// `$disconnect`.
    Disconnect,
    /// `joinRoom`.
    JoinRoom,
    /// `sendMsgToRoom`.
    SendMsgToRoom,
    /// `signal`.
    Signal,
    /// `leaveRoom`.
    LeaveRoom,
    /// `ping`.
    Ping,
    /// `resume`.
    Resume,
    /// `$default`: a frame no route matched.
    Default,
}

impl Route {
    /// Every route, for a deployment to define each one.
    pub const ALL: [Route; 9] = [
        Self::Connect,
        Self::Disconnect,
        Self::JoinRoom,
        Self::SendMsgToRoom,
        Self::Signal,
        Self::LeaveRoom,
        Self::Ping,
        Self::Resume,
        Self::Default,
    ];

    /// The route key, as API Gateway names it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "$connect",
            Self::Disconnect => "$disconnect",
            Self::JoinRoom => "joinRoom",
            Self::SendMsgToRoom => "sendMsgToRoom",
            Self::Signal => "signal",
            Self::LeaveRoom => "leaveRoom",
            Self::Ping => "ping",
            Self::Resume => "resume",
            Self::Default => "$default",
        }
    }
}

/// What handling one frame came to, for the gateway's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The route that handled the frame.
    pub route: Route,
    /// The error sent back to the sender, if the frame was refused.
    pub error: Option<ErrorCode>,
    /// After a `resume` that took its participant over from a socket still attached: that
    /// socket, which now carries no one (its gateway may close it).
    pub replaced: Option<ConnectionId>,
}

/// A route's failure: the client's mistake (answered with an `error` frame) or the store's.
#[derive(Debug)]
enum RouteError {
    /// Refused with `code`; `about` is the peer the error names (`signal` to a peer that is
    /// not in the sender's room).
    Client {
        code: ErrorCode,
        message: Cow<'static, str>,
        about: Option<ConnectionId>,
    },
    Store(StoreError),
}

impl From<StoreError> for RouteError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn client_error(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> RouteError {
    RouteError::Client {
        code,
        message: message.into(),
        about: None,
    }
}

/// The signalling service: routes over a [`ConnectionStore`] and a [`Pusher`].
pub struct Signalling<S, P> {
    store: S,
    pusher: P,
    config: Config,
    on_suspend: Option<SuspensionHook>,
    /// When each full room was last probed for ghosts by this process.
    probed_rooms: Mutex<HashMap<RoomId, SystemTime>>,
}

impl<S: std::fmt::Debug, P: std::fmt::Debug> std::fmt::Debug for Signalling<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signalling")
            .field("store", &self.store)
            .field("pusher", &self.pusher)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: ConnectionStore, P: Pusher> Signalling<S, P> {
    /// Routes over `store` and `pusher`, enforcing `config`.
    pub fn new(store: S, pusher: P, config: Config) -> Self {
        Self {
            store,
            pusher,
            config,
            on_suspend: None,
            probed_rooms: Mutex::new(HashMap::new()),
        }
    }

    /// Calls `hook` with every suspension made from now on: a dropped socket's, and those
    /// of sockets a push found gone.
    #[must_use]
    pub fn on_suspend(mut self, hook: SuspensionHook) -> Self {
        self.on_suspend = Some(hook);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The pusher.
    pub fn pusher(&self) -> &P {
        &self.pusher
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `$connect`: a new socket, whose participant (same id) is in no room yet.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails; the gateway should refuse the connection.
    pub async fn connect(&self, socket: &ConnectionId, now: SystemTime) -> Result<(), StoreError> {
        connect::run(self, socket, now).await
    }

    /// `$disconnect`: the socket closed cleanly (or was closed by the gateway). Its
    /// participant (attached to it, or suspended from it) is removed and its room told.
    /// Safe to call twice.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    pub async fn disconnect(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        disconnect::run(self, socket, now).await
    }

    /// The socket dropped without a clean close. With resume on, its participant keeps its
    /// place, unseen by the others, until the grace ends; returns the participant and when
    /// the gateway should call [`expire`](Self::expire) for it. A drop reported twice (a
    /// push found the socket gone, then `$disconnect` came) changes nothing the second time.
    /// Otherwise (or for a participant in no room) this is `$disconnect`.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    pub async fn suspend(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<Suspension>, StoreError> {
        let Some(resume) = &self.config.resume else {
            self.disconnect(socket, now).await?;
            return Ok(None);
        };
        self.keep_for_resume(socket, resume.grace, now).await
    }

    /// Suspends the socket's participant for `grace` (the store removes one in no room).
    async fn keep_for_resume(
        &self,
        socket: &ConnectionId,
        grace: Duration,
        now: SystemTime,
    ) -> Result<Option<Suspension>, StoreError> {
        let suspended = self.store.suspend(socket, now + grace, now).await?;
        tracing::debug!(socket = %socket, suspended = suspended.is_some(), "socket dropped");
        if let (Some(s), Some(hook)) = (&suspended, &self.on_suspend) {
            hook(s);
        }
        Ok(suspended)
    }

    /// The periodic sweep: expires every suspended participant whose grace ended, and
    /// probes the sockets of members due for a liveness check, dropping those the gateway
    /// no longer knows (as a push answered 410 would) and scheduling the next check of the
    /// others after `check_every`.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot say what is due.
    pub async fn sweep(&self, now: SystemTime, check_every: Duration) -> Result<Swept, StoreError> {
        let due = self.store.due(now).await?;
        let mut swept = Swept::default();
        for participant in &due.expired {
            match self.expire(participant, now).await {
                Ok(()) => swept.expired += 1,
                Err(e) => tracing::error!(conn_id = %participant, error = %e, "expire failed"),
            }
        }
        let gone = self.probe_all(&due.unchecked).await;
        swept.probed = due.unchecked.len();
        swept.gone = gone.len();
        for member in &due.unchecked {
            let Some(socket) = &member.socket else {
                continue;
            };
            if gone.contains(socket) {
                continue;
            }
            if let Err(e) = self
                .store
                .checked(&member.id, socket, now + check_every, now)
                .await
            {
                tracing::error!(conn_id = %member.id, error = %e, "store failed recording a check");
            }
        }
        self.settle(gone, now).await;
        Ok(swept)
    }

    /// Probes the members' sockets, at most `fanout_concurrency` at a time; returns those
    /// the gateway no longer knows.
    async fn probe_all(&self, members: &[Member]) -> Vec<ConnectionId> {
        let limit = self.config.fanout_concurrency.max(1);
        let mut pending = members.iter().filter_map(|m| m.socket.as_ref());
        let mut in_flight = FuturesUnordered::new();
        let mut gone = Vec::new();
        loop {
            while in_flight.len() < limit {
                let Some(socket) = pending.next() else { break };
                in_flight.push(async move { (socket, self.pusher.probe(socket).await) });
            }
            match in_flight.next().await {
                Some((socket, Ok(Delivery::Gone))) => gone.push(socket.clone()),
                Some((_, Ok(Delivery::Delivered))) => {}
                Some((socket, Err(e))) => {
                    tracing::warn!(conn_id = %socket, error = %e, "probe failed");
                }
                None => return gone,
            }
        }
    }

    /// A join found `room` full: probe its members for ghosts (sockets the gateway no
    /// longer knows, whose `$disconnect` never came) and drop those, at most once per
    /// [`PROBE_FULL_ROOM_EVERY`] per room. Returns whether any seat was freed at once.
    async fn clear_ghosts(&self, room: &RoomId, now: SystemTime) -> Result<bool, StoreError> {
        {
            let mut probed = self
                .probed_rooms
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let recent = probed.get(room).is_some_and(|at| {
                now.duration_since(*at)
                    .is_ok_and(|ago| ago < PROBE_FULL_ROOM_EVERY)
            });
            if recent {
                return Ok(false);
            }
            probed.retain(|_, at| {
                now.duration_since(*at)
                    .is_ok_and(|ago| ago < PROBE_FULL_ROOM_EVERY)
            });
            probed.insert(room.clone(), now);
        }
        let members = self.store.members_to_probe(room, now).await?;
        let gone = self.probe_all(&members).await;
        if gone.is_empty() {
            return Ok(false);
        }
        tracing::warn!(room_id = %room, ghosts = gone.len(), "a full room held members the gateway no longer knows");
        let freed = self.config.resume.is_none();
        self.settle(gone, now).await;
        Ok(freed)
    }

    /// A suspended participant's grace ended: if it has not resumed, remove it and tell
    /// its room.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    pub async fn expire(
        &self,
        participant: &ConnectionId,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        if let Some(Departure {
            id,
            room: Some(room),
        }) = self.store.expire(participant, now).await?
        {
            tracing::debug!(conn_id = %id, room_id = %room, "resume grace ended");
            self.announce_departure(&id, &room, now).await?;
        }
        Ok(())
    }

    /// One text frame from `socket`: [`ClientMessage::parse`] then [`Signalling::dispatch`].
    /// For gateways that make no decision of their own on the message (the Lambda).
    /// (The dispatch future itself, not one wrapped around it: no larger for the parse.)
    pub fn message<'a>(
        &'a self,
        socket: &'a ConnectionId,
        text: &'a str,
        now: SystemTime,
    ) -> impl Future<Output = Outcome> + Send + 'a {
        self.dispatch(socket, ClientMessage::parse(text), now)
    }

    /// One parsed frame from `socket` (or why it did not parse): route it on its `action`,
    /// answer errors to the sender. Never fails: every problem becomes an `error` frame to
    /// the sender. A gateway that looks at the message itself first (the self-hosted
    /// server's join limit) parses once and hands the result here.
    pub async fn dispatch(
        &self,
        socket: &ConnectionId,
        parsed: Result<ClientMessage<'_>, ProtocolError>,
        now: SystemTime,
    ) -> Outcome {
        let mut replaced = None;
        let (route, result) = match parsed {
            Err(e) => (Route::Default, Err(client_error(e.code(), e.to_string()))),
            Ok(ClientMessage::JoinRoom { room_id }) => (
                Route::JoinRoom,
                join_room::run(self, socket, room_id, now).await,
            ),
            Ok(ClientMessage::SendMsgToRoom { room_id, message }) => (
                Route::SendMsgToRoom,
                send_msg_to_room::run(self, socket, &room_id, &message, now).await,
            ),
            Ok(ClientMessage::Signal { to, data }) => (
                Route::Signal,
                signal::run(self, socket, &to, data, now).await,
            ),
            Ok(ClientMessage::LeaveRoom) => {
                (Route::LeaveRoom, leave_room::run(self, socket, now).await)
            }
            Ok(ClientMessage::Ping) => (Route::Ping, ping::run(self, socket, now).await),
            Ok(ClientMessage::Resume { token }) => {
                let result = resume::run(self, socket, &token, now).await;
                (Route::Resume, result.map(|r| replaced = r))
            }
        };
        let error = match result {
            Ok(()) => None,
            Err(RouteError::Client {
                code,
                message,
                about,
            }) => {
                tracing::debug!(conn_id = %socket, route = route.as_str(), code = code.as_str(), "refused");
                default::refuse_about(self, socket, code, &message, about.as_ref(), now).await;
                Some(code)
            }
            Err(RouteError::Store(e)) => {
                tracing::error!(conn_id = %socket, route = route.as_str(), error = %e, source = ?std::error::Error::source(&e), "store failed");
                self.refuse(
                    socket,
                    ErrorCode::Internal,
                    "the service failed; try again",
                    now,
                )
                .await;
                Some(ErrorCode::Internal)
            }
        };
        Outcome {
            route,
            error,
            replaced,
        }
    }

    /// Sends an `error` frame to `conn`. Gateways use it for what they refuse themselves
    /// (binary frames, oversize frames, rate limit), the routes for everything else.
    pub async fn refuse(
        &self,
        conn: &ConnectionId,
        code: ErrorCode,
        message: &str,
        now: SystemTime,
    ) {
        default::refuse(self, conn, code, message, now).await;
    }

    /// Sends one frame to one socket; a gone socket is dealt with as [`settle`] says.
    /// Returns `false` if the socket was gone.
    ///
    /// [`settle`]: Self::settle
    async fn send_to(&self, socket: &ConnectionId, frame: &Outbound, now: SystemTime) -> bool {
        match self.push_one(socket, frame).await {
            None => true,
            Some(gone) => {
                self.settle(vec![gone], now).await;
                false
            }
        }
    }

    /// Sends one frame to every member but `except` that has a socket (suspended members
    /// miss it). Sockets that turn out to be gone are removed and their rooms told; the
    /// rest still get the frame.
    async fn send_to_members(
        &self,
        members: &[Member],
        except: Option<&ConnectionId>,
        frame: &Outbound,
        now: SystemTime,
    ) {
        let gone = self.push_all(members, except, frame).await;
        self.settle(gone, now).await;
    }

    /// Deals with sockets the gateway no longer knows. Gone is not left: with resume on,
    /// each one's participant is suspended (its client may be reconnecting right now, and
    /// its `$disconnect` may not have run yet); without it, or for a participant in no
    /// room, it is removed and its room told.
    async fn settle(&self, mut gone: Vec<ConnectionId>, now: SystemTime) {
        if let Some(resume) = &self.config.resume {
            for socket in gone {
                if let Err(e) = self.keep_for_resume(&socket, resume.grace, now).await {
                    tracing::error!(error = %e, "store failed suspending a gone connection");
                }
            }
            return;
        }
        // Telling a room that someone is gone may find more gone members: a worklist, so
        // each socket is removed once and the recursion stays flat.
        while let Some(socket) = gone.pop() {
            let (id, room) = match self.store.remove_connection(&socket, now).await {
                Ok(Some(Departure {
                    id,
                    room: Some(room),
                })) => (id, room),
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "store failed removing a gone connection");
                    continue;
                }
            };
            tracing::warn!(conn_id = %id, room_id = %room, "dropped a gone connection");
            match self.push_departure(&id, &room, now).await {
                Ok(more) => gone.extend(more),
                Err(e) => tracing::error!(error = %e, "store failed listing a room"),
            }
        }
    }

    /// Pushes to the socket of every member but `except` (suspended members have none), at
    /// most `fanout_concurrency` at a time; returns the sockets that were gone.
    async fn push_all(
        &self,
        members: &[Member],
        except: Option<&ConnectionId>,
        frame: &Outbound,
    ) -> Vec<ConnectionId> {
        let limit = self.config.fanout_concurrency.max(1);
        let mut pending = members
            .iter()
            .filter(|m| Some(&m.id) != except)
            .filter_map(|m| m.socket.as_ref());
        let mut in_flight = FuturesUnordered::new();
        let mut gone = Vec::new();
        loop {
            while in_flight.len() < limit {
                let Some(to) = pending.next() else { break };
                in_flight.push(self.push_one(to, frame));
            }
            match in_flight.next().await {
                Some(Some(conn)) => gone.push(conn),
                Some(None) => {}
                None => return gone,
            }
        }
    }

    /// Pushes to one target; returns it if it was gone.
    async fn push_one(&self, to: &ConnectionId, frame: &Outbound) -> Option<ConnectionId> {
        match self.pusher.push(to, frame).await {
            Ok(Delivery::Delivered) => None,
            Ok(Delivery::Gone) => Some(to.clone()),
            Err(e) => {
                tracing::warn!(conn_id = %to, kind = frame.kind.as_str(), error = %e, "push failed");
                None
            }
        }
    }

    /// Tells the members of `room` that participant `id` left it.
    async fn announce_departure(
        &self,
        id: &ConnectionId,
        room: &RoomId,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let gone = self.push_departure(id, room, now).await?;
        self.settle(gone, now).await;
        Ok(())
    }

    /// Pushes `participantLeft` for `id` to the other members of `room`; returns the
    /// sockets that were gone.
    async fn push_departure(
        &self,
        id: &ConnectionId,
        room: &RoomId,
        now: SystemTime,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let members = self.store.members(room, now).await?;
        Ok(self
            .push_all(&members, Some(id), &participant_left(id))
            .await)
    }

    /// The `joined` reply for participant `id` in `room`, with the `others` already there
    /// and, with resume on, a fresh token.
    fn joined(
        &self,
        id: &ConnectionId,
        room: &RoomId,
        others: &[Member],
        resumed: bool,
        now: SystemTime,
    ) -> Outbound {
        let participants: Vec<ConnectionId> = others.iter().map(|m| m.id.clone()).collect();
        let ice_servers = self.config.ice_servers_for(id, now);
        let token = self.config.resume.as_ref().map(|r| r.key.token(id));
        let reply = ServerMessage::Joined {
            room_id: room,
            connection_id: id,
            participants: &participants,
            ice_servers: &ice_servers,
            resume_token: token.as_deref(),
            resumed,
        };
        Outbound::new(Kind::Joined, reply.to_json())
    }
}

fn participant_left(conn: &ConnectionId) -> Outbound {
    Outbound::new(
        Kind::ParticipantLeft,
        ServerMessage::ParticipantLeft {
            participant_connection_id: conn,
        }
        .to_json(),
    )
}
