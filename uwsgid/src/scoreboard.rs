//! The scoreboard: per-worker counters in shared memory, written by workers, read by the master.
//!
//! A memfd mapped `MAP_SHARED` before any worker is forked; workers inherit the mapping, and the
//! memfd itself is inherited across the master's re-exec, so counters and the cells of workers
//! that are still draining survive a graceful reload. Every field is an atomic: a worker updates
//! its own cell with relaxed stores (no syscall per request), the master reads with relaxed loads.
//! The master allocates cells (one per worker process, not per slot) and frees them when it reaps
//! the worker.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::Relaxed};

pub const CAPACITY: usize = 2048;
const MAGIC: u64 = 0x7577_7367_6964_5342; // "uwsgidSB"
const PATH_WORDS: usize = 12;

/// Worker activity, as stored in [`Cell::state`].
pub const FREE: u32 = 0;
pub const STARTING: u32 = 1;
pub const IDLE: u32 = 2;
pub const BUSY: u32 = 3;

#[repr(C)]
pub struct Header {
    magic: AtomicU64,
    /// 1 while the instance is paused: workers accept nothing.
    pub paused: AtomicU32,
    /// Incremented by the master each time it reopens or rotates the log file; built-in
    /// workers reopen it too when they see a new value.
    pub log_epoch: AtomicU32,
}

#[repr(C)]
pub struct Cell {
    pub pid: AtomicI32,
    pub state: AtomicU32,
    pub requests: AtomicU64,
    pub tx: AtomicU64,
    pub running_time_us: AtomicU64,
    pub avg_rt_us: AtomicU64,
    /// Epoch microseconds when the oldest request in flight started (0 = none).
    pub request_start_us: AtomicU64,
    pub in_flight: AtomicU32,
    pub path_len: AtomicU32,
    path: [AtomicU64; PATH_WORDS],
    pub static_requests: AtomicU64,
    pub read_errors: AtomicU64,
    pub write_errors: AtomicU64,
    pub bad_requests: AtomicU64,
}

// The bundled Python runner writes its cell from Python (`Scoreboard` in
// python/uwsgid_wsgi.py) by these offsets: keep them in step.
const _: () = {
    assert!(std::mem::size_of::<Header>() == 16);
    assert!(std::mem::size_of::<Cell>() == 184);
    assert!(std::mem::offset_of!(Cell, requests) == 8);
    assert!(std::mem::offset_of!(Cell, request_start_us) == 40);
    assert!(std::mem::offset_of!(Cell, in_flight) == 48);
    assert!(std::mem::offset_of!(Cell, path_len) == 52);
    assert!(std::mem::offset_of!(Cell, path) == 56);
    assert!(std::mem::offset_of!(Cell, bad_requests) == 176);
};

pub struct Scoreboard {
    fd: OwnedFd,
    base: *mut u8,
    len: usize,
}

fn size() -> usize {
    std::mem::size_of::<Header>() + CAPACITY * std::mem::size_of::<Cell>()
}

impl Scoreboard {
    /// Create a new, zeroed scoreboard.
    pub fn create() -> io::Result<Scoreboard> {
        // SAFETY: memfd_create with a static NUL-terminated name; we own the returned fd.
        let fd = unsafe { libc::memfd_create(c"uwsgid-scoreboard".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is new and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our own memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size() as libc::off_t) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let board = Scoreboard::map(fd)?;
        board.header().magic.store(MAGIC, Relaxed);
        Ok(board)
    }

    /// Adopt a scoreboard inherited across re-exec.
    pub fn inherit(fd: OwnedFd) -> io::Result<Scoreboard> {
        let board = Scoreboard::map(fd)?;
        if board.header().magic.load(Relaxed) != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "inherited scoreboard has a bad magic",
            ));
        }
        Ok(board)
    }

    fn map(fd: OwnedFd) -> io::Result<Scoreboard> {
        let len = size();
        // SAFETY: mapping our memfd shared, read-write, at a kernel-chosen address.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Scoreboard {
            fd,
            base: base as *mut u8,
            len,
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header, is page-aligned and lives as long as self;
        // all fields are atomics, so shared access from several processes is sound.
        unsafe { &*(self.base as *const Header) }
    }

    pub fn cell(&self, index: usize) -> &Cell {
        assert!(index < CAPACITY, "scoreboard cell {index} out of range");
        let offset = std::mem::size_of::<Header>() + index * std::mem::size_of::<Cell>();
        debug_assert!(offset + std::mem::size_of::<Cell>() <= self.len);
        // SAFETY: in bounds (asserted), 8-byte aligned (Header and Cell sizes are multiples of
        // 8), and made only of atomics.
        unsafe { &*(self.base.add(offset) as *const Cell) }
    }

    pub fn paused(&self) -> bool {
        self.header().paused.load(Relaxed) != 0
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region we mapped.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}

