//! [`Signalling`]: the routes, and the delivery helpers they share. One module per route, in
//! the style of API Gateway's route keys.

mod connect;
mod default;
mod disconnect;
mod join_room;
mod leave_room;
mod ping;
mod send_msg_to_room;
mod signal;

use std::{borrow::Cow, time::SystemTime};

use futures_util::{StreamExt, stream::FuturesUnordered};
use meshcall_protocol::{ClientMessage, ConnectionId, ErrorCode, ServerMessage};

use crate::{
    config::Config,
    pusher::{Delivery, Kind, Outbound, Pusher},
    store::{ConnectionStore, StoreError},
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
    /// `$default`: a frame no route matched.
    Default,
}

impl Route {
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
            Self::Default => "$default",
        }
    }
}

/// What handling one frame came to, for the gateway's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The route that handled the frame.
    pub route: Route,
    /// The error sent back to the sender, if the frame was refused.
    pub error: Option<ErrorCode>,
}

/// A route's failure: the client's mistake (answered with an `error` frame) or the store's.
#[derive(Debug)]
enum RouteError {
    Client(ErrorCode, Cow<'static, str>),
    Store(StoreError),
}

impl From<StoreError> for RouteError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn client_error(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> RouteError {
    RouteError::Client(code, message.into())
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

    /// `$connect`: a new connection, in no room yet.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails; the gateway should refuse the connection.
    pub async fn connect(&self, conn: &ConnectionId, now: SystemTime) -> Result<(), StoreError> {
        connect::run(self, conn, now).await
    }

    /// `$disconnect`: the connection closed or dropped. Its room is told. Safe to call for a
    /// connection that was already removed.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    pub async fn disconnect(&self, conn: &ConnectionId) -> Result<(), StoreError> {
        disconnect::run(self, conn).await
    }

    /// One text frame from `conn`: parse it, route it on its `action`, answer errors to the
    /// sender. Never fails: every problem becomes an `error` frame to the sender.
    pub async fn message(&self, conn: &ConnectionId, text: &str, now: SystemTime) -> Outcome {
        let parsed = ClientMessage::parse(text);
        let (route, result) = match parsed {
            Err(e) => (Route::Default, Err(client_error(e.code(), e.to_string()))),
            Ok(ClientMessage::JoinRoom { room_id }) => (
                Route::JoinRoom,
                join_room::run(self, conn, room_id, now).await,
            ),
            Ok(ClientMessage::SendMsgToRoom { room_id, message }) => (
                Route::SendMsgToRoom,
                send_msg_to_room::run(self, conn, &room_id, &message).await,
            ),
            Ok(ClientMessage::Signal { to, data }) => {
                (Route::Signal, signal::run(self, conn, &to, data).await)
            }
            Ok(ClientMessage::LeaveRoom) => (Route::LeaveRoom, leave_room::run(self, conn).await),
            Ok(ClientMessage::Ping) => (Route::Ping, ping::run(self, conn).await),
        };
        let error = match result {
            Ok(()) => None,
            Err(RouteError::Client(code, message)) => {
                tracing::debug!(route = route.as_str(), code = code.as_str(), "refused");
                self.refuse(conn, code, &message).await;
                Some(code)
            }
            Err(RouteError::Store(e)) => {
                tracing::error!(route = route.as_str(), error = %e, source = ?std::error::Error::source(&e), "store failed");
                self.refuse(conn, ErrorCode::Internal, "the service failed; try again")
                    .await;
                Some(ErrorCode::Internal)
            }
        };
        Outcome { route, error }
    }

    /// Sends an `error` frame to `conn`. Gateways use it for what they refuse themselves
    /// (binary frames, oversize frames, rate limit), the routes for everything else.
    pub async fn refuse(&self, conn: &ConnectionId, code: ErrorCode, message: &str) {
        default::refuse(self, conn, code, message).await;
    }

    /// Sends one frame to one connection; a gone connection is cleaned up. Returns `false`
    /// if the connection was gone.
    async fn send_to(&self, to: &ConnectionId, frame: &Outbound) -> bool {
        match self.push_one(to, frame).await {
            None => true,
            Some(gone) => {
                self.settle(vec![gone]).await;
                false
            }
        }
    }

    /// Sends one frame to each of `targets`, a bounded number at a time. Connections that
    /// turn out to be gone are removed and their rooms told; the rest still get the frame.
    async fn send_to_all(&self, targets: &[ConnectionId], frame: &Outbound) {
        let gone = self.push_all(targets, frame).await;
        self.settle(gone).await;
    }

    /// Removes connections found gone and tells their rooms.
    async fn settle(&self, mut gone: Vec<ConnectionId>) {
        // Telling a room that someone is gone may find more gone members: a worklist, so
        // each connection is removed once and the recursion stays flat.
        while let Some(conn) = gone.pop() {
            match self.store.remove_connection(&conn).await {
                Ok(Some(room)) => {
                    tracing::warn!(conn_id = %conn, room_id = %room, "dropped a gone connection");
                    match self.store.members(&room).await {
                        Ok(members) => {
                            let left = participant_left(&conn);
                            gone.extend(self.push_all(&members, &left).await);
                        }
                        Err(e) => tracing::error!(error = %e, "store failed listing a room"),
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "store failed removing a gone connection"),
            }
        }
    }

    /// Pushes to every target, at most `fanout_concurrency` at a time; returns the
    /// connections that were gone.
    async fn push_all(&self, targets: &[ConnectionId], frame: &Outbound) -> Vec<ConnectionId> {
        let limit = self.config.fanout_concurrency.max(1);
        let mut pending = targets.iter();
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

    /// Tells every one of `members` but `conn` itself that `conn` left.
    async fn announce_departure(&self, conn: &ConnectionId, members: &[ConnectionId]) {
        let others: Vec<ConnectionId> = members.iter().filter(|m| *m != conn).cloned().collect();
        self.send_to_all(&others, &participant_left(conn)).await;
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
