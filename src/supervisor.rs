//! The supervisor: a small process of our own (`code-exec __supervise` (config on fd 6)) that sits between
//! the caller and the code. It is a fresh single-threaded process at start, becomes the child
//! subreaper of everything the code starts (so `setsid` and double-forked processes stay its
//! children), runs the interpreter, samples the process tree, and — when the main process
//! exits, when the caller asks, or when the caller disappears — kills every descendant and
//! reports how the run ended on its status channel.
//!
//! Inherited fds: 0–2 are the code's stdin/stdout/stderr, 3 the runner's report channel (passed
//! on to the interpreter), 4 the status channel (JSON lines to the caller), 5 the control
//! channel (any byte or EOF means "kill everything now"), 6 the config (read at start).

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sys::{self, ChildSetup, ChildWait, ExitStatus};

/// The argument that turns the `code-exec` binary into a supervisor.
pub const SUPERVISE_ARG: &str = "__supervise";
pub const REPORT_FD: RawFd = 3;
pub const STATUS_FD: RawFd = 4;
pub const CONTROL_FD: RawFd = 5;
/// The helper's config (JSON), read once at start.
pub const CONFIG_FD: RawFd = 6;

/// What the supervisor runs, prepared and validated by the backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorConfig {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Per-process cap on private writable memory (`RLIMIT_DATA`).
    pub memory_bytes: Option<u64>,
    /// Send a resource sample this often.
    pub sample_interval_ms: Option<u64>,
}

/// One line on the status channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SupervisorEvent {
    Started {
        pid: u32,
    },
    Sample {
        elapsed_ms: f64,
        cpu_percent: f64,
        memory_bytes: u64,
        pids: u32,
    },
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
        cpu_time_ms: f64,
        peak_memory_bytes: u64,
        /// The memory limit killed something (cgroup OOM events).
        #[serde(default)]
        memory_limit_hit: bool,
    },
    Failed {
        message: String,
    },
}

/// The status channel (fd 4): JSON lines to the caller, from any thread.
#[derive(Clone)]
pub(crate) struct StatusChannel(Arc<Mutex<File>>);

impl StatusChannel {
    /// Takes over the inherited status fd; `None` when it is missing (nobody can hear us).
    pub(crate) fn take() -> Option<StatusChannel> {
        let fd = sys::take_inherited_fd(STATUS_FD).ok()?;
        Some(StatusChannel(Arc::new(Mutex::new(File::from(fd)))))
    }

    pub(crate) fn send(&self, event: &SupervisorEvent) {
        if let (Ok(mut line), Ok(mut out)) = (serde_json::to_vec(event), self.0.lock()) {
            line.push(b'\n');
            let _ = out.write_all(&line);
        }
    }
}

/// Entry point of `code-exec __supervise` (config on fd 6). Returns the supervisor's own exit status.
pub fn main(config_json: &str) -> i32 {
    let Some(status) = StatusChannel::take() else {
        return 101;
    };
    let send = |event: &SupervisorEvent| status.send(event);
    match supervise(config_json, &send) {
        Ok(()) => 0,
        Err(message) => {
            send(&SupervisorEvent::Failed { message });
            kill_all_descendants();
            102
        }
    }
}

