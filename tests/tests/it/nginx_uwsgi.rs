//! uwsgid behind a real nginx (issue 13, items 1-2): `--socket` on a Unix path and on TCP,
//! `uwsgi_pass` with `include uwsgi_params`, built-in workers and the bundled Python runner.
//! GET with query strings, repeated headers, cookies, POST bodies (small, 10 MB, and with
//! `uwsgi_request_buffering off`), large responses, HEAD, 404, 500, 100 requests on one
//! keep-alive client, and graceful reloads every second under load with no failed request.
//! Plus what needs no nginx: packets uWSGI would act on (`UWSGI_FILE`, ...) are plain data,
//! garbage never crashes a worker, TCP peers outside loopback need `--uwsgi-allow`, exec
//! workers see `uwsgi=ADDR` in `LISTEN_FDNAMES` and the master's pid in their environment.
//!
//! Python apps run on the native worker (`uwsgid-python`, checked by `/proc/PID/exe`), or on
//! the stdlib runner in tests/run.sh's second pass (`UWSGID_PYTHON_WORKER=stdlib`); a strict
//! PEP 3333 run (`wsgiref.validate`, its warnings made errors) goes through nginx.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use uwsgi_tests::*;

/// True when the suite runs Python apps on the stdlib runner (tests/run.sh's second pass).
pub(crate) fn stdlib_runner() -> bool {
    std::env::var("UWSGID_PYTHON_WORKER").is_ok_and(|v| v == "stdlib")
}

/// Every pid runs the Python worker program of this pass: `uwsgid-python` (the native worker),
/// or `python3` under `UWSGID_PYTHON_WORKER=stdlib`.
/// A pid just forked by the master (a standby zygote started after the workers were ready)
/// runs the master's program until its `execve`: that one is looked at again, for 10 s at most.
pub(crate) fn assert_python_program(pids: &[i32]) {
    assert!(!pids.is_empty(), "no Python worker to look at");
    let master_exe = std::fs::canonicalize(uwsgi_tests::bin("uwsgid")).ok();
    for pid in pids {
        let read = || {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .unwrap_or_else(|e| panic!("/proc/{pid}/exe: {e}"))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut exe = read();
        while Some(&exe) == master_exe.as_ref() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            exe = read();
        }
        let name = exe
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if stdlib_runner() {
            assert!(
                name.starts_with("python"),
                "pid {pid} runs {}",
                exe.display()
            );
        } else {
            assert!(
                name.starts_with("uwsgid-python"),
                "pid {pid} runs {}, not the native worker",
                exe.display()
            );
        }
    }
}

fn pids_of(d: &Daemon) -> Vec<i32> {
    d.worker_pids().into_iter().map(|p| p as i32).collect()
}

fn have_nginx() -> bool {
    require(
        nginx_binary().is_some(),
        "nginx",
        "apt-get install nginx (tests/run.sh does)",
    )
}

/// One HTTP/1.1 client connection kept alive across requests.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    fn new(addr: &str) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Client { s, buf: Vec::new() }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.s.read(&mut chunk).expect("read an answer");
        assert!(n > 0, "connection closed before the answer was complete");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill();
        }
        self.buf.drain(..n).collect()
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = self.take(i + 2);
                return String::from_utf8_lossy(&l[..i]).into_owned();
            }
            self.fill();
        }
    }

    /// Send `head` (and `body`), read one answer; `head_only` for HEAD.
    fn send(&mut self, head: &str, body: &[u8], head_only: bool) -> Answer {
        self.s.write_all(head.as_bytes()).unwrap();
        self.s.write_all(body).unwrap();
        let status_line = self.line();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut a = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 204 || status == 304 {
            return a;
        }
        if let Some(n) = a.header("content-length") {
            let n: usize = n.parse().unwrap();
            a.body = self.take(n);
        } else if a
            .header("transfer-encoding")
            .is_some_and(|t| t.contains("chunked"))
        {
            loop {
                let size = usize::from_str_radix(self.line().trim(), 16).unwrap();
                if size == 0 {
                    self.line();
                    break;
                }
                a.body.extend(self.take(size));
                self.take(2);
            }
        } else {
            panic!("an answer without length: {:?}", a.headers);
        }
        a
    }

    fn get(&mut self, path: &str) -> Answer {
        self.send(
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"),
            b"",
            false,
        )
    }
}

