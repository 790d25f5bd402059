//! The attacks every sandbox must stand, written once and instantiated for each backend
//! (`attack_suite!` in `tests/native.rs` and `tests/docker.rs`). Each attack runs through
//! `code-exec run --json` on its [`Target`] and asserts what holds everywhere, plus what only
//! one backend promises (the native init's PID 2, docker's own seccomp profile), by kind.

use serde_json::Value;

use super::*;

/// Which sandbox an attack runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Native,
    Docker,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Native => "native",
            Target::Docker => "docker",
        }
    }

    /// The `run` arguments that choose this sandbox (for native, the pooled and zygote paths
    /// when CI asks for them), then `extra`.
    pub fn args(self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = match self {
            Target::Native => native_args(extra),
            Target::Docker => vec![
                "--sandbox".into(),
                "docker".into(),
                "--image".into(),
                docker_image(),
            ],
        };
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }

    /// `code-exec run --json <this sandbox> EXTRA -c CODE`.
    pub fn run(self, code: &str, extra: &[&str]) -> (Value, i32) {
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_code(code, &args)
    }

    /// The same with `env` added to the caller's environment (the code must never see it).
    pub fn run_with_env(self, code: &str, env: &[(&str, &str)]) -> Run {
        let mut args = vec!["run".to_string(), "--json".into()];
        args.extend(self.args(&[]));
        args.extend(["-c".to_string(), code.to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        code_exec_with(&args, None, env)
    }

    /// The host afterwards: no process carrying `tag`, and none of the backend's leftovers.
    pub fn assert_clean(self, tag: &str) {
        match self {
            Target::Native => assert_host_clean(tag),
            Target::Docker => assert_docker_clean(tag),
        }
    }

    /// Whether this sandbox counts memory with a cgroup here.
    fn has_cgroup(self) -> bool {
        self == Target::Docker || cgroups_available()
    }
}

/// Instantiates every attack below for one target, each wrapped in the backend's test macro
/// (which skips loudly where the backend cannot run, and fails then under `CI=true`). The
/// list of attacks is here, once.
macro_rules! attack_suite {
    ($test:ident, $target:expr) => {
        attack_suite!(
            @each $test,
            $target,
            [
                success_and_identity,
                syntax_and_runtime_errors,
                complex_code_and_stdin,
                memory_bomb_is_a_memory_limit,
                many_processes_summing_over_the_memory_limit,
                fork_bomb_is_contained,
                the_pids_limit_is_the_codes_own_count,
                files_written_to_the_work_directory_import,
                the_streams_encode_as_natively,
                name_services_answer_without_a_network,
                a_full_disk_is_enospc_not_a_kill,
                scratch_space_follows_disk_mb,
                host_processes_are_invisible_and_unkillable,
                host_secrets_stay_out,
                posture_inside,
                setuid_binaries_and_device_nodes_grant_nothing,
                host_loopback_services_are_unreachable,
                netlink_reads_the_sandboxes_own_interfaces_and_changes_nothing,
                monitoring_reads_the_sandbox_from_outside,
                output_cap_stops_a_flood,
                forged_records_cannot_say_nothing_ran,
                rewritten_writes_cannot_turn_an_exception_into_a_limit,
                exception_classes_named_like_verdicts_are_exceptions,
            ]
        );
    };
    (@each $test:ident, $target:expr, [$($attack:ident),* $(,)?]) => {
        $( $test!($attack, { common::attacks::$attack($target); }); )*
    };
}

fn output(r: &Value) -> &str {
    r["output"].as_str().unwrap_or_default()
}

pub fn success_and_identity(t: Target) {
    let (r, status) = t.run(
        "import os, socket\nprint(os.getuid(), os.getgid(), socket.gethostname(), os.getcwd())\nprint(os.getpid())",
        &[],
    );
    assert_eq!(status, 0, "{r}");
    assert_eq!(r["backend"], t.name());
    let mut lines = output(&r).lines();
    assert_eq!(lines.next(), Some("1000 1000 sandbox /work"), "{r}");
    if t == Target::Native {
        assert_eq!(lines.next(), Some("2"), "PID 2 under a reaper: {r}");
    }
    let memory = if t.has_cgroup() {
        "cgroup"
    } else {
        "per_process"
    };
    assert_eq!(r["limits_enforced"]["memory_mb"], memory, "{r}");
    assert!(r["cpu_time_ms"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["peak_memory_mb"].as_f64().unwrap() > 1.0, "{r}");
}

pub fn syntax_and_runtime_errors(t: Target) {
    let (r, status) = t.run("def f(:\n  pass", &[]);
    assert_eq!((status, r["error_type"].clone()), (1, "SyntaxError".into()));
    // Refused before it ran, a result still says how its limits are held (issue 18, item 9).
    assert!(r["limits_enforced"].is_object(), "{r}");
    assert_eq!(r["line"], 1);
    let (r, status) = t.run("print('before')\n{}['missing']", &[]);
    assert_eq!(status, 1);
    assert_eq!(r["error_type"], "KeyError");
    assert_eq!(r["error"], "KeyError: 'missing'");
    assert_eq!(output(&r), "before\n");
    let stderr = r["stderr"].as_str().unwrap();
    assert!(stderr.contains("main.py"), "{r}");
    if t == Target::Native {
        assert!(stderr.contains("/code/main.py"), "{r}");
    }
    let (r, _) = t.run("import sys; sys.exit(4)", &[]);
    assert_eq!(
        (r["error_type"].clone(), r["exit_code"].clone()),
        ("Exit".into(), 4.into())
    );
    let (r, _) = t.run("import ctypes; ctypes.string_at(0)", &[]);
    assert_eq!(
        (r["error_type"].clone(), r["signal"].clone()),
        ("Crash".into(), "SIGSEGV".into()),
        "{r}"
    );
}

pub fn complex_code_and_stdin(t: Target) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "5\n").unwrap();
    let (r, status) = t.run(COMPLEX_CODE, &["--stdin", input.to_str().unwrap()]);
    assert_eq!(status, 0, "{r}");
    assert_complex_output(&r);
}

