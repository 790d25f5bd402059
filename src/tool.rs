//! The public facade, in the names users of the original Python tool know: `CodeExecutionTool`
//! (a backend with limits: `execute`, `execute_with_monitoring`, `update_limits`) and
//! `CodeExecutor` (a plain executor: `validate_syntax`, `execute(code, timeout)`).
//! Every execution passes here: size cap, then syntax validation, then the backend.
//! Runs in the host process.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use crate::backend::docker::{DEFAULT_IMAGE, DockerBackend, DockerError, DockerSandbox};
use crate::backend::helper::{HelperBinary, RunError};
use crate::backend::native::persistent::NativeSandbox;
use crate::backend::native::pool::WarmPool;
use crate::backend::native::{NativeBackend, NativeError, ZygoteInfo, ZygoteMode};
use crate::backend::none::NoneBackend;
use crate::backend::{Backend, BackendKind, Cancel, Enforced, ExecutionRequest, SandboxUsage};
use crate::interpreter::{Interpreter, InterpreterError};
use crate::limits::{CpuFraction, DiskMb, LimitError, Limits, MemoryMb, Timeout};
use crate::lock::lock;
use crate::result::ExecutionResult;
use crate::syntax::{self, PythonVersion, SyntaxCheck, SyntaxProblem};

/// Default interval between resource samples of a monitored execution.
pub const DEFAULT_MONITOR_INTERVAL: Duration = Duration::from_millis(100);

/// Why a tool could not be built, or a persistent sandbox not made or changed.
#[derive(Debug, Error)]
pub enum ToolError {
    #[error(transparent)]
    Interpreter(#[from] InterpreterError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A builder option that does not fit the others, by name.
    #[error("{option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },
    #[error("{0}")]
    HelperNotFound(String),
    #[error("the native sandbox cannot run here: {0}")]
    Native(#[from] NativeError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error("persistent sandboxes need the native or docker backend; this tool uses {0}")]
    NoPersistentSandboxes(BackendKind),
    #[error("image: the image name is empty")]
    EmptyImage,
    #[error("the sandbox was cleaned up; create a new one")]
    CleanedUp,
}

/// A request refused before anything ran.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExecuteError {
    #[error("code is {size} bytes, over the limit of {max} bytes (max_code_bytes)")]
    CodeTooLarge { size: usize, max: usize },
}

/// How one execution runs, besides its code: every original entry point is this with some
/// fields set.
#[derive(Debug, Clone, Default)]
pub struct RunOptions<'a> {
    /// Bytes for the code's stdin; `None` gives it an empty stdin.
    pub stdin: Option<&'a [u8]>,
    /// Sample CPU and memory at this interval into the result's `monitoring`.
    pub monitor: Option<Duration>,
    /// Stops the run (result `Cancelled`) when set.
    pub cancel: Option<Cancel>,
}

/// The interpreter a builder was given.
#[derive(Debug, Clone)]
enum PythonChoice {
    Path(PathBuf),
    Resolved(Interpreter),
}

/// Builds a [`CodeExecutionTool`]; every setter's value is validated in [`ToolBuilder::build`].
#[derive(Debug, Clone)]
pub struct ToolBuilder {
    backend: BackendKind,
    limits: Limits,
    memory_limit_mb: Option<u64>,
    disk_limit_mb: Option<u64>,
    cpu_limit: Option<f64>,
    timeout: Option<Duration>,
    python: Option<PythonChoice>,
    target_version: Option<PythonVersion>,
    supervisor: Option<PathBuf>,
    monitor_interval: Duration,
    strict_limits: bool,
    image: Option<String>,
    warm_pool: usize,
    preload: Vec<String>,
    zygote: Option<ZygoteMode>,
    import_work_dir: bool,
    helpers_forked_here: bool,
}

impl ToolBuilder {
    /// Keeps `size` native sandboxes started ahead (interpreter up, `preload` imported,
    /// waiting for code); each serves one execution whose memory limit is at most this
    /// tool's and that is not monitored, and is then destroyed. Needs cgroups.
    pub fn warm_pool(mut self, size: usize, preload: Vec<String>) -> Self {
        self.warm_pool = size;
        self.preload = preload;
        self
    }

