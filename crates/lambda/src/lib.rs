//! meshcall on AWS Lambda: one function for every route of the API Gateway WebSocket API,
//! and for the scheduled sweep that ends the resume grace of dropped participants.
//!
//! The bootstrap (`main.rs`) is wiring only: it reads [`Settings`] and the secrets
//! ([`secrets`]), builds the DynamoDB store, the Management API pusher and the expiry queue
//! once per instance, and hands each event to [`Function::handle`], which maps it onto
//! `meshcall-core`'s calls:
//!
//! | event | core call | response |
//! |---|---|---|
//! | `$connect` | origin check, then `connect` | 200, 403 for a disallowed `Origin`, 500 if the store fails |
//! | a message (`joinRoom`, `signal`, ..., `$default`) | `message` (replies and errors are pushed through `@connections`) | 200 |
//! | `$disconnect` with status 1006 (dropped, no close frame) | `suspend`: the participant may `resume` within the grace (a no-op if a push already found the socket gone) | 200 |
//! | `$disconnect`, any other status (1000, 1001, 1005, ...) | `disconnect`: ends the participant, suspended or not | 200 |
//! | SQS message `{"expire": id, "at": ms}` from the expiry queue | `expire` | `{"batchItemFailures": [...]}` |
//! | EventBridge `Scheduled Event` (once a minute) | `sweep`: ended graces (a safety net for the queue) and liveness checks (`GET @connections`) of members due for one | `{"expired": n, "probed": n, "gone": n}` |
//!
//! Every suspension the core makes (a `$disconnect` 1006, or a push or probe answered 410)
//! sends one message to the expiry queue, delayed until the grace ends, so a dropped
//! participant who does not resume is announced about a second after its grace.
//!
//! Binary frames never reach the function: API Gateway closes such a connection with 1003
//! itself. A `resume` that takes its participant over from a socket API Gateway still
//! holds closes that socket (`DeleteConnection`). API Gateway sends no per-connection rate
//! limit event; the stage's throttling is the AWS-side limit.

pub mod expiry;
pub mod secrets;
pub mod settings;

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use meshcall_aws::{ApiGatewayPusher, DynamoStore};
use meshcall_core::{Delivery, PushError, Pusher, Signalling, Suspension, protocol::ConnectionId};
use meshcall_protocol::ErrorCode;
use serde_json::{Value, json};
use tracing::Instrument as _;

pub use expiry::{ExpiryMessage, ExpiryQueue};
pub use settings::{LogFormat, Secrets, Settings, SettingsError};

/// The WebSocket close status API Gateway reports when a socket ended without a close
/// frame: the participant keeps its place for a `resume`.
pub const ABNORMAL_CLOSURE: i64 = 1006;

/// Closes a connection at the gateway (`DeleteConnection` on AWS).
pub trait Close: Send + Sync {
    /// Closes `to`.
    ///
    /// # Errors
    /// [`PushError`] if the connection may still be open.
    fn close(&self, to: &ConnectionId) -> impl Future<Output = Result<Delivery, PushError>> + Send;
}

impl Close for ApiGatewayPusher {
    async fn close(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        ApiGatewayPusher::close(self, to).await
    }
}

/// An event the function does not know.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Neither an API Gateway WebSocket event nor a scheduled sweep.
    #[error("unrecognised event: neither an API Gateway WebSocket event nor a Scheduled Event")]
    Unrecognised,
    /// A WebSocket event that does not parse.
    #[error("malformed API Gateway WebSocket event: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A WebSocket event without a usable connection id.
    #[error("the event has no valid requestContext.connectionId")]
    NoConnection,
    /// The sweep could not read the index.
    #[error("sweep failed: {0}")]
    Sweep(#[source] meshcall_core::StoreError),
}

/// What an event is.
#[derive(Debug)]
pub enum Event {
    /// An API Gateway WebSocket proxy event (`$connect`, a message, `$disconnect`).
    WebSocket(Box<ApiGatewayWebsocketProxyRequest>),
    /// An EventBridge scheduled event: the sweep.
    Sweep,
    /// A batch from the expiry queue: `(messageId, body)` of each record.
    Expiry(Vec<(String, String)>),
}

