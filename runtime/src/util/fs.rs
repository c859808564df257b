//! Crash-safe file writes. An acknowledged write must survive a crash: write a temporary
//! file in the same directory, fsync it, rename it over the target, fsync the directory.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An I/O error that names the path it happened on (crun style: every error names its path).
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct PathError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl PathError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PathError {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Attach an operation and a path to an `io::Result`.
pub trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl AsRef<Path>) -> Result<T, PathError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl AsRef<Path>) -> Result<T, PathError> {
        self.map_err(|e| PathError::new(op, path.as_ref(), e))
    }
}

/// Write `data` to `path` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PathError> {
    write_atomic_with(path, data, mode, true)
}

/// Write `data` to `path` atomically (readers never see a torn file) without fsync: for
/// runtime files that are rebuilt on every start and mean nothing after a node crash (a
/// slice's launch description, its shim's PIDs). Each fsync costs milliseconds per start.
pub fn write_atomic_volatile(path: &Path, data: &[u8], mode: u32) -> Result<(), PathError> {
    write_atomic_with(path, data, mode, false)
}

fn write_atomic_with(path: &Path, data: &[u8], mode: u32, durable: bool) -> Result<(), PathError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{}.tmp.{}", file_name, std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .ctx("create", &tmp)?;
        f.write_all(data).ctx("write", &tmp)?;
        if durable {
            f.sync_all().ctx("fsync", &tmp)?;
        }
        fs::rename(&tmp, path).ctx("rename into", path)?;
        if durable {
            fsync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory so that a rename or creation in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<(), PathError> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync", dir)
}

/// Serialize as pretty JSON and write atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), PathError> {
    let mut data = serde_json::to_vec_pretty(value)
        .map_err(|e| PathError::new("serialize", path, io::Error::other(e)))?;
    data.push(b'\n');
    write_atomic(path, &data, 0o600)
}

/// Serialize as JSON and write atomically without fsync (see [`write_atomic_volatile`]).
pub fn write_json_volatile<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), PathError> {
    let data = serde_json::to_vec(value)
        .map_err(|e| PathError::new("serialize", path, io::Error::other(e)))?;
    write_atomic_volatile(path, &data, 0o600)
}

/// Read and parse a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PathError> {
    let data = fs::read(path).ctx("read", path)?;
    serde_json::from_slice(&data).map_err(|e| PathError::new("parse", path, io::Error::other(e)))
}

/// The text of a small kernel-generated file (/proc, cgroupfs): open, read, close. These
/// files report size 0, so `fs::read_to_string` spends a statx, an lseek and a 32-byte probe
/// read on each; `list` reads six per slice. A read that does not fill the buffer is the end:
/// the kernel hands over a seq_file's whole text when it fits.
pub fn read_kernel_text(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = f.read(&mut buf[len..])?;
        len += n;
        if n == 0 || len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_text_reads_whole_files_small_and_large() {
        let stat = read_kernel_text(Path::new("/proc/self/stat")).unwrap();
        assert!(stat.ends_with('\n') && stat.contains(") "), "{stat:?}");
        // Larger than the first buffer: read on until the end.
        let maps = read_kernel_text(Path::new("/proc/self/mountinfo")).unwrap();
        assert!(maps.lines().count() > 1 && maps.ends_with('\n'));
        let d = tempfile::tempdir().unwrap();
        let big = "x".repeat(10_000);
        std::fs::write(d.path().join("big"), &big).unwrap();
        assert_eq!(read_kernel_text(&d.path().join("big")).unwrap(), big);
        let e = read_kernel_text(&d.path().join("none")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temp file left behind: {names:?}");
    }

    #[test]
    fn errors_name_the_path() {
        let err = read_json::<serde_json::Value>(Path::new("/nonexistent/x.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.json"), "{err}");
    }
}