pub fn memory_bomb_is_a_memory_limit(t: Target) {
    // With a cgroup the OOM killer stops it, and the kernel's OOM events say so. Without
    // one the per-process fallback (RLIMIT_DATA) stops it with a MemoryError, which the code
    // could as well have raised itself: the host has no evidence, and says it is the exception.
    let (r, status) = t.run(MEMORY_BOMB, &["--memory", "64", "--timeout", "20"]);
    assert_eq!(status, 1);
    if r["limits_enforced"]["memory_mb"] == "cgroup" {
        assert_eq!(r["error_type"], "MemoryLimit", "{r}");
        assert_eq!(r["verdict"], "memory_limit", "{r}");
    } else {
        assert_eq!(r["error_type"], "MemoryError", "{r}");
        assert_eq!(r["verdict"], "exception", "{r}");
    }
    // A cgroup counts exactly what the limit bounds (docker's figure comes from the engine,
    // a little late). The per-process fallback bounds private data (RLIMIT_DATA) while its
    // peak is the resident set, which also counts the interpreter's shared, file-backed pages
    // (more of them in a run forked from the zygote).
    let slack = match (t, r["limits_enforced"]["memory_mb"].as_str()) {
        (Target::Docker, _) => 2.0,
        (Target::Native, Some("cgroup")) => 1.0,
        (Target::Native, _) => 16.0,
    };
    assert!(r["peak_memory_mb"].as_f64().unwrap() <= 64.0 + slack, "{r}");
    t.assert_clean("memory_bomb");
}

pub fn many_processes_summing_over_the_memory_limit(t: Target) {
    if t == Target::Native && !cgroups_or_skip("many_processes_summing_over_the_memory_limit") {
        return;
    }
    // Each child stays well under the limit; together they are far over it.
    let (r, _) = t.run(
        MANY_PROCESSES_OVER_MEMORY,
        &["--memory", "100", "--timeout", "20"],
    );
    assert_eq!(r["error_type"], "MemoryLimit", "{r}");
    // The parent itself survived; the verdict comes from the cgroup, not from the main process.
    assert_eq!(output(&r), "children killed by SIGKILL: True\n", "{r}");
}

