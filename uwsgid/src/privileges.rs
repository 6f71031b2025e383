//! Users, groups and the ownership of the Unix sockets an instance creates.
//!
//! `--chmod-socket[=MODE]` (octal; given bare, 666 as uWSGI), `--chown-socket USER[:GROUP]` and
//! `--umask MODE` are resolved while the options are checked, so an unknown user or a bad mode
//! stops startup before anything is bound. A Unix listener is bound with a umask of 177 (so
//! it is never reachable with a wider mode than asked for, not even for an instant) and then
//! given its mode and owner by path. An inherited listener's file keeps what it was given: a
//! re-executed master neither needs nor tries to change it.
//!
//! User and group names are looked up through the C library (`/etc/passwd`, `/etc/group`, NSS);
//! numbers are taken as they are.

use std::ffi::{CStr, CString};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What a created Unix socket's file gets after `bind`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketOwnership {
    /// `--chmod-socket`: the file mode (else what the umask left).
    pub mode: Option<u32>,
    /// `--chown-socket`: uid and gid (a gid alone keeps the owner).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl SocketOwnership {
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.uid.is_none() && self.gid.is_none()
    }
}

/// Why a user, group, mode or identity change is refused. Each message names the option and
/// the value given, and what to give instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `--chmod-socket`/`--umask`: not 1 to 4 octal digits.
    Mode { option: String, text: String },
    /// A user or group name with a NUL byte in it.
    Nul { what: Entry, text: String },
    /// The system's user or group database could not be read (`errno` from `get*_r`).
    Lookup {
        what: Entry,
        text: String,
        errno: i32,
    },
    /// The database has no such user or group (and the name is not a number).
    Unknown { what: Entry, name: String },
    /// The same, where the option's value is the name alone (`--uid NAME`, `--gid NAME`).
    NoSuch(Entry),
    /// An option's user or group refused: `OPTION VALUE: error`.
    Option {
        option: &'static str,
        value: String,
        error: Box<Error>,
    },
    /// `--chown-socket` naming neither a user nor a group.
    ChownEmpty { text: String },
    /// `--master-as-root` without `--uid`/`--gid`.
    MasterAsRootAlone,
    /// `--uid N` with no user entry, and no `--gid`.
    UidWithoutGroup { uid: String, number: u32 },
    /// Not root, and not already the identity asked for.
    NotPermitted {
        shown: String,
        euid: u32,
        egid: u32,
        uid: u32,
        gid: u32,
    },
    /// `--uid` naming root.
    Root { shown: String },
    /// A call changing the identity failed (`call`: setgroups, setresgid, setresuid).
    Drop {
        option: String,
        call: &'static str,
        errno: i32,
    },
    /// After dropping, root could be regained.
    Regained { uid: u32 },
}

/// Which database an [`Error`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    User,
    Group,
}

impl Entry {
    fn name(self) -> &'static str {
        match self {
            Entry::User => "user",
            Entry::Group => "group",
        }
    }
    fn number(self) -> &'static str {
        match self {
            Entry::User => "uid",
            Entry::Group => "gid",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let os = |errno: &i32| std::io::Error::from_raw_os_error(*errno);
        match self {
            Error::Mode { option, text } => write!(
                f,
                "{option} {text:?}: not an octal mode; write it like 660 or 0600"
            ),
            Error::Nul { what, text } => write!(f, "{} {text:?}: contains NUL", what.name()),
            Error::Lookup { what, text, errno } => {
                write!(f, "looking up {} {text:?}: {}", what.name(), os(errno))
            }
            Error::Unknown { what, name } => write!(
                f,
                "no {} {name:?} on this system; create it or give a {}",
                what.name(),
                what.number()
            ),
            Error::NoSuch(what) => write!(
                f,
                "no such {} on this system; create it or give a {}",
                what.name(),
                what.number()
            ),
            Error::Option {
                option,
                value,
                error,
            } => write!(f, "{option} {value}: {error}"),
            Error::ChownEmpty { text } => write!(
                f,
                "--chown-socket {text:?}: give USER, USER:GROUP or :GROUP"
            ),
            Error::MasterAsRootAlone => f.write_str(
                "--master-as-root without --uid or --gid: nothing to drop; give --uid USER (and \
                 --gid GROUP)",
            ),
            Error::UidWithoutGroup { uid, number } => write!(
                f,
                "--uid {uid}: uid {number} has no user entry, so no group: give --gid too"
            ),
            Error::NotPermitted {
                shown,
                euid,
                egid,
                uid,
                gid,
            } => write!(
                f,
                "--uid/--gid {shown}: uwsgid runs as uid {euid} gid {egid} and cannot change to \
                 uid {uid} gid {gid}; start it as root (it binds, then drops), or leave \
                 --uid/--gid out"
            ),
            Error::Root { shown } => {
                write!(f, "--uid {shown}: that is root; give an unprivileged user")
            }
            Error::Drop {
                option,
                call,
                errno,
            } => write!(f, "{option}: {call}: {}", os(errno)),
            Error::Regained { uid } => {
                write!(f, "--uid {uid}: root could be regained after the drop")
            }
        }
    }
}

