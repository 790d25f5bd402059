//! The `docker` backend: each execution in a locked-down container of the Docker Engine
//! (network none, read-only root, sized tmpfs, caps dropped, no-new-privileges, non-root
//! user, init, log driver off, memory = memory+swap, nano-CPUs, pids). One-shot runs create,
//! run and remove a container; persistent sandboxes keep one and run many executions in it.
//! The code reaches the container on the stdin of an exec, runs under our wrapper, and the
//! verdict is decided as for the other backends (`backend::verdict`). Runs in the host process.

mod engine;
mod owner;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::{ContainerSpec, ExecOutcome, ExecSpec, KillMode, Stop, UsageSource};
pub use engine::{DockerError, Engine, LABEL, OWNER_LABEL};

use super::runs::SandboxRuns;
use super::verdict::{self, Exit, StopReason, Stream};
use super::{Backend, BackendKind, Enforced, Enforcement, ExecutionRequest, SandboxUsage};
use crate::limits::Limits;
use crate::lock::lock;
use crate::protocol::report::RunnerReport;
use crate::result::{ErrorType, ExecutionResult};
use crate::runner::RUNNER;

/// The image used when none is given (the seed's default).
pub const DEFAULT_IMAGE: &str = "python:3.11-slim";

/// The in-container wrapper (see its header).
const WRAPPER: &str = include_str!("wrapper.py");

/// The exec's argv: the wrapper, then the runner it hands to the code's interpreter and the
/// work directory it puts first on the code's `sys.path`.
fn wrapper_argv() -> Vec<String> {
    vec![
        "python3".into(),
        "-I".into(),
        "-c".into(),
        WRAPPER.into(),
        RUNNER.into(),
        engine::WORK_DIR.into(),
    ]
}

/// The docker backend: an engine connection and the image executions run in.
pub struct DockerBackend {
    engine: Arc<Engine>,
    image: String,
    /// The image's `PYTHON_VERSION`, read when connecting.
    python_version: Option<String>,
}

impl std::fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerBackend")
            .field("image", &self.image)
            .field("engine", &self.engine)
            .finish()
    }
}

impl DockerBackend {
    /// Connects to the engine, checks that `image` is present, and removes containers that
    /// crashed callers of ours left behind.
    pub fn connect(image: &str) -> Result<DockerBackend, DockerError> {
        let engine = Engine::connect()?;
        let python_version = engine.image_python_version(image)?;
        engine.reap_orphans();
        Ok(DockerBackend {
            python_version,
            engine: Arc::new(engine),
            image: image.to_owned(),
        })
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The Python version the image declares (`PYTHON_VERSION`), as `major.minor`.
    pub fn python_version(&self) -> Option<String> {
        let mut parts = self.python_version.as_deref()?.split('.');
        Some(format!("{}.{}", parts.next()?, parts.next()?))
    }

    /// Creates a persistent container with `limits`.
    pub fn create_sandbox(&self, limits: Limits) -> Result<DockerSandbox, DockerError> {
        let id = self.engine.start_container(&ContainerSpec {
            image: &self.image,
            limits,
        })?;
        let usage = self.engine.usage_source(&id);
        Ok(DockerSandbox {
            engine: Arc::clone(&self.engine),
            id,
            usage,
            state: Mutex::new(SandboxState::default()),
            runs: SandboxRuns::default(),
        })
    }
}

impl Backend for DockerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn execute(&self, request: &ExecutionRequest<'_>) -> ExecutionResult {
        let id = match self.engine.start_container(&ContainerSpec {
            image: &self.image,
            limits: request.limits,
        }) {
            Ok(id) => id,
            Err(e) => return ExecutionResult::sandbox_error("docker", e.to_string()),
        };
        let result = run_in(&self.engine, &id, request, KillMode::Container, None, 0);
        let result = match result {
            Ok((mut result, _)) => {
                // A one-shot container's OOM state covers the whole run.
                if !result.success
                    && result.error_type != Some(ErrorType::MemoryLimit)
                    && result.signal.as_deref() == Some("SIGKILL")
                    && self.engine.oom_killed(&id)
                {
                    mark_memory_limit(&mut result, request);
                }
                result
            }
            Err(e) => ExecutionResult::sandbox_error("docker", e.to_string()),
        };
        if let Err(e) = self.engine.remove(&id) {
            return ExecutionResult::sandbox_error(
                "docker",
                format!("the run finished but its container could not be removed: {e}"),
            );
        }
        result
    }

