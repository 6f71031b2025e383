//! The bundled Python WSGI runner as an exec worker, driven directly: the master's exec path
//! (`uwsgid::exec::exec_worker` from a forked child) starts it on a loopback listener, and the
//! tests speak HTTP/1.1 to it and read its notify datagrams.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use uwsgi_tests::{wait_for, TestDir};
use uwsgid::exec::{exec_worker, ExecSpec};
use uwsgid::notify::{self, NotifyMessage};

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

fn unique(what: &str) -> String {
    format!(
        "uwsgid-test-{what}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

fn wait_readable(fd: impl AsFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout.as_millis() as u64).unwrap();
    poll(&mut fds, ms).unwrap() > 0
}

/// Spawn `argv` with `exec_worker` run from `pre_exec`, the way the master will. `arrange`
/// runs first in the child to place fds, as the master's own fd layout might.
fn spawn_worker(
    spec: ExecSpec,
    listeners: Vec<(RawFd, String)>,
    notify: String,
    arrange: impl Fn() -> io::Result<()> + Send + Sync + 'static,
) -> Child {
    let mut cmd = Command::new("/nonexistent/never-run-by-std");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec; exec_worker is written for
    // that context (glibc keeps malloc usable after fork).
    unsafe {
        cmd.pre_exec(move || {
            arrange()?;
            Err(exec_worker(&spec, &listeners, &notify, 7, 3))
        });
    }
    cmd.spawn().unwrap()
}

fn python(script: &str) -> ExecSpec {
    ExecSpec {
        argv: vec!["python3".into(), "-c".into(), script.into()],
        env: vec![("UWSGID_TEST_FOO".into(), "bar".into())],
        cwd: None,
        runner: false,
    }
}

#[test]
fn workers_get_listeners_and_systemd_variables() {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let (a_fd, b_fd) = (a.as_raw_fd(), b.as_raw_fd());
    let script = r#"
import os, socket
for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "UWSGID_WORKER_ID",
          "UWSGID_GENERATION", "UWSGID_TEST_FOO"):
    print("%s=%s" % (k, os.environ.get(k)))
print("pid=%d" % os.getpid())
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print("open=" + ",".join(str(fd) for fd in range(256) if is_open(fd)))
for fd in (3, 4):
    s = socket.socket(fileno=fd)
    print("fd%d=%d inheritable=%s" % (fd, s.getsockname()[1], os.get_inheritable(fd)))
    s.detach()
"#;
    // In the child: the listener for fd 3 sits at 4 and the one for fd 4 at 3 (crossed),
    // and a stray fd 20 without close-on-exec must not reach the program.
    let arrange = move || {
        // SAFETY: fcntl/dup2 on fds inherited from the parent, in the child before exec.
        // Both listeners are first copied out of the way (F_DUPFD never replaces an open
        // fd), since either may itself sit at 3, 4 or 20 in this multi-threaded test.
        unsafe {
            let a = libc::fcntl(a_fd, libc::F_DUPFD, 100);
            let b = libc::fcntl(b_fd, libc::F_DUPFD, 100);
            if a < 0
                || b < 0
                || libc::dup2(a, 20) < 0
                || libc::dup2(a, 4) < 0
                || libc::dup2(b, 3) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    };
    let child = spawn_worker(
        python(script),
        vec![(4, "127.0.0.1:1".into()), (3, "b".into())],
        "@notify-name".into(),
        arrange,
    );
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let a_port = a.local_addr().unwrap().port();
    let b_port = b.local_addr().unwrap().port();
    assert_eq!(
        lines,
        [
            "LISTEN_FDS=2".to_string(),
            format!("LISTEN_PID={pid}"),
            "LISTEN_FDNAMES=127.0.0.1_1:b".into(),
            "NOTIFY_SOCKET=@notify-name".into(),
            "UWSGID_WORKER_ID=7".into(),
            "UWSGID_GENERATION=3".into(),
            "UWSGID_TEST_FOO=bar".into(),
            format!("pid={pid}"),
            "open=0,1,2,3,4".into(),
            format!("fd3={a_port} inheritable=True"),
            format!("fd4={b_port} inheritable=True"),
        ]
    );
}

// ---- the bundled WSGI runner, driven end to end through exec_worker --------------------

/// `/hold?T` says it holds the request (file `held-T` beside the app) and answers once the test
/// writes `release-T` (bounded: a forgotten release answers "never released").
const APP: &str = r#"
import os, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"]))
    if path == "/hold":
        tag = environ["QUERY_STRING"]
        open(os.path.join(HERE, "held-" + tag), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(HERE, "release-" + tag)):
            if time.monotonic() > deadline:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
                return [b"never released"]
            time.sleep(0.005)
    if path == "/boom":
        raise RuntimeError("boom from the app")
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part%d;" % i for i in range(3))
    if path == "/env":
        keys = ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "HTTP_X_TEST",
                "REMOTE_PORT")
        text = " ".join("%s=%s" % (k, environ.get(k)) for k in keys)
        text += " LISTEN_FDS=%s" % os.environ.get("LISTEN_FDS")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"#;

