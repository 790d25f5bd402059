//! The sandbox's init (PID 1 inside): builds the root, starts the code's process, drops every
//! capability, reaps, and reports the code's exit status to the helper. When it returns, its
//! process exits and the kernel kills whatever else is left in the PID namespace.

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
    let result = (|| -> std::io::Result<i32> {
        // If the helper dies, so does the sandbox.
        isolation::die_with_parent()?;
        let mut byte = [0u8; 1];
        if go.read(&mut byte)? != 1 {
            return Ok(1);
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
        // The init needs no privilege to reap and report.
        isolation::lock_capabilities()?;
        isolation::clear_capabilities()?;
        isolation::set_no_new_privs()?;
        for fd in [0, 1, 2, REPORT_FD] {
            let _ = sys::point_at_dev_null(fd);
        }
        loop {
            match sys::wait_any_child()? {
                Some((pid, status)) if pid == code_pid => {
                    exit.write_all(&encode_status(status))?;
                    return Ok(0);
                }
                Some(_) => continue,
                None => {
                    exit.write_all(&encode_status(ExitStatus::Signal(libc::SIGKILL)))?;
                    return Ok(0);
                }
            }
        }
    })();
    match result {
        Ok(code) => code,
        Err(err) => {
            let _ = write!(errors, "{err}");
            1
        }
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
