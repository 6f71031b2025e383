"""uwsgid's bundled WSGI runner: serve one WSGI application on inherited listeners.

uwsgid runs this code as an exec worker (``--wsgi-file`` / ``--module``), never from a file:
``python3 -c BOOTSTRAP`` reads it from a sealed memfd and runs it as the module ``uwsgid_wsgi``
(uwsgid/src/runner.rs), with the current directory taken off ``sys.path``. The modules the
runner needs at start are imported before the application's directories are put on
``sys.path`` (``traceback``, imported only to print an error, is found like the
application's own imports). The listening sockets arrive by the systemd protocol (LISTEN_FDS, LISTEN_PID, fds from 3); readiness is
reported with ``READY=1`` on NOTIFY_SOCKET once the application is loaded and the accept loop
runs. Standard library only, Python 3.8 or newer.

Design: the main thread owns a selector over the listeners, the idle keep-alive connections
and a wake-up pipe. A connection with bytes to read is handed to a bounded thread pool, whose
thread reads one request, runs the application and writes the response, then gives the
connection back to the selector (or keeps going while pipelined requests are buffered). Idle
connections therefore hold no thread, and a slow request holds exactly one. When every thread
is busy the worker stops accepting, so other workers sharing the listeners take new clients.

Preload (``--zygote``, uwsgid's default for Python apps): this process imports the application
once, says ``READY=1`` and then waits on its control socket (fd ``UWSGID_ZYGOTE_FD``) for lines
``fork SLOT GENERATION``. For each it forks a child that forks the worker and exits at once,
so the worker is re-parented to the master (a child subreaper). The worker waits for that,
sets its parent-death signal, announces itself (``STATUS=`` with ``UWSGID_SLOT`` and
``UWSGID_GENERATION``, so that the master adopts it while it starts) and serves; its
``READY=1`` carries the same two lines. The zygote never serves and starts no
thread: threads exist only after the fork.

Standby (``--zygote --standby``): the zygote of the *next* generation, started while the
current one serves. It starts the interpreter and this module, then waits for the line
``load`` before it imports the application, so a reload pays only for the import.

SIGTERM and SIGHUP drain: stop accepting, close idle connections, let requests in flight
finish (their responses say ``Connection: close``), then exit 0. uwsgid bounds the drain with
its mercy. SIGINT and SIGQUIT exit at once. Startup errors print one clear line (and the
traceback when there is one) and exit 1 before READY.
"""

import importlib
import os
import selectors
import signal
import socket
import sys
import threading
import time

try:  # the C parts of queue and importlib.util, without their imports (5 ms at every start)
    import _queue as queue
    from importlib._bootstrap import module_from_spec
    from importlib._bootstrap_external import spec_from_file_location
except ImportError:  # pragma: no cover - other interpreters
    import queue
    from importlib.util import module_from_spec, spec_from_file_location

# Start-up time is reload time: every worker of a new generation imports this file. So only
# cheap modules are imported here (argparse, concurrent.futures, email.utils, urllib.parse and
# traceback would add some 40 ms); the few functions needed from them are written out below,
# and traceback is imported only when there is one to print.

PROG = "uwsgid-wsgi"
LISTEN_FDS_START = 3
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
# A request head must be complete this long after its first byte (the built-in worker's).
HEAD_TIMEOUT = 10.0
# Unread request bodies up to this size are discarded to keep the connection; beyond it the
# connection is closed instead.
MAX_DISCARD_BYTES = 1024 * 1024
RECV_SIZE = 64 * 1024
TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
HOP_BY_HOP = frozenset(
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"]
)
REASONS = {
    100: "Continue", 400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 505: "HTTP Version Not Supported",
}


class StartupError(Exception):
    """A problem that stops the worker before it reports READY (exit code 1)."""


class BadRequest(Exception):
    """The client sent something that is not HTTP/1.x; answered with `status` and closed."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The peer closed or reset the connection, or stopped sending within the timeout."""


class NeedMore(Exception):
    """A request head is incomplete and no more bytes are there yet: the connection goes back
    to the selector (with what it has), so a slow or silent client holds no thread."""


def log(message):
    sys.stderr.write("%s[%d]: %s\n" % (PROG, os.getpid(), message))
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Startup: options, inherited listeners, the application


# While draining, an idle keep-alive connection is given this long (seconds) from the drain's
# start to send its next request, answered with Connection: close (the built-in worker's
# DRAIN_GRACE, uwsgid/src/worker.rs, which says why 2 s).
DRAIN_GRACE = 2.0


def idle_deadline(last, idle_limit, accepted, closing_since):
    """When an idle connection is closed, by the built-in worker's rule (uwsgid::worker::
    idle_deadline): `last` + `idle_limit` normally; while draining (since `closing_since`)
    never later, and never sooner than DRAIN_GRACE after the drain started (or after `last`);
    a connection with no request yet (`accepted`: when) keeps HEAD_TIMEOUT from its accept."""
    normal = last + idle_limit
    if closing_since is None:
        return normal
    keep = max(closing_since, last) + DRAIN_GRACE
    if accepted is not None:
        keep = max(keep, accepted + HEAD_TIMEOUT)
    return min(keep, normal)


class Options:
    """The runner's options (uwsgid builds this command line; people rarely type it)."""

    def __init__(self):
        self.wsgi_file = None
        self.module = None
        self.callable = None
        self.pythonpath = []
        self.chdir = None
        self.threads = 8
        self.max_connections = 1000
        self.keepalive_timeout = 15.0
        self.socket_timeout = 30.0
        self.log_requests = False
        self.zygote = False
        self.standby = False
        self.mounts = []
        self.manage_script_name = False
        self.buffer_size = None  # --buffer-size: HTTP head and uwsgi vars limit, when given
        self.limit_post = None  # --limit-post: the largest request body (0: no limit)


USAGE = ("usage: %s (--wsgi-file FILE | --module PKG.MOD[:CALLABLE]) [--callable NAME] "
         "[--pythonpath DIR]... [--chdir DIR] [--threads N] [--max-connections N] "
         "[--keepalive-timeout SECS] [--socket-timeout SECS] [--log-requests] "
         "[--mount /PREFIX=APP]... [--manage-script-name] [--buffer-size BYTES] "
         "[--limit-post BYTES]" % PROG)

# option -> (attribute, converter); None means a flag without a value.
OPTIONS = {
    "--wsgi-file": ("wsgi_file", str),
    "--module": ("module", str),
    "--callable": ("callable", str),
    "--pythonpath": ("pythonpath", str),
    "--chdir": ("chdir", str),
    "--threads": ("threads", int),
    "--max-connections": ("max_connections", int),
    "--keepalive-timeout": ("keepalive_timeout", float),
    "--socket-timeout": ("socket_timeout", float),
    "--log-requests": ("log_requests", None),
    "--zygote": ("zygote", None),
    "--standby": ("standby", None),
    "--mount": ("mounts", str),
    "--manage-script-name": ("manage_script_name", None),
    "--buffer-size": ("buffer_size", int),
    "--limit-post": ("limit_post", int),
}


def usage_error(message):
    sys.stderr.write("%s\n%s: error: %s\n" % (USAGE, PROG, message))
    sys.exit(2)