const APP: &str = r#"
import hashlib, os, uwsgi

def application(env, start_response):
    path = env["PATH_INFO"]
    if path.endswith("/env"):
        body = "\n".join("%s=%s" % (k, v) for k, v in sorted(env.items())
                         if isinstance(v, str)).encode()
    elif path.endswith("/echo"):
        data = env["wsgi.input"].read()
        body = ("%d %s" % (len(data), hashlib.sha256(data).hexdigest())).encode()
    elif path == "/big":
        body = b"0123456789abcdef" * (1 << 18)
    elif path == "/boom":
        raise RuntimeError("boom")
    elif path == "/reload":
        body = str(uwsgi.reload()).encode()
    elif path == "/uwsgi":
        body = repr((uwsgi.worker_id(), uwsgi.masterpid(), uwsgi.numproc,
                     uwsgi.started_on, uwsgi.total_requests(),
                     uwsgi.opt.get("processes"), os.getpid())).encode()
    elif path == "/":
        body = b"python " + str(os.getpid()).encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"nope\n"]
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"#;

fn sha(data: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The uwsgi socket's TCP address, from the record (the HTTP listener comes first).
fn uwsgi_tcp(d: &Daemon) -> String {
    let r = common::discovery::read_record(&d.pidfile).unwrap();
    let s = d.stats();
    let names: Vec<String> = s["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["proto"] == "uwsgi")
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect();
    names
        .into_iter()
        .find(|n| !n.starts_with('/') && r.listeners.contains(n))
        .expect("a uwsgi TCP listener")
}

#[test]
fn builtin_workers_behind_nginx_on_unix_and_tcp() {
    if !have_nginx() {
        return;
    }
    let dir = TestDir::new("nginx-builtin");
    let static_dir = dir.join("static");
    std::fs::create_dir_all(&static_dir).unwrap();
    let big: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(static_dir.join("big.bin"), &big).unwrap();
    let sock = dir.join("app.sock");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "2",
            "--socket",
            sock.to_str().unwrap(),
            "-s",
            "127.0.0.1:0",
            "--chmod-socket",
            "--check-static",
            static_dir.to_str().unwrap(),
        ],
    );
    let tcp = uwsgi_tcp(&d);
    for upstream in [format!("unix:{}", sock.display()), tcp] {
        let ngx = Nginx::start(&dir, &upstream);
        let mut c = Client::new(&ngx.addr);
        let a = c.get("/?a=1&b=two");
        assert_eq!(
            (a.status, a.text().as_str()),
            (200, "Hello World"),
            "{upstream}"
        );
        let a = c.get("/pid");
        let pid: i32 = a.text().parse().unwrap();
        assert!(d.worker_pids().contains(&(pid as i64)));
        let a = c.get("/no/such/page");
        assert_eq!(a.status, 404);
        let a = c.send("HEAD / HTTP/1.1\r\nHost: test\r\n\r\n", b"", true);
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-length"), Some("11"));
        let a = c.get("/big.bin");
        assert_eq!(a.status, 200);
        assert!(a.body == big, "8 MiB static file intact through nginx");
        // 100 requests on this one keep-alive client connection (nginx opens one upstream
        // connection per request).
        let started = Instant::now();
        for i in 0..100 {
            let a = c.get(&format!("/?n={i}"));
            assert_eq!(a.status, 200, "request {i}");
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(
            !ngx.error_log_text().contains("upstream prematurely closed"),
            "{}",
            ngx.error_log_text()
        );
    }
    let s = d.stats();
    let protos: Vec<&str> = s["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["proto"].as_str().unwrap())
        .collect();
    assert_eq!(protos, ["http", "uwsgi", "uwsgi"]);
}

#[test]
fn python_app_behind_nginx() {
    if !have_nginx() || !require_program("python3", "python3") {
        return;
    }
    let dir = TestDir::new("nginx-python");
    let app = dir.write("app.py", APP);
    let sock = dir.join("app.sock");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "2",
            "--wsgi-file",
            app.to_str().unwrap(),
            "--uwsgi-socket",
            sock.to_str().unwrap(),
            "--chmod-socket=660",
        ],
    );
    assert_python_program(&pids_of(&d));
    let ngx = Nginx::start(&dir, &format!("unix:{}", sock.display()));
    let mut c = Client::new(&ngx.addr);
    let a = c.send(
        "GET /env?q=1&r=%20x HTTP/1.1\r\nHost: example.test\r\nX-Many: one\r\nX-Many: two\r\n\
         Cookie: a=1\r\nCookie: b=2\r\nUser-Agent: t\r\n\r\n",
        b"",
        false,
    );
    assert_eq!(a.status, 200);
    let env = a.text();
    for want in [
        "REQUEST_METHOD=GET",
        "QUERY_STRING=q=1&r=%20x",
        "REQUEST_URI=/env?q=1&r=%20x",
        "PATH_INFO=/env",
        "SERVER_PROTOCOL=HTTP/1.1",
        "HTTP_HOST=example.test",
        "HTTP_USER_AGENT=t",
        "REMOTE_ADDR=127.0.0.1",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in\n{env}");
    }
    let many = env.lines().find(|l| l.starts_with("HTTP_X_MANY=")).unwrap();
    assert!(many.contains("one") && many.contains("two"), "{many}");
    let cookie = env.lines().find(|l| l.starts_with("HTTP_COOKIE=")).unwrap();
    assert!(cookie.contains("a=1") && cookie.contains("b=2"), "{cookie}");

    let small = b"hello uwsgi".to_vec();
    let large: Vec<u8> = (0..(10u32 << 20)).map(|i| (i * 7 % 256) as u8).collect();
    for (path, body) in [
        ("/echo", &small),
        ("/echo", &large),
        ("/unbuffered/echo", &large),
        ("/unbuffered/echo", &small),
    ] {
        let a = c.send(
            &format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            ),
            body,
            false,
        );
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(
            a.text(),
            format!("{} {}", body.len(), sha(body)),
            "{path} {}",
            body.len()
        );
    }
    let a = c.get("/big");
    assert_eq!((a.status, a.body.len()), (200, 4 << 20));
    let a = c.send("HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n", b"", true);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("4194304"));
    assert_eq!(c.get("/nope").status, 404);
    assert_eq!(c.get("/boom").status, 500);
    for i in 0..100 {
        assert_eq!(c.get("/").status, 200, "request {i}");
    }
    // The same instance serves HTTP on its --http-socket beside the uwsgi socket.
    let (status, body) = http_get(&d.addr, "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("python "), "{body}");
    assert_python_program(&pids_of(&d));
}

