#!/usr/bin/env python3
"""Soak test of uwsgid under reload storms (issue 6 item 2).

Under continuous wrk load (GET / and GET /sleep?ms=20 at once), it runs N graceful reloads,
then N chain reloads, then N brutal reloads, each one sent only once the previous one is
complete, and checks after every phase, against the state measured just before that phase
(not only after the last one: brutal reloads re-execute the master, which resets fds and RSS):
failed requests (zero for graceful and chain), every reload completed, the master's open fds
(no growth), zombie children (none), live children (no more than before), master RSS (growth
under 1 MiB) and the listening socket's inode (unchanged). Bounded in time; loopback only.
--quick (50 graceful, 10 chain, 10 brutal, at most 40 s of reloads) is the CI run.
Exit status 0 when every check passes, 1 otherwise.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the harness: servers, stats reading, reload completion)

from bench import KINDS, LUA, Uwsgid, cleanup, completion, log, now, read_stats, snapshot  # noqa: E402,E501


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def listener_inode(pid, port):
    """Inode of the master's listening TCP socket on 127.0.0.1:port."""
    want = "0100007F:%04X" % port
    inodes = set()
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                if p[1] == want and p[3] == "0A":
                    inodes.add(p[9])
    except OSError:
        return None
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return link[8:-1]
    except OSError:
        return None
    return None


