//! Tidy checks over the whole repository, as ordinary tests: every Rust file opens with a `//!`
//! header; `unsafe` appears only in the files named in [`UNSAFE_ALLOWED`] and each block is
//! preceded by a `// SAFETY:` comment; no debugging macro is left in; nothing reads the
//! reading material outside the repository, and every `include_str!`-style path stays inside
//! it; the daemon's errors are typed (no `Result<_, String>` in `uwsgid` or `uwsgid-python`).
//! The checks look at code only: comments, strings and char literals are blanked first.
//!
//! The words the checks look for are built with `concat!` so this file does not trip them.

use std::path::{Path, PathBuf};

use uwsgi_tests::workspace_root;

/// The files allowed to hold `unsafe` code (repository-relative). A new file needing it is
/// added here, in the same commit, with the reason its `SAFETY:` comments give.
const UNSAFE_ALLOWED: &[&str] = &[
    "common/src/discovery.rs",
    "common/src/pidfd.rs",
    "common/src/pidfile.rs",
    "common/src/process.rs",
    "common/src/trust.rs",
    "tests/src/ctl.rs",
    "tests/src/daemon.rs",
    "tests/src/nginx.rs",
    "tests/src/procs.rs",
    "tests/src/uwsgi.rs",
    "tests/tests/it/daemonize.rs",
    "tests/tests/it/exec_runner.rs",
    "tests/tests/it/exec_support.rs",
    "tests/tests/it/health_metrics.rs",
    "tests/tests/it/nginx_deployment.rs",
    "tests/tests/it/pidfile.rs",
    "tests/tests/it/privileges.rs",
    "tests/tests/it/process_group.rs",
    "tests/tests/it/security_ctl.rs",
    "tests/tests/it/security_fifo.rs",
    "tests/tests/it/security_runtime.rs",
    "tests/tests/it/socket_activation.rs",
    "tests/tests/it/socket_ownership.rs",
    "tests/tests/it/stop_cleanup.rs",
    "tests/tests/it/systemd_notify.rs",
    "tests/tests/it/uwsgictl_uwsgid.rs",
    "tests/tests/it/uwsgid_exec_preload.rs",
    "tests/tests/it/uwsgid_exec_protocol.rs",
    "tests/tests/it/uwsgid_lifecycle.rs",
    "tests/tests/it/uwsgid_limits.rs",
    "tests/tests/it/uwsgid_python.rs",
    "tests/tests/it/uwsgid_stats.rs",
    "tests/tests/it/uwsgid_vacuum.rs",
    "uwsgictl/src/term.rs",
    "uwsgid-python/src/main.rs",
    "uwsgid-python/src/server.rs",
    "uwsgid/src/daemonize.rs",
    "uwsgid/src/exec.rs",
    "uwsgid/src/fault.rs",
    "uwsgid/src/fifo.rs",
    "uwsgid/src/listener.rs",
    "uwsgid/src/log.rs",
    "uwsgid/src/master/handoff.rs",
    "uwsgid/src/master/preload.rs",
    "uwsgid/src/master/reexec.rs",
    "uwsgid/src/master/reload.rs",
    "uwsgid/src/master/spawn.rs",
    "uwsgid/src/notify.rs",
    "uwsgid/src/privileges.rs",
    "uwsgid/src/procname.rs",
    "uwsgid/src/reqlog.rs",
    "uwsgid/src/runner.rs",
    "uwsgid/src/scoreboard.rs",
    "uwsgid/src/sd_notify.rs",
    "uwsgid/src/sizing.rs",
    "uwsgid/src/static_map.rs",
    "uwsgid/src/stats_server.rs",
    "uwsgid/src/sys.rs",
    "uwsgid/src/touch.rs",
    "uwsgid/src/worker.rs",
];

const UNSAFE: &str = concat!("un", "safe");
const DBG: &str = concat!("db", "g!");

/// Every file below `dir`, skipping build output, VCS data and the fuzzers' corpora.
fn files(dir: &Path, out: &mut Vec<PathBuf>, depth: u32) {
    assert!(depth < 16, "{} is nested too deep", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "corpus" | "artifacts") {
                files(&e.path(), out, depth + 1);
            }
        } else if kind.is_file() {
            out.push(e.path());
        }
    }
}

fn repo_files() -> (PathBuf, Vec<PathBuf>) {
    let root = workspace_root();
    let mut out = Vec::new();
    files(&root, &mut out, 0);
    (root, out)
}

fn rust_files() -> (PathBuf, Vec<(String, String)>) {
    let (root, all) = repo_files();
    let rs = all
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap().display().to_string();
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {rel}: {e}"));
            (rel, text)
        })
        .collect::<Vec<_>>();
    assert!(rs.len() > 20, "found only {} Rust files", rs.len());
    (root, rs)
}