#[test]
fn graceful_reloads_every_second_through_nginx_fail_nothing() {
    if !have_nginx() {
        return;
    }
    // Built-in workers, then the Python app (the native worker, or the stdlib runner's pass).
    for python in [false, true] {
        reloads_through_nginx(python);
    }
}

fn reloads_through_nginx(python: bool) {
    let dir = TestDir::new("nginx-reload");
    let sock = dir.join("app.sock");
    let app = dir.write("app.py", APP);
    let mut args = vec!["--processes", "2", "--socket", sock.to_str().unwrap()];
    if python {
        args.extend(["--wsgi-file", app.to_str().unwrap()]);
    }
    let d = Daemon::start(&dir, &args);
    if python {
        assert_python_program(&pids_of(&d));
    }
    let ngx = Nginx::start(&dir, &format!("unix:{}", sock.display()));
    let load = Load::start(&ngx.addr, 4, "/");
    load.wait_more(50);
    let pf = d.pidfile.to_str().unwrap().to_string();
    for n in 0..5 {
        let started = Instant::now();
        let out = std::process::Command::new(bin("uwsgid"))
            .args(["--reload", &pf])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        d.wait_generation(n + 2);
        let before = load.ok();
        load.wait_more(before + 20);
        if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
            // One reload a second: wait out the second while the load runs.
            let until = Instant::now() + rest;
            wait_for("the second to pass", rest + Duration::from_secs(1), || {
                (Instant::now() >= until).then_some(())
            });
        }
    }
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "python {python}: {} failed of {}: {:?}",
        errors.len(),
        ok,
        &errors[..errors.len().min(5)]
    );
    assert!(ok > 100, "python {python}: {ok}");
    if python {
        assert_python_program(&pids_of(&d));
    }
}

