//! Session recordings: every interactive terminal (`vslice enter`, the API's tty exec) is
//! recorded as an asciicast v2 file that `asciinema play` replays.
//!
//! * `<root>/audit/sessions/YYYYMMDD/<slice>-<ms>-<n>.cast`, mode 0600 (directory 0700): a
//!   header line (`version` 2, `width`, `height`, `timestamp`, `title`) and one event line per
//!   chunk: `[seconds, "o", text]` for output (always), `[seconds, "i", text]` for input only
//!   when the config says so (`session_record_input`: passwords typed in a shell end up in
//!   input recordings, so it is off by default; the echo of what was typed is in the output).
//! * The control log's `exec` record of the session names the recording (`args.recording`,
//!   relative to the audit directory) and its `exec_end` record carries the file's size and
//!   sha256 when it was closed, so the control chain protects the recording: an edited or
//!   removed recording no longer matches its `exec_end` record ([`verify_recording`]).
//! * Text: output bytes are decoded as UTF-8 across chunk boundaries (a multi-byte character
//!   split between two reads is kept whole); invalid bytes become U+FFFD.
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::time;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// An open recording.
pub struct Recorder {
    file: BufWriter<File>,
    path: PathBuf,
    /// Relative to the audit directory (what the control record names).
    pub name: String,
    started: Instant,
    record_input: bool,
    out_pending: Vec<u8>,
    in_pending: Vec<u8>,
    /// Set after the first write error: the session goes on, the recording says it is cut.
    failed: bool,
}

/// What the `exec_end` record says about a closed recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub complete: bool,
}

impl Closed {
    pub fn to_json(&self) -> Value {
        json!({"file": self.name, "bytes": self.bytes, "sha256": self.sha256, "complete": self.complete})
    }
}

/// Split `buf` into the longest valid UTF-8 prefix (lossy for invalid bytes) and an
/// incomplete trailing sequence kept for the next chunk.
fn take_text(buf: &mut Vec<u8>) -> String {
    let mut cut = buf.len();
    // An incomplete multi-byte sequence at the end is at most 3 bytes.
    for back in 1..=3.min(buf.len()) {
        let i = buf.len() - back;
        let b = buf[i];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back
        }
        let need = if b >= 0xF0 {
            4
        } else if b >= 0xE0 {
            3
        } else if b >= 0xC0 {
            2
        } else {
            1
        };
        if need > back {
            cut = i;
        }
        break;
    }
    let rest = buf.split_off(cut);
    let text = String::from_utf8_lossy(buf).into_owned();
    *buf = rest;
    text
}

impl Recorder {
    /// Start a recording for a session of `slice` (`argv`, terminal `cols`x`rows`).
    pub fn create(
        audit_dir: &Path,
        slice: &str,
        argv: &[String],
        cols: u16,
        rows: u16,
        record_input: bool,
    ) -> io::Result<Recorder> {
        let now = time::now_millis();
        let day = super::records::day_of(now);
        let dir = audit_dir.join("sessions").join(&day);
        fs::create_dir_all(&dir)?;
        for d in [audit_dir.join("sessions"), dir.clone()] {
            let _ = fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let file_name = format!("{slice}-{now}-{}-{n}.cast", std::process::id());
        let path = dir.join(&file_name);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let mut file = BufWriter::new(f);
        let header = json!({
            "version": 2,
            "width": cols.max(1),
            "height": rows.max(1),
            "timestamp": now / 1000,
            "title": format!("{slice}: {}", argv.join(" ")),
            "env": {"TERM": "xterm"},
        });
        writeln!(file, "{header}")?;
        Ok(Recorder {
            file,
            path,
            name: format!("sessions/{day}/{file_name}"),
            started: Instant::now(),
            record_input,
            out_pending: Vec::new(),
            in_pending: Vec::new(),
            failed: false,
        })
    }

    fn event(&mut self, code: &str, text: String) {
        if self.failed || text.is_empty() {
            return;
        }
        let t = self.started.elapsed().as_secs_f64();
        let line = json!([(t * 1e6).round() / 1e6, code, text]);
        if writeln!(self.file, "{line}").is_err() {
            self.failed = true;
        }
    }

    /// Terminal output (always recorded).
    pub fn output(&mut self, data: &[u8]) {
        self.out_pending.extend_from_slice(data);
        let text = take_text(&mut self.out_pending);
        self.event("o", text);
    }

    /// Terminal input (recorded only when the policy says so).
    pub fn input(&mut self, data: &[u8]) {
        if !self.record_input {
            return;
        }
        self.in_pending.extend_from_slice(data);
        let text = take_text(&mut self.in_pending);
        self.event("i", text);
    }

    /// Flush, fsync and hash the file.
    pub fn close(mut self) -> Closed {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.out_pending)).into_owned();
        self.event("o", rest);
        let ok = self.file.flush().is_ok() && self.file.get_ref().sync_all().is_ok();
        let (bytes, sha256) = hash_file(&self.path).unwrap_or((0, String::new()));
        Closed {
            name: self.name.clone(),
            bytes,
            sha256,
            complete: ok && !self.failed,
        }
    }
}

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let data = fs::read(path)?;
    let mut h = Sha256::new();
    h.update(&data);
    Ok((data.len() as u64, hex::encode(h.finalize())))
}

