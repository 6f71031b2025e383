//! `--static-map`, `--static-map2`, `--static-index`, `--static-expires-type` on built-in
//! workers (uWSGI's semantics, see `uwsgid/src/static_map.rs`), and every traversal attempt
//! refused: the secret file next to the mapped root is never served.

use uwsgi_tests::*;

const SECRET: &str = "TOP-SECRET-CONTENT";

fn setup() -> TestDir {
    let dir = TestDir::new("static-map");
    for d in ["root/static/sub", "root/static/css", "more", "other"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    dir.write("root/static/a.txt", "A");
    dir.write("root/static/sub/idx.htm", "INDEX");
    dir.write("root/static/css/site.css", "body{}");
    dir.write("root/robots.txt", "ROBOTS");
    dir.write("more/b.txt", "B");
    dir.write("secret.txt", SECRET);
    dir.write("other/secret.txt", SECRET);
    std::os::unix::fs::symlink("a.txt", dir.join("root/static/inside")).unwrap();
    std::os::unix::fs::symlink("../../secret.txt", dir.join("root/static/out")).unwrap();
    std::os::unix::fs::symlink(dir.join("other"), dir.join("root/static/dirlink")).unwrap();
    dir
}

fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
}

#[test]
fn maps_serve_as_uwsgi_does() {
    let dir = setup();
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--static-map",
            "/s=root/static",
            "--static-map",
            "/s=more",
            "--static-map2",
            "/static=root",
            "--static-map",
            "/robots.txt=root/robots.txt",
            "--static-index",
            "idx.htm",
            "--static-expires-type",
            "text/css=3600",
        ],
    );
    assert_eq!(d.get("/s/a.txt").unwrap(), (200, "A".into()));
    // The second map of the same prefix is tried when the first lacks the file.
    assert_eq!(d.get("/s/b.txt").unwrap(), (200, "B".into()));
    // map2 appends the whole path to its directory.
    assert_eq!(d.get("/static/a.txt").unwrap(), (200, "A".into()));
    assert_eq!(d.get("/robots.txt").unwrap(), (200, "ROBOTS".into()));
    assert_eq!(d.get("/s/sub/").unwrap(), (200, "INDEX".into()));
    assert_eq!(d.get("/s/sub").unwrap(), (200, "INDEX".into()));
    // A symlink that stays inside the root is followed.
    assert_eq!(d.get("/s/inside").unwrap(), (200, "A".into()));
    // A prefix matches at a '/' boundary only; what no map holds goes on to the routes.
    assert_eq!(d.get("/sa.txt").unwrap().0, 404);
    assert_eq!(d.get("/s/missing").unwrap().0, 404);
    assert_eq!(d.get("/").unwrap(), (200, "Hello World".into()));
    let raw = http_raw(
        &d.addr,
        b"GET /s/css/site.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(parse_response(&raw).unwrap().0, 200);
    assert_eq!(
        header(&raw, "Cache-Control").as_deref(),
        Some("max-age=3600")
    );
    let expires = header(&raw, "Expires").expect("Expires header");
    assert!(expires.ends_with(" GMT"), "{expires}");
    let raw = http_raw(
        &d.addr,
        b"GET /s/a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        header(&raw, "Expires"),
        None,
        "text/plain has no expiry set"
    );
}

#[test]
fn traversal_attempts_are_refused() {
    let dir = setup();
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--static-map",
            "/s=root/static",
            "--static-map2",
            "/static=root",
            "--check-static",
            "root",
        ],
    );
    assert_eq!(d.get("/s/a.txt").unwrap(), (200, "A".into()));
    let attempts = [
        "/s/../../secret.txt",
        "/s/%2e%2e/%2e%2e/secret.txt",
        "/s/%2E%2E/%2E%2E/secret.txt",
        "/s/.%2e/.%2e/secret.txt",
        "/s/..%2f..%2fsecret.txt",
        "/s%2F..%2F..%2Fsecret.txt",
        "/s/a.txt%00",
        "/s/%00/../../secret.txt",
        "/s/out",
        "/s/dirlink/secret.txt",
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/static/out",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/static/out",
        "//s/../../secret.txt",
        "/s/./../../secret.txt",
    ];
    for path in attempts {
        let raw = http_raw(
            &d.addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains(SECRET), "{path} served the secret: {text}");
        let status = parse_response(&raw).map(|r| r.0).unwrap_or(0);
        assert!(
            [400, 403, 404].contains(&status),
            "{path}: status {status}: {text}"
        );
    }
    // Absolute-form targets are served as their path: refused the same way.
    let raw = http_raw(
        &d.addr,
        b"GET http://t/s/%2e%2e/%2e%2e/secret.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(!String::from_utf8_lossy(&raw).contains(SECRET));
    d.assert_alive();
}

#[test]
fn bad_maps_stop_startup() {
    let dir = setup();
    for (args, needle) in [
        (vec!["--static-map", "static"], "expected /URL=DIR"),
        (vec!["--static-map", "s=root"], "must start with '/'"),
        (vec!["--static-map", "/s=nonexistent"], "nonexistent"),
        (vec!["--static-index", "a/b"], "--static-index"),
        (vec!["--static-expires-type", "text/css"], "MIME=SECS"),
    ] {
        let mut all = vec!["--http-socket", "127.0.0.1:0", "--check-config"];
        all.extend(args.iter().copied());
        let out = std::process::Command::new(bin("uwsgid"))
            .args(&all)
            .current_dir(&dir.path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
