//! The sandbox helper process: `code-exec __sandbox` (config on fd 6, started cold) or a
//! process forked by the zygote (fds in place, seccomp policy inherited). A fresh
//! single-threaded process on the host side of the namespaces that builds one sandbox: it
//! reads the code, clones the init into new user, PID, mount, network, IPC and UTS
//! namespaces, maps the sandbox uid to an unprivileged host uid, lets the init go, then
//! watches — the control channel (kill), resource samples, the init's status record — and
//! reports on the status channel exactly as the `none` supervisor does. Runs in the helper.

use std::fs::File;
use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::code::CodeStart;
use super::{init, tree};
use crate::cgroup::CgroupUsage;
use crate::protocol::{self, SandboxConfig, StatusChannel, StatusEvent, exit_code, fds};
use crate::sandbox::{SANDBOX_UID, seccomp};
use crate::sys::isolation::{self, Forked};
use crate::sys::{self, ExitStatus};

/// How much of the init's setup-error text is read.
const SETUP_ERROR_CAP: u64 = 64 * 1024;

/// Entry point of `code-exec __sandbox`: the cold start, which compiles the policy itself.
pub(crate) fn main(config_json: &str) -> i32 {
    let Some(status) = StatusChannel::take() else {
        return exit_code::NO_STATUS_CHANNEL;
    };
    let config = match serde_json::from_str::<SandboxConfig>(config_json) {
        Ok(config) => config,
        Err(e) => return fail(&status, format!("bad sandbox config: {e}")),
    };
    let policy = match seccomp::Policy::build() {
        Ok(policy) => policy,
        Err(e) => return fail(&status, e.to_string()),
    };
    // Read on the host, like the code; without it the interpreter compiles the runner.
    let compiled_runner = config
        .interpreter
        .compiled_runner
        .as_deref()
        .and_then(protocol::read_compiled_runner);
    let start = CodeStart::Exec {
        compiled_runner: compiled_runner.as_deref(),
    };
    run(&config, &policy, &status, start)
}

/// The helper's work in a process forked by the zygote, whose fds are already in place and
/// whose seccomp policy was compiled once, in the zygote.
pub(crate) fn main_forked(
    config: &SandboxConfig,
    policy: &seccomp::Policy,
    start: CodeStart<'_>,
) -> i32 {
    let Some(status) = StatusChannel::take() else {
        return exit_code::NO_STATUS_CHANNEL;
    };
    run(config, policy, &status, start)
}

fn fail(status: &StatusChannel, message: String) -> i32 {
    status.send(&StatusEvent::Failed { message });
    exit_code::SETUP_FAILED
}

/// The helper's ends of the pipes it shares with the init.
struct InitChannels {
    /// helper → init: [`protocol::GO`] once the id maps are written.
    go: PipeWriter,
    /// init → helper: the code's exit status ([`protocol::encode_status`]).
    exit: PipeReader,
    /// init → helper: text of a setup failure; closes with the code's exec.
    setup_errors: PipeReader,
}

/// The helper's steps, in order; the watch at the end exits the process.
fn run(
    config: &SandboxConfig,
    policy: &seccomp::Policy,
    status: &StatusChannel,
    start: CodeStart<'_>,
) -> i32 {
    let control = match take_control_channel() {
        Ok(control) => control,
        Err(message) => return fail(status, message),
    };
    // A persistent sandbox's /work held in namespaces of its own: build the sandbox there.
    if let Some(holder) = config.work_holder
        && let Err(e) =
            isolation::enter_user_and_mount_namespaces_of(holder.pid, holder.start_ticks)
    {
        return fail(
            status,
            format!("entering the work directory's namespaces: {e}"),
        );
    }
    let code = match read_code(config) {
        Ok(code) => code,
        Err(message) => return fail(status, message),
    };
    let started = Instant::now();
    let (init_pid, channels) = match clone_init(config, &code, policy, start) {
        Ok(cloned) => cloned,
        Err(message) => return fail(status, message),
    };
    // Held until this helper exits: the sandbox's mount namespace (its root, /tmp, /work) is
    // then torn down in this process's exit, after the report, instead of in the init's exit
    // before it. Every process of the sandbox is gone by the report all the same.
    let _mount_namespace = File::open(format!("/proc/{init_pid}/ns/mnt")).ok();
    protocol::release_code_streams();
    let before = persistent_baseline(config);
    let InitChannels {
        go,
        exit,
        setup_errors,
    } = channels;
    if let Err(message) = let_init_go(init_pid, config, go) {
        sys::kill(init_pid as u32);
        let _ = sys::wait_any_child();
        return fail(status, message);
    }
    status.send(&StatusEvent::Started {
        pid: init_pid as u32,
    });
    let watch = Watch {
        config,
        init_pid,
        started,
        before,
        status,
    };
    watch.run(control, exit, setup_errors)
}

