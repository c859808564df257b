#!/usr/bin/env bash
# Image and snapshot figures (a section of scripts/bench.sh):
#   * OCI import time of the busybox image (and the Debian image when it is built) as an
#     oci-archive, made locally with umoci and skopeo;
#   * clone time of a slice with BENCH_CLONE_MB (default 256) MB of changes in its upper layer.
# Runs vslice in direct mode on a private state root; nothing is started (no cgroups, no shim).
#   scripts/bench-images.sh BIN_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(cd "${1:-target/release}" && pwd)
IMAGES=${VSLICE_TEST_IMAGES:-/tmp/vslice-test-images}
W=$(mktemp -d /tmp/vslice-bench-images.XXXXXX)
trap 'rm -rf "$W"' EXIT
export VSLICE_DIRECT=1 VSLICE_ROOT="$W/root" VSLICE_POLICY_DIR="$PWD/policies"
export VSLICE_CGROUP_PARENT="vslice-bench-images$$"
mkdir -p "$W/root/images"
cp -a "$IMAGES/busybox" "$W/root/images/"
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

debian="${IMAGES}/debian/rootfs"
[ -d "$debian" ] || debian=/var/cache/vslice/images/debian/rootfs
for img in busybox debian; do
  src="$IMAGES/busybox/rootfs"
  if [ "$img" = debian ]; then
    [ -d "$debian" ] || { echo "import debian: skipped (image not built: make images)"; continue; }
    src=$debian
  fi
  umoci init --layout "$W/layout-$img" >/dev/null
  umoci new --image "$W/layout-$img:t" >/dev/null
  umoci insert --image "$W/layout-$img:t" "$src" / >/dev/null
  skopeo copy --quiet "oci:$W/layout-$img:t" "oci-archive:$W/$img.tar:t"
  size=$(du -m "$W/$img.tar" | cut -f1)
  t0=$(date +%s%N)
  "$BIN/vslice" image import "$W/$img.tar" --name "bench-$img" >/dev/null
  echo "import $img (oci-archive, ${size} MB): $(ms "$t0") ms"
done

mb=${BENCH_CLONE_MB:-256}
"$BIN/vslice" create bench-src --no-start >/dev/null
base=$("$BIN/vslice" --json inspect bench-src | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["uid_base"])')
upper="$W/root/slices/bench-src/fs/upper"
mkdir -p "$upper/data"
for i in $(seq 1 $((mb / 16))); do head -c $((16 << 20)) /dev/urandom > "$upper/data/f$i"; done
chown -R "$base:$base" "$upper/data"
sync
t0=$(date +%s%N)
"$BIN/vslice" clone bench-src bench-dst >/dev/null
echo "clone of a slice with ${mb} MB of changes: $(ms "$t0") ms"
t0=$(date +%s%N)
"$BIN/vslice" export bench-src "$W/export.tar.zst" >/dev/null
echo "export of the same slice: $(ms "$t0") ms ($(du -m "$W/export.tar.zst" | cut -f1) MB)"
