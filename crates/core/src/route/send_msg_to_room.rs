//! `sendMsgToRoom`: relay the message text, verbatim, to every other member of the sender's
//! room. The sender must be in the room it names: no one can write into a room from outside.

use std::time::SystemTime;

use meshcall_protocol::{ConnectionId, ErrorCode, RoomId};

use super::{RouteError, Signalling, client_error};
use crate::{ConnectionStore, Kind, Outbound, Pusher};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    room: &RoomId,
    message: &str,
    now: SystemTime,
) -> Result<(), RouteError> {
    let sender = sig.store.lookup(socket, now).await?;
    let Some(sender) = sender.filter(|p| p.room.as_ref() == Some(room)) else {
        return Err(client_error(
            ErrorCode::NotInRoom,
            format!("join room {room} before sending to it"),
        ));
    };
    let members = sig.store.members(room, now).await?;
    tracing::debug!(conn_id = %sender.id, room_id = %room, bytes = message.len(), receivers = members.iter().filter(|m| m.id != sender.id).count(), "room message");
    let frame = Outbound::new(Kind::RoomMessage, message);
    sig.send_to_members(&members, Some(&sender.id), &frame, now)
        .await;
    Ok(())
}
