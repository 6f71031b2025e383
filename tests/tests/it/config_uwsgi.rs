//! uWSGI's configuration language, checked against real uWSGI 2.0: the same file is read by
//! `/usr/bin/uwsgi --ini FILE --get NOTHING` (it prints every `print =` line while it parses,
//! then exits) and by `uwsgid --check-config --ini FILE` (which prints them the same way), and
//! the printed lines must be equal. Also: include and section selection, repeated keys,
//! precedence of the command line and `UWSGI_*` variables, `@(exec://...)` refused.

use std::path::Path;
use std::process::{Command, Stdio};

use uwsgi_tests::*;

/// Lines starting with "P:" that a run printed (stdout and stderr).
fn printed(out: &std::process::Output) -> Vec<String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter(|l| l.starts_with("P:"))
        .map(str::to_string)
        .collect()
}

fn uwsgid(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(bin("uwsgid"));
    c.arg("--check-config")
        .args(args)
        .current_dir(&dir.path)
        .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run uwsgid")
}

fn uwsgi(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("/usr/bin/uwsgi");
    c.args(args)
        .args(["--get", "no-such-option-here"])
        .current_dir(&dir.path)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run uwsgi")
}

/// Both read `args` in `dir`; their printed lines must be equal (and not empty).
fn same_as_uwsgi(dir: &TestDir, args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let theirs = printed(&uwsgi(dir, args, env));
    let ours_out = uwsgid(dir, args, env);
    let ours = printed(&ours_out);
    assert!(!theirs.is_empty(), "uWSGI printed nothing for {args:?}");
    assert_eq!(
        ours,
        theirs,
        "uwsgid and uWSGI 2.0 resolve differently; uwsgid's stderr: {}",
        String::from_utf8_lossy(&ours_out.stderr)
    );
    ours
}

const BASE: &str = "[uwsgi]\nhttp-socket = 127.0.0.1:0\n";

#[test]
fn magic_variables_resolve_as_in_uwsgi() {
    if !uwsgi_available() {
        return;
    }
    let dir = TestDir::new("cfg-magic");
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    // %V (the version) and %t/%T (the clock) differ by nature; every other letter is compared.
    let letters = "vhoOpPsSdDeEnNcCxX0123kuUgG";
    let mut text = String::from(BASE);
    for c in letters.chars() {
        text.push_str(&format!("print = P:{c}=[%{c}]\n"));
    }
    text.push_str("print = P:%%=[%%]\n[sec]\nprint = P:sec x=[%x] X=[%X] o=[%o] s=[%s]\n");
    dir.write("conf.d/app.ini", &text);
    let lines = same_as_uwsgi(&dir, &["--ini", "conf.d/app.ini"], &[]);
    assert_eq!(lines.len(), letters.len() + 1);
    same_as_uwsgi(&dir, &["--ini", "conf.d/app.ini:sec"], &[]);
    // Upper case letters name the first file, lower case the file the line is in.
    dir.write(
        "conf.d/inner.ini",
        "[uwsgi]\nprint = P:inner p=[%p] P=[%P] n=[%n] N=[%N] d=[%d] D=[%D]\n",
    );
    dir.write("top.ini", "[uwsgi]\nini = conf.d/inner.ini\n");
    same_as_uwsgi(&dir, &["--ini", "top.ini"], &[]);
}

#[test]
fn time_and_version_variables_are_plausible() {
    let dir = TestDir::new("cfg-time");
    dir.write(
        "t.ini",
        &format!("{BASE}print = P:[%t] [%T] [%V]\nprint = P:[%(x)]\n"),
    );
    let out = uwsgid(&dir, &["--ini", "t.ini"], &[]);
    let line = &printed(&out)[0];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let words: Vec<&str> = line[2..].split(' ').collect();
    let t: u64 = words[0].trim_matches(['[', ']']).parse().unwrap();
    let micro: u64 = words[1].trim_matches(['[', ']']).parse().unwrap();
    assert!(now.abs_diff(t) < 30, "{line}");
    assert!((micro / 1_000_000).abs_diff(t) < 30, "{line}");
    assert_eq!(words[2], format!("[{}]", env!("CARGO_PKG_VERSION")));
}

