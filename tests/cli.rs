//! The `code-exec` command line and its JSON contract, through the built binary (`none` backend).

mod common;

use common::*;
use serde_json::Value;

#[test]
fn success_prints_output_and_exits_zero() {
    let (r, status) = run_code("print('hello')", &[]);
    assert_eq!(status, 0);
    assert_eq!(r["success"], true);
    assert_eq!(r["output"], "hello\n");
    assert_eq!(r["stderr"], "");
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["error_type"], Value::Null);
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["signal"], Value::Null);
    assert_eq!(r["truncated"], false);
    assert_eq!(r["backend"], "none");
    assert!(r["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(r["cpu_time_ms"].as_f64().unwrap() > 0.0);
    assert!(r["peak_memory_mb"].as_f64().unwrap() > 1.0);
    assert!(r.get("monitoring").is_none());
}

#[test]
fn without_json_output_passes_through() {
    let run = code_exec(&[
        "run",
        "-c",
        "import sys; print('out'); print('err', file=sys.stderr)",
    ]);
    assert_eq!(run.status, 0);
    assert_eq!(run.stdout, "out\n");
    assert_eq!(run.stderr, "err\n");
    let run = code_exec(&["run", "-c", "1/0"]);
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("Traceback"), "{}", run.stderr);
    assert!(
        run.stderr
            .trim_end()
            .ends_with("code-exec: ZeroDivisionError: division by zero"),
        "{}",
        run.stderr
    );
}

#[test]
fn syntax_error_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("ran");
    let code = format!(
        "open({:?}, 'w').write('x')\nprint('ran')\nx = (1 +\n",
        witness.to_str().unwrap()
    );
    let (r, status) = run_code(&code, &[]);
    assert_eq!(status, 1);
    assert_eq!(r["success"], false);
    assert_eq!(r["error_type"], "SyntaxError");
    assert_eq!(r["output"], "");
    assert_eq!(r["exit_code"], Value::Null);
    assert_eq!(r["line"], 3, "{r}");
    assert!(r["column"].as_u64().unwrap() >= 1);
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("(line 3, column"), "{error}");
    assert!(!witness.exists(), "code ran despite a syntax error");
}

#[test]
fn syntax_error_position_is_reported() {
    let (r, _) = run_code("x = 1\nif x ==:\n    pass\n", &[]);
    assert_eq!(r["error_type"], "SyntaxError");
    assert_eq!(r["line"], 2);
    assert_eq!(r["column"], 8);
    assert!(
        r["error"].as_str().unwrap().starts_with("invalid syntax"),
        "{r}"
    );
}

#[test]
fn runtime_errors_carry_the_exception_class() {
    let cases = [
        (
            "1/0",
            "ZeroDivisionError",
            "ZeroDivisionError: division by zero",
        ),
        ("{}['k']", "KeyError", "KeyError: 'k'"),
        (
            "int('x')",
            "ValueError",
            "ValueError: invalid literal for int() with base 10: 'x'",
        ),
        (
            "import no_such_module_xyz",
            "ModuleNotFoundError",
            "ModuleNotFoundError: No module named 'no_such_module_xyz'",
        ),
        (
            "class Boom(Exception): pass\nraise Boom('custom')",
            "Boom",
            "Boom: custom",
        ),
        (
            "raise KeyboardInterrupt",
            "KeyboardInterrupt",
            "KeyboardInterrupt",
        ),
        (
            "def f(): f()\nf()",
            "RecursionError",
            "RecursionError: maximum recursion depth exceeded",
        ),
        ("assert False", "AssertionError", "AssertionError"),
    ];
    for (code, class, error) in cases {
        let (r, status) = run_code(code, &[]);
        assert_eq!(status, 1, "{code}");
        assert_eq!(r["success"], false);
        assert_eq!(r["error_type"], class, "{code}: {r}");
        assert_eq!(r["error"], error, "{code}");
        assert_eq!(r["exit_code"], 1);
        assert!(
            r["stderr"].as_str().unwrap().contains("Traceback"),
            "{code}"
        );
        assert!(
            !r["stderr"].as_str().unwrap().contains("_code_exec_main"),
            "runner frame leaked"
        );
    }
}

