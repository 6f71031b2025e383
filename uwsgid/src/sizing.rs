//! How many CPUs this instance may use, for the default worker count: the CPU quota of
//! uwsgid's cgroup first, then the CPUs it may run on, never the host's core count alone (a
//! 1-CPU container on a 64-core host is 1 CPU).
//!
//! - Quota: cgroup v2. The cgroup is the `0::PATH` line of `/proc/self/cgroup`; its directory
//!   is PATH under the cgroup2 mount found in `/proc/self/mountinfo` (`/sys/fs/cgroup` when
//!   mountinfo names none). `cpu.max` holds `QUOTA PERIOD` or `max PERIOD` (no quota); the
//!   cgroup and each ancestor up to the mount limit us, so the smallest `QUOTA / PERIOD` wins,
//!   rounded up (1.5 CPUs is 2 workers; a fraction below 1 is 1). cgroup v1 is not read.
//! - Affinity: `sched_getaffinity(0)` (what `taskset`, `cpuset` and `--cpuset-cpus` set).
//! - Fallback: `std::thread::available_parallelism`, then 1.
//!
//! [`cpu_quota`] takes the root of the file system to read, so tests point it at a fixture
//! tree; [`decide`] is pure. [`budget`] reads the real system. [`Budget::source`] says where
//! the number came from, for the log.

use std::path::{Path, PathBuf};

/// A cgroup CPU limit: `quota / period` CPUs, read from `file`.
#[derive(Clone, Debug, PartialEq)]
pub struct Quota {
    pub quota_us: u64,
    pub period_us: u64,
    pub file: PathBuf,
}

impl Quota {
    /// Whole CPUs, rounded up, at least 1.
    pub fn cpus(&self) -> u32 {
        let n = self.quota_us.div_ceil(self.period_us.max(1));
        n.clamp(1, u32::MAX as u64) as u32
    }

    fn ratio(&self) -> f64 {
        self.quota_us as f64 / self.period_us.max(1) as f64
    }
}

/// The number of CPUs and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub cpus: u32,
    pub source: String,
}

/// A malformed `cpu.max` (reported beside the worker count it leaves, never fatal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuMaxError {
    Empty,
    /// The period word is not a number.
    Period(String),
    /// The quota word is neither a number nor `max`.
    Quota(String),
    ZeroPeriod,
    /// In which file (shown from the root of the file system).
    In(PathBuf, Box<CpuMaxError>),
}

impl std::fmt::Display for CpuMaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CpuMaxError::Empty => f.write_str("cpu.max is empty"),
            CpuMaxError::Period(p) => write!(f, "cpu.max period {p:?} is not a number"),
            CpuMaxError::Quota(q) => write!(f, "cpu.max quota {q:?} is neither a number nor max"),
            CpuMaxError::ZeroPeriod => f.write_str("cpu.max period is 0"),
            CpuMaxError::In(file, e) => write!(f, "{}: {e}", file.display()),
        }
    }
}

impl std::error::Error for CpuMaxError {}

/// Parse a `cpu.max` file: `None` for `max` (no quota), an error for anything else malformed.
pub fn parse_cpu_max(text: &str) -> Result<Option<(u64, u64)>, CpuMaxError> {
    let mut words = text.split_whitespace();
    let quota = words.next().ok_or(CpuMaxError::Empty)?;
    let period: u64 = match words.next() {
        Some(p) => p.parse().map_err(|_| CpuMaxError::Period(p.to_string()))?,
        None => 100_000,
    };
    if quota == "max" {
        return Ok(None);
    }
    let quota: u64 = quota
        .parse()
        .map_err(|_| CpuMaxError::Quota(quota.to_string()))?;
    if period == 0 {
        return Err(CpuMaxError::ZeroPeriod);
    }
    Ok(Some((quota, period)))
}

