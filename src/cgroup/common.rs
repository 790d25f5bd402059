//! What both cgroup versions share: the limits and usage types, errors, the control-file
//! readers and writers, and where the kernel says cgroup hierarchies are mounted. Used by the
//! drivers (`v1`, `v2`) and the run cgroup (`mod.rs`); imports neither.
//! Runs in the host process (and, to join a run's cgroup, in the init).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("no cgroup is available to this process: {0}")]
    Unavailable(String),
    #[error("cgroup {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(super) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_error(path))
}

pub(super) fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file such as `memory.events` (`key value` lines).
pub(super) fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then(|| parts.next()?.parse().ok())?
    })
}

/// Limits a run cgroup enforces.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CgroupLimits {
    pub memory_bytes: u64,
    /// Fraction of one core's time (2.0 = two cores).
    pub cpu: f64,
    pub pids: u32,
}

/// CFS period used for CPU quotas, in microseconds.
pub(super) const CPU_PERIOD_US: u64 = 100_000;

pub(super) fn cpu_quota_us(cpu: f64) -> u64 {
    ((cpu * CPU_PERIOD_US as f64).round() as u64).max(1_000)
}

/// What a run cgroup has measured so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupUsage {
    pub cpu_time_ns: u64,
    pub memory_bytes: u64,
    pub peak_memory_bytes: u64,
    pub pids: u32,
    pub oom_kills: u64,
}

/// One line of `/proc/self/mountinfo` that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub root: String,
    pub mount_point: String,
    pub fstype: String,
    pub super_options: String,
}

pub(super) fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            Some(Mount {
                root: left.get(3)?.to_string(),
                mount_point: left.get(4)?.to_string(),
                fstype: right.first()?.to_string(),
                super_options: right.get(2).unwrap_or(&"").to_string(),
            })
        })
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect()
}

/// `path` (absolute, as the kernel shows it) resolved under `fs_root`.
pub(super) fn under(fs_root: &Path, path: &str) -> PathBuf {
    fs_root.join(path.trim_start_matches('/'))
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;

    /// Creates the control files a cgroup directory would have.
    pub fn fake_cgroup_dir(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }
}
