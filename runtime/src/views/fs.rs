//! The FUSE filesystem serving one slice's views: a flat, read-only directory with one file per
//! view.
//!
//! Why the kernel's page cache serves the reads: a slice polling /proc/meminfo in a loop must
//! cost (almost) no FUSE round trips, or the server and the context switches cap it far below
//! procfs (≥ 50k reads/s is the goal; direct I/O with a render per open gave 13k/s). So opens
//! are zero-message (`open` answers ENOSYS once; the kernel then sends no FUSE_OPEN, RELEASE
//! or, `flush` answering ENOSYS too, FLUSH, and keeps the file's pages), and each view is a
//! *snapshot* of text the kernel caches. Keeping that cache at most [`TTL`] old:
//! - a read that reaches the server arms a [`refresher`] which, TTL later, renders the view
//!   anew and drops the kernel's pages and attributes (FUSE_NOTIFY_INVAL_INODE): the next read
//!   reaches the server again and re-arms it. A view nobody reads costs nothing;
//! - readers through read(2) refresh expired attributes first (FUSE_AUTO_INVAL_DATA): getattr
//!   renders when the snapshot is older than TTL, and a new mtime drops the cached pages;
//! - readers through splice/sendfile (busybox cat) never ask for attributes and read up to the
//!   size the kernel holds. So the refresher also grows that size to the new text plus
//!   [`SLACK`] (FUSE_NOTIFY_STORE of no bytes at that offset): a read then gets the whole
//!   text, whose short end tells the kernel the true size. A read after a long idle renders
//!   anew only when the new text fits the size the kernel holds; otherwise it gets the
//!   snapshot it fits and the refresher runs at once.
//!
//! The notifications come from their own thread: the kernel may hold a page lock while it
//! waits for this server's answer to a read, and an invalidation sent from the serving thread
//! would wait on that lock forever.
use super::render;
use super::source::Source;
use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, Notifier, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEntry, ReplyOpen, Request,
};
use std::ffi::OsStr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

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

/// How old a view may be when read: the kernel's attribute lifetime and the refresh period
/// (the same period [`super::source::CACHE`] reuses numbers for).
pub const TTL: Duration = super::source::CACHE;
/// Bytes a view may grow by between refreshes without a splice reader seeing it cut short.
pub const SLACK: u64 = 512;
const ROOT: u64 = 1;
/// FUSE_AUTO_INVAL_DATA (ABI 7.20): on an attribute refresh that shows a new mtime the kernel
/// drops the file's cached pages. fuser names it only with its abi-7-20 feature, which would
/// change what else it negotiates; the bit is the kernel's ABI and stable.
const FUSE_AUTO_INVAL_DATA: u32 = 1 << 12;

/// One view: its current text, when it was rendered (none yet: empty and stale, its mtime for
/// the kernel), the size the kernel holds for it as far as we know, and whether a refresh is
/// already due.
struct View {
    text: Arc<Vec<u8>>,
    at: Option<Instant>,
    mtime: SystemTime,
    kernel_size: u64,
    armed: bool,
}

impl View {
    fn stale(&self) -> bool {
        self.at.is_none_or(|at| at.elapsed() >= TTL)
    }
}

/// What the serving thread and the refresher share.
struct State {
    source: Source,
    views: Vec<View>,
}

impl State {
    /// Render view `index` now. Host files that cannot be read render as empty input.
    fn render(&mut self, index: usize) -> Vec<u8> {
        let host = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let n = self.source.numbers();
        let text = match NAMES[index] {
            "meminfo" => render::meminfo(&host("/proc/meminfo"), &n),
            "cpuinfo" => render::cpuinfo(&host("/proc/cpuinfo"), &n.cpus),
            "stat" => render::stat(&host("/proc/stat"), &n),
            "uptime" => render::uptime(&n),
            "loadavg" => render::loadavg(&host("/proc/loadavg"), &n),
            "swaps" => render::swaps(),
            "diskstats" => render::diskstats(&host("/proc/diskstats"), &n),
            "online" => render::online(n.cpus.len()),
            _ => String::new(),
        };
        text.into_bytes()
    }

    fn adopt(&mut self, index: usize, text: Vec<u8>) {
        let v = &mut self.views[index];
        v.text = Arc::new(text);
        v.at = Some(Instant::now());
        v.mtime = SystemTime::now();
    }

    /// The view's attributes, rendering it first when stale; the kernel takes this size.
    fn attr(&mut self, index: usize) -> FileAttr {
        if self.views[index].stale() {
            let text = self.render(index);
            self.adopt(index, text);
        }
        let v = &mut self.views[index];
        v.kernel_size = v.text.len() as u64;
        let mut a = attr(index as u64 + 2, v.kernel_size);
        a.mtime = v.mtime;
        a.ctime = v.mtime;
        a
    }
}