    /// How native runs start their interpreter (default [`ZygoteMode::Auto`]: forked from a
    /// zygote when the host allows one). Only for the native backend.
    pub fn zygote(mut self, mode: ZygoteMode) -> Self {
        self.zygote = Some(mode);
        self
    }

    /// The container image of the docker backend (default `python:3.11-slim`).
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Refuse to run (a `SandboxError` result) when any limit would not be enforced for the
    /// whole run on this host.
    pub fn strict_limits(mut self, strict: bool) -> Self {
        self.strict_limits = strict;
        self
    }

    /// Puts the run's work directory first on `sys.path` (as `python -c` puts the current
    /// directory), so that modules the code writes there import. The `none` backend only:
    /// its interpreter starts isolated (`-I`) and this is off unless asked; native and docker
    /// always do it (their work directory is the sandbox's own).
    pub fn import_work_dir(mut self, import: bool) -> Self {
        self.import_work_dir = import;
        self
    }

    /// For a program that is its own helper binary (it calls
    /// [`run_if_requested`](crate::run_if_requested) first thing in `main`, as `code-exec`
    /// does): a cold run's supervisor or sandbox helper runs in a fork of this process
    /// instead of an exec of the binary, sparing the exec and the binary's start-up. Only
    /// while the process is single-threaded (checked at each run; otherwise the binary is
    /// exec'd as usual), so it pays off for a small one-shot program like the CLI.
    pub fn helpers_forked_here(mut self, fork: bool) -> Self {
        self.helpers_forked_here = fork;
        self
    }

