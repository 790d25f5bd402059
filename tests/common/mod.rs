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

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
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
    match code_execution_tool::cgroup::CgroupDriver::detect() {
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

/// `code-exec run --json --sandbox native -c CODE EXTRA...`.
pub fn run_native(code: &str, extra: &[&str]) -> (Value, i32) {
    let mut args = vec!["--sandbox", "native"];
    args.extend_from_slice(extra);
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
    scan(std::env::temp_dir(), 0, &mut found);
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
