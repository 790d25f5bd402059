//! The `native` backend: our own Linux sandbox (see `crate::sandbox`). This side prepares
//! each run — what of the host the interpreter needs to see, the host uid the sandbox maps to,
//! the run's cgroup with its limits — starts the sandbox helper, and cleans up after it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::SandboxUsage;
use super::supervised::{
    RunError, SpawnedHelper, code_environment, interpreter_args, spawn_helper,
};
use super::workspace::{self, Workspace};
use super::{Backend, BackendKind, Enforced, Enforcement, ExecutionRequest};
use crate::cgroup::{CgroupDriver, CgroupLimits, RunCgroup};
use crate::interpreter::Interpreter;
use crate::limits::{Limits, MemoryMb};
use crate::result::ExecutionResult;
use crate::sandbox::zygote::Zygote;
use crate::sandbox::{CODE_PATH, Exposure, SANDBOX_ARG, SandboxConfig, WORK_DIR};
use crate::supervisor::SupervisorBinary;

/// Host paths a Python interpreter commonly needs besides its own directories: the shared
/// libraries and the dynamic linker's cache. `/usr/bin` is exposed so that code can start the
/// usual tools (`sh`, `ls`), read-only like everything else.
const SYSTEM_PATHS: &[&str] = &[
    "/usr/bin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/libx32",
    "/usr/local/bin",
    "/usr/local/lib",
    "/bin",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/usr/share/zoneinfo",
];

/// Asks the interpreter where its standard library and site-packages are.
const LAYOUT_PROBE: &str = r#"
import json, site, sys, sysconfig
paths = sysconfig.get_paths()
found = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(k)}
found.update(site.getsitepackages())
print(json.dumps(sorted(found)))
"#;

/// The first uid of the range sandboxes map to when the tool runs as root: far above any
/// account, so that nothing on the host is owned by a sandbox's uid.
const HOST_UID_BASE: u32 = 2_000_000_000;
const HOST_UID_RANGE: u32 = 100_000_000;

#[derive(Debug)]
pub struct NativeBackend {
    interpreter: Interpreter,
    helper: SupervisorBinary,
    exposed: Vec<Exposure>,
    cgroups: Option<CgroupDriver>,
    /// Why there is no cgroup driver, when there is none.
    cgroup_problem: Option<String>,
    zygote: Mutex<ZygoteState>,
}

/// How native runs start their interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZygoteMode {
    /// Fork each run's helper from a zygote whose interpreter has done its core start-up,
    /// when this host allows one (a shared libpython of the interpreter's release); else, and
    /// for interpreters or environments it cannot serve, start cold. The library's default.
    #[default]
    Auto,
    /// Always start a fresh helper and interpreter (the command line's one-shot runs).
    Off,
    /// As `Auto`, but building the tool fails when no zygote can start.
    Required,
}

/// The zygote native runs fork from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZygoteInfo {
    /// The shared libpython it runs.
    pub library: PathBuf,
    /// Whether `site` ran in it (everything `site` reads is owned by root or this user and
    /// writable by nobody else); otherwise each run runs `site` inside its sandbox.
    pub site_in_zygote: bool,
}

#[derive(Debug)]
enum ZygoteState {
    Off,
    Running(Arc<Zygote>),
    Unavailable(String),
}

/// Run numbers are unique in the process (they name cgroups: `code-exec-<pid>-<n>`), whatever
/// number of backends it holds.
fn next_run_number() -> u64 {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    RUNS.fetch_add(1, Ordering::Relaxed)
}

impl NativeBackend {
    pub fn new(
        interpreter: Interpreter,
        helper: SupervisorBinary,
    ) -> Result<NativeBackend, String> {
        if !cfg!(target_os = "linux") || !cfg!(target_arch = "x86_64") {
            return Err("the native sandbox needs Linux on x86_64".into());
        }
        workspace::reap_stale();
        let exposed = exposures_for(&interpreter)?;
        let (cgroups, cgroup_problem) = match CgroupDriver::detect() {
            Ok(driver) => {
                driver.reap_stale();
                (Some(driver), None)
            }
            Err(err) => (None, Some(err.to_string())),
        };
        Ok(NativeBackend {
            interpreter,
            helper,
            exposed,
            cgroups,
            cgroup_problem,
            zygote: Mutex::new(ZygoteState::Off),
        })
    }

