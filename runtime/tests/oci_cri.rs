//! Kubernetes' path to vslice: containerd's CRI plugin (Debian 12's containerd 1.6) with a
//! runtime handler `vslice` (io.containerd.runc.v2 with BinaryName = vslice-runc), driven the
//! way the kubelet drives it — CRI gRPC over containerd's unix socket (the k8s-cri crate):
//! RunPodSandbox with runtime_handler "vslice" (host network: no CNI), CreateContainer,
//! StartContainer, ExecSync, ContainerStats, Stop/Remove of both.
//!
//! The test starts its own containerd (own config, root, state, sockets; never the system's),
//! with a sandbox ("pause") image and an app image built here from the busybox rootfs and
//! imported with `ctr -n k8s.io images import` (nothing is pulled). It proves that the pod's
//! processes were created by vslice-runc (its state dir) in a user namespace whose root is an
//! unprivileged host uid, shared by every container of the pod, and that root in the pod
//! cannot change the host's network even though the pod uses the host's network namespace.
//! Everything is removed afterwards, even on failure: CRI containers and sandboxes, tasks,
//! shims and containerd (by PID), mounts under the test's directory, the pod cgroup parent
//! (`vslice-cri-test-<pid>` in every hierarchy) and the pod's uid range.
mod oci_support;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use oci_support::{cgroup_dirs_named, remove_cgroup_tree, runc_bin, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use tonic::transport::Channel;

const PAUSE_IMAGE: &str = "localhost/vslice-pause:1";
const APP_IMAGE: &str = "localhost/vslice-busybox:1";
/// vslice-runc's pod uid ranges start here (vslice::oci::cri::FIRST_HOST_ID).
const FIRST_POD_UID: u64 = 3_000_000_000;

/// The containerd config the test uses (docs/oci.md shows the same runtime table).
fn containerd_config(work: &Path, sock: &Path) -> String {
    format!(
        r#"version = 2
root = "{w}/root"
state = "{w}/state"
[grpc]
  address = "{s}"
[ttrpc]
  address = "{s}.ttrpc"
[debug]
  address = "{w}/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # The CRI's streaming server (exec/attach/port-forward URLs): loopback, any free port.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  # Pods run in a user namespace of their own; none may be shielded from the OOM killer below
  # containerd itself (the CRI gives pause -998). It is also what lets a pod start where root
  # lacks CAP_SYS_RESOURCE (as on this project's CI machines): lowering oom_score_adj needs it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "vslice"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.vslice]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.vslice.options]
        BinaryName = "{runc}"
        Root = "{w}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{w}/cni"
"#,
        w = work.display(),
        s = sock.display(),
        pause = PAUSE_IMAGE,
        runc = runc_bin().display(),
    )
}

/// A private containerd with its CRI plugin: own config, root, state and sockets.
struct Containerd {
    work: PathBuf,
    sock: PathBuf,
    /// The pods' cgroup parent, directly under every hierarchy's root.
    cg_parent: String,
    child: Option<Child>,
}

impl Containerd {
    fn start() -> Containerd {
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(
                found,
                "{tool} not found: install Debian's containerd package (make deps)"
            );
        }
        let tag = format!("vslice-cri-test-{}", std::process::id());
        let work = PathBuf::from(format!("/tmp/{tag}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("cni")).unwrap();
        std::fs::create_dir_all(work.join("logs")).unwrap();
        let sock = work.join("containerd.sock");
        std::fs::write(work.join("config.toml"), containerd_config(&work, &sock)).unwrap();
        let log = std::fs::File::create(work.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(work.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd {
            work,
            sock,
            cg_parent: tag,
            child: Some(child),
        };
        assert!(
            wait_for(30, || c.ctr(&["version"]).status.success()),
            "containerd did not come up: {}",
            c.log()
        );
        let rootfs = oci_support::busybox_rootfs();
        // Bind-mount targets the CRI adds that the busybox image lacks (a user-namespaced
        // init cannot create files in a rootfs owned by host root).
        let extra = [("etc/resolv.conf", "")];
        for (name, entry, file) in [
            (
                PAUSE_IMAGE,
                serde_json::json!(["/bin/sleep", "3600"]),
                "pause.tar",
            ),
            (APP_IMAGE, serde_json::json!(["/bin/sh"]), "busybox.tar"),
        ] {
            let out = c.work.join(file);
            let run = serde_json::json!({ "Entrypoint": entry });
            oci_support::image::make_oci_image(&rootfs, &c.work, name, run, &extra, &out);
            c.ok(&["images", "import", out.to_str().unwrap()]);
            std::fs::remove_file(&out).unwrap();
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["60", "ctr", "--address"])
            .arg(&self.sock)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// vslice-runc's --root for the CRI's namespace (Root in the runtime options + namespace).
    fn runtime_root(&self) -> PathBuf {
        self.work.join("runc/k8s.io")
    }

    fn runtime_state(&self, id: &str) -> serde_json::Value {
        let p = self.runtime_root().join(id).join("state.json");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (not created by vslice-runc?)\ncontainerd log:\n{}",
                p.display(),
                self.log()
            )
        });
        serde_json::from_str(&text).unwrap()
    }

    async fn client(&self) -> RuntimeServiceClient<Channel> {
        let path = self.sock.clone();
        let channel = tonic::transport::Endpoint::try_from("http://[::1]:1")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .expect("connect to containerd's CRI socket");
        RuntimeServiceClient::new(channel)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let daemon = self.child.take();
        oci_support::containerd::tear_down(
            |a| self.ctr(a),
            &self.sock,
            &self.runtime_root(),
            daemon,
            &self.work,
        );
        for d in cgroup_dirs_named(&self.cg_parent) {
            remove_cgroup_tree(&d);
        }
        for d in [
            "/run/containerd/s",
            "/run/containerd/fifo",
            "/run/containerd",
        ] {
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn uid_map(pid: i64) -> Vec<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

fn ns_of(pid: i64, ns: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap()
}

/// Host uid (real) of a process, from /proc/PID/status.
fn host_uid(pid: i64) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_style_pod_runs_under_vslice_runc_in_a_user_namespace() {
    let c = Containerd::start();
    let mut rt = c.client().await;
    let v = rt
        .version(cri::VersionRequest::default())
        .await
        .expect("CRI Version")
        .into_inner();
    assert_eq!(v.runtime_name, "containerd", "{v:?}");

    // RunPodSandbox, as the kubelet sends it for a hostNetwork pod with RuntimeClass vslice.
    let pod_uid = format!("uid-{}", std::process::id());
    // Host network, a PID namespace per container, the pod's IPC namespace.
    let namespaces = cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    };
    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "vslice-pod".into(),
            uid: pod_uid.clone(),
            namespace: "default".into(),
            attempt: 0,
        }),
        // The kubelet sends no hostname for a hostNetwork pod (the pod has the node's UTS
        // namespace; a hostname would need a private one).
        hostname: String::new(),
        log_directory: c.work.join("logs").to_string_lossy().into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            // The kubelet's cgroupfs driver: /kubepods/<qos>/pod<uid>.
            cgroup_parent: format!("/{}/pod{pod_uid}", c.cg_parent),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sid = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: "vslice".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\ncontainerd log:\n{}", c.log()))
        .into_inner()
        .pod_sandbox_id;

    // The sandbox was created by vslice-runc, in a new user namespace mapped to a pod range.
    let sstate = c.runtime_state(&sid);
    assert!(sstate["pid_start"].as_u64().is_some(), "{sstate}");
    let spid = sstate["pid"].as_i64().unwrap();
    let smap = uid_map(spid);
    assert_eq!(smap.len(), 3, "{smap:?}");
    assert_eq!((smap[0], smap[2]), (0, 65536), "{smap:?}");
    assert!(
        smap[1] >= FIRST_POD_UID,
        "pod root maps to host uid {}",
        smap[1]
    );
    assert_eq!(host_uid(spid), smap[1], "pause runs as the pod's root");
    assert!(
        std::fs::read_dir("/run/vslice-runc-userns")
            .unwrap()
            .flatten()
            .any(|e| std::fs::read(e.path()).unwrap() == sid.as_bytes()),
        "no uid range allocated for sandbox {sid}"
    );

    // CreateContainer + StartContainer, with limits as the kubelet turns them into.
    let created = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sid.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: APP_IMAGE.into(),
                    ..Default::default()
                }),
                command: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo started-in-vslice; exec sleep 1000".into(),
                ],
                log_path: "app.log".into(),
                linux: Some(cri::LinuxContainerConfig {
                    // The kubelet repeats the pod's namespace modes for each container.
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(namespaces.clone()),
                        ..Default::default()
                    }),
                    resources: Some(cri::LinuxContainerResources {
                        memory_limit_in_bytes: 64 << 20,
                        cpu_shares: 512,
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\ncontainerd log:\n{}", c.log()));
    let cid = created.into_inner().container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: cid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer: {e}\ncontainerd log:\n{}", c.log()));

    // The container: vslice-runc's, in the pod's user namespace (same maps, same namespace),
    // in the pod's IPC namespace, in its own PID namespace, under the pod cgroup parent.
    let cstate = c.runtime_state(&cid);
    let cpid = cstate["pid"].as_i64().unwrap();
    assert_eq!(uid_map(cpid), smap);
    assert_eq!(ns_of(cpid, "user"), ns_of(spid, "user"));
    assert_eq!(ns_of(cpid, "ipc"), ns_of(spid, "ipc"));
    assert_ne!(ns_of(cpid, "pid"), ns_of(spid, "pid"));
    assert_eq!(
        ns_of(cpid, "net"),
        ns_of(std::process::id() as i64, "net"),
        "hostNetwork pod"
    );
    assert_eq!(
        ns_of(cpid, "uts"),
        ns_of(std::process::id() as i64, "uts"),
        "hostNetwork pod"
    );
    assert_ne!(
        ns_of(cpid, "user"),
        ns_of(std::process::id() as i64, "user")
    );
    assert_eq!(host_uid(cpid), smap[1]);
    let cg = cstate["cgroup"].as_str().unwrap().to_string();
    assert_eq!(
        cg,
        format!("{}/pod{pod_uid}/{cid}", c.cg_parent),
        "{cstate}"
    );
    let limit_file = if vslice::cgroup::detect() == vslice::cgroup::Version::V2 {
        format!("/sys/fs/cgroup/{cg}/memory.max")
    } else {
        format!("/sys/fs/cgroup/memory/{cg}/memory.limit_in_bytes")
    };
    assert_eq!(
        std::fs::read_to_string(&limit_file).unwrap().trim(),
        (64u64 << 20).to_string()
    );
    let log_file = c.work.join("logs/app.log");
    assert!(
        wait_for(10, || std::fs::read_to_string(&log_file)
            .unwrap_or_default()
            .contains("started-in-vslice")),
        "container stdout not in the CRI log {}",
        log_file.display()
    );

    // ExecSync: stdout and exit code, as `kubectl exec` and exec probes get them.
    let r = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: cid.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo exec-out; id -u; cat /proc/self/uid_map; exit 3".into(),
            ],
            timeout: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync: {e}\ncontainerd log:\n{}", c.log()))
        .into_inner();
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(
        r.exit_code,
        3,
        "stdout {out} stderr {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["exec-out", "0"], "{out}");
    let inside_map: Vec<u64> = lines[2]
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        inside_map, smap,
        "exec'd process is in the pod's user namespace"
    );

    // The attack: the pod's root shares the host's network namespace, yet cannot change it
    // (that namespace belongs to the host's user namespace, not the pod's).
    let link = format!("vscri{}", std::process::id() % 100000);
    let r = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: cid.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                format!("ip link add {link} type dummy && echo ADDED; echo 1 > /proc/sys/net/ipv4/ip_forward && echo SYSCTL; hostname other-host && echo HOSTNAME; exit 0"),
            ],
            timeout: 30,
        })
        .await
        .unwrap()
        .into_inner();
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    let host_has_link = Path::new(&format!("/sys/class/net/{link}")).exists();
    if host_has_link {
        let _ = Command::new("ip").args(["link", "del", &link]).status();
    }
    assert!(
        !host_has_link && !out.contains("ADDED"),
        "pod root added a host link: {out} {err}"
    );
    assert!(
        !out.contains("SYSCTL"),
        "pod root changed a host sysctl: {out} {err}"
    );
    // A hostNetwork pod also has the node's UTS namespace: its root cannot rename the node.
    assert!(
        !out.contains("HOSTNAME"),
        "pod root renamed the node: {out} {err}"
    );
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "other-host"
    );

    // ContainerStats: what the kubelet's summary API and `kubectl top` read.
    let st = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: cid.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("ContainerStats: {e}\ncontainerd log:\n{}", c.log()))
        .into_inner()
        .stats
        .expect("stats");
    let mem = st.memory.expect("memory stats");
    let ws = mem.working_set_bytes.map(|v| v.value).unwrap_or(0);
    let usage = mem.usage_bytes.map(|v| v.value).unwrap_or(0);
    assert!(ws > 0 || usage > 0, "memory stats are zero: {mem:?}");

    // StopContainer, RemoveContainer: vslice-runc's state and the cgroup go.
    rt.stop_container(cri::StopContainerRequest {
        container_id: cid.clone(),
        timeout: 2,
    })
    .await
    .unwrap_or_else(|e| panic!("StopContainer: {e}\ncontainerd log:\n{}", c.log()));
    let status = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: cid.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, cri::ContainerState::ContainerExited as i32);
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: cid.clone(),
    })
    .await
    .unwrap();
    assert!(
        !c.runtime_root().join(&cid).exists(),
        "vslice-runc state left"
    );
    assert!(!Path::new(&limit_file).exists(), "container cgroup left");

    // StopPodSandbox, RemovePodSandbox: the pause process, its state and its uid range go.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\ncontainerd log:\n{}", c.log()));
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\ncontainerd log:\n{}", c.log()));
    assert!(!c.runtime_root().join(&sid).exists(), "sandbox state left");
    assert!(
        !Path::new(&format!("/proc/{spid}")).exists()
            || std::fs::read_to_string(format!("/proc/{spid}/status"))
                .map(|s| s.contains("State:\tZ"))
                .unwrap_or(true),
        "pause still running"
    );
    let held = std::fs::read_dir("/run/vslice-runc-userns")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read(e.path()).unwrap_or_default() == sid.as_bytes());
    assert!(!held, "the pod's uid range was not freed");
    let left: Vec<PathBuf> = cgroup_dirs_named(&c.cg_parent)
        .into_iter()
        .flat_map(|d| {
            std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(left.is_empty(), "pod cgroups left: {left:?}");
    drop(rt);
    drop(c);
}
