//! `code-exec serve`: the HTTP JSON API. Owns the routes, bearer-token auth, admission
//! (at most `max_concurrency` executions at once, a bounded queue behind them, 429 beyond),
//! persistent sandboxes by id with idle expiry, cancellation of executions whose client went
//! away, metrics, the OpenAPI document and graceful shutdown. Executions and everything that
//! may block on a backend run on blocking threads; the async side only routes and waits.
//! Runs in the host process.

mod listener;
mod metrics;
mod openapi;
pub mod request;
mod response;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::json;
use thiserror::Error;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::backend::{BackendKind, Cancel};
use crate::interpreter::Interpreter;
use crate::limits::Limits;
use crate::lock::lock;
use crate::result::ExecutionResult;
use crate::tool::{CodeExecutionTool, ExecuteError, SandboxExecutor, ToolError};
use metrics::Metrics;
use request::BadRequest;

/// How the server runs; every value already validated (by the CLI).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Bearer token; required on every route but `/healthz` when set.
    pub token: Option<String>,
    pub max_concurrency: usize,
    pub max_queue: usize,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Persistent sandboxes idle this long are removed.
    pub sandbox_ttl: Duration,
    /// The docker backend's image.
    pub image: Option<String>,
    /// The interpreter of native and `none` runs (default: the first real `python3` on
    /// `PATH`): a virtual environment's, to import its packages.
    pub python: Option<Interpreter>,
    /// The backend of requests that do not name one.
    pub default_sandbox: BackendKind,
    /// Native sandboxes kept started ahead (0: none).
    pub pool: usize,
    /// Modules the pooled sandboxes import before waiting for code.
    pub preload: Vec<String>,
    /// Connections kept open at once (beyond: a JSON 503); `None`: half the open-file limit
    /// (raised to its hard limit at start), between 16 and 4096.
    pub max_connections: Option<usize>,
    /// A client must send a request's headers within this time (also when idle between
    /// requests), and its body within `body_timeout`; else the connection is closed (408).
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// The JSON of one result response is at most this many bytes (streams cut to fit), and
    /// all responses being sent at once share `response_memory` bytes.
    pub max_response_bytes: usize,
    pub response_memory: usize,
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(
        "refusing to listen on {0} without a token: set CODE_EXEC_TOKEN or --token-file, or listen on a loopback address"
    )]
    NoToken(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the server's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("--pool: {0}")]
    Pool(String),
}

/// An error answer: `{"error": message}` with a status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<BadRequest> for ApiError {
    fn from(e: BadRequest) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.0)
    }
}

/// The `{id}` of a sandbox route. An id the router cannot decode (not UTF-8 once
/// percent-decoded) is a JSON 400 like every other error, not the extractor's plain text.
struct SandboxId(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for SandboxId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(SandboxId(id)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the sandbox id in the path cannot be read: {rejection}"),
            )),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({"error": self.message}))).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A persistent sandbox the API handed out.
struct LiveSandbox {
    executor: SandboxExecutor,
    last_used: Mutex<Instant>,
    running: AtomicUsize,
}

impl LiveSandbox {
    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    fn idle_for(&self) -> Option<Duration> {
        (self.running.load(Ordering::SeqCst) == 0).then(|| lock(&self.last_used).elapsed())
    }
}

struct AppState {
    config: ServerConfig,
    /// One tool per backend, built on first use (building may block: docker connects).
    /// One cell per backend: concurrent first requests wait for the one build.
    tools: Mutex<HashMap<BackendKind, Arc<OnceCell<CodeExecutionTool>>>>,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    sandboxes: Mutex<HashMap<String, Arc<LiveSandbox>>>,
    /// Cancel flags of running executions, cancelled together at shutdown.
    running: Mutex<HashMap<u64, Cancel>>,
    next_run: AtomicUsize,
    metrics: Metrics,
    responses: response::ResponseBudget,
}

type Shared = Arc<AppState>;

/// Runs blocking work off the async threads; a panic there becomes a 500 that says so (never
/// for anything a client sent: the library does not panic on input).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    })
}

