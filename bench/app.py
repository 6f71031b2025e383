# Hello-world WSGI app for the uWSGI side of the benchmark. It answers the same routes as
# uwsgid's --demo-routes: GET / -> "Hello World", GET /sleep?ms=N, GET /pid; and for the
# Python comparison (bench/peers.py) GET /10k (10240 bytes) and POST /echo (the body's length).
import os
import time

TEN_KB = b"x" * 10240


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        ms = 0
        for part in environ.get("QUERY_STRING", "").split("&"):
            if part.startswith("ms="):
                try:
                    ms = int(part[3:])
                except ValueError:
                    ms = 0
        time.sleep(max(0, min(ms, 60000)) / 1000.0)
        body = b"slept\n"
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/10k":
        body = TEN_KB
    elif path == "/echo":
        n = 0
        read = environ["wsgi.input"].read
        while True:
            block = read(65536)
            if not block:
                break
            n += len(block)
        body = b"%d" % n
    else:
        body = b"Hello World"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
