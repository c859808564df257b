//! Crash safety: `kill -9` of the daemon in the middle of creates and destroys loses no
//! acknowledged operation and leaves no orphan kernel object; slices survive the daemon and
//! are reattached; autostart slices come back after a "reboot". Needs root.
mod daemon_support;

use daemon_support::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use vslice::slice::Status;

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("VSLICE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos() as u64
            });
        eprintln!("VSLICE_TEST_SEED={seed}");
        Rng(seed.wrapping_mul(6364136223846793005).wrapping_add(1))
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Run `op(i)` for each name in parallel threads; kill the daemon after `delay`; return the
/// names whose operation was acknowledged (Ok).
fn race_with_kill<F>(
    d: &mut TestDaemon,
    names: &[String],
    delay: Duration,
    op: F,
) -> BTreeSet<String>
where
    F: Fn(&vslice::client::BlockingClient, &str) -> bool + Send + Sync + Copy + 'static,
{
    let threads: Vec<_> = names
        .iter()
        .map(|n| {
            let (sock, n) = (d.socket.clone(), n.clone());
            std::thread::spawn(move || {
                let c = vslice::client::BlockingClient::new(&sock).unwrap();
                op(&c, &n).then_some(n)
            })
        })
        .collect();
    std::thread::sleep(delay);
    d.kill9();
    threads
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect()
}

fn acknowledged_in_audit(
    c: &vslice::client::BlockingClient,
    action: &str,
    status: u16,
) -> BTreeSet<String> {
    c.audit_show(&vslice::client::AuditQuery {
        action: Some(action.into()),
        ..Default::default()
    })
    .unwrap()
    .into_iter()
    .filter_map(|r| match r.entry {
        vslice::audit::Entry::Control(c) if c.result.status == status => c.slice,
        _ => None,
    })
    .collect()
}

#[test]
fn kill_9_during_creates_loses_nothing_acknowledged() {
    let mut rng = Rng::new();
    let mut d = TestDaemon::start();
    let mut all_acked = BTreeSet::new();
    for round in 0..4 {
        let names: Vec<String> = (0..12).map(|i| format!("c{round}-{i}")).collect();
        let delay = Duration::from_millis(20 + rng.below(400));
        let acked = race_with_kill(&mut d, &names, delay, |c, n| c.create(&sleeper(n)).is_ok());
        eprintln!(
            "round {round}: killed after {delay:?}, {} of 12 creates acknowledged",
            acked.len()
        );
        d.spawn();
        d.assert_consistent();
        let c = d.blocking();
        for n in &acked {
            let info = c
                .inspect(n)
                .unwrap_or_else(|e| panic!("acknowledged create of {n} lost: {e}"));
            assert_eq!(info.status, Status::Running, "{n} was acknowledged running");
        }
        all_acked.extend(acked);
        let audited = acknowledged_in_audit(&c, "create", 201);
        assert!(
            all_acked.is_subset(&audited),
            "acknowledged but not audited: {:?}",
            all_acked.difference(&audited).collect::<Vec<_>>()
        );
        let report = c.audit_verify().unwrap();
        assert!(report.ok, "audit chain after a crash: {report:?}");
    }
    // The daemon works normally afterwards: everything can be destroyed.
    let c = d.blocking();
    for s in c.list().unwrap() {
        c.destroy(&s.spec.name).unwrap();
    }
    d.assert_consistent();
    assert!(d.cgroups().is_empty() && d.shims().is_empty());
}

#[test]
fn kill_9_during_destroys_loses_nothing_acknowledged() {
    let mut rng = Rng::new();
    let mut d = TestDaemon::start();
    for round in 0..3 {
        let names: Vec<String> = (0..10).map(|i| format!("d{round}-{i}")).collect();
        {
            let c = d.blocking();
            for n in &names {
                c.create(&sleeper(n)).unwrap();
            }
        }
        let delay = Duration::from_millis(10 + rng.below(300));
        let acked = race_with_kill(&mut d, &names, delay, |c, n| c.destroy(n).is_ok());
        eprintln!(
            "round {round}: killed after {delay:?}, {} of 10 destroys acknowledged",
            acked.len()
        );
        d.spawn();
        d.assert_consistent();
        let c = d.blocking();
        for n in &acked {
            assert!(
                c.inspect(n).unwrap_err().is_not_found(),
                "acknowledged destroy of {n} undone"
            );
        }
        let audited = acknowledged_in_audit(&c, "destroy", 204);
        assert!(acked.is_subset(&audited));
        // Whatever survived still works. (A destroy cut short may have stopped the slice
        // already: it is then a consistent stopped slice.)
        for n in &names {
            if let Ok(info) = c.inspect(n) {
                if info.status == Status::Stopped {
                    c.start(n)
                        .unwrap_or_else(|e| panic!("{n}: start after an interrupted destroy: {e}"));
                }
                let r = c
                    .exec(
                        n,
                        &vslice::api::types::ExecInput {
                            argv: vec!["/bin/true".into()],
                            ..Default::default()
                        },
                    )
                    .unwrap();
                assert_eq!(r.exit_code, 0);
            }
        }
        assert!(c.audit_verify().unwrap().ok);
    }
}

