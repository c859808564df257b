#!/usr/bin/env bash
# Disk figures for `make bench` (issue #12), cheap: 64 MiB written with dd, direct and
# buffered (+fsync), inside a slice with a disk quota (the loop-image path, and the
# project-quota path on a test ext4 with -O quota,project) against the same on the host.
#   scripts/disk-bench.sh BIN_DIR
# Runs the CLI in direct mode on private state roots; removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(cd "${1:-target/release}" && pwd)
IMAGES=${VSLICE_TEST_IMAGES:-/tmp/vslice-test-images}
TAG="vslice-test-diskbench-$$"
WORK="/tmp/$TAG"
MNT="$WORK/prj"
mkdir -p "$WORK"
cleanup() {
  for r in "$WORK/loop-root" "$MNT"; do
    [ -d "$r/slices" ] && for s in "$r"/slices/*/; do
      [ -d "$s" ] && VSLICE_DIRECT=1 VSLICE_ROOT="$r" VSLICE_CGROUP_PARENT="$TAG" \
        VSLICE_POLICY_DIR="$PWD/policies" VSLICE_SHIM="$BIN/vslice-shim" \
        "$BIN/vslice" rm "$(basename "$s")" >/dev/null 2>&1 || true
    done
  done
  umount -l "$MNT" 2>/dev/null || true
  rm -rf "$WORK"
  for h in /sys/fs/cgroup/*/; do [ -d "$h$TAG" ] && rmdir "$h$TAG" 2>/dev/null; done; true
}
trap cleanup EXIT

now() { date +%s.%N; }
# rate LABEL SECONDS: MiB/s of 64 MiB
rate() { awk -v s="$2" -v l="$1" 'BEGIN { printf "  %-34s %8.1f MiB/s\n", l, 64 / s }'; }

vs() {
  VSLICE_DIRECT=1 VSLICE_ROOT="$1" VSLICE_CGROUP_PARENT="$TAG" VSLICE_POLICY_DIR="$PWD/policies" \
    VSLICE_SHIM="$BIN/vslice-shim" "$BIN/vslice" "${@:2}"
}

measure() { # measure LABEL -- command...: seconds of the command, for direct and buffered
  local label=$1; shift 2
  local t0 t1
  t0=$(now); "$@" "dd if=/dev/zero of=/var/tmp/bench bs=1M count=64 oflag=direct 2>/dev/null"; t1=$(now)
  rate "$label direct" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
  "$@" "rm -f /var/tmp/bench"
  t0=$(now); "$@" "dd if=/dev/zero of=/var/tmp/bench bs=1M count=64 conv=fsync 2>/dev/null"; t1=$(now)
  rate "$label buffered+fsync" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
  "$@" "rm -f /var/tmp/bench"
}

slice_run() { # slice_run ROOT NAME SCRIPT
  vs "$1" exec "$2" -- /bin/sh -c "mkdir -p /var/tmp; $3" >/dev/null
}
host_run() { # host_run DIR SCRIPT (paths rewritten to DIR)
  local dir=$1; shift
  mkdir -p "$dir/var/tmp"; sh -c "${1//\/var\/tmp/$dir/var/tmp}"
}

setup_root() {
  mkdir -p "$1"
  ln -sfn "$IMAGES" "$1/images"
}

echo "64 MiB per figure; MiB/s (higher is better)"
measure "host (/tmp, root ext4)" -- host_run "$WORK/host"

setup_root "$WORK/loop-root"
vs "$WORK/loop-root" create bench-loop --disk 1G >/dev/null
measure "slice, loop image quota" -- slice_run "$WORK/loop-root" bench-loop
vs "$WORK/loop-root" rm bench-loop >/dev/null

truncate -s 2G "$WORK/prj.img"
mkfs.ext4 -q -F -O quota,project -I 256 -m 0 "$WORK/prj.img"
mkdir -p "$MNT"
if mount -o loop,prjquota "$WORK/prj.img" "$MNT" 2>/dev/null; then
  rmdir "$MNT/lost+found"
  measure "host (test ext4 on loop)" -- host_run "$MNT/host"
  rm -rf "$MNT/host"
  setup_root "$MNT"
  vs "$MNT" create bench-prj --disk 1G >/dev/null
  measure "slice, project quota (same ext4)" -- slice_run "$MNT" bench-prj
  vs "$MNT" rm bench-prj >/dev/null
else
  echo "  project quota: this kernel cannot mount an ext4 with quotas (no CONFIG_QFMT_V2); skipped"
fi