    /// Starts (or not) the zygote runs fork from; an error only for `Required`.
    pub fn start_zygote(&self, mode: ZygoteMode) -> Result<(), String> {
        let state = match mode {
            ZygoteMode::Off => ZygoteState::Off,
            ZygoteMode::Auto | ZygoteMode::Required => {
                match Zygote::start(self.helper.path(), &self.interpreter) {
                    Ok(zygote) => ZygoteState::Running(Arc::new(zygote)),
                    Err(why) if mode == ZygoteMode::Required => {
                        return Err(format!("no zygote: {why}"));
                    }
                    Err(why) => ZygoteState::Unavailable(why),
                }
            }
        };
        *lock(&self.zygote) = state;
        Ok(())
    }

    /// How runs start: forked from a zygote (which one), else why not.
    pub fn zygote_status(&self) -> Result<ZygoteInfo, String> {
        match &*lock(&self.zygote) {
            ZygoteState::Running(zygote) => Ok(ZygoteInfo {
                library: zygote.library().to_owned(),
                site_in_zygote: zygote.site_in_zygote(),
            }),
            ZygoteState::Off => Err("off".into()),
            ZygoteState::Unavailable(why) => Err(why.clone()),
        }
    }

    /// Starts a helper for `config`: forked by the zygote when there is one. A zygote that
    /// fails is restarted once; if that fails too, runs start cold from then on.
    fn start_helper(&self, config_json: &str, stdin: OwnedFd) -> Result<SpawnedHelper, RunError> {
        let zygote = match &*lock(&self.zygote) {
            ZygoteState::Running(zygote) => Some(Arc::clone(zygote)),
            _ => None,
        };
        let Some(zygote) = zygote else {
            return spawn_helper(self.helper.path(), SANDBOX_ARG, config_json, stdin, None);
        };
        // The fds are duplicated into the zygote's message: keep ours for a retry.
        let retry_stdin = stdin.try_clone().map_err(RunError::Pipe)?;
        match spawn_helper(
            self.helper.path(),
            SANDBOX_ARG,
            config_json,
            stdin,
            Some(&zygote),
        ) {
            Ok(helper) => Ok(helper),
            Err(first) => {
                let restarted = Zygote::start(self.helper.path(), &self.interpreter);
                let zygote = match restarted {
                    Ok(zygote) => Arc::new(zygote),
                    Err(why) => {
                        *lock(&self.zygote) =
                            ZygoteState::Unavailable(format!("{first}; restarting: {why}"));
                        return spawn_helper(
                            self.helper.path(),
                            SANDBOX_ARG,
                            config_json,
                            retry_stdin,
                            None,
                        );
                    }
                };
                *lock(&self.zygote) = ZygoteState::Running(Arc::clone(&zygote));
                spawn_helper(
                    self.helper.path(),
                    SANDBOX_ARG,
                    config_json,
                    retry_stdin,
                    Some(&zygote),
                )
            }
        }
    }

    /// The cgroup driver in use, or why there is none.
    pub fn cgroups(&self) -> Result<&CgroupDriver, &str> {
        self.cgroups
            .as_ref()
            .ok_or(self.cgroup_problem.as_deref().unwrap_or("unknown"))
    }

    fn new_cgroup(&self, n: u64, limits: &Limits) -> Result<Option<RunCgroup>, RunError> {
        match &self.cgroups {
            Some(driver) => driver
                .create(
                    &format!("code-exec-{}-{n}", std::process::id()),
                    &cgroup_limits(limits),
                )
                .map(Some)
                .map_err(|e| RunError::Supervisor(e.to_string())),
            None => Ok(None),
        }
    }

