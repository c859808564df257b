//! Storage for the high-volume accountability records (network flows, in-slice execs,
//! session recordings): one append-only, hash-chained NDJSON log per kind under
//! `<state root>/audit/<kind>/`, in per-day segments with a sparse time index.
//!
//! * Segments: `<kind>/YYYYMMDD-NNN.ndjson` (UTC day of the records it holds; NNN counts
//!   rotations within a day). Each line is the canonical JSON of a record with `seq` (1, 2, …
//!   across the kind's segments), `time` (RFC 3339, ms), the kind's fields, `prev_hash` and
//!   `hash`, chained exactly like the control log ([`super::record_hash`]).
//! * Index: `<segment>.idx` beside each segment, one line `minute_ms byte_offset` each time
//!   the minute of the records changes; a time-window query reads the day segments that
//!   overlap the window and seeks to the minute it starts in.
//! * Anchors: the writer does not fsync each record (flows arrive at thousands per second);
//!   [`KindLog::flush`] fsyncs the batch, rewrites `<kind>/head` and the caller appends an
//!   `anchor` daemon record (`detail` = `{"kind","seq","hash"}`) to the control log, whose
//!   own chain and head protect it. `vslice audit verify` checks each kind's chain and that
//!   every anchor still matches the record it names, so an edit or deletion anywhere up to the
//!   last anchor is detected, and a cut tail before the next anchor shows as a log shorter
//!   than its head. The window in which a root on the host could cut records undetected is
//!   the flush interval (1 s by default).
//! * Retention: whole day segments older than the configured number of days are removed; a
//!   `retention` daemon record in the control log names the last seq/hash removed, which is
//!   where verify then expects the kind's chain to start.
//! * Full disk: before writing a batch the writer checks the file system's free space; under
//!   the reserve (default 256 MiB) it drops the batch and counts the records as lost (the
//!   count goes into the next record written and into /metrics). Control records are not
//!   subject to the reserve, so they are the last to fail: the high-volume kinds give first.
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{io_err, record_hash, time, AuditError, GENESIS_HASH};
use crate::proto::audit::{Head, Problem};

/// The kinds stored here (directory names under `<root>/audit/`).
pub const KINDS: [&str; 3] = ["flows", "execs", "sessions"];
/// Default bytes of a segment before a new one is started within the same day.
pub const DEFAULT_KIND_SEGMENT_BYTES: u64 = 64 << 20;
/// Default free-space reserve below which high-volume records are dropped (and counted).
pub const DEFAULT_RESERVE_BYTES: u64 = 256 << 20;
const HEAD_LEN: usize = 160;
const DAY_MS: i64 = 86_400_000;

/// `YYYYMMDD` of a time in ms.
pub fn day_of(ms: i64) -> String {
    day_of_stamp(&time::format_millis(ms))
}

/// `YYYYMMDD` of an RFC 3339 time as [`time::format_millis`] writes it.
fn day_of_stamp(t: &str) -> String {
    [t.get(0..4), t.get(5..7), t.get(8..10)]
        .into_iter()
        .map(|p| p.unwrap_or("00"))
        .collect()
}

fn parse_seg_name(name: &str) -> Option<(String, u32)> {
    let stem = name.strip_suffix(".ndjson")?;
    let (day, n) = stem.split_once('-')?;
    if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((day.to_string(), n.parse().ok()?))
}

/// Segments of a kind dir, in order: (day, n, file name).
pub fn kind_segments(dir: &Path) -> Result<Vec<(String, u32, String)>, AuditError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("read dir", dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io_err("read dir", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((day, n)) = parse_seg_name(&name) {
            out.push((day, n, name));
        }
    }
    out.sort();
    Ok(out)
}

/// What [`KindLog::flush`] made durable: for the caller's anchor record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub kind: String,
    pub seq: u64,
    pub hash: String,
}