fn supervise(config_json: &str, send: &(dyn Fn(&SupervisorEvent) + Sync)) -> Result<(), String> {
    let config: SupervisorConfig =
        serde_json::from_str(config_json).map_err(|e| format!("bad supervisor config: {e}"))?;
    let control =
        sys::take_inherited_fd(CONTROL_FD).map_err(|e| format!("control channel missing: {e}"))?;
    sys::become_child_subreaper().map_err(|e| format!("prctl(PR_SET_CHILD_SUBREAPER): {e}"))?;

    let mut rlimits = vec![(libc::RLIMIT_CORE, 0)];
    if let Some(bytes) = config.memory_bytes {
        rlimits.push((libc::RLIMIT_DATA, bytes));
    }
    let mut cmd = Command::new(&config.program);
    cmd.args(&config.args)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&config.cwd)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    ChildSetup {
        fds: Vec::new(),
        close_from: Some((REPORT_FD + 1) as u32),
        rlimits,
        new_process_group: true,
    }
    .apply(&mut cmd);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", config.program.display()))?;
    let main_pid = child.id() as libc::pid_t;
    // The supervisor keeps no reference to the code's streams, so they reach EOF as soon as
    // the last process of the run is gone.
    for fd in [0, 1, 2, REPORT_FD] {
        let _ = sys::point_at_dev_null(fd);
    }
    send(&SupervisorEvent::Started {
        pid: main_pid as u32,
    });

    let finished = Arc::new(AtomicBool::new(false));
    let peak_sampled = Arc::new(Mutex::new(0u64));
    std::thread::scope(|scope| {
        scope.spawn(|| watch_control(control, &finished));
        if let Some(ms) = config.sample_interval_ms {
            let interval = Duration::from_millis(ms.max(1));
            let (finished, peak) = (&finished, &peak_sampled);
            scope.spawn(move || {
                sample_loop(started, interval, finished, peak, &own_tree_usage, send)
            });
        }
        let status = wait_for_main(main_pid);
        kill_until_no_children();
        finished.store(true, Ordering::SeqCst);
        let (cpu, max_rss_kb) = sys::children_usage();
        let sampled = peak_sampled.lock().map(|p| *p).unwrap_or(0);
        let (code, signal) = match status {
            Some(ExitStatus::Code(c)) => (Some(c), None),
            Some(ExitStatus::Signal(s)) => (None, Some(s)),
            None => (None, None),
        };
        send(&SupervisorEvent::Exit {
            code,
            signal,
            cpu_time_ms: cpu.as_secs_f64() * 1000.0,
            peak_memory_bytes: sampled.max(max_rss_kb * 1024),
            memory_limit_hit: false,
        });
        // The control watcher may still block on its read; leave without joining it.
        std::process::exit(0)
    })
}

