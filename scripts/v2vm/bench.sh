#!/usr/bin/env bash
# The `v2` section of scripts/bench.sh: the slice sandbox figures (integration/examples/
# slice_bench.rs: create-to-running, exec, shim PSS, crun/runc on the same rootfs) on this
# host (cgroup v1) and inside the pure cgroup v2 VM (scripts/v2vm/v2vm.sh), same N, same
# binaries. The VM is much slower (TCG here), so only ratios compare: vslice vs crun/runc
# within each run.
#   scripts/v2vm/bench.sh BIN_DIR      (env BENCH_V2_N: slices per run, default 20)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=$(readlink -f "${1:-$REPO/target/release}")
N=${BENCH_V2_N:-20}
cd "$REPO"
cargo build --profile "${CARGO_PROFILE:-release}" -q -p vslice-integration --example slice_bench
EX=$REPO/target/${CARGO_PROFILE:-release}/examples/slice_bench
v1=$(VSLICE_BIN_DIR=$BIN "$EX" "$N")
v2=$(bash "$HERE/v2vm.sh" --mem 3G --cpus "$(nproc)" --tmp-ext4 2G --timeout 1200 -- \
  env VSLICE_BIN_DIR="$BIN" VSLICE_TEST_IMAGES=/tmp/vslice-test-images "$EX" "$N")
# `KEY median=X` / `ratio KEY = X (...)` lines of each run, side by side.
val() { awk -v k="$2" '$0 ~ "^" k " " { for (i = 1; i <= NF; i++) if ($i ~ /^median=/) { sub(/median=/, "", $i); print $i; exit } if ($3 == "=") { print $4; exit } }' <<<"$1"; }
printf '%-52s %10s %10s\n' "figure (N=$N)" "v1 host" "v2 VM"
for k in "slice create_start_ms" "slice exec_true_ms" "slice shim_pss_kib" \
  "ratio slice_create_start/crun_run_true_ms" "ratio slice_create_start/crun_run_true_userns_ms" \
  "ratio slice_create_start/runc_run_true_ms" "ratio slice_create_start/runc_run_true_userns_ms"; do
  printf '%-52s %10s %10s\n' "$k" "$(val "$v1" "$k")" "$(val "$v2" "$k")"
done
echo "(v2 VM: Debian's 6.1 kernel, cgroup_no_v1=all, $(grep -qwE 'vmx|svm' /proc/cpuinfo && [ -c /dev/kvm ] && echo KVM || echo TCG); absolute times are the VM's, compare the ratios)"