/// What only CPython's compiler refuses (the parse-only check lets it through) is a syntax
/// error printed as bare Python prints it: no runner frame, no traceback header, nothing
/// after it; cold, through the zygote, and without the sandbox.
#[test]
fn compile_errors_are_printed_as_bare_python_prints_them() {
    let sandboxes: &[&[&str]] = if cfg!(target_os = "linux") {
        &[
            &["--sandbox", "none"],
            &["--sandbox", "native"],
            &["--sandbox", "native", "--zygote"],
        ]
    } else {
        &[&["--sandbox", "none"]]
    };
    for extra in sandboxes {
        let (r, status) = run_code("print(1)\nreturn 5", extra);
        if r["verdict"] == "sandbox_error" {
            eprintln!("{extra:?}: not here: {r}");
            continue;
        }
        assert_eq!(status, 1, "{extra:?}: {r}");
        assert_eq!(r["verdict"], "syntax_error", "{extra:?}: {r}");
        assert_eq!(r["output"], "", "{extra:?}: {r}");
        let stderr = r["stderr"].as_str().unwrap();
        assert!(
            stderr
                .ends_with("    return 5\n    ^^^^^^^^\nSyntaxError: 'return' outside function\n"),
            "{extra:?}: {stderr}"
        );
        assert!(
            !stderr.contains("Traceback") && !stderr.contains("_code_exec"),
            "{extra:?}: {stderr}"
        );
    }
}

#[test]
fn exit_status_is_reported_as_exit() {
    let (r, status) = run_code("import sys\nprint('bye')\nsys.exit(3)", &[]);
    assert_eq!(status, 1);
    assert_eq!(r["error_type"], "Exit");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["output"], "bye\n");
    assert_eq!(r["error"], "exited with status 3");

    let (r, _) = run_code("import sys; sys.exit('fatal: no input')", &[]);
    assert_eq!(r["error_type"], "Exit");
    assert_eq!(r["exit_code"], 1);
    assert_eq!(r["error"], "exited with status 1: fatal: no input");
    assert_eq!(r["stderr"], "fatal: no input\n");

    let (r, status) = run_code("import sys; sys.exit(0)", &[]);
    assert_eq!((status, r["success"].clone()), (0, Value::Bool(true)));
    let (r, _) = run_code("import os; os._exit(7)", &[]);
    assert_eq!(
        (r["error_type"].clone(), r["exit_code"].clone()),
        ("Exit".into(), 7.into())
    );
}

#[test]
fn crashes_report_the_signal() {
    let (r, status) = run_code("import ctypes; ctypes.string_at(0)", &[]);
    assert_eq!(status, 1);
    assert_eq!(r["error_type"], "Crash");
    assert_eq!(r["signal"], "SIGSEGV");
    assert_eq!(r["exit_code"], Value::Null);
    let (r, _) = run_code("import os; os.abort()", &[]);
    assert_eq!(
        (r["error_type"].clone(), r["signal"].clone()),
        ("Crash".into(), "SIGABRT".into())
    );
}

#[test]
fn timeout_kills_everything_including_setsid_and_double_forked_children() {
    let tag = marker("timeout");
    let code = format!(
        r#"
import os, subprocess, sys, time
# A child in a new session running a shell that backgrounds a sleeper.
subprocess.Popen(['{tag}_a', '300'], executable='/bin/sleep', start_new_session=True)
# A classic double-fork daemon.
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sleep', ['{tag}_b', '300'])
    os._exit(0)
# A grandchild that ignores SIGTERM and stops itself.
subprocess.Popen([sys.executable, '-c', 'import signal, os, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); os.kill(os.getpid(), signal.SIGSTOP)', '{tag}_c'])
time.sleep(0.3)
print('spawned', flush=True)
time.sleep(300)
"#
    );
    let started = std::time::Instant::now();
    let (r, status) = run_code(&code, &["--timeout", "3"]);
    let elapsed = started.elapsed();
    assert_eq!(status, 1);
    assert_eq!(r["error_type"], "Timeout", "{r}");
    assert_eq!(r["output"], "spawned\n");
    assert!(r["error"].as_str().unwrap().contains("after 3 s"), "{r}");
    assert!(elapsed.as_secs_f64() < 10.0, "took {elapsed:?}");
    assert_no_survivors(&tag);
}

