//! The native sandbox helper: `code-exec __sandbox` (config on fd 6), a fresh single-threaded process
//! that builds one sandbox and runs the code in it.
//!
//! Three processes take part:
//! - the **helper** (this process, on the host side) reads the code, compiles the seccomp
//!   policy, clones the init into new user, PID, mount, network, IPC and UTS namespaces, maps the
//!   sandbox uid to an unprivileged host uid, moves the init into the run's cgroup, then watches:
//!   the control channel (kill), resource samples, and the init's exit; it reports on the
//!   status channel exactly like the `none` supervisor;
//! - the **init** (PID 1 inside) builds the minimal root, forks the code's process, drops every
//!   capability and reaps; when the code's main process ends it reports its status and exits,
//!   and the kernel kills everything left in the PID namespace with it;
//! - the **code's process** enters a new session, lowers its rlimits, drops capabilities for
//!   good, sets `no_new_privs`, installs the seccomp filter last, and execs the interpreter.
//!
//! Inherited fds are those of the supervisor: 0–2 the code's streams, 3 the runner's report
//! channel, 4 status, 5 control.

mod init;
mod root;
pub mod seccomp;
pub mod zygote;

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cgroup::RunCgroup;
use crate::supervisor::{CONTROL_FD, REPORT_FD, StatusChannel, SupervisorEvent};
use crate::sys::isolation::{self, Forked};
use crate::sys::{self, ExitStatus};

/// The argument that turns the `code-exec` binary into a sandbox helper.
pub const SANDBOX_ARG: &str = "__sandbox";
/// The code's uid and gid inside the sandbox.
pub const SANDBOX_UID: u32 = 1000;
pub const SANDBOX_HOSTNAME: &str = "sandbox";
/// Where the code runs and may write.
pub const WORK_DIR: &str = "/work";
/// Where the code file is, read-only.
pub const CODE_PATH: &str = "/code/main.py";

/// A host path made visible, read-only, at the same path inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exposure {
    Dir(PathBuf),
    File(PathBuf),
    /// A symbolic link recreated inside (e.g. `/lib -> usr/lib`).
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
}

/// Everything the helper needs, prepared and validated by the native backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Host path of the code, read by the helper before it isolates anything.
    pub code_file: PathBuf,
    /// An empty host directory the new root is mounted on.
    pub root_dir: PathBuf,
    pub exposed: Vec<Exposure>,
    /// Host uid and gid the sandbox uid maps to.
    pub outside_uid: u32,
    pub outside_gid: u32,
    pub cgroup: Option<RunCgroup>,
    /// Per-process fallbacks, used when no cgroup enforces memory or pids.
    pub rlimit_data_bytes: Option<u64>,
    pub rlimit_nproc: Option<u64>,
    /// Sizes of the private tmpfs mounts.
    pub tmp_bytes: u64,
    pub work_bytes: u64,
    /// A host directory to use as `/work` (a persistent sandbox's), instead of a fresh tmpfs.
    pub work_dir: Option<PathBuf>,
    pub sample_interval_ms: Option<u64>,
}

/// How the code's process starts the interpreter once it is locked down.
#[derive(Clone, Copy)]
pub(crate) enum CodeStart<'a> {
    /// `execve` of the configured program (a cold start).
    Exec,
    /// Runs the runner in the interpreter this process inherited from the zygote (which ran
    /// `site` already, or left it to the run).
    Embedded {
        python: &'a crate::sys::embed::EmbeddedPython,
        site_done: bool,
    },
}

/// Entry point of `code-exec __sandbox` (config on fd 6).
pub fn main(config_json: &str) -> i32 {
    let Some(status) = StatusChannel::take() else {
        return 101;
    };
    let prepared = serde_json::from_str::<SandboxConfig>(config_json)
        .map_err(|e| format!("bad sandbox config: {e}"))
        .and_then(|config| {
            let policy = seccomp::Policy::build().map_err(|e| e.to_string())?;
            Ok((config, policy))
        });
    let result =
        prepared.and_then(|(config, policy)| run(&config, &policy, &status, CodeStart::Exec));
    match result {
        Ok(()) => 0,
        Err(message) => {
            status.send(&SupervisorEvent::Failed { message });
            102
        }
    }
}