/// A raw uwsgi request on a fresh connection; the raw answer.
fn uwsgi_raw(addr: &str, packet: &[u8]) -> Vec<u8> {
    let mut s: Box<dyn ReadWrite> = if addr.starts_with('/') {
        Box::new(std::os::unix::net::UnixStream::connect(addr).unwrap())
    } else {
        Box::new(TcpStream::connect(addr).unwrap())
    };
    s.write_all(packet).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    raw
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn packet(vars: &[(&str, &str)]) -> Vec<u8> {
    uwsgid::uwsgi_proto::encode(vars).unwrap()
}

#[test]
fn uwsgi_control_vars_are_plain_data_and_garbage_is_refused() {
    if !require_program("python3", "python3") {
        return;
    }
    let dir = TestDir::new("uwsgi-vars");
    let app = dir.write("app.py", APP);
    let evil = dir.write(
        "evil.py",
        &format!(
            "open({:?}, 'w').write('ran')\ndef application(e, s):\n    s('200 OK', [])\n    return [b'evil']\n",
            dir.join("pwned").display()
        ),
    );
    let sock = dir.join("py.sock");
    let bsock = dir.join("builtin.sock");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--wsgi-file",
            app.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
        ],
    );
    let bdir = TestDir::new("uwsgi-vars-builtin");
    let b = Daemon::start(
        &bdir,
        &["--processes", "1", "--socket", bsock.to_str().unwrap()],
    );
    assert_python_program(&pids_of(&d));
    let e = evil.to_str().unwrap();
    let vars = [
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/env"),
        ("PATH_INFO", "/env"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("UWSGI_FILE", e),
        ("UWSGI_SCRIPT", "evil"),
        ("UWSGI_MODULE", "evil"),
        ("UWSGI_CALLABLE", "application"),
        ("UWSGI_CHDIR", dir.path.to_str().unwrap()),
        ("UWSGI_PYHOME", "/tmp"),
        ("UWSGI_TOUCH_RELOAD", e),
        ("UWSGI_SETENV", "UWSGID_PWNED=1"),
        ("UWSGI_APPID", "evil"),
    ];
    for _ in 0..3 {
        let (status, body) =
            parse_response(&uwsgi_raw(sock.to_str().unwrap(), &packet(&vars))).unwrap();
        assert_eq!(status, 200);
        assert!(body.contains(&format!("UWSGI_FILE={e}")), "{body}");
        assert!(body.contains("UWSGI_SETENV=UWSGID_PWNED=1"), "{body}");
        assert!(
            !body.lines().any(|l| l.starts_with("UWSGID_PWNED")),
            "{body}"
        );
        assert!(
            !body.contains("evil\n") || body.contains("UWSGI_"),
            "{body}"
        );
        let (status, _) =
            parse_response(&uwsgi_raw(bsock.to_str().unwrap(), &packet(&vars))).unwrap();
        assert_eq!(status, 404, "the built-in worker serves /env as any path");
    }
    assert!(!dir.join("pwned").exists(), "UWSGI_FILE was executed");
    assert_eq!(d.generation(), 1, "UWSGI_TOUCH_RELOAD reloaded nothing");

    // Garbage: every kind is refused, no worker dies.
    let pids = (d.worker_pids(), b.worker_pids());
    let mut big = vec![0u8, 0xff, 0xff, 0];
    big.extend(vec![b'a'; 70000]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![100, 0, 0, 0], "501"),
        (vec![0, 4, 0, 5, 1, 0, b'K', 0], "501"),
        (vec![0, 5, 0, 0, 10, 0, b'a', b'b', b'c'], "400"),
        (vec![0, 0, 0, 0], "400"),
        (vec![0, 0x01, 0x20, 0], "431"),
        (big, "431"),
        (packet(&[("REQUEST_URI", "/")]), "400"),
        (packet(&[("K", "a\nb")]), "400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), ""),
        (vec![0, 10, 0, 0, 1], ""), // truncated: the client gives up
    ];
    for s in [&sock, &bsock] {
        for (raw, want) in &cases {
            let answer = uwsgi_raw_timeout(s.to_str().unwrap(), raw);
            let text = String::from_utf8_lossy(&answer);
            assert!(text.is_empty() || text.starts_with("HTTP/1.1 "), "{text}");
            if !want.is_empty() {
                assert!(
                    text.starts_with(&format!("HTTP/1.1 {want}")),
                    "{raw:?}: {text}"
                );
            }
        }
        let ok = parse_response(&uwsgi_raw(s.to_str().unwrap(), &packet(&vars[..4]))).unwrap();
        assert!(ok.0 == 200 || ok.0 == 404);
    }
    assert_eq!((d.worker_pids(), b.worker_pids()), pids, "no worker died");
}

