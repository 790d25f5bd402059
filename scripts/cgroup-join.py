#!/usr/bin/python3
"""How a process gets into a cgroup v2, and what it costs (issue 12, item 6).

    cgroup-join.py without-clone3 COMMAND [ARG...]
        Runs COMMAND where clone3(2) fails with ENOSYS, as on a kernel older than 5.3: the
        sandbox helper then cannot clone the init into its cgroup (CLONE_INTO_CGROUP) and the
        init joins through cgroup.procs, the fallback this exercises.

    cgroup-join.py measure [--rounds N] CGROUP_V2_DIR [CODE_EXEC_BIN]
        Needs write access to CGROUP_V2_DIR (root, or a delegated subtree). Alternates, in one
        run and in a fresh cgroup each time, a plain fork (the baseline), a fork whose child
        writes itself to cgroup.procs, and a clone3 straight into the cgroup; prints medians
        and ratios to the plain fork. With CODE_EXEC_BIN (on a pure v2 host, where runs get a
        v2 cgroup) it also alternates `code-exec run -c pass` under `without-clone3`, which
        joins through cgroup.procs, with the same run under a control filter of the same
        length that refuses nothing (every syscall of a run pays the same filter).

Only Debian's /usr/bin/python3 and the standard library are needed.
"""

import ctypes
import os
import statistics
import struct
import subprocess
import sys
import time

SYS_CLONE3 = 435
CLONE_INTO_CGROUP = 0x2_0000_0000
SIGCHLD = 17
AUDIT_ARCH_X86_64 = 0xC000003E
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
ENOSYS = 38

libc = ctypes.CDLL(None, use_errno=True)


def bpf(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)


# A syscall number no kernel has: the control filter, which refuses nothing real.
NO_SUCH_SYSCALL = 0xFFFF


def deny_syscall(number):
    """Installs a seccomp filter under which syscall `number` fails with ENOSYS (x86-64)."""
    ld_abs_w, jeq_k, ret_k = 0x20, 0x15, 0x06
    program = b"".join([
        bpf(ld_abs_w, 0, 0, 4),                       # the audit arch
        bpf(jeq_k, 0, 3, AUDIT_ARCH_X86_64),          # another arch: allow
        bpf(ld_abs_w, 0, 0, 0),                       # the syscall number
        bpf(jeq_k, 0, 1, number),
        bpf(ret_k, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
        bpf(ret_k, 0, 0, SECCOMP_RET_ALLOW),
    ])
    filters = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HxxxxxxQ", len(program) // 8, ctypes.addressof(filters))
    fprog_buf = ctypes.create_string_buffer(fprog, len(fprog))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog_buf, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def clone3_into(cgroup_fd):
    """clone3 with fork semantics into the cgroup open as cgroup_fd; returns fork's value."""
    args = struct.pack("11Q", CLONE_INTO_CGROUP, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, cgroup_fd)
    buf = ctypes.create_string_buffer(args, len(args))
    pid = libc.syscall(ctypes.c_long(SYS_CLONE3), buf, ctypes.c_size_t(len(args)))
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone3(CLONE_INTO_CGROUP)")
    return pid


def remove_cgroup(path):
    deadline = time.monotonic() + 2
    while True:
        try:
            os.rmdir(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def one_join(parent, mode, index):
    """Seconds from the fork to the reaped child, in a fresh cgroup."""
    cgroup = os.path.join(parent, f"join-{os.getpid()}-{index}")
    os.mkdir(cgroup)
    try:
        started = time.perf_counter()
        if mode == "clone3 into the cgroup":
            fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
            pid = clone3_into(fd)
            if pid == 0:
                os._exit(0)
            os.close(fd)
        else:
            pid = os.fork()
            if pid == 0:
                if mode == "fork, then cgroup.procs":
                    with open(os.path.join(cgroup, "cgroup.procs"), "w") as procs:
                        procs.write("0")
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        took = time.perf_counter() - started
        if status != 0:
            raise RuntimeError(f"{mode}: the child failed (status {status})")
        return took
    finally:
        remove_cgroup(cgroup)


def one_run(command):
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command}: exit {done.returncode}: {done.stderr.decode()[-500:]}")
    return took


def report(title, samples, baseline):
    base = statistics.median(samples[baseline])
    print(f"== {title} (medians of {len(samples[baseline])}, ratios to {baseline!r})")
    for mode, taken in samples.items():
        median = statistics.median(taken)
        print(f"  {mode:32} {median * 1000:8.2f} ms  {median / base:6.2f}x")


def measure(args):
    rounds = 30
    if args[:1] == ["--rounds"]:
        rounds, args = int(args[1]), args[2:]
    if not 1 <= len(args) <= 2:
        sys.exit(__doc__)
    parent = args[0]
    joins = {m: [] for m in ("plain fork", "fork, then cgroup.procs", "clone3 into the cgroup")}
    for index in range(rounds):
        for mode, taken in joins.items():
            taken.append(one_join(parent, mode, index))
            # Apart in time, as runs are: the lock's fast path does not stay armed.
            time.sleep(0.05)
    report("joining a fresh cgroup v2", joins, "plain fork")
    if len(args) == 2:
        run = [args[1], "run", "-c", "pass"]
        runs = {"code-exec run (clone3 into)": [], "code-exec run (cgroup.procs)": []}
        script = [sys.executable, os.path.abspath(__file__)]
        control = [*script, "under-control-filter", *run]
        fallback = [*script, "without-clone3", *run]
        for _ in range(rounds):
            runs["code-exec run (clone3 into)"].append(one_run(control))
            runs["code-exec run (cgroup.procs)"].append(one_run(fallback))
        report("a cold run on cgroup v2", runs, "code-exec run (cgroup.procs)")


def main():
    filters = {"without-clone3": SYS_CLONE3, "under-control-filter": NO_SUCH_SYSCALL}
    if len(sys.argv) >= 3 and sys.argv[1] in filters:
        deny_syscall(filters[sys.argv[1]])
        os.execvp(sys.argv[2], sys.argv[2:])
    if len(sys.argv) >= 2 and sys.argv[1] == "measure":
        measure(sys.argv[2:])
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
