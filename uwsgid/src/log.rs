//! The instance log: timestamped lines on stderr, which `--logto FILE` points at a file.
//!
//! Master and workers write whole lines to fd 2 with one `write` each (O_APPEND keeps them from
//! interleaving inside a line). `--logto` opens the file and puts it on fds 1 and 2, so built-in
//! workers inherit it; reopening (FIFO `l`) and rotating (FIFO `L`) swap it in place, and
//! built-in workers follow (the scoreboard's log epoch).
//!
//! Exec workers are other programs, which cannot be told to reopen anything: with `--logto`
//! their stdout and stderr are the write end of a [`Relay`] pipe, which the master copies into
//! whatever fd 2 is now. So after a rotation their lines land in the new file too.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static ROLE: AtomicU32 = AtomicU32::new(0);

/// Mark this process as worker `id` (0 = master) for the log prefix.
pub fn set_worker(id: u32) {
    ROLE.store(id, Ordering::Relaxed);
}

/// UTC `YYYY-MM-DD HH:MM:SS.mmm` for a time.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (proleptic Gregorian), after H. Hinnant's published algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Write one line to the log.
pub fn write_line(message: std::fmt::Arguments<'_>) {
    let role = ROLE.load(Ordering::Relaxed);
    let who = if role == 0 {
        "master".to_string()
    } else {
        format!("worker {role}")
    };
    let line = format!(
        "{} uwsgid[{}] {who}: {message}\n",
        timestamp(SystemTime::now()),
        std::process::id()
    );
    // SAFETY: one write of a buffer we own to fd 2.
    unsafe {
        libc::write(2, line.as_ptr() as *const libc::c_void, line.len());
    }
}

/// `log!("...")`: one timestamped line in the instance log.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::write_line(format_args!($($arg)*)) };
}

/// Open the log file `path` for appending (created 0640). Never blocks: a FIFO with no reader
/// is refused (`ENXIO`, said in the error) instead of hanging in `open`; once open, writes
/// block as on any log.
pub fn open(path: &Path) -> io::Result<File> {
    let named = |e: io::Error| {
        let fifo = std::fs::metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
        if e.raw_os_error() == Some(libc::ENXIO) && fifo {
            io::Error::new(
                e.kind(),
                format!(
                    "log file {}: a FIFO with no reader; start its reader first, or log to a file",
                    path.display()
                ),
            )
        } else {
            io::Error::new(e.kind(), format!("log file {}: {e}", path.display()))
        }
    };
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(named)?;
    set_nonblocking(&file, false).map_err(named)?;
    Ok(file)
}

/// Set or clear `O_NONBLOCK` on an open file.
pub fn set_nonblocking(file: &File, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd we own; only the O_NONBLOCK bit changes.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if flags < 0 || libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Open `path` for appending and put it on fds 1 and 2.
pub fn redirect_to(path: &Path) -> io::Result<()> {
    let file = open(path)?;
    // SAFETY: dup2 onto the standard fds, which the process owns.
    unsafe {
        if libc::dup2(file.as_raw_fd(), 1) < 0 || libc::dup2(file.as_raw_fd(), 2) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Rename the log to `FILE.EPOCH` (`FILE.EPOCH.N` if that exists) and start a new one.
pub fn rotate(path: &Path) -> io::Result<std::path::PathBuf> {
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let name = |n: u32| {
        let mut backup = path.as_os_str().to_os_string();
        backup.push(format!(".{epoch}"));
        if n > 0 {
            backup.push(format!(".{n}"));
        }
        std::path::PathBuf::from(backup)
    };
    let backup = (0..1000)
        .map(name)
        .find(|b| !b.exists())
        .unwrap_or_else(|| name(1000));
    std::fs::rename(path, &backup)?;
    redirect_to(path)?;
    Ok(backup)
}

/// The pipe exec workers write their stdout and stderr to, copied into the log by the master.
/// Both ends are close-on-exec in the master; the read end is non-blocking.
pub struct Relay {
    read: File,
    write: OwnedFd,
}

/// Bytes copied per [`Relay::pump`] at most, so that a chatty worker cannot hold the master.
const PUMP_MAX: usize = 1 << 20;

impl Relay {
    pub fn new() -> io::Result<Relay> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the array with two new fds, which we own from here on.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else.
        let (read, write) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Writers block when the pipe is full rather than lose a line; only the master's end
        // is non-blocking.
        // SAFETY: F_SETFL on an fd we own.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, 0) };
        Ok(Relay { read, write })
    }

    /// Adopt the ends a previous image handed over.
    ///
    /// # Safety
    /// `read` and `write` must be the two ends of a relay pipe that nothing else owns.
    pub unsafe fn inherit(read: RawFd, write: RawFd) -> Relay {
        // SAFETY: the caller guarantees both fds are relay ends that nothing else owns.
        unsafe {
            Relay {
                read: File::from_raw_fd(read),
                write: OwnedFd::from_raw_fd(write),
            }
        }
    }

    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Copy what is waiting in the pipe to fd 2 (the log as it is now); the bytes copied.
    pub fn pump(&self) -> usize {
        let mut buf = [0u8; 65536];
        let mut total = 0;
        let mut log = io::stderr().lock();
        while total < PUMP_MAX {
            match (&self.read).read(&mut buf) {
                Ok(n) if n > 0 => {
                    // A log that cannot be written (ENOSPC) drops the bytes, as log! does.
                    let _ = log.write_all(&buf[..n]);
                    total += n;
                }
                _ => break, // EAGAIN: drained (no EOF: we hold the write end)
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_590_346_123);
        assert_eq!(timestamp(t), "2026-11-25 07:05:46.123");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000");
    }
}
