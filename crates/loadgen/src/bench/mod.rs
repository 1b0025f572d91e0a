//! The side-by-side benchmark (issue 11, `scripts/bench`, docs/benchmarks.md): meshcall,
//! matchbox and the `PeerJS` server, each started fresh per case and driven by the same
//! clients, payloads and measurements.
//!
//! - [`server`]: the three servers, their production command lines, start and stop.
//! - [`client`]: one client whichever protocol, as a task per connection.
//! - [`cases`]: idle, relay (moderate and saturated), join storm.
//! - [`report`]: medians, the table, the JSON file.
//! - [`tls`]: the wss cases' certificate and the clients that trust it.

pub mod cases;
pub mod client;
pub mod report;
pub mod server;
pub mod tls;
