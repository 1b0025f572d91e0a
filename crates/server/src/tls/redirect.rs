//! `--redirect-http`: plain HTTP answered with `308 Permanent Redirect` to the same host,
//! path and query over https on the port meshcall serves TLS on (omitted when it is 443).
//! 308 keeps the method, so nothing is silently turned into a GET. Nothing else is served
//! there: no app, no WebSocket, no metrics.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves redirects on `listener` to https port `https_port` until `shutdown`.
///
/// # Errors
/// If the listener fails.
pub async fn serve(
    listener: TcpListener,
    https_port: u16,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, https_port, "redirecting plain HTTP to https");
    axum::serve(listener, router(https_port))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serving the HTTP redirect")
}

/// Every request redirected to https on port `https_port`: `--redirect-http`'s app, and
/// what a plain-HTTP request to the HTTPS port gets.
pub fn router(https_port: u16) -> Router {
    Router::new().fallback(redirect).with_state(https_port)
}

async fn redirect(State(https_port): State<u16>, request: Request) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host());
    let Some(host) = host.and_then(host_without_port) else {
        return (StatusCode::BAD_REQUEST, "a Host header is needed\n").into_response();
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad Host header\n").into_response(),
    }
}

/// The host part of a `Host` header (`[v6]` kept in brackets), if it looks like one.
fn host_without_port(host: &str) -> Option<&str> {
    let host = if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']')?;
        &host[..end + 2]
    } else {
        host.split(':').next()?
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
    ok.then_some(host)
}

/// Binds `addr` for [`serve`].
///
/// # Errors
/// If it cannot be bound.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} for --redirect-http"))
}

#[cfg(test)]
mod tests {
    use super::host_without_port;

    #[test]
    fn host_headers() {
        assert_eq!(
            host_without_port("call.example.org"),
            Some("call.example.org")
        );
        assert_eq!(host_without_port("192.168.1.5:80"), Some("192.168.1.5"));
        assert_eq!(host_without_port("[fd00::1]:80"), Some("[fd00::1]"));
        assert_eq!(host_without_port("[fd00::1]"), Some("[fd00::1]"));
        assert_eq!(host_without_port("evil.example/path"), None);
        assert_eq!(host_without_port(""), None);
    }
}