/// `--pids 10` gives the code 10 tasks, its main thread included, on every backend (issue 18,
/// item 9: docker's own processes took 4 of them, the native init 1).
pub fn the_pids_limit_is_the_codes_own_count(t: Target) {
    if !t.has_cgroup() {
        skip_loudly(
            "the_pids_limit_is_the_codes_own_count",
            "without a cgroup the limit is RLIMIT_NPROC, counted over the whole uid",
        );
        return;
    }
    let code = "import threading\nn = 0\nev = threading.Event()\ntry:\n    while True:\n        threading.Thread(target=ev.wait).start(); n += 1\nexcept RuntimeError:\n    pass\nev.set()\nprint('tasks', 1 + n)";
    let (r, status) = t.run(code, &["--pids", "10"]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(output(&r), "tasks 10\n", "{r}");
}

/// A module the code writes to its work directory imports, as with `python -c` (issue 18,
/// item 5); a shadowing name from the work directory comes first, as there.
pub fn files_written_to_the_work_directory_import(t: Target) {
    let code = "open('helper_mod.py', 'w').write('x = 41')\nimport helper_mod, sys\nprint(helper_mod.x + 1, helper_mod.__file__, sys.path[0])";
    let (r, status) = t.run(code, &[]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(output(&r), "42 /work/helper_mod.py /work\n", "{r}");
}

/// Standard streams encode as CPython's own do under C.UTF-8 (issue 18, item 9): a lone
/// surrogate escape prints as its byte on every backend (docker's wrapper raised).
pub fn the_streams_encode_as_natively(t: Target) {
    let code = "import sys\nprint('\\udc80')\nprint(sys.stdout.errors, sys.stderr.errors, sys.stdout.encoding)";
    let (r, status) = t.run(code, &[]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(
        output(&r),
        "\u{fffd}\nsurrogateescape backslashreplace utf-8\n",
        "{r}"
    );
}

/// What a host without network still answers (issue 18, item 2): service and protocol names,
/// `getaddrinfo` with a service name, the sandbox's own host name.
pub fn name_services_answer_without_a_network(t: Target) {
    let code = "import socket\nprint(socket.getservbyname('http'), socket.getservbyname('https', 'tcp'), socket.getservbyport(22))\nprint(socket.getprotobyname('tcp'), socket.getprotobyname('udp'))\nprint(sorted({ai[4][1] for ai in socket.getaddrinfo('localhost', 'https', type=socket.SOCK_STREAM)}))\nprint(socket.gethostbyname(socket.gethostname()))";
    let (r, status) = t.run(code, &[]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(output(&r), "80 443 ssh\n6 17\n[443]\n127.0.0.1\n", "{r}");
}

/// Filling a scratch filesystem is an `ENOSPC` the code can catch (issue 18, item 8: `/work`
/// and `/tmp` were sized to the memory limit, so filling one was a `MemoryLimit` kill, or on
/// docker a spin in reclaim until the timeout). Default scratch space: half the memory limit.
pub fn a_full_disk_is_enospc_not_a_kill(t: Target) {
    for dir in ["/work", "/tmp", "/dev/shm"] {
        let code = format!(
            "import errno\nn = 0\ntry:\n    while True:\n        with open('{dir}/fill%d' % n, 'wb') as f:\n            f.write(b'x' * (1 << 20))\n        n += 1\nexcept OSError as e:\n    print(errno.errorcode[e.errno], 56 <= n <= 64, n)"
        );
        let (r, status) = t.run(&code, &["--memory", "128", "--timeout", "30"]);
        assert_eq!(status, 0, "{dir}: {r}");
        assert_eq!(r["verdict"], "ok", "{dir}: {r}");
        let out = output(&r);
        assert!(out.starts_with("ENOSPC True "), "{dir}: {r}");
    }
    t.assert_clean("never-a-tag-of-this-test");
}

/// `disk_mb` bounds each file and each filesystem, below or above the memory limit: a sparse
/// file or a shared-memory segment larger than the memory limit is allowed when the scratch
/// space is (it takes no memory until written), and one beyond it is `EFBIG`.
pub fn scratch_space_follows_disk_mb(t: Target) {
    let code = "import errno, os\nfrom multiprocessing import shared_memory\nwith open('/work/sparse', 'wb') as f:\n    f.seek(300 << 20); f.write(b'x')\nprint(os.path.getsize('/work/sparse') > 300 << 20)\nshm = shared_memory.SharedMemory(create=True, size=200 << 20)\nshm.buf[0] = 1; print(shm.size >= 200 << 20); shm.close(); shm.unlink()\ntry:\n    with open('/tmp/big', 'wb') as f:\n        f.seek(600 << 20); f.write(b'x')\n    print('WROTE past the limit')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])";
    let (r, status) = t.run(code, &["--memory", "64", "--disk", "512"]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(output(&r), "True\nTrue\nEFBIG\n", "{r}");
}

pub fn fork_bomb_is_contained(t: Target) {
    let tag = marker("fork_bomb_is_contained");
    let code = fork_bomb(&tag);
    let (r, status) = t.run(&code, &["--pids", "32", "--timeout", "3"]);
    assert_eq!(status, 1, "{r}");
    assert!(
        r["error_type"] == "Timeout" || r["error_type"] == "MemoryLimit",
        "{r}"
    );
    t.assert_clean(&tag);
}

pub fn host_processes_are_invisible_and_unkillable(t: Target) {
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let host_pid = sleeper.id();
    // Everything the code may signal, it may kill: in the native sandbox that is only its
    // own processes; docker's wrapper runs as the sandbox user too, so it is spared there.
    let kill_all = match t {
        Target::Native => "try:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n",
        Target::Docker => "",
    };
    let code = format!(
        "import os, signal\npids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\nprint(pids[:3], len(pids) < 10)\ntry:\n    os.kill({host_pid}, signal.SIGKILL); print('killed')\nexcept ProcessLookupError:\n    print('no such process')\n{kill_all}try:\n    open('/proc/1/environ').read(); print('READ init environ')\nexcept OSError:\n    print('init hidden')\nprint('alive')"
    );
    let (r, status) = t.run(&code, &[]);
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "a host process was killed from the sandbox"
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(status, 0, "{r}");
    let mut lines = output(&r).lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.ends_with(" True"), "{r}");
    if t == Target::Native {
        assert_eq!(first, "[1, 2] True", "{r}");
    }
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["no such process", "init hidden", "alive"],
        "{r}"
    );
}

pub fn host_secrets_stay_out(t: Target) {
    let secret = marker("SECRET");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), &secret).unwrap();
    let code = format!(
        r#"
import os
hits = []
if '{secret}' in repr(dict(os.environ)): hits.append('environ')
for pid in os.listdir('/proc'):
    for f in ('environ', 'cmdline'):
        try:
            if b'{secret}' in open('/proc/%s/%s' % (pid, f), 'rb').read(): hits.append(pid + f)
        except OSError: pass
for root, dirs, files in os.walk('/'):
    # /code (and docker's wrapper directory) hold this very program, which names the secret.
    if root.startswith(('/proc', '/sys', '/usr', '/dev', '/code', '/tmp/.code-exec')):
        dirs[:] = []; continue
    for name in files:
        try:
            if b'{secret}' in open(os.path.join(root, name), 'rb').read(1 << 20): hits.append(os.path.join(root, name))
        except OSError: pass
print('hits', hits)
print(os.path.exists({dir:?}))
try:
    open('/etc/shadow').read(); print('READ shadow')
except OSError:
    print('shadow refused')
"#,
        dir = dir.path().to_str().unwrap()
    );
    let run = t.run_with_env(&code, &[("CODE_EXEC_TEST_SECRET", &secret)]);
    let r = run.json();
    assert_eq!(run.status, 0, "{r}");
    assert_eq!(output(&r), "hits []\nFalse\nshadow refused\n", "{r}");
    assert!(!run.stderr.contains(&secret));
    if t == Target::Native {
        // No shadow file at all: the root holds only what the interpreter needs.
        let (r, _) = t.run("import os; print(os.path.exists('/etc/shadow'))", &[]);
        assert_eq!(output(&r), "False\n", "{r}");
    }
}

pub fn posture_inside(t: Target) {
    let code = r#"
fields = {}
for line in open('/proc/self/status'):
    k, _, v = line.partition(':'); fields[k] = v.strip()
print(fields['CapEff'], fields['CapPrm'], fields['CapBnd'], fields['CapAmb'], fields['NoNewPrivs'], fields['Seccomp'])
print(fields['Uid'].split()[0], open('/proc/self/uid_map').read().split()[:1])
import resource
print(resource.getrlimit(resource.RLIMIT_CORE))
"#;
    let (r, status) = t.run(code, &[]);
    assert_eq!(status, 0, "{r}");
    let mut lines = output(&r).lines();
    // Docker: the container's bounding set keeps CAP_SETUID and CAP_SETGID, which the root
    // wrapper needs to start the code as uid 1000; the code holds neither (nothing effective,
    // permitted or ambient) and, under no_new_privs, no exec can give them back.
    let bounding = match t {
        Target::Native => "0000000000000000",
        Target::Docker => "00000000000000c0",
    };
    assert_eq!(
        lines.next(),
        Some(format!("0000000000000000 0000000000000000 {bounding} 0000000000000000 1 2").as_str()),
        "{r}"
    );
    let identity = lines.next().unwrap_or_default();
    assert!(identity.starts_with("1000 "), "{r}");
    if t == Target::Native {
        // Inside its own user namespace, where 1000 is the only id.
        assert_eq!(identity, "1000 ['1000']", "{r}");
    }
    assert_eq!(lines.next(), Some("(0, 0)"));
}

pub fn setuid_binaries_and_device_nodes_grant_nothing(t: Target) {
    let code = r#"
import os, subprocess
# A setuid-root binary runs, but as the sandbox user: nosuid mounts and no_new_privs.
r = subprocess.run(['/usr/bin/su', 'root', '-c', 'id -u'], capture_output=True, text=True, input='')
print('su refused', r.returncode != 0 and r.stdout.strip() != '0')
try:
    os.mknod('/work/mem', 0o600 | 0o020000, os.makedev(1, 1)); print('MKNOD /dev/mem')
except OSError as e:
    print('mknod', e.errno)
try:
    os.setuid(0); print('SETUID')
except OSError as e:
    print('setuid', e.errno)
"#;
    let (r, status) = t.run(code, &[]);
    assert_eq!(status, 0, "{r}");
    // EPERM; in the native sandbox EINVAL too: uid 0 does not even exist in its namespace.
    let setuid = match t {
        Target::Native => ["setuid 1", "setuid 22"].as_slice(),
        Target::Docker => ["setuid 1"].as_slice(),
    };
    let lines: Vec<&str> = output(&r).lines().collect();
    assert_eq!(lines[..2], ["su refused True", "mknod 1"], "{r}");
    assert!(lines.len() == 3 && setuid.contains(&lines[2]), "{r}");
}

/// `NETLINK_ROUTE` is open for reading the sandbox's own interfaces (issue 18, item 1):
/// `if_nameindex` works. Changing an address or a link is refused (no CAP_NET_ADMIN), and
/// every other netlink protocol — XFRM among them, the 2026 page-cache exploits' way in —
/// stays refused.
pub fn netlink_reads_the_sandboxes_own_interfaces_and_changes_nothing(t: Target) {
    let code = r#"
import socket, struct, errno
print(socket.if_nameindex())
def request(kind, flags, body):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.settimeout(5)
    s.bind((0, 0))
    s.send(struct.pack('=IHHII', 16 + len(body), kind, flags, 1, 0) + body)
    replies = []
    while True:
        data = s.recv(65536)
        at = 0
        while at < len(data):
            length, rtype = struct.unpack_from('=IH', data, at)
            if rtype == 2:  # NLMSG_ERROR: 0 is the ACK
                return replies, -struct.unpack_from('=i', data, at + 16)[0]
            if rtype == 3:  # NLMSG_DONE
                return replies, 0
            replies.append(data[at:at + length])
            at += (length + 3) & ~3
lo = socket.if_nametoindex('lo')
REQUEST, ACK, DUMP, CREATE, EXCL = 1, 4, 0x300, 0x400, 0x200
addr = socket.inet_aton('10.9.8.7')
attrs = struct.pack('=HH', 8, 2) + addr + struct.pack('=HH', 8, 1) + addr  # IFA_LOCAL, IFA_ADDRESS
_, err = request(20, REQUEST | ACK | CREATE | EXCL, struct.pack('=BBBBI', 2, 24, 0, 0, lo) + attrs)
print('add address', errno.errorcode.get(err, err))
_, err = request(19, REQUEST | ACK, struct.pack('=BxHiII', 0, 0, lo, 0, 1))  # lo down
print('link down', errno.errorcode.get(err, err))
addresses, err = request(22, REQUEST | DUMP, struct.pack('=BBBBI', 0, 0, 0, 0, 0))
print('dump', err, len(addresses) > 0, any(addr in a for a in addresses))
print('lo up', socket.if_nameindex() == [(lo, 'lo')])
for name, protocol in [('xfrm', 6), ('netfilter', 12), ('uevent', 15), ('audit', 9),
                       ('sock_diag', 4), ('generic', 16)]:
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol).close()
        print(name, 'OPENED')
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
"#;
    let (r, status) = t.run(code, &[]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(
        output(&r),
        "[(1, 'lo')]\nadd address EPERM\nlink down EPERM\ndump 0 True False\nlo up True\n\
         xfrm EPERM\nnetfilter EPERM\nuevent EPERM\naudit EPERM\nsock_diag EPERM\ngeneric EPERM\n",
        "{r}"
    );
    t.assert_clean("never-a-tag-of-this-test");
}

pub fn host_loopback_services_are_unreachable(t: Target) {
    use std::net::{TcpListener, UdpSocket};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let code = format!(
        r#"
import socket
out = []
# Only loopback exists and nothing is routed: shown from the tables, without sending
# anything anywhere but the sandbox's own loopback.
out.append(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]))
out.append(len(open('/proc/net/route').read().splitlines()) - 1)
for host in ('127.0.0.1', 'localhost'):
    s = socket.socket(); s.settimeout(1)
    try:
        s.connect((host, {port})); out.append('CONNECTED ' + host)
    except OSError as e:
        out.append('blocked')
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try: u.sendto(b'leak', ('127.0.0.1', {udp_port}))
except OSError: pass
try:
    socket.getaddrinfo('example.com', 80); out.append('RESOLVED')
except OSError:
    out.append('no dns')
try:
    s6 = socket.socket(socket.AF_INET6); s6.settimeout(1); s6.connect(('::1', {port})); out.append('CONNECTED6')
except OSError:
    out.append('blocked6')
print(out)
"#
    );
    let (r, status) = t.run(&code, &["--timeout", "20"]);
    assert_eq!(status, 0, "{r}");
    assert_eq!(
        output(&r),
        "[['lo'], 0, 'blocked', 'blocked', 'no dns', 'blocked6']\n",
        "{r}"
    );
    assert!(
        listener.accept().is_err(),
        "the host listener saw a connection"
    );
    let mut buf = [0u8; 16];
    assert!(
        udp.recv(&mut buf).is_err(),
        "the host UDP socket received data"
    );
}

