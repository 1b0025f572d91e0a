//! `resume`: a participant whose socket dropped comes back on a new socket with the token
//! from its last `joined`, within the grace window. It gets `joined` again (same id, same
//! room, `resumed: true`); the others never saw it leave, so nothing is sent to them.

use std::time::SystemTime;

use meshcall_protocol::{ConnectionId, ErrorCode};

use super::{RouteError, Signalling, client_error};
use crate::{ConnectionStore, Pusher, ResumeError};

/// Returns the socket the participant was taken from, if it still had one.
pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    token: &str,
    now: SystemTime,
) -> Result<Option<ConnectionId>, RouteError> {
    let failed = |why: &'static str| client_error(ErrorCode::ResumeFailed, why);
    let Some(resume) = &sig.config.resume else {
        return Err(failed("resume is turned off on this server; join again"));
    };
    let Some(id) = resume.key.verify(token) else {
        return Err(failed("that resume token is not valid; join again"));
    };
    let resumed = match sig.store.resume(&id, socket, now).await {
        Ok(resumed) => resumed,
        Err(ResumeError::NotResumable) => {
            return Err(failed(
                "too late to resume (or this socket is already in a room); join again",
            ));
        }
        Err(ResumeError::Store(e)) => return Err(e.into()),
    };
    tracing::debug!(conn_id = %id, room_id = %resumed.room, "resumed");
    let reply = sig.joined(&id, &resumed.room, &resumed.others, true, now);
    sig.send_to(socket, &reply, now).await;
    Ok(resumed.replaced)
}