    pub fn backend(mut self, backend: BackendKind) -> Self {
        self.backend = backend;
        self
    }
    /// All limits at once (already valid).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    pub fn memory_limit_mb(mut self, mb: u64) -> Self {
        self.memory_limit_mb = Some(mb);
        self
    }
    /// Scratch space in MB: each of `/work`, `/tmp` and `/dev/shm`, and every file
    /// (default: half the memory limit).
    pub fn disk_limit_mb(mut self, mb: u64) -> Self {
        self.disk_limit_mb = Some(mb);
        self
    }
    pub fn cpu_limit(mut self, cpu: f64) -> Self {
        self.cpu_limit = Some(cpu);
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// The interpreter to run (default: the first real `python3` on `PATH`). Not for docker,
    /// which runs the image's.
    pub fn python(mut self, path: impl Into<PathBuf>) -> Self {
        self.python = Some(PythonChoice::Path(path.into()));
        self
    }
    /// The same, resolved already ([`Interpreter::at`]): a server checks it once at start.
    pub fn interpreter(mut self, interpreter: Interpreter) -> Self {
        self.python = Some(PythonChoice::Resolved(interpreter));
        self
    }
    /// The Python version syntax is checked against (default: the interpreter's).
    pub fn target_version(mut self, version: PythonVersion) -> Self {
        self.target_version = Some(version);
        self
    }
    /// The helper binary (default: [`HelperBinary::locate`]).
    pub fn supervisor(mut self, path: impl Into<PathBuf>) -> Self {
        self.supervisor = Some(path.into());
        self
    }
    /// The interval between resource samples of a monitored execution (at least 1 ms).
    pub fn monitor_interval(mut self, interval: Duration) -> Self {
        self.monitor_interval = interval;
        self
    }

    /// Validates every option, together, before anything is reaped or started.
    fn validate(&self) -> Result<Limits, ToolError> {
        let mut limits = self.limits;
        if let Some(mb) = self.memory_limit_mb {
            limits.memory_mb = MemoryMb::new(mb)?;
        }
        if let Some(mb) = self.disk_limit_mb {
            limits.disk_mb = Some(DiskMb::new(mb)?);
        }
        if let Some(cpu) = self.cpu_limit {
            limits.cpu = CpuFraction::new(cpu)?;
        }
        if let Some(timeout) = self.timeout {
            limits.timeout = Timeout::new(timeout)?;
        }
        if self.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
            return Err(ToolError::EmptyImage);
        }
        let invalid =
            |option: &'static str, reason: String| Err(ToolError::InvalidOption { option, reason });
        if self.monitor_interval < Duration::from_millis(1) {
            return invalid(
                "monitor_interval",
                format!(
                    "{:?} is below the smallest interval, 1 ms",
                    self.monitor_interval
                ),
            );
        }
        let backend = self.backend;
        if self.warm_pool > 0 && backend != BackendKind::Native {
            return invalid(
                "warm_pool",
                format!("pre-started sandboxes are native ones; this tool uses {backend}"),
            );
        }
        if !self.preload.is_empty() && self.warm_pool == 0 {
            return invalid(
                "preload",
                "modules are imported ahead only by a warm pool's sandboxes (warm_pool is 0)"
                    .into(),
            );
        }
        if let Some(bad) = self.preload.iter().find(|m| !is_module_name(m)) {
            return invalid(
                "preload",
                format!("{bad:?} is not a module name (dotted Python identifiers)"),
            );
        }
        if self.zygote.is_some() && backend != BackendKind::Native {
            return invalid(
                "zygote",
                format!("only native runs fork from a zygote; this tool uses {backend}"),
            );
        }
        if self.import_work_dir && backend != BackendKind::None {
            return invalid(
                "import_work_dir",
                format!(
                    "only the none backend keeps its work directory off sys.path; {backend} always puts it first"
                ),
            );
        }
        if self.python.is_some() && backend == BackendKind::Docker {
            return invalid(
                "python",
                "the docker backend runs the image's interpreter; choose it with image".into(),
            );
        }
        Ok(limits)
    }

    pub fn build(self) -> Result<CodeExecutionTool, ToolError> {
        let limits = self.validate()?;
        if self.backend == BackendKind::Docker {
            return self.build_docker(limits);
        }
        let (interpreter, helper) = self.interpreter_and_helper()?;
        let target = self.target_version.unwrap_or(interpreter.version());
        let backend = match self.backend {
            BackendKind::Native => self.build_native(limits, interpreter, helper)?,
            _ => ToolBackend::None(Arc::new(NoneBackend::new(
                interpreter,
                helper,
                self.import_work_dir,
            ))),
        };
        Ok(CodeExecutionTool {
            backend,
            limits,
            target,
            monitor_interval: self.monitor_interval,
            strict_limits: self.strict_limits,
        })
    }

    fn interpreter_and_helper(&self) -> Result<(Interpreter, HelperBinary), ToolError> {
        let interpreter = match &self.python {
            Some(PythonChoice::Path(path)) => Interpreter::at(path)?,
            Some(PythonChoice::Resolved(interpreter)) => interpreter.clone(),
            None => Interpreter::discover()?,
        };
        let mut helper = match &self.supervisor {
            Some(path) => HelperBinary::at(path),
            None => HelperBinary::locate().map_err(ToolError::HelperNotFound)?,
        };
        if self.helpers_forked_here {
            helper = helper.forking_here(crate::process::run_hidden_mode);
        }
        Ok((interpreter, helper))
    }

    /// The native backend, its zygote and its pool.
    fn build_native(
        &self,
        limits: Limits,
        interpreter: Interpreter,
        helper: HelperBinary,
    ) -> Result<ToolBackend, ToolError> {
        let backend = Arc::new(NativeBackend::new(interpreter, helper)?);
        backend.start_zygote(self.zygote.unwrap_or_default())?;
        let pool = match self.warm_pool {
            0 => None,
            size => Some(Arc::new(WarmPool::start(
                Arc::clone(&backend),
                size,
                limits,
                self.preload.clone(),
            )?)),
        };
        Ok(ToolBackend::Native { backend, pool })
    }

    /// The docker backend: the engine and image are checked now. Syntax is checked against
    /// the given version, else the image's (`PYTHON_VERSION`), else 3.11.
    fn build_docker(self, limits: Limits) -> Result<CodeExecutionTool, ToolError> {
        let image = self.image.as_deref().unwrap_or(DEFAULT_IMAGE);
        let docker = Arc::new(DockerBackend::connect(image)?);
        let target = match self.target_version {
            Some(version) => version,
            None => docker
                .python_version()
                .and_then(|v| PythonVersion::parse(&v))
                .unwrap_or(PythonVersion {
                    major: 3,
                    minor: 11,
                }),
        };
        Ok(CodeExecutionTool {
            backend: ToolBackend::Docker(docker),
            limits,
            target,
            monitor_interval: self.monitor_interval,
            strict_limits: self.strict_limits,
        })
    }
}

