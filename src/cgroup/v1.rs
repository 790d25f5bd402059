//! cgroup v1: one hierarchy per controller (memory, cpu, cpuacct, pids), possibly co-mounted.
//! Run cgroups are created below this process's own cgroup in each hierarchy, so they nest
//! inside whatever limits the host already imposes on us.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
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

/// Whether this process can create (and remove) a child cgroup in `dir`.
fn can_create_children(dir: &Path) -> bool {
    let probe = dir.join(format!("code-exec-probe-{}", std::process::id()));
    let made = std::fs::create_dir(&probe).is_ok();
    if made {
        let _ = std::fs::remove_dir(&probe);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::super::test_support::fake_cgroup_dir;
    use super::super::{CgroupDriver, CgroupLimits, RunCgroup};
    use std::path::Path;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const MEMBERSHIP: &str = "\
8:pids:/
4:memory:/jobs/abc
2:cpuacct:/
1:cpu:/
0::/
";

    fn fake_host(root: &Path) {
        let cg = root.join("sys/fs/cgroup");
        fake_cgroup_dir(&cg.join("cpu"), &[("cpu.cfs_quota_us", "-1\n")]);
        fake_cgroup_dir(&cg.join("cpuacct"), &[("cpuacct.usage", "0\n")]);
        fake_cgroup_dir(
            &cg.join("memory/jobs/abc"),
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ],
        );
        fake_cgroup_dir(&cg.join("pids"), &[("pids.max", "max\n")]);
        fake_cgroup_dir(&cg.join("unified"), &[("cgroup.controllers", "")]);
    }

    #[test]
    fn detects_the_hybrid_layout_below_our_own_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        fake_host(tmp.path());
        let driver = CgroupDriver::detect_from(MOUNTINFO, MEMBERSHIP, tmp.path()).unwrap();
        let CgroupDriver::V1(dirs) = &driver else {
            panic!("expected v1, got {driver:?}")
        };
        assert_eq!(
            dirs.memory,
            tmp.path().join("sys/fs/cgroup/memory/jobs/abc")
        );
        assert_eq!(dirs.cpu, tmp.path().join("sys/fs/cgroup/cpu"));
        assert_eq!(dirs.pids, tmp.path().join("sys/fs/cgroup/pids"));
        assert_eq!(driver.version(), 1);
    }

    #[test]
    fn finds_another_process_cgroup_for_reading() {
        let tmp = tempfile::tempdir().unwrap();
        fake_host(tmp.path());
        let container = "9:pids:/docker/c0ffee\n4:memory:/docker/c0ffee\n2:cpuacct:/docker/c0ffee\n1:cpu:/docker/c0ffee\n0::/\n";
        let found = RunCgroup::of_membership(MOUNTINFO, container, tmp.path()).unwrap();
        let RunCgroup::V1(dirs) = &found else {
            panic!("expected v1, got {found:?}")
        };
        assert_eq!(
            dirs.memory,
            tmp.path().join("sys/fs/cgroup/memory/docker/c0ffee")
        );
        assert!(found.path_contains("c0ffee"));
        assert!(!found.path_contains("deadbeef"));
        // Only found, never created: reading a cgroup needs no write access.
        assert!(!dirs.memory.exists());
    }

    #[test]
    fn creates_limits_and_removes_a_run_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        fake_host(tmp.path());
        let driver = CgroupDriver::detect_from(MOUNTINFO, MEMBERSHIP, tmp.path()).unwrap();
        let limits = CgroupLimits {
            memory_bytes: 64 << 20,
            cpu: 0.25,
            pids: 32,
        };
        // memsw exists in the parent, so the fake child needs it too to be written.
        let run = driver.create("code-exec-1-1", &limits).unwrap();
        let RunCgroup::V1(dirs) = &run else { panic!() };
        let read = |p: &Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap();
        assert_eq!(read(&dirs.memory, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&dirs.cpu, "cpu.cfs_quota_us"), "25000");
        assert_eq!(read(&dirs.cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&dirs.pids, "pids.max"), "32");
        assert_eq!(run.procs_files().len(), 4);

        // Raising the limit live writes the new values.
        run.set_limits(&CgroupLimits {
            memory_bytes: 256 << 20,
            cpu: 1.5,
            pids: 100,
        })
        .unwrap();
        assert_eq!(read(&dirs.memory, "memory.limit_in_bytes"), "268435456");
        assert_eq!(read(&dirs.cpu, "cpu.cfs_quota_us"), "150000");

        std::fs::write(
            dirs.memory.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(dirs.memory.join("memory.max_usage_in_bytes"), "1048576\n").unwrap();
        std::fs::write(dirs.cpuacct.join("cpuacct.usage"), "5000000\n").unwrap();
        let usage = run.usage();
        assert_eq!(usage.oom_kills, 2);
        assert_eq!(usage.peak_memory_bytes, 1 << 20);
        assert_eq!(usage.cpu_time_ns, 5_000_000);
        // On a real cgroupfs the control files vanish with the directory; here, clear them.
        for d in [&dirs.memory, &dirs.cpu, &dirs.cpuacct, &dirs.pids] {
            for f in std::fs::read_dir(d).unwrap().flatten() {
                std::fs::remove_file(f.path()).unwrap();
            }
        }
        run.remove();
        assert!(!run.exists());
    }

    #[test]
    fn missing_controllers_mean_no_v1_driver() {
        let tmp = tempfile::tempdir().unwrap();
        fake_host(tmp.path());
        let without_pids: String = MOUNTINFO
            .lines()
            .filter(|l| !l.contains("pids"))
            .map(|l| format!("{l}\n"))
            .collect();
        let driver = CgroupDriver::detect_from(&without_pids, MEMBERSHIP, tmp.path());
        // Falls through to the v2 hierarchy, which has no controllers to delegate here.
        assert!(!matches!(driver, Ok(CgroupDriver::V1(_))), "{driver:?}");
    }
}
