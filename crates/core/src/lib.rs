//! The signalling core: meshcall's routes, written once against two ports, so the same code
//! runs in the self-hosted server and in AWS Lambda.
//!
//! # Layout
//!
//! - [`route`]: [`Signalling`], the entry point. One module per route (`$connect`,
//!   `$disconnect`, `joinRoom`, `sendMsgToRoom`, `signal`, `leaveRoom`, `ping`, `$default`).
//! - [`store`]: the [`ConnectionStore`] port: who is connected, who is in which room.
//! - [`memory`]: [`MemoryStore`], the in-memory store of the self-hosted server.
//! - [`pusher`]: the [`Pusher`] port: send a frame to a connection id, which may be gone.
//! - [`config`]: [`Config`], every limit, defaulting to API Gateway's.
//! - [`rate`]: [`TokenBucket`], the per-connection rate limit a gateway applies.
//! - [`resume`]: [`ResumeKey`], the signed tokens that let a dropped participant back in.
//! - [`turn`]: [`Turn`], short-lived TURN credentials minted per join.
//! - [`sparse`]: [`shrink_if_sparse`], so maps of connections give memory back once emptied.
//! - `settings` (with the `clap` feature): `SignallingArgs`, the settings every runtime
//!   shares, as clap arguments to flatten, and their one conversion into a [`Config`];
//!   what the runtimes holding sockets share (connection age, idle timeout, TURN secret,
//!   relay, log format); and the one set of value parsers (durations, on/off, ICE URLs)
//!   with an empty variable counting as not set.
//!
//! # Contract
//!
//! The core decides; adapters do the IO. Gateways hand it connection events and text frames
//! with the current time; it reads and writes membership through the store and sends frames
//! through the pusher. It never touches a socket, a clock or a random source itself.
//! Bad client input is answered with an `error` frame, never a panic.

pub mod config;
pub mod memory;
pub mod pusher;
pub mod rate;
pub mod resume;
pub mod route;
#[cfg(feature = "clap")]
pub mod settings;
pub mod sparse;
pub mod store;
pub mod turn;

pub use config::{Config, RateLimit};
pub use memory::MemoryStore;
pub use pusher::{Delivery, Kind, Outbound, PushError, Pusher};
pub use rate::TokenBucket;
pub use resume::{Resume, ResumeKey};
pub use route::{Outcome, Route, Signalling, SuspensionHook, Swept};
pub use sparse::shrink_if_sparse;
pub use store::{
    ConnectionStore, Departure, Due, JoinError, Joined, Member, Presence, ResumeError, Resumed,
    StoreError, Suspension,
};
pub use turn::Turn;

pub use meshcall_protocol as protocol;