/// `text` with comments, string literals and char literals replaced by spaces (newlines kept),
/// so a search sees code only.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let rest = |i: usize, k: usize| c.get(i + k).copied();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && rest(i, 1) == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && rest(i, 1) == Some('*') {
            let mut level = 0;
            while i < c.len() {
                if c[i] == '/' && rest(i, 1) == Some('*') {
                    level += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && rest(i, 1) == Some('/') {
                    level -= 1;
                    out.push_str("  ");
                    i += 2;
                    if level == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if (c[i] == 'r' || (c[i] == 'b' && rest(i, 1) == Some('r')))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
            && {
                let mut k = if c[i] == 'b' { 2 } else { 1 };
                while rest(i, k) == Some('#') {
                    k += 1;
                }
                rest(i, k) == Some('"')
            }
        {
            // A raw string: r"..." or r#"..."# (any number of #).
            let mut k = if c[i] == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while rest(i, k) == Some('#') {
                hashes += 1;
                k += 1;
            }
            for _ in 0..=k {
                out.push(' ');
            }
            i += k + 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|h| c.get(i + h) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += hashes + 1;
                    break;
                }
                out.push(blank(c[i]));
                i += 1;
            }
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' && i + 1 < c.len() {
                    out.push(' ');
                    i += 1;
                }
                out.push(blank(c[i]));
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' && (rest(i, 2) == Some('\'') || rest(i, 1) == Some('\\')) {
            // A char literal ('x' or '\n', '\u{..}'); a lifetime ('a) is left alone.
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Byte offsets of `word` as a whole word in `code`.
fn word_at(code: &str, word: &str) -> Vec<usize> {
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = code.as_bytes();
    code.match_indices(word)
        .map(|(at, _)| at)
        .filter(|&at| {
            (at == 0 || !ident(bytes[at - 1]))
                && !matches!(bytes.get(at + word.len()), Some(&b) if ident(b))
        })
        .collect()
}

#[test]
fn tidy_every_rust_file_opens_with_a_module_doc() {
    let (_, rs) = rust_files();
    let bad: Vec<&str> = rs
        .iter()
        .filter(|(_, text)| {
            !text
                .lines()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.starts_with("//!"))
        })
        .map(|(rel, _)| rel.as_str())
        .collect();
    assert!(
        bad.is_empty(),
        "these files do not open with a `//!` comment saying what they are for: {bad:?}"
    );
}

