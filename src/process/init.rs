//! The sandbox's init process (PID 1 inside, cloned by the helper): builds the root, starts
//! the code's process, drops every capability but CAP_KILL, reaps, and when the code's main
//! process ends kills and reaps every other process of the sandbox, then sends the helper the
//! code's exit status and exits. Runs in the init only.

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsRawFd;

use super::code::{self, CodeStart};
use crate::protocol::{self, SandboxConfig};
use crate::sandbox::{SANDBOX_HOSTNAME, root, seccomp::Policy};
use crate::sys::isolation::{self, Forked};
use crate::sys::{self, ExitStatus};

/// CAP_KILL: the one capability the init keeps, to end every process of the sandbox (they
/// run as the sandbox uid, the init as the helper's) before it reports.
const CAP_KILL: u32 = 5;

/// The init's ends of the pipes it shares with the helper.
pub(crate) struct Channels {
    /// [`protocol::GO`] comes here once the id maps are written.
    pub go: PipeReader,
    /// The code's exit status goes here.
    pub exit: PipeWriter,
    /// Setup failures go here, until the code's exec.
    pub errors: PipeWriter,
}

/// How the init came to be in the run's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CgroupEntry {
    /// The helper cloned it there (`CLONE_INTO_CGROUP`).
    ClonedInto,
    /// It joins the run's cgroup itself, if there is one, once the helper says go (v1, or a
    /// kernel before 5.7).
    JoinAfterGo,
}

/// Runs the init; returns its exit status. Setup failures are written to `errors`.
pub(crate) fn main(
    config: &SandboxConfig,
    cgroup: CgroupEntry,
    code: &[u8],
    policy: &Policy,
    start: CodeStart<'_>,
    channels: Channels,
) -> i32 {
    let Channels {
        go,
        exit,
        mut errors,
    } = channels;
    let code_pid = match set_up(config, cgroup, code, policy, start, go, &mut errors) {
        Ok(Some(pid)) => pid,
        Ok(None) => return 1,
        Err(err) => {
            let _ = write!(errors, "{err}");
            return 1;
        }
    };
    // Setup is over: the helper's setup-error channel ends with the code's exec.
    drop(errors);
    let status = reap_until_code_exits(code_pid);
    end_every_other_process();
    report(exit, status)
}

/// The init's setup, in order; returns the code process's pid (`None`: the helper went away
/// before saying go).
fn set_up(
    config: &SandboxConfig,
    cgroup: CgroupEntry,
    code: &[u8],
    policy: &Policy,
    start: CodeStart<'_>,
    go: PipeReader,
    errors: &mut PipeWriter,
) -> std::io::Result<Option<libc::pid_t>> {
    // If the helper dies, so does the sandbox.
    isolation::die_with_parent()?;
    if !wait_for_go(go)? {
        return Ok(None);
    }
    enter_run_cgroup(config, cgroup)?;
    isolation::set_hostname(SANDBOX_HOSTNAME)?;
    isolation::loopback_up()?;
    root::build(config, code)?;
    isolation::set_not_dumpable()?;
    let code_pid = fork_code_process(config, policy, start, errors)?;
    keep_only_cap_kill()?;
    protocol::release_code_streams();
    Ok(Some(code_pid))
}

/// Waits for the helper's [`protocol::GO`] (the id maps are written); `false` if it ended.
fn wait_for_go(mut go: PipeReader) -> std::io::Result<bool> {
    let mut byte = [0u8; 1];
    Ok(go.read(&mut byte)? == 1 && byte == *protocol::GO)
}

/// Before anything else runs here: join the run's cgroup unless the helper cloned this
/// process into it (with the host identity that owns the cgroup files), then enter a cgroup
/// namespace so the sandbox sees that cgroup as its root.
fn enter_run_cgroup(config: &SandboxConfig, entry: CgroupEntry) -> std::io::Result<()> {
    let Some(cgroup) = &config.cgroup else {
        return Ok(());
    };
    if entry == CgroupEntry::JoinAfterGo {
        cgroup
            .join_self()
            .map_err(|e| std::io::Error::other(format!("joining the run cgroup: {e}")))?;
    }
    isolation::unshare(libc::CLONE_NEWCGROUP)
}

/// Forks the code's process, which locks itself down and starts the interpreter.
fn fork_code_process(
    config: &SandboxConfig,
    policy: &Policy,
    start: CodeStart<'_>,
    errors: &mut PipeWriter,
) -> std::io::Result<libc::pid_t> {
    // The compiled runner, as a sealed file the interpreter opens again by its fd's path;
    // without it (or if it cannot be made) the runner's source goes after `-c`.
    let runner = match start {
        CodeStart::Exec {
            compiled_runner: Some(bytes),
        } => sys::memfd::sealed_bytes(c"code-exec-runner", bytes).ok(),
        _ => None,
    };
    let exec = code::Exec::prepare(config, runner.as_ref().map(|fd| fd.as_raw_fd()))?;
    // The C library's fork: the code's process (in which an interpreter forked from the
    // zygote goes on running) must know its own thread id, as a fresh process does.
    // SAFETY: the init is single-threaded (a fresh clone of the single-threaded helper).
    match unsafe { isolation::fork_as_libc_does() }? {
        Forked::Child => {
            let err = code::main(config, policy, &exec, start, errors.as_raw_fd());
            let _ = writeln!(errors, "starting the interpreter: {err}");
            isolation::exit_now(protocol::exit_code::EXEC_FAILED)
        }
        Forked::Parent(pid) => {
            drop(runner);
            Ok(pid)
        }
    }
}

/// Reaping and reporting need no privilege; ending the sandbox's processes needs CAP_KILL
/// over the sandbox's user namespace, and nothing else is kept.
fn keep_only_cap_kill() -> std::io::Result<()> {
    isolation::lock_capabilities()?;
    isolation::retain_capabilities(&[CAP_KILL])?;
    isolation::set_no_new_privs()
}

fn reap_until_code_exits(code_pid: libc::pid_t) -> ExitStatus {
    loop {
        match sys::wait_any_child() {
            Ok(Some((pid, status))) if pid == code_pid => return status,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return ExitStatus::Signal(libc::SIGKILL),
        }
    }
}

/// The code's main process has ended: so does everything it left, before the report, so
/// that a report means nothing of the sandbox runs any more (the init exits right after).
fn end_every_other_process() {
    sys::kill_all_others();
    while let Ok(Some(_)) = sys::wait_any_child() {}
}

fn report(mut exit: PipeWriter, status: ExitStatus) -> i32 {
    match exit.write_all(&protocol::encode_status(status)) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}