    /// A one-shot run: fresh cgroup, fresh uid, fresh tmpfs work directory.
    fn run(&self, request: &ExecutionRequest<'_>) -> Result<ExecutionResult, RunError> {
        let n = next_run_number();
        let cgroup = self.new_cgroup(n, &request.limits)?;
        let _cleanup = CgroupGuard(cgroup.clone());
        let place = Place {
            cgroup: cgroup.as_ref(),
            ids: host_ids(n),
            work_dir: None,
        };
        self.run_in(&place, request)
    }

    /// Runs one execution in `place` (a one-shot run's, or a persistent sandbox's).
    fn run_in(
        &self,
        place: &Place<'_>,
        request: &ExecutionRequest<'_>,
    ) -> Result<ExecutionResult, RunError> {
        let (_workspace, code_file, root_dir, stdin) =
            Workspace::for_request(request.code, request.stdin, "root")
                .map_err(RunError::Workspace)?;
        let config = self.sandbox_config(
            place,
            &request.limits,
            code_file,
            root_dir,
            request.monitor,
            interpreter_args(CODE_PATH),
        );
        let config_json = serde_json::to_string(&config)
            .map_err(|e| RunError::Supervisor(format!("cannot encode its config: {e}")))?;
        self.start_helper(&config_json, stdin.into())?
            .finish(request, BackendKind::Native, None)
    }

    /// The sandbox helper's configuration for one run in `place`.
    fn sandbox_config(
        &self,
        place: &Place<'_>,
        limits: &Limits,
        code_file: PathBuf,
        root_dir: PathBuf,
        monitor: Option<std::time::Duration>,
        args: Vec<String>,
    ) -> SandboxConfig {
        let (outside_uid, outside_gid) = place.ids;
        let cgroup = place.cgroup;
        let private_fs_bytes = match cgroup {
            Some(_) => limits.memory_mb.bytes(),
            None => limits.memory_mb.bytes() / 4,
        };
        let root = outside_uid != crate::sys::effective_uid();
        SandboxConfig {
            program: self.interpreter.program().to_owned(),
            args,
            env: code_environment(WORK_DIR, "/tmp"),
            code_file,
            root_dir,
            exposed: self.exposed.clone(),
            outside_uid,
            outside_gid,
            rlimit_data_bytes: cgroup.is_none().then(|| limits.memory_mb.bytes()),
            // RLIMIT_NPROC counts every process of the host uid: exact when the uid is the
            // sandbox's own (root), else on top of what the user already runs.
            rlimit_nproc: cgroup.is_none().then(|| {
                let already = if root { 0 } else { processes_of(outside_uid) };
                u64::from(limits.pids.get()) + already
            }),
            // With a cgroup, tmpfs pages are charged to it and the memory limit bounds them
            // all; without one, the private filesystems share the memory budget.
            tmp_bytes: private_fs_bytes,
            work_bytes: private_fs_bytes,
            work_dir: place.work_dir.map(Path::to_owned),
            cgroup: cgroup.cloned(),
            sample_interval_ms: monitor.map(|d| d.as_millis().max(1) as u64),
        }
    }

    /// Starts a one-shot sandbox ahead of its code (see [`PreparedRun`]) and returns once its
    /// interpreter waits for the code. Needs cgroups: the request's limits are applied when the
    /// code arrives.
    pub fn prepare(&self, limits: Limits, preload: &[String]) -> Result<PreparedRun, RunError> {
        if self.cgroups.is_none() {
            return Err(RunError::Supervisor(
                "pre-started sandboxes need cgroups (their limits change when code arrives)".into(),
            ));
        }
        let n = next_run_number();
        let cgroup = self.new_cgroup(n, &limits)?;
        let guard = CgroupGuard(cgroup);
        let place = Place {
            cgroup: guard.0.as_ref(),
            ids: host_ids(n),
            work_dir: None,
        };
        let (workspace, code_file, root_dir, _) =
            Workspace::for_request(b"", None, "root").map_err(RunError::Workspace)?;
        let mut args = interpreter_args(CODE_PATH);
        args.push("--pooled".into());
        args.extend(preload.iter().cloned());
        let config = self.sandbox_config(&place, &limits, code_file, root_dir, None, args);
        let config_json = serde_json::to_string(&config)
            .map_err(|e| RunError::Supervisor(format!("cannot encode its config: {e}")))?;
        let (stdin_r, stdin_w) = std::io::pipe().map_err(RunError::Pipe)?;
        let mut helper = self.start_helper(&config_json, stdin_r.into())?;
        helper.wait_ready()?;
        Ok(PreparedRun {
            helper,
            stdin: stdin_w,
            cgroup: guard,
            _workspace: workspace,
            memory_mb: limits.memory_mb,
            prepared_limits: cgroup_limits(&limits),
        })
    }

