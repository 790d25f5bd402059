//! The cgroup drivers, unit-tested on directory trees shaped like each version's cgroupfs
//! (hybrid v1 and unified v2), through the driver's public interface.

mod v1 {
    use super::super::common::test_support::fake_cgroup_dir;
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

mod v2 {
    use super::super::common::test_support::fake_cgroup_dir;
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
