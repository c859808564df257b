//! The control-plane audit log: an append-only, hash-chained, newline-delimited JSON log in
//! segments under `<state root>/audit/`.
//!
//! * Every record carries `seq` (1, 2, 3, … across all segments), `time`, a `kind` tag and
//!   the kind's fields, `prev_hash` (the `hash` of the record before it; 64 zeros for the
//!   first) and `hash = sha256(prev_hash ‖ canonical JSON of the record without "hash")`,
//!   lower-case hex. Canonical JSON: object keys sorted bytewise, no whitespace, serde_json's
//!   string and number formatting. Lines in the files are the canonical JSON of the whole
//!   record, so `sha256sum`-style tools outside vslice can re-check them.
//! * Segments are `audit-00000001.ndjson`, `audit-00000002.ndjson`, … A new segment starts when
//!   the current one would grow past the configured size (16 MiB by default). The chain runs
//!   across segments.
//! * `head` holds the seq and hash of the last record; it is rewritten (and fsynced) after each
//!   append, so that removing records from the end of the log — which leaves a valid chain — is
//!   still detected by [`verify`].
//! * [`AuditLog::append`] fsyncs the record and the head before returning: callers acknowledge
//!   an operation only after it returned.
//! * Kinds: `control` (API requests: who did what to which slice, and the result) and `daemon`
//!   (daemon start/stop, recovery notes). Network-flow and in-slice process records are meant
//!   to slot in as further variants of [`Entry`]; [`verify`] and [`query`] work on the generic
//!   JSON and do not need to know a kind to check it.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

mod bpf_ring;
pub mod ctnetlink;
pub mod exec_bpf;
pub mod execs;
pub mod flows;
pub mod owner;
pub mod records;
pub mod sessions;
pub mod time;

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Default segment size before rotation.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;
const HEAD_FILE: &str = "head";
/// The head file is rewritten in place with a fixed size (one sector), so a rewrite is one
/// small `pwrite` + `fdatasync`.
const HEAD_LEN: usize = 160;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("audit log {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError::Io { op, path, source }
}

/// The records are wire types (shared with the API's clients): [`crate::proto::audit`].
pub use crate::proto::audit::{
    Caller, ControlRecord, DaemonRecord, Entry, Head, Outcome, Problem, Record, VerifyReport,
};

impl Outcome {
    pub fn ok(status: u16) -> Outcome {
        Outcome {
            ok: true,
            status,
            code: None,
            message: None,
            exit_code: None,
        }
    }
    pub fn error(status: u16, code: &str, message: &str) -> Outcome {
        Outcome {
            ok: false,
            status,
            code: Some(code.to_string()),
            message: Some(message.to_string()),
            exit_code: None,
        }
    }
}

/// The `args` of `exec` / `exec_end` records: the command, the environment's names (values
/// may be secrets and stay out of the log), working directory and whether it had a terminal.
/// The daemon and direct mode both record execs with it, so the two read alike.
pub fn exec_args(argv: &[String], env: &[String], cwd: Option<&str>, tty: bool) -> Value {
    let env_names: Vec<&str> = env
        .iter()
        .map(|e| e.split('=').next().unwrap_or(""))
        .collect();
    serde_json::json!({ "argv": argv, "env": env_names, "cwd": cwd, "tty": tty })
}

/// Canonical JSON: keys sorted, no whitespace.
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(v, &mut out);
    utf8(out)
}

/// Text that is UTF-8 by construction (serde_json writes only valid UTF-8).
fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// An object's members in key order (serde_json's map is ordered unless its
/// `preserve_order` feature is on, which a dependency may turn on: sorting costs little).
fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<_> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    members
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, v)) in sorted(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => write_scalar(other, out),
    }
}

/// A JSON string; text with nothing to escape (keys, names, hashes, times: nearly all of it)
/// is copied as it is, which is what serde_json writes for it too.
fn write_str(v: &str, out: &mut Vec<u8>) {
    if v.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    } else {
        write_scalar(v, out);
    }
}

