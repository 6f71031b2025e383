//! `docs/uwsgi-options.md` is the truth about uWSGI options in uwsgid: every row of its table
//! is checked against `uwsgid --check-config` (the verdict printed for the key, the exit code,
//! the one warning for "no effect", the refusal naming option, file and line).

use std::process::{Command, Stdio};

use uwsgi_tests::*;

/// (option, verdict) rows of the table.
fn rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(workspace_root().join("docs/uwsgi-options.md"))
        .expect("read docs/uwsgi-options.md");
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((key.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

#[test]
fn every_row_of_the_options_table_holds() {
    let rows = rows();
    assert!(rows.len() > 100, "the table has {} rows", rows.len());
    let dir = TestDir::new("cfg-table");
    let venv = dir.join("venv");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::write(venv.join("bin/python"), "").unwrap();
    for (key, verdict) in rows {
        let value = if ["virtualenv", "venv", "home", "pyhome"].contains(&key.as_str()) {
            venv.display().to_string()
        } else {
            "1".to_string()
        };
        dir.write(
            "t.ini",
            &format!("[uwsgi]\nhttp-socket = 127.0.0.1:0\n{key} = {value}\n"),
        );
        let out = Command::new(bin("uwsgid"))
            .args(["--check-config", "--ini", "t.ini"])
            .current_dir(&dir.path)
            .env("UWSGID_RUNTIME_DIR", dir.join("runtime"))
            .stdin(Stdio::null())
            .output()
            .expect("run uwsgid");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("t.ini line 3: {key} = ")))
            .unwrap_or_else(|| panic!("{key}: no verdict line in {stdout}"));
        match verdict.as_str() {
            "supported" => assert!(
                line.ends_with(": supported") || line.contains(": supported ("),
                "{key}: {line}"
            ),
            "no effect" => {
                assert!(line.contains(": no effect: "), "{key}: {line}");
                assert!(out.status.success(), "{key}: {stderr}");
                let warning = format!("t.ini line 3: {key} has no effect in uwsgid");
                assert_eq!(stderr.matches(&warning).count(), 1, "{key}: {stderr}");
            }
            "refused" | "not yet" => {
                let word = if verdict == "refused" {
                    ": refused: "
                } else {
                    ": refused, not implemented yet: "
                };
                assert!(line.contains(word), "{key}: {line}");
                assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
                assert!(
                    stderr.contains(&format!("{key} (t.ini line 3): ")),
                    "{key}: {stderr}"
                );
            }
            other => panic!("{key}: unknown verdict {other:?} in the table"),
        }
    }
}

/// Every `no effect`/`refused` name in the table is an option of uWSGI 2.0 (or uwsgid's own):
/// the table does not invent options.
#[test]
fn the_table_names_real_uwsgi_options() {
    let list =
        std::fs::read_to_string(workspace_root().join("uwsgid/src/config/uwsgi_options.txt"))
            .unwrap();
    let known: Vec<&str> = list.lines().collect();
    assert!(
        known.len() > 800,
        "uwsgi_options.txt has {} names",
        known.len()
    );
    // Newer than the 2.0.21 the list was made from (they came with 2.0.23).
    let newer = [
        "harakiri-graceful-timeout",
        "harakiri-graceful-signal",
        "max-requests-delta",
    ];
    let invented: Vec<String> = rows()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !known.contains(&k.as_str()) && !newer.contains(&k.as_str()))
        .collect();
    assert!(invented.is_empty(), "not uWSGI 2.0 options: {invented:?}");
}