impl Anchor {
    /// The `detail` of the control log's `anchor` record.
    pub fn detail(&self) -> String {
        serde_json::json!({"kind": self.kind, "seq": self.seq, "hash": self.hash}).to_string()
    }
}

/// One kind's writer. Not synchronised: owned by one writer thread.
#[derive(Debug)]
pub struct KindLog {
    kind: String,
    dir: PathBuf,
    segment_bytes: u64,
    reserve_bytes: u64,
    /// Free bytes of the log's filesystem when last asked, less what was written since.
    free_estimate: Option<(std::time::Instant, u64)>,
    file: Option<File>,
    idx: Option<File>,
    seg_day: String,
    seg_n: u32,
    size: u64,
    last_minute: i64,
    seq: u64,
    last_hash: String,
    anchored_seq: u64,
    /// Records written since the last flush (not yet fsynced).
    dirty: bool,
    /// Lines appended but not yet written to the segment (see [`KindLog::write_out`]), and
    /// the chain as it stood before them, to go back to when they cannot be written.
    unwritten: Vec<u8>,
    unwritten_records: u64,
    before_unwritten: (u64, String),
    /// Records dropped (full disk) and not yet reported in a record.
    pub pending_lost: u64,
    /// Records dropped since the log was opened.
    pub lost_total: u64,
    /// Time of the last record found when the log was opened (a collector starting again
    /// states the gap since then).
    pub last_time_ms: Option<i64>,
}

/// How long a free-space figure is trusted, and how close to the reserve it may get before
/// each record asks the filesystem again.
const FREE_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);
const FREE_MARGIN: u64 = 4 << 20;
/// Bytes of appended lines held before they are written out regardless.
const UNWRITTEN_MAX: usize = 256 << 10;

impl KindLog {
    /// Is the filesystem's free space below the reserve? A statvfs per record was a
    /// noticeable share of the exec log's cost per exec, so the answer is an estimate (the
    /// last figure less what this log wrote since), asked again every second and for every
    /// record once it is within [`FREE_MARGIN`] of the reserve.
    fn below_reserve(&mut self) -> bool {
        if self.reserve_bytes == 0 {
            return false;
        }
        let stale = self.free_estimate.is_none_or(|(at, free)| {
            at.elapsed() >= FREE_RECHECK || free < self.reserve_bytes.saturating_add(FREE_MARGIN)
        });
        if stale {
            self.free_estimate = free_bytes(&self.dir).map(|f| (std::time::Instant::now(), f));
        }
        self.free_estimate
            .is_some_and(|(_, free)| free < self.reserve_bytes)
    }