#[test]
fn returns_promptly_when_a_leftover_child_holds_stdout() {
    let tag = marker("holder");
    let code = format!(
        "import subprocess\nsubprocess.Popen(['{tag}', '300'], executable='/bin/sleep', start_new_session=True)\nprint('main done')\n"
    );
    let started = std::time::Instant::now();
    let (r, status) = run_code(&code, &["--timeout", "60"]);
    assert!(
        started.elapsed().as_secs_f64() < 10.0,
        "waited for the leftover child"
    );
    assert_eq!(status, 0, "{r}");
    assert_eq!(r["output"], "main done\n");
    assert_no_survivors(&tag);
}

#[test]
fn a_killed_caller_leaves_nothing_behind() {
    let tag = marker("orphan");
    // The code builds the sleeper's name from two halves, so that only the sleeper (not the
    // caller, whose argv holds the code) carries the whole tag.
    let (head, tail) = tag.split_at(tag.len() / 2);
    let code = format!(
        "import subprocess, time\nname = '{head}' + '{tail}'\nsubprocess.Popen([name, '300'], executable='/bin/sleep', start_new_session=True)\ntime.sleep(300)\n"
    );
    let mut child = std::process::Command::new(bin())
        .args(["run", "--json", "--timeout", "600", "-c", &code])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while processes_with(&tag).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sleeper never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let caller = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_no_survivors(&tag);
    // Its run directory and cgroup are reaped by the next start (of the same backend).
    let next = code_exec(&["run", "--json", "-c", "print('next')"]);
    assert_eq!(next.json()["output"], "next\n", "{}", next.stderr);
    let prefix = format!("code-exec-{caller}-");
    let left: Vec<_> = run_dirs()
        .into_iter()
        .filter(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    assert!(
        left.is_empty(),
        "the crashed caller's run directory survived: {left:?}"
    );
    let cgroups = cgroups_named(&prefix);
    assert!(
        cgroups.is_empty(),
        "the crashed caller's cgroup survived: {cgroups}"
    );
}

#[test]
fn output_cap_applies_to_each_stream_and_stops_the_run() {
    let (r, status) = run_code(
        "import sys, time\nfor i in range(10**7): print('line', i)\n",
        &["--max-output", "1000"],
    );
    assert_eq!(status, 1);
    assert_eq!(r["error_type"], "OutputLimit");
    assert_eq!(r["truncated"], true);
    assert_eq!(r["output"].as_str().unwrap().len(), 1000);
    assert!(r["error"].as_str().unwrap().contains("stdout"), "{r}");

    let (r, _) = run_code(
        "import sys\nprint('ok')\nwhile True: sys.stderr.write('e' * 100)\n",
        &["--max-output", "5000"],
    );
    assert_eq!(r["error_type"], "OutputLimit");
    assert_eq!(r["truncated"], true);
    assert_eq!(r["output"], "ok\n");
    assert_eq!(r["stderr"].as_str().unwrap().len(), 5000);
    assert!(r["error"].as_str().unwrap().contains("stderr"), "{r}");
}

#[test]
fn flood_without_newlines_is_capped() {
    let (r, status) = run_code(
        "import os\nwhile True: os.write(1, b'x' * 65536)\n",
        &["--max-output", "100000", "--timeout", "20"],
    );
    assert_eq!(status, 1);
    assert_eq!(r["error_type"], "OutputLimit");
    assert_eq!(r["output"].as_str().unwrap().len(), 100_000);
    assert!(r["duration_ms"].as_f64().unwrap() < 15_000.0);
}

#[test]
fn output_just_under_the_cap_is_not_truncated() {
    let (r, status) = run_code(
        "import sys; sys.stdout.write('x' * 1000)",
        &["--max-output", "1000"],
    );
    assert_eq!(status, 0, "{r}");
    assert_eq!(r["truncated"], false);
    assert_eq!(r["output"].as_str().unwrap().len(), 1000);
}

#[test]
fn non_utf8_output_is_returned_lossily() {
    let (r, status) = run_code(
        "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe \\x00 end\\n')\nsys.stderr.buffer.write(b'\\xc3\\x28')\n",
        &[],
    );
    assert_eq!(status, 0, "{r}");
    assert_eq!(r["output"], "ok \u{fffd}\u{fffd} \u{0} end\n");
    assert_eq!(r["stderr"], "\u{fffd}(");
}

#[test]
fn nul_byte_in_code_is_a_syntax_error() {
    let run = code_exec_with(
        &["run", "--json", "-"],
        Some(b"print('a')\nx = '\0'\n"),
        &[],
    );
    let r = run.json();
    assert_eq!(run.status, 1);
    assert_eq!(r["error_type"], "SyntaxError");
    assert_eq!(r["line"], 2);
    assert!(r["error"].as_str().unwrap().contains("null bytes"));
    assert_eq!(r["output"], "");
}

#[test]
fn deeply_nested_code_does_not_crash_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("neg", format!("x = {}1\n", "-".repeat(500_000))),
        ("sum", format!("x = {}1\n", "1+".repeat(300_000))),
        ("attr", format!("x = {}a\n", "a.".repeat(300_000))),
        (
            "brackets",
            format!("x = {}1{}\n", "(".repeat(5000), ")".repeat(5000)),
        ),
    ];
    for (name, code) in cases {
        let path = dir.path().join(format!("{name}.py"));
        std::fs::write(&path, &code).unwrap();
        let run = code_exec(&["run", "--json", "--sandbox", "none", path.to_str().unwrap()]);
        let r = run.json();
        // CPython refuses all of these ("too many nested parentheses", or too deep to
        // compile); what matters is a clean verdict instead of a dead tool.
        assert_eq!(r["error_type"], "SyntaxError", "{name}: {r}");
        assert_eq!(run.status, 1, "{name}");
        let check = code_exec(&["check", "--json", path.to_str().unwrap()]);
        let c = check.json();
        assert!(c["valid"].is_boolean(), "{name}: {}", check.stdout);
    }
}