#[test]
fn tidy_unsafe_only_in_the_named_files_and_every_block_says_why_it_is_sound() {
    let (root, rs) = rust_files();
    for f in UNSAFE_ALLOWED {
        assert!(
            root.join(f).exists(),
            "{f} is in UNSAFE_ALLOWED but does not exist: drop it from the list"
        );
    }
    let mut problems = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for (rel, text) in &rs {
        let code = code_only(text);
        let hits = word_at(&code, UNSAFE);
        if hits.is_empty() {
            continue;
        }
        used.insert(rel.as_str());
        if !UNSAFE_ALLOWED.contains(&rel.as_str()) {
            problems.push(format!(
                "{rel}: `{UNSAFE}` outside the allowed files (move it into one, or add the file \
                 to UNSAFE_ALLOWED in tests/tests/it/tidy.rs)"
            ));
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        let code_lines: Vec<&str> = code.lines().collect();
        for at in hits {
            let after = code[at + UNSAFE.len()..].trim_start();
            if !after.starts_with('{') {
                continue; // an unsafe fn or impl: its contract is in its docs
            }
            let line = code[..at].matches('\n').count();
            if !has_safety_comment(&lines, &code_lines, line) {
                problems.push(format!(
                    "{rel}:{}: an `{UNSAFE}` block without a `// SAFETY:` comment before it",
                    line + 1
                ));
            }
        }
    }
    for f in UNSAFE_ALLOWED {
        if !used.contains(f) {
            problems.push(format!(
                "{f} holds no `{UNSAFE}` code any more: drop it from UNSAFE_ALLOWED"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A `SAFETY:` comment on the block's own line, or in the comment lines right above the
/// statement holding it (which may start a few lines higher).
fn has_safety_comment(lines: &[&str], code_lines: &[&str], line: usize) -> bool {
    if lines[line].contains("SAFETY:") {
        return true;
    }
    let mut l = line;
    let mut statement_lines = 0;
    while l > 0 {
        l -= 1;
        let text = lines[l].trim();
        let code = code_lines.get(l).map_or("", |c| c.trim());
        if text.starts_with("//") || text.starts_with("#[") {
            if text.contains("SAFETY:") {
                return true;
            }
            continue;
        }
        if text.is_empty() || code.ends_with(';') || code.ends_with('{') || code.ends_with('}') {
            return false;
        }
        statement_lines += 1;
        if statement_lines > 6 {
            return false;
        }
    }
    false
}

#[test]
fn tidy_no_debugging_macro_left_in() {
    let (_, rs) = rust_files();
    let bad: Vec<String> = rs
        .iter()
        .flat_map(|(rel, text)| {
            code_only(text)
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(DBG))
                .map(|(n, _)| format!("{rel}:{}", n + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(bad.is_empty(), "`{DBG}` left in: {bad:?}");
}

#[test]
fn tidy_nothing_reads_outside_the_repository() {
    let (root, all) = repo_files();
    let outside = [concat!("../", "shared"), concat!("/work/", "shared")];
    let mut bad = Vec::new();
    for path in &all {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // binary files
        };
        let rel = path.strip_prefix(&root).unwrap().display().to_string();
        for needle in outside {
            if text.contains(needle) {
                bad.push(format!(
                    "{rel} names {needle}: copy what it needs into the repo"
                ));
            }
        }
        if path.extension().is_some_and(|e| e == "rs") {
            let code_and_strings = text.as_str();
            for mac in ["include_str!(\"", "include_bytes!(\"", "include!(\""] {
                for (at, _) in code_and_strings.match_indices(mac) {
                    let arg = &code_and_strings[at + mac.len()..];
                    let Some(end) = arg.find('"') else { continue };
                    let target = path.parent().unwrap().join(&arg[..end]);
                    let inside = target
                        .canonicalize()
                        .is_ok_and(|t| t.starts_with(root.canonicalize().unwrap()));
                    if !inside {
                        bad.push(format!(
                            "{rel} includes {} from outside the repository (or a missing file)",
                            &arg[..end]
                        ));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn tidy_code_only_blanks_comments_strings_and_chars() {
    let src = "let a = \"x // y\"; // z\nlet b = r#\"q \"# ; /* c /* d */ e */ let c = '\"';\n";
    let code = code_only(src);
    assert_eq!(code.lines().count(), 2);
    assert!(code.contains("let a ="), "{code}");
    assert!(code.contains("let c ="), "{code}");
    for gone in ["x", "y", "z", "q", "d", "e", "\""] {
        let stripped = code
            .replace("let", "")
            .replace("a =", "")
            .replace("c =", "");
        assert!(!stripped.contains(gone), "{gone:?} survived in {code:?}");
    }
    assert_eq!(word_at("a unsafe_x unsafe {", "unsafe"), vec![11]);
    assert!(word_at(&code_only("// unsafe {\n"), UNSAFE).is_empty());
}

/// Each `Result<…, String>` in `code` (its generic arguments may span lines): the line and the
/// type, whitespace collapsed.
fn string_errors(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for at in word_at(code, "Result") {
        let rest = &code[at + "Result".len()..];
        let Some(args) = rest.strip_prefix('<') else {
            continue;
        };
        // The generic arguments up to the matching '>' (a '->' inside is an arrow).
        let (mut depth, mut end, mut prev) = (1usize, None, ' ');
        for (i, c) in args.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                '>' if prev != '-' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = Some(i);
                break;
            }
            prev = c;
        }
        let Some(end) = end else { continue };
        let inner = &args[..end];
        let (mut depth, mut last, mut prev) = (0i32, 0usize, ' ');
        for (i, c) in inner.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                '>' if prev != '-' => depth -= 1,
                ',' if depth == 0 => last = i + 1,
                _ => {}
            }
            prev = c;
        }
        if last > 0 && inner[last..].trim() == "String" {
            let line = code[..at].matches('\n').count() + 1;
            let shown = format!("Result<{inner}>")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            out.push((line, shown));
        }
    }
    out
}

#[test]
fn tidy_daemon_errors_are_typed_not_strings() {
    let (_, rs) = rust_files();
    let bad: Vec<String> = rs
        .iter()
        .filter(|(rel, _)| rel.starts_with("uwsgid/") || rel.starts_with("uwsgid-python/"))
        .flat_map(|(rel, text)| {
            string_errors(&code_only(text))
                .into_iter()
                .map(move |(line, ty)| format!("{rel}:{line}: {ty}"))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "uwsgid's errors are small enums whose Display names the input and the fix (see \
         cli::Invalid, config::Error, listener::Error); these return a String instead:\n{}",
        bad.join("\n")
    );
}

#[test]
fn tidy_string_errors_finds_them_across_lines_and_nested() {
    let found = |src: &str| string_errors(&code_only(src));
    assert_eq!(
        found("fn f() -> Result<u8, String> {}"),
        [(1, "Result<u8, String>".to_string())]
    );
    assert_eq!(
        found("fn f()\n -> Result<Option<(u8, Vec<u16>)>,\n   String> {}").len(),
        1
    );
    assert_eq!(
        found("let c = |x| -> Result<String, String> { x };").len(),
        1
    );
    assert_eq!(
        found("type F = Result<Box<dyn Fn() -> u8>, String>;").len(),
        1
    );
    for fine in [
        "fn f() -> Result<String, Error> {}",
        "fn f() -> io::Result<String> {}",
        "fn f() -> Result<(), StringError> {}",
        "fn f() -> Result<HashMap<String, String>, Error> {}",
        "// fn f() -> Result<u8, String>",
        "let s = \"Result<u8, String>\";",
    ] {
        assert!(found(fine).is_empty(), "{fine}: {:?}", found(fine));
    }
}