impl std::error::Error for Error {}

/// `OPTION VALUE: error`.
fn within<'a>(option: &'static str, value: &'a str) -> impl FnOnce(Error) -> Error + 'a {
    move |error| Error::Option {
        option,
        value: value.to_string(),
        error: Box::new(error),
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A user from the system's user database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// The primary group of the user's entry.
    pub gid: u32,
    pub home: String,
}

/// Parse an octal file mode (`--chmod-socket`, `--umask`): 1 to 4 octal digits, at most 7777.
/// `true` (an ini file's bare key) and the empty string mean `bare`.
pub fn parse_mode(option: &str, text: &str, bare: Option<u32>) -> Result<u32, Error> {
    let t = text.trim();
    let mode = || Error::Mode {
        option: option.to_string(),
        text: text.to_string(),
    };
    if let Some(b) = bare {
        if t.is_empty() || t.eq_ignore_ascii_case("true") {
            return Ok(b);
        }
    }
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(mode());
    }
    u32::from_str_radix(digits, 8).map_err(|_| mode())
}

fn buffer() -> Vec<u8> {
    vec![0u8; 16 * 1024]
}

/// Look a user up by name or number.
pub fn lookup_user(text: &str) -> Result<Option<User>, Error> {
    let mut pwd: libc::passwd = unsafe_zeroed_passwd();
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let mut buf = buffer();
    let ret = if let Ok(uid) = text.parse::<u32>() {
        // SAFETY: pwd, buf and result are valid for the call; buf's length is passed.
        unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
                &mut result,
            )
        }
    } else {
        let name = CString::new(text).map_err(|_| Error::Nul {
            what: Entry::User,
            text: text.to_string(),
        })?;
        // SAFETY: as above; name is a valid C string.
        unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
                &mut result,
            )
        }
    };
    if ret != 0 {
        return Err(Error::Lookup {
            what: Entry::User,
            text: text.to_string(),
            errno: ret,
        });
    }
    if result.is_null() {
        return Ok(None);
    }
    // SAFETY: on success the strings point into buf, which is alive here, and are NUL-ended.
    let (name, home) = unsafe {
        (
            CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned(),
            CStr::from_ptr(pwd.pw_dir).to_string_lossy().into_owned(),
        )
    };
    Ok(Some(User {
        name,
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home,
    }))
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: passwd is a plain C struct of integers and pointers; all zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Look a group up by name or number; returns its gid.
pub fn lookup_group(text: &str) -> Result<Option<u32>, Error> {
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(Some(gid));
    }
    let name = CString::new(text).map_err(|_| Error::Nul {
        what: Entry::Group,
        text: text.to_string(),
    })?;
    // SAFETY: group is a plain C struct; all zero is a valid value.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    let mut buf = buffer();
    // SAFETY: grp, buf and result are valid for the call; buf's length is passed.
    let ret = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            &mut result,
        )
    };
    if ret != 0 {
        return Err(Error::Lookup {
            what: Entry::Group,
            text: text.to_string(),
            errno: ret,
        });
    }
    Ok((!result.is_null()).then_some(grp.gr_gid))
}

