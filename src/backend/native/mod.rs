//! The `native` backend: our own Linux sandbox, seen from the host. This side prepares each
//! run — what of the host the interpreter needs to see (`exposures`), the host uid the sandbox
//! maps to (`host_ids`), the run's cgroup with its limits — starts the sandbox helper
//! (forked by the zygote, `zygote`, or exec'd cold) and cleans up after it. Persistent sandboxes
//! (`persistent`) and pre-started ones with their pool (`pool`) build on the same run. Runs in
//! the host process; the sandbox's own processes are in `crate::process`.

mod exposures;
mod host_ids;
pub mod persistent;
pub mod pool;
mod zygote;

pub use zygote::ZygoteError;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use self::zygote::Zygote;
use super::helper::{HelperBinary, Launch, RunError, SpawnedHelper, spawn_helper};
use super::runner_cache;
use super::workspace::{self, Workspace};
use super::{Backend, BackendKind, Enforced, Enforcement, ExecutionRequest};
use crate::cgroup::{CgroupDriver, CgroupLimits, RunCgroup};
use crate::interpreter::Interpreter;
use crate::limits::Limits;
use crate::lock::lock;
use crate::protocol::{Exposure, HiddenMode, SandboxConfig, WorkHolderRef, fds};
use crate::result::ExecutionResult;
use crate::runner::{Invocation, RunnerArgs, code_environment};
use crate::sandbox::{CODE_PATH, WORK_DIR};

