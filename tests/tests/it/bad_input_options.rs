//! Bad-input catalogue, options and files: every uwsgid option with bad values, malformed ini
//! files and hostile pidfiles. Each is refused at startup with exit code 2 and a message that
//! names the option (or file) and the value, before anything is created or bound; what
//! `uwsgid_lifecycle.rs` already covers is not repeated here.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use uwsgi_tests::*;

/// Run uwsgid to completion with `args` in `dir`; (exit code, stderr).
fn run_to_exit(dir: &TestDir, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin("uwsgid"))
        .args(args)
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null())
        .output()
        .expect("run uwsgid");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run with the harmless base options plus `extra`; assert a clean refusal naming `needle`.
fn refused(dir: &TestDir, extra: &[&str], needle: &str) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--http-socket", addr.as_str()];
    // The base options, unless the case gives its own (they may be given once only).
    for (option, value) in [
        ("--safe-pidfile", "x.pid"),
        ("--master-fifo", "x.fifo"),
        ("--stats", "x.sock"),
    ] {
        if !extra.contains(&option) {
            args.extend([option, value]);
        }
    }
    args.extend_from_slice(extra);
    let started = Instant::now();
    let (code, err) = run_to_exit(dir, &args);
    assert_eq!(code, 2, "{extra:?}: exit code; stderr: {err}");
    assert!(err.starts_with("uwsgid: error: "), "{extra:?}: {err}");
    assert!(
        err.contains(needle),
        "{extra:?}: the message does not name {needle:?}: {err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{extra:?}");
    for f in ["x.pid", "x.fifo", "x.sock", "x.pid.lock", "runtime"] {
        assert!(!dir.join(f).exists(), "{extra:?}: {f} was created");
    }
    assert!(!listening(&addr), "{extra:?}: the port is bound");
}

