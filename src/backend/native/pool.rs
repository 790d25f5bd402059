//! Pre-started native sandboxes and the warm pool that keeps them ready: each is built exactly
//! as a cold run (same helper, same policy, a fresh uid, cgroup and root), its interpreter
//! waiting for the code, and used for one execution. Host side.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{CgroupGuard, NativeBackend, NativeError, Place, cgroup_limits, host_ids};
use crate::backend::helper::{RunError, SpawnedHelper};
use crate::backend::workspace::Workspace;
use crate::backend::{BackendKind, ExecutionRequest};
use crate::cgroup::CgroupLimits;
use crate::limits::{DiskMb, Limits, MemoryMb};
use crate::lock::lock;
use crate::result::ExecutionResult;

impl NativeBackend {
    /// Starts a one-shot sandbox ahead of its code (see [`PreparedRun`]) and returns once its
    /// interpreter waits for the code. Needs cgroups: the request's limits are applied when the
    /// code arrives.
    pub fn prepare(&self, limits: Limits, preload: &[String]) -> Result<PreparedRun, RunError> {
        if self.cgroups.is_none() {
            return Err(RunError::NeedsCgroups);
        }
        let n = super::next_run_number();
        let cgroup = self.new_cgroup(n, &limits)?;
        let guard = CgroupGuard(cgroup);
        let place = Place {
            cgroup: guard.0.as_ref(),
            ids: host_ids::host_ids(n),
            work_dir: None,
            work_holder: None,
        };
        let (workspace, code_file, root_dir, _) =
            Workspace::for_request(b"", None, "root").map_err(RunError::Workspace)?;
        let pooled = Some(preload.to_vec());
        let config = self.sandbox_config(&place, &limits, code_file, root_dir, None, pooled);
        let (stdin_r, stdin_w) = std::io::pipe().map_err(RunError::Pipe)?;
        let mut helper = self.start_helper(config, stdin_r.into())?;
        helper.wait_ready()?;
        Ok(PreparedRun {
            helper,
            stdin: stdin_w,
            cgroup: guard,
            _workspace: workspace,
            memory_mb: limits.memory_mb,
            disk_mb: limits.disk(),
            prepared_limits: cgroup_limits(&limits),
        })
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
    /// The memory limit it was prepared for.
    memory_mb: MemoryMb,
    /// The scratch space its private filesystems (and RLIMIT_FSIZE) were sized for.
    disk_mb: DiskMb,
    /// The limits its cgroup was created with.
    prepared_limits: CgroupLimits,
}

impl PreparedRun {
    /// Whether `request` can run here: no monitoring (sampling is set up at start), a memory
    /// limit no larger than the one it was prepared for, and the very scratch space its
    /// filesystems were made with.
    pub fn accepts(&self, request: &ExecutionRequest<'_>) -> bool {
        request.monitor.is_none()
            && request.limits.memory_mb.get() <= self.memory_mb.get()
            && request.limits.disk() == self.disk_mb
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
            return fail(RunError::LostCgroup.to_string());
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
    ) -> Result<WarmPool, NativeError> {
        if backend.cgroups.is_none() {
            return Err(NativeError::PoolNeedsCgroups(
                backend
                    .cgroup_problem
                    .clone()
                    .unwrap_or_else(|| "none available".into()),
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
                .map_err(NativeError::PoolThreads)?;
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