/// The helper's work in a process forked by the zygote, whose fds are already in place and
/// whose seccomp policy was compiled once, in the zygote.
pub(crate) fn run_forked(
    config: &SandboxConfig,
    policy: &seccomp::Policy,
    start: CodeStart<'_>,
) -> i32 {
    let Some(status) = StatusChannel::take() else {
        return 101;
    };
    match run(config, policy, &status, start) {
        Ok(()) => 0,
        Err(message) => {
            status.send(&SupervisorEvent::Failed { message });
            102
        }
    }
}

fn run(
    config: &SandboxConfig,
    policy: &seccomp::Policy,
    status: &StatusChannel,
    start: CodeStart<'_>,
) -> Result<(), String> {
    let control =
        sys::take_inherited_fd(CONTROL_FD).map_err(|e| format!("control channel missing: {e}"))?;
    let code = std::fs::read(&config.code_file)
        .map_err(|e| format!("cannot read {}: {e}", config.code_file.display()))?;
    let pipe = |what: &str| std::io::pipe().map_err(|e| format!("pipe for {what}: {e}"));
    let (go_r, mut go_w) = pipe("start")?;
    let (mut exit_r, exit_w) = pipe("exit status")?;
    let (mut err_r, err_w) = pipe("setup errors")?;

    let started = Instant::now();
    // This process has not started a thread: the clone is a plain fork into new namespaces.
    let init_pid = match isolation::fork_into_namespaces(isolation::SANDBOX_NAMESPACES)
        .map_err(|e| format!("{e} (are user namespaces enabled? see `code-exec doctor`)"))?
    {
        Forked::Child => {
            use std::os::fd::AsRawFd;
            let keep = [
                0,
                1,
                2,
                REPORT_FD,
                go_r.as_raw_fd(),
                exit_w.as_raw_fd(),
                err_w.as_raw_fd(),
            ];
            sys::close_fds_except(&keep);
            let code = init::run(config, &code, policy, start, go_r, exit_w, err_w);
            isolation::exit_now(code)
        }
        Forked::Parent(pid) => pid,
    };
    drop((go_r, exit_w, err_w));
    // Held until this helper exits: the sandbox's mount namespace (its root, /tmp, /work) is
    // then torn down in this process's exit, after the report, instead of in the init's exit
    // before it. Every process of the sandbox is gone by the report all the same.
    let _mount_namespace = File::open(format!("/proc/{init_pid}/ns/mnt")).ok();
    // The code's streams belong to the sandbox now.
    for fd in [0, 1, 2, REPORT_FD] {
        let _ = sys::point_at_dev_null(fd);
    }

    // A persistent sandbox's cgroup outlives runs: this run's figures are differences. A
    // one-shot run's cgroup is new, so there is nothing to subtract.
    let before = config
        .cgroup
        .as_ref()
        .filter(|_| config.work_dir.is_some())
        .map(|cg| {
            cg.reset_peak();
            cg.usage()
        });
    let setup = (|| -> Result<(), String> {
        // The init joins the run cgroup itself, first thing (see `RunCgroup::join_self`).
        write_id_maps(init_pid, config.outside_uid, config.outside_gid)?;
        use std::io::Write;
        go_w.write_all(b"g")
            .map_err(|e| format!("starting the sandbox: {e}"))
    })();
    if let Err(message) = setup {
        isolation::signal(init_pid, libc::SIGKILL);
        let _ = sys::wait_any_child();
        return Err(message);
    }
    drop(go_w);
    status.send(&SupervisorEvent::Started {
        pid: init_pid as u32,
    });

    let finished = std::sync::atomic::AtomicBool::new(false);
    let peak_sampled = std::sync::Mutex::new(0u64);
    std::thread::scope(|scope| {
        scope.spawn(|| watch_control(control, init_pid, &finished));
        if let Some(ms) = config.sample_interval_ms {
            let interval = Duration::from_millis(ms.max(1));
            let (finished, peak, cgroup) = (&finished, &peak_sampled, config.cgroup.as_ref());
            let measure = move || match cgroup {
                Some(cg) => {
                    let u = cg.usage();
                    (u.cpu_time_ns, u.memory_bytes, u.pids)
                }
                None => crate::supervisor::tree_usage(init_pid as u32),
            };
            let send = |event: &SupervisorEvent| status.send(event);
            scope.spawn(move || {
                crate::supervisor::sample_loop(started, interval, finished, peak, &measure, &send)
            });
        }
        let wait_for_init = || loop {
            match sys::wait_any_child() {
                Ok(Some((pid, status))) if pid == init_pid => break Some(status),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break None,
            }
        };
        // The init reports only once every other process of the sandbox is gone (it kills and
        // reaps them first): the report need not wait for its exit and the namespaces'
        // teardown. Without a report the init died — killed (timeout, output cap, caller gone)
        // or failed — and its exit, which takes the PID namespace with it, comes first. So it
        // does without a cgroup: the usage then comes from the reaped init's rusage.
        let mut raw = [0u8; 8];
        let reported = exit_r
            .read_exact(&mut raw)
            .ok()
            .and_then(|()| decode_status(raw));
        let reap_first = reported.is_none() || config.cgroup.is_none();
        let init_status = if reap_first { wait_for_init() } else { None };
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut setup_error = String::new();
        let _ = (&mut err_r)
            .take(64 * 1024)
            .read_to_string(&mut setup_error);
        let code_status = reported.or(match init_status {
            Some(ExitStatus::Signal(sig)) => Some(ExitStatus::Signal(sig)),
            _ => None,
        });
        let (cpu, peak, oom) = match &config.cgroup {
            Some(cgroup) => {
                let usage = cgroup.usage();
                let before = before.unwrap_or_default();
                (
                    Duration::from_nanos(usage.cpu_time_ns.saturating_sub(before.cpu_time_ns)),
                    usage.peak_memory_bytes,
                    usage.oom_kills > before.oom_kills,
                )
            }
            None => {
                let (cpu, max_rss_kb) = sys::children_usage();
                let sampled = peak_sampled.lock().map_or(0, |p| *p);
                (cpu, (max_rss_kb * 1024).max(sampled), false)
            }
        };
        // Anything written there means the sandbox or the interpreter's exec failed (the
        // channel closes on a successful exec): a SandboxError, whatever the status says.
        if !setup_error.is_empty() {
            status.send(&SupervisorEvent::Failed {
                message: format!("sandbox setup failed: {}", setup_error.trim()),
            });
            std::process::exit(102);
        }
        let (code, signal) = match code_status {
            Some(ExitStatus::Code(c)) => (Some(c), None),
            Some(ExitStatus::Signal(s)) => (None, Some(s)),
            None => (None, None),
        };
        status.send(&SupervisorEvent::Exit {
            code,
            signal,
            cpu_time_ms: cpu.as_secs_f64() * 1000.0,
            peak_memory_bytes: peak,
            memory_limit_hit: oom,
        });
        if !reap_first {
            wait_for_init();
        }
        // The control watcher may still block on its read; leave without joining it.
        std::process::exit(0)
    })
}

