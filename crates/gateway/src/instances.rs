//! The bootstrap processes, like the Lambda instances of one function: `--instances` of
//! them at start (warm), then one more each time an invocation is queued while every
//! instance is busy, up to `--max-instances` (as Lambda scales up to the function's
//! concurrency; past it, invocations wait in the queue instead of being throttled). Each
//! polls a runtime API listener of its own on 127.0.0.1 (all over the gateway's one
//! invocation queue). A child that exits is logged and respawned, after a pause that grows
//! while it keeps dying young. Instances are never scaled down.
//!
//! Children are killed when the gateway stops (Ctrl-C, SIGTERM, or `run` returning) and,
//! through `kill_on_drop`, when the gateway's runtime is dropped. A gateway killed with
//! SIGKILL cannot take them along (that would need `prctl(PR_SET_PDEATHSIG)`, which needs
//! `unsafe`): they then keep polling a runtime API that is gone, and exit on their own when
//! `lambda_runtime` fails to reach it.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
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

/// One instance: its bookkeeping, its supervisor and its runtime API server.
#[derive(Debug)]
struct Running {
    instance: Arc<Instance>,
    supervisor: JoinHandle<()>,
    server: JoinHandle<()>,
}

/// What spawning an instance takes.
#[derive(Debug)]
struct Spawner {
    bootstrap: PathBuf,
    env: Vec<(String, String)>,
    invoker: Invoker,
    max: usize,
    stop: CancellationToken,
    running: Mutex<Vec<Running>>,
}

/// The running bootstrap processes.
#[derive(Debug)]
pub struct Instances {
    spawner: Arc<Spawner>,
    scaler: JoinHandle<()>,
}

impl Instances {
    /// Spawns `warm` children of `bootstrap` with the gateway's environment plus `env`,
    /// plus each its own `AWS_LAMBDA_RUNTIME_API` and `AWS_LAMBDA_LOG_STREAM_NAME`
    /// (`local-<n>`), then more on demand, up to `max` in all.
    ///
    /// # Errors
    /// If a runtime API listener cannot be bound.
    pub async fn start(
        bootstrap: PathBuf,
        warm: usize,
        max: usize,
        env: Vec<(String, String)>,
        invoker: &Invoker,
    ) -> anyhow::Result<Self> {
        let spawner = Arc::new(Spawner {
            bootstrap,
            env,
            invoker: invoker.clone(),
            max: max.max(warm),
            stop: CancellationToken::new(),
            running: Mutex::new(Vec::new()),
        });
        for _ in 0..warm {
            spawner.spawn().await?;
        }
        let scaler = tokio::spawn(scale(spawner.clone()));
        Ok(Self { spawner, scaler })
    }

    /// Kills every child, waits for them to exit, and closes their runtime listeners.
    pub async fn stop(self) {
        self.spawner.stop.cancel();
        self.scaler.abort();
        let _ = self.scaler.await;
        let running = std::mem::take(&mut *self.spawner.lock());
        for r in running {
            let _ = r.supervisor.await;
            r.server.abort();
        }
    }
}

impl Spawner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether another instance is needed and allowed: more jobs wait than there are
    /// instances free to take them, and fewer than `max` run.
    fn wanted(&self) -> bool {
        let running = self.lock();
        let free = running.iter().filter(|r| !r.instance.is_busy()).count();
        running.len() < self.max && self.invoker.queued() > free
    }

    /// Starts one more instance.
    async fn spawn(&self) -> anyhow::Result<()> {
        let n = self.lock().len();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a runtime API listener")?;
        let addr = listener.local_addr().context("reading its address")?;
        let instance = Arc::new(Instance::new(n));
        let router = runtime::router(self.invoker.clone(), Some(instance.clone()));
        let server = tokio::spawn(runtime::serve(listener, router));
        let mut env = self.env.clone();
        env.push(("AWS_LAMBDA_RUNTIME_API".into(), addr.to_string()));
        env.push(("AWS_LAMBDA_LOG_STREAM_NAME".into(), format!("local-{n}")));
        let supervisor = tokio::spawn(supervise(
            self.bootstrap.clone(),
            env,
            instance.clone(),
            self.invoker.clone(),
            self.stop.clone(),
        ));
        self.invoker.stats().instance_started();
        self.lock().push(Running {
            instance,
            supervisor,
            server,
        });
        Ok(())
    }
}

/// Adds instances while every one is busy and jobs wait, until `stop`.
async fn scale(spawner: Arc<Spawner>) {
    loop {
        while spawner.wanted() && !spawner.stop.is_cancelled() {
            if let Err(e) = spawner.spawn().await {
                tracing::error!(error = %e, "cannot add an instance");
                break;
            }
            let n = spawner.lock().len();
            tracing::info!(instances = n, "every instance was busy: scaled up");
        }
        tokio::select! {
            () = spawner.invoker.demand() => {}
            () = spawner.stop.cancelled() => return,
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