/// Like [`uwsgi_raw`], giving up after a short while (for truncated packets).
fn uwsgi_raw_timeout(addr: &str, raw: &[u8]) -> Vec<u8> {
    let mut s = std::os::unix::net::UnixStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A local address that is not loopback, if the machine has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn tcp_peers_outside_loopback_need_the_allow_list() {
    let Some(ip) = non_loopback_ip() else {
        require(
            false,
            "a non-loopback address",
            "a network interface with an IPv4 address",
        );
        return;
    };
    let req = packet(&[("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/pid")]);
    for allow in [None, Some(format!("{ip}/32"))] {
        let dir = TestDir::new("uwsgi-allow");
        let port = free_port();
        let bind = format!("0.0.0.0:{port}");
        let mut args = vec!["--processes", "1", "--socket", bind.as_str()];
        if let Some(a) = &allow {
            args.extend(["--uwsgi-allow", a.as_str()]);
        }
        let d = Daemon::start(&dir, &args);
        // From loopback: always served.
        let (status, _) = parse_response(&uwsgi_raw(&format!("127.0.0.1:{port}"), &req)).unwrap();
        assert_eq!(status, 200);
        let remote = uwsgi_raw(&format!("{ip}:{port}"), &req);
        match allow {
            None => {
                assert!(remote.is_empty(), "{}", String::from_utf8_lossy(&remote));
                d.wait_log(&format!("refused a connection from {ip}"));
            }
            Some(_) => assert_eq!(parse_response(&remote).unwrap().0, 200),
        }
    }
}

#[test]
fn exec_workers_see_uwsgi_listeners_and_the_master() {
    if !require_program("perl", "perl") {
        return;
    }
    let dir = TestDir::new("uwsgi-exec-names");
    let out = dir.join("env.txt");
    // The documented Perl one-liner reloads the instance from a worker: the first generation's
    // worker sends SIGHUP to UWSGID_MASTER_PID.
    let script = format!(
        "perl -e 'open(my $f, \">>\", \"{}\"); print $f \"$ENV{{LISTEN_FDNAMES}} $ENV{{UWSGID_MASTER_PID}} $ENV{{UWSGID_GENERATION}}\\n\"; close $f; kill \"HUP\", $ENV{{UWSGID_MASTER_PID}} if $ENV{{UWSGID_GENERATION}} == 1; sleep 600'",
        out.display()
    );
    let sock = dir.join("u.sock");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--worker-exec",
            &script,
            "--worker-ready-timeout",
            "0.2",
            "--http-socket",
            "127.0.0.1:0",
            "--socket",
            sock.to_str().unwrap(),
        ],
    );
    d.wait_generation(2);
    let text = std::fs::read_to_string(&out).unwrap();
    let first = text.lines().next().unwrap();
    let fields: Vec<&str> = first.split(' ').collect();
    assert_eq!(fields[1], d.pid.to_string(), "{text}");
    let names: Vec<&str> = fields[0].split(':').collect();
    assert_eq!(names.len(), 2, "{text}");
    assert!(names[0].starts_with("127.0.0.1_"), "{text}");
    assert_eq!(names[1], format!("uwsgi={}", sock.display()), "{text}");
}

