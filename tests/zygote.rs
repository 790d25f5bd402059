//! The zygote, the library's default path for native runs: it is really used where the host
//! allows one, a run forked from it behaves as a cold run (same interpreter state, streams,
//! signals, exit statuses, finalization), a dead zygote is replaced without losing a run, and
//! it ends with its tool. The attack suite runs through it too (CODE_EXEC_TEST_ZYGOTE=1).

#[macro_use]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use code_execution_tool::{CodeExecutionTool, ExecutionResult, ZygoteMode};
use common::*;

/// The tests count this process's zygotes: one test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serialized() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn tool(mode: ZygoteMode) -> CodeExecutionTool {
    CodeExecutionTool::builder()
        .supervisor(bin())
        .zygote(mode)
        .build()
        .expect("native tool (see code-exec doctor)")
}

/// Processes whose parent is this test process and whose command line is a zygote's.
fn our_zygotes() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rfind(')')
            .map(|i| stat[i + 1..].split_whitespace().collect())
            .unwrap_or_default();
        let parent = fields.get(1).and_then(|p| p.parse::<u32>().ok());
        let alive = fields.first() != Some(&"Z");
        if parent == Some(me) && alive && String::from_utf8_lossy(&cmdline).contains("__zygote") {
            found.push(pid);
        }
    }
    found
}

/// The zygote must be there where CI runs; elsewhere its absence skips, loudly.
fn zygote_or_skip(tool: &CodeExecutionTool, test: &str) -> bool {
    match tool.zygote_status() {
        Ok(_) => true,
        Err(why) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED {test}: no zygote on this host ({why})");
            false
        }
        Err(why) => panic!("{test}: no zygote under CI=true: {why}"),
    }
}

/// What a caller sees of a run, minus the clocks and object addresses (`0x7f…`).
fn seen(r: &ExecutionResult) -> String {
    let text = format!(
        "success={} exit={:?} signal={:?} error_type={:?} error={:?}\n--stdout--\n{}\n--stderr--\n{}",
        r.success, r.exit_code, r.signal, r.error_type, r.error, r.output, r.stderr
    );
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at + 2]);
        rest = rest[at + 2..].trim_start_matches(|c: char| c.is_ascii_hexdigit());
        out.push('…');
    }
    out.push_str(rest);
    out
}

/// Programs whose every visible effect must be the same forked from the zygote as cold.
const SAME_AS_COLD: &[&str] = &[
    "import sys, os\nprint(sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix)\nprint(sys.path)\nprint(sys.argv, sys.orig_argv[1:3], sys.orig_argv[-3:])\nprint(sorted(os.environ.items()))",
    // Every flag but no_site (see below).
    "import sys\nprint({k: getattr(sys.flags, k) for k in dir(sys.flags) if not k.startswith('_') and k not in ('no_site', 'count', 'index')})",
    "print(exit, quit, type(copyright).__name__, type(help).__name__, __name__, __file__)",
    "import sys, locale\nprint(sys.stdout.encoding, sys.stdout.line_buffering, sys.stdout.write_through, sys.stdin.encoding, sys.stderr.errors, sys.getfilesystemencoding(), locale.getpreferredencoding())",
    "import signal\nprint([signal.getsignal(s) for s in (signal.SIGINT, signal.SIGPIPE, signal.SIGSEGV, signal.SIGBUS, signal.SIGTERM, signal.SIGXFSZ, signal.SIGCHLD)])\nprint(signal.pthread_sigmask(signal.SIG_BLOCK, []))",
    "import os\nprint(sorted(os.listdir('/proc/self/fd')), os.getuid(), os.getgid(), os.getpid(), os.getppid(), os.getcwd(), os.getpgrp() == os.getpid(), os.getsid(0) == os.getpid())",
    "import resource\nprint([resource.getrlimit(r) for r in (resource.RLIMIT_CORE, resource.RLIMIT_NOFILE, resource.RLIMIT_MEMLOCK, resource.RLIMIT_FSIZE, resource.RLIMIT_STACK)])",
    "import os\nfor line in open('/proc/self/status'):\n    if line.split(':')[0] in ('CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs', 'Seccomp', 'Seccomp_filters'): print(line.strip())",
    "print('partial', end='')\nraise SystemExit(3)",
    "import sys\nsys.exit('bye')",
    "def f():\n    1/0\nf()",
    "import os\nos.kill(os.getpid(), 9)",
    "import ctypes\nctypes.string_at(0)",
    "def r(): r()\nr()",
    "import threading, time\ndef late():\n    time.sleep(0.05)\n    print('thread done')\nthreading.Thread(target=late).start()\nprint('main done')",
    "import atexit\natexit.register(print, 'at exit')\nclass A:\n    def __del__(self):\n        print('finalized')\na = A()\nprint('body')",
    "import sys\nsys.stdout.write('x' * 200000)\nsys.stderr.write('e' * 1000)",
    "import json, sqlite3, decimal, subprocess\nprint(json.dumps({'a': 1}), sqlite3.sqlite_version_info >= (3,), decimal.Decimal('1.1') + 1)\nprint(subprocess.run(['/bin/echo', 'child'], capture_output=True, text=True).stdout)",
    "import multiprocessing as mp\nif __name__ == '__main__':\n    with mp.get_context('fork').Pool(2) as p:\n        print(p.map(abs, [-1, -2, 3]))",
    "x = input()\nprint(x[::-1])",
    "import sys\nsys.exit(2 ** 70)",
    "import sys\nsys.exit(-1)",
    "import sys\nsys.exit(True)",
    "raise SystemExit(None)",
    "import atexit\ndef boom():\n    raise ValueError('in atexit')\natexit.register(boom)\natexit.register(print, 'still runs')",
    "import sys, io\nsys.stdout = io.TextIOWrapper(open(1, 'wb', closefd=False), write_through=False)\nprint('buffered to the end')",
    "import threading, time\nt = threading.Thread(target=lambda: (time.sleep(0.05), print('daemon')), daemon=True)\nt.start()\nprint('main')",
    "class Late:\n    def __del__(self):\n        print('cycle collected')\na = Late(); a.me = a\ndel a\nprint('end')",
    // The C library's idea of the main thread's id (issue 18, item 6): stale in a raw fork.
    "import threading, time\nclock = time.pthread_getcpuclockid(threading.get_ident())\nprint(time.clock_gettime(clock) >= 0)",
    // What C code buffered in the C library's stdio reaches the output at exit (it was lost
    // through the zygote while forked runs ended with _exit).
    "import ctypes\nctypes.CDLL(None).printf(b'from C %d\\n', 42)\nprint('from Python')",
    "import signal, threading, time\nsignal.signal(signal.SIGUSR1, lambda *a: print('got it'))\nt = threading.Thread(target=signal.pthread_kill, args=(threading.main_thread().ident, signal.SIGUSR1))\nt.start(); t.join(); time.sleep(0.05)\nprint('end')",
];

