//! `meshcall`: the self-hosted server. One process serves the web app and the WebSocket
//! signalling on one port, with membership in memory and nothing else to install.
//!
//! # Layout
//!
//! - [`settings`]: [`Settings`], every command-line flag and `MESHCALL_*` variable.
//! - [`app`]: the axum router ([`app::router`]) and the state it shares.
//! - [`socket`]: one task per WebSocket: reads frames into the core, writes its queue out,
//!   enforces size, rate and idle limits, closes on shutdown.
//! - [`pusher`]: [`ChannelPusher`](pusher::ChannelPusher), the core's `Pusher` over one
//!   bounded queue per socket.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`web`]: the web app, embedded in the binary.
//! - [`process`]: logging and the Ctrl-C/SIGTERM token, for `main` (and the gateway's).
//!
//! The routes themselves live in `meshcall-core`; this crate is the gateway that behaves like
//! API Gateway WebSocket (connection ids, route selection on `action`, size limit, idle
//! timeout) so that what works here works on AWS.

pub mod app;
pub mod metrics;
pub mod process;
pub mod pusher;
pub mod settings;
pub mod socket;
pub mod web;

use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use settings::Settings;

/// Serves meshcall on `listener` until `shutdown` is cancelled, then closes every WebSocket
/// with 1001 (going away) and waits up to `drain` for their tasks to finish.
///
/// # Errors
/// If the listener fails.
pub async fn run(
    listener: TcpListener,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    let state = app::AppState::new(settings, shutdown.clone(), tracker.clone());
    let router = app::router(state);
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, "meshcall listening");
    // TCP_NODELAY on every accepted socket: a frame is written whole and at once, and
    // Nagle's algorithm would hold a small one (a `newParticipant`) until the client's
    // delayed ACK, about 40 ms later.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("serving HTTP")?;
    tracker.close();
    drain(&tracker, settings.shutdown_timeout).await;
    tracing::info!("meshcall stopped");
    Ok(())
}

async fn drain(tracker: &TaskTracker, limit: Duration) {
    let open = tracker.len();
    if tokio::time::timeout(limit, tracker.wait()).await.is_err() {
        tracing::warn!(
            open,
            left = tracker.len(),
            "sockets still open after the shutdown timeout"
        );
    }
}
