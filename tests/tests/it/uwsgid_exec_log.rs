//! Exec workers' stdout and stderr reach the instance log as it is now: with `--logto`, they
//! write to a pipe the master copies into the log, so a reopen (FIFO `l`) after an external
//! rotation, a rotation by the master (FIFO `L`) and a re-exec reload all leave their lines in
//! the current file, for forked (preload) and exec'd (`--lazy-apps`) Python workers alike.

use crate::exec_support as uwsgid_exec_support;

use std::path::Path;
use std::time::Duration;

use uwsgi_tests::*;
use uwsgid_exec_support::*;

/// `/say?WORD` prints `said WORD` on stdout and `warned WORD` on stderr.
const CHATTY_APP: &str = r#"
import sys
def application(environ, start_response):
    word = environ.get("QUERY_STRING", "")
    print("said %s" % word, flush=True)
    sys.stderr.write("warned %s\n" % word)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [word.encode()]
"#;

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Ask a worker to say `word`, then wait until both its lines are in `log`.
fn say(d: &Daemon, log: &Path, word: &str) {
    assert_eq!(d.get(&format!("/say?{word}")).unwrap(), (200, word.into()));
    wait_for(
        &format!("the worker's lines about {word} in {}", log.display()),
        Duration::from_secs(10),
        || {
            let text = read(log);
            (text.contains(&format!("said {word}\n")) && text.contains(&format!("warned {word}\n")))
                .then_some(())
        },
    );
}

fn follows_the_log(tag: &str, extra: &[&str]) {
    let dir = TestDir::new(tag);
    dir.write("app.py", CHATTY_APP);
    let log = dir.join("app.log");
    let py = python();
    let mut args = vec![
        "--wsgi-file",
        "app.py",
        "--processes",
        "2",
        "--python",
        &py,
        "--logto",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let d = Daemon::start(&dir, &args);
    say(&d, &log, "first");

    // logrotate's way: rename, then ask for a reopen.
    let moved = dir.join("app.log.1");
    std::fs::rename(&log, &moved).unwrap();
    d.fifo_write(b"l");
    wait_for("the reopened log", Duration::from_secs(10), || {
        read(&log).contains("log reopened").then_some(())
    });
    say(&d, &log, "after-reopen");
    assert!(
        !read(&moved).contains("after-reopen"),
        "an exec worker still writes to the renamed file"
    );

    // uwsgid's own rotation.
    d.fifo_write(b"L");
    let rotated = wait_for("the rotation", Duration::from_secs(10), || {
        read(&log)
            .lines()
            .find_map(|l| l.split("log rotated to ").nth(1).map(str::to_string))
    });
    say(&d, &log, "after-rotate");
    assert!(!read(Path::new(&rotated)).contains("after-rotate"));

    // Across a re-exec the master keeps copying, for new and old workers.
    let g = d.generation();
    d.signal(libc::SIGHUP);
    d.wait_generation(g + 1);
    say(&d, &log, "after-reload");
}

#[test]
fn forked_python_workers_follow_a_reopened_or_rotated_log() {
    follows_the_log("exec-log-preload", &[]);
}

#[test]
fn exec_python_workers_follow_a_reopened_or_rotated_log() {
    follows_the_log("exec-log-lazy", &["--lazy-apps"]);
}
