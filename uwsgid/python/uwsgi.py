"""The ``uwsgi`` module for Python apps run by uwsgid: what apps written for uWSGI call.

uwsgid writes this file beside its bundled WSGI runner, so ``import uwsgi`` works in every
Python worker (the native worker serves the same file). It knows the instance from the
environment uwsgid gives its workers:

- ``UWSGID_MASTER_PID``: the master's pid; ``UWSGID_MASTER_FIFO``: its master FIFO, if any;
- ``UWSGID_WORKER_ID``: this worker's slot (1..N); ``UWSGID_PROCESSES``: the slot count;
- ``UWSGID_OPT``: the instance's options as JSON (name -> value, a list when repeated);
- ``UWSGID_STARTED_ON``: when the master started (Unix seconds).

``reload()`` and ``stop()`` return at once; the master then reloads gracefully (requests in
flight, this one included, finish) or stops. They write the master FIFO (``r``, ``q``: both
graceful) when there is one, else signal the master (SIGHUP: graceful reload; SIGINT: stop at
once), and signal only if this process's parent is that master, so a stale variable can never
make them signal another process. Standard library only.
"""

import json
import os
import signal
import threading

__all__ = [
    "reload", "stop", "worker_id", "masterpid", "numproc", "opt", "started_on",
    "total_requests", "workers", "version", "hostname",
]

version = b"uwsgid"
SPOOL_OK = -2  # uWSGI's spooler constants, for apps that import them
SPOOL_RETRY = -1
SPOOL_IGNORE = 0


def _int_env(name, default=0):
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return default


def _opt():
    try:
        raw = json.loads(os.environ.get("UWSGID_OPT", "{}"))
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}

    # uWSGI gives option values as bytes (True for flags), a list when repeated.
    def conv(v):
        if isinstance(v, list):
            return [conv(x) for x in v]
        if v is True:
            return True
        return str(v).encode("utf-8", "surrogateescape")

    return {str(k): conv(v) for k, v in raw.items()}


numproc = _int_env("UWSGID_PROCESSES", 1)
opt = _opt()
started_on = _int_env("UWSGID_STARTED_ON", 0)
hostname = os.uname().nodename.encode()

_lock = threading.Lock()
_served = 0


def _count_request():
    """Called by the runner once per request served by this worker."""
    global _served
    with _lock:
        _served += 1


def masterpid():
    """The master's pid (0 if not run by uwsgid)."""
    return _int_env("UWSGID_MASTER_PID", 0)


def worker_id():
    """This worker's slot, 1..numproc (0 outside a worker)."""
    return _int_env("UWSGID_WORKER_ID", 0)


def total_requests():
    """Requests served by this worker so far (uwsgid's Python workers keep no shared count)."""
    with _lock:
        return _served


def workers():
    """uWSGI returns a tuple of per-worker dicts; here only this worker's is known."""
    return ({"id": worker_id(), "pid": os.getpid(), "requests": total_requests(),
             "status": "busy"},)


def _tell_master(fifo_byte, sig):
    pid = masterpid()
    fifo = os.environ.get("UWSGID_MASTER_FIFO")
    if fifo:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            fd = None
        if fd is not None:
            try:
                os.write(fd, fifo_byte)
                return True
            except OSError:
                pass
            finally:
                os.close(fd)
    if pid > 1 and os.getppid() == pid:
        os.kill(pid, sig)
        return True
    return False


def reload():
    """Ask the master for a graceful reload; returns at once (True if the master was told)."""
    return _tell_master(b"r", signal.SIGHUP)


def stop():
    """Ask the master to stop gracefully; returns at once (True if the master was told)."""
    return _tell_master(b"q", signal.SIGINT)
