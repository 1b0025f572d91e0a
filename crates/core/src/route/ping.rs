//! `ping`: answer `pong`. Any frame keeps a connection from idling out; this one also
//! tells the client the service is still there.

use std::time::SystemTime;

use meshcall_protocol::{ConnectionId, ServerMessage};

use super::{RouteError, Signalling};
use crate::{ConnectionStore, Kind, Outbound, Pusher};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    now: SystemTime,
) -> Result<(), RouteError> {
    sig.send_to(
        socket,
        &Outbound::new(Kind::Pong, ServerMessage::Pong.to_json()),
        now,
    )
    .await;
    Ok(())
}