def parse_args(argv):
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(USAGE + "\n")
        sys.exit(0)
    args = Options()
    i = 0
    while i < len(argv):
        word = argv[i]
        name, eq, inline = word.partition("=")
        if name not in OPTIONS:
            usage_error("unrecognized argument: %s" % word)
        attr, convert = OPTIONS[name]
        if convert is None:
            if eq:
                usage_error("%s takes no value" % name)
            setattr(args, attr, True)
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(argv):
            value = argv[i + 1]
            i += 2
        else:
            usage_error("argument %s: expected one argument" % name)
        try:
            value = convert(value)
        except ValueError:
            usage_error("argument %s: invalid %s value: %r" % (name, convert.__name__, value))
        if attr in ("pythonpath", "mounts"):
            getattr(args, attr).append(value)
        else:
            setattr(args, attr, value)
    if args.wsgi_file is not None and args.module is not None:
        usage_error("give exactly one of --wsgi-file and --module")
    if args.wsgi_file is None and args.module is None and not args.mounts:
        usage_error("give one of --wsgi-file and --module, or --mount")
    for m in args.mounts:
        prefix, eq, target = m.partition("=")
        if not eq or not prefix.startswith("/") or not target:
            usage_error("--mount %r: expected /PREFIX=APP" % m)
    if args.threads < 1 or args.max_connections < 1:
        usage_error("--threads and --max-connections must be at least 1")
    if args.standby and not args.zygote:
        usage_error("--standby is a mode of --zygote")
    return args


def format_exc():
    import linecache
    import traceback
    # Run from memory (uwsgid/src/runner.rs): give the traceback module our own lines.
    source = globals().get("__source__")
    name = getattr(sys._getframe().f_code, "co_filename", None)
    if source is not None and name and name not in linecache.cache:
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    return traceback.format_exc()


class Pool:
    """Up to `threads` threads running submitted calls (concurrent.futures costs 17 ms of
    imports at every worker start). Threads start when work needs them, not before: a worker
    is ready sooner, and one that serves little keeps few threads."""

    def __init__(self, threads):
        self.tasks = queue.SimpleQueue()
        self.limit = threads
        self.threads = []
        self.lock = threading.Lock()
        self.idle = 0  # threads waiting for a task and not yet promised one

    def run(self):
        while True:
            task = self.tasks.get()
            if task is None:
                return
            fn, arg = task
            try:
                fn(arg)
            except BaseException:
                log("internal error:\n" + format_exc())
            with self.lock:
                self.idle += 1

    def submit(self, fn, arg):
        with self.lock:
            if self.idle > 0:
                self.idle -= 1
            elif len(self.threads) < self.limit:
                t = threading.Thread(target=self.run, name="request-%d" % len(self.threads),
                                     daemon=True)
                self.threads.append(t)
                t.start()
            # else: every thread is busy; the first one done takes it
        self.tasks.put((fn, arg))

    def shutdown(self, wait=True):
        with self.lock:
            threads = list(self.threads)
        for _ in threads:
            self.tasks.put(None)
        if wait:
            for t in threads:
                t.join()


_HEX = {b"%02x" % n: n for n in range(256)}
_HEX.update({b"%02X" % n: n for n in range(256)})


def unquote_to_bytes(raw):
    """Percent-decode bytes; malformed escapes are kept as they are (as urllib does)."""
    if b"%" not in raw:
        return raw
    parts = raw.split(b"%")
    out = bytearray(parts[0])
    for part in parts[1:]:
        code = _HEX.get(part[:2])
        if code is None:
            out += b"%" + part
        else:
            out.append(code)
            out += part[2:]
    return bytes(out)


def inherited_listeners():
    """Take the listeners passed by the systemd protocol, then unset its variables."""
    fds = os.environ.get("LISTEN_FDS")
    pid = os.environ.get("LISTEN_PID")
    names = os.environ.get("LISTEN_FDNAMES", "")
    for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "LISTEN_FDS_FIRST_FD"):
        os.environ.pop(key, None)
    if fds is None:
        raise StartupError("LISTEN_FDS is not set: run me under uwsgid (or systemd socket "
                           "activation) so that listening sockets are passed as fds 3 and up")
    if pid is None or not pid.isdigit() or int(pid) != os.getpid():
        raise StartupError("LISTEN_PID=%s is not my pid %d: the listeners were meant for "
                           "another process" % (pid, os.getpid()))
    if not fds.isdigit() or int(fds) < 1:
        raise StartupError("LISTEN_FDS=%r: expected a positive number of listeners" % fds)
    name_list = names.split(":") if names else []
    listeners = []
    for i in range(int(fds)):
        fd = LISTEN_FDS_START + i
        try:
            sock = socket.socket(fileno=fd)
        except OSError as e:
            raise StartupError("inherited fd %d is not a socket: %s" % (fd, e))
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise StartupError("inherited fd %d is not a listening stream socket" % fd)
        # Non-blocking accept: several workers share each listener, so a connection this
        # worker was woken for may already be taken by another one.
        sock.setblocking(False)
        name = name_list[i] if i < len(name_list) else "fd%d" % fd
        listeners.append((sock, name))
    return listeners


_UWSGI = None


def install_uwsgi_module():
    """Make ``import uwsgi`` work for apps written for uWSGI: uwsgid appends the module's
    source (uwsgid/python/uwsgi.py) to this one as ``_UWSGI_MODULE_SOURCE``."""
    global _UWSGI
    src = globals().get("_UWSGI_MODULE_SOURCE")
    if src is None or "uwsgi" in sys.modules:
        return
    module = type(sys)("uwsgi")
    module.__file__ = "<uwsgid:uwsgi>"
    exec(compile(src, "<uwsgid:uwsgi>", "exec"), module.__dict__)
    sys.modules["uwsgi"] = _UWSGI = module


def load_application(args):
    install_uwsgi_module()
    if args.chdir:
        try:
            os.chdir(args.chdir)
        except OSError as e:
            raise StartupError("--chdir %s: %s" % (args.chdir, e.strerror))
    for d in reversed(args.pythonpath):
        sys.path.insert(0, os.path.abspath(d))
    apps = []
    if args.wsgi_file or args.module:
        apps.append(("", load_one(args.wsgi_file, args.module, args.callable)))
    for m in args.mounts:
        prefix, _, target = m.partition("=")
        if target.endswith((".py", ".wsgi")) or os.path.isfile(target):
            app = load_one(target, None, args.callable)
        else:
            app = load_one(None, target, args.callable)
        apps.append((prefix.rstrip("/"), app))
    if len(apps) == 1 and not args.mounts:
        return apps[0][1]
    return Mounts(apps, args.manage_script_name)


class Mounts:
    """Several apps by URL prefix (``--mount /PREFIX=APP``), as uWSGI dispatches them.

    The contract (a native worker follows the same): apps are numbered in order, the
    ``--wsgi-file``/``--module`` app first, then each mount; app 0 is the default. With
    ``--manage-script-name`` the mount whose prefix is the longest that matches the request
    path at a ``/`` boundary (``/app`` matches ``/app`` and ``/app/x``, not ``/appx``) serves
    it, with SCRIPT_NAME = the prefix (without a trailing ``/``; a ``/`` mount gives "") and
    PATH_INFO = the rest of the decoded path ("" for the prefix itself). No match: the
    default app, SCRIPT_NAME "", PATH_INFO unchanged. Without ``--manage-script-name`` every
    request goes to the default app unchanged (uWSGI picks a mount by the SCRIPT_NAME a
    uwsgi-protocol frontend sends; an HTTP request carries none)."""

    def __init__(self, apps, manage_script_name):
        self.default = apps[0][1]
        self.manage = manage_script_name
        # Longest prefix first; "" (the default app's, or a "/" mount) matches everything.
        self.by_length = sorted(apps, key=lambda a: len(a[0]), reverse=True)

    def select(self, path):
        """(app, script_name, path_info) for a decoded request path."""
        if self.manage:
            for prefix, app in self.by_length:
                if path == prefix or path.startswith(prefix + "/"):
                    return app, prefix, path[len(prefix):]
        return self.default, "", path

    def __call__(self, environ, start_response):
        app, script, path = self.select(environ.get("PATH_INFO", ""))
        environ["SCRIPT_NAME"] = script
        environ["PATH_INFO"] = path
        return app(environ, start_response)


