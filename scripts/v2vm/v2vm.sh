#!/usr/bin/env bash
# v2vm.sh -- run COMMAND as root in a throwaway QEMU VM with a pure cgroup v2 hierarchy
# (cgroup_no_v1=all), on Debian 12's kernel (6.1). Used by `make test-v2` (scripts/v2vm/run-tests.sh)
# and the `v2` section of scripts/bench.sh.
#
#   scripts/v2vm/v2vm.sh [--mem 4G] [--cpus 2] [--share DIR]... [--tmp-ext4 SIZE] [--timeout SEC] -- COMMAND...
#
# Guest (init: scripts/v2vm/init.busybox, a busybox initramfs, no systemd):
# * / = the host's / over 9p read-only + a tmpfs overlay: same paths as the host, so host-built
#   binaries run inside; writes vanish at exit. /run and /tmp are the guest's own; --tmp-ext4
#   puts /tmp on ext4 (Linux 6.1 cannot idmap tmpfs, and slices need idmapped mounts).
# * cgroup2 only at /sys/fs/cgroup, every controller enabled at the root; the kernel's modules
#   at /lib/modules/$(uname -r); lo up, no other network.
# * --share DIR: a host dir shared read-write at the same path (no spaces/commas).
# * COMMAND runs via bash in the caller's $PWD with the caller's exported environment; its
#   output (stdout+stderr) is streamed; the exit code is COMMAND's, 125 if the VM died.
# Accelerator: KVM when /dev/kvm exists and the CPU flags offer vmx/svm (QEMU falls back to
# TCG if KVM does not initialise), TCG otherwise (this project's CI machines: ~40x slower).
# V2VM_ACCEL=kvm|tcg forces one.
#
# The kernel and QEMU are NOT installed: `apt-get install qemu-system-x86` fails on hosts with
# a newer qemu-utils (as here), and the kernel must not touch /boot. The packages named by the
# `unpacked` lines of deps/packages.txt (and the libraries of those packages that are not
# installed) are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into the cache
# $V2VM_CACHE (default /var/cache/vslice/v2vm, ~600 MB), once; the cache is rebuilt when those
# lines, this script's init or the kernel package change. A lock (flock) serialises setup
# against concurrent runs (CI jobs, a bench beside a test).
set -euo pipefail
MEM=4G CPUS=2 TIMEOUT=0 TMPEXT4= SHARES=()
usage() { echo "usage: $0 [--mem 4G] [--cpus 2] [--share DIR]... [--tmp-ext4 SIZE] [--timeout SEC] -- COMMAND..." >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --mem) MEM=$2; shift 2 ;;
    --cpus) CPUS=$2; shift 2 ;;
    --share) SHARES+=("$(readlink -f "$2")"); shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --tmp-ext4) TMPEXT4=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ $# -gt 0 ] || usage