/// Maps the sandbox uid and gid to the host ids; `setgroups` is denied so that the
/// single-id mapping is allowed without privilege, and nothing inside can drop groups.
fn write_id_maps(pid: libc::pid_t, uid: u32, gid: u32) -> Result<(), String> {
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/{pid}/{file}"), text)
            .map_err(|e| format!("writing /proc/{pid}/{file}: {e}"))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{SANDBOX_UID} {uid} 1\n"))?;
    write("gid_map", format!("{SANDBOX_UID} {gid} 1\n"))
}

/// The code's exit status as the init sends it: kind (0 exited, 1 signalled) and value.
pub(crate) fn encode_status(status: ExitStatus) -> [u8; 8] {
    let (kind, value) = match status {
        ExitStatus::Code(c) => (0i32, c),
        ExitStatus::Signal(s) => (1i32, s),
    };
    let mut raw = [0u8; 8];
    raw[..4].copy_from_slice(&kind.to_le_bytes());
    raw[4..].copy_from_slice(&value.to_le_bytes());
    raw
}

fn decode_status(raw: [u8; 8]) -> Option<ExitStatus> {
    let kind = i32::from_le_bytes(raw[..4].try_into().ok()?);
    let value = i32::from_le_bytes(raw[4..].try_into().ok()?);
    match kind {
        0 => Some(ExitStatus::Code(value)),
        1 => Some(ExitStatus::Signal(value)),
        _ => None,
    }
}

/// Any byte on the control channel, or its end, kills the sandbox: SIGKILL to its init takes
/// every process of the PID namespace with it.
fn watch_control(
    control: std::os::fd::OwnedFd,
    init_pid: libc::pid_t,
    finished: &std::sync::atomic::AtomicBool,
) {
    let mut control = File::from(control);
    let mut byte = [0u8; 1];
    loop {
        match control.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => break,
        }
    }
    if !finished.load(std::sync::atomic::Ordering::SeqCst) {
        isolation::signal(init_pid, libc::SIGKILL);
    }
}
