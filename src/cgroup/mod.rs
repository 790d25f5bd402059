//! Per-sandbox cgroups: finding where this process may create them (cgroup v1, v2 or the
//! hybrid of both), creating one per run with memory (swap off), CPU quota and pids limits,
//! reading usage and OOM kills from it, killing what is left in it, and removing it. Every
//! driver takes its filesystem roots as paths, so both versions are unit-tested on directory
//! trees; the real kernel is exercised by the integration tests.
//! Runs in the host process; the sandbox helper clones the init into its run cgroup (v2) or
//! the init joins it (`RunCgroup::join_self`), and the helper reads its usage.

mod common;
#[cfg(test)]
mod driver_tests;
mod v1;
mod v2;

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use common::{CgroupError, CgroupLimits, CgroupUsage};
use common::{io_error, parse_mounts, under, write_file};
pub use v1::V1Dirs;

/// Where and how run cgroups are made on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupDriver {
    V1(V1Dirs),
    V2 { parent: PathBuf },
}

/// One run's cgroup. Serializable so the sandbox helper can join and read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunCgroup {
    V1(V1Dirs),
    V2 { dir: PathBuf },
}

impl CgroupDriver {
    /// Detects the driver from the real `/proc/self` and `/sys/fs/cgroup`.
    pub fn detect() -> Result<CgroupDriver, CgroupError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_error(Path::new("/proc/self/mountinfo")))?;
        let membership = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(io_error(Path::new("/proc/self/cgroup")))?;
        Self::detect_from(&mountinfo, &membership, Path::new("/"))
    }

    /// Detection from the text of `mountinfo` and `/proc/self/cgroup`, with paths resolved
    /// under `fs_root` (`/` for the real host; a temp dir in tests). v1 controllers win where
    /// they are mounted (the hybrid layout keeps them there); otherwise the v2 hierarchy is
    /// used if this process can delegate memory, cpu and pids below it.
    pub fn detect_from(
        mountinfo: &str,
        membership: &str,
        fs_root: &Path,
    ) -> Result<CgroupDriver, CgroupError> {
        let mounts = parse_mounts(mountinfo);
        let v1 = V1Dirs::detect(&mounts, membership, fs_root);
        if let Some(dirs) = v1 {
            return Ok(CgroupDriver::V1(dirs));
        }
        if let Some(mount) = mounts.iter().find(|m| m.fstype == "cgroup2") {
            let own = membership
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            let parent = v2::choose_parent(&under(fs_root, &mount.mount_point), own)?;
            return Ok(CgroupDriver::V2 { parent });
        }
        Err(CgroupError::Unavailable(
            "neither writable cgroup v1 controllers (memory, cpu, pids) nor a delegated cgroup v2 hierarchy was found".into(),
        ))
    }

    pub fn version(&self) -> u8 {
        match self {
            CgroupDriver::V1(_) => 1,
            CgroupDriver::V2 { .. } => 2,
        }
    }

    /// Creates a run cgroup named `name` with `limits` in force.
    pub fn create(&self, name: &str, limits: &CgroupLimits) -> Result<RunCgroup, CgroupError> {
        let run = match self {
            CgroupDriver::V1(parents) => RunCgroup::V1(parents.create(name)?),
            CgroupDriver::V2 { parent } => RunCgroup::V2 {
                dir: v2::create(parent, name)?,
            },
        };
        if let Err(err) = run.set_limits(limits) {
            run.remove();
            return Err(err);
        }
        Ok(run)
    }

    /// Removes run cgroups left by processes that no longer exist (a crashed caller). Names
    /// carry the creating pid: `code-exec-<pid>-<n>`.
    pub fn reap_stale(&self) {
        let parents: Vec<PathBuf> = match self {
            CgroupDriver::V1(d) => d.all().into_iter().map(Path::to_owned).collect(),
            CgroupDriver::V2 { parent } => vec![parent.clone()],
        };
        for parent in parents {
            let Ok(entries) = std::fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = owner_pid(&name)
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    kill_members(&entry.path());
                    let _ = remove_dir_retrying(&entry.path());
                }
            }
        }
    }
}

/// The pid in a run cgroup's name `code-exec-<pid>-<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix("code-exec-")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

