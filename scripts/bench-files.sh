#!/usr/bin/env bash
# Figures of issue 11 (images, files): Debian image build time and size, create-to-running of a
# Debian slice against a busybox one, `vslice cp` of a large file into and out of a slice
# against `cp` on the host. Run by scripts/bench.sh (section "files"); standalone:
#   scripts/bench-files.sh BIN_DIR
# Environment: BENCH_CP_MB (file size for the cp figures, default 1024), BENCH_DEBIAN_BUILD=0
# (skip the image build figure, which takes a minute or two and fetches from the mirror).
#
# A private daemon (state root /tmp/vslice-bench-files-PID, cgroup parent vslice-bench-filesPID,
# its own sockets), removed with everything it made on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(cd "${1:-target/release}" && pwd)
IMAGES=${VSLICE_TEST_IMAGES:-/tmp/vslice-test-images}
CACHE=/var/cache/vslice/images/debian/rootfs
ROOT=/tmp/vslice-bench-files-$$
CG=vslice-bench-files$$
SOCK=$ROOT/api.sock
DPID=
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

cleanup() {
	set +e
	if [ -n "$DPID" ]; then
		for s in bb deb; do VSLICE_SOCKET=$SOCK "$BIN/vslice" rm "$s" >/dev/null 2>&1; done
		kill "$DPID" 2>/dev/null
		wait "$DPID" 2>/dev/null
	fi
	# The daemon's cgroup parent in every hierarchy (slices' cgroups below it first).
	for d in /sys/fs/cgroup/*/"$CG" /sys/fs/cgroup/"$CG"; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	rm -rf "$ROOT" "$ROOT.build" "$ROOT.log"
}
trap cleanup EXIT

# 1. The Debian image: a fresh build (not the cache) and its size.
if [ "${BENCH_DEBIAN_BUILD:-1}" != 0 ]; then
	t=$(date +%s%N)
	sh images/debian/build.sh "$ROOT.build/debian/rootfs" >/dev/null 2>&1
	echo "debian image build (mmdebstrap, bookworm):  $(ms "$t") ms, $(du -sm "$ROOT.build/debian/rootfs" | cut -f1) MB"
	rm -rf "$ROOT.build"
fi

# The daemon, with the test images (busybox; debian copied from the cache when missing).
[ -x "$IMAGES/busybox/rootfs/bin/busybox" ] || bash images/busybox/build.sh "$IMAGES/busybox/rootfs" >/dev/null
if [ ! -d "$IMAGES/debian/rootfs" ]; then
	sh images/debian/build.sh --if-stale "$CACHE" >/dev/null
	mkdir -p "$IMAGES/debian"
	cp -a --reflink=auto "$CACHE" "$IMAGES/debian/rootfs.tmp.$$" && mv -T "$IMAGES/debian/rootfs.tmp.$$" "$IMAGES/debian/rootfs"
fi
mkdir -p "$ROOT"
ln -s "$IMAGES" "$ROOT/images"
"$BIN/vsliced" --root "$ROOT" --socket "$SOCK" --user-socket "" --cgroup-parent "$CG" \
	--policy-dir "$PWD/policies" --shim "$BIN/vslice-shim" >"$ROOT.log" 2>&1 &
DPID=$!
export VSLICE_SOCKET=$SOCK
for _ in $(seq 100); do "$BIN/vslice" ls >/dev/null 2>&1 && break; sleep 0.1; done

# 2. create-to-running (the CLI returns once init runs), best of 5 each.
best() {
	local image=$1 name=$2 b=999999 t v
	for _ in 1 2 3 4 5; do
		t=$(date +%s%N)
		"$BIN/vslice" create "$name" --image "$image" >/dev/null
		v=$(ms "$t")
		[ "$v" -lt "$b" ] && b=$v
		"$BIN/vslice" rm "$name" >/dev/null
	done
	echo "$b"
}
bb=$(best busybox bb)
deb=$(best debian deb)
echo "create-to-running, best of 5:  busybox $bb ms, debian $deb ms"

# 3. vslice cp of a large file, in and out, against cp on the host (same file system: /tmp).
MB=${BENCH_CP_MB:-1024}
"$BIN/vslice" create deb --image debian >/dev/null
dd if=/dev/urandom of="$ROOT/big" bs=1M count="$MB" status=none
sync
t=$(date +%s%N); cp "$ROOT/big" "$ROOT/big.copy"; sync; host=$(ms "$t")
t=$(date +%s%N); "$BIN/vslice" cp "$ROOT/big" deb:/root/big >/dev/null 2>&1; sync; cin=$(ms "$t")
mkdir -p "$ROOT/out"
t=$(date +%s%N); "$BIN/vslice" cp deb:/root/big "$ROOT/out/" >/dev/null 2>&1; sync; cout=$(ms "$t")
[ "$(sha256sum <"$ROOT/big")" = "$(sha256sum <"$ROOT/out/big")" ] || { echo "vslice cp: the copied-out file differs" >&2; exit 1; }
echo "copy of ${MB} MB:  host cp $host ms, vslice cp in $cin ms, vslice cp out $cout ms"