/// The cgroup v2 path of this process (`0::PATH`) in a `/proc/self/cgroup` text.
fn cgroup_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The cgroup2 mount (mount root within the hierarchy, mount point) in a mountinfo text.
fn cgroup2_mount(text: &str) -> Option<(String, String)> {
    text.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let f: Vec<&str> = left.split_whitespace().collect();
        Some((unescape(f.get(3)?), unescape(f.get(4)?)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The tightest cgroup v2 CPU quota on this process, reading the files under `root` (`/` for
/// the real system). `Ok(None)`: no cgroup v2, or no quota anywhere up to the mount.
pub fn cpu_quota(root: &Path) -> Result<Option<Quota>, CpuMaxError> {
    let under = |p: &str| root.join(p.trim_start_matches('/'));
    let Ok(cgroup) = std::fs::read_to_string(under("proc/self/cgroup")) else {
        return Ok(None);
    };
    let Some(path) = cgroup_path(&cgroup) else {
        return Ok(None);
    };
    let (mount_root, mount_point) = std::fs::read_to_string(under("proc/self/mountinfo"))
        .ok()
        .and_then(|m| cgroup2_mount(&m))
        .unwrap_or_else(|| ("/".into(), "/sys/fs/cgroup".into()));
    // The path is relative to our cgroup namespace's root, which is the mount root when the
    // hierarchy was mounted from inside that namespace.
    let rel = path
        .strip_prefix(mount_root.trim_end_matches('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    let top = under(&mount_point);
    let mut dir = top.join(rel);
    let mut best: Option<Quota> = None;
    loop {
        let file = dir.join("cpu.max");
        if let Ok(text) = std::fs::read_to_string(&file) {
            let shown = file
                .strip_prefix(root)
                .map_or(file.clone(), |p| Path::new("/").join(p));
            if let Some((quota_us, period_us)) =
                parse_cpu_max(&text).map_err(|e| CpuMaxError::In(shown.clone(), Box::new(e)))?
            {
                let q = Quota {
                    quota_us,
                    period_us,
                    file: shown,
                };
                if best.as_ref().is_none_or(|b| q.ratio() < b.ratio()) {
                    best = Some(q);
                }
            }
        }
        if dir == top || !dir.pop() || !dir.starts_with(&top) {
            break;
        }
    }
    Ok(best)
}

/// How many CPUs `sched_getaffinity` lets this process run on.
pub fn affinity() -> Option<u32> {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity fills the set we own, of the size we pass.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return None;
    }
    // SAFETY: CPU_COUNT reads the set we own.
    let n = unsafe { libc::CPU_COUNT(&set) };
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// Pure: the budget from a quota, an affinity count and the fallback count. The smaller of
/// quota and affinity wins (a quota of 8 CPUs on 2 allowed CPUs is 2).
pub fn decide(quota: Option<&Quota>, affinity: Option<u32>, fallback: Option<u32>) -> Budget {
    let from_quota = quota.map(|q| {
        (
            q.cpus(),
            format!(
                "the CPU quota of uwsgid's cgroup ({} {} in {})",
                q.quota_us,
                q.period_us,
                q.file.display()
            ),
        )
    });
    let from_affinity = affinity.map(|n| {
        (
            n,
            format!("the CPUs uwsgid may run on (affinity: {n} CPU(s))"),
        )
    });
    let (cpus, source) = match (from_quota, from_affinity) {
        (Some(q), Some(a)) if a.0 < q.0 => a,
        (Some(q), _) => q,
        (None, Some(a)) => a,
        (None, None) => match fallback {
            Some(n) => (n, format!("the host's CPU count ({n})")),
            None => (1, "no CPU count available".to_string()),
        },
    };
    Budget { cpus, source }
}

/// This process's budget on the real system. A malformed `cpu.max` is reported in the source
/// and otherwise ignored.
pub fn budget() -> Budget {
    let fallback = std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok());
    match cpu_quota(Path::new("/")) {
        Ok(q) => decide(q.as_ref(), affinity(), fallback),
        Err(e) => {
            let mut b = decide(None, affinity(), fallback);
            b.source = format!("{} (ignoring {e})", b.source);
            b
        }
    }
}

/// The default worker count without `--processes`: `base` (the documented default), but no
/// more workers than CPUs. Returns the count and what to log about where it came from.
pub fn default_processes(base: u32, budget: &Budget) -> (u32, String) {
    if budget.cpus < base {
        (
            budget.cpus,
            format!(
                "{} worker(s) from {}, fewer than the default {base}",
                budget.cpus, budget.source
            ),
        )
    } else {
        (
            base,
            format!(
                "{base} worker(s), the default without --processes ({} CPU(s) from {})",
                budget.cpus, budget.source
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/cgroup")
            .join(name)
    }

    #[test]
    fn cpu_max_parses_quota_max_and_refuses_garbage() {
        assert_eq!(
            parse_cpu_max("200000 100000\n"),
            Ok(Some((200_000, 100_000)))
        );
        assert_eq!(parse_cpu_max("max 100000\n"), Ok(None));
        assert_eq!(parse_cpu_max("50000"), Ok(Some((50_000, 100_000))));
        assert!(parse_cpu_max("").is_err());
        assert!(parse_cpu_max("lots 100000").is_err());
        assert!(parse_cpu_max("1 0").is_err());
    }

    #[test]
    fn quota_rounds_up_to_whole_cpus_at_least_one() {
        let q = |quota_us, period_us| {
            Quota {
                quota_us,
                period_us,
                file: PathBuf::new(),
            }
            .cpus()
        };
        assert_eq!(q(200_000, 100_000), 2);
        assert_eq!(q(150_000, 100_000), 2);
        assert_eq!(q(50_000, 100_000), 1);
        assert_eq!(q(1, 100_000), 1);
    }

    #[test]
    fn reads_the_quota_of_our_cgroup_from_a_fixture_tree() {
        let q = cpu_quota(&fixture("quota")).unwrap().expect("a quota");
        assert_eq!((q.quota_us, q.period_us, q.cpus()), (150_000, 100_000, 2));
        assert_eq!(
            q.file,
            Path::new("/sys/fs/cgroup/kubepods.slice/pod1/app/cpu.max")
        );
    }

    #[test]
    fn an_ancestor_with_a_tighter_quota_wins_and_max_means_none() {
        // The cgroup says max, its parent 1 CPU, the grandparent 4.
        let q = cpu_quota(&fixture("parent-limit"))
            .unwrap()
            .expect("a quota");
        assert_eq!(q.cpus(), 1);
        assert_eq!(q.file, Path::new("/sys/fs/cgroup/system.slice/cpu.max"));
        assert_eq!(cpu_quota(&fixture("unlimited")).unwrap(), None);
    }

    #[test]
    fn the_mount_point_comes_from_mountinfo() {
        // A hybrid system: cgroup2 at /sys/fs/cgroup/unified.
        let q = cpu_quota(&fixture("hybrid")).unwrap().expect("a quota");
        assert_eq!(q.cpus(), 3);
        assert_eq!(
            q.file,
            Path::new("/sys/fs/cgroup/unified/user.slice/cpu.max")
        );
    }

    #[test]
    fn no_cgroup_v2_or_no_files_is_no_quota_and_garbage_is_an_error() {
        assert_eq!(cpu_quota(&fixture("v1-only")).unwrap(), None);
        assert_eq!(cpu_quota(&fixture("does-not-exist")).unwrap(), None);
        let e = cpu_quota(&fixture("garbage")).unwrap_err().to_string();
        assert!(
            e.contains("/sys/fs/cgroup/cpu.max") && e.contains("quota"),
            "{e}"
        );
    }

    #[test]
    fn the_smaller_of_quota_and_affinity_wins_and_says_so() {
        let q = Quota {
            quota_us: 400_000,
            period_us: 100_000,
            file: "/sys/fs/cgroup/cpu.max".into(),
        };
        let b = decide(Some(&q), Some(16), Some(64));
        assert_eq!(b.cpus, 4);
        assert!(b.source.contains("CPU quota") && b.source.contains("400000 100000"));
        let b = decide(Some(&q), Some(2), Some(64));
        assert_eq!(b.cpus, 2);
        assert!(b.source.contains("affinity"), "{}", b.source);
        let b = decide(None, None, Some(64));
        assert_eq!(b.cpus, 64);
        assert!(b.source.contains("host"));
        assert_eq!(decide(None, None, None).cpus, 1);
    }

    #[test]
    fn the_default_count_is_capped_by_the_budget() {
        let b = |cpus| Budget {
            cpus,
            source: "the test".into(),
        };
        let (n, why) = default_processes(4, &b(1));
        assert_eq!(n, 1);
        assert!(
            why.contains("from the test") && why.contains("default 4"),
            "{why}"
        );
        let (n, why) = default_processes(4, &b(64));
        assert_eq!(n, 4);
        assert!(why.contains("64 CPU(s)"), "{why}");
    }

    #[test]
    fn affinity_counts_at_least_one_cpu() {
        assert!(affinity().unwrap() >= 1);
        assert!(budget().cpus >= 1);
    }
}
