//! The zygote: one long-lived process per tool (`code-exec __zygote`, config on fd 6, its
//! socket on fd 3) holding an interpreter that has done its core start-up (no `site`, nothing
//! from site-packages, no user code) and the compiled seccomp policy. For each run the host
//! sends the sandbox config and the run's six fds; the zygote forks a helper that builds the
//! sandbox exactly as `code-exec __sandbox` does, and whose code process, once locked down,
//! runs the runner in the inherited interpreter instead of executing a new one: `site` runs
//! there, inside the sandbox, then the code. What a run skips is the interpreter's core
//! initialization and the helper's own exec — about half of a cold run's cost.
//!
//! Protocol (one `SOCK_SEQPACKET` message each): zygote → host `R` once ready, or `E<why>`;
//! host → zygote the config JSON with fds [stdin, stdout, stderr, report, status, control];
//! zygote → host `P<pid>` with the helper's pidfd, or `E<why>`.
//! This module holds both ends.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{CodeStart, SandboxConfig, WORK_DIR, seccomp};
use crate::backend::supervised::{RUNNER, code_environment, config_fd};
use crate::interpreter::Interpreter;
use crate::supervisor::{CONFIG_FD, CONTROL_FD, REPORT_FD, STATUS_FD};
use crate::sys::embed::EmbeddedPython;
use crate::sys::fdpass;
use crate::sys::isolation::{self, Forked};
use crate::sys::{self, ChildSetup};

/// The argument that turns the `code-exec` binary into a zygote.
pub const ZYGOTE_ARG: &str = "__zygote";
/// The zygote's end of its socket.
const ZYGOTE_FD: RawFd = 3;
/// The interpreter's arguments before the runner's own (see `interpreter_args`).
const INTERPRETER_FLAGS: [&str; 3] = ["-I", "-u", "-c"];
/// The largest config message accepted, and the largest reply.
const MAX_MESSAGE: usize = 1 << 20;
const REPLY_MAX: usize = 16 * 1024;
/// How long the zygote may take to start, and to answer a fork request.
const START_TIMEOUT_MS: i32 = 30_000;
const FORK_TIMEOUT_MS: i32 = 10_000;

#[derive(Debug, Serialize, Deserialize)]
struct ZygoteConfig {
    /// What a cold run executes (`sys.executable` and the prefix derive from it).
    program: PathBuf,
    library: PathBuf,
    /// `sys.version.split()[0]` of the interpreter: the library must be the same release.
    version: String,
    /// The zygote's environment, which must be the runs' (`os.environ` is read at start-up).
    env: Vec<(String, String)>,
    /// Whether `site` runs in the zygote (every file it reads is as trusted as the interpreter
    /// itself, see [`site_is_trusted`]), or in each run, inside the sandbox.
    site_in_zygote: bool,
}

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
pub fn main(config_json: &str) -> i32 {
    let Ok(socket) = sys::take_inherited_fd(ZYGOTE_FD) else {
        return 101;
    };
    let fail = |message: String| {
        let _ = send_error(socket.as_fd(), &message);
        1
    };
    // No parent-death signal: it fires when the *thread* that started us ends, and the host
    // may start a zygote from any thread. The socket's end (the host process exited or dropped
    // its handle) is what ends the zygote.
    let config: ZygoteConfig = match serde_json::from_str(config_json) {
        Ok(config) => config,
        Err(e) => return fail(format!("bad zygote config: {e}")),
    };
    let python =
        match EmbeddedPython::initialize(&config.library, &config.program, config.site_in_zygote) {
            Ok(python) => python,
            Err(e) => return fail(e),
        };
    let release = python.version().split_whitespace().next().unwrap_or("");
    if release != config.version {
        return fail(format!(
            "{} is Python {release}, the interpreter is {}",
            config.library.display(),
            config.version
        ));
    }
    let Ok(prepare) = CString::new(prepare_source()) else {
        return fail("NUL byte in the runner".into());
    };
    if !python.run(&prepare) {
        return fail("the interpreter could not prepare the runner".into());
    }
    let policy = match seccomp::Policy::build() {
        Ok(policy) => policy,
        Err(e) => return fail(e.to_string()),
    };
    if fdpass::send_with_fds(socket.as_fd(), b"R", &[]).is_err() {
        return 1;
    }
    let mut buffer = vec![0u8; MAX_MESSAGE];
    loop {
        reap_helpers();
        match fdpass::poll_readable(socket.as_fd(), 200) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => return 1,
        }
        let (length, fds) = match fdpass::recv_with_fds(socket.as_fd(), &mut buffer) {
            Ok(Some(message)) => message,
            // The host is gone (or dropped its handle): so is the zygote.
            Ok(None) | Err(_) => return 0,
        };
        let sent = match fork_helper(&python, &policy, &config, &buffer[..length], fds) {
            Ok((pid, pidfd)) => fdpass::send_with_fds(
                socket.as_fd(),
                format!("P{pid}").as_bytes(),
                &[pidfd.as_raw_fd()],
            ),
            Err(message) => send_error(socket.as_fd(), &message),
        };
        if sent.is_err() {
            return 1;
        }
    }
}

