//! `meshcall-gateway`: a local stand-in for AWS API Gateway WebSocket, so that meshcall's
//! serverless path runs on one machine with the real Lambda bootstrap:
//!
//! ```text
//! browser ──WebSocket──► meshcall-gateway ──runtime API──► bootstrap (crates/lambda) ──► DynamoDB (moto)
//!        ◄──────────────  @connections  ◄──────────────────────────┘
//! ```
//!
//! It emulates, on one port: the WebSocket API (connection ids; `$connect` invoked before
//! the handshake is answered, any non-2xx `statusCode` refusing it; route selection on
//! `$request.body.action` with meshcall's route keys and `$default`; each text frame its own
//! invocation, started at once, so one connection's messages run concurrently and may reach
//! the function out of order, as on AWS; binary frames closing the connection with 1003
//! without an invocation; `$disconnect` once per connection, after it has left
//! `@connections`, with the close status, not waiting for the connection's message
//! invocations; the 128 KiB message and 32 KiB frame limits closing with 1009, the 10-minute
//! idle timeout and the 2-hour connection limit closing with 1001), the Management API
//! (`POST`/`GET`/`DELETE` on `/<stage>/@connections/{id}` only, as on AWS: without the stage,
//! 404; `GET` answers `connectedAt`, `identity` and `lastActiveAt` in ISO-8601; 410
//! `GoneException` for unknown connections), the template's EventBridge schedule (the
//! sweep, every minute by default), the SQS expiry queue's event source mapping (with
//! `--create-table`, [`aws`]), and the Lambda service: `--instances` warm bootstrap
//! processes polling a Lambda runtime API (`2018-06-01`), one invocation each at a time,
//! more started while every one is busy, up to `--max-instances`, each invocation failing
//! after the function timeout (10 s, the template's). The function reads its secrets from
//! SSM `SecureString` parameters the gateway writes (`--create-table`), never from its
//! environment. It also serves the web app (`meshcall-web`'s handlers, as the self-hosted server serves it), with
//! `/config.json` pointing the app at this gateway's `/ws` (and `socketMaxAgeMs` below the
//! connection limit, so the app moves to a fresh socket in time, as the AWS deployment's
//! does).
//!
//! For tests and measurements: `GET /_gateway/idle` answers `idle` when no invocation is
//! queued or running and no `$disconnect` is pending (a barrier, where the self-hosted
//! server has its metrics; a message delayed in the expiry queue is not pending);
//! `GET /_gateway/stats` counts invocations by route (`sweep`, `sqs` for the scheduled and
//! queue events), text and binary frames received, lost `$disconnect`s, instances started,
//! expiry queue messages, `@connections` posts by outcome, deletes, gets, and bytes.
//! `--lose-disconnects <fraction>` loses that share of `$disconnect` events (API Gateway's
//! are best-effort): the connection leaves `@connections`, the function is never told.
//!
//! Where it differs from API Gateway:
//!
//! - no throttling, no authorizers, no route responses, no request validation, no custom
//!   domains or TLS; request signatures on `@connections` are not checked; `$disconnect` is
//!   always on time (unless lost on purpose), where AWS may report a vanished client only
//!   at the idle timeout;
//! - events carry fewer fields (no `X-Amzn-Trace-Id` header, no `$disconnect` headers);
//!   header names are the client's spelling when the handshake was the first request on its
//!   TCP connection, title case otherwise;
//! - a connection that does not read its frames is closed with 1013 once 1024 posted frames
//!   wait for it (API Gateway buffers more and says nothing);
//! - past `--max-instances`, invocations wait in one queue for a free instance instead of
//!   being throttled (Lambda answers 429 past the function's concurrency); instances are
//!   never scaled down or recycled; a timed-out invocation leaves its instance running it
//!   (Lambda restarts the runtime); an instance whose process exits is respawned and its
//!   invocation fails at once;
//! - the expiry queue is short-polled (`--expiry-poll-interval`; the emulator serves one
//!   request at a time, so no long polls), one batch of up to 10 per poll, with no batching
//!   window and no retry backoff: a failed message comes back after the queue's visibility
//!   timeout (`--expiry-visibility-timeout`), with no redrive policy;
//! - each bootstrap process polls a runtime API port of its own (one queue behind them all),
//!   so that the log can say how long each took to become ready and its first (cold)
//!   invocation took. Ctrl-C and SIGTERM stop the processes; a gateway killed with SIGKILL
//!   leaves them running until their next poll fails, when `lambda_runtime` exits.
//!
//! Every accepted socket (WebSocket, `@connections`, runtime API) has `TCP_NODELAY`: a
//! frame written while the peer's delayed ACK of the previous one is pending would wait for
//! it otherwise (40 ms on Linux).
//!
//! # Layout
//!
//! - [`settings`]: [`Settings`], the flags.
//! - [`app`]: the main router and its state.
//! - [`socket`]: `$connect`, one task per WebSocket, `$disconnect`.
//! - [`manage`]: the Management API (`@connections`).
//! - [`connections`]: the open connections and their frame queues.
//! - [`event`]: the event shapes and route selection.
//! - [`clock`]: the clock and AWS's time formats; [`ids`]: AWS's request and event ids.
//! - [`runtime`]: the Lambda runtime API and the invocation queue.
//! - [`stats`]: the counters behind `/_gateway/stats`.
//! - [`instances`]: the bootstrap processes, scaled on demand.
//! - [`aws`]: the table, the expiry queue and its event source mapping, the secret
//!   parameters.
//! - [`peer`]: the listener that keeps the client's header spelling.