fn write_scalar<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    // Writing strings, numbers, booleans and null into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// A record's members as canonical JSON text, built without a `serde_json::Value` (the flow
/// log writes thousands a second, and building, sorting and dropping a map per record was
/// most of its writer's CPU). Each value must serialise canonically: scalars, strings,
/// arrays of them, structs whose fields are declared in key order, or a [`Value`] through
/// [`Members::put_value`].
#[derive(Debug, Clone, Default)]
pub struct Members {
    text: Vec<u8>,
    spans: Vec<(std::borrow::Cow<'static, str>, std::ops::Range<usize>)>,
}

impl Members {
    pub fn new() -> Members {
        Members {
            text: Vec::with_capacity(512),
            spans: Vec::with_capacity(24),
        }
    }

    /// Set `key` to `v` (a key set twice keeps its last value).
    pub fn put<T: serde::Serialize + ?Sized>(&mut self, key: &'static str, v: &T) {
        let at = self.text.len();
        write_scalar(v, &mut self.text);
        self.set(key.into(), at);
    }

    /// [`Members::put`] for text.
    pub fn put_str(&mut self, key: &'static str, v: &str) {
        let at = self.text.len();
        write_str(v, &mut self.text);
        self.set(key.into(), at);
    }

    /// Set `key` to a JSON value, written canonically (keys of its objects sorted).
    pub fn put_value(&mut self, key: impl Into<std::borrow::Cow<'static, str>>, v: &Value) {
        let at = self.text.len();
        write_canonical(v, &mut self.text);
        self.set(key.into(), at);
    }

    fn set(&mut self, key: std::borrow::Cow<'static, str>, at: usize) {
        // Repeats are resolved once, by seal().
        self.spans.push((key, at..self.text.len()));
    }

    /// The members of a JSON object (anything else: none).
    pub fn from_value(v: Value) -> Members {
        let mut m = Members::new();
        if let Value::Object(map) = v {
            for (k, v) in map {
                m.put_value(k, &v);
            }
        }
        m
    }
}

/// A record sealed into the chain: its `hash` (as [`record_hash`] computes it, `prev_hash`
/// being among the members) and its canonical line with that hash, without a newline. One
/// serialisation: the line is the hashed text with the `hash` member spliced in at its key's
/// place, so it is byte for byte the canonical JSON of the record with its hash.
pub fn seal(mut members: Members, prev_hash: &str) -> (String, Vec<u8>) {
    members.spans.retain(|(k, _)| k != "hash");
    // Stable: of a key set twice, the later value comes second, and is the one kept.
    members.spans.sort_by(|a, b| a.0.cmp(&b.0));
    members.spans.dedup_by(|later, earlier| {
        let repeat = later.0 == earlier.0;
        if repeat {
            earlier.1 = later.1.clone();
        }
        repeat
    });
    let mut text = Vec::with_capacity(members.text.len() + 16 * members.spans.len());
    // Where `"hash":…` goes: before the first key that sorts after it.
    let mut slot = None;
    text.push(b'{');
    for (i, (k, span)) in members.spans.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        if slot.is_none() && k.as_ref() > "hash" {
            slot = Some(text.len());
        }
        write_str(k, &mut text);
        text.push(b':');
        text.extend_from_slice(&members.text[span.clone()]);
    }
    text.push(b'}');
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(&text);
    let hash = hex::encode(h.finalize());
    let member = format!("\"hash\":\"{hash}\"");
    let mut line = Vec::with_capacity(text.len() + member.len() + 1);
    match slot {
        Some(at) => {
            line.extend_from_slice(&text[..at]);
            line.extend_from_slice(member.as_bytes());
            line.push(b',');
            line.extend_from_slice(&text[at..]);
        }
        None => {
            line.extend_from_slice(&text[..text.len() - 1]);
            if !members.spans.is_empty() {
                line.push(b',');
            }
            line.extend_from_slice(member.as_bytes());
            line.push(b'}');
        }
    }
    (hash, line)
}

