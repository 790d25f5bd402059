//! cgroup v2: one unified hierarchy. Controllers must be enabled in each parent's
//! `cgroup.subtree_control`, and a cgroup with processes of its own cannot enable them, so run
//! cgroups live in a `code-exec` cgroup of their own: below the root when we may write there
//! (root), else below the nearest ancestor of our cgroup that was delegated to us.
//! Runs where `cgroup` does.

use std::path::{Path, PathBuf};

use super::common::{
    CPU_PERIOD_US, CgroupError, CgroupLimits, CgroupUsage, cpu_quota_us, io_error, read_key,
    read_u64, write_file,
};

const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// Picks (and prepares) the directory run cgroups are created in.
pub(crate) fn choose_parent(mount_dir: &Path, own: &str) -> Result<PathBuf, CgroupError> {
    let own_dir = mount_dir.join(own.trim_start_matches('/'));
    let mut candidates: Vec<PathBuf> = vec![mount_dir.to_owned()];
    // Ancestors of our own cgroup, nearest first; our own cgroup holds processes (us), so it
    // can never enable controllers for children.
    let mut ancestors: Vec<PathBuf> = own_dir
        .ancestors()
        .skip(1)
        .take_while(|p| p.starts_with(mount_dir) && *p != mount_dir)
        .map(Path::to_owned)
        .collect();
    candidates.append(&mut ancestors);
    let mut last_error = String::from("no candidate cgroup");
    for base in candidates {
        match prepare(&base) {
            Ok(parent) => return Ok(parent),
            Err(err) => last_error = err.to_string(),
        }
    }
    Err(CgroupError::Unavailable(format!(
        "cgroup v2: cannot delegate {} below any writable cgroup ({last_error})",
        CONTROLLERS.join(", ")
    )))
}

/// Makes `base/code-exec` with memory, cpu and pids available to its children.
fn prepare(base: &Path) -> Result<PathBuf, CgroupError> {
    let available =
        std::fs::read_to_string(base.join("cgroup.controllers")).map_err(io_error(base))?;
    let missing: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !available.split_whitespace().any(|a| a == *c))
        .collect();
    if !missing.is_empty() {
        return Err(CgroupError::Unavailable(format!(
            "{} lacks controllers {}",
            base.display(),
            missing.join(", ")
        )));
    }
    enable_controllers(base)?;
    let parent = base.join("code-exec");
    match std::fs::create_dir(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(&parent)(e)),
    }
    enable_controllers(&parent)?;
    Ok(parent)
}

fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let line = CONTROLLERS
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    write_file(&dir.join("cgroup.subtree_control"), &line)
}

pub(crate) fn create(parent: &Path, name: &str) -> Result<PathBuf, CgroupError> {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).map_err(io_error(&dir))?;
    Ok(dir)
}

pub(crate) fn set_limits(dir: &Path, limits: &CgroupLimits) -> Result<(), CgroupError> {
    write_file(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
    let swap = dir.join("memory.swap.max");
    if swap.exists() {
        write_file(&swap, "0")?;
    }
    write_file(
        &dir.join("cpu.max"),
        &format!("{} {CPU_PERIOD_US}", cpu_quota_us(limits.cpu)),
    )?;
    write_file(&dir.join("pids.max"), &limits.pids.to_string())
}

pub(crate) fn usage(dir: &Path) -> CgroupUsage {
    let current = read_u64(&dir.join("memory.current")).unwrap_or(0);
    CgroupUsage {
        cpu_time_ns: read_key(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
        memory_bytes: current,
        // memory.peak exists from Linux 5.19; before, the current value is the best known.
        peak_memory_bytes: read_u64(&dir.join("memory.peak")).unwrap_or(current),
        pids: read_u64(&dir.join("pids.current")).unwrap_or(0) as u32,
        oom_kills: read_key(&dir.join("memory.events"), "oom_kill").unwrap_or(0),
    }
}
