#!/bin/sh
# PID 1 of the cgroup v2 VM (see cgroup-v2-vm.sh), on this machine's root mounted read-only:
# mounts what a system has, runs the command, writes its exit status to RESULTS/status, and
# powers the VM off.   cgroup-v2-vm-init.sh COMMAND [ARG...]
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# This machine's /tmp stays visible (read-only: the clone under test may live there); the
# VM's scratch space is a fresh tmpfs at /run/tmp, its TMPDIR.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -m 1777 /run/tmp
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t devpts devpts /dev/pts
ip link set lo up 2>/dev/null || true
results=/run/vm-results
mkdir -p "$results"
mount -t 9p -o trans=virtio,version=9p2000.L results "$results"
hostname code-exec-v2-vm
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/run/tmp TMPDIR=/run/tmp
echo "cgroup-v2-vm: $(uname -r), cgroup: $(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
"$@"
echo $? > "$results/status"
sync
/bin/busybox poweroff -f