pub struct ViewsFs {
    state: Arc<Mutex<State>>,
    /// To the refresher: (view index, when to refresh it).
    refresh: Sender<(usize, Instant)>,
}

/// The refresher of a [`ViewsFs`], started once the session that serves it exists (it
/// notifies through that session's channel).
pub struct Refresher {
    state: Arc<Mutex<State>>,
    due: Receiver<(usize, Instant)>,
}

impl Refresher {
    pub fn start(self, notifier: Notifier) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("views-refresh".into())
            .spawn(move || refresher(&self.state, &self.due, &notifier))
            .map(|_| ())
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves only view text behind: keep serving.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl ViewsFs {
    pub fn new(source: Source) -> (ViewsFs, Refresher) {
        let views = NAMES
            .iter()
            .map(|_| View {
                text: Arc::new(Vec::new()),
                at: None,
                mtime: SystemTime::UNIX_EPOCH,
                kernel_size: 0,
                armed: false,
            })
            .collect();
        let state = Arc::new(Mutex::new(State { source, views }));
        let (refresh, due) = std::sync::mpsc::channel();
        let fs = ViewsFs {
            state: state.clone(),
            refresh,
        };
        (fs, Refresher { state, due })
    }
}

/// Refresh each armed view when due: render it, drop the kernel's copy, grow the size the
/// kernel holds so the new text fits (see the module's comment). Ends with the session.
fn refresher(state: &Mutex<State>, due: &Receiver<(usize, Instant)>, notifier: &Notifier) {
    while let Ok((index, when)) = due.recv() {
        if let Some(wait) = when.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let grow = {
            let mut st = lock(state);
            let text = st.render(index);
            st.adopt(index, text);
            let v = &mut st.views[index];
            v.armed = false;
            let grow = v.text.len() as u64 + SLACK;
            v.kernel_size = v.kernel_size.max(grow);
            grow
        };
        let ino = index as u64 + 2;
        // Errors: the kernel forgot the inode (nothing cached: nothing to do) or the
        // connection is gone (the session ends, and this thread with the process).
        let _ = notifier
            .inval_inode(ino, 0, 0)
            .and_then(|()| notifier.store(ino, grow, &[]));
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

fn index_of(ino: u64) -> Option<usize> {
    ino.checked_sub(2)
        .map(|i| i as usize)
        .filter(|&i| i < NAMES.len())
}

impl Filesystem for ViewsFs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        // Without it only reads that reach past the cached size refresh the attributes; a
        // pread inside the file would see its first snapshot until the refresher runs.
        if config.add_capabilities(FUSE_AUTO_INVAL_DATA).is_err() {
            eprintln!(
                "{}: the kernel lacks FUSE_AUTO_INVAL_DATA",
                super::SERVER_COMM
            );
            return Err(libc::ENOSYS);
        }
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match NAMES.iter().position(|n| OsStr::new(n) == name) {
            Some(i) if parent == ROOT => reply.entry(&TTL, &lock(&self.state).attr(i), 0),
            _ => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        if ino == ROOT {
            reply.attr(&TTL, &attr(ino, 0))
        } else if let Some(i) = index_of(ino) {
            reply.attr(&TTL, &lock(&self.state).attr(i))
        } else {
            reply.error(libc::ENOENT)
        }
    }

    /// Zero-message opens (see the module's comment). Writes are refused by the read-only
    /// mount and the 0444 mode; a write that got through would find no `write` here (ENOSYS).
    fn open(&mut self, _req: &Request<'_>, _ino: u64, _flags: i32, reply: ReplyOpen) {
        reply.error(libc::ENOSYS);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(i) = index_of(ino) else {
            return reply.error(libc::ENOENT);
        };
        let offset = offset.max(0) as u64;
        let mut st = lock(&self.state);
        let mut refresh_at = Instant::now() + TTL;
        // A read from the start after an idle spell: render anew if it fits what the kernel
        // will accept; later pages of one read come from the same snapshot.
        if offset == 0 && st.views[i].stale() {
            let text = st.render(i);
            if text.len() as u64 <= st.views[i].kernel_size {
                st.adopt(i, text);
            } else {
                refresh_at = Instant::now();
            }
        }
        let v = &mut st.views[i];
        let text = v.text.clone();
        let start = (offset as usize).min(text.len());
        let end = start.saturating_add(size as usize).min(text.len());
        if (end - start) < size as usize {
            // A short read: the kernel takes its end as the file's size.
            v.kernel_size = v.kernel_size.min(end as u64);
        }
        if !v.armed || refresh_at <= Instant::now() {
            v.armed = true;
            let _ = self.refresh.send((i, refresh_at));
        }
        drop(st);
        reply.data(&text[start..end]);
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
