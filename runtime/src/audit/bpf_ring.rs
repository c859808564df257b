//! A consumer of a BPF ring buffer map (BPF_MAP_TYPE_RINGBUF), through its mmap'd pages.
//!
//! Why not aya's `RingBuf`: it caches the producer position starting from 0 and only
//! re-reads it when the consumer position equals the cache. A ring taken over from a pin
//! (the exec log resumed after a daemon restart) has a non-zero consumer position, so aya
//! reads "records" past the producer forever (seen: the collector thread spinning in
//! `next()`). This reads the producer position on every step instead.
//!
//! Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (read-write for user
//! space); page 1 the producer position; then the data pages, mapped twice in a row so a
//! record never wraps. Each record has an 8-byte header (length, BUSY and DISCARD bits,
//! page offset) and is padded to 8 bytes.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use aya::maps::MapData;

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HEADER_BYTES: usize = 8;

pub struct Ring {
    map: MapData,
    consumer: Mapping,
    producer: Mapping,
    page: usize,
    mask: usize,
}

/// One mmap'd region, unmapped on drop.
struct Mapping {
    ptr: NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mappings are only read through atomics and immutable slices, and the ring has
// one consumer (the collector thread owns it).
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(fd: RawFd, len: usize, prot: libc::c_int, offset: usize) -> std::io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of a ring buffer map's fd; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        NonNull::new(ptr)
            .map(|ptr| Mapping { ptr, len })
            .ok_or_else(|| std::io::Error::other("mmap returned NULL"))
    }

    fn position(&self) -> &AtomicUsize {
        // SAFETY: the first word of the consumer and producer pages is the position, an
        // unsigned long the kernel updates atomically; the page is at least that large.
        unsafe { self.ptr.cast::<AtomicUsize>().as_ref() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr(), self.len) };
    }
}

impl Ring {
    /// Map `map` (a ring buffer of `size` bytes, a power of two).
    pub fn new(map: MapData, size: usize) -> std::io::Result<Ring> {
        if !size.is_power_of_two() {
            return Err(std::io::Error::other(format!(
                "ring buffer size {size} is not a power of two"
            )));
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| std::io::Error::other("sysconf(_SC_PAGESIZE) failed"))?;
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page + 2 * size, libc::PROT_READ, page)?;
        Ok(Ring {
            map,
            consumer,
            producer,
            page,
            mask: size - 1,
        })
    }

    /// Readable (for poll) when records are queued.
    pub fn raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }

    /// Hand each committed record to `f`, in order, releasing its space after; stops at
    /// the first record still being written. Returns how many records there were.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let data_len = self.producer.len - self.page;
        // SAFETY: the data pages follow the producer page; the kernel maps them twice, so
        // `data_len` is 2 × size and a record starting inside the first copy is contiguous.
        let data = unsafe {
            std::slice::from_raw_parts(
                (self.producer.ptr.as_ptr() as *const u8).add(self.page),
                data_len,
            )
        };
        let mut consumer = self.consumer.position().load(Ordering::Acquire);
        let mut n = 0;
        loop {
            // Acquire pairs with the kernel's release on commit: the header and data of
            // every record before this position are visible.
            let producer = self.producer.position().load(Ordering::Acquire);
            if consumer == producer {
                break;
            }
            let offset = consumer & self.mask;
            // SAFETY: offset < size and the header is 8-aligned inside the mapping.
            let header = unsafe { &*(data.as_ptr().add(offset) as *const AtomicU32) }
                .load(Ordering::Acquire);
            if header & BUSY_BIT != 0 {
                break;
            }
            let len = (header & !(BUSY_BIT | DISCARD_BIT)) as usize;
            let start = offset + HEADER_BYTES;
            if header & DISCARD_BIT == 0 {
                if let Some(record) = data.get(start..start + len) {
                    n += 1;
                    f(record);
                }
            }
            consumer += (HEADER_BYTES + len).next_multiple_of(8);
            // SeqCst as the kernel's producer: it reads the consumer position after its
            // commit, so either it sees this release or this loop sees its record.
            self.consumer.position().store(consumer, Ordering::SeqCst);
        }
        n
    }
}
