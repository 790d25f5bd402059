#!/bin/sh
# Builds the Python image the docker backend's tests and benchmarks use, without any registry:
# a minimal Debian root filesystem (debootstrap from Debian's package mirror) with CPython 3.11,
# imported with `docker import`. Reused when an image of the same recipe version exists.
#
#   scripts/build-docker-image.sh [TAG]      (default: code-exec-python:3.11)
#
# Needs root (debootstrap) and a running Docker Engine. Set FORCE=1 to rebuild.
set -eu

TAG="${1:-code-exec-python:3.11}"
# Bump when the recipe below changes, so existing images are rebuilt.
RECIPE=2
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if ! docker info >/dev/null 2>&1; then
    echo "build-docker-image: no Docker Engine answers (is the daemon running?)" >&2
    exit 1
fi

current=$(docker image inspect --format '{{ index .Config.Labels "code-exec.recipe" }}' "$TAG" 2>/dev/null || true)
if [ "${FORCE:-0}" != 1 ] && [ "$current" = "$RECIPE" ]; then
    echo "build-docker-image: $TAG (recipe $RECIPE) already present"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "build-docker-image: installing debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; }
fi

root=$(mktemp -d /var/tmp/code-exec-rootfs.XXXXXX)
cleanup() { rm -rf "$root"; }
trap cleanup EXIT INT TERM

# python3 and its full standard library (python3-minimal lacks modules such as `resource`);
# procps for debugging inside a container; netbase for /etc/services and /etc/protocols, as
# the official python images have them.
debootstrap --variant=minbase --include=python3,procps,netbase "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# Nothing a container needs from apt's caches, documentation or locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
# A sandbox user with a home, matching the uid the backend runs code as.
echo 'sandbox:x:1000:1000:code-exec sandbox:/work:/usr/sbin/nologin' >>"$root/etc/passwd"
echo 'sandbox:x:1000:' >>"$root/etc/group"

tar -C "$root" -c . | docker import \
    --change "LABEL code-exec.recipe=$RECIPE" \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8' \
    --change 'WORKDIR /work' \
    --change 'CMD ["python3"]' \
    - "$TAG" >/dev/null
echo "build-docker-image: built $TAG"