pub mod app;
pub mod aws;
pub mod clock;
pub mod connections;
pub mod event;
pub mod ids;
pub mod instances;
pub mod manage;
pub mod peer;
pub mod runtime;
pub mod settings;
pub mod socket;
pub mod stats;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use settings::Settings;

use crate::{
    app::AppState, aws::Resources, connections::Connections, instances::Instances, peer::Peer,
    runtime::Invoker,
};

/// Serves the gateway on `listener`, and the Lambda runtime API for external runtime
/// clients on `runtime_listener`, until `shutdown` is cancelled. With `--create-table` it
/// first creates the table, the expiry queue (then polled) and the secret parameters. With
/// `--instances` above 0 it runs that many bootstrap processes, and more on demand up to
/// `--max-instances`. On shutdown it closes every WebSocket with 1001, waits up to
/// `--shutdown-timeout` for their `$disconnect`, then stops the processes.
///
/// # Errors
/// If the bootstrap is missing, creating the resources fails, a listener fails, or the
/// server fails.
pub async fn run(
    listener: TcpListener,
    runtime_listener: TcpListener,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("reading the bound address")?;
    let callback_addr = reachable(addr);
    let runtime_addr = runtime_listener
        .local_addr()
        .context("reading the runtime API address")?;
    let invoker = Invoker::new(settings.function_timeout);
    let runtime_server = tokio::spawn(runtime::serve(
        runtime_listener,
        runtime::router(invoker.clone(), None),
    ));
    let (resources, sdk, instances) = match function(settings, callback_addr, &invoker).await {
        Ok(started) => started,
        Err(e) => {
            runtime_server.abort();
            return Err(e);
        }
    };
    let tracker = TaskTracker::new();
    // The event sources besides the sockets: the schedule and the expiry queue.
    let mut sources: Vec<_> = (!settings.sweep_every.is_zero())
        .then(|| {
            let (invoker, every) = (invoker.clone(), settings.sweep_every);
            tokio::spawn(sweep(invoker, every, shutdown.clone()))
        })
        .into_iter()
        .collect();
    sources.extend(resources.expiry_queue.clone().zip(sdk).map(|(queue, sdk)| {
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let (every, invoker) = (settings.expiry_poll_interval, invoker.clone());
        tokio::spawn(aws::poll(
            sqs,
            queue,
            invoker,
            every,
            shutdown.clone(),
            tracker.clone(),
        ))
    }));
    let state = AppState {
        settings: Arc::new(settings.clone()),
        invoker,
        connections: Arc::new(Connections::default()),
        callback_addr,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    };
    // The HTTP side outlives `shutdown` until the connections have drained, so that the
    // function can still post during their `$disconnect`.
    let stop = CancellationToken::new();
    let server = axum::serve(
        peer::RecordingListener(listener),
        app::router(state).into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(stop.clone().cancelled_owned());
    let mut server = tokio::spawn(server.into_future());
    tracing::info!(
        %addr,
        %runtime_addr,
        instances = settings.instances,
        table = %settings.table,
        "meshcall-gateway listening"
    );

    let ended = tokio::select! {
        served = &mut server => Some(served),
        () = shutdown.cancelled() => None,
    };
    shutdown.cancel();
    tracker.close();
    let open = tracker.len();
    if tokio::time::timeout(settings.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open,
            left = tracker.len(),
            "connections still open after the shutdown timeout"
        );
    }
    stop.cancel();
    let served = match ended {
        Some(served) => served,
        None => server.await,
    };
    for source in sources {
        source.abort();
    }
    if let Some(instances) = instances {
        instances.stop().await;
    }
    runtime_server.abort();
    tracing::info!("meshcall-gateway stopped");
    served
        .context("the server task failed")?
        .context("serving HTTP")
}