/// Why the native backend, or a part of it, cannot run here.
#[derive(Debug, Error)]
pub enum NativeError {
    #[error("the native sandbox needs Linux on x86_64")]
    Unsupported,
    #[error("cannot find what of the host {interpreter} needs: {reason}")]
    Layout {
        interpreter: PathBuf,
        reason: String,
    },
    #[error("no zygote: {0}")]
    Zygote(#[source] ZygoteError),
    #[error("a warm pool needs cgroups: {0}")]
    PoolNeedsCgroups(String),
    #[error("cannot start the pool's threads: {0}")]
    PoolThreads(#[source] std::io::Error),
}

#[derive(Debug)]
pub struct NativeBackend {
    interpreter: Interpreter,
    helper: HelperBinary,
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
        helper: HelperBinary,
    ) -> Result<NativeBackend, NativeError> {
        if !cfg!(target_os = "linux") || !cfg!(target_arch = "x86_64") {
            return Err(NativeError::Unsupported);
        }
        let exposed =
            exposures::exposures_for(&interpreter).map_err(|reason| NativeError::Layout {
                interpreter: interpreter.path().to_owned(),
                reason,
            })?;
        workspace::reap_stale();
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
    pub fn start_zygote(&self, mode: ZygoteMode) -> Result<(), NativeError> {
        let state = match mode {
            ZygoteMode::Off => ZygoteState::Off,
            ZygoteMode::Auto | ZygoteMode::Required => {
                match Zygote::start(self.helper.path(), &self.interpreter) {
                    Ok(zygote) => ZygoteState::Running(Arc::new(zygote)),
                    Err(why) if mode == ZygoteMode::Required => {
                        return Err(NativeError::Zygote(why));
                    }
                    Err(why) => ZygoteState::Unavailable(why.to_string()),
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
    fn start_helper(
        &self,
        config: SandboxConfig,
        stdin: OwnedFd,
    ) -> Result<SpawnedHelper, RunError> {
        let zygote = match &*lock(&self.zygote) {
            ZygoteState::Running(zygote) => Some(Arc::clone(zygote)),
            _ => None,
        };
        let Some(zygote) = zygote else {
            return self.start_cold_helper(config, stdin);
        };
        let config_json = serde_json::to_string(&config).map_err(RunError::Config)?;
        // The fds are duplicated into the zygote's message: keep ours for a retry.
        let retry_stdin = stdin.try_clone().map_err(RunError::Pipe)?;
        let first = match spawn_helper(Launch::Fork(&*zygote), &config_json, stdin) {
            Ok(helper) => return Ok(helper),
            Err(first) => first,
        };
        match Zygote::start(self.helper.path(), &self.interpreter) {
            Ok(restarted) => {
                let restarted = Arc::new(restarted);
                *lock(&self.zygote) = ZygoteState::Running(Arc::clone(&restarted));
                spawn_helper(Launch::Fork(&*restarted), &config_json, retry_stdin)
            }
            Err(why) => {
                *lock(&self.zygote) =
                    ZygoteState::Unavailable(format!("{first}; restarting: {why}"));
                self.start_cold_helper(config, retry_stdin)
            }
        }
    }

    /// Starts a helper from the binary (exec'd, or forked here), which hands the interpreter
    /// the runner compiled ahead (a zygote holds it compiled already).
    fn start_cold_helper(
        &self,
        mut config: SandboxConfig,
        stdin: OwnedFd,
    ) -> Result<SpawnedHelper, RunError> {
        config.interpreter.compiled_runner = runner_cache::compiled_runner(&self.interpreter);
        let config_json = serde_json::to_string(&config).map_err(RunError::Config)?;
        let cold = Launch::Exec {
            helper: &self.helper,
            mode: HiddenMode::Sandbox,
        };
        spawn_helper(cold, &config_json, stdin)
    }

    fn new_cgroup(&self, n: u64, limits: &Limits) -> Result<Option<RunCgroup>, RunError> {
        match &self.cgroups {
            Some(driver) => driver
                .create(
                    &format!("code-exec-{}-{n}", std::process::id()),
                    &cgroup_limits(limits),
                )
                .map(Some)
                .map_err(RunError::Cgroup),
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
            ids: host_ids::host_ids(n),
            work_dir: None,
            work_holder: None,
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
            None,
        );
        self.start_helper(config, stdin.into())?
            .finish(request, BackendKind::Native, None)
    }

    /// The sandbox helper's configuration for one run in `place` (`pooled`: a pre-started
    /// sandbox's modules to import ahead).
    fn sandbox_config(
        &self,
        place: &Place<'_>,
        limits: &Limits,
        code_file: PathBuf,
        root_dir: PathBuf,
        monitor: Option<std::time::Duration>,
        pooled: Option<Vec<String>>,
    ) -> SandboxConfig {
        let host = place.ids;
        // In a work holder's user namespace the caller's ids are its root's.
        let (outside_uid, outside_gid) = match place.work_holder {
            Some(_) => (0, 0),
            None => host,
        };
        let cgroup = place.cgroup;
        // Each private filesystem (and every file: RLIMIT_FSIZE) holds the scratch space.
        let private_fs_bytes = limits.disk().bytes();
        let root = host.0 != crate::sys::effective_uid();
        let runner = RunnerArgs {
            report_fd: fds::REPORT,
            code_path: CODE_PATH.into(),
            import_dir: Some(WORK_DIR.into()),
            pooled,
        };
        SandboxConfig {
            interpreter: Invocation::new(
                self.interpreter.program(),
                runner,
                code_environment(WORK_DIR, "/tmp"),
            ),
            code_file,
            root_dir,
            exposed: self.exposed.clone(),
            outside_uid,
            outside_gid,
            rlimit_data_bytes: cgroup.is_none().then(|| limits.memory_mb.bytes()),
            // RLIMIT_NPROC counts every process of the host uid: exact when the uid is the
            // sandbox's own (root), else on top of what the user already runs.
            rlimit_nproc: cgroup.is_none().then(|| {
                let already = if root {
                    0
                } else {
                    host_ids::processes_of(host.0)
                };
                u64::from(limits.pids.get()) + already
            }),
            // With a cgroup, tmpfs pages are charged to it and the memory limit bounds them
            // all; without one, the private filesystems share the memory budget.
            tmp_bytes: private_fs_bytes,
            work_bytes: private_fs_bytes,
            work_dir: place.work_dir.map(Path::to_owned),
            work_holder: place.work_holder,
            cgroup: cgroup.cloned(),
            sample_interval_ms: monitor.map(|d| d.as_millis().max(1) as u64),
        }
    }
}

/// Where an execution runs: its cgroup, host ids, and (for a persistent sandbox) work dir,
/// with the process holding its tmpfs when the tool could not mount it on the host.
struct Place<'a> {
    cgroup: Option<&'a RunCgroup>,
    ids: (u32, u32),
    work_dir: Option<&'a Path>,
    work_holder: Option<WorkHolderRef>,
}

/// The sandbox's own tasks in its cgroup: the init.
const SANDBOX_OWN_TASKS: u32 = 1;

/// The run cgroup's limits. `pids` counts the code's processes and threads, its main process
/// included, as on every backend: the cgroup also holds the init.
fn cgroup_limits(limits: &Limits) -> CgroupLimits {
    CgroupLimits {
        memory_bytes: limits.memory_mb.bytes(),
        cpu: limits.cpu.get(),
        pids: limits.pids.get() + SANDBOX_OWN_TASKS,
    }
}

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
