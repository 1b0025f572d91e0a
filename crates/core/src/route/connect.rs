//! `$connect`: record the connection. It is in no room until it joins one.

use std::time::SystemTime;

use meshcall_protocol::ConnectionId;

use super::Signalling;
use crate::{ConnectionStore, Pusher, StoreError};

pub(super) async fn run<S: ConnectionStore, P: Pusher>(
    sig: &Signalling<S, P>,
    conn: &ConnectionId,
    now: SystemTime,
) -> Result<(), StoreError> {
    sig.store.add_connection(conn, now).await?;
    tracing::debug!(conn_id = %conn, "connected");
    Ok(())
}
