//! Load generation for meshcall's WebSocket signalling, kept apart from the server so that
//! nothing here enters the `meshcall` binary.
//!
//! - [`ws`]: raw WebSocket clients over plain TCP with small buffers (thousands per
//!   process), a clean close and an abrupt drop (TCP reset, no close frame).
//! - [`meshcall`]: meshcall's protocol, client side: the frames a client sends and the
//!   frames it receives. [`matchbox`] and [`peerjs`]: the same for the two servers the
//!   benchmark compares meshcall with, over the same [`ws`] transport.
//! - [`procfs`]: a process's resident memory and CPU time, from `/proc`.
//! - [`scrape`]: reading meshcall's `/metrics`.
//! - [`rng`]: a small seeded generator, so that a run can be repeated.
//! - [`bench`]: the side-by-side benchmark against matchbox and `PeerJS`.
//!
//! The `soak` binary (`scripts/soak`) drives 10 000 connections with churn and checks
//! delivery (docs/operations.md has its figures); the `bench` binary (`scripts/bench`)
//! compares meshcall with matchbox and `PeerJS` (docs/benchmarks.md).

pub mod bench;
pub mod matchbox;
pub mod meshcall;
pub mod peerjs;
pub mod procfs;
pub mod rng;
pub mod scrape;
pub mod ws;