#[test]
fn uwsgi_module_in_python_apps() {
    if !require_program("python3", "python3") {
        return;
    }
    let dir = TestDir::new("uwsgi-module");
    let app = dir.write("app.py", APP);
    let d = Daemon::start(
        &dir,
        &["--processes", "2", "--wsgi-file", app.to_str().unwrap()],
    );
    let (status, body) = d.get("/uwsgi").unwrap();
    assert_eq!(status, 200, "{body}");
    // (worker_id, masterpid, numproc, started_on, total_requests, opt["processes"], pid)
    let inner = body.trim_matches(|c| c == '(' || c == ')');
    let f: Vec<&str> = inner.split(", ").collect();
    let id: u32 = f[0].parse().unwrap();
    assert!((1..=2).contains(&id), "{body}");
    assert_eq!(f[1], d.pid.to_string(), "{body}");
    assert_eq!(f[2], "2", "{body}");
    let started: u64 = f[3].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(started <= now && now - started < 600, "{body}");
    f[4].parse::<u64>().unwrap();
    assert_eq!(f[5], "b'2'", "{body}");
    // reload() returns at once; the reload is graceful.
    assert_python_program(&pids_of(&d));
    let load = Load::start(&d.addr, 2, "/");
    load.wait_more(20);
    let (status, body) = d.get("/reload").unwrap();
    assert_eq!((status, body.as_str()), (200, "True"));
    d.wait_generation(2);
    let before = load.ok();
    load.wait_more(before + 20);
    let (ok, errors) = load.finish();
    assert!(errors.is_empty(), "{ok} ok, failed: {errors:?}");
}

#[test]
fn http_and_http11_socket_bind_http_listeners_with_one_log_line() {
    let dir = TestDir::new("http-router-options");
    let (a, b) = (free_port(), free_port());
    let (a, b) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}"));
    let d = Daemon::start(&dir, &["--http", &a, "--http11-socket", &b]);
    for addr in [&a, &b] {
        assert_eq!(http_get(addr, "/").unwrap().0, 200, "{addr}");
    }
    assert_eq!(
        d.log_count("needs no router process"),
        2,
        "{}",
        d.log_text()
    );
    assert_eq!(d.log_count(&format!("--http {a}: serving HTTP")), 1);
}

/// PEP 3333 through nginx, strictly: the app is `wsgiref.validate.validator` with its warnings
/// made errors (a `WSGIWarning` fails the request with a 500), and checks the environ's
/// required keys and types itself; every kind of request and response goes through
/// `uwsgi_pass`.
const STRICT_APP: &str = r#"
import hashlib, os, warnings
from wsgiref.validate import validator
warnings.simplefilter("error")

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIRED = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
            "SERVER_PORT", "SERVER_PROTOCOL", "wsgi.version", "wsgi.url_scheme", "wsgi.input",
            "wsgi.errors", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once")

def raw(environ, start_response):
    for k in REQUIRED:
        assert k in environ, k
    for k, v in environ.items():
        if "." not in k:
            assert type(v) is str, (k, type(v))
    assert "HTTP_CONTENT_LENGTH" not in environ and "HTTP_CONTENT_TYPE" not in environ
    assert environ["wsgi.version"] == (1, 0)
    assert environ.get("CONTENT_LENGTH", "1") != ""
    path = environ["PATH_INFO"]
    text = [("Content-Type", "text/plain")]
    if path.endswith("/echo"):
        h, n = hashlib.sha256(), 0
        while True:
            block = environ["wsgi.input"].read(65536)
            if not block:
                break
            h.update(block)
            n += len(block)
        start_response("200 OK", text)
        return [("%d %s" % (n, h.hexdigest())).encode()]
    if path == "/lines":
        lines = []
        while True:
            line = environ["wsgi.input"].readline()
            if not line:
                break
            lines.append(line.rstrip(b"\n"))
        start_response("200 OK", text)
        return [b"|".join(lines)]
    if path == "/stream":
        start_response("200 OK", text)
        return iter([b"a", b"", b"bc", b"def"])
    if path == "/write":
        write = start_response("200 OK", text)
        write(b"written;")
        return [b"returned"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(os.path.join(HERE, "static.bin"), "rb"), 4096)
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/query":
        start_response("200 OK", text)
        return [("%s|%s|%s" % (environ["QUERY_STRING"], environ["PATH_INFO"],
                               environ["REQUEST_METHOD"])).encode()]
    start_response("404 Not Found", text)
    return [b"no such page"]

