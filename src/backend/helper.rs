//! The host's side of a helper process (the `none` supervisor, or the native sandbox's helper,
//! started cold or forked by the zygote): finding the helper binary, starting it with the
//! protocol's fds, and watching its run — the wall-clock timeout, the output caps (both
//! streams drained concurrently), the kill request, the helper's status — then reaping it and
//! handing what it saw to the verdict. Runs in the host process.

use std::fs::File;
use std::io::{BufRead, BufReader, PipeReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;

use super::verdict::{self, Exit, StopReason, Stream};
use super::{BackendKind, CANCEL_POLL, Cancel, ExecutionRequest};
use crate::cgroup::CgroupError;
use crate::lock::lock;
use crate::protocol::report::RunnerReport;
use crate::protocol::{self, HiddenMode, StatusEvent, fds};
use crate::result::{ExecutionResult, Sample};
use crate::sys::{self, ChildSetup};

/// How long the helper gets to kill everything and report after being told to.
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
    #[error("cannot encode the helper's config: {0}")]
    Config(#[source] serde_json::Error),
    #[error("cannot start the helper {}: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the zygote could not fork the helper: {0}")]
    Zygote(String),
    #[error("the run's cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("the helper failed: {0}")]
    HelperFailed(String),
    #[error("the helper did not stop the run within {} s of the kill", KILL_GRACE.as_secs())]
    KillTimedOut,
    #[error("the helper ended without reporting how the run ended")]
    NoStatus,
    #[error("a pre-started sandbox {0}")]
    NotReady(&'static str),
    #[error("pre-started sandboxes need cgroups (their limits change when code arrives)")]
    NeedsCgroups,
    #[error("a pre-started sandbox lost its cgroup")]
    LostCgroup,
    #[error("this sandbox has been cleaned up")]
    CleanedUp,
}

enum Event {
    Status(StatusEvent),
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

/// Where the helper program is: the `code-exec` binary (or any binary that calls
/// [`run_if_requested`](crate::process::run_if_requested) first thing in `main`), and,
/// for a program that is that binary itself, the entry of its hidden modes, which a run's
/// supervisor or sandbox helper then runs in a fork of this process instead of an exec.
#[derive(Debug, Clone)]
pub struct HelperBinary {
    path: PathBuf,
    fork_entry: Option<HiddenModeEntry>,
}

/// Runs this process as a hidden-mode process, its fds in place; returns its exit status.
pub(crate) type HiddenModeEntry = fn(HiddenMode) -> i32;

/// Environment variable naming the helper binary explicitly.
pub const HELPER_ENV: &str = "CODE_EXEC_SUPERVISOR";

impl HelperBinary {
    /// A binary known to handle the hidden modes.
    pub fn at(path: impl Into<PathBuf>) -> HelperBinary {
        HelperBinary {
            path: path.into(),
            fork_entry: None,
        }
    }

    /// Runs hidden modes through `entry` in a fork of this process while it is
    /// single-threaded (checked at each start), and execs the binary otherwise.
    pub(crate) fn forking_here(mut self, entry: HiddenModeEntry) -> HelperBinary {
        self.fork_entry = Some(entry);
        self
    }

    /// Finds the helper: `$CODE_EXEC_SUPERVISOR`, this very program when it is `code-exec`, a
    /// `code-exec` beside this program or one directory up (cargo puts test binaries in
    /// `target/*/deps`), then `code-exec` on `PATH`.
    pub fn locate() -> Result<HelperBinary, String> {
        if let Some(path) = std::env::var_os(HELPER_ENV) {
            let path = PathBuf::from(path);
            return if is_executable(&path) {
                Ok(HelperBinary::at(path))
            } else {
                Err(format!(
                    "{HELPER_ENV}={} is not an executable file",
                    path.display()
                ))
            };
        }
        let mut candidates = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            if exe.file_name().is_some_and(|n| n == "code-exec") {
                candidates.push(exe.clone());
            }
            if let Some(dir) = exe.parent() {
                candidates.push(dir.join("code-exec"));
                if let Some(up) = dir.parent() {
                    candidates.push(up.join("code-exec"));
                }
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("code-exec")));
        }
        candidates
            .into_iter()
            .find(|c| is_executable(c))
            .map(HelperBinary::at)
            .ok_or_else(|| {
                format!(
                    "the code-exec helper binary was not found (looked beside this program and on PATH): build it with `cargo build --release`, or set {HELPER_ENV}"
                )
            })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `program MODE` prepared to start as one of our hidden-mode processes: a clean environment,
/// a process group of its own, `placed` fds at their protocol numbers, the config on fd 6
/// and nothing else above fd 2 (stdin, stdout and stderr are the caller's to set).
pub(crate) struct HiddenModeCommand {
    pub(crate) command: Command,
    /// The duplicates the child's setup moves into place: alive until it has started.
    _sources: Vec<OwnedFd>,
}

impl HiddenModeCommand {
    pub(crate) fn new(
        program: &Path,
        mode: HiddenMode,
        placed: &[(BorrowedFd<'_>, RawFd)],
        config_json: &str,
    ) -> std::io::Result<HiddenModeCommand> {
        Self::build(Command::new(program), None, mode, placed, config_json)
    }

    /// The same, exec'd from `sealed` (a [`sys::memfd::sealed_copy`] of the binary) placed at
    /// [`fds::EXEC`]: the process's `/proc/self/exe` then names no host file.
    pub(crate) fn from_sealed_copy(
        sealed: BorrowedFd<'_>,
        mode: HiddenMode,
        placed: &[(BorrowedFd<'_>, RawFd)],
        config_json: &str,
    ) -> std::io::Result<HiddenModeCommand> {
        let program = format!("/proc/self/fd/{}", fds::EXEC);
        Self::build(
            Command::new(program),
            Some(sealed),
            mode,
            placed,
            config_json,
        )
    }

    fn build(
        mut command: Command,
        sealed: Option<BorrowedFd<'_>>,
        mode: HiddenMode,
        placed: &[(BorrowedFd<'_>, RawFd)],
        config_json: &str,
    ) -> std::io::Result<HiddenModeCommand> {
        // Sources sit above every target number, so moving them cannot clobber each other.
        let mut sources = Vec::with_capacity(placed.len() + 2);
        let mut moves = Vec::with_capacity(placed.len() + 2);
        let sealed = sealed.map(|fd| (fd, fds::EXEC));
        for &(fd, target) in placed.iter().chain(sealed.iter()) {
            let high = sys::dup_at_least(fd, fds::HIGH)?;
            moves.push((high.as_raw_fd(), target));
            sources.push(high);
        }
        let config = protocol::config_fd(config_json)?;
        moves.push((config.as_raw_fd(), fds::CONFIG));
        sources.push(config);
        let first_closed = if sealed.is_some() {
            fds::EXEC + 1
        } else {
            fds::CONFIG + 1
        };
        command.arg(mode.arg()).env_clear();
        ChildSetup {
            fds: moves,
            close_from: Some(first_closed as u32),
            rlimits: Vec::new(),
            new_process_group: true,
        }
        .apply(&mut command);
        Ok(HiddenModeCommand {
            command,
            _sources: sources,
        })
    }

    /// Starts it; the duplicates are closed here, so the child holds the only copies.
    pub(crate) fn spawn(mut self) -> std::io::Result<Child> {
        self.command.spawn()
    }
}

/// A helper forked by someone else (the zygote): not this process's child, so it is watched
/// through its pidfd.
#[derive(Debug)]
pub(crate) struct ForkedHelper {
    pub(crate) pid: u32,
    pub(crate) pidfd: OwnedFd,
}

/// What can fork a helper for a run, given its config and the six fds of [`fds::RUN`] (the
/// zygote's handle).
pub(crate) trait ForkHelper {
    fn fork_helper(
        &self,
        config_json: &str,
        run_fds: &[RawFd; 6],
    ) -> Result<ForkedHelper, RunError>;
}

/// How a run's helper starts: as `helper MODE` (exec'd, or forked here: see
/// [`HelperBinary`]), or forked by a [`ForkHelper`].
pub(crate) enum Launch<'a> {
    Exec {
        helper: &'a HelperBinary,
        mode: HiddenMode,
    },
    Fork(&'a dyn ForkHelper),
}

/// Runs one helper with the protocol's fds, enforces the timeout and output caps from
/// outside, and turns what it reports into a result.
pub(crate) fn run_helper(
    launch: Launch<'_>,
    config_json: &str,
    stdin: File,
    request: &ExecutionRequest<'_>,
    backend: BackendKind,
) -> Result<ExecutionResult, RunError> {
    spawn_helper(launch, config_json, stdin.into())?.finish(request, backend, None)
}

/// The helper process of a run: our exec'd child, our child forked here (both ours to
/// reap), or one the zygote forked (watched by pidfd, reaped by the zygote).
#[derive(Debug)]
enum HelperProcess {
    /// Exec'd to run the hidden mode it names.
    Child(Child, HiddenMode),
    /// Forked here to run the hidden mode it names.
    ForkedHere(ForkedHelper, HiddenMode),
    Forked(ForkedHelper),
}

impl HelperProcess {
    fn id(&self) -> u32 {
        match self {
            HelperProcess::Child(child, _) => child.id(),
            HelperProcess::ForkedHere(forked, _) | HelperProcess::Forked(forked) => forked.pid,
        }
    }

    /// Whether it has ended (a forked one is reaped by the zygote).
    fn has_ended(&mut self) -> bool {
        match self {
            HelperProcess::Child(child, _) => !matches!(child.try_wait(), Ok(None)),
            HelperProcess::ForkedHere(forked, _) | HelperProcess::Forked(forked) => {
                sys::fdpass::poll_readable(forked.pidfd.as_fd(), 0).unwrap_or(true)
            }
        }
    }

    /// Waits for it to end, and reaps it when it is ours.
    fn wait(&mut self) {
        match self {
            HelperProcess::Child(child, _) => {
                let _ = child.wait();
            }
            HelperProcess::ForkedHere(forked, _) => sys::reap_child(forked.pid as libc::pid_t),
            HelperProcess::Forked(forked) => {
                let _ = sys::fdpass::poll_readable(forked.pidfd.as_fd(), -1);
            }
        }
    }

    fn kill(&mut self) {
        match self {
            HelperProcess::Child(child, _) => sys::kill(child.id()),
            HelperProcess::ForkedHere(forked, _) | HelperProcess::Forked(forked) => {
                sys::kill_pidfd(forked.pidfd.as_fd())
            }
        }
    }
}

/// A helper process started with the protocol's fds, whose run is not watched yet (a
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
            let _ = parts.control.write_all(protocol::KILL);
            reap_helper(&mut parts.child, false);
        }
    }
}

/// Starts a run's helper with the protocol's fds: exec'd with its config on fd 6, or forked
/// with the same fds passed over the zygote's socket.
pub(crate) fn spawn_helper(
    launch: Launch<'_>,
    config_json: &str,
    stdin: OwnedFd,
) -> Result<SpawnedHelper, RunError> {
    let (stdout_r, stdout_w) = std::io::pipe().map_err(RunError::Pipe)?;
    let (stderr_r, stderr_w) = std::io::pipe().map_err(RunError::Pipe)?;
    let (report_r, report_w) = std::io::pipe().map_err(RunError::Pipe)?;
    let (status_r, status_w) = std::io::pipe().map_err(RunError::Pipe)?;
    let (control_r, control_w) = std::io::pipe().map_err(RunError::Pipe)?;

    let child = match launch {
        Launch::Fork(forker) => {
            // In the order of `fds::RUN`.
            let run_fds = [
                stdin.as_raw_fd(),
                stdout_w.as_raw_fd(),
                stderr_w.as_raw_fd(),
                report_w.as_raw_fd(),
                status_w.as_raw_fd(),
                control_r.as_raw_fd(),
            ];
            let forked = forker.fork_helper(config_json, &run_fds)?;
            // The helper holds the only other copies now (see below).
            drop((stdin, stdout_w, stderr_w, report_w, status_w, control_r));
            HelperProcess::Forked(forked)
        }
        Launch::Exec { helper, mode } if let Some(entry) = helper.fork_entry_now() => {
            let placed = [
                (stdin.as_fd(), 0),
                (stdout_w.as_fd(), 1),
                (stderr_w.as_fd(), 2),
                (report_w.as_fd(), fds::REPORT),
                (status_w.as_fd(), fds::STATUS),
                (control_r.as_fd(), fds::CONTROL),
            ];
            let forked = fork_hidden_mode_here(helper, entry, mode, &placed, config_json)?;
            // The child holds the only other copies now (see below).
            drop((stdin, stdout_w, stderr_w, report_w, status_w, control_r));
            HelperProcess::ForkedHere(forked, mode)
        }
        Launch::Exec { helper, mode } => {
            let program = helper.path();
            // Sources sit above every target number, so moving them cannot clobber each other.
            let placed = [
                (report_w.as_fd(), fds::REPORT),
                (status_w.as_fd(), fds::STATUS),
                (control_r.as_fd(), fds::CONTROL),
            ];
            let mut hidden = HiddenModeCommand::new(program, mode, &placed, config_json)
                .map_err(RunError::Pipe)?;
            hidden
                .command
                .stdin(Stdio::from(stdin))
                .stdout(Stdio::from(stdout_w))
                .stderr(Stdio::from(stderr_w));
            let spawned = hidden.spawn().map_err(|source| RunError::Spawn {
                program: program.to_owned(),
                source,
            })?;
            // The high duplicates went with the spawn, the write ends drop here: the child
            // holds the only copies, so every stream reaches EOF when the run's last process
            // is gone.
            drop((report_w, status_w, control_r));
            HelperProcess::Child(spawned, mode)
        }
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

impl HelperBinary {
    /// The entry a hidden mode started now runs through in a fork of this process: when asked
    /// for, and this process is single-threaded (a fork of it is then as sound as a fresh
    /// process); `None`: exec the binary.
    fn fork_entry_now(&self) -> Option<HiddenModeEntry> {
        self.fork_entry.filter(|_| sys::is_single_threaded())
    }
}

/// Our helpers that reported their run's end and were left to tear down the sandbox's
/// namespaces: reaped when they have ended, at a later run's end.
static UNREAPED_HELPERS: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// Forks this (single-threaded) process into the hidden-mode process `mode`: what an exec of
/// `helper MODE` would be (fds at their protocol numbers, the config on fd 6 and nothing
/// else, a clean environment, default signals, a process group of its own) without the exec
/// and the binary's start-up.
fn fork_hidden_mode_here(
    helper: &HelperBinary,
    entry: HiddenModeEntry,
    mode: HiddenMode,
    placed: &[(BorrowedFd<'_>, RawFd)],
    config_json: &str,
) -> Result<ForkedHelper, RunError> {
    let spawn_error = |source| RunError::Spawn {
        program: helper.path().to_owned(),
        source,
    };
    // Sources sit above every target number, so moving them cannot clobber each other.
    let mut sources = Vec::with_capacity(placed.len() + 1);
    let mut moves = Vec::with_capacity(placed.len() + 1);
    for &(fd, target) in placed {
        let high = sys::dup_at_least(fd, fds::HIGH).map_err(spawn_error)?;
        moves.push((high.as_raw_fd(), target));
        sources.push(high);
    }
    let config = protocol::config_fd(config_json).map_err(spawn_error)?;
    moves.push((config.as_raw_fd(), fds::CONFIG));
    sources.push(config);
    let setup = ChildSetup {
        fds: moves,
        close_from: Some((fds::CONFIG + 1) as u32),
        rlimits: Vec::new(),
        new_process_group: true,
    };
    // SAFETY: `fork_entry_now` found this process single-threaded, and this thread started
    // no other since: the child's copy of memory holds no lock another thread owned.
    match unsafe { sys::isolation::fork_as_libc_does() }.map_err(spawn_error)? {
        sys::isolation::Forked::Child => {
            sys::reset_signals_to_defaults();
            // The sandbox may not see the caller's environment or arguments (its
            // /proc/1/cmdline is anyone's to read): both are overwritten in place.
            // SAFETY: the fresh child is single-threaded, holds no pointer into the
            // environment and never reads its arguments again; the moved fds' owners in this
            // copy of memory are never used or dropped again (it ends with `exit_now`).
            let placed = unsafe {
                sys::clear_environment();
                sys::replace_command_line(&["code-exec", mode.arg()])
                    .and_then(|()| setup.apply_here())
            };
            if placed.is_err() {
                sys::isolation::exit_now(protocol::exit_code::FORKED_FDS_FAILED);
            }
            sys::isolation::exit_now(entry(mode))
        }
        sys::isolation::Forked::Parent(pid) => {
            drop(sources);
            let pidfd = sys::fdpass::pidfd_open(pid).map_err(spawn_error)?;
            Ok(ForkedHelper {
                pid: pid as u32,
                pidfd,
            })
        }
    }
}

impl SpawnedHelper {
    /// Blocks until the runner of a pre-started sandbox says it is ready (its imports done,
    /// waiting for code); an error if it ended instead.
    pub(crate) fn wait_ready(&mut self) -> Result<(), RunError> {
        let parts = self.parts.as_mut().ok_or(RunError::NoStatus)?;
        let mut byte = [0u8; 1];
        match parts.report.read_exact(&mut byte) {
            Ok(()) if byte == *protocol::report::READY => Ok(()),
            Ok(()) => Err(RunError::NotReady("sent something else than ready")),
            Err(_) => Err(RunError::NotReady("ended before it was ready")),
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
    reap_helper(&mut child, outcome.exit.is_some());

    let report = report
        .lock()
        .map(|r| RunnerReport::parse(&r))
        .unwrap_or(RunnerReport::NotStarted(None));
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
                Some(failure) => failure,
                None => RunError::NoStatus,
            });
        }
    };
    let mut result = verdict::verdict(backend, &exit, outcome.stop, &report, request);
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
        if let Some(event) = StatusEvent::parse(&line)
            && tx.send(Event::Status(event)).is_err()
        {
            return;
        }
    }
    let _ = tx.send(Event::StatusClosed);
}

#[derive(Default)]
struct Outcome {
    exit: Option<Exit>,
    stop: Option<StopReason>,
    failure: Option<RunError>,
    samples: Vec<Sample>,
    streams_closed: usize,
}

/// Waits for the run to end, enforcing the timeout and output caps from outside.
fn watch(
    rx: &Receiver<Event>,
    control: &mut impl Write,
    timeout: Duration,
    cancel: Option<&Cancel>,
    delivered: Option<Instant>,
    helper: &mut HelperProcess,
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
            let _ = control.write_all(protocol::KILL);
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
            Some(_) => wait.min(CANCEL_POLL),
            None => wait,
        };
        if kill_sent_at.is_none() && cancel.is_some_and(Cancel::is_cancelled) {
            stop(
                &mut outcome,
                StopReason::Cancelled,
                control,
                &mut kill_sent_at,
            );
            continue;
        }
        match rx.recv_timeout(wait) {
            Ok(Event::Status(StatusEvent::Started { .. })) => {
                if delivered.is_none() {
                    started = Some(Instant::now());
                }
            }
            Ok(Event::Status(StatusEvent::Sample {
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
            Ok(Event::Status(StatusEvent::Exit {
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
            Ok(Event::Status(StatusEvent::Failed { message })) => {
                outcome.failure = Some(RunError::HelperFailed(message));
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
                        // The helper did not finish its kill in time: stop it by force.
                        // Its control channel closing would make a live one kill the rest.
                        helper.kill();
                        outcome.failure = Some(RunError::KillTimedOut);
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

/// Collects the helper's exit status. After its exit report it is already on its way out
/// and a blocking wait is immediate; otherwise it is given a grace period, then killed.
fn reap_helper(child: &mut HelperProcess, reported_exit: bool) {
    if reported_exit {
        // After its report a helper only tears down the sandbox's namespaces (the mount
        // namespace's ~30 mounts go with its last reference: milliseconds), which the result
        // need not wait for. One forked by the zygote is the zygote's to reap; one of ours is
        // reaped once it has ended, at the end of a later run, or by whoever inherits it when
        // a one-shot process (the CLI) has exited with the answer.
        let ours = match child {
            // A supervisor (`none`) has no namespaces to tear down: reaped now.
            HelperProcess::Child(_, HiddenMode::Supervise)
            | HelperProcess::ForkedHere(_, HiddenMode::Supervise) => {
                child.wait();
                return;
            }
            HelperProcess::Child(spawned, _) => spawned.id() as libc::pid_t,
            HelperProcess::ForkedHere(forked, _) => forked.pid as libc::pid_t,
            HelperProcess::Forked(_) => return,
        };
        let mut pending = lock(&UNREAPED_HELPERS);
        pending.retain(|&pid| !sys::try_reap_child(pid));
        pending.push(ours);
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
