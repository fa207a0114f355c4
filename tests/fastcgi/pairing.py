"""Two servers as one family host: ``python tests/fastcgi/pairing.py nginx|flup``.

The family contract (tests/test_family_contract.py) runs against one process group that
answers HTTP. A FastCGI pairing is two programs, a web server and an application server,
so this launcher starts both as its children, in its own process group, and prints the
ready line that servers.launch waits for:

* ``nginx``: our application server (``fastcgi-app``, the family responder) behind a real
  nginx with ``fastcgi_pass``, configured by servers/fastcgi/nginx.py as lesson 2 and
  ``make bench`` configure it (port, temp paths and pid file in a private directory,
  ``daemon off``), with ``fastcgi_buffering off`` so that ``/stream`` streams;
* ``flup``: flup's WSGIServer serving ``apps.wsgi:app`` behind our gateway
  (``python -m servers fastcgi --upstream``);
* ``flup-server PORT``: the flup half alone (what the ``flup`` pairing runs as its child).

SIGTERM (to the launcher or to the group) stops both children and exits 0.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
sys.path.insert(0, str(REPO))  # run as a script: the repository's packages come first

from servers.fastcgi.nginx import (  # noqa: E402
    find_nginx,
    nginx_argv,
    nginx_config,
    prepare_directory,
)

stopping = False


def _on_stop(signum: int, frame: FrameType | None) -> None:
    global stopping
    stopping = True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> bool:
    """True once the port accepts; False if ``proc`` exits first (a lost port race)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def ready_port(proc: subprocess.Popen[bytes]) -> int:
    """The port from one of our servers' ready line (its stdout is a pipe)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(rb"ready on \w+://[^:]+:(\d+)/", line)
    if match is None:
        raise SystemExit(f"no ready line: {line!r}")
    return int(match[1])


def start_nginx(app_port: int, directory: str) -> tuple[subprocess.Popen[bytes], int]:
    prepare_directory(directory)  # as root, nginx's workers run as "nobody"
    nginx = os.environ.get("NGINX") or find_nginx() or "nginx"
    for _ in range(3):
        port = free_port()
        conf = nginx_config(directory, port, [("127.0.0.1", app_port)], buffering=False)
        Path(directory, "nginx.conf").write_text(conf)
        proc = subprocess.Popen(nginx_argv(nginx, directory))
        if wait_port(port, proc):
            return proc, port
        proc.wait()
    raise SystemExit("nginx did not start")


def flup_server(port: int) -> None:
    from flup.server.fcgi import WSGIServer  # type: ignore[import-untyped]

    from apps.wsgi import app

    # flup installs its own SIGTERM handler and returns from run() when it fires.
    WSGIServer(app, bindAddress=("127.0.0.1", port)).run()


def main() -> None:
    mode = sys.argv[1]
    if mode == "flup-server":
        flup_server(int(sys.argv[2]))
        return
    signal.signal(signal.SIGTERM, _on_stop)
    signal.signal(signal.SIGINT, _on_stop)
    children: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="gatewaylab-pairing-") as directory:
        try:
            if mode == "nginx":
                app = subprocess.Popen(
                    [PYTHON, "-m", "servers", "fastcgi-app", "--bind", "127.0.0.1:0"],
                    stdout=subprocess.PIPE,
                    cwd=REPO,
                )
                children.append(app)
                nginx, port = start_nginx(ready_port(app), directory)
                children.append(nginx)
            else:
                flup_port = free_port()
                flup = subprocess.Popen([PYTHON, __file__, "flup-server", str(flup_port)])
                children.append(flup)
                if not wait_port(flup_port, flup):
                    raise SystemExit("flup did not start")
                upstream = f"127.0.0.1:{flup_port}"
                gateway = subprocess.Popen(
                    [PYTHON, "-m", "servers", "fastcgi", "--port", "0", "--upstream", upstream],
                    stdout=subprocess.PIPE,
                    cwd=REPO,
                )
                children.append(gateway)
                port = ready_port(gateway)
            print(f"gatewaylab pairing ready on http://127.0.0.1:{port}/ (pid {os.getpid()})")
            sys.stdout.flush()
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.1)
        finally:
            for child in reversed(children):
                if child.poll() is None:
                    child.terminate()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


if __name__ == "__main__":
    main()
