//! Default limits. API Gateway WebSocket's own limits are used where it has one, so that what
//! works against the self-hosted server also works on AWS.

use std::time::Duration;

/// Largest message a client may send, in bytes: API Gateway's 128 KiB frame limit.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// A connection that sends nothing for this long is closed: API Gateway's idle timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_mins(10);

/// Most participants in one room. A full mesh of more than eight is not usable on a home
/// uplink: each participant sends its video once per other participant.
pub const MAX_ROOM_SIZE: usize = 8;

/// Longest room id, in characters.
pub const MAX_ROOM_ID_LEN: usize = 64;

/// Longest connection id we accept from a client, in characters. API Gateway's ids are 16.
pub const MAX_CONNECTION_ID_LEN: usize = 128;

/// Sustained messages per second a connection may send (token bucket refill rate).
pub const RATE_PER_SECOND: u32 = 50;

/// Messages a connection may send in one burst (token bucket size). Joining a full room
/// starts seven negotiations at once, each an offer or answer plus a dozen ICE candidates.
pub const RATE_BURST: u32 = 200;
