//! `sendMsgToRoom`: relay the message text, verbatim, to every other member of the sender's
//! room. The sender must be in the room it names: no one can write into a room from outside.

use meshcall_protocol::{ConnectionId, ErrorCode, RoomId};

use super::{RouteError, Signalling, client_error};
use crate::{ConnectionStore, Kind, Outbound, Pusher};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    conn: &ConnectionId,
    room: &RoomId,
    message: &str,
) -> Result<(), RouteError> {
    if sig.store.room_of(conn).await?.as_ref() != Some(room) {
        return Err(client_error(
            ErrorCode::NotInRoom,
            format!("join room {room} before sending to it"),
        ));
    }
    let others: Vec<ConnectionId> = sig
        .store
        .members(room)
        .await?
        .into_iter()
        .filter(|m| m != conn)
        .collect();
    tracing::debug!(conn_id = %conn, room_id = %room, bytes = message.len(), receivers = others.len(), "room message");
    sig.send_to_all(&others, &Outbound::new(Kind::RoomMessage, message))
        .await;
    Ok(())
}
