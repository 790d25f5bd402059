//! Running one execution through a helper process of ours (the `none` supervisor or the native
//! sandbox helper), both speaking the same protocol: fds 0–2 the code's streams, 3 the runner's
//! report, 4 the helper's status (JSON lines), 5 control. This module owns what the host
//! enforces and decides: the wall-clock timeout, the output caps (both streams drained
//! concurrently), the kill request, and the verdict.

use std::fs::File;
use std::io::{BufRead, BufReader, PipeReader, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::{BackendKind, ExecutionRequest};
use crate::result::{ErrorType, ExecutionResult, Sample, signal_name};
use crate::sandbox::zygote::{ForkedHelper, Zygote};
use crate::supervisor::{CONFIG_FD, CONTROL_FD, REPORT_FD, STATUS_FD, SupervisorEvent};
use crate::sys::{self, ChildSetup};

/// The runner script that executes the code inside the interpreter.
pub const RUNNER: &str = include_str!("../runner.py");

/// The interpreter's arguments: isolated mode, unbuffered streams, the runner, its report fd
/// and the code's path (the code itself never travels in argv).
pub(crate) fn interpreter_args(code_path: &str) -> Vec<String> {
    vec![
        "-I".into(),
        "-u".into(),
        "-c".into(),
        RUNNER.into(),
        REPORT_FD.to_string(),
        code_path.into(),
    ]
}

/// The only environment that reaches the code.
pub(crate) fn code_environment(home: &str, tmp: &str) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("LC_ALL".into(), "C.UTF-8".into()),
        ("HOME".into(), home.into()),
        ("TMPDIR".into(), tmp.into()),
    ]
}

/// How long the supervisor gets to kill everything and report after being told to.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long the output streams get to reach EOF once the run has ended.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// The runner's report is one short record; anything longer is cut.
const REPORT_CAP: usize = 64 * 1024;

/// The tool's own failures while running code (never the code's faults).
#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot prepare the run directory: {0}")]
    Workspace(#[source] std::io::Error),
    #[error("cannot create a pipe: {0}")]
    Pipe(#[source] std::io::Error),
    #[error("cannot start the supervisor {path}: {source}")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the supervisor failed: {0}")]
    Supervisor(String),
    #[error("the supervisor ended without reporting how the run ended")]
    NoStatus,
}

/// What the host saw happen, in the order it decides the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    Timeout,
    Cancelled,
    OutputLimit(Stream),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

enum Event {
    Supervisor(SupervisorEvent),
    StatusClosed,
    OutputCapReached(Stream),
    StreamClosed,
}

/// Bytes kept from one output stream, up to the cap.
#[derive(Default)]
struct Capture {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Runs one helper process (`program MODE`, its config on fd 6) with the standard fd layout, enforces the
/// timeout and output caps from outside, and turns what it reports into a result.
pub(crate) fn run_helper(
    program: &Path,
    mode: &str,
    config_json: &str,
    stdin: File,
    request: &ExecutionRequest<'_>,
    backend: BackendKind,
) -> Result<ExecutionResult, RunError> {
    spawn_helper(program, mode, config_json, stdin.into(), None)?.finish(request, backend, None)
}

/// The helper process of a run: our child, or one the zygote forked (watched by pidfd).
#[derive(Debug)]
enum HelperProcess {
    Child(Child),
    Forked(ForkedHelper),
}

impl HelperProcess {
    fn id(&self) -> u32 {
        match self {
            HelperProcess::Child(child) => child.id(),
            HelperProcess::Forked(forked) => forked.pid,
        }
    }

    /// Whether it has ended (a forked one is reaped by the zygote).
    fn has_ended(&mut self) -> bool {
        match self {
            HelperProcess::Child(child) => !matches!(child.try_wait(), Ok(None)),
            HelperProcess::Forked(forked) => {
                sys::fdpass::poll_readable(forked.pidfd.as_fd(), 0).unwrap_or(true)
            }
        }
    }

    fn wait(&mut self) {
        match self {
            HelperProcess::Child(child) => {
                let _ = child.wait();
            }
            HelperProcess::Forked(forked) => {
                let _ = sys::fdpass::poll_readable(forked.pidfd.as_fd(), -1);
            }
        }
    }

    fn kill(&mut self) {
        match self {
            HelperProcess::Child(child) => sys::kill_pid(child.id()),
            HelperProcess::Forked(forked) => sys::fdpass::pidfd_kill(forked.pidfd.as_fd()),
        }
    }
}

/// The helper's config as an fd (numbered 10 or more, close-on-exec): an unlinked file, not
/// argv, which anyone can read (including, through /proc/1/cmdline, the sandboxed code).
pub(crate) fn config_fd(config_json: &str) -> std::io::Result<OwnedFd> {
    let mut file = tempfile::tempfile()?;
    file.write_all(config_json.as_bytes())?;
    file.seek(std::io::SeekFrom::Start(0))?;
    sys::dup_at_least(file.as_fd(), 10)
}

/// A helper process started with the standard fd layout, whose run is not watched yet (a
/// pre-started sandbox waits for its code like this). Dropping it unwatched tells the helper
/// to kill everything it started.
pub(crate) struct SpawnedHelper {
    parts: Option<HelperParts>,
}

struct HelperParts {
    child: HelperProcess,
    stdout: PipeReader,
    stderr: PipeReader,
    report: PipeReader,
    status: PipeReader,
    control: std::io::PipeWriter,
}

impl std::fmt::Debug for SpawnedHelper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnedHelper")
            .field("pid", &self.parts.as_ref().map(|p| p.child.id()))
            .finish()
    }
}

