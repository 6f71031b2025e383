#!/usr/bin/env python3
"""The reload floor: what starting N Python workers by fork costs on this machine, with
nothing else done (no app, no sockets to accept on, no stats, no drain).

A graceful reload of preloaded Python workers cannot be faster than forking them from a process
that holds the app's heap and hearing from each of them once. This script measures that:

- the *master* (this process) is a child subreaper (`PR_SET_CHILD_SUBREAPER`), as uwsgid's
  master is, and owns an abstract-namespace datagram socket;
- its child, the *zygote*, is the same interpreter as the servers' (`/usr/bin/python3` where
  it exists) with some heap: a list of 20,000 small dicts, frozen out of the garbage collector
  (`gc.freeze()`), roughly the objects a small app preloads;
- on each command the zygote forks N workers; each sends one datagram (`R`, the "ready") to
  the master's socket and exits. The time is from the master's command to the N-th datagram.

Two modes:

- `single`: the zygote forks each worker itself (one fork per worker). A server whose master
  forks its workers directly, as uWSGI's does, pays this.
- `double`: the zygote forks a middle child, which forks the worker and exits; the worker
  waits on a pidfd of the middle until it is gone (then for `getppid()` to change), i.e. until
  it has been re-parented to the master, then sends. This is what running the workers as the
  master's children from a separate zygote process needs (uwsgid's Python workers).

After each measurement the zygote reaps the middles (double) or the workers (single) and says
so; the master reaps the re-parented workers (double), so every repetition starts clean.

Usage:
    python3 bench/floor.py [--workers 4,16] [--modes single,double] [--reps 5] [--json]
    python3 bench/floor.py --serve     # for bench.py: reads "MODE N" lines, answers "MS"

`--serve` answers each line on stdin with one line on stdout: the milliseconds, or
`error: ...`; EOF or `quit` ends it (the zygote with it). bench.py drives it through the
`Floor` class below, interleaving its measurements with the servers' reloads.
"""

import ctypes
import gc
import json
import os
import select
import socket
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
HEAP_DICTS = 20000
SYSTEM_PYTHON = "/usr/bin/python3"
TIMEOUT = 30.0  # a measurement that takes longer than this is reported as an error


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def send_ready(addr):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"R", addr)


def wait_reparented(middle):
    """In the worker: until the middle child has exited and we are the master's child."""
    try:
        fd = os.pidfd_open(middle)
    except (ProcessLookupError, AttributeError, OSError):
        fd = None
    if fd is not None:
        p = select.poll()
        p.register(fd, select.POLLIN)
        p.poll(5000)
        os.close(fd)
    end = time.monotonic() + 5.0
    while os.getppid() == middle and time.monotonic() < end:
        time.sleep(0.0002)


def zygote(ctl, addr):
    """The forking child: waits for "MODE N" on `ctl`, forks, reaps, answers b"D"."""
    heap = [dict(a=i, b=str(i)) for i in range(HEAP_DICTS)]  # noqa: F841 (kept alive)
    gc.freeze()
    buf = b""
    while True:
        chunk = ctl.recv(64)
        if not chunk:
            os._exit(0)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            mode, n = line.decode().split()
            n = int(n)
            kids = []
            for _ in range(n):
                if mode == "single":
                    pid = os.fork()
                    if pid == 0:
                        send_ready(addr)
                        os._exit(0)
                    kids.append(pid)
                else:
                    pid = os.fork()
                    if pid == 0:
                        middle = os.getpid()
                        if os.fork() == 0:
                            wait_reparented(middle)
                            send_ready(addr)
                        os._exit(0)
                    kids.append(pid)
            for pid in kids:
                os.waitpid(pid, 0)
            ctl.sendall(b"D")