#[test]
fn every_option_with_a_bad_value_is_refused_before_anything_is_bound() {
    let dir = TestDir::new("bad-values");
    dir.write("app.py", "def application(e, s): pass\n");
    dir.write("plain-file", "x");
    dir.write("regular.fifo", "not a fifo");
    std::fs::create_dir(dir.join("a-dir")).unwrap();
    let long_unix = format!("unix:/tmp/{}", "s".repeat(120));
    let long_name = "n".repeat(65);
    let eleven_fifos: Vec<String> = (0..11).map(|i| format!("f{i}.fifo")).collect();
    let mut eleven: Vec<&str> = Vec::new();
    for f in &eleven_fifos {
        eleven.extend(["--master-fifo", f.as_str()]);
    }
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--processes", "513"], "between 1 and 512"),
        (vec!["--processes", "-1"], "'-1' for '--processes <N>'"),
        (vec!["--workers", "0"], "--processes 0"),
        (vec!["--processes"], "--processes <N>"),
        (
            vec!["--worker-reload-mercy", "NaN"],
            "--worker-reload-mercy NaN",
        ),
        (
            vec!["--worker-reload-mercy", "1e309"],
            "--worker-reload-mercy inf",
        ),
        (
            vec!["--worker-reload-mercy", "86401"],
            "between 0 and 86400",
        ),
        (vec!["--worker-reload-mercy", "soon"], "'soon'"),
        (
            vec!["--worker-reload-mercy", "0"],
            "--worker-reload-mercy 0: every graceful reload",
        ),
        (vec!["--listen", "65536"], "--listen 65536"),
        (vec!["--listen", "-1"], "--listen -1"),
        (vec!["--listen", "abc"], "'abc' for '--listen <N>'"),
        (vec!["--http-socket", ""], "empty address"),
        (vec!["--http-socket", "unix:"], "empty Unix socket path"),
        (vec!["--http-socket", &long_unix], "107 bytes"),
        (vec!["--http-socket", "fd://-1"], "not an fd number"),
        (vec!["--http-socket", "127.0.0.1:-5"], "not a port"),
        (vec!["--stats", ""], "--stats: empty address"),
        (vec!["--stats", "127.0.0.1:port"], "not a port"),
        (eleven, "at most 10 slots"),
        (vec!["--master-fifo", "/no/such/dir/f"], "does not exist"),
        (vec!["--master-fifo", "regular.fifo"], "not a FIFO"),
        (vec!["--safe-pidfile", "a-dir"], "not a regular file"),
        (vec!["--check-static", "plain-file"], "not a directory"),
        (vec!["--logto", "a-dir"], "--logto a-dir: is a directory"),
        (vec!["--daemonize", "/no/such/dir/log"], "does not exist"),
        (vec!["--name", ""], "--name"),
        (vec!["--name", "a/b"], "--name"),
        (vec!["--name", &long_name], "at most 64"),
        (vec!["--worker-exec", ""], "empty command"),
        (vec!["--worker-exec", "app | tee log"], "shell operator '|'"),
        (vec!["--worker-exec", "X=1 app"], "variable assignment"),
        (
            vec!["--worker-exec", "app 'open"],
            "unterminated single quote",
        ),
        (vec!["--worker-exec", "app $HOME"], "would be expanded"),
        (
            vec!["--worker-exec", "app", "--worker-ready-timeout", "-1"],
            "--worker-ready-timeout -1",
        ),
        (
            vec!["--worker-exec", "app", "--worker-stop-signal", "BOGUS"],
            "not a signal name",
        ),
        (
            vec!["--worker-exec", "app", "--worker-stop-signal", "999"],
            "not a signal number",
        ),
        (
            vec!["--worker-exec", "app", "--env", "1A=b"],
            "not a variable name",
        ),
        (
            vec!["--worker-exec", "app", "--env", "NOEQUALS"],
            "expected NAME=VALUE",
        ),
        (
            vec!["--worker-exec", "app", "--chdir", "/no/such"],
            "--chdir /no/such",
        ),
        (
            vec!["--worker-exec", "app", "--module", "m"],
            "exclude each other",
        ),
        (
            vec!["--worker-exec", "app", "--chdir2", "/"],
            "exec and Python workers take --chdir",
        ),
        (vec!["--threads", "4"], "applies to Python apps only"),
        (vec!["--callable", "app"], "applies to Python apps only"),
        (
            vec!["--wsgi-file", "missing.py"],
            "missing.py: no such file",
        ),
        (
            vec!["--wsgi-file", "app.py", "--threads", "0"],
            "--threads 0",
        ),
        (
            vec!["--wsgi-file", "app.py", "--threads", "1025"],
            "--threads 1025",
        ),
        (vec!["--ini", "a-dir"], "Is a directory"),
    ];
    for (extra, needle) in &cases {
        refused(&dir, extra, needle);
    }
}

#[test]
fn malformed_ini_files_are_refused_with_the_file_and_line() {
    let dir = TestDir::new("bad-ini-files");
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.join("binary.ini"), &binary).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        ("empty.ini", "", "no [uwsgi] section"),
        ("comments.ini", "; one\n# two\n\n", "no [uwsgi] section"),
        ("other.ini", "[app]\nprocesses = 2\n", "no [uwsgi] section"),
        // A repeated key keeps its last value, as in uWSGI (config_uwsgi tests); a key that is
        // no option is a placeholder unless strict; a uWSGI option uwsgid lacks is refused.
        (
            "strict.ini",
            "[uwsgi]\nstrict = true\nno-such = 1\n",
            "no-such (strict.ini line 3)",
        ),
        (
            "unknown.ini",
            "[uwsgi]\nreload-on-as = 30\n",
            "reload-on-as (unknown.ini line 2)",
        ),
        (
            "bool.ini",
            "[uwsgi]\nmaster = maybe\n",
            "line 2: master = \"maybe\" is not a boolean",
        ),
        ("noname.ini", "[uwsgi]\n = 3\n", "has no option name"),
        (
            "nested.ini",
            "[uwsgi]\nini = x.ini\n",
            "x.ini: No such file",
        ),
        ("bad-value.ini", "[uwsgi]\nlisten = many\n", "'many'"),
    ];
    let mut files: Vec<(String, String)> = cases
        .iter()
        .map(|(name, text, needle)| {
            dir.write(name, text);
            (name.to_string(), needle.to_string())
        })
        .collect();
    files.push((
        "binary.ini".into(),
        "stream did not contain valid UTF-8".into(),
    ));
    for (name, needle) in &files {
        refused(&dir, &["--ini", name], needle);
        refused(&dir, &["--ini", name], name);
    }
}

