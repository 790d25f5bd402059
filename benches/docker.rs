//! The docker backend against the Docker CLI, measured in the same run (rounds alternate, so
//! drift cancels):
//!
//! - one-shot: `code-exec run --sandbox docker --image IMAGE -c 'print(1)'` against
//!   `docker run --rm IMAGE python3 -c 'print(1)'` (both through their command line; our
//!   container is also locked down and sized, the CLI's is not);
//! - persistent: `SandboxExecutor::execute("print(1)")` in a running container against
//!   `docker exec CONTAINER python3 -c 'print(1)'` into the same container.
//!
//!     cargo bench --bench docker      (BENCH_ROUNDS=N, CODE_EXEC_TEST_IMAGE=IMAGE)
//!
//! Needs a Docker Engine and the image (`scripts/build-docker-image.sh`).

mod common;

use std::time::{Duration, Instant};

use code_execution_tool::{BackendKind, CodeExecutionTool};
use common::{median, time_command};

const BIN: &str = env!("CARGO_BIN_EXE_code-exec");

fn report(name: &str, ours: &mut [f64], theirs: &mut [f64], baseline: &str) {
    let mut ratios: Vec<f64> = ours.iter().zip(theirs.iter()).map(|(a, b)| a / b).collect();
    println!(
        "{name:<11} code-exec {:>7.1} ms   {baseline:<28} {:>7.1} ms   ratio (median of rounds) {:.2}",
        median(ours),
        median(theirs),
        median(&mut ratios)
    );
}

fn main() {
    let image = std::env::var("CODE_EXEC_TEST_IMAGE")
        .unwrap_or_else(|_| "code-exec-python:3.11".to_owned());
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    println!("docker backend, image {image}, {rounds} rounds (medians)");

    // One-shot, both through their CLI.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let run = [
        "run",
        "--sandbox",
        "docker",
        "--image",
        &image,
        "-c",
        "print(1)",
    ];
    let docker_run = ["run", "--rm", &image, "python3", "-c", "print(1)"];
    time_command(BIN, &run);
    time_command("docker", &docker_run);
    for round in 0..rounds {
        if round % 2 == 0 {
            ours.push(time_command(BIN, &run));
            theirs.push(time_command("docker", &docker_run));
        } else {
            theirs.push(time_command("docker", &docker_run));
            ours.push(time_command(BIN, &run));
        }
    }
    report("one-shot", &mut ours, &mut theirs, "docker run --rm");

    // Persistent: the library's execution against `docker exec` into the same container.
    let tool = CodeExecutionTool::builder()
        .backend(BackendKind::Docker)
        .image(&image)
        .build()
        .expect("docker tool (see code-exec doctor)");
    let sandbox = tool.create_sandbox().expect("container");
    let id = sandbox.container_id().unwrap().to_owned();
    let exec = ["exec", "-u", "1000:1000", &id, "python3", "-c", "print(1)"];
    let ours_once = || {
        let started = Instant::now();
        let r = sandbox.execute("print(1)").unwrap();
        assert!(r.success && r.output == "1\n", "{r:?}");
        started.elapsed().as_secs_f64() * 1000.0
    };
    ours_once();
    time_command("docker", &exec);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds * 2 {
        if round % 2 == 0 {
            ours.push(ours_once());
            theirs.push(time_command("docker", &exec));
        } else {
            theirs.push(time_command("docker", &exec));
            ours.push(ours_once());
        }
    }
    report("persistent", &mut ours, &mut theirs, "docker exec");
    sandbox.cleanup();
    std::thread::sleep(Duration::from_millis(10));
}
