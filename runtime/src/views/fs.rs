//! The FUSE filesystem serving one slice's views: a flat, read-only directory with one file per
//! view. A file's content is rendered at open and kept with the handle, so a reader that
//! reads in several chunks sees one consistent snapshot; every open is direct I/O (the size
//! reported by getattr is 0, as procfs' is), so the kernel never caches stale text.
use super::render;
use super::source::Source;
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

/// The files served, in inode order (inode = index + 2; 1 is the root directory).
pub const NAMES: &[&str] = &[
    "meminfo",
    "cpuinfo",
    "stat",
    "uptime",
    "loadavg",
    "swaps",
    "diskstats",
    "online",
];

const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;

pub struct ViewsFs {
    source: Source,
    /// Rendered text per view, reused for [`super::source::CACHE`] (stat and open of the same
    /// file in a loop then render once per period).
    rendered: HashMap<&'static str, (std::time::Instant, std::rc::Rc<Vec<u8>>)>,
    open: HashMap<u64, std::rc::Rc<Vec<u8>>>,
    next_fh: u64,
}

impl ViewsFs {
    pub fn new(source: Source) -> ViewsFs {
        ViewsFs {
            source,
            rendered: HashMap::new(),
            open: HashMap::new(),
            next_fh: 1,
        }
    }

    /// The size reported by stat: reads are direct I/O and ignore it, but sendfile/splice
    /// (busybox cat) goes through the page-cache path, which stops at i_size: so report the
    /// current length rounded up with a page of slack (a short read then ends the file).
    fn size(&mut self, name: &'static str) -> u64 {
        (self.cached(name).len() as u64).div_ceil(4096) * 4096 + 4096
    }

    fn cached(&mut self, name: &'static str) -> std::rc::Rc<Vec<u8>> {
        if let Some((at, text)) = self.rendered.get(name) {
            if at.elapsed() < super::source::CACHE {
                return text.clone();
            }
        }
        let text = std::rc::Rc::new(self.render(name).into_bytes());
        self.rendered
            .insert(name, (std::time::Instant::now(), text.clone()));
        text
    }

    /// Render one view now. Host files that cannot be read render as empty input.
    pub fn render(&mut self, name: &str) -> String {
        let host = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let n = self.source.numbers();
        match name {
            "meminfo" => render::meminfo(&host("/proc/meminfo"), &n),
            "cpuinfo" => render::cpuinfo(&host("/proc/cpuinfo"), &n.cpus),
            "stat" => render::stat(&host("/proc/stat"), &n),
            "uptime" => render::uptime(&n),
            "loadavg" => render::loadavg(&host("/proc/loadavg"), &n),
            "swaps" => render::swaps(),
            "diskstats" => render::diskstats(&host("/proc/diskstats"), &n),
            "online" => render::online(n.cpus.len()),
            _ => String::new(),
        }
    }
}

fn attr(ino: u64, size: u64) -> FileAttr {
    let dir = ino == ROOT;
    FileAttr {
        ino,
        size,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: if dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: if dir { 0o555 } else { 0o444 },
        nlink: if dir { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn name_of(ino: u64) -> Option<&'static str> {
    ino.checked_sub(2)
        .and_then(|i| NAMES.get(i as usize))
        .copied()
}

impl Filesystem for ViewsFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match NAMES.iter().position(|n| OsStr::new(n) == name) {
            Some(i) if parent == ROOT => {
                let size = self.size(NAMES[i]);
                reply.entry(&TTL, &attr(i as u64 + 2, size), 0)
            }
            _ => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        if ino == ROOT {
            reply.attr(&TTL, &attr(ino, 0))
        } else if let Some(name) = name_of(ino) {
            let size = self.size(name);
            reply.attr(&TTL, &attr(ino, size))
        } else {
            reply.error(libc::ENOENT)
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let Some(name) = name_of(ino) else {
            return reply.error(libc::ENOENT);
        };
        // Read-only views (the mount is read-only too; this also covers O_TRUNC).
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return reply.error(libc::EACCES);
        }
        let text = self.cached(name);
        let fh = self.next_fh;
        self.next_fh += 1;
        self.open.insert(fh, text);
        reply.opened(fh, fuser::consts::FOPEN_DIRECT_IO);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(text) = self.open.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        let start = (offset.max(0) as usize).min(text.len());
        let end = start.saturating_add(size as usize).min(text.len());
        reply.data(&text[start..end]);
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.open.remove(&fh);
        reply.ok();
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let mut entries = vec![
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
        ];
        for (i, n) in NAMES.iter().enumerate() {
            entries.push((i as u64 + 2, FileType::RegularFile, n));
        }
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, i as i64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}