impl Event {
    /// Classifies a raw event.
    ///
    /// # Errors
    /// [`EventError`] for anything else, or a WebSocket event that does not parse.
    pub fn classify(raw: Value) -> Result<Self, EventError> {
        if raw.get("requestContext").is_some() {
            return Ok(Self::WebSocket(Box::new(serde_json::from_value(raw)?)));
        }
        if raw.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
            return Ok(Self::Sweep);
        }
        if let Some(records) = raw.get("Records").and_then(Value::as_array) {
            let from_sqs =
                |r: &Value| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs");
            if !records.is_empty() && records.iter().all(from_sqs) {
                let field = |r: &Value, f: &str| {
                    r.get(f)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                return Ok(Self::Expiry(
                    records
                        .iter()
                        .map(|r| (field(r, "messageId"), field(r, "body")))
                        .collect(),
                ));
            }
        }
        Err(EventError::Unrecognised)
    }
}

/// The function: the core over DynamoDB and a pusher, plus the `$connect` origin check and
/// the expiry queue.
#[derive(Debug)]
pub struct Function<P> {
    core: Signalling<DynamoStore, P>,
    allowed_origins: Vec<String>,
    expiry: Option<ExpiryQueue>,
    /// Suspensions the core made during the current event, to schedule after it.
    suspended: Arc<Mutex<Vec<Suspension>>>,
}

