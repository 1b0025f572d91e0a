//! `$default`: frames no route takes. They, and every refused frame, are answered with an
//! `error` frame to the sender alone; the connection stays open.

use std::time::SystemTime;

use meshcall_protocol::{ConnectionId, ErrorCode, ServerMessage};

use super::Signalling;
use crate::{ConnectionStore, Kind, Outbound, Pusher};

pub(super) async fn refuse<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    code: ErrorCode,
    message: &str,
    now: SystemTime,
) {
    refuse_about(sig, socket, code, message, None, now).await;
}

/// An `error` frame that also names the peer it is about (`to`).
pub(super) async fn refuse_about<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    code: ErrorCode,
    message: &str,
    to: Option<&ConnectionId>,
    now: SystemTime,
) {
    let frame = ServerMessage::Error { code, message, to }.to_json();
    sig.send_to(socket, &Outbound::new(Kind::Error, frame), now)
        .await;
}