pub fn monitoring_reads_the_sandbox_from_outside(t: Target) {
    // A container's figures come from the engine's stats, slower than our own sampling.
    let (sleep_s, interval, samples) = match t {
        Target::Native => (0.6, "50", 5),
        Target::Docker => (1.5, "100", 3),
    };
    let (r, status) = t.run(
        &touch_40mb_and_sleep(sleep_s),
        &["--monitor", "--monitor-interval", interval],
    );
    assert_eq!(status, 0, "{r}");
    assert_monitoring_saw_40mb(&r, samples);
}

pub fn output_cap_stops_a_flood(t: Target) {
    let (r, _) = t.run(STDOUT_FLOOD, &["--max-output", "50000"]);
    assert_eq!(r["error_type"], "OutputLimit", "{r}");
    assert_eq!(output(&r).len(), 50_000);
    assert_eq!(r["truncated"], true);
    let (r, _) = t.run(
        "import sys\nsys.stderr.write('e' * 100000)",
        &["--max-output", "50000"],
    );
    assert_eq!(r["error_type"], "OutputLimit", "{r}");
    assert_eq!(r["stderr"].as_str().unwrap().len(), 50_000);
    t.assert_clean("flood");
}

/// Writes `payload` (a Python bytes expression) to every fd from 3 to 255 that is open, in
/// every record shape the runner has used, and flushes nothing else.
fn forge_on_every_fd(payload: &str) -> String {
    format!(
        "import os\nfor _fd in range(3, 256):\n    for _rec in {payload}:\n        try:\n            os.write(_fd, _rec)\n        except OSError:\n            pass\n"
    )
}

