#!/usr/bin/env bash
# Install what the tests need (real uWSGI 2.0 with its Python plugin, uwsgitop, gunicorn, the
# Prometheus parsers, the contrib/ checkers), then run the tidy checks and the whole test suite.
# This is the README's test command and all .ci/run does.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v uwsgi >/dev/null 2>&1 || ! ls /usr/lib/uwsgi/plugins/python3*_plugin.so >/dev/null 2>&1 \
    || ! command -v curl >/dev/null 2>&1; then
  echo "== installing uWSGI 2.0 (uwsgi-core, uwsgi-plugin-python3) and curl from apt"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq uwsgi-core uwsgi-plugin-python3 curl tmux >/dev/null
fi
# The other programs some tests run (nginx in front of --socket, wrk for load through it, tmux for uwsgitop, perl and node for the documented exec
# examples, prlimit and script(1) from util-linux/bsdutils). Under CI=true a test whose program
# is missing fails (tests/src/require.rs); elsewhere it is skipped with a SKIPPED line.
missing=()
for pair in nginx:nginx wrk:wrk tmux:tmux perl:perl node:nodejs prlimit:util-linux script:bsdutils python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} from apt"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v uwsgitop >/dev/null 2>&1; then
  echo "== installing uwsgitop from PyPI"
  python3 -m pip install -q uwsgitop || python3 -m pip install -q --break-system-packages uwsgitop
fi
if ! python3 -c 'import gunicorn' >/dev/null 2>&1; then
  echo "== installing gunicorn from PyPI (the documented gunicorn example is tested)"
  python3 -m pip install -q gunicorn || python3 -m pip install -q --break-system-packages gunicorn ||
    if [ "${CI:-}" = true ]; then
      echo "== gunicorn could not be installed, and CI=true runs every test: stopping" >&2
      exit 1
    else
      echo "== gunicorn could not be installed: its example test will print SKIPPED"
    fi
fi
if ! command -v promtool >/dev/null 2>&1 || ! command -v xmllint >/dev/null 2>&1 \
    || ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v taskset >/dev/null 2>&1 \
    || ! python3 -c 'import yaml' >/dev/null 2>&1; then
  echo "== installing promtool (prometheus), xmllint (libxml2-utils), systemd-analyze (systemd), taskset (util-linux), PyYAML (python3-yaml) from apt"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus libxml2-utils systemd util-linux python3-yaml >/dev/null
fi
if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "== installing prometheus_client from PyPI (the /metrics test parses with it)"
  python3 -m pip install -q prometheus_client || python3 -m pip install -q --break-system-packages prometheus_client
fi

# The native Python worker (uwsgid-python) embeds CPython through pyo3: it links the system
# Python's shared libpython (python3-dev; .cargo/config.toml names /usr/bin/python3).
if ! ls /usr/include/python3*/Python.h /usr/lib/*/libpython3*.so >/dev/null 2>&1 ||
    ! /usr/bin/python3 -m pip --version >/dev/null 2>&1 || ! /usr/bin/python3 -m venv -h >/dev/null 2>&1; then
  echo "== installing python3-dev, python3-pip, python3-venv from apt (uwsgid-python links libpython)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-dev python3-pip python3-venv >/dev/null
fi

# Flask and Django apps are served by the native worker in the tests: into the interpreter it
# embeds (Debian's /usr/bin/python3), from PyPI.
if ! /usr/bin/python3 -c 'import flask, django' >/dev/null 2>&1; then
  echo "== installing flask and django from PyPI for /usr/bin/python3"
  /usr/bin/python3 -m pip install -q flask django ||
    /usr/bin/python3 -m pip install -q --break-system-packages flask django ||
    if [ "${CI:-}" = true ]; then
      echo "== flask/django could not be installed, and CI=true runs every test: stopping" >&2
      exit 1
    else
      echo "== flask/django could not be installed: their tests will print SKIPPED"
    fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== build"
cargo build --workspace -q
echo "== tests"
cargo test --workspace -q -- --test-threads 2
echo "== Python apps on the stdlib runner (the fallback where uwsgid-python is absent)"
UWSGID_PYTHON_WORKER=stdlib cargo test -p uwsgi-tests --test it -q -- --test-threads 2 \
  uwsgid_exec_wsgi:: uwsgid_exec_preload:: uwsgid_python:: nginx_uwsgi:: nginx_deployment::
echo "== quick soak (bench/run soak --quick: 50 graceful, 10 chain, 10 brutal reloads under wrk,"
echo "   every check after every phase; about 10 s of reloads, at most 40 s, plus a release build of uwsgid)"
bench/run soak --quick
