//! `leaveRoom`: take the sender out of its room and tell the others.

use std::time::SystemTime;

use meshcall_protocol::{ConnectionId, ErrorCode};

use super::{RouteError, Signalling, client_error};
use crate::{ConnectionStore, Pusher};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    now: SystemTime,
) -> Result<(), RouteError> {
    let Some((id, room)) = sig.store.leave(socket, now).await? else {
        return Err(client_error(ErrorCode::NotInRoom, "not in a room"));
    };
    tracing::debug!(conn_id = %id, room_id = %room, "left");
    sig.announce_departure(&id, &room, now).await?;
    Ok(())
}
