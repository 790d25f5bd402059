//! The `none` backend: the code runs as a plain subprocess of the real interpreter, for trusted
//! code. No isolation; what it does enforce comes from outside the code: the wall-clock timeout
//! and output caps, a kill of every process the code started (the supervisor is their
//! subreaper), a per-process memory cap (`RLIMIT_DATA`), no core files, a clean environment, a
//! private temporary work directory, and only fds 0–2 (plus the runner's close-on-exec report
//! channel) in the interpreter.
//! Runs in the host process (the supervisor's own code is `crate::process::supervisor`).

use super::helper::{HelperBinary, Launch, RunError, run_helper};
use super::runner_cache;
use super::workspace::{self, Workspace};
use super::{Backend, BackendKind, Enforced, Enforcement, ExecutionRequest};
use crate::interpreter::Interpreter;
use crate::protocol::{HiddenMode, SupervisorConfig, fds};
use crate::result::ExecutionResult;
use crate::runner::{Invocation, RunnerArgs, code_environment};

/// Runs code as a plain subprocess of `interpreter`, through `supervisor`.
#[derive(Debug, Clone)]
pub struct NoneBackend {
    interpreter: Interpreter,
    supervisor: HelperBinary,
    /// Whether the run's work directory goes first on `sys.path` (off unless asked).
    import_work_dir: bool,
}

impl NoneBackend {
    pub fn new(
        interpreter: Interpreter,
        supervisor: HelperBinary,
        import_work_dir: bool,
    ) -> NoneBackend {
        workspace::reap_stale();
        NoneBackend {
            interpreter,
            supervisor,
            import_work_dir,
        }
    }

    pub fn interpreter(&self) -> &Interpreter {
        &self.interpreter
    }
}

impl Backend for NoneBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::None
    }

    fn enforcement(&self) -> Enforcement {
        Enforcement {
            memory_mb: Enforced::PerProcess,
            cpu: Enforced::NotEnforced,
            pids: Enforced::NotEnforced,
            timeout: Enforced::Host,
            max_output_bytes: Enforced::Host,
        }
    }

    fn execute(&self, request: &ExecutionRequest<'_>) -> ExecutionResult {
        run(self, request).unwrap_or_else(|err| {
            ExecutionResult::sandbox_error(BackendKind::None.as_str(), err.to_string())
        })
    }
}

fn run(backend: &NoneBackend, request: &ExecutionRequest<'_>) -> Result<ExecutionResult, RunError> {
    let (_workspace, code_path, work_dir, stdin) =
        Workspace::for_request(request.code, request.stdin, "work").map_err(RunError::Workspace)?;

    let work = work_dir.to_string_lossy();
    let config = SupervisorConfig {
        interpreter: Invocation::new(
            backend.interpreter.program(),
            RunnerArgs {
                report_fd: fds::REPORT,
                code_path: code_path.to_string_lossy().into_owned(),
                // Off unless asked, as for an interpreter started with -I; when asked, the
                // run's own fresh directory (nothing of the host's is in it).
                import_dir: backend.import_work_dir.then(|| work.clone().into_owned()),
                pooled: None,
            },
            code_environment(&work, &work),
        )
        .with_compiled_runner(runner_cache::compiled_runner(&backend.interpreter)),
        cwd: work_dir.clone(),
        memory_bytes: Some(request.limits.memory_mb.bytes()),
        sample_interval_ms: request.monitor.map(|d| d.as_millis().max(1) as u64),
    };
    let config_json = serde_json::to_string(&config).map_err(RunError::Config)?;
    let launch = Launch::Exec {
        helper: &backend.supervisor,
        mode: HiddenMode::Supervise,
    };
    run_helper(launch, &config_json, stdin, request, BackendKind::None)
}
