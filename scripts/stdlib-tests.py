#!/usr/bin/python3
"""The sandbox's false-positive rate against CPython's own regression tests (issue 18).

    scripts/stdlib-tests.py [--code-exec BIN] [--sandbox native|docker] [--image IMAGE]
                            [--modules test_os,test_pty,...] [--json FILE]

Runs each module of a fixed list (or --modules) with Debian's /usr/bin/python3 and its
regression tests (package libpython3.11-testsuite) twice: bare, in a fresh directory, and
inside the sandbox (`code-exec run`, 1 GiB of memory and of disk, 15 minutes). Each run
writes JUnit XML (regrtest's --junit-xml); the script compares them test by test and prints,
per module, the tests that pass bare, and those of them that fail, error or are skipped
inside, each with the reason the README's table "What behaves differently inside the
sandbox, and why" gives for it, or UNEXPLAINED. Exits 1 when any is unexplained.

A test counts as passing when it ran and neither failed nor errored; one skipped bare is not
counted. Only the standard library and Debian's python3 are needed.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

# The modules measured: what the code users hand us touches most. Left out for their time
# on this machine: test_socket (its bare run takes more than 5 minutes of resolver timeouts
# without a network), test_concurrent_futures and test_multiprocessing_* (minutes each);
# tests/compatibility.rs covers loopback sockets and every multiprocessing start method.
MODULES = [
    "test_os", "test_posix", "test_shutil", "test_tempfile", "test_glob", "test_pathlib",
    "test_fileio", "test_file", "test_unicode_file", "test_unicode_file_functions",
    "test_subprocess", "test_threading", "test_thread", "test_signal", "test_select",
    "test_selectors", "test_epoll", "test_poll", "test_socketserver",
    "test_mmap", "test_fcntl", "test_resource", "test_pty", "test_tty", "test_pwd",
    "test_grp", "test_sqlite3", "test_ctypes", "test_zoneinfo", "test_time", "test_locale",
    "test_datetime", "test_json", "test_logging", "test_tarfile", "test_zipfile",
    "test_gzip", "test_uuid", "test_platform", "test_sysconfig", "test_queue",
]

# Differences the README's table explains: (pattern on "module.Class.test", table row).
# Each row must be one of the table's (checked at start).
EXPLAINED = [
    # Tests that need root (or another uid's or group's rights): skipped as uid 1000.
    (r"test_os\.ChownFileTests\.test_chown_with_root$", "identity"),
    (r"test_posix\.PosixGroupsTester\.test_(initgroups|setgroups)$", "identity"),
    (r"test_subprocess\.POSIXProcessTestCase\.test_(user|group)$", "identity"),
    # regrtest's xattr probe also sets a trusted.* attribute, which needs CAP_SYS_ADMIN.
    (r"test_shutil\.TestCopy\.test_copy(2_xattr|xattr|xattr_symlinks)$",
     "extended attributes in the trusted namespace"),
    # Files of 2 to 4 GB, and a file-size limit of infinity: the scratch space bounds both.
    (r"test_mmap\.LargeMmapTests\.", "files beyond the scratch space"),
    (r"test_resource\.ResourceTest\.test_fsize_ismax$", "files beyond the scratch space"),
    (r"test_time\.TimeTestCase\.test_monotonic_settime$", "setting the clock"),
    # PyZipFile writes byte-code beside the standard library's own modules.
    (r"test_zipfile\.PyZipFileTests\.", "writing into the standard library's directories"),
    # No interface with a hardware address for `ip link` / `ifconfig` to show.
    (r"test_uuid\.TestInternalsWith(out)?ExtModule\.test_(ifconfig|ip)_getnode$",
     "network interfaces"),
    (r"test_sysconfig\.TestSysConfig\.test_get_config_h_filename$", "C headers"),
]

MARK = "==code-exec-junit=="


def results(xml_text):
    """{test id: "pass" | "fail" | "skip"} from regrtest's JUnit XML."""
    out = {}
    if not xml_text.strip():
        return out
    root = ET.fromstring(xml_text)
    for case in root.iter("testcase"):
        name = "%s.%s" % (case.get("classname", ""), case.get("name", ""))
        status = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "fail"
            elif child.tag == "skipped" and status == "pass":
                status = "skip"
        out[name] = status
    return out


