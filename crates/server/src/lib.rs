//! `meshcall`: the self-hosted server. One process serves the web app and the WebSocket
//! signalling on one port, with membership in memory and nothing else to install.
//!
//! # Layout
//!
//! - [`settings`]: [`Settings`], every command-line flag and `MESHCALL_*` variable.
//! - [`app`]: the axum router ([`app::router`]) and the state it shares.
//! - [`listen`]: the one listener, plain or HTTPS: the first look at a connection (TLS or
//!   not, handshakes bounded per client address), then HTTP/1.1 with hyper.
//! - [`socket`]: one task per WebSocket, plain or TLS, on the TCP socket itself: reads
//!   frames into the core, enforces size, rate and idle limits, closes on shutdown; no read
//!   buffer while idle, deliveries written by the sender's task ([`socket::link`]).
//! - [`pusher`]: [`ChannelPusher`](pusher::ChannelPusher), the core's `Pusher`: a link per
//!   socket.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`limits`]: the abuse limits (connections, joins per address, connection age), the
//!   client address (`--trust-proxy`), and the default STUN server.
//! - [`security`], [`web`], [`process`]: re-exported from `meshcall-web` (the security
//!   headers, the embedded web app and its settings, logging and the Ctrl-C/SIGTERM token),
//!   which `meshcall-gateway` shares without linking this crate.
//! - [`tls`]: HTTPS on the same port (self-signed, certificate files reloaded on SIGHUP,
//!   or ACME), and the optional plain-HTTP redirect.
//!
//! The routes themselves live in `meshcall-core`; this crate is the gateway that behaves like
//! API Gateway WebSocket (connection ids, route selection on `action`, size limit, idle
//! timeout) so that what works here works on AWS.

pub mod app;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod pusher;
pub mod settings;
pub mod socket;
pub mod tls;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The web app, its settings, the security headers and `main`'s logging and signals live in
/// `meshcall-web`, which the gateway shares; they keep their paths here.
pub use meshcall_web::{process, security, web};
pub use settings::Settings;

/// Serves meshcall on `listener` until `shutdown` is cancelled, then closes every WebSocket
/// with 1001 (going away) and waits up to `drain` for their tasks to finish. With a TLS
/// mode in `settings.tls` it serves HTTPS (and, with `--redirect-http`, plain HTTP
/// redirects on that second address).
///
/// # Errors
/// If the certificate cannot be set up, the redirect address bound, or the listener fails.
pub async fn run(
    listener: TcpListener,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tracker = TaskTracker::new();
    // HSTS only with a certificate browsers trust (files or ACME): a self-signed one would
    // pin users to a warning they cannot click through.
    let state = app::AppState::new(settings, shutdown.clone(), tracker.clone())
        .with_hsts(settings.tls.real_certificate());
    let state_limits = state.limits.clone();
    let router = app::router(state);
    let addr = listener.local_addr().context("reading the bound address")?;
    let tls = tls::Tls::start(&settings.tls, addr, &shutdown)
        .await
        .context("setting up HTTPS")?;
    let redirect = match (&tls, settings.tls.redirect_http) {
        (_, None) => None,
        (None, Some(_)) => anyhow::bail!("--redirect-http needs a TLS mode"),
        (Some(_), Some(at)) => {
            let plain = tls::redirect::bind(at).await?;
            Some(tokio::spawn(tls::redirect::serve(
                plain,
                addr.port(),
                shutdown.clone(),
            )))
        }
    };
    if tls.is_some() {
        tracing::info!(%addr, "meshcall listening (https)");
    } else {
        tracing::info!(%addr, "meshcall listening");
    }
    let listen = listen::Listen {
        router,
        tls: tls.map(Arc::new),
        limits: state_limits,
        redirect: tls::redirect::router(addr.port()),
    };
    listen::serve(listener, listen, &shutdown).await;
    if let Some(redirect) = redirect {
        redirect.await.context("the HTTP redirect task")??;
    }
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
