#!/usr/bin/env bash
# The clean-root rehearsal: run .ci/run (or another command) of a checkout on a Debian 12
# root filesystem where nothing was installed by hand, to prove that `make deps` +
# deps/packages.txt are all a fresh machine needs.
#
#   scripts/ci-clean-root.sh [--rebuild] [--fresh-clone] [CHECKOUT] [-- COMMAND ARGS...]
#
#   CHECKOUT       the tree to run (default: the one this script is in); bind-mounted
#                  read-write at the same path inside
#   --fresh-clone  run on a `git clone` of CHECKOUT's HEAD made inside the throwaway root
#                  instead (committed files only, no target/: what CI gets)
#   --rebuild      build the cached base root again
#   COMMAND        default `bash .ci/run`, run in the checkout; e.g. a quick try:
#                  -- bash -c 'make deps && cargo build --release --workspace --bins'
#
# Environment: VSLICE_CI_CACHE (default /var/cache/vslice-ci), VSLICE_CI_VARIANT (mmdebstrap
# variant, default minbase: Essential + Priority required + apt, smaller than a fresh VM, so
# that every package the project needs must come from the list), VSLICE_CI_MIRROR (default
# http://deb.debian.org/debian), VSLICE_CI_SECURITY (default
# http://deb.debian.org/debian-security), VSLICE_CI_WORK (where the throwaway copy goes,
# default /var/tmp; needs ~1.5 GB for deps and a build).
#
# How:
# 1. The base root is built once with mmdebstrap (Debian bookworm, the variant above) into
#    $VSLICE_CI_CACHE/bookworm-<variant> and reused. Like this machine's apt, it does not
#    check Release files' Valid-Until (the mirror may serve a snapshot).
# 2. Each run works on a throwaway `cp -a` of it (a real ext4/xfs directory like a VM's
#    root: tests put overlayfs upper dirs in it, which an overlayfs root would refuse), with
#    the host's /etc/resolv.conf (apt needs DNS).
# 3. The command runs as PID 1's child in new mount, PID, UTS and IPC namespaces (`unshare`),
#    pivot_root'ed into the copy (a chroot would forbid user namespaces), with: a fresh /proc
#    (of the new PID namespace); /sys (with
#    /sys/fs/cgroup: the slices' cgroups are real) and /dev bound from the host; a fresh
#    tmpfs /run; /lib/modules bound read-only (module autoload); the host's network
#    namespace (apt reaches the registry; tests make their own netns/veths/bridges); the Rust
#    toolchain bound in ($CARGO_HOME and $RUSTUP_HOME: a prerequisite, not a Debian package);
#    env -i with HOME=/root, CI=true, a standard root PATH plus cargo's bin dir, stdin
#    /dev/null (as CI runs .ci/run).
# 4. Everything it mounted lives only in that mount namespace: it goes away when the command
#    ends, and the PID namespace ends any process left behind. Then the copy is removed
#    (after checking that nothing is mounted under it). Stops only what it started, by PID.
set -euo pipefail

REBUILD=0
FRESH=0
CHECKOUT=""
while [ $# -gt 0 ]; do
  case $1 in
    --rebuild) REBUILD=1; shift ;;
    --fresh-clone) FRESH=1; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,40p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "ci-clean-root: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$CHECKOUT" ] || { echo "ci-clean-root: one CHECKOUT only" >&2; exit 2; }
       CHECKOUT=$1; shift ;;
  esac