#[test]
fn a_huge_ini_file_is_read_in_bounded_time() {
    let dir = TestDir::new("huge-ini");
    let mut text = String::from("[uwsgi]\n");
    let line = "; padding padding padding padding padding padding padding padding\n";
    while text.len() < 20 << 20 {
        text.push_str(line);
    }
    text.push_str("processes = 2\n");
    let ini = dir.write("huge.ini", &text);
    let started = Instant::now();
    let out = Command::new(bin("uwsgid"))
        .args(["--ini", ini.to_str().unwrap()])
        .args(["--http-socket", "127.0.0.1:0", "--check-config"])
        .current_dir(&dir.path)
        .output()
        .expect("run uwsgid");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("2 worker(s)"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn hostile_pidfiles_are_refused_and_left_alone() {
    let dir = TestDir::new("hostile-pidfile");
    let passwd = std::fs::metadata("/etc/passwd").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd.pid")).unwrap();
    std::fs::create_dir(dir.join("dir.pid")).unwrap();
    nix::unistd::mkfifo(
        &dir.join("fifo.pid"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    for (name, kind) in [
        ("passwd.pid", "symlink"),
        ("dir.pid", "dir"),
        ("fifo.pid", "fifo"),
    ] {
        for option in ["--safe-pidfile", "--pidfile"] {
            let path = dir.join(name);
            let addr = format!("127.0.0.1:{}", free_port());
            let (code, err) = run_to_exit(
                &dir,
                &["--http-socket", &addr, option, path.to_str().unwrap()],
            );
            assert_eq!(code, 2, "{kind} {option}: {err}");
            assert!(err.contains("not a regular file"), "{kind}: {err}");
            assert!(err.contains(name), "{kind}: {err}");
            assert!(!listening(&addr));
        }
    }
    let after = std::fs::metadata("/etc/passwd").unwrap();
    assert_eq!(
        (passwd.ino(), passwd.len(), passwd.mtime_nsec()),
        (after.ino(), after.len(), after.mtime_nsec())
    );
    assert!(std::fs::symlink_metadata(dir.join("passwd.pid"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(dir.join("dir.pid").is_dir());
}

#[test]
fn a_huge_stale_pidfile_is_replaced_atomically() {
    let dir = TestDir::new("huge-pidfile");
    // A stale, huge pidfile where the harness puts its pidfile: not a pid, never read whole.
    std::fs::write(dir.join("uwsgid.pid"), vec![b'9'; 16 << 20]).unwrap();
    let d = Daemon::start(&dir, &["--processes", "1"]);
    assert_eq!(
        std::fs::read_to_string(&d.pidfile).unwrap(),
        format!("{}\n", d.pid)
    );
    assert_eq!(d.get("/").unwrap().0, 200);
}

/// `--help`, `-h`, `--version` and `-V` are answered by uwsgid (exit 0), never judged as the
/// uWSGI options of the same names that uwsgid does not implement.
#[test]
fn help_and_version_are_answered_not_refused() {
    for (arg, needle) in [
        ("--help", "Usage:"),
        ("-h", "Usage:"),
        ("--version", "uwsgid "),
        ("-V", "uwsgid "),
    ] {
        let out = Command::new(bin("uwsgid"))
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .expect("run uwsgid");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{arg}: {stderr}");
        assert!(stdout.contains(needle), "{arg}: {stdout}");
    }
}