#[test]
fn invalid_limits_exit_2_naming_the_field() {
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "0"], "memory_mb"),
        (&["--memory", "-5"], "memory_mb"),
        (&["--memory", "lots"], "memory_mb"),
        (&["--cpu", "0"], "cpu"),
        (&["--cpu", "NaN"], "cpu"),
        (&["--cpu", "-0.5"], "cpu"),
        (&["--cpu", "10000"], "cpu"),
        (&["--timeout", "0"], "timeout"),
        (&["--timeout", "nan"], "timeout"),
        (&["--timeout", "-1"], "timeout"),
        (&["--pids", "0"], "pids"),
        (&["--pids", "2.5"], "pids"),
        (&["--max-output", "0"], "max_output_bytes"),
        (&["--max-code-size", "0"], "max_code_bytes"),
        (&["--sandbox", "vm"], "sandbox"),
        (&["--python-version", "2.7"], "python-version"),
    ];
    for (flags, field) in cases {
        let mut args = vec!["run", "--json", "-c", "print(1)"];
        args.extend_from_slice(flags);
        let run = code_exec(&args);
        assert_eq!(run.status, 2, "{flags:?}: {}", run.stderr);
        assert!(run.stderr.contains(field), "{flags:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "nothing may run: {}", run.stdout);
    }
    let run = code_exec(&["run", "--memory", "0", "-c", "print(1)"]);
    assert!(run.stderr.contains("allowed: 8 to"), "{}", run.stderr);
}

#[test]
fn bad_invocations_exit_2() {
    for args in [
        vec!["run"],
        vec!["run", "/nonexistent/code.py"],
        vec!["run", "--stdin", "/nonexistent/input", "-c", "print(1)"],
        vec!["run", "--python", "/nonexistent/python3", "-c", "print(1)"],
        vec!["run", "--image", "x", "-c", "print(1)"],
        vec!["run", "--bogus-flag", "-c", "print(1)"],
        vec!["check"],
    ] {
        let run = code_exec(&args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.is_empty());
    }
}