const FORGED_SYNTAX: &str = r#"[b"compile\0SyntaxError\x003\x001\0invalid syntax", b"C", b"C44\ncompile\0SyntaxError\x003\x001\0invalid syntax", b"S", b"R"]"#;

pub fn forged_records_cannot_say_nothing_ran(t: Target) {
    // A program that ran (it prints and writes a file) and writes records shaped like the
    // runner's compile failure on every fd it has: it must not be told "nothing ran".
    for (exit, verdict, code) in [("", "ok", 0), ("raise SystemExit(1)\n", "exit", 1)] {
        let code_text = format!(
            "{}open('/tmp/ran', 'w').write('yes')\nprint('ran', open('/tmp/ran').read())\n{exit}",
            forge_on_every_fd(FORGED_SYNTAX)
        );
        let (r, _) = t.run(&code_text, &[]);
        assert_eq!(r["verdict"], verdict, "{r}");
        assert_eq!(r["exit_code"], code, "{r}");
        assert_ne!(r["error_type"], "SyntaxError", "{r}");
        assert_eq!(r["line"], Value::Null, "{r}");
        assert_eq!(output(&r), "ran yes\n", "{r}");
    }
    // The real thing still is one, and says where.
    let (r, status) = t.run("x = (\n", &[]);
    assert_eq!(
        (status, &r["verdict"]),
        (1, &Value::from("syntax_error")),
        "{r}"
    );
}