impl Drop for SpawnedHelper {
    fn drop(&mut self) {
        if let Some(mut parts) = self.parts.take() {
            let _ = parts.control.write_all(b"k");
            reap_supervisor(&mut parts.child, false);
        }
    }
}

/// Starts `program MODE` with its config on fd 6 and the standard fds — or, given a zygote
/// (native runs only), has the zygote fork the helper, the same fds passed over its socket.
pub(crate) fn spawn_helper(
    program: &Path,
    mode: &str,
    config_json: &str,
    stdin: OwnedFd,
    zygote: Option<&Zygote>,
) -> Result<SpawnedHelper, RunError> {
    let (stdout_r, stdout_w) = std::io::pipe().map_err(RunError::Pipe)?;
    let (stderr_r, stderr_w) = std::io::pipe().map_err(RunError::Pipe)?;
    let (report_r, report_w) = std::io::pipe().map_err(RunError::Pipe)?;
    let (status_r, status_w) = std::io::pipe().map_err(RunError::Pipe)?;
    let (control_r, control_w) = std::io::pipe().map_err(RunError::Pipe)?;

    let child = if let Some(zygote) = zygote {
        let fds = [
            stdin.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
            report_w.as_raw_fd(),
            status_w.as_raw_fd(),
            control_r.as_raw_fd(),
        ];
        let forked = zygote
            .fork_helper(config_json, &fds)
            .map_err(RunError::Supervisor)?;
        // The helper holds the only other copies now (see below).
        drop((stdin, stdout_w, stderr_w, report_w, status_w, control_r));
        HelperProcess::Forked(forked)
    } else {
        // Sources sit above every target number, so moving them cannot clobber each other.
        let report_hi = sys::dup_at_least(report_w.as_fd(), 10).map_err(RunError::Pipe)?;
        let status_hi = sys::dup_at_least(status_w.as_fd(), 10).map_err(RunError::Pipe)?;
        let control_hi = sys::dup_at_least(control_r.as_fd(), 10).map_err(RunError::Pipe)?;
        let config_hi = config_fd(config_json).map_err(RunError::Workspace)?;
        let mut cmd = Command::new(program);
        cmd.arg(mode)
            .env_clear()
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout_w))
            .stderr(Stdio::from(stderr_w));
        ChildSetup {
            fds: vec![
                (report_hi.as_raw_fd(), REPORT_FD),
                (status_hi.as_raw_fd(), STATUS_FD),
                (control_hi.as_raw_fd(), CONTROL_FD),
                (config_hi.as_raw_fd(), CONFIG_FD),
            ],
            close_from: Some((CONFIG_FD + 1) as u32),
            rlimits: Vec::new(),
            new_process_group: true,
        }
        .apply(&mut cmd);
        let spawned = cmd.spawn().map_err(|source| RunError::Spawn {
            path: program.display().to_string(),
            source,
        })?;
        // `cmd`, the write ends and the high duplicates drop here: the child holds the only
        // copies, so every stream reaches EOF when the run's last process is gone.
        drop((report_w, status_w, control_r));
        HelperProcess::Child(spawned)
    };
    Ok(SpawnedHelper {
        parts: Some(HelperParts {
            child,
            stdout: stdout_r,
            stderr: stderr_r,
            report: report_r,
            status: status_r,
            control: control_w,
        }),
    })
}

