//! [`ApiGatewayPusher`]: the [`Pusher`] port on the API Gateway Management API. Each frame is
//! one `PostToConnection`; a 410 (`GoneException`) is [`Delivery::Gone`], which the core
//! answers by suspending or removing that connection's participant. A
//! [`probe`](Pusher::probe) is one `GetConnection`, 410 again meaning gone.

use std::{
    ffi::OsString,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use aws_config::SdkConfig;
use aws_sdk_apigatewaymanagement::{
    Client,
    operation::{
        delete_connection::DeleteConnectionError, get_connection::GetConnectionError,
        post_to_connection::PostToConnectionError,
    },
    primitives::Blob,
};
use meshcall_core::{Delivery, Outbound, PushError, Pusher, protocol::ConnectionId};

/// The environment variables through which aws-config points the client somewhere else
/// (a local gateway, an emulator); they win over the endpoint given in code.
const ENDPOINT_VARIABLES: [&str; 2] = [
    "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
    "AWS_ENDPOINT_URL",
];

/// Posts so far, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Posts {
    /// Accepted by API Gateway.
    pub delivered: u64,
    /// Answered 410: the connection is gone.
    pub gone: u64,
    /// Failed otherwise (the connection may still be there).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    gone: AtomicU64,
    failed: AtomicU64,
}

/// Frames to API Gateway WebSocket connections. Build one per process (per Lambda
/// instance) and share it.
#[derive(Debug, Clone)]
pub struct ApiGatewayPusher {
    client: Client,
    counters: Arc<Counters>,
}

impl ApiGatewayPusher {
    /// A pusher posting to `endpoint`, unless `AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI` or
    /// `AWS_ENDPOINT_URL` is set: then the environment wins (a local gateway or emulator,
    /// whose `@connections` path has no stage), as it does for every other client.
    pub fn new(sdk: &SdkConfig, endpoint: &str) -> Self {
        let chosen = chosen_endpoint(endpoint, |name| std::env::var_os(name));
        Self::build(sdk, chosen)
    }

    /// A pusher posting to `endpoint`, whatever the environment says.
    pub fn at(sdk: &SdkConfig, endpoint: &str) -> Self {
        Self::build(sdk, Some(endpoint.to_owned()))
    }

    fn build(sdk: &SdkConfig, endpoint: Option<String>) -> Self {
        let mut config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk);
        // Only when there is one: `set_endpoint_url(None)` would also drop the endpoint the
        // builder took from the environment.
        if let Some(endpoint) = endpoint {
            config.set_endpoint_url(Some(endpoint));
        }
        let config = config.build();
        Self {
            client: Client::from_conf(config),
            counters: Arc::default(),
        }
    }

    /// Closes connection `to` (`DeleteConnection`): API Gateway then runs `$disconnect`
    /// for it. For a socket a `resume` took its participant from.
    ///
    /// # Errors
    /// [`PushError`] if the call failed and the connection may still be open.
    pub async fn close(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        match self
            .client
            .delete_connection()
            .connection_id(to.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(Delivery::Delivered),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteConnectionError::GoneException(_))
                ) =>
            {
                Ok(Delivery::Gone)
            }
            Err(e) => Err(PushError::new(e)),
        }
    }

    /// Posts so far, by outcome.
    pub fn posts(&self) -> Posts {
        let c = &self.counters;
        Posts {
            delivered: c.delivered.load(Ordering::Relaxed),
            gone: c.gone.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

/// `Some(endpoint)` unless one of [`ENDPOINT_VARIABLES`] is set (and not empty).
fn chosen_endpoint(endpoint: &str, var: impl Fn(&str) -> Option<OsString>) -> Option<String> {
    let overridden = ENDPOINT_VARIABLES
        .iter()
        .any(|name| var(name).is_some_and(|v| !v.is_empty()));
    (!overridden).then(|| endpoint.to_owned())
}

impl Pusher for ApiGatewayPusher {
    async fn push(&self, to: &ConnectionId, frame: &Outbound) -> Result<Delivery, PushError> {
        let sent = self
            .client
            .post_to_connection()
            .connection_id(to.as_str())
            .data(Blob::new(frame.text.as_bytes()))
            .send()
            .await;
        let c = &self.counters;
        match sent {
            Ok(_) => {
                c.delivered.fetch_add(1, Ordering::Relaxed);
                Ok(Delivery::Delivered)
            }
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PostToConnectionError::GoneException(_))
                ) =>
            {
                c.gone.fetch_add(1, Ordering::Relaxed);
                Ok(Delivery::Gone)
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                Err(PushError::new(e))
            }
        }
    }

    /// One `GetConnection`: 200 is [`Delivery::Delivered`] (the connection exists), 410
    /// `GoneException` is [`Delivery::Gone`]. Only the status counts: a 200 whose body the
    /// SDK cannot read (moto sends `connectedAt` as epoch seconds where the SDK expects an
    /// ISO-8601 date) still says the connection exists.
    async fn probe(&self, to: &ConnectionId) -> Result<Delivery, PushError> {
        let asked = self
            .client
            .get_connection()
            .connection_id(to.as_str())
            .send()
            .await;
        match asked {
            Ok(_) => Ok(Delivery::Delivered),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(GetConnectionError::GoneException(_))
                ) =>
            {
                Ok(Delivery::Gone)
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 200) => {
                tracing::debug!(conn_id = %to, "GetConnection answered 200 with a body the SDK could not read");
                Ok(Delivery::Delivered)
            }
            Err(e) => Err(PushError::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_endpoint_wins_over_the_one_in_code() {
        let stage = "https://abc.execute-api.eu-west-1.amazonaws.com/prod";
        let none = |_: &str| None;
        assert_eq!(chosen_endpoint(stage, none).as_deref(), Some(stage));
        for set in ENDPOINT_VARIABLES {
            let env = |name: &str| (name == set).then(|| OsString::from("http://127.0.0.1:9"));
            assert_eq!(chosen_endpoint(stage, env), None, "{set}");
        }
        let empty = |_: &str| Some(OsString::new());
        assert_eq!(chosen_endpoint(stage, empty).as_deref(), Some(stage));
    }
}
