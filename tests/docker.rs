//! The docker backend against the real Docker Engine: the seed's test list on `--sandbox
//! docker`, persistent containers through the library, and the native suite's attacks that
//! apply to a container. After each test no container with our label and no tagged process
//! may be left. Tests run one at a time (a lock): they share one engine and two cores.
//!
//! Needs a Docker Engine and the test image (`scripts/build-docker-image.sh`); without them the
//! tests skip loudly, and fail under `CI=true`.

#[macro_use]
mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use code_execution_tool::{BackendKind, CodeExecutionTool, SandboxExecutor};
use common::*;
use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A test that needs the engine: serialized, skipped loudly where Docker is missing, and
/// checked afterwards for leftover containers.
macro_rules! docker_test {
    ($name:ident, $body:block) => {
        #[test]
        fn $name() {
            let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
            if !docker_or_skip(stringify!($name)) {
                return;
            }
            $body
            assert_docker_clean(concat!("codeexec_", stringify!($name)));
        }
    };
}

fn output(r: &Value) -> &str {
    r["output"].as_str().unwrap_or_default()
}

fn tool(memory_mb: u64, cpu: f64, timeout_s: u64) -> CodeExecutionTool {
    CodeExecutionTool::builder()
        .backend(BackendKind::Docker)
        .image(docker_image())
        .memory_limit_mb(memory_mb)
        .cpu_limit(cpu)
        .timeout(Duration::from_secs(timeout_s))
        .build()
        .expect("docker tool")
}

/// `docker inspect` of one field of a container.
fn inspect(id: &str, format: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", format, id])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Processes of the sandbox user (uid 1000) inside a container, as the engine lists them.
fn sandbox_processes(sandbox: &SandboxExecutor) -> Vec<String> {
    let id = sandbox.container_id().unwrap();
    let out = std::process::Command::new("docker")
        .args(["top", id, "-o", "uid,pid,args"])
        .output()
        .expect("docker top");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().next() == Some("1000"))
        .map(str::to_owned)
        .collect()
}

// ---- the attacks both sandboxes stand (tests/common/attacks.rs) -------------------------

attack_suite!(docker_test, common::attacks::Target::Docker);

// ---- the seed's list, one-shot -----------------------------------------------------------

