//! cgroup v2: one unified hierarchy. Controllers must be enabled in each parent's
//! `cgroup.subtree_control`, and a cgroup with processes of its own cannot enable them, so run
//! cgroups live in a `code-exec` cgroup of their own: below the root when we may write there
//! (root), else below the nearest ancestor of our cgroup that was delegated to us.

use std::path::{Path, PathBuf};

use super::{
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

#[cfg(test)]
mod tests {
    use super::super::test_support::fake_cgroup_dir;
    use super::super::{CgroupDriver, CgroupLimits, RunCgroup};
    use std::path::Path;

    const MOUNTINFO: &str = "30 23 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n";

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn finds_another_process_cgroup_for_reading() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp
            .path()
            .join("sys/fs/cgroup/system.slice/docker-c0ffee.scope");
        fake_cgroup_dir(
            &dir,
            &[
                ("memory.current", "1048576\n"),
                ("cpu.stat", "usage_usec 2500\nuser_usec 2000\n"),
                ("pids.current", "3\n"),
                ("memory.events", "oom 1\noom_kill 1\n"),
            ],
        );
        let found = RunCgroup::of_membership(
            MOUNTINFO,
            "0::/system.slice/docker-c0ffee.scope\n",
            tmp.path(),
        )
        .unwrap();
        assert_eq!(found, RunCgroup::V2 { dir });
        let usage = found.usage();
        assert_eq!(
            (
                usage.cpu_time_ns,
                usage.memory_bytes,
                usage.pids,
                usage.oom_kills
            ),
            (2_500_000, 1_048_576, 3, 1)
        );
    }

    #[test]
    fn root_delegates_below_the_hierarchy_root() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = tmp.path().join("sys/fs/cgroup");
        fake_cgroup_dir(
            &cg,
            &[(
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            )],
        );
        let driver =
            CgroupDriver::detect_from(MOUNTINFO, "0::/user.slice/session-1.scope\n", tmp.path())
                .unwrap();
        assert_eq!(
            driver,
            CgroupDriver::V2 {
                parent: cg.join("code-exec")
            }
        );
        assert_eq!(
            read(&cg.join("cgroup.subtree_control")),
            "+memory +cpu +pids"
        );
        assert_eq!(
            read(&cg.join("code-exec/cgroup.subtree_control")),
            "+memory +cpu +pids"
        );

        let limits = CgroupLimits {
            memory_bytes: 128 << 20,
            cpu: 0.5,
            pids: 64,
        };
        let run = driver.create("code-exec-7-1", &limits).unwrap();
        let RunCgroup::V2 { dir } = &run else {
            panic!()
        };
        assert_eq!(read(&dir.join("memory.max")), "134217728");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(&dir.join("pids.max")), "64");
        assert_eq!(run.procs_files(), vec![dir.join("cgroup.procs")]);

        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        let usage = run.usage();
        assert_eq!(usage.oom_kills, 1);
        assert_eq!(usage.cpu_time_ns, 1_500_000);
        assert_eq!(
            usage.peak_memory_bytes, 4096,
            "without memory.peak, current stands in"
        );
    }

    #[test]
    fn an_unprivileged_user_uses_a_delegated_ancestor() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = tmp.path().join("sys/fs/cgroup");
        // The root offers no controllers we could enable (as if not writable for us) …
        fake_cgroup_dir(&cg, &[("cgroup.controllers", "")]);
        // … but the user's service subtree was delegated.
        let service = cg.join("user.slice/user-1000.slice/user@1000.service");
        fake_cgroup_dir(&service, &[("cgroup.controllers", "cpu memory pids\n")]);
        fake_cgroup_dir(&service.join("app.slice/run.scope"), &[]);
        let own = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run.scope\n";
        let driver = CgroupDriver::detect_from(MOUNTINFO, own, tmp.path());
        // app.slice has no cgroup.controllers file in this fake tree, so the service is used.
        assert_eq!(
            driver.unwrap(),
            CgroupDriver::V2 {
                parent: service.join("code-exec")
            }
        );
    }

    #[test]
    fn no_controllers_anywhere_is_unavailable() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = tmp.path().join("sys/fs/cgroup");
        fake_cgroup_dir(&cg, &[("cgroup.controllers", "cpu\n")]);
        let err = CgroupDriver::detect_from(MOUNTINFO, "0::/\n", tmp.path()).unwrap_err();
        assert!(err.to_string().contains("memory"), "{err}");
    }
}
