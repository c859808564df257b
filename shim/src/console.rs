//! The slice's console: init's stdin is an empty pipe, its stdout and stderr the write end of
//! a pipe whose read end this shim copies into `<slice dir>/console.log` with rotation
//! (vslice::slice::console). Anonymous pipes only: no host file or device reaches the slice.
//!
//! The sandbox executor passes the caller's fds 0-2 to init when `null_stdio` is off, so the
//! pipes are put there for the duration of `sandbox::create` and the shim's own stdio (the
//! starter's report pipe, shim.log) is put back afterwards.
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use vslice::slice::console::ConsoleWriter;

pub struct Console {
    writer: ConsoleWriter,
    out_r: OwnedFd,
    out_w: OwnedFd,
    in_r: OwnedFd,
    in_w: OwnedFd,
}

/// After init started: the read end and the log.
pub struct Running {
    writer: ConsoleWriter,
    out_r: Option<OwnedFd>,
    pidfd: Option<OwnedFd>,
    buf: Vec<u8>,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

impl Console {
    pub fn new(dir: &Path) -> std::io::Result<Console> {
        let writer = ConsoleWriter::open(dir)?;
        let (out_r, out_w) = pipe()?;
        let (in_r, in_w) = pipe()?;
        Ok(Console {
            writer,
            out_r,
            out_w,
            in_r,
            in_w,
        })
    }

    /// Run `f` with fds 0-2 set to the console pipes (inherited by what `f` forks), then put
    /// the caller's stdio back.
    pub fn with_stdio<T>(&self, f: impl FnOnce() -> T) -> std::io::Result<T> {
        let saved: Vec<OwnedFd> = (0..3)
            .map(|fd: RawFd| {
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
                    // SAFETY: fcntl just returned this new descriptor.
                    .map(|n| unsafe { OwnedFd::from_raw_fd(n) })
                    .map_err(std::io::Error::from)
            })
            .collect::<Result<_, _>>()?;
        let set = |from: &OwnedFd, to: RawFd| nix::unistd::dup2(from.as_raw_fd(), to).map(|_| ());
        let r = set(&self.in_r, 0)
            .and_then(|_| set(&self.out_w, 1))
            .and_then(|_| set(&self.out_w, 2));
        let out = r.map(|_| f());
        for (fd, s) in saved.iter().enumerate() {
            let _ = nix::unistd::dup2(s.as_raw_fd(), fd as RawFd);
        }
        out.map_err(std::io::Error::from)
    }

    /// Init runs: close the ends that are init's alone.
    pub fn started(self) -> Running {
        let Console {
            writer,
            out_r,
            out_w,
            in_r,
            in_w,
        } = self;
        drop((out_w, in_r, in_w));
        Running {
            writer,
            out_r: Some(out_r),
            pidfd: None,
            buf: vec![0u8; 64 * 1024],
        }
    }
}

impl Running {
    /// Wait until init may have exited, `children` (the SIGCHLD signalfd, while a view
    /// server runs) is readable, `look` (the view server watchdog's next look) has passed,
    /// or the console has output; copy what there is.
    /// Returns whether `extra` (the sysinfo listener) is ready.
    pub fn wait_and_copy(
        &mut self,
        init_pid: i32,
        children: Option<BorrowedFd>,
        look: Option<std::time::Duration>,
        extra: Option<BorrowedFd>,
    ) -> bool {
        if self.pidfd.is_none() {
            // SAFETY: pidfd_open takes a pid and flags; returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, init_pid, 0) };
            if fd >= 0 {
                // SAFETY: the kernel just returned this descriptor to us.
                self.pidfd = Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
            }
        }
        let mut fds: Vec<PollFd> = Vec::with_capacity(4);
        // Without a pidfd (kernel < 5.3), poll with a timeout and look again.
        let mut timeout = match &self.pidfd {
            Some(p) => {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                PollTimeout::NONE
            }
            None => PollTimeout::from(1000u16),
        };
        // The view server's death or stop must wake us at once (its views are served again);
        // its watchdog wants a look now and then.
        if let Some(fd) = children {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        if let Some(look) = look {
            let ms = u16::try_from(look.as_millis()).unwrap_or(u16::MAX);
            timeout = match timeout {
                PollTimeout::NONE => PollTimeout::from(ms),
                t => t.min(PollTimeout::from(ms)),
            };
        }
        let extra_at = extra.map(|e| {
            fds.push(PollFd::new(e, PollFlags::POLLIN));
            fds.len() - 1
        });
        let out_fd: Option<BorrowedFd> = self.out_r.as_ref().map(|f| f.as_fd());
        if let Some(o) = out_fd {
            fds.push(PollFd::new(o, PollFlags::POLLIN));
        }
        if fds.is_empty() {
            std::thread::sleep(std::time::Duration::from_secs(1));
            return false;
        }
        let _ = poll(&mut fds, timeout);
        let ready = fds
            .last()
            .filter(|_| out_fd.is_some())
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        let extra_ready = extra_at
            .and_then(|i| fds[i].revents())
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        drop(fds);
        if ready {
            self.copy_once();
        }
        extra_ready
    }

    /// Copy one read's worth; at EOF (every writer in the slice gone) stop watching the pipe.
    fn copy_once(&mut self) -> bool {
        let Some(fd) = &self.out_r else {
            return false;
        };
        match nix::unistd::read(fd.as_raw_fd(), &mut self.buf) {
            Ok(0) => {
                self.out_r = None;
                false
            }
            Ok(n) => {
                if let Err(e) = self.writer.write(&self.buf[..n]) {
                    super::log(&format!("console log: {e}"));
                }
                true
            }
            Err(nix::Error::EINTR) => true,
            Err(_) => {
                self.out_r = None;
                false
            }
        }
    }

    /// Init is gone (and with it every process of the slice): copy what is left.
    pub fn drain(&mut self) {
        if let Some(fd) = &self.out_r {
            let _ = nix::fcntl::fcntl(
                fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
            );
        }
        while self.copy_once() {}
    }
}