docker_test!(timeout_kills_everything_the_code_started, {
    let tag = "codeexec_timeout_kills_everything_the_code_started";
    let code = format!(
        r#"
import os, signal, subprocess, sys, time
subprocess.Popen(['{tag}_a', '300'], executable='/bin/sleep', start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sleep', ['{tag}_b', '300'])
    os._exit(0)
time.sleep(0.3)
print('spawned', flush=True)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True: pass
"#
    );
    let started = Instant::now();
    let (r, status) = run_docker(&code, &["--timeout", "2"]);
    assert_eq!(status, 1, "{r}");
    assert_eq!(r["error_type"], "Timeout", "{r}");
    assert_eq!(output(&r), "spawned\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        r["cpu_time_ms"].as_f64().unwrap() > 100.0,
        "the spin counted: {r}"
    );
});

docker_test!(cpu_limit_throttles_a_spinning_loop, {
    let code = "import time\nend = time.monotonic() + 2\nwhile time.monotonic() < end: pass";
    let (r, status) = run_docker(code, &["--cpu", "0.25", "--timeout", "20"]);
    assert_eq!(status, 0, "{r}");
    let share = r["cpu_time_ms"].as_f64().unwrap() / 2000.0;
    assert!(
        (0.15..=0.40).contains(&share),
        "CPU share {share:.2} under --cpu 0.25: {r}"
    );
    let (r, _) = run_docker(code, &["--cpu", "1", "--timeout", "20"]);
    let full = r["cpu_time_ms"].as_f64().unwrap() / 2000.0;
    assert!(
        full > share + 0.2,
        "--cpu 1 ({full:.2}) should run much more than 0.25 ({share:.2})"
    );
});

docker_test!(output_with_escapes_nul_and_a_closed_stdout, {
    let code = "import os, sys\nsys.stdout.write('\\x1b[2J nul:\\x00 \\x1e end\\n')\nsys.stdout.flush()\nos.close(1)\nprint('after close', file=sys.stderr)";
    let (r, status) = run_docker(code, &[]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(output(&r), "\u{1b}[2J nul:\u{0} \u{1e} end\n");
    assert_eq!(r["stderr"], "after close\n");
});

// ---- persistent containers (the seed's SandboxExecutor) -----------------------------------

docker_test!(several_executions_share_files_not_processes, {
    let tag = "codeexec_several_executions_share_files_not_processes";
    let sandbox = tool(128, 0.5, 20).create_sandbox().unwrap();
    let r = sandbox
        .execute_in_container(&format!(
            "import subprocess\nopen('/work/state.txt', 'w').write('kept')\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep', start_new_session=True)\nprint('one')"
        ))
        .unwrap();
    assert!(r.success, "{r:?}");
    assert_no_survivors(tag);
    assert!(sandbox_processes(&sandbox).is_empty());
    for i in 0..3 {
        let r = sandbox
            .execute_in_container(&format!("print(open('/work/state.txt').read(), {i})"))
            .unwrap();
        assert!(r.success, "{r:?}");
        assert_eq!(r.output, format!("kept {i}\n"));
    }
    drop(sandbox);
});

docker_test!(timeout_in_a_persistent_container_leaves_it_usable, {
    let tag = "codeexec_timeout_in_a_persistent_container_leaves_it_usable";
    let sandbox = tool(128, 0.5, 2).create_sandbox().unwrap();
    let r = sandbox
        .execute_in_container(&format!(
            "import subprocess, os\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep', start_new_session=True)\nprint('spawned', flush=True)\nos.close(1)\nwhile True: pass"
        ))
        .unwrap();
    assert_eq!(
        r.error_type.as_ref().map(|e| e.as_str()),
        Some("Timeout"),
        "{r:?}"
    );
    assert_eq!(r.output, "spawned\n");
    assert_no_survivors(tag);
    assert!(
        sandbox_processes(&sandbox).is_empty(),
        "{:?}",
        sandbox_processes(&sandbox)
    );
    let r = sandbox.execute_in_container("print('still here')").unwrap();
    assert_eq!(r.output, "still here\n", "{r:?}");
    // The code kills its own wrapper and stays behind as a daemon: still cleaned up.
    let r = sandbox
        .execute_in_container(&format!(
            "import os, sys\nif os.fork():\n    os._exit(0)\nos.setsid()\nsys.argv[0] = '{tag}'\nos.close(1); os.close(2)\nos.kill(os.getppid(), 9) if os.getppid() != 1 else None\nimport time\nos.execv('/bin/sleep', ['{tag}_d', '300'])"
        ))
        .unwrap();
    assert!(!r.is_sandbox_error(), "{r:?}");
    assert_no_survivors(tag);
    assert!(sandbox_processes(&sandbox).is_empty());
    sandbox.cleanup();
    assert!(!sandbox.exists());
});

docker_test!(fork_bomb_in_a_persistent_container_is_cleaned_up, {
    let tag = "codeexec_fork_bomb_in_a_persistent_container_is_cleaned_up";
    let sandbox = tool(256, 0.5, 3).create_sandbox().unwrap();
    sandbox.update_pids(32).unwrap();
    let r = sandbox.execute_in_container(&fork_bomb(tag)).unwrap();
    assert!(
        matches!(
            r.error_type.as_ref().map(|e| e.as_str()),
            Some("Timeout") | Some("MemoryLimit")
        ),
        "{r:?}"
    );
    assert_no_survivors(tag);
    let r = sandbox.execute_in_container("print('alive')").unwrap();
    assert_eq!(r.output, "alive\n", "{r:?}");
    // The code's 32, and the container's own init, idle process and wrapper.
    assert_eq!(
        inspect(sandbox.container_id().unwrap(), "{{.HostConfig.PidsLimit}}"),
        "35"
    );
});

docker_test!(dynamic_limits_apply_to_the_live_container, {
    let sandbox = tool(64, 0.5, 20).create_sandbox().unwrap();
    let id = sandbox.container_id().unwrap().to_owned();
    assert_eq!(
        inspect(&id, "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}"),
        "67108864 500000000"
    );
    let grab = "x = bytearray(100 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\nprint('got 100 MB')";
    let r = sandbox.execute_in_container(grab).unwrap();
    assert_eq!(
        r.error_type.as_ref().map(|e| e.as_str()),
        Some("MemoryLimit"),
        "{r:?}"
    );
    // Invalid values change nothing.
    assert!(sandbox.update_limits(0, 1.0).is_err());
    assert!(sandbox.update_limits(256, 0.0).is_err());
    assert_eq!(inspect(&id, "{{.HostConfig.Memory}}"), "67108864");
    let limits = sandbox.update_limits(256, 1.0).unwrap();
    assert_eq!(limits.memory_mb.get(), 256);
    assert_eq!(
        inspect(
            &id,
            "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}}"
        ),
        "268435456 268435456 1000000000"
    );
    let r = sandbox.execute_in_container(grab).unwrap();
    assert!(r.success, "{r:?}");
    assert_eq!(r.output, "got 100 MB\n");
    // Usage, computed as `docker stats` does.
    let spin = std::thread::scope(|s| {
        let running = s.spawn(|| {
            sandbox.execute_in_container(
                "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass",
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let usage = sandbox.get_resource_usage();
        let _ = running.join();
        usage
    });
    assert!(
        spin.cpu_percent > 30.0,
        "a spinning loop under cpu=1: {spin:?}"
    );
    assert!(spin.memory_mb > 1.0 && spin.pids >= 2, "{spin:?}");
});

docker_test!(cleanup_on_every_path, {
    // Explicit.
    let sandbox = tool(128, 0.5, 10).create_sandbox().unwrap();
    assert!(sandbox.exists());
    sandbox.cleanup();
    assert!(!sandbox.exists());
    let r = sandbox.execute_in_container("print(1)").unwrap();
    assert!(r.is_sandbox_error(), "a cleaned-up sandbox refuses: {r:?}");
    // On drop.
    let id = {
        let sandbox = tool(128, 0.5, 10).create_sandbox().unwrap();
        sandbox.container_id().unwrap().to_owned()
    };
    assert_eq!(
        inspect(&id, "{{.Id}}"),
        "",
        "dropped sandbox's container still exists"
    );
    // On panic.
    let ids = std::sync::Mutex::new(Vec::new());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sandbox = tool(128, 0.5, 10).create_sandbox().unwrap();
        ids.lock()
            .unwrap()
            .push(sandbox.container_id().unwrap().to_owned());
        panic!("the caller fails while holding a sandbox");
    }));
    assert!(caught.is_err());
    let id = ids.lock().unwrap()[0].clone();
    assert_eq!(
        inspect(&id, "{{.Id}}"),
        "",
        "a panic left the container behind"
    );
});

docker_test!(orphans_of_a_crashed_caller_are_reaped, {
    // A container labelled as ours by a process that no longer exists.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let owner = format!("{}/{}/{dead_pid}/1", host.trim(), boot.trim());
    let created = std::process::Command::new("docker")
        .args([
            "create",
            "--label",
            "code-exec=1",
            "--label",
            &format!("code-exec.owner={owner}"),
            &docker_image(),
            "true",
        ])
        .output()
        .unwrap();
    let orphan = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(
        created.status.success() && !orphan.is_empty(),
        "{created:?}"
    );
    // A live owner's container is left alone while we reap.
    let kept = tool(128, 0.5, 10).create_sandbox().unwrap();
    let _another_start = tool(128, 0.5, 10);
    assert_eq!(inspect(&orphan, "{{.Id}}"), "", "the orphan was not reaped");
    assert!(kept.exists(), "a live owner's container was reaped");
});

docker_test!(engine_problems_are_sandbox_errors_that_say_what_to_do, {
    let run = code_exec(&[
        "run",
        "--json",
        "--sandbox",
        "docker",
        "--image",
        "code-exec-no-such-image:0",
        "-c",
        "print(1)",
    ]);
    let r = run.json();
    assert_eq!(
        (run.status, r["error_type"].clone()),
        (3, "SandboxError".into()),
        "{r}"
    );
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("code-exec-no-such-image:0")
            && error.contains("build")
            && error.contains("docker pull"),
        "{error}"
    );
    // An unreachable engine: tests/cli.rs (needs no engine).
    let run = code_exec(&[
        "run",
        "--sandbox",
        "docker",
        "--python",
        "/usr/bin/python3",
        "-c",
        "1",
    ]);
    assert_eq!(
        run.status, 2,
        "--python has no meaning for docker: {}",
        run.stderr
    );
});

// ---- attacks that apply to a container ---------------------------------------------------

docker_test!(root_is_read_only_and_scratch_space_bounded, {
    let code = r#"
import os
for path in ['/usr/lib/evil', '/etc/passwd', '/newdir', '/proc/sys/kernel/hostname']:
    try:
        with open(path, 'a') as f: f.write('x')
        print('WROTE', path)
    except OSError as e:
        print('refused', e.errno in (1, 13, 30))
for d in ['/work', '/tmp', '/dev/shm']:
    open(d + '/ok', 'w').write('fine'); print('writable', d)
n = 0
try:
    with open('/tmp/fill', 'wb') as f:
        while True:
            f.write(b'\0' * (1 << 20)); f.flush(); n += 1
except OSError as e:
    print('full', n <= 64)
"#;
    let (r, _) = run_docker(code, &["--memory", "64", "--timeout", "20"]);
    let out = output(&r);
    assert!(!out.contains("WROTE"), "{r}");
    assert_eq!(out.matches("refused True").count(), 4, "{r}");
    assert!(
        out.contains("writable /work\nwritable /tmp\nwritable /dev/shm\n"),
        "{r}"
    );
    assert!(
        out.contains("full True") || r["error_type"] == "MemoryLimit",
        "filling /tmp is bounded by its size or the memory limit: {r}"
    );
});

docker_test!(blocked_syscalls_are_refused, {
    let (r, status) = run_docker(PROBES, &[]);
    assert_eq!(status, 0, "{r}");
    // Our own profile (the native sandbox's allowlist), not Docker's default, which let
    // ptrace, io_uring_setup and personality through: every probe is refused outright.
    let mut seen = 0;
    for line in output(&r).lines() {
        let (name, errno) = line.split_once(' ').unwrap();
        let errno: i64 = errno.parse().unwrap();
        seen += 1;
        let expected = if name == "clone3" { 38 } else { 1 };
        assert_eq!(errno, expected, "{name} returned errno {errno}: {r}");
    }
    assert_eq!(seen, 24, "{r}");
});

// `network none` does not stop socket families that are not namespaced: vsock reaches the
// host's transport (this VM has one), directly and through io_uring; packet, AF_ALG, RxRPC and
// netlink sockets are kernel attack surface. Only local and IP sockets open (and netlink for
// NETLINK_ROUTE alone).
docker_test!(only_local_and_ip_sockets_open, {
    let code = r#"import socket, errno
for name, family, kind in [("vsock", 40, socket.SOCK_STREAM), ("packet", 17, socket.SOCK_RAW),
                           ("alg", 38, socket.SOCK_SEQPACKET), ("rxrpc", 33, socket.SOCK_DGRAM),
                           ("netlink", 16, socket.SOCK_RAW), ("unix", 1, socket.SOCK_STREAM),
                           ("inet", 2, socket.SOCK_STREAM), ("inet6", 10, socket.SOCK_DGRAM)]:
    try:
        # netlink: uevents (NETLINK_ROUTE alone opens, see the netlink attack)
        socket.socket(family, kind, 15 if name == "netlink" else 0).close()
        print(name, "opened")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
"#;
    let (r, status) = run_docker(code, &[]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(
        output(&r),
        "vsock EPERM\npacket EPERM\nalg EPERM\nrxrpc EPERM\nnetlink EPERM\nunix opened\ninet opened\ninet6 opened\n",
        "{r}"
    );
});

docker_test!(the_callers_signal_dispositions_and_mask_stay_out, {
    let image = docker_image();
    assert_signals_of_the_caller_stay_out(&["--sandbox", "docker", "--image", &image]);
});

docker_test!(fds_and_symlinks_lead_nowhere, {
    let code = "import os\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))\nos.symlink('/proc/1/root/etc/shadow', '/work/s')\ntry:\n    open('/work/s').read(); print('READ')\nexcept OSError:\n    print('refused')";
    let (r, status) = run_docker(code, &[]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(
        output(&r),
        "[0, 1, 2, 3, 4]\nrefused\n",
        "0-2, the runner's report fd and listdir's own: {r}"
    );
});

docker_test!(a_killed_caller_is_reaped_by_the_next_start, {
    let image = docker_image();
    let mut caller = std::process::Command::new(bin())
        .args([
            "run",
            "--sandbox",
            "docker",
            "--image",
            &image,
            "--timeout",
            "60",
            "-c",
            "import time; time.sleep(60)",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while our_containers().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the run never created its container"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    caller.kill().unwrap();
    caller.wait().unwrap();
    assert_eq!(
        our_containers().len(),
        1,
        "SIGKILL leaves the container for now"
    );
    let (r, status) = run_docker("print('next')", &[]);
    assert_eq!(status, 0, "{r}");
});

docker_test!(thread_bomb_and_inode_exhaustion_are_bounded, {
    let code = THREAD_BOMB;
    let (r, status) = run_docker(code, &["--pids", "20", "--timeout", "10"]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(output(&r), "capped True\n");
    let code = INODE_EXHAUSTION;
    let (r, status) = run_docker(code, &["--timeout", "30"]);
    assert_eq!(status, 0, "{r}");
    assert!(output(&r).starts_with("stopped True 28"), "ENOSPC: {r}");
});

docker_test!(mlock_memfd_and_stack_overflow_are_contained, {
    let code = MLOCK_16MB;
    let (r, status) = run_docker(code, &[]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(
        output(&r),
        "mlock -1 True\n",
        "locking 16 MB must fail: {r}"
    );
    let memfd = MEMFD_BOMB;
    let (r, _) = run_docker(memfd, &["--memory", "64", "--timeout", "20"]);
    assert_eq!(r["error_type"], "MemoryLimit", "{r}");
    let overflow = C_STACK_OVERFLOW;
    let (r, _) = run_docker(overflow, &["--timeout", "20"]);
    assert_eq!(
        (r["error_type"].clone(), r["signal"].clone()),
        ("Crash".into(), "SIGSEGV".into()),
        "{r}"
    );
});

docker_test!(a_cancelled_execution_is_killed_at_once, {
    let tag = "codeexec_a_cancelled_execution_is_killed_at_once";
    let tool = tool(128, 0.5, 60);
    let sandbox = tool.create_sandbox().unwrap();
    for (name, run_in_sandbox) in [("one-shot", false), ("persistent", true)] {
        let cancel = code_execution_tool::Cancel::new();
        let code = format!(
            "import subprocess, time\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep')\ntime.sleep(300)"
        );
        let started = Instant::now();
        let result = std::thread::scope(|s| {
            let running = s.spawn(|| {
                if run_in_sandbox {
                    sandbox.run_cancellable(code.as_bytes(), None, None, Some(cancel.clone()))
                } else {
                    tool.run_cancellable(code.as_bytes(), None, None, Some(cancel.clone()))
                }
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            while processes_with(tag).is_empty() {
                assert!(Instant::now() < deadline, "{name}: never started");
                std::thread::sleep(Duration::from_millis(20));
            }
            cancel.cancel();
            running.join().unwrap().unwrap()
        });
        assert_eq!(
            result.error_type.as_ref().map(|e| e.as_str()),
            Some("Cancelled"),
            "{name}: {result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(30), "{name}");
        assert_no_survivors(tag);
    }
});

docker_test!(
    the_server_runs_docker_per_request_and_removes_its_containers,
    {
        let image = docker_image();
        let mut server = Server::start(&["--image", &image], &[]);
        let v = server
        .call(
            "POST",
            "/v1/execute",
            Some(&serde_json::json!({"code": "import os; print(os.getuid())", "sandbox": "docker"})),
        )
        .json();
        assert_eq!(
            (v["backend"].clone(), v["output"].clone()),
            ("docker".into(), "1000\n".into()),
            "{v}"
        );
        let created = server.call(
            "POST",
            "/v1/sandboxes",
            Some(&serde_json::json!({"sandbox": "docker", "limits": {"memory_mb": 64}})),
        );
        assert_eq!(created.status, 201, "{created:?}");
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let run = |code: &str| {
            server
                .call(
                    "POST",
                    &format!("/v1/sandboxes/{id}/execute"),
                    Some(&serde_json::json!({"code": code})),
                )
                .json()
        };
        assert!(
            run("open('/work/f', 'w').write('kept')")["success"]
                .as_bool()
                .unwrap()
        );
        assert_eq!(run("print(open('/work/f').read())")["output"], "kept\n");
        let patched = server.call(
            "PATCH",
            &format!("/v1/sandboxes/{id}/limits"),
            Some(&serde_json::json!({"memory_mb": 256})),
        );
        assert_eq!(patched.status, 200, "{patched:?}");
        assert_eq!(our_containers().len(), 1, "the persistent container lives");
        // Shutdown removes it.
        assert_eq!(server.stop(), 0);
    }
);

// ---- the wrapper's frame cannot be forged (issue 12, item 1) -----------------------------

/// Code that looks for the wrapper's nonce in every process memory it can read (its own,
/// inherited from the wrapper, and the wrapper's), writes a frame saying "exit 0" with every
/// candidate, kills the wrapper if it can, starts a daemon carrying `tag` and exits 3.
fn nonce_thief(tag: &str) -> String {
    format!(
        r#"import os, re, subprocess, sys
found = set()
for pid in ("self", str(os.getppid())):
    try:
        maps = open("/proc/%s/maps" % pid).read().splitlines()
        mem = open("/proc/%s/mem" % pid, "rb", 0)
    except OSError:
        continue
    for line in maps:
        span, perms = line.split()[:2]
        if "r" not in perms:
            continue
        start, end = (int(x, 16) for x in span.split("-"))
        try:
            mem.seek(start)
            chunk = mem.read(end - start)
        except (OSError, ValueError, OverflowError):
            continue
        found.update(re.findall(rb"(?<![0-9a-f])[0-9a-f]{{32}}(?![0-9a-f])", chunk))
for nonce in sorted(found)[:2000]:
    sys.stderr.write("\x1eCODE-EXEC %s exit=0 signal=0 oom=0 cpu_ns=1 maxrss_kb=1 report=53\x1e" % nonce.decode())
sys.stderr.flush()
subprocess.Popen(["{tag}", "300"], executable="/bin/sleep", start_new_session=True)
try:
    os.kill(os.getppid(), 9)
except OSError:
    pass
print("candidates", len(found))
sys.exit(3)
"#
    )
}

docker_test!(a_forged_frame_cannot_report_success, {
    let tag = "codeexec_a_forged_frame_cannot_report_success";
    let code = nonce_thief(tag);
    let (r, status) = run_code(
        &code,
        &common::attacks::Target::Docker
            .args(&[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(status, 1, "{r}");
    assert_eq!(r["verdict"], "exit", "{r}");
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_no_survivors(tag);
});

docker_test!(
    a_persistent_container_keeps_no_process_after_a_forged_frame,
    {
        let tag = "codeexec_a_persistent_container_keeps_no_process_after_a_forged_frame";
        let sandbox = tool(128, 0.5, 20).create_sandbox().unwrap();
        let r = sandbox.execute_in_container(&nonce_thief(tag)).unwrap();
        assert!(!r.success, "{r:?}");
        assert_eq!(r.exit_code, Some(3), "{r:?}");
        // Whatever the frame said, nothing of the code's uid outlives its execution: the next
        // execution's code is read by nobody else.
        assert!(
            sandbox_processes(&sandbox).is_empty(),
            "{:?}",
            sandbox_processes(&sandbox)
        );
        assert_no_survivors(tag);
        let r = sandbox.execute_in_container("print('next')").unwrap();
        assert!(r.success, "{r:?}");
        drop(sandbox);
    }
);