pub fn rewritten_writes_cannot_turn_an_exception_into_a_limit(t: Target) {
    // The code replaces what the runner might call after it, forges exception records naming
    // MemoryError and the verdict names, then raises a ValueError: at worst a wrong exception.
    let code = format!(
        "{}_real = os.write\ndef _rewrite(fd, data):\n    return _real(fd, bytes(data).replace(b'ValueError', b'MemoryError'))\nos.write = _rewrite\nimport builtins, sys, traceback\nbuiltins.type = lambda *a: MemoryError\nraise ValueError('ordinary')\n",
        forge_on_every_fd(
            r#"[b"run\0MemoryError\x000\x000\0x", b"E", b"run\0MemoryLimit\x000\x000\0x", b"run\0Timeout\x000\x000\0y"]"#
        )
    );
    let (r, status) = t.run(&code, &["--memory", "64"]);
    assert_eq!(status, 1, "{r}");
    assert_eq!(r["verdict"], "exception", "{r}");
    assert_ne!(r["error_type"], "MemoryLimit", "{r}");
    assert_ne!(r["error_type"], "Timeout", "{r}");
    // A MemoryError raised by the code is the exception it is: only the kernel's evidence
    // makes a memory limit.
    let (r, _) = t.run("raise MemoryError('made up')", &["--memory", "64"]);
    assert_eq!(
        (&r["verdict"], &r["error_type"]),
        (&Value::from("exception"), &Value::from("MemoryError")),
        "{r}"
    );
}

