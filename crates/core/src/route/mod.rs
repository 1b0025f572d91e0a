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

use std::{borrow::Cow, time::SystemTime};

use futures_util::{StreamExt, stream::FuturesUnordered};
use meshcall_protocol::{ClientMessage, ConnectionId, ErrorCode, RoomId, ServerMessage};

use crate::{
    config::Config,
    pusher::{Delivery, Kind, Outbound, Pusher},
    store::{ConnectionStore, Departure, Member, StoreError},
};

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
#[derive(Debug)]
pub struct Signalling<S, P> {
    store: S,
    pusher: P,
    config: Config,
}

impl<S: ConnectionStore, P: Pusher> Signalling<S, P> {
    /// Routes over `store` and `pusher`, enforcing `config`.
    pub fn new(store: S, pusher: P, config: Config) -> Self {
        Self {
            store,
            pusher,
            config,
        }
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
    /// participant is removed and its room told. Safe to call twice.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    pub async fn disconnect(&self, socket: &ConnectionId) -> Result<(), StoreError> {
        disconnect::run(self, socket).await
    }

    /// The socket dropped without a clean close. With resume on, its participant keeps its
    /// place, unseen by the others, until the grace ends; returns the participant and when
    /// the gateway should call [`expire`](Self::expire) for it. Otherwise (or for a
    /// participant in no room) this is `$disconnect`.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    pub async fn suspend(
        &self,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Result<Option<(ConnectionId, SystemTime)>, StoreError> {
        let Some(resume) = &self.config.resume else {
            self.disconnect(socket).await?;
            return Ok(None);
        };
        let until = now + resume.grace;
        let suspended = self.store.suspend(socket, until).await?;
        tracing::debug!(socket = %socket, suspended = suspended.is_some(), "socket dropped");
        Ok(suspended.map(|id| (id, until)))
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
            self.announce_departure(&id, &room).await?;
        }
        Ok(())
    }

    /// One text frame from `socket`: parse it, route it on its `action`, answer errors to
    /// the sender. Never fails: every problem becomes an `error` frame to the sender.
    pub async fn message(&self, socket: &ConnectionId, text: &str, now: SystemTime) -> Outcome {
        let parsed = ClientMessage::parse(text);
        let mut replaced = None;
        let (route, result) = match parsed {
            Err(e) => (Route::Default, Err(client_error(e.code(), e.to_string()))),
            Ok(ClientMessage::JoinRoom { room_id }) => (
                Route::JoinRoom,
                join_room::run(self, socket, room_id, now).await,
            ),
            Ok(ClientMessage::SendMsgToRoom { room_id, message }) => (
                Route::SendMsgToRoom,
                send_msg_to_room::run(self, socket, &room_id, &message).await,
            ),
            Ok(ClientMessage::Signal { to, data }) => {
                (Route::Signal, signal::run(self, socket, &to, data).await)
            }
            Ok(ClientMessage::LeaveRoom) => (Route::LeaveRoom, leave_room::run(self, socket).await),
            Ok(ClientMessage::Ping) => (Route::Ping, ping::run(self, socket).await),
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
                tracing::debug!(route = route.as_str(), code = code.as_str(), "refused");
                default::refuse_about(self, socket, code, &message, about.as_ref()).await;
                Some(code)
            }
            Err(RouteError::Store(e)) => {
                tracing::error!(route = route.as_str(), error = %e, source = ?std::error::Error::source(&e), "store failed");
                self.refuse(socket, ErrorCode::Internal, "the service failed; try again")
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
    pub async fn refuse(&self, conn: &ConnectionId, code: ErrorCode, message: &str) {
        default::refuse(self, conn, code, message).await;
    }

    /// Sends one frame to one socket; a gone socket is cleaned up. Returns `false` if the
    /// socket was gone.
    async fn send_to(&self, socket: &ConnectionId, frame: &Outbound) -> bool {
        match self.push_one(socket, frame).await {
            None => true,
            Some(gone) => {
                self.settle(vec![gone]).await;
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
    ) {
        let gone = self.push_all(members, except, frame).await;
        self.settle(gone).await;
    }

    /// Removes the participants of sockets found gone and tells their rooms.
    async fn settle(&self, mut gone: Vec<ConnectionId>) {
        // Telling a room that someone is gone may find more gone members: a worklist, so
        // each socket is removed once and the recursion stays flat.
        while let Some(socket) = gone.pop() {
            let (id, room) = match self.store.remove_connection(&socket).await {
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
            match self.push_departure(&id, &room).await {
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
    async fn announce_departure(&self, id: &ConnectionId, room: &RoomId) -> Result<(), StoreError> {
        let gone = self.push_departure(id, room).await?;
        self.settle(gone).await;
        Ok(())
    }

    /// Pushes `participantLeft` for `id` to the other members of `room`; returns the
    /// sockets that were gone.
    async fn push_departure(
        &self,
        id: &ConnectionId,
        room: &RoomId,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let members = self.store.members(room).await?;
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