class Floor:
    """The master side, in this process (which becomes a child subreaper: run it as its own
    process, as `--serve` does, not inside a program whose orphans must not come to it)."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.addr = "\0uwsgid-bench-floor-%d" % os.getpid()
        self.rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.rx.bind(self.addr)
        self.ctl, theirs = socket.socketpair()
        self.zygote = os.fork()
        if self.zygote == 0:
            self.ctl.close()
            self.rx.close()
            try:
                zygote(theirs, self.addr)
            finally:
                os._exit(0)
        theirs.close()
        time.sleep(0.5)  # the heap built before the first measurement

    def measure(self, mode, n):
        if mode not in ("single", "double") or n < 1:
            raise ValueError("mode is single or double, N >= 1")
        end = time.monotonic() + TIMEOUT
        t0 = time.perf_counter()
        self.ctl.sendall(("%s %d\n" % (mode, n)).encode())
        got = 0
        while got < n:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("%d of %d workers sent ready" % (got, n))
            self.rx.settimeout(left)
            self.rx.recv(8)
            got += 1
        ms = (time.perf_counter() - t0) * 1000.0
        self.ctl.settimeout(max(0.1, end - time.monotonic()))
        if self.ctl.recv(1) != b"D":
            raise RuntimeError("zygote gone")
        if mode == "double":
            self.reap(n, end)
        return ms

    def reap(self, n, end):
        """The re-parented workers, now the master's children (the zygote is not reaped)."""
        reaped = 0
        while reaped < n and time.monotonic() < end:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.001)
            elif pid == self.zygote:
                raise RuntimeError("zygote exited")
            else:
                reaped += 1

    def close(self):
        self.ctl.close()
        try:
            os.waitpid(self.zygote, 0)
        except ChildProcessError:
            pass
        self.rx.close()


class FloorProcess:
    """bench.py's handle: `floor.py --serve` as a child process (so the subreaper is that
    process, not the benchmark), measured one line at a time."""

    def __init__(self, python=None):
        py = python or (SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable)
        self.proc = subprocess.Popen([py, os.path.abspath(__file__), "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.python = py

    def measure(self, mode, n):
        """Milliseconds, or raises RuntimeError with the floor's own message."""
        self.proc.stdin.write("%s %d\n" % (mode, n))
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT + 5)
        if not ready:
            raise RuntimeError("floor: no answer within %.0f s" % (TIMEOUT + 5))
        line = self.proc.stdout.readline().strip()
        if not line or line.startswith("error"):
            raise RuntimeError("floor: %s" % (line or "exited"))
        return float(line)

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def serve():
    floor = Floor()
    try:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            if line == "quit":
                break
            try:
                mode, n = line.split()
                print("%.3f" % floor.measure(mode, int(n)), flush=True)
            except Exception as e:  # one bad measurement is reported, not fatal
                print("error: %s" % e, flush=True)
    finally:
        floor.close()


def main(argv):
    if "--serve" in argv:
        serve()
        return 0
    workers, modes, reps, as_json = [4, 16], ["single", "double"], 5, "--json" in argv
    for i, a in enumerate(argv):
        if a == "--workers" and i + 1 < len(argv):
            workers = [int(x) for x in argv[i + 1].split(",")]
        if a == "--modes" and i + 1 < len(argv):
            modes = argv[i + 1].split(",")
        if a == "--reps" and i + 1 < len(argv):
            reps = int(argv[i + 1])
    floor = Floor()
    out = {}
    try:
        # interleaved: every (mode, N) once per repetition
        for _ in range(reps):
            for n in workers:
                for mode in modes:
                    out.setdefault("%s %d" % (mode, n), []).append(floor.measure(mode, n))
                    time.sleep(0.1)
    finally:
        floor.close()
    if as_json:
        print(json.dumps({"python": sys.executable, "heap_dicts": HEAP_DICTS, "samples_ms": out}))
    else:
        for k, v in out.items():
            print("%-10s median %7.1f ms  (min %.1f, max %.1f; %d reps)" % (
                k, median(v), min(v), max(v), len(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