impl Cell {
    /// Reset a cell for a newly spawned worker.
    pub fn reset(&self, pid: i32) {
        self.requests.store(0, Relaxed);
        self.tx.store(0, Relaxed);
        self.running_time_us.store(0, Relaxed);
        self.avg_rt_us.store(0, Relaxed);
        self.request_start_us.store(0, Relaxed);
        self.in_flight.store(0, Relaxed);
        self.path_len.store(0, Relaxed);
        self.static_requests.store(0, Relaxed);
        self.read_errors.store(0, Relaxed);
        self.write_errors.store(0, Relaxed);
        self.bad_requests.store(0, Relaxed);
        self.state.store(STARTING, Relaxed);
        self.pid.store(pid, Relaxed);
    }

    /// Record the method and path of the request being served (truncated).
    pub fn set_request(&self, text: &[u8]) {
        let n = text.len().min(PATH_WORDS * 8);
        self.path_len.store(0, Relaxed);
        for (i, word) in self.path.iter().enumerate() {
            let mut bytes = [0u8; 8];
            let start = i * 8;
            if start < n {
                let end = (start + 8).min(n);
                bytes[..end - start].copy_from_slice(&text[start..end]);
            }
            word.store(u64::from_le_bytes(bytes), Relaxed);
        }
        self.path_len.store(n as u32, Relaxed);
    }

    pub fn request(&self) -> String {
        let n = (self.path_len.load(Relaxed) as usize).min(PATH_WORDS * 8);
        let mut bytes = Vec::with_capacity(PATH_WORDS * 8);
        for word in &self.path {
            bytes.extend_from_slice(&word.load(Relaxed).to_le_bytes());
        }
        bytes.truncate(n);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Count one finished request.
    pub fn finish_request(&self, bytes: u64, micros: u64) {
        self.requests.fetch_add(1, Relaxed);
        self.tx.fetch_add(bytes, Relaxed);
        self.running_time_us.fetch_add(micros, Relaxed);
        let prev = self.avg_rt_us.load(Relaxed);
        let n = self.requests.load(Relaxed).max(1);
        // A true running mean (uWSGI's is (prev + last) / 2).
        let avg = (prev as i128 + (micros as i128 - prev as i128) / n as i128) as u64;
        self.avg_rt_us.store(avg, Relaxed);
    }
}

/// Cells in use, owned by the master.
#[derive(Default)]
pub struct Allocator {
    used: Vec<bool>,
}

impl Allocator {
    pub fn new() -> Allocator {
        Allocator {
            used: vec![false; CAPACITY],
        }
    }

    pub fn take(&mut self, index: usize) {
        self.used[index] = true;
    }

    pub fn alloc(&mut self) -> Option<usize> {
        let i = self.used.iter().position(|u| !u)?;
        self.used[i] = true;
        Some(i)
    }

    pub fn free(&mut self, index: usize) {
        self.used[index] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_shared_and_hold_text() {
        let board = Scoreboard::create().unwrap();
        let cell = board.cell(CAPACITY - 1);
        cell.reset(42);
        cell.set_request(b"GET /sleep?ms=200");
        assert_eq!(cell.request(), "GET /sleep?ms=200");
        cell.finish_request(10, 100);
        cell.finish_request(10, 300);
        assert_eq!(cell.avg_rt_us.load(Relaxed), 200);
        assert_eq!(cell.tx.load(Relaxed), 20);
        let long = vec![b'a'; 500];
        cell.set_request(&long);
        assert_eq!(cell.request().len(), PATH_WORDS * 8);
    }

    #[test]
    fn allocator_reuses_cells() {
        let mut a = Allocator::new();
        let x = a.alloc().unwrap();
        let y = a.alloc().unwrap();
        assert_ne!(x, y);
        a.free(x);
        assert_eq!(a.alloc(), Some(x));
    }
}
