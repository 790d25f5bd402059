//! The sandbox's init (PID 1 inside): builds the root, starts the code's process, drops every
//! capability but CAP_KILL, reaps, and when the code's main process ends kills and reaps every
//! other process of the sandbox, then reports the code's exit status to the helper and exits.

use std::ffi::CString;
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::AsRawFd;

use super::seccomp::Policy;
use super::{
    CodeStart, SANDBOX_HOSTNAME, SANDBOX_UID, SandboxConfig, WORK_DIR, encode_status, root,
};
use crate::supervisor::REPORT_FD;
use crate::sys::isolation::{self, Forked};
use crate::sys::{self, ExitStatus};

/// CAP_KILL: the one capability the init keeps, to end every process of the sandbox (they
/// run as the sandbox uid, the init as the helper's) before it reports.
const CAP_KILL: u32 = 5;

/// Runs the init; returns its exit status. Setup failures are written to `errors`.
pub(super) fn run(
    config: &SandboxConfig,
    code: &[u8],
    policy: &Policy,
    start: CodeStart<'_>,
    mut go: PipeReader,
    mut exit: PipeWriter,
    mut errors: PipeWriter,
) -> i32 {
    let setup = (|| -> std::io::Result<Option<libc::pid_t>> {
        // If the helper dies, so does the sandbox.
        isolation::die_with_parent()?;
        let mut byte = [0u8; 1];
        if go.read(&mut byte)? != 1 {
            return Ok(None);
        }
        drop(go);
        if let Some(cgroup) = &config.cgroup {
            // Before anything else runs here; still the host identity that owns the cgroup
            // files. Then the sandbox sees its cgroup as its cgroup root.
            cgroup
                .join_self()
                .map_err(|e| std::io::Error::other(format!("joining the run cgroup: {e}")))?;
            isolation::unshare(libc::CLONE_NEWCGROUP)?;
        }
        isolation::set_hostname(SANDBOX_HOSTNAME)?;
        isolation::loopback_up()?;
        root::build(config, code)?;
        isolation::set_not_dumpable()?;
        let exec = prepare_exec(config)?;
        let code_pid = match isolation::fork()? {
            Forked::Child => {
                let err = start_code(config, policy, &exec, start, errors.as_raw_fd());
                let _ = writeln!(errors, "starting the interpreter: {err}");
                isolation::exit_now(127)
            }
            Forked::Parent(pid) => pid,
        };
        // Reaping and reporting need no privilege; ending the sandbox's processes needs
        // CAP_KILL over the sandbox's user namespace, and nothing else is kept.
        isolation::lock_capabilities()?;
        isolation::retain_capabilities(&[CAP_KILL])?;
        isolation::set_no_new_privs()?;
        for fd in [0, 1, 2, REPORT_FD] {
            let _ = sys::point_at_dev_null(fd);
        }
        Ok(Some(code_pid))
    })();
    let code_pid = match setup {
        Ok(Some(pid)) => pid,
        Ok(None) => return 1,
        Err(err) => {
            let _ = write!(errors, "{err}");
            return 1;
        }
    };
    // Setup is over: the helper's setup-error channel ends with the code's exec.
    drop(errors);
    let status = loop {
        match sys::wait_any_child() {
            Ok(Some((pid, status))) if pid == code_pid => break status,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => break ExitStatus::Signal(libc::SIGKILL),
        }
    };
    // The code's main process has ended: so does everything it left, before the report, so
    // that a report means nothing of the sandbox runs any more (the init exits right after).
    isolation::kill_all_others();
    while let Ok(Some(_)) = sys::wait_any_child() {}
    match exit.write_all(&encode_status(status)) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// The interpreter's argv and environment, as C strings prepared before forking.
struct Exec {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

fn prepare_exec(config: &SandboxConfig) -> std::io::Result<Exec> {
    let c =
        |s: &str| CString::new(s).map_err(|_| std::io::Error::other(format!("NUL byte in {s:?}")));
    let program = config.program.to_string_lossy().into_owned();
    let mut argv = vec![c(&program)?];
    for arg in &config.args {
        argv.push(c(arg)?);
    }
    let envp = config
        .env
        .iter()
        .map(|(k, v)| c(&format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    Ok(Exec {
        program: c(&program)?,
        argv,
        envp,
    })
}

/// In the code's process: lower rlimits, drop privileges for good, install the seccomp
/// filter last, then exec the interpreter (or run the zygote's). Returns only on failure.
fn start_code(
    config: &SandboxConfig,
    policy: &Policy,
    exec: &Exec,
    start: CodeStart<'_>,
    errors_fd: i32,
) -> std::io::Error {
    let setup = || -> std::io::Result<()> {
        isolation::new_session()?;
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
        isolation::lock_capabilities()?;
        isolation::become_user(SANDBOX_UID, SANDBOX_UID)?;
        isolation::clear_capabilities()?;
        isolation::set_no_new_privs()?;
        std::env::set_current_dir(WORK_DIR)?;
        sys::close_fds_except(&[0, 1, 2, REPORT_FD, errors_fd]);
        policy.install()
    };
    if let Err(err) = setup() {
        return err;
    }
    match start {
        CodeStart::Exec => isolation::exec(&exec.program, &exec.argv, &exec.envp),
        CodeStart::Embedded { python, site_done } => {
            // The equivalent of a successful exec: the setup-error channel closes here.
            sys::close_fd(errors_fd);
            isolation::exit_now(super::zygote::run_code(
                python,
                &config.program,
                &config.args,
                site_done,
            ))
        }
    }
}
