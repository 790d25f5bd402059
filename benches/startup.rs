//! Start-up cost of one `print(1)` through code-exec, against bare `python3 -I -c 'print(1)'`
//! with the same interpreter (Debian's `/usr/bin/python3`, or `BENCH_PYTHON`), and against
//! bubblewrap running that interpreter with every namespace unshared, all measured in the same
//! run (runs alternate round by round, so drift cancels).
//!
//!     cargo bench --bench startup    (BENCH_PAIRS=N rounds, default 200; BENCH_SECONDS=N per
//!                                      throughput window, default 3)
//!
//! Prints, for each way of running: the median wall time, the median of per-round ratios to
//! bare, throughput with 2 in parallel, and the CPU one run costs the whole machine (busy time
//! from `/proc/stat` over the throughput window, kernel workers included: a network
//! namespace's teardown runs in one) against bare's. `code-exec run` is the CLI's cold
//! one-shot path; `library (zygote)` the library's default (runs forked from the zygote);
//! `library, cold` a fresh helper and interpreter per run (`ZygoteMode::Off`).
//! Needs `bwrap` (Debian's `bubblewrap`): without it that line is skipped loudly, and under
//! `CI=true` the bench fails.

mod common;

use std::process::{Command, Stdio};
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

/// Busy and total jiffies of the whole machine so far (`cpu` line of `/proc/stat`).
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat.lines().next().expect("cpu line");
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    // idle and iowait are the not-busy ones.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Runs `job` from `workers` threads for `window`: completions per second, and the machine's
/// busy CPU time per completion in ms.
fn throughput(workers: usize, window: Duration, job: &(dyn Fn() + Sync)) -> (f64, f64) {
    let done = std::sync::atomic::AtomicUsize::new(0);
    let (busy_before, _) = machine_jiffies();
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
    let elapsed = started.elapsed().as_secs_f64();
    let (busy_after, _) = machine_jiffies();
    let runs = done.into_inner().max(1) as f64;
    let ticks = clock_ticks_per_second();
    let busy_ms = (busy_after - busy_before) as f64 * 1000.0 / ticks;
    (runs / elapsed, busy_ms / runs)
}

/// Clock ticks per second of `/proc/stat` (USER_HZ: 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The bubblewrap command line: every namespace unshared, the system directories bound
/// read-only, a fresh /proc, /dev and /tmp, as the anchors of `shared/notes` measured it.
fn bwrap_args(python: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["--unshare-all".into(), "--die-with-parent".into()];
    for dir in ["/usr", "/bin", "/lib", "/lib64", "/etc"] {
        if std::path::Path::new(dir).exists() {
            args.extend(["--ro-bind".into(), dir.into(), dir.into()]);
        }
    }
    args.extend(
        [
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp",
        ]
        .map(String::from),
    );
    args.extend([
        python.to_string(),
        "-I".into(),
        "-c".into(),
        "print(1)".into(),
    ]);
    args
}

fn bwrap_works(python: &str) -> Result<(), String> {
    let args = bwrap_args(python);
    match Command::new("bwrap")
        .args(&args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() && out.stdout == b"1\n" => Ok(()),
        Ok(out) => Err(format!(
            "bwrap failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("bwrap: {e} (apt-get install bubblewrap)")),
    }
}

/// One measured way of running `print(1)`.
struct Series {
    name: &'static str,
    run: Box<dyn Fn() -> f64 + Sync>,
    times: Vec<f64>,
    ratios: Vec<f64>,
}

fn series(name: &'static str, run: impl Fn() -> f64 + Sync + 'static) -> Series {
    Series {
        name,
        run: Box::new(run),
        times: Vec::new(),
        ratios: Vec::new(),
    }
}

fn main() {
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
    let interpreter = code_execution_tool::Interpreter::at(std::path::Path::new(&python))
        .expect("BENCH_PYTHON: a real python3");
    let python = interpreter.path().to_str().unwrap().to_owned();
    let build = |kind, zygote: Option<ZygoteMode>| {
        let mut builder = CodeExecutionTool::builder()
            .backend(kind)
            .supervisor(BIN)
            .interpreter(interpreter.clone());
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
    let pairs: usize = std::env::var("BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);

    let bare = {
        let python = python.clone();
        move || time_command(&python, &["-I", "-c", "print(1)"])
    };
    let cli = |sandbox: &'static str| {
        let python = python.clone();
        move || {
            time_command(
                BIN,
                &[
                    "run",
                    "--sandbox",
                    sandbox,
                    "--python",
                    &python,
                    "-c",
                    "print(1)",
                ],
            )
        }
    };
    let mut all = vec![
        series("code-exec run (native)", cli("native")),
        series("code-exec run --sandbox none", cli("none")),
    ];
    match bwrap_works(&python) {
        Ok(()) => {
            let args = bwrap_args(&python);
            all.push(series("bwrap --unshare-all", move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                time_command("bwrap", &args)
            }));
        }
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI needs bubblewrap for the comparison: {why}")
        }
        Err(why) => eprintln!("SKIPPED bwrap --unshare-all: {why}"),
    }
    let (native_lib, cold_lib, none_lib) = (native.clone(), cold.clone(), none.clone());
    all.push(series("library (zygote)", move || time_tool(&native_lib)));
    all.push(series("library, cold", move || time_tool(&cold_lib)));
    all.push(series("library, none", move || time_tool(&none_lib)));

    // Warm the page cache and the interpreter's imports.
    for _ in 0..10 {
        bare();
        for s in &all {
            (s.run)();
        }
    }
    let mut bare_times = Vec::new();
    for _ in 0..pairs {
        let b = bare();
        bare_times.push(b);
        for s in &mut all {
            let t = (s.run)();
            s.times.push(t);
            s.ratios.push(t / b);
        }
    }
    let window = Duration::from_secs(seconds);
    let (bare_tp, bare_cpu) = throughput(2, window, &|| {
        bare();
    });
    println!("print(1), {pairs} rounds, interpreter {python}");
    println!(
        "  {:<30} {:>9} {:>8}   {:>10} {:>6}   {:>9} {:>6}",
        "", "median ms", "ratio", "runs/s (2)", "ratio", "CPU ms/run", "ratio"
    );
    println!(
        "  {:<30} {:>9.2} {:>8}   {:>10.1} {:>6}   {:>9.2} {:>6}",
        "bare python3 -I -c",
        median(&mut bare_times),
        "1.00x",
        bare_tp,
        "1.00x",
        bare_cpu,
        "1.00x"
    );
    for s in &mut all {
        let (tp, cpu) = throughput(2, window, &|| {
            (s.run)();
        });
        println!(
            "  {:<30} {:>9.2} {:>7.2}x   {:>10.1} {:>5.2}x   {:>9.2} {:>5.2}x",
            s.name,
            median(&mut s.times),
            median(&mut s.ratios),
            tp,
            tp / bare_tp,
            cpu,
            cpu / bare_cpu
        );
    }
}
