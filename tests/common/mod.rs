//! Shared harness for the integration tests: drive the built `code-exec` binary and inspect
//! the host afterwards.
#![allow(
    dead_code,
    unused_macros,
    reason = "each test binary uses a different part of the harness"
)]

/// A test that needs the native sandbox: skipped loudly where it cannot run (failing under
/// `CI=true`, see [`native_sandbox_or_skip`]).
macro_rules! native_test {
    ($name:ident, $body:block) => {
        #[test]
        fn $name() {
            if !native_sandbox_or_skip(stringify!($name)) {
                return;
            }
            $body
        }
    };
}

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[macro_use]
pub mod attacks;

/// The `code-exec` binary under test: `$CODE_EXEC_BIN` when set (CI copies the binaries to
/// a place an unprivileged user can reach), else the one cargo built.
pub fn bin() -> String {
    std::env::var("CODE_EXEC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_code-exec").to_owned())
}

/// The outcome of one `code-exec` invocation.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The single JSON object `--json` promises, parsed.
    pub fn json(&self) -> Value {
        let trimmed = self.stdout.trim_end_matches('\n');
        assert!(
            !trimmed.contains('\n'),
            "expected exactly one line of JSON, got: {}",
            self.stdout
        );
        serde_json::from_str(trimmed).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {:?}\nstderr: {}", self.stdout, self.stderr)
        })
    }
}

pub fn code_exec(args: &[&str]) -> Run {
    code_exec_with(args, None, &[])
}

/// Runs `code-exec ARGS` with optional stdin bytes and extra environment variables.
pub fn code_exec_with(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start code-exec");
    if let Some(bytes) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Run {
        status: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `code-exec run --json -c CODE EXTRA...`, returning the parsed result and exit status.
/// Without `--sandbox` in `extra`, the `none` backend (these tests pin its contract).
pub fn run_code(code: &str, extra: &[&str]) -> (Value, i32) {
    let mut args = vec!["run", "--json", "-c", code];
    if !extra.contains(&"--sandbox") {
        args.extend_from_slice(&["--sandbox", "none"]);
    }
    args.extend_from_slice(extra);
    let run = code_exec(&args);
    (run.json(), run.status)
}

// ---- a caller that ignores and blocks signals (issue 18, item 7) -----------------------------

/// Starts the rest of its argv as a background job or a service manager may: SIGINT, SIGHUP,
/// SIGQUIT and SIGUSR2 ignored, SIGUSR1 and SIGALRM blocked.
const UNDER_IGNORED_SIGNALS: &str = "import os, signal, sys\n\
for s in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2): signal.signal(s, signal.SIG_IGN)\n\
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGALRM})\n\
os.execv(sys.argv[1], sys.argv[1:])";

/// A `Command` running `program` under [`UNDER_IGNORED_SIGNALS`].
pub fn command_under_ignored_signals(program: &str) -> Command {
    let mut command = Command::new("/usr/bin/python3");
    command.args(["-c", UNDER_IGNORED_SIGNALS, program]);
    command
}

/// Code that prints the dispositions and the mask it started with, and a child's.
pub const PRINT_SIGNALS: &str = "import signal, subprocess\n\
names = {signal.SIG_DFL: 'default', signal.SIG_IGN: 'ignored', signal.default_int_handler: 'python'}\n\
print([names.get(signal.getsignal(s), 'other') for s in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2)], sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n\
print(subprocess.run(['grep', '-E', '^Sig(Blk|Ign)', '/proc/self/status'], capture_output=True, text=True).stdout, end='')";

/// What [`PRINT_SIGNALS`] prints in a fresh `python3` started from a login shell.
pub const DEFAULT_SIGNALS: &str = "['python', 'default', 'default', 'default'] []\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";

/// `code-exec run --json -c PRINT_SIGNALS ARGS...` started under ignored and blocked signals:
/// the code must see the defaults.
pub fn assert_signals_of_the_caller_stay_out(args: &[&str]) {
    let output = command_under_ignored_signals(&bin())
        .args(["run", "--json", "-c", PRINT_SIGNALS])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let r: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["output"], DEFAULT_SIGNALS, "{r}");
}

/// A fresh, unique marker to find processes and files of one test.
pub fn marker(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("codeexec_{name}_{}_{nanos}", std::process::id())
}

/// Pids of live (non-zombie) processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rfind(')')
            .and_then(|i| state[i + 1..].split_whitespace().next())
            == Some("Z");
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Asserts that no process mentioning `needle` is alive, allowing the kernel a moment to
/// finish tearing down killed processes.
pub fn assert_no_survivors(needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let alive = processes_with(needle);
        if alive.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("processes survived the run: {alive:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Temp directories the tool creates for runs.
pub fn run_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(run_dir_base()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("code-exec-"))
        })
        .collect()
}

