//! `vslice snapshot|restore|clone|export|import`: a stopped slice's files saved, restored,
//! copied to a new slice with its own uid range, or moved to another node.
use super::{exit, out, out_json, print_info, Backend, CliError, R};
use crate::snapshot::{self, SnapshotError};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Save a stopped slice's files as a snapshot (or list them with --list).
    Snapshot {
        name: String,
        /// Snapshot name [default: snap-<epoch seconds>].
        snap: Option<String>,
        /// List the slice's snapshots instead.
        #[arg(long, conflicts_with = "snap")]
        list: bool,
    },
    /// Replace a stopped slice's files with one of its snapshots.
    Restore { name: String, snap: String },
    /// Copy a stopped slice to a new (stopped) slice with its own uid range; files are
    /// re-owned into the new range. Published ports are not copied.
    Clone { src: String, dst: String },
    /// Write a stopped slice (spec and files, ids relative to its range) to FILE
    /// (a zstd-compressed tar), to import it on another node.
    Export {
        name: String,
        /// Archive to write (by vsliced: a path on the node).
        file: std::path::PathBuf,
    },
    /// Create a slice from an archive written by `vslice export` (stopped, new uid range).
    Import {
        file: std::path::PathBuf,
        /// Name of the new slice [default: the archived name].
        name: Option<String>,
    },
}

impl crate::daemon::direct::ActionError for SnapshotError {
    fn status_code(&self) -> (u16, &'static str) {
        SnapshotError::status_code(self)
    }
}

impl From<SnapshotError> for CliError {
    fn from(e: SnapshotError) -> CliError {
        if let SnapshotError::Slice(s) = e {
            return s.into();
        }
        let (status, code) = e.status_code();
        let exit = match status {
            404 => exit::NOT_FOUND,
            409 => exit::CONFLICT,
            400 => exit::INVALID,
            _ => exit::FAILURE,
        };
        CliError::new(exit, code, e.to_string())
    }
}

fn abs(p: &std::path::Path) -> R<std::path::PathBuf> {
    std::path::absolute(p).map_err(|e| CliError::usage(format!("{}: {e}", p.display())))
}

pub(super) fn run(b: &Backend, json: bool, cmd: SnapshotCmd) -> R<i32> {
    match cmd {
        SnapshotCmd::Snapshot {
            name, list: true, ..
        } => {
            let all = match b {
                Backend::Daemon(c) => c.block_on(c.client().snapshots(&name))?,
                Backend::Direct(d) => snapshot::list(&d.manager, &d.paths, &name)?,
            };
            if json {
                out_json(&all);
            } else {
                let mut s = format!("{:<32} {:>10} CREATED\n", "SNAPSHOT", "SIZE");
                for i in &all {
                    s.push_str(&format!(
                        "{:<32} {:>10} {}\n",
                        i.name,
                        super::units::format_size(i.size_bytes),
                        crate::audit::time::format_secs(i.created)
                    ));
                }
                out(s.trim_end());
            }
        }
        SnapshotCmd::Snapshot { name, snap, .. } => {
            let info = match b {
                Backend::Daemon(c) => c.block_on(c.client().snapshot(&name, snap.as_deref()))?,
                Backend::Direct(d) => {
                    let args = serde_json::json!({ "name": snap });
                    d.act("snapshot", Some(&name), args, 201, |m| {
                        snapshot::snapshot(m, &d.paths, &name, snap.as_deref())
                    })??
                }
            };
            if json {
                out_json(&info);
            } else {
                out(&format!("snapshot {} of {name} saved", info.name));
            }
        }
        SnapshotCmd::Restore { name, snap } => {
            let info = match b {
                Backend::Daemon(c) => c.block_on(c.client().restore(&name, &snap))?,
                Backend::Direct(d) => {
                    let args = serde_json::json!({ "snapshot": snap });
                    d.act("restore", Some(&name), args, 200, |m| {
                        snapshot::restore(m, &d.paths, &name, &snap)?;
                        Ok::<_, SnapshotError>(m.inspect(&name)?)
                    })??
                }
            };
            print_info(json, &info, &format!("restored from {snap}:"));
        }
        SnapshotCmd::Clone { src, dst } => {
            let info = match b {
                Backend::Daemon(c) => c.block_on(c.client().clone_slice(&src, &dst))?,
                Backend::Direct(d) => {
                    let args = serde_json::json!({ "name": dst });
                    d.act("clone", Some(&src), args, 201, |m| {
                        snapshot::clone(m, &d.paths, &src, &dst)
                    })??
                }
            };
            print_info(json, &info, "cloned to");
        }
        SnapshotCmd::Export { name, file } => {
            let file = abs(&file)?;
            let res = match b {
                Backend::Daemon(c) => {
                    c.block_on(c.client().export(&name, &file.to_string_lossy()))?
                }
                Backend::Direct(d) => {
                    let args = serde_json::json!({ "path": file });
                    d.act("export", Some(&name), args, 200, |m| {
                        snapshot::export(m, &d.paths, &name, &file)
                    })??
                }
            };
            if json {
                out_json(&res);
            } else {
                out(&format!(
                    "exported {name} to {} ({} entries, {})",
                    res.path,
                    res.entries,
                    super::units::format_size(res.size_bytes)
                ));
            }
        }
        SnapshotCmd::Import { file, name } => {
            let file = abs(&file)?;
            let info = match b {
                Backend::Daemon(c) => {
                    // The daemon's route names the slice; read the archived name here if none
                    // was given (the spec is the archive's first member).
                    let name = match name {
                        Some(n) => n,
                        None => archived_name(&file)?,
                    };
                    c.block_on(c.client().import_slice(&name, &file.to_string_lossy()))?
                }
                Backend::Direct(d) => {
                    let args = serde_json::json!({ "path": file, "name": name });
                    d.act("slice_import", name.as_deref(), args, 201, |m| {
                        snapshot::import(m, &d.paths, &file, name.as_deref())
                    })??
                }
            };
            print_info(json, &info, "imported");
        }
    }
    Ok(exit::OK)
}

/// The slice name recorded in an export archive.
fn archived_name(file: &std::path::Path) -> R<String> {
    snapshot::archived_spec(file)
        .map(|s| s.name)
        .map_err(CliError::from)
}