#[test]
fn slices_outlive_the_daemon_and_autostart_after_reboot() {
    let mut d = TestDaemon::start();
    let c = d.blocking();
    let mut auto = sleeper("auto");
    auto.autostart = true;
    let a = c.create(&auto).unwrap();
    let m = c.create(&sleeper("manual")).unwrap();
    drop(c);

    // The daemon dies; the slices keep running; a new daemon reattaches.
    d.kill9();
    std::thread::sleep(Duration::from_millis(300));
    for i in [&a, &m] {
        let pid = i.init_pid.unwrap();
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{} died with the daemon",
            i.spec.name
        );
    }
    d.spawn();
    d.assert_consistent();
    let c = d.blocking();
    assert_eq!(
        c.inspect("auto").unwrap().init_pid,
        a.init_pid,
        "reattached, not restarted"
    );
    assert_eq!(c.inspect("manual").unwrap().init_pid, m.init_pid);
    // Events keep flowing after reattachment: an exit is noticed by the poller.
    let sock = d.socket.clone();
    let follower = std::thread::spawn(move || {
        let c = vslice::client::BlockingClient::new(&sock).unwrap();
        let mut ev = c
            .events(&vslice::client::EventFilter {
                slice: Some("manual".into()),
                ..Default::default()
            })
            .unwrap();
        ev.next().map(|e| e.unwrap())
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(m.init_pid.unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    );
    let e = follower.join().unwrap().expect("an event");
    assert_eq!(e.kind.name(), "exited", "{e:?}");
    drop(c);

    // A "reboot": the daemon stops and every slice process is gone.
    d.stop();
    for (pid, _, _) in d.shims() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for p in d.cgroup_pids() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    wait_for("slice processes gone", Duration::from_secs(10), || {
        d.shims().is_empty() && d.cgroup_pids().is_empty()
    });
    let t = Instant::now();
    d.spawn();
    eprintln!("restart with reconcile took {:?}", t.elapsed());
    d.assert_consistent();
    let c = d.blocking();
    let auto = c.inspect("auto").unwrap();
    assert_eq!(
        auto.status,
        Status::Running,
        "autostart slice started again"
    );
    assert_ne!(auto.init_pid, a.init_pid);
    assert_eq!(
        c.inspect("manual").unwrap().status,
        Status::Stopped,
        "a non-autostart slice stays stopped"
    );
    let recs = c
        .audit_show(&vslice::client::AuditQuery {
            kind: Some("daemon".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(
        recs.iter().any(|r| matches!(&r.entry, vslice::audit::Entry::Daemon(dr) if dr.event == "autostart" && dr.slice.as_deref() == Some("auto"))),
        "autostart is audited"
    );
}

/// A private node network for a daemon (bridge, table, veth prefix, subnet); torn down on
/// drop after the daemon is killed (so it does not re-create what is removed).
struct NetEnv {
    d: TestDaemon,
    node: vslice::net::NodeNet,
}

impl Drop for NetEnv {
    fn drop(&mut self) {
        self.d.kill9();
        if let Err(e) = self.node.teardown() {
            eprintln!("node network teardown: {e}");
        }
    }
}

fn bridged(name: &str) -> vslice::slice::CreateRequest {
    let mut r = sleeper(name);
    r.net.mode = vslice::net::NetMode::Bridge;
    r
}

/// The recorded network state agrees with the slices and the kernel: allocations only for
/// existing bridge slices; every running one attached (its veth on the bridge); no stopped one
/// recorded as attached; no veth of ours on the host that the state does not name.
fn net_consistency(env: &NetEnv) -> Result<(), String> {
    let infos = env.d.blocking().list().map_err(|e| format!("list: {e}"))?;
    let allocs = env.node.allocations().map_err(|e| e.to_string())?;
    let names: BTreeSet<String> = infos.iter().map(|i| i.spec.name.clone()).collect();
    for a in &allocs {
        if !names.contains(&a.slice) {
            return Err(format!(
                "net state keeps {} ({}) of a slice that is gone",
                a.address, a.slice
            ));
        }
    }
    for i in &infos {
        let running = i.status == Status::Running;
        let attached = env
            .node
            .is_attached(&i.spec.name)
            .map_err(|e| e.to_string())?;
        if running && !attached {
            return Err(format!("running slice {} has no network", i.spec.name));
        }
        if !running && allocs.iter().any(|a| a.slice == i.spec.name && a.active) {
            return Err(format!(
                "stopped slice {} recorded as attached",
                i.spec.name
            ));
        }
    }
    let active: BTreeSet<String> = allocs
        .iter()
        .filter(|a| a.active)
        .map(|a| a.host_veth.clone())
        .collect();
    let links: BTreeSet<String> = std::fs::read_dir("/sys/class/net")
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix(&env.node.veth_prefix)
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    if links != active {
        return Err(format!(
            "host veths {links:?} vs attached slices' {active:?}"
        ));
    }
    Ok(())
}

#[test]
fn kill_9_during_bridged_operations_keeps_the_network_state_with_the_slices() {
    for tool in ["ip", "tc", "nft"] {
        assert!(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
                .unwrap_or(false),
            "{tool} is needed"
        );
    }
    let mut rng = Rng::new();
    let pid = std::process::id();
    let tag = format!("{:x}", pid % 0xffff);
    let (bridge, table, prefix, subnet) = (
        format!("vst{tag}k"),
        format!("vslice_tk{tag}"),
        format!("vsk{tag}"),
        format!("10.218.{}.0/24", pid % 250 + 1),
    );
    let env: Vec<(String, String)> = [
        ("VSLICE_BRIDGE", &bridge),
        ("VSLICE_NFT_TABLE", &table),
        ("VSLICE_VETH_PREFIX", &prefix),
        ("VSLICE_SUBNET", &subnet),
        ("VSLICE_IP_FORWARD", &"0".to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let d = TestDaemon::start_with(Options {
        env,
        ..Default::default()
    });
    let mut node = vslice::net::NodeNet::new(d.root.join("net"));
    node.bridge = bridge;
    node.nft_table = table;
    node.veth_prefix = prefix;
    node.subnet = subnet.parse().unwrap();
    node.set_global_ip_forward = false;
    let mut env = NetEnv { d, node };
    for round in 0..3 {
        // Creates racing the kill, and destroys of the previous round's slices.
        let names: Vec<String> = (0..5).map(|i| format!("n{round}-{i}")).collect();
        let delay = Duration::from_millis(100 + rng.below(600));
        let acked = race_with_kill(&mut env.d, &names, delay, |c, n| {
            c.create(&bridged(n)).is_ok()
        });
        eprintln!(
            "round {round}: creates killed after {delay:?}, {} of 5 acknowledged",
            acked.len()
        );
        env.d.spawn();
        // At once, not eventually: the daemon converges before it serves.
        net_consistency(&env).unwrap_or_else(|e| panic!("round {round}, right after restart: {e}"));
        env.d.assert_consistent();
        let c = env.d.blocking();
        for n in &acked {
            let info = c.inspect(n).unwrap();
            assert!(
                info.net.is_some_and(|n| n.address.is_some()),
                "{n} has its address"
            );
        }
        let existing: Vec<String> = c.list().unwrap().into_iter().map(|i| i.spec.name).collect();
        drop(c);
        let delay = Duration::from_millis(50 + rng.below(400));
        let gone = race_with_kill(&mut env.d, &existing, delay, |c, n| c.destroy(n).is_ok());
        eprintln!(
            "round {round}: destroys killed after {delay:?}, {} of {} acknowledged",
            gone.len(),
            existing.len()
        );
        env.d.spawn();
        net_consistency(&env).unwrap_or_else(|e| panic!("round {round}, after destroys: {e}"));
        env.d.assert_consistent();
    }
    // The daemon works normally afterwards: everything can be destroyed, nothing is left.
    let c = env.d.blocking();
    for s in c.list().unwrap() {
        c.destroy(&s.spec.name).unwrap();
    }
    drop(c);
    net_consistency(&env).unwrap();
    assert!(env.node.allocations().unwrap().is_empty());
    env.d.assert_consistent();
}
