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
pub fn parse_mode(option: &str, text: &str, bare: Option<u32>) -> Result<u32, String> {
    let t = text.trim();
    if let Some(b) = bare {
        if t.is_empty() || t.eq_ignore_ascii_case("true") {
            return Ok(b);
        }
    }
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!(
            "{option} {text:?}: not an octal mode; write it like 660 or 0600"
        ));
    }
    u32::from_str_radix(digits, 8).map_err(|e| format!("{option} {text:?}: {e}"))
}

fn buffer() -> Vec<u8> {
    vec![0u8; 16 * 1024]
}

/// Look a user up by name or number.
pub fn lookup_user(text: &str) -> Result<Option<User>, String> {
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
        let name = CString::new(text).map_err(|_| format!("user {text:?}: contains NUL"))?;
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
        return Err(format!(
            "looking up user {text:?}: {}",
            std::io::Error::from_raw_os_error(ret)
        ));
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
pub fn lookup_group(text: &str) -> Result<Option<u32>, String> {
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(Some(gid));
    }
    let name = CString::new(text).map_err(|_| format!("group {text:?}: contains NUL"))?;
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
        return Err(format!(
            "looking up group {text:?}: {}",
            std::io::Error::from_raw_os_error(ret)
        ));
    }
    Ok((!result.is_null()).then_some(grp.gr_gid))
}

/// Resolve `--chown-socket USER[:GROUP]` (numbers or names; a bare `:GROUP` changes the group
/// only; a user without a group takes the user's primary group).
pub fn parse_chown(text: &str) -> Result<(Option<u32>, Option<u32>), String> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u.trim(), Some(g.trim())),
        None => (text.trim(), None),
    };
    let uid_gid = if user.is_empty() {
        None
    } else {
        let u = lookup_user(user)
            .map_err(|e| format!("--chown-socket {text}: {e}"))?
            .ok_or_else(|| {
                if user.parse::<u32>().is_ok() {
                    // A number with no entry is still a uid.
                    String::new()
                } else {
                    format!(
                        "--chown-socket {text}: no user {user:?} on this system; create it or \
                         give a uid"
                    )
                }
            });
        match u {
            Ok(u) => Some((u.uid, u.gid)),
            Err(e) if e.is_empty() => Some((user.parse::<u32>().unwrap_or(0), u32::MAX)),
            Err(e) => return Err(e),
        }
    };
    let gid = match group {
        Some("") | None => uid_gid.map(|(_, g)| g).filter(|&g| g != u32::MAX),
        Some(g) => Some(
            lookup_group(g)
                .map_err(|e| format!("--chown-socket {text}: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "--chown-socket {text}: no group {g:?} on this system; create it or give \
                         a gid"
                    )
                })?,
        ),
    };
    let uid = uid_gid.map(|(u, _)| u);
    if uid.is_none() && gid.is_none() {
        return Err(format!(
            "--chown-socket {text:?}: give USER, USER:GROUP or :GROUP"
        ));
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
            .contains("no user"));
        assert!(parse_chown("root:no-such-group-uwsgid")
            .unwrap_err()
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
) -> Result<Option<Identity>, String> {
    if uid.is_none() && gid.is_none() {
        if master_as_root {
            return Err(
                "--master-as-root without --uid or --gid: nothing to drop; give \
                        --uid USER (and --gid GROUP)"
                    .into(),
            );
        }
        return Ok(None);
    }
    let user = match uid {
        Some(u) => Some(
            lookup_user(u)
                .map_err(|e| format!("--uid {u}: {e}"))?
                .or_else(|| {
                    // A bare number without a user entry is still a uid (as in containers).
                    u.parse::<u32>().ok().map(|n| User {
                        name: String::new(),
                        uid: n,
                        gid: u32::MAX,
                        home: String::new(),
                    })
                })
                .ok_or_else(|| {
                    format!("--uid {u}: no such user on this system; create it or give a uid")
                })?,
        ),
        None => None,
    };
    let gid_value = match gid {
        Some(g) => lookup_group(g)
            .map_err(|e| format!("--gid {g}: {e}"))?
            .ok_or_else(|| {
                format!("--gid {g}: no such group on this system; create it or give a gid")
            })?,
        None => match &user {
            Some(u) if u.gid != u32::MAX => u.gid,
            Some(u) => {
                return Err(format!(
                    "--uid {}: uid {} has no user entry, so no group: give --gid too",
                    uid.unwrap_or_default(),
                    u.uid
                ))
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
        return Err(format!(
            "--uid/--gid {}: uwsgid runs as uid {euid} gid {egid} and cannot change to uid {} \
             gid {}; start it as root (it binds, then drops), or leave --uid/--gid out",
            id.shown,
            id.uid
                .map(|u| u.to_string())
                .unwrap_or_else(|| euid.to_string()),
            id.gid
        ));
    }
    if id.uid == Some(0) {
        return Err(format!(
            "--uid {}: that is root; give an unprivileged user",
            id.shown
        ));
    }
    Ok(Some(id))
}

/// Become `id` for good: supplementary groups, group, then user (all of real, effective and
/// saved ids), checked afterwards. The process stays dumpable, so its owner (the new user) can
/// still read its `/proc/PID/fd` (how uwsgictl ties a FIFO to its master).
pub fn become_identity(id: &Identity) -> Result<(), String> {
    // SAFETY: getuid/getgid have no memory effects.
    let (uid_now, gid_now) = unsafe { (libc::getuid(), libc::getgid()) };
    if id.uid.is_none_or(|u| u == uid_now) && id.gid == gid_now && uid_now != 0 {
        return Ok(()); // already dropped (a re-executed master)
    }
    let gids: Vec<libc::gid_t> = id.groups.clone();
    // SAFETY: setgroups reads `gids.len()` gids from a live vector; the id calls take integers.
    unsafe {
        if libc::setgroups(gids.len(), gids.as_ptr()) != 0 {
            return Err(format!(
                "--gid: setgroups: {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::setresgid(id.gid, id.gid, id.gid) != 0 {
            return Err(format!(
                "--gid {}: setresgid: {}",
                id.gid,
                std::io::Error::last_os_error()
            ));
        }
        if let Some(uid) = id.uid {
            if libc::setresuid(uid, uid, uid) != 0 {
                return Err(format!(
                    "--uid {uid}: setresuid: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // Root must be gone for good.
            if uid != 0 && (libc::setuid(0) == 0 || libc::geteuid() == 0) {
                return Err(format!(
                    "--uid {uid}: root could be regained after the drop"
                ));
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
pub fn drop_master(id: Option<&Identity>) -> Result<(), String> {
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
