//! `$disconnect`: forget the socket's participant and tell its room (the tutorial told no
//! one, so the leaver's tile froze).

use std::time::SystemTime;

use meshcall_protocol::ConnectionId;

use super::Signalling;
use crate::{ConnectionStore, Departure, Pusher, StoreError};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    now: SystemTime,
) -> Result<(), StoreError> {
    if let Some(Departure {
        id,
        room: Some(room),
    }) = sig.store.remove_connection(socket, now).await?
    {
        tracing::debug!(conn_id = %id, room_id = %room, "disconnected from a room");
        sig.announce_departure(&id, &room, now).await?;
    }
    Ok(())
}