native_test!(runs_forked_from_the_zygote_behave_as_cold_runs, {
    let _serial = serialized();
    let warm = tool(ZygoteMode::Auto);
    if !zygote_or_skip(&warm, "runs_forked_from_the_zygote_behave_as_cold_runs") {
        return;
    }
    let cold = tool(ZygoteMode::Off);
    assert_eq!(cold.zygote_status(), Err("off".into()));
    // sys.flags.no_site is the one visible difference, and only when site runs in each run
    // (inside the sandbox) rather than in the zygote: the interpreter then started without it.
    let site_in_zygote = warm.zygote_status().unwrap().site_in_zygote;
    let no_site = "import sys\nprint(sys.flags.no_site)";
    let expected = if site_in_zygote { "0\n" } else { "1\n" };
    assert_eq!(warm.execute(no_site).unwrap().output, expected);
    assert_eq!(cold.execute(no_site).unwrap().output, "0\n");
    for code in SAME_AS_COLD {
        let stdin = b"hello".as_slice();
        let a = warm.run(code.as_bytes(), Some(stdin), None).unwrap();
        let b = cold.run(code.as_bytes(), Some(stdin), None).unwrap();
        assert_eq!(seen(&a), seen(&b), "zygote vs cold differ for:\n{code}");
    }
    assert_host_clean("never-a-tag-of-this-test");
});

native_test!(
    the_library_forks_runs_from_a_zygote_and_reaps_its_helpers,
    {
        let _serial = serialized();
        let tool = tool(ZygoteMode::Auto);
        if !zygote_or_skip(
            &tool,
            "the_library_forks_runs_from_a_zygote_and_reaps_its_helpers",
        ) {
            return;
        }
        let zygotes = our_zygotes();
        assert_eq!(zygotes.len(), 1, "one zygote per tool: {zygotes:?}");
        // Helpers are forked from it: it must stay a single-threaded process.
        let status = std::fs::read_to_string(format!("/proc/{}/status", zygotes[0])).unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().eq(["Threads:", "1"])),
            "{status}"
        );
        for i in 0..10 {
            let r = tool.execute(&format!("print({i})")).unwrap();
            assert_eq!(r.output, format!("{i}\n"), "{r:?}");
        }
        // Its helpers are its children: it reaps them (no zombie piles up under it).
        let zygote = zygotes[0];
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{zygote}/task/{zygote}/children"))
                    .unwrap_or_default();
            if children.trim().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the zygote keeps children: {children}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(tool);
        let deadline = Instant::now() + Duration::from_secs(3);
        while !our_zygotes().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the zygote outlived its tool: {:?}",
                our_zygotes()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_host_clean("never-a-tag-of-this-test");
    }
);

