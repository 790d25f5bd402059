//! Load on `code-exec serve`, driven from this process over loopback: `print(1)` requests at
//! concurrency 1, 8 and 64 (p50/p99 latency, throughput), against bare
//! `python3 -I -c 'print(1)'` measured in the same run (latency alone, throughput with 2 in
//! parallel).
//!
//! Each level runs against a server without a pool and one with a warm pool (`--pool
//! BENCH_POOL`, default 4).
//!
//!     cargo bench --bench server       (BENCH_SECONDS=N per level, BENCH_SANDBOX=native|none)

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{median, percentile, time_command};

const BIN: &str = env!("CARGO_BIN_EXE_code-exec");

/// One `POST /v1/execute`; returns the latency in ms, or `None` for a non-200 answer.
fn execute(addr: SocketAddr, body: &str) -> Option<f64> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "POST /v1/execute HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).ok()?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).ok()?;
    let ok = status.split_whitespace().nth(1) == Some("200")
        && String::from_utf8_lossy(&rest).contains(r#""output":"1\n""#);
    ok.then(|| started.elapsed().as_secs_f64() * 1000.0)
}

/// Memory usage (MB) of each run cgroup of process `pid` (cgroup v1 or v2).
fn idle_sandbox_memory(pid: u32) -> Vec<f64> {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("find /sys/fs/cgroup -maxdepth 6 -name 'code-exec-{pid}-*' 2>/dev/null"),
        ])
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|dir| {
            ["memory.usage_in_bytes", "memory.current"]
                .iter()
                .find_map(|f| std::fs::read_to_string(format!("{dir}/{f}")).ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|bytes| bytes / (1024.0 * 1024.0))
        .collect()
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let sandbox = std::env::var("BENCH_SANDBOX").unwrap_or_else(|_| "native".into());
    let python = code_execution_tool::Interpreter::discover().expect("python3");
    let python = python.path().to_str().unwrap().to_owned();

    let pool = std::env::var("BENCH_POOL").unwrap_or_else(|_| "4".into());
    let body = format!(r#"{{"code": "print(1)", "sandbox": "{sandbox}"}}"#);

    // Bare Python: latency, then throughput with 2 in parallel.
    let mut bare: Vec<f64> = (0..50)
        .map(|_| time_command(&python, &["-I", "-c", "print(1)"]))
        .collect();
    let bare_ms = median(&mut bare);
    let window = Duration::from_secs(seconds);
    let done = Mutex::new(0usize);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while started.elapsed() < window {
                    time_command(&python, &["-I", "-c", "print(1)"]);
                    *done.lock().unwrap() += 1;
                }
            });
        }
    });
    let bare_rate = *done.lock().unwrap() as f64 / started.elapsed().as_secs_f64();
    println!(
        "bare python3 -I -c 'print(1)': {bare_ms:.1} ms median, {bare_rate:.0}/s with 2 in parallel"
    );
    for extra in [vec![], vec!["--pool", pool.as_str()]] {
        let mut server = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--max-queue", "1000"])
            .args(&extra)
            .env_remove("CODE_EXEC_TOKEN")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("code-exec: listening on http://")
            .expect("listening line")
            .parse()
            .unwrap();
        execute(addr, &body).expect("a first request succeeds");
        // Let a pool fill before measuring, and weigh its idle sandboxes.
        std::thread::sleep(Duration::from_secs(2));
        if !extra.is_empty() {
            let sizes = idle_sandbox_memory(server.id());
            if !sizes.is_empty() {
                println!(
                    "  {} idle pooled sandboxes: {:.1} MB each on average (their cgroups' memory usage)",
                    sizes.len(),
                    sizes.iter().sum::<f64>() / sizes.len() as f64
                );
            }
        }
        println!(
            "server {}, sandbox {sandbox}, {seconds} s per level:",
            if extra.is_empty() {
                "without a pool".to_owned()
            } else {
                format!("with --pool {pool}")
            }
        );

        for concurrency in [1usize, 8, 64] {
            let latencies = Mutex::new(Vec::new());
            let failures = Mutex::new(0usize);
            let started = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..concurrency {
                    s.spawn(|| {
                        while started.elapsed() < window {
                            match execute(addr, &body) {
                                Some(ms) => latencies.lock().unwrap().push(ms),
                                None => *failures.lock().unwrap() += 1,
                            }
                        }
                    });
                }
            });
            let elapsed = started.elapsed().as_secs_f64();
            let mut latencies = latencies.into_inner().unwrap();
            let rate = latencies.len() as f64 / elapsed;
            let p50 = percentile(&mut latencies, 50.0);
            let p99 = percentile(&mut latencies, 99.0);
            println!(
                "  concurrency {concurrency:>2}: p50 {p50:>7.1} ms ({:.2}x bare start-up)  p99 {p99:>7.1} ms  {rate:>5.0}/s ({:.2}x bare at 2 parallel)  failures {}",
                p50 / bare_ms,
                rate / bare_rate,
                failures.into_inner().unwrap()
            );
        }
        let _ = Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status();
        let _ = server.wait();
    }
}
