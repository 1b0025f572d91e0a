//! `$connect`: record the socket and its participant. It is in no room until it joins one.

use std::time::SystemTime;

use meshcall_protocol::ConnectionId;

use super::Signalling;
use crate::{ConnectionStore, Pusher, StoreError};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    socket: &ConnectionId,
    now: SystemTime,
) -> Result<(), StoreError> {
    sig.store.add_connection(socket, now).await?;
    tracing::debug!(conn_id = %socket, "connected");
    Ok(())
}
