//! The main listener's router and the state its handlers share: the web app (the
//! self-hosted server's handlers), `/config.json`, `/healthz`, the WebSocket endpoint,
//! `@connections` (at the stage path only, as on AWS), and the gateway's own `/_gateway/idle` and `/_gateway/stats`.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use meshcall::{limits::socket_max_age, security, web};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{connections::Connections, manage, runtime::Invoker, settings::Settings, socket};

/// What every handler shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The gateway's settings.
    pub settings: Arc<Settings>,
    /// Invokes the function.
    pub invoker: Invoker,
    /// The open connections.
    pub connections: Arc<Connections>,
    /// Where this gateway is reached from this machine (the function's `@connections`
    /// endpoint).
    pub callback_addr: SocketAddr,
    /// Cancelled when the gateway begins to shut down.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// Every route of the main listener.
pub fn router(state: AppState) -> Router {
    let stage = state.settings.stage.clone();
    let connections = || get(manage::get).post(manage::post).delete(manage::delete);
    let mut router = Router::new()
        // The page without settings written in: its wsUrl depends on the request's host, so
        // the app fetches /config.json (as from a static host).
        .route("/", get(web::page))
        .route("/r/{room}", get(web::page))
        .route("/config.json", get(config))
        .route("/healthz", get(healthz))
        .route("/_gateway/idle", get(idle))
        .route("/_gateway/stats", get(stats))
        .route("/ws", get(socket::upgrade))
        .route(&format!("/{stage}/@connections/{{id}}"), connections())
        // Anywhere else, `@connections` is not found (the SDK needs the stage in its
        // endpoint, as on AWS).
        .route("/@connections/{id}", any(manage::not_found))
        .route("/{other}/@connections/{id}", any(manage::not_found));
    if stage != "ws" {
        router = router.route(&format!("/{stage}"), get(socket::upgrade));
    }
    // The web app's security headers, as the self-hosted server sends them (its wsUrl is
    // on the page's own host, which the policy allows).
    router
        .fallback(web::asset)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            security::Security::default(),
            security::headers,
        ))
}

/// `GET /config.json`: the app signals at this gateway's `/ws`, on the host the page came
/// from; `iceTransportPolicy: "relay"` with `--force-relay`.
async fn config(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| state.callback_addr.to_string(), str::to_owned);
    let mut config = serde_json::Map::new();
    config.insert("wsUrl".into(), format!("ws://{host}/ws").into());
    if let Some(age) = socket_max_age(state.settings.max_connection_duration) {
        config.insert(
            "socketMaxAgeMs".into(),
            u64::try_from(age.as_millis()).unwrap_or(u64::MAX).into(),
        );
    }
    if state.settings.force_relay {
        config.insert("iceTransportPolicy".into(), "relay".into());
    }
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(config),
    )
        .into_response()
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

/// `GET /_gateway/idle`: `idle` when no invocation is queued or running and every closed
/// connection's `$disconnect` has returned; otherwise what is still going on. Tests use
/// it as a barrier where the self-hosted server offers its metrics.
async fn idle(State(state): State<AppState>) -> Response {
    let (invocations, closing) = (state.invoker.outstanding(), state.connections.closing());
    if invocations == 0 && closing == 0 {
        "idle\n".into_response()
    } else {
        format!("busy: {invocations} invocations, {closing} closing\n").into_response()
    }
}

/// `GET /_gateway/stats`: what the gateway counted since it started, as JSON: invocations
/// by route key (`sweep` for the scheduled event), frames received from clients,
/// `@connections` posts by outcome, deletes and gets, and bytes received and posted.
async fn stats(State(state): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        Json(state.invoker.stats().to_json()),
    )
        .into_response()
}
