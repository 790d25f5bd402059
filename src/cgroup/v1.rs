//! cgroup v1: one hierarchy per controller (memory, cpu, cpuacct, pids), possibly co-mounted.
//! Run cgroups are created below this process's own cgroup in each hierarchy, so they nest
//! inside whatever limits the host already imposes on us. Runs where `cgroup` does.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::common::{
    CPU_PERIOD_US, CgroupError, CgroupLimits, CgroupUsage, Mount, cpu_quota_us, io_error, read_key,
    read_u64, under, write_file,
};

/// The directories of one cgroup in each v1 controller hierarchy (the same path twice when
/// controllers are co-mounted, e.g. `cpu,cpuacct`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Dirs {
    pub memory: PathBuf,
    pub cpu: PathBuf,
    pub cpuacct: PathBuf,
    pub pids: PathBuf,
}

impl V1Dirs {
    /// This process's own cgroup in each needed controller, if all are mounted and writable.
    pub(crate) fn detect(mounts: &[Mount], membership: &str, fs_root: &Path) -> Option<V1Dirs> {
        let dirs = Self::locate(mounts, membership, fs_root)?;
        dirs.all()
            .into_iter()
            .all(can_create_children)
            .then_some(dirs)
    }

    /// The cgroup of a process (from its `/proc/<pid>/cgroup` text) in each needed
    /// controller, if all are mounted.
    pub(crate) fn locate(mounts: &[Mount], membership: &str, fs_root: &Path) -> Option<V1Dirs> {
        let dir_of = |controller: &str| -> Option<PathBuf> {
            let mount = mounts.iter().find(|m| {
                m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == controller)
            })?;
            let own = membership.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let _id = parts.next()?;
                let controllers = parts.next()?;
                let path = parts.next()?;
                controllers
                    .split(',')
                    .any(|c| c == controller)
                    .then_some(path)
            })?;
            let relative = own.strip_prefix(mount.root.as_str()).unwrap_or(own);
            Some(under(fs_root, &mount.mount_point).join(relative.trim_start_matches('/')))
        };
        Some(V1Dirs {
            memory: dir_of("memory")?,
            cpu: dir_of("cpu")?,
            cpuacct: dir_of("cpuacct")?,
            pids: dir_of("pids")?,
        })
    }

    /// Distinct directories (co-mounted controllers share one).
    pub fn all(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::new();
        for d in [&self.memory, &self.cpu, &self.cpuacct, &self.pids] {
            if !dirs.contains(&d.as_path()) {
                dirs.push(d);
            }
        }
        dirs
    }

    /// Creates `name` below each of these directories.
    pub(crate) fn create(&self, name: &str) -> Result<V1Dirs, CgroupError> {
        let child = V1Dirs {
            memory: self.memory.join(name),
            cpu: self.cpu.join(name),
            cpuacct: self.cpuacct.join(name),
            pids: self.pids.join(name),
        };
        for dir in child.all() {
            if let Err(err) = std::fs::create_dir(dir) {
                for made in child.all() {
                    let _ = std::fs::remove_dir(made);
                }
                return Err(io_error(dir)(err));
            }
        }
        Ok(child)
    }

    pub(crate) fn set_limits(&self, limits: &CgroupLimits) -> Result<(), CgroupError> {
        let memory = limits.memory_bytes.to_string();
        let memsw = self.memory.join("memory.memsw.limit_in_bytes");
        // memory+swap may never be below memory: order the writes by direction.
        let current = read_u64(&self.memory.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
        let has_memsw = memsw.exists();
        if has_memsw && limits.memory_bytes > current {
            write_file(&memsw, &memory)?;
            write_file(&self.memory.join("memory.limit_in_bytes"), &memory)?;
        } else {
            write_file(&self.memory.join("memory.limit_in_bytes"), &memory)?;
            if has_memsw {
                write_file(&memsw, &memory)?;
            }
        }
        // Without swap accounting, keep the cgroup from swapping at all.
        let _ = write_file(&self.memory.join("memory.swappiness"), "0");
        write_file(
            &self.cpu.join("cpu.cfs_period_us"),
            &CPU_PERIOD_US.to_string(),
        )?;
        write_file(
            &self.cpu.join("cpu.cfs_quota_us"),
            &cpu_quota_us(limits.cpu).to_string(),
        )?;
        write_file(&self.pids.join("pids.max"), &limits.pids.to_string())
    }

    pub(crate) fn usage(&self) -> CgroupUsage {
        CgroupUsage {
            cpu_time_ns: read_u64(&self.cpuacct.join("cpuacct.usage")).unwrap_or(0),
            memory_bytes: read_u64(&self.memory.join("memory.usage_in_bytes")).unwrap_or(0),
            peak_memory_bytes: read_u64(&self.memory.join("memory.max_usage_in_bytes"))
                .unwrap_or(0),
            pids: read_u64(&self.pids.join("pids.current")).unwrap_or(0) as u32,
            oom_kills: read_key(&self.memory.join("memory.oom_control"), "oom_kill").unwrap_or(0),
        }
    }
}

/// Whether this process can create (and remove) a child cgroup in `dir`: asked of the
/// kernel's permission check, not by making one (a v1 cgroup's removal can cost
/// milliseconds, on every start of the tool).
fn can_create_children(dir: &Path) -> bool {
    crate::sys::may_create_in(dir)
}