/// A dotted module name: identifiers (letters, digits, `_`, not starting with a digit)
/// joined by dots.
fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
}

/// The backend a tool holds, once, with what only that kind has.
#[derive(Clone)]
enum ToolBackend {
    None(Arc<NoneBackend>),
    Native {
        backend: Arc<NativeBackend>,
        /// Pre-started sandboxes, when asked for.
        pool: Option<Arc<WarmPool>>,
    },
    Docker(Arc<DockerBackend>),
}

impl ToolBackend {
    fn backend(&self) -> &dyn Backend {
        match self {
            ToolBackend::None(backend) => &**backend,
            ToolBackend::Native { backend, .. } => &**backend,
            ToolBackend::Docker(backend) => &**backend,
        }
    }
}

/// Runs Python code through one backend under limits, returning structured results.
#[derive(Clone)]
pub struct CodeExecutionTool {
    backend: ToolBackend,
    limits: Limits,
    target: PythonVersion,
    monitor_interval: Duration,
    strict_limits: bool,
}

fn describe(how: Enforced) -> &'static str {
    match how {
        Enforced::PerProcess => "only per process",
        Enforced::NotEnforced => "not enforced",
        Enforced::Cgroup => "cgroup",
        Enforced::Host => "host",
    }
}

impl std::fmt::Debug for CodeExecutionTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeExecutionTool")
            .field("backend", &self.backend())
            .field("limits", &self.limits)
            .field("target", &self.target)
            .finish()
    }
}

/// The original entry points, each one call of `run_with` (shared by the tool and its
/// persistent sandboxes, which run code the same ways).
macro_rules! original_entry_points {
    () => {
        /// Validates and runs `code` with an empty stdin.
        pub fn execute(&self, code: &str) -> Result<ExecutionResult, ExecuteError> {
            self.run_with(code.as_bytes(), RunOptions::default())
        }

        /// The general form of the original API: code as bytes, optional stdin, optional
        /// monitoring interval.
        pub fn run(
            &self,
            code: &[u8],
            stdin: Option<&[u8]>,
            monitor: Option<Duration>,
        ) -> Result<ExecutionResult, ExecuteError> {
            let options = RunOptions {
                stdin,
                monitor,
                cancel: None,
            };
            self.run_with(code, options)
        }

        /// [`run`](Self::run) that stops (result `Cancelled`) when `cancel` is set.
        pub fn run_cancellable(
            &self,
            code: &[u8],
            stdin: Option<&[u8]>,
            monitor: Option<Duration>,
            cancel: Option<Cancel>,
        ) -> Result<ExecutionResult, ExecuteError> {
            let options = RunOptions {
                stdin,
                monitor,
                cancel,
            };
            self.run_with(code, options)
        }
    };
}

impl CodeExecutionTool {
    /// A tool for `backend` with the default limits (128 MB, 0.5 CPU, 30 s).
    pub fn new(backend: BackendKind) -> Result<CodeExecutionTool, ToolError> {
        Self::builder().backend(backend).build()
    }

    /// A builder; the backend defaults to the native sandbox.
    pub fn builder() -> ToolBuilder {
        ToolBuilder {
            backend: BackendKind::Native,
            limits: Limits::default(),
            memory_limit_mb: None,
            disk_limit_mb: None,
            cpu_limit: None,
            timeout: None,
            python: None,
            target_version: None,
            supervisor: None,
            monitor_interval: DEFAULT_MONITOR_INTERVAL,
            strict_limits: false,
            image: None,
            warm_pool: 0,
            preload: Vec::new(),
            zygote: None,
            import_work_dir: false,
            helpers_forked_here: false,
        }
    }