def zombies(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if rest[0] == "Z" and int(rest[1]) == pid:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    return out


def children(pid):
    """The master's live children: workers, and with --python the zygotes."""
    n = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                n += len(f.read().split())
    except OSError:
        return None
    return n - len(zombies(pid))


def health(srv):
    return {"fds": fd_count(srv.pid), "rss_kib": bench.rss_kib(srv.pid),
            "zombies": zombies(srv.pid), "listener_inode": listener_inode(srv.pid, srv.port),
            "children": children(srv.pid), "alive": srv.proc.poll() is None}


def start_load(port, seconds):
    procs = []
    for path, conns in (("/", 16), ("/sleep?ms=20", 8)):
        procs.append((path, subprocess.Popen(
            ["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "10s", "-s", LUA,
             "http://127.0.0.1:%d%s" % (port, path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    return procs


def stop_load(procs):
    out = {}
    for path, p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # wrk stops and still reports
        try:
            stdout, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, _ = p.communicate()
        res = {}
        for line in stdout.splitlines():
            if line.startswith("WRKJSON "):
                res = json.loads(line[8:])
        res["errors"] = sum(res.get(k, 0) for k in ("connect", "read", "write", "status",
                                                    "timeout"))
        out[path] = res
    return out


def phase(srv, kind_name, count, deadline):
    kind = KINDS[kind_name]
    load = start_load(srv.port, int(max(5, deadline - now())) + 5)
    time.sleep(0.3)
    done, failures, times = 0, [], []
    try:
        for i in range(count):
            if now() > deadline:
                log("%s phase stopped by the time bound after %d reloads" % (kind_name, done))
                break
            snap = snapshot(srv)
            if snap is None:
                failures.append("no stats before reload %d" % (i + 1))
                time.sleep(0.05)
                continue
            t0 = now()
            bench.trigger(srv, kind.ours_how)
            ok = False
            while now() < t0 + 60:
                doc = read_stats(srv.stats_addr, 1.0)
                if doc:
                    fin, err, _ = completion(srv, snap, doc)
                    if err:
                        failures.append(err)
                        break
                    if fin:
                        ok = True
                        break
                if srv.proc.poll() is not None:
                    failures.append("master exited")
                    return done, failures, times, stop_load(load)
                time.sleep(0.002)
            if ok:
                done += 1
                times.append((now() - t0) * 1000.0)
            elif not failures or failures[-1] != "master exited":
                failures.append("reload %d not complete within 60 s" % (i + 1))
    finally:
        res = stop_load(load)
    return done, failures, times, res


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--graceful", type=int, default=500)
    ap.add_argument("--chain", type=int, default=100)
    ap.add_argument("--brutal", type=int, default=100)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--max-seconds", type=float, default=900)
    ap.add_argument("--quick", action="store_true",
                    help="the CI run: 50 graceful, 10 chain, 10 brutal, at most 40 s of reloads")
    ap.add_argument("--python", action="store_true",
                    help="serve bench/app.py through the WSGI runner (zygotes, standby)")
    args = ap.parse_args()
    if args.quick:
        args.graceful, args.chain, args.brutal = 50, 10, 10
        args.max_seconds = min(args.max_seconds, 40)
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    bench.BIN_DIR = os.environ.get("UWSGID_BIN_DIR") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target"), "release")

    def on_signal(signum, _frame):
        cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    workdir = tempfile.mkdtemp(prefix="uwsgid-soak-")
    t_end = now() + args.max_seconds
    report = {"args": vars(args), "phases": []}
    ok = True
    srv = (bench.UwsgidPy if args.python else Uwsgid)(workdir, args.workers, "soak")
    try:
        srv.start()
        srv.wait_ready(30)
        time.sleep(0.5)
        h0 = health(srv)
        report["before"] = h0
        log("before: %s" % h0)
        checks = {}
        # the time left is shared out in proportion to the reload counts
        total = args.graceful + args.chain + args.brutal
        for kind_name, count in (("graceful", args.graceful), ("chain", args.chain),
                                 ("brutal", args.brutal)):
            if count <= 0:
                continue
            hb = health(srv)
            share = (t_end - now()) * count / max(1, total)
            total -= count
            done, failures, times, load = phase(srv, kind_name, count, now() + share)
            # Settle: the last draining workers exit and are reaped (bounded).
            settle_end = now() + 5
            h = health(srv) if srv.proc.poll() is None else {"alive": False}
            while h.get("alive") and now() < settle_end and (
                    h.get("zombies") or (h.get("children") or 0) > (hb.get("children") or 0)):
                time.sleep(0.05)
                h = health(srv) if srv.proc.poll() is None else {"alive": False}
            errors = sum(v.get("errors", 0) for v in load.values())
            requests = sum(v.get("requests", 0) for v in load.values())
            p = {"kind": kind_name, "asked": count, "done": done, "failures": failures[:20],
                 "failure_count": len(failures), "reload_ms_median": bench.median(times),
                 "reload_ms_max": max(times) if times else None, "requests": requests,
                 "failed_requests": errors, "load": load, "before": hb, "after": h}
            report["phases"].append(p)
            log("%s: %d/%d reloads, median %s ms, %d requests, %d failed; after: %s" % (
                kind_name, done, count, p["reload_ms_median"], requests, errors, h))
            k = kind_name + ": "
            checks[k + "master alive"] = bool(h.get("alive"))
            if kind_name != "brutal":
                checks[k + "no failed request"] = errors == 0 and requests > 0
            checks[k + "every reload completed"] = p["failure_count"] == 0 and done == count
            checks[k + "no fd growth"] = (h.get("fds") is not None and
                                          h["fds"] <= hb["fds"])
            checks[k + "no zombie"] = not h.get("zombies")
            checks[k + "no process left behind"] = (h.get("children") is not None and
                                                    h["children"] <= hb["children"])
            checks[k + "RSS growth < 1 MiB"] = (h.get("rss_kib") is not None and
                                                h["rss_kib"] - hb["rss_kib"] < 1024)
            checks[k + "listener inode unchanged"] = (h.get("listener_inode") ==
                                                      hb["listener_inode"])
            if not h.get("alive"):
                break
        report["checks"] = checks
        ok = ok and all(checks.values())
    finally:
        cleanup()
    resdir = os.path.join(here, "results")
    os.makedirs(resdir, exist_ok=True)
    name = os.path.join(resdir, "soak-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(name, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print("\nsoak: %d %sworkers, %.0f s" % (args.workers, "Python " if args.python else "",
                                            now() - bench.T_START))
    print("%-9s %8s %10s %12s %10s %8s %6s %9s %8s" % (
        "phase", "reloads", "median ms", "requests", "failed", "fds", "zomb", "rss KiB",
        "inode"))
    b = report.get("before", {})
    print("%-9s %8s %10s %12s %10s %8s %6s %9s %8s" % (
        "before", "-", "-", "-", "-", b.get("fds"), len(b.get("zombies", [])), b.get("rss_kib"),
        b.get("listener_inode")))
    for p in report["phases"]:
        a = p["after"]
        med = p["reload_ms_median"]
        print("%-9s %8s %10s %12d %10d %8s %6s %9s %8s" % (
            p["kind"], "%d/%d" % (p["done"], p["asked"]),
            "%.1f" % med if med is not None else "-", p["requests"], p["failed_requests"],
            a.get("fds"), len(a.get("zombies", [])), a.get("rss_kib"), a.get("listener_inode")))
    for k, v in (report.get("checks") or {}).items():
        print("  %-48s %s" % (k, "ok" if v else "FAILED"))
    print("JSON: %s" % name)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