    /// Creates a persistent sandbox: one cgroup, one host uid and one work directory for
    /// many executions. Files in `/work` persist between its executions; processes do not.
    pub fn create_sandbox(self: &Arc<Self>, limits: Limits) -> Result<NativeSandbox, RunError> {
        let n = next_run_number();
        let ids = host_ids(n);
        let workspace = Workspace::create().map_err(RunError::Workspace)?;
        let work_dir = workspace.subdir("work").map_err(RunError::Workspace)?;
        // As root the work directory is a size- and inode-limited tmpfs owned by the
        // sandbox's uid; an unprivileged user cannot mount on the host, so there it is a
        // plain directory of the user's.
        let work_mounted = ids.0 != crate::sys::effective_uid()
            && crate::sys::mount::mount_fs(
                "tmpfs",
                &work_dir,
                libc::MS_NOSUID | libc::MS_NODEV,
                &format!(
                    "size={},nr_inodes=16384,mode=700,uid={},gid={}",
                    limits.memory_mb.bytes(),
                    ids.0,
                    ids.1
                ),
            )
            .is_ok();
        if !work_mounted && ids.0 != crate::sys::effective_uid() {
            std::os::unix::fs::chown(&work_dir, Some(ids.0), Some(ids.1))
                .map_err(RunError::Workspace)?;
        }
        let cgroup = match self.new_cgroup(n, &limits) {
            Ok(cgroup) => cgroup,
            Err(err) => {
                if work_mounted {
                    crate::sys::mount::unmount(&work_dir);
                }
                return Err(err);
            }
        };
        Ok(NativeSandbox {
            backend: Arc::clone(self),
            workspace: Mutex::new(Some(workspace)),
            work_dir,
            work_mounted: AtomicBool::new(work_mounted),
            cgroup: Mutex::new(cgroup),
            ids,
            totals: Mutex::new(Totals::default()),
        })
    }
}

/// Where an execution runs: its cgroup, host ids, and (for a persistent sandbox) work dir.
struct Place<'a> {
    cgroup: Option<&'a RunCgroup>,
    ids: (u32, u32),
    work_dir: Option<&'a Path>,
}

fn cgroup_limits(limits: &Limits) -> CgroupLimits {
    CgroupLimits {
        memory_bytes: limits.memory_mb.bytes(),
        cpu: limits.cpu.get(),
        pids: limits.pids.get(),
    }
}

/// What a persistent sandbox has used, for hosts without cgroups (summed over executions).
#[derive(Debug, Default)]
struct Totals {
    cpu_time_ms: f64,
    peak_memory_mb: f64,
    last_sample: Option<(Instant, f64)>,
}

