#!/bin/sh
# The peer side of `make bench`: crun, runc and plain `unshare` figures measured in the same
# run as vslice's, on the same rootfs, so vslice's numbers can be given as ratios.
#
#   bench/peers.sh ROOTFS N          e.g. bench/peers.sh /var/lib/vslice/images/busybox/rootfs 100
#
# Prints (stdout, one line per figure; diagnostics go to stderr):
#   peer crun run_true_ms median=14.2 p99=18.0 n=100
#   peer crun run_true_userns_ms median=16.0 p99=20.3 n=100   (+ user namespace, as a slice)
#   peer runc run_true_ms median=44.0 p99=52.1 n=100
#   peer runc run_true_userns_ms median=47.0 p99=55.0 n=100
#   peer unshare userns_fork_true_ms median=4.4 p99=6.0 n=100
# A peer that fails prints `peer NAME run_true_ms error="..."` and the script exits 1.
#
# How (see DESIGN.md, "Peers on this machine"):
# * needs crun and runc (Debian packages, installed by `make deps`);
# * builds an OCI bundle in a private temp dir: a `cp -a` copy of ROOTFS (runc rejects a
#   rootfs path that is a symlink, and a copy needs no bind mount to clean up; the busybox
#   image is ~2 MB) and `crun spec` edited to run /bin/true, no terminal, read-only root;
# * every container gets a unique ID, the absolute cgroupsPath /vslice-bench/ID and state in
#   a --root dir inside the temp dir (never /run/crun or /run/runc);
# * all peers run inside ONE private mount namespace in which /sys/fs/cgroup/unified is
#   unmounted (crun 1.8 refuses the hybrid cgroup layout otherwise; runc runs the same way
#   so both see v1 only). The namespace is set up once, outside the timed region: a timed
#   cycle is exactly `run` + `delete`;
# * leaves nothing behind, even on failure or Ctrl-C: containers are `delete -f`'d, the
#   /sys/fs/cgroup/*/vslice-bench cgroups it caused are removed (deepest first), the temp
#   dir is removed. Stops only processes it started, by PID.
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 ROOTFS N" >&2
	exit 2
fi
ROOTFS=$1
N=$2
case $N in
'' | *[!0-9]*)
	echo "$0: N must be a positive integer" >&2
	exit 2
	;;
esac
[ "$N" -ge 1 ] || {
	echo "$0: N must be >= 1" >&2
	exit 2
}
if [ "$(id -u)" != 0 ]; then
	echo "$0: must run as root" >&2
	exit 1
fi
if [ ! -d "$ROOTFS" ] || [ ! -x "$ROOTFS/bin/true" ]; then
	echo "$0: $ROOTFS is not a rootfs with /bin/true" >&2
	exit 1
fi
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python3}
export LC_ALL=C

# --- peers installed? --------------------------------------------------------------------
# They come from deps/packages.txt through `make deps` (which `make bench` runs first), like
# every other program; no second install list here.
missing=
for p in crun runc; do command -v "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
	echo "$0:$missing not found: run \`make deps\` (Debian packages from deps/packages.txt)" >&2
	exit 1
fi
echo "# $(crun --version | head -n1); $(runc --version | head -n1)" >&2

# --- cleanup, armed before anything is created -------------------------------------------
PREFIX=vslice-bench-$$
WORK=$(mktemp -d /tmp/vslice-bench.XXXXXX)
DRIVER=
# shellcheck disable=SC2317,SC2016 # invoked via trap; the sh -c script expands its own args
cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	# The driver, if still running (interrupted), is stopped by its PID.
	if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
		kill -TERM "$DRIVER" 2>/dev/null || true
		wait "$DRIVER" 2>/dev/null || true
	fi
	# Any container left in our private state roots: delete -f, in the same kind of mount
	# namespace the containers were created in (crun refuses the hybrid layout otherwise).
	unshare -m --propagation private sh -c '
		umount /sys/fs/cgroup/unified 2>/dev/null
		for peer in crun runc; do
			root=$1/$peer-root
			[ -d "$root" ] || continue
			for d in "$root"/"$2"-*; do
				[ -e "$d" ] || continue
				"$peer" --root "$root" delete -f "$(basename "$d")" >/dev/null 2>&1
			done
		done
		true' sh "$WORK" "$PREFIX" || true
	# Cgroups this run caused: /sys/fs/cgroup/<hierarchy>/vslice-bench/<PREFIX>-*, deepest
	# first, then the shared parent if it is now empty (another run may still use it).
	for parent in /sys/fs/cgroup/*/vslice-bench; do
		[ -d "$parent" ] || continue
		for cg in "$parent/$PREFIX"-*; do
			[ -d "$cg" ] || continue
			find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
		done
		rmdir "$parent" 2>/dev/null || true
	done
	# The temp dir, unless something is still mounted under it.
	if grep -q " ${WORK}[/ ]" /proc/self/mounts; then
		echo "$0: something is still mounted under $WORK; not removing it" >&2
		[ "$rc" != 0 ] || rc=1
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- the bundle --------------------------------------------------------------------------
# The user-namespace runs' mapped root (an unprivileged host uid) must traverse the bundle.
chmod 0755 "$WORK"
mkdir "$WORK/bundle" "$WORK/crun-root" "$WORK/runc-root"
# Contents of ROOTFS/. (ROOTFS itself may be a symlink; the copy is a real directory).
mkdir "$WORK/bundle/rootfs"
cp -a "$ROOTFS/." "$WORK/bundle/rootfs/"
(cd "$WORK/bundle" && crun spec)
"$PYTHON" - "$WORK/bundle/config.json" <<'EOF'
import json, sys
path = sys.argv[1]
with open(path) as f:
    c = json.load(f)
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["process"]["env"] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
c["root"] = {"path": "rootfs", "readonly": True}
c["hostname"] = "vslice-bench"
c["linux"]["cgroupsPath"] = "/vslice-bench/placeholder"  # set per container by peers.py
with open(path, "w") as f:
    json.dump(c, f, indent=1)
EOF

# --- measure -----------------------------------------------------------------------------
# One private mount namespace for all peers; `exec` so the driver's PID is unshare's child's.
VSLICE_BENCH_PREFIX=$PREFIX unshare -m --propagation private sh -c '
	umount /sys/fs/cgroup/unified 2>/dev/null || true
	exec "$@"' sh "$PYTHON" "$HERE/peers.py" "$WORK" "$N" &
DRIVER=$!
set +e
wait "$DRIVER"
status=$?
set -e
DRIVER=
exit "$status"