impl RunCgroup {
    /// The cgroup process `pid` of this host is in (v1 controllers where mounted, else v2),
    /// for reading it; `None` if it cannot be found.
    pub fn of_process(pid: u32) -> Option<RunCgroup> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Self::of_membership(&mountinfo, &membership, Path::new("/"))
    }

    /// [`of_process`](Self::of_process) from the text of `mountinfo` and the process's
    /// `cgroup` file, with paths resolved under `fs_root`.
    pub fn of_membership(mountinfo: &str, membership: &str, fs_root: &Path) -> Option<RunCgroup> {
        let mounts = parse_mounts(mountinfo);
        if let Some(dirs) = V1Dirs::locate(&mounts, membership, fs_root) {
            return Some(RunCgroup::V1(dirs));
        }
        let mount = mounts.iter().find(|m| m.fstype == "cgroup2")?;
        let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
        let relative = path.strip_prefix(mount.root.as_str()).unwrap_or(path);
        Some(RunCgroup::V2 {
            dir: under(fs_root, &mount.mount_point).join(relative.trim_start_matches('/')),
        })
    }

    /// Whether any of this cgroup's directories has `needle` in its path.
    pub fn path_contains(&self, needle: &str) -> bool {
        match self {
            RunCgroup::V1(d) => d.all().iter().any(|p| p.to_string_lossy().contains(needle)),
            RunCgroup::V2 { dir } => dir.to_string_lossy().contains(needle),
        }
    }

    /// Every `cgroup.procs` file a process must be written to in order to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        match self {
            RunCgroup::V1(d) => d
                .all()
                .into_iter()
                .map(|p| p.join("cgroup.procs"))
                .collect(),
            RunCgroup::V2 { dir } => vec![dir.join("cgroup.procs")],
        }
    }

    /// The v2 directory, opened for a clone straight into it (`CLONE_INTO_CGROUP`); `None`
    /// on v1. A process cloned so never has to join: see [`RunCgroup::join_self`].
    pub fn open_clone_target(&self) -> Option<Result<OwnedFd, CgroupError>> {
        let RunCgroup::V2 { dir } = self else {
            return None;
        };
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir)
            .map(OwnedFd::from)
            .map_err(io_error(dir));
        Some(opened)
    }

    /// Moves the calling process (which must be single-threaded) into this cgroup. On v1 it
    /// writes its own thread to `tasks`, which the kernel does without the global
    /// thread-group lock whose first use costs a full RCU grace period (~10 ms). On v2 a
    /// domain cgroup only takes whole processes, through `cgroup.procs` and that lock: the
    /// sandbox helper clones the init into the cgroup instead, and this is the fallback for
    /// kernels older than 5.7.
    pub fn join_self(&self) -> Result<(), CgroupError> {
        let files: Vec<PathBuf> = match self {
            RunCgroup::V1(d) => d.all().into_iter().map(|p| p.join("tasks")).collect(),
            RunCgroup::V2 { dir } => vec![dir.join("cgroup.procs")],
        };
        for file in files {
            write_file(&file, "0")?;
        }
        Ok(())
    }

    /// Applies limits, live: running processes are held to them at once.
    pub fn set_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        match self {
            RunCgroup::V1(d) => d.set_limits(limits),
            RunCgroup::V2 { dir } => v2::set_limits(dir, limits),
        }
    }

    pub fn usage(&self) -> CgroupUsage {
        match self {
            RunCgroup::V1(d) => d.usage(),
            RunCgroup::V2 { dir } => v2::usage(dir),
        }
    }

    /// Starts a new peak-memory measurement where the kernel allows it (v1; on v2 the peak
    /// stays the cgroup's lifetime peak).
    pub fn reset_peak(&self) {
        if let RunCgroup::V1(d) = self {
            let _ = write_file(&d.memory.join("memory.max_usage_in_bytes"), "0");
        }
    }

    /// SIGKILLs every process in the cgroup.
    pub fn kill_all(&self) {
        match self {
            RunCgroup::V1(d) => d.all().into_iter().for_each(kill_members),
            RunCgroup::V2 { dir } => {
                if write_file(&dir.join("cgroup.kill"), "1").is_err() {
                    kill_members(dir);
                }
            }
        }
    }

    /// Kills what is left and removes the cgroup directories.
    pub fn remove(&self) {
        self.kill_all();
        match self {
            RunCgroup::V1(d) => d.all().into_iter().for_each(|p| {
                let _ = remove_dir_retrying(p);
            }),
            RunCgroup::V2 { dir } => {
                let _ = remove_dir_retrying(dir);
            }
        }
    }

    /// Whether the cgroup directories still exist.
    pub fn exists(&self) -> bool {
        match self {
            RunCgroup::V1(d) => d.all().into_iter().any(Path::exists),
            RunCgroup::V2 { dir } => dir.exists(),
        }
    }
}

/// SIGKILLs every pid listed in a cgroup directory's `cgroup.procs`.
fn kill_members(dir: &Path) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            crate::sys::kill(pid);
        }
    }
}

/// `rmdir` of a cgroup fails with EBUSY until its last process has been reaped: retry briefly.
fn remove_dir_retrying(dir: &Path) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {
                kill_members(dir);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
}