/// Does the recording still match what its `exec_end` record says?
pub fn verify_recording(audit_dir: &Path, recording: &Value) -> Result<(), String> {
    let name = recording
        .get("file")
        .and_then(Value::as_str)
        .ok_or("no file")?;
    if name.contains("..") {
        return Err(format!("{name}: bad name"));
    }
    let want = recording
        .get("sha256")
        .and_then(Value::as_str)
        .unwrap_or("");
    match hash_file(&audit_dir.join(name)) {
        Ok((_, got)) if got == want => Ok(()),
        Ok(_) => Err(format!(
            "{name}: content does not match its exec_end record (edited)"
        )),
        Err(e) => Err(format!("{name}: {e} (removed?)")),
    }
}

/// Check every recording named by an `exec_end` (API terminal sessions) or `ssh_logout` (SSH
/// terminal sessions) record of the control log.
pub fn verify_recordings(
    audit_dir: &Path,
) -> Result<Vec<crate::proto::audit::Problem>, super::AuditError> {
    let mut lines = Vec::new();
    for action in ["exec_end", "ssh_logout"] {
        let filter = super::Filter {
            action: Some(action.into()),
            ..Default::default()
        };
        lines.extend(super::query(audit_dir, &filter)?);
    }
    let mut problems = Vec::new();
    for line in lines {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let Some(rec) = v.pointer("/args/recording") else {
            continue;
        };
        if let Err(reason) = verify_recording(audit_dir, rec) {
            problems.push(crate::proto::audit::Problem {
                segment: "sessions".into(),
                line: 0,
                seq: v.get("seq").and_then(Value::as_u64),
                reason,
            });
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_split_utf8_whole() {
        let mut b = "aé".as_bytes().to_vec();
        let last = b.pop().unwrap();
        assert_eq!(take_text(&mut b), "a");
        b.push(last);
        assert_eq!(take_text(&mut b), "é");
        assert!(b.is_empty());
        let mut b = vec![b'x', 0xff, b'y'];
        assert_eq!(take_text(&mut b), "x\u{fffd}y");
    }

    #[test]
    fn writes_asciicast_v2_and_detects_edits() {
        let d = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(d.path(), "web", &["/bin/sh".into()], 80, 24, false).unwrap();
        r.output(b"$ ");
        r.input(b"secret\n");
        r.output("ok \u{2713}\r\n".as_bytes());
        let c = r.close();
        assert!(c.complete);
        let text = fs::read_to_string(d.path().join(&c.name)).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["version"], 2);
        assert_eq!(lines[0]["width"], 80);
        assert_eq!(lines.len(), 3, "input is not recorded by default: {text}");
        assert_eq!(lines[2][1], "o");
        assert_eq!(lines[2][2], "ok \u{2713}\r\n");
        assert!(verify_recording(d.path(), &c.to_json()).is_ok());
        fs::write(d.path().join(&c.name), text.replace("ok", "no")).unwrap();
        assert!(verify_recording(d.path(), &c.to_json()).is_err());
    }
}
