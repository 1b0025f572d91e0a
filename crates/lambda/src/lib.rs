//! meshcall on AWS Lambda: one function for every route of the API Gateway WebSocket API,
//! and for the scheduled sweep that ends the resume grace of dropped participants.
//!
//! The bootstrap (`main.rs`) is wiring only: it reads [`Settings`], builds the DynamoDB
//! store and the Management API pusher once per instance, and hands each event to
//! [`Function::handle`], which maps it onto `meshcall-core`'s calls:
//!
//! | event | core call | response |
//! |---|---|---|
//! | `$connect` | origin check, then `connect` | 200, 403 for a disallowed `Origin`, 500 if the store fails |
//! | a message (`joinRoom`, `signal`, ..., `$default`) | `message` (replies and errors are pushed through `@connections`) | 200 |
//! | a binary message (`isBase64Encoded`) | `refuse` with `binaryNotSupported` | 200 |
//! | `$disconnect` with status 1006 (dropped, no close frame) | `suspend`: the participant may `resume` within the grace | 200 |
//! | `$disconnect`, any other status | `disconnect` | 200 |
//! | EventBridge `Scheduled Event` | `expire` for each participant the `bySuspension` index says is due | `{"expired": n}` |
//!
//! A `resume` that takes its participant over from a socket API Gateway still holds closes
//! that socket (`DeleteConnection`). API Gateway sends no per-connection rate limit event;
//! the stage's throttling is the AWS-side limit.

pub mod settings;

use std::{future::Future, time::SystemTime};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use meshcall_aws::{ApiGatewayPusher, DynamoStore};
use meshcall_core::{Delivery, PushError, Pusher, Signalling, protocol::ConnectionId};
use meshcall_protocol::ErrorCode;
use serde_json::{Value, json};
use tracing::Instrument as _;

pub use settings::{LogFormat, Settings, SettingsError};

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
    /// An EventBridge scheduled event: sweep the participants whose grace is over.
    Sweep,
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
        Err(EventError::Unrecognised)
    }
}

/// The function: the core over DynamoDB and a pusher, plus the `$connect` origin check.
#[derive(Debug)]
pub struct Function<P> {
    core: Signalling<DynamoStore, P>,
    allowed_origins: Vec<String>,
}

impl<P: Pusher + Close> Function<P> {
    /// The function over `core`, admitting WebSocket clients from `allowed_origins` (any when
    /// empty).
    pub fn new(core: Signalling<DynamoStore, P>, allowed_origins: Vec<String>) -> Self {
        Self {
            core,
            allowed_origins,
        }
    }

    /// The core.
    pub fn core(&self) -> &Signalling<DynamoStore, P> {
        &self.core
    }

    /// Handles one raw event; returns the response API Gateway (or EventBridge) gets.
    ///
    /// # Errors
    /// [`EventError`] for an event the function does not know (the invocation fails).
    pub async fn handle(&self, raw: Value, now: SystemTime) -> Result<Value, EventError> {
        match Event::classify(raw)? {
            Event::WebSocket(event) => self.websocket(&event, now).await,
            Event::Sweep => self.sweep(now).await,
        }
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
            self.core.disconnect(socket).await
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
        let body = event.body.as_deref().unwrap_or_default();
        if event.is_base64_encoded {
            self.core
                .refuse(
                    socket,
                    ErrorCode::BinaryNotSupported,
                    "send JSON text frames",
                )
                .await;
            return;
        }
        let limit = self.core.config().max_message_bytes;
        if body.len() > limit {
            let message = format!("frames are limited to {limit} bytes");
            self.core
                .refuse(socket, ErrorCode::MessageTooLarge, &message)
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

    /// Ends the grace of every suspended participant whose grace is over, telling rooms.
    async fn sweep(&self, now: SystemTime) -> Result<Value, EventError> {
        let due = self
            .core
            .store()
            .due(now)
            .await
            .map_err(EventError::Sweep)?;
        let mut expired = 0_u32;
        for participant in &due {
            match self.core.expire(participant, now).await {
                Ok(()) => expired += 1,
                Err(e) => tracing::error!(conn_id = %participant, error = %e, "expire failed"),
            }
        }
        if !due.is_empty() {
            tracing::info!(due = due.len(), expired, "sweep");
        }
        Ok(json!({"expired": expired}))
    }
}

fn status_code(code: u16) -> Value {
    json!({"statusCode": code})
}