impl<P: Pusher + Close> Function<P> {
    /// The function over `core`, admitting WebSocket clients from `allowed_origins` (any when
    /// empty). Without [`with_expiry_queue`](Self::with_expiry_queue) only the sweep ends
    /// graces.
    pub fn new(core: Signalling<DynamoStore, P>, allowed_origins: Vec<String>) -> Self {
        let suspended = Arc::new(Mutex::new(Vec::new()));
        let sink = suspended.clone();
        let core = core.on_suspend(Arc::new(move |s: &Suspension| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(s.clone());
        }));
        Self {
            core,
            allowed_origins,
            expiry: None,
            suspended,
        }
    }

    /// Schedules each suspension's end on `queue`.
    #[must_use]
    pub fn with_expiry_queue(mut self, queue: ExpiryQueue) -> Self {
        self.expiry = Some(queue);
        self
    }

    /// The core.
    pub fn core(&self) -> &Signalling<DynamoStore, P> {
        &self.core
    }

    /// Handles one raw event; returns the response API Gateway (or EventBridge, or the SQS
    /// event source mapping) gets. Suspensions made on the way are then scheduled on the
    /// expiry queue.
    ///
    /// # Errors
    /// [`EventError`] for an event the function does not know (the invocation fails).
    pub async fn handle(&self, raw: Value, now: SystemTime) -> Result<Value, EventError> {
        let response = match Event::classify(raw)? {
            Event::WebSocket(event) => self.websocket(&event, now).await,
            Event::Sweep => self.sweep(now).await,
            Event::Expiry(records) => Ok(self.expire(records, now).await),
        };
        self.schedule_expiries(now).await;
        response
    }

    /// Sends one delayed message per suspension made during this event. A failure is
    /// logged: the scheduled sweep still ends that grace, a minute later at most.
    async fn schedule_expiries(&self, now: SystemTime) {
        let made = std::mem::take(
            &mut *self
                .suspended
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let Some(queue) = &self.expiry else { return };
        for s in &made {
            if let Err(e) = queue.schedule(s, now).await {
                tracing::error!(conn_id = %s.id, error = %e, "could not schedule the end of a grace; the sweep will");
            }
        }
    }

    /// Expires the participant each queue message names (a no-op for one that resumed or
    /// was already expired). A record that cannot be handled is reported back for SQS to
    /// deliver again.
    async fn expire(&self, records: Vec<(String, String)>, now: SystemTime) -> Value {
        let mut failures = Vec::new();
        for (message_id, body) in records {
            let participant = serde_json::from_str::<ExpiryMessage>(&body)
                .ok()
                .and_then(|m| m.participant());
            let Some(participant) = participant else {
                // Retrying cannot fix a malformed message: drop it.
                tracing::error!(message_id, "malformed expiry message dropped");
                continue;
            };
            if let Err(e) = self.core.expire(&participant, now).await {
                tracing::error!(conn_id = %participant, error = %e, "expire failed; SQS will retry");
                failures.push(json!({"itemIdentifier": message_id}));
            }
        }
        json!({"batchItemFailures": failures})
    }

    async fn websocket(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
        now: SystemTime,
    ) -> Result<Value, EventError> {
        let context = &event.request_context;
        let socket = context
            .connection_id
            .as_deref()
            .and_then(|c| ConnectionId::parse(c).ok())
            .ok_or(EventError::NoConnection)?;
        let route = context.route_key.as_deref().unwrap_or("$default");
        // Instrumented, not entered: an entered span's guard must not be held across
        // `.await` (the task may move to another thread in between).
        let span = tracing::info_span!("event", conn_id = %socket, route);
        let response = match context.event_type.as_deref() {
            Some("CONNECT") => self.connect(event, &socket, now).instrument(span).await,
            Some("DISCONNECT") => self.disconnect(event, &socket, now).instrument(span).await,
            _ => {
                self.message(event, &socket, now).instrument(span).await;
                status_code(200)
            }
        };
        Ok(response)
    }

    async fn disconnect(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Value {
        let context = &event.request_context;
        let status = context.disconnect_status_code;
        tracing::info!(
            status,
            reason = context.disconnect_reason.as_deref(),
            "disconnected"
        );
        let result = if status == Some(ABNORMAL_CLOSURE) {
            self.core.suspend(socket, now).await.map(drop)
        } else {
            self.core.disconnect(socket, now).await
        };
        match result {
            Ok(()) => status_code(200),
            Err(e) => {
                tracing::error!(error = %e, "store failed on $disconnect");
                status_code(500)
            }
        }
    }

    async fn connect(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
        socket: &ConnectionId,
        now: SystemTime,
    ) -> Value {
        let origin = event.headers.get("origin").and_then(|o| o.to_str().ok());
        let allowed = self.allowed_origins.is_empty()
            || origin.is_some_and(|o| self.allowed_origins.iter().any(|a| a == o));
        if !allowed {
            tracing::info!(origin, "refused a WebSocket from a disallowed origin");
            return json!({"statusCode": 403, "body": "origin not allowed"});
        }
        match self.core.connect(socket, now).await {
            Ok(()) => {
                tracing::info!("connected");
                status_code(200)
            }
            Err(e) => {
                tracing::error!(error = %e, "store refused a connection");
                status_code(500)
            }
        }
    }

    async fn message(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
        socket: &ConnectionId,
        now: SystemTime,
    ) {
        // Binary frames never get here: API Gateway closes their connection with 1003.
        let body = event.body.as_deref().unwrap_or_default();
        let limit = self.core.config().max_message_bytes;
        if body.len() > limit {
            let message = format!("frames are limited to {limit} bytes");
            self.core
                .refuse(socket, ErrorCode::MessageTooLarge, &message, now)
                .await;
            return;
        }
        let outcome = self.core.message(socket, body, now).await;
        tracing::debug!(
            route = outcome.route.as_str(),
            bytes = body.len(),
            error = outcome.error.map(ErrorCode::as_str),
            "message"
        );
        if let Some(old) = &outcome.replaced {
            tracing::info!(replaced = %old, "resumed over a socket still open; closing it");
            if let Err(e) = self.core.pusher().close(old).await {
                tracing::warn!(error = %e, "could not close the replaced socket");
            }
        }
    }

    /// The core's sweep: ended graces, and liveness checks of members due for one.
    async fn sweep(&self, now: SystemTime) -> Result<Value, EventError> {
        let swept = self
            .core
            .sweep(now, self.core.store().check_every())
            .await
            .map_err(EventError::Sweep)?;
        if swept.expired + swept.probed > 0 {
            tracing::info!(
                expired = swept.expired,
                probed = swept.probed,
                gone = swept.gone,
                "sweep"
            );
        }
        Ok(json!({"expired": swept.expired, "probed": swept.probed, "gone": swept.gone}))
    }
}

fn status_code(code: u16) -> Value {
    json!({"statusCode": code})
}