/// The real interpreter the tool will use, for baseline comparisons.
pub fn python() -> PathBuf {
    code_execution_tool::Interpreter::discover()
        .expect("python3")
        .path()
        .to_owned()
}

/// Reports a skipped test on the real stderr, past the test harness's output capture.
/// Where the tool keeps its run directories: a root-owned 0700 directory for root, else
/// `$TMPDIR` (see `src/backend/workspace.rs`).
pub fn run_dir_base() -> PathBuf {
    if is_root() {
        PathBuf::from("/run/code-exec")
    } else {
        std::env::temp_dir()
    }
}

/// Whether this test process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

pub fn skip_loudly(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// Whether the native sandbox can run here. Under `CI=true` a missing capability fails the
/// test; elsewhere the test is skipped, loudly, with the reason.
pub fn native_sandbox_or_skip(test: &str) -> bool {
    let run = code_exec(&["run", "--json", "--sandbox", "native", "-c", "pass"]);
    if run.status == 0 {
        return true;
    }
    let reason = format!(
        "the native sandbox does not work here: {} {}",
        run.stdout, run.stderr
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {reason}");
    }
    skip_loudly(test, &reason);
    false
}

/// Whether run cgroups can be created here (root, or a delegated v2 subtree). Tests of
/// cgroup-enforced limits need them: under `CI=true` as root their absence fails the test; an
/// unprivileged run (CI's second pass) skips them loudly.
pub fn cgroups_or_skip(test: &str) -> bool {
    match code_execution_tool::doctor::run_cgroups() {
        Ok(_) => true,
        Err(err) => {
            let root = std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
            if root && std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: cgroups unavailable as root: {err}");
            }
            skip_loudly(test, &format!("cgroups unavailable to this user: {err}"));
            false
        }
    }
}

/// Whether run cgroups can be created here (without skipping anything).
pub fn cgroups_available() -> bool {
    code_execution_tool::doctor::run_cgroups().is_ok()
}

/// `["--zygote"]` when CODE_EXEC_TEST_ZYGOTE=1: the native suite then runs through the zygote
/// (the library's default path) instead of cold one-shot runs.
pub fn zygote_args() -> &'static [&'static str] {
    if std::env::var("CODE_EXEC_TEST_ZYGOTE").as_deref() == Ok("1") {
        &["--zygote"]
    } else {
        &[]
    }
}

/// The `run` arguments of a native run whose own arguments are `extra` (not included):
/// `--sandbox native`, then the paths CI asks for. CODE_EXEC_TEST_WARM=1 runs the whole suite
/// through pre-started sandboxes (the warm pool's path); runs it cannot take (monitoring) go
/// cold as the pool would send them.
pub fn native_args(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--sandbox".to_string(), "native".into()];
    if std::env::var("CODE_EXEC_TEST_WARM").as_deref() == Ok("1")
        && cgroups_available()
        && !extra.contains(&"--monitor")
    {
        args.push("--warm".into());
    }
    args.extend(zygote_args().iter().map(|a| a.to_string()));
    args
}

/// `code-exec run --json --sandbox native -c CODE EXTRA...`.
pub fn run_native(code: &str, extra: &[&str]) -> (Value, i32) {
    let mut args = native_args(extra);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_code(code, &args)
}