/// The hash a record must carry: sha256 over `prev_hash` and the canonical JSON of the
/// record without its `hash` member.
pub fn record_hash(record: &Value) -> String {
    let mut without = record.clone();
    if let Value::Object(map) = &mut without {
        map.remove("hash");
    }
    let prev = record
        .get("prev_hash")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(canonical_json(&without).as_bytes());
    hex::encode(h.finalize())
}

fn segment_name(n: u32) -> String {
    format!("audit-{n:08}.ndjson")
}

fn parse_segment_name(name: &str) -> Option<u32> {
    name.strip_prefix("audit-")?
        .strip_suffix(".ndjson")?
        .parse()
        .ok()
}

/// Segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u32>, AuditError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("read dir", dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io_err("read dir", dir))?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Read `<dir>/head`; `None` if there is none yet.
pub fn read_head(dir: &Path) -> Result<Option<Head>, AuditError> {
    let path = dir.join(HEAD_FILE);
    match fs::read(&path) {
        Ok(data) => {
            let text = String::from_utf8_lossy(&data);
            let head = serde_json::from_str::<Head>(text.trim_end_matches([' ', '\n', '\0']))
                .map_err(|e| AuditError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            Ok(Some(head))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &path)(e)),
    }
}

/// The writer. Not internally synchronised: the daemon keeps it behind a mutex and calls
/// [`AuditLog::append`] from a blocking thread (it fsyncs).
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    segment_bytes: u64,
    file: File,
    segment: u32,
    size: u64,
    seq: u64,
    last_hash: String,
    head_file: File,
    /// Set when a failed write could not be undone: further appends would corrupt the chain.
    poisoned: Option<String>,
}

