//! The [`Pusher`] port: deliver one frame to one connection. Implementations: a bounded
//! channel per socket in the self-hosted server, the API Gateway Management API on AWS.

use std::{error::Error, future::Future, sync::Arc};

use meshcall_protocol::ConnectionId;

/// What a frame is, for metrics and logs (payloads are never logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `joined`, to the joiner.
    Joined,
    /// `newParticipant`, to the others.
    NewParticipant,
    /// A `sendMsgToRoom` message, relayed verbatim.
    RoomMessage,
    /// A targeted `signal`.
    Signal,
    /// `participantLeft`.
    ParticipantLeft,
    /// `pong`.
    Pong,
    /// `error`, to the sender of a refused frame.
    Error,
}

impl Kind {
    /// Every kind, for pre-registering metric labels.
    pub const ALL: [Kind; 7] = [
        Self::Joined,
        Self::NewParticipant,
        Self::RoomMessage,
        Self::Signal,
        Self::ParticipantLeft,
        Self::Pong,
        Self::Error,
    ];

    /// A stable lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::NewParticipant => "newParticipant",
            Self::RoomMessage => "sendMsgToRoom",
            Self::Signal => "signal",
            Self::ParticipantLeft => "participantLeft",
            Self::Pong => "pong",
            Self::Error => "error",
        }
    }
}

/// One text frame to send. The text is shared, so a fan-out copies it once at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// What the frame is.
    pub kind: Kind,
    /// The frame's text.
    pub text: Arc<str>,
}

impl Outbound {
    /// A frame of `kind` with `text`.
    pub fn new(kind: Kind, text: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            text: text.into(),
        }
    }
}

/// The result of a push that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The frame was handed to the connection.
    Delivered,
    /// The connection no longer exists, or can no longer keep up; the core removes it and
    /// tells its room.
    Gone,
}

/// A push failed for a reason other than the connection being gone (say, a network error
/// on the way to API Gateway). The connection is kept.
#[derive(Debug, thiserror::Error)]
#[error("push failed")]
pub struct PushError {
    #[source]
    source: Box<dyn Error + Send + Sync>,
}

impl PushError {
    /// Wraps the transport's own error.
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// Sends frames to connections.
pub trait Pusher: Send + Sync {
    /// Sends `frame` to `to`.
    ///
    /// # Errors
    /// [`PushError`] if the frame could not be sent and the connection may still be there.
    fn push(
        &self,
        to: &ConnectionId,
        frame: &Outbound,
    ) -> impl Future<Output = Result<Delivery, PushError>> + Send;

    /// Whether `to` still exists at the gateway, without sending it anything (API Gateway:
    /// `GET @connections/{id}`, 410 is [`Delivery::Gone`]). The sweep and a full room use it
    /// to find members whose `$disconnect` never came.
    ///
    /// # Errors
    /// [`PushError`] if the gateway could not be asked.
    fn probe(&self, to: &ConnectionId) -> impl Future<Output = Result<Delivery, PushError>> + Send;
}
