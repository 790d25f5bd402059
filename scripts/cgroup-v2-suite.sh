#!/bin/sh
# The native sandbox's suites on a pure cgroup v2 kernel, run inside the VM of
# scripts/cgroup-v2-vm.sh as its root:
#
#   scripts/cgroup-v2-vm.sh scripts/cgroup-v2-suite.sh CODE_EXEC_BIN NATIVE_TESTS PERSISTENT_TESTS \
#       SCIENCE_VENV
#
# SCIENCE_VENV: a virtual environment with numpy and matplotlib on this machine's /tmp (the VM
# sees it read-only), for the native suite's test of them.
#
# 1. `code-exec doctor` must say that memory, CPU and pids are enforced by cgroup v2;
#    what joining a v2 cgroup costs is measured (scripts/cgroup-join.py measure): the helper
#    clones the init into its run cgroup, a cgroup.procs write would take the kernel's
#    thread-group lock;
# 2. as root: the native attack suite cold and through the zygote, and the persistent suite
#    (through the zygote, the library's default). The VM runs under software emulation, where
#    the zygote pass's C-stack overflow needs more than its 20 s timeout: that pass scales it;
# 3. as an unprivileged user (uid 65534) inside a delegated v2 subtree, as systemd gives one to
#    a user: the native suite and the persistent suite, where every limit must again be a
#    cgroup's (CI=true makes missing cgroups fail);
# 4. the fallback of kernels before 5.7, where the init joins through cgroup.procs: the
#    cgroup-enforced attacks again, with clone3 refused (scripts/cgroup-join.py without-clone3).
set -eu
bin=$1 native=$2 persistent=$3
export CODE_EXEC_TEST_SCIENCE_VENV=$4
here=$(cd "$(dirname "$0")" && pwd)
export CI=true CODE_EXEC_BIN="$bin"
step() { echo "== cgroup v2: $*"; }

step "doctor"
"$bin" doctor | tee "$TMPDIR/doctor.txt"
grep -q "memory_mb *cgroup v2" "$TMPDIR/doctor.txt"
grep -q "pids *cgroup v2" "$TMPDIR/doctor.txt"

step "what joining a cgroup v2 costs"
mkdir /sys/fs/cgroup/join-measure
/usr/bin/python3 "$here/cgroup-join.py" measure --rounds 15 /sys/fs/cgroup/join-measure "$bin"
rmdir /sys/fs/cgroup/join-measure

step "native suite as root, cold"
"$native"
# Software emulation is slow: the C-stack overflow test gets 4 times its 20 s (its only timing).
step "native suite as root, through the zygote"
CODE_EXEC_TEST_ZYGOTE=1 CODE_EXEC_TEST_TIMEOUT_SCALE=4 "$native"
step "persistent suite as root"
"$persistent"

step "a delegated subtree for uid 65534"
root=/sys/fs/cgroup
echo "+memory +cpu +pids" > "$root/cgroup.subtree_control"
mkdir -p "$root/ci/user/shell"
echo "+memory +cpu +pids" > "$root/ci/cgroup.subtree_control"
# Delegation as systemd does it: the subtree and its control files belong to the user.
chown -R 65534:65534 "$root/ci/user"
echo $$ > "$root/ci/user/shell/cgroup.procs"
unprivileged=$(mktemp -d "$TMPDIR/code-exec-v2.XXXXXX")
chmod 755 "$unprivileged"
cp "$bin" "$unprivileged/code-exec"
cp "$native" "$unprivileged/native-tests"
cp "$persistent" "$unprivileged/persistent-tests"
as_nobody() {
  (cd "$unprivileged" && setpriv --reuid=65534 --regid=65534 --clear-groups \
     env CI=true HOME="$TMPDIR" TMPDIR="$TMPDIR" CODE_EXEC_BIN="$unprivileged/code-exec" "$@")
}
step "doctor as uid 65534"
as_nobody ./code-exec doctor | tee "$TMPDIR/doctor-user.txt"
grep -q "memory_mb *cgroup v2" "$TMPDIR/doctor-user.txt"
step "native suite as uid 65534 in the delegated subtree"
as_nobody ./native-tests
step "native suite as uid 65534, through the zygote"
as_nobody env CODE_EXEC_TEST_ZYGOTE=1 CODE_EXEC_TEST_TIMEOUT_SCALE=4 ./native-tests
step "persistent suite as uid 65534"
as_nobody ./persistent-tests
step "the cgroup-enforced attacks with clone3 refused (the init joins through cgroup.procs)"
/usr/bin/python3 "$here/cgroup-join.py" without-clone3 "$native" memory fork_bomb strict_limits
step "all passed"
