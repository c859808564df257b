#!/usr/bin/env bash
# Fails if tests or benchmarks left any kernel object or process behind. Looks only at the
# names tests and benchmarks use (vslice-it-*, vslice-t*, vslice-bench*, vst*), so it can run
# beside a real installation.
set -u
left=()
# Cgroups: any `vslice-…` parent (tests, benchmarks, demos); a real installation's is `vslice`.
for d in /sys/fs/cgroup/*/vslice-?* /sys/fs/cgroup/vslice-?*; do
  [ -e "$d" ] && left+=("cgroup $d")
done
# The exec log's pinned BPF program of a test daemon (audit/exec_bpf.rs; a real one's is
# /sys/fs/bpf/vslice/vslice).
for d in /sys/fs/bpf/vslice/vslice-?*; do
  [ -e "$d" ] && left+=("pinned BPF $d")
done
while read -r m; do left+=("mount $m"); done < <(awk '$2 ~ /vslice-it-|vslice-bench|vslice-test/ {print $2}' /proc/mounts)
while read -r l; do left+=("link $l"); done < <(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(vst|ifb-?vst)' || true)
while read -r n; do left+=("netns $n"); done < <(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^vst' || true)
if command -v nft >/dev/null; then
  while read -r t; do left+=("nft table $t"); done < <(nft list tables 2>/dev/null | awk '{print $3}' | grep -E '^vslice_t' || true)
fi
# Shims of test roots, by name (per-exec `vslice-shim exec` processes that outlived their
# command were once missed: they are listed here whatever their arguments look like).
while read -r pid args; do left+=("shim $pid $args"); done < <(ps -ww -eo pid=,args= | awk '$2 ~ /(^|\/)vslice-shim$/' | grep -E -- '--root [^ ]*(vslice-(it|bench)-|vslice-test)' || true)
while read -r pid args; do left+=("process $pid $args"); done < <(ps -ww -eo pid=,args= | grep -E 'vslice-(it|bench)-|vslice-test' | grep -v -E 'grep|leak-check' | awk '$2 !~ /(^|\/)vslice-shim$/' || true)
# SSH access tests and bench: host accounts, groups and directories (ssh_support, ssh_bench.sh).
while read -r u; do left+=("host user $u"); done < <(getent passwd | cut -d: -f1 | grep -E '^(tssh[0-9]|bssh[0-9]|vslbp[0-9]|vsltssh[0-9])' || true)
while read -r g; do left+=("host group $g"); done < <(getent group | cut -d: -f1 | grep -E '^(vsl-ssh-[0-9]|vslbs[0-9]|vslbp[0-9])' || true)
for d in /run/vslice-test-ssh-* /run/vslice-bench-ssh-* /tmp/vslice-bench-ssh-*; do [ -e "$d" ] && left+=("directory $d"); done
if [ ${#left[@]} -gt 0 ]; then
  echo "leak check: FAILED — left behind:" >&2
  printf '  %s\n' "${left[@]}" >&2
  exit 1
fi
echo "leak check: nothing left behind"