done
[ $# -gt 0 ] || set -- bash .ci/run
CHECKOUT=$(cd "${CHECKOUT:-$(dirname "${BASH_SOURCE[0]}")/..}" && pwd)
[ -f "$CHECKOUT/.ci/run" ] || { echo "ci-clean-root: $CHECKOUT has no .ci/run" >&2; exit 2; }

CACHE=${VSLICE_CI_CACHE:-/var/cache/vslice-ci}
VARIANT=${VSLICE_CI_VARIANT:-minbase}
MIRROR=${VSLICE_CI_MIRROR:-http://deb.debian.org/debian}
SECURITY=${VSLICE_CI_SECURITY:-http://deb.debian.org/debian-security}
WORKDIR=${VSLICE_CI_WORK:-/var/tmp}
BASE=$CACHE/bookworm-$VARIANT

[ "$(id -u)" = 0 ] || { echo "ci-clean-root: run as root (mounts, namespaces, pivot_root)" >&2; exit 1; }
for p in mmdebstrap unshare pivot_root mount; do
  command -v "$p" >/dev/null 2>&1 || { echo "ci-clean-root: $p not found: run \`make deps\` (deps/packages.txt)" >&2; exit 1; }
done
[ "$FRESH" = 0 ] || command -v git >/dev/null 2>&1 || { echo "ci-clean-root: --fresh-clone needs git (make deps)" >&2; exit 1; }
# The toolchain: where cargo lives (rustup's layout: $CARGO_HOME/bin/cargo).
cargo_bin=$(command -v cargo || true)
[ -n "$cargo_bin" ] || { echo "ci-clean-root: cargo not found: the Rust toolchain is a prerequisite" >&2; exit 1; }
CARGO_HOME_DIR=${CARGO_HOME:-$(dirname "$(dirname "$(readlink -f "$cargo_bin")")")}
RUSTUP_HOME_DIR=${RUSTUP_HOME:-${HOME:-/root}/.rustup}
# cargo is normally rustup's proxy; the real toolchains are under RUSTUP_HOME.
[ -d "$RUSTUP_HOME_DIR" ] || RUSTUP_HOME_DIR=""

under_mount() { grep -q " $1[/ ]" /proc/self/mounts; }

# --- 1. the cached base root ----------------------------------------------------------------
if [ "$REBUILD" = 1 ] || [ ! -x "$BASE/usr/bin/apt-get" ]; then
  mkdir -p "$CACHE"
  tmp=$BASE.tmp.$$
  # mmdebstrap mounts /proc, /sys, /dev in the target while it runs and unmounts them; if it
  # is killed, never rm -rf through a leftover mount.
  trap 'if ! under_mount "$tmp"; then rm -rf --one-file-system "$tmp"; fi' EXIT
  echo "ci-clean-root: building the base root ($VARIANT) in $BASE" >&2
  t0=$SECONDS
  mmdebstrap --mode=root --variant="$VARIANT" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    bookworm "$tmp" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY bookworm-security main"
  # Empty the package lists: a fresh machine starts without them (make deps runs update).
  rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/cache/apt/*.bin
  under_mount "$tmp" && { echo "ci-clean-root: mmdebstrap left mounts under $tmp" >&2; exit 1; }
  rm -rf --one-file-system "$BASE"
  mv -T "$tmp" "$BASE"
  trap - EXIT
  echo "ci-clean-root: base root built in $((SECONDS - t0)) s ($(du -sh "$BASE" | cut -f1))" >&2
fi

# --- 2. the throwaway copy ------------------------------------------------------------------
ROOT=$(mktemp -d "$WORKDIR/vslice-ci-root.XXXXXX")
child=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    # Interrupted: unshare (with --fork) ignores TERM and INT while it waits, and the
    # namespace's PID 1 (unshare's child) ignores signals it has no handler for, except
    # KILL from this (the parent) namespace. Killing that PID 1 ends every process in the
    # namespace; then unshare exits.
    for p in $(cat "/proc/$child/task/$child/children" 2>/dev/null); do
      kill -KILL "$p" 2>/dev/null || true
    done
    wait "$child" 2>/dev/null || true
  fi
  if under_mount "$ROOT"; then
    echo "ci-clean-root: something is still mounted under $ROOT; not removing it" >&2
    [ "$rc" != 0 ] || rc=1
  else
    rm -rf --one-file-system "$ROOT"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
chmod 0755 "$ROOT"
cp -a "$BASE/." "$ROOT/"
rm -f "$ROOT/etc/resolv.conf"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"

if [ "$FRESH" = 1 ]; then
  RUNDIR=/src/vslice
  git clone --quiet --no-hardlinks "$CHECKOUT" "$ROOT$RUNDIR"
  BIND_CHECKOUT=""
else
  RUNDIR=$CHECKOUT
  BIND_CHECKOUT=$CHECKOUT
fi

PATH_IN="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PATH_IN="$CARGO_HOME_DIR/bin:$PATH_IN"

# --- 3. the container -----------------------------------------------------------------------
# Runs as PID 1 of the new PID namespace, in the new mount namespace (private propagation:
# nothing here is seen by, or propagates back to, the host). The last bash stays PID 1 (the
# `; exit` keeps it from exec'ing the command) so that the command runs with default signal
# handling and orphans are reaped.
# shellcheck disable=SC2016 # expanded by the inner bash
inner='
set -eu
R=$1 checkout=$2 cargo_home=$3 rustup_home=$4 rundir=$5 path_in=$6
shift 6
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$R/run"
mkdir -p "$R/usr/lib/modules"
if [ -d /lib/modules ]; then mount --bind -o ro /lib/modules "$R/usr/lib/modules"; fi
for d in "$cargo_home" "$rustup_home" "$checkout"; do
  [ -n "$d" ] || continue
  mkdir -p "$R$d"
  mount --bind "$d" "$R$d"
done
# pivot_root, not chroot: the kernel refuses to create a user namespace (unprivileged, as
# the network tests and slices do) for a process whose root is not its mount namespace
# root (a chroot).
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
# From here on, programs come from the clean root.
umount -l /.oldroot
rmdir /.oldroot
exec /usr/bin/env -i HOME=/root USER=root LOGNAME=root CI=true \
  PATH="$path_in" LANG=C.UTF-8 TERM="${TERM:-dumb}" \
  /bin/bash -c "cd \"\$0\" && \"\$@\"; exit \$?" "$rundir" "$@"
'
echo "ci-clean-root: running \`$*\` in $RUNDIR on a copy of $BASE" >&2
t0=$SECONDS
set +e
# --fork: the inner shell is PID 1 of the new namespace (needed to mount its /proc);
# --kill-child: if unshare dies, so does that PID 1 and with it the whole namespace.
unshare --mount --pid --uts --ipc --fork --kill-child --propagation private \
  bash -c "$inner" inner "$ROOT" "$BIND_CHECKOUT" "$CARGO_HOME_DIR" "$RUSTUP_HOME_DIR" \
  "$RUNDIR" "$PATH_IN" "$@" </dev/null &
child=$!
wait "$child"
rc=$?
child=""
set -e
echo "ci-clean-root: \`$*\` exited $rc after $((SECONDS - t0)) s" >&2
exit "$rc"