fn take_control_channel() -> Result<OwnedFd, String> {
    // SAFETY: fd 5 was placed for this process alone (by the host's spawn, or by the zygote's
    // fork), and nothing else in this process has taken it.
    unsafe { sys::take_inherited_fd(fds::CONTROL) }
        .map_err(|e| format!("control channel missing: {e}"))
}

/// The code, read before anything is isolated (the path is the host's).
fn read_code(config: &SandboxConfig) -> Result<Vec<u8>, String> {
    std::fs::read(&config.code_file)
        .map_err(|e| format!("cannot read {}: {e}", config.code_file.display()))
}

/// Clones the init into the sandbox's new namespaces, with the pipes it shares with us.
fn clone_init(
    config: &SandboxConfig,
    code: &[u8],
    policy: &seccomp::Policy,
    start: CodeStart<'_>,
) -> Result<(libc::pid_t, InitChannels), String> {
    let pipe = |what: &str| std::io::pipe().map_err(|e| format!("pipe for {what}: {e}"));
    let (go_r, go_w) = pipe("start")?;
    let (exit_r, exit_w) = pipe("exit status")?;
    let (err_r, err_w) = pipe("setup errors")?;
    let (forked, cgroup) = fork_init(config)?;
    match forked {
        Forked::Child => {
            let keep = [
                0,
                1,
                2,
                fds::REPORT,
                go_r.as_raw_fd(),
                exit_w.as_raw_fd(),
                err_w.as_raw_fd(),
            ];
            // SAFETY: the init is a fresh single-threaded fork; the fds it keeps are owned
            // by the values it goes on using, and no owner of a closed fd is used again
            // (the init ends with `exit_now`, running no destructor).
            unsafe { sys::close_fds_except(&keep) };
            let channels = init::Channels {
                go: go_r,
                exit: exit_w,
                errors: err_w,
            };
            let status = init::main(config, cgroup, code, policy, start, channels);
            isolation::exit_now(status)
        }
        Forked::Parent(pid) => Ok((
            pid,
            InitChannels {
                go: go_w,
                exit: exit_r,
                setup_errors: err_r,
            },
        )),
    }
}

/// Forks the init into the sandbox's namespaces and, on cgroup v2, straight into the run's
/// cgroup (`CLONE_INTO_CGROUP`): a process that joins afterwards through `cgroup.procs` takes
/// the kernel's thread-group lock for writing, which costs an RCU grace period (~8 ms here,
/// `scripts/cgroup-join.py measure`). Without that clone (v1, or a kernel before 5.7) the init
/// joins the cgroup itself.
fn fork_init(config: &SandboxConfig) -> Result<(Forked, init::CgroupEntry), String> {
    let target = match config.cgroup.as_ref().and_then(|c| c.open_clone_target()) {
        Some(opened) => Some(opened.map_err(|e| format!("opening the run cgroup: {e}"))?),
        None => None,
    };
    let clone_failed =
        |e: std::io::Error| format!("{e} (are user namespaces enabled? see `code-exec doctor`)");
    if let Some(target) = &target {
        // SAFETY: this process has not started a thread (a fresh exec, or a fresh fork of the
        // single-threaded zygote), so the child's copy holds no lock another thread owned.
        let cloned = unsafe {
            isolation::fork_into_namespaces_and_cgroup(
                isolation::SANDBOX_NAMESPACES,
                target.as_fd(),
            )
        }
        .map_err(clone_failed)?;
        if let Some(forked) = cloned {
            return Ok((forked, init::CgroupEntry::ClonedInto));
        }
    }
    // SAFETY: as above, this process is single-threaded.
    let forked = unsafe { isolation::fork_into_namespaces(isolation::SANDBOX_NAMESPACES) }
        .map_err(clone_failed)?;
    Ok((forked, init::CgroupEntry::JoinAfterGo))
}

/// A persistent sandbox's cgroup outlives runs: this run's figures are differences. A
/// one-shot run's cgroup is new, so there is nothing to subtract.
fn persistent_baseline(config: &SandboxConfig) -> Option<CgroupUsage> {
    let cgroup = config
        .cgroup
        .as_ref()
        .filter(|_| config.work_dir.is_some())?;
    cgroup.reset_peak();
    Some(cgroup.usage())
}

