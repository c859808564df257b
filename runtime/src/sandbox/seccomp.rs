//! Seccomp: OCI/Docker-format profiles compiled to BPF with seccompiler. OWNED BY THE POLICY
//! HELPER — interface fixed, implementation to be filled in.
use oci_spec::runtime::LinuxSeccomp;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile: {0}")]
    Profile(String),
    #[error("seccomp install: {0}")]
    Install(std::io::Error),
}

/// BPF programs compiled ahead of fork, so that installing them in the child allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct CompiledFilters {
    pub programs: Vec<Vec<libc::sock_filter>>,
}

/// Compile an OCI seccomp profile for the running architecture.
pub fn compile(_profile: &LinuxSeccomp) -> Result<CompiledFilters, SeccompError> {
    todo!()
}

impl CompiledFilters {
    /// Install in the calling thread via seccomp(SECCOMP_SET_MODE_FILTER). Does NOT set
    /// no_new_privs (the caller decides; slices keep setuid binaries working).
    pub fn install(&self) -> Result<(), SeccompError> {
        todo!()
    }
}
