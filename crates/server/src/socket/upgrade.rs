//! The WebSocket upgrade (RFC 6455, 4.2): the request is checked here, answered with 101,
//! and the connection hyper hands back (plain TCP, or TLS with its session) becomes a
//! [`Link`](super::link::Link) served by [`super::serve`].

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse as _, Response},
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::frame::Reader;
use crate::{app::AppState, limits::Admission, tls::stream::TlsStream};

/// Checks a WebSocket upgrade request (RFC 6455, 4.2.1) and takes its upgrade, with the
/// accept key to answer.
///
/// # Errors
/// The response to send instead of switching protocols (400, 405 or 426).
///
/// # Panics
/// Never: an accept key is base64, a valid header value.
#[allow(clippy::result_large_err)] // the error is the response itself
pub fn handshake(req: &mut Request) -> Result<(OnUpgrade, HeaderValue), Response> {
    let headers = req.headers();
    let bad = |why: &'static str| (StatusCode::BAD_REQUEST, why).into_response();
    if req.method() != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "WebSocket upgrades use GET\n",
        )
            .into_response());
    }
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(bad("Connection header did not include 'upgrade'\n"));
    }
    if !has_token(headers, &header::UPGRADE, "websocket") {
        return Err(bad("`Upgrade` header did not include 'websocket'\n"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(bad("`Sec-WebSocket-Version` header did not include '13'\n"));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(bad("`Sec-WebSocket-Key` header missing\n"));
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accept = HeaderValue::from_str(&accept).expect("base64 is a valid header value");
    let Some(upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "connection cannot be upgraded\n",
        )
            .into_response());
    };
    Ok((upgrade, accept))
}

fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Answers 101 Switching Protocols and serves the socket once hyper hands it over (served
/// by [`crate::listen`], whose connections are bare `TcpStream`s or [`TlsStream`]s).
///
/// # Panics
/// Never: the response is built from valid parts.
pub fn switch(
    state: AppState,
    upgrade: OnUpgrade,
    accept: HeaderValue,
    admission: Admission,
) -> Response {
    let tracker = state.tracker.clone();
    tracker.clone().spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let mut reader = Reader::new(state.settings.max_message_bytes);
        // Whatever hyper read past the request (a client may send its first frame at once)
        // comes back with the connection.
        let connection = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                reader.take(&parts.read_buf);
                super::Connection::plain(parts.io.into_inner())
            }
            Err(upgraded) => {
                let Ok(parts) = upgraded.downcast::<TokioIo<TlsStream>>() else {
                    tracing::error!("an upgraded connection of an unknown kind: refusing it");
                    return;
                };
                let tls = parts.io.into_inner().into_parts();
                reader.take(&parts.read_buf);
                reader.take(&tls.plain);
                super::Connection::tls(tls)
            }
        };
        // The connection's own task holds only what it needs from here on (the upgrade's
        // state would otherwise stay in it for its whole life).
        tracker.spawn(super::serve(state, connection, reader, admission));
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .expect("a valid response")
}
