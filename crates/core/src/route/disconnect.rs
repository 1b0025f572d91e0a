//! `$disconnect`: forget the connection and tell its room (the tutorial tells no one, so
//! the leaver's tile froze).

use meshcall_protocol::ConnectionId;

use super::Signalling;
use crate::{ConnectionStore, Pusher, StoreError};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    conn: &ConnectionId,
) -> Result<(), StoreError> {
    if let Some(room) = sig.store.remove_connection(conn).await? {
        tracing::debug!(conn_id = %conn, room_id = %room, "disconnected from a room");
        let members = sig.store.members(&room).await?;
        sig.announce_departure(conn, &members).await;
    }
    Ok(())
}
