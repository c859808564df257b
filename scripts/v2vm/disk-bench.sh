#!/usr/bin/env bash
# The project-quota half of the `disk` section of scripts/bench.sh, in the pure cgroup v2 VM
# (scripts/v2vm/v2vm.sh), for hosts whose kernel cannot mount ext4/XFS with prjquota (this
# project's CI machines: no CONFIG_QFMT_V2 / CONFIG_XFS_QUOTA). Debian's 6.1 kernel there has
# both. The VM is slow (TCG): compare the slice/host ratio, measured inside the VM, not MiB/s.
#   scripts/v2vm/disk-bench.sh BIN_DIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=$(readlink -f "${1:-$REPO/target/release}")
cd "$REPO"
# The guest's /tmp is its own (ext4): the busybox image is built there first.
bash "$HERE/v2vm.sh" --mem 3G --cpus "$(nproc)" --tmp-ext4 6G --timeout 1500 -- \
  env VSLICE_TEST_IMAGES=/tmp/vslice-test-images VSLICE_REQUIRE_PROJECT_QUOTA=1 DISK_BENCH_ONLY=project \
  DISK_BENCH_MIB="${DISK_BENCH_MIB:-64}" DISK_BENCH_RUNS="${DISK_BENCH_RUNS:-3}" \
  bash -c "bash images/busybox/build.sh /tmp/vslice-test-images/busybox/rootfs >/dev/null && bash scripts/disk-bench.sh '$BIN'"
echo "(project-quota path in the v2 VM: Debian's 6.1 kernel, $(grep -qwE 'vmx|svm' /proc/cpuinfo && [ -c /dev/kvm ] && echo KVM || echo TCG); compare slice/host)"
