//! The code's process (forked by the init): locks itself down for good — new session, lowered
//! rlimits, no capability, the sandbox uid, `no_new_privs`, fds 0–3 only, the seccomp filter
//! last — then starts the interpreter one of two ways: `execve` (a cold run) or, forked from
//! the zygote, the runner in the interpreter it inherited (what `execve` would have done,
//! without the interpreter's start-up). Runs in the code's process only.

use std::ffi::CString;

use crate::protocol::{SandboxConfig, exit_code, fds};
use crate::runner::Invocation;
use crate::sandbox::{SANDBOX_UID, WORK_DIR, seccomp::Policy};
use crate::sys::embed::EmbeddedPython;
use crate::sys::{self, isolation};

/// How the code's process starts the interpreter once it is locked down.
#[derive(Clone, Copy)]
pub(crate) enum CodeStart<'a> {
    /// `execve` of the configured program (a cold start), handing it the runner compiled
    /// ahead when there is one (the bytes of the `.pyc` the config names, read on the host).
    Exec { compiled_runner: Option<&'a [u8]> },
    /// Runs the runner in the interpreter this process inherited from the zygote (which ran
    /// `site` already, or left it to the run).
    Embedded {
        python: &'a EmbeddedPython,
        site_done: bool,
    },
}

/// The interpreter's argv and environment as C strings, prepared before the fork.
pub(crate) struct Exec {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// The fd of the compiled runner, which the interpreter runs as its script.
    runner_fd: Option<i32>,
}

impl Exec {
    /// With the compiled runner at `runner_fd` of the code's process, if there is one.
    pub(crate) fn prepare(config: &SandboxConfig, runner_fd: Option<i32>) -> std::io::Result<Exec> {
        let c = |s: &str| {
            CString::new(s).map_err(|_| std::io::Error::other(format!("NUL byte in {s:?}")))
        };
        let interpreter = &config.interpreter;
        let program = interpreter.program.to_string_lossy().into_owned();
        let mut argv = vec![c(&program)?];
        for arg in interpreter.args_with_runner_at(runner_fd) {
            argv.push(c(&arg)?);
        }
        let envp = interpreter
            .env
            .iter()
            .map(|(k, v)| c(&format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        Ok(Exec {
            program: c(&program)?,
            argv,
            envp,
            runner_fd,
        })
    }
}

/// The code process's steps: lock down, then start the interpreter. Returns only on
/// failure, with the error for the init's setup-error channel (`errors_fd`).
pub(crate) fn main(
    config: &SandboxConfig,
    policy: &Policy,
    exec: &Exec,
    start: CodeStart<'_>,
    errors_fd: i32,
) -> std::io::Error {
    if let Err(err) = lock_down(config, policy, errors_fd, exec.runner_fd) {
        return err;
    }
    match start {
        CodeStart::Exec { .. } => {
            // What the caller ignored or blocked stays with the caller (the interpreter
            // forked from the zygote started with the defaults: see `EmbeddedPython`).
            sys::reset_signals_to_defaults();
            isolation::exec(&exec.program, &exec.argv, &exec.envp)
        }
        CodeStart::Embedded { python, site_done } => {
            // The equivalent of a successful exec: the setup-error channel closes here.
            // SAFETY: `errors_fd` is the init's setup-error pipe, inherited through the fork;
            // its owner lives in the init's copy of memory, which this process leaves with
            // `exit_now` and never uses again.
            unsafe { sys::close_fd(errors_fd) };
            isolation::exit_now(run_embedded(python, &config.interpreter, site_done))
        }
    }
}

/// Everything that makes the process the sandbox's code, in this order; the seccomp filter
/// comes last, so that none of the calls before it needs to be allowed.
fn lock_down(
    config: &SandboxConfig,
    policy: &Policy,
    errors_fd: i32,
    runner_fd: Option<i32>,
) -> std::io::Result<()> {
    isolation::new_session()?;
    lower_rlimits(config)?;
    isolation::lock_capabilities()?;
    isolation::become_user(SANDBOX_UID, SANDBOX_UID)?;
    isolation::clear_capabilities()?;
    isolation::set_no_new_privs()?;
    std::env::set_current_dir(WORK_DIR)?;
    // The compiled runner's fd goes through the exec (the runner closes it first thing).
    let mut keep = vec![0, 1, 2, fds::REPORT, errors_fd];
    if let Some(fd) = runner_fd {
        sys::keep_across_exec(fd)?;
        keep.push(fd);
    }
    // SAFETY: this process is a fresh single-threaded fork; the fds it keeps are those it
    // goes on using, and no owner of a closed fd is used again (it execs or ends with
    // `exit_now`).
    unsafe { sys::close_fds_except(&keep) };
    policy.install()
}

/// No core files, 1024 open files, 64 KiB locked memory, files no larger than the private
/// filesystems; the per-process memory and process caps when no cgroup enforces them.
fn lower_rlimits(config: &SandboxConfig) -> std::io::Result<()> {
    let mut limits = vec![
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_NOFILE, 1024),
        (libc::RLIMIT_MEMLOCK, 64 * 1024),
        (libc::RLIMIT_FSIZE, config.work_bytes.max(config.tmp_bytes)),
    ];
    if let Some(bytes) = config.rlimit_data_bytes {
        limits.push((libc::RLIMIT_DATA, bytes));
    }
    if let Some(n) = config.rlimit_nproc {
        limits.push((libc::RLIMIT_NPROC, n));
    }
    for (resource, value) in limits {
        sys::lower_rlimit(resource, value)?;
    }
    Ok(())
}

/// What `execve` of the invocation would have done, in the inherited interpreter (locked
/// down, about to run user code). Returns the exit status.
fn run_embedded(python: &EmbeddedPython, invocation: &Invocation, site_in_zygote: bool) -> i32 {
    python.after_fork_child();
    let (Ok(argv), Ok(orig)) = (
        serde_json::to_string(&invocation.sys_argv()),
        serde_json::to_string(&invocation.orig_argv()),
    ) else {
        return 1;
    };
    // JSON string lists are Python list literals. `site` runs here, inside the sandbox, as it
    // runs at a cold interpreter's start-up.
    let site = if site_in_zygote { "" } else { "site.main()\n" };
    // `_code_exec_forked`: the runner ends the process itself (see its `_code_exec_end_forked`).
    let source =
        format!("sys.argv = {argv}\nsys.orig_argv = {orig}\n{site}_code_exec_forked = True\n");
    let Ok(source) = CString::new(source) else {
        return 1;
    };
    // The runner then runs as `-c` code runs: in __main__, at the bottom of the stack.
    let ran = python.run(&source) && python.run_compiled(c"_code_exec_runner");
    // The runner ended the run as a forked worker ends (see its `_code_exec_end_forked`) and
    // left the status: exit() flushes the C library's stdio buffers, as a normal exit does.
    if ran && let Some(status) = python.sys_int(c"_code_exec_exit_status") {
        std::process::exit(status as i32)
    }
    let flushed = python.finalize();
    match (ran, flushed) {
        (false, _) => 1,
        (true, false) => exit_code::FLUSH_FAILED,
        (true, true) => 0,
    }
}
