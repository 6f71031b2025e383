#!/usr/bin/env python3
"""Side-by-side benchmark of uwsgid/uwsgictl against real uWSGI 2.0 (and nginx for raw serving).

Every figure is measured in the same run for both servers, on loopback, with the same worker
count. Run it through ./bench/run (which installs tools and builds release binaries); see
bench/README.md for what each scenario measures and how "reload complete" is decided.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APP = os.path.join(HERE, "app.py")
LUA = os.path.join(HERE, "report.lua")

# ---------------------------------------------------------------------------------------------
# small utilities

def now():
    return time.perf_counter()


def log(msg):
    sys.stderr.write("[bench %7.1fs] %s\n" % (now() - T_START, msg))
    sys.stderr.flush()


T_START = now()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def linfit(points):
    """Least-squares y = a + b*x; returns (a, b) or (None, None)."""
    pts = [(x, y) for x, y in points if y is not None]
    if len(pts) < 2:
        return None, None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None, None
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return my - b * mx, b


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        return None
    return out


def rss_kib(pid):
    st = proc_status(pid)
    if not st or "VmRSS" not in st:
        return None
    return int(st["VmRSS"].split()[0])


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def ctxt_switches(pid):
    st = proc_status(pid)
    if not st:
        return None
    return int(st.get("voluntary_ctxt_switches", 0)), int(st.get("nonvoluntary_ctxt_switches", 0))


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def http_get(port, path="/", timeout=2.0):
    """One HTTP/1.0 GET; returns (status, body) or (None, error)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return None, str(e)
    try:
        s.sendall(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        data = b"".join(chunks)
    except OSError as e:
        return None, str(e)
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not m:
        return None, "bad response %r" % data[:80]
    return int(m.group(1)), body


def read_stats_raw(addr, timeout=2.0):
    host, _, port = addr.rpartition(":")
    s = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        chunks = []
        while True:
            b = s.recv(262144)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    return b"".join(chunks)


def read_stats(addr, timeout=2.0):
    try:
        raw = read_stats_raw(addr, timeout)
        return json.loads(raw.decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def fifo_write(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# servers

LIVE = []  # every Server started and not yet stopped: cleaned up on any exit


class Server:
    """One master we started, plus what we know of its workers (for cleanup by pid)."""

    kind = "?"

    def __init__(self, workdir, workers, tag):
        self.workers = workers
        self.dir = tempfile.mkdtemp(prefix="%s-%s-" % (self.kind, tag), dir=workdir)
        self.port = free_port()
        self.stats_port = free_port()
        self.stats_addr = "127.0.0.1:%d" % self.stats_port
        self.fifo = os.path.join(self.dir, "master.fifo")
        self.pidfile = os.path.join(self.dir, "server.pid")
        self.logfile = os.path.join(self.dir, "server.log")
        self.proc = None
        self.known = {}  # worker pid -> start time, for a safe cleanup kill

    def argv(self):
        raise NotImplementedError

    def env(self):
        return dict(os.environ)

    extra = ()  # more arguments for one scenario (set on the instance)

    def start(self):
        self.t_spawn = now()
        self.proc = subprocess.Popen(self.argv() + list(self.extra), cwd=self.dir,
                                     env=self.env(),
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(self.logfile + ".out", "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        LIVE.append(self)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def wait_http(self, timeout=30.0, interval=0.001):
        """Seconds from spawn to the first 200 on GET /, or None."""
        deadline = now() + timeout
        while now() < deadline:
            if self.proc.poll() is not None:
                return None
            st, _ = http_get(self.port, "/", timeout=1.0)
            if st == 200:
                return now() - self.t_spawn
            time.sleep(interval)
        return None

    def stats(self):
        return read_stats(self.stats_addr)

    def remember_workers(self, doc=None):
        doc = doc or self.stats()
        if doc:
            for w in doc.get("workers", []):
                pid = w.get("pid") or 0
                if pid > 0 and pid not in self.known:
                    self.known[pid] = start_time(pid)

    def worker_pids(self, doc=None):
        doc = doc or self.stats()
        if not doc:
            return []
        return [w["pid"] for w in doc.get("workers", []) if w.get("pid", 0) > 0]

    def wait_ready(self, timeout=60.0):
        """Wait until every worker slot answers as ready in stats."""
        deadline = now() + timeout
        while now() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited during startup (see %s)" % (self.kind, self.logfile))
            doc = self.stats()
            if doc and self.all_ready(doc):
                self.remember_workers(doc)
                return doc
            time.sleep(0.005)
        raise RuntimeError("%s: workers not ready after %.0fs" % (self.kind, timeout))

    def children(self):
        """Current children of the master, from /proc (pid -> start time)."""
        out = {}
        try:
            for tid in os.listdir("/proc/%d/task" % self.proc.pid):
                with open("/proc/%d/task/%s/children" % (self.proc.pid, tid)) as f:
                    for p in f.read().split():
                        out[int(p)] = start_time(int(p))
        except OSError:
            pass
        return out

    def stop(self, grace=1.0):
        """SIGINT (both servers: kill the stack at once), SIGKILL after `grace` s; then make
        sure every worker we have seen is gone, by pid and start time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.remember_workers()
            except Exception:
                pass
            self.known.update(self.children())
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        deadline = now() + 0.5
        for pid, st in self.known.items():
            while alive(pid) and start_time(pid) == st and now() < deadline:
                time.sleep(0.01)
            if alive(pid) and start_time(pid) == st:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self in LIVE:
            LIVE.remove(self)
        self.proc = None


class Uwsgi(Server):
    kind = "uwsgi"

    def __init__(self, workdir, workers, tag, lazy=False):
        self.lazy = lazy
        super().__init__(workdir, workers, tag)

    def argv(self):
        a = ["uwsgi", "--master", "--http-socket", "127.0.0.1:%d" % self.port,
             "--plugin", "python3", "--wsgi-file", APP, "--processes", str(self.workers),
             "--stats", self.stats_addr, "--master-fifo", self.fifo,
             "--safe-pidfile", self.pidfile, "--logto", self.logfile,
             "--disable-logging",
             # uWSGI's http-socket closes every connection after one response but says
             # HTTP/1.1 without "Connection: close"; saying it lets wrk reconnect cleanly
             # instead of counting each close as a read error
             "--add-header", "Connection: close"]
        if self.lazy:
            a.append("--lazy-apps")
        return a

    @staticmethod
    def all_ready(doc):
        ws = doc.get("workers", [])
        return ws and all(w.get("pid", 0) > 0 and w.get("accepting") == 1 for w in ws)


class Uwsgid(Server):
    kind = "uwsgid"

    def argv(self):
        return [os.path.join(BIN_DIR, "uwsgid"), "--http-socket", "127.0.0.1:%d" % self.port,
                "--processes", str(self.workers), "--stats", self.stats_addr,
                "--master-fifo", self.fifo, "--safe-pidfile", self.pidfile,
                "--logto", self.logfile, "--demo-routes"]

    def env(self):
        e = dict(os.environ)
        e["UWSGID_RUNTIME_DIR"] = os.path.join(self.dir, "run")
        return e

    @staticmethod
    def all_ready(doc):
        ext = doc.get("uwsgid") or {}
        ws = doc.get("workers", [])
        if not ws or ext.get("reload") or ext.get("draining"):
            return False
        return all(w.get("pid", 0) > 0 and w.get("accepting") == 1 and
                   (w.get("uwsgid") or {}).get("ready", True) for w in ws)


# The interpreter uWSGI's python3 plugin embeds; uwsgid is given the same one, so that both
# run the app on the same Python (a `python3` on PATH may be a version manager's shim).
SYSTEM_PYTHON = "/usr/bin/python3"


class UwsgidPy(Uwsgid):
    """uwsgid running bench/app.py through its bundled WSGI runner (preload: one zygote per
    generation imports the app and forks the workers, like uWSGI without --lazy-apps)."""

    label = "uwsgid --wsgi-file"

    def argv(self):
        a = [os.path.join(BIN_DIR, "uwsgid"), "--http-socket", "127.0.0.1:%d" % self.port,
             "--processes", str(self.workers), "--stats", self.stats_addr,
             "--master-fifo", self.fifo, "--safe-pidfile", self.pidfile,
             "--logto", self.logfile, "--wsgi-file", APP]
        if os.path.exists(SYSTEM_PYTHON):
            a += ["--python", SYSTEM_PYTHON]
        return a


class UwsgiSock(Uwsgi):
    """uWSGI with a uwsgi-protocol socket for nginx's uwsgi_pass (and 8 threads, as uwsgid's
    runner), besides its http-socket (kept for readiness probes)."""

    def __init__(self, workdir, workers, tag):
        super().__init__(workdir, workers, tag)
        self.uwsgi_port = free_port()

    def argv(self):
        return super().argv() + ["--socket", "127.0.0.1:%d" % self.uwsgi_port,
                                 "--threads", "8", "--enable-threads"]


class UwsgidPySock(UwsgidPy):
    """uwsgid running bench/app.py with a uwsgi-protocol socket for nginx's uwsgi_pass (the
    native worker, uwsgid-python, serves it where it is built beside uwsgid)."""

    def __init__(self, workdir, workers, tag):
        super().__init__(workdir, workers, tag)
        self.uwsgi_port = free_port()

    def argv(self):
        return super().argv() + ["--socket", "127.0.0.1:%d" % self.uwsgi_port,
                                 "--threads", "8"]


class UwsgidSock(Uwsgid):
    """uwsgid's built-in handler (no Python) on a uwsgi-protocol socket: what nginx and the
    machine leave to any server behind uwsgi_pass."""

    def __init__(self, workdir, workers, tag):
        super().__init__(workdir, workers, tag)
        self.uwsgi_port = free_port()

    def argv(self):
        return super().argv() + ["--socket", "127.0.0.1:%d" % self.uwsgi_port]


class Nginx:
    kind = "nginx"

    def __init__(self, workdir, workers, uwsgi_upstream=None):
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=workdir)
        # nginx workers drop to an unprivileged user when started as root: let them read
        for d in (workdir, self.dir):
            os.chmod(d, 0o755)
        self.port = free_port()
        self.workers = workers
        os.makedirs(os.path.join(self.dir, "html"))
        os.makedirs(os.path.join(self.dir, "logs"))
        with open(os.path.join(self.dir, "html", "index.html"), "w") as f:
            f.write("Hello World")
        conf = """
worker_processes %d;
pid %s/nginx.pid;
error_log %s/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %s/tmp_body;
    proxy_temp_path %s/tmp_proxy;
    fastcgi_temp_path %s/tmp_fcgi;
    uwsgi_temp_path %s/tmp_uwsgi;
    scgi_temp_path %s/tmp_scgi;
    default_type text/plain;
    server {
        listen 127.0.0.1:%d;
        location / { root %s/html; index index.html; }
    }
}
""" % ((workers,) + (self.dir,) * 7 + (self.port, self.dir))
        if uwsgi_upstream:
            # Every request to uwsgi_pass (nginx's own uwsgi_params, as deployments use).
            conf = conf.replace(
                "location / { root %s/html; index index.html; }" % self.dir,
                "location / { include /etc/nginx/uwsgi_params; uwsgi_pass %s; }"
                % uwsgi_upstream)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-c", self.conf,
                                      "-g", "daemon off;"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr"), "w"),
                                     start_new_session=True)
        LIVE.append(self)
        deadline = now() + 10
        while now() < deadline:
            if http_get(self.port, "/")[0] == 200:
                self.workers_pids = self.children()
                return self
            time.sleep(0.01)
        raise RuntimeError("nginx did not answer")

    def children(self):
        out = {}
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                for p in f.read().split():
                    out[int(p)] = start_time(int(p))
        except OSError:
            pass
        return out

    def stop(self):
        if self.proc is None:
            return
        kids = self.children()
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid, st in kids.items():
            if alive(pid) and start_time(pid) == st:
                os.kill(pid, signal.SIGKILL)
        if self in LIVE:
            LIVE.remove(self)
        self.proc = None


def cleanup():
    for s in list(LIVE):
        try:
            s.stop()
        except Exception as e:  # keep cleaning the others
            sys.stderr.write("cleanup of %s failed: %s\n" % (s.kind, e))


# ---------------------------------------------------------------------------------------------
# rollback (issue 16): servers whose answer says which release they run

SNAP_APP = """def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s"]
"""


class SnapMixin:
    """A release is `old` or `new`: a static directory named in an ini file (built-in
    workers) or the app file's answer (Python); `set_release` writes it for the next reload,
    `probe` is the path whose answer names the release."""

    def setup_release(self, python):
        self.python = python
        self.ini = os.path.join(self.dir, "release.ini")
        self.app = os.path.join(self.dir, "snapapp.py")
        for r in ("old", "new"):
            os.makedirs(os.path.join(self.dir, r), exist_ok=True)
            with open(os.path.join(self.dir, r, "v.txt"), "w") as f:
                f.write(r)
        self.probe = "/" if python else "/v.txt"
        self.set_release("old")

    def set_release(self, r):
        if self.python:
            with open(self.app, "w") as f:
                f.write(SNAP_APP % r)
        else:
            with open(self.ini, "w") as f:
                f.write("[uwsgi]\ncheck-static = %s\n" % os.path.join(self.dir, r))


class SnapUwsgid(SnapMixin, Uwsgid):
    def __init__(self, workdir, workers, tag, python):
        Uwsgid.__init__(self, workdir, workers, tag)
        self.setup_release(python)

    def argv(self):
        a = [os.path.join(BIN_DIR, "uwsgid"), "--http-socket", "127.0.0.1:%d" % self.port,
             "--processes", str(self.workers), "--stats", self.stats_addr,
             "--master-fifo", self.fifo, "--safe-pidfile", self.pidfile,
             "--logto", self.logfile, "--auto-snapshot"]
        if self.python:
            # 1 thread per worker, as uWSGI's side (no --threads) runs: like for like
            a += ["--wsgi-file", self.app, "--threads", "1"]
            if os.path.exists(SYSTEM_PYTHON):
                a += ["--python", SYSTEM_PYTHON]
        else:
            a += ["--ini", self.ini]
        return a


class SnapUwsgi(SnapMixin, Uwsgi):
    def __init__(self, workdir, workers, tag, python):
        Uwsgi.__init__(self, workdir, workers, tag)
        self.setup_release(python)

    def argv(self):
        a = ["uwsgi", "--master", "--http-socket", "127.0.0.1:%d" % self.port,
             "--processes", str(self.workers), "--stats", self.stats_addr,
             "--master-fifo", self.fifo, "--safe-pidfile", self.pidfile,
             "--logto", self.logfile, "--disable-logging",
             "--add-header", "Connection: close"]
        if self.python:
            a += ["--plugin", "python3", "--wsgi-file", self.app]
        else:
            # uWSGI serves static files only with a request plugin loaded: the bench app.
            a += ["--plugin", "python3", "--wsgi-file", APP, "--ini", self.ini]
        return a


def loadavg_1m():
    """The 1-minute load average (None where /proc/loadavg cannot be read)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def time_to_release(server, release, t0, timeout=60.0):
    """Milliseconds from t0 until the server answers `release` on every probe: the time the
    first answer of the final run of 2 x workers consecutive probes (fresh connections, one at
    a time) that all answered it arrived; None on a timeout. Errors and other answers reset
    the run."""
    need = 2 * server.workers
    run, first = 0, None
    deadline = t0 + timeout
    while now() < deadline:
        st, body = http_get(server.port, server.probe, timeout=2.0)
        # When the answer came, not when the probe was sent: a probe held in the listen
        # queue while the server has no worker (uWSGI between generations) is answered by
        # the new one only at the end of the reload.
        t = now()
        if st == 200 and body.strip() == release.encode():
            if run == 0:
                first = t
            run += 1
            if run >= need:
                return (first - t0) * 1000.0
        else:
            run = 0
    return None


# ---------------------------------------------------------------------------------------------
# reload measurement

class ReloadKind:
    def __init__(self, name, uwsgi_how, ours_how, lazy=False):
        self.name = name
        self.uwsgi_how = uwsgi_how  # ("signal", SIG) or ("fifo", b"x")
        self.ours_how = ours_how
        self.lazy = lazy


KINDS = {
    "graceful": ReloadKind("graceful", ("signal", signal.SIGHUP), ("signal", signal.SIGHUP)),
    # uWSGI 2.0's SIGTERM is its brutal reload (without --die-on-term), as is ours
    "brutal": ReloadKind("brutal", ("signal", signal.SIGTERM), ("signal", signal.SIGTERM)),
    "chain": ReloadKind("chain", ("fifo", b"c"), ("fifo", b"c"), lazy=True),
    "workers": ReloadKind("workers", ("fifo", b"w"), ("fifo", b"w")),
}


def trigger(server, how):
    if how[0] == "signal":
        os.kill(server.pid, how[1])
    else:
        fifo_write(server.fifo, how[1])


POLL = 0.0005  # polling interval (uwsgid: stats; uWSGI: /proc) while a reload completes


def snapshot(server):
    """What a reload is judged against: the workers and the last reload before it."""
    before = server.stats()
    if not before:
        return None
    server.remember_workers(before)
    ext = before.get("uwsgid") or {}
    return {"old": set(server.worker_pids(before)), "last": ext.get("last_reload"),
            "gen": ext.get("generation"), "wall_ms": time.time() * 1000.0}


def completion(server, snap, doc):
    """(done, error, last_reload) for one stats document read after a reload was sent.

    uWSGI: every slot holds a live worker whose pid is not one of the old ones and which says
    accepting == 1. uwsgid: its own last_reload is a new one, says complete, and nothing is
    still reloading or draining."""
    if server.kind == "uwsgi":
        ws = doc.get("workers", [])
        return (len(ws) == server.workers and
                all(w.get("pid", 0) > 0 and w["pid"] not in snap["old"] and
                    w.get("accepting") == 1 for w in ws)), None, None
    ext = doc.get("uwsgid") or {}
    last = ext.get("last_reload") or {}
    fresh = bool(last) and last != snap["last"] and \
        last.get("finished_unix_ms", 0) >= snap["wall_ms"] - 50
    if fresh and last.get("result") not in (None, "complete"):
        return False, "reload %s: %s" % (last.get("result"), last.get("reason")), last
    return bool(fresh and last.get("result") == "complete" and not ext.get("reload")
                and not ext.get("draining")), None, last


# What a thread waiting for a connection shows in /proc/PID/task/TID/wchan.
ACCEPT_WAITS = ("do_epoll_wait", "ep_poll", "inet_csk_accept", "do_sys_poll", "do_select")


def waiting_to_accept(pid):
    """Some thread of `pid` is blocked where a worker waits for its next connection."""
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/wchan" % (pid, tid)) as f:
                if f.read().strip() in ACCEPT_WAITS:
                    return True
    except OSError:
        pass
    return False


def uwsgi_replaced(server, old):
    """uWSGI's reload is complete, judged from /proc without waking its master: the master
    has exactly `workers` children, none of them a pre-reload pid, each waiting to accept."""
    kids = server.children()
    return (len(kids) == server.workers and not (set(kids) & old)
            and all(waiting_to_accept(p) for p in kids))


def reload_once(server, kind, timeout):
    """Send one reload and time it to completion. Returns a dict with ms or an error."""
    snap = snapshot(server)
    if not snap:
        return {"error": "no stats before reload"}
    how = kind.uwsgi_how if server.kind == "uwsgi" else kind.ours_how
    try:
        log_offset = os.path.getsize(server.logfile)
    except OSError:
        log_offset = 0
    snap["wall_ms"] = time.time() * 1000.0
    t0 = now()
    trigger(server, how)
    deadline = t0 + timeout
    polls = 0
    if server.kind == "uwsgi":
        # uWSGI's master sleeps up to 1 s between loops and every stats read wakes it: polled
        # through its stats socket, its reloads look 10-30x faster than its users see them.
        # So it is watched from /proc alone, and its stats are read once it is done.
        while now() < deadline:
            if server.proc.poll() is not None:
                return {"error": "master exited during reload"}
            polls += 1
            if uwsgi_replaced(server, snap["old"]):
                t1 = now()
                server.remember_workers()
                st, _ = http_get(server.port, "/")
                return {"ms": (t1 - t0) * 1000.0, "http_ok": st == 200, "polls": polls}
            time.sleep(POLL)
        return {"error": "timeout after %.0fs" % timeout}
    while now() < deadline:
        if server.proc.poll() is not None:
            return {"error": "master exited during reload"}
        doc = read_stats(server.stats_addr, 1.0)
        polls += 1
        if doc:
            done, err, last = completion(server, snap, doc)
            if err:
                return {"error": err}
            if done:
                t1 = now()
                server.remember_workers(doc)
                st, _ = http_get(server.port, "/")
                r = {"ms": (t1 - t0) * 1000.0, "http_ok": st == 200, "polls": polls}
                if server.kind == "uwsgid":
                    r["self_ms"] = last.get("duration_ms")
                    r["generation"] = (doc.get("uwsgid") or {}).get("generation")
                    r["gen_before"] = snap["gen"]
                    r["phases_ms"] = log_phases(server.logfile, log_offset)
                return r
        time.sleep(POLL)
    return {"error": "timeout after %.0fs" % timeout}


def settle(server, timeout=30.0):
    """Before the next repetition: everything ready and the master quiet for a moment."""
    server.wait_ready(timeout)
    time.sleep(0.15)


# ---------------------------------------------------------------------------------------------
# scenarios


class Bench:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.workdir = tempfile.mkdtemp(prefix="uwsgid-bench-")
        self.results = {"scenarios": {}}
        self.rows = []  # (scenario, metric, ours, uwsgi, ratio_text, target_text, met)
        self.deadline = T_START + args.budget
        self.have_ours = OURS_OK

    def time_left(self):
        return self.deadline - now()

    def row(self, scenario, metric, ours, theirs, ratio=None, target=None, met=None, unit=""):
        self.rows.append({"scenario": scenario, "metric": metric, "ours": ours,
                          "uwsgi": theirs, "ratio": ratio, "target": target, "met": met,
                          "unit": unit})

    def servers(self, workers, tag, lazy=False):
        out = []
        if self.have_ours:
            out.append(Uwsgid(self.workdir, workers, tag))
        out.append(Uwsgi(self.workdir, workers, tag, lazy=lazy))
        return out

    # 1 + 6a: reload completion vs worker count, per kind ---------------------------------
    def reloads(self):
        q = self.quick
        plan = []  # (kind, workers, reps)
        if q:
            plan += [("graceful", 4, 3), ("graceful", 64, 3), ("chain", 16, 2)]
        else:
            plan += [("graceful", n, r) for n, r in ((1, 5), (4, 7), (16, 5), (64, 7), (256, 3))]
            plan += [("brutal", n, 3) for n in (1, 4, 16, 64, 256)]
            plan += [("workers", n, 3) for n in (1, 4, 16, 64, 256)]
            plan += [("chain", n, r) for n, r in ((1, 3), (4, 3), (16, 5), (64, 3), (256, 2))]
        res = self.results["scenarios"].setdefault("reload", {})
        for kind_name, n, reps in plan:
            if self.time_left() < 120 and not (kind_name == "graceful" and n in (4, 64)) \
                    and not (kind_name == "chain" and n == 16):
                log("skipping %s reload with %d workers: time budget" % (kind_name, n))
                continue
            kind = KINDS[kind_name]
            entry = res.setdefault(kind_name, {}).setdefault(str(n), {})
            # both servers up at once (the idle one costs nothing), repetitions alternated,
            # so a burst of load from elsewhere on the machine does not land on one side only
            servers = self.servers(n, "%s%d" % (kind_name, n), lazy=kind.lazy)
            samples = {s.kind: [] for s in servers}
            timeout = 30 + (n * 1.5 if kind_name == "chain" else n * 0.2)
            try:
                for srv in servers:
                    srv.start()
                for srv in servers:
                    srv.wait_ready(60 + n * 0.5)
                broken = set()
                for i in range(reps):
                    if kind_name in ("workers", "chain"):
                        # uWSGI counts respawns less than its check interval apart (1 s, in
                        # whole seconds) as a fork bomb and then sleeps 2 s: space the
                        # repetitions out of that window (1.2 s was measured not enough)
                        time.sleep(2.2)
                    for srv in servers:
                        if srv.kind in broken:
                            continue
                        settle(srv, 60 + n * 0.5)
                        r = reload_once(srv, kind, timeout)
                        samples[srv.kind].append(r)
                        log("%s %s reload, %d workers, rep %d: %s" % (
                            srv.kind, kind_name, n, i + 1,
                            "%.1f ms" % r["ms"] if "ms" in r else r["error"]))
                        if "error" in r:
                            broken.add(srv.kind)
            finally:
                for srv in servers:
                    srv.stop()
            for who, smp in samples.items():
                ms = [x["ms"] for x in smp if "ms" in x]
                entry[who] = {
                    "samples_ms": ms, "median_ms": median(ms),
                    "errors": [x["error"] for x in smp if "error" in x],
                    "http_failures": sum(1 for x in smp if x.get("http_ok") is False),
                }
                if who == "uwsgid":
                    entry[who]["self_reported_ms"] = [x.get("self_ms") for x in smp
                                                      if "ms" in x]
                    ph = [x.get("phases_ms") for x in smp if x.get("phases_ms")]
                    entry[who]["log_phases_median_ms"] = {
                        k: median([p.get(k) for p in ph])
                        for k in ("check", "exec", "workers", "total")} if ph else None
        # rows and fits
        fits = {}
        for kind_name, by_n in res.items():
            for n_s, entry in sorted(by_n.items(), key=lambda kv: int(kv[0])):
                o = (entry.get("uwsgid") or {}).get("median_ms")
                u = (entry.get("uwsgi") or {}).get("median_ms")
                target = None
                if kind_name == "graceful" and n_s in ("4", "64"):
                    target = 10.0
                if kind_name == "chain" and n_s == "16":
                    target = 5.0
                self.row_speed("%s reload, %s workers" % (kind_name, n_s), "median ms", o, u,
                               target)
                selfs = (entry.get("uwsgid") or {}).get("self_reported_ms") or []
                if target and selfs:
                    self.row("%s reload, %s workers" % (kind_name, n_s),
                             "uwsgid's own duration_ms", median(selfs), None, unit="ms")
                ph = (entry.get("uwsgid") or {}).get("log_phases_median_ms") or {}
                if target and ph.get("check") is not None:
                    self.row("%s reload, %s workers" % (kind_name, n_s),
                             "uwsgid log ms: check/exec/workers",
                             "%g/%g/%g" % (ph.get("check") or 0, ph.get("exec") or 0,
                                           ph.get("workers") or 0), None, unit="ms")
            for who in ("uwsgid", "uwsgi"):
                pts = [(int(n_s), (e.get(who) or {}).get("median_ms"))
                       for n_s, e in by_n.items()]
                a, b = linfit(pts)
                fits.setdefault(kind_name, {})[who] = {"intercept_ms": a, "per_worker_ms": b}
                if any(n > 64 for n, _ in pts):
                    # uWSGI grows faster than linearly past 64 workers: also fit up to 64
                    a, b = linfit([(n, y) for n, y in pts if n <= 64])
                    fits.setdefault(kind_name + " (1-64 workers)", {})[who] = {
                        "intercept_ms": a, "per_worker_ms": b}
        self.results["scenarios"]["reload_fit"] = fits
        for kind_name, f in fits.items():
            o = (f.get("uwsgid") or {}).get("per_worker_ms")
            u = (f.get("uwsgi") or {}).get("per_worker_ms")
            if o is not None or u is not None:
                self.row("%s reload fit" % kind_name, "ms per worker", o, u,
                         ratio=(u / o if o and u and o > 0 else None), unit="ms")
                oi = (f.get("uwsgid") or {}).get("intercept_ms")
                ui = (f.get("uwsgi") or {}).get("intercept_ms")
                self.row("%s reload fit" % kind_name, "fixed ms", oi, ui,
                         ratio=(ui / oi if oi and ui and oi > 0 else None), unit="ms")

    def row_speed(self, scenario, metric, ours, theirs, target=None):
        """A time: ratio is uWSGI/ours (how many times faster we are)."""
        ratio = theirs / ours if ours and theirs else None
        met = (ratio >= target) if (target and ratio is not None) else None
        self.row(scenario, metric, ours, theirs, ratio, (">=%gx faster" % target) if target
                 else None, met, unit="ms")

    # 2: RSS ----------------------------------------------------------------------------
    def rss(self):
        out = self.results["scenarios"].setdefault("rss", {})
        for srv in self.servers(4, "rss"):
            try:
                srv.start()
                doc = srv.wait_ready(30)
                time.sleep(1.0)
                doc = srv.stats() or doc
                wp = srv.worker_pids(doc)
                out[srv.kind] = {
                    "master_rss_kib": rss_kib(srv.pid), "master_pss_kib": pss_kib(srv.pid),
                    "worker_rss_kib": median([rss_kib(p) for p in wp]),
                    "worker_pss_kib": median([pss_kib(p) for p in wp]),
                    "workers": len(wp)}
                log("%s idle RSS: %s" % (srv.kind, out[srv.kind]))
            finally:
                srv.stop()
        o, u = out.get("uwsgid", {}), out.get("uwsgi", {})
        for key, label, target in (("master_rss_kib", "idle master RSS", 0.25),
                                   ("master_pss_kib", "idle master PSS", None),
                                   ("worker_rss_kib", "idle worker RSS (median)", None),
                                   ("worker_pss_kib", "idle worker PSS (median)", None)):
            ov, uv = o.get(key), u.get(key)
            ratio = ov / uv if ov and uv else None
            met = (ratio <= target) if (target and ratio is not None) else None
            self.row(label, "KiB", ov, uv, ratio, ("<=%gx of uWSGI" % target) if target else None,
                     met, unit="KiB")

    # 3: start to first 200 --------------------------------------------------------------
    def startup(self):
        reps = 3 if self.quick else 7
        out = self.results["scenarios"].setdefault("start", {})
        samples = {}
        for i in range(reps):
            for srv in self.servers(4, "start%d" % i):
                try:
                    srv.start()
                    t = srv.wait_http(30)
                    samples.setdefault(srv.kind, []).append(t * 1000.0 if t else None)
                finally:
                    srv.stop()
        for k, v in samples.items():
            out[k] = {"samples_ms": v, "median_ms": median(v)}
        self.row_speed("start to first 200 (4 workers)", "median ms",
                       (out.get("uwsgid") or {}).get("median_ms"),
                       (out.get("uwsgi") or {}).get("median_ms"), 5.0)

    # 4: throughput ---------------------------------------------------------------------
    def wrk(self, port, path="/", seconds=5, threads=2, conns=32):
        cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s",
               "-s", LUA, "http://127.0.0.1:%d%s" % (port, path)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=seconds + 30)
        for line in p.stdout.splitlines():
            if line.startswith("WRKJSON "):
                d = json.loads(line[8:])
                d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
                d["errors"] = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
                return d
        raise RuntimeError("wrk gave no report: %s" % p.stdout[-500:])

    def throughput(self):
        reps = 1 if self.quick else 3
        secs = 3 if self.quick else 5
        out = self.results["scenarios"].setdefault("throughput", {})
        runs = {}
        servers = self.servers(2, "tput")
        ng = Nginx(self.workdir, 2) if shutil.which("nginx") else None
        try:
            for s in servers:
                s.start()
                s.wait_ready(30)
            others = []
            if ng:
                try:
                    ng.start()
                    others = [ng]
                except Exception as e:  # nginx is a reference column, not a target
                    log("nginx left out: %r" % e)
            for i in range(reps):
                for s in servers + others:
                    self.wrk(s.port, "/", 1, 2, 32)  # warm-up
                    d = self.wrk(s.port, "/", secs, 2, 32)
                    runs.setdefault(s.kind, []).append(d)
                    log("%s wrk: %.0f req/s p99 %.2f ms errors %d" % (
                        s.kind, d["rps"], d["p99_us"] / 1000.0, d["errors"]))
        finally:
            for s in servers:
                s.stop()
            if ng:
                ng.stop()
        for k, v in runs.items():
            out[k] = {"runs": v, "rps_median": median([d["rps"] for d in v]),
                      "p99_ms_median": median([d["p99_us"] / 1000.0 for d in v]),
                      "errors": sum(d["errors"] for d in v)}
        o, u, n = out.get("uwsgid", {}), out.get("uwsgi", {}), out.get("nginx", {})
        ov, uv = o.get("rps_median"), u.get("rps_median")
        ratio = ov / uv if ov and uv else None
        self.row("hello world, 2 workers, wrk -t2 -c32", "req/s", ov, uv, ratio, ">=1.5x",
                 (ratio >= 1.5) if ratio else None, unit="req/s")
        op, up = o.get("p99_ms_median"), u.get("p99_ms_median")
        self.row("hello world, 2 workers, wrk -t2 -c32", "p99 ms", op, up,
                 up / op if op and up else None, unit="ms")
        if n:
            self.row("nginx static Hello World (2 workers)", "req/s | p99 ms",
                     n.get("rps_median"), n.get("p99_ms_median"), None, None, None,
                     unit="nginx")

    # 5: reload storm under load ----------------------------------------------------------
    def storm_once(self, srv, path, secs, port=None):
        """wrk on `path` for `secs` while SIGHUP reloads `srv` every second (each after the
        previous one completed); returns wrk's figures plus reload counts. `srv` is started.
        `port`: where wrk sends (nginx in front of `srv`), else `srv`'s own port."""
        res = {}
        p = subprocess.Popen(
            ["wrk", "-t2", "-c32", "-d%ds" % secs, "--timeout", "5s", "-s", LUA,
             "http://127.0.0.1:%d%s" % (port or srv.port, path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reloads, waited, died = 0, 0.0, False
        t_end = now() + secs - 0.5
        t_next = now() + 0.5
        snap = None
        while now() < t_end:
            time.sleep(max(0.0, t_next - now()))
            # uWSGI dies if a SIGHUP lands while its new image starts (its handlers are not
            # installed yet), so wait for the previous reload to be complete: that measures
            # reloads, not that bug
            t_w = now()
            while snap and now() < t_end:
                if srv.kind == "uwsgi":
                    if uwsgi_replaced(srv, snap["old"]):  # from /proc: see reload_once
                        break
                else:
                    doc = srv.stats()
                    if doc and completion(srv, snap, doc)[0]:
                        break
                if srv.proc.poll() is not None:
                    break
                time.sleep(0.01)
            waited += now() - t_w
            if srv.proc.poll() is not None:
                died = True
                break
            if now() >= t_end:
                break
            snap = snapshot(srv)
            if snap is None:
                time.sleep(0.01)
                continue
            os.kill(srv.pid, signal.SIGHUP)
            reloads += 1
            t_next = now() + 1.0
        stdout, _ = p.communicate(timeout=secs + 30)
        for line in stdout.splitlines():
            if line.startswith("WRKJSON "):
                res = json.loads(line[8:])
        res["reloads"] = reloads
        res["master_died"] = died or srv.proc.poll() is not None
        res["waited_for_previous_reload_s"] = waited
        res["errors"] = sum(res.get(k, 0) for k in
                            ("connect", "read", "write", "status", "timeout"))
        return res

    def reload_under_load(self):
        secs = 5 if self.quick else 10
        out = self.results["scenarios"].setdefault("reload_under_load", {})
        for path in ("/", "/sleep?ms=50"):
            for srv in self.servers(4, "storm"):
                try:
                    srv.start()
                    srv.wait_ready(30)
                    res = self.storm_once(srv, path, secs)
                    out.setdefault(path, {})[srv.kind] = res
                    log("%s reload storm %s: %d reloads, %s requests, %d errors, p99 %.1f ms, "
                        "max %.1f ms" % (srv.kind, path, res["reloads"], res.get("requests"),
                                         res["errors"], res.get("p99_us", 0) / 1000.0,
                                         res.get("max_us", 0) / 1000.0))
                finally:
                    srv.stop()
            o, u = out[path].get("uwsgid", {}), out[path].get("uwsgi", {})
            sc = "GET %s, HUP every 1s, 4 workers" % path
            self.row(sc, "failed requests", o.get("errors"), u.get("errors"), None, "0 (ours)",
                     (o.get("errors") == 0) if o else None, unit="count")
            self.row(sc, "reloads done", o.get("reloads"), u.get("reloads"), unit="count")
            self.row(sc, "requests served", o.get("requests"), u.get("requests"),
                     (o["requests"] / u["requests"]) if o.get("requests") and u.get("requests")
                     else None, unit="count")
            for key, label in (("p99_us", "p99 ms"), ("max_us", "max ms")):
                ov = o.get(key) / 1000.0 if o.get(key) is not None else None
                uv = u.get(key) / 1000.0 if u.get(key) is not None else None
                self.row(sc, label, ov, uv, uv / ov if ov and uv else None, unit="ms")

    # recycling: --max-requests under wrk, harakiri latency ------------------------------
    def wrk_once(self, srv, path, secs):
        """wrk on `path` for `secs` against a started `srv`: wrk's figures and the errors."""
        p = subprocess.run(
            ["wrk", "-t2", "-c32", "-d%ds" % secs, "--timeout", "5s", "-s", LUA,
             "http://127.0.0.1:%d%s" % (srv.port, path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=secs + 30)
        res = {}
        for line in p.stdout.splitlines():
            if line.startswith("WRKJSON "):
                res = json.loads(line[8:])
        res["errors"] = sum(res.get(k, 0) for k in
                            ("connect", "read", "write", "status", "timeout"))
        return res

    @staticmethod
    def respawns(doc):
        return sum(w.get("respawn_count", 0) for w in (doc or {}).get("workers", []))

    def harakiri_once(self, srv, limit=1):
        """A GET /sleep?ms=20000 on a started `srv` with --harakiri `limit`: seconds from the
        deadline (request sent + limit) to the connection's end, or None if it was answered."""
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=limit + 15)
        try:
            t0 = now()
            s.sendall(b"GET /sleep?ms=20000 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    data += b
            except OSError:
                pass
            t1 = now()
        finally:
            s.close()
        if data.startswith(b"HTTP/1.") and b" 200 " in data[:16]:
            return None
        return t1 - (t0 + limit)

    def recycle(self):
        secs = 5 if self.quick else 10
        reps = 3 if self.quick else 7
        out = self.results["scenarios"].setdefault("recycle", {})
        # Both servers recycle a worker after 1000 requests, no sooner than 1 s after its
        # start (uWSGI's min-worker-lifetime defaults to 60 s, uwsgid's to 10 s).
        limits = {"uwsgid": ["--max-requests", "1000", "--max-requests-delta", "50",
                             "--min-worker-lifetime", "1"],
                  "uwsgi": ["--max-requests", "1000", "--min-worker-lifetime", "1"]}
        for mode in ("steady", "max-requests"):
            for srv in self.servers(4, "recycle-" + mode):
                if mode == "max-requests":
                    srv.extra = limits[srv.kind]
                try:
                    srv.start()
                    srv.wait_ready(30)
                    before = srv.stats()
                    res = self.wrk_once(srv, "/", secs)
                    after = srv.stats()
                    ext = (after or {}).get("uwsgid") or {}
                    res["recycles"] = ext.get("recycles", {}).get("max_requests") \
                        if srv.kind == "uwsgid" else self.respawns(after) - self.respawns(before)
                    out.setdefault(mode, {})[srv.kind] = res
                    log("%s %s: %s requests, %d errors, %s recycles, p99 %.1f ms" % (
                        srv.kind, mode, res.get("requests"), res["errors"], res["recycles"],
                        res.get("p99_us", 0) / 1000.0))
                finally:
                    srv.stop()
        sc = "GET /, 4 workers, wrk %ds" % secs
        st, mr = out.get("steady", {}), out.get("max-requests", {})
        o, u = mr.get("uwsgid", {}), mr.get("uwsgi", {})
        self.row(sc + ", max-requests 1000", "failed requests", o.get("errors"),
                 u.get("errors"), None, "0 (ours)", (o.get("errors") == 0) if o else None,
                 unit="count")
        self.row(sc + ", max-requests 1000", "recycles", o.get("recycles"), u.get("recycles"),
                 unit="count")
        for label, d in (("steady", st), ("max-requests 1000", mr)):
            ov = d.get("uwsgid", {}).get("p99_us")
            uv = d.get("uwsgi", {}).get("p99_us")
            ov, uv = (ov / 1000.0 if ov is not None else None,
                      uv / 1000.0 if uv is not None else None)
            self.row(sc + ", " + label, "p99 ms", ov, uv, uv / ov if ov and uv else None,
                     unit="ms")
        # Harakiri: from the deadline to the kill (the client's connection closed).
        servers = self.servers(2, "harakiri")
        if self.have_ours:
            servers.insert(1, UwsgidPy(self.workdir, 2, "harakiri-py"))
        lat = {}
        for srv in servers:
            srv.extra = ["--harakiri", "1"]
            key = getattr(srv, "label", srv.kind)
            try:
                srv.start()
                srv.wait_ready(60)
                samples = []
                for _ in range(reps):
                    late = self.harakiri_once(srv)
                    if late is not None:
                        samples.append(late * 1000.0)
                    srv.wait_ready(30)
                lat[key] = samples
                log("%s harakiri 1 s: late by %s ms" % (
                    key, ", ".join("%.0f" % x for x in samples)))
            finally:
                srv.stop()
        out["harakiri_late_ms"] = lat
        o = lat.get("uwsgid", [])
        u = lat.get("uwsgi", [])
        py = lat.get(UwsgidPy.label, [])
        self.row("harakiri 1 s, GET /sleep", "deadline to kill, median ms",
                 median(o) if o else None, median(u) if u else None,
                 (median(u) / median(o)) if o and u and median(o) > 0 else None,
                 "<1000 (ours)", (max(o) < 1000.0) if o else None, unit="ms")
        self.row("harakiri 1 s, GET /sleep", "deadline to kill, max ms",
                 max(o) if o else None, max(u) if u else None, unit="ms")
        if py:
            self.row("harakiri 1 s, Python app (stacks dumped first)",
                     "deadline to kill, median ms", median(py), median(u) if u else None,
                     (median(u) / median(py)) if u and median(py) > 0 else None,
                     "<1000 (ours)", max(py) < 1000.0, unit="ms")

    # 6b: stats latency with 64 workers, 6c: idle wake-ups ---------------------------------
    def stats_latency(self):
        reps = 100 if self.quick else 300
        out = self.results["scenarios"].setdefault("stats_latency", {})
        for srv in self.servers(64, "stats"):
            try:
                srv.start()
                srv.wait_ready(60)
                time.sleep(0.3)
                lat, size = [], 0
                for _ in range(reps):
                    t0 = now()
                    raw = read_stats_raw(srv.stats_addr)
                    lat.append((now() - t0) * 1000.0)
                    size = len(raw)
                    json.loads(raw.decode("utf-8", "replace"))
                out[srv.kind] = {"median_ms": median(lat), "p99_ms": pct(lat, 99),
                                 "bytes": size}
                log("%s stats read, 64 workers: median %.3f ms, %d bytes" % (
                    srv.kind, median(lat), size))
            finally:
                srv.stop()
        o, u = out.get("uwsgid", {}), out.get("uwsgi", {})
        ov = o.get("median_ms")
        self.row("stats document, 64 workers", "median ms", ov, u.get("median_ms"),
                 (u["median_ms"] / ov) if ov and u.get("median_ms") else None, "<1 ms (ours)",
                 (ov < 1.0) if ov is not None else None, unit="ms")
        self.row("stats document, 64 workers", "p99 ms", o.get("p99_ms"), u.get("p99_ms"),
                 unit="ms")

    def idle_wakeups(self):
        secs = 5 if self.quick else 10
        out = self.results["scenarios"].setdefault("idle", {})
        servers = self.servers(4, "idle")
        perf = shutil.which("perf")
        try:
            for s in servers:
                s.start()
                s.wait_ready(30)
            time.sleep(1.0)
            before = {s.kind: (ctxt_switches(s.pid), cpu_ticks(s.pid)) for s in servers}
            perfs = {}
            if perf:
                for s in servers:
                    perfs[s.kind] = subprocess.Popen(
                        [perf, "stat", "-x,", "-e", "context-switches,task-clock", "-p",
                         str(s.pid), "--", "sleep", str(secs)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(secs)
            for s in servers:
                (v0, n0), c0 = before[s.kind]
                v1, n1 = ctxt_switches(s.pid)
                c1 = cpu_ticks(s.pid)
                out[s.kind] = {"seconds": secs, "voluntary": v1 - v0, "nonvoluntary": n1 - n0,
                               "cpu_ticks": c1 - c0}
            for kind, p in perfs.items():
                try:
                    _, err = p.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    continue
                for line in err.splitlines():
                    f = line.split(",")
                    for event, key in (("context-switches", "perf_context_switches"),
                                       ("task-clock", "perf_task_clock_ms")):
                        if len(f) > 2 and f[2].startswith(event):
                            # "<not counted>": the task was never scheduled in the window
                            v = 0.0 if f[0].startswith("<not") else float(f[0] or 0)
                            out[kind][key] = int(v) if key == "perf_context_switches" else v
        finally:
            for s in servers:
                s.stop()
        log("idle wake-ups: %s" % out)
        o, u = out.get("uwsgid", {}), out.get("uwsgi", {})
        ov = (o["voluntary"] + o["nonvoluntary"]) if o else None
        uv = (u["voluntary"] + u["nonvoluntary"]) if u else None
        self.row("idle master, %ds" % secs, "context switches", ov, uv, None, "0 (no wake-ups)",
                 (ov == 0) if ov is not None else None, unit="count")
        if "perf_context_switches" in o or "perf_context_switches" in u:
            self.row("idle master, %ds (perf stat)" % secs, "context switches",
                     o.get("perf_context_switches"), u.get("perf_context_switches"),
                     unit="count")
            self.row("idle master, %ds (perf stat)" % secs, "task-clock ms",
                     o.get("perf_task_clock_ms"), u.get("perf_task_clock_ms"), unit="ms")

    # 7: uwsgictl latency --------------------------------------------------------------
    def ctl_argv(self, *cmd, pidfile):
        return [os.path.join(BIN_DIR, "uwsgictl")] + list(cmd) + ["--pidfile", pidfile]

    def wall(self, argv, reps, env=None):
        """Whole-process wall time of argv: spawn to reap, with stdio on /dev/null.

        posix_spawn (vfork-style in glibc) rather than subprocess: forking this large
        Python process costs about 1 ms per run on this kind of machine, which would be
        charged to every command measured and squeeze every ratio towards 1.
        """
        exe = shutil.which(argv[0]) or argv[0]
        env = os.environ if env is None else env
        quiet = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                 (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                 (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)]
        times, fails = [], 0
        for _ in range(reps):
            t0 = now()
            pid = os.posix_spawn(exe, argv, env, file_actions=quiet)
            _, status = os.waitpid(pid, 0)
            times.append((now() - t0) * 1000.0)
            if os.waitstatus_to_exitcode(status) != 0:
                fails += 1
        return {"median_ms": median(times), "samples_ms": times, "failures": fails}

    def ctl_latency(self):
        reps = 10 if self.quick else 30
        out = self.results["scenarios"].setdefault("uwsgictl", {})
        ctl = os.path.join(BIN_DIR, "uwsgictl")
        ours = Uwsgid(self.workdir, 4, "ctl") if self.have_ours else None
        theirs = Uwsgi(self.workdir, 4, "ctl")
        pyread = ("import json,socket\n"
                  "s=socket.create_connection(('127.0.0.1',%d))\n"
                  "b=b''\n"
                  "while True:\n"
                  "    c=s.recv(4096)\n"
                  "    if not c: break\n"
                  "    b+=c\n"
                  "json.loads(b.decode('utf8','replace'))\n")
        try:
            theirs.start()
            theirs.wait_ready(30)
            if ours:
                ours.start()
                ours.wait_ready(30)
            out["spawn floor (/bin/true)"] = self.wall(["true"], reps)
            out["uwsgi --connect-and-read"] = self.wall(
                ["uwsgi", "--connect-and-read", theirs.stats_addr], reps)
            out["python one-shot (uwsgitop fetch)"] = self.wall(
                [sys.executable, "-c", pyread % theirs.stats_port], reps)
            top = uwsgitop_first_screen(theirs.stats_addr, reps)
            if top:
                out["uwsgitop (first screen)"] = top
            if os.access(ctl, os.X_OK):
                tgt = ["--pidfile", theirs.pidfile, "--stats", theirs.stats_addr]
                out["uwsgictl stats --json (on uWSGI)"] = self.wall(
                    [ctl, "stats", "--json"] + tgt, reps)
            if ours and os.access(ctl, os.X_OK):
                for name, cmd in (("uwsgictl status", ("status",)),
                                  ("uwsgictl stats --json", ("stats", "--json"))):
                    out[name] = self.wall(self.ctl_argv(*cmd, pidfile=ours.pidfile), reps)
                    if out[name]["failures"]:
                        log("warning: %s failed %d times" % (name, out[name]["failures"]))
                # reload --wait overhead over the daemon's own reload time. The daemon's own
                # time runs from its log line "SIGHUP from pid <uwsgictl> received" to
                # last_reload.finished_unix_ms (its duration_ms starts later, after the
                # pre-exec configuration check); "late" is how long after the daemon
                # finished uwsgictl exited (issue 4: reported within a few ms)
                ovh = []
                for i in range(3 if self.quick else 7):
                    settle(ours)
                    w0, t0 = time.time() * 1000.0, now()
                    errfile = os.path.join(self.workdir, "ctl-wait.err")
                    argv = self.ctl_argv("reload", "--wait", pidfile=ours.pidfile)
                    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
                        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                        (os.POSIX_SPAWN_OPEN, 2, errfile,
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)])
                    _, status = os.waitpid(pid, 0)
                    wall, w1 = (now() - t0) * 1000.0, time.time() * 1000.0
                    rc = os.waitstatus_to_exitcode(status)
                    with open(errfile, errors="replace") as f:
                        err = f.read()
                    doc = ours.stats() or {}
                    last = (doc.get("uwsgid") or {}).get("last_reload") or {}
                    self_ms = last.get("duration_ms")
                    if rc != 0 or self_ms is None:
                        log("reload --wait failed (rc %d): %s" % (rc, err[-300:]))
                        continue
                    recv = signal_received_ms(ours.logfile, pid)
                    fin = last.get("finished_unix_ms")
                    daemon = (fin - recv) if (recv and fin and fin >= recv) else self_ms
                    ovh.append({"wall_ms": wall, "daemon_duration_ms": self_ms,
                                "daemon_ms": daemon, "daemon_ms_from": "log" if recv else
                                "duration_ms", "overhead_ms": wall - daemon,
                                "late_ms": (w1 - fin) if fin else None,
                                "before_signal_ms": (recv - w0) if recv else None})
                out["reload --wait"] = {
                    "samples": ovh,
                    "overhead_median_ms": median([x["overhead_ms"] for x in ovh]),
                    "wall_median_ms": median([x["wall_ms"] for x in ovh]),
                    "late_median_ms": median([x["late_ms"] for x in ovh]),
                    "before_signal_median_ms": median([x["before_signal_ms"] for x in ovh])}
        finally:
            theirs.stop()
            if ours:
                ours.stop()
        log("uwsgictl latency: %s" % {k: v.get("median_ms") for k, v in out.items()})
        car = (out.get("uwsgi --connect-and-read") or {}).get("median_ms")
        py = (out.get("python one-shot (uwsgitop fetch)") or {}).get("median_ms")
        top = (out.get("uwsgitop (first screen)") or {}).get("median_ms")
        for name in ("uwsgictl status", "uwsgictl stats --json"):
            ov = (out.get(name) or {}).get("median_ms")
            # uwsgitop itself when it is installed; else its fetch alone, in Python.
            for ref_name, ref in (("uwsgi --connect-and-read", car),
                                  ("uwsgitop, first screen", top) if top else
                                  ("python uwsgitop-style read", py)):
                ratio = ref / ov if ov and ref else None
                self.row("%s vs %s" % (name, ref_name), "wall ms", ov, ref, ratio,
                         ">=20x faster", (ratio >= 20) if ratio else None, unit="ms")
        if top:
            self.row("python one-shot read of the stats socket (uwsgitop's fetch alone)",
                     "wall ms", py, None, unit="ms")
        fl = (out.get("spawn floor (/bin/true)") or {}).get("median_ms")
        self.row("process spawn floor (/bin/true)", "wall ms", fl, None, unit="ms")
        # The best any separate process can do against connect-and-read: one that does
        # nothing at all. Below 20x, the 20x target is out of reach on this machine.
        self.row("ceiling: a program that does nothing vs connect-and-read", "wall ms", fl,
                 car, car / fl if car and fl else None, unit="ms")
        ou = (out.get("uwsgictl stats --json (on uWSGI)") or {}).get("median_ms")
        if ou is not None:
            self.row("uwsgictl stats --json on uWSGI vs connect-and-read", "wall ms", ou, car,
                     car / ou if car and ou else None, unit="ms")
        w = out.get("reload --wait") or {}
        if w:
            ov = w.get("overhead_median_ms")
            self.row("uwsgictl reload --wait overhead", "median ms over daemon's own", ov, None,
                     None, "<5 ms", (ov < 5) if ov is not None else None, unit="ms")
            self.row("uwsgictl reload --wait", "wall ms | daemon's own ms",
                     w.get("wall_median_ms"),
                     median([x["daemon_ms"] for x in w.get("samples", [])]), unit="ms")
            self.row("uwsgictl reload --wait", "ms: start to signal | completion to exit",
                     w.get("before_signal_median_ms"), w.get("late_median_ms"), unit="ms")

    # stop time (issue 6): idle and with a request in flight ------------------------------
    def stop_time(self):
        out = self.results["scenarios"].setdefault("stop", {})
        for inflight in (False, True):
            label = "in flight" if inflight else "idle"
            for srv in self.servers(4, "stop"):
                try:
                    srv.start()
                    srv.wait_ready(30)
                    srv.remember_workers()
                    req = None
                    if inflight:
                        req = subprocess.Popen(
                            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             "--max-time", "10",
                             "http://127.0.0.1:%d/sleep?ms=500" % srv.port],
                            stdout=subprocess.PIPE, text=True)
                        time.sleep(0.1)
                    t0 = now()
                    fifo_write(srv.fifo, b"q")
                    try:
                        srv.proc.wait(timeout=30)
                        ms = (now() - t0) * 1000.0
                    except subprocess.TimeoutExpired:
                        ms = None
                    code = req.communicate(timeout=15)[0] if req else None
                    out.setdefault(label, {})[srv.kind] = {"ms": ms, "inflight_status": code,
                                                           "exit": srv.proc.returncode}
                    log("%s graceful stop (%s): %s ms, request %s" % (srv.kind, label, ms, code))
                finally:
                    srv.stop()
            o, u = out[label].get("uwsgid", {}), out[label].get("uwsgi", {})
            self.row_speed("graceful stop (FIFO q), %s" % label +
                           (" 500 ms request" if inflight else ""), "ms", o.get("ms"),
                           u.get("ms"))
            if inflight:
                self.row("graceful stop, request in flight", "HTTP status",
                         o.get("inflight_status"), u.get("inflight_status"), unit="status")

    # the same Python app on both: uwsgid's exec workers (bundled WSGI runner) vs uWSGI ------
    def python_app(self):
        if not self.have_ours:
            return
        import floor  # bench/floor.py, beside this file
        q = self.quick
        out = self.results["scenarios"].setdefault("python_app", {})

        def pair(workers, tag):
            return [UwsgidPy(self.workdir, workers, tag), Uwsgi(self.workdir, workers, tag)]

        key = lambda s: "uwsgid-py" if isinstance(s, UwsgidPy) else s.kind  # noqa: E731
        for i in range(2 if q else 3):
            for srv in pair(4, "pystart%d" % i):
                try:
                    srv.start()
                    t = srv.wait_http(30)
                    out.setdefault("start_ms", {}).setdefault(key(srv), []).append(
                        t * 1000.0 if t else None)
                    if i == 0:
                        srv.wait_ready(30)
                        time.sleep(1.0)
                        wp = srv.worker_pids()
                        out.setdefault("worker_rss_kib", {})[key(srv)] = median(
                            [rss_kib(p) for p in wp])
                finally:
                    srv.stop()
        # Graceful reloads of 4 and 16 workers, interleaved with the floor (bench/floor.py:
        # the same interpreter forking N workers that each send one datagram, from a child
        # subreaper, single and double fork): per repetition the floor, uwsgid, uWSGI. Both
        # servers are up at once (the idle one costs nothing), each measurement after the
        # same quiet moment, so load from elsewhere lands on all three alike.
        fl = None
        try:
            fl = floor.FloorProcess()
            out["floor_python"] = fl.python
        except Exception as e:
            log("reload floor not measured: %r" % e)
        try:
            for n in (4, 16):
                servers = pair(n, "pyreload%d" % n)
                rel = out.setdefault("reload%d_ms" % n, {})
                flo = out.setdefault("floor%d_ms" % n, {})
                try:
                    for srv in servers:
                        srv.start()
                    for srv in servers:
                        srv.wait_ready(60)
                    broken = set()
                    for rep in range(3 if q else 5):
                        said = []
                        for mode in ("single", "double"):
                            ms = None
                            if fl:
                                time.sleep(0.15)
                                try:
                                    ms = fl.measure(mode, n)
                                except Exception as e:
                                    # out of step with its answers: no more floor this run
                                    log("floor %s %d: %s (floor left out)" % (mode, n, e))
                                    fl.close()
                                    fl = None
                            flo.setdefault(mode, []).append(ms)
                            said.append("floor %s %s" % (
                                mode, "%.1f ms" % ms if ms is not None else "-"))
                        for srv in servers:
                            if key(srv) in broken:
                                rel.setdefault(key(srv), []).append(None)
                                continue
                            settle(srv, 60)
                            r = reload_once(srv, KINDS["graceful"], 60)
                            rel.setdefault(key(srv), []).append(r.get("ms"))
                            if "error" in r:
                                broken.add(key(srv))
                            said.append("%s %s" % (key(srv), "%.1f ms" % r["ms"] if "ms" in r
                                                   else r["error"]))
                        log("python app graceful reload, %d workers, rep %d: %s" % (
                            n, rep + 1, ", ".join(said)))
                    if n == 16:
                        # PSS with the server alone: the two servers' processes map the
                        # same libpython, whose shared pages would lower both figures
                        servers[1].stop()
                        settle(servers[0], 60)
                        time.sleep(1.0)
                        out.setdefault("worker_pss16_kib", {})[key(servers[0])] = median(
                            [pss_kib(p) for p in servers[0].worker_pids()])
                finally:
                    for srv in servers:
                        srv.stop()
        finally:
            if fl:
                fl.close()
        # uWSGI's PSS alone, after one graceful reload as uwsgid's was after its reloads
        srv = Uwsgi(self.workdir, 16, "pypss16")
        try:
            srv.start()
            srv.wait_ready(60)
            settle(srv, 60)
            reload_once(srv, KINDS["graceful"], 60)
            settle(srv, 60)
            time.sleep(1.0)
            out.setdefault("worker_pss16_kib", {})[key(srv)] = median(
                [pss_kib(p) for p in srv.worker_pids()])
        finally:
            srv.stop()
        servers = pair(2, "pytput")
        try:
            for srv in servers:
                srv.start()
                srv.wait_ready(30)
            for i in range(1 if q else 2):
                for srv in servers:
                    self.wrk(srv.port, "/", 1)
                    d = self.wrk(srv.port, "/", 3 if q else 5)
                    out.setdefault("wrk", {}).setdefault(key(srv), []).append(d)
                    log("%s wrk (python app): %.0f req/s p99 %.2f ms errors %d" % (
                        key(srv), d["rps"], d["p99_us"] / 1000.0, d["errors"]))
        finally:
            for srv in servers:
                srv.stop()
        # Issue 5: requests in flight during reloads, against the same server's steady state.
        secs = 5 if q else 10
        for srv in pair(4, "pystorm"):
            try:
                srv.start()
                srv.wait_ready(60)
                steady = self.wrk(srv.port, "/sleep?ms=50", 3 if q else 5)
                res = self.storm_once(srv, "/sleep?ms=50", secs)
                res["steady_p99_us"] = steady["p99_us"]
                out.setdefault("storm", {})[key(srv)] = res
                log("%s python reload storm: %d reloads, %s requests, %d errors, p99 %.1f ms "
                    "(steady %.1f ms)" % (key(srv), res["reloads"], res.get("requests"),
                                          res["errors"], res.get("p99_us", 0) / 1000.0,
                                          steady["p99_us"] / 1000.0))
            finally:
                srv.stop()
        o, u = "uwsgid-py", "uwsgi"
        sm = {k: median(v) for k, v in out.get("start_ms", {}).items()}
        self.row_speed("python app: start to first 200 (4 workers)", "median ms", sm.get(o),
                       sm.get(u))
        for n in (4, 16):
            meds = {k: median(v) for k, v in out.get("reload%d_ms" % n, {}).items()}
            sc = "python app: graceful reload, %d workers" % n
            # issue 12's target: at least 50x faster than uWSGI on the same app
            self.row_speed(sc, "median ms", meds.get(o), meds.get(u), 50)
            # the floor beside the reloads of the same run: x floor is how many times the
            # floor each server's reload took; uWSGI's is the best ratio any server can reach
            for mode in ("single", "double"):
                f = median(out.get("floor%d_ms" % n, {}).get(mode) or [])
                self.row(sc, "floor, %s fork: median ms" % mode, f, None, unit="ms")
                self.row(sc, "x %s-fork floor (uwsgid | uWSGI)" % mode,
                         meds[o] / f if f and meds.get(o) else None,
                         meds[u] / f if f and meds.get(u) else None, unit="x")
        wr = out.get("worker_rss_kib", {})
        self.row("python app: idle worker RSS", "KiB", wr.get(o), wr.get(u),
                 wr[o] / wr[u] if wr.get(o) and wr.get(u) else None, unit="KiB")
        wp = out.get("worker_pss16_kib", {})
        self.row("python app: worker PSS, 16 workers", "KiB", wp.get(o), wp.get(u),
                 wp[o] / wp[u] if wp.get(o) and wp.get(u) else None, unit="KiB")
        b = "uwsgid-builtin"
        if rps.get(b) and rps.get(u):
            self.row("nginx -> uwsgi_pass -> uwsgid built-in handler (no Python): the ceiling",
                     "req/s", rps.get(b), rps.get(u), rps[b] / rps[u],
                     "ceiling/uWSGI: the best ratio a Python server reaches here", None,
                     unit="req/s")
        st = out.get("storm", {})
        so, su = st.get(o, {}), st.get(u, {})
        sc = "python app: /sleep?ms=50, HUP every 1s"
        self.row(sc, "failed requests", so.get("errors"), su.get("errors"), None, "0 (ours)",
                 (so.get("errors") == 0) if so else None, unit="count")
        self.row(sc, "reloads done", so.get("reloads"), su.get("reloads"), unit="count")

        def worsening(r):
            return r["p99_us"] / r["steady_p99_us"] if r.get("p99_us") and r.get(
                "steady_p99_us") else None
        wo, wu = worsening(so), worsening(su)
        self.row(sc, "p99 during reloads / steady p99", wo, wu, None, "<=2x (ours)",
                 (wo <= 2.0) if wo is not None else None, unit="x")
        self.row(sc, "p99 ms during reloads",
                 so.get("p99_us", 0) / 1000.0 if so else None,
                 su.get("p99_us", 0) / 1000.0 if su else None, unit="ms")
        rps = {k: median([d["rps"] for d in v]) for k, v in out.get("wrk", {}).items()}
        p99 = {k: median([d["p99_us"] / 1000.0 for d in v]) for k, v in out.get("wrk", {}).items()}
        self.row("python app: 2 workers, wrk -t2 -c32", "req/s", rps.get(o), rps.get(u),
                 rps[o] / rps[u] if rps.get(o) and rps.get(u) else None, unit="req/s")
        self.row("python app: 2 workers, wrk -t2 -c32", "p99 ms", p99.get(o), p99.get(u),
                 p99[u] / p99[o] if p99.get(o) and p99.get(u) else None, unit="ms")

    # issue 13: nginx -> uwsgi_pass -> the Python app, 2 workers, 8 threads each ----------
    def nginx_uwsgi(self):
        if not self.have_ours or not shutil.which("nginx") or \
                not os.path.exists("/etc/nginx/uwsgi_params"):
            log("nginx_uwsgi left out: needs uwsgid, nginx and /etc/nginx/uwsgi_params")
            return
        q = self.quick
        out = self.results["scenarios"].setdefault("nginx_uwsgi", {})
        key = lambda s: ("uwsgid-py" if isinstance(s, UwsgidPy) else  # noqa: E731
                         "uwsgid-builtin" if isinstance(s, UwsgidSock) else s.kind)
        # Every server with its own nginx, all started first; then the wrk rounds interleaved
        # (each server once per round); the built-in handler (no Python at all) is the ceiling
        # that nginx and the machine leave to any Python server here.
        pairs = []
        try:
            for srv in [UwsgidPySock(self.workdir, 2, "ngx"), UwsgiSock(self.workdir, 2, "ngx"),
                        UwsgidSock(self.workdir, 2, "ngx-builtin")]:
                ng = Nginx(self.workdir, 2, "127.0.0.1:%d" % srv.uwsgi_port)
                pairs.append((srv, ng))
                srv.start()
                srv.wait_ready(60)
                ng.start()
                if isinstance(srv, UwsgidPy):
                    # Which program serves the Python app (uwsgid-python, or python3 for
                    # the stdlib runner): reported beside the figures.
                    exes = set()
                    for w in (srv.stats() or {}).get("workers", []):
                        try:
                            exes.add(os.path.basename(os.readlink("/proc/%d/exe" % w["pid"])))
                        except (OSError, KeyError, TypeError):
                            pass
                    out["uwsgid_worker_program"] = sorted(exes)
                    log("nginx -> uwsgid-py: the workers run %s" % ", ".join(sorted(exes)))
            for i in range(2 if q else 5):
                for srv, ng in pairs:
                    self.wrk(ng.port, "/", 1)
                    d = self.wrk(ng.port, "/", 3 if q else 5)
                    out.setdefault("wrk", {}).setdefault(key(srv), []).append(d)
                    log("nginx -> %s wrk, round %d: %.0f req/s p99 %.2f ms errors %d" % (
                        key(srv), i, d["rps"], d["p99_us"] / 1000.0, d["errors"]))
            for srv, ng in pairs[:2]:
                settle(srv)
                res = self.storm_once(srv, "/", 5 if q else 10, port=ng.port)
                out.setdefault("storm", {})[key(srv)] = res
                log("nginx -> %s reload storm: %d reloads, %s requests, %d errors" % (
                    key(srv), res["reloads"], res.get("requests"), res["errors"]))
        finally:
            for srv, ng in pairs:
                ng.stop()
                srv.stop()
        o, u = "uwsgid-py", "uwsgi"
        rps = {k: median([d["rps"] for d in v]) for k, v in out.get("wrk", {}).items()}
        p99 = {k: median([d["p99_us"] / 1000.0 for d in v]) for k, v in out.get("wrk", {}).items()}
        sc = "nginx -> uwsgi_pass -> python app, 2 workers x 8 threads"
        ratio = rps[o] / rps[u] if rps.get(o) and rps.get(u) else None
        self.row(sc, "req/s", rps.get(o), rps.get(u), ratio, ">=1.5x",
                 (ratio >= 1.5) if ratio else None, unit="req/s")
        pr = p99[u] / p99[o] if p99.get(o) and p99.get(u) else None
        self.row(sc, "p99 ms", p99.get(o), p99.get(u), pr, "no worse",
                 (p99[o] <= p99[u]) if pr else None, unit="ms")
        b = "uwsgid-builtin"
        if rps.get(b) and rps.get(u):
            self.row("nginx -> uwsgi_pass -> uwsgid built-in handler (no Python): the ceiling",
                     "req/s", rps.get(b), rps.get(u), rps[b] / rps[u],
                     "ceiling/uWSGI: the best ratio a Python server reaches here", None,
                     unit="req/s")
        st = out.get("storm", {})
        so, su = st.get(o, {}), st.get(u, {})
        self.row("nginx -> python app, HUP every 1s", "failed requests", so.get("errors"),
                 su.get("errors"), None, "0 (ours)",
                 (so.get("errors") == 0) if so else None, unit="count")

    # prod: systemd's reload wait, /metrics latency, a reload under a scraper -------------
    def prod(self):
        """`systemctl reload` on a Type=notify-reload unit returns when READY=1 follows its
        SIGHUP: the bench binds the notify socket and times SIGHUP -> READY=1 (uwsgid), and
        checks whether uWSGI sends READY=1 again at all (a capability row, no ratio). Then,
        with 64 workers: GET /metrics on the stats server (median, p99), and a graceful
        reload's SIGHUP -> READY=1 with a scraper hitting /metrics every 10 ms vs without,
        repetitions interleaved."""
        import threading

        q = self.quick
        out = self.results["scenarios"].setdefault("prod", {})

        def notify_socket(srv):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            path = os.path.join(srv.dir, "notify.sock")
            sock.bind(path)
            return sock, path

        def wait_datagram(sock, want, timeout):
            """Seconds until a datagram with the line `want` arrives, or None; every
            datagram read on the way is returned too."""
            t0 = now()
            seen = []
            while True:
                left = timeout - (now() - t0)
                if left <= 0:
                    return None, seen
                sock.settimeout(left)
                try:
                    data = sock.recv(4096).decode("utf-8", "replace")
                except socket.timeout:
                    return None, seen
                seen.append(data)
                if want in data.split("\n"):
                    return now() - t0, seen

        def drain(sock):
            sock.setblocking(False)
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass
            sock.setblocking(True)

        def notified(cls, extra=()):
            class Notified(cls):
                notify_path = None

                def env(self):
                    e = super().env()
                    e["NOTIFY_SOCKET"] = self.notify_path
                    return e

                def argv(self):
                    return super().argv() + list(extra)
            return Notified

        class HttpStats:
            """The stats document through the stats server's HTTP mode (--stats-http)."""

            def stats(self):
                st, body = http_get(self.stats_port, "/", timeout=2.0)
                if st != 200:
                    return None
                try:
                    return json.loads(body.decode("utf-8", "replace"))
                except ValueError:
                    return None

        def start(cls, workers, tag, extra=()):
            srv = notified(cls, extra)(self.workdir, workers, tag)
            sock, srv.notify_path = notify_socket(srv)
            return srv, sock

        # 1. systemctl reload's wait, 4 workers.
        reps = 3 if q else 7
        wait = {}
        servers = []
        if self.have_ours:
            servers.append(start(Uwsgid, 4, "notify"))
        servers.append(start(Uwsgi, 4, "notify"))
        try:
            for srv, sock in servers:
                srv.start()
                t, _ = wait_datagram(sock, "READY=1", 60)
                srv.wait_ready(60)
                wait[srv.kind] = {"first_ready_s": t, "reload_ms": [], "seen": []}
            for i in range(reps):
                for srv, sock in servers:
                    settle(srv, 60)
                    drain(sock)
                    os.kill(srv.pid, signal.SIGHUP)
                    # uWSGI never says READY=1 again: give it long enough to be sure.
                    t, seen = wait_datagram(sock, "READY=1", 30 if srv.kind == "uwsgid" else 5)
                    w = wait[srv.kind]
                    w["reload_ms"].append(t * 1000.0 if t is not None else None)
                    w["seen"].append(seen[:6])
                    log("%s SIGHUP -> READY=1, rep %d: %s" % (
                        srv.kind, i, "%.1f ms" % (t * 1000) if t is not None else
                        "none (%d datagram(s))" % len(seen)))
                    if srv.kind == "uwsgi":
                        srv.wait_ready(60)
        finally:
            for srv, sock in servers:
                srv.stop()
                sock.close()
        out["systemctl_reload"] = wait
        o = wait.get("uwsgid", {}).get("reload_ms", [])
        u = wait.get("uwsgi", {}).get("reload_ms", [])
        om = median(o) if o and None not in o else None
        u_sends = bool(u) and all(x is not None for x in u)
        self.row("systemctl reload wait (SIGHUP -> READY=1), 4 workers", "median ms", om,
                 median(u) if u_sends else "never sent", None,
                 "READY=1 after each reload", (om is not None) if self.have_ours else None,
                 unit="ms")

        if not self.have_ours:
            return
        # 2. /metrics with 64 workers; 3. a reload with a scraper vs without.
        srv, sock = start(type("UwsgidHttpStats", (HttpStats, Uwsgid), {}), 64, "metrics",
                          ["--stats-http"])
        try:
            srv.start()
            wait_datagram(sock, "READY=1", 120)
            srv.wait_ready(120)
            time.sleep(0.3)
            lat = []
            for _ in range(100 if q else 300):
                t0 = now()
                st, body = http_get(srv.stats_port, "/metrics")
                lat.append((now() - t0) * 1000.0)
                if st != 200 or b"uwsgid_generation" not in body:
                    raise RuntimeError("/metrics answered %r" % (st,))
            out["metrics_64"] = {"median_ms": median(lat), "p99_ms": pct(lat, 99),
                                 "bytes": len(body)}
            log("/metrics, 64 workers: median %.3f ms, p99 %.3f ms, %d bytes" % (
                median(lat), pct(lat, 99), len(body)))

            stop = threading.Event()
            scrapes = []

            def scraper():
                while not stop.is_set():
                    t0 = now()
                    st, _ = http_get(srv.stats_port, "/metrics", timeout=2.0)
                    scrapes.append(((now() - t0) * 1000.0, st))
                    stop.wait(0.010)

            timed = {"without": [], "with": []}
            for i in range(3 if q else 7):
                for mode in ("without", "with"):
                    settle(srv, 120)
                    drain(sock)
                    th = None
                    if mode == "with":
                        stop.clear()
                        th = threading.Thread(target=scraper, daemon=True)
                        th.start()
                        time.sleep(0.05)  # the scraper is already hitting /metrics
                    os.kill(srv.pid, signal.SIGHUP)
                    t, _ = wait_datagram(sock, "READY=1", 60)
                    if th:
                        stop.set()
                        th.join(5)
                    timed[mode].append(t * 1000.0 if t is not None else None)
                    log("reload of 64 workers %s a /metrics scraper, rep %d: %s" % (
                        mode, i, "%.1f ms" % (t * 1000) if t is not None else "no READY=1"))
            failed = sum(1 for _, st in scrapes if st != 200)
            out["reload_with_scraper"] = {
                "without_ms": timed["without"], "with_ms": timed["with"],
                "scrapes": len(scrapes), "failed_scrapes": failed,
                "scrape_median_ms": median([m for m, _ in scrapes]),
                "scrape_p99_ms": pct([m for m, _ in scrapes], 99)}
        finally:
            srv.stop()
            sock.close()
        m = out["metrics_64"]
        self.row("/metrics, 64 workers", "median ms", m["median_ms"], None, None, "<2 ms",
                 m["median_ms"] < 2.0, unit="ms")
        self.row("/metrics, 64 workers", "p99 ms", m["p99_ms"], None, unit="ms")
        r = out["reload_with_scraper"]
        wo = median(r["without_ms"]) if None not in r["without_ms"] else None
        wi = median(r["with_ms"]) if None not in r["with_ms"] else None
        ratio = wi / wo if wo and wi else None
        self.row("graceful reload, 64 workers, /metrics every 10 ms vs none", "median ms "
                 "(uwsgi column: without the scraper)", wi, wo, ratio, "<=1.2x, 0 failed scrapes",
                 (ratio <= 1.2 and r["failed_scrapes"] == 0) if ratio else None, unit="ms")

    # issue 16: rollback to the parked snapshot vs a graceful reload back to the old release -
    def rollback(self):
        """16 workers, built-in (static dir from an ini) and Python (app file): each
        repetition, on the same instances, interleaved: uwsgid reloads to `new` (untimed),
        then a rollback (FIFO b) is timed until every probe answers `old`; uwsgid reloads to
        `new` again, then a graceful reload back to `old` is timed the same way; uWSGI
        (no rollback) reloads to `new`, then its graceful reload back to `old` is timed."""
        if not self.have_ours:
            return
        q = self.quick
        reps = 1 if q else 7
        n = 16
        out = self.results["scenarios"].setdefault("rollback", {})
        for python in (False, True):
            label = "python" if python else "built-in"
            ours = SnapUwsgid(self.workdir, n, "snap-" + label, python)
            theirs = SnapUwsgi(self.workdir, n, "snap-" + label, python)
            res = out.setdefault(label, {"rollback_ms": [], "graceful_ms": [],
                                         "uwsgi_graceful_ms": [], "self_ms": [],
                                         "loadavg_1m": []})
            try:
                for srv in (ours, theirs):
                    srv.start()
                    srv.wait_ready(90)
                for rep in range(reps):
                    # uwsgid: forward (untimed), then the rollback (timed).
                    settle(ours, 90)
                    ours.set_release("new")
                    r = reload_once(ours, KINDS["graceful"], 90)
                    if "error" in r:
                        raise RuntimeError("uwsgid reload to new: %s" % r["error"])
                    if time_to_release(ours, "new", now()) is None:
                        raise RuntimeError("uwsgid never answered new")
                    ours.set_release("old")  # what is on disk after a rollback
                    settle(ours, 90)
                    # A rollback takes milliseconds: what else the machine ran then shows.
                    load = loadavg_1m()
                    res["loadavg_1m"].append(load)
                    t0 = now()
                    fifo_write(ours.fifo, b"b")
                    ms = time_to_release(ours, "old", t0)
                    res["rollback_ms"].append(ms)
                    doc = ours.stats() or {}
                    last = (doc.get("uwsgid") or {}).get("last_reload") or {}
                    res["self_ms"].append(last.get("duration_ms")
                                          if last.get("kind") == "rollback" else None)
                    log("uwsgid %s rollback (16 workers): %s (load average %s)" % (
                        label, "%.1f ms" % ms if ms is not None else "timeout", load))
                    # uwsgid: forward again (untimed), then a graceful reload back (timed).
                    settle(ours, 90)
                    ours.set_release("new")
                    r = reload_once(ours, KINDS["graceful"], 90)
                    if "error" in r:
                        raise RuntimeError("uwsgid reload to new: %s" % r["error"])
                    settle(ours, 90)
                    ours.set_release("old")
                    t0 = now()
                    os.kill(ours.pid, signal.SIGHUP)
                    ms = time_to_release(ours, "old", t0)
                    res["graceful_ms"].append(ms)
                    log("uwsgid %s graceful reload back (16 workers): %s" % (
                        label, "%.1f ms" % ms if ms is not None else "timeout"))
                    # uWSGI: forward (untimed), then its graceful reload back (timed).
                    settle(theirs, 90)
                    theirs.set_release("new")
                    os.kill(theirs.pid, signal.SIGHUP)
                    if time_to_release(theirs, "new", now(), 90) is None:
                        raise RuntimeError("uWSGI never answered new")
                    settle(theirs, 90)
                    theirs.set_release("old")
                    t0 = now()
                    os.kill(theirs.pid, signal.SIGHUP)
                    ms = time_to_release(theirs, "old", t0, 90)
                    res["uwsgi_graceful_ms"].append(ms)
                    theirs.remember_workers()
                    log("uWSGI %s graceful reload back (16 workers): %s" % (
                        label, "%.1f ms" % ms if ms is not None else "timeout"))
            finally:
                ours.stop()
                theirs.stop()
            med = lambda k: median([x for x in res[k] if x is not None])  # noqa: E731
            rb, gr, ug = med("rollback_ms"), med("graceful_ms"), med("uwsgi_graceful_ms")
            res["median_ms"] = {"rollback": rb, "graceful": gr, "uwsgi_graceful": ug}
            self.row("rollback, 16 workers, %s" % label, "rollback complete (median)", rb, ug,
                     (ug / rb) if rb and ug else None, "< 5 ms",
                     (rb < 5.0) if rb is not None else None, unit="ms")
            self.row_speed("rollback, 16 workers, %s" % label,
                           "graceful reload back to the old release (median)", gr, ug)

    # -----------------------------------------------------------------------------------
    def run(self):
        order = [("start", self.startup), ("rss", self.rss), ("reload", self.reloads),
                 ("stats", self.stats_latency), ("idle", self.idle_wakeups),
                 ("throughput", self.throughput), ("storm", self.reload_under_load),
                 ("ctl", self.ctl_latency), ("stop", self.stop_time),
                 ("python", self.python_app), ("nginx_uwsgi", self.nginx_uwsgi),
                 ("prod", self.prod),
                 ("recycle", self.recycle),
                 ("rollback", self.rollback)]
        only = set(self.args.only.split(",")) if self.args.only else None
        for name, fn in order:
            if only and name not in only:
                continue
            if self.time_left() < 20:
                log("skipping %s: time budget exhausted" % name)
                continue
            log("scenario %s" % name)
            try:
                fn()
            except Exception as e:
                log("scenario %s failed: %r" % (name, e))
                self.results["scenarios"].setdefault("_failed", {})[name] = repr(e)
                cleanup()


def fmt(v, unit):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if unit in ("count", "status"):
        return "%d" % v
    if unit == "KiB":
        return "%.0f" % v
    if unit in ("req/s", "nginx"):
        return "%.0f" % v if v >= 100 else "%.2f" % v
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    if abs(v) >= 1:
        return "%.2f" % v
    return "%.3f" % v


def print_table(rows, out=sys.stdout):
    head = ("scenario", "metric", "uwsgid", "uWSGI", "ratio", "target", "met")
    body = []
    for r in rows:
        ratio = "-" if r["ratio"] is None else ("%.2fx" % r["ratio"])
        met = "" if r["met"] is None else ("YES" if r["met"] else "NO")
        ours = fmt(r["ours"], r["unit"])
        theirs = fmt(r["uwsgi"], r["unit"])
        if r["unit"] == "nginx":
            ours = "nginx " + ours + " req/s"
            theirs = "p99 " + fmt(r["uwsgi"], "ms") + " ms"
        body.append((r["scenario"], r["metric"], ours, theirs, ratio, r["target"] or "", met))
    widths = [max(len(str(x[i])) for x in [head] + body) for i in range(len(head))]
    line = "  ".join("%-*s" % (widths[i], head[i]) for i in range(len(head)))
    out.write(line + "\n" + "-" * len(line) + "\n")
    for b in body:
        out.write("  ".join(("%-*s" if i < 2 or i > 4 else "%*s") % (widths[i], b[i])
                            for i in range(len(head))) + "\n")
    out.write("ratio: for times, uWSGI/uwsgid (x faster); for sizes, uwsgid/uWSGI; "
              "for req/s, uwsgid/uWSGI.\n")
    targets = [r for r in rows if r["target"]]
    if targets:
        out.write("\ntargets: %d met, %d missed, %d not measured\n" % (
            sum(1 for r in targets if r["met"]), sum(1 for r in targets if r["met"] is False),
            sum(1 for r in targets if r["met"] is None)))
        for r in targets:
            verdict = {True: "met", False: "MISSED", None: "not measured"}[r["met"]]
            relative = "x" in r["target"]
            got = ("%.2fx" % r["ratio"]) if relative and r["ratio"] is not None else \
                (fmt(r["ours"], r["unit"]) + " " + r["unit"])
            out.write("  %-12s %s: %s (target %s)\n" % (verdict, r["scenario"], got,
                                                       r["target"]))


LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) ")


def log_ms(line):
    m = LOG_TS.match(line)
    if not m:
        return None
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) * 1000.0 + \
        int(m.group(2))


def log_phases(logfile, offset):
    """Where one uwsgid reload spent its time, from its log lines (1 ms resolution): the
    pre-exec configuration check, the re-exec, then the workers until complete."""
    try:
        with open(logfile, errors="replace") as f:
            f.seek(offset)
            lines = f.read().splitlines()
    except OSError:
        return None
    marks = {}
    for line in lines:
        for key, needle in (("received", " received"), ("exec", "re-executing"),
                            ("execed", "re-executed in place"), ("complete", " complete in ")):
            if key not in marks and needle in line:
                marks[key] = log_ms(line)
    if "received" not in marks or "complete" not in marks:
        return None
    out = {"total": marks["complete"] - marks["received"]}
    if "exec" in marks:
        out["check"] = marks["exec"] - marks["received"]
        if "execed" in marks:
            out["exec"] = marks["execed"] - marks["exec"]
            out["workers"] = marks["complete"] - marks["execed"]
    return out


def uwsgitop_first_screen(addr, reps):
    """Wall time from starting uwsgitop (in a pseudo-terminal, as it is interactive) until it
    has drawn its worker table ("WID" header); None if uwsgitop is not installed beside this
    Python. It is then killed: we started it."""
    import pty
    import select
    script = os.path.join(os.path.dirname(sys.executable), "uwsgitop")
    if not os.path.exists(script):
        return None
    times = []
    for _ in range(reps):
        t0 = now()
        pid, fd = pty.fork()
        if pid == 0:
            os.environ["TERM"] = "xterm"
            try:
                os.execv(sys.executable, [sys.executable, script, addr])
            finally:
                os._exit(127)
        seen, deadline = b"", time.monotonic() + 10
        while b"WID" not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break
        if b"WID" in seen:
            times.append((now() - t0) * 1000.0)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    if not times:
        log("uwsgitop never drew its table; its column is left out")
        return None
    return {"median_ms": median(times), "samples_ms": times, "failures": reps - len(times)}


def signal_received_ms(logfile, sender_pid):
    """Epoch ms of uwsgid's log line saying it received a signal from sender_pid, or None."""
    pat = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*from pid %d received"
                     % sender_pid)
    try:
        with open(logfile, errors="replace") as f:
            for line in f:
                m = pat.match(line)
                if m:
                    t = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
                    return t * 1000.0 + int(m.group(1)[20:23])
    except OSError:
        return None
    return None


def probe_ours():
    """True when the uwsgid binary exists and a short-lived instance answers HTTP and stats."""
    exe = os.path.join(BIN_DIR, "uwsgid")
    if not os.access(exe, os.X_OK):
        log("no uwsgid binary at %s: measuring uWSGI alone" % exe)
        return False
    wd = tempfile.mkdtemp(prefix="uwsgid-probe-")
    s = Uwsgid(wd, 1, "probe")
    try:
        s.start()
        t = s.wait_http(10)
        doc = s.stats() if t else None
        ok = bool(t and doc and "workers" in doc)
        if not ok:
            log("uwsgid does not answer (see %s): measuring uWSGI alone" % s.logfile)
        return ok
    except Exception as e:
        log("uwsgid probe failed: %r" % e)
        return False
    finally:
        s.stop()


def main():
    global BIN_DIR, OURS_OK
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, fewer variants")
    ap.add_argument("--only", help="comma list of: start,rss,reload,stats,idle,throughput,"
                    "storm,ctl,stop,python,nginx_uwsgi,prod,recycle,rollback")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds before optional work is skipped (default 780, quick 300)")
    ap.add_argument("--no-ours", action="store_true", help="measure uWSGI only")
    args = ap.parse_args()
    if args.budget is None:
        args.budget = 300 if args.quick else 780
    BIN_DIR = os.environ.get("UWSGID_BIN_DIR") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release")
    OURS_OK = False if args.no_ours else probe_ours()

    def on_signal(signum, _frame):
        cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    b = Bench(args)
    try:
        b.run()
    finally:
        cleanup()
        shutil.rmtree(b.workdir, ignore_errors=True) if not os.environ.get("BENCH_KEEP") else None
    uver = subprocess.run(["uwsgi", "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    meta = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick,
            "uwsgi_version": uver, "uwsgid_measured": OURS_OK, "bin_dir": BIN_DIR,
            "cpus": os.cpu_count(), "kernel": platform.release(),
            "elapsed_s": now() - T_START}
    try:
        meta["git"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                     stdout=subprocess.PIPE, text=True).stdout.strip()
        if OURS_OK:
            exe = os.path.join(BIN_DIR, "uwsgid")
            meta["uwsgid_version"] = subprocess.run([exe, "--version"], stdout=subprocess.PIPE,
                                                    text=True, timeout=10).stdout.strip()
            meta["uwsgid_mtime"] = time.strftime("%Y-%m-%dT%H:%M:%S",
                                                 time.localtime(os.path.getmtime(exe)))
    except (OSError, subprocess.SubprocessError):
        pass
    b.results["meta"] = meta
    b.results["table"] = b.rows
    resdir = os.path.join(HERE, "results")
    os.makedirs(resdir, exist_ok=True)
    name = os.path.join(resdir, "bench-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(name, "w") as f:
        json.dump(b.results, f, indent=1, default=str)
    shutil.copyfile(name, os.path.join(resdir, "latest.json"))
    print()
    print("uwsgid vs %s, %d CPUs, %s run, %.0f s" % (uver, os.cpu_count(),
                                                     "quick" if args.quick else "full",
                                                     meta["elapsed_s"]))
    print_table(b.rows)
    print("JSON: %s" % name)


BIN_DIR = None
OURS_OK = False

if __name__ == "__main__":
    main()