impl SpawnedHelper {
    /// Blocks until the runner of a pre-started sandbox says it is ready (its imports done,
    /// waiting for code); an error if it ended instead.
    pub(crate) fn wait_ready(&mut self) -> Result<(), RunError> {
        let parts = self.parts.as_mut().ok_or(RunError::NoStatus)?;
        let mut byte = [0u8; 1];
        match parts.report.read_exact(&mut byte) {
            Ok(()) if byte == *b"R" => Ok(()),
            Ok(()) => Err(RunError::Supervisor(
                "a pre-started sandbox sent something else than ready".into(),
            )),
            Err(e) => Err(RunError::Supervisor(format!(
                "a pre-started sandbox ended before it was ready: {e}"
            ))),
        }
    }

    /// Watches the run to its end and decides the verdict. `delivered`: when a pre-started
    /// run received its code; its clock starts there, not at the interpreter's start.
    pub(crate) fn finish(
        mut self,
        request: &ExecutionRequest<'_>,
        backend: BackendKind,
        delivered: Option<Instant>,
    ) -> Result<ExecutionResult, RunError> {
        let parts = self.parts.take().ok_or(RunError::NoStatus)?;
        watch_helper(parts, request, backend, delivered)
    }
}

fn watch_helper(
    parts: HelperParts,
    request: &ExecutionRequest<'_>,
    backend: BackendKind,
    delivered: Option<Instant>,
) -> Result<ExecutionResult, RunError> {
    let HelperParts {
        mut child,
        stdout: stdout_r,
        stderr: stderr_r,
        report: report_r,
        status: status_r,
        control: mut control_w,
    } = parts;
    let (tx, rx) = mpsc::channel();
    let cap = request.limits.max_output_bytes.as_usize();
    let stdout = capture_stream(stdout_r, cap, Stream::Stdout, tx.clone());
    let stderr = capture_stream(stderr_r, cap, Stream::Stderr, tx.clone());
    let report = Arc::new(Mutex::new(Vec::new()));
    {
        let (report, tx) = (Arc::clone(&report), tx.clone());
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = report_r.take(REPORT_CAP as u64).read_to_end(&mut bytes);
            if let Ok(mut r) = report.lock() {
                *r = bytes;
            }
            let _ = tx.send(Event::StreamClosed);
        });
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || read_status(status_r, tx));
    }
    drop(tx);

    let timeout = request.limits.timeout.get();
    let outcome = watch(
        &rx,
        &mut control_w,
        timeout,
        request.cancel.as_ref(),
        delivered,
        &mut child,
    );
    // Streams close once every process of the run is gone: wait briefly for all three.
    let drain_deadline = Instant::now() + DRAIN_GRACE;
    let mut open_streams = 3 - outcome.streams_closed;
    while open_streams > 0 {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::StreamClosed) => open_streams -= 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    drop(control_w);
    reap_supervisor(&mut child, outcome.exit.is_some());

    let report = report.lock().map(|r| parse_report(&r)).unwrap_or(None);
    let take = |c: &Arc<Mutex<Capture>>| {
        c.lock()
            .map(|c| (String::from_utf8_lossy(&c.bytes).into_owned(), c.truncated))
            .unwrap_or_default()
    };
    let (output, out_truncated) = take(&stdout);
    let (stderr_text, err_truncated) = take(&stderr);

    let exit = match outcome.exit {
        Some(exit) => exit,
        None => {
            return Err(match outcome.failure {
                Some(message) => RunError::Supervisor(message),
                None => RunError::NoStatus,
            });
        }
    };
    let mut result = verdict(backend, &exit, outcome.stop, report.as_ref(), request);
    result.output = output;
    result.stderr = stderr_text;
    result.truncated = out_truncated || err_truncated;
    if request.monitor.is_some() {
        result.monitoring = Some(outcome.samples);
    }
    Ok(result)
}