/// The function's side: its resources (created with `--create-table`, with the SDK
/// configuration used), and its instances (with `--instances` above 0).
async fn function(
    settings: &Settings,
    callback_addr: SocketAddr,
    invoker: &Invoker,
) -> anyhow::Result<(Resources, Option<aws_config::SdkConfig>, Option<Instances>)> {
    let bootstrap = if settings.instances > 0 {
        Some(bootstrap_path(settings)?)
    } else {
        None
    };
    let (resources, sdk) = if settings.create_table {
        let sdk = aws_config::load_from_env().await;
        (Resources::create(&sdk, settings).await?, Some(sdk))
    } else {
        (Resources::named(settings), None)
    };
    let instances = match bootstrap {
        Some(bootstrap) => Some(
            Instances::start(
                bootstrap,
                settings.instances,
                settings.max_instances,
                function_env(settings, callback_addr, &resources),
                invoker,
            )
            .await?,
        ),
        None => None,
    };
    Ok((resources, sdk, instances))
}

/// The bootstrap to run: `--bootstrap`, or `bootstrap` next to this executable.
///
/// # Errors
/// If it does not exist.
pub fn bootstrap_path(settings: &Settings) -> anyhow::Result<PathBuf> {
    let path = match &settings.bootstrap {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("finding this executable")?
            .with_file_name("bootstrap"),
    };
    anyhow::ensure!(
        path.is_file(),
        "no Lambda bootstrap at {}: build it with `cargo build -p meshcall-lambda`, pass \
         --bootstrap, or run with --instances 0",
        path.display()
    );
    Ok(path)
}

/// The address the function reaches this gateway at: the listening one, with an unspecified
/// IP replaced by loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// What every bootstrap process gets on top of the gateway's environment (each also gets
/// its own `AWS_LAMBDA_RUNTIME_API` and `AWS_LAMBDA_LOG_STREAM_NAME`): the `@connections`
/// endpoint with the stage (as `MESHCALL_CALLBACK_URL`, and as the SDK's endpoint variable,
/// which wins over `AWS_ENDPOINT_URL` naming the emulator), the names of the secret
/// parameters and the expiry queue's URL, and the function's settings.
fn function_env(
    settings: &Settings,
    callback_addr: SocketAddr,
    resources: &Resources,
) -> Vec<(String, String)> {
    let callback_url = format!("http://{callback_addr}/{}", settings.stage);
    let mut env: Vec<(String, String)> = [
        (
            "AWS_LAMBDA_FUNCTION_NAME",
            runtime::FUNCTION_NAME.to_owned(),
        ),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", runtime::FUNCTION_NAME),
        ),
        ("MESHCALL_TABLE", settings.table.clone()),
        ("MESHCALL_CALLBACK_URL", callback_url.clone()),
        ("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI", callback_url),
    ]
    .into_iter()
    .chain(resources.env())
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(
        settings
            .function_env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

/// Invokes the function with a scheduled event every `every`; a tick that comes while the
/// previous sweep still runs is skipped.
async fn sweep(invoker: Invoker, every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let event = event::scheduled(clock::now_ms());
        tokio::select! {
            result = invoker.invoke(&event) => match result {
                Ok(body) => tracing::debug!(response = %String::from_utf8_lossy(&body), "swept"),
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            },
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_gets_its_environment() {
        let settings = Settings::default();
        let resources = Resources::named(&settings);
        let env: std::collections::HashMap<String, String> =
            function_env(&settings, "127.0.0.1:9".parse().unwrap(), &resources)
                .into_iter()
                .collect();
        assert_eq!(
            env["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"],
            "http://127.0.0.1:9/local"
        );
        assert_eq!(env["MESHCALL_CALLBACK_URL"], "http://127.0.0.1:9/local");
        assert_eq!(env["MESHCALL_TABLE"], "meshcall");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
        assert_eq!(
            env["MESHCALL_RESUME_SECRET_PARAMETER"],
            "/meshcall/resume-secret"
        );
        for plain in ["MESHCALL_RESUME_SECRET", "MESHCALL_TURN_SECRET"] {
            assert!(!env.contains_key(plain), "{plain} in the environment");
        }
    }

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(reachable(a("0.0.0.0:80")), a("127.0.0.1:80"));
        assert_eq!(reachable(a("[::]:80")), a("[::1]:80"));
        assert_eq!(reachable(a("10.0.0.1:80")), a("10.0.0.1:80"));
    }
}
