//! Timing-sensitive checks, in a test binary of their own so that no other test of this
//! suite loads the machine while they measure (cargo runs test binaries one after another).

#[macro_use]
mod common;

use common::*;

/// The measurements here must not overlap each other either.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|p| p.into_inner())
}

native_test!(cpu_limit_throttles_a_spinning_loop, {
    let _alone = alone();
    if !cgroups_or_skip("cpu_limit_throttles_a_spinning_loop") {
        return;
    }
    let code = "import time\nend = time.monotonic() + 2\nwhile time.monotonic() < end: pass";
    let (r, status) = run_native(code, &["--cpu", "0.25", "--timeout", "20"]);
    assert_eq!(status, 0, "{r}");
    let share = r["cpu_time_ms"].as_f64().unwrap() / r["duration_ms"].as_f64().unwrap();
    assert!(
        (0.15..=0.40).contains(&share),
        "CPU share {share:.2} under --cpu 0.25: {r}"
    );
    let (r, _) = run_native(code, &["--cpu", "1", "--timeout", "20"]);
    let full = r["cpu_time_ms"].as_f64().unwrap() / r["duration_ms"].as_f64().unwrap();
    assert!(
        full > share + 0.2,
        "--cpu 1 ({full:.2}) should run much more than 0.25 ({share:.2})"
    );
});

native_test!(a_persistent_sandbox_cpu_quota_changes_live, {
    let _alone = alone();
    if !cgroups_or_skip("a_persistent_sandbox_cpu_quota_changes_live") {
        return;
    }
    let tool = code_execution_tool::CodeExecutionTool::builder()
        .backend(code_execution_tool::BackendKind::Native)
        .supervisor(bin())
        .cpu_limit(0.25)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("native tool");
    let sandbox = tool.create_sandbox().expect("sandbox");
    // Spins 4 s of wall time; after 2 s the quota goes from 0.25 to 1 CPU while it runs.
    let code = "import time\nend = time.monotonic() + 4\nwhile time.monotonic() < end: pass";
    let r = std::thread::scope(|s| {
        let running = s.spawn(|| sandbox.execute(code).unwrap());
        std::thread::sleep(std::time::Duration::from_secs(2));
        sandbox.update_limits(128, 1.0).unwrap();
        running.join().unwrap()
    });
    assert!(r.success, "{r:?}");
    let share = r.cpu_time_ms / r.duration_ms;
    // 2 s at 0.25 and about 2 s at 1.0: about 0.6 overall; either quota alone is far off.
    assert!(
        (0.45..=0.80).contains(&share),
        "CPU share {share:.2} after a live change from 0.25 to 1 CPU: {r:?}"
    );
});