/// A persistent native sandbox. Every method takes `&self`: limits can be changed and usage
/// read while an execution runs. Dropping it cleans it up.
#[derive(Debug)]
pub struct NativeSandbox {
    backend: Arc<NativeBackend>,
    workspace: Mutex<Option<Workspace>>,
    work_dir: PathBuf,
    work_mounted: AtomicBool,
    cgroup: Mutex<Option<RunCgroup>>,
    ids: (u32, u32),
    totals: Mutex<Totals>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl NativeSandbox {
    /// Runs one execution in this sandbox.
    pub fn execute(&self, request: &ExecutionRequest<'_>) -> ExecutionResult {
        if lock(&self.workspace).is_none() {
            return ExecutionResult::sandbox_error(
                BackendKind::Native.as_str(),
                "this sandbox has been cleaned up".into(),
            );
        }
        let cgroup = lock(&self.cgroup).clone();
        let place = Place {
            cgroup: cgroup.as_ref(),
            ids: self.ids,
            work_dir: Some(&self.work_dir),
        };
        let result = self.backend.run_in(&place, request).unwrap_or_else(|err| {
            ExecutionResult::sandbox_error(BackendKind::Native.as_str(), err.to_string())
        });
        let mut totals = lock(&self.totals);
        totals.cpu_time_ms += result.cpu_time_ms;
        totals.peak_memory_mb = totals.peak_memory_mb.max(result.peak_memory_mb);
        result
    }

    /// Applies new limits at once, to a running execution too (cgroup); without a cgroup the
    /// per-process fallbacks take them from the next execution on.
    pub fn update_limits(&self, limits: &Limits) -> Result<(), RunError> {
        match &*lock(&self.cgroup) {
            Some(cgroup) => cgroup
                .set_limits(&cgroup_limits(limits))
                .map_err(|e| RunError::Supervisor(e.to_string())),
            None => Ok(()),
        }
    }

    /// Whether new limits reach running executions (true with a cgroup).
    pub fn limits_apply_live(&self) -> bool {
        lock(&self.cgroup).is_some()
    }

    pub fn usage(&self) -> SandboxUsage {
        let cgroup_usage = lock(&self.cgroup).as_ref().map(RunCgroup::usage);
        let mut totals = lock(&self.totals);
        let (cpu_time_ms, memory_mb, peak_memory_mb, pids) = match cgroup_usage {
            Some(u) => (
                u.cpu_time_ns as f64 / 1e6,
                u.memory_bytes as f64 / MIB,
                u.peak_memory_bytes as f64 / MIB,
                u.pids,
            ),
            None => (totals.cpu_time_ms, 0.0, totals.peak_memory_mb, 0),
        };
        let now = Instant::now();
        let cpu_percent = match totals.last_sample {
            Some((at, cpu)) if now > at => {
                ((cpu_time_ms - cpu) / now.duration_since(at).as_secs_f64() / 10.0).max(0.0)
            }
            _ => 0.0,
        };
        totals.last_sample = Some((now, cpu_time_ms));
        SandboxUsage {
            cpu_percent,
            memory_mb,
            peak_memory_mb,
            cpu_time_ms,
            pids,
        }
    }

    /// Removes everything: processes, cgroup, work directory. Idempotent.
    pub fn cleanup(&self) {
        if let Some(cgroup) = lock(&self.cgroup).take() {
            cgroup.remove();
        }
        if self.work_mounted.swap(false, Ordering::SeqCst) {
            crate::sys::mount::unmount(&self.work_dir);
        }
        lock(&self.workspace).take();
    }

    /// Whether any of the sandbox's host state still exists.
    pub fn exists(&self) -> bool {
        lock(&self.workspace).is_some()
            || lock(&self.cgroup).as_ref().is_some_and(RunCgroup::exists)
    }
}

impl Drop for NativeSandbox {
    fn drop(&mut self) {
        self.cleanup();
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Removes the run's cgroup however the run ends.
#[derive(Debug)]
struct CgroupGuard(Option<RunCgroup>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cgroup) = &self.0 {
            cgroup.remove();
        }
    }
}

impl Backend for NativeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Native
    }

    fn enforcement(&self) -> Enforcement {
        let (memory_mb, cpu, pids) = match self.cgroups {
            Some(_) => (Enforced::Cgroup, Enforced::Cgroup, Enforced::Cgroup),
            // RLIMIT_DATA per process; RLIMIT_NPROC counts the sandbox's uid, so it covers the
            // whole run (exactly so as root, where the uid is the sandbox's own).
            None => (
                Enforced::PerProcess,
                Enforced::NotEnforced,
                Enforced::PerProcess,
            ),
        };
        Enforcement {
            memory_mb,
            cpu,
            pids,
            timeout: Enforced::Host,
            max_output_bytes: Enforced::Host,
        }
    }

    fn execute(&self, request: &ExecutionRequest<'_>) -> ExecutionResult {
        self.run(request).unwrap_or_else(|err| {
            ExecutionResult::sandbox_error(BackendKind::Native.as_str(), err.to_string())
        })
    }
}