    /// Open the log of `kind` under `audit_dir` (the control log's directory).
    pub fn open(
        audit_dir: &Path,
        kind: &str,
        segment_bytes: u64,
        reserve_bytes: u64,
    ) -> Result<(KindLog, Vec<String>), AuditError> {
        let dir = audit_dir.join(kind);
        fs::create_dir_all(&dir).map_err(io_err("create dir", &dir))?;
        let _ = fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let mut notes = Vec::new();
        let mut log = KindLog {
            kind: kind.to_string(),
            dir: dir.clone(),
            segment_bytes: segment_bytes.max(4096),
            reserve_bytes,
            free_estimate: None,
            file: None,
            idx: None,
            seg_day: String::new(),
            seg_n: 0,
            size: 0,
            last_minute: i64::MIN,
            seq: 0,
            last_hash: GENESIS_HASH.to_string(),
            anchored_seq: 0,
            dirty: false,
            unwritten: Vec::new(),
            unwritten_records: 0,
            before_unwritten: (0, String::new()),
            pending_lost: 0,
            lost_total: 0,
            last_time_ms: None,
        };
        let segs = kind_segments(&dir)?;
        if let Some((day, n, name)) = segs.last() {
            let path = dir.join(name);
            // A torn last line (crash mid-batch; never anchored) is cut.
            let size = super::repair_tail(&path, &mut notes)?;
            for (_, _, nm) in segs.iter().rev() {
                if let Some(line) = super::last_line(&dir.join(nm))? {
                    let v: Value =
                        serde_json::from_str(&line).map_err(|e| AuditError::Corrupt {
                            path: dir.join(nm),
                            reason: format!("last record does not parse: {e}"),
                        })?;
                    log.seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
                    log.last_time_ms = v
                        .get("time")
                        .and_then(Value::as_str)
                        .and_then(|t| time::parse(t).ok());
                    log.last_hash = v
                        .get("hash")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    break;
                }
            }
            log.seg_day = day.clone();
            log.seg_n = *n;
            log.size = size;
            log.file = Some(open_append(&path)?);
            log.idx = Some(open_append(&dir.join(format!("{name}.idx")))?);
        } else if let Some(start) = retention_start(audit_dir, kind)? {
            // Every segment was pruned: continue the chain where retention left it.
            log.seq = start.seq;
            log.last_hash = start.hash;
        }
        log.anchored_seq = log.seq;
        Ok((log, notes))
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.last_hash.clone(),
        }
    }

    fn start_segment(&mut self, day: &str) -> Result<(), AuditError> {
        let n = if self.seg_day == day {
            self.seg_n + 1
        } else {
            1
        };
        self.write_out()?;
        let name = format!("{day}-{n:03}.ndjson");
        let path = self.dir.join(&name);
        // Flush what the old segment holds before moving on.
        if let Some(f) = &self.file {
            f.sync_data().map_err(io_err("fsync", &path))?;
        }
        self.file = Some(open_append(&path)?);
        self.idx = Some(open_append(&self.dir.join(format!("{name}.idx")))?);
        crate::util::fs::fsync_dir(&self.dir).map_err(|e| AuditError::Io {
            op: "fsync",
            path: self.dir.clone(),
            source: e.source,
        })?;
        self.seg_day = day.to_string();
        self.seg_n = n;
        self.size = 0;
        self.last_minute = i64::MIN;
        Ok(())
    }

    /// Append one record (`fields`: an object with the kind's fields; `seq`, `time`, `kind`,
    /// `prev_hash`, `hash` are added). Not durable until [`KindLog::flush`]. When the disk is
    /// under the reserve the record is dropped and counted; the next record written carries
    /// `lost_before` with the count.
    pub fn append(&mut self, time_ms: i64, fields: Value) -> Result<Option<u64>, AuditError> {
        if !fields.is_object() {
            return Err(AuditError::Corrupt {
                path: self.dir.clone(),
                reason: "record fields are not an object".into(),
            });
        }
        self.append_members(time_ms, super::Members::from_value(fields))
    }

    /// [`KindLog::append`] for a record built as [`super::Members`].
    pub fn append_members(
        &mut self,
        time_ms: i64,
        mut m: super::Members,
    ) -> Result<Option<u64>, AuditError> {
        if self.below_reserve() {
            self.pending_lost += 1;
            self.lost_total += 1;
            return Ok(None);
        }
        if self.pending_lost > 0 {
            m.put("lost_before", &self.pending_lost);
        }
        m.put("seq", &(self.seq + 1));
        let stamp = time::format_millis(time_ms);
        let day = day_of_stamp(&stamp);
        m.put_str("time", &stamp);
        m.put_str("kind", &self.kind);
        m.put_str("prev_hash", &self.last_hash);
        let (hash, mut line) = super::seal(m, &self.last_hash);
        line.push(b'\n');
        if self.file.is_none()
            || (self.seg_day != day && day > self.seg_day)
            || (self.size > 0 && self.size + line.len() as u64 > self.segment_bytes)
        {
            self.start_segment(&day)?;
        }
        let minute = time_ms - time_ms.rem_euclid(60_000);
        if minute > self.last_minute {
            if let Some(idx) = &mut self.idx {
                let _ = writeln!(idx, "{minute} {}", self.size);
            }
            self.last_minute = minute;
        }
        if self.unwritten.is_empty() {
            self.before_unwritten = (self.seq, self.last_hash.clone());
        }
        self.unwritten.extend_from_slice(&line);
        self.unwritten_records += 1;
        self.size += line.len() as u64;
        if let Some((_, free)) = &mut self.free_estimate {
            *free = free.saturating_sub(line.len() as u64);
        }
        self.seq += 1;
        self.last_hash = hash;
        self.pending_lost = 0;
        self.dirty = true;
        if self.unwritten.len() >= UNWRITTEN_MAX {
            self.write_out()?;
        }
        Ok(Some(self.seq))
    }

    /// Write the lines appended so far to the segment (one write for a batch: a write per
    /// record was a quarter of the flow log's CPU). The collectors call it when their queue
    /// runs empty, so queries see a record within the batch it came in; [`KindLog::flush`]
    /// and a new segment write out first. A write that fails takes the chain back to before
    /// the batch: its records are lost and counted (`lost_before` on the next one), never
    /// left half on disk or skipped by the chain.
    pub fn write_out(&mut self) -> Result<(), AuditError> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.unwritten);
        let records = std::mem::take(&mut self.unwritten_records);
        // No open segment cannot happen (append opens one first), but if it did, the batch
        // is lost the same way as a failed write: never named by the chain.
        let written = match &mut self.file {
            Some(file) => file.write_all(&batch),
            None => Err(io::Error::from_raw_os_error(libc::EBADF)),
        };
        let Err(e) = written else {
            self.unwritten = batch;
            self.unwritten.clear(); // keep the allocation
            return Ok(());
        };
        let start = self.size - batch.len() as u64;
        if let Some(file) = &self.file {
            let _ = file.set_len(start);
        }
        self.size = start;
        (self.seq, self.last_hash) = std::mem::take(&mut self.before_unwritten);
        self.pending_lost += records;
        self.lost_total += records;
        if e.raw_os_error() == Some(libc::ENOSPC) {
            return Ok(());
        }
        Err(io_err("append to", &self.dir)(e))
    }

    /// Records appended since the last [`KindLog::flush`]: the collectors sleep without a
    /// timeout when there are none (issue 14: no timer on an idle node).
    pub fn pending(&self) -> bool {
        self.dirty
    }

    /// Make the records written so far durable and rewrite the head. Returns the anchor to
    /// record in the control log when there is something new since the last one.
    pub fn flush(&mut self) -> Result<Option<Anchor>, AuditError> {
        self.write_out()?;
        if !self.dirty {
            return Ok(None);
        }
        if let Some(f) = &self.file {
            f.sync_data().map_err(io_err("fsync", &self.dir))?;
        }
        if let Some(f) = &self.idx {
            let _ = f.sync_data();
        }
        let head_path = self.dir.join("head");
        let mut buf = serde_json::to_string(&self.head())
            .unwrap_or_default()
            .into_bytes();
        buf.resize(HEAD_LEN - 1, b' ');
        buf.push(b'\n');
        let hf = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&head_path)
            .map_err(io_err("open", &head_path))?;
        hf.write_all_at(&buf, 0)
            .and_then(|_| hf.sync_data())
            .map_err(io_err("write", &head_path))?;
        self.dirty = false;
        if self.seq == self.anchored_seq {
            return Ok(None);
        }
        self.anchored_seq = self.seq;
        Ok(Some(Anchor {
            kind: self.kind.clone(),
            seq: self.seq,
            hash: self.last_hash.clone(),
        }))
    }

    /// Remove whole day segments older than `days` days (not the one being written). Returns
    /// the `retention` detail to record in the control log (last seq/hash removed), if any.
    pub fn prune(&mut self, days: u32, now_ms: i64) -> Result<Option<String>, AuditError> {
        if days == 0 {
            return Ok(None);
        }
        let cutoff = day_of(now_ms - days as i64 * DAY_MS);
        let segs = kind_segments(&self.dir)?;
        let mut last: Option<(u64, String, String)> = None;
        for (day, n, name) in &segs {
            if *day >= cutoff || (*day == self.seg_day && *n == self.seg_n) {
                break;
            }
            let path = self.dir.join(name);
            if let Some(line) = super::last_line(&path)? {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
                    let hash = v.get("hash").and_then(Value::as_str).unwrap_or("");
                    last = Some((seq, hash.to_string(), name.clone()));
                }
            }
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            let _ = fs::remove_file(self.dir.join(format!("{name}.idx")));
        }
        Ok(last.map(|(seq, hash, name)| {
            serde_json::json!({"kind": self.kind, "seq": seq, "hash": hash, "through": name})
                .to_string()
        }))
    }
}

