#!/usr/bin/env bash
# run-tests.sh -- `make test-v2`: the tests of scripts/v2vm/tests.txt in a pure cgroup v2 VM
# (scripts/v2vm/v2vm.sh: Debian 12's 6.1 kernel, cgroup_no_v1=all, /tmp on ext4).
#
#   scripts/v2vm/run-tests.sh [BIN_DIR]     (BIN_DIR: the built binaries, default target/$CARGO_TEST_PROFILE)
#
# The test binaries are built here on the host (cargo test --profile $CARGO_TEST_PROFILE
# --no-run; default profile `ci`, what make test builds) and run inside
# the VM, which sees the host's root read-only at the same paths. Inside, the tests build their
# busybox image under the guest's /tmp (ext4: Linux 6.1 cannot idmap tmpfs).
# Env: V2VM_TEST_THREADS (libtest threads per binary, default 2), V2VM_TESTS (another list),
# V2VM_MEM (default 3G), V2VM_TIMEOUT (seconds for the whole VM, default 900).
# Exit: non-zero if any binary failed (each one's result is printed as `v2vm-test: ...`).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PROFILE=${CARGO_TEST_PROFILE:-ci}
BIN=$(readlink -f "${1:-$REPO/target/$PROFILE}")
LIST=${V2VM_TESTS:-$HERE/tests.txt}
THREADS=${V2VM_TEST_THREADS:-2}
cd "$REPO"

# The job for the guest: one `run BINARY FILTER...` line per list line.
job=$REPO/target/v2vm/job-$$.sh
mkdir -p "$REPO/target/v2vm"
trap 'rm -f "$job"' EXIT
{
  cat <<'HEAD'
set -u
# The VM kernel (6.1) has ext4/XFS project quotas: there their absence is a failure.
export VSLICE_BIN_DIR=$1 VSLICE_TEST_IMAGES=/tmp/vslice-test-images THREADS=$2 VSLICE_REQUIRE_PROJECT_QUOTA=1
echo "v2vm-test: kernel $(uname -r), cgroup $(stat -fc %T /sys/fs/cgroup), /tmp on $(stat -fc %T /tmp), $(nproc) cpus"
fails=0 passed=0 t0=$(date +%s)
run() {
  local name=$1 bin=$2 t=$(date +%s) rc=0
  shift 2
  echo "v2vm-test: === $name $*"
  "$bin" --test-threads="$THREADS" "$@" || rc=$?
  if [ $rc = 0 ]; then passed=$((passed + 1)); r=ok; else fails=$((fails + 1)); r="FAILED (exit $rc)"; fi
  echo "v2vm-test: $name $*: $r in $(($(date +%s) - t)) s"
}
HEAD
  while read -r target filters; do
    case $target in '' | \#*) continue ;; esac
    case $target in
      lib:*) sel=(-p "${target#lib:}" --lib) ;;
      *) sel=(--workspace --test "$target") ;;
    esac
    out=$(cargo test --profile "$PROFILE" --no-run "${sel[@]}" 2>&1) || { echo "$out" >&2; echo "run-tests: building \`$target\` failed" >&2; exit 1; }
    exe=$(echo "$out" | sed -n 's/^ *Executable .*(\(.*\))$/\1/p' | tail -n 1)
    [ -x "$REPO/$exe" ] || [ -x "$exe" ] || { echo "run-tests: no test binary for \`$target\` (cargo test --profile $PROFILE --no-run ${sel[*]})" >&2; exit 1; }
    case $exe in /*) ;; *) exe=$REPO/$exe ;; esac
    printf 'run %q %q' "$target" "$exe"; [ -z "$filters" ] || printf ' %s' "$filters"; echo
  done <"$LIST"
  echo 'echo "v2vm-test: $passed passed, $fails failed, $(($(date +%s) - t0)) s in the VM"'
  echo 'exit $((fails > 0))'
} >"$job"

# The guest sees the host's root, but its /tmp and /run are its own: a checkout there (or test
# binaries there) is shared into the guest at the same path.
shares=()
for d in "$REPO" "$BIN"; do
  case $d/ in /tmp/* | /run/*) shares+=(--share "$d") ;; esac
done
t0=$(date +%s)
rc=0
bash "$HERE/v2vm.sh" --mem "${V2VM_MEM:-3G}" --cpus "$(nproc)" --tmp-ext4 2G --timeout "${V2VM_TIMEOUT:-900}" \
  "${shares[@]}" -- bash "$job" "$BIN" "$THREADS" || rc=$?
echo "v2vm-test: VM job $(($(date +%s) - t0)) s wall (exit $rc)"
exit $rc
