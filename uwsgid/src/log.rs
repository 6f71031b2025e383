//! The instance log: timestamped lines on stderr, which `--logto FILE` points at a file.
//!
//! Master and workers write whole lines to fd 2 with one `write` each (O_APPEND keeps them from
//! interleaving inside a line). `--logto` opens the file and puts it on fds 1 and 2, so built-in
//! workers inherit it; reopening (FIFO `l`, `--log-reopen` at a reload) and rotating (FIFO `L`,
//! `--log-maxsize`) swap it in place, and built-in workers follow (the scoreboard's log epoch).
//!
//! Two encodings ([`Format`], `--log-format text|json`). Text:
//! `2026-12-02 00:12:10.123 uwsgid[PID] gen G master: MESSAGE` (`worker N:` in a worker).
//! JSON, one object per line:
//! `{"time":"2026-12-02T00:12:10.123Z","level":"info","pid":PID,"role":"master","event":"worker_ready","message":"...","fields":{"generation":2,"worker":1,"pid":4242}}`.
//! `event` names a management event ([`crate::log_event!`]: `reload_begun`, `reload_complete`,
//! `reload_failed`, `worker_ready`, `worker_retired`, `worker_killed`, `worker_died`,
//! `worker_failed_start`, `worker_recycled`, `stop`, `exit`, `startup_failed`, `daemonize`;
//! `request` for built-in workers' request lines) or is `message` for any other line;
//! `fields.generation` is on every line: the process's generation, set in one place
//! ([`set_generation`], by the master loop and where a reload makes a new one; a worker's own at
//! its fork).
//!
//! Exec workers are other programs, which cannot be told to reopen anything: with `--logto`
//! their stdout and stderr are the write end of a [`Relay`] pipe, which the master copies into
//! whatever fd 2 is now. So after a rotation their lines land in the new file too (as they
//! wrote them: the relay does not re-encode).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static ROLE: AtomicU32 = AtomicU32::new(0);
static GENERATION: AtomicU64 = AtomicU64::new(1);
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// The master log's encoding (`--log-format text|json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Json,
}

impl Format {
    /// `text` or `json` (exactly: any other `--log-format` value is a request-log format).
    pub fn from_option(value: &str) -> Option<Format> {
        match value {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Choose this process's encoding (the master at startup; workers inherit it at fork).
pub fn set_format(format: Format) {
    FORMAT.store(format as u8, Ordering::Relaxed);
}

pub fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == Format::Json as u8 {
        Format::Json
    } else {
        Format::Text
    }
}

/// Mark this process as worker `id` of `generation` (in the forked child) for the log.
pub fn set_worker(id: u32, generation: u64) {
    ROLE.store(id, Ordering::Relaxed);
    set_generation(generation);
}

/// The generation every following line carries (the master's newest, a worker's own).
pub fn set_generation(generation: u64) {
    GENERATION.store(generation, Ordering::Relaxed);
}

/// How serious a line is: from an `error:`/`warning:` prefix, or given by the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }

    fn of(message: &str) -> Level {
        if message.starts_with("error:") {
            Level::Error
        } else if message.starts_with("warning:") {
            Level::Warning
        } else {
            Level::Info
        }
    }
}

/// A field's value in [`log_event!`]: a number or text.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Int(i64),
    Text(String),
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl From<$t> for Field {
            fn from(v: $t) -> Field {
                Field::Int(v as i64)
            }
        }
    )*};
}
int_field!(i32, u32, u64, usize, i64);

impl From<&str> for Field {
    fn from(v: &str) -> Field {
        Field::Text(v.to_string())
    }
}

impl From<String> for Field {
    fn from(v: String) -> Field {
        Field::Text(v)
    }
}

impl From<&String> for Field {
    fn from(v: &String) -> Field {
        Field::Text(v.clone())
    }
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

/// Everything one line says; [`Line::render`] encodes it.
#[derive(Clone, Debug)]
pub struct Line<'a> {
    pub time: SystemTime,
    pub pid: u32,
    /// 0 for the master, else the worker's slot.
    pub role: u32,
    pub generation: u64,
    pub level: Level,
    pub event: &'a str,
    pub message: &'a str,
    pub fields: &'a [(&'a str, Field)],
}

fn json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

impl Line<'_> {
    /// The line with its newline, in `format`.
    pub fn render(&self, format: Format) -> String {
        use std::fmt::Write as _;
        let message = self.message.trim_end_matches('\n');
        match format {
            Format::Text => {
                let who = if self.role == 0 {
                    "master".to_string()
                } else {
                    format!("worker {}", self.role)
                };
                format!(
                    "{} uwsgid[{}] gen {} {who}: {message}\n",
                    timestamp(self.time),
                    self.pid,
                    self.generation
                )
            }
            Format::Json => {
                let mut out = String::with_capacity(160 + message.len());
                out.push_str("{\"time\":\"");
                out.push_str(&timestamp(self.time).replacen(' ', "T", 1));
                out.push_str("Z\",\"level\":\"");
                out.push_str(self.level.name());
                let _ = write!(out, "\",\"pid\":{},\"role\":", self.pid);
                out.push_str(if self.role == 0 {
                    "\"master\""
                } else {
                    "\"worker\""
                });
                out.push_str(",\"event\":");
                json_string(&mut out, self.event);
                out.push_str(",\"message\":");
                json_string(&mut out, message);
                let _ = write!(out, ",\"fields\":{{\"generation\":{}", self.generation);
                if self.role != 0 && !self.fields.iter().any(|(k, _)| *k == "worker") {
                    let _ = write!(out, ",\"worker\":{}", self.role);
                }
                for (key, value) in self.fields {
                    if *key == "generation" {
                        continue;
                    }
                    out.push(',');
                    json_string(&mut out, key);
                    out.push(':');
                    match value {
                        Field::Int(n) => {
                            let _ = write!(out, "{n}");
                        }
                        Field::Text(t) => json_string(&mut out, t),
                    }
                }
                out.push_str("}}\n");
                out
            }
        }
    }
}

