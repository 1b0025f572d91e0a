//! The Lambda runtime API (`2018-06-01`), as `lambda_runtime` speaks it, over one queue of
//! invocations. [`Invoker::invoke`] queues an event and waits for its response; every
//! runtime client (each bootstrap process, or a test) long-polls `GET .../invocation/next`
//! for the next event and posts the result to `.../invocation/{id}/response` or `/error`.
//!
//! Each spawned instance polls a listener of its own (all over the same queue), so the
//! gateway knows which instance took an event: it logs the time from an instance's spawn
//! to its first poll and the duration of its first (cold) invocation, and fails an
//! instance's invocation at once when its process dies.
//!
//! Spawned instances scale like Lambda's: when an invocation is queued and no instance is
//! free to take it, the invoker signals [`Invoker::demand`], and [`crate::instances`]
//! starts another one (up to `--max-instances`). An instance is busy from the moment it
//! takes an event until it posts that event's outcome.
//!
//! The invoker also carries the gateway's [`Stats`] (`GET /_gateway/stats`): it counts the
//! invocations itself; the sockets count the frames they receive and the Management API
//! its calls, through [`Invoker::stats`].

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rand::RngExt as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

pub use crate::stats::{PostOutcome, Stats};
use crate::{
    clock::now_ms,
    event::{ACCOUNT, REGION},
    ids::{hex, uuid},
};

/// The function's name (`AWS_LAMBDA_FUNCTION_NAME`).
pub const FUNCTION_NAME: &str = "meshcall";

/// Largest response a function may return (Lambda's synchronous payload limit).
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Why an invocation has no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// No response within the function timeout.
    #[error("the function did not answer within {0:?}")]
    Timeout(Duration),
    /// The function reported an error.
    #[error("the function failed: {error_type}: {message}")]
    Function {
        /// `errorType`.
        error_type: String,
        /// `errorMessage`.
        message: String,
    },
    /// The process running it exited.
    #[error("the instance running the function exited")]
    InstanceExited,
}

type Reply = oneshot::Sender<Result<Bytes, InvokeError>>;

struct Job {
    request_id: String,
    event: Bytes,
    deadline_ms: i64,
    reply: Reply,
}

struct InFlight {
    reply: Reply,
    instance: Option<Arc<Instance>>,
    handed: Instant,
    cold: bool,
}

/// One spawned bootstrap process's bookkeeping (kept across respawns).
#[derive(Debug)]
pub struct Instance {
    /// Its number (`AWS_LAMBDA_LOG_STREAM_NAME` is `local-<n>`).
    pub n: usize,
    spawned: Mutex<Instant>,
    polled: AtomicBool,
    cold: AtomicBool,
    busy: AtomicBool,
}

impl Instance {
    /// Bookkeeping for instance `n`.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            spawned: Mutex::new(Instant::now()),
            polled: AtomicBool::new(false),
            cold: AtomicBool::new(true),
            busy: AtomicBool::new(false),
        }
    }

    /// Whether it holds an invocation it has not answered yet.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// Its process was (re)spawned just now: the next poll and invocation are its first.
    pub fn spawned(&self) {
        *self.spawned.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.polled.store(false, Ordering::Relaxed);
        self.cold.store(true, Ordering::Relaxed);
        self.busy.store(false, Ordering::SeqCst);
    }

    fn polled(&self) {
        if !self.polled.swap(true, Ordering::Relaxed) {
            let spawned = *self.spawned.lock().unwrap_or_else(PoisonError::into_inner);
            let ms = spawned.elapsed().as_millis();
            tracing::info!(instance = self.n, ms, "instance ready in {ms} ms");
        }
    }
}

struct Inner {
    queue: mpsc::UnboundedSender<Job>,
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>,
    in_flight: Mutex<HashMap<String, InFlight>>,
    timeout: Duration,
    /// Invocations started ([`Invoker::start`]) whose future has not finished.
    outstanding: Arc<AtomicUsize>,
    /// Jobs in the queue, not yet handed to a runtime client.
    queued: AtomicUsize,
    /// Notified when a job is queued (the instances may have to scale up).
    demand: tokio::sync::Notify,
    stats: Stats,
}