#[test]
fn placeholders_resolve_as_in_uwsgi() {
    if !uwsgi_available() {
        return;
    }
    let dir = TestDir::new("cfg-ph");
    dir.write("data.txt", "from a file\n");
    dir.write(
        "p.ini",
        &format!(
            "{BASE}set-placeholder = greeting=hello\nset-ph = other=x\nn = 5\nn = 9\n\
             my-key = %(greeting)-%(n)\n\
             print = P:ph [%(greeting)] [%(other)] [%(n)] [%(my-key)] [%(unknown)]\n\
             print = P:math [%(n + 3)] [%(n * 2 - 1)] [%(n / 2)] [%(n ++)] [%(n --)] \
             [%(nope + 1)]\n\
             print = P:env [$(CFG_TEST_VAR)] [$(CFG_UNSET_VAR_X)] [%(from-env)]\n\
             print = P:file [@(data.txt)]\n\
             print = P:mix [%d%(greeting).sock]\n"
        ),
    );
    let env = [("CFG_TEST_VAR", "v1"), ("UWSGI_FROM_ENV", "e1")];
    let lines = same_as_uwsgi(&dir, &["--ini", "p.ini"], &env);
    assert!(lines[0].contains("[hello-5]"), "{lines:?}");
}

#[test]
fn config_logic_resolves_as_in_uwsgi() {
    if !uwsgi_available() {
        return;
    }
    let dir = TestDir::new("cfg-logic");
    dir.write("exists.txt", "x");
    std::fs::create_dir_all(dir.join("adir")).unwrap();
    dir.write(
        "l.ini",
        &format!(
            "{BASE}workers = 3\nmaster = true\n\
             if-env = CFG_SET\nprint = P:if-env [%(_)]\nendif =\n\
             if-env = CFG_SET=yes\nprint = P:if-env-value [%(_)]\nendif =\n\
             if-env = CFG_SET=no\nprint = P:never\nendif =\n\
             if-not-env = CFG_UNSET_X\nprint = P:if-not-env\nendif =\n\
             if-exists = exists.txt\nprint = P:if-exists [%(_)]\nendif =\n\
             if-not-exists = missing.txt\nprint = P:if-not-exists\nendif =\n\
             if-file = exists.txt\nprint = P:if-file [%(_)]\nendif =\n\
             if-dir = adir\nprint = P:if-dir [%(_)]\nendif =\n\
             if-dir = exists.txt\nprint = P:never\nendif =\n\
             if-opt = workers=3\nprint = P:if-opt [%(_)]\nendif =\n\
             if-opt = master\nprint = P:if-opt-bare [%(_)]\nendif =\n\
             if-not-opt = nothing\nprint = P:if-not-opt\nendif =\n\
             for = a b c\nprint = P:for [%(_)]\nendfor =\n\
             for-times = 2\nprint = P:times [%(_)]\nendfor =\n"
        ),
    );
    let lines = same_as_uwsgi(&dir, &["--ini", "l.ini"], &[("CFG_SET", "yes")]);
    assert!(lines.iter().any(|l| l == "P:for [c]"), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("never")), "{lines:?}");
}

#[test]
fn includes_and_sections_resolve_as_in_uwsgi() {
    if !uwsgi_available() {
        return;
    }
    let dir = TestDir::new("cfg-include");
    dir.write(
        "base.ini",
        "[uwsgi]\nprint = P:base [%s]\n[extra]\nprint = P:base-extra [%x]\n",
    );
    dir.write(
        "main.ini",
        &format!(
            "{BASE}print = P:main start\nini = :second\ninclude = base.ini\n\
             ini = base.ini:extra\nprint = P:main end\n[second]\nprint = P:second [%x]\n"
        ),
    );
    same_as_uwsgi(&dir, &["--ini", "main.ini"], &[]);
    // Several --ini, in order, and a section chosen on the command line.
    same_as_uwsgi(
        &dir,
        &["--ini", "base.ini", "--ini", "main.ini:second"],
        &[],
    );
    // A bare FILE.ini argument is a configuration file.
    same_as_uwsgi(&dir, &["base.ini"], &[]);
}

