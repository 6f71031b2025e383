//! Writing command bytes to a master FIFO.
//!
//! The FIFO is opened `O_WRONLY | O_NONBLOCK`: if no master has it open for reading the open
//! fails with `ENXIO` at once instead of blocking forever. A master re-creates its FIFO when it
//! re-executes, so a caller that knows the master is alive may ask to retry `ENXIO` briefly.
//! Given the validated master, [`write`] writes only to a FIFO that master has open.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::exit::{CtlError, Exit};
use crate::master::Master;

fn kind_of(ft: &fs::FileType) -> &'static str {
    if ft.is_file() {
        "regular file"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "device"
    }
}

/// Open `path` for writing without blocking.
fn open(path: &Path) -> Result<fs::File, CtlError> {
    match fs::metadata(path) {
        Ok(m) if !m.file_type().is_fifo() => {
            return Err(CtlError::new(
                Exit::Fifo,
                format!(
                    "fifo {}: is a {}, not a FIFO; give the path of the master's --master-fifo",
                    path.display(),
                    kind_of(&m.file_type())
                ),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CtlError::new(
                Exit::Fifo,
                format!(
                    "fifo {}: no such file; the instance is not running, or was started without \
                     --master-fifo {}",
                    path.display(),
                    path.display()
                ),
            ))
        }
        Err(e) => {
            return Err(CtlError::new(
                Exit::Fifo,
                format!("fifo {}: {e}", path.display()),
            ))
        }
    }
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                CtlError::new(
                    Exit::Fifo,
                    format!(
                        "fifo {}: no master is reading it; the instance is not running",
                        path.display()
                    ),
                )
            } else {
                CtlError::new(Exit::Fifo, format!("fifo {}: {e}", path.display()))
            }
        })
}

/// True if a master has the FIFO open for reading right now.
pub fn has_reader(path: &Path) -> bool {
    open(path).is_ok()
}

/// Write `bytes` to the FIFO, retrying "no reader" for up to `retry` (a master re-executing).
/// With `owner`, nothing is written unless the FIFO opened is one that master has open.
pub fn write(
    path: &Path,
    bytes: &[u8],
    retry: Duration,
    owner: Option<&Master>,
) -> Result<(), CtlError> {
    let deadline = Instant::now() + retry;
    let mut file = loop {
        match open(path) {
            Ok(f) => break f,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    };
    if let Some(m) = owner {
        m.owns_fifo(path, &file)?;
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        match file.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(CtlError::new(
                    Exit::Fifo,
                    format!("fifo {}: writing: {e}", path.display()),
                ))
            }
        }
    }
    Ok(())
}
