#!/usr/bin/env bash
# `make bench`: the figures every issue asks for, each peer measured in the same run.
#   scripts/bench.sh BIN_DIR
# Environment: BENCH_N (slices for the sandbox figures, default 100), BENCH_SLICES and
# BENCH_CYCLES (daemon RSS figures, default 1000 and 1000), BENCH_SKIP (space-separated
# sections to skip: sandbox daemon net netcreate oci ssh files images acct views disk density v2),
# CARGO_PROFILE (the Cargo profile of BIN_DIR and of the bench programs, default release;
# `make bench PROFILE=ci` measures make test's build, without cross-crate LTO).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release}
export VSLICE_BIN_DIR=$(cd "$BIN" && pwd)
export VSLICE_TEST_IMAGES=${VSLICE_TEST_IMAGES:-/tmp/vslice-test-images}
[ -x "$VSLICE_TEST_IMAGES/busybox/rootfs/bin/busybox" ] || bash images/busybox/build.sh "$VSLICE_TEST_IMAGES/busybox/rootfs" >/dev/null
skip() { [[ " ${BENCH_SKIP:-} " == *" $1 "* ]]; }
section() { printf '\n== %s ==\n' "$1"; }

if ! skip sandbox; then
  section "slice sandbox (create-and-start, exec, shim PSS; crun and runc on the same rootfs)"
  cargo run --profile "${CARGO_PROFILE:-release}" -q -p vslice-integration --example slice_bench -- "${BENCH_N:-100}"
fi
if ! skip daemon; then
  section "node daemon (API throughput, latency, RSS)"
  cargo run --profile "${CARGO_PROFILE:-release}" -q -p vslice --example daemon_bench -- --slices "${BENCH_SLICES:-1000}" --cycles "${BENCH_CYCLES:-1000}"
fi
if ! skip net; then
  section "networking (measured over configured rate, fairness, shaping cost)"
  cargo run --profile "${CARGO_PROFILE:-release}" -q -p vslice --example net_bench
fi
if ! skip netcreate; then
  section "networked create (attach cost at 10/100/1000 slices, create-to-running bridged vs unnetworked vs crun)"
  cargo run --profile "${CARGO_PROFILE:-release}" -q -p vslice --example netcreate_bench -- "${BENCH_N:-100}" "${BENCH_NET_SLICES:-1000}"
fi
if ! skip oci && [ -f runtime/examples/oci_bench.rs ]; then
  section "OCI runtime (vslice-runc vs crun vs runc, full lifecycle of /bin/true)"
  cargo run --profile "${CARGO_PROFILE:-release}" -q -p vslice --example oci_bench
fi
if ! skip ssh; then
  section "SSH access (ssh NAME@node true latency, scp 100 MB; a plain host account in the same run)"
  bash scripts/ssh_bench.sh "$BIN"
fi
if ! skip files; then
  section "images and files (Debian image build, create-to-running debian vs busybox, vslice cp vs cp)"
  bash scripts/bench-files.sh "$BIN"
fi
if ! skip images; then
  section "images and snapshots (OCI import as oci-archive, clone of a slice with changes)"
  bash scripts/bench-images.sh "$BIN"
fi
if ! skip acct; then
  section "accountability (flow log cost on iperf3 and connections/s, loss at a burst, who latency)"
  cargo run --profile "${CARGO_PROFILE:-release}" -q -p vslice --example acct_bench
fi
if ! skip views; then
  section "slice views (/proc/meminfo reads per second through the view server)"
  cargo run --profile "${CARGO_PROFILE:-release}" -q -p vslice --example views_bench
fi
if ! skip disk; then
  section "disk (dd in a slice with a disk quota vs the host: loop image and project quota)"
  out=$(bash scripts/disk-bench.sh "$BIN")
  echo "$out"
  # This host's kernel cannot mount prjquota: the project-quota figure comes from the v2 VM.
  if grep -q "project quota: SKIPPED" <<<"$out"; then bash scripts/v2vm/disk-bench.sh "$BIN"; fi
fi
if ! skip density; then
  section "density (N running networked slices: memory per slice, PSS, create rate, API at N, idle CPU, destroy-all)"
  cargo build --profile "${CARGO_PROFILE:-release}" -q -p vslice --example density_bench
  bash scripts/density-bench.sh "$BIN"
fi
if ! skip v2; then
  section "v2: slice sandbox figures in a pure cgroup v2 VM beside this v1 host (ratios compare)"
  bash scripts/v2vm/bench.sh "$BIN"
fi
bash scripts/leak-check.sh