#[test]
fn code_over_the_size_cap_exits_2() {
    let big = format!("x = 1\n{}", "#".repeat(2000));
    let run = code_exec(&["run", "--max-code-size", "1000", "-c", &big]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("max_code_bytes"), "{}", run.stderr);
    let run = code_exec_with(
        &["run", "--max-code-size", "1000", "-"],
        Some(big.as_bytes()),
        &[],
    );
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("over the limit of 1000 bytes"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreachable_docker_engine_is_a_sandbox_error_that_says_what_to_do() {
    let run = code_exec_with(
        &["run", "--json", "--sandbox", "docker", "-c", "print(1)"],
        None,
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(run.status, 3, "{}", run.stderr);
    let r = run.json();
    assert_eq!(r["error_type"], "SandboxError");
    assert_eq!(r["backend"], "docker");
    assert!(r["error"].as_str().unwrap().contains("start Docker"), "{r}");
}

#[test]
fn check_reports_validity() {
    let run = code_exec(&["check", "--json", "-c", "def f(x):\n    return x * 2\n"]);
    assert_eq!(run.status, 0);
    assert_eq!(
        run.json(),
        serde_json::json!({"valid": true, "error": null, "line": null, "column": null})
    );
    let run = code_exec(&["check", "--json", "-c", "x = 1\ny = [1, 2\n"]);
    assert_eq!(run.status, 1);
    let c = run.json();
    assert_eq!(c["valid"], false);
    assert!(c["error"].is_string());
    assert!(c["line"].is_u64() && c["column"].is_u64(), "{c}");
    // The target version matters: `match` is 3.10+.
    let code = "match x:\n    case 1:\n        pass\n";
    assert_eq!(
        code_exec(&["check", "-c", code, "--python-version", "3.10"]).status,
        0
    );
    let old = code_exec(&["check", "--json", "-c", code, "--python-version", "3.9"]);
    assert_eq!(old.status, 1);
    assert!(old.json()["error"].as_str().unwrap().contains("3.9"));
    // Plain mode says so in words.
    let plain = code_exec(&["check", "-c", "print(1)"]);
    assert_eq!((plain.status, plain.stdout.as_str()), (0, "valid\n"));
}

#[test]
fn stdin_comes_from_a_file_or_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "3\n4\n").unwrap();
    let (r, status) = run_code(
        "import sys\nprint(sum(int(l) for l in sys.stdin))",
        &["--stdin", input.to_str().unwrap()],
    );
    assert_eq!(status, 0, "{r}");
    assert_eq!(r["output"], "7\n");
    let (r, _) = run_code("import sys; print(repr(sys.stdin.read()))", &[]);
    assert_eq!(r["output"], "''\n");
    // input() on an empty stdin is an EOFError, not a hang.
    let (r, _) = run_code("input()", &["--timeout", "10"]);
    assert_eq!(r["error_type"], "EOFError");
}

#[test]
fn code_from_a_file_and_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prog.py");
    std::fs::write(&file, "print('from file')\n").unwrap();
    let run = code_exec(&["run", "--json", file.to_str().unwrap()]);
    assert_eq!(run.json()["output"], "from file\n");
    let run = code_exec_with(&["run", "--json", "-"], Some(b"print('from stdin')\n"), &[]);
    assert_eq!(run.json()["output"], "from stdin\n");
}

#[test]
fn several_executions_in_a_row_are_independent() {
    for i in 0..5 {
        let (r, status) = run_code(
            &format!(
                "import os\nassert not os.path.exists('state.txt')\nopen('state.txt','w').write('{i}')\nprint({i} * {i})"
            ),
            &[],
        );
        assert_eq!(status, 0, "{r}");
        assert_eq!(r["output"], format!("{}\n", i * i));
    }
}

