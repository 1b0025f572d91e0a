//! The API Gateway Management API (`/<stage>/@connections`), what the function's
//! `aws-sdk-apigatewaymanagement` client calls: `PostToConnection`, `GetConnection` and
//! `DeleteConnection`, with API Gateway's status codes and error types. Signatures are not
//! checked. Every call is counted in the gateway's [`Stats`](crate::stats::Stats).

use axum::{
    body::{Body, to_bytes},
    extract::{
        Path, State,
        ws::{Message, Utf8Bytes},
    },
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{app::Management, clock::iso8601, connections::Posted, stats::PostOutcome};

/// The largest frame `PostToConnection` takes (API Gateway: 128 KiB).
pub const MAX_POST_BYTES: usize = 128 * 1024;

/// An error as API Gateway's REST protocol writes it: the status, `x-amzn-ErrorType` and a
/// JSON `message`.
fn error(status: StatusCode, error_type: &'static str, message: Option<&str>) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response();
    response
        .headers_mut()
        .insert("x-amzn-ErrorType", HeaderValue::from_static(error_type));
    response
}

fn gone() -> Response {
    error(StatusCode::GONE, "GoneException", None)
}

/// `@connections` anywhere but at the stage path: 404.
pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NotFoundException",
        Some("Not Found"),
    )
}

/// `POST @connections/{id}`: the body, as one frame to the connection (text when it is
/// UTF-8, binary otherwise).
pub async fn post(State(state): State<Management>, Path(id): Path<String>, body: Body) -> Response {
    let stats = state.invoker.stats();
    let Ok(bytes) = to_bytes(body, MAX_POST_BYTES).await else {
        stats.posted(PostOutcome::TooLarge, 0);
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            Some(&format!(
                "Message too long. Max size: {MAX_POST_BYTES} bytes"
            )),
        );
    };
    let size = bytes.len();
    // The body's buffer becomes the frame's, without a copy.
    let frame = match Utf8Bytes::try_from(bytes.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(bytes),
    };
    match state.connections.post(&id, frame) {
        Posted::Queued => {
            stats.posted(PostOutcome::Delivered, size);
            StatusCode::OK.into_response()
        }
        Posted::Gone => {
            stats.posted(PostOutcome::Gone, size);
            tracing::debug!(conn_id = %id, "post to a gone connection");
            gone()
        }
    }
}

/// `GET @connections/{id}`: when it connected, who it is, when it was last active.
pub async fn get(State(state): State<Management>, Path(id): Path<String>) -> Response {
    state.invoker.stats().got();
    let Some(conn) = state.connections.get(&id) else {
        return gone();
    };
    let mut identity = serde_json::Map::new();
    identity.insert("sourceIp".into(), conn.source_ip.clone().into());
    if let Some(agent) = &conn.user_agent {
        identity.insert("userAgent".into(), agent.clone().into());
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "connectedAt": iso8601(conn.connected_at),
            "identity": identity,
            "lastActiveAt": iso8601(conn.last_active()),
        })
        .to_string(),
    )
        .into_response()
}

/// `DELETE @connections/{id}`: 204, then the connection closes with 1000 (after the frames
/// already posted) and `$disconnect` runs.
pub async fn delete(State(state): State<Management>, Path(id): Path<String>) -> Response {
    let deleted = state.connections.delete(&id, 1000);
    state.invoker.stats().deleted(deleted);
    if deleted {
        tracing::info!(conn_id = %id, "deleted through @connections");
        StatusCode::NO_CONTENT.into_response()
    } else {
        gone()
    }
}
