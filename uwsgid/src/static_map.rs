//! Static files for built-in workers: `--check-static DIR`, `--static-map /URL=DIR`,
//! `--static-map2 /URL=DIR`, `--static-index FILE`, `--static-expires-type MIME=SECS`.
//!
//! Mapping, as uWSGI does it: `--static-map /media=/srv/m` serves `/media/a/b.png` from
//! `/srv/m/a/b.png` (what follows the prefix); `--static-map2 /media=/srv` serves it from
//! `/srv/media/a/b.png` (the whole path); a prefix matches at a `/` boundary only. Maps are
//! tried in order and the first that holds the file serves it, so several maps may share a
//! prefix. A map to a file serves that file for exactly its URL. `--check-static DIR` is a map
//! of `/` to `DIR` tried after the maps. A directory is served by its first `--static-index`
//! file (`index.html` when none is given). Nothing found: the request goes on to the routes,
//! which come after the static files (uWSGI checks its maps before the app).
//!
//! Confinement. Refused with 403 before touching the filesystem: an encoded `/` (`%2F`), an
//! encoded NUL or bad UTF-8, any `.` or `..` segment after decoding (so `%2e%2e` too). Then the
//! file is opened with `openat2(root, rel, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the
//! kernel resolves every component, symlinks included, and fails (`EXDEV`, answered 403) if
//! the walk would leave the map's root, with no window between a check and the open. A
//! symlink that stays inside the root is followed. On kernels without `openat2` (before
//! 5.6) the path is canonicalized and must lie under the canonical root, then opened with
//! `O_NOFOLLOW` (a check-then-open race remains there, by whoever can write in the root).
//!
//! The file is opened `O_NONBLOCK` (a FIFO placed there cannot stall the worker), must be a
//! regular file, and is streamed by the worker ([`crate::worker`]), never read whole.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::options::ServeOptions;

/// A static file to send.
pub struct Found {
    pub file: File,
    pub len: u64,
    pub ctype: &'static str,
    /// Extra response header lines (`Expires`, `Cache-Control`), each ending in CRLF.
    pub headers: String,
}

pub enum Lookup {
    Found(Found),
    /// A traversal attempt: answer 403.
    Refused,
    /// Not a static file: go on to the routes.
    NotFound,
}

/// Look `path` (the URL path, still percent-encoded, no query) up in the maps, then in
/// `check_static`.
pub fn lookup(serve: &ServeOptions, check_static: Option<&Path>, path: &str) -> Lookup {
    if serve.static_maps.is_empty() && check_static.is_none() {
        return Lookup::NotFound;
    }
    let Some(decoded) = decode(path) else {
        return Lookup::Refused;
    };
    if decoded
        .split('/')
        .skip(1)
        .any(|seg| seg == ".." || seg == ".")
    {
        return Lookup::Refused;
    }
    let index: Vec<&str> = if serve.static_index.is_empty() {
        vec!["index.html"]
    } else {
        serve.static_index.iter().map(String::as_str).collect()
    };
    let mut refused = false;
    let maps = serve
        .static_maps
        .iter()
        .map(|m| (m.prefix.as_str(), m.target.as_path(), m.append_whole));
    let tail = check_static.map(|d| ("", d, true));
    for (prefix, target, whole) in maps.chain(tail) {
        let rest = if prefix.is_empty() {
            Some(decoded.as_str())
        } else {
            decoded
                .strip_prefix(prefix)
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        let Some(rest) = rest else { continue };
        let rel = if whole { decoded.as_str() } else { rest };
        let rel = rel.trim_start_matches('/');
        match open_under(target, rel, &index) {
            Ok(Some((file, len, name))) => {
                let ctype = content_type(&name);
                return Lookup::Found(Found {
                    file,
                    len,
                    ctype,
                    headers: expires_headers(serve, ctype),
                });
            }
            Ok(None) => {}
            Err(()) => refused = true,
        }
    }
    if refused {
        Lookup::Refused
    } else {
        Lookup::NotFound
    }
}

/// Percent-decode; `None` for an encoded `/`, a NUL, a bad escape or invalid UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            let b = u8::from_str_radix(hex, 16).ok()?;
            if b == b'/' || b == 0 {
                return None;
            }
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.contains('\0')).then_some(s)
}

/// Open `rel` under `root` (a directory, or a file when `rel` is empty), a directory's index
/// files in order. `Err` when the kernel refused a walk out of `root`.
fn open_under(root: &Path, rel: &str, index: &[&str]) -> Result<Option<(File, u64, String)>, ()> {
    if rel.is_empty() && !root.is_dir() {
        return Ok(open_regular_path(root).map(|(f, l)| (f, l, root_name(root))));
    }
    if !root.is_dir() {
        return Ok(None);
    }
    let rel = if rel.is_empty() { "." } else { rel };
    match open_beneath(root, rel)? {
        None => Ok(None),
        Some(file) => {
            let Ok(meta) = file.metadata() else {
                return Ok(None);
            };
            if meta.is_file() {
                return Ok(Some((file, meta.len(), rel.to_string())));
            }
            if !meta.is_dir() {
                return Ok(None);
            }
            for name in index {
                let candidate = format!("{}/{name}", rel.trim_end_matches('/'));
                if let Some(f) = open_beneath(root, &candidate)? {
                    if let Ok(m) = f.metadata() {
                        if m.is_file() {
                            return Ok(Some((f, m.len(), candidate)));
                        }
                    }
                }
            }
            Ok(None)
        }
    }
}

