#!/usr/bin/env python3
"""Python apps, like for like: uwsgid's native Python worker against uWSGI 2.0 (python3
plugin), Granian (--interface wsgi) and gunicorn (sync, gthread), in one run.

Every server runs the same file (bench/app.py), on the same interpreter (/usr/bin/python3:
uWSGI's python3 plugin embeds it, uwsgid-python links it, Granian and gunicorn are started
with it), with the same workers and threads per worker. Repetitions are interleaved: round 1
measures every server once, then round 2, so a burst of load from elsewhere hits all alike.
Only one server is under load at a time.

Rows (wrk -t2, 2 workers): hello with one connection per request (`Connection: close`;
uWSGI on --http-socket), hello with keep-alive (uWSGI on --http11-socket), a 10 KB response
(keep-alive), a 1 MB POST echoed as its length (keep-alive, 8 connections), and hello with
keep-alive on 2 connections, one per worker (row 5: the like-for-like latency row, since
uWSGI's --http11-socket worker of 1 thread serves one connection at a time).

Every row gives req/s, p50 and p99 (wrk's latency of the requests that were answered) and
errors. Keep-alive rows also give "answered": how many of wrk's connections had received any
byte from the server late in the run (the client sockets' `bytes_received` from `ss -ti`,
taken 0.7 s before wrk stops, or at half time if that came too late). wrk's latency figures only cover answered requests,
so a server that leaves 30 of 32 connections waiting in its backlog shows the latency of the
2 it serves: "answered" says who served everyone. (wrk's Lua `response()` is given no
connection, so the count is the kernel's view of wrk's sockets.)

Usage: bench/run peers [--quick] [--threads 1,8] [--seconds N] [--rows 1,2,3,4,5]
Writes bench/results/peers-DATE.json and prints a table; ratios are uwsgid / peer (req/s).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APP = os.path.join(HERE, "app.py")
LUA = os.path.join(HERE, "report.lua")
PY = "/usr/bin/python3"
BIN_DIR = os.environ.get("UWSGID_BIN_DIR") or os.path.join(ROOT, "target", "release")


def log(msg):
    sys.stderr.write("peers: %s\n" % msg)
    sys.stderr.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def argv_for(name, port, workers, threads, logfile):
    addr = "127.0.0.1:%d" % port
    if name == "uwsgid":
        return [os.path.join(BIN_DIR, "uwsgid"), "--http-socket", addr, "--processes",
                str(workers), "--threads", str(threads), "--wsgi-file", APP, "--python", PY,
                "--logto", logfile]
    if name in ("uwsgi", "uwsgi-http11"):
        sock = "--http11-socket" if name == "uwsgi-http11" else "--http-socket"
        a = ["uwsgi", "--master", sock, addr, "--plugin", "python3", "--wsgi-file", APP,
             "--processes", str(workers), "--disable-logging", "--logto", logfile]
        if threads > 1:
            a += ["--threads", str(threads)]
        if name == "uwsgi":
            # uWSGI's --http-socket closes after each response while answering HTTP/1.1: the
            # header says so (else wrk counts each close as a read error).
            a += ["--add-header", "Connection: close"]
        return a
    if name == "granian":
        return [PY, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port",
                str(port), "--workers", str(workers), "--blocking-threads", str(threads),
                "--log-level", "warning", "app:application"]
    if name == "gunicorn-sync":
        return [PY, "-m", "gunicorn", "-w", str(workers), "-k", "sync", "-b", addr,
                "--log-level", "warning", "app:application"]
    if name == "gunicorn-gthread":
        return [PY, "-m", "gunicorn", "-w", str(workers), "-k", "gthread", "--threads",
                str(threads), "-b", addr, "--log-level", "warning", "app:application"]
    raise ValueError(name)


class Server:
    def __init__(self, name, workers, threads, workdir):
        self.name = name
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="peer-%s-" % name, dir=workdir)
        self.logfile = os.path.join(self.dir, "server.log")
        self.argv = argv_for(name, self.port, workers, threads, self.logfile)
        env = dict(os.environ)
        env["UWSGID_RUNTIME_DIR"] = os.path.join(self.dir, "run")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.proc = subprocess.Popen(self.argv, cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                                     stdout=open(self.logfile + ".out", "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, timeout=30.0):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited: %s" % (self.name, self.tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        time.sleep(1.0)  # every worker up (uwsgid: forked from the zygote)
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s did not answer: %s" % (self.name, self.tail()))

    def tail(self):
        out = ""
        for f in (self.logfile, self.logfile + ".out"):
            try:
                out += open(f, errors="replace").read()[-600:]
            except OSError:
                pass
        return out

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT if self.name.startswith("uwsgi")
                          and self.name != "uwsgid" else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def client_sockets(port):
    """Bytes received so far by every established client socket to `port` on loopback (wrk's
    connections), from `ss -ti`; None where ss is missing or fails."""
    if not shutil.which("ss"):
        return None
    try:
        p = subprocess.run(["ss", "-Htni", "state", "established", "( dport = :%d )" % port],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    socks = []
    for line in p.stdout.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            socks.append(0)  # a socket's first line; its details follow, indented
        elif socks:
            m = re.search(r"\bbytes_received:(\d+)", line)
            if m:
                socks[-1] = int(m.group(1))
    return socks


def wrk(port, path, seconds, conns=32, close=False, script=LUA, count_answered=False):
    cmd = ["wrk", "-t2", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s", "-s", script]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append("http://127.0.0.1:%d%s" % (port, path))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    socks, snaps, t0 = None, [], time.monotonic()
    try:
        if count_answered:
            # at half time and 0.7 s before the end; the later one is used unless it came too
            # late (a loaded machine can delay it past wrk's end, when its sockets are closed)
            for at in sorted({seconds * 0.5, max(seconds * 0.5, seconds - 0.7)}):
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                got = client_sockets(port)
                if got is not None:
                    snaps.append((time.monotonic() - t0, got))
            good = [sk for at, sk in snaps if sk and at < seconds - 0.05] or \
                [sk for _, sk in snaps if sk] or [sk for _, sk in snaps]
            socks = good[-1] if good else None
        stdout, _ = p.communicate(timeout=seconds + 30)
    except BaseException:
        p.kill()
        p.wait()
        raise
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            d = json.loads(line[8:])
            d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
            d["errors"] = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
            if socks is not None:
                d["conns"] = conns
                d["conns_seen"] = len(socks)
                d["answered"] = sum(1 for b in socks if b > 0)
                d["conn_bytes"] = sorted(socks)
                d["snapshots"] = [{"at_s": round(at, 3), "sockets": len(sk),
                                   "answered": sum(1 for b in sk if b > 0)} for at, sk in snaps]
            return d
    raise RuntimeError("wrk gave no report: %s" % stdout[-500:])


def post_script(workdir):
    path = os.path.join(workdir, "post.lua")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = string.rep("x", 1048576)\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n'
                'dofile("%s")\n' % LUA)
    return path


# (row, path, keep-alive servers or close, connections, which servers)
ROWS = [
    ("hello, one connection per request", "/", True, 32,
     ["uwsgid", "uwsgi", "granian", "gunicorn-sync", "gunicorn-gthread"]),
    ("hello, keep-alive", "/", False, 32,
     ["uwsgid", "uwsgi-http11", "granian", "gunicorn-gthread"]),
    ("10 KB response, keep-alive", "/10k", False, 32,
     ["uwsgid", "uwsgi-http11", "granian", "gunicorn-gthread"]),
    ("1 MB POST echo, keep-alive", "/echo", False, 8,
     ["uwsgid", "uwsgi-http11", "granian", "gunicorn-gthread"]),
    # one connection per worker: what uWSGI's --http11-socket (1 connection per worker at a
    # time) is measured on in the rows above, given to every server (gunicorn sync has no
    # keep-alive, as in the other keep-alive rows)
    ("hello, keep-alive, 2 connections", "/", False, 2,
     ["uwsgid", "uwsgi-http11", "granian", "gunicorn-gthread"]),
]


def main():
    quick = "--quick" in sys.argv
    threads_list = [1]
    seconds = 3 if quick else 5
    args = sys.argv[1:]
    for i, a in enumerate(args):
        if a == "--threads" and i + 1 < len(args):
            threads_list = [int(x) for x in args[i + 1].split(",")]
        if a == "--seconds" and i + 1 < len(args):
            seconds = int(args[i + 1])
        if a == "--rows" and i + 1 < len(args):  # 1-based row numbers, e.g. --rows 1,3
            keep = {int(x) for x in args[i + 1].split(",")}
            ROWS[:] = [r for n, r in enumerate(ROWS, 1) if n in keep]
    rounds = 1 if quick else 2
    workdir = tempfile.mkdtemp(prefix="uwsgid-peers-")
    post = post_script(workdir)
    results = {"seconds": seconds, "rounds": rounds, "python": PY, "rows": {}}
    started = time.time()
    for threads in threads_list:
        for row, path, close, conns, names in ROWS:
            key = "%s (2 workers x %d thread%s)" % (row, threads, "s" if threads > 1 else "")
            per = results["rows"].setdefault(key, {})
            for rnd in range(rounds):
                for name in names:
                    if name == "gunicorn-sync" and threads > 1:
                        continue
                    srv = None
                    try:
                        srv = Server(name, 2, threads, workdir)
                        srv.wait()
                        script = post if path == "/echo" else LUA
                        wrk(srv.port, path, 1, conns, close, script)  # warm-up
                        d = wrk(srv.port, path, seconds, conns, close, script,
                                count_answered=not close)
                        per.setdefault(name, []).append(d)
                        log("%s | %s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d%s" % (
                            key, name, d["rps"], d["p50_us"] / 1000.0, d["p99_us"] / 1000.0,
                            d["errors"], ", answered %d/%d connections" % (
                                d["answered"], conns) if "answered" in d else ""))
                    except Exception as e:  # one server failing must not end the run
                        log("%s | %s: %s" % (key, name, e))
                        per.setdefault(name, []).append({"error": str(e)})
                    finally:
                        if srv:
                            srv.stop()
    results["elapsed_s"] = time.time() - started
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out = os.path.join(HERE, "results", "peers-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    fmt = "%-56s %-17s %10s %9s %9s %7s %9s %10s"
    print(fmt % ("row", "server", "req/s", "p50 ms", "p99 ms", "errors", "answered",
                 "uwsgid/x"))
    for key, per in results["rows"].items():
        ours = median([d.get("rps") for d in per.get("uwsgid", [])])
        for name, ds in per.items():
            rps = median([d.get("rps") for d in ds])
            p50 = median([d.get("p50_us") for d in ds])
            p99 = median([d.get("p99_us") for d in ds])
            errs = sum(d.get("errors", 0) for d in ds)
            # the worst round: a server serves everyone only if it did in every round
            ans = [d for d in ds if "answered" in d]
            answered = "%d/%d" % (min(d["answered"] for d in ans), ans[0]["conns"]) \
                if ans else "-"
            ratio = "" if name == "uwsgid" or not (rps and ours) else "%.2fx" % (ours / rps)
            print(fmt % (
                key[:56], name, "%.0f" % rps if rps else "-",
                "%.2f" % (p50 / 1000.0) if p50 else "-",
                "%.2f" % (p99 / 1000.0) if p99 else "-", errs, answered, ratio))
    print("answered: connections (of wrk's) that had received any byte 0.7 s before the end "
          "of the run (or at half time), from ss; wrk's latencies cover answered requests "
          "only.")
    print("data: %s" % out)


if __name__ == "__main__":
    main()