[ "$(id -u)" = 0 ] || { echo "v2vm: run as root (the guest shares the host's root read-only as root)" >&2; exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
C=${V2VM_CACHE:-/var/cache/vslice/v2vm}
P=$C/px                        # the unpacked packages (a root-like tree: usr/bin, boot, lib/modules)
mkdir -p "$C/out"

# The packages of the `unpacked PACKAGE: PROGRAMS` lines of deps/packages.txt.
unpacked=$(sed -n -E 's/#.*//; s/^unpacked[[:space:]]+([a-z0-9.+-]+).*/\1/p' "$REPO/deps/packages.txt")
[ -n "$unpacked" ] || { echo "v2vm: deps/packages.txt has no \`unpacked\` line" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

# Dependencies of the packages $@ that are neither installed nor in $P already: one name per
# line. An alternative group (a | b) is satisfied when any member is installed; else its first.
missing_deps() {
  apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "$@" |
    awk '/^[^ ]/ {next} $1 == "|Depends:" || $1 == "|PreDepends:" {grp = grp " " $2; next}
         $1 == "Depends:" || $1 == "PreDepends:" {print grp " " $2; grp = ""}' |
    while read -r alts; do
      first=
      for a in $alts; do
        case $a in \<*) continue ;; esac
        installed "$a" && { first=; break; }
        [ -n "$first" ] || first=$a
      done
      [ -z "$first" ] || [ -e "$C/debs/.have-$first" ] || echo "$first"
    done | sort -u
}

setup() {
  local kpkg=$1 new=$C/px.new pkgs more round
  echo "v2vm: fetching and unpacking into $C: $kpkg $(echo $unpacked)" >&2
  rm -rf "$new" "$C/debs"; mkdir -p "$new" "$C/debs"
  # shellcheck disable=SC2086
  pkgs="$kpkg $(echo $unpacked | sed 's/\blinux-image-amd64\b//')"
  # the libraries QEMU needs that this host lacks, to a fixpoint (a few rounds)
  for round in 1 2 3 4 5 6; do
    (cd "$C/debs" && apt-get -o APT::Sandbox::User=root download -q $pkgs >/dev/null)
    for p in $pkgs; do touch "$C/debs/.have-$p"; done
    more=$(missing_deps $pkgs | grep -vxE 'linux-.*|initramfs-tools.*|kmod|debconf.*|cdebconf.*' || true)
    [ -n "$more" ] || break
    pkgs=$more
  done
  for d in "$C"/debs/*.deb; do dpkg-deb -x "$d" "$new"; done
  rm -rf "$P"; mv "$new" "$P"
  local kver=${kpkg#linux-image-} r=$C/initramfs
  depmod -b "$P" "$kver"
  rm -rf "$r"; mkdir -p "$r/bin" "$r/mod" "$r/proc" "$r/sys" "$r/dev"
  cp "$(command -v busybox)" "$r/bin/busybox"
  for m in virtio_pci 9pnet_virtio 9p overlay; do modprobe -d "$P" -S "$kver" --show-depends $m; done |
    awk '$1 == "insmod" && !seen[$2]++ {print $2}' |
    while read -r f; do cp "$f" "$r/mod/"; basename "$f"; done >"$r/mod/order"
  cp "$HERE/init.busybox" "$r/init"; chmod 755 "$r/init"
  (cd "$r" && find . | cpio --quiet -o -H newc 2>/dev/null) >"$C/initramfs.img"
}

exec {LOCK}>"$C/.lock"
flock -x "$LOCK"
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "v2vm: apt-cache knows no linux-image-amd64 kernel (run apt-get update)" >&2; exit 1; }
stamp=$({ echo "$kpkg $unpacked"; cat "$HERE/init.busybox"; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$C/stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -f "$C/stamp"; setup "$kpkg"; echo "$stamp" >"$C/stamp"
fi
flock -s "$LOCK"                     # runs share the cache; a setup waits for them
KERNEL=$(ls "$P"/boot/vmlinuz-* | tail -n 1)
QEMU=$P/usr/bin/qemu-system-x86_64
LIBS=$P/usr/lib/x86_64-linux-gnu:$P/lib/x86_64-linux-gnu
if LD_LIBRARY_PATH=$LIBS ldd "$QEMU" | grep -q 'not found'; then
  echo "v2vm: $QEMU misses libraries (remove $C/stamp to refetch):" >&2
  LD_LIBRARY_PATH=$LIBS ldd "$QEMU" | grep 'not found' >&2; exit 1
fi

# Per-run control dir in the out share: run.sh (the job), log (its output), rc, console.log.
R=$C/out/.run-$$; rm -rf "$R"; mkdir -p "$R"; : >"$R/log"
trap 'rm -rf "$R"' EXIT
{ export -p | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_|LD_LIBRARY_PATH|QEMU_MODULE_DIR)='
  printf 'export V2VM_OUT=%q\ncd %q 2>/dev/null || cd /\nexec' "$C/out" "$PWD"; printf ' %q' "$@"; echo
} >"$R/run.sh"

ACCEL=${V2VM_ACCEL:-}
if [ -z "$ACCEL" ]; then
  if [ -c /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; else ACCEL=tcg; fi
fi
case $ACCEL in
  kvm) A=(-accel kvm -accel tcg,thread=multi -cpu max) ;;
  *) A=(-accel tcg,thread=multi -cpu max) ;;
esac
FS="security_model=passthrough,multidevs=remap"
Q=(-M pc "${A[@]}" -m "$MEM" -smp "$CPUS" -nodefaults -no-user-config -display none -no-reboot
   -serial "file:$R/console.log" -kernel "$KERNEL" -initrd "$C/initramfs.img"
   -L "$P/usr/share/qemu" -L "$P/usr/share/seabios"
   -virtfs "local,path=/,mount_tag=hostroot,readonly=on,$FS" -virtfs "local,path=$C/out,mount_tag=s0,$FS")
SH=$C/out i=1
for d in "${SHARES[@]}"; do Q+=(-virtfs "local,path=$d,mount_tag=s$i,$FS"); SH+=,$d; i=$((i + 1)); done
Q+=(-append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 v2mods=$P/lib/modules v2shares=$SH v2run=$R ${TMPEXT4:+v2tmpext4=$TMPEXT4}")

TO=(); [ "$TIMEOUT" = 0 ] || TO=(timeout "$TIMEOUT")
LD_LIBRARY_PATH=$LIBS QEMU_MODULE_DIR=$P/usr/lib/x86_64-linux-gnu/qemu "${TO[@]}" "$QEMU" "${Q[@]}" {LOCK}>&- &
QPID=$!
# `|| true`: under set -e a failing command in the EXIT trap (QEMU already gone) would turn
# every exit status into 1.
trap 'kill $QPID 2>/dev/null || true; rm -rf "$R"' EXIT
tail -n +1 -s 0.2 -f --pid=$QPID "$R/log" &
TPID=$!
QRC=0; wait $QPID || QRC=$?
wait $TPID || true
if [ ! -s "$R/rc" ]; then
  echo "v2vm: the VM ended without a result (qemu rc=$QRC; accel $ACCEL); its console:" >&2
  tail -n 30 "$R/console.log" >&2
  exit 125
fi
exit "$(cat "$R/rc")"
