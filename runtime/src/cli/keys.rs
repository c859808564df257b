//! `vslice keys add|ls|rm NAME`: the SSH keys that may log in to a slice (`ssh NAME@node`).
use super::{exit, out, out_json, Backend, CliError, R};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Authorize a public key for `ssh NAME@node` (the first key creates the slice's host
    /// account). Takes effect at the next login.
    Add {
        /// Slice name.
        name: String,
        /// The public key (`ssh-ed25519 AAAA… comment`), or a .pub file with one key per line;
        /// `-` reads them from stdin.
        key: String,
    },
    /// List the slice's keys (fingerprint, type, comment).
    #[command(alias = "list")]
    Ls {
        /// Slice name.
        name: String,
    },
    /// Revoke a key by fingerprint (`SHA256:…`, as `keys ls` and `ssh-keygen -l` print it).
    #[command(alias = "remove")]
    Rm {
        /// Slice name.
        name: String,
        fingerprint: String,
    },
}

fn direct_refused() -> CliError {
    CliError::new(
        exit::FAILURE,
        "daemon_required",
        "SSH keys are served to sshd by vsliced: run `vslice keys` against the daemon (not in direct mode)",
    )
}

/// The keys given on the command line: a key, a file of keys, or stdin.
fn key_lines(arg: &str) -> R<Vec<String>> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::failure(format!("reading stdin: {e}")))?;
        s
    } else if !arg.contains(' ') && PathBuf::from(arg).is_file() {
        std::fs::read_to_string(arg).map_err(|e| CliError::failure(format!("{arg}: {e}")))?
    } else {
        arg.to_string()
    };
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        return Err(CliError::usage("no key given"));
    }
    Ok(lines)
}

pub(super) fn run(b: &Backend, cmd: KeysCmd, json: bool) -> R<i32> {
    let Backend::Daemon(c) = b else {
        return Err(direct_refused());
    };
    match cmd {
        KeysCmd::Add { name, key } => {
            let mut added = Vec::new();
            for l in key_lines(&key)? {
                added.push(c.add_key(&name, &l)?);
            }
            if json {
                out_json(&added);
            } else {
                for k in &added {
                    out(&format!("added {} {} to {name}", k.fingerprint, k.comment));
                }
            }
        }
        KeysCmd::Ls { name } => {
            let keys = c.keys(&name)?;
            if json {
                out_json(&keys);
            } else {
                let mut t = String::from("FINGERPRINT                                         TYPE         COMMENT          ADDED");
                for k in &keys {
                    t.push_str(&format!(
                        "\n{:<51} {:<12} {:<16} {}",
                        k.fingerprint, k.key_type, k.comment, k.added_at
                    ));
                }
                out(&t);
            }
        }
        KeysCmd::Rm { name, fingerprint } => {
            c.remove_key(&name, &fingerprint)?;
            if json {
                out_json(&serde_json::json!({ "removed": fingerprint }));
            } else {
                out(&format!("removed {fingerprint} from {name}"));
            }
        }
    }
    Ok(exit::OK)
}