#[test]
fn complex_program_runs() {
    let code = r#"
import json, itertools, collections, dataclasses, functools, re, math, statistics
from typing import List

@dataclasses.dataclass
class Point:
    x: float
    y: float
    def norm(self) -> float:
        return math.hypot(self.x, self.y)

class Shape:
    def __init__(self, points: List[Point]):
        self.points = points
    @functools.cached_property
    def perimeter(self):
        pairs = zip(self.points, self.points[1:] + self.points[:1])
        return sum(math.dist((a.x, a.y), (b.x, b.y)) for a, b in pairs)

square = Shape([Point(0, 0), Point(0, 1), Point(1, 1), Point(1, 0)])
words = re.findall(r"\w+", "the quick brown fox jumps over the lazy dog the end")
counts = collections.Counter(words)
squares = {n: n * n for n in range(10) if n % 2}
gen = list(itertools.islice((p for p in itertools.count(2) if all(p % d for d in range(2, p))), 10))
def fib():
    a, b = 0, 1
    while True:
        yield a
        a, b = b, a + b
print(json.dumps({
    "perimeter": square.perimeter,
    "top": counts.most_common(1),
    "squares": squares,
    "primes": gen,
    "fib": list(itertools.islice(fib(), 10)),
    "mean": statistics.mean([1, 2, 3, 4]),
    "lambda": sorted([3, 1, 2], key=lambda v: -v),
}, sort_keys=True))
if __name__ == "__main__":
    print("main")
"#;
    let (r, status) = run_code(code, &[]);
    assert_eq!(status, 0, "{r}");
    let lines: Vec<&str> = r["output"].as_str().unwrap().lines().collect();
    let data: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(data["perimeter"], 4.0);
    assert_eq!(data["top"], serde_json::json!([["the", 3]]));
    assert_eq!(
        data["primes"],
        serde_json::json!([2, 3, 5, 7, 11, 13, 17, 19, 23, 29])
    );
    assert_eq!(
        data["fib"],
        serde_json::json!([0, 1, 1, 2, 3, 5, 8, 13, 21, 34])
    );
    assert_eq!(data["squares"]["3"], 9);
    assert_eq!(data["mean"], 2.5);
    assert_eq!(data["lambda"], serde_json::json!([3, 2, 1]));
    assert_eq!(lines[1], "main");
}

#[test]
fn memory_limit_is_reported() {
    let (r, status) = run_code(
        "x = bytearray(300 * 1024 * 1024)\nprint('allocated')",
        &["--memory", "64"],
    );
    assert_eq!(status, 1);
    // The `none` backend caps each process (RLIMIT_DATA): the interpreter's MemoryError is
    // all there is to see, and the code could raise one itself, so it stays an exception.
    assert_eq!(r["error_type"], "MemoryError", "{r}");
    assert_eq!(r["verdict"], "exception", "{r}");
    assert_eq!(r["limits_enforced"]["memory_mb"], "per_process", "{r}");
    assert_eq!(r["output"], "");
    // Below the limit the same program succeeds.
    let (r, status) = run_code(
        "x = bytearray(32 * 1024 * 1024)\nprint(len(x))",
        &["--memory", "128"],
    );
    assert_eq!(status, 0, "{r}");
}

#[test]
fn monitor_adds_samples() {
    let (r, status) = run_code(
        "import time\nend = time.time() + 0.6\nx = 0\nwhile time.time() < end: x += 1\n",
        &["--monitor", "--monitor-interval", "50"],
    );
    assert_eq!(status, 0, "{r}");
    let samples = r["monitoring"].as_array().expect("monitoring samples");
    assert!(samples.len() >= 4, "{samples:?}");
    // The last sample may catch the interpreter tearing down its memory as it exits.
    for s in &samples[..samples.len() - 1] {
        assert!(s["timestamp_ms"].as_f64().unwrap() >= 0.0);
        assert!(s["memory_mb"].as_f64().unwrap() > 1.0, "{s}");
        assert!(s["cpu_percent"].as_f64().unwrap() >= 0.0);
    }
    // After start-up (the first samples), a spinning loop keeps using CPU; a sleeping one
    // would show none. The machine may be loaded by other tests: any clear use counts.
    let busy = samples
        .iter()
        .skip(2)
        .filter(|s| s["cpu_percent"].as_f64().unwrap() > 0.0)
        .count();
    assert!(
        busy >= 1,
        "a spinning loop should show CPU use: {samples:?}"
    );
}