/// The host uid and gid the sandbox's user maps to: a fresh one from a high range when we run
/// as root (so no host file and no other sandbox shares it), else our own (the only one an
/// unprivileged user may map).
fn host_ids(run: u64) -> (u32, u32) {
    let euid = crate::sys::effective_uid();
    if euid != 0 {
        return (euid, crate::sys::effective_gid());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = (u64::from(std::process::id()) << 20) ^ run ^ nanos;
    let id = HOST_UID_BASE + (mix(seed) % u64::from(HOST_UID_RANGE)) as u32;
    (id, id)
}

/// How many processes and threads the host uid `uid` runs now (what RLIMIT_NPROC counts).
fn processes_of(uid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|status| {
            status.lines().any(|l| {
                l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string())
            })
        })
        .map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(1)
        })
        .sum()
}

/// A small integer hash (splitmix64's finaliser) to spread uids over the range.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// What of the host the sandbox shows: system library paths and the interpreter's own
/// directories, each once (paths inside an exposed directory are covered by it).
fn exposures_for(interpreter: &Interpreter) -> Result<Vec<Exposure>, String> {
    let mut candidates: Vec<PathBuf> = SYSTEM_PATHS.iter().map(PathBuf::from).collect();
    candidates.push(interpreter.path().to_owned());
    // A virtual environment's packages import inside as they do outside.
    candidates.extend(interpreter.venv().map(Path::to_owned));
    match conventional_layout(interpreter) {
        Some(dirs) => candidates.extend(dirs),
        None => candidates.extend(probe_layout(interpreter)?),
    }
    Ok(plan_exposures(candidates))
}

/// The interpreter's directories where a standard installation puts them
/// (`<prefix>/lib/pythonX.Y`, Debian's `<prefix>/lib/python3`, `<prefix>/local/lib/pythonX.Y`),
/// found without starting it; `None` when its standard library is not there.
fn conventional_layout(interpreter: &Interpreter) -> Option<Vec<PathBuf>> {
    let prefix = interpreter.path().parent()?.parent()?;
    let version = interpreter.version();
    let versioned = format!("python{}.{}", version.major, version.minor);
    let stdlib = prefix.join("lib").join(&versioned);
    if !stdlib.join("os.py").is_file() {
        return None;
    }
    let mut dirs = vec![
        stdlib,
        prefix.join("lib64").join(&versioned),
        prefix.join("lib").join("python3"),
        prefix.join("local/lib").join(&versioned),
    ];
    // A shared-library build (pyenv, python.org) loads libpythonX.Y.so from <prefix>/lib.
    if let Ok(entries) = std::fs::read_dir(prefix.join("lib")) {
        dirs.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("libpython"))
                .map(|e| e.path()),
        );
    }
    Some(dirs)
}

/// Asks the interpreter itself where its standard library and site-packages are.
fn probe_layout(interpreter: &Interpreter) -> Result<Vec<PathBuf>, String> {
    let output = Command::new(interpreter.path())
        .args(["-I", "-c", LAYOUT_PROBE])
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot ask {} for its layout: {e}",
                interpreter.path().display()
            )
        })?;
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "{} did not describe its layout: {e}",
            interpreter.path().display()
        )
    })
}

