//! The main listener's router and the state its handlers share: the web app (`meshcall-web`'s
//! handlers, as the self-hosted server serves it), `/config.json`, `/healthz`, the WebSocket
//! endpoint, `@connections` (at the stage path only, as on AWS), and the gateway's own
//! `/_gateway/idle` and `/_gateway/stats`.
//!
//! Each handler takes only the part of [`AppState`] it uses (axum's `FromRef`): the web
//! app's its [`PageConfig`], `@connections` its [`Management`], the gateway's own routes the
//! [`Invoker`] or the shutdown token. The WebSocket's handshake and task take the whole
//! state: a connection uses every part of it.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{FromRef, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use meshcall_web::{AppConfig, security, web};
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

/// What `/config.json` needs: the app's settings but `wsUrl`, and where this gateway is
/// when a request names no host.
#[derive(Debug, Clone)]
pub struct PageConfig {
    /// `socketMaxAgeMs` before `--max-connection-age`, `iceTransportPolicy` with
    /// `--force-relay`.
    pub app: AppConfig,
    /// The gateway's address, for a request without `Host`.
    pub callback_addr: SocketAddr,
}

impl FromRef<AppState> for PageConfig {
    fn from_ref(state: &AppState) -> Self {
        Self {
            app: AppConfig::new(
                state.settings.connection.max_connection_age,
                state.settings.turn_args.force_relay,
            ),
            callback_addr: state.callback_addr,
        }
    }
}

/// What the Management API (`@connections`) needs: the connections, and the counters.
#[derive(Debug, Clone)]
pub struct Management {
    /// The open connections.
    pub connections: Arc<Connections>,
    /// Counts the calls ([`Invoker::stats`]).
    pub invoker: Invoker,
}

impl FromRef<AppState> for Management {
    fn from_ref(state: &AppState) -> Self {
        Self {
            connections: state.connections.clone(),
            invoker: state.invoker.clone(),
        }
    }
}

impl FromRef<AppState> for Invoker {
    fn from_ref(state: &AppState) -> Self {
        state.invoker.clone()
    }
}

impl FromRef<AppState> for CancellationToken {
    fn from_ref(state: &AppState) -> Self {
        state.shutdown.clone()
    }
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
/// from; `socketMaxAgeMs` before `--max-connection-age`; `iceTransportPolicy: "relay"` with
/// `--force-relay`.
#[allow(clippy::unused_async, reason = "an axum handler")]
async fn config(State(page): State<PageConfig>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| page.callback_addr.to_string(), str::to_owned);
    web::json_config(&page.app.with_ws_url(format!("ws://{host}/ws")))
}

async fn healthz(State(shutdown): State<CancellationToken>) -> Response {
    if shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

/// `GET /_gateway/idle`: `idle` when no invocation is queued or running and every closed
/// connection's `$disconnect` has returned; otherwise what is still going on. Tests use
/// it as a barrier where the self-hosted server offers its metrics.
async fn idle(State(management): State<Management>) -> Response {
    let (invocations, closing) = (
        management.invoker.outstanding(),
        management.connections.closing(),
    );
    if invocations == 0 && closing == 0 {
        "idle\n".into_response()
    } else {
        format!("busy: {invocations} invocations, {closing} closing\n").into_response()
    }
}

/// `GET /_gateway/stats`: what the gateway counted since it started, as JSON: invocations
/// by route key (`sweep` for the scheduled event), frames received from clients,
/// `@connections` posts by outcome, deletes and gets, and bytes received and posted.
async fn stats(State(invoker): State<Invoker>) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
        axum::Json(invoker.stats().to_json()),
    )
        .into_response()
}
