//! `vslice image import|ls|inspect|rm`: OCI images in, images listed with the slices that use
//! them, unused images out.
use super::{exit, out, out_json, Backend, CliError, R};
use crate::image::import::Progress;
use crate::image::store::{self, StoreError};
use crate::proto::image_import::{ImageDetails, ImportRequest, ImportResult};
use clap::Subcommand;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Import an OCI image, offline: an OCI image layout directory, an oci-archive tar or a
    /// `docker save` tar. Digests are verified; the image is stored root-only under
    /// <root>/images/NAME with its config (Env, WorkingDir, Entrypoint, Cmd, User).
    Import {
        /// The layout directory or tar file (read by vsliced, or by this process with
        /// VSLICE_DIRECT=1).
        path: PathBuf,
        /// Image name [default: from the image's reference, else the file name].
        #[arg(long)]
        name: Option<String>,
        /// Show progress on stderr also when it is not a terminal.
        #[arg(long)]
        progress: bool,
    },
    /// List images with the slices that use each.
    Ls {
        /// Also compute each image's disk usage.
        #[arg(long)]
        size: bool,
    },
    /// Show an image: its stored OCI config and the slices using it (JSON).
    Inspect { name: String },
    /// Remove an image; refused while a slice uses it.
    Rm { name: String },
}

impl crate::daemon::direct::ActionError for StoreError {
    fn status_code(&self) -> (u16, &'static str) {
        StoreError::status_code(self)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
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

/// A line per image for `image ls --json`.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    image: crate::proto::Image,
    used_by: Vec<String>,
}

/// Progress on stderr: rewritten in place on a terminal, a line per layer otherwise.
fn progress_printer(tty: bool) -> impl FnMut(Progress) {
    move |p: Progress| {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let mut e = std::io::stderr().lock();
        let done = p.read >= p.total;
        if tty {
            let _ = write!(
                e,
                "\rlayer {}/{}: {:.1}/{:.1} MiB{}",
                p.layer,
                p.layers,
                mib(p.read),
                mib(p.total),
                if done { "\n" } else { "" }
            );
        } else if done {
            let _ = writeln!(e, "layer {}/{}: {:.1} MiB", p.layer, p.layers, mib(p.total));
        }
        let _ = e.flush();
    }
}

pub(super) fn run(b: &Backend, json: bool, cmd: ImageCmd) -> R<i32> {
    match cmd {
        ImageCmd::Import {
            path,
            name,
            progress,
        } => {
            let path = std::path::absolute(&path)
                .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
            let tty = std::io::stderr().is_terminal();
            let show = tty || progress;
            let res: ImportResult = match b {
                Backend::Daemon(c) => {
                    if show {
                        eprintln!("importing {} (vsliced reads it)...", path.display());
                    }
                    let req = ImportRequest {
                        path: path.to_string_lossy().into_owned(),
                        name: name.clone(),
                    };
                    c.block_on(c.client().image_import(&req))?
                }
                Backend::Direct(d) => {
                    let args = serde_json::json!({ "path": path, "name": name });
                    let images = d.paths.images_dir();
                    let mut report = progress_printer(tty);
                    let mut quiet = |_: Progress| {};
                    let cb: &mut dyn FnMut(Progress) = if show { &mut report } else { &mut quiet };
                    d.act("image_import", None, args, 201, |_| {
                        store::import(&images, &path, name.as_deref(), cb)
                    })??
                }
            };
            if json {
                out_json(&res);
            } else {
                out(&format!(
                    "imported image {} ({} layers, {} entries, {:.1} MiB, {})",
                    res.name,
                    res.config.layers,
                    res.entries,
                    res.bytes as f64 / (1 << 20) as f64,
                    res.config.format
                ));
            }
            Ok(exit::OK)
        }
        ImageCmd::Ls { size } => {
            let images = b.images(size)?;
            let slices = b.list()?;
            let listed: Vec<Listed> = images
                .into_iter()
                .map(|image| {
                    let used_by = slices
                        .iter()
                        .filter(|s| s.spec.image == image.name)
                        .map(|s| s.spec.name.clone())
                        .collect();
                    Listed { image, used_by }
                })
                .collect();
            if json {
                out_json(&listed);
            } else {
                let mut s = format!("{:<24} {:>8} {:>5} USED-BY\n", "NAME", "SIZE", "REFS");
                for l in &listed {
                    s.push_str(&format!(
                        "{:<24} {:>8} {:>5} {}\n",
                        l.image.name,
                        if size {
                            super::units::format_size(l.image.size_bytes)
                        } else {
                            "-".into()
                        },
                        l.used_by.len(),
                        if l.used_by.is_empty() {
                            "-".to_string()
                        } else {
                            l.used_by.join(",")
                        }
                    ));
                }
                out(s.trim_end());
            }
            Ok(exit::OK)
        }
        ImageCmd::Inspect { name } => {
            let details: ImageDetails = match b {
                Backend::Daemon(c) => c.block_on(c.client().image_inspect(&name))?,
                Backend::Direct(d) => {
                    store::details(&d.paths.images_dir(), &d.paths.slices_dir(), &name)?
                }
            };
            out_json(&details);
            Ok(exit::OK)
        }
        ImageCmd::Rm { name } => {
            match b {
                Backend::Daemon(c) => c.block_on(c.client().image_remove(&name))?,
                Backend::Direct(d) => {
                    let args = serde_json::json!({ "name": name });
                    let (images, slices, lock) = (
                        d.paths.images_dir(),
                        d.paths.slices_dir(),
                        d.paths.lock_file(),
                    );
                    d.act("image_remove", None, args, 204, |_| {
                        store::remove(&images, &slices, &lock, &name)
                    })??
                }
            }
            if !json {
                out(&format!("removed image {name}"));
            }
            Ok(exit::OK)
        }
    }
}
