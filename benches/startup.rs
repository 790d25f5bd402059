//! Start-up cost of one `print(1)` through code-exec, against bare `python3 -I -c 'print(1)'`
//! with the same interpreter, measured in the same run (runs alternate, so drift cancels).
//!
//!     cargo bench --bench startup            (BENCH_PAIRS=N to change the number of rounds)
//!
//! Prints median wall times, the median of per-round ratios, and throughput with 2 in parallel.
//! `native (library)` is the library's default (runs forked from the zygote); `native, cold`
//! starts a fresh helper and interpreter per run (ZygoteMode::Off, as the CLI does).

mod common;

use std::time::{Duration, Instant};

use common::{median, time_command};

use code_execution_tool::{BackendKind, CodeExecutionTool, ZygoteMode};

const BIN: &str = env!("CARGO_BIN_EXE_code-exec");

fn time_tool(tool: &CodeExecutionTool) -> f64 {
    let started = Instant::now();
    let r = tool.execute("print(1)").unwrap();
    assert!(r.success && r.output == "1\n", "{r:?}");
    started.elapsed().as_secs_f64() * 1000.0
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

/// One measured way of running `print(1)`: its wall times and its ratios to bare Python.
struct Series {
    name: &'static str,
    run: Box<dyn Fn() -> f64>,
    times: Vec<f64>,
    ratios: Vec<f64>,
}

fn main() {
    let build = |kind, zygote: Option<ZygoteMode>| {
        let mut builder = CodeExecutionTool::builder().backend(kind).supervisor(BIN);
        if let Some(mode) = zygote {
            builder = builder.zygote(mode);
        }
        builder
            .build()
            .expect("tool (for native: see code-exec doctor)")
    };
    let none = build(BackendKind::None, None);
    // The library's default: runs forked from the zygote where the host allows one.
    let native = build(BackendKind::Native, Some(ZygoteMode::Auto));
    let cold = build(BackendKind::Native, Some(ZygoteMode::Off));
    match native.zygote_status() {
        Ok(z) => println!(
            "zygote: {} (site run {})",
            z.library.display(),
            if z.site_in_zygote {
                "in the zygote"
            } else {
                "in each run"
            }
        ),
        Err(why) => println!("zygote: none ({why}): the library's native runs start cold"),
    }
    let python = code_execution_tool::Interpreter::discover().expect("python3");
    let python = python.path().to_str().unwrap().to_owned();
    let pairs: usize = std::env::var("BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);

    let bare_cmd = {
        let python = python.clone();
        move || time_command(&python, &["-I", "-c", "print(1)"])
    };
    let (none_lib, native_lib, cold_lib) = (none.clone(), native.clone(), cold.clone());
    let mut series = vec![
        Series {
            name: "none backend (library)",
            run: Box::new(move || time_tool(&none_lib)),
            times: vec![],
            ratios: vec![],
        },
        Series {
            name: "none backend (CLI)",
            run: Box::new(|| time_command(BIN, &["run", "--sandbox", "none", "-c", "print(1)"])),
            times: vec![],
            ratios: vec![],
        },
        Series {
            name: "native (library)",
            run: Box::new(move || time_tool(&native_lib)),
            times: vec![],
            ratios: vec![],
        },
        Series {
            name: "native, cold (library)",
            run: Box::new(move || time_tool(&cold_lib)),
            times: vec![],
            ratios: vec![],
        },
        Series {
            name: "native (CLI)",
            run: Box::new(|| time_command(BIN, &["run", "--sandbox", "native", "-c", "print(1)"])),
            times: vec![],
            ratios: vec![],
        },
    ];
    // Warm the page cache and the interpreter's imports.
    for _ in 0..10 {
        bare_cmd();
        for s in &series {
            (s.run)();
        }
    }
    let mut bare = Vec::new();
    for _ in 0..pairs {
        let b = bare_cmd();
        bare.push(b);
        for s in &mut series {
            let t = (s.run)();
            s.times.push(t);
            s.ratios.push(t / b);
        }
    }
    println!("print(1), {pairs} rounds, interpreter {python}");
    println!(
        "  bare python3 -I -c       median {:7.2} ms",
        median(&mut bare)
    );
    for s in &mut series {
        println!(
            "  {:<24} median {:7.2} ms   median ratio vs bare {:.2}x",
            s.name,
            median(&mut s.times),
            median(&mut s.ratios)
        );
    }
    let window = Duration::from_secs(3);
    let bare_tp = throughput(2, window, || {
        bare_cmd();
    });
    let none_tp = throughput(2, window, || {
        time_tool(&none);
    });
    let native_tp = throughput(2, window, || {
        time_tool(&native);
    });
    let cold_tp = throughput(2, window, || {
        time_tool(&cold);
    });
    println!("throughput, 2 in parallel for {} s:", window.as_secs());
    println!("  bare python3 -I -c       {bare_tp:6.1}/s");
    println!(
        "  none backend (library)   {none_tp:6.1}/s   ratio {:.2}x",
        none_tp / bare_tp
    );
    println!(
        "  native (library)         {native_tp:6.1}/s   ratio {:.2}x",
        native_tp / bare_tp
    );
    println!(
        "  native, cold (library)   {cold_tp:6.1}/s   ratio {:.2}x",
        cold_tp / bare_tp
    );
}
