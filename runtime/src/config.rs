//! Where vslice keeps things. Every path can be overridden so that tests and benchmarks
//! run beside a real installation without touching it (docs/design.md, "Host rules").
use std::path::PathBuf;

/// Default state root: slice specs, runtime state, upper dirs, images.
pub const DEFAULT_STATE_ROOT: &str = "/var/lib/vslice";
/// Default cgroup parent, created at the root of every hierarchy (never relative to the caller).
pub const DEFAULT_CGROUP_PARENT: &str = "vslice";
/// Where `make install` puts the policies.
pub const DEFAULT_POLICY_DIR: &str = "/usr/share/vslice/policies";

#[derive(Debug, Clone)]
pub struct Paths {
    /// State root (`VSLICE_ROOT`).
    pub root: PathBuf,
    /// Cgroup parent name (`VSLICE_CGROUP_PARENT`); a single path component.
    pub cgroup_parent: String,
    /// Directory holding `<policy>.toml` and `seccomp/*.json` (`VSLICE_POLICY_DIR`).
    pub policy_dir: PathBuf,
    /// The shim binary (`VSLICE_SHIM`); by default next to the running executable.
    pub shim: PathBuf,
    /// Node network settings (bridge, subnet, nftables table, veth prefix, node caps).
    pub net: NetSettings,
}

/// Node network settings; every field has a documented default and an environment override so
/// that tests run their own bridge beside a real installation.
#[derive(Debug, Clone, Default)]
pub struct NetSettings {
    /// `VSLICE_BRIDGE` (default `vslice0`).
    pub bridge: Option<String>,
    /// `VSLICE_SUBNET` (default 10.213.0.0/20).
    pub subnet: Option<String>,
    /// `VSLICE_NFT_TABLE` (default `vslice`).
    pub nft_table: Option<String>,
    /// `VSLICE_VETH_PREFIX` (default `vs`).
    pub veth_prefix: Option<String>,
    /// `VSLICE_NODE_EGRESS_RATE` / `VSLICE_NODE_INGRESS_RATE`: node-wide caps in bits/s,
    /// shared between slices by weight.
    pub node_egress_rate: Option<u64>,
    pub node_ingress_rate: Option<u64>,
    /// `VSLICE_IP_FORWARD=0` leaves the host-wide ip_forward sysctl alone (tests).
    pub set_global_ip_forward: bool,
}

impl NetSettings {
    pub fn from_env() -> NetSettings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        NetSettings {
            bridge: var("VSLICE_BRIDGE"),
            subnet: var("VSLICE_SUBNET"),
            nft_table: var("VSLICE_NFT_TABLE"),
            veth_prefix: var("VSLICE_VETH_PREFIX"),
            node_egress_rate: var("VSLICE_NODE_EGRESS_RATE").and_then(|v| v.parse().ok()),
            node_ingress_rate: var("VSLICE_NODE_INGRESS_RATE").and_then(|v| v.parse().ok()),
            set_global_ip_forward: var("VSLICE_IP_FORWARD").as_deref() != Some("0"),
        }
    }
}

impl Paths {
    /// Resolve paths from the environment, falling back to the documented defaults.
    pub fn from_env() -> Paths {
        let root = env_path("VSLICE_ROOT").unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_ROOT));
        let cgroup_parent = std::env::var("VSLICE_CGROUP_PARENT")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_CGROUP_PARENT.to_string());
        let policy_dir = env_path("VSLICE_POLICY_DIR").unwrap_or_else(default_policy_dir);
        let shim = env_path("VSLICE_SHIM").unwrap_or_else(|| sibling_binary("vslice-shim"));
        Paths {
            root,
            cgroup_parent,
            policy_dir,
            shim,
            net: NetSettings::from_env(),
        }
    }

    pub fn slices_dir(&self) -> PathBuf {
        self.root.join("slices")
    }
    pub fn slice_dir(&self, name: &str) -> PathBuf {
        self.slices_dir().join(name)
    }
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    /// Lock serialising uid-range allocation and name reservation.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A checkout runs from `target/<profile>/`; the policies then live in `<repo>/policies`.
fn default_policy_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            let candidate = dir.join("policies");
            if candidate.join("default.toml").is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(DEFAULT_POLICY_DIR)
}

fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin").join(name))
}