impl AuditLog {
    /// Open (creating if needed) the log in `dir`. Repairs what a crash can leave (a torn last
    /// line; a head one record behind) and returns notes on anything it found, for the
    /// caller to record (e.g. in a `daemon` record).
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(AuditLog, Vec<String>), AuditError> {
        fs::create_dir_all(dir).map_err(io_err("create dir", dir))?;
        let _ = fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let mut notes = Vec::new();
        let segs = segments(dir)?;
        let mut seq = 0;
        let mut last_hash = GENESIS_HASH.to_string();
        let (segment, size) = match segs.last() {
            None => (1, 0),
            Some(&last) => {
                let path = dir.join(segment_name(last));
                let size = repair_tail(&path, &mut notes)?;
                // The last record: in the last segment, or (if it is empty) an earlier one.
                for &n in segs.iter().rev() {
                    if let Some(line) = last_line(&dir.join(segment_name(n)))? {
                        let v: Value =
                            serde_json::from_str(&line).map_err(|e| AuditError::Corrupt {
                                path: dir.join(segment_name(n)),
                                reason: format!("last record does not parse: {e}"),
                            })?;
                        seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
                        last_hash = v
                            .get("hash")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        if record_hash(&v) != last_hash {
                            notes.push(format!("last record (seq {seq}) does not match its hash"));
                        }
                        break;
                    }
                }
                (last, size)
            }
        };
        let seg_path = dir.join(segment_name(segment));
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&seg_path)
            .map_err(io_err("open", &seg_path))?;
        let head_path = dir.join(HEAD_FILE);
        let head = match read_head(dir) {
            Ok(h) => h,
            Err(e) => {
                notes.push(format!("head file unreadable ({e}); rewritten"));
                None
            }
        };
        match &head {
            Some(h) if h.seq == seq && h.hash == last_hash => {}
            Some(h) if h.seq + 1 == seq => {} // crashed between record and head: fine
            Some(h) => notes.push(format!(
                "head says the log ends at seq {} (hash {}), but it ends at seq {seq}: records were removed",
                h.seq, h.hash
            )),
            None if seq > 0 => notes.push(format!("head file missing; log ends at seq {seq}")),
            None => {}
        }
        let head_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&head_path)
            .map_err(io_err("open", &head_path))?;
        let mut log = AuditLog {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(4096),
            file,
            segment,
            size,
            seq,
            last_hash,
            head_file,
            poisoned: None,
        };
        log.write_head()?;
        if segs.is_empty() {
            crate::util::fs::fsync_dir(dir).map_err(|e| AuditError::Io {
                op: "fsync",
                path: dir.to_path_buf(),
                source: e.source,
            })?;
        }
        Ok((log, notes))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seq and hash of the last record.
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.last_hash.clone(),
        }
    }

    /// Append a record and make it durable (record, then head) before returning it.
    pub fn append(&mut self, entry: Entry) -> Result<Record, AuditError> {
        if let Some(why) = &self.poisoned {
            return Err(AuditError::Corrupt {
                path: self.dir.clone(),
                reason: why.clone(),
            });
        }
        let mut record = Record {
            seq: self.seq + 1,
            time: time::now_rfc3339(),
            entry,
            prev_hash: self.last_hash.clone(),
            hash: String::new(),
        };
        let mut value = serde_json::to_value(&record).map_err(|e| AuditError::Corrupt {
            path: self.dir.clone(),
            reason: format!("serialize: {e}"),
        })?;
        record.hash = record_hash(&value);
        value["hash"] = Value::String(record.hash.clone());
        let mut line = canonical_json(&value);
        line.push('\n');
        if self.size > 0 && self.size + line.len() as u64 > self.segment_bytes {
            self.rotate()?;
        }
        let path = self.dir.join(segment_name(self.segment));
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.sync_data());
        if let Err(e) = written {
            // Undo a partial line so that the chain stays parseable.
            if let Err(e2) = self
                .file
                .set_len(self.size)
                .and_then(|_| self.file.sync_data())
            {
                self.poisoned = Some(format!("write failed ({e}) and could not be undone ({e2})"));
            }
            return Err(io_err("append to", &path)(e));
        }
        self.size += line.len() as u64;
        self.seq = record.seq;
        self.last_hash = record.hash.clone();
        self.write_head()?;
        Ok(record)
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        let next = self.segment + 1;
        let path = self.dir.join(segment_name(next));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        crate::util::fs::fsync_dir(&self.dir).map_err(|e| AuditError::Io {
            op: "fsync",
            path: self.dir.clone(),
            source: e.source,
        })?;
        self.file = file;
        self.segment = next;
        self.size = 0;
        Ok(())
    }

    fn write_head(&mut self) -> Result<(), AuditError> {
        let mut buf = serde_json::to_string(&self.head())
            .unwrap_or_default()
            .into_bytes();
        buf.resize(HEAD_LEN - 1, b' ');
        buf.push(b'\n');
        let path = self.dir.join(HEAD_FILE);
        self.head_file
            .write_all_at(&buf, 0)
            .and_then(|_| self.head_file.sync_data())
            .map_err(io_err("write", &path))
    }
}

/// Cut a torn last line (a crash in the middle of a write; never acknowledged). Returns the
/// resulting file size.
fn repair_tail(path: &Path, notes: &mut Vec<String>) -> Result<u64, AuditError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let len = f.metadata().map_err(io_err("stat", path))?.len();
    if len == 0 {
        return Ok(0);
    }
    // Find the last newline, reading backwards in chunks.
    let mut end = len;
    let mut keep = 0;
    let mut buf = vec![0u8; 64 * 1024];
    'outer: while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))
            .map_err(io_err("seek", path))?;
        f.read_exact(&mut buf[..n]).map_err(io_err("read", path))?;
        for i in (0..n).rev() {
            if buf[i] == b'\n' {
                keep = start + i as u64 + 1;
                break 'outer;
            }
        }
        end = start;
    }
    if keep < len {
        notes.push(format!(
            "{}: removed a torn last record ({} bytes) left by a crash",
            path.display(),
            len - keep
        ));
        f.set_len(keep)
            .and_then(|_| f.sync_all())
            .map_err(io_err("truncate", path))?;
    }
    Ok(keep)
}