impl Drop for KindLog {
    fn drop(&mut self) {
        if let Err(e) = self.write_out() {
            tracing::warn!("{} log: {e}", self.kind);
        }
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("open", path))
}

/// Free bytes for unprivileged writers on the file system of `dir` (None if unknown).
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// `anchor` / `retention` daemon records of the control log for `kind`: (event, seq, hash,
/// control seq).
fn control_marks(audit_dir: &Path, kind: &str) -> Result<Vec<(String, u64, String)>, AuditError> {
    let filter = super::Filter {
        kind: Some("daemon".into()),
        ..Default::default()
    };
    let mut out = Vec::new();
    for line in super::query(audit_dir, &filter)? {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let event = v.get("event").and_then(Value::as_str).unwrap_or("");
        if event != "anchor" && event != "retention" {
            continue;
        }
        let Some(d) = v
            .get("detail")
            .and_then(Value::as_str)
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
        else {
            continue;
        };
        if d.get("kind").and_then(Value::as_str) != Some(kind) {
            continue;
        }
        let seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let hash = d.get("hash").and_then(Value::as_str).unwrap_or("");
        out.push((event.to_string(), seq, hash.to_string()));
    }
    Ok(out)
}

/// Where the kind's chain starts after retention: the last record removed.
fn retention_start(audit_dir: &Path, kind: &str) -> Result<Option<Head>, AuditError> {
    Ok(control_marks(audit_dir, kind)?
        .into_iter()
        .filter(|(e, _, _)| e == "retention")
        .map(|(_, seq, hash)| Head { seq, hash })
        .max_by_key(|h| h.seq))
}

