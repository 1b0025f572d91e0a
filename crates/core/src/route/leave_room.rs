//! `leaveRoom`: take the sender out of its room and tell the others.

use meshcall_protocol::{ConnectionId, ErrorCode};

use super::{RouteError, Signalling, client_error};
use crate::{ConnectionStore, Pusher};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    conn: &ConnectionId,
) -> Result<(), RouteError> {
    let Some(room) = sig.store.leave(conn).await? else {
        return Err(client_error(ErrorCode::NotInRoom, "not in a room"));
    };
    tracing::debug!(conn_id = %conn, room_id = %room, "left");
    let members = sig.store.members(&room).await?;
    sig.announce_departure(conn, &members).await;
    Ok(())
}
