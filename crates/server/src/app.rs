//! The axum router and the state every handler shares. Build it with [`router`]; tests and
//! `main` serve it on a listener they bound themselves.

use std::sync::Arc;

use axum::{
    Router,
    extract::{State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use meshcall_core::{MemoryStore, ResumeKey, Signalling};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{metrics::Metrics, pusher::ChannelPusher, settings::Settings, socket, web};

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
        Self {
            core: Arc::new(core),
            metrics,
            settings: Arc::new(settings.clone()),
            shutdown,
            tracker,
        }
    }
}

/// Every route: the app (`/`, `/r/<room>`, `/config.json`, its files), `/ws` (signalling),
/// `/healthz`, `/metrics`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/r/{room}", get(web::index))
        .route("/config.json", get(web::config))
        .route("/ws", get(ws))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(web::asset)
        .with_state(state)
}

async fn ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !origin_allowed(&state.settings.allowed_origins, &headers) {
        tracing::debug!("refused a WebSocket from a disallowed origin");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let s = &state.settings;
    upgrade
        .read_buffer_size(s.read_buffer_bytes)
        .write_buffer_size(0)
        .max_message_size(s.max_message_bytes)
        .max_frame_size(s.max_message_bytes)
        .on_upgrade(move |ws| {
            let tracker = state.tracker.clone();
            tracker.track_future(socket::serve(state, ws))
        })
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
