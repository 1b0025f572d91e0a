//! Load generation for meshcall's WebSocket signalling, kept apart from the server so that
//! nothing here enters the `meshcall` binary.
//!
//! - [`ws`]: raw WebSocket clients over plain TCP with small buffers (thousands per
//!   process), a clean close and an abrupt drop (TCP reset, no close frame).
//! - [`meshcall`]: meshcall's protocol, client side: the frames a client sends and the
//!   frames it receives. Other signalling protocols (matchbox, `PeerJS`) belong next to it, as
//!   sibling modules over the same [`ws`] transport.
//! - [`procfs`]: a process's resident memory and CPU time, from `/proc`.
//! - [`scrape`]: reading meshcall's `/metrics`.
//! - [`rng`]: a small seeded generator, so that a run can be repeated.
//!
//! The `soak` binary (`scripts/soak`) drives 10 000 connections with churn and checks
//! delivery (docs/operations.md has its figures).

pub mod meshcall;
pub mod procfs;
pub mod rng;
pub mod scrape;
pub mod ws;
