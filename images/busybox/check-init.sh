#!/bin/sh
# Check that the image's busybox init stays up as PID 1 with no console, then stop it.
#
#   images/busybox/check-init.sh ROOTFS [SECONDS]
#
# Runs `/sbin/init` chrooted into ROOTFS in a new PID and mount namespace (never in the host's
# PID namespace: there a busybox init would reboot the machine on TERM), waits SECONDS
# (default 1), checks init is still alive and that rcS ran, then sends it TERM (its shutdown
# path: kill everything in the namespace, reboot(), which only ends the PID namespace) and
# KILL if it is still there. Stops only the processes it started, by PID. Needs root.
set -eu
[ $# -ge 1 ] || {
	echo "usage: $0 ROOTFS [SECONDS]" >&2
	exit 2
}
ROOTFS=$1
WAIT=${2:-1}
[ -x "$ROOTFS/sbin/init" ] || {
	echo "$0: no executable $ROOTFS/sbin/init" >&2
	exit 1
}

LOG=$(mktemp)
unshare --fork --pid --mount-proc chroot "$ROOTFS" /sbin/init </dev/null >"$LOG" 2>&1 &
U=$!
# shellcheck disable=SC2013 # /proc/PID/task/TID/children is a space-separated list
stop() {
	# unshare's only child is chroot, which exec'd /sbin/init: PID 1 of the new namespace.
	for p in $(cat "/proc/$U/task/$U/children" 2>/dev/null); do
		kill -TERM "$p" 2>/dev/null || true
	done
	i=0
	while kill -0 "$U" 2>/dev/null && [ $i -lt 30 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$U" 2>/dev/null; then
		for p in $(cat "/proc/$U/task/$U/children" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null || true
		done
	fi
	wait "$U" 2>/dev/null || true
}
trap 'stop; rm -f "$LOG"' EXIT

sleep "$WAIT"
INIT=$(cat "/proc/$U/task/$U/children" 2>/dev/null || true)
ok=1
if [ -z "$INIT" ]; then
	echo "FAIL: init exited within ${WAIT}s" >&2
	ok=0
else
	for p in $INIT; do
		comm=$(cat "/proc/$p/comm")
		nspid=$(awk '/^NSpid:/ {print $NF}' "/proc/$p/status")
		state=$(awk '/^State:/ {print $2}' "/proc/$p/status")
		if [ "$comm" != init ] || [ "$nspid" != 1 ] || [ "$state" = Z ]; then
			echo "FAIL: child $p is comm=$comm nspid=$nspid state=$state" >&2
			ok=0
		fi
	done
fi
if [ -s "$LOG" ]; then
	echo "init output:" >&2
	sed 's/^/  /' "$LOG" >&2
fi
[ $ok = 1 ] || exit 1
echo "ok: busybox init in $ROOTFS stays up as PID 1 with no console"