/// Maps the sandbox uid and gid to the host ids and sends the init [`protocol::GO`]; the
/// init enters its cgroup namespace (and, when it was not cloned into it, joins the run's
/// cgroup) first thing.
fn let_init_go(pid: libc::pid_t, config: &SandboxConfig, mut go: PipeWriter) -> Result<(), String> {
    write_id_maps(pid, config.outside_uid, config.outside_gid)?;
    go.write_all(protocol::GO)
        .map_err(|e| format!("starting the sandbox: {e}"))
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

/// The running sandbox, as the helper watches it.
struct Watch<'a> {
    config: &'a SandboxConfig,
    init_pid: libc::pid_t,
    started: Instant,
    before: Option<CgroupUsage>,
    status: &'a StatusChannel,
}

impl Watch<'_> {
    /// Watches to the end and reports; exits the process.
    fn run(&self, control: OwnedFd, mut exit: PipeReader, setup_errors: PipeReader) -> ! {
        let watch = tree::RunWatch::default();
        let measure = || self.measure();
        std::thread::scope(|scope| {
            let sampling = tree::Sampling {
                started: self.started,
                interval_ms: self.config.sample_interval_ms,
                measure: &measure,
                status: self.status,
            };
            // SIGKILL to the init takes every process of the PID namespace with it.
            watch.spawn(scope, control, || sys::kill(self.init_pid as u32), sampling);
            // The init reports only once every other process of the sandbox is gone (it
            // kills and reaps them first): the report need not wait for its exit and the
            // namespaces' teardown. Without a report the init died — killed (timeout, output
            // cap, host gone) or failed — and its exit, which takes the PID namespace with
            // it, comes first. So it does without a cgroup: the usage then comes from the
            // reaped init's rusage.
            let reported = read_exit_record(&mut exit);
            let reap_first = reported.is_none() || self.config.cgroup.is_none();
            let init_status = if reap_first {
                self.wait_for_init()
            } else {
                None
            };
            let peak_sampled = watch.finish();
            let setup_error = read_setup_errors(setup_errors);
            let code_status = reported.or(match init_status {
                Some(ExitStatus::Signal(sig)) => Some(ExitStatus::Signal(sig)),
                _ => None,
            });
            self.report(code_status, setup_error, peak_sampled);
            if !reap_first {
                self.wait_for_init();
            }
            // The control watcher may still block on its read; leave without joining it.
            std::process::exit(0)
        })
    }

    /// The sandbox's usage now: its cgroup's, else the init's process tree.
    fn measure(&self) -> tree::TreeUsage {
        match &self.config.cgroup {
            Some(cg) => {
                let u = cg.usage();
                tree::TreeUsage {
                    cpu_time_ns: u.cpu_time_ns,
                    memory_bytes: u.memory_bytes,
                    alive: u.pids,
                }
            }
            None => tree::tree_usage(self.init_pid as u32),
        }
    }

    fn wait_for_init(&self) -> Option<ExitStatus> {
        loop {
            match sys::wait_any_child() {
                Ok(Some((pid, status))) if pid == self.init_pid => return Some(status),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Sends `Exit` (or `Failed` when the init wrote a setup error) with the run's usage.
    fn report(&self, code_status: Option<ExitStatus>, setup_error: String, peak_sampled: u64) {
        let (cpu, peak, oom) = match &self.config.cgroup {
            Some(cgroup) => {
                let usage = cgroup.usage();
                let before = self.before.unwrap_or_default();
                (
                    Duration::from_nanos(usage.cpu_time_ns.saturating_sub(before.cpu_time_ns)),
                    usage.peak_memory_bytes,
                    usage.oom_kills > before.oom_kills,
                )
            }
            None => {
                let (cpu, max_rss_kb) = sys::children_usage();
                (cpu, (max_rss_kb * 1024).max(peak_sampled), false)
            }
        };
        // Anything written there means the sandbox or the interpreter's exec failed (the
        // channel closes on a successful exec): a SandboxError, whatever the status says.
        if !setup_error.is_empty() {
            self.status.send(&StatusEvent::Failed {
                message: format!("sandbox setup failed: {}", setup_error.trim()),
            });
            std::process::exit(exit_code::SETUP_FAILED);
        }
        self.status
            .send(&StatusEvent::exit(code_status, cpu, peak, oom));
    }
}

/// The init's status record, if it sent one before its channel closed.
fn read_exit_record(exit: &mut PipeReader) -> Option<ExitStatus> {
    let mut raw = [0u8; 8];
    exit.read_exact(&mut raw).ok()?;
    protocol::decode_status(raw)
}

fn read_setup_errors(setup_errors: PipeReader) -> String {
    let mut text = String::new();
    let _ = setup_errors.take(SETUP_ERROR_CAP).read_to_string(&mut text);
    text
}
