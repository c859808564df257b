//! The console log of a slice: what its init and the services init starts write to their
//! stdout and stderr (`vslice logs`, `GET /v1/slices/{name}/logs`).
//!
//! The shim owns init's stdio: init's stdout and stderr are the write end of a pipe (stdin is
//! an empty pipe), and the shim, which outlives the daemon, copies the pipe into
//! `<slice dir>/console.log` (0600, root's). When a write would take the file past
//! [`MAX_BYTES`] it is renamed to `console.log.1` (replacing the previous one) and a new file
//! is started, so a slice's log takes at most 2 × MAX_BYTES of the node's disk however much
//! it writes. The files are in the slice's state directory, which the slice cannot reach.
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const LOG_FILE: &str = "console.log";
pub const OLD_LOG_FILE: &str = "console.log.1";
/// Size at which the log is rotated (1 MiB).
pub const MAX_BYTES: u64 = 1024 * 1024;
/// Most lines a `tail` request returns.
pub const MAX_TAIL_LINES: usize = 100_000;

/// Appends to a slice's console log with rotation (used by the shim).
pub struct ConsoleWriter {
    dir: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl ConsoleWriter {
    pub fn open(dir: &Path) -> io::Result<ConsoleWriter> {
        ConsoleWriter::with_max(dir, MAX_BYTES)
    }

    pub fn with_max(dir: &Path, max: u64) -> io::Result<ConsoleWriter> {
        let file = open_log(&dir.join(LOG_FILE))?;
        let size = file.metadata()?.len();
        Ok(ConsoleWriter {
            dir: dir.to_path_buf(),
            file,
            size,
            max: max.max(1),
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        std::fs::rename(self.dir.join(LOG_FILE), self.dir.join(OLD_LOG_FILE))?;
        self.file = open_log(&self.dir.join(LOG_FILE))?;
        self.size = 0;
        Ok(())
    }

    /// Append `data`, rotating first whenever the current file would pass the cap.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.size >= self.max {
                self.rotate()?;
            }
            let room = (self.max - self.size) as usize;
            let n = data.len().min(room);
            self.file.write_all(&data[..n])?;
            self.size += n as u64;
            data = &data[n..];
        }
        Ok(())
    }
}

/// Where a reader of the log stands: the current file (by inode) and the offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub ino: u64,
    pub offset: u64,
}

fn read_all(path: &Path) -> io::Result<Option<(Vec<u8>, u64)>> {
    match File::open(path) {
        Ok(mut f) => {
            let ino = f.metadata()?.ino();
            let mut v = Vec::new();
            f.read_to_end(&mut v)?;
            Ok(Some((v, ino)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last `lines` lines of the log (rotated file included; all of it when `None`) and the
/// cursor after them, for [`follow`].
pub fn tail(dir: &Path, lines: Option<usize>) -> io::Result<(Vec<u8>, Cursor)> {
    let old = read_all(&dir.join(OLD_LOG_FILE))?.map(|(v, _)| v);
    let (cur, ino) = read_all(&dir.join(LOG_FILE))?.unwrap_or_default();
    let cursor = Cursor {
        ino,
        offset: cur.len() as u64,
    };
    let mut all = old.unwrap_or_default();
    all.extend_from_slice(&cur);
    let Some(n) = lines else {
        return Ok((all, cursor));
    };
    // Start after the (n+1)-th newline from the end (a last line without newline counts).
    let body = all.strip_suffix(b"\n").unwrap_or(&all);
    let start = if n == 0 {
        all.len()
    } else {
        body.iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'\n')
            .nth(n - 1)
            .map(|(i, _)| i + 1)
            .unwrap_or(0)
    };
    Ok((all[start..].to_vec(), cursor))
}

/// What was written since `cursor` (after a rotation: the rest of the rotated file, then the
/// new one from its start), at most `limit` bytes, and the new cursor.
pub fn follow(dir: &Path, cursor: Cursor, limit: usize) -> io::Result<(Vec<u8>, Cursor)> {
    let path = dir.join(LOG_FILE);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), cursor)),
        Err(e) => return Err(e),
    };
    let ino = f.metadata()?.ino();
    let mut out = Vec::new();
    let mut offset = cursor.offset;
    if ino != cursor.ino {
        // Rotated: finish the old file if it is the one we were reading.
        if let Ok(mut old) = File::open(dir.join(OLD_LOG_FILE)) {
            if old.metadata()?.ino() == cursor.ino {
                old.seek(SeekFrom::Start(cursor.offset))?;
                old.take(limit as u64).read_to_end(&mut out)?;
            }
        }
        offset = 0;
    }
    f.seek(SeekFrom::Start(offset))?;
    let room = limit.saturating_sub(out.len()) as u64;
    let n = f.take(room).read_to_end(&mut out)?;
    Ok((
        out,
        Cursor {
            ino,
            offset: offset + n as u64,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_tails_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ConsoleWriter::with_max(dir.path(), 100).unwrap();
        for i in 0..30 {
            w.write(format!("line {i:02}\n").as_bytes()).unwrap();
        }
        let cur = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        let old = std::fs::metadata(dir.path().join(OLD_LOG_FILE))
            .unwrap()
            .len();
        assert!(cur <= 100 && old == 100, "{cur} {old}");
        let (t, c) = tail(dir.path(), Some(3)).unwrap();
        assert_eq!(String::from_utf8(t).unwrap(), "line 27\nline 28\nline 29\n");
        w.write(b"more\n").unwrap();
        let (f, c2) = follow(dir.path(), c, 1 << 20).unwrap();
        assert_eq!(f, b"more\n");
        // A rotation between two reads loses nothing.
        for _ in 0..8 {
            w.write(b"0123456789\n").unwrap();
        }
        let (f, _) = follow(dir.path(), c2, 1 << 20).unwrap();
        assert_eq!(f.len(), 88);
        assert_eq!(tail(dir.path(), Some(0)).unwrap().0, b"");
    }
}
