//! Where vslice keeps things. Every path can be overridden so that tests and benchmarks
//! run beside a real installation without touching it (DESIGN.md, "Rules for touching the host").
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
        Paths { root, cgroup_parent, policy_dir, shim }
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
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
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