/// Resolve `--chown-socket USER[:GROUP]` (numbers or names; a bare `:GROUP` changes the group
/// only; a user without a group takes the user's primary group).
pub fn parse_chown(text: &str) -> Result<(Option<u32>, Option<u32>), Error> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u.trim(), Some(g.trim())),
        None => (text.trim(), None),
    };
    let uid_gid = if user.is_empty() {
        None
    } else {
        match lookup_user(user).map_err(within("--chown-socket", text))? {
            Some(u) => Some((u.uid, u.gid)),
            // A number with no entry is still a uid.
            None => match user.parse::<u32>() {
                Ok(uid) => Some((uid, u32::MAX)),
                Err(_) => {
                    return Err(within("--chown-socket", text)(Error::Unknown {
                        what: Entry::User,
                        name: user.to_string(),
                    }))
                }
            },
        }
    };
    let gid = match group {
        Some("") | None => uid_gid.map(|(_, g)| g).filter(|&g| g != u32::MAX),
        Some(g) => Some(
            lookup_group(g)
                .map_err(within("--chown-socket", text))?
                .ok_or_else(|| {
                    within("--chown-socket", text)(Error::Unknown {
                        what: Entry::Group,
                        name: g.to_string(),
                    })
                })?,
        ),
    };
    let uid = uid_gid.map(|(u, _)| u);
    if uid.is_none() && gid.is_none() {
        return Err(Error::ChownEmpty {
            text: text.to_string(),
        });
    }
    Ok((uid, gid))
}

