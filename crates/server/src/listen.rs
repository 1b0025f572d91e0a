//! The one listener, plain or HTTPS: accepts TCP connections and serves HTTP/1.1 on each
//! with hyper's connection directly (so that an upgraded WebSocket comes back as the
//! connection's own stream, for [`crate::socket`]).
//!
//! On the HTTPS port each connection is looked at before anything else:
//!
//! 1. its **first byte** ([`FirstBytes`]): a TLS record is handshaken; anything else (an
//!    `http://` URL with the HTTPS port) gets a redirect to `https://`;
//! 2. its **handshake**, under a place from [`Limits::begin_handshake`] (bounded per client
//!    address and in all; over the bound the connection is closed at once, so the accept
//!    loop never waits for a slot and one address flooding the port with silent sockets
//!    uses up only its own share) and within [`HANDSHAKE_TIMEOUT`];
//! 3. then HTTP over the TLS stream. A protocol sharing the port after the handshake (TURN
//!    over TLS) would be told apart here, by the first plaintext bytes.

use std::{net::SocketAddr, sync::Arc, time::Duration, time::Instant};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt as _;

use crate::{
    limits::Limits,
    tls::{FirstBytes, Tls},
};

/// The first byte and the TLS handshake must come within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the listener serves.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The app.
    pub router: Router,
    /// HTTPS, if on.
    pub tls: Option<Arc<Tls>>,
    /// Where handshakes take their places.
    pub limits: Arc<Limits>,
    /// What a plain request on the HTTPS port gets: a redirect to it (made once, at start).
    pub redirect: Router,
}

/// Serves `listener` until `shutdown`, then lets each connection finish its request in
/// progress.
pub async fn serve(listener: TcpListener, listen: Listen, shutdown: &CancellationToken) {
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
        let shutdown = shutdown.clone();
        match &listen.tls {
            None => {
                connections.spawn(http(tcp, peer, listen.router.clone(), shutdown));
            }
            Some(tls) => {
                let Some(place) = listen.limits.begin_handshake(peer.ip(), Instant::now()) else {
                    continue;
                };
                let (tls, listen) = (tls.clone(), listen.clone());
                connections.spawn(async move {
                    let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, open(&tls, tcp)).await;
                    drop(place);
                    match opened {
                        Ok(Ok(Opened::Tls(stream))) => {
                            http(*stream, peer, listen.router, shutdown).await;
                        }
                        Ok(Ok(Opened::Plain(tcp))) => {
                            http(tcp, peer, listen.redirect, shutdown).await;
                        }
                        Ok(Ok(Opened::Done)) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
    connections.close();
    connections.wait().await;
}

/// A connection to the HTTPS port after its first look.
enum Opened {
    Tls(Box<crate::tls::stream::TlsStream>),
    /// Not TLS: redirected.
    Plain(TcpStream),
    /// Served already (an ACME validation).
    Done,
}

async fn open(tls: &Tls, tcp: TcpStream) -> std::io::Result<Opened> {
    Ok(match FirstBytes::of(&tcp).await? {
        FirstBytes::Tls => tls
            .accept(tcp)
            .await?
            .map_or(Opened::Done, |s| Opened::Tls(Box::new(s))),
        FirstBytes::Other => Opened::Plain(tcp),
    })
}

/// HTTP/1.1 on one connection until it ends, or `shutdown` lets its request in progress
/// finish. The client's address is given to handlers as `ConnectInfo<SocketAddr>`.
async fn http<S>(io: S, peer: SocketAddr, router: Router, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut req: axum::extract::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
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
}
