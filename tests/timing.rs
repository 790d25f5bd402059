//! Timing-sensitive checks, in a test binary of their own so that no other test of this
//! suite loads the machine while they measure (cargo runs test binaries one after another).

#[macro_use]
mod common;

use common::*;

native_test!(cpu_limit_throttles_a_spinning_loop, {
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
