//! The `none` backend's supervisor process (`code-exec __supervise`, config on fd 6): a fresh
//! single-threaded process between the host and the code. It becomes the child subreaper of
//! everything the code starts (so `setsid` and double-forked processes stay its children),
//! runs the interpreter, samples the process tree, and — when the main process exits, when
//! the host asks, or when the host disappears — kills every descendant and reports how the
//! run ended on its status channel. Runs in the supervisor process only.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::tree;
use crate::protocol::{self, StatusChannel, StatusEvent, SupervisorConfig, exit_code, fds};
use crate::sys::{self, ChildSetup, ChildWait, ExitStatus};

/// Entry point of `code-exec __supervise`. Returns the supervisor's own exit status.
pub(crate) fn main(config_json: &str) -> i32 {
    let Some(status) = StatusChannel::take() else {
        return exit_code::NO_STATUS_CHANNEL;
    };
    let failure = match supervise(config_json, &status) {
        Ok(never) => match never {},
        Err(message) => message,
    };
    status.send(&StatusEvent::Failed { message: failure });
    kill_all_descendants();
    exit_code::SETUP_FAILED
}

/// The supervisor's steps, in order. Ends the process itself once the run is over.
fn supervise(
    config_json: &str,
    status: &StatusChannel,
) -> Result<std::convert::Infallible, String> {
    let config: SupervisorConfig =
        serde_json::from_str(config_json).map_err(|e| format!("bad supervisor config: {e}"))?;
    let control = take_control_channel()?;
    sys::become_child_subreaper().map_err(|e| format!("prctl(PR_SET_CHILD_SUBREAPER): {e}"))?;
    let started = Instant::now();
    let main_pid = start_interpreter(&config)?;
    protocol::release_code_streams();
    status.send(&StatusEvent::Started {
        pid: main_pid as u32,
    });
    watch_run(&config, control, main_pid, started, status)
}

fn take_control_channel() -> Result<OwnedFd, String> {
    // SAFETY: fd 5 was placed by whoever started this process for us alone, and nothing else
    // in this process has taken it.
    unsafe { sys::take_inherited_fd(fds::CONTROL) }
        .map_err(|e| format!("control channel missing: {e}"))
}

/// Starts the interpreter in a process group of its own, with a clean environment, fds 0–3
/// only, no core files and the per-process memory cap. Returns its pid.
fn start_interpreter(config: &SupervisorConfig) -> Result<libc::pid_t, String> {
    let interpreter = &config.interpreter;
    let mut rlimits = vec![(libc::RLIMIT_CORE, 0)];
    if let Some(bytes) = config.memory_bytes {
        rlimits.push((libc::RLIMIT_DATA, bytes));
    }
    // The runner compiled ahead, as a sealed file at fd 4 of the interpreter (which runs it
    // as its script and closes the fd); else the runner's source after `-c`.
    let runner = interpreter
        .compiled_runner
        .as_deref()
        .and_then(protocol::read_compiled_runner)
        .and_then(|bytes| sys::memfd::sealed_bytes(c"code-exec-runner", &bytes).ok())
        .and_then(|memfd| sys::dup_at_least(memfd.as_fd(), fds::HIGH).ok());
    let runner_fd = fds::REPORT + 1;
    let moves: Vec<_> = runner
        .iter()
        .map(|high| (high.as_raw_fd(), runner_fd))
        .collect();
    // Everything above the report channel is closed, but for the compiled runner.
    let first_closed = fds::REPORT + 1 + moves.len() as i32;
    let mut cmd = Command::new(&interpreter.program);
    cmd.args(interpreter.args_with_runner_at(runner.as_ref().map(|_| runner_fd)))
        .env_clear()
        .envs(interpreter.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&config.cwd)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    ChildSetup {
        fds: moves,
        close_from: Some(first_closed as u32),
        rlimits,
        new_process_group: true,
    }
    .apply(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", interpreter.program.display()))?;
    Ok(child.id() as libc::pid_t)
}

/// Watches the run to its end: a kill on the control channel, samples, the main process's
/// exit; then kills what is left and reports.
fn watch_run(
    config: &SupervisorConfig,
    control: OwnedFd,
    main_pid: libc::pid_t,
    started: Instant,
    status: &StatusChannel,
) -> ! {
    let watch = tree::RunWatch::default();
    std::thread::scope(|scope| {
        let sampling = tree::Sampling {
            started,
            interval_ms: config.sample_interval_ms,
            measure: &own_tree_usage,
            status,
        };
        watch.spawn(
            scope,
            control,
            || {
                kill_all_descendants();
            },
            sampling,
        );
        let main_status = wait_for_main(main_pid);
        kill_until_no_children();
        let sampled = watch.finish();
        let (cpu, max_rss_kb) = sys::children_usage();
        status.send(&StatusEvent::exit(
            main_status,
            cpu,
            sampled.max(max_rss_kb * 1024),
            false,
        ));
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
    let pids = tree::descendants_of(std::process::id());
    for &pid in &pids {
        sys::kill(pid);
    }
    pids.len()
}

/// The supervisor's own measure: every process below it, plus the CPU time of those it has
/// already reaped.
fn own_tree_usage() -> tree::TreeUsage {
    let mut usage = tree::usage_of(&tree::descendants_of(std::process::id()));
    usage.cpu_time_ns += sys::children_usage().0.as_nanos() as u64;
    usage
}