    fn enforcement(&self) -> Enforcement {
        Enforcement {
            memory_mb: Enforced::Cgroup,
            cpu: Enforced::Cgroup,
            pids: Enforced::Cgroup,
            timeout: Enforced::Host,
            max_output_bytes: Enforced::Host,
        }
    }
}

/// What a persistent sandbox remembers between executions.
#[derive(Debug, Default)]
struct SandboxState {
    /// The container's OOM-kill count after the last execution.
    oom_total: i64,
    /// The last stats reading (for CPU percent between usage calls).
    last_usage: Option<engine::UsagePoint>,
    peak_memory_bytes: u64,
    removed: bool,
}

/// A persistent container: many executions, files in `/work` kept between them, processes
/// not. Removed on [`cleanup`](DockerSandbox::cleanup) or drop.
pub struct DockerSandbox {
    engine: Arc<Engine>,
    id: String,
    usage: UsageSource,
    state: Mutex<SandboxState>,
    /// What runs in it now; cleanup ends it first.
    runs: SandboxRuns,
}

impl std::fmt::Debug for DockerSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerSandbox")
            .field("id", &self.id)
            .finish()
    }
}

impl DockerSandbox {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs one execution in the container. A cleanup meanwhile cancels it.
    pub fn execute(&self, request: &ExecutionRequest<'_>) -> ExecutionResult {
        let cleaned_up = || {
            ExecutionResult::sandbox_error(
                "docker",
                "this sandbox was cleaned up; create a new one".into(),
            )
        };
        let Some((_entered, request)) = self.runs.enter(request) else {
            return cleaned_up();
        };
        if lock(&self.state).removed {
            return cleaned_up();
        }
        let baseline = lock(&self.state).oom_total;
        match run_in(
            &self.engine,
            &self.id,
            &request,
            KillMode::SandboxProcesses,
            Some(&self.usage),
            baseline,
        ) {
            Ok((result, oom_total)) => {
                let mut state = lock(&self.state);
                if let Some(total) = oom_total {
                    state.oom_total = total;
                }
                state.peak_memory_bytes = state
                    .peak_memory_bytes
                    .max((result.peak_memory_mb * 1024.0 * 1024.0) as u64);
                result
            }
            Err(e) => ExecutionResult::sandbox_error("docker", e.to_string()),
        }
    }

    /// Applies new limits to the running container (a running execution included).
    pub fn update_limits(&self, limits: &Limits) -> Result<(), DockerError> {
        self.engine.update(&self.id, limits)
    }

    /// Current usage. CPU percent is computed as `docker stats` does, over the time since the
    /// previous call if that was less than a second ago, else over the next 100 ms.
    pub fn usage(&self) -> SandboxUsage {
        let read = || self.engine.usage(&self.id, &self.usage).ok();
        let previous = lock(&self.state)
            .last_usage
            .filter(|p| p.at.elapsed() < Duration::from_secs(1));
        let previous = previous.or_else(|| {
            let first = read();
            std::thread::sleep(Duration::from_millis(100));
            first
        });
        let Some(now) = read() else {
            return SandboxUsage::default();
        };
        let mut state = lock(&self.state);
        state.last_usage = Some(now);
        state.peak_memory_bytes = state
            .peak_memory_bytes
            .max(now.memory_bytes)
            .max(now.max_memory_bytes.unwrap_or(0));
        SandboxUsage {
            cpu_percent: previous.map_or(0.0, |p| now.cpu_percent_since(&p)),
            memory_mb: mb(now.memory_bytes),
            peak_memory_mb: mb(state.peak_memory_bytes),
            cpu_time_ms: now.cpu_total_ns as f64 / 1e6,
            pids: now.pids,
        }
    }

    /// Ends a running execution (which reports `Cancelled`), then removes the container.
    /// Also done on drop.
    pub fn cleanup(&self) {
        self.runs.close();
        let mut state = lock(&self.state);
        if !state.removed && self.engine.remove(&self.id).is_ok() {
            state.removed = true;
        }
    }

    /// Whether the container still exists.
    pub fn exists(&self) -> bool {
        self.engine.exists(&self.id)
    }
}