#[test]
fn environment_is_an_allowlist() {
    let run = code_exec_with(
        &[
            "run",
            "--json",
            "-c",
            "import os; print(sorted(os.environ))",
        ],
        None,
        &[
            ("CODE_EXEC_TEST_SECRET", "hunter2"),
            ("AWS_SECRET_ACCESS_KEY", "hunter3"),
        ],
    );
    let r = run.json();
    assert_eq!(
        r["output"],
        "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']\n"
    );
    assert!(!run.stdout.contains("hunter"));
}

#[test]
fn only_standard_fds_reach_child_processes() {
    let code = r#"
import os, subprocess, sys
mine = sorted(int(f) for f in os.listdir('/proc/self/fd'))
child = subprocess.run([sys.executable, '-c', 'import os; print(sorted(int(f) for f in os.listdir("/proc/self/fd")))'],
                       close_fds=False, capture_output=True, text=True).stdout.strip()
print(mine)
print(child)
"#;
    let (r, status) = run_code(code, &[]);
    assert_eq!(status, 0, "{r}");
    let out = r["output"].as_str().unwrap();
    let mut lines = out.lines();
    // The interpreter: 0–2, the runner's close-on-exec report channel, and listdir's own fd.
    assert_eq!(lines.next(), Some("[0, 1, 2, 3, 4]"), "{out}");
    // A process it starts: only 0–2 (plus its listdir fd, 3).
    assert_eq!(lines.next(), Some("[0, 1, 2, 3]"), "{out}");
}