pub fn exception_classes_named_like_verdicts_are_exceptions(t: Target) {
    let names = [
        "Timeout",
        "MemoryLimit",
        "SandboxError",
        "Cancelled",
        "OutputLimit",
        "Crash",
        "Exit",
        "SyntaxError",
        "\u{421}rash",
    ];
    let mut code = String::from("import sys\nname = sys.stdin.readline().strip()\n");
    code.push_str("if name == 'SyntaxError':\n    raise SyntaxError('raised at run time')\n");
    code.push_str("raise type(name, (Exception,), {})('posing as a verdict')\n");
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let input = dir.path().join("name");
        std::fs::write(&input, format!("{name}\n")).unwrap();
        let (r, status) = t.run(&code, &["--stdin", input.to_str().unwrap()]);
        // Exit status 3 is the tool's own failure: never the code's to produce.
        assert_eq!(status, 1, "{name}: {r}");
        assert_eq!(r["verdict"], "exception", "{name}: {r}");
        assert_eq!(r["error_type"], name, "{name}: {r}");
        assert_eq!(r["line"], Value::Null, "{name}: {r}");
    }
    // A nested class is named by its qualified name.
    let (r, _) = t.run(
        "class Outer:\n    class Inner(Exception): pass\nraise Outer.Inner('x')",
        &[],
    );
    assert_eq!(r["error_type"], "Outer.Inner", "{r}");
    // Status 3 from the code is an exit like any other.
    let (r, status) = t.run("raise SystemExit(3)", &[]);
    assert_eq!((status, &r["verdict"]), (1, &Value::from("exit")), "{r}");
}