impl AppState {
    /// The tool of `kind`, built once, however many requests ask for it first (they wait for
    /// the one build). A backend that cannot run here is a 503, and the next request tries
    /// again.
    async fn tool(self: &Arc<Self>, kind: BackendKind) -> Result<CodeExecutionTool, ApiError> {
        let cell = Arc::clone(lock(&self.tools).entry(kind).or_default());
        let image = self.config.image.clone();
        let python = self.config.python.clone();
        let (pool, preload) = (self.config.pool, self.config.preload.clone());
        let built = cell
            .get_or_try_init(|| async move {
                let built = blocking(move || {
                    let mut builder = CodeExecutionTool::builder().backend(kind);
                    if let Some(image) = image {
                        builder = builder.image(image);
                    }
                    if let Some(python) = python.filter(|_| kind != BackendKind::Docker) {
                        builder = builder.interpreter(python);
                    }
                    if kind == BackendKind::Native && pool > 0 {
                        builder = builder.warm_pool(pool, preload);
                    }
                    builder.build()
                })
                .await?;
                built.map_err(|e| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("the {kind} backend is unavailable: {e}"),
                    )
                })
            })
            .await?;
        Ok(built.clone())
    }

    /// A slot to execute in: at once, after waiting in the bounded queue, or 429.
    async fn admit(self: &Arc<Self>) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Ok(permit);
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&self.waiting);
        if queued > self.config.max_queue {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "busy: {} executions running and {} queued; retry later",
                    self.config.max_concurrency, self.config.max_queue
                ),
            ));
        }
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))
    }

    fn sandbox(&self, id: &str) -> Result<Arc<LiveSandbox>, ApiError> {
        lock(&self.sandboxes)
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no sandbox {id:?}")))
    }

    /// Registers a cancel flag for a running execution; the guard cancels it if the handler
    /// is dropped (the client went away) and unregisters it.
    fn track(self: &Arc<Self>) -> (Cancel, CancelOnDrop) {
        let cancel = Cancel::new();
        let key = self.next_run.fetch_add(1, Ordering::SeqCst) as u64;
        lock(&self.running).insert(key, cancel.clone());
        (
            cancel.clone(),
            CancelOnDrop {
                state: Arc::clone(self),
                key,
                cancel,
                armed: true,
            },
        )
    }
}

/// Cancels an execution whose handler was dropped before it finished.
struct CancelOnDrop {
    state: Shared,
    key: u64,
    cancel: Cancel,
    armed: bool,
}

impl CancelOnDrop {
    fn finished(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.cancel.cancel();
            self.state.metrics.cancelled();
        }
        lock(&self.state.running).remove(&self.key);
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is over the server's limit (--body-limit)",
    )
}

/// The body, or 413 when over the cap (refused before it is read whole) / 400 otherwise.
fn body(bytes: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    bytes.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        }
    })
}

async fn result_response(
    state: &Shared,
    result: Result<ExecutionResult, ExecuteError>,
) -> Result<Response, ApiError> {
    match result {
        Ok(result) => Ok(state.responses.respond(result).await),
        Err(e @ ExecuteError::CodeTooLarge { .. }) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, format!("code: {e}")))
        }
    }
}

async fn execute(
    State(state): State<Shared>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = request::execute_body(&body(bytes)?, false)?;
    let kind = body.sandbox.unwrap_or(state.config.default_sandbox);
    let mut tool = state.tool(kind).await?;
    tool.set_limits(body.limits.apply(*tool.limits()));
    let permit = state.admit().await?;
    let (cancel, guard) = state.track();
    let started = Instant::now();
    let result = blocking(move || {
        let _permit = permit;
        tool.run_cancellable(
            body.code.as_bytes(),
            body.stdin.as_deref().map(str::as_bytes),
            None,
            Some(cancel),
        )
    })
    .await?;
    guard.finished();
    state.metrics.executed(&result, started.elapsed());
    result_response(&state, result).await
}

async fn create_sandbox(
    State(state): State<Shared>,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = request::create_body(&body(bytes)?)?;
    let kind = body.sandbox.unwrap_or(state.config.default_sandbox);
    let mut tool = state.tool(kind).await?;
    tool.set_limits(body.limits.apply(*tool.limits()));
    // 128 random bits: ids cannot be guessed.
    let id = crate::token::random_hex(16).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot make a sandbox id: {e}"),
        )
    })?;
    let executor = blocking(move || tool.create_sandbox())
        .await?
        .map_err(|e| match e {
            ToolError::NoPersistentSandboxes(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, format!("sandbox: {e}"))
            }
            other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
        })?;
    lock(&state.sandboxes).insert(
        id.clone(),
        Arc::new(LiveSandbox {
            executor,
            last_used: Mutex::new(Instant::now()),
            running: AtomicUsize::new(0),
        }),
    );
    Ok((StatusCode::CREATED, axum::Json(json!({"id": id}))).into_response())
}

