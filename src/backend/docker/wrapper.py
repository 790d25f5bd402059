# code-exec docker wrapper: started by an exec as the container's root (with CAP_SETUID and
# CAP_SETGID only), once per execution. argv[1] is the runner script, argv[2] the work
# directory (first on the code's sys.path, as natively). stdin carries
# "<nonce> <code length>\n", the code, then the code's own stdin until EOF.
# The wrapper forks the code's process first, before it reads anything: the nonce never
# enters that process's memory, not even as freed bytes. The child drops to the sandbox user
# (uid 1000, no capability; a process of another uid cannot read the wrapper's memory or
# signal it), says so on a pipe the code never holds, receives the code through a pipe, and
# runs the runner on it (report on its fd 3; forking instead of starting a second interpreter
# saves a whole Python start-up per run). The wrapper waits for that child only, then has a
# process of the sandbox user kill every other one (daemons the code left behind), and
# appends one framed record to stderr: "\x1eCODE-EXEC <nonce> key=value ...\x1e". The host
# takes the last frame with its nonce; the code can neither read the nonce nor stop the
# wrapper from writing its frame last.
# Only builtin modules on the way: this runs before every execution and must start fast.
import os
import _signal as signal  # not `signal`: that one imports enum, ~15 ms in a container
import sys


def _read_exact(n):
    parts = []
    while n > 0:
        chunk = os.read(0, min(n, 1 << 20))
        if not chunk:
            raise EOFError("stdin ended early")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _read_line(limit=200):
    line = b""
    while not line.endswith(b"\n"):
        c = os.read(0, 1)
        if not c or len(line) > limit:
            raise EOFError("bad header")
        line += c
    return line[:-1].decode("ascii")


def _first_int(path, key=None):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    if key is None:
        try:
            return int(text.split()[0])
        except (ValueError, IndexError):
            return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            try:
                return int(parts[1])
            except ValueError:
                return None
    return None


def _oom_kills():
    # cgroup v1 (memory.oom_control, kernel >= 4.13), then v2 (memory.events).
    n = _first_int("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")
    if n is None:
        n = _first_int("/sys/fs/cgroup/memory.events", "oom_kill")
    return n


def _cpu_ns():
    n = _first_int("/sys/fs/cgroup/cpuacct/cpuacct.usage")
    if n is None:
        n = _first_int("/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage")
    if n is None:
        usec = _first_int("/sys/fs/cgroup/cpu.stat", "usage_usec")
        n = None if usec is None else usec * 1000
    return n


SANDBOX_UID = 1000


def _become_sandbox_user():
    os.setgroups([])
    os.setgid(SANDBOX_UID)
    os.setuid(SANDBOX_UID)
    if os.getuid() != SANDBOX_UID or os.geteuid() != SANDBOX_UID:
        raise OSError("still uid %d" % os.geteuid())


def _run_child(report_w, code_r, setup_w, workdir):
    """In the forked child: becomes the code's process, like `python3 -I -u RUNNER 3 PATH`."""
    import io

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        # The code is the OOM killer's first choice, never the wrapper.
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
        _become_sandbox_user()
        parts = []
        while True:
            chunk = os.read(code_r, 1 << 20)
            if not chunk:
                break
            parts.append(chunk)
        os.close(code_r)
        os.mkdir(workdir, 0o700)
        path = workdir + "/main.py"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.write(fd, b"".join(parts))
        os.close(fd)
        del parts
        os.write(setup_w, b"ok")
    except BaseException as exc:
        try:
            os.write(setup_w, ("failed: %s" % exc).encode("utf-8", "replace")[:400])
        finally:
            os._exit(125)
    os.dup2(report_w, 3)
    os.closerange(4, 1 << 16)
    # Unbuffered, as -u gives: output written before a kill is not lost.
    # The error handlers CPython picks under C.UTF-8 (a locale-coercion target), as natively:
    # a lone surrogate escape prints as its byte.
    for fd, name, errors in ((1, "stdout", "surrogateescape"), (2, "stderr", "backslashreplace")):
        stream = io.TextIOWrapper(
            io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors=errors, write_through=True
        )
        setattr(sys, name, stream)
        setattr(sys, "__%s__" % name, stream)
    runner, work_dir = sys.argv[1], sys.argv[2]
    # The runner's argv: report fd, code file, and the work directory first on sys.path.
    sys.argv = ["-c", "3", path, work_dir]
    exec(compile(runner, "<code-exec runner>", "exec"), {"__name__": "__code_exec_runner__"})
    sys.exit(0)


def _end_sandbox_processes(workdir):
    """A process of the sandbox user kills every other one (kill(-1) reaches exactly the
    processes of its uid, atomically with respect to fork), then removes the code's file.
    True if it became the sandbox user and its kill went out (or found nobody)."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            _become_sandbox_user()
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            status = 0
            for remove, name in ((os.unlink, workdir + "/main.py"), (os.rmdir, workdir)):
                try:
                    remove(name)
                except OSError:
                    pass
        finally:
            os._exit(status)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        except InterruptedError:
            continue
        except ChildProcessError:
            return False


def _main():
    workdir = "/tmp/.code-exec-" + os.urandom(8).hex()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    report_r, report_w = os.pipe()
    code_r, code_w = os.pipe()
    setup_r, setup_w = os.pipe()
    oom_before = _oom_kills()
    cpu_before = _cpu_ns()

    pid = os.fork()
    if pid == 0:
        for fd in (report_r, code_w, setup_r, wake_r, wake_w):
            os.close(fd)
        _run_child(report_w, code_r, setup_w, workdir)
    for fd in (report_w, code_r, setup_w):
        os.close(fd)
    # Only now, in the wrapper alone: the nonce and the code.
    nonce, size = _read_line().split(" ")
    view = memoryview(_read_exact(int(size)))
    try:
        while view:
            view = view[os.write(code_w, view):]
    except OSError:
        pass
    os.close(code_w)
    del view

    import select

    report = b""
    open_fds = [report_r, wake_r]
    os.set_blocking(report_r, False)
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        try:
            ready = select.select(open_fds, [], [])[0]
        except InterruptedError:
            continue
        if report_r in ready:
            try:
                chunk = os.read(report_r, 65536)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                open_fds.remove(report_r)
            elif chunk and len(report) < 65536:
                report += chunk
        if wake_r in ready:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass

    # The main process is gone: nothing else of the sandbox user may outlive it.
    killed = _end_sandbox_processes(workdir)
    setup = b""
    try:
        setup = os.read(setup_r, 512)
    except OSError:
        pass
    try:
        while len(report) < 65536:
            chunk = os.read(report_r, 65536)
            if not chunk:
                break
            report += chunk
    except BlockingIOError:
        pass

    oom_after = _oom_kills()
    cpu_after = _cpu_ns()
    if cpu_before is not None and cpu_after is not None:
        cpu_ns = cpu_after - cpu_before
    else:
        cpu_ns = int((usage.ru_utime + usage.ru_stime) * 1e9)
    fields = [
        "exit=%d" % (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1),
        "signal=%d" % (os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0),
        "oom=%d" % ((oom_after - oom_before) if oom_before is not None and oom_after is not None else -1),
        "cpu_ns=%d" % cpu_ns,
        "maxrss_kb=%d" % usage.ru_maxrss,
        "killed=%d" % killed,
        "setup=" + setup.hex(),
        "report=" + report[:65536].hex(),
    ]
    frame = ("\x1eCODE-EXEC %s %s\x1e" % (nonce, " ".join(fields))).encode("ascii")
    view = memoryview(frame)
    while view:
        view = view[os.write(2, view):]
    os._exit(0)


_main()