#[test]
fn run_directory_is_removed() {
    let (r, status) = run_code(
        "import os; print(os.path.dirname(__file__)); open('f', 'w').write('x')",
        &[],
    );
    assert_eq!(status, 0, "{r}");
    let dir = r["output"].as_str().unwrap().trim().to_owned();
    assert!(dir.contains("code-exec-"), "{dir}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}

#[test]
fn doctor_reports_the_host_in_words_and_json() {
    let run = code_exec(&["doctor", "--json"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let report = run.json();
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "python",
            "user namespaces",
            "cgroups",
            "seccomp",
            "landlock"
        ]
    );
    let none = &report["backends"][0];
    assert_eq!(
        (none["name"].as_str(), none["ok"].as_bool()),
        (Some("none"), Some(true)),
        "{none}"
    );
    assert_eq!(report["backends"][2]["name"], "docker");
    let unreachable = code_exec_with(
        &["doctor", "--json"],
        None,
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    )
    .json();
    let docker = &unreachable["backends"][2];
    assert_eq!(docker["ok"], false, "{docker}");
    assert!(
        docker["detail"].as_str().unwrap().contains("start Docker"),
        "{docker}"
    );
    assert_eq!(report["native_limits"].as_array().unwrap().len(), 6);
    let text = code_exec(&["doctor"]);
    assert!(
        text.stdout.contains("Backends\n") && text.stdout.contains("native"),
        "{}",
        text.stdout
    );
}

#[test]
fn the_default_sandbox_is_native_and_results_say_how_limits_were_enforced() {
    if !native_sandbox_or_skip("the_default_sandbox_is_native") {
        return;
    }
    let run = code_exec(&["run", "--json", "-c", "print('sandboxed')"]);
    let r = run.json();
    assert_eq!(r["backend"], "native", "{r}");
    assert_eq!(r["output"], "sandboxed\n");
    let how = &r["limits_enforced"];
    assert_eq!(how["timeout"], "host");
    assert_eq!(how["max_output_bytes"], "host");
    let (none, _) = run_code("print(1)", &[]);
    assert_eq!(none["limits_enforced"]["cpu"], "not_enforced");
    assert_eq!(none["limits_enforced"]["memory_mb"], "per_process");
}

#[test]
fn strict_limits_refuse_what_cannot_be_enforced() {
    // The none backend never enforces cpu or pids: strict mode refuses before running.
    let run = code_exec(&[
        "run",
        "--json",
        "--sandbox",
        "none",
        "--strict-limits",
        "-c",
        "open('/tmp/strict-ran', 'w')",
    ]);
    assert_eq!(run.status, 3, "{}", run.stdout);
    let r = run.json();
    assert_eq!(r["error_type"], "SandboxError");
    let error = r["error"].as_str().unwrap();
    assert!(
        error.contains("cpu (not enforced)") && error.contains("pids (not enforced)"),
        "{error}"
    );
    assert_eq!(r["exit_code"], Value::Null, "nothing ran");
}

#[test]
fn the_survivor_check_sees_tagged_processes() {
    // The host checks above are only as good as this detector: prove it finds a live one.
    use std::os::unix::process::CommandExt;
    let tag = marker("detector");
    let mut sleeper = std::process::Command::new("/bin/sleep")
        .arg0(&tag)
        .arg("30")
        .spawn()
        .unwrap();
    // Until the child has exec'd, its command line is still ours: wait for the sleeper.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut seen = processes_with(&tag);
    while seen.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
        seen = processes_with(&tag);
    }
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(seen, vec![sleeper.id()]);
    assert_no_survivors(&tag);
}

#[test]
fn a_virtual_environment_named_by_python_is_used() {
    let (_dir, python) = venv_with_package();
    let (r, status) = run_code(
        "import sys, venvpkg\nprint(venvpkg.MARK, sys.prefix == sys.base_prefix)",
        &["--python", python.to_str().unwrap()],
    );
    assert_eq!(status, 0, "{r}");
    assert_eq!(r["output"], "42 False\n");
}

/// A caller that ignores SIGINT (a background job) or blocks signals does not hand that on
/// to the code (issue 18, item 7).
#[test]
fn the_callers_signal_dispositions_and_mask_stay_out() {
    assert_signals_of_the_caller_stay_out(&["--sandbox", "none"]);
}

/// `none` runs in a directory of the host's: what the code writes there stays off
/// `sys.path`, as for an isolated interpreter (issue 18, item 5: the sandboxes put theirs first).
#[test]
fn none_keeps_its_work_directory_off_the_import_path() {
    let (r, status) = run_code(
        "open('helper_mod.py', 'w').write('x = 41')\nimport helper_mod",
        &[],
    );
    assert_eq!(status, 1, "{r}");
    assert_eq!(r["error_type"], "ModuleNotFoundError", "{r}");
}

/// ... unless asked (`--import-work-dir`): then a module the code writes imports, in a run of
/// the none backend as in the sandboxes; the flag is refused where it means nothing.
#[test]
fn none_puts_its_work_directory_first_when_asked() {
    let (r, status) = run_code(
        "import os, sys\nopen('helper_mod.py', 'w').write('x = 41')\nimport helper_mod\nprint(helper_mod.x + 1, sys.path[0] == os.getcwd())",
        &["--import-work-dir"],
    );
    assert_eq!(status, 0, "{r}");
    assert_eq!(r["output"], "42 True\n", "{r}");
    for sandbox in ["native", "docker"] {
        let run = code_exec(&[
            "run",
            "--sandbox",
            sandbox,
            "--import-work-dir",
            "-c",
            "print(1)",
        ]);
        assert_eq!(run.status, 2, "{sandbox}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("--import-work-dir applies only to --sandbox none"),
            "{sandbox}: {}",
            run.stderr
        );
    }
}

/// `--disk` is validated at the edge: the field and its range are named, nothing runs.
#[test]
fn an_invalid_disk_limit_names_the_field_and_its_range() {
    for bad in ["0", "-1", "1.5", "lots", "1048577"] {
        let run = code_exec(&["run", "--sandbox", "none", "--disk", bad, "-c", "print(1)"]);
        assert_eq!(run.status, 2, "{bad}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{bad}: {}", run.stdout);
        assert!(
            run.stderr.contains("disk_mb") && run.stderr.contains("1 to 1048576"),
            "{bad}: {}",
            run.stderr
        );
    }
}
