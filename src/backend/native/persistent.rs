//! Persistent native sandboxes: one cgroup, one host uid and one work directory for many
//! executions, with live limits and usage. Host side.

use std::io::{PipeReader, PipeWriter, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{NativeBackend, Place, cgroup_limits, host_ids};
use crate::backend::helper::{HiddenModeCommand, RunError};
use crate::backend::runs::SandboxRuns;
use crate::backend::workspace::Workspace;
use crate::backend::{BackendKind, ExecutionRequest, SandboxUsage};
use crate::cgroup::RunCgroup;
use crate::limits::Limits;
use crate::lock::lock;
use crate::protocol::{HiddenMode, WORK_HOLDER_READY, WorkHolderConfig, WorkHolderRef, fds};
use crate::result::ExecutionResult;

impl NativeBackend {
    /// Creates a persistent sandbox: one cgroup, one host uid and one work directory for
    /// many executions. Files in `/work` persist between its executions; processes do not.
    pub fn create_sandbox(self: &Arc<Self>, limits: Limits) -> Result<NativeSandbox, RunError> {
        let n = super::next_run_number();
        let ids = host_ids::host_ids(n);
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
                    limits.disk().bytes(),
                    ids.0,
                    ids.1
                ),
            )
            .is_ok();
        if !work_mounted && ids.0 != crate::sys::effective_uid() {
            std::os::unix::fs::chown(&work_dir, Some(ids.0), Some(ids.1))
                .map_err(RunError::Workspace)?;
        }
        // An unprivileged tool cannot mount on the host: a process of its own holds the
        // tmpfs in namespaces the runs' helpers enter, so /work is bounded all the same.
        let work_holder = if work_mounted || ids.0 != crate::sys::effective_uid() {
            None
        } else {
            Some(WorkHolder::start(
                self.helper.path(),
                &work_dir,
                limits.disk().bytes(),
                ids,
            )?)
        };
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
            work_holder: Mutex::new(work_holder),
            cgroup: Mutex::new(cgroup),
            ids,
            totals: Mutex::new(Totals::default()),
            runs: SandboxRuns::default(),
        })
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
    /// The process whose namespaces hold `/work`'s tmpfs (an unprivileged tool's sandbox).
    work_holder: Mutex<Option<WorkHolder>>,
    cgroup: Mutex<Option<RunCgroup>>,
    ids: (u32, u32),
    totals: Mutex<Totals>,
    /// What runs in it now; cleanup ends it first.
    runs: SandboxRuns,
}

impl NativeSandbox {
    /// Runs one execution in this sandbox.
    /// Runs one execution in this sandbox. A cleanup meanwhile cancels it.
    pub fn execute(&self, request: &ExecutionRequest<'_>) -> ExecutionResult {
        let cleaned_up = || {
            ExecutionResult::sandbox_error(
                BackendKind::Native.as_str(),
                RunError::CleanedUp.to_string(),
            )
        };
        let Some((_entered, request)) = self.runs.enter(request) else {
            return cleaned_up();
        };
        if lock(&self.workspace).is_none() {
            return cleaned_up();
        }
        let cgroup = lock(&self.cgroup).clone();
        let work_holder = lock(&self.work_holder).as_ref().map(WorkHolder::reference);
        let place = Place {
            cgroup: cgroup.as_ref(),
            ids: self.ids,
            work_dir: Some(&self.work_dir),
            work_holder,
        };
        let result = self.backend.run_in(&place, &request).unwrap_or_else(|err| {
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
                .map_err(RunError::Cgroup),
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

    /// Removes everything: first ends a running execution (which reports `Cancelled`), then
    /// the cgroup and the work directory. Idempotent.
    pub fn cleanup(&self) {
        self.runs.close();
        if let Some(cgroup) = lock(&self.cgroup).take() {
            cgroup.remove();
        }
        if self.work_mounted.swap(false, Ordering::SeqCst) {
            crate::sys::mount::unmount(&self.work_dir);
        }
        // Its end frees the tmpfs.
        lock(&self.work_holder).take();
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

/// How long a work holder may take to mount `/work`.
const WORK_HOLDER_START: Duration = Duration::from_secs(10);

/// A running `code-exec __work_holder`; dropping it ends the holder (its control channel
/// closes) and waits for it, which frees the tmpfs.
#[derive(Debug)]
struct WorkHolder {
    child: Child,
    control: Option<PipeWriter>,
    reference: WorkHolderRef,
}

impl WorkHolder {
    fn start(
        program: &Path,
        work_dir: &Path,
        bytes: u64,
        ids: (u32, u32),
    ) -> Result<WorkHolder, RunError> {
        let config = WorkHolderConfig {
            work_dir: work_dir.to_owned(),
            bytes,
            outside_uid: ids.0,
            outside_gid: ids.1,
        };
        let json = serde_json::to_string(&config).map_err(RunError::Config)?;
        let (status_r, status_w) = std::io::pipe().map_err(RunError::Pipe)?;
        let (control_r, control_w) = std::io::pipe().map_err(RunError::Pipe)?;
        let placed = [
            (status_w.as_fd(), fds::STATUS),
            (control_r.as_fd(), fds::CONTROL),
        ];
        let mut hidden = HiddenModeCommand::new(program, HiddenMode::WorkHolder, &placed, &json)
            .map_err(RunError::Pipe)?;
        hidden
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = hidden.spawn().map_err(|source| RunError::Spawn {
            program: program.to_owned(),
            source,
        })?;
        drop((status_w, control_r));
        let mut holder = WorkHolder {
            reference: WorkHolderRef {
                pid: child.id(),
                start_ticks: crate::sys::process_start_ticks(child.id()).unwrap_or(0),
            },
            child,
            control: Some(control_w),
        };
        // Its answer: the ready byte, or why it failed (then it has exited).
        let answer = read_with_deadline(status_r, WORK_HOLDER_START);
        if answer.as_slice() != WORK_HOLDER_READY.as_slice() {
            let why = String::from_utf8_lossy(&answer).into_owned();
            drop(holder);
            return Err(RunError::HelperFailed(if why.is_empty() {
                "the work directory's holder did not start".into()
            } else {
                why
            }));
        }
        if holder.reference.start_ticks == 0 {
            holder.reference.start_ticks =
                crate::sys::process_start_ticks(holder.child.id()).unwrap_or(0);
        }
        Ok(holder)
    }

    fn reference(&self) -> WorkHolderRef {
        self.reference
    }
}

impl Drop for WorkHolder {
    fn drop(&mut self) {
        self.control.take();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `reader` says before it closes or `deadline` passes (at most 4 KiB).
fn read_with_deadline(reader: PipeReader, deadline: Duration) -> Vec<u8> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.take(4096).read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx.recv_timeout(deadline).unwrap_or_default()
}
