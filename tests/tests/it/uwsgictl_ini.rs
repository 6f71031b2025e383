//! uwsgictl reads an instance's ini file with uwsgid's configuration language
//! (`common::config`): the pidfile, FIFO and stats socket a real uwsgid resolved through
//! `%(...)` placeholders, `set-placeholder`, magic variables, `if-env`, `for` and `ini = :section`
//! are the ones uwsgictl finds, so `uwsgictl --ini FILE` reaches the instance.

use uwsgi_tests::ctl::ctl;
use uwsgi_tests::*;

const APP_INI: &str = "\
[uwsgi]
ini = :common
set-placeholder = base=%n
if-env = UWSGICTL_INI_TEST
safe-pidfile = %(run)uwsgid.pid
endif =
if-not-env = UWSGICTL_INI_TEST
safe-pidfile = /nonexistent/never.pid
endif =
for = %(base)
master-fifo = %(run)%(_).fifo
endfor =
stats = %(run)stats.sock
demo-routes = true

[common]
run = %d
http-socket = 127.0.0.1:0
processes = 2
";

#[test]
fn uwsgictl_finds_what_uwsgid_resolved_in_the_same_ini() {
    let dir = TestDir::new("ctl-ini-lang");
    dir.write("app.ini", APP_INI);
    let mut d = Daemon::spawn_command(
        &dir,
        &["--ini", "app.ini"],
        &bin("uwsgid"),
        false,
        &mut |cmd| {
            cmd.env("UWSGICTL_INI_TEST", "1");
        },
    );
    d.wait_running();
    let fifo = dir.join("app.fifo");
    wait_for(
        "the FIFO %(run)%(base).fifo",
        std::time::Duration::from_secs(10),
        || fifo.exists().then_some(()),
    );
    let pid = d.pid.to_string();
    ctl(["--ini", "app.ini", "status"])
        .current_dir(&dir.path)
        .env("UWSGICTL_INI_TEST", "1")
        .run()
        .code(0)
        .stdout_has(&pid);
    ctl(["--ini", "app.ini", "stats"])
        .current_dir(&dir.path)
        .env("UWSGICTL_INI_TEST", "1")
        .env("COLUMNS", "120")
        .run()
        .code(0)
        .stdout_has(&pid);
    // A reload through the FIFO the ini names, waited for on its stats socket.
    ctl([
        "--ini",
        "app.ini",
        "reload",
        "--workers",
        "--via",
        "fifo",
        "--wait",
    ])
    .current_dir(&dir.path)
    .env("UWSGICTL_INI_TEST", "1")
    .run()
    .code(0);
    assert_eq!(d.generation(), 2);
    // Without the variable the ini names another pidfile: uwsgictl follows the same logic.
    ctl(["--ini", "app.ini", "status"])
        .current_dir(&dir.path)
        .run()
        .code(3)
        .stdout_has("pidfile /nonexistent/never.pid: no such file");
}