fn ok_line(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "uwsgid --check-config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("configuration OK"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn repeated_keys_and_precedence() {
    let dir = TestDir::new("cfg-dup");
    dir.write(
        "d.ini",
        &format!("{BASE}processes = 2\nprocesses = 3\nhttp-socket = 127.0.0.1:0\n"),
    );
    // A single-valued key keeps its last value; a repeatable one accumulates (two listeners,
    // the same address given twice is refused by validation, so use two).
    let out = uwsgid(&dir, &["--ini", "d.ini"], &[]);
    assert!(
        !out.status.success(),
        "the same address twice must be refused"
    );
    dir.write(
        "d.ini",
        &format!("{BASE}processes = 2\nprocesses = 3\nhttp-socket = 127.0.0.1:1\n"),
    );
    let line = ok_line(&uwsgid(&dir, &["--ini", "d.ini"], &[]));
    assert!(line.contains("2 listener(s), 3 worker(s)"), "{line}");
    // The command line after the file wins; UWSGI_* variables lose to both.
    let line = ok_line(&uwsgid(&dir, &["--ini", "d.ini", "--processes", "5"], &[]));
    assert!(line.contains("5 worker(s)"), "{line}");
    let line = ok_line(&uwsgid(
        &dir,
        &["--ini", "d.ini"],
        &[("UWSGI_PROCESSES", "7")],
    ));
    assert!(line.contains("3 worker(s)"), "{line}");
    dir.write("e.ini", BASE);
    let line = ok_line(&uwsgid(
        &dir,
        &["--ini", "e.ini"],
        &[("UWSGI_PROCESSES", "7")],
    ));
    assert!(line.contains("7 worker(s)"), "{line}");
    // Boolean spellings, bare keys, and a flag's last value.
    dir.write(
        "b.ini",
        &format!(
            "{BASE}vacuum\nmaster = On\ndie-on-term = yes\ndie-on-term = 0\nlazy-apps = true ; c\n"
        ),
    );
    ok_line(&uwsgid(&dir, &["--ini", "b.ini"], &[]));
    dir.write("b.ini", &format!("{BASE}vacuum = false ; comment\n"));
    let out = uwsgid(&dir, &["--ini", "b.ini"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("b.ini line 3"),
        "{err}"
    );
    // A number with what looks like a comment is read as uWSGI reads it (the leading number).
    dir.write("n.ini", &format!("{BASE}processes = 4 ; four\n"));
    let out = uwsgid(&dir, &["--ini", "n.ini"], &[]);
    assert!(ok_line(&out).contains("4 worker(s)"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no inline comments"));
}

#[test]
fn unknown_keys_are_placeholders_unless_strict() {
    let dir = TestDir::new("cfg-strict");
    dir.write(
        "u.ini",
        &format!("{BASE}my-own-key = 4\nprocesses = %(my-own-key)\n"),
    );
    let out = uwsgid(&dir, &["--ini", "u.ini"], &[]);
    assert!(ok_line(&out).contains("4 worker(s)"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("my-own-key = \"4\": placeholder"));
    dir.write("s.ini", &format!("{BASE}strict = true\nmy-own-key = 4\n"));
    let out = uwsgid(&dir, &["--ini", "s.ini"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("my-own-key (s.ini line 4)"),
        "{err}"
    );
    // A uWSGI option uwsgid lacks is never a placeholder.
    dir.write("r.ini", &format!("{BASE}spooler = /tmp/x\n"));
    let out = uwsgid(&dir, &["--ini", "r.ini"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("spooler (r.ini line 3)"),
        "{err}"
    );
}

#[test]
fn json_and_yaml_take_the_same_keys() {
    let dir = TestDir::new("cfg-json");
    dir.write(
        "c.json",
        r#"{"uwsgi": {"http-socket": ["127.0.0.1:1", "127.0.0.1:2"], "processes": 3, "master": true}, "other": {"processes": 6, "http-socket": "127.0.0.1:3"}}"#,
    );
    let line = ok_line(&uwsgid(&dir, &["--json", "c.json"], &[]));
    assert!(line.contains("2 listener(s), 3 worker(s)"), "{line}");
    let line = ok_line(&uwsgid(&dir, &["--json", "c.json:other"], &[]));
    assert!(line.contains("1 listener(s), 6 worker(s)"), "{line}");
    dir.write(
        "c.yaml",
        "uwsgi:\n  http-socket: 127.0.0.1:1\n  processes: 2\n  thunder-lock: true\n",
    );
    let out = uwsgid(&dir, &["--yaml", "c.yaml"], &[]);
    assert!(ok_line(&out).contains("2 worker(s)"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("thunder-lock has no effect"));
}

#[test]
fn at_exec_and_other_schemes_are_refused() {
    let dir = TestDir::new("cfg-exec");
    let marker = dir.join("ran");
    for scheme in ["exec", "http", "sym", "section"] {
        let target = if scheme == "exec" {
            format!("touch {}", marker.display())
        } else {
            "x".into()
        };
        dir.write("x.ini", &format!("{BASE}print = @({scheme}://{target})\n"));
        let out = uwsgid(&dir, &["--ini", "x.ini"], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("{scheme}:// scheme is refused")) && err.contains("x.ini line 3"),
            "{err}"
        );
    }
    assert!(!Path::new(&marker).exists(), "@(exec://) ran a command");
}

#[test]
fn wsgi_names_a_module() {
    let dir = TestDir::new("cfg-wsgi");
    dir.write("w.ini", &format!("{BASE}wsgi = pkg.app\n"));
    let out = uwsgid(&dir, &["--ini", "w.ini"], &[]);
    assert!(ok_line(&out).contains("configuration OK"));
    let out = uwsgid(
        &dir,
        &["--http-socket", "127.0.0.1:0", "--wsgi", "pkg.app"],
        &[],
    );
    ok_line(&out);
}

#[test]
fn uwsgi_options_on_the_command_line_are_judged_like_keys() {
    let dir = TestDir::new("cfg-cmdline");
    let out = uwsgid(
        &dir,
        &["--http-socket", "127.0.0.1:0", "--thunder-lock", "--master"],
        &[],
    );
    ok_line(&out);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("the command line: thunder-lock has no effect"));
    let out = uwsgid(
        &dir,
        &["--http-socket", "127.0.0.1:0", "--socket", ":3031"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("socket (the command line): uwsgid speaks HTTP only"),
        "{err}"
    );
}

#[test]
fn self_includes_loop_bombs_and_special_files_are_refused_quickly() {
    let dir = TestDir::new("cfg-bounds");
    let cases = [
        ("[uwsgi]\nini = :uwsgi\n", "nest deeper than 16"),
        (
            "[uwsgi]\nfor-times = 1000\nfor-times = 1000\nprint = x\nendfor =\nendfor =\n",
            "more than 100000 entries",
        ),
        ("[uwsgi]\nprint = @(/dev/stdin)\n", "not a regular file"),
        (
            "[uwsgi]\nfor-readline = /dev/stdin\nendfor =\n",
            "not a regular file",
        ),
        (
            "[uwsgi]\nif-env = HOME\nprint = x\n",
            "has no matching endif",
        ),
    ];
    for (text, needle) in cases {
        dir.write("b.ini", text);
        let started = std::time::Instant::now();
        let out = uwsgid(&dir, &["--ini", "b.ini"], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        assert!(
            err.contains(needle) && err.contains("b.ini"),
            "{text:?}: {err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{text:?}"
        );
    }
}
