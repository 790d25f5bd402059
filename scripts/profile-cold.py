#!/usr/bin/env python3
"""Where a cold one-shot `code-exec run` spends its wall time, per process and step.

Runs `code-exec run -c 'print(1)'` (native, then `--sandbox none`) and bare
`python3 -I -c 'print(1)'` ROUNDS times each under `perf trace` (Debian's `linux-perf`),
tracing only the syscalls that mark a step's edges, and prints the median of each step:

  native: CLI start-up (exec to the helper's fork; the run cgroup is made in it)
          -> helper (fork to the clone into new namespaces)
          -> the clone itself (user, PID, mount, network, IPC and UTS namespaces)
          -> init (cgroup join, cgroup namespace, hostname, loopback, the root: mounts to
             pivot_root)
          -> code process (pivot_root to the interpreter's exec: fork, rlimits,
             capabilities, seccomp)
          -> interpreter (exec to exit_group: start-up, runner, code, finalization)
          -> after the code (exit_group to the CLI's exit: reaping, reports, verdict,
             cgroup and run directory removal)
  none:   CLI start-up -> supervisor (fork to the interpreter's exec) -> interpreter -> after
  bare:   interpreter (exec to exit_group) and its whole wall time

perf trace adds a few microseconds per traced syscall (the init's ~60 mounts and mkdirs most),
so the sum is above the bench's wall time; the bench (`cargo bench --bench startup`) gives the
figures, this the split.

Usage: scripts/profile-cold.py [--rounds N] [--python PATH] [CODE_EXEC_BIN]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

LINE = re.compile(
    r"^\s*(?P<time>[\d.]+|\?) \(\s*(?P<dur>[\d.]+ ms|)\s*\): (?P<comm>.*?)/(?P<pid>\d+)\s+"
    r"(?P<rest>.*)$"
)


def trace(command, events):
    with tempfile.NamedTemporaryFile("r", suffix=".trace") as out:
        subprocess.run(
            ["perf", "trace", "-f", "-e", events, "-o", out.name, "--"] + command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        return [m for m in map(LINE.match, out.read().splitlines()) if m]


def events(lines):
    """(time ms, duration ms, pid, syscall, text, comm) of each traced syscall with a time."""
    found = []
    for m in lines:
        if m["time"] == "?":
            continue
        rest = m["rest"]
        if rest.startswith("..."):
            # "... [continued]: name()": the end of a call whose start was printed earlier.
            name = re.search(r"\[continued\]: (\w+)\(", rest)
            kind = (name.group(1) if name else "?") + ":end"
        else:
            kind = rest.split("(", 1)[0]
        dur = float(m["dur"].split()[0]) if m["dur"] else 0.0
        found.append((float(m["time"]), dur, int(m["pid"]), kind, rest, m["comm"]))
    return found


def interpreter_exec(evs):
    """The execve of the interpreter: that of a process whose events name it python."""
    pythons = {e[2] for e in evs if e[5].startswith("python")}
    found = first(evs, lambda e: e[3] == "execve" and e[2] in pythons)
    # perf trace may print the exec under the old name: then it is the last exec of the run.
    return found or last(evs, lambda e: e[3] == "execve")


def first(evs, pred):
    return next((e for e in evs if pred(e)), None)


def last(evs, pred):
    hits = [e for e in evs if pred(e)]
    return hits[-1] if hits else None


EVENTS = "brk,execve,clone,clone3,pivot_root,exit_group,mkdir"


def profile_native(binary, python):
    evs = events(trace([binary, "run", "--python", python, "-c", "print(1)"], EVENTS))
    cli = evs[0][2]
    start = evs[0][0]
    fork = first(evs, lambda e: e[2] == cli and e[3] == "clone")
    fork_end = first(evs, lambda e: e[3] == "clone:end" and e[2] == cli)
    ns = first(evs, lambda e: e[3] == "clone" and "NEWUSER" in e[4])
    helper = ns[2]
    ns_end_time = ns[0] + ns[1] if ns[1] else None
    if ns_end_time is None:
        done = first(evs, lambda e: e[2] == helper and e[3] == "clone:end")
        ns_end_time = done[0] + done[1]
    pivot = first(evs, lambda e: e[3] == "pivot_root")
    init = pivot[2]
    init_first = first(evs, lambda e: e[2] == init)
    code_exec = interpreter_exec(evs)
    code_exit = first(evs, lambda e: e[2] == code_exec[2] and e[3] == "exit_group")
    cli_exit = last(evs, lambda e: e[2] == cli and e[3] == "exit_group")
    cgroup_made = [e for e in evs if e[2] == cli and e[3] == "mkdir" and e[0] < fork[0]]
    fork_time = fork[0] + (fork[1] or 0)
    return {
        "CLI start-up, to the helper's fork": fork[0] - start,
        "  of which mkdir (run cgroup, run dir)": sum(e[1] for e in cgroup_made),
        "helper: fork, to the namespaces' clone": ns[0] - fork[0],
        "clone into new namespaces": ns_end_time - ns[0],
        "init: cgroup join, root, to pivot_root": pivot[0] + pivot[1] - min(init_first[0], ns_end_time),
        "code process: to the interpreter's exec": code_exec[0] + code_exec[1] - pivot[0] - pivot[1],
        "interpreter: exec to exit_group": code_exit[0] - code_exec[0] - code_exec[1],
        "after the code: to the CLI's exit": cli_exit[0] - code_exit[0],
        "total (CLI exec to exit)": cli_exit[0] - start,
    }, fork_time


def profile_none(binary, python):
    evs = events(
        trace([binary, "run", "--sandbox", "none", "--python", python, "-c", "print(1)"], EVENTS)
    )
    cli = evs[0][2]
    start = evs[0][0]
    fork = first(evs, lambda e: e[2] == cli and e[3] == "clone")
    code_exec = interpreter_exec(evs)
    code_exit = first(evs, lambda e: e[2] == code_exec[2] and e[3] == "exit_group")
    cli_exit = last(evs, lambda e: e[2] == cli and e[3] == "exit_group")
    return {
        "CLI start-up, to the supervisor's fork": fork[0] - start,
        "supervisor: fork, to the interpreter's exec": code_exec[0] + code_exec[1] - fork[0],
        "interpreter: exec to exit_group": code_exit[0] - code_exec[0] - code_exec[1],
        "after the code: to the CLI's exit": cli_exit[0] - code_exit[0],
        "total (CLI exec to exit)": cli_exit[0] - start,
    }, None


def profile_bare(python):
    evs = events(trace([python, "-I", "-c", "print(1)"], EVENTS))
    start = evs[0][0]
    exit_ = last(evs, lambda e: e[3] == "exit_group")
    return {"total (exec to exit_group)": exit_[0] - start}, None


def medians(runs):
    keys = list(runs[0].keys())
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary", nargs="?", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "code-exec"))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--python", default="/usr/bin/python3")
    args = parser.parse_args()
    python = os.path.realpath(args.python)
    if subprocess.run(["perf", "trace", "-e", "brk", "--", "true"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        sys.exit("perf trace does not work here (apt-get install linux-perf; run as root)")
    for name, run in (
        ("bare python3 -I -c", lambda: profile_bare(python)),
        ("code-exec run (native, cold)", lambda: profile_native(args.binary, python)),
        ("code-exec run --sandbox none", lambda: profile_none(args.binary, python)),
    ):
        run()  # warm the page cache
        results = []
        for _ in range(args.rounds):
            try:
                results.append(run()[0])
            except (TypeError, IndexError, subprocess.CalledProcessError) as e:
                print("  (a round could not be parsed: %r)" % (e,), file=sys.stderr)
        print("%s: medians of %d rounds under perf trace, ms" % (name, len(results)))
        for step, ms in medians(results).items():
            print("  %-46s %7.2f" % (step, ms))


if __name__ == "__main__":
    main()