def load_one(wsgi_file, module_spec, callable_name):
    """Import one application: a file (as ``--wsgi-file``) or ``pkg.mod[:callable]``."""
    if wsgi_file:
        path = os.path.abspath(wsgi_file)
        if not os.path.isfile(path):
            raise StartupError("--wsgi-file %s: no such file" % wsgi_file)
        # Sibling modules of the file are importable, as when running it as a script.
        sys.path.insert(0, os.path.dirname(path))
        stem = os.path.splitext(os.path.basename(path))[0]
        modname = "uwsgi_file_" + "".join(c if c.isalnum() else "_" for c in stem)
        spec = spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise StartupError("--wsgi-file %s: not loadable as Python source" % wsgi_file)
        module = module_from_spec(spec)
        sys.modules[modname] = module
        what = "--wsgi-file %s" % wsgi_file
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            raise StartupError("%s: syntax error at %s line %s: %s"
                               % (what, e.filename, e.lineno, e.msg))
        except BaseException as e:
            sys.stderr.write(format_exc())
            raise StartupError("%s: %s raised while loading: %s" % (what, type(e).__name__, e))
        name = callable_name or "application"
    else:
        modname, _, name = module_spec.partition(":")
        name = name or callable_name or "application"
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        what = "--module %s" % modname
        try:
            module = importlib.import_module(modname)
        except SyntaxError as e:
            raise StartupError("%s: syntax error at %s line %s: %s"
                               % (what, e.filename, e.lineno, e.msg))
        except ModuleNotFoundError as e:
            if e.name and modname.startswith(e.name):
                raise StartupError("%s: no module named %r (sys.path[0] is %s)"
                                   % (what, e.name, sys.path[0]))
            sys.stderr.write(format_exc())
            raise StartupError("%s: %s" % (what, e))
        except BaseException as e:
            sys.stderr.write(format_exc())
            raise StartupError("%s: %s raised while importing: %s" % (what, type(e).__name__, e))
    app = getattr(module, name, None)
    if app is None:
        raise StartupError("%s defines no callable named %r (choose one with --callable)"
                           % (what, name))
    if not callable(app):
        raise StartupError("%s: %r is a %s, not a callable" % (what, name, type(app).__name__))
    return app


# ---------------------------------------------------------------------------------------------
# Readiness