fn root_name(root: &Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn open_regular_path(path: &Path) -> Option<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    let len = meta.len();
    meta.is_file().then_some((file, len))
}

/// `Ok(None)`: not there (or unreadable); `Err`: the path leaves `root`.
fn open_beneath(root: &Path, rel: &str) -> Result<Option<File>, ()> {
    let croot = std::ffi::CString::new(root.as_os_str().as_bytes()).map_err(|_| ())?;
    let crel = std::ffi::CString::new(rel).map_err(|_| ())?;
    // SAFETY: open of a NUL-terminated path; a new fd that we own is returned.
    let rootfd = unsafe {
        libc::open(
            croot.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if rootfd < 0 {
        return Ok(None);
    }
    // SAFETY: rootfd was just opened and is ours.
    let rootfd = unsafe { OwnedFd::from_raw_fd(rootfd) };
    // SAFETY: a zeroed open_how is valid (all fields are integers); we set its fields.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 with our fd, a NUL-terminated path and an open_how of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            rootfd.as_raw_fd(),
            crel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: openat2 returned a new fd that we own.
        return Ok(Some(unsafe { File::from_raw_fd(fd as i32) }));
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EXDEV) | Some(libc::ELOOP) => Err(()),
        Some(libc::ENOSYS) => open_checked(root, rel),
        _ => Ok(None),
    }
}

/// The fallback without `openat2`: canonical path under the canonical root.
fn open_checked(root: &Path, rel: &str) -> Result<Option<File>, ()> {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(full) = std::fs::canonicalize(root.join(rel)) else {
        return Ok(None);
    };
    if !full.starts_with(root) {
        return Err(());
    }
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&full)
        .ok())
}

pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn expires_headers(serve: &ServeOptions, ctype: &str) -> String {
    let mime = ctype.split(';').next().unwrap_or("").trim();
    let Some((_, secs)) = serve.static_expires.iter().find(|(m, _)| m == mime) else {
        return String::new();
    };
    let at = SystemTime::now() + std::time::Duration::from_secs(*secs);
    format!(
        "Expires: {}\r\nCache-Control: max-age={secs}\r\n",
        http_date(at)
    )
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    // crate::log::timestamp gives "YYYY-MM-DD HH:MM:SS.mmm" for the same instant.
    let stamp = crate::log::timestamp(UNIX_EPOCH + std::time::Duration::from_secs(secs as u64));
    let (y, m, d) = (&stamp[0..4], &stamp[5..7], &stamp[8..10]);
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][m.parse::<usize>().unwrap_or(1).clamp(1, 12) - 1];
    format!(
        "{weekday}, {d} {month} {y} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::StaticMap;

    fn read(serve: &ServeOptions, root: Option<&Path>, p: &str) -> Option<String> {
        match lookup(serve, root, p) {
            Lookup::Found(mut f) => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut f.file, &mut text).unwrap();
                assert_eq!(f.len, text.len() as u64);
                Some(text)
            }
            _ => None,
        }
    }

    #[test]
    fn paths_stay_inside() {
        let base = std::env::temp_dir().join(format!("uwsgid-smap-{}", std::process::id()));
        let dir = base.join("root");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), "hi").unwrap();
        std::fs::write(dir.join("sub/index.html"), "idx").unwrap();
        std::fs::write(base.join("secret"), "no").unwrap();
        std::os::unix::fs::symlink("../secret", dir.join("out")).unwrap();
        std::os::unix::fs::symlink("a.txt", dir.join("in")).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        let none = ServeOptions::default();
        let root = Some(dir.as_path());
        assert_eq!(read(&none, root, "/a.txt").as_deref(), Some("hi"));
        assert_eq!(read(&none, root, "/%61.txt").as_deref(), Some("hi"));
        assert_eq!(read(&none, root, "/sub").as_deref(), Some("idx"));
        assert_eq!(read(&none, root, "/in").as_deref(), Some("hi"));
        for bad in [
            "/../secret",
            "/%2e%2e/secret",
            "/sub/..%2fsecret",
            "/sub%2F..%2Fsecret",
            "/out",
            "/a.txt%00",
            "/./a.txt",
        ] {
            assert!(matches!(lookup(&none, root, bad), Lookup::Refused), "{bad}");
        }
        assert!(matches!(lookup(&none, root, "/missing"), Lookup::NotFound));
        let maps = ServeOptions {
            static_maps: vec![
                StaticMap {
                    prefix: "/m".into(),
                    target: dir.clone(),
                    append_whole: false,
                },
                StaticMap {
                    prefix: "/root".into(),
                    target: std::fs::canonicalize(&base).unwrap(),
                    append_whole: true,
                },
            ],
            static_expires: vec![("text/plain".into(), 60)],
            ..ServeOptions::default()
        };
        assert_eq!(read(&maps, None, "/m/a.txt").as_deref(), Some("hi"));
        assert_eq!(read(&maps, None, "/root/a.txt").as_deref(), Some("hi"));
        assert!(matches!(lookup(&maps, None, "/ma.txt"), Lookup::NotFound));
        assert!(matches!(lookup(&maps, None, "/m/out"), Lookup::Refused));
        let Lookup::Found(f) = lookup(&maps, None, "/m/a.txt") else {
            panic!()
        };
        assert!(
            f.headers.contains("Cache-Control: max-age=60"),
            "{}",
            f.headers
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
