//! `signal`: deliver `data` to one peer in the sender's room, stamped with the sender's id by
//! the service, so offers and answers reach only the peer they are for and `from` cannot be
//! forged. A peer outside the room is reported exactly like an unknown one. A peer that is
//! suspended (its socket dropped, it may resume) misses the frame; it restarts negotiation
//! when it comes back.

use std::time::SystemTime;

use meshcall_protocol::{ConnectionId, ErrorCode, ServerMessage};
use serde_json::value::RawValue;

use super::{RouteError, Signalling, client_error};
use crate::{ConnectionStore, Kind, Outbound, Pusher};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    to: &ConnectionId,
    data: &RawValue,
    now: SystemTime,
) -> Result<(), RouteError> {
    let sender = sig.store.lookup(socket, now).await?;
    // A socket's participant has the socket's id unless it resumed from another socket.
    let own_id = sender.as_ref().map_or(socket, |p| &p.id);
    if to == own_id || to == socket {
        return Err(client_error(
            ErrorCode::SignalToSelf,
            "cannot signal yourself",
        ));
    }
    let Some((sender, room)) = sender.and_then(|p| p.room.clone().map(|r| (p.id, r))) else {
        return Err(client_error(
            ErrorCode::NotInRoom,
            "join a room before signalling",
        ));
    };
    let target = match sig.store.participant(to, now).await? {
        Some((Some(their_room), member)) if their_room == room => member,
        _ => {
            return Err(RouteError::Client {
                code: ErrorCode::PeerNotFound,
                message: format!("no participant {to} in room {room}").into(),
                about: Some(to.clone()),
            });
        }
    };
    tracing::debug!(conn_id = %sender, room_id = %room, bytes = data.get().len(), "signal");
    if let Some(target_socket) = &target.socket {
        let frame = ServerMessage::Signal {
            from: &sender,
            data,
        }
        .to_json();
        sig.send_to(target_socket, &Outbound::new(Kind::Signal, frame), now)
            .await;
    }
    Ok(())
}