def notify(message):
    """Send one sd_notify datagram if NOTIFY_SOCKET is set; failures are logged, not fatal."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message.encode("utf-8", "replace"))
    except OSError as e:
        log("cannot notify %s: %s" % (os.environ.get("NOTIFY_SOCKET"), e))


# ---------------------------------------------------------------------------------------------
# HTTP/1.1


class Connection:
    """One client socket with its own receive buffer (so pipelined bytes are never lost)."""

    def __init__(self, sock, peer, server_addr):
        self.sock = sock
        self.peer = peer
        self.server_addr = server_addr
        self.buf = bytearray()
        self.idle_since = time.monotonic()
        self.accepted = self.idle_since  # when accepted, until its first request (then None)
        self.uwsgi = False  # accepted on a uwsgi listener (LISTEN_FDNAMES "uwsgi=...")
        self.head_started = None  # when the first byte of an incomplete head arrived
        self.max_head = MAX_HEADER_BYTES  # --buffer-size when given
        self.sent = 0  # bytes written (the scoreboard's tx)

    def fill(self):
        try:
            data = self.sock.recv(RECV_SIZE)
        except BlockingIOError:
            raise
        except socket.timeout:
            raise ClientGone("timed out")
        except OSError as e:
            raise ClientGone(str(e))
        if not data:
            raise ClientGone("closed")
        self.buf += data

    def read_head(self):
        """Bytes of one request head (without the blank line), or None on a clean EOF.
        NeedMore if it is incomplete and nothing more is there to read yet."""
        while True:
            # Tolerate stray empty lines before a request (RFC 9112 section 2.2).
            while self.buf[:2] == b"\r\n" or self.buf[:1] == b"\n":
                del self.buf[: 2 if self.buf[:1] == b"\r" else 1]
            end = self.buf.find(b"\n\r\n")
            end_lf = self.buf.find(b"\n\n")
            cut = None
            if end >= 0 and (end_lf < 0 or end < end_lf):
                cut, skip = end, 3
            elif end_lf >= 0:
                cut, skip = end_lf, 2
            if cut is not None:
                if cut + skip > self.max_head:
                    raise BadRequest("request head larger than %d bytes" % self.max_head, 431)
                head = bytes(self.buf[:cut])
                del self.buf[: cut + skip]
                self.head_started = None
                return head
            if len(self.buf) > self.max_head:
                raise BadRequest("request head larger than %d bytes" % self.max_head, 431)
            if self.buf and self.head_started is None:
                self.head_started = time.monotonic()
            timeout = self.sock.gettimeout()
            self.sock.settimeout(0.0)
            try:
                self.fill()
            except BlockingIOError:
                raise NeedMore()
            except ClientGone:
                if not self.buf:
                    return None
                raise
            finally:
                self.sock.settimeout(timeout)

    def read_uwsgi(self, limit):
        """The vars of one uwsgi packet (nginx's uwsgi_pass) as a dict, or None on a clean EOF.

        4-byte header (modifier1, little-endian vars size, modifier2), then u16-length-prefixed
        keys and values. Only modifier1/modifier2 0 (a request) is served; a block larger than
        ``limit`` (--buffer-size) is refused before it is read. Vars are data: UWSGI_FILE and
        the like reach the application as plain environ entries and are never acted on."""
        while len(self.buf) < 4:
            try:
                self.fill()
            except ClientGone:
                if not self.buf:
                    return None
                raise
        m1, size, m2 = self.buf[0], self.buf[1] | self.buf[2] << 8, self.buf[3]
        if m1 != 0 or m2 != 0:
            raise BadRequest("uwsgi packet with modifier1 %d, modifier2 %d: only requests "
                             "(0, 0) are served" % (m1, m2), 501)
        if size > limit:
            raise BadRequest("uwsgi vars block of %d bytes is larger than --buffer-size %d"
                             % (size, limit), 431)
        if size == 0:
            raise BadRequest("uwsgi packet with an empty vars block")
        while len(self.buf) < 4 + size:
            self.fill()
        block = bytes(self.buf[4:4 + size])
        del self.buf[:4 + size]
        env, at, n = {}, 0, len(block)
        while at < n:
            parts = []
            for what in ("key", "value"):
                if at + 2 > n:
                    raise BadRequest("uwsgi vars block ends inside a %s length" % what)
                length = block[at] | block[at + 1] << 8
                at += 2
                if at + length > n:
                    raise BadRequest("uwsgi var %s runs past the vars block" % what)
                parts.append(block[at:at + length])
                at += length
            key, value = parts
            if not key or any(c <= 32 or c >= 127 for c in key):
                raise BadRequest("uwsgi var with an empty or non-printable name")
            if b"\0" in value or b"\r" in value or b"\n" in value:
                raise BadRequest("uwsgi var value holds NUL, CR or LF")
            key, value = key.decode("ascii"), value.decode("latin-1")
            if key in env and env[key] != value:
                if not key.startswith("HTTP_") or key in ("HTTP_HOST", "HTTP_CONTENT_LENGTH"):
                    raise BadRequest("uwsgi packet repeats %s with another value" % key)
                env[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
            else:
                env[key] = value
        return env

    def read_line(self, limit):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > limit:
                raise BadRequest("line too long in chunked body")
            self.fill()

    def sendall(self, data):
        try:
            self.sock.sendall(data)
        except (OSError, socket.timeout) as e:
            raise ClientGone(str(e))
        self.sent += len(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Request:
    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of (lowercase name, value)

    def header(self, name):
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None


def parse_head(head):
    if b"\0" in head:
        raise BadRequest("NUL byte in request head")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request head is not valid UTF-8")
    # WSGI's native strings hold the bytes as latin-1 (PEP 3333).
    text = head.decode("latin-1")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if any("\r" in line for line in lines):
        raise BadRequest("stray CR in the request head")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest("malformed request line %r" % lines[0][:100])
    method, target, version = parts
    if not method or not set(method) <= TOKEN_CHARS:
        raise BadRequest("malformed method %r" % method[:20])
    if not target or any(ord(c) <= 32 or ord(c) == 127 for c in target):
        raise BadRequest("malformed request target")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if version.startswith("HTTP/") and version[5:6].isdigit():
            raise BadRequest("unsupported protocol %s" % version[:20], 505)
        raise BadRequest("malformed protocol %r" % version[:20])
    headers = []
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest("more than %d header fields" % MAX_HEADERS, 431)
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            raise BadRequest("obsolete header line folding")
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name) <= TOKEN_CHARS:
            raise BadRequest("malformed header line %r" % line[:100])
        value = value.strip(" \t")
        if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
            raise BadRequest("control character in a header value")
        headers.append((name.lower(), value))
    hosts = sum(1 for name, _ in headers if name == "host")
    if hosts > 1:
        raise BadRequest("more than one Host header field")
    if hosts == 0 and version == "HTTP/1.1":
        raise BadRequest("HTTP/1.1 request without a Host header field")
    return Request(method, target, version, headers)


class Body:
    """`wsgi.input`: the request body, Content-Length bounded or chunked, read on demand."""

    def __init__(self, conn, length, chunked, expect_continue):
        self.conn = conn
        self.remaining = length  # bytes left (identity) or in the current chunk (chunked)
        self.chunked = chunked
        self.done = length == 0 and not chunked
        self.expect_continue = expect_continue
        self.head_sent = False  # the response head is out: no 100 Continue any more
        self.in_chunk = False  # chunk data was read, so a CRLF precedes the next size line
        self.limit = None  # --limit-post, for a chunked body (a declared length is judged first)
        self.declared = 0  # chunk sizes so far

    def _continue(self):
        if self.expect_continue and not self.head_sent:
            self.expect_continue = False
            self.conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _next_chunk(self):
        line = self.conn.read_line(4096)
        if not line.endswith(b"\r\n"):
            raise BadRequest("chunk size line without CRLF")
        size = line[:-2].split(b";", 1)[0]
        # 1 to 16 hex digits and nothing else: int() would also take "0x5", "+5", " 5 " and
        # "1_0", which a proxy in front may read otherwise (request smuggling).
        if not 1 <= len(size) <= 16 or size.strip(b"0123456789abcdefABCDEF"):
            raise BadRequest("bad chunk size %r" % size[:20])
        n = int(size, 16)
        self.declared += n
        if self.limit and self.declared > self.limit:
            raise BadRequest("request body larger than --limit-post %d bytes" % self.limit, 413)
        if n == 0:
            total = 0
            while True:  # trailer fields, ignored
                trailer = self.conn.read_line(4096)
                total += len(trailer)
                if not trailer.endswith(b"\r\n") or total > MAX_HEADER_BYTES:
                    raise BadRequest("malformed trailer section")
                if trailer == b"\r\n":
                    break
            self.done = True
        self.remaining = n

    def _read_chunk(self, limit, until_newline=False):
        """Up to `limit` (> 0) buffered-or-received body bytes; b'' at the end of the body."""
        if self.done:
            return b""
        self._continue()
        conn = self.conn
        try:
            if self.chunked and self.remaining == 0:
                if self.in_chunk:
                    if conn.read_line(4) != b"\r\n":
                        raise BadRequest("missing CRLF after chunk data")
                self._next_chunk()
                if self.done:
                    return b""
                self.in_chunk = True
            if not conn.buf:
                conn.fill()
        except ClientGone:
            raise ClientGone("client closed mid-body")
        n = min(limit, self.remaining, len(conn.buf))
        if until_newline:
            nl = conn.buf.find(b"\n", 0, n)
            if nl >= 0:
                n = nl + 1
        data = bytes(conn.buf[:n])
        del conn.buf[:n]
        self.remaining -= n
        if not self.chunked and self.remaining == 0:
            self.done = True
        return data

    def read(self, size=-1):
        out = bytearray()
        while size is None or size < 0 or len(out) < size:
            want = RECV_SIZE if size is None or size < 0 else size - len(out)
            data = self._read_chunk(want)
            if not data:
                break
            out += data
        return bytes(out)

    def readline(self, size=-1):
        out = bytearray()
        while size is None or size < 0 or len(out) < size:
            want = RECV_SIZE if size is None or size < 0 else size - len(out)
            data = self._read_chunk(want, until_newline=True)
            if not data:
                break
            out += data
            if out.endswith(b"\n"):
                break
        return bytes(out)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def discard(self):
        """Skip what the application left unread; False if too much to keep the connection."""
        if self.expect_continue:
            return False  # the client is waiting for 100 before sending: just close
        skipped = 0
        while not self.done:
            data = self._read_chunk(RECV_SIZE)
            skipped += len(data)
            if not data or skipped > MAX_DISCARD_BYTES:
                return self.done
        return True


class FileWrapper:
    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        while True:
            data = self.filelike.read(self.blksize)
            if not data:
                return
            yield data


_date_cache = [0, ""]


def http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
    return _date_cache[1]


def simple_response(conn, status, message):
    body = ("%d %s\n%s\n" % (status, REASONS.get(status, ""), message)).encode("utf-8")
    head = ("HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, REASONS.get(status, ""), http_date(), len(body)))
    conn.sendall(head.encode("latin-1") + body)
    if status == 413:
        linger(conn)


def linger(conn):
    """After refusing a body that may still be on its way (413): half-close, then read and drop
    what arrives for a moment (at most 1 MiB, 1 s), so that closing does not reset the
    connection before the client has read the answer."""
    sock = conn.sock
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.0
        dropped = 0
        while dropped <= 1 << 20:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            data = sock.recv(RECV_SIZE)
            if not data:
                return
            dropped += len(data)
    except OSError:
        pass


class Scoreboard:
    """The master's scoreboard (uwsgid/src/scoreboard.rs), so that stats show this worker's
    requests, tx, avg_rt, busy/idle and the request in flight as for built-in workers.

    The memfd is found among the master's fds (``/proc/PPID/fd``, a link to
    ``/memfd:uwsgid-scoreboard``) and mapped shared; the cell is the one the master reset with
    our pid. Only this worker writes its cell: a lock orders its own threads, and every field
    is written with one aligned store of its full width (memoryview items, never byte by
    byte), which is what the master's relaxed atomic loads expect. Without a scoreboard (a
    master that is not uwsgid, or not ours to open) nothing is counted."""

    MAGIC = 0x7577736769645342  # "uwsgidSB", the header's first word
    HEADER = 16  # magic u64, paused u32, log_epoch u32
    CELL = 184  # struct Cell: 4 + 4 + 5 * 8 + 4 + 4 + 12 * 8 + 4 * 8 bytes
    CAPACITY = 2048
    IDLE, BUSY = 2, 3
    PATH_WORDS = 12

    def __init__(self, mm):
        self.mm = mm
        self.q = memoryview(mm).cast("Q")
        self.i = memoryview(mm).cast("I")
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.base = None  # byte offset of our cell, once found

    @classmethod
    def open(cls):
        import mmap
        master = os.getppid()
        try:
            names = os.listdir("/proc/%d/fd" % master)
        except OSError:
            return None
        size = cls.HEADER + cls.CAPACITY * cls.CELL
        for name in names:
            path = "/proc/%d/fd/%s" % (master, name)
            try:
                if not os.readlink(path).startswith("/memfd:uwsgid-scoreboard"):
                    continue
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if os.fstat(fd).st_size < size:
                    return None
                mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError:
                return None
            finally:
                os.close(fd)
            board = cls(mm)
            if board.q[0] != cls.MAGIC:
                return None
            return board
        return None

    def cell(self):
        """Our cell's byte offset, once the master has reset one with our pid (it does when
        it adopts us); None before."""
        if self.base is None:
            for k in range(self.CAPACITY):
                base = self.HEADER + k * self.CELL
                if self.i[base // 4] == self.pid:
                    self.base = base
                    if self.i[base // 4 + 12] == 0:  # in_flight
                        self.i[base // 4 + 1] = self.IDLE
                    break
        return self.base

    def begin(self, line):
        """Count a request in flight; False if there is no cell yet (then no end())."""
        with self.lock:
            base = self.cell()
            if base is None:
                return False
            w, d = base // 8, base // 4
            if self.i[d + 12] == 0:
                self.q[w + 5] = int(time.time() * 1e6)  # request_start_us
                self.i[d + 1] = self.BUSY
            self.i[d + 12] += 1
            text = line.encode("latin-1", "replace")[: self.PATH_WORDS * 8]
            self.i[d + 13] = 0  # path_len
            padded = text.ljust(self.PATH_WORDS * 8, b"\0")
            for k in range(self.PATH_WORDS):
                self.q[w + 7 + k] = int.from_bytes(padded[k * 8:k * 8 + 8], "little")
            self.i[d + 13] = len(text)
            return True

    def end(self, sent, micros):
        with self.lock:
            base = self.base
            w, d = base // 8, base // 4
            requests = self.q[w + 1] + 1
            self.q[w + 1] = requests
            self.q[w + 2] += sent  # tx
            self.q[w + 3] += micros  # running_time_us
            prev = self.q[w + 4]
            delta = micros - prev  # a true running mean, as the Rust workers keep
            step = abs(delta) // requests
            self.q[w + 4] = prev + step if delta >= 0 else prev - step
            in_flight = max(self.i[d + 12], 1) - 1
            self.i[d + 12] = in_flight
            if in_flight == 0:
                self.q[w + 5] = 0
                self.i[d + 1] = self.IDLE

    def bad_request(self):
        with self.lock:
            base = self.cell()
            if base is not None:
                self.q[base // 8 + 22] += 1  # bad_requests, at byte 176


class Server:
    def __init__(self, app, listeners, args):
        self.app = app
        self.args = args
        self.listeners = listeners
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.returned = queue.SimpleQueue()  # connections handed back by pool threads
        self.pool = Pool(args.threads)
        self.lock = threading.Lock()
        self.busy = 0  # connections owned by pool threads
        self.idle = {}  # socket fd -> Connection waiting in the selector
        self.accepting = False
        self.draining = False
        self.drain_at = None  # time.monotonic() when the drain started
        self.drain_started = False
        self.drain_reason = None
        self.ready_extra = ""  # more sd_notify lines for READY (a forked worker's slot)
        # uwsgi listeners (uwsgid names them "uwsgi=ADDR"), their limit and allowed TCP peers.
        self.uwsgi_socks = {s for s, name in listeners if name.startswith("uwsgi=")}
        self.uwsgi_buffer = args.buffer_size or int(os.environ.get("UWSGID_BUFFER_SIZE") or 4096)
        self.max_head = args.buffer_size or MAX_HEADER_BYTES
        self.uwsgi_allow = None
        self.board = None  # the master's scoreboard, opened in run()

    # -- main thread ------------------------------------------------------------------------

    def wake(self):
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass

    def on_signal(self, signum, _frame):
        if signum in (signal.SIGINT, signal.SIGQUIT):
            os._exit(128 + signum)
        if not self.draining:
            self.drain_at = time.monotonic()
            self.draining = True
            self.drain_reason = signal.Signals(signum).name
        self.wake()

    def set_accepting(self, on):
        if on == self.accepting:
            return
        for sock, name in self.listeners:
            if on:
                self.selector.register(sock, selectors.EVENT_READ, ("listener", name))
            else:
                self.selector.unregister(sock)
        self.accepting = on

    def open_connections(self):
        return self.busy + len(self.idle)

    def run(self):
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self.on_signal)
        # SIGUSR2: every thread's stack to the log; a fatal signal logs them too.
        import faulthandler
        faulthandler.enable()
        faulthandler.register(signal.SIGUSR2, all_threads=True)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.board = Scoreboard.open()
        if self.board is not None:
            # A forked worker is adopted (its cell reset with our pid) when the master reads
            # the announcement it sent before serving: wait for that briefly, so that every
            # request is counted from the first.
            for _ in range(100):
                if self.board.cell() is not None:
                    break
                time.sleep(0.005)
        self.selector.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self.set_accepting(True)
        names = ", ".join(name for _, name in self.listeners)
        notify("READY=1\nSTATUS=serving on %s with %d threads%s"
               % (names, self.args.threads, self.ready_extra))
        log("ready: serving on %s with %d threads" % (names, self.args.threads))
        while True:
            if self.draining:
                if not self.drain_started or self.idle:
                    self.start_drain()
                with self.lock:
                    busy = self.busy
                self.take_returned()
                if busy == 0 and self.returned.empty() and not self.idle:
                    break
            else:
                with self.lock:
                    saturated = self.busy >= self.args.threads
                self.set_accepting(not saturated and
                                   self.open_connections() < self.args.max_connections)
            timeout = self.close_expired()
            for key, _ in self.selector.select(timeout):
                kind, data = key.data
                if kind == "wake":
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    self.take_returned()
                elif kind == "listener":
                    self.accept(key.fileobj)
                elif kind == "idle":
                    self.selector.unregister(key.fileobj)
                    del self.idle[key.fd]
                    self.submit(data)
        self.pool.shutdown(wait=True)
        log("drained after %s, exiting" % self.drain_reason)

    def accept(self, listener):
        for _ in range(16):
            if self.busy >= self.args.threads:
                return
            try:
                sock, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log("accept: %s" % e)
                return
            if listener in self.uwsgi_socks and not self.uwsgi_peer_allowed(sock, peer):
                continue
            sock.setblocking(True)
            sock.settimeout(self.args.socket_timeout)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, peer, listener.getsockname())
            conn.uwsgi = listener in self.uwsgi_socks
            conn.max_head = self.max_head
            self.submit(conn)

    def uwsgi_peer_allowed(self, sock, peer):
        """uwsgi has no authentication: TCP peers other than loopback only when --uwsgi-allow
        names them (UWSGID_UWSGI_ALLOW); Unix sockets are guarded by their file mode."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        import ipaddress
        if self.uwsgi_allow is None:
            self.uwsgi_allow = [ipaddress.ip_network(n, strict=False) for n in
                                os.environ.get("UWSGID_UWSGI_ALLOW", "").split(",") if n]
        ip = ipaddress.ip_address(peer[0])
        if getattr(ip, "ipv4_mapped", None):
            ip = ip.ipv4_mapped
        if ip.is_loopback or any(ip.version == n.version and ip in n for n in self.uwsgi_allow):
            return True
        log("uwsgi: refused a connection from %s: only loopback peers may speak uwsgi unless "
            "--uwsgi-allow names them" % peer[0])
        try:
            sock.close()
        except OSError:
            pass
        return False

    def submit(self, conn):
        with self.lock:
            self.busy += 1
        self.pool.submit(self.serve, conn)

    def take_returned(self):
        while True:
            try:
                conn = self.returned.get_nowait()
            except queue.Empty:
                return
            if conn.buf and conn.head_started is None:
                self.submit(conn)  # pipelined bytes arrived meanwhile: straight back to a thread
                continue
            conn.idle_since = time.monotonic()
            self.idle[conn.sock.fileno()] = conn
            self.selector.register(conn.sock, selectors.EVENT_READ, ("idle", conn))

    def close_expired(self):
        """Close connections idle past the keep-alive timeout; the next select timeout."""
        if not self.idle:
            return None
        now = time.monotonic()
        next_deadline = None
        for fd, conn in list(self.idle.items()):
            if conn.head_started is not None:
                deadline = conn.head_started + HEAD_TIMEOUT
            else:
                deadline = self.idle_deadline(conn)
            if deadline <= now:
                self.selector.unregister(conn.sock)
                del self.idle[fd]
                if conn.head_started is not None:  # a stalled head: 408, without waiting
                    try:
                        conn.sock.settimeout(0.0)
                        simple_response(conn, 408, "request head timed out")
                    except (ClientGone, OSError):
                        pass
                conn.close()
            elif next_deadline is None or deadline < next_deadline:
                next_deadline = deadline
        return None if next_deadline is None else max(0.0, next_deadline - now)

    def idle_deadline(self, conn):
        since = self.drain_at if self.draining else None
        return idle_deadline(conn.idle_since, self.args.keepalive_timeout, conn.accepted, since)

    def start_drain(self):
        if not self.drain_started:
            self.drain_started = True
            self.set_accepting(False)
            notify("STOPPING=1\nSTATUS=draining after %s" % self.drain_reason)
            log("%s: draining, %d requests in flight" % (self.drain_reason, self.busy))
            for sock, _ in self.listeners:
                sock.close()  # our copy only: other workers keep the listeners open
        # An idle connection whose request is already here is served (with Connection:
        # close). The others are closed at their idle_deadline: a client that got a
        # keep-alive response may be sending its next request right now, and one that has
        # just connected its first, and closing under it would fail that request; given
        # DRAIN_GRACE (a new connection: its head deadline), it is answered with
        # Connection: close instead.
        ready = set()
        if self.idle:
            probe = selectors.DefaultSelector()
            for conn in self.idle.values():
                probe.register(conn.sock, selectors.EVENT_READ)
            ready = {key.fd for key, _ in probe.select(0)}
            probe.close()
        now = time.monotonic()
        for fd, conn in list(self.idle.items()):
            if fd in ready:
                self.selector.unregister(conn.sock)
                del self.idle[fd]
                self.submit(conn)
            elif conn.head_started is None and self.idle_deadline(conn) <= now:
                self.selector.unregister(conn.sock)
                del self.idle[fd]
                conn.close()

    # -- pool threads -----------------------------------------------------------------------

    def serve(self, conn):
        keep = False
        try:
            while True:
                keep = self.handle_one(conn)
                if not keep or self.draining or not conn.buf:
                    break
        except NeedMore:
            keep = True  # an incomplete head waits in the selector, holding no thread
        except Exception:  # a bug here must not kill the pool thread silently
            log("internal error:\n" + format_exc())
            keep = False
        finally:
            if keep:
                # Even when draining: the response went out keep-alive, so the client may
                # already be sending its next request (see start_drain).
                self.returned.put(conn)
            else:
                conn.close()
            with self.lock:
                self.busy -= 1
            self.wake()

    def handle_one(self, conn):
        """Serve one request; True if the connection may carry another."""
        env = None
        try:
            if conn.uwsgi:
                vars = conn.read_uwsgi(self.uwsgi_buffer)
                if vars is None:
                    return False
                req, body, env = self.uwsgi_request(conn, vars)
            else:
                head = conn.read_head()
                if head is None:
                    return False
                req = parse_head(head)
                body = self.request_body(conn, req)
        except BadRequest as e:
            if self.board is not None:
                self.board.bad_request()
            try:
                simple_response(conn, e.status, str(e))
            except ClientGone:
                pass
            if self.args.log_requests or conn.uwsgi or e.status == 413:
                log("%s %s refused (%d): %s" % (peer_text(conn.peer),
                                                "uwsgi packet" if conn.uwsgi else "request",
                                                e.status, e))
            return False
        except ClientGone:
            if conn.uwsgi and conn.buf:
                log("%s uwsgi packet refused: truncated, the peer closed after %d bytes"
                    % (peer_text(conn.peer), len(conn.buf)))
            return False
        conn.accepted = None
        started = time.monotonic()
        counted = self.board is not None and self.board.begin("%s %s" % (req.method, req.target))
        sent = conn.sent
        try:
            status, keep = self.run_app(conn, req, body, env)
        except ClientGone:
            return False
        finally:
            if counted:
                self.board.end(conn.sent - sent, int((time.monotonic() - started) * 1e6))
        keep = keep and not conn.uwsgi
        if _UWSGI is not None:
            _UWSGI._count_request()
        if keep:
            try:
                keep = body.discard()
            except (ClientGone, BadRequest):
                keep = False
        if self.args.log_requests:
            log('%s "%s %s %s" %s %.1fms' % (peer_text(conn.peer), req.method, req.target,
                                             req.version, status,
                                             (time.monotonic() - started) * 1000))
        return keep

    def request_body(self, conn, req):
        te = req.header("transfer-encoding")
        cl = req.header("content-length")
        if te is not None:
            if cl is not None:
                raise BadRequest("both Transfer-Encoding and Content-Length")
            if req.version != "HTTP/1.1":
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
            if te.lower() != "chunked":
                raise BadRequest("unsupported Transfer-Encoding %r" % te[:40], 501)
            length, chunked = 0, True
        elif cl is not None:
            values = {v.strip() for v in cl.split(",")}
            value = next(iter(values))
            if len(values) != 1 or not value or value.strip("0123456789") or len(value) > 19:
                raise BadRequest("bad Content-Length %r" % cl[:40])
            length, chunked = int(values.pop()), False
        else:
            length, chunked = 0, False
        self.check_length(length)
        expect = (req.header("expect") or "").lower() == "100-continue" and \
            req.version == "HTTP/1.1" and (chunked or length > 0)
        body = Body(conn, length, chunked, expect)
        body.limit = self.args.limit_post
        return body

    def check_length(self, length):
        limit = self.args.limit_post
        if limit and length > limit:
            raise BadRequest("request body of %d bytes is larger than --limit-post %d"
                             % (length, limit), 413)

    def environ(self, conn, req, body):
        target = req.target
        if target.startswith(("http://", "https://")):  # absolute-form
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            target = rest[slash:] if slash >= 0 else "/"
        path, _, query = target.partition("?")
        path = path.partition("#")[0]
        env = {
            "REQUEST_METHOD": req.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path.encode("latin-1")).decode("latin-1"),
            "QUERY_STRING": query.partition("#")[0],
            "SERVER_PROTOCOL": req.version,
            "REQUEST_URI": req.target,
            "RAW_URI": req.target,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }
        for name, value in req.headers:
            if "_" in name:
                continue  # would be indistinguishable from the dash form: dropped, as is usual
            if name == "content-type":
                env["CONTENT_TYPE"] = value
            elif name == "content-length":
                env["CONTENT_LENGTH"] = value
            else:
                key = "HTTP_" + name.upper().replace("-", "_")
                if key in env:  # repeated fields are one list (RFC 9110), cookies with "; "
                    value = env[key] + ("; " if name == "cookie" else ",") + value
                env[key] = value
        if body.chunked:
            env.pop("CONTENT_LENGTH", None)
        addr = conn.server_addr
        if isinstance(addr, tuple):
            env["SERVER_NAME"], env["SERVER_PORT"] = str(addr[0]), str(addr[1])
        else:
            host = env.get("HTTP_HOST", "localhost")
            env["SERVER_NAME"] = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            env["SERVER_PORT"] = "80"
        if isinstance(conn.peer, tuple):
            env["REMOTE_ADDR"], env["REMOTE_PORT"] = str(conn.peer[0]), str(conn.peer[1])
        else:
            env["REMOTE_ADDR"] = str(conn.peer or "")
        return env

    def uwsgi_request(self, conn, vars):
        """(request, body, environ) of a uwsgi packet: the vars are the environ, as sent.

        The request is HTTP/1.0 for the response logic (one request per connection, answered
        without chunking, then closed: nginx's uwsgi upstream never reuses a connection)."""
        method = vars.get("REQUEST_METHOD", "")
        if not method or not set(method) <= TOKEN_CHARS:
            raise BadRequest("uwsgi packet without a valid REQUEST_METHOD")
        query = vars.get("QUERY_STRING", "")
        target = vars.get("REQUEST_URI") or (vars.get("PATH_INFO", "/") +
                                             ("?" + query if query else ""))
        cl = vars.get("CONTENT_LENGTH", "")
        # nginx sends a client's chunked body whole, with its CONTENT_LENGTH (and the client's
        # Transfer-Encoding as HTTP_TRANSFER_ENCODING): the length frames it.
        if vars.get("HTTP_TRANSFER_ENCODING") and not cl:
            raise BadRequest("chunked request body without CONTENT_LENGTH: the upstream must "
                             "send its length", 501)
        if cl and not cl.isdigit():
            raise BadRequest("uwsgi CONTENT_LENGTH %r is not a number" % cl[:40])
        self.check_length(int(cl or 0))
        headers = [(k[5:].lower().replace("_", "-"), v) for k, v in vars.items()
                   if k.startswith("HTTP_") and k != "HTTP_CONNECTION"]
        req = Request(method, target, "HTTP/1.0", headers)
        body = Body(conn, int(cl or 0), False, False)
        env = dict(vars)
        # nginx passes every request header as HTTP_*, Content-Type and Content-Length too:
        # not headers in WSGI's sense (PEP 3333 has them as CONTENT_*).
        env.pop("HTTP_CONTENT_TYPE", None)
        env.pop("HTTP_CONTENT_LENGTH", None)
        if not env.get("CONTENT_TYPE"):
            env.pop("CONTENT_TYPE", None)
        if not cl:
            env.pop("CONTENT_LENGTH", None)
        env.setdefault("SCRIPT_NAME", "")
        env.setdefault("PATH_INFO", unquote_to_bytes(
            target.partition("?")[0].encode("latin-1")).decode("latin-1"))
        env.setdefault("QUERY_STRING", query)
        env.setdefault("SERVER_PROTOCOL", "HTTP/1.0")
        env.setdefault("SERVER_NAME", "localhost")
        env.setdefault("SERVER_PORT", "80")
        env.setdefault("REMOTE_ADDR", "")
        env.update({
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if env.get("HTTPS", "").lower() in ("on", "1")
            else "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        })
        return req, body, env

    def run_app(self, conn, req, body, env=None):
        """Run the application and send its response; (status, keep-alive)."""
        if env is None:
            env = self.environ(conn, req, body)
        conn_hdr = (req.header("connection") or "").lower()
        tokens = {t.strip() for t in conn_hdr.split(",")}
        if req.version == "HTTP/1.1":
            keep = "close" not in tokens
        else:
            keep = "keep-alive" in tokens
        state = {"status": None, "headers": None, "sent": False, "chunked": False,
                 "length": None, "written": 0, "keep": keep, "head_only": req.method == "HEAD"}

        def start_response(status, headers, exc_info=None):
            if exc_info:
                try:
                    if state["sent"]:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif state["status"] is not None:
                raise AssertionError("start_response called twice without exc_info")
            if not isinstance(status, str) or len(status) < 4 or \
                    status[:3].strip("0123456789") or status[3] != " " or int(status[:3]) < 100:
                raise ValueError("bad status %r: three digits, a space and a reason" % (status,))
            if any(ord(c) < 32 and c != "\t" or ord(c) in (127,) or ord(c) > 255 for c in status):
                raise ValueError("bad status %r: control or non-latin-1 character" % (status,))
            if type(headers) is not list:
                raise TypeError("response headers must be a list of (name, value) tuples")
            for item in headers:
                if type(item) is not tuple or len(item) != 2 or \
                        not all(type(x) is str for x in item):
                    raise TypeError("a response header must be a (str, str) tuple, not %r"
                                    % (item,))
                name, value = item
                if not name or not set(name) <= TOKEN_CHARS:
                    raise ValueError("bad response header name %r" % name)
                if any(ord(c) < 32 and c != "\t" or ord(c) == 127 or ord(c) > 255
                       for c in value):
                    raise ValueError("bad response header %s: control (CR, LF, NUL...) or "
                                     "non-latin-1 character in its value" % name)
            state["status"], state["headers"] = status, list(headers)
            return write

        def send_head(first_body_len):
            code = int(state["status"][:3])
            no_body_status = code in (204, 304) or 100 <= code < 200
            bodyless = state["head_only"] or no_body_status
            lines = ["HTTP/1.1 " + state["status"]]
            has_date = False
            for name, value in state["headers"]:
                low = name.lower()
                if low in HOP_BY_HOP:
                    if low == "connection" and "close" in value.lower():
                        state["keep"] = False
                    continue
                if low == "content-length":
                    try:
                        state["length"] = int(value)
                    except ValueError:
                        raise ValueError("application sent Content-Length %r" % value)
                has_date = has_date or low == "date"
                lines.append("%s: %s" % (name, value))
            if not has_date:
                lines.append("Date: " + http_date())
            if state["length"] is None and not no_body_status and first_body_len is not None:
                state["length"] = first_body_len
                lines.append("Content-Length: %d" % first_body_len)
            elif state["length"] is None and not bodyless:
                if req.version == "HTTP/1.1":
                    state["chunked"] = True
                    lines.append("Transfer-Encoding: chunked")
                else:
                    state["keep"] = False  # the end of the body is the end of the connection
            if self.draining:
                state["keep"] = False
            if not state["keep"]:
                lines.append("Connection: close")
            elif req.version == "HTTP/1.0":
                lines.append("Connection: keep-alive")
            state["bodyless"] = bodyless
            body.head_sent = True
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            state["sent"] = True

        def write(data):
            if state["status"] is None:
                raise AssertionError("write() before start_response()")
            if not isinstance(data, (bytes, bytearray)):
                raise TypeError("WSGI body chunks must be bytes, not %s" % type(data).__name__)
            if not state["sent"]:
                send_head(None)
            if not data or state["bodyless"]:
                return
            if state["length"] is not None:
                room = state["length"] - state["written"]
                if len(data) > room:
                    data = data[:room]
                    state["keep"] = False
                state["written"] += len(data)
                if data:
                    conn.sendall(data)
            elif state["chunked"]:
                conn.sendall(b"%x\r\n" % len(data) + bytes(data) + b"\r\n")
            else:
                conn.sendall(data)

        result = None
        try:
            try:
                result = self.app(env, start_response)
                if isinstance(result, (list, tuple)) and len(result) == 1 and \
                        state["status"] is not None and not state["sent"] and \
                        isinstance(result[0], (bytes, bytearray)):
                    send_head(len(result[0]))
                    write(result[0])
                else:
                    for chunk in result:
                        write(chunk)
                if not state["sent"]:
                    if state["status"] is None:
                        raise AssertionError("application returned without start_response()")
                    send_head(0)
                if state["chunked"]:
                    conn.sendall(b"0\r\n\r\n")
                elif state["length"] is not None and state["written"] < state["length"] \
                        and not state["bodyless"]:
                    log("%s %s: application sent %d of the %d bytes it announced; closing"
                        % (req.method, req.target, state["written"], state["length"]))
                    state["keep"] = False
            finally:
                if hasattr(result, "close"):
                    result.close()
        except ClientGone:
            raise
        except BadRequest as e:  # the body's framing, found while the application read it
            if state["sent"]:
                raise ClientGone("bad request body: %s" % e)
            simple_response(conn, e.status, str(e))
            return e.status, False
        except Exception:
            log("%s %s: application error\n%s" % (req.method, req.target,
                                                  format_exc().rstrip()))
            if state["sent"]:
                raise ClientGone("response cut by the application error")
            simple_response(conn, 500, "the application raised an exception")
            return 500, False
        return int(state["status"][:3]), state["keep"]


def peer_text(peer):
    if isinstance(peer, tuple):
        return "%s:%s" % (peer[0], peer[1])
    return peer or "unix"


# ---------------------------------------------------------------------------------------------
# Preload: the zygote


PR_SET_PDEATHSIG = 1


def zygote(listeners, args):
    """Import the application (after ``load``, for a standby), then fork a worker per request
    on the control socket; return when the master closes it."""
    master = os.getppid()
    try:
        control = int(os.environ.pop("UWSGID_ZYGOTE_FD"))
    except (KeyError, ValueError):
        log("error: --zygote needs UWSGID_ZYGOTE_FD (only uwsgid runs a zygote)")
        return 2
    import ctypes  # loaded here, once, so that a fork costs no import
    import gc
    libc = ctypes.CDLL(None, use_errno=True)
    buf = b""
    if args.standby:
        # What does not depend on the application is done before ``load``: the ``uwsgi``
        # module (it imports json) is the same module whenever it is made.
        install_uwsgi_module()
        while b"\n" not in buf:
            buf = read_more(control, buf)
            if buf is None:
                return 0  # the master no longer needs us
        line, buf = buf.split(b"\n", 1)
        if line.strip() != b"load":
            log("error: standby zygote: expected 'load', got %r" % line)
            return 2
    try:
        app = load_application(args)
    except StartupError as e:
        log("error: %s" % e)
        return 1
    if threading.active_count() > 1:
        log("warning: the application started %d thread(s) at import; they do not exist in "
            "the forked workers (start threads lazily, or use --lazy-apps)"
            % (threading.active_count() - 1))
    # Objects that exist now are never collected in the workers: the collector would
    # otherwise touch, and so copy, every page of them in each worker.
    gc.freeze()
    generation = os.environ.get("UWSGID_GENERATION", "?")
    notify("READY=1\nSTATUS=zygote of generation %s: application loaded" % generation)
    while True:
        if b"\n" not in buf:
            buf = read_more(control, buf)
            if buf is None:
                return 0
        middles = []  # every request read is forked before any is waited for
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            words = line.split()
            if len(words) == 3 and words[0] == b"fork" and words[1].isdigit() \
                    and words[2].isdigit():
                middle = fork_worker(app, listeners, args, master, libc, control,
                                     int(words[1]), int(words[2]))
                if middle:
                    middles.append(middle)
            else:
                log("zygote: unknown request %r ignored" % line)
        for middle in middles:
            while True:
                try:
                    os.waitpid(middle, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break


def read_more(control, buf):
    """``buf`` and the next bytes from the control socket; None once the master closed it."""
    while True:
        try:
            chunk = os.read(control, 4096)
        except InterruptedError:
            continue
        return buf + chunk if chunk else None


def fork_worker(app, listeners, args, master, libc, control, slot, generation):
    """Fork the middle child (returned, for the caller to reap) that forks the worker."""
    sys.stdout.flush()
    sys.stderr.flush()
    native = getattr(sys.modules.get("_uwsgid"), "fork_worker", None)
    if native is not None:
        # uwsgid-python: the same double fork, natively (the middle runs no Python; the
        # worker is back here re-parented to the master, its parent-death signal set).
        try:
            middle = native(master)
        except OSError as e:
            log("zygote: cannot fork worker %d: %s" % (slot, e))
            return None
        if middle:
            return middle
        code = 1
        try:
            run_forked_worker(app, listeners, args, master, libc, control, slot, generation,
                              None)
            code = 0
        except BaseException:
            try:
                log("worker %d: internal error:\n%s" % (slot, format_exc()))
            except BaseException:
                pass
        finally:
            os._exit(code)
    try:
        middle = os.fork()
    except OSError as e:
        log("zygote: cannot fork worker %d: %s" % (slot, e))
        return None
    if middle:
        return middle
    # The middle child: fork the worker and leave at once, so the worker is re-parented.
    code = 0
    try:
        me = os.getpid()
        if os.fork() == 0:
            code = 1
            run_forked_worker(app, listeners, args, master, libc, control, slot, generation,
                              me)
            code = 0
    except BaseException:
        try:
            log("worker %d: internal error:\n%s" % (slot, format_exc()))
        except BaseException:
            pass
    finally:
        os._exit(code)


def run_forked_worker(app, listeners, args, master, libc, control, slot, generation, middle):
    # ``middle`` comes from the middle child itself: read here with getppid(), it could already
    # be init's pid (the middle exited, the master was killed meanwhile), and the wait below
    # would then last its whole deadline instead of ending at once.
    # ``middle`` is None when the native fork already waited for the re-parenting.
    os.close(control)
    deadline = time.monotonic() + 5.0
    while middle is not None:
        parent = os.getppid()
        if parent == master:
            break
        if parent != middle or time.monotonic() > deadline:
            os._exit(1)  # the master is gone
        time.sleep(0.0002)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != master:
        os._exit(1)
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    os.environ["UWSGID_WORKER_ID"] = str(slot)
    os.environ["UWSGID_GENERATION"] = str(generation)
    # Announce ourselves before anything can fail, so that the master adopts us now and an
    # exit before READY=1 is a failed start at once, not at the start timeout.
    who = "\nUWSGID_SLOT=%d\nUWSGID_GENERATION=%d" % (slot, generation)
    notify("STATUS=worker %d of generation %d starting%s" % (slot, generation, who))
    server = Server(app, listeners, args)
    server.ready_extra = who
    server.run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        listeners = inherited_listeners()
        if args.zygote:
            return zygote(listeners, args)
        app = load_application(args)
    except StartupError as e:
        log("error: %s" % e)
        return 1
    Server(app, listeners, args).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