/// The last complete line of a file, if any.
fn last_line(path: &Path) -> Result<Option<String>, AuditError> {
    let data = fs::read(path).map_err(io_err("read", path))?;
    let text = String::from_utf8_lossy(&data);
    Ok(text
        .split_terminator('\n')
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string))
}

const MAX_PROBLEMS: usize = 100;

/// Check the chain across all segments: every record's hash, the seq sequence, the links,
/// contiguous segment numbers, and that the log ends where `head` says (when `head` is
/// `None`, the head file is read). Records after `head` (appended while verifying) are ignored.
pub fn verify(dir: &Path, head: Option<Head>) -> Result<VerifyReport, AuditError> {
    let head = match head {
        Some(h) => Some(h),
        None => read_head(dir)?,
    };
    let segs = segments(dir)?;
    let mut report = VerifyReport {
        segments: segs.len() as u32,
        last_hash: GENESIS_HASH.into(),
        ..Default::default()
    };
    let mut problems = Vec::new();
    let mut push = |p: Problem| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(p);
        }
    };
    let mut expected_seq = 1u64;
    let mut last_hash = GENESIS_HASH.to_string();
    let limit = head.as_ref().map(|h| h.seq);
    'segments: for (i, &n) in segs.iter().enumerate() {
        let name = segment_name(n);
        let want = segs[0].max(1) + i as u32;
        if i == 0 && n != 1 {
            push(Problem {
                segment: name.clone(),
                line: 0,
                seq: None,
                reason: format!("log starts at segment {n}: segments 1..{n} are missing"),
            });
        } else if n != want {
            push(Problem {
                segment: name.clone(),
                line: 0,
                seq: None,
                reason: format!("segment {want} is missing"),
            });
        }
        let path = dir.join(&name);
        let data = fs::read(&path).map_err(io_err("read", &path))?;
        let complete = data.last().is_none_or(|&b| b == b'\n');
        let text = String::from_utf8_lossy(&data);
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        for (ln, line) in lines.iter().enumerate() {
            let lineno = ln as u64 + 1;
            if !complete && ln + 1 == lines.len() {
                if limit.is_none_or(|l| expected_seq <= l) {
                    push(Problem {
                        segment: name.clone(),
                        line: lineno,
                        seq: None,
                        reason: "truncated record at the end of the segment".into(),
                    });
                }
                break;
            }
            let v: Value = match serde_json::from_str(line) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    push(Problem {
                        segment: name.clone(),
                        line: lineno,
                        seq: None,
                        reason: "not a JSON record (edited or truncated)".into(),
                    });
                    continue;
                }
            };
            let seq = v.get("seq").and_then(Value::as_u64);
            let hash = v
                .get("hash")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let prev = v.get("prev_hash").and_then(Value::as_str).unwrap_or("");
            let Some(seq) = seq else {
                push(Problem {
                    segment: name.clone(),
                    line: lineno,
                    seq: None,
                    reason: "record has no seq".into(),
                });
                continue;
            };
            if limit.is_some_and(|l| seq > l) && seq >= expected_seq {
                break 'segments;
            }
            report.records += 1;
            if record_hash(&v) != hash {
                push(Problem {
                    segment: name.clone(),
                    line: lineno,
                    seq: Some(seq),
                    reason: "hash does not match the record's content: the record was edited"
                        .into(),
                });
            }
            if seq != expected_seq {
                let reason = if seq > expected_seq {
                    format!(
                        "expected seq {expected_seq}, found {seq}: {} record(s) deleted",
                        seq - expected_seq
                    )
                } else {
                    format!(
                        "expected seq {expected_seq}, found {seq}: records duplicated or reordered"
                    )
                };
                push(Problem {
                    segment: name.clone(),
                    line: lineno,
                    seq: Some(seq),
                    reason,
                });
            } else if prev != last_hash {
                push(Problem {
                    segment: name.clone(),
                    line: lineno,
                    seq: Some(seq),
                    reason: "prev_hash does not match the previous record: the chain is broken"
                        .into(),
                });
            }
            expected_seq = seq + 1;
            last_hash = hash;
            report.last_seq = seq;
        }
    }
    report.last_hash = last_hash;
    if let Some(h) = &head {
        if h.seq != report.last_seq || h.hash != report.last_hash {
            push(Problem {
                segment: segs.last().map(|&n| segment_name(n)).unwrap_or_default(),
                line: 0,
                seq: Some(report.last_seq),
                reason: format!(
                    "the log ends at seq {} but the head says seq {} ({}): records at the end were removed or altered",
                    report.last_seq, h.seq, h.hash
                ),
            });
        }
    } else if report.last_seq > 0 {
        push(Problem {
            segment: String::new(),
            line: 0,
            seq: None,
            reason: "head file is missing".into(),
        });
    }
    // The high-volume kinds (flows, execs, sessions): their own chains and the anchors above.
    let (kind_records, kind_problems) = records::verify_kinds(dir)?;
    report.records += kind_records;
    for p in kind_problems {
        push(p);
    }
    // Session recordings against the size and hash their exec_end records carry.
    for p in sessions::verify_recordings(dir)? {
        push(p);
    }
    report.head = head;
    report.ok = problems.is_empty();
    report.problems = problems;
    Ok(report)
}