async fn sandbox_execute(
    State(state): State<Shared>,
    SandboxId(id): SandboxId,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let sandbox = state.sandbox(&id)?;
    let body = request::execute_body(&body(bytes)?, true)?;
    let permit = state.admit().await?;
    let (cancel, guard) = state.track();
    let started = Instant::now();
    sandbox.running.fetch_add(1, Ordering::SeqCst);
    // Moved to the blocking thread: whatever drops a sandbox may block.
    let running = sandbox;
    let result = blocking(move || {
        let _permit = permit;
        let result = running.executor.run_cancellable(
            body.code.as_bytes(),
            body.stdin.as_deref().map(str::as_bytes),
            None,
            Some(cancel),
        );
        running.touch();
        running.running.fetch_sub(1, Ordering::SeqCst);
        result
    })
    .await?;
    guard.finished();
    state.metrics.executed(&result, started.elapsed());
    result_response(&state, result).await
}

async fn sandbox_usage(
    State(state): State<Shared>,
    SandboxId(id): SandboxId,
) -> Result<Response, ApiError> {
    let sandbox = state.sandbox(&id)?;
    sandbox.touch();
    let usage = blocking(move || sandbox.executor.get_resource_usage()).await?;
    Ok(axum::Json(usage).into_response())
}

async fn sandbox_limits(
    State(state): State<Shared>,
    SandboxId(id): SandboxId,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let sandbox = state.sandbox(&id)?;
    let changes = request::patch_body(&body(bytes)?)?;
    sandbox.touch();
    let applied = blocking(move || {
        sandbox
            .executor
            .set_live_limits(changes.memory_mb, changes.cpu, changes.pids)
    })
    .await?
    .map_err(|e| match e {
        ToolError::Limit(e) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        other => ApiError::new(
            StatusCode::CONFLICT,
            format!("the sandbox refused the new limits (nothing changed): {other}"),
        ),
    })?;
    Ok(axum::Json(limits_json(&applied)).into_response())
}

fn limits_json(limits: &Limits) -> serde_json::Value {
    json!({
        "memory_mb": limits.memory_mb.get(),
        "cpu": limits.cpu.get(),
        "pids": limits.pids.get(),
        "timeout_s": limits.timeout.get().as_secs_f64(),
        "max_output_bytes": limits.max_output_bytes.as_usize(),
        "disk_mb": limits.disk().get(),
    })
}