/// Reads one output stream to EOF, keeping at most `cap` bytes and draining the rest so the
/// writer never blocks; reports the first byte past the cap.
fn capture_stream(
    mut pipe: PipeReader,
    cap: usize,
    stream: Stream,
    tx: Sender<Event>,
) -> Arc<Mutex<Capture>> {
    let capture = Arc::new(Mutex::new(Capture::default()));
    let shared = Arc::clone(&capture);
    std::thread::spawn(move || {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut over = false;
        loop {
            let n = match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if over {
                continue;
            }
            let Ok(mut c) = shared.lock() else { break };
            let room = cap.saturating_sub(c.bytes.len());
            c.bytes.extend_from_slice(&chunk[..n.min(room)]);
            if n > room {
                c.truncated = true;
                over = true;
                let _ = tx.send(Event::OutputCapReached(stream));
            }
        }
        let _ = tx.send(Event::StreamClosed);
    });
    capture
}

fn read_status(pipe: PipeReader, tx: Sender<Event>) {
    for line in BufReader::new(pipe).lines() {
        let Ok(line) = line else { break };
        if let Ok(event) = serde_json::from_str::<SupervisorEvent>(&line)
            && tx.send(Event::Supervisor(event)).is_err()
        {
            return;
        }
    }
    let _ = tx.send(Event::StatusClosed);
}

/// How the run ended as the supervisor told it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Exit {
    pub(super) code: Option<i32>,
    pub(super) signal: Option<i32>,
    pub(super) cpu_time_ms: f64,
    pub(super) peak_memory_bytes: u64,
    pub(super) memory_limit_hit: bool,
    pub(super) duration: Duration,
}

#[derive(Default)]
struct Outcome {
    exit: Option<Exit>,
    stop: Option<StopReason>,
    failure: Option<String>,
    samples: Vec<Sample>,
    streams_closed: usize,
}