/// Check every kind's chain, its head, and the anchors in the control log. Problems name
/// the segment as `<kind>/<file>`. Returns (records checked, problems).
pub fn verify_kinds(audit_dir: &Path) -> Result<(u64, Vec<Problem>), AuditError> {
    let mut problems = Vec::new();
    let mut records = 0u64;
    for kind in KINDS {
        let dir = audit_dir.join(kind);
        if !dir.exists() {
            continue;
        }
        let marks = control_marks(audit_dir, kind)?;
        let start = marks
            .iter()
            .filter(|(e, _, _)| e == "retention")
            .max_by_key(|(_, s, _)| *s)
            .map(|(_, s, h)| (*s, h.clone()))
            .unwrap_or((0, GENESIS_HASH.to_string()));
        let mut expected = start.0 + 1;
        let mut last_hash = start.1.clone();
        let mut hashes: BTreeMap<u64, String> = BTreeMap::new();
        for (_, _, name) in kind_segments(&dir)? {
            let seg = format!("{kind}/{name}");
            let path = dir.join(&name);
            let data = fs::read(&path).map_err(io_err("read", &path))?;
            let text = String::from_utf8_lossy(&data);
            for (i, line) in text.split_terminator('\n').enumerate() {
                let lineno = i as u64 + 1;
                let prob = |seq, reason: String| Problem {
                    segment: seg.clone(),
                    line: lineno,
                    seq,
                    reason,
                };
                let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(line) else {
                    problems.push(prob(None, "not a JSON record (edited or truncated)".into()));
                    continue;
                };
                records += 1;
                let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
                let hash = v.get("hash").and_then(Value::as_str).unwrap_or("");
                let prev = v.get("prev_hash").and_then(Value::as_str).unwrap_or("");
                if record_hash(&v) != hash {
                    problems.push(prob(
                        Some(seq),
                        "hash does not match the record's content: the record was edited".into(),
                    ));
                }
                if seq != expected {
                    problems.push(prob(
                        Some(seq),
                        format!(
                            "expected seq {expected}, found {seq}: records deleted or reordered"
                        ),
                    ));
                } else if prev != last_hash {
                    problems.push(prob(
                        Some(seq),
                        "prev_hash does not match the previous record: the chain is broken".into(),
                    ));
                }
                hashes.insert(seq, hash.to_string());
                expected = seq + 1;
                last_hash = hash.to_string();
            }
        }
        let last_seq = expected - 1;
        for (event, seq, hash) in &marks {
            if event != "anchor" || *seq <= start.0 {
                continue;
            }
            match hashes.get(seq) {
                Some(h) if h == hash => {}
                Some(_) => problems.push(Problem {
                    segment: kind.to_string(),
                    line: 0,
                    seq: Some(*seq),
                    reason: "record does not match the anchor in the control log: edited".into(),
                }),
                None => problems.push(Problem {
                    segment: kind.to_string(),
                    line: 0,
                    seq: Some(*seq),
                    reason: format!(
                        "the control log anchors seq {seq} but the {kind} log ends at seq {last_seq}: records were removed"
                    ),
                }),
            }
        }
        if let Ok(Some(h)) = super::read_head(&dir) {
            if h.seq > last_seq {
                problems.push(Problem {
                    segment: kind.to_string(),
                    line: 0,
                    seq: Some(last_seq),
                    reason: format!(
                        "head says seq {} but the {kind} log ends at seq {last_seq}: records at the end were removed",
                        h.seq
                    ),
                });
            }
        }
    }
    Ok((records, problems))
}