/// Host invariants after a sandboxed run: no process carrying `tag`, no run cgroup or run
/// directory of a process that is gone, no mount mentioning code-exec.
pub fn assert_host_clean(tag: &str) {
    assert_no_survivors(tag);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let leftovers = leftover_run_state();
        if leftovers.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            panic!("left behind: {leftovers:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let leaked: Vec<&str> = mounts
        .lines()
        .filter(|line| {
            line.split('/')
                .any(|part| part.starts_with("code-exec-") && creator_is_gone(part))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "sandbox mounts leaked to the host: {leaked:?}"
    );
}

/// Whether the process named in `code-exec-<pid>-…` no longer exists.
fn creator_is_gone(name: &str) -> bool {
    name.strip_prefix("code-exec-")
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Run cgroups and run directories whose creating process no longer exists.
fn leftover_run_state() -> Vec<PathBuf> {
    let mut found = Vec::new();
    let dead = creator_is_gone;
    let scan = |dir: PathBuf, depth: usize, found: &mut Vec<PathBuf>| {
        let mut stack = vec![(dir, depth)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if dead(&name) {
                    found.push(e.path());
                } else if depth > 0 {
                    stack.push((e.path(), depth - 1));
                }
            }
        }
    };
    scan(run_dir_base(), 0, &mut found);
    scan(PathBuf::from("/sys/fs/cgroup"), 4, &mut found);
    found
}

/// Cgroup directories (anywhere in the hierarchies) whose name starts with `prefix`.
pub fn cgroups_named(prefix: &str) -> String {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("find /sys/fs/cgroup -maxdepth 5 -name '{prefix}*' 2>/dev/null"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A virtual environment (made with `python3 -m venv --without-pip`) holding a package
/// `venvpkg` with `MARK = 42`. Returns the temp dir (keep it alive) and `bin/python`.
pub fn venv_with_package() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let made = Command::new(python())
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success(), "python3 -m venv failed");
    let version = Command::new(python())
        .args([
            "-I",
            "-c",
            "import sys; print('python%d.%d' % sys.version_info[:2])",
        ])
        .output()
        .unwrap();
    let versioned = String::from_utf8(version.stdout).unwrap().trim().to_owned();
    let package = venv
        .join("lib")
        .join(versioned)
        .join("site-packages/venvpkg");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(package.join("__init__.py"), "MARK = 42\n").unwrap();
    (dir, venv.join("bin/python"))
}

/// Code touching much of the standard library (threads, a subprocess, sqlite, stdin): the
/// seed's "complex code" case. Reads a number on stdin.
pub const COMPLEX_CODE: &str = r#"
import json, dataclasses, collections, itertools, sqlite3, decimal, hashlib, threading, subprocess
@dataclasses.dataclass
class P:
    n: int
n = int(input())
db = sqlite3.connect(":memory:")
db.execute("create table t (x)")
db.executemany("insert into t values (?)", [(i,) for i in range(n)])
total = db.execute("select sum(x) from t").fetchone()[0]
results = []
threads = [threading.Thread(target=lambda i=i: results.append(i * i)) for i in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
echo = subprocess.run(["sh", "-c", "echo from-shell"], capture_output=True, text=True).stdout.strip()
print(json.dumps({"p": dataclasses.asdict(P(n)), "total": total, "squares": sorted(results),
    "dec": str(decimal.Decimal("0.1") * 3), "sha": hashlib.sha256(b"x").hexdigest()[:8],
    "c": collections.Counter("aab")["a"], "echo": echo}, sort_keys=True))
"#;

/// Calls each dangerous syscall with harmless arguments and prints `name errno`.
/// What [`COMPLEX_CODE`] prints when given `5` on stdin.
pub fn assert_complex_output(r: &Value) {
    let v: Value = serde_json::from_str(r["output"].as_str().unwrap_or_default().trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {r}"));
    assert_eq!(v["p"]["n"], 5);
    assert_eq!(v["total"], 10);
    assert_eq!(v["squares"], serde_json::json!([0, 1, 4, 9]));
    assert_eq!(v["dec"], "0.3");
    assert_eq!(v["sha"], "2d711642");
    assert_eq!(v["echo"], "from-shell");
}

pub const PROBES: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
BAD = ctypes.c_void_p(1)
probes = [
    ('setns', 308, -1, 0), ('mount', 165, BAD, BAD, BAD, 0, 0),
    ('keyctl', 250, 9999, 0, 0), ('add_key', 248, BAD, BAD, 0, 0, 0), ('request_key', 249, BAD, BAD, 0, 0),
    ('bpf', 321, 9999, 0, 0), ('userfaultfd', 323, 0xffff), ('perf_event_open', 298, BAD, 0, -1, -1, 0),
    ('ptrace', 101, 2, -1, 0, 0), ('process_vm_readv', 310, -1, 0, 0, 0, 0, 0),
    ('io_uring_setup', 425, 0, 0), ('kexec_load', 246, 0, 0, 0, 0xffffffff), ('init_module', 175, BAD, 0, BAD),
    ('delete_module', 176, BAD, 0), ('reboot', 169, 0, 0, 0, 0), ('swapon', 167, BAD, 0),
    ('open_by_handle_at', 304, -1, 0, 0), ('clone3', 435, 0, 0), ('personality', 135, 0xffffffff),
    ('chroot', 161, BAD), ('pivot_root', 155, BAD, BAD), ('sethostname', 170, BAD, 100000),
    ('clone_newuser', 56, 0x10000000 | 17, 0, 0, 0, 0),
    # Last: where it is allowed it succeeds and moves this process into a new user namespace.
    ('unshare', 272, 0x10000000),
]
for name, nr, *args in probes:
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *[a if isinstance(a, ctypes.c_void_p) else ctypes.c_long(a) for a in args])
    err = ctypes.get_errno() if ret == -1 else 0
    if ret == 0 and name == 'clone_newuser':
        os._exit(0)
    print(name, err)
"#;

/// The image the docker tests run in: `$CODE_EXEC_TEST_IMAGE`, else the one
/// `scripts/build-docker-image.sh` builds.
pub fn docker_image() -> String {
    std::env::var("CODE_EXEC_TEST_IMAGE").unwrap_or_else(|_| "code-exec-python:3.11".to_owned())
}

/// Whether the Docker Engine answers and has the test image. Under `CI=true` their absence
/// fails the test; elsewhere the test is skipped, loudly, with the reason.
pub fn docker_or_skip(test: &str) -> bool {
    use code_execution_tool::backend::docker::Engine;
    let reason = match Engine::connect() {
        Err(e) => e.to_string(),
        Ok(engine) => match engine.image_python_version(&docker_image()) {
            Ok(_) => return true,
            Err(e) => e.to_string(),
        },
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: the Docker Engine is needed under CI=true: {reason}");
    }
    skip_loudly(test, &reason);
    false
}

/// `code-exec run --json --sandbox docker --image IMAGE -c CODE EXTRA...`.
pub fn run_docker(code: &str, extra: &[&str]) -> (Value, i32) {
    let image = docker_image();
    let mut args = vec!["--sandbox", "docker", "--image", &image];
    args.extend_from_slice(extra);
    run_code(code, &args)
}

/// Ids of every container carrying our label.
pub fn our_containers() -> Vec<String> {
    code_execution_tool::backend::docker::Engine::connect()
        .and_then(|e| e.labelled_containers())
        .expect("list containers")
}

/// After a docker run: no process carrying `tag` (container processes are host processes
/// too) and no container with our label.
pub fn assert_docker_clean(tag: &str) {
    assert_no_survivors(tag);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = our_containers();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("containers left behind: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- a `code-exec serve` process and a minimal HTTP/1.1 client ------------------------------

/// A server process on a free loopback port, stopped with SIGTERM on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(Command::new(bin()), args, env)
    }

    /// The same, started by a caller that ignores and blocks signals
    /// ([`command_under_ignored_signals`]).
    pub fn start_under_ignored_signals(args: &[&str]) -> Server {
        Server::spawn(command_under_ignored_signals(&bin()), args, &[])
    }

    /// The same with the server's open-file limit (soft and hard) set to `fds`.
    pub fn start_with_fd_limit(fds: u32, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={fds}:{fds}"))
            .arg("--")
            .arg(bin());
        Server::spawn(command, args, env)
    }

    fn spawn(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env_remove(if env.iter().any(|(k, _)| *k == "CODE_EXEC_TOKEN") {
                "CODE_EXEC_UNUSED"
            } else {
                "CODE_EXEC_TOKEN"
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start code-exec serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("code-exec: listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status (killed after 20 s).
    pub fn stop(&mut self) -> i32 {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("the server did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that no run cgroup of this server exists (none is running or kept).
    pub fn assert_no_cgroups(&self) {
        let prefix = format!("code-exec-{}-", self.pid());
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = cgroups_named(&prefix);
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "cgroups left: {left}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        http(
            self.addr,
            method,
            path,
            &[],
            body.map(|b| b.to_string()).as_deref(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.body))
    }

    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {self:?}"))
            .to_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    read_reply(stream)
}

pub fn read_reply(stream: TcpStream) -> Reply {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no status line: {status_line:?}"))
        .parse()
        .unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let mut body = Vec::new();
    match headers.get("content-length") {
        Some(n) => {
            body.resize(n.parse().unwrap(), 0);
            reader.read_exact(&mut body).unwrap();
        }
        None if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") => loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        },
        None => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

// ---- attack programs both sandbox suites run ------------------------------------------

/// Allocates 10 MB blocks until something stops it.
pub const MEMORY_BOMB: &str = "x = []\nwhile True: x.append(bytearray(10 * 1024 * 1024))";

/// Writes to stdout without end.
pub const STDOUT_FLOOD: &str = "import os\nwhile True: os.write(1, b'x' * 65536)";

/// Starts threads until refused; prints `capped True` when stopped under 64.
pub const THREAD_BOMB: &str = "import threading, time\nn = 0\ntry:\n    while True:\n        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n        n += 1\nexcept RuntimeError as e:\n    print('capped', n < 64)\n";

/// Creates empty files in /work until refused; prints `stopped True <errno>`.
pub const INODE_EXHAUSTION: &str = "n = 0\ntry:\n    while True:\n        open('/work/f%d' % n, 'w').close(); n += 1\nexcept OSError as e:\n    print('stopped', n < 20000, e.errno)";

/// Tries to lock 16 MB in memory; prints `mlock -1 True` when refused.
pub const MLOCK_16MB: &str = "import ctypes, mmap\nlibc = ctypes.CDLL(None, use_errno=True)\nbuf = mmap.mmap(-1, 16 << 20)\naddr = ctypes.addressof(ctypes.c_char.from_buffer(buf))\nprint('mlock', libc.mlock(ctypes.c_void_p(addr), ctypes.c_size_t(16 << 20)), ctypes.get_errno() in (1, 11, 12))";

/// Anonymous files of 8 MB each, without end: each is far under the file-size limit, together
/// they are over the memory limit, which must stop them (tmpfs pages are memory).
pub const MEMFD_BOMB: &str = "import os\nchunk = b'x' * (1 << 20)\nfds = []\nwhile True:\n    fds.append(os.memfd_create('bomb'))\n    for _ in range(8): os.write(fds[-1], chunk)";

/// Recurses in C (repr of deeply nested lists) until the stack overflows.
pub const C_STACK_OVERFLOW: &str =
    "import sys\nsys.setrecursionlimit(10**8)\nl = []\nfor i in range(10**6): l = [l]\nrepr(l)";

/// Forks 6 children of 30 MB each while the parent waits: far over a 100 MB limit together,
/// each well under it. Prints whether any child was SIGKILLed.
pub const MANY_PROCESSES_OVER_MEMORY: &str = r#"
import os, time
kids = []
for i in range(6):
    pid = os.fork()
    if pid == 0:
        block = bytearray(30 * 1024 * 1024)
        for j in range(0, len(block), 4096): block[j] = 1
        time.sleep(3)
        os._exit(0)
    kids.append(pid)
killed = [os.waitpid(pid, 0)[1] & 0x7f for pid in kids]
print('children killed by SIGKILL:', killed.count(9) > 0)
"#;

/// Forks without end, each process named `tag` (so survivors can be looked for).
pub fn fork_bomb(tag: &str) -> String {
    format!(
        "import os, sys\nsys.argv[0] = '{tag}'\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
}

/// Touches a 40 MB buffer then sleeps `sleep_s` seconds: monitoring must see it.
pub fn touch_40mb_and_sleep(sleep_s: f64) -> String {
    format!(
        "import time\nx = bytearray(40 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep({sleep_s})"
    )
}

/// The run of [`touch_40mb_and_sleep`] was sampled at least `min_samples` times, a sample saw
/// the 40 MB, and every sample counted a process.
pub fn assert_monitoring_saw_40mb(r: &Value, min_samples: usize) {
    let samples = r["monitoring"].as_array().unwrap();
    assert!(samples.len() >= min_samples, "{samples:?}");
    let peak = samples
        .iter()
        .map(|s| s["memory_mb"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(
        peak >= 40.0,
        "a touched 40 MB buffer must show: {samples:?}"
    );
    assert!(samples.iter().all(|s| s["pids"].as_u64().unwrap() >= 1));
}