/// Counts one outstanding invocation while alive.
struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Invokes the function through the runtime API. Cheap to clone.
#[derive(Clone)]
pub struct Invoker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker")
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl Invoker {
    /// An invoker whose invocations fail after `timeout` (the function timeout).
    pub fn new(timeout: Duration) -> Self {
        let (queue, next) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                queue,
                next: tokio::sync::Mutex::new(next),
                in_flight: Mutex::new(HashMap::new()),
                timeout,
                outstanding: Arc::new(AtomicUsize::new(0)),
                queued: AtomicUsize::new(0),
                demand: tokio::sync::Notify::new(),
                stats: Stats::default(),
            }),
        }
    }

    fn in_flight(&self) -> MutexGuard<'_, HashMap<String, InFlight>> {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Invocations queued or running (every caller of [`Self::invoke`] still waiting).
    pub fn outstanding(&self) -> usize {
        self.inner.outstanding.load(Ordering::SeqCst)
    }

    /// The gateway's counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Jobs queued and not yet taken by a runtime client.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::SeqCst)
    }

    /// Resolves when a job has been queued since the last call (the instances check whether
    /// to scale up).
    pub async fn demand(&self) {
        self.inner.demand.notified().await;
    }

    /// Invokes the function with `event` and waits for its response body (counted in
    /// [`Stats`], and as failed if it fails).
    ///
    /// # Errors
    /// [`InvokeError`] if the function fails, times out or its instance exits.
    pub async fn invoke(&self, event: &Value) -> Result<Bytes, InvokeError> {
        self.start(event).await
    }

    /// Starts invoking the function with `event`: counted (in [`Stats`] and in
    /// [`Self::outstanding`]) from now, so a caller that spawns the returned future leaves
    /// no moment when the invocation is not counted; queued when first polled.
    ///
    /// # Errors
    /// The future fails as [`Self::invoke`] does.
    pub fn start(
        &self,
        event: &Value,
    ) -> impl Future<Output = Result<Bytes, InvokeError>> + Send + 'static {
        self.inner.stats.invoked(event);
        let outstanding = Outstanding::new(&self.inner.outstanding);
        let (this, event) = (self.clone(), Bytes::from(event.to_string()));
        async move {
            let result = this.invoke_counted(event).await;
            if result.is_err() {
                this.inner.stats.invocation_failed();
            }
            drop(outstanding);
            result
        }
    }

    async fn invoke_counted(&self, event: Bytes) -> Result<Bytes, InvokeError> {
        let request_id = uuid();
        let timeout = self.inner.timeout;
        let (reply, response) = oneshot::channel();
        let job = Job {
            request_id: request_id.clone(),
            event,
            deadline_ms: now_ms() + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
            reply,
        };
        self.inner.queued.fetch_add(1, Ordering::SeqCst);
        if self.inner.queue.send(job).is_err() {
            self.inner.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(InvokeError::InstanceExited);
        }
        self.inner.demand.notify_one();
        match tokio::time::timeout(timeout, response).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(InvokeError::InstanceExited),
            Err(_) => {
                self.in_flight().remove(&request_id);
                Err(InvokeError::Timeout(timeout))
            }
        }
    }

    /// Fails every invocation instance `n` holds (its process exited).
    pub fn instance_exited(&self, n: usize) {
        let mut in_flight = self.in_flight();
        let lost: Vec<String> = in_flight
            .iter()
            .filter(|(_, f)| f.instance.as_ref().is_some_and(|i| i.n == n))
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            if let Some(f) = in_flight.remove(&id) {
                let _ = f.reply.send(Err(InvokeError::InstanceExited));
            }
        }
    }

    /// Waits for the next job whose caller still waits for it.
    async fn next(&self) -> Option<Job> {
        let mut next = self.inner.next.lock().await;
        loop {
            let job = next.recv().await?;
            self.inner.queued.fetch_sub(1, Ordering::SeqCst);
            // Its caller gave up (timed out) while it waited in the queue.
            if !job.reply.is_closed() {
                return Some(job);
            }
        }
    }

    fn hand_out(&self, job: Job, instance: Option<Arc<Instance>>) -> (String, Bytes, i64) {
        let cold = instance
            .as_ref()
            .is_some_and(|i| i.cold.swap(false, Ordering::Relaxed));
        if let Some(instance) = &instance {
            instance.busy.store(true, Ordering::SeqCst);
        }
        self.in_flight().insert(
            job.request_id.clone(),
            InFlight {
                reply: job.reply,
                instance,
                handed: Instant::now(),
                cold,
            },
        );
        (job.request_id, job.event, job.deadline_ms)
    }

    fn finish(&self, request_id: &str, result: Result<Bytes, InvokeError>) -> bool {
        let Some(f) = self.in_flight().remove(request_id) else {
            return false;
        };
        if f.cold
            && let Some(instance) = &f.instance
        {
            let ms = f.handed.elapsed().as_millis();
            tracing::info!(instance = instance.n, ms, "cold invocation took {ms} ms");
        }
        let _ = f.reply.send(result);
        true
    }
}

