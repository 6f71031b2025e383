#!/usr/bin/env python3
"""Before/after: the same reloads timed on two builds of uwsgid, interleaved.

Two directories of release binaries (`--before`, default the tree at commit aaaf13f built in
/work/wt/old; `--after`, default this tree's target/release). For each row (graceful reload of
4 and 64 built-in workers, chain reload of 16) both masters run at once, and the repetitions
alternate: before, after, before, after, ... so that a burst of load from elsewhere on the
machine lands on both sides alike. Completion is judged exactly as bench.py judges it
(`bench.completion`: uwsgid's own last_reload is new, complete, nothing reloading or
draining). Prints per row the median, min-max and interquartile range of each side and the
ratio after/before of the medians (below 1.0: the after build is faster), with the load average
at the start and the end (the machine's other work is the main source of spread); writes every
sample to bench/results/ab-DATE.json.

Run it through `bench/run ab [--reps N] [--rows graceful:4,...] [--before DIR] [--after DIR]`.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (bench.py beside this file: servers, reload timing, cleanup)

ROOT = os.path.dirname(HERE)
DEFAULT_BEFORE = "/work/wt/old/target/release"
ROWS = [("graceful", 4), ("graceful", 64), ("chain", 16)]


class UwsgidAt(bench.Uwsgid):
    """bench.Uwsgid, run from a given directory of binaries instead of bench.BIN_DIR."""

    def __init__(self, workdir, workers, tag, bin_dir):
        self.bin_dir = bin_dir
        super().__init__(workdir, workers, tag)

    def argv(self):
        # bench.Uwsgid's own command line, with this build's binary
        saved, bench.BIN_DIR = bench.BIN_DIR, self.bin_dir
        try:
            return super().argv()
        finally:
            bench.BIN_DIR = saved


def spread(xs):
    """(min, q1, q3, max) of the samples, or Nones."""
    if not xs:
        return None, None, None, None
    return min(xs), bench.pct(xs, 25), bench.pct(xs, 75), max(xs)


def run_row(workdir, dirs, kind_name, n, reps):
    kind = bench.KINDS[kind_name]
    timeout = 30 + (n * 1.5 if kind_name == "chain" else n * 0.2)
    servers = {side: UwsgidAt(workdir, n, "%s-%s%d" % (side, kind_name, n), d)
               for side, d in dirs.items()}
    samples = {side: [] for side in dirs}
    try:
        for srv in servers.values():
            srv.start()
        for srv in servers.values():
            srv.wait_ready(60 + n * 0.5)
        broken = set()
        for i in range(reps):
            for side, srv in servers.items():  # dict order: before, then after
                if side in broken:
                    continue
                bench.settle(srv, 60 + n * 0.5)
                r = bench.reload_once(srv, kind, timeout)
                samples[side].append(r)
                bench.log("%s: %s reload, %d workers, rep %d: %s" % (
                    side, kind_name, n, i + 1,
                    "%.1f ms" % r["ms"] if "ms" in r else r["error"]))
                if "error" in r:
                    broken.add(side)
    finally:
        for srv in servers.values():
            srv.stop()
    out = {}
    for side, smp in samples.items():
        ms = [x["ms"] for x in smp if "ms" in x]
        out[side] = {
            "samples_ms": ms, "median_ms": bench.median(ms),
            "self_reported_ms": [x.get("self_ms") for x in smp if "ms" in x],
            "log_phases_ms": [x.get("phases_ms") for x in smp if "ms" in x],
            "errors": [x["error"] for x in smp if "error" in x],
            "http_failures": sum(1 for x in smp if x.get("http_ok") is False),
        }
    return out


def fmt(v):
    return "-" if v is None else "%.1f" % v


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=DEFAULT_BEFORE,
                    help="directory holding the before build's uwsgid (default %(default)s)")
    ap.add_argument("--after", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release"),
        help="directory holding the after build's uwsgid (default %(default)s)")
    ap.add_argument("--reps", type=int, default=9,
                    help="repetitions per side and row (default %(default)s)")
    ap.add_argument("--rows", default=",".join("%s:%d" % r for r in ROWS),
                    help="comma list of KIND:WORKERS (default %(default)s)")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    rows = []
    for item in args.rows.split(","):
        kind, _, n = item.partition(":")
        if kind not in bench.KINDS or not n.isdigit() or int(n) < 1:
            ap.error("--rows %r: give KIND:WORKERS, KIND one of %s" % (
                item, ", ".join(bench.KINDS)))
        rows.append((kind, int(n)))
    dirs = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    for side, d in dirs.items():
        exe = os.path.join(d, "uwsgid")
        if not os.access(exe, os.X_OK):
            hint = (" (build it: git worktree add /work/wt/old aaaf13f && "
                    "cd /work/wt/old && cargo build --release)" if side == "before" else
                    " (build it: cargo build --release -p uwsgid)")
            sys.exit("ab: no %s build: %s is not an executable%s" % (side, exe, hint))
    if dirs["before"] == dirs["after"]:
        bench.log("before and after are the same directory: expect a ratio near 1.0")

    def on_signal(signum, _frame):
        bench.cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    workdir = tempfile.mkdtemp(prefix="uwsgid-ab-")
    results = {"rows": {}}
    load_before = os.getloadavg()
    try:
        for kind_name, n in rows:
            name = "%s reload, %d workers" % (kind_name, n)
            bench.log("row: %s" % name)
            try:
                results["rows"][name] = run_row(workdir, dirs, kind_name, n, args.reps)
            except Exception as e:  # one broken row must not lose the others
                bench.log("row %s failed: %r" % (name, e))
                results["rows"][name] = {"error": repr(e)}
                bench.cleanup()
    finally:
        bench.cleanup()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)

    load_after = os.getloadavg()
    results["meta"] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reps": args.reps,
                       "dirs": dirs, "cpus": os.cpu_count(),
                       "elapsed_s": bench.now() - bench.T_START,
                       "loadavg_before": load_before, "loadavg_after": load_after}
    resdir = os.path.join(HERE, "results")
    os.makedirs(resdir, exist_ok=True)
    path = os.path.join(resdir, "ab-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)

    print()
    print("before: %s\nafter:  %s\n%d repetitions per side, interleaved, ms; load average "
          "(1, 5, 15 min) %s at the start, %s at the end, %d CPUs" % (
              dirs["before"], dirs["after"], args.reps,
              "/".join("%.1f" % x for x in load_before),
              "/".join("%.1f" % x for x in load_after), os.cpu_count() or 0))
    head = ("row", "before median", "before min-max (q1-q3)", "after median",
            "after min-max (q1-q3)", "after/before")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in results["rows"].items():
        if "error" in r:
            print("| %s | %s |" % (name, r["error"]) + " |" * (len(head) - 2))
            continue
        cells = [name]
        for side in ("before", "after"):
            s = r[side]
            lo, q1, q3, hi = spread(s["samples_ms"])
            cells.append(fmt(s["median_ms"]) + ("" if not s["errors"] else
                                                " (%d errors)" % len(s["errors"])))
            cells.append("%s-%s (%s-%s)" % (fmt(lo), fmt(hi), fmt(q1), fmt(q3)))
        b, a = r["before"]["median_ms"], r["after"]["median_ms"]
        cells.append("%.2f" % (a / b) if a and b else "-")
        print("| " + " | ".join(cells) + " |")
    print()
    print("uwsgid's own view, medians in ms (duration_ms; log phases at 1 ms resolution: "
          "check / exec / workers)")
    for name, r in results["rows"].items():
        if "error" in r:
            continue
        cells = []
        for side in ("before", "after"):
            own = bench.median(r[side]["self_reported_ms"])
            ph = [p for p in r[side]["log_phases_ms"] if p]
            phases = "/".join(fmt(bench.median([p.get(k) for p in ph]))
                              for k in ("check", "exec", "workers"))
            cells.append("%s: %s, %s" % (side, fmt(own), phases))
        print("  %s: %s" % (name, "; ".join(cells)))
    print("JSON: %s" % path)


if __name__ == "__main__":
    main()