def run_bare(module, timeout):
    with tempfile.TemporaryDirectory() as work:
        xml = os.path.join(work, "junit.xml")
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": work, "TMPDIR": work}
        try:
            subprocess.run(["/usr/bin/python3", "-m", "test", "--junit-xml", xml, module],
                           cwd=work, env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout)
        except subprocess.TimeoutExpired:
            return {}, "timeout"
        try:
            with open(xml) as f:
                return results(f.read()), "ran"
        except FileNotFoundError:
            return {}, "no report"


def run_inside(module, args, timeout):
    code = (
        "import os, runpy, sys\n"
        "sys.argv = ['python -m test', '--junit-xml', '/work/junit.xml', %r]\n"
        "try:\n"
        "    runpy.run_module('test', run_name='__main__', alter_sys=True)\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stdout.flush()\n"
        "print(%r)\n"
        "print(open('/work/junit.xml').read() if os.path.exists('/work/junit.xml') else '')\n"
    ) % (module, MARK)
    command = [args.code_exec, "run", "--json", "--sandbox", args.sandbox, "--memory", "1024",
               "--disk", "1024", "--timeout", str(timeout), "--max-output", str(256 << 20),
               "--pids", "512", "-c", code]
    if args.image:
        command[3:3] = ["--image", args.image]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True)
    try:
        result = json.loads(done.stdout)
    except ValueError:
        return {}, "no result: " + done.stderr.decode(errors="replace")[-300:]
    output = result.get("output", "")
    if MARK not in output:
        return {}, "%s: %s" % (result.get("verdict"), (result.get("error") or "")[:200])
    return results(output.split(MARK, 1)[1]), result.get("verdict")


def explain(test):
    for pattern, row in EXPLAINED:
        if re.search(pattern, test):
            return row
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code-exec", default=shutil.which("code-exec") or "target/debug/code-exec")
    parser.add_argument("--sandbox", default="native")
    parser.add_argument("--image")
    parser.add_argument("--modules")
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--json", help="write the comparison here")
    args = parser.parse_args()
    modules = args.modules.split(",") if args.modules else MODULES
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    with open(readme) as f:
        table = f.read().split("### What behaves differently inside the sandbox, and why")[1]
    missing = sorted({row for _, row in EXPLAINED if "\n| %s | " % row not in table})
    if missing:
        sys.exit("stdlib-tests: rows not in the README's table: %s" % ", ".join(missing))
    if not os.path.exists("/usr/lib/python3.11/test/test_os.py"):
        sys.exit("stdlib-tests: apt-get install libpython3.11-testsuite")
    totals = {"pass_bare": 0, "lost_inside": 0, "unexplained": 0}
    report = {}
    started = time.monotonic()
    for module in modules:
        t0 = time.monotonic()
        bare, bare_how = run_bare(module, args.timeout)
        inside, inside_how = run_inside(module, args, args.timeout)
        passing = sorted(t for t, s in bare.items() if s == "pass")
        lost = [(t, inside.get(t, "missing")) for t in passing if inside.get(t) != "pass"]
        rows = [(t, how, explain(t)) for t, how in lost]
        unexplained = [r for r in rows if r[2] is None]
        totals["pass_bare"] += len(passing)
        totals["lost_inside"] += len(lost)
        totals["unexplained"] += len(unexplained)
        report[module] = {"bare": bare_how, "inside": inside_how, "pass_bare": len(passing),
                          "lost": [{"test": t, "inside": how, "explained_by": why}
                                   for t, how, why in rows]}
        print("%-34s bare %-9s %5d pass; inside %-14s %4d of them not passing, %d unexplained"
              " (%.0f s)" % (module, bare_how, len(passing), inside_how, len(lost),
                             len(unexplained), time.monotonic() - t0), flush=True)
        for test, how, why in rows:
            print("    %-6s %s  [%s]" % (how, test, why or "UNEXPLAINED"))
    print("== %d tests pass bare in %d modules; %d of them do not pass inside (%.2f %%), %d"
          " unexplained; %.0f s" % (
              totals["pass_bare"], len(modules), totals["lost_inside"],
              100.0 * totals["lost_inside"] / max(totals["pass_bare"], 1),
              totals["unexplained"], time.monotonic() - started))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"totals": totals, "modules": report}, f, indent=1)
    sys.exit(1 if totals["unexplained"] else 0)


if __name__ == "__main__":
    main()