application = validator(raw)
"#;

#[test]
fn strict_pep3333_through_nginx_uwsgi_pass() {
    if !have_nginx() || !require_program("python3", "python3") {
        return;
    }
    let dir = TestDir::new("nginx-pep3333");
    let app = dir.write("app.py", STRICT_APP);
    let file: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 256) as u8).collect();
    std::fs::write(dir.join("static.bin"), &file).unwrap();
    let sock = dir.join("app.sock");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--threads",
            "2",
            "--wsgi-file",
            app.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
        ],
    );
    assert_python_program(&pids_of(&d));
    let ngx = Nginx::start(&dir, &format!("unix:{}", sock.display()));
    let mut c = Client::new(&ngx.addr);
    let a = c.get("/query?x=1&y=%C3%A9");
    assert_eq!(
        (a.status, a.text().as_str()),
        (200, "x=1&y=%C3%A9|/query|GET")
    );
    let a = c.send("HEAD /query HTTP/1.1\r\nHost: t\r\n\r\n", b"", true);
    assert_eq!(a.status, 200);
    let a = c.get("/stream");
    assert_eq!((a.status, a.text().as_str()), (200, "abcdef"));
    let a = c.get("/write");
    assert_eq!((a.status, a.text().as_str()), (200, "written;returned"));
    let a = c.get("/file");
    assert_eq!(a.status, 200);
    assert!(a.body == file, "the wrapped file arrives intact");
    let a = c.get("/empty");
    assert_eq!(a.status, 204);
    assert_eq!(c.get("/nothing-here").status, 404);
    let lines = b"one\ntwo\nthree".to_vec();
    let a = c.send(
        &format!(
            "POST /lines HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            lines.len()
        ),
        &lines,
        false,
    );
    assert_eq!((a.status, a.text().as_str()), (200, "one|two|three"));
    for n in [1usize, 4096, 1 << 20] {
        let body: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
        for path in ["/echo", "/unbuffered/echo"] {
            let a = c.send(
                &format!(
                    "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n\
                     Content-Length: {n}\r\n\r\n"
                ),
                &body,
                false,
            );
            assert_eq!(a.status, 200, "{path} {n}: {}", a.text());
            assert_eq!(a.text(), format!("{n} {}", sha(&body)), "{path} {n}");
        }
        // A chunked body: nginx reads it whole and passes it on with its length.
        let mut chunked = Vec::new();
        for part in body.chunks(1000) {
            chunked.extend(format!("{:x}\r\n", part.len()).bytes());
            chunked.extend(part);
            chunked.extend(b"\r\n");
        }
        chunked.extend(b"0\r\n\r\n");
        let a = c.send(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            &chunked,
            false,
        );
        assert_eq!(a.status, 200, "chunked {n}: {}", a.text());
        assert_eq!(a.text(), format!("{n} {}", sha(&body)), "chunked {n}");
    }
    let log = d.log_text();
    assert!(!log.contains("WSGIWarning"), "{log}");
    assert!(!log.contains("AssertionError"), "{log}");
}

