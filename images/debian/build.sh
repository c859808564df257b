#!/bin/sh
# Build the `debian` base image (Debian bookworm) with mmdebstrap.
#
#   images/debian/build.sh [--if-stale] DEST [SUITE] [MIRROR]
#   e.g. images/debian/build.sh --if-stale /var/cache/vslice/images/debian/rootfs
#
# `make images` runs it into the cache /var/cache/vslice/images/debian/rootfs, `make test`
# copies that into the test image directory, and the tests that need a Debian slice run it when
# neither exists. mmdebstrap fetches every package from the Debian mirror (deb.debian.org by
# default, reached the way the host's apt reaches it), verified against the archive keyring.
#
# --if-stale: take the lock `<DEST>/../../.debian.lock` (flock: concurrent callers wait for one
#   build) and do nothing when DEST exists and was built by this very script with the same
#   SUITE and MIRROR (the recipe hash recorded in DEST/etc/vslice-image).
#
# The image: mmdebstrap's `minbase` (Essential, required, apt) plus what a developer expects on a
# node: bash coreutils apt iproute2 iputils-ping procps less vim-tiny curl ca-certificates python3
# rsync openssh-sftp-server sudo, and Debian's `busybox` as the slice's PID 1 (/sbin/init ->
# /bin/busybox) with the same console-less inittab/rcS as images/busybox, so every image boots
# the same way. Root's password is locked (`*`): logins come via `vslice enter`/exec. The apt
# package lists and caches are removed (a shared read-only image would only carry stale lists);
# /etc/apt/sources.list names the mirror, bookworm-updates and bookworm-security, so
# `apt-get update` in a slice with a network fetches fresh ones.
#
# Same conventions as images/busybox/build.sh: needs root, the tree is owned by uid 0, built in
# DEST.tmp.<pid> and renamed into place only when complete (so if DEST exists, it is complete).
set -eu

IF_STALE=0
if [ "${1:-}" = "--if-stale" ]; then
	IF_STALE=1
	shift
fi
if [ $# -lt 1 ] || [ -z "$1" ]; then
	echo "usage: $0 [--if-stale] DEST [SUITE] [MIRROR]" >&2
	exit 2
fi
SUITE=${2:-bookworm}
MIRROR=${3:-http://deb.debian.org/debian}
# The security archive sits beside the main one on deb.debian.org; for another mirror, only
# the main archive and -updates are used.
case $MIRROR in
http://deb.debian.org/debian | https://deb.debian.org/debian) SECURITY=${MIRROR%/debian}/debian-security ;;
*) SECURITY= ;;
esac

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

# What the tree depends on: this script, the suite and the mirror.
RECIPE=$( (cat "$0" && echo "$SUITE $MIRROR") | sha256sum | cut -d' ' -f1)
is_fresh() {
	[ -d "$DEST" ] && grep -qx "recipe=$RECIPE" "$DEST/etc/vslice-image" 2>/dev/null
}
if [ "$IF_STALE" = 1 ]; then
	# Run again under the lock (flock(1) holds it until this script ends).
	if [ -z "${VSLICE_DEBIAN_LOCKED:-}" ]; then
		LOCK=$(dirname "$(dirname "$DEST")")/.debian.lock
		VSLICE_DEBIAN_LOCKED=1 exec flock "$LOCK" sh "$0" --if-stale "$DEST" "$SUITE" "$MIRROR"
	fi
	if is_fresh; then
		echo "debian image in $DEST is up to date"
		exit 0
	fi
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
	if ! DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y mmdebstrap >&2; then
		apt-get -o DPkg::Lock::Timeout=600 update >&2
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y mmdebstrap >&2
	fi
fi

TMP=$DEST.tmp.$$
OLD=$DEST.old.$$
cleanup() {
	rc=$?
	# mmdebstrap (root mode) mounts proc/sys/dev inside the target while it runs and unmounts
	# them itself; never rm -rf through one it left behind.
	for m in "$TMP/dev/pts" "$TMP/dev" "$TMP/proc" "$TMP/sys"; do
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

PACKAGES=bash,coreutils,apt,iproute2,iputils-ping,procps,less,vim-tiny,curl,ca-certificates,python3,rsync,openssh-sftp-server,sudo,busybox
set -- "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main"
[ -z "$SECURITY" ] || set -- "$@" "deb $SECURITY $SUITE-security main"
# --mode=root: we are root, so files get their real owners, modes, setuid bits and file
# capabilities (ping's cap_net_raw) directly. mmdebstrap's default clean-up removes the apt
# lists and the package cache.
mmdebstrap --mode=root --variant=minbase --include="$PACKAGES" \
	--aptopt='Acquire::Retries "3"' \
	"$SUITE" "$TMP" "$@" </dev/null

# Leftovers a shared image must not carry (mmdebstrap already dropped lists and .debs).
rm -rf "$TMP"/var/lib/apt/lists/* "$TMP"/var/cache/apt/*.bin "$TMP"/var/cache/apt/archives/*.deb \
	"$TMP"/var/log/*.log "$TMP"/var/log/apt/* "$TMP"/etc/resolv.conf
# mmdebstrap populates /dev with device nodes; a slice gets its own tmpfs /dev, and a shared
# image carries no device node anywhere (the build fails if one is left).
find "$TMP/dev" -mindepth 1 -delete
if [ -n "$(find "$TMP" -xdev \( -type b -o -type c \) -print -quit)" ]; then
	echo "$0: device nodes in the image:" "$(find "$TMP" -xdev \( -type b -o -type c \) | head -5)" >&2
	exit 1
fi

# PID 1: busybox init, no console (see images/busybox/build.sh for why these lines only).
[ -x "$TMP/bin/busybox" ] || {
	echo "$0: busybox missing from the image" >&2
	exit 1
}
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
# The recipe this tree came from (--if-stale compares it).
cat >"$TMP/etc/vslice-image" <<EOF
image=debian
suite=$SUITE
mirror=$MIRROR
recipe=$RECIPE
EOF

chown 0:0 "$TMP"
chmod 0755 "$TMP"
sync -f "$TMP"
if [ -e "$DEST" ] || [ -L "$DEST" ]; then
	mv -T "$DEST" "$OLD"
	mv -T "$TMP" "$DEST"
	rm -rf "$OLD"
else
	mv -T "$TMP" "$DEST"
fi
trap - EXIT
echo "built debian ($SUITE) image in $DEST ($(du -sh "$DEST" | cut -f1))"