/// Which records [`query`] returns. Times are milliseconds since the epoch, inclusive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    pub slice: Option<String>,
    pub action: Option<String>,
    pub kind: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only records with a larger seq.
    pub after_seq: Option<u64>,
    /// At most this many (the last ones, when `tail`).
    pub limit: Option<usize>,
    pub tail: bool,
}

impl Filter {
    pub fn matches(&self, v: &Value) -> bool {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        if let Some(slice) = &self.slice {
            if s("slice") != Some(slice.as_str()) {
                return false;
            }
        }
        if let Some(action) = &self.action {
            let act = s("action").or_else(|| s("event"));
            if act != Some(action.as_str()) {
                return false;
            }
        }
        if let Some(kind) = &self.kind {
            if s("kind") != Some(kind.as_str()) {
                return false;
            }
        }
        if let Some(after) = self.after_seq {
            if v.get("seq")
                .and_then(Value::as_u64)
                .is_none_or(|q| q <= after)
            {
                return false;
            }
        }
        if self.since_ms.is_some() || self.until_ms.is_some() {
            let Some(t) = s("time").and_then(|t| time::parse(t).ok()) else {
                return false;
            };
            if self.since_ms.is_some_and(|since| t < since)
                || self.until_ms.is_some_and(|until| t > until)
            {
                return false;
            }
        }
        true
    }
}