/// The runtime API's state: the invoker, and the instance polling this listener (none for
/// the shared listener).
#[derive(Clone)]
struct RuntimeState {
    invoker: Invoker,
    instance: Option<Arc<Instance>>,
}

impl RuntimeState {
    /// The instance posted the outcome of the event it held: it is free again.
    fn answered(&self) {
        if let Some(instance) = &self.instance {
            instance.busy.store(false, Ordering::SeqCst);
        }
    }
}

/// The runtime API for `instance` (or for any runtime client, with `None`).
pub fn router(invoker: Invoker, instance: Option<Arc<Instance>>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .layer(DefaultBodyLimit::max(MAX_RESPONSE_BYTES))
        .with_state(RuntimeState { invoker, instance })
}

/// Serves the runtime API `router` on `listener`, every accepted socket with
/// `TCP_NODELAY` (a response written while the previous one waits for a delayed ACK would
/// otherwise wait up to 40 ms).
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
    });
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "runtime API listener failed");
    }
}

/// The function's ARN.
pub fn function_arn() -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION_NAME}")
}

/// An X-Ray trace header: the epoch seconds, a random root id and parent id.
fn trace_id() -> String {
    let root: [u8; 12] = rand::rng().random();
    let parent: [u8; 8] = rand::rng().random();
    format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        now_ms() / 1000,
        hex(&root),
        hex(&parent)
    )
}

async fn next(State(state): State<RuntimeState>) -> Response {
    if let Some(instance) = &state.instance {
        instance.polled();
    }
    let Some(job) = state.invoker.next().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    };
    let (request_id, event, deadline_ms) = state.invoker.hand_out(job, state.instance.clone());
    let headers = [
        ("lambda-runtime-aws-request-id", request_id),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        ("lambda-runtime-invoked-function-arn", function_arn()),
        ("lambda-runtime-trace-id", trace_id()),
    ];
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        event,
    )
        .into_response();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}

fn unknown_request(id: &str) -> Response {
    tracing::warn!(
        request_id = id,
        "a runtime client answered an unknown or expired invocation"
    );
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "errorMessage": format!("invalid request id {id}"),
            "errorType": "InvalidRequestID",
        })),
    )
        .into_response()
}

async fn response(
    State(state): State<RuntimeState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    state.answered();
    if state.invoker.finish(&id, Ok(body)) {
        accepted()
    } else {
        unknown_request(&id)
    }
}

/// Reads a runtime error body, `{"errorType":..,"errorMessage":..}`, leniently.
fn diagnostic(body: &[u8]) -> (String, String) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (field("errorType"), field("errorMessage"))
}

async fn error(State(state): State<RuntimeState>, Path(id): Path<String>, body: Bytes) -> Response {
    state.answered();
    let (error_type, message) = diagnostic(&body);
    tracing::warn!(request_id = %id, error_type, message, "the function reported an error");
    if state.invoker.finish(
        &id,
        Err(InvokeError::Function {
            error_type,
            message,
        }),
    ) {
        accepted()
    } else {
        unknown_request(&id)
    }
}

async fn init_error(State(state): State<RuntimeState>, body: Bytes) -> Response {
    let (error_type, message) = diagnostic(&body);
    let instance = state.instance.as_ref().map(|i| i.n);
    tracing::error!(
        ?instance,
        error_type,
        message,
        "the function failed to start"
    );
    accepted()
}
