#!/usr/bin/env bash
# vslice demo (run by `make demo`): start vsliced unless one already serves the socket, create a
# limited slice `demo` through the CLI, then
#   - with a terminal on stdin: open a root shell in it (`vslice enter demo`);
#   - without one: a short showcase (who you are inside, what the host sees, attacks that
#     fail, the limits).
# Afterwards the slice is destroyed and the daemon this script started is stopped (by PID).
#
#   scripts/demo.sh BIN_DIR      BIN_DIR holds vslice, vsliced and vslice-shim
#
# Environment: DEMO_ROOT (state root, default /var/lib/vslice; the busybox image must be in
# $DEMO_ROOT/images/busybox, which `make image` builds), DEMO_SOCKET (default
# /run/vslice/vslice.sock).
set -euo pipefail

BIN_DIR=$(cd "${1:?usage: scripts/demo.sh BIN_DIR}" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${DEMO_ROOT:-/var/lib/vslice}
SOCK=${DEMO_SOCKET:-/run/vslice/vslice.sock}
NAME=demo
CGROUP_PARENT=vslice
VSLICE="$BIN_DIR/vslice"
export VSLICE_SOCKET="$SOCK"
unset VSLICE_DIRECT

daemon_pid=""       # the vsliced this script started, if any
made_run_dir=""     # the socket directory, if this script made it
slice_made=""
log=$(mktemp /tmp/vslice-demo-vsliced.XXXXXX.log)

if [ -t 1 ]; then B=$'\e[1m'; N=$'\e[0m'; else B=""; N=""; fi
heading() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
say() { printf '%s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

for b in vslice vsliced vslice-shim; do
  [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b not found: build first (make build)"
done
[ "$(id -u)" = 0 ] || die "run as root (the daemon creates cgroups, namespaces and mounts)"
[ -x "$ROOT/images/busybox/rootfs/bin/busybox" ] ||
  die "no busybox image under $ROOT/images: run \`make image\` (or make demo)"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$slice_made" ]; then
    if ! "$VSLICE" rm "$NAME" >/dev/null 2>&1; then
      # The daemon is gone: remove the slice without it (recovery mode).
      VSLICE_DIRECT=1 VSLICE_ROOT="$ROOT" VSLICE_POLICY_DIR="$REPO/policies" \
        VSLICE_CGROUP_PARENT="$CGROUP_PARENT" VSLICE_SHIM="$BIN_DIR/vslice-shim" "$VSLICE" rm "$NAME" >/dev/null 2>&1 || true
    fi
  fi
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$daemon_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$daemon_pid" 2>/dev/null; then
      kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    wait "$daemon_pid" 2>/dev/null || true
    [ -n "$made_run_dir" ] && rmdir "$made_run_dir" 2>/dev/null || true
    # The daemon leaves the (now empty) cgroup parent; rmdir refuses one still in use.
    for d in /sys/fs/cgroup/*/"$CGROUP_PARENT" /sys/fs/cgroup/"$CGROUP_PARENT"; do
      [ -d "$d" ] && rmdir "$d" 2>/dev/null || true
    done
    say "demo: slice $NAME destroyed, vsliced (pid $daemon_pid) stopped"
  elif [ -n "$slice_made" ]; then
    say "demo: slice $NAME destroyed (vsliced was already running and keeps running)"
  fi
  if [ "$rc" != 0 ] && [ -s "$log" ]; then
    printf 'demo: failed (exit %s); last lines of the vsliced log:\n' "$rc" >&2
    tail -n 20 "$log" >&2
  fi
  rm -f "$log"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the daemon ----------------------------------------------------------------------------
set +e
"$VSLICE" ls >/dev/null 2>&1
probe=$?
set -e
case $probe in
  0) say "demo: using the vsliced already running on $SOCK" ;;
  6)
    run_dir=$(dirname "$SOCK")
    if [ ! -d "$run_dir" ]; then mkdir -p "$run_dir"; made_run_dir=$run_dir; fi
    mkdir -p "$ROOT"
    say "demo: starting vsliced (state $ROOT, socket $SOCK, log $log)"
    "$BIN_DIR/vsliced" --root "$ROOT" --socket "$SOCK" --policy-dir "$REPO/policies" \
      --shim "$BIN_DIR/vslice-shim" --cgroup-parent "$CGROUP_PARENT" --no-autostart \
      </dev/null >"$log" 2>&1 &
    daemon_pid=$!
    for i in $(seq 1 300); do
      "$VSLICE" ls >/dev/null 2>&1 && break
      kill -0 "$daemon_pid" 2>/dev/null || { wait "$daemon_pid" || true; daemon_pid=""; die "vsliced exited at start-up"; }
      [ "$i" = 300 ] && die "vsliced did not answer on $SOCK within 30 s"
      sleep 0.1
    done
    say "demo: vsliced is up (pid $daemon_pid)"
    ;;
  *) "$VSLICE" ls || true; die "cannot talk to the vsliced on $SOCK (exit $probe)" ;;
esac

# --- the slice -----------------------------------------------------------------------------
set +e
"$VSLICE" rm "$NAME" >/dev/null 2>&1
rc=$?
set -e
case $rc in
  0) say "demo: removed an old slice $NAME" ;;
  3) ;;
  *) die "could not remove the old slice $NAME (exit $rc)" ;;
esac
slice_made=1
"$VSLICE" create "$NAME" --image busybox --memory 256M --cpus 0.5 --pids 256

info=$("$VSLICE" inspect "$NAME" --json)
json_num() { printf '%s\n' "$info" | sed -n "s/^ *\"$1\": *\([0-9][0-9]*\).*/\1/p" | head -n 1; }
init_pid=$(json_num init_pid)
uid_base=$(json_num uid_base)

# --- interactive ---------------------------------------------------------------------------
if [ -t 0 ]; then
  heading "You are root in slice $NAME (host uid $uid_base); limits: 256M memory, 0.5 CPU, 256 processes"
  say "Try: id; ps; hostname; cat /proc/self/uid_map; mount; insmod x.ko. Leave with exit (or Ctrl-D)."
  "$VSLICE" enter "$NAME" || true
  exit 0
fi

# --- showcase without a terminal -----------------------------------------------------------
in_slice() {
  printf '%s$ %s%s\n' "$B" "$*" "$N"
  "$VSLICE" exec "$NAME" -- /bin/sh -c "$*" 2>&1 || true
}

# Run an attack inside; it must fail.
attack() {
  local what=$1 cmd=$2 out rc
  printf '%s$ %s%s   # %s\n' "$B" "$cmd" "$N" "$what"
  set +e
  out=$("$VSLICE" exec "$NAME" -- /bin/sh -c "$cmd" 2>&1)
  rc=$?
  set -e
  [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/  /'
  if [ "$rc" = 0 ]; then
    die "UNEXPECTED: the attack succeeded: $cmd"
  fi
  say "  -> refused (exit $rc)"
}

heading "vslice ls"
"$VSLICE" ls

heading "Inside the slice: root, its own hostname, its own processes"
in_slice id
in_slice hostname
in_slice ps

heading "On the host: the slice's init (pid $init_pid) is nobody special"
grep -E '^(Name|Uid|Gid):' "/proc/$init_pid/status"
say "(slice root = host uid $uid_base; ids $uid_base-$((uid_base + 65535)) are mapped into the slice)"
in_slice 'cat /proc/self/uid_map'

heading "Attacks that fail"
attack "load a kernel module" 'printf "\177ELF" >/tmp/evil.ko; insmod /tmp/evil.ko'
root_dev=$(findmnt -n -o SOURCE / 2>/dev/null || true)
maj_min=$( [ -n "$root_dev" ] && [ -b "$root_dev" ] && stat -L -c '%t %T' "$root_dev" || echo "fe 0")
set -- $maj_min
attack "make a node for the host disk ${root_dev:-/dev/vda} and mount it" \
  "mknod /tmp/disk b $((16#$1)) $((16#$2)) && mount -o ro /tmp/disk /mnt"
attack "mount the host disk by name" "mount -o ro ${root_dev:-/dev/vda} /mnt"
attack "write a host kernel setting" 'echo 3 >/proc/sys/vm/drop_caches'

heading "The limits, from the host"
parent=$CGROUP_PARENT   # what this script gives the daemon it starts (and the default)
shown=""
for f in "memory/$parent/$NAME/memory.limit_in_bytes" "cpu/$parent/$NAME/cpu.cfs_quota_us" \
         "cpu/$parent/$NAME/cpu.cfs_period_us" "pids/$parent/$NAME/pids.max" \
         "$parent/$NAME/memory.max" "$parent/$NAME/cpu.max" "$parent/$NAME/pids.max"; do
  if [ -r "/sys/fs/cgroup/$f" ]; then
    printf '/sys/fs/cgroup/%s: %s\n' "$f" "$(cat "/sys/fs/cgroup/$f")"
    shown=1
  fi
done
[ -n "$shown" ] || say "(cgroup files not under $parent/; see vslice stats)"
heading "vslice stats $NAME"
"$VSLICE" stats "$NAME"

heading "The audit log has all of it"
"$VSLICE" audit show --slice "$NAME" --limit 6 --tail
"$VSLICE" audit verify

heading "Cleaning up"
exit 0
