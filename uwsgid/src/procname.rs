//! Process titles and CPU affinity: the thin unsafe wrappers behind [`crate::options`].
//!
//! A title is set twice: `prctl(PR_SET_NAME)` (the 15 bytes of `/proc/PID/comm`, what `top`
//! shows) and an overwrite of the process's own argument area (`/proc/PID/cmdline`, what `ps`
//! shows). The area is found from `/proc/self/stat` (`arg_start`, `arg_end`); the title is cut
//! to its length (the environment area after it is left alone, so nothing that reads `environ`
//! breaks). The title is followed by a NUL and the rest of the area is filled with spaces, the
//! last byte too: the kernel then reads the area as a title up to the first NUL, so
//! `/proc/PID/cmdline` is exactly `TITLE\0`. The master's own argument strings are read once at
//! startup ([`crate::main_entry`]) and kept, so a re-exec still passes the real options.

use std::io;

/// The argument area `[start, end)` of this process, from `/proc/self/stat`.
fn arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 48 (arg_start) and 49 (arg_end) of proc(5); `rest` starts at field 3.
    let start: usize = fields.get(45)?.parse().ok()?;
    let end: usize = fields.get(46)?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

/// Set this process's title (cmdline and comm).
pub fn set_title(title: &str) {
    crate::sys::set_process_name(title);
    let Some((start, end)) = arg_area() else {
        return;
    };
    let len = end - start;
    let title: Vec<u8> = title.bytes().filter(|&b| b != 0).take(len - 1).collect();
    // SAFETY: [start, end) is this process's argument area as the kernel reports it: mapped,
    // writable memory of our stack that nothing in uwsgid reads after startup (the arguments
    // were copied into owned Strings before); we write within its bounds only.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area[..title.len()].copy_from_slice(&title);
        area[title.len()] = 0;
        for b in &mut area[title.len() + 1..] {
            *b = b' ';
        }
    }
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pin `pid` (0: this process) to `cpus`.
pub fn set_affinity(pid: i32, cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within CPU_SETSIZE
    // (the CPUs come from sched_getaffinity); sched_setaffinity only reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