/// Classifies existing candidates and drops those already covered by an exposed directory.
fn plan_exposures(candidates: Vec<PathBuf>) -> Vec<Exposure> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut others: Vec<Exposure> = Vec::new();
    for path in candidates {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(&path) {
                others.push(Exposure::Symlink { path, target });
            }
        } else if meta.is_dir() {
            dirs.push(path);
        } else if meta.is_file() {
            others.push(Exposure::File(path));
        }
    }
    dirs.sort();
    dirs.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        if !kept.iter().any(|k| dir.starts_with(k)) {
            kept.push(dir);
        }
    }
    let covered = |p: &Path| kept.iter().any(|k| p.starts_with(k) && p != k);
    let mut exposures: Vec<Exposure> = kept.iter().cloned().map(Exposure::Dir).collect();
    for other in others {
        let path = match &other {
            Exposure::File(p) | Exposure::Symlink { path: p, .. } | Exposure::Dir(p) => p,
        };
        if !covered(path) && !exposures.contains(&other) {
            exposures.push(other);
        }
    }
    exposures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposures_are_minimal_and_deduplicated() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        std::fs::create_dir_all(t.join("usr/lib/python3.11")).unwrap();
        std::fs::create_dir_all(t.join("usr/bin")).unwrap();
        std::fs::write(t.join("usr/bin/python3.11"), "").unwrap();
        std::fs::write(t.join("ld.so.cache"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib", t.join("lib")).unwrap();
        let plan = plan_exposures(vec![
            t.join("usr/lib"),
            t.join("usr/lib/python3.11"),
            t.join("usr/bin/python3.11"),
            t.join("usr/bin"),
            t.join("lib"),
            t.join("ld.so.cache"),
            t.join("missing"),
        ]);
        assert_eq!(
            plan,
            vec![
                Exposure::Dir(t.join("usr/bin")),
                Exposure::Dir(t.join("usr/lib")),
                Exposure::Symlink {
                    path: t.join("lib"),
                    target: "usr/lib".into()
                },
                Exposure::File(t.join("ld.so.cache")),
            ]
        );
    }

    #[test]
    fn host_ids_are_spread_over_a_high_range_for_root() {
        if crate::sys::effective_uid() != 0 {
            assert_eq!(host_ids(1).0, crate::sys::effective_uid());
            return;
        }
        let a = host_ids(1).0;
        assert!((HOST_UID_BASE..HOST_UID_BASE + HOST_UID_RANGE).contains(&a));
    }
}

/// A one-shot native sandbox started before its code: namespaces, root, cgroup, and an
/// interpreter that has done its imports and waits for the code on stdin. Built exactly as a
/// cold run is (same helper, same policy, a fresh uid, cgroup and root); used for one
/// execution, then destroyed. Dropped unused, it is killed and removed.
#[derive(Debug)]
pub struct PreparedRun {
    helper: SpawnedHelper,
    stdin: std::io::PipeWriter,
    cgroup: CgroupGuard,
    _workspace: Workspace,
    /// The memory limit its private filesystems were sized for.
    memory_mb: MemoryMb,
    /// The limits its cgroup was created with.
    prepared_limits: CgroupLimits,
}

impl PreparedRun {
    /// Whether `request` can run here: no monitoring (sampling is set up at start) and a
    /// memory limit no larger than the one it was prepared for.
    pub fn accepts(&self, request: &ExecutionRequest<'_>) -> bool {
        request.monitor.is_none() && request.limits.memory_mb.get() <= self.memory_mb.get()
    }

    /// Applies the request's limits, hands over the code and stdin, and watches the run.
    pub fn execute(self, request: &ExecutionRequest<'_>) -> ExecutionResult {
        let PreparedRun {
            helper,
            mut stdin,
            cgroup,
            _workspace,
            prepared_limits,
            ..
        } = self;
        let fail =
            |message: String| ExecutionResult::sandbox_error(BackendKind::Native.as_str(), message);
        let Some(run_cgroup) = cgroup.0.as_ref() else {
            return fail("a pre-started sandbox lost its cgroup".into());
        };
        // Written only when they differ from those it was prepared with (the usual case is
        // the tool's defaults: nothing to write).
        let limits = cgroup_limits(&request.limits);
        if limits != prepared_limits
            && let Err(e) = run_cgroup.set_limits(&limits)
        {
            return fail(format!(
                "cannot apply the limits to a pre-started sandbox: {e}"
            ));
        }
        // Only what the code does counts: the interpreter's start-up ran before.
        run_cgroup.reset_peak();
        let baseline_ms = run_cgroup.usage().cpu_time_ns as f64 / 1e6;
        let mut payload = format!("{}\n", request.code.len()).into_bytes();
        payload.extend_from_slice(request.code);
        if let Some(bytes) = request.stdin {
            payload.extend_from_slice(bytes);
        }
        // A separate thread: code that never reads its stdin must not block the run.
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&payload);
        });
        let delivered = Instant::now();
        let result = helper
            .finish(request, BackendKind::Native, Some(delivered))
            .map(|mut result| {
                result.cpu_time_ms = (result.cpu_time_ms - baseline_ms).max(0.0);
                result
            })
            .unwrap_or_else(|e| fail(e.to_string()));
        let _ = writer.join();
        result
    }
}

