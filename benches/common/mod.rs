//! What the benchmarks share: timing a command and taking medians.
#![allow(dead_code, reason = "each benchmark uses a different part")]

use std::process::{Command, Stdio};
use std::time::Instant;

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Wall time of one run of `program args`, in milliseconds; it must succeed.
pub fn time_command(program: &str, args: &[&str]) -> f64 {
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert!(status.success(), "{program} {args:?} failed");
    started.elapsed().as_secs_f64() * 1000.0
}

/// The `p`-th percentile (0–100) of `values`, nearest rank.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
