//! `vslice-runc`: a runc-compatible OCI runtime on vslice's sandbox executor (see
//! `vslice::oci` and docs/oci.md).
fn main() {
    std::process::exit(vslice::oci::cli::main())
}
