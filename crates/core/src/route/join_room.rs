//! `joinRoom`: put the sender in a room (leaving any other), answer `joined` with the members
//! already there, and tell those members the joiner's id (the tutorial sent each receiver
//! its own id instead).

use std::time::SystemTime;

use meshcall_protocol::{ConnectionId, ErrorCode, RoomId, ServerMessage};

use super::{RouteError, Signalling, client_error};
use crate::{ConnectionStore, JoinError, Kind, Outbound, Pusher};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    room: RoomId,
    now: SystemTime,
) -> Result<(), RouteError> {
    let cap = sig.config.max_room_size;
    let mut result = sig.store.join(socket, &room, cap, now).await;
    // A full room may be held by ghosts, members whose `$disconnect` never came: probe
    // them, and try once more if that freed a seat.
    if matches!(result, Err(JoinError::RoomFull)) && sig.clear_ghosts(&room, now).await? {
        result = sig.store.join(socket, &room, cap, now).await;
    }
    let joined = match result {
        Ok(joined) => joined,
        Err(JoinError::RoomFull) => {
            return Err(client_error(
                ErrorCode::RoomFull,
                format!("room {room} is full ({cap} participants)"),
            ));
        }
        Err(JoinError::NotConnected) => {
            // The socket was dropped (say, as too slow) while this frame was on its way.
            tracing::debug!(conn_id = %socket, "join from a removed connection ignored");
            return Ok(());
        }
        Err(JoinError::Store(e)) => return Err(e.into()),
    };
    let id = &joined.id;
    tracing::debug!(conn_id = %id, room_id = %room, others = joined.others.len(), "joined");
    if let Some(old) = &joined.left {
        sig.announce_departure(id, old, now).await?;
    }
    let reply = sig.joined(id, &room, &joined.others, false, now);
    let delivered = sig.send_to(socket, &reply, now).await;
    // A joiner found gone is, with resume off, already removed and its room told:
    // announcing it now would leave the others a phantom peer. With resume on it is only
    // suspended in its new seat, and may resume into it: the room must know it is there.
    if (delivered || sig.config.resume.is_some()) && !joined.already_member {
        let news = ServerMessage::NewParticipant {
            participant_connection_id: id,
        };
        sig.send_to_members(
            &joined.others,
            None,
            &Outbound::new(Kind::NewParticipant, news.to_json()),
            now,
        )
        .await;
    }
    Ok(())
}
