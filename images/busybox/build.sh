#!/bin/sh
# Build the `busybox` base image: a root filesystem directory made from the host's
# statically linked busybox (Debian package busybox-static).
#
#   images/busybox/build.sh DEST        e.g. DEST=/var/lib/vslice/images/busybox/rootfs
#
# * Needs root (installs busybox-static with apt-get if /bin/busybox is not static, and the
#   image must be owned by uid 0: slices see it through an idmapped mount).
# * Idempotent and atomic: the image is built in DEST.tmp.<pid> and renamed into place; an
#   existing DEST is replaced only once the new tree is complete, so DEST is never seen
#   half-built. Running it twice gives the same tree.
# * The image is clean: no setuid files (bin/busybox is 0755), no passwords, no console
#   gettys. Everything is owned by root and world-readable except /root (0700) and
#   /etc/shadow (0640; it holds no hashes, only locked `*` entries: logins come via exec).
set -eu

usage() {
	echo "usage: $0 DEST" >&2
	exit 2
}
[ $# -eq 1 ] || usage
[ -n "$1" ] || usage

if [ "$(id -u)" != 0 ]; then
	echo "$0: must run as root (the image must be owned by uid 0)" >&2
	exit 1
fi

umask 022
export LC_ALL=C

# Absolute DEST without trailing slashes; its parent must exist (created here).
DEST=$1
case $DEST in
/*) ;;
*) DEST=$(pwd)/$DEST ;;
esac
while [ "${DEST%/}" != "$DEST" ] && [ "$DEST" != / ]; do DEST=${DEST%/}; done
if [ "$DEST" = / ]; then
	echo "$0: refusing to build into /" >&2
	exit 1
fi
PARENT=$(dirname "$DEST")
mkdir -p "$PARENT"

BUSYBOX=/bin/busybox

# True if the ELF file $1 has no PT_INTERP program header (i.e. needs no dynamic loader).
is_static() {
	[ -f "$1" ] || return 1
	if command -v python3 >/dev/null 2>&1; then
		python3 - "$1" <<'EOF'
import struct, sys
with open(sys.argv[1], "rb") as f:
    h = f.read(64)
    if len(h) < 52 or h[:4] != b"\x7fELF":
        sys.exit(1)
    is64 = h[4] == 2
    end = "<" if h[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack(end + "Q", h[32:40])
        phentsize, phnum = struct.unpack(end + "HH", h[54:58])
    else:
        phoff, = struct.unpack(end + "I", h[28:32])
        phentsize, phnum = struct.unpack(end + "HH", h[42:46])
    for i in range(phnum):
        f.seek(phoff + i * phentsize)
        p_type, = struct.unpack(end + "I", f.read(4))
        if p_type == 3:  # PT_INTERP
            sys.exit(1)
sys.exit(0)
EOF
	else
		file -L "$1" | grep -Eq 'statically linked|static-pie linked'
	fi
}

if ! is_static "$BUSYBOX"; then
	echo "$0: $BUSYBOX is missing or not static; installing busybox-static" >&2
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >&2; then
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >&2
	fi
	if ! is_static "$BUSYBOX"; then
		echo "$0: $BUSYBOX is still not a static binary after installing busybox-static" >&2
		exit 1
	fi
fi

TMP=$DEST.tmp.$$
OLD=$DEST.old.$$
cleanup() {
	rc=$?
	rm -rf "$TMP"
	# If the swap was interrupted after DEST moved aside, put the old image back.
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
mkdir "$TMP"

# --- directories -------------------------------------------------------------------------
for d in bin sbin usr usr/bin usr/sbin etc etc/init.d dev proc sys run var var/log \
	var/tmp home mnt; do
	mkdir -p "$TMP/$d"
done
mkdir -m 1777 "$TMP/tmp"
chmod 1777 "$TMP/var/tmp"
mkdir -m 0700 "$TMP/root"

# --- busybox and its applets -------------------------------------------------------------
cp "$BUSYBOX" "$TMP/bin/busybox"
chmod 0755 "$TMP/bin/busybox" # never setuid: the image stays clean

# Relative links (../bin/busybox), so they resolve both inside the slice and when the image
# is inspected from the host.
"$BUSYBOX" --list-full | while IFS= read -r applet; do
	case $applet in
	'' | bin/busybox | /* | *..*) continue ;;
	esac
	link=$TMP/$applet
	[ -e "$link" ] || [ -L "$link" ] && continue
	dir=$(dirname "$applet")
	if [ "$dir" = . ]; then
		ln -s bin/busybox "$link" # e.g. /linuxrc
		continue
	fi
	mkdir -p "$TMP/$dir"
	up=$(echo "$dir" | sed -e 's|[^/][^/]*|..|g')
	ln -s "$up/bin/busybox" "$link"
done
for needed in bin/sh sbin/init; do
	if [ ! -L "$TMP/$needed" ]; then
		echo "$0: busybox provides no $needed applet" >&2
		exit 1
	fi
done

# --- /etc --------------------------------------------------------------------------------
cat >"$TMP/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$TMP/etc/group" <<'EOF'
root:x:0:
tty:x:5:
nogroup:x:65534:
EOF
# Locked accounts: nobody logs in with a password; a developer arrives via `vslice enter`.
cat >"$TMP/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 0640 "$TMP/etc/shadow"
# Placeholder: the runtime sets the slice's hostname in its UTS namespace.
echo slice >"$TMP/etc/hostname"
cat >"$TMP/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
cat >"$TMP/etc/profile" <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=${HOME:-/root}
if [ "$(id -u)" -eq 0 ]; then
	PS1='\u@\h:\w# '
else
	PS1='\u@\h:\w$ '
fi
export PS1
EOF
cat >"$TMP/etc/shells" <<'EOF'
/bin/sh
/bin/ash
EOF
# busybox init as the slice's PID 1. There is no console: no getty/askfirst/respawn lines
# and no ctrlaltdel. With only sysinit and shutdown actions, init runs rcS once and then
# sits as PID 1 reaping orphans until it is signalled (TERM: run shutdown, kill all, exit).
cat >"$TMP/etc/inittab" <<'EOF'
# /etc/inittab for a vslice slice (busybox init, no console)
::sysinit:/etc/init.d/rcS
::shutdown:/bin/sync
EOF
cat >"$TMP/etc/init.d/rcS" <<'EOF'
#!/bin/sh
# Slice start-up, run once by init. The runtime has normally mounted /proc, /sys, /dev and
# /run already; mount /proc only if it is missing (this busybox has no `mountpoint`).
[ -e /proc/self/stat ] || mount -t proc proc /proc
# Site additions: executable /etc/init.d/S* scripts, in order, with "start".
for s in /etc/init.d/S*; do
	[ -x "$s" ] && "$s" start
done
exit 0
EOF
chmod 0755 "$TMP/etc/init.d/rcS"

# --- ownership and permissions -----------------------------------------------------------
chown -hR 0:0 "$TMP"
chmod 0755 "$TMP"
if find "$TMP" -perm /6000 -print | grep -q .; then
	echo "$0: setuid/setgid file in the image" >&2
	exit 1
fi

# --- swap into place ---------------------------------------------------------------------
sync -f "$TMP" 2>/dev/null || sync
if [ -e "$DEST" ] || [ -L "$DEST" ]; then
	mv -T "$DEST" "$OLD"
	mv -T "$TMP" "$DEST"
	rm -rf "$OLD"
else
	mv -T "$TMP" "$DEST"
fi
trap - EXIT
echo "built busybox image in $DEST"
