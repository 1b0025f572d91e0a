//! The bootstrap processes: `--instances` children of `--bootstrap`, like concurrent Lambda
//! instances of one function. Each polls a runtime API listener of its own on 127.0.0.1
//! (all over the gateway's one invocation queue). A child that exits is logged and
//! respawned, after a pause that grows while it keeps dying young.
//!
//! Children are killed when the gateway stops (Ctrl-C, SIGTERM, or `run` returning) and,
//! through `kill_on_drop`, when the gateway's runtime is dropped. A gateway killed with
//! SIGKILL cannot take them along (that would need `prctl(PR_SET_PDEATHSIG)`, which needs
//! `unsafe`): they then keep polling a runtime API that is gone, and exit on their own when
//! `lambda_runtime` fails to reach it.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{net::TcpListener, process::Command, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::runtime::{self, Instance, Invoker};

/// A child that lived at least this long was healthy: the next respawn is immediate.
const HEALTHY: Duration = Duration::from_secs(10);
/// The longest pause between respawns.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The running bootstrap processes.
#[derive(Debug)]
pub struct Instances {
    stop: CancellationToken,
    supervisors: Vec<JoinHandle<()>>,
    servers: Vec<JoinHandle<()>>,
}

impl Instances {
    /// Spawns `count` children of `bootstrap` with the gateway's environment plus `env`,
    /// plus each its own `AWS_LAMBDA_RUNTIME_API` and `AWS_LAMBDA_LOG_STREAM_NAME`.
    ///
    /// # Errors
    /// If a runtime API listener cannot be bound.
    pub async fn start(
        bootstrap: PathBuf,
        count: usize,
        env: Vec<(String, String)>,
        invoker: &Invoker,
    ) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let mut supervisors = Vec::with_capacity(count);
        let mut servers = Vec::with_capacity(count);
        for n in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding a runtime API listener")?;
            let addr = listener.local_addr().context("reading its address")?;
            let instance = Arc::new(Instance::new(n));
            let router = runtime::router(invoker.clone(), Some(instance.clone()));
            servers.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "runtime API listener failed");
                }
            }));
            let mut child_env = env.clone();
            child_env.push(("AWS_LAMBDA_RUNTIME_API".into(), addr.to_string()));
            child_env.push(("AWS_LAMBDA_LOG_STREAM_NAME".into(), format!("local-{n}")));
            supervisors.push(tokio::spawn(supervise(
                bootstrap.clone(),
                child_env,
                instance,
                invoker.clone(),
                stop.clone(),
            )));
        }
        Ok(Self {
            stop,
            supervisors,
            servers,
        })
    }

    /// Kills every child, waits for them to exit, and closes their runtime listeners.
    pub async fn stop(self) {
        self.stop.cancel();
        for supervisor in self.supervisors {
            let _ = supervisor.await;
        }
        for server in self.servers {
            server.abort();
        }
    }
}

/// Keeps one child running until `stop`.
async fn supervise(
    bootstrap: PathBuf,
    env: Vec<(String, String)>,
    instance: Arc<Instance>,
    invoker: Invoker,
    stop: CancellationToken,
) {
    let n = instance.n;
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        instance.spawned();
        let started = Instant::now();
        let spawned = Command::new(&bootstrap)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(mut child) => {
                tracing::info!(instance = n, pid = child.id(), "instance started");
                tokio::select! {
                    status = child.wait() => {
                        invoker.instance_exited(n);
                        match status {
                            Ok(status) => tracing::warn!(instance = n, %status, "instance exited; respawning"),
                            Err(e) => tracing::error!(instance = n, error = %e, "waiting for an instance failed; respawning"),
                        }
                    }
                    () = stop.cancelled() => {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        tracing::info!(instance = n, "instance stopped");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::error!(instance = n, bootstrap = %bootstrap.display(), error = %e, "cannot start the bootstrap");
            }
        }
        if started.elapsed() >= HEALTHY {
            backoff = Duration::from_millis(100);
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
