//! Persistent native sandboxes (the seed's `SandboxExecutor`): many executions, files kept,
//! processes not, usage read from outside, limits changed live, nothing left after cleanup.

mod common;

use std::time::Duration;

use code_execution_tool::{BackendKind, CodeExecutionTool, ErrorType, SandboxExecutor};
use common::*;

/// These tests look at host-wide state (mounts, cgroups) of this very process: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn sandbox(memory_mb: u64) -> Option<SandboxExecutor> {
    if !native_sandbox_or_skip("persistent sandbox") {
        return None;
    }
    let tool = CodeExecutionTool::builder()
        .backend(BackendKind::Native)
        .supervisor(bin())
        .memory_limit_mb(memory_mb)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("native tool");
    Some(tool.create_sandbox().expect("create a sandbox"))
}

#[test]
fn files_persist_between_executions_and_processes_do_not() {
    let _serial = serial();
    let Some(sb) = sandbox(128) else { return };
    let tag = marker("persistent");
    let first = sb
        .execute(&format!(
            "import subprocess\nopen('/work/notes.txt', 'w').write('kept')\nopen('/tmp/scratch', 'w').write('gone')\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep', start_new_session=True)\nprint('written')"
        ))
        .unwrap();
    assert!(first.success, "{first:?}");
    assert_no_survivors(&tag);
    let second = sb
        .execute("import os\nprint(open('/work/notes.txt').read(), os.path.exists('/tmp/scratch'))")
        .unwrap();
    assert_eq!(second.output, "kept False\n", "{second:?}");
    for i in 0..3 {
        let r = sb.execute(&format!("print({i})")).unwrap();
        assert_eq!(r.output, format!("{i}\n"));
    }
    sb.cleanup();
    assert!(!sb.exists());
    assert_host_clean(&tag);
    let after = sb.execute("print(1)").unwrap();
    assert_eq!(after.error_type, Some(ErrorType::SandboxError), "{after:?}");
}