/// This process's line about `event` now, in its format (with the newline).
pub fn render_now(
    event: &str,
    level: Option<Level>,
    generation: u64,
    fields: &[(&str, Field)],
    message: &str,
) -> String {
    Line {
        time: SystemTime::now(),
        pid: std::process::id(),
        role: ROLE.load(Ordering::Relaxed),
        generation,
        level: level.unwrap_or_else(|| Level::of(message)),
        event,
        message,
        fields,
    }
    .render(format())
}

/// A request line in the JSON log (event `request`): the request's facts as fields.
pub fn request_json(fields: &[(&str, Field)], message: &str) -> String {
    render_now(
        "request",
        Some(Level::Info),
        GENERATION.load(Ordering::Relaxed),
        fields,
        message,
    )
}

/// Write one line to the log: one `write(2)` of the whole line.
pub fn write_event(
    event: &str,
    level: Option<Level>,
    fields: &[(&str, Field)],
    message: std::fmt::Arguments<'_>,
) {
    let message = message.to_string();
    // A field named generation (an event about another generation than the newest) wins.
    let generation = fields
        .iter()
        .find_map(|(k, v)| match (k, v) {
            (&"generation", Field::Int(g)) => Some(*g as u64),
            _ => None,
        })
        .unwrap_or_else(|| GENERATION.load(Ordering::Relaxed));
    let line = render_now(event, level, generation, fields, &message);
    // SAFETY: one write of a buffer we own to fd 2.
    unsafe {
        libc::write(2, line.as_ptr() as *const libc::c_void, line.len());
    }
}

/// Write one plain line (event `message`).
pub fn write_line(message: std::fmt::Arguments<'_>) {
    write_event("message", None, &[], message)
}

/// `log!("...")`: one timestamped line in the instance log.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::write_line(format_args!($($arg)*)) };
}

/// `log_event!("worker_ready", worker = id, pid = pid; "worker {id} ready")`: a management
/// event, with its fields (numbers or text) beside the message; the generation is added.
#[macro_export]
macro_rules! log_event {
    ($event:literal $(, $key:ident = $value:expr)* ; $($arg:tt)*) => {
        $crate::log::write_event(
            $event,
            None,
            &[$((stringify!($key), $crate::log::Field::from($value))),*],
            format_args!($($arg)*),
        )
    };
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

/// The size of what fd 2 is now (the `--logto` file), for `--log-maxsize`.
pub fn size() -> Option<u64> {
    // SAFETY: fstat of fd 2 into a zeroed struct we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(2, &mut st) == 0).then_some(st.st_size as u64)
    }
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

    fn line<'a>(fields: &'a [(&'a str, Field)], role: u32) -> Line<'a> {
        Line {
            time: UNIX_EPOCH + Duration::from_millis(1_795_590_346_123),
            pid: 42,
            role,
            generation: 3,
            level: Level::Info,
            event: "worker_ready",
            message: "worker 1 \"ready\"\n",
            fields,
        }
    }

    #[test]
    fn text_lines_carry_the_generation_before_the_role() {
        let fields = [("worker", Field::Int(1))];
        assert_eq!(
            line(&fields, 0).render(Format::Text),
            "2026-11-25 07:05:46.123 uwsgid[42] gen 3 master: worker 1 \"ready\"\n"
        );
        assert!(line(&[], 2)
            .render(Format::Text)
            .contains("uwsgid[42] gen 3 worker 2: "));
    }

    #[test]
    fn json_lines_are_one_object_with_fields() {
        let fields = [
            ("worker", Field::Int(1)),
            ("pid", Field::Int(4242)),
            ("cause", Field::Text("a\nb".into())),
        ];
        let text = line(&fields, 0).render(Format::Json);
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["time"], "2026-11-25T07:05:46.123Z");
        assert_eq!(v["level"], "info");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["role"], "master");
        assert_eq!(v["event"], "worker_ready");
        assert_eq!(v["message"], "worker 1 \"ready\"");
        assert_eq!(v["fields"]["generation"], 3);
        assert_eq!(v["fields"]["worker"], 1);
        assert_eq!(v["fields"]["pid"], 4242);
        assert_eq!(v["fields"]["cause"], "a\nb");
        // A worker's own line names its slot.
        let w: serde_json::Value =
            serde_json::from_str(&line(&[], 2).render(Format::Json)).unwrap();
        assert_eq!(
            (w["role"].as_str(), w["fields"]["worker"].as_i64()),
            (Some("worker"), Some(2))
        );
    }

    #[test]
    fn levels_from_prefixes() {
        assert_eq!(Level::of("error: boom"), Level::Error);
        assert_eq!(Level::of("warning: hm"), Level::Warning);
        assert_eq!(Level::of("worker 1 ready"), Level::Info);
        assert_eq!(Format::from_option("json"), Some(Format::Json));
        assert_eq!(Format::from_option("text"), Some(Format::Text));
        assert_eq!(Format::from_option("%(method) %(uri)"), None);
    }

    #[test]
    fn formats_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_590_346_123);
        assert_eq!(timestamp(t), "2026-11-25 07:05:46.123");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000");
    }
}
