#!/usr/bin/env python3
"""Time the peers (crun, runc, plain unshare) for `make bench`; driven by bench/peers.sh.

    peers.py WORK N

WORK is the directory peers.sh prepared: WORK/bundle (config.json + rootfs copy),
WORK/crun-root and WORK/runc-root (private --root state dirs). Must run inside a private
mount namespace in which /sys/fs/cgroup/unified is unmounted (crun 1.8 refuses the hybrid
layout otherwise; runc is run the same way so both see the same cgroup layout).

Each timed cycle is a full `<peer> run -b BUNDLE ID` (the container runs /bin/true in the
foreground, no terminal; a foreground run deletes the container itself when its process
exits, so this is run + delete), plus `<peer> delete ID` if state was left behind; the
figure is the wall time of the cycle. Each container has a unique ID and the absolute cgroupsPath /vslice-bench/ID (a
relative one would nest under the caller's cgroup). Prints one line per figure:

    peer crun run_true_ms median=14.2 p99=18.0 n=100
    peer crun run_true_userns_ms median=16.0 p99=20.3 n=100

`run_true_ms` uses `crun spec`'s namespaces (pid, net, ipc, uts, mount); `*_userns_ms` adds
a user namespace mapping container 0..65535 to host 100000.., as a slice has.

and exits 1 if any peer failed (after printing a `peer NAME run_true_ms error=...` line).
Whatever happens, every container it created is deleted (`delete -f`) before it returns.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

TIMEOUT_S = 30
WARMUP = 2
PREFIX = os.environ.get("VSLICE_BENCH_PREFIX", "vslice-bench-%d" % os.getpid())


def percentile(samples, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(s)))
    return s[rank - 1]


def median(samples):
    s = sorted(samples)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def report(peer, metric, samples):
    print(
        "peer %s %s median=%.1f p99=%.1f n=%d"
        % (peer, metric, median(samples), percentile(samples, 99), len(samples)),
        flush=True,
    )


def run(argv):
    """Run argv to completion (killing it by PID on timeout); raise on failure."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise RuntimeError("%s: timed out after %ds" % (" ".join(argv), TIMEOUT_S))
    if p.returncode != 0:
        msg = out.decode(errors="replace").strip().replace("\n", " | ")
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode, msg))


# The user-namespace variant maps container root to an unprivileged host range, as a slice
# does; the image stays owned by host root (read-only, world-readable: enough for /bin/true).
USERNS_BASE = 100000


def with_userns(config):
    c = json.loads(json.dumps(config))
    c["linux"]["namespaces"].append({"type": "user"})
    mapping = [{"containerID": 0, "hostID": USERNS_BASE, "size": 65536}]
    c["linux"]["uidMappings"] = mapping
    c["linux"]["gidMappings"] = mapping
    return c


class Peer:
    def __init__(self, name, work, base_config, userns=False):
        self.name = name
        self.work = work
        self.bundle = os.path.join(work, "bundle")
        self.root = os.path.join(work, name + "-root")
        self.created = []  # ids passed to `run`, deleted or not
        self.config = with_userns(base_config) if userns else json.loads(json.dumps(base_config))

    def cmd(self, *args):
        return [self.name, "--root", self.root] + list(args)

    def write_config(self, cid):
        self.config["linux"]["cgroupsPath"] = "/vslice-bench/" + cid
        path = os.path.join(self.bundle, "config.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.config, f, indent=1)
        os.rename(path + ".tmp", path)

    def cycle(self, cid):
        """One timed run + delete, in milliseconds."""
        self.write_config(cid)
        self.created.append(cid)
        t0 = time.perf_counter()
        run(self.cmd("run", "-b", self.bundle, cid))
        # A foreground `run` deletes the container itself once its process exits (crun and
        # runc alike); an explicit `delete` is needed (and timed) only if state is left.
        if os.path.exists(os.path.join(self.root, cid)):
            run(self.cmd("delete", cid))
        return (time.perf_counter() - t0) * 1000.0

    def cleanup(self):
        """delete -f every container this run created (and any left in our --root)."""
        ids = set(self.created)
        try:
            ids.update(e for e in os.listdir(self.root) if e.startswith(PREFIX))
        except OSError:
            pass
        for cid in sorted(ids):
            subprocess.run(self.cmd("delete", "-f", cid), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=TIMEOUT_S, check=False)


def bench_peer(name, work, base_config, n, userns):
    peer = Peer(name, work, base_config, userns)
    metric = "run_true_userns_ms" if userns else "run_true_ms"
    tag = "%s-%s%s" % (PREFIX, name, "-u" if userns else "")
    try:
        for i in range(WARMUP):
            peer.cycle("%s-w%d" % (tag, i))
        samples = [peer.cycle("%s-%d" % (tag, i)) for i in range(n)]
        report(name, metric, samples)
        return True
    except (RuntimeError, OSError) as e:
        print("peer %s %s error=%s" % (name, metric, json.dumps(str(e))), flush=True)
        return False
    finally:
        peer.cleanup()


def bench_unshare(n):
    argv = ["unshare", "-Urpmuin", "--fork", "true"]
    try:
        for _ in range(WARMUP):
            run(argv)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            run(argv)
            samples.append((time.perf_counter() - t0) * 1000.0)
        report("unshare", "userns_fork_true_ms", samples)
        return True
    except (RuntimeError, OSError) as e:
        print("peer unshare userns_fork_true_ms error=%s" % json.dumps(str(e)), flush=True)
        return False


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    work, n = sys.argv[1], int(sys.argv[2])
    if n < 1:
        print("N must be >= 1", file=sys.stderr)
        return 2
    if os.path.ismount("/sys/fs/cgroup/unified"):
        print("peers.py: /sys/fs/cgroup/unified is mounted; run me via bench/peers.sh",
              file=sys.stderr)
        return 2
    # TERM (from peers.sh's cleanup) unwinds through the `finally` that deletes containers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    peers = [p for p in os.environ.get("VSLICE_BENCH_PEERS", "crun runc").split() if p]
    ok = True
    # The bundle's config.json is rewritten per container: read the base once, up front.
    with open(os.path.join(work, "bundle", "config.json")) as f:
        base_config = json.load(f)
    for name in peers:
        for userns in (False, True):
            ok = bench_peer(name, work, base_config, n, userns) and ok
    ok = bench_unshare(n) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