/// Records matching `filter`, as the stored lines (canonical JSON, without newline), in
/// log order. Torn or unparsable lines are skipped (verify reports them).
pub fn query(dir: &Path, filter: &Filter) -> Result<Vec<String>, AuditError> {
    let mut out = std::collections::VecDeque::new();
    for n in segments(dir)? {
        let path = dir.join(segment_name(n));
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let text = String::from_utf8_lossy(&data);
        let complete_upto = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
        for line in text[..complete_upto].split_terminator('\n') {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if !filter.matches(&v) {
                continue;
            }
            out.push_back(line.to_string());
            if let Some(limit) = filter.limit {
                if out.len() > limit {
                    if filter.tail {
                        out.pop_front();
                    } else {
                        out.pop_back();
                        return Ok(out.into());
                    }
                }
            }
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(action: &str, slice: &str) -> Entry {
        Entry::Control(ControlRecord {
            caller: Caller {
                uid: 0,
                user: Some("root".into()),
                pid: Some(42),
                mode: None,
            },
            action: action.into(),
            slice: Some(slice.into()),
            args: serde_json::json!({"limits": {"cpu_max": 0.5, "memory_max": 536870912u64}, "name": slice}),
            result: Outcome::ok(201),
        })
    }

    fn write_n(dir: &Path, n: usize, segment_bytes: u64) -> Vec<Record> {
        let (mut log, notes) = AuditLog::open(dir, segment_bytes).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        (0..n)
            .map(|i| {
                log.append(control(
                    if i % 2 == 0 { "create" } else { "destroy" },
                    &format!("s{}", i % 3),
                ))
                .unwrap()
            })
            .collect()
    }

    fn seg_path(dir: &Path, n: u32) -> PathBuf {
        dir.join(segment_name(n))
    }

    #[test]
    fn chain_verifies_across_segments_and_reopen() {
        let d = tempfile::tempdir().unwrap();
        let recs = write_n(d.path(), 40, 4096);
        assert_eq!(recs[0].prev_hash, GENESIS_HASH);
        assert_eq!(recs[1].prev_hash, recs[0].hash);
        assert!(segments(d.path()).unwrap().len() > 1, "expected rotation");
        // Reopen and continue the chain.
        let (mut log, notes) = AuditLog::open(d.path(), 4096).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let r = log.append(control("start", "s1")).unwrap();
        assert_eq!(r.seq, 41);
        assert_eq!(r.prev_hash, recs[39].hash);
        let rep = verify(d.path(), None).unwrap();
        assert!(rep.ok, "{rep:?}");
        assert_eq!(rep.records, 41);
        assert_eq!(rep.last_seq, 41);
        // Records round-trip through the typed form.
        let lines = query(d.path(), &Filter::default()).unwrap();
        let parsed: Record = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(parsed, recs[0]);
    }

    #[test]
    fn detects_an_edited_record() {
        let d = tempfile::tempdir().unwrap();
        write_n(d.path(), 10, 1 << 20);
        let p = seg_path(d.path(), 1);
        let text = fs::read_to_string(&p)
            .unwrap()
            .replacen("\"uid\":0", "\"uid\":7", 1);
        fs::write(&p, text).unwrap();
        let rep = verify(d.path(), None).unwrap();
        assert!(!rep.ok);
        assert_eq!(rep.problems[0].seq, Some(1));
        assert!(rep.problems[0].reason.contains("edited"), "{rep:?}");
    }

    #[test]
    fn detects_a_deleted_record() {
        let d = tempfile::tempdir().unwrap();
        write_n(d.path(), 10, 1 << 20);
        let p = seg_path(d.path(), 1);
        let text = fs::read_to_string(&p).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 4)
            .map(|(_, l)| l)
            .collect();
        fs::write(&p, kept.join("\n") + "\n").unwrap();
        let rep = verify(d.path(), None).unwrap();
        assert!(!rep.ok);
        assert!(rep.problems[0].reason.contains("deleted"), "{rep:?}");
    }

    #[test]
    fn detects_removed_tail_records_and_segments() {
        let d = tempfile::tempdir().unwrap();
        write_n(d.path(), 40, 4096);
        let segs = segments(d.path()).unwrap();
        // Dropping the last two records leaves a valid chain; only the head catches it.
        let last = seg_path(d.path(), *segs.last().unwrap());
        let text = fs::read_to_string(&last).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        fs::write(&last, lines[..lines.len() - 2].join("\n") + "\n").unwrap();
        let rep = verify(d.path(), None).unwrap();
        assert!(!rep.ok);
        assert!(
            rep.problems.iter().any(|p| p.reason.contains("head says")),
            "{rep:?}"
        );
        // A missing middle segment.
        fs::write(&last, text).unwrap();
        assert!(verify(d.path(), None).unwrap().ok);
        fs::remove_file(seg_path(d.path(), segs[1])).unwrap();
        let rep = verify(d.path(), None).unwrap();
        assert!(
            rep.problems.iter().any(|p| p.reason.contains("missing")),
            "{rep:?}"
        );
    }

    #[test]
    fn detects_a_truncated_record() {
        let d = tempfile::tempdir().unwrap();
        write_n(d.path(), 5, 1 << 20);
        let p = seg_path(d.path(), 1);
        let data = fs::read(&p).unwrap();
        fs::write(&p, &data[..data.len() - 30]).unwrap();
        let rep = verify(d.path(), None).unwrap();
        assert!(!rep.ok);
        assert!(
            rep.problems.iter().any(|p| p.reason.contains("truncated")),
            "{rep:?}"
        );
    }

    #[test]
    fn open_repairs_a_torn_write_and_notes_lost_records() {
        let d = tempfile::tempdir().unwrap();
        write_n(d.path(), 5, 1 << 20);
        let p = seg_path(d.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\":6,\"ti").unwrap();
        let (mut log, notes) = AuditLog::open(d.path(), 1 << 20).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("torn"));
        log.append(control("start", "x")).unwrap();
        assert!(verify(d.path(), None).unwrap().ok);
        // A head one behind (crash between record and head) is not a problem.
        let head = read_head(d.path()).unwrap().unwrap();
        log.append(control("stop", "x")).unwrap();
        drop(log);
        let mut buf = serde_json::to_string(&head).unwrap().into_bytes();
        buf.resize(HEAD_LEN - 1, b' ');
        buf.push(b'\n');
        fs::write(d.path().join(HEAD_FILE), buf).unwrap();
        let (_log, notes) = AuditLog::open(d.path(), 1 << 20).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert!(verify(d.path(), None).unwrap().ok);
    }

    #[test]
    fn query_filters() {
        let d = tempfile::tempdir().unwrap();
        write_n(d.path(), 12, 4096);
        let all = query(d.path(), &Filter::default()).unwrap();
        assert_eq!(all.len(), 12);
        let f = Filter {
            slice: Some("s1".into()),
            ..Default::default()
        };
        assert_eq!(query(d.path(), &f).unwrap().len(), 4);
        let f = Filter {
            action: Some("create".into()),
            slice: Some("s0".into()),
            ..Default::default()
        };
        assert_eq!(query(d.path(), &f).unwrap().len(), 2);
        let f = Filter {
            limit: Some(3),
            tail: true,
            ..Default::default()
        };
        let last3 = query(d.path(), &f).unwrap();
        assert_eq!(last3, all[9..].to_vec());
        let f = Filter {
            limit: Some(3),
            ..Default::default()
        };
        assert_eq!(query(d.path(), &f).unwrap(), all[..3].to_vec());
        let future = time::now_millis() + 3_600_000;
        let f = Filter {
            since_ms: Some(future),
            ..Default::default()
        };
        assert!(query(d.path(), &f).unwrap().is_empty());
        let f = Filter {
            until_ms: Some(future),
            after_seq: Some(10),
            ..Default::default()
        };
        assert_eq!(query(d.path(), &f).unwrap().len(), 2);
    }

    #[test]
    fn members_keep_the_last_value_of_a_key() {
        let mut m = Members::new();
        m.put_str("b", "first");
        m.put("a", &1);
        m.put_str("b", "second");
        let (_, line) = seal(m, "");
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["b"], "second");
        assert_eq!(v.as_object().unwrap().len(), 3);
    }

    #[test]
    fn seal_matches_record_hash_and_canonical_line() {
        for v in [
            serde_json::json!({"b": 1, "prev_hash": "p", "seq": 2, "a": {"z": 1.5, "y": [null, "é\n"]}}),
            serde_json::json!({"aa": true, "prev_hash": "p"}),
            serde_json::json!({"prev_hash": "p", "zz": "last"}),
            serde_json::json!({"a": 1}),
            serde_json::json!({"prev_hash": "p", "tab\t\"q\"": "ctl \u{1} del \u{7f} \\"}),
        ] {
            let prev = v["prev_hash"].as_str().unwrap_or("").to_string();
            let (hash, line) = seal(Members::from_value(v.clone()), &prev);
            let mut with = v.clone();
            with["hash"] = hash.clone().into();
            assert_eq!(hash, record_hash(&with));
            assert_eq!(String::from_utf8(line).unwrap(), canonical_json(&with));
        }
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let v = serde_json::json!({"b": 1, "a": {"d": [1, "x\n"], "c": null}, "é": 0.5});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"d":[1,"x\n"]},"b":1,"é":0.5}"#
        );
    }
}
