//! meshcall's wire protocol: the JSON messages that browsers and the signalling service
//! exchange over a WebSocket, their validation, and the limits they are held to.
//!
//! # Layout
//!
//! - [`ids`]: [`ConnectionId`] and [`RoomId`], validating newtypes.
//! - [`client`]: [`ClientMessage`], what a client sends (tagged by `action`), and its parser.
//! - [`server`]: [`ServerMessage`], what the service sends (tagged by `type`).
//! - [`error`]: [`ErrorCode`], the stable error strings, and [`ProtocolError`].
//! - [`limits`]: the default limits, matching API Gateway WebSocket where it has one.
//!
//! This crate does no IO and knows nothing of rooms or connections beyond their names; the
//! routes live in `meshcall-core`. The protocol is described once, for people, in
//! `docs/protocol.md`.

pub mod client;
pub mod error;
pub mod ids;
pub mod limits;
pub mod server;

pub use client::ClientMessage;
pub use error::{ErrorCode, ProtocolError};
pub use ids::{ConnectionId, InvalidId, RoomId};
pub use server::{IceServer, ServerMessage};