/// Waits for the run to end, enforcing the timeout and output caps from outside.
fn watch(
    rx: &Receiver<Event>,
    control: &mut impl Write,
    timeout: Duration,
    cancel: Option<&super::Cancel>,
    delivered: Option<Instant>,
    supervisor: &mut HelperProcess,
) -> Outcome {
    let mut outcome = Outcome::default();
    // A pre-started run's clock starts when its code arrives, not when its interpreter did.
    let mut started: Option<Instant> = delivered;
    let spawned = Instant::now();
    let mut kill_sent_at: Option<Instant> = None;
    // Asks the supervisor to kill the run, once; the first reason is the verdict.
    let stop = |outcome: &mut Outcome,
                reason: StopReason,
                control: &mut dyn Write,
                kill_sent_at: &mut Option<Instant>| {
        if outcome.stop.is_none() {
            outcome.stop = Some(reason);
            let _ = control.write_all(b"k");
            *kill_sent_at = Some(Instant::now());
        }
    };
    loop {
        let now = Instant::now();
        let wait = match kill_sent_at {
            Some(at) => (at + KILL_GRACE).saturating_duration_since(now),
            None => (started.unwrap_or(spawned) + timeout).saturating_duration_since(now),
        };
        let wait = match cancel {
            Some(_) => wait.min(super::CANCEL_POLL),
            None => wait,
        };
        if kill_sent_at.is_none() && cancel.is_some_and(super::Cancel::is_cancelled) {
            stop(
                &mut outcome,
                StopReason::Cancelled,
                control,
                &mut kill_sent_at,
            );
            continue;
        }
        match rx.recv_timeout(wait) {
            Ok(Event::Supervisor(SupervisorEvent::Started { .. })) => {
                if delivered.is_none() {
                    started = Some(Instant::now());
                }
            }
            Ok(Event::Supervisor(SupervisorEvent::Sample {
                elapsed_ms,
                cpu_percent,
                memory_bytes,
                pids,
            })) => outcome.samples.push(Sample {
                timestamp_ms: elapsed_ms,
                cpu_percent,
                memory_mb: memory_bytes as f64 / (1024.0 * 1024.0),
                pids,
            }),
            Ok(Event::Supervisor(SupervisorEvent::Exit {
                code,
                signal,
                cpu_time_ms,
                peak_memory_bytes,
                memory_limit_hit,
            })) => {
                outcome.exit = Some(Exit {
                    code,
                    signal,
                    cpu_time_ms,
                    peak_memory_bytes,
                    memory_limit_hit,
                    duration: started.unwrap_or(spawned).elapsed(),
                });
                return outcome;
            }
            Ok(Event::Supervisor(SupervisorEvent::Failed { message })) => {
                outcome.failure = Some(message);
            }
            Ok(Event::OutputCapReached(stream)) => {
                stop(
                    &mut outcome,
                    StopReason::OutputLimit(stream),
                    control,
                    &mut kill_sent_at,
                );
            }
            Ok(Event::StreamClosed) => outcome.streams_closed += 1,
            Ok(Event::StatusClosed) | Err(RecvTimeoutError::Disconnected) => return outcome,
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                match kill_sent_at {
                    // Woken early only to look at the cancel flag.
                    Some(at) if now < at + KILL_GRACE => {}
                    None if now < started.unwrap_or(spawned) + timeout => {}
                    Some(_) => {
                        // The supervisor did not finish its kill in time: stop it by force.
                        // Its control channel closing would make a live one kill the rest.
                        supervisor.kill();
                        outcome.failure =
                            Some("the supervisor did not stop the run in time".into());
                        return outcome;
                    }
                    None => stop(
                        &mut outcome,
                        StopReason::Timeout,
                        control,
                        &mut kill_sent_at,
                    ),
                }
            }
        }
    }
}