/// Set the process umask, returning the previous one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Give a just-created Unix socket file its mode and owner.
pub fn apply(path: &Path, own: &SocketOwnership) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = own.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    if own.uid.is_some() || own.gid.is_some() {
        std::os::unix::fs::lchown(path, own.uid, own.gid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("--chmod-socket", "", Some(0o666)), Ok(0o666));
        assert_eq!(parse_mode("--chmod-socket", "true", Some(0o666)), Ok(0o666));
        assert_eq!(parse_mode("--chmod-socket", "660", Some(0o666)), Ok(0o660));
        assert_eq!(parse_mode("--umask", "022", None), Ok(0o022));
        assert_eq!(parse_mode("--umask", "0o7", None), Ok(0o7));
        for bad in ["", "8", "66a", "77777", "-1", "true"] {
            assert!(parse_mode("--umask", bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_and_groups() {
        let root = lookup_user("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup_user("0").unwrap().unwrap().name, "root");
        assert_eq!(lookup_user("no-such-user-uwsgid").unwrap(), None);
        assert_eq!(lookup_group("root").unwrap(), Some(0));
        assert_eq!(lookup_group("4242").unwrap(), Some(4242));
        assert_eq!(parse_chown("root"), Ok((Some(0), Some(0))));
        assert_eq!(parse_chown(":0"), Ok((None, Some(0))));
        assert_eq!(parse_chown("0:4242"), Ok((Some(0), Some(4242))));
        assert!(parse_chown("no-such-user-uwsgid")
            .unwrap_err()
            .to_string()
            .contains("no user"));
        assert!(parse_chown("root:no-such-group-uwsgid")
            .unwrap_err()
            .to_string()
            .contains("no group"));
        assert!(parse_chown(":").is_err());
    }
}

/// Who the instance runs as after startup (`--uid`, `--gid`): resolved while the options are
/// checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user to become (`None`: `--gid` alone, the user stays).
    pub uid: Option<u32>,
    pub gid: u32,
    /// Supplementary groups: the user's from the group database, else just `gid`.
    pub groups: Vec<u32>,
    /// As given, for messages (`www-data`, `33:33`).
    pub shown: String,
    /// `--master-as-root`: only the workers drop.
    pub master_as_root: bool,
}

fn grouplist(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(name) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let want = n;
        // SAFETY: groups has room for `n` gids; getgrouplist writes at most that many and sets
        // `n` to the count (or the needed count, returning -1).
        let ret = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if ret >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        if n <= want || n > 65536 {
            return vec![gid];
        }
    }
}

/// Resolve `--uid`/`--gid` (names or numbers). A user's primary group is the default group and
/// its group memberships the supplementary groups. Refuses what cannot be applied: an unknown
/// user or group, or a process that is neither root nor already that user and group.
pub fn resolve_identity(
    uid: Option<&str>,
    gid: Option<&str>,
    master_as_root: bool,
) -> Result<Option<Identity>, Error> {
    if uid.is_none() && gid.is_none() {
        if master_as_root {
            return Err(Error::MasterAsRootAlone);
        }
        return Ok(None);
    }
    let user = match uid {
        Some(u) => Some(
            lookup_user(u)
                .map_err(within("--uid", u))?
                .or_else(|| {
                    // A bare number without a user entry is still a uid (as in containers).
                    u.parse::<u32>().ok().map(|n| User {
                        name: String::new(),
                        uid: n,
                        gid: u32::MAX,
                        home: String::new(),
                    })
                })
                .ok_or_else(|| within("--uid", u)(Error::NoSuch(Entry::User)))?,
        ),
        None => None,
    };
    let gid_value = match gid {
        Some(g) => lookup_group(g)
            .map_err(within("--gid", g))?
            .ok_or_else(|| within("--gid", g)(Error::NoSuch(Entry::Group)))?,
        None => match &user {
            Some(u) if u.gid != u32::MAX => u.gid,
            Some(u) => {
                return Err(Error::UidWithoutGroup {
                    uid: uid.unwrap_or_default().to_string(),
                    number: u.uid,
                })
            }
            None => unreachable!("uid or gid is given"),
        },
    };
    let groups = match &user {
        Some(u) if !u.name.is_empty() => {
            let mut g = grouplist(&u.name, gid_value);
            if !g.contains(&gid_value) {
                g.insert(0, gid_value);
            }
            g
        }
        _ => vec![gid_value],
    };
    let shown = match (uid, gid) {
        (Some(u), Some(g)) => format!("{u}:{g}"),
        (Some(u), None) => u.to_string(),
        (None, Some(g)) => format!(":{g}"),
        (None, None) => unreachable!(),
    };
    let id = Identity {
        uid: user.map(|u| u.uid),
        gid: gid_value,
        groups,
        shown,
        master_as_root,
    };
    // SAFETY: geteuid/getegid have no memory effects.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let already = id.uid.is_none_or(|u| u == euid) && id.gid == egid;
    if euid != 0 && !already {
        return Err(Error::NotPermitted {
            shown: id.shown,
            euid,
            egid,
            uid: id.uid.unwrap_or(euid),
            gid: id.gid,
        });
    }
    if id.uid == Some(0) {
        return Err(Error::Root { shown: id.shown });
    }
    Ok(Some(id))
}

/// Become `id` for good: supplementary groups, group, then user (all of real, effective and
/// saved ids), checked afterwards. The process stays dumpable, so its owner (the new user) can
/// still read its `/proc/PID/fd` (how uwsgictl ties a FIFO to its master).
pub fn become_identity(id: &Identity) -> Result<(), Error> {
    // SAFETY: getuid/getgid have no memory effects.
    let (uid_now, gid_now) = unsafe { (libc::getuid(), libc::getgid()) };
    if id.uid.is_none_or(|u| u == uid_now) && id.gid == gid_now && uid_now != 0 {
        return Ok(()); // already dropped (a re-executed master)
    }
    let gids: Vec<libc::gid_t> = id.groups.clone();
    // SAFETY: setgroups reads `gids.len()` gids from a live vector; the id calls take integers.
    unsafe {
        if libc::setgroups(gids.len(), gids.as_ptr()) != 0 {
            return Err(Error::Drop {
                option: "--gid".into(),
                call: "setgroups",
                errno: last_errno(),
            });
        }
        if libc::setresgid(id.gid, id.gid, id.gid) != 0 {
            return Err(Error::Drop {
                option: format!("--gid {}", id.gid),
                call: "setresgid",
                errno: last_errno(),
            });
        }
        if let Some(uid) = id.uid {
            if libc::setresuid(uid, uid, uid) != 0 {
                return Err(Error::Drop {
                    option: format!("--uid {uid}"),
                    call: "setresuid",
                    errno: last_errno(),
                });
            }
            // Root must be gone for good.
            if uid != 0 && (libc::setuid(0) == 0 || libc::geteuid() == 0) {
                return Err(Error::Regained { uid });
            }
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 1 as libc::c_ulong, 0, 0, 0);
    }
    Ok(())
}

/// In a freshly forked worker or zygote: become `--uid`/`--gid`, or exit at once (a worker
/// never runs as root when `--uid` was given).
pub fn drop_in_child(id: Option<&Identity>) {
    let Some(id) = id else {
        return;
    };
    if let Err(e) = become_identity(id) {
        crate::log!("cannot drop privileges in a worker: {e}; exiting");
        // SAFETY: leave the child at once, without the master's destructors.
        unsafe { libc::_exit(1) }
    }
}

/// In the master, once what needs root exists: become `--uid`/`--gid` (unless
/// `--master-as-root`), logging it once.
pub fn drop_master(id: Option<&Identity>) -> Result<(), Error> {
    let Some(id) = id else {
        return Ok(());
    };
    if id.master_as_root {
        crate::log!(
            "--master-as-root: the master keeps root; workers run as {}",
            id.shown
        );
        return Ok(());
    }
    become_identity(id)?;
    crate::log!(
        "dropped privileges: running as uid {} gid {} (groups {:?})",
        // SAFETY: getuid has no memory effects.
        unsafe { libc::getuid() },
        id.gid,
        id.groups
    );
    Ok(())
}
