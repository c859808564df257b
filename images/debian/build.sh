#!/bin/sh
# Build a `debian` base image (Debian bookworm, minbase variant) with debootstrap.
#
#   images/debian/build.sh DEST [SUITE] [MIRROR]
#   e.g. images/debian/build.sh /var/lib/vslice/images/debian/rootfs bookworm http://deb.debian.org/debian
#
# OPTIONAL recipe: not run by `make test` or CI (and not exercised when written). debootstrap
# downloads every package itself from a Debian mirror, which tests must not depend on. On a
# host with a reachable mirror (or a local cache, e.g. apt-cacher-ng, given as MIRROR) it
# builds a ~150 MB tree.
#
# Same conventions as images/busybox/build.sh: needs root, owned by uid 0, built in
# DEST.tmp.<pid> and renamed into place only when complete; the slice's PID 1 is busybox init
# (Debian's `busybox` package; /sbin/init -> /bin/busybox) with the same console-less inittab,
# so every image boots the same way. Passwords stay locked (`*`): logins come via exec.
set -eu

if [ $# -lt 1 ] || [ -z "$1" ]; then
	echo "usage: $0 DEST [SUITE] [MIRROR]" >&2
	exit 2
fi
SUITE=${2:-bookworm}
MIRROR=${3:-http://deb.debian.org/debian}

if [ "$(id -u)" != 0 ]; then
	echo "$0: must run as root" >&2
	exit 1
fi
umask 022
export LC_ALL=C

DEST=$1
case $DEST in
/*) ;;
*) DEST=$(pwd)/$DEST ;;
esac
while [ "${DEST%/}" != "$DEST" ] && [ "$DEST" != / ]; do DEST=${DEST%/}; done
[ "$DEST" != / ] || {
	echo "$0: refusing to build into /" >&2
	exit 1
}
mkdir -p "$(dirname "$DEST")"

if ! command -v debootstrap >/dev/null 2>&1; then
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2; then
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap >&2
	fi
fi

TMP=$DEST.tmp.$$
OLD=$DEST.old.$$
cleanup() {
	rc=$?
	# debootstrap mounts proc/sys inside the target while it runs; never rm -rf through them.
	for m in "$TMP/proc" "$TMP/sys" "$TMP/dev/pts" "$TMP/dev"; do
		umount -l "$m" 2>/dev/null || true
	done
	if [ -d "$TMP" ] && ! grep -q " $TMP/" /proc/self/mounts; then rm -rf "$TMP"; fi
	if [ -e "$OLD" ]; then
		if [ -e "$DEST" ]; then rm -rf "$OLD"; else mv "$OLD" "$DEST"; fi
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
rm -rf "$TMP"

debootstrap --variant=minbase --include=busybox,ca-certificates "$SUITE" "$TMP" "$MIRROR"

# Drop the package caches: the image is shared read-only, apt lists would only go stale.
chroot "$TMP" apt-get clean
rm -rf "$TMP"/var/lib/apt/lists/* "$TMP"/var/cache/apt/*.bin "$TMP"/var/log/*.log

# PID 1: busybox init, no console (see images/busybox/build.sh for why these lines only).
ln -sfn ../bin/busybox "$TMP/sbin/init"
cat >"$TMP/etc/inittab" <<'EOF'
# /etc/inittab for a vslice slice (busybox init, no console)
::sysinit:/etc/init.d/rcS
::shutdown:/bin/sync
EOF
mkdir -p "$TMP/etc/init.d"
cat >"$TMP/etc/init.d/rcS" <<'EOF'
#!/bin/sh
# Slice start-up, run once by init (the runtime has normally mounted /proc already).
[ -e /proc/self/stat ] || mount -t proc proc /proc
for s in /etc/init.d/S*; do
	[ -x "$s" ] && "$s" start
done
exit 0
EOF
chmod 0755 "$TMP/etc/init.d/rcS"

# Locked root; hostname is set by the runtime.
chroot "$TMP" usermod -p '*' root
echo slice >"$TMP/etc/hostname"
cat >"$TMP/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
: >"$TMP/etc/machine-id"

chown 0:0 "$TMP"
chmod 0755 "$TMP"
if [ -e "$DEST" ] || [ -L "$DEST" ]; then
	mv -T "$DEST" "$OLD"
	mv -T "$TMP" "$DEST"
	rm -rf "$OLD"
else
	mv -T "$TMP" "$DEST"
fi
trap - EXIT
echo "built debian ($SUITE) image in $DEST"