/// Collects the supervisor's exit status. After its exit report it is already on its way out
/// and a blocking wait is immediate; otherwise it is given a grace period, then killed.
fn reap_supervisor(child: &mut HelperProcess, reported_exit: bool) {
    if reported_exit {
        // A helper forked by the zygote is the zygote's to reap: after its report it only
        // tears down the sandbox's namespaces, which the result need not wait for.
        if let HelperProcess::Child(_) = child {
            child.wait();
        }
        return;
    }
    let deadline = Instant::now() + KILL_GRACE;
    loop {
        if child.has_ended() {
            return;
        }
        if Instant::now() >= deadline {
            child.kill();
            child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The runner's account of an uncaught exception or a `sys.exit` with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Report {
    phase: String,
    name: String,
    line: usize,
    column: usize,
    message: String,
}

pub(super) fn parse_report(bytes: &[u8]) -> Option<Report> {
    let text = String::from_utf8_lossy(bytes);
    let mut parts = text.splitn(5, '\0');
    let phase = parts.next()?.to_owned();
    let name = parts.next()?.to_owned();
    let line = parts.next()?.parse().unwrap_or(0);
    let column = parts.next()?.parse().unwrap_or(0);
    let message = parts.next()?.to_owned();
    let valid_name = !name.is_empty()
        && name.len() <= 200
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    valid_name.then_some(Report {
        phase,
        name,
        line,
        column,
        message,
    })
}

/// Decides the verdict: limits seen from outside first, then the runner's report, then the
/// exit status.
pub(super) fn verdict(
    backend: BackendKind,
    exit: &Exit,
    stop: Option<StopReason>,
    report: Option<&Report>,
    request: &ExecutionRequest<'_>,
) -> ExecutionResult {
    let mut result = ExecutionResult::sandbox_error(backend.as_str(), String::new());
    result.exit_code = exit.code;
    result.signal = exit.signal.map(signal_name);
    result.duration_ms = exit.duration.as_secs_f64() * 1000.0;
    result.cpu_time_ms = exit.cpu_time_ms;
    result.peak_memory_mb = exit.peak_memory_bytes as f64 / (1024.0 * 1024.0);
    let limits = &request.limits;
    let (error_type, error) = match (stop, report) {
        // An OOM kill is the root cause of whatever followed it (often a hang, then a timeout).
        _ if exit.memory_limit_hit => (
            Some(ErrorType::MemoryLimit),
            Some(format!(
                "the memory limit of {} MB was exceeded (killed by the kernel's OOM killer)",
                limits.memory_mb
            )),
        ),
        (Some(StopReason::Cancelled), _) => (
            Some(ErrorType::Cancelled),
            Some("the execution was cancelled by its caller".into()),
        ),
        (Some(StopReason::Timeout), _) => (
            Some(ErrorType::Timeout),
            Some(format!(
                "execution timed out after {} s",
                limits.timeout.get().as_secs_f64()
            )),
        ),
        (Some(StopReason::OutputLimit(stream)), _) => (
            Some(ErrorType::OutputLimit),
            Some(format!(
                "{} exceeded the output limit of {} bytes",
                match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                },
                limits.max_output_bytes
            )),
        ),
        (None, Some(r)) if r.phase == "compile" => {
            result.line = (r.line > 0).then_some(r.line);
            result.column = (r.column > 0).then_some(r.column);
            let message = if r.name == "SyntaxError"
                || r.name == "IndentationError"
                || r.name == "TabError"
            {
                format!("{} (line {}, column {})", r.message, r.line, r.column)
            } else {
                format!(
                    "the interpreter could not compile the code: {}: {}",
                    r.name, r.message
                )
            };
            (Some(ErrorType::SyntaxError), Some(message))
        }
        (None, Some(r)) if r.phase == "run" && r.name == "MemoryError" => (
            Some(ErrorType::MemoryLimit),
            Some(format!(
                "MemoryError{} (memory limit {} MB)",
                if r.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.message)
                },
                limits.memory_mb
            )),
        ),
        (None, Some(r)) if r.phase == "run" => (
            Some(ErrorType::Exception(r.name.clone())),
            Some(if r.message.is_empty() {
                r.name.clone()
            } else {
                format!("{}: {}", r.name, r.message)
            }),
        ),
        _ => match (exit.code, exit.signal) {
            (_, Some(signal)) => (
                Some(ErrorType::Crash),
                Some(format!("killed by signal {}", signal_name(signal))),
            ),
            (Some(0), None) => (None, None),
            (Some(code), None) => {
                let detail = report
                    .filter(|r| r.phase == "exit")
                    .map(|r| format!(": {}", r.message))
                    .unwrap_or_default();
                (
                    Some(ErrorType::Exit),
                    Some(format!("exited with status {code}{detail}")),
                )
            }
            (None, None) => (
                Some(ErrorType::SandboxError),
                Some("the supervisor lost track of the main process".into()),
            ),
        },
    };
    result.success = error_type.is_none();
    result.error_type = error_type;
    result.error = error;
    result
}