native_test!(a_dead_zygote_is_replaced_without_losing_a_run, {
    let _serial = serialized();
    let tool = tool(ZygoteMode::Auto);
    if !zygote_or_skip(&tool, "a_dead_zygote_is_replaced_without_losing_a_run") {
        return;
    }
    let before = our_zygotes();
    assert_eq!(before.len(), 1, "{before:?}");
    let killed = std::process::Command::new("kill")
        .args(["-9", &before[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(50));
    let r = tool.execute("print('still here')").unwrap();
    assert!(r.success, "{r:?}");
    assert_eq!(r.output, "still here\n");
    assert!(tool.zygote_status().is_ok(), "{:?}", tool.zygote_status());
    let after = our_zygotes();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "a new zygote");
    assert_host_clean("never-a-tag-of-this-test");
});

#[test]
fn required_mode_fails_to_build_where_no_zygote_can_start() {
    let _serial = serialized();
    // A venv-less interpreter copied where no libpython sits beside it, and not under /usr.
    let dir = tempfile::tempdir().unwrap();
    let python = code_execution_tool::Interpreter::discover().expect("python3");
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let copy = bin_dir.join(format!("python{}", python.version()));
    std::fs::copy(python.path(), &copy).unwrap();
    let built = CodeExecutionTool::builder()
        .supervisor(bin())
        .python(&copy)
        .zygote(ZygoteMode::Required);
    match built.build() {
        Err(e) => assert!(e.to_string().contains("no zygote"), "{e}"),
        Ok(tool) => panic!(
            "a zygote started without a libpython: {:?}",
            tool.zygote_status()
        ),
    }
    // Auto builds anyway and says why runs start cold.
    let tool = CodeExecutionTool::builder()
        .supervisor(bin())
        .python(&copy)
        .zygote(ZygoteMode::Auto)
        .build();
    if let Ok(tool) = tool {
        let why = tool.zygote_status().unwrap_err();
        assert!(why.contains("libpython"), "{why}");
    }
}

native_test!(
    site_of_an_untrusted_environment_runs_only_inside_the_sandbox,
    {
        let _serial = serialized();
        // A virtual environment anyone may write to, with a .pth file that leaves a mark where it
        // runs: it must run in each sandbox (private /tmp), never in the zygote on the host.
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv");
        let python = code_execution_tool::Interpreter::discover().expect("python3");
        let made = std::process::Command::new(python.path())
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success());
        let version = python.version();
        let site = venv.join(format!(
            "lib/python{}.{}/site-packages",
            version.major, version.minor
        ));
        let mark = format!("/tmp/code-exec-pth-mark-{}", std::process::id());
        std::fs::write(
            site.join("mark.pth"),
            format!("import os; open({mark:?}, 'w').close()\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o777)).unwrap();
        let tool_of_the_venv = |mode| {
            CodeExecutionTool::builder()
                .supervisor(bin())
                .python(venv.join("bin/python"))
                .zygote(mode)
                .build()
                .unwrap()
        };
        let tool = tool_of_the_venv(ZygoteMode::Auto);
        if !zygote_or_skip(
            &tool,
            "site_of_an_untrusted_environment_runs_only_inside_the_sandbox",
        ) {
            return;
        }
        assert!(!tool.zygote_status().unwrap().site_in_zygote);
        let r = tool
            .execute(&format!(
                "import os, sys\nprint(os.path.exists({mark:?}), sys.prefix == {:?})",
                venv.to_string_lossy()
            ))
            .unwrap();
        assert_eq!(r.output, "True True\n", "{r:?}");
        assert!(
            !Path::new(&mark).exists(),
            "the environment's .pth ran on the host"
        );
        // Nor on a cold run, whose runner the interpreter compiles ahead on the host (issue 17):
        // that compilation runs without `site`.
        let r = tool_of_the_venv(ZygoteMode::Off)
            .execute(&format!("import os\nprint(os.path.exists({mark:?}))"))
            .unwrap();
        assert_eq!(r.output, "True\n", "{r:?}");
        assert!(
            !Path::new(&mark).exists(),
            "the environment's .pth ran on the host for a cold run"
        );
        // The system interpreter's own directories belong to root: its site runs in the zygote.
        assert!(tool_site_trusted_for_system_python());
    }
);

fn tool_site_trusted_for_system_python() -> bool {
    tool(ZygoteMode::Auto)
        .zygote_status()
        .map(|z| z.site_in_zygote)
        .unwrap_or(false)
}

native_test!(files_left_open_are_flushed_when_a_forked_run_ends, {
    let _serial = serialized();
    let tool = tool(ZygoteMode::Auto);
    if !zygote_or_skip(&tool, "files_left_open_are_flushed_when_a_forked_run_ends") {
        return;
    }
    let sandbox = tool.create_sandbox().unwrap();
    let r = sandbox
        .execute_in_container("f = open('/work/notes', 'w')\nf.write('kept')")
        .unwrap();
    assert!(r.success, "{r:?}");
    let r = sandbox
        .execute_in_container("print(open('/work/notes').read())")
        .unwrap();
    assert_eq!(r.output, "kept\n", "{r:?}");
    sandbox.cleanup();
});

native_test!(nothing_of_the_sandbox_runs_when_the_result_arrives, {
    let _serial = serialized();
    // The init kills and reaps every process the code left before it reports, so the result
    // must find none of them alive — checked at once, without the usual grace period: a
    // daemon in its own session with every stream closed (its output's end says nothing of
    // it), and a stopped one. Forked from the zygote and cold alike.
    for mode in [ZygoteMode::Auto, ZygoteMode::Off] {
        let tool = tool(mode);
        let tag = marker("result_arrives");
        let code = format!(
            "import os, signal, subprocess\n\
             quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
             subprocess.Popen(['{tag}', '300'], executable='/bin/sleep', start_new_session=True, **quiet)\n\
             p = subprocess.Popen(['{tag}', '301'], executable='/bin/sleep', **quiet)\n\
             os.kill(p.pid, signal.SIGSTOP)\n\
             print(len([d for d in os.listdir('/proc') if d.isdigit()]))"
        );
        let r = tool.execute(&code).unwrap();
        let alive = processes_with(&tag);
        assert!(r.success, "{mode:?}: {r:?}");
        assert!(
            r.output.trim().parse::<u32>().unwrap() >= 3,
            "{mode:?}: the sleepers were not running: {r:?}"
        );
        assert!(alive.is_empty(), "{mode:?}: alive at the result: {alive:?}");
    }
});

// A run forked from the zygote sees the zygote's /proc/self/exe. It must not be the host's
// code-exec file: in a per-user install (the tool runs as its binary's owner, as CI's uid 65534
// pass does with its own copy) the code could chmod it, change its times and its extended
// attributes through that link. Before, it was the host's file, and the chmod went through.
#[test]
fn the_code_cannot_reach_the_hosts_binary_through_proc_self_exe() {
    let _one = serialized();
    // The tool's own copy of its binary, owned by whoever runs the test (a per-user install).
    let install = tempfile::tempdir().unwrap();
    let binary = install.path().join("code-exec");
    std::fs::copy(bin(), &binary).unwrap();
    let tool = CodeExecutionTool::builder()
        .supervisor(&binary)
        .zygote(ZygoteMode::Auto)
        .build()
        .expect("native tool");
    if !zygote_or_skip(
        &tool,
        "the_code_cannot_reach_the_hosts_binary_through_proc_self_exe",
    ) {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let before = std::fs::metadata(&binary).unwrap();
    let code = r#"import os
st = os.stat('/proc/self/exe')
print(st.st_dev, st.st_ino)
for name, attempt in [("chmod", lambda: os.chmod('/proc/self/exe', 0o777)),
                      ("utime", lambda: os.utime('/proc/self/exe', (0, 0))),
                      ("setxattr", lambda: os.setxattr('/proc/self/exe', 'user.pwned', b'1'))]:
    try:
        attempt()
        print(name, "done")
    except OSError as e:
        print(name, "refused")
"#;
    let r = tool.execute(code).unwrap();
    assert!(r.success, "{r:?}");
    let mut lines = r.output.lines();
    let identity = lines.next().unwrap().to_owned();
    assert_ne!(
        identity,
        format!("{} {}", before.dev(), before.ino()),
        "/proc/self/exe is the host's binary: {}",
        r.output
    );
    let after = std::fs::metadata(&binary).unwrap();
    assert_eq!(after.mode(), before.mode(), "{}", r.output);
    assert_eq!(after.mtime(), before.mtime(), "{}", r.output);
    assert!(xattr_absent(&binary), "{}", r.output);
}

fn xattr_absent(path: &std::path::Path) -> bool {
    let out = std::process::Command::new("getfattr")
        .args(["-n", "user.pwned"])
        .arg(path)
        .output();
    match out {
        Ok(out) => !out.status.success(),
        // No getfattr: look at the raw list through Python instead.
        Err(_) => std::process::Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import os, sys; sys.exit('user.pwned' in os.listxattr(sys.argv[1]))",
            ])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
    }
}
