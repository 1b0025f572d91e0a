//! The axum router and the state every handler shares. Build it with [`router`]; tests and
//! `main` serve it on a listener they bound themselves.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    Router,
    extract::{ConnectInfo, FromRef, FromRequestParts, Request, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use meshcall_core::{MemoryStore, ResumeKey, Signalling};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    limits::Limits, metrics::Metrics, pusher::ChannelPusher, security, settings::Settings,
    socket::upgrade, web,
};

/// The core as the server runs it: memory store, channel pusher.
pub type Core = Signalling<MemoryStore, ChannelPusher>;

/// What every handler shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The signalling core.
    pub core: Arc<Core>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The server's settings.
    pub settings: Arc<Settings>,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Tracks socket tasks so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// The abuse limits' counters.
    pub limits: Arc<Limits>,
    /// Which optional security headers to send (HSTS: see [`AppState::with_hsts`]).
    pub security: security::Security,
    /// The app's settings, as the page and `/config.json` carry them (shared: every
    /// connection's task holds a clone of this state, and its size is per connection).
    pub app_config: Arc<meshcall_web::AppConfig>,
}

/// The web app's handlers take only the app's settings.
impl FromRef<AppState> for meshcall_web::AppConfig {
    fn from_ref(state: &AppState) -> Self {
        (*state.app_config).clone()
    }
}

impl AppState {
    /// Fresh state: an empty store, no sockets.
    pub fn new(settings: &Settings, shutdown: CancellationToken, tracker: TaskTracker) -> Self {
        let metrics = Arc::new(Metrics::new());
        let core = Signalling::new(
            MemoryStore::new(),
            ChannelPusher::new(metrics.clone()),
            // Tokens die with the process, as does the membership they point to.
            settings.core_config(ResumeKey::new(rand::random())),
        );
        let limits = Arc::new(Limits::new(
            settings.limits.clone(),
            settings.connection.max_connection_age,
            metrics.clone(),
        ));
        Self {
            core: Arc::new(core),
            metrics,
            settings: Arc::new(settings.clone()),
            shutdown,
            tracker,
            limits,
            security: security::Security::default(),
            app_config: Arc::new(settings.app_config()),
        }
    }

    /// Sends `Strict-Transport-Security` on every response when `on`: for HTTPS with a
    /// certificate browsers trust (`--tls-cert` or ACME), never plain HTTP or a
    /// self-signed certificate.
    #[must_use]
    pub fn with_hsts(mut self, on: bool) -> Self {
        self.security.hsts = on;
        self
    }
}

/// Every route: the app (`/`, `/r/<room>`, `/config.json`, its files), `/ws` (signalling),
/// `/healthz`, `/metrics`; every response with the security headers. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`, or the per-address limits see
/// no address (and are not applied).
pub fn router(state: AppState) -> Router {
    let security = state.security;
    Router::new()
        .route("/", get(web::index))
        .route("/r/{room}", get(web::index))
        .route("/config.json", get(web::config))
        .route("/ws", get(ws))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(web::asset)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            security,
            security::headers,
        ))
}

/// The peer's socket address, when the server was served with connect info.
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

async fn ws(State(state): State<AppState>, Peer(peer): Peer, mut req: Request) -> Response {
    let (upgrade, accept) = match upgrade::handshake(&mut req) {
        Ok(checked) => checked,
        Err(response) => return response,
    };
    let headers = req.headers();
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !origin_allowed(&state.settings.allowed_origins, headers) {
        tracing::debug!("refused a WebSocket from a disallowed origin");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let Some(peer) = peer else {
        tracing::error!("no client address (serve with connect info): refusing the WebSocket");
        return (StatusCode::INTERNAL_SERVER_ERROR, "no client address\n").into_response();
    };
    let admission = match state.limits.admit(peer.ip(), headers, Instant::now()) {
        Ok(admission) => admission,
        Err(refusal) => {
            return (
                refusal.status(),
                [(header::RETRY_AFTER, refusal.retry_after())],
                refusal.body(),
            )
                .into_response();
        }
    };
    upgrade::switch(state, upgrade, accept, admission)
}

fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| allowed.iter().any(|a| a == o))
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.set_sources(state.limits.sources());
    let body = state.metrics.render(state.core.store().stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
