#!/usr/bin/env bash
# SSH access figures (`make bench`, README "SSH access"): against a private vsliced and a
# private sshd on 127.0.0.1 (own host key, the drop-in of dist/sshd_config.d rendered as
# `make install` does), in the same run:
#   * login-to-command latency, `ssh NAME@node true`, a slice vs a plain host account (median
#     of BENCH_SSH_N, default 20, interleaved);
#   * scp (SFTP mode) of a BENCH_SSH_MB (default 100) MB file into a slice vs into a plain
#     account's home (median of 3).
# Goal (issue #10): within 1.2x of the plain account. Needs root and the Debian image
# ($VSLICE_TEST_IMAGES/debian/rootfs, or the cache images/debian/build.sh fills) for scp.
#   scripts/ssh_bench.sh BIN_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(cd "${1:-target/release}" && pwd)
N=${BENCH_SSH_N:-20}
MB=${BENCH_SSH_MB:-100}
IMAGES=${VSLICE_TEST_IMAGES:-/tmp/vslice-test-images}
pid=$$
# vsh must sit on a path without group/world-writable components (sshd's rule for the
# AuthorizedKeysCommand), so not under /tmp; the bulk data stays on disk under /tmp.
work=/run/vslice-bench-ssh-$pid
data=/tmp/vslice-bench-ssh-$pid
grp=vslbs$pid
pgrp=vslbp$pid
slice=bssh$pid
plain=vslbp$pid
daemon_pid=""
sshd_pid=""

cleanup() {
  set +e
  [ -z "$daemon_pid" ] || "$BIN/vslice" --socket "$data/api.sock" rm "$slice" >/dev/null 2>&1
  if [ -n "$sshd_pid" ]; then kill "$sshd_pid"; wait "$sshd_pid"; fi
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid"; wait "$daemon_pid"; fi
  # The daemon's cgroup parent in every hierarchy (empty once the slice is gone).
  for d in /sys/fs/cgroup/*/vslice-bench-ssh$pid /sys/fs/cgroup/vslice-bench-ssh$pid; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  getent passwd "$slice" >/dev/null && userdel "$slice"
  getent passwd "$plain" >/dev/null && userdel "$plain"
  getent group "$grp" >/dev/null && groupdel "$grp"
  getent group "$pgrp" >/dev/null && groupdel "$pgrp"
  rm -rf "$work" "$data"
}
trap cleanup EXIT

mkdir -p "$work" "$data/root" "$data/home"
chmod 0755 "$work" "$data"
install -m 0755 "$BIN/vsh" "$work/vsh"
[ -x "$IMAGES/busybox/rootfs/bin/busybox" ] || bash images/busybox/build.sh "$IMAGES/busybox/rootfs" >/dev/null
image=busybox
if [ -x "$IMAGES/debian/rootfs/usr/lib/openssh/sftp-server" ]; then
  image=debian
elif [ -x /var/cache/vslice/images/debian/rootfs/usr/lib/openssh/sftp-server ]; then
  mkdir -p "$IMAGES/debian"
  cp -al /var/cache/vslice/images/debian/rootfs "$IMAGES/debian/rootfs.tmp.$pid"
  mv -T "$IMAGES/debian/rootfs.tmp.$pid" "$IMAGES/debian/rootfs" 2>/dev/null || rm -rf "$IMAGES/debian/rootfs.tmp.$pid"
  image=debian
fi
ln -s "$IMAGES" "$data/root/images"

groupadd "$grp"
groupadd "$pgrp"
cat >"$data/vslice.toml" <<CONF
socket = "$data/api.sock"
user_socket = ""
root = "$data/root"
cgroup_parent = "vslice-bench-ssh$pid"
admin_group = "$pgrp-none"
ssh_socket = "$work/vsh.sock"
ssh_group = "$grp"
ssh_shell = "$work/vsh"
ssh_keys_user = "nobody"
CONF
VSLICE_SHIM="$BIN/vslice-shim" "$BIN/vsliced" --config "$data/vslice.toml" >"$data/vsliced.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$work/vsh.sock" ] && break; sleep 0.1; done
vs() { "$BIN/vslice" --socket "$data/api.sock" "$@"; }
vs create "$slice" --image "$image" >/dev/null
ssh-keygen -q -t ed25519 -N '' -f "$data/key"
vs keys add "$slice" "$data/key.pub" >/dev/null

# The plain account: a home on disk, the same key.
useradd -M -p '*' -d "$data/home/$plain" -s /bin/sh -g "$pgrp" "$plain"
mkdir -p "$data/home/$plain/.ssh"
cp "$data/key.pub" "$data/home/$plain/.ssh/authorized_keys"
chown -R "$plain:$pgrp" "$data/home/$plain"
chmod 0700 "$data/home/$plain/.ssh"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -f "$work/host_ed25519"
sed -e "s|@GROUP@|$grp|g" -e "s|@VSH@|$work/vsh|g" -e "s|@SOCKET@|$work/vsh.sock|g" \
  -e "s|@KEYS_USER@|nobody|g" dist/sshd_config.d/vslice.conf >"$work/vslice.conf"
cat >"$work/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_ed25519
PidFile $work/sshd.pid
UsePAM no
StrictModes no
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowGroups $grp $pgrp
Subsystem sftp /usr/lib/openssh/sftp-server
PrintMotd no
PrintLastLog no
Include $work/vslice.conf
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$data/sshd.log" &
sshd_pid=$!
listening() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$port" 2>/dev/null; }
for _ in $(seq 100); do listening && break; sleep 0.1; done

opts=(-F /dev/null -i "$data/key" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no
  -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR)
ms() { local t0=$EPOCHREALTIME; "$@" >/dev/null; local t1=$EPOCHREALTIME; python3 -c "print(($t1-$t0)*1000)"; }
median() { python3 -c 'import sys,statistics; print("%.1f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

ssh -p "$port" "${opts[@]}" "$slice@127.0.0.1" true   # warm-up (and a check)
ssh -p "$port" "${opts[@]}" "$plain@127.0.0.1" true
s=(); p=()
for _ in $(seq "$N"); do
  s+=("$(ms ssh -p "$port" "${opts[@]}" "$slice@127.0.0.1" true)")
  p+=("$(ms ssh -p "$port" "${opts[@]}" "$plain@127.0.0.1" true)")
done
ms_s=$(median "${s[@]}"); ms_p=$(median "${p[@]}")
printf 'ssh NAME@node true (median of %s): slice %s ms, plain account %s ms, ratio %s\n' \
  "$N" "$ms_s" "$ms_p" "$(python3 -c "print('%.2f' % ($ms_s/$ms_p))")"

if [ "$image" != debian ]; then
  echo "scp: skipped (no Debian image with sftp-server; build it with images/debian/build.sh)"
  exit 0
fi
head -c "$((MB * 1024 * 1024))" /dev/urandom >"$data/big"
s=(); p=()
for _ in $(seq 3); do
  s+=("$(ms scp -P "$port" "${opts[@]}" "$data/big" "$slice@127.0.0.1:/root/big")")
  p+=("$(ms scp -P "$port" "${opts[@]}" "$data/big" "$plain@127.0.0.1:big")")
done
t_s=$(median "${s[@]}"); t_p=$(median "${p[@]}")
python3 -c "print('scp %d MB (median of 3): into the slice %.0f MB/s, into a plain account %.0f MB/s, time ratio %.2f' % ($MB, $MB/($t_s/1000), $MB/($t_p/1000), $t_s/$t_p))"
