//! WebSocket clients over plain TCP or TLS, sized for thousands of connections per process.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream, client_async_tls_with_config,
    client_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

/// One client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// One client connection, `ws://` or `wss://`.
pub type AnyWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bytes each client reads at a time (tungstenite's default, 128 KiB, would cost 1.3 GB at
/// 10 000 connections).
pub const READ_BUFFER_BYTES: usize = 4096;

/// Opens `ws://{addr}{path}` with `TCP_NODELAY` and a small read buffer.
///
/// # Errors
/// If the TCP connection or the WebSocket handshake fails.
pub async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    let tcp = tcp(addr).await?;
    let (ws, _) = client_async_with_config(format!("ws://{addr}{path}"), tcp, Some(config()))
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

/// Opens `wss://{addr}{path}` with `tls` (the certificate is checked against the address
/// itself, an IP name), or `ws://{addr}{path}` without; `TCP_NODELAY` and a small read
/// buffer either way.
///
/// # Errors
/// If the TCP connection, the TLS handshake or the WebSocket handshake fails.
pub async fn connect_any(
    addr: SocketAddr,
    path: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<AnyWs> {
    let tcp = tcp(addr).await?;
    let (url, connector) = match tls {
        Some(tls) => (
            format!("wss://{addr}{path}"),
            Connector::Rustls(Arc::clone(tls)),
        ),
        None => (format!("ws://{addr}{path}"), Connector::Plain),
    };
    let (ws, _) = client_async_tls_with_config(url, tcp, Some(config()), Some(connector))
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

async fn tcp(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    Ok(tcp)
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
}

/// Ends a connection abruptly: `SO_LINGER` 0 makes the kernel answer with a TCP reset and
/// no close frame is sent, as when a network drops or a laptop lid closes.
pub fn reset(ws: Ws) {
    let tcp = ws.into_inner();
    // If the option cannot be set the socket still closes, with a FIN instead of a reset.
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

/// Sends a close frame and waits up to `limit` for the server's reply or the end of the
/// stream; frames that arrive meanwhile are discarded.
pub async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        if ws.close(None).await.is_err() {
            return;
        }
        while let Some(Ok(frame)) = ws.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