/// The zygote's `E<why>` answer (see the module comment).
fn send_error(socket: std::os::fd::BorrowedFd<'_>, message: &str) -> std::io::Result<()> {
    fdpass::send_with_fds(socket, format!("E{message}").as_bytes(), &[])
}

/// What an answer that is not the expected one says: the text of an `E<why>`, or the answer.
fn error_of(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply.strip_prefix(b"E").unwrap_or(reply)).into_owned()
}

fn reap_helpers() {
    while let Ok(sys::ChildWait::Reaped(..)) = sys::try_wait_any_child() {}
}

/// Whether a run can use the zygote's interpreter: the runner, started the standard way, by
/// the same program with the same environment.
fn embeddable(config: &SandboxConfig, zygote: &ZygoteConfig) -> bool {
    config.program == zygote.program
        && config.env == zygote.env
        && config.args.len() >= 4
        && config.args[..3] == INTERPRETER_FLAGS
        && config.args[3] == RUNNER
}

/// Forks one helper for the run in `message`; returns its pid and pidfd.
fn fork_helper(
    python: &EmbeddedPython,
    policy: &seccomp::Policy,
    zygote: &ZygoteConfig,
    payload: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(libc::pid_t, OwnedFd), String> {
    let config: SandboxConfig =
        serde_json::from_slice(payload).map_err(|e| format!("bad sandbox config: {e}"))?;
    let fds: [OwnedFd; 6] = fds
        .try_into()
        .map_err(|_| "a run needs exactly six fds".to_string())?;
    // Sources above every target, so that moving them cannot clobber one another.
    let mut high = Vec::with_capacity(6);
    for fd in &fds {
        high.push(sys::dup_at_least(fd.as_fd(), 10).map_err(|e| e.to_string())?);
    }
    let targets = [0, 1, 2, REPORT_FD, STATUS_FD, CONTROL_FD];
    let setup = ChildSetup {
        fds: high
            .iter()
            .zip(targets)
            .map(|(fd, target)| (fd.as_raw_fd(), target))
            .collect(),
        close_from: Some((CONTROL_FD + 1) as u32),
        rlimits: Vec::new(),
        new_process_group: false,
    };
    let start = if embeddable(&config, zygote) {
        CodeStart::Embedded {
            python,
            site_done: zygote.site_in_zygote,
        }
    } else {
        CodeStart::Exec
    };
    python.before_fork();
    let forked = isolation::fork();
    if let Ok(Forked::Child) = forked {
        // A fresh single-threaded process: the helper.
        if setup.apply_here().is_err() {
            isolation::exit_now(103);
        }
        isolation::exit_now(super::run_forked(&config, policy, start));
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

/// In the code's process (locked down, about to run user code): what `execve` of
/// `program args...` would have done, in the inherited interpreter. Returns the exit status.
pub(crate) fn run_code(
    python: &EmbeddedPython,
    program: &Path,
    args: &[String],
    site_in_zygote: bool,
) -> i32 {
    python.after_fork_child();
    let argv: Vec<&str> = std::iter::once("-c")
        .chain(args[4..].iter().map(String::as_str))
        .collect();
    let orig: Vec<String> = std::iter::once(program.to_string_lossy().into_owned())
        .chain(args.iter().cloned())
        .collect();
    let (Ok(argv), Ok(orig)) = (serde_json::to_string(&argv), serde_json::to_string(&orig)) else {
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
    let flushed = python.finalize();
    match (ran, flushed) {
        (false, _) => 1,
        (true, false) => 120,
        (true, true) => 0,
    }
}

/// The host's handle on a running zygote. Dropping it ends the zygote.
#[derive(Debug)]
pub struct Zygote {
    socket: Mutex<OwnedFd>,
    process: Mutex<Child>,
    library: PathBuf,
    site_in_zygote: bool,
}

/// A helper forked by the zygote: not this process's child, so it is watched through its pidfd.
#[derive(Debug)]
pub struct ForkedHelper {
    pub pid: u32,
    pub pidfd: OwnedFd,
}

impl Zygote {
    /// Starts a zygote for `interpreter`; an error says why this host cannot have one (no
    /// shared libpython of the same release, for instance), and runs then start cold.
    pub fn start(helper: &Path, interpreter: &Interpreter) -> Result<Zygote, String> {
        let library = find_libpython(interpreter).ok_or_else(|| {
            format!(
                "no shared libpython{} next to {}",
                interpreter.version(),
                interpreter.path().display()
            )
        })?;
        let (version, site_dirs) = describe(interpreter)?;
        let config = ZygoteConfig {
            program: interpreter.program().to_owned(),
            version,
            library: library.clone(),
            env: code_environment(WORK_DIR, "/tmp"),
            site_in_zygote: site_is_trusted(interpreter, &site_dirs).is_ok(),
        };
        let json = serde_json::to_string(&config).map_err(|e| e.to_string())?;
        let (host_end, zygote_end) = fdpass::seqpacket_pair().map_err(|e| e.to_string())?;
        let zygote_hi = sys::dup_at_least(zygote_end.as_fd(), 10).map_err(|e| e.to_string())?;
        let config_hi = config_fd(&json).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(helper);
        cmd.arg(ZYGOTE_ARG)
            .env_clear()
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        ChildSetup {
            fds: vec![
                (zygote_hi.as_raw_fd(), ZYGOTE_FD),
                (config_hi.as_raw_fd(), CONFIG_FD),
            ],
            close_from: Some((CONFIG_FD + 1) as u32),
            rlimits: Vec::new(),
            new_process_group: true,
        }
        .apply(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", helper.display()))?;
        drop((zygote_end, zygote_hi, config_hi));
        let ready = fdpass::poll_readable(host_end.as_fd(), START_TIMEOUT_MS)
            .map_err(|e| e.to_string())
            .and_then(|readable| {
                if !readable {
                    return Err("the zygote did not start within 30 s".to_string());
                }
                let mut reply = [0u8; REPLY_MAX];
                match fdpass::recv_with_fds(host_end.as_fd(), &mut reply) {
                    Ok(Some((n, _))) if reply[..n] == *b"R" => Ok(()),
                    Ok(Some((n, _))) => Err(error_of(&reply[..n])),
                    Ok(None) => Err("the zygote ended while starting".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            });
        if let Err(why) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(why);
        }
        Ok(Zygote {
            socket: Mutex::new(host_end),
            process: Mutex::new(child),
            library,
            site_in_zygote: config.site_in_zygote,
        })
    }

    /// The libpython the zygote runs.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Whether `site` ran in the zygote (else each run runs it, inside its sandbox).
    pub fn site_in_zygote(&self) -> bool {
        self.site_in_zygote
    }

    /// Has the zygote fork a helper for one run with its six fds (see the module comment).
    pub fn fork_helper(&self, config_json: &str, fds: &[RawFd; 6]) -> Result<ForkedHelper, String> {
        let socket = self
            .socket
            .lock()
            .map_err(|_| "the zygote's socket is poisoned".to_string())?;
        fdpass::send_with_fds(socket.as_fd(), config_json.as_bytes(), fds)
            .map_err(|e| format!("the zygote is gone: {e}"))?;
        if !fdpass::poll_readable(socket.as_fd(), FORK_TIMEOUT_MS).map_err(|e| e.to_string())? {
            return Err("the zygote did not answer within 10 s".into());
        }
        let mut reply = [0u8; REPLY_MAX];
        match fdpass::recv_with_fds(socket.as_fd(), &mut reply) {
            Ok(Some((n, mut fds))) => {
                let reply = &reply[..n];
                if let (Some(pid), Some(pidfd)) = (reply.strip_prefix(b"P"), fds.pop()) {
                    let pid = std::str::from_utf8(pid)
                        .ok()
                        .and_then(|p| p.parse().ok())
                        .ok_or("the zygote sent a bad pid")?;
                    return Ok(ForkedHelper { pid, pidfd });
                }
                Err(error_of(reply))
            }
            Ok(None) => Err("the zygote ended".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if let Ok(mut child) = self.process.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The shared libpython of the interpreter's installation: beside it in `<prefix>/lib` (a
/// `--enable-shared` build), or in the multiarch directory of a distribution's `/usr`.
fn find_libpython(interpreter: &Interpreter) -> Option<PathBuf> {
    let prefix = interpreter.path().parent()?.parent()?;
    let name = format!("libpython{}.so.1.0", interpreter.version());
    [
        prefix.join("lib").join(&name),
        prefix.join("lib/x86_64-linux-gnu").join(&name),
    ]
    .into_iter()
    .find(|candidate| candidate.is_file())
}

/// Whether `site` may run in the zygote, outside any sandbox: only if everything it reads —
/// the directories on the interpreter's path and its site directories, the `.pth` files and
/// `sitecustomize`/`usercustomize` modules in them, a virtual environment's `pyvenv.cfg` —
/// belongs to root or to this user and is writable by nobody else, i.e. is as trusted as the
/// interpreter the host runs anyway. Otherwise each run runs `site` inside its sandbox.
fn site_is_trusted(interpreter: &Interpreter, dirs: &[PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = sys::effective_uid();
    let check = |path: &Path| -> Result<(), String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if (meta.uid() == 0 || meta.uid() == me) && meta.mode() & 0o022 == 0 {
            Ok(())
        } else {
            Err(format!(
                "{} is owned by uid {} with mode {:o}",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ))
        }
    };
    if let Some(venv) = interpreter.venv() {
        check(venv)?;
        check(&venv.join("pyvenv.cfg"))?;
    }
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        check(dir)?;
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".pth")
                || name.starts_with("sitecustomize")
                || name.starts_with("usercustomize")
            {
                check(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// What the interpreter says of itself without running `site`: its release
/// (`sys.version.split()[0]`) and the directories `site` would read (its path and site
/// directories; for a virtual environment, the environment's too).
fn describe(interpreter: &Interpreter) -> Result<(String, Vec<PathBuf>), String> {
    const PROBE: &str = "import json, site, sys\n\
        print(json.dumps([sys.version.split()[0], sys.path + site.getsitepackages()]))";
    let program = interpreter.program();
    let out = Command::new(program)
        .args(["-I", "-S", "-c", PROBE])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let (release, mut dirs): (String, Vec<PathBuf>) = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{} did not describe itself: {e}", program.display()))?;
    if let Some(venv) = interpreter.venv() {
        let version = interpreter.version();
        dirs.push(
            venv.join("lib")
                .join(format!("python{}.{}", version.major, version.minor))
                .join("site-packages"),
        );
    }
    Ok((release, dirs))
}
