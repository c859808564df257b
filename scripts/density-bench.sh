#!/usr/bin/env bash
# Density figures of issue 14: N running networked slices (busybox init + one sleeping
# service each) under a private daemon — node memory per slice, daemon RSS, shim and view
# server PSS, create rate, API latency at N, idle CPU, destroy-all time — then a leak check.
# Run by scripts/bench.sh (section "density"); standalone:
#   scripts/density-bench.sh [BIN_DIR]
# Environment: BENCH_DENSITY_N (default 1000; at most 1023: a Linux bridge has 1024 ports, one
# is the node's), BENCH_DENSITY_CLIENTS (parallel creates, default 8), BENCH_DENSITY_IDLE_SECS
# (default 30), BENCH_DENSITY_SUBNET (default 10.216.0.0/21).
#
# Everything it makes carries its own names (state root /tmp/vslice-bench-density-PID, cgroup
# parent vslice-bench-densityPID, bridge vstdPID, veth prefix vstvPID, nft table vslice_tdPID; PID mod 10000)
# and is removed on exit, also when interrupted or when the measurement fails.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(cd "${1:-target/release}" && pwd)
N=${BENCH_DENSITY_N:-1000}
if [ "$N" -gt 1023 ]; then
	echo "density-bench: BENCH_DENSITY_N=$N: a bridge has at most 1024 ports (1023 slices)" >&2
	exit 2
fi
tag=$(printf %04d $(( $$ % 10000 )))
export DENSITY_ROOT=/tmp/vslice-bench-density-$$
export DENSITY_CGROUP=vslice-bench-density$$
export VSLICE_BRIDGE=vstd$tag
export VSLICE_VETH_PREFIX=vstv$tag
export VSLICE_NFT_TABLE=vslice_td$tag
export VSLICE_SUBNET=${BENCH_DENSITY_SUBNET:-10.216.0.0/21}
export VSLICE_BIN_DIR=$BIN
BPID=

cleanup() {
	set +e
	if [ -n "$BPID" ]; then
		kill "$BPID" 2>/dev/null
		wait "$BPID" 2>/dev/null
	fi
	# The private daemon and every shim of this state root (by PID, from their command line).
	for p in $(ps -ww -eo pid=,args= | grep -F -- "--root $DENSITY_ROOT" | grep -v grep | awk '{print $1}'); do
		kill -9 "$p" 2>/dev/null
	done
	# Slices' processes, by cgroup, then the cgroups (deepest first).
	for d in /sys/fs/cgroup/*/"$DENSITY_CGROUP" /sys/fs/cgroup/"$DENSITY_CGROUP"; do
		[ -d "$d" ] || continue
		for _ in 1 2 3 4 5; do
			pids=$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)
			[ -z "$pids" ] && break
			kill -9 $pids 2>/dev/null
			sleep 0.2
		done
	done
	for d in /sys/fs/cgroup/*/"$DENSITY_CGROUP" /sys/fs/cgroup/"$DENSITY_CGROUP"; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	# Mounts under the state root (slice roots, views), then the node network by its names.
	awk -v r="$DENSITY_ROOT" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null
	done
	ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 \
		| grep -E "^($VSLICE_VETH_PREFIX[0-9]|$VSLICE_BRIDGE)" | while read -r l; do
		ip link del "$l" 2>/dev/null
	done
	for f in bridge inet; do nft delete table "$f" "$VSLICE_NFT_TABLE" 2>/dev/null; done
	rm -rf "$DENSITY_ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "limits: bridge ports 1024; fs.inotify.max_user_watches $(cat /proc/sys/fs/inotify/max_user_watches); kernel.pid_max $(cat /proc/sys/kernel/pid_max); nofile $(ulimit -n); MemAvailable $(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo) MiB"
if [ -x "$BIN/examples/density_bench" ]; then
	"$BIN/examples/density_bench" &
else
	cargo run --profile "${CARGO_PROFILE:-release}" -q -p vslice --example density_bench &
fi
BPID=$!
rc=0
wait "$BPID" || rc=$?
BPID=
cleanup
trap - EXIT
bash scripts/leak-check.sh
exit "$rc"
