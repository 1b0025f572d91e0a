//! `signal`: deliver `data` to one peer in the sender's room, stamped with the sender's id by
//! the service, so offers and answers reach only the peer they are for and `from` cannot be
//! forged. A peer outside the room is reported exactly like an unknown one.

use meshcall_protocol::{ConnectionId, ErrorCode, ServerMessage};
use serde_json::value::RawValue;

use super::{RouteError, Signalling, client_error};
use crate::{ConnectionStore, Kind, Outbound, Pusher};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    conn: &ConnectionId,
    to: &ConnectionId,
    data: &RawValue,
) -> Result<(), RouteError> {
    if to == conn {
        return Err(client_error(
            ErrorCode::SignalToSelf,
            "cannot signal yourself",
        ));
    }
    let Some(room) = sig.store.room_of(conn).await? else {
        return Err(client_error(
            ErrorCode::NotInRoom,
            "join a room before signalling",
        ));
    };
    if sig.store.room_of(to).await?.as_ref() != Some(&room) {
        return Err(client_error(
            ErrorCode::PeerNotFound,
            format!("no participant {to} in room {room}"),
        ));
    }
    tracing::debug!(conn_id = %conn, room_id = %room, bytes = data.get().len(), "signal");
    let frame = ServerMessage::Signal { from: conn, data }.to_json();
    sig.send_to(to, &Outbound::new(Kind::Signal, frame)).await;
    Ok(())
}
