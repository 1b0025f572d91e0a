//! `meshcall`: the self-hosted server. One process serves the web app and the WebSocket
//! signalling on one port, with membership in memory and nothing else to install.
//!
//! # Layout
//!
//! - [`settings`]: [`Settings`], every command-line flag and `MESHCALL_*` variable.
//! - [`app`]: the axum router ([`app::router`]) and the state it shares.
//! - [`socket`]: one task per WebSocket: reads frames into the core, writes its queue out,
//!   enforces size, rate and idle limits, closes on shutdown.
//! - [`direct`]: WebSocket connections over plain HTTP, served straight on the TCP
//!   socket: no read buffer while idle, deliveries written by the sender's task.
//! - [`pusher`]: [`ChannelPusher`](pusher::ChannelPusher), the core's `Pusher`: a direct
//!   link per socket, or (HTTPS) a bounded queue.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`limits`]: the abuse limits (connections, joins per address, connection age), the
//!   client address (`--trust-proxy`), and the default STUN server.
//! - [`security`]: the security headers (CSP, HSTS, ...) on every response.
//! - [`web`]: the web app, embedded in the binary.
//! - [`process`]: logging and the Ctrl-C/SIGTERM token, for `main` (and the gateway's).
//! - [`tls`]: HTTPS on the same port (self-signed, certificate files reloaded on SIGHUP,
//!   or ACME), and the optional plain-HTTP redirect.
//!
//! The routes themselves live in `meshcall-core`; this crate is the gateway that behaves like
//! API Gateway WebSocket (connection ids, route selection on `action`, size limit, idle
//! timeout) so that what works here works on AWS.

pub mod app;
pub mod direct;
pub mod limits;
pub mod metrics;
pub mod process;
pub mod pusher;
pub mod security;
pub mod settings;
pub mod socket;
pub mod tls;
pub mod web;

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    extract::{ConnectInfo, connect_info::Connected},
    serve::{IncomingStream, Listener, ListenerExt as _},
};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt as _;

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
    match tls {
        None => {
            tracing::info!(%addr, "meshcall listening");
            // TCP_NODELAY on every accepted socket: a frame is written whole and at once,
            // and Nagle's algorithm would hold a small one (a `newParticipant`) until the
            // client's delayed ACK, about 40 ms later.
            serve_plain(listener, router, &shutdown).await;
        }
        Some(tls) => {
            tracing::info!(%addr, "meshcall listening (https)");
            // The TLS listener sets TCP_NODELAY itself, before the handshake; the empty tap
            // is axum's way to give handlers `ConnectInfo<SocketAddr>` from any listener.
            let listener = tls.listener(listener)?.tap_io(|_| {});
            serve(listener, router, &shutdown).await?;
        }
    }
    if let Some(redirect) = redirect {
        redirect.await.context("the HTTP redirect task")??;
    }
    tracker.close();
    drain(&tracker, settings.shutdown_timeout).await;
    tracing::info!("meshcall stopped");
    Ok(())
}

/// `axum::serve` on any listener whose peers have socket addresses (plain TCP or TLS), with
/// the client's address available to handlers as `ConnectInfo<SocketAddr>`.
async fn serve<L>(listener: L, router: Router, shutdown: &CancellationToken) -> anyhow::Result<()>
where
    L: Listener<Addr = SocketAddr>,
    SocketAddr: for<'a> Connected<IncomingStream<'a, L>>,
{
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .await
    .context("serving HTTP")
}

/// Plain HTTP/1.1 on `listener` until `shutdown`, then lets each connection finish its
/// request in progress. hyper's HTTP/1 connection is used directly (not `axum::serve`,
/// which detects HTTP/2 through a buffering wrapper) so that an upgraded WebSocket comes
/// back as its bare `TcpStream` ([`direct`]).
async fn serve_plain(listener: TcpListener, router: Router, shutdown: &CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // TCP_NODELAY on every accepted socket: a frame is written whole and at once, and
        // Nagle's algorithm would hold a small one (a `newParticipant`) until the client's
        // delayed ACK, about 40 ms later.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let service =
            router
                .clone()
                .map_request(move |mut req: axum::extract::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service))
                .with_upgrades();
            tokio::pin!(connection);
            let done = tokio::select! {
                done = connection.as_mut() => done,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = done {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
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