/// Pre-started sandboxes kept ready by a background thread, each used once.
#[derive(Debug)]
pub struct WarmPool {
    inner: Arc<PoolInner>,
    fillers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct PoolInner {
    backend: Arc<NativeBackend>,
    size: usize,
    limits: Limits,
    preload: Vec<String>,
    ready: Mutex<std::collections::VecDeque<PreparedRun>>,
    /// Sandboxes being prepared right now (so that fillers do not overshoot the size).
    preparing: std::sync::atomic::AtomicUsize,
    wake: std::sync::Condvar,
    stop: AtomicBool,
}

impl WarmPool {
    /// Starts filling a pool of `size` sandboxes prepared with `limits` (the largest memory
    /// limit they serve) that import `preload` before waiting for code.
    pub fn start(
        backend: Arc<NativeBackend>,
        size: usize,
        limits: Limits,
        preload: Vec<String>,
    ) -> Result<WarmPool, String> {
        if backend.cgroups.is_none() {
            return Err(format!(
                "a warm pool needs cgroups: {}",
                backend
                    .cgroup_problem
                    .as_deref()
                    .unwrap_or("none available")
            ));
        }
        let inner = Arc::new(PoolInner {
            backend,
            size,
            limits,
            preload,
            ready: Mutex::new(std::collections::VecDeque::new()),
            preparing: std::sync::atomic::AtomicUsize::new(0),
            wake: std::sync::Condvar::new(),
            stop: AtomicBool::new(false),
        });
        // One filler per core (preparing is CPU work in the kernel and the interpreter).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = WarmPool {
            inner,
            fillers: Mutex::new(Vec::new()),
        };
        for _ in 0..cores.min(size).max(1) {
            let filling = Arc::clone(&pool.inner);
            let filler = std::thread::Builder::new()
                .name("code-exec-pool".into())
                .spawn(move || filling.fill())
                .map_err(|e| format!("cannot start the pool's threads: {e}"))?;
            lock(&pool.fillers).push(filler);
        }
        Ok(pool)
    }

    /// Sandboxes ready now.
    pub fn ready(&self) -> usize {
        lock(&self.inner.ready).len()
    }

    /// A ready sandbox that accepts `request`, if any; the pool refills behind it.
    pub fn take(&self, request: &ExecutionRequest<'_>) -> Option<PreparedRun> {
        let mut ready = lock(&self.inner.ready);
        if !ready.front()?.accepts(request) {
            return None;
        }
        let run = ready.pop_front();
        self.inner.wake.notify_all();
        run
    }

    /// Stops refilling and removes every ready sandbox. Also done on drop.
    pub fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.wake.notify_all();
        for filler in std::mem::take(&mut *lock(&self.fillers)) {
            let _ = filler.join();
        }
        lock(&self.inner.ready).clear();
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl PoolInner {
    fn fill(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            {
                let ready = lock(&self.ready);
                if ready.len() + self.preparing.load(Ordering::SeqCst) >= self.size {
                    let _ = self
                        .wake
                        .wait_timeout(ready, std::time::Duration::from_secs(1));
                    continue;
                }
                self.preparing.fetch_add(1, Ordering::SeqCst);
            }
            let prepared = self.backend.prepare(self.limits, &self.preload);
            let failed = prepared.is_err();
            if let Ok(run) = prepared
                && !self.stop.load(Ordering::SeqCst)
            {
                lock(&self.ready).push_back(run);
            }
            self.preparing.fetch_sub(1, Ordering::SeqCst);
            if failed {
                // The host is out of something (pids, memory): try again a little later.
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
    }
}
