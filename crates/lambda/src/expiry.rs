//! The expiry queue: Lambda has no timers, so each suspension sends one SQS message delayed
//! until its grace ends; the queue's event source mapping brings it back to the function,
//! which calls `expire` (a no-op if the participant resumed). Punctual to about a second,
//! where the scheduled sweep (a safety net for a lost message) runs once a minute.

use std::time::{Duration, SystemTime};

use aws_sdk_sqs::Client;
use meshcall_core::{Suspension, protocol::ConnectionId};
use serde::{Deserialize, Serialize};

/// SQS delays a message by at most 15 minutes.
const MAX_DELAY: Duration = Duration::from_mins(15);

/// One message: expire `participant` (its grace ends at `at`, epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryMessage {
    /// The suspended participant.
    pub expire: String,
    /// When its grace ends, epoch milliseconds.
    pub at: u64,
}

impl ExpiryMessage {
    /// The participant to expire, if the id is valid.
    pub fn participant(&self) -> Option<ConnectionId> {
        ConnectionId::parse(&self.expire).ok()
    }
}

/// Sends delayed expiry messages to one queue.
#[derive(Debug, Clone)]
pub struct ExpiryQueue {
    client: Client,
    url: String,
}

impl ExpiryQueue {
    /// The queue at `url`.
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    /// Sends one message for `s`, delayed until just after its grace ends (whole seconds,
    /// rounded up, plus one: never early).
    ///
    /// # Errors
    /// The SDK's error if the message was not sent.
    pub async fn schedule(
        &self,
        s: &Suspension,
        now: SystemTime,
    ) -> Result<(), aws_sdk_sqs::Error> {
        let body = ExpiryMessage {
            expire: s.id.to_string(),
            at: epoch_millis(s.until),
        };
        let body = serde_json::to_string(&body).unwrap_or_default();
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay_seconds(s.until, now))
            .send()
            .await?;
        Ok(())
    }
}

/// Whole seconds from `now` until after `until`, at most SQS's 900.
pub fn delay_seconds(until: SystemTime, now: SystemTime) -> i32 {
    let wait = until.duration_since(now).unwrap_or_default();
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0) + 1;
    i32::try_from(secs.min(MAX_DELAY.as_secs())).unwrap_or(900)
}

fn epoch_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_covers_the_grace_and_stays_within_sqs_limits() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(delay_seconds(now + Duration::from_secs(30), now), 31);
        assert_eq!(delay_seconds(now + Duration::from_millis(29_001), now), 31);
        assert_eq!(delay_seconds(now, now), 1);
        assert_eq!(delay_seconds(now - Duration::from_secs(5), now), 1);
        assert_eq!(delay_seconds(now + Duration::from_hours(1), now), 900);
    }
}