/// Reaps children until the main process ends; orphans re-parented to us are reaped too.
fn wait_for_main(main_pid: libc::pid_t) -> Option<ExitStatus> {
    loop {
        match sys::wait_any_child() {
            Ok(Some((pid, status))) if pid == main_pid => return Some(status),
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Any byte on the control channel, or its end (the caller is gone), kills the whole run.
fn watch_control(control: std::os::fd::OwnedFd, finished: &AtomicBool) {
    let mut control = File::from(control);
    let mut byte = [0u8; 1];
    loop {
        match control.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => break,
        }
    }
    if !finished.load(Ordering::SeqCst) {
        kill_all_descendants();
    }
}

/// Kills and reaps until this process has no child left: each kill re-parents the victim's
/// children to us, and the next pass finds them.
fn kill_until_no_children() {
    loop {
        let killed = kill_all_descendants();
        loop {
            match sys::try_wait_any_child() {
                Ok(ChildWait::Reaped(..)) => continue,
                Ok(ChildWait::NoChildren) | Err(_) => return,
                Ok(ChildWait::StillRunning) => break,
            }
        }
        if killed == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// SIGKILLs every process below this one. Returns how many were signalled.
fn kill_all_descendants() -> usize {
    let pids = descendants();
    for &pid in &pids {
        sys::kill_pid(pid);
    }
    pids.len()
}

/// Every process below this one, found through `/proc/<pid>/task/<tid>/children`.
fn descendants() -> Vec<u32> {
    descendants_of(std::process::id())
}

/// Every process below `root`.
fn descendants_of(root: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut frontier = children_of(root);
    while let Some(pid) = frontier.pop() {
        if seen.insert(pid) {
            found.push(pid);
            frontier.extend(children_of(pid));
        }
    }
    found
}

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children
}

/// CPU ticks (own and reaped children's) and resident bytes of one live process.
fn process_usage(pid: u32, page_size: u64) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // A zombie (or dying) process has no memory left to report: it is not counted.
    if matches!(fields.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime, stime, cutime, cstime are fields 14–17 of stat, 12–15 after the name.
    let ticks = tick(11) + tick(12) + tick(13) + tick(14);
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks, resident_pages * page_size))
}

/// CPU time (ns, including reaped children's), resident bytes and process count of `root`
/// and every process below it.
pub(crate) fn tree_usage(root: u32) -> (u64, u64, u32) {
    let mut pids = descendants_of(root);
    pids.push(root);
    usage_of(&pids)
}

/// CPU time (ns), resident bytes and how many of `pids` are alive.
fn usage_of(pids: &[u32]) -> (u64, u64, u32) {
    let ticks_per_second = sys::clock_ticks_per_second().max(1);
    let page_size = sys::page_size();
    let (mut ticks, mut memory, mut alive) = (0u64, 0u64, 0u32);
    for &pid in pids {
        if let Some((t, m)) = process_usage(pid, page_size) {
            ticks += t;
            memory += m;
            alive += 1;
        }
    }
    (ticks * 1_000_000_000 / ticks_per_second, memory, alive)
}

/// What a sample measures: CPU time so far (ns), resident bytes, live processes.
pub(crate) type Measure<'a> = &'a (dyn Fn() -> (u64, u64, u32) + Sync);

/// Sends a resource sample every `interval` until `finished`, with CPU use computed over the
/// time since the previous sample; keeps the largest memory figure in `peak`.
pub(crate) fn sample_loop(
    started: Instant,
    interval: Duration,
    finished: &AtomicBool,
    peak: &Mutex<u64>,
    measure: Measure<'_>,
    send: &(dyn Fn(&SupervisorEvent) + Sync),
) {
    // The baseline: a persistent sandbox's cgroup has counted earlier executions too.
    let mut previous: (Instant, u64) = (Instant::now(), measure().0);
    while !finished.load(Ordering::SeqCst) {
        std::thread::sleep(interval);
        if finished.load(Ordering::SeqCst) {
            break;
        }
        let (cpu_ns, memory, pids) = measure();
        if pids == 0 {
            // Between the main process's exit and the end of the run: nothing to describe.
            continue;
        }
        let now = Instant::now();
        let wall = now.duration_since(previous.0).as_secs_f64();
        let cpu_percent = if wall > 0.0 {
            (cpu_ns.saturating_sub(previous.1) as f64 / 1e9 / wall * 100.0).max(0.0)
        } else {
            0.0
        };
        previous = (now, cpu_ns);
        if let Ok(mut p) = peak.lock() {
            *p = (*p).max(memory);
        }
        send(&SupervisorEvent::Sample {
            elapsed_ms: now.duration_since(started).as_secs_f64() * 1000.0,
            cpu_percent,
            memory_bytes: memory,
            pids,
        });
    }
}

/// The supervisor's own measure: every process below it, plus the CPU time of those it
/// has already reaped.
fn own_tree_usage() -> (u64, u64, u32) {
    let (cpu_ns, memory, alive) = usage_of(&descendants());
    let reaped = sys::children_usage().0.as_nanos() as u64;
    (cpu_ns + reaped, memory, alive)
}

/// Where the supervisor program is: the `code-exec` binary (or any binary that calls
/// [`run_if_requested`] first thing in `main`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorBinary(PathBuf);

/// Environment variable naming the supervisor binary explicitly.
pub const SUPERVISOR_ENV: &str = "CODE_EXEC_SUPERVISOR";

impl SupervisorBinary {
    /// A binary known to handle [`SUPERVISE_ARG`].
    pub fn at(path: impl Into<PathBuf>) -> SupervisorBinary {
        SupervisorBinary(path.into())
    }

    /// Finds the supervisor: `$CODE_EXEC_SUPERVISOR`, this very program when it is
    /// `code-exec`, a `code-exec` beside this program or one directory up (cargo puts test
    /// binaries in `target/*/deps`), then `code-exec` on `PATH`.
    pub fn locate() -> Result<SupervisorBinary, String> {
        if let Some(path) = std::env::var_os(SUPERVISOR_ENV) {
            let path = PathBuf::from(path);
            return if is_executable(&path) {
                Ok(SupervisorBinary(path))
            } else {
                Err(format!(
                    "{SUPERVISOR_ENV}={} is not an executable file",
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
            .map(SupervisorBinary)
            .ok_or_else(|| {
                format!(
                    "the code-exec supervisor binary was not found (looked beside this program and on PATH): build it with `cargo build --release`, or set {SUPERVISOR_ENV}"
                )
            })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// For programs that embed the library and act as their own supervisor: call this first in
/// `main`. When the process was started as a supervisor it runs as one and exits.
pub fn run_if_requested() {
    let mode = std::env::args().nth(1);
    let entry: fn(&str) -> i32 = match mode.as_deref() {
        Some(SUPERVISE_ARG) => main,
        Some(crate::sandbox::SANDBOX_ARG) => crate::sandbox::main,
        Some(crate::sandbox::zygote::ZYGOTE_ARG) => crate::sandbox::zygote::main,
        _ => return,
    };
    let mut config = String::new();
    if let Ok(fd) = sys::take_inherited_fd(CONFIG_FD) {
        let _ = File::from(fd).read_to_string(&mut config);
    }
    std::process::exit(entry(&config))
}