impl Drop for DockerSandbox {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The wrapper's framed record.
#[derive(Debug, Clone, PartialEq, Default)]
struct Frame {
    exit: i32,
    signal: i32,
    oom: i64,
    cpu_ns: u64,
    maxrss_kb: u64,
    /// What the code's process said after dropping to the sandbox user: `ok`, `failed: …`,
    /// or nothing (killed before it got there).
    setup: Vec<u8>,
    /// The wrapper's process of the sandbox user killed every other one after the run.
    killed: bool,
    report: Vec<u8>,
}

/// Cuts the wrapper's record (the last framed one with this run's nonce) off `stderr`.
fn take_frame(stderr: &mut Vec<u8>, nonce: &str) -> Option<Frame> {
    let marker = format!("\x1eCODE-EXEC {nonce} ");
    let start = find_last(stderr, marker.as_bytes())?;
    let body = stderr[start + marker.len()..].strip_suffix(b"\x1e")?;
    let text = std::str::from_utf8(body).ok()?;
    let mut frame = Frame::default();
    for field in text.split(' ') {
        let (key, value) = field.split_once('=')?;
        match key {
            "exit" => frame.exit = value.parse().ok()?,
            "signal" => frame.signal = value.parse().ok()?,
            "oom" => frame.oom = value.parse().ok()?,
            "cpu_ns" => frame.cpu_ns = value.parse().ok()?,
            "maxrss_kb" => frame.maxrss_kb = value.parse().ok()?,
            "setup" => frame.setup = from_hex(value)?,
            "killed" => frame.killed = value == "1",
            "report" => frame.report = from_hex(value)?,
            _ => {}
        }
    }
    stderr.truncate(start);
    Some(frame)
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    (0..=haystack.len().checked_sub(needle.len())?)
        .rev()
        .find(|&i| haystack[i..].starts_with(needle))
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn mark_memory_limit(result: &mut ExecutionResult, request: &ExecutionRequest<'_>) {
    result.conclude(
        Some(ErrorType::MemoryLimit),
        Some(verdict::memory_limit_message(&request.limits)),
    );
}

/// Runs one execution in a started container and decides its verdict. Returns the result
/// and, when read, the container's OOM-kill count afterwards.
fn run_in(
    engine: &Engine,
    id: &str,
    request: &ExecutionRequest<'_>,
    kill: KillMode,
    usage: Option<&UsageSource>,
    oom_baseline: i64,
) -> Result<(ExecutionResult, Option<i64>), DockerError> {
    // A fresh random token framing the wrapper's record in stderr.
    let nonce = crate::token::random_hex(16)
        .map_err(|e| DockerError::Protocol(format!("cannot read /dev/urandom: {e}")))?;
    let cap = request.limits.max_output_bytes.as_usize();
    let spec = ExecSpec {
        code: request.code,
        stdin: request.stdin,
        timeout: request.limits.timeout.get(),
        output_cap: cap,
        monitor: request.monitor,
        kill,
        usage,
        cancel: request.cancel.as_ref(),
    };
    let mut outcome = engine.execute(id, &spec, &wrapper_argv(), &nonce)?;
    // The wrapper (root, its memory out of the code's reach) writes its frame last and exits
    // 0; a frame counts only then.
    let frame = take_frame(&mut outcome.stderr, &nonce).filter(|_| outcome.exit_code == Some(0));
    if let Some(failure) = frame
        .as_ref()
        .and_then(|f| f.setup.strip_prefix(b"failed: ".as_slice()))
    {
        return Err(DockerError::Protocol(format!(
            "the wrapper could not start the code as the sandbox user: {}",
            String::from_utf8_lossy(failure)
        )));
    }
    // Nothing of the code's uid outlives an execution of a persistent container (the next
    // execution's code is nobody else's to read): the wrapper's own kill, reported in a frame
    // the code cannot forge, or else this exec (which also learns of OOM kills).
    let wrapper_killed = frame.as_ref().is_some_and(|f| f.killed);
    if kill == KillMode::SandboxProcesses
        && !wrapper_killed
        && outcome.oom_total_after_kill.is_none()
    {
        outcome.oom_total_after_kill = engine.kill_sandbox_processes(id).ok();
    }
    let oom_total = outcome.oom_total_after_kill;
    Ok((assemble(outcome, frame, request, oom_baseline), oom_total))
}

/// Turns what the engine and the wrapper reported into the contract's result.
fn assemble(
    mut outcome: ExecOutcome,
    frame: Option<Frame>,
    request: &ExecutionRequest<'_>,
    oom_baseline: i64,
) -> ExecutionResult {
    let cap = request.limits.max_output_bytes.as_usize();
    let mut stop = outcome.stop.map(|s| match s {
        Stop::Timeout => StopReason::Timeout,
        Stop::Cancelled => StopReason::Cancelled,
        Stop::StdoutCap => StopReason::OutputLimit(Stream::Stdout),
        Stop::StderrCap => StopReason::OutputLimit(Stream::Stderr),
    });
    let mut stderr_truncated = false;
    if outcome.stderr.len() > cap {
        outcome.stderr.truncate(cap);
        stderr_truncated = true;
        stop.get_or_insert(StopReason::OutputLimit(Stream::Stderr));
    }
    let oom_after_kill = outcome
        .oom_total_after_kill
        .is_some_and(|n| n > oom_baseline);
    let exit = match &frame {
        Some(f) => Exit {
            code: (f.signal == 0 && f.exit >= 0).then_some(f.exit),
            signal: (f.signal > 0).then_some(f.signal),
            cpu_time_ms: f.cpu_ns as f64 / 1e6,
            peak_memory_bytes: (f.maxrss_kb * 1024).max(outcome.sampled_peak_bytes),
            memory_limit_hit: f.oom > 0 || oom_after_kill,
            duration: outcome.duration,
        },
        None => {
            // The exit status of the wrapper itself: 128+n when a signal ended it.
            let (code, signal) = match outcome.exit_code {
                Some(c) if (129..=159).contains(&c) => (None, Some(c as i32 - 128)),
                Some(c) => (Some(c as i32), None),
                None => (None, None),
            };
            let cpu_ns = match (outcome.cpu_ns_at_start, outcome.cpu_ns_at_stop) {
                (Some(start), Some(stop)) => stop.saturating_sub(start),
                _ => 0,
            };
            Exit {
                code,
                signal,
                cpu_time_ms: cpu_ns as f64 / 1e6,
                peak_memory_bytes: outcome.sampled_peak_bytes,
                memory_limit_hit: oom_after_kill,
                duration: outcome.duration,
            }
        }
    };
    let report = RunnerReport::parse(frame.as_ref().map_or(&[][..], |f| &f.report));
    let mut result = verdict::verdict(BackendKind::Docker, &exit, stop, &report, request);
    result.output = String::from_utf8_lossy(&outcome.stdout).into_owned();
    result.stderr = String::from_utf8_lossy(&outcome.stderr).into_owned();
    result.truncated = outcome.stdout_truncated || stderr_truncated;
    if request.monitor.is_some() {
        result.monitoring = Some(std::mem::take(&mut outcome.samples));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_the_frame_with_this_runs_nonce() {
        let mut stderr = b"user text\n\x1eCODE-EXEC fake exit=0 signal=0 oom=0 cpu_ns=1 maxrss_kb=1 report=\x1e\x1eCODE-EXEC abc exit=3 signal=0 oom=1 cpu_ns=2000000 maxrss_kb=10 killed=1 setup=6f6b report=6869\x1e".to_vec();
        let frame = take_frame(&mut stderr, "abc").unwrap();
        assert_eq!(frame.setup, b"ok");
        assert!(frame.killed);
        assert_eq!(frame.exit, 3);
        assert_eq!(frame.oom, 1);
        assert_eq!(frame.cpu_ns, 2_000_000);
        assert_eq!(frame.report, b"hi");
        assert!(stderr.starts_with(b"user text\n\x1eCODE-EXEC fake"));
        assert_eq!(take_frame(&mut b"no frame".to_vec(), "abc"), None);
        let mut cut = b"\x1eCODE-EXEC abc exit=0 signal=0".to_vec();
        assert_eq!(
            take_frame(&mut cut, "abc"),
            None,
            "an unterminated frame is not one"
        );
    }

    mod fuzz_frames {
        use proptest::prelude::*;

        proptest! {
            // The code writes anything to stderr: no panic, and a frame under another nonce
            // is never taken.
            #[test]
            fn fuzz_stderr_never_yields_a_frame_of_another_nonce(
                junk in proptest::collection::vec(any::<u8>(), 0..4096),
                fields in "[a-z_]{1,10}=[0-9a-f]{0,16}( [a-z_]{1,10}=[0-9a-f]{0,16}){0,6}",
            ) {
                let mut stderr = junk.clone();
                stderr.extend(format!("\x1eCODE-EXEC forged {fields}\x1e").into_bytes());
                prop_assert!(super::super::take_frame(&mut stderr, "realnonce").is_none());
                let mut raw = junk;
                let _ = super::super::take_frame(&mut raw, "realnonce");
            }
        }
    }

    #[test]
    fn decodes_hex() {
        assert_eq!(from_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