    pub fn backend(&self) -> BackendKind {
        self.backend.backend().kind()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether native runs fork from a zygote (and which), or why not (`"off"`, or what kept
    /// it from starting). An error for other backends.
    pub fn zygote_status(&self) -> Result<ZygoteInfo, String> {
        match &self.backend {
            ToolBackend::Native { backend, .. } => backend.zygote_status(),
            _ => Err("not the native backend".into()),
        }
    }

    /// Pre-started sandboxes ready now (0 without a warm pool).
    pub fn pool_ready(&self) -> usize {
        match &self.backend {
            ToolBackend::Native {
                pool: Some(pool), ..
            } => pool.ready(),
            _ => 0,
        }
    }

    pub fn target_version(&self) -> PythonVersion {
        self.target
    }

    original_entry_points!();

    /// Like [`execute`](Self::execute), also sampling CPU and memory over time into
    /// `monitoring`.
    pub fn execute_with_monitoring(&self, code: &str) -> Result<ExecutionResult, ExecuteError> {
        let options = RunOptions {
            monitor: Some(self.monitor_interval),
            ..RunOptions::default()
        };
        self.run_with(code.as_bytes(), options)
    }

    /// Every execution of this tool: size cap, syntax, then a pre-started sandbox (when one
    /// accepts the request) or the backend.
    pub fn run_with(
        &self,
        code: &[u8],
        options: RunOptions<'_>,
    ) -> Result<ExecutionResult, ExecuteError> {
        if let Err(rejected) = self.admit(code)? {
            return Ok(rejected);
        }
        let request = ExecutionRequest {
            code,
            stdin: options.stdin,
            limits: self.limits,
            monitor: options.monitor,
            cancel: options.cancel,
        };
        let prepared = match &self.backend {
            ToolBackend::Native {
                pool: Some(pool), ..
            } => pool.take(&request),
            _ => None,
        };
        Ok(self.finish(match prepared {
            Some(run) => run.execute(&request),
            None => self.backend.backend().execute(&request),
        }))
    }

    /// Changes the memory and CPU limits of later executions. Both are validated first;
    /// on error nothing changes.
    pub fn update_limits(&mut self, memory_mb: u64, cpu: f64) -> Result<(), LimitError> {
        let memory = MemoryMb::new(memory_mb)?;
        let cpu = CpuFraction::new(cpu)?;
        self.limits.memory_mb = memory;
        self.limits.cpu = cpu;
        Ok(())
    }

    /// Replaces all limits of later executions.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Parse-only syntax check against this tool's target version.
    pub fn validate_syntax(&self, code: &str) -> Result<(), SyntaxProblem> {
        syntax::validate(code.as_bytes(), self.target)
    }

    /// Completes a backend's result with what the tool knows about it.
    fn finish(&self, mut result: ExecutionResult) -> ExecutionResult {
        result.limits_enforced = Some(self.backend.backend().enforcement());
        result
    }

    /// Size cap, then syntax: the checks every execution passes before any backend.
    fn admit(&self, code: &[u8]) -> Result<Result<(), ExecutionResult>, ExecuteError> {
        let max = self.limits.max_code_bytes.as_usize();
        if code.len() > max {
            return Err(ExecuteError::CodeTooLarge {
                size: code.len(),
                max,
            });
        }
        let kind = self.backend();
        if self.strict_limits {
            let weak = self.backend.backend().enforcement().weak();
            if !weak.is_empty() {
                let list: Vec<String> = weak
                    .iter()
                    .map(|(field, how)| format!("{field} ({})", describe(*how)))
                    .collect();
                return Ok(Err(self.finish(ExecutionResult::sandbox_error(
                    kind.as_str(),
                    format!(
                        "--strict-limits: this host cannot enforce every limit for the whole run: {}; see `code-exec doctor`",
                        list.join(", ")
                    ),
                ))));
            }
        }
        // Refused before it ran, the result still says how the limits would have been held.
        Ok(syntax::validate(code, self.target)
            .map_err(|problem| self.finish(ExecutionResult::syntax_error(kind.as_str(), &problem))))
    }

    /// Creates a persistent sandbox with this tool's limits (the seed's `SandboxExecutor`):
    /// many executions, files in `/work` kept between them, processes not.
    pub fn create_sandbox(&self) -> Result<SandboxExecutor, ToolError> {
        // The scratch space is fixed when the sandbox is made: its /work keeps that size, and
        // a later change of the memory limit does not move the other filesystems' either.
        let limits = Limits {
            disk_mb: Some(self.limits.disk()),
            ..self.limits
        };
        let sandbox = match &self.backend {
            ToolBackend::Native { backend, .. } => {
                Persistent::Native(backend.create_sandbox(limits)?)
            }
            ToolBackend::Docker(docker) => Persistent::Docker(docker.create_sandbox(limits)?),
            ToolBackend::None(_) => return Err(ToolError::NoPersistentSandboxes(self.backend())),
        };
        Ok(SandboxExecutor {
            tool: self.clone(),
            sandbox,
            running: Mutex::new(()),
            limits: Mutex::new(limits),
        })
    }
}

/// The sandbox behind a [`SandboxExecutor`].
#[derive(Debug)]
enum Persistent {
    Native(NativeSandbox),
    Docker(DockerSandbox),
}

impl Persistent {
    fn execute(&self, request: &ExecutionRequest<'_>) -> ExecutionResult {
        match self {
            Persistent::Native(s) => s.execute(request),
            Persistent::Docker(s) => s.execute(request),
        }
    }

    fn update_limits(&self, limits: &Limits) -> Result<(), ToolError> {
        match self {
            Persistent::Native(s) => Ok(s.update_limits(limits)?),
            Persistent::Docker(s) => Ok(s.update_limits(limits)?),
        }
    }

    fn limits_apply_live(&self) -> bool {
        match self {
            Persistent::Native(s) => s.limits_apply_live(),
            Persistent::Docker(_) => true,
        }
    }

    fn usage(&self) -> SandboxUsage {
        match self {
            Persistent::Native(s) => s.usage(),
            Persistent::Docker(s) => s.usage(),
        }
    }

    fn cleanup(&self) {
        match self {
            Persistent::Native(s) => s.cleanup(),
            Persistent::Docker(s) => s.cleanup(),
        }
    }

    fn exists(&self) -> bool {
        match self {
            Persistent::Native(s) => s.exists(),
            Persistent::Docker(s) => s.exists(),
        }
    }
}

/// A persistent sandbox: run many executions in it, read its usage, change its limits live,
/// clean it up (explicitly or on drop).
#[derive(Debug)]
pub struct SandboxExecutor {
    tool: CodeExecutionTool,
    sandbox: Persistent,
    /// Executions run one at a time; limits and usage do not wait for them.
    running: Mutex<()>,
    limits: Mutex<Limits>,
}

impl SandboxExecutor {
    /// Validates and runs `code` in the sandbox (the seed's name).
    pub fn execute_in_container(&self, code: &str) -> Result<ExecutionResult, ExecuteError> {
        self.run_with(code.as_bytes(), RunOptions::default())
    }

    original_entry_points!();

    /// Every execution in this sandbox: size cap and syntax as the tool's, then one at a time
    /// under the sandbox's current limits.
    pub fn run_with(
        &self,
        code: &[u8],
        options: RunOptions<'_>,
    ) -> Result<ExecutionResult, ExecuteError> {
        if let Err(rejected) = self.tool.admit(code)? {
            return Ok(rejected);
        }
        let _one_at_a_time = lock(&self.running);
        let limits = *lock(&self.limits);
        let request = ExecutionRequest {
            code,
            stdin: options.stdin,
            limits,
            monitor: options.monitor,
            cancel: options.cancel,
        };
        Ok(self.tool.finish(self.sandbox.execute(&request)))
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        *lock(&self.limits)
    }

    /// Changes memory and CPU limits, live: a running execution is held to them at once.
    /// Both values are validated first; on error nothing changes.
    pub fn update_limits(&self, memory_mb: u64, cpu: f64) -> Result<Limits, ToolError> {
        let memory = MemoryMb::new(memory_mb)?;
        let cpu = CpuFraction::new(cpu)?;
        self.apply(|l| {
            l.memory_mb = memory;
            l.cpu = cpu;
        })
    }

    /// Changes any of memory, CPU and pids at once, live; `None` keeps a value. Nothing
    /// changes if the sandbox refuses the new set.
    pub fn set_live_limits(
        &self,
        memory_mb: Option<MemoryMb>,
        cpu: Option<CpuFraction>,
        pids: Option<crate::limits::Pids>,
    ) -> Result<Limits, ToolError> {
        self.apply(|l| {
            if let Some(memory) = memory_mb {
                l.memory_mb = memory;
            }
            if let Some(cpu) = cpu {
                l.cpu = cpu;
            }
            if let Some(pids) = pids {
                l.pids = pids;
            }
        })
    }

    /// Changes the pids limit, live.
    pub fn update_pids(&self, pids: u32) -> Result<Limits, ToolError> {
        let pids = crate::limits::Pids::new(u64::from(pids))?;
        self.apply(|l| l.pids = pids)
    }

    fn apply(&self, change: impl FnOnce(&mut Limits)) -> Result<Limits, ToolError> {
        let mut limits = lock(&self.limits);
        let mut next = *limits;
        change(&mut next);
        self.sandbox.update_limits(&next)?;
        *limits = next;
        Ok(next)
    }

    /// Whether limit changes reach a running execution (with a cgroup) or only the next one.
    pub fn limits_apply_live(&self) -> bool {
        self.sandbox.limits_apply_live()
    }

    pub fn get_resource_usage(&self) -> SandboxUsage {
        self.sandbox.usage()
    }

    /// Removes the sandbox's processes, cgroup and files. Also done on drop.
    pub fn cleanup(&self) {
        self.sandbox.cleanup();
    }

    /// The container's id, for a docker sandbox.
    pub fn container_id(&self) -> Option<&str> {
        match &self.sandbox {
            Persistent::Docker(s) => Some(s.id()),
            Persistent::Native(_) => None,
        }
    }

    /// The seed's `create_container`: a [`SandboxExecutor`] is created with its container,
    /// so this only checks that it still exists.
    pub fn create_container(&self) -> Result<(), ToolError> {
        if self.sandbox.exists() {
            Ok(())
        } else {
            Err(ToolError::CleanedUp)
        }
    }

    /// Whether any of the sandbox's host state still exists.
    pub fn exists(&self) -> bool {
        self.sandbox.exists()
    }
}

/// The plain executor of the original tool: syntax check and a subprocess run with a timeout
/// (the `none` backend, trusted code only).
#[derive(Debug, Clone)]
pub struct CodeExecutor {
    tool: CodeExecutionTool,
}

impl CodeExecutor {
    pub fn new() -> Result<CodeExecutor, ToolError> {
        Ok(CodeExecutor {
            tool: CodeExecutionTool::new(BackendKind::None)?,
        })
    }

    /// Wraps an existing tool (any backend).
    pub fn with_tool(tool: CodeExecutionTool) -> CodeExecutor {
        CodeExecutor { tool }
    }

    /// `{"valid", "error", "line", "column"}` for `code`.
    pub fn validate_syntax(&self, code: &str) -> SyntaxCheck {
        self.tool.validate_syntax(code).into()
    }

    /// Runs `code` with a wall-clock `timeout` (validated like every limit).
    pub fn execute(
        &self,
        code: &str,
        timeout: Duration,
    ) -> Result<ExecutionResult, CodeExecutorError> {
        let mut tool = self.tool.clone();
        let mut limits = *tool.limits();
        limits.timeout = Timeout::new(timeout)?;
        tool.set_limits(limits);
        Ok(tool.execute(code)?)
    }
}

/// Errors of [`CodeExecutor::execute`]: a bad timeout or a refused request.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CodeExecutorError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
}
