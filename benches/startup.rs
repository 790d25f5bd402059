//! Start-up cost of one `print(1)` through code-exec, against bare `python3 -I -c 'print(1)'`
//! with the same interpreter, measured in the same run (pairs alternate, so drift cancels).
//!
//!     cargo bench --bench startup
//!
//! Prints median wall times, the median of per-pair ratios, and throughput with 2 in parallel.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use code_execution_tool::{BackendKind, CodeExecutionTool};

const BIN: &str = env!("CARGO_BIN_EXE_code-exec");

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn time_command(program: &str, args: &[&str]) -> Duration {
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert!(status.success(), "{program} {args:?} failed");
    started.elapsed()
}

/// Runs `job` from `workers` threads for `window`; returns completions per second.
fn throughput(workers: usize, window: Duration, job: impl Fn() + Sync) -> f64 {
    let done = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while started.elapsed() < window {
                    job();
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    done.into_inner() as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let tool = CodeExecutionTool::builder()
        .backend(BackendKind::None)
        .supervisor(BIN)
        .build()
        .expect("tool");
    let python = code_execution_tool::Interpreter::discover().expect("python3");
    let python = python.path().to_str().unwrap().to_owned();
    let pairs: usize = std::env::var("BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);

    // Warm the page cache and the interpreter's imports.
    for _ in 0..10 {
        time_command(&python, &["-I", "-c", "print(1)"]);
        assert!(tool.execute("print(1)").unwrap().success);
    }
    let (mut bare, mut lib, mut cli) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lib_ratio, mut cli_ratio) = (Vec::new(), Vec::new());
    for _ in 0..pairs {
        let b = time_command(&python, &["-I", "-c", "print(1)"]).as_secs_f64() * 1000.0;
        let started = Instant::now();
        let r = tool.execute("print(1)").unwrap();
        assert!(r.success && r.output == "1\n");
        let l = started.elapsed().as_secs_f64() * 1000.0;
        let c = time_command(BIN, &["run", "--sandbox", "none", "-c", "print(1)"]).as_secs_f64()
            * 1000.0;
        bare.push(b);
        lib.push(l);
        cli.push(c);
        lib_ratio.push(l / b);
        cli_ratio.push(c / b);
    }
    let window = Duration::from_secs(3);
    let bare_tp = throughput(2, window, || {
        time_command(&python, &["-I", "-c", "print(1)"]);
    });
    let lib_tp = throughput(2, window, || {
        assert!(tool.execute("print(1)").unwrap().success);
    });

    println!("print(1), {pairs} alternating pairs, interpreter {python}");
    println!(
        "  bare python3 -I -c     median {:7.2} ms",
        median(&mut bare)
    );
    println!(
        "  none backend (library) median {:7.2} ms   median ratio vs bare {:.2}x",
        median(&mut lib),
        median(&mut lib_ratio)
    );
    println!(
        "  none backend (CLI)     median {:7.2} ms   median ratio vs bare {:.2}x",
        median(&mut cli),
        median(&mut cli_ratio)
    );
    println!(
        "throughput, 2 in parallel for {} s: bare {bare_tp:.1}/s, none backend (library) {lib_tp:.1}/s, ratio {:.2}x",
        window.as_secs(),
        lib_tp / bare_tp
    );
}
