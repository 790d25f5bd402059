#!/bin/sh
# Runs a command as root inside a small VM whose kernel has cgroup v1 disabled (pure cgroup v2),
# for the native sandbox's tests against a real v2 kernel (this machine is v1 hybrid).
#
#   scripts/cgroup-v2-vm.sh COMMAND [ARG...]
#
# The VM boots Debian's kernel (package linux-image-amd64) under QEMU (package
# qemu-system-x86; software emulation, or KVM with CODE_EXEC_VM_KVM=1) with an initramfs of
# busybox (package busybox-static) and the 9p modules. It mounts this machine's root read-only
# over 9p, gives it fresh tmpfs for /tmp, /run and /dev/shm, mounts cgroup2 on /sys/fs/cgroup
# and runs COMMAND there through scripts/cgroup-v2-vm-init.sh. The exit status of COMMAND is
# this script's. Output goes to stdout (the VM's serial console).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kernel_version=$(ls /lib/modules | grep -E -- '-amd64$' | sort -V | tail -n 1)
[ -n "$kernel_version" ] || { echo "cgroup-v2-vm: no Debian kernel; apt-get install linux-image-amd64" >&2; exit 2; }
kernel=/boot/vmlinuz-$kernel_version
[ -r "$kernel" ] || { echo "cgroup-v2-vm: $kernel is missing" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "cgroup-v2-vm: apt-get install qemu-system-x86" >&2; exit 2; }
[ -x /bin/busybox ] || { echo "cgroup-v2-vm: apt-get install busybox-static" >&2; exit 2; }

work=$(mktemp -d /tmp/code-exec-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/initramfs/bin" "$work/initramfs/modules" "$work/results"
cp /bin/busybox "$work/initramfs/bin/busybox"
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p"
for m in $modules; do
  f=$(find "/lib/modules/$kernel_version" -name "$m.ko*" | head -n 1)
  [ -n "$f" ] || { echo "cgroup-v2-vm: module $m not found" >&2; exit 2; }
  case "$f" in
    *.ko.xz) xz -dc "$f" > "$work/initramfs/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" > "$work/initramfs/modules/$m.ko" ;;
    *) cp "$f" "$work/initramfs/modules/$m.ko" ;;
  esac
done
# The command, quoted for the VM's shell.
quoted=""
for arg in "$@"; do
  quoted="$quoted '$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'"
done
cat > "$work/initramfs/init" <<INIT
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /root /results
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $modules; do /bin/busybox insmod /modules/\$m.ko || echo "insmod \$m failed"; done
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /root || exec /bin/busybox sh
/bin/busybox mount --move /dev /root/dev
/bin/busybox umount /proc /sys
exec /bin/busybox switch_root /root /bin/sh $here/cgroup-v2-vm-init.sh $quoted
INIT
chmod 755 "$work/initramfs/init"
(cd "$work/initramfs" && find . | cpio -o -H newc --quiet) > "$work/initramfs.cpio"

accel="-accel tcg -cpu qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16,+lahf_lm"
if [ -n "${CODE_EXEC_VM_KVM:-}" ] && [ -w /dev/kvm ]; then accel="-enable-kvm -cpu host,arch-capabilities=off"; fi
# Software emulation by default, of a CPU of x86-64-v2 (binary wheels such as numpy's need it:
# SIGILL under plain qemu64) without AVX, which TCG emulates slowly (with `max` the suite
# takes four times as long). On this machine (itself a VM) a KVM guest's kernel hangs right
# after the BIOS hands over to it; CODE_EXEC_VM_KVM=1 tries KVM where it works.
# shellcheck disable=SC2086
qemu-system-x86_64 $accel -m 4096 -smp 2 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initramfs.cpio" \
  -append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$work/results,mount_tag=results,security_model=none" \
  </dev/null
status=$(cat "$work/results/status" 2>/dev/null || echo "")
[ -n "$status" ] || { echo "cgroup-v2-vm: the VM ended without a status" >&2; exit 2; }
exit "$status"