#[test]
fn usage_is_read_from_outside() {
    let _serial = serial();
    let Some(sb) = sandbox(256) else { return };
    if !cgroups_or_skip("usage_is_read_from_outside") {
        return;
    }
    let r = sb
        .execute("x = bytearray(60 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ns = 0\nfor i in range(3 * 10**6): s += i")
        .unwrap();
    assert!(r.success, "{r:?}");
    // The sandbox's init reports before it exits: on a loaded machine it may still be
    // counted for a moment after the result.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let usage = loop {
        let usage = sb.get_resource_usage();
        if usage.pids == 0 || std::time::Instant::now() > deadline {
            break usage;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(usage.cpu_time_ms > 50.0, "{usage:?}");
    assert!(usage.peak_memory_mb > 55.0, "{usage:?}");
    assert_eq!(usage.pids, 0, "nothing runs between executions: {usage:?}");
    let json = serde_json::to_value(usage).unwrap();
    for key in [
        "cpu_percent",
        "memory_mb",
        "peak_memory_mb",
        "cpu_time_ms",
        "pids",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

#[test]
fn raised_limits_apply_to_the_next_execution() {
    let _serial = serial();
    let Some(sb) = sandbox(64) else { return };
    let alloc =
        "x = bytearray(150 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\nprint('ok')";
    let r = sb.execute(alloc).unwrap();
    // With a cgroup the kernel's OOM kill says so; without, the per-process cap shows as the
    // interpreter's MemoryError, which the host cannot tell from one the code raised.
    let expected = if sb.limits_apply_live() {
        ErrorType::MemoryLimit
    } else {
        ErrorType::Exception("MemoryError".into())
    };
    assert_eq!(r.error_type, Some(expected), "{r:?}");
    let limits = sb.update_limits(512, 1.0).unwrap();
    assert_eq!(limits.memory_mb.get(), 512);
    let r = sb.execute(alloc).unwrap();
    assert!(
        r.success,
        "the allocation above the old limit succeeds now: {r:?}"
    );
    // Invalid values change nothing.
    assert!(sb.update_limits(0, 1.0).is_err());
    assert!(sb.update_limits(256, f64::NAN).is_err());
    assert_eq!(sb.limits().memory_mb.get(), 512);
}

#[test]
fn lowered_limits_reach_a_running_execution() {
    let _serial = serial();
    let Some(sb) = sandbox(512) else { return };
    if !cgroups_or_skip("lowered_limits_reach_a_running_execution") {
        return;
    }
    assert!(sb.limits_apply_live());
    std::thread::scope(|s| {
        let running = s.spawn(|| {
            sb.execute("import time\ntime.sleep(1.5)\nx = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\nprint('allocated')")
                .unwrap()
        });
        // Usage can be read while the execution runs: wait until it shows the sandbox.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut during = sb.get_resource_usage();
        while during.pids == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            during = sb.get_resource_usage();
        }
        assert!(
            during.pids >= 1,
            "the running execution is visible: {during:?}"
        );
        sb.update_limits(64, 0.5).unwrap();
        let r = running.join().unwrap();
        assert_eq!(r.error_type, Some(ErrorType::MemoryLimit), "{r:?}");
    });
}

#[test]
fn dropping_the_sandbox_cleans_up() {
    let _serial = serial();
    let Some(sb) = sandbox(128) else { return };
    let r = sb.execute("open('/work/f', 'w').write('x')").unwrap();
    assert!(r.success, "{r:?}");
    drop(sb);
    assert_host_clean("persistent_drop");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours = format!("code-exec-{}-", std::process::id());
    assert!(!mounts.contains(&ours), "a work mount survived:\n{mounts}");
    let cgroups = cgroups_named(&ours);
    assert!(cgroups.is_empty(), "a cgroup survived: {cgroups}");
}

#[test]
fn monitoring_in_a_persistent_sandbox_counts_only_this_execution() {
    let _serial = serial();
    let Some(sb) = sandbox(256) else { return };
    // A CPU-heavy first execution, then a sleeping one: the sleeper's samples must not
    // inherit the first one's CPU time (the sandbox's cgroup counts both).
    let busy = sb
        .execute("s = 0\nfor i in range(5 * 10**6): s += i")
        .unwrap();
    assert!(busy.success, "{busy:?}");
    let r = sb
        .run(
            b"import time\ntime.sleep(0.5)",
            None,
            Some(Duration::from_millis(50)),
        )
        .unwrap();
    assert!(r.success, "{r:?}");
    let samples = r.monitoring.expect("samples");
    assert!(samples.len() >= 4, "{samples:?}");
    // The first sample covers the interpreter's start-up (one busy core at most); later
    // ones a sleep. Inheriting the first execution's ~0.5 s of CPU would show several 100%.
    assert!(samples[0].cpu_percent < 150.0, "{samples:?}");
    let worst = samples
        .iter()
        .skip(2)
        .map(|s| s.cpu_percent)
        .fold(0.0, f64::max);
    assert!(
        worst < 50.0,
        "a sleeping execution shows {worst:.0}% CPU: {samples:?}"
    );
    assert!(
        r.cpu_time_ms < busy.cpu_time_ms,
        "per-execution CPU time: {} vs {}",
        r.cpu_time_ms,
        busy.cpu_time_ms
    );
}

#[test]
fn the_pids_limit_can_be_changed() {
    let _serial = serial();
    let Some(sb) = sandbox(256) else { return };
    let forks = "import os, time\nok = 0\nfor i in range(30):\n    try:\n        if os.fork() == 0:\n            time.sleep(2); os._exit(0)\n        ok += 1\n    except OSError:\n        break\nprint(ok)";
    let before = sb.execute(forks).unwrap();
    assert_eq!(before.output, "30\n", "{before:?}");
    let limits = sb.update_pids(10).unwrap();
    assert_eq!(limits.pids.get(), 10);
    let after = sb.execute(forks).unwrap();
    let started: u32 = after.output.trim().parse().unwrap();
    if sb.limits_apply_live() {
        assert!(
            started < 10,
            "{started} processes under a limit of 10: {after:?}"
        );
    } else {
        // RLIMIT_NPROC fallback: counted on top of what the (unprivileged) user already runs.
        assert!(
            started < 30,
            "{started} processes: the new limit had no effect: {after:?}"
        );
    }
    assert!(sb.update_pids(0).is_err());
    assert_eq!(sb.limits().pids.get(), 10);
}

/// The run directories of this process (`<base>/code-exec-<pid>-…`).
fn own_run_dirs() -> std::collections::BTreeSet<std::path::PathBuf> {
    let prefix = format!("code-exec-{}-", std::process::id());
    std::fs::read_dir(run_dir_base())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// What the code leaves in `/work` for the host to remove: a tree as deep as the work
/// directory allows (25,000 levels: a recursive removal overflows a thread's stack), a
/// directory nobody may read or enter holding another, a link to a host file, a FIFO.
const HARD_TO_REMOVE: &str = r#"
import os
os.chdir('/work')
depth = 0
try:
    while depth < 25000:
        os.mkdir('d'); os.chdir('d'); depth += 1
except OSError:
    # Out of inodes (root's /work is a bounded tmpfs): leave room for the rest.
    for _ in range(50):
        os.chdir('..'); os.rmdir('d'); depth -= 1
os.chdir('/work')
os.makedirs('locked/inner')
open('locked/inner/file', 'w').write('x')
os.chmod('locked/inner', 0)
os.chmod('locked', 0)
os.symlink('/etc/passwd', 'link')
os.mkfifo('fifo')
print(depth > 1000)
"#;

#[test]
fn a_deep_tree_and_locked_directories_are_removed_with_the_sandbox() {
    let _serial = serial();
    let before = own_run_dirs();
    let Some(sb) = sandbox(256) else { return };
    let r = sb.execute(HARD_TO_REMOVE).unwrap();
    assert_eq!(r.output, "True\n", "{r:?}");
    sb.cleanup();
    assert!(!sb.exists());
    let left: Vec<_> = own_run_dirs().difference(&before).cloned().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(std::path::Path::new("/etc/passwd").exists());
}

// Cleaning a sandbox up while an execution runs in it ends that execution at once, whatever
// limits the host gives (as uid 65534 there is no cgroup to remove, and before, the code ran
// on until its timeout), and the execution reports `Cancelled`, not a crash.
#[test]
fn cleanup_ends_a_running_execution_which_reports_cancelled() {
    let _serial = serial();
    let Some(sb) = sandbox(128) else { return };
    let tag = marker("cleanup_running");
    let code = format!(
        "import subprocess, time\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep')\nprint('started', flush=True)\nwhile True: time.sleep(0.01)"
    );
    std::thread::scope(|s| {
        let running = s.spawn(|| sb.execute(&code).unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while processes_with(&tag).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the code never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let asked = std::time::Instant::now();
        sb.cleanup();
        let r = running.join().unwrap();
        let took = asked.elapsed();
        assert_eq!(r.verdict, code_execution_tool::Verdict::Cancelled, "{r:?}");
        assert!(
            took < Duration::from_secs(5),
            "ended {took:?} after cleanup"
        );
    });
    assert_no_survivors(&tag);
    assert!(!sb.exists());
    let after = sb.execute("print(1)").unwrap();
    assert_eq!(
        after.verdict,
        code_execution_tool::Verdict::SandboxError,
        "{after:?}"
    );
}

// A persistent sandbox's /work is bounded in total, not only per file: as uid 65534 (no
// mount on the host) it was a plain host directory, and many files each under the per-file
// cap put hundreds of MB on the host's disk under a 64 MB limit. Now it is a tmpfs of the
// memory limit's size wherever it lives (mounted on the host by root, held in a namespace of
// the sandbox's own otherwise), and nothing of it lands on the host's disk.
#[test]
fn a_persistent_work_directory_is_bounded_in_total() {
    let _serial = serial();
    let Some(sb) = sandbox(64) else { return };
    let before = own_run_dirs();
    let code = "import os\ntry:\n    for i in range(40):\n        with open('/work/f%d' % i, 'wb') as f:\n            f.write(b'x' * (5 << 20))\nexcept OSError as e:\n    print('stopped', e.errno)";
    let r = sb.execute(code).unwrap();
    // Either the tmpfs is full (ENOSPC) or, with a cgroup, its pages (charged to the
    // sandbox's memory) reached the memory limit first.
    assert!(
        r.output.contains("stopped 28") || r.error_type == Some(ErrorType::MemoryLimit),
        "{r:?}"
    );
    // What persists for the next execution is within the limit.
    let r = sb
        .execute("import os\nprint(sum(os.path.getsize('/work/' + f) for f in os.listdir('/work')) >> 20)")
        .unwrap();
    let kept: u64 = r.output.trim().parse().unwrap_or_else(|_| panic!("{r:?}"));
    assert!(
        kept > 0 && kept <= 64,
        "{kept} MB kept in /work under a 64 MB limit"
    );
    // None of it is on the host's disk: the host sees either nothing (a namespace of the
    // sandbox holds the tmpfs) or a tmpfs mount (root).
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for dir in own_run_dirs().iter().filter(|d| !before.contains(*d)) {
        let work = dir.join("work");
        let host_tmpfs = mounts.lines().any(|l| {
            l.split(' ').nth(4) == Some(work.to_str().unwrap()) && l.contains(" - tmpfs ")
        });
        let on_disk = disk_usage(&work);
        assert!(
            host_tmpfs || on_disk == 0,
            "{on_disk} bytes of /work landed on the host's disk at {work:?}"
        );
    }
    // Whatever held the tmpfs is gone with the sandbox.
    drop(sb);
    assert_no_survivors("__work_holder");
}

/// Bytes of regular files below `dir` as the host sees them (not following links).
fn disk_usage(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// A module written by one execution imports in the next, from the work directory (issue 18,
/// item 5), and a changed module is read afresh (each execution is a new interpreter).
#[test]
fn modules_written_to_the_work_directory_import_in_later_executions() {
    let _serial = serial();
    let Some(sb) = sandbox(128) else { return };
    let first = sb
        .execute("open('shared_mod.py', 'w').write('VALUE = 1')\nimport shared_mod\nprint(shared_mod.VALUE)")
        .unwrap();
    assert_eq!(first.output, "1\n", "{first:?}");
    let second = sb
        .execute("import shared_mod\nprint(shared_mod.VALUE)\nopen('shared_mod.py', 'w').write('VALUE = 22')")
        .unwrap();
    assert_eq!(second.output, "1\n", "{second:?}");
    let third = sb
        .execute("import shared_mod\nprint(shared_mod.VALUE)")
        .unwrap();
    assert_eq!(third.output, "22\n", "{third:?}");
    sb.cleanup();
}
