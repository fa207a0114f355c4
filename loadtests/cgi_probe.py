"""The probe of ``loadtests.cgi_costs``: a process the size of a connection process.

What a fork costs depends on the size of the process that forks: its page tables are
copied. So the process measurements of ``cgi_costs`` do not run in whatever process asked
for them (a notebook kernel is several times larger than our server), but here, in a fresh
``python -m loadtests.cgi_probe N`` that imports the CGI server and little else, and prints
its measurements as JSON on stdout.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import servers.cgi
from servers.launch import REPO_ROOT

__all__ = ["CGI_ENV", "probe", "time_runs"]

CGI_BIN = REPO_ROOT / "apps" / "cgi-bin"
# The meta-variables /hello looks at, and the PATH our server gives a script.
CGI_ENV = {
    "GATEWAY_INTERFACE": "CGI/1.1",
    "REQUEST_METHOD": "GET",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "QUERY_STRING": "",
    "PATH_INFO": "",
    "PATH": servers.cgi.SCRIPT_PATH.decode(),
}


def time_runs(action: Callable[[], None], runs: int) -> tuple[list[float], float]:
    """Per-run wall times (seconds), and the CPU seconds per run of this process and the
    children it reaped meanwhile (getrusage: microsecond resolution, unlike os.times)."""
    action()  # untimed: the first run pays for cold caches and lazy set-up

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    walls = []
    cpu_before = cpu()
    for _ in range(runs):
        started = time.perf_counter()
        action()
        walls.append(time.perf_counter() - started)
    return walls, (cpu() - cpu_before) / runs


def _fork_wait() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # the child does nothing: the cost is the copy and the exit
    os.waitpid(pid, 0)


def _fork_exec(program: str) -> Callable[[], None]:
    def run() -> None:
        pid = os.fork()
        if pid == 0:
            try:
                os.execv(program, [program])
            finally:
                os._exit(127)
        os.waitpid(pid, 0)

    return run


def _spawn(program: str, env: Mapping[str, str], stdout: int) -> Callable[[], None]:
    actions = [(os.POSIX_SPAWN_DUP2, stdout, 1)]

    def run() -> None:
        pid = os.posix_spawn(program, [program], env, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        if status:
            raise RuntimeError(f"{program} exited with status {status}")

    return run


def probe(runs: int) -> dict[str, Any]:
    """The probe's measurements, as JSON-ready data (runs in the probe process)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    true = shutil.which("true") or "/bin/true"
    devnull = os.open(os.devnull, os.O_WRONLY)
    steps: dict[str, Callable[[], None]] = {
        "fork": _fork_wait,
        "fork+exec": _fork_exec(true),
        "posix_spawn": _spawn(true, CGI_ENV, devnull),
        "sh": _spawn(str(CGI_BIN / "hello"), CGI_ENV, devnull),
        "perl": _spawn(str(CGI_BIN / "hello.pl"), CGI_ENV, devnull),
        "python": _spawn(str(CGI_BIN / "hello.py"), CGI_ENV, devnull),
    }
    measured: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for key, action in steps.items():
        if key == "perl" and shutil.which("perl", path=CGI_ENV["PATH"]) is None:
            skipped[key] = "perl is not installed (sudo apt-get install perl)"
            continue
        # Python takes tens of milliseconds a run: fifty of them tell as much as more.
        walls, cpu = time_runs(action, min(runs, 50) if key == "python" else runs)
        measured[key] = {"walls": walls, "cpu": cpu}
    rss_mb = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    return {"rss_mb": rss_mb, "steps": measured, "skipped": skipped}


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]))))
