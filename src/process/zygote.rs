//! The zygote process: one long-lived process per tool (`code-exec __zygote`, config on fd 6,
//! its socket on fd 3) holding an interpreter that has done its core start-up (no `site`
//! unless trusted, nothing from site-packages, no user code) and the compiled seccomp policy.
//! For each run the host sends the sandbox config and the run's six fds; the zygote forks a
//! helper that builds the sandbox exactly as `code-exec __sandbox` does, and whose code
//! process, once locked down, runs the runner in the inherited interpreter instead of
//! executing a new one. What a run skips is the interpreter's core initialization and the
//! helper's own exec — about half of a cold run's cost. Runs in the zygote (and, until their
//! fork returns, its helpers). The host's handle is `backend::native::zygote`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::code::CodeStart;
use super::sandbox_helper;
use crate::protocol::zygote::{MAX_REQUEST, ZygoteReply};
use crate::protocol::{SandboxConfig, ZygoteConfig, exit_code, fds};
use crate::runner::RUNNER;
use crate::sandbox::seccomp;
use crate::sys::embed::EmbeddedPython;
use crate::sys::fdpass;
use crate::sys::isolation::{self, Forked};
use crate::sys::{self, ChildSetup};

/// How often the zygote reaps its helpers while no request comes.
const REAP_INTERVAL_MS: i32 = 200;

/// Runs once in the zygote, after the interpreter's core start-up: compiles the runner and
/// imports the stdlib modules runs need (`linecache` and `traceback` for pre-started ones);
/// none reads site-packages or holds random state.
fn prepare_source() -> String {
    let runner = serde_json::to_string(RUNNER).unwrap_or_default();
    // gc.freeze: the collector then never walks (and so never copies) the zygote's objects
    // in the forked runs.
    format!(
        "import os, sys, site, gc, linecache, traceback\n\
         _code_exec_runner = compile({runner}, '<string>', 'exec')\n\
         gc.freeze()\n"
    )
}

/// Entry point of `code-exec __zygote`.
pub(crate) fn main(config_json: &str) -> i32 {
    // The sealed copy this process was exec'd from has served: nothing of the runs gets it.
    // SAFETY: fd 7 was placed by the host only to exec this process; nothing here owns it.
    unsafe { sys::close_fd(fds::EXEC) };
    // SAFETY: fd 3 was placed by the host for this process alone; nothing else takes it.
    let Ok(socket) = (unsafe { sys::take_inherited_fd(fds::ZYGOTE_SOCKET) }) else {
        return exit_code::NO_STATUS_CHANNEL;
    };
    // No parent-death signal: it fires when the *thread* that started us ends, and the host
    // may start a zygote from any thread. The socket's end (the host process exited or dropped
    // its handle) is what ends the zygote.
    let (config, python, policy) = match start(config_json) {
        Ok(started) => started,
        Err(message) => {
            let _ = reply(socket.as_fd(), &ZygoteReply::Error(message), None);
            return 1;
        }
    };
    if reply(socket.as_fd(), &ZygoteReply::Ready, None).is_err() {
        return 1;
    }
    serve(socket.as_fd(), &config, &python, &policy)
}

/// The zygote's start-up, in order: its config, the interpreter (same release as the host's),
/// the runner prepared in it, the seccomp policy compiled.
fn start(config_json: &str) -> Result<(ZygoteConfig, EmbeddedPython, seccomp::Policy), String> {
    let config: ZygoteConfig =
        serde_json::from_str(config_json).map_err(|e| format!("bad zygote config: {e}"))?;
    let python =
        EmbeddedPython::initialize(&config.library, &config.program, config.site_in_zygote)?;
    let release = python.version().split_whitespace().next().unwrap_or("");
    if release != config.version {
        return Err(format!(
            "{} is Python {release}, the interpreter is {}",
            config.library.display(),
            config.version
        ));
    }
    let prepare = CString::new(prepare_source()).map_err(|_| "NUL byte in the runner")?;
    if !python.run(&prepare) {
        return Err("the interpreter could not prepare the runner".into());
    }
    let policy = seccomp::Policy::build().map_err(|e| e.to_string())?;
    Ok((config, python, policy))
}