/// `n` pseudo-random bytes from `seed` (xorshift: the same bytes every run).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn python_workers_refuse_garbage_packets_with_a_logged_reason() {
    if !require_program("python3", "python3") {
        return;
    }
    let dir = TestDir::new("uwsgi-garbage-py");
    let app = dir.write("app.py", APP);
    let sock = dir.join("py.sock");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--threads",
            "2",
            "--wsgi-file",
            app.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
        ],
    );
    let pids = pids_of(&d);
    assert_python_program(&pids);
    let s = sock.to_str().unwrap();
    let get = packet(&[
        ("REQUEST_METHOD", "GET"),
        ("REQUEST_URI", "/"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
    ]);
    for (raw, status, reason) in [
        (vec![100u8, 0, 0, 0], 501, "modifier1"),
        (vec![0, 0x01, 0x20, 0], 431, "larger than --buffer-size"),
        (
            vec![0, 5, 0, 0, 10, 0, b'a', b'b', b'c'],
            400,
            "runs past the vars block",
        ),
        (packet(&[("REQUEST_URI", "/")]), 400, "REQUEST_METHOD"),
        (
            packet(&[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
                ("CONTENT_LENGTH", "1"),
                ("CONTENT_LENGTH", "2"),
            ]),
            400,
            "repeats",
        ),
        (
            packet(&[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/"),
                ("CONTENT_LENGTH", "x"),
            ]),
            400,
            "is not a number",
        ),
    ] {
        let answer = uwsgi_raw_timeout(s, &raw);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{raw:?}: {text}"
        );
        d.wait_log(&format!("uwsgi packet refused ({status})"));
        d.wait_log(reason);
    }
    // Random bytes after a valid-looking header, many times: refused or dropped, never fatal.
    for seed in 1..200u64 {
        let mut raw = noise(seed, (seed as usize * 37) % 600 + 4);
        raw[0] = 0;
        raw[3] = 0;
        let answer = uwsgi_raw_timeout(s, &raw);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"),
            "seed {seed}: {text}"
        );
    }
    // A packet cut short by its peer: logged as truncated.
    {
        let mut c = std::os::unix::net::UnixStream::connect(s).unwrap();
        c.write_all(&get[..get.len() - 3]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        d.wait_log("uwsgi packet refused: truncated");
    }
    // A body shorter than its CONTENT_LENGTH (the peer gives up): the request ends, the worker
    // goes on.
    let mut short = packet(&[
        ("REQUEST_METHOD", "POST"),
        ("REQUEST_URI", "/echo"),
        ("PATH_INFO", "/echo"),
        ("CONTENT_LENGTH", "100"),
    ]);
    short.extend(b"only ten b");
    {
        let mut c = std::os::unix::net::UnixStream::connect(s).unwrap();
        c.write_all(&short).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 500"),
            "{text}"
        );
    }
    // A packet trickled one byte at a time is served.
    {
        let mut c = std::os::unix::net::UnixStream::connect(s).unwrap();
        for b in &get {
            c.write_all(&[*b]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        assert_eq!(parse_response(&out).unwrap().0, 200);
    }
    // An incomplete packet is given up after the head deadline (10 s), holding no thread
    // meanwhile: a full request on another connection is answered at once.
    let mut silent = std::os::unix::net::UnixStream::connect(s).unwrap();
    silent.write_all(&get[..6]).unwrap();
    let started = Instant::now();
    assert_eq!(parse_response(&uwsgi_raw(s, &get)).unwrap().0, 200);
    assert_eq!(parse_response(&uwsgi_raw(s, &get)).unwrap().0, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
    assert_eq!(pids_of(&d), pids, "no worker died");
    let (status, _) = http_get(&d.addr, "/").unwrap();
    assert_eq!(status, 200, "the HTTP listener of the same instance serves");
}

/// `--limit-post` behind nginx: a body over it is answered `413` through nginx (the worker
/// reads and drops what nginx still sends, so nginx gets the answer, not a reset), one under
/// it is served, and the worker goes on.
#[test]
fn limit_post_through_nginx_is_a_413() {
    if !have_nginx() || !require_program("python3", "python3") {
        return;
    }
    let dir = TestDir::new("nginx-limit-post");
    let app = dir.write("app.py", APP);
    let sock = dir.join("app.sock");
    let d = Daemon::start(
        &dir,
        &[
            "--processes",
            "1",
            "--wsgi-file",
            app.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
            "--limit-post",
            "100000",
        ],
    );
    let pids = pids_of(&d);
    assert_python_program(&pids);
    let ngx = Nginx::start(&dir, &format!("unix:{}", sock.display()));
    let mut c = Client::new(&ngx.addr);
    for (n, want) in [
        (100_000usize, 200u16),
        (300_000, 413),
        (10, 200),
        (100_001, 413),
    ] {
        let body = vec![b'x'; n];
        let a = c.send(
            &format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n"),
            &body,
            false,
        );
        assert_eq!(a.status, want, "{n} bytes: {}", a.text());
        if want == 200 {
            assert_eq!(a.text(), format!("{n} {}", sha(&body)));
        }
    }
    d.wait_log("larger than --limit-post 100000");
    assert_eq!(pids_of(&d), pids);
}