async fn delete_sandbox(
    State(state): State<Shared>,
    SandboxId(id): SandboxId,
) -> Result<Response, ApiError> {
    let sandbox = lock(&state.sandboxes)
        .remove(&id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no sandbox {id:?}")))?;
    blocking(move || sandbox.executor.cleanup()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn metrics_text(State(state): State<Shared>) -> Response {
    let live = lock(&state.sandboxes).len();
    let pool = lock(&state.tools)
        .get(&BackendKind::Native)
        .and_then(|cell| cell.get().map(CodeExecutionTool::pool_ready))
        .unwrap_or(0);
    let text = state.metrics.render(
        state.waiting.load(Ordering::SeqCst),
        state.config.max_concurrency - state.permits.available_permits(),
        live,
        pool,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::DOCUMENT,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route; see GET /openapi.json",
    )
}

/// The gate of every request: a body whose declared length is over the cap is refused (413)
/// before any of it is read (a body without a length is cut off by the extractor's limit as
/// it is read); then the bearer token is checked on every route but `/healthz` (401).
async fn gate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let response = gate_request(&state, request, next).await;
    state.metrics.answered(response.status());
    response
}

async fn gate_request(state: &Shared, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.config.body_limit as u64) {
        return too_large().into_response();
    }
    let needs_token = request.uri().path() != "/healthz";
    if let (true, Some(token)) = (needs_token, state.config.token.as_deref()) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            state.metrics.unauthorized();
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    // The whole body arrives within the body timeout, or the request ends here.
    let (parts, body) = request.into_parts();
    let limit = state.config.body_limit;
    let bytes = match tokio::time::timeout(
        state.config.body_timeout,
        axum::body::to_bytes(body, limit + 1),
    )
    .await
    {
        Ok(Ok(bytes)) if bytes.len() <= limit => bytes,
        Ok(Ok(_)) => return too_large().into_response(),
        Ok(Err(_)) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            )
            .into_response();
        }
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s (--body-timeout)",
                    state.config.body_timeout.as_secs_f64()
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Removes sandboxes idle for longer than the TTL, every few seconds.
async fn expire_idle(state: Shared) {
    let period =
        (state.config.sandbox_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::time::sleep(period).await;
        let expired: Vec<Arc<LiveSandbox>> = {
            let mut sandboxes = lock(&state.sandboxes);
            let ids: Vec<String> = sandboxes
                .iter()
                .filter(|(_, s)| {
                    s.idle_for()
                        .is_some_and(|idle| idle > state.config.sandbox_ttl)
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sandboxes.remove(id)).collect()
        };
        if !expired.is_empty() {
            state.metrics.expired(expired.len());
            let _ = blocking(move || expired.iter().for_each(|s| s.executor.cleanup())).await;
        }
    }
}

fn router(state: Shared) -> Router {
    let body_limit = state.config.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/execute", post(execute))
        .route("/v1/sandboxes", post(create_sandbox))
        .route("/v1/sandboxes/{id}/execute", post(sandbox_execute))
        .route("/v1/sandboxes/{id}/usage", get(sandbox_usage))
        .route("/v1/sandboxes/{id}/limits", patch(sandbox_limits))
        .route("/v1/sandboxes/{id}", axum::routing::delete(delete_sandbox))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), gate))
        .with_state(state)
}

/// Waits for SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Runs the server until SIGTERM/SIGINT: then it stops accepting, cancels what runs, waits for
/// the answers to go out, and removes every sandbox. `ready` gets the bound address.
pub fn serve(config: ServerConfig, ready: impl FnOnce(SocketAddr)) -> Result<(), ServerError> {
    if config.token.is_none() && !config.listen.ip().is_loopback() {
        return Err(ServerError::NoToken(config.listen));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("code-exec-serve")
        .build()
        .map_err(ServerError::Runtime)?;
    // One descriptor per connection: take what the hard limit allows, and keep half of it
    // for connections unless told otherwise.
    let open_files = crate::sys::raise_open_file_limit().unwrap_or(1024);
    let limits = listener::ConnectionLimits {
        max_connections: config
            .max_connections
            .unwrap_or_else(|| (open_files / 2).clamp(16, 4096) as usize),
        header_timeout: config.header_timeout,
    };
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServerError::Serve)?;
        let state: Shared = Arc::new(AppState {
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            tools: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            sandboxes: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            next_run: AtomicUsize::new(0),
            metrics: Metrics::default(),
            responses: response::ResponseBudget::new(response::ResponseLimits {
                max_response_bytes: config.max_response_bytes,
                response_memory: config.response_memory,
            }),
            config,
        });
        let expiry = tokio::spawn(expire_idle(Arc::clone(&state)));
        // The warm pool starts filling before the first request.
        if state.config.pool > 0
            && let Err(e) = state.tool(BackendKind::Native).await
        {
            return Err(ServerError::Pool(e.message));
        }
        ready(addr);
        let on_signal = {
            let state = Arc::clone(&state);
            async move {
                shutdown_signal().await;
                // Stop what runs: its clients get a `Cancelled` result.
                for cancel in lock(&state.running).values() {
                    cancel.cancel();
                }
            }
        };
        listener::serve(listener, router(Arc::clone(&state)), limits, on_signal).await;
        expiry.abort();
        let sandboxes: Vec<Arc<LiveSandbox>> =
            lock(&state.sandboxes).drain().map(|(_, s)| s).collect();
        let tools: Vec<Arc<OnceCell<CodeExecutionTool>>> =
            lock(&state.tools).drain().map(|(_, t)| t).collect();
        // Removing sandboxes and dropping backends (a docker engine owns a runtime) block.
        let _ = tokio::task::spawn_blocking(move || {
            sandboxes.iter().for_each(|s| s.executor.cleanup());
            drop(sandboxes);
            drop(tools);
        })
        .await;
        Ok(())
    })
}