/// Records of `kind` with `time` in `[since_ms, until_ms]` that `keep` accepts, in order.
/// Reads only the day segments that overlap the window, from the indexed minute on; lines
/// `prefilter` rejects are not parsed.
pub fn query_window(
    audit_dir: &Path,
    kind: &str,
    since_ms: i64,
    until_ms: i64,
    prefilter: impl Fn(&str) -> bool,
    mut keep: impl FnMut(&Value) -> bool,
) -> Result<Vec<Value>, AuditError> {
    let dir = audit_dir.join(kind);
    let (first, last) = (day_of(since_ms), day_of(until_ms));
    let mut out = Vec::new();
    for (day, _, name) in kind_segments(&dir)? {
        if day < first || day > last {
            continue;
        }
        let path = dir.join(&name);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let offset = index_offset(&dir.join(format!("{name}.idx")), since_ms);
        f.seek(SeekFrom::Start(offset))
            .map_err(io_err("seek", &path))?;
        for line in BufReader::new(f).lines() {
            let Ok(line) = line else { break };
            // Cheap text test before parsing (e.g. the remote address of a `who` query).
            if !prefilter(&line) {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let Some(t) = v
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| time::parse(t).ok())
            else {
                continue;
            };
            if t > until_ms {
                break;
            }
            if t >= since_ms && keep(&v) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

/// Byte offset of the last indexed minute at or before `since_ms` (0 without an index).
fn index_offset(idx: &Path, since_ms: i64) -> u64 {
    let Ok(text) = fs::read_to_string(idx) else {
        return 0;
    };
    let mut best = 0;
    for line in text.lines() {
        let mut it = line.split(' ');
        let (Some(Ok(m)), Some(Ok(off))) = (
            it.next().map(str::parse::<i64>),
            it.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if m + 60_000 <= since_ms {
            best = off;
        } else {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, DaemonRecord, Entry};

    fn anchor(log: &mut AuditLog, a: &Anchor) {
        log.append(Entry::Daemon(DaemonRecord {
            event: "anchor".into(),
            pid: 1,
            version: "t".into(),
            slice: None,
            detail: Some(a.detail()),
        }))
        .unwrap();
    }

    fn fill(dir: &Path, n: usize, t0: i64, step: i64) -> KindLog {
        let (mut control, _) = AuditLog::open(dir, 1 << 20).unwrap();
        let (mut k, notes) = KindLog::open(dir, "flows", 4096, 0).unwrap();
        assert!(notes.is_empty());
        for i in 0..n {
            k.append(
                t0 + i as i64 * step,
                serde_json::json!({"slice": format!("s{}", i % 3), "i": i}),
            )
            .unwrap();
        }
        let a = k.flush().unwrap().unwrap();
        anchor(&mut control, &a);
        k
    }

    #[test]
    fn chain_index_query_and_verify() {
        let d = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000_000;
        let k = fill(d.path(), 300, t0, 20_000); // 100 minutes, rotations by size
        assert_eq!(k.head().seq, 300);
        assert!(kind_segments(&d.path().join("flows")).unwrap().len() > 1);
        let (n, probs) = verify_kinds(d.path()).unwrap();
        assert_eq!(n, 300);
        assert!(probs.is_empty(), "{probs:?}");
        let got = query_window(
            d.path(),
            "flows",
            t0 + 60 * 20_000,
            t0 + 69 * 20_000,
            |_| true,
            |v| v["slice"] == "s0",
        )
        .unwrap();
        let idx: Vec<u64> = got.iter().map(|v| v["i"].as_u64().unwrap()).collect();
        assert_eq!(idx, vec![60, 63, 66, 69]);
    }

    #[test]
    fn verify_detects_edit_delete_and_cut_tail() {
        let d = tempfile::tempdir().unwrap();
        fill(d.path(), 50, 1_700_000_000_000, 1000);
        let segs = kind_segments(&d.path().join("flows")).unwrap();
        let p = d.path().join("flows").join(&segs[0].2);
        let orig = fs::read_to_string(&p).unwrap();
        // edit
        fs::write(&p, orig.replacen("\"slice\":\"s1\"", "\"slice\":\"s2\"", 1)).unwrap();
        let (_, probs) = verify_kinds(d.path()).unwrap();
        assert!(
            probs.iter().any(|p| p.reason.contains("edited")),
            "{probs:?}"
        );
        // delete a line
        let kept: Vec<&str> = orig
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .map(|(_, l)| l)
            .collect();
        fs::write(&p, kept.join("\n") + "\n").unwrap();
        let (_, probs) = verify_kinds(d.path()).unwrap();
        assert!(
            probs.iter().any(|p| p.reason.contains("deleted")),
            "{probs:?}"
        );
        fs::write(&p, &orig).unwrap();
        // cut the tail of the last segment: the anchor catches it
        let lastp = d.path().join("flows").join(&segs.last().unwrap().2);
        let text = fs::read_to_string(&lastp).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        fs::write(&lastp, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
        let (_, probs) = verify_kinds(d.path()).unwrap();
        assert!(
            probs.iter().any(|p| p.reason.contains("removed")),
            "{probs:?}"
        );
        // and the control log's verify reports it too
        let rep = crate::audit::verify(d.path(), None).unwrap();
        assert!(!rep.ok);
    }

    #[test]
    fn under_the_reserve_records_are_dropped_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let (mut k, _) = KindLog::open(d.path(), "flows", 1 << 20, 0).unwrap();
        let t = 1_700_000_000_000;
        assert!(k.append(t, serde_json::json!({"i": 0})).unwrap().is_some());
        // A reserve larger than any disk: the file system is "full" for flow records.
        k.reserve_bytes = u64::MAX;
        assert!(k
            .append(t + 1, serde_json::json!({"i": 1}))
            .unwrap()
            .is_none());
        assert!(k
            .append(t + 2, serde_json::json!({"i": 2}))
            .unwrap()
            .is_none());
        assert_eq!(k.lost_total, 2);
        // Space again: the next record says how many were lost before it.
        k.reserve_bytes = 0;
        k.append(t + 3, serde_json::json!({"i": 3}))
            .unwrap()
            .unwrap();
        k.flush().unwrap();
        let got = query_window(d.path(), "flows", t, t + 10, |_| true, |_| true).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["lost_before"], 2);
        assert_eq!(got[1]["seq"], 2);
    }

    #[test]
    fn a_batch_that_cannot_be_written_is_lost_whole_and_the_chain_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let (mut control, _) = AuditLog::open(d.path(), 1 << 20).unwrap();
        let (mut k, _) = KindLog::open(d.path(), "flows", 1 << 20, 0).unwrap();
        let t = 1_700_000_000_000;
        k.append(t, serde_json::json!({"i": 0})).unwrap().unwrap();
        k.write_out().unwrap();
        // The segment refuses writes (EBADF here; ENOSPC on a full disk takes the same path).
        let seg = d
            .path()
            .join("flows")
            .join(&kind_segments(&d.path().join("flows")).unwrap()[0].2);
        let writable = k.file.replace(File::open(&seg).unwrap());
        for i in 1..=3 {
            k.append(t + i, serde_json::json!({"i": i}))
                .unwrap()
                .unwrap();
        }
        assert!(k.write_out().is_err());
        assert_eq!((k.head().seq, k.lost_total), (1, 3));
        k.file = writable;
        k.append(t + 4, serde_json::json!({"i": 4}))
            .unwrap()
            .unwrap();
        anchor(&mut control, &k.flush().unwrap().unwrap());
        let got = query_window(d.path(), "flows", t, t + 10, |_| true, |_| true).unwrap();
        let seen: Vec<_> = got
            .iter()
            .map(|v| (v["i"].clone(), v["seq"].clone()))
            .collect();
        assert_eq!(seen, vec![(0.into(), 1.into()), (4.into(), 2.into())]);
        assert_eq!(got[1]["lost_before"], 3);
        let (n, probs) = verify_kinds(d.path()).unwrap();
        assert_eq!(n, 2);
        assert!(probs.is_empty(), "{probs:?}");
    }

    #[test]
    fn retention_prunes_old_days_and_chain_still_verifies() {
        let d = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000_000;
        let mut k = fill(d.path(), 40, t0, 6 * 3_600_000); // 10 days
        let (mut control, _) = AuditLog::open(d.path(), 1 << 20).unwrap();
        let now = t0 + 40 * 6 * 3_600_000;
        let detail = k.prune(3, now).unwrap().unwrap();
        control
            .append(Entry::Daemon(DaemonRecord {
                event: "retention".into(),
                pid: 1,
                version: "t".into(),
                slice: None,
                detail: Some(detail),
            }))
            .unwrap();
        let left = kind_segments(&d.path().join("flows")).unwrap();
        assert!(left
            .iter()
            .all(|(day, _, _)| *day >= day_of(now - 3 * DAY_MS)));
        let (n, probs) = verify_kinds(d.path()).unwrap();
        assert!(n < 40 && n > 0);
        assert!(probs.is_empty(), "{probs:?}");
        // Removing a segment by hand (no retention record) is detected.
        fs::remove_file(d.path().join("flows").join(&left[0].2)).unwrap();
        let (_, probs) = verify_kinds(d.path()).unwrap();
        assert!(!probs.is_empty());
    }
}
