//! The harness itself: the binaries it runs are fresh (built from the sources as they are now,
//! not left over from an earlier build), and its poll helper keeps to its deadline.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use uwsgi_tests::*;

/// The newest mtime of any file below `dir` (bounded depth: source trees are shallow).
fn newest_below(dir: &Path, depth: u32) -> (SystemTime, String) {
    let mut newest = (SystemTime::UNIX_EPOCH, String::new());
    for e in std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
    {
        let meta = e.metadata().unwrap();
        let found = if meta.is_dir() && depth > 0 {
            newest_below(&e.path(), depth - 1)
        } else if meta.is_file() {
            (meta.modified().unwrap(), e.path().display().to_string())
        } else {
            continue;
        };
        if found.0 > newest.0 {
            newest = found;
        }
    }
    newest
}

#[test]
fn the_binaries_under_test_are_not_older_than_their_sources() {
    let root = workspace_root();
    for (name, sources) in [
        ("uwsgid", &["uwsgid/src", "uwsgid/python", "common/src"][..]),
        ("uwsgictl", &["uwsgictl/src", "common/src"][..]),
    ] {
        let exe = bin(name);
        let built = std::fs::metadata(&exe).unwrap().modified().unwrap();
        for dir in sources {
            let (newest, file) = newest_below(&root.join(dir), 4);
            assert!(
                built >= newest,
                "{} is older than {file}: the harness runs a stale binary (it builds them on \
                 first use unless UWSGI_TESTS_NO_BUILD is set; see tests/src/bins.rs)",
                exe.display()
            );
        }
    }
}

#[test]
fn poll_keeps_to_its_deadline_and_wait_for_names_what_it_waited_for() {
    let t = Instant::now();
    let mut calls = 0u32;
    let r: Option<()> = poll(Duration::from_millis(100), || {
        calls += 1;
        None
    });
    let took = t.elapsed();
    assert!(r.is_none());
    assert!(
        took >= Duration::from_millis(100),
        "gave up early: {took:?}"
    );
    assert!(calls >= 2, "polled only {calls} time(s)");
    let mut n = 0;
    assert_eq!(
        poll(Duration::from_secs(5), || {
            n += 1;
            (n == 3).then_some(n)
        }),
        Some(3)
    );
    let panicked = std::panic::catch_unwind(|| {
        wait_for("the impossible", Duration::from_millis(10), || None::<()>)
    })
    .unwrap_err();
    let msg = panicked
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(msg.contains("the impossible"), "{msg}");
}

#[test]
fn a_missing_dependency_is_a_visible_skip_or_a_ci_failure() {
    assert!(require(true, "something present", "nothing to do"));
    assert!(have_program("sh"));
    assert!(!have_program("surely-no-such-program-here"));
    let failure = when_missing("a thing that is not there", "install it", true).unwrap_err();
    assert!(failure.contains("CI=true"), "{failure}");
    assert!(failure.contains("a thing that is not there"), "{failure}");
    let skip = when_missing("a thing that is not there", "install it", false).unwrap();
    assert!(
        skip.starts_with("SKIPPED: harness::a_missing_dependency"),
        "the skip line names the test: {skip}"
    );
    assert!(skip.contains("install it"), "{skip}");
}