/// A runner worker on its own loopback listener, killed (SIGKILL) on drop.
struct Runner {
    child: Child,
    port: u16,
    notify: OwnedFd,
    _dir: TestDir,
    _listener: TcpListener,
}

impl Runner {
    fn start(app: &str, args: &[&str]) -> Runner {
        let dir = TestDir::new("runner");
        std::fs::write(dir.join("app.py"), app).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let notify_name = format!("@{}", unique("runner"));
        let notify = notify::bind(&notify_name).unwrap();
        let mut argv: Vec<String> = vec!["python3".into(), "{runner}".into()];
        argv.push("--wsgi-file".into());
        argv.push(dir.join("app.py").to_str().unwrap().into());
        argv.extend(args.iter().map(|a| a.to_string()));
        let (argv, runner) = uwsgid::runner::expand(argv);
        let spec = ExecSpec {
            argv,
            env: vec![],
            cwd: None,
            runner,
        };
        let listeners = vec![(listener.as_raw_fd(), format!("127.0.0.1:{port}"))];
        let child = spawn_worker(spec, listeners, notify_name, || Ok(()));
        Runner {
            child,
            port,
            notify,
            _dir: dir,
            _listener: listener,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `GET /hold?tag` on `c` and return once the app holds it.
    fn hold(&self, c: &mut Client, tag: &str) {
        c.send(&format!("GET /hold?{tag} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let file = self._dir.join(&format!("held-{tag}"));
        wait_for(
            &format!("request {tag} held by the app"),
            Duration::from_secs(20),
            || file.exists().then_some(()),
        );
    }

    fn release(&self, tag: &str) {
        std::fs::write(self._dir.join(&format!("release-{tag}")), "").unwrap();
    }

    /// The next notify message from this worker, or None if it exited first.
    fn next_notify(&mut self, timeout: Duration) -> Option<NotifyMessage> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(msg) = notify::recv(&self.notify).unwrap() {
                if msg.pid == self.pid() {
                    return Some(msg);
                }
                continue;
            }
            if self.child.try_wait().unwrap().is_some() {
                return None;
            }
            wait_readable(&self.notify, Duration::from_millis(50));
        }
        panic!("no notify message from the runner within {timeout:?}");
    }

    fn wait_ready(&mut self) -> NotifyMessage {
        let msg = self.next_notify(Duration::from_secs(20));
        match msg {
            Some(m) if m.ready => m,
            other => panic!("runner not ready: {other:?}\n{}", self.stderr_after_kill()),
        }
    }

    fn stderr_after_kill(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut err);
        }
        err
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Wait for the worker's exit (bounded); its exit code and stderr.
    fn finish(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let child = &mut self.child;
        let status = wait_for("the runner to exit", timeout, || child.try_wait().unwrap());
        let mut err = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut err).unwrap();
        }
        (status.code(), err)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    fn send(&mut self, raw: &str) {
        self.stream.write_all(raw.as_bytes()).unwrap();
    }

    fn get(&mut self, path: &str) -> Response {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
        self.response(false)
    }

    /// Read one response (Content-Length, chunked, or up to EOF).
    fn response(&mut self, head_only: bool) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 "), "status line {line:?}");
        let status = line[9..12].parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only {
            return resp;
        }
        if let Some(len) = resp.header("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            self.reader.read_exact(&mut body).unwrap();
            resp.body = body;
        } else if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                line.clear();
                self.reader.read_line(&mut line).unwrap();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).unwrap();
                if size == 0 {
                    break;
                }
                resp.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            self.reader.read_to_end(&mut resp.body).unwrap();
        }
        resp
    }

    /// True if the server closed the connection (EOF) within the read timeout.
    fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0))
    }
}