/// Answers fork requests until the host is gone; returns the zygote's exit status.
fn serve(
    socket: BorrowedFd<'_>,
    config: &ZygoteConfig,
    python: &EmbeddedPython,
    policy: &seccomp::Policy,
) -> i32 {
    let mut buffer = vec![0u8; MAX_REQUEST];
    loop {
        reap_helpers();
        match fdpass::poll_readable(socket, REAP_INTERVAL_MS) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => return 1,
        }
        let (length, run_fds) = match fdpass::recv_with_fds(socket, &mut buffer) {
            Ok(Some(message)) => message,
            // The host is gone (or dropped its handle): so is the zygote.
            Ok(None) | Err(_) => return 0,
        };
        let sent = match fork_helper(python, policy, config, &buffer[..length], run_fds) {
            Ok((pid, pidfd)) => reply(
                socket,
                &ZygoteReply::Forked { pid: pid as u32 },
                Some(pidfd.as_fd()),
            ),
            Err(message) => reply(socket, &ZygoteReply::Error(message), None),
        };
        if sent.is_err() {
            return 1;
        }
    }
}

fn reply(
    socket: BorrowedFd<'_>,
    reply: &ZygoteReply,
    fd: Option<BorrowedFd<'_>>,
) -> std::io::Result<()> {
    let fds: Vec<i32> = fd.iter().map(|fd| fd.as_raw_fd()).collect();
    fdpass::send_with_fds(socket, &reply.encode(), &fds)
}

fn reap_helpers() {
    while let Ok(sys::ChildWait::Reaped(..)) = sys::try_wait_any_child() {}
}

/// Whether a run can use the zygote's interpreter: the same program with the same
/// environment (the runner is always the runner).
fn embeddable(config: &SandboxConfig, zygote: &ZygoteConfig) -> bool {
    config.interpreter.program == zygote.program && config.interpreter.env == zygote.env
}

/// Forks one helper for the run in `payload`; returns its pid and pidfd.
fn fork_helper(
    python: &EmbeddedPython,
    policy: &seccomp::Policy,
    zygote: &ZygoteConfig,
    payload: &[u8],
    run_fds: Vec<OwnedFd>,
) -> Result<(libc::pid_t, OwnedFd), String> {
    let config: SandboxConfig =
        serde_json::from_slice(payload).map_err(|e| format!("bad sandbox config: {e}"))?;
    let run_fds: [OwnedFd; 6] = run_fds
        .try_into()
        .map_err(|_| format!("a run needs exactly {} fds", fds::RUN.len()))?;
    // Sources above every target, so that moving them cannot clobber one another.
    let mut high = Vec::with_capacity(run_fds.len());
    for fd in &run_fds {
        high.push(sys::dup_at_least(fd.as_fd(), fds::HIGH).map_err(|e| e.to_string())?);
    }
    let setup = ChildSetup {
        fds: high
            .iter()
            .zip(fds::RUN)
            .map(|(fd, target)| (fd.as_raw_fd(), target))
            .collect(),
        close_from: Some((fds::CONTROL + 1) as u32),
        rlimits: Vec::new(),
        new_process_group: false,
    };
    let start = if embeddable(&config, zygote) {
        CodeStart::Embedded {
            python,
            site_done: zygote.site_in_zygote,
        }
    } else {
        CodeStart::Exec {
            compiled_runner: None,
        }
    };
    python.before_fork();
    // SAFETY: the zygote never starts a thread (tests/zygote.rs checks it stays
    // single-threaded), so the child's copy of memory holds no lock another thread owned.
    let forked = unsafe { isolation::fork() };
    if let Ok(Forked::Child) = forked {
        // A fresh single-threaded process: the helper.
        // SAFETY: this is the freshly forked child, single-threaded; the moved fds are the
        // run's, whose owners in this copy of memory are never used again (it ends with
        // `exit_now`).
        if unsafe { setup.apply_here() }.is_err() {
            isolation::exit_now(exit_code::FORKED_FDS_FAILED);
        }
        isolation::exit_now(sandbox_helper::main_forked(&config, policy, start));
    }
    python.after_fork_parent();
    match forked {
        Ok(Forked::Parent(pid)) => {
            // Not reaped before this call (only this loop reaps), so the pid is still its.
            fdpass::pidfd_open(pid)
                .map(|pidfd| (pid, pidfd))
                .map_err(|e| format!("pidfd_open: {e}"))
        }
        Ok(Forked::Child) => unreachable!("the child has exited above"),
        Err(e) => Err(format!("fork: {e}")),
    }
}