#[test]
fn runner_serves_http_1_1() {
    let mut runner = Runner::start(APP, &["--threads", "4"]);
    let ready = runner.wait_ready();
    assert!(
        ready.status.as_deref().unwrap_or("").contains("127.0.0.1_"),
        "{ready:?}"
    );

    // Keep-alive: several requests on one connection, seen from one client port.
    let mut c = runner.connect();
    let first = c.get("/env?q=1");
    assert_eq!(first.status, 200);
    let text = first.text();
    assert!(
        text.contains("REQUEST_METHOD=GET PATH_INFO=/env QUERY_STRING=q=1"),
        "{text}"
    );
    assert!(text.contains("SERVER_PROTOCOL=HTTP/1.1"), "{text}");
    assert!(
        text.contains("LISTEN_FDS=None"),
        "runner must unset LISTEN_*: {text}"
    );
    let port = c.stream.local_addr().unwrap().port();
    assert!(text.contains(&format!("REMOTE_PORT={port}")), "{text}");
    assert_eq!(c.get("/").text(), "hello");
    // Percent-decoding of PATH_INFO, and a custom header.
    c.send("GET /%65nv HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\n\r\n");
    let text = c.response(false).text();
    assert!(
        text.contains("PATH_INFO=/env") && text.contains("HTTP_X_TEST=yes"),
        "{text}"
    );
    // Pipelined requests are answered in order.
    c.send("GET /?1 HTTP/1.1\r\nHost: t\r\n\r\nGET /env?2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response(false).text(), "hello");
    assert!(c.response(false).text().contains("QUERY_STRING=2"));
    // Bodies: Content-Length and chunked; streamed (chunked) responses; HEAD.
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde");
    assert_eq!(c.response(false).text(), "abcde");
    c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    assert_eq!(c.response(false).text(), "abcde");
    let streamed = c.get("/stream");
    assert_eq!(streamed.header("transfer-encoding"), Some("chunked"));
    assert_eq!(streamed.text(), "part0;part1;part2;");
    c.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.response(true);
    assert_eq!(head.header("content-length"), Some("5"));
    // An unread body is skipped, keeping the connection usable.
    c.send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz");
    assert_eq!(c.response(false).text(), "hello");
    // Connection: close is honoured.
    c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let last = c.response(false);
    assert_eq!(last.header("connection"), Some("close"));
    assert!(c.closed_by_server());

    // HTTP/1.0 without keep-alive: body delimited, then closed.
    let mut c = runner.connect();
    c.send("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(c.response(false).text(), "hello");
    assert!(c.closed_by_server());

    // Garbage gets 400 and a close; an application exception gets 500 and a traceback.
    let mut c = runner.connect();
    c.send("NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(c.response(false).status, 400);
    let mut c = runner.connect();
    c.send("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(c.response(false).status, 400);
    let mut c = runner.connect();
    assert_eq!(c.get("/boom").status, 500);
    // The worker survives all of this.
    assert_eq!(runner.connect().get("/").status, 200);

    runner.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, stderr) = runner.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("RuntimeError: boom from the app"),
        "{stderr}"
    );
}

#[test]
fn runner_serves_others_while_a_request_is_slow() {
    let mut runner = Runner::start(APP, &[]);
    runner.wait_ready();
    // A request the app holds until released: the others are answered meanwhile (a runner
    // serving one at a time would leave them waiting for it, and they would time out).
    let mut slow = runner.connect();
    runner.hold(&mut slow, "slow");
    for _ in 0..5 {
        assert_eq!(runner.connect().get("/").status, 200);
    }
    runner.release("slow");
    assert_eq!(slow.response(false).text(), "hello");
}

#[test]
fn runner_drains_on_sigterm() {
    let mut runner = Runner::start(APP, &[]);
    runner.wait_ready();
    let mut idle = runner.connect();
    assert_eq!(idle.get("/").status, 200);
    // In flight (held by the app until released) when the SIGTERM comes: the idle connection
    // is closed (after the drain's grace, DRAIN_GRACE) and STOPPING=1 sent while it is still
    // held, so neither waited for it.
    let mut slow = runner.connect();
    runner.hold(&mut slow, "slow");
    runner.signal(nix::sys::signal::Signal::SIGTERM);

    let stopping = runner
        .next_notify(Duration::from_secs(5))
        .expect("STOPPING=1");
    assert!(stopping.stopping, "{stopping:?}");
    assert!(
        idle.closed_by_server(),
        "idle keep-alive connection closed while the slow request is held"
    );
    runner.release("slow");
    let resp = slow.response(false);
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello"));
    assert_eq!(resp.header("connection"), Some("close"));
    let (code, stderr) = runner.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("drained after SIGTERM"), "{stderr}");
}

fn startup_failure(app: Option<&str>, args: &[&str]) -> String {
    let mut runner = Runner::start(app.unwrap_or(""), args);
    if app.is_none() {
        std::fs::remove_file(runner._dir.join("app.py")).unwrap();
    }
    let msg = runner.next_notify(Duration::from_secs(20));
    assert_eq!(msg, None, "no READY from a runner that cannot start");
    let (code, stderr) = runner.finish(Duration::from_secs(10));
    assert_eq!(code, Some(1), "{stderr}");
    stderr
}

#[test]
fn runner_startup_errors_exit_1_before_ready() {
    let err = startup_failure(Some("def app(e, s):\n    pass\n"), &[]);
    assert!(
        err.contains("defines no callable named 'application'"),
        "{err}"
    );
    let err = startup_failure(Some("def app(e, s):\n    pass\n"), &["--callable", "nope"]);
    assert!(err.contains("no callable named 'nope'"), "{err}");
    let err = startup_failure(Some("def application(:\n"), &[]);
    assert!(err.contains("syntax error at"), "{err}");
    let err = startup_failure(Some("import no_such_module_here\n"), &[]);
    assert!(
        err.contains("ModuleNotFoundError raised while loading"),
        "{err}"
    );
    let err = startup_failure(Some("application = 3\n"), &[]);
    assert!(
        err.contains("'application' is a int, not a callable"),
        "{err}"
    );
}

#[test]
fn a_runner_program_gets_the_sealed_source_after_the_listeners() {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let (a_fd, b_fd) = (a.as_raw_fd(), b.as_raw_fd());
    // Reports where the source is, whether it is complete and sealed, and which fds are
    // open; it never runs the runner itself.
    let script = r#"
import fcntl, hashlib, os
fd = int(os.environ["UWSGID_RUNNER_FD"])
src = os.pread(fd, os.fstat(fd).st_size, 0)
print("fd=%d" % fd)
print("sha=" + hashlib.sha256(src).hexdigest())
seals = fcntl.fcntl(fd, 1034)  # F_GET_SEALS
print("seals=%d" % seals)
try:
    os.pwrite(fd, b"x", 0)
    print("write=ok")
except OSError as e:
    print("write=refused")
def is_open(n):
    try:
        os.fstat(n)
        return True
    except OSError:
        return False
print("open=" + ",".join(str(n) for n in range(256) if is_open(n)))
"#;
    // The listeners sit crossed at 4 and 3, where the memfd would land if it were
    // created first at the lowest free number.
    let arrange = move || {
        // SAFETY: fcntl/dup2 on fds inherited from the parent, in the child before exec.
        unsafe {
            let a = libc::fcntl(a_fd, libc::F_DUPFD, 100);
            let b = libc::fcntl(b_fd, libc::F_DUPFD, 100);
            if a < 0 || b < 0 || libc::dup2(a, 4) < 0 || libc::dup2(b, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::close(5);
        }
        Ok(())
    };
    let mut spec = python(script);
    spec.runner = true;
    let child = spawn_worker(
        spec,
        vec![(4, "a".into()), (3, "b".into())],
        "@notify-name".into(),
        arrange,
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The memfd holds uwsgid::runner::SOURCE: the runner file, then the uwsgi module.
    let mut sum = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut sum.stdin.take().unwrap(),
        uwsgid::runner::SOURCE.as_bytes(),
    )
    .unwrap();
    let sha = sum.wait_with_output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout);
    let sha = sha.split_whitespace().next().unwrap();
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "fd=5".to_string(),
            format!("sha={sha}"),
            format!("seals={seals}"),
            "write=refused".into(),
            "open=0,1,2,3,4,5".into(),
        ]
    );
}
