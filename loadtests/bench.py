"""`make bench`: wrk against our servers and their peers, A B A B, medians and ratios.

Why this module exists
----------------------
The course makes claims such as "a pool of threads serves this many requests a second, an
event loop that many". A claim is only worth teaching if a student can re-run it on their
own machine and see the same shape, so the *method* lives here, in code, instead of in
whatever wrk command someone typed once.

The method, and why each step
-----------------------------
1. **One CPU for the server, another for the client.** On a machine with two or more
   CPUs the server is pinned to the first CPU this process may use (CPU 0 on most
   machines) and wrk to the second. Affinity is inherited, so every worker process and
   thread of the server stays on its CPU. Unpinned, the kernel moves server and load
   generator around and they compete for the same cores: the numbers would measure the
   scheduler. One server CPU also keeps the comparison about the concurrency *model*
   (a process per request, threads, tasks), not about how many cores a server can grab.
   On a one-CPU machine we say so and do not pin; client and server then share the CPU,
   and the numbers are only comparable with each other.
2. **Both servers of a pair start first and stay up** for the whole pair, each on its
   own port. Start-up cost (imports, forking workers) is not measured, and both sides
   see the same machine conditions.
3. **A short warm-up run per server, discarded.** The first second pays for lazy
   imports, cold caches, connection set-up and allocator growth; none of that is the
   steady state we compare.
4. **Alternate A B A B ...** for ``--runs`` rounds of ``--duration`` seconds. Machines
   drift (thermal throttling, a backup job, a browser tab). Alternating spreads drift
   over both sides instead of charging all of it to whichever side ran second.
5. **Medians, and the ratio of the medians.** One disturbed run moves a mean; it does
   not move a median. The ratio is *ours/peer* (or *A/B* for a peer-vs-peer baseline):
   above 1 means the first server served more requests per second.
6. **Errors are never averaged in.** A run with socket errors or non-2xx/3xx responses
   is flagged and left out of the medians: a server that answers 500 quickly is not
   fast. The table shows, per side, how many runs were clean and what went wrong.
7. **The client must not be the bottleneck.** wrk's CPU time is measured for every run
   (``client_cpu``, the fraction of one CPU it used). wrk is C and an order of magnitude
   faster than the Python servers here, so one wrk thread (``-t1``) on its own CPU
   should stay well below 100%; if it does not, the run measured wrk, and the table says
   so. The server's CPU use (``server_cpu``) is recorded too: near 1.0 means the server
   was the bottleneck, as intended.

Data flow::

    PAIRS --select--> for each pair:
                        start A, start B          (each pinned to the server CPU)
                        GET route on both         (a 2xx/3xx, or the pair fails now)
                        warm-up A, warm-up B      (discarded)
                        A B A B ...               wrk -t1 -cN -dD --latency, pinned
                          +- parse_wrk(output) -> WrkResult -> RunRecord
                        stop A and B              (ExitStack: also on Ctrl-C, SIGTERM)
                    -> table + results/bench-YYYYmmdd-HHMMSS.json + results/bench-latest.json

Adding a pair
-------------
A pair is a name, a route, a number of connections and two targets. A target is a label
and a *recipe*: a function that receives a :class:`Workspace` (a temporary directory,
free ports, the Python to use) and returns the processes to start as :class:`Launch`
values, the front server (the one wrk loads) last. Two helpers cover the common cases,
so most pairs are one line::

    Pair("wsgi-vs-waitress", "/hello", 50, ours("wsgi"), WAITRESS)
    PEER = peer("label", "{python}", "-m", "server", "--port", "{port}", "apps.wsgi:app")

A peer behind nginx writes its nginx.conf into ``workspace.directory`` in its recipe and
returns two Launches, the backend first (``http_probe=None`` if it does not speak HTTP)
and nginx last; ``needs=("nginx",)`` skips the pair with an install hint where nginx is
missing. A pair whose *ours* era is not built yet is listed and skipped as "not built yet".

House rules: every process we start is stopped (ServerProcess in an ExitStack); nothing
is killed by name; wrk output is parsed by :func:`parse_wrk`, which knows nothing about
processes, so it is tested on captured output alone.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from servers.eras import era_named
from servers.fastcgi.nginx import TEMP_DIRS, nginx_argv, nginx_config, prepare_directory
from servers.launch import REPO_ROOT, ServerProcess, ServerStartError, free_port, our_server_argv

__all__ = [
    "PAIRS",
    "Launch",
    "Pair",
    "RunRecord",
    "SideSummary",
    "SocketErrors",
    "Target",
    "Workspace",
    "WrkOutputError",
    "WrkResult",
    "main",
    "ours",
    "parse_wrk",
    "peer",
    "ratio",
    "summarize",
]

# The Debian package that provides each external program a pair may need; the hint we
# print is "sudo apt-get install <package>".
APT_PACKAGES = {
    "wrk": "wrk",
    "nginx": "nginx-light",
    "fcgiwrap": "fcgiwrap",
    "python3.11": "python3.11",
}


# ======================================================================================
# Reading wrk's output (no processes here: text in, WrkResult out)
# ======================================================================================
#
# wrk 4.x prints, for `wrk -t1 -c50 -d5s --latency URL`:
#
#     Running 5s test @ http://127.0.0.1:8000/hello
#       1 threads and 50 connections
#       Thread Stats   Avg      Stdev     Max   +/- Stdev
#         Latency     1.93ms    0.97ms  36.22ms   96.96%
#         Req/Sec    26.50k     3.55k   35.85k    70.00%
#       Latency Distribution
#          50%    1.91ms
#          75%    2.10ms
#          90%    2.30ms
#          99%    4.13ms
#       52706 requests in 2.00s, 7.59MB read
#       Socket errors: connect 0, read 12, write 0, timeout 3     (only if any)
#       Non-2xx or 3xx responses: 17                               (only if any)
#     Requests/sec:  26306.10
#     Transfer/sec:      3.79MB
#
# Times carry the unit wrk chose for them (src/units.c: us, ms, s, then m and h), so
# "812.00us", "4.13ms" and "1.50s" can all appear in one report. With no completed
# request the averages print as "-nan%"; we never read those columns.

_TIME_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1_000.0, "m": 60_000.0, "h": 3_600_000.0}
# "ms" before "m" and "s": the alternation takes the first unit that matches.
_TIME = r"(?P<value>\d+(?:\.\d+)?)(?P<unit>us|ms|s|m|h)"

_REQUESTS_RE = re.compile(r"^\s*(?P<requests>\d+) requests in " + _TIME + ",", re.MULTILINE)
_RPS_RE = re.compile(r"^\s*Requests/sec:\s+(?P<rps>\d+(?:\.\d+)?)\s*$", re.MULTILINE)
_SOCKET_ERRORS_RE = re.compile(
    r"^\s*Socket errors: connect (?P<connect>\d+), read (?P<read>\d+), "
    r"write (?P<write>\d+), timeout (?P<timeout>\d+)\s*$",
    re.MULTILINE,
)
_NON_2XX_RE = re.compile(r"^\s*Non-2xx or 3xx responses: (?P<count>\d+)\s*$", re.MULTILINE)
_PERCENTILE_RE = re.compile(r"^\s*(?P<percent>\d+(?:\.\d+)?)%\s+" + _TIME + r"\s*$")


class WrkOutputError(ValueError):
    """wrk's output lacks the lines every run must have (it failed, or it is not wrk)."""


@dataclass(frozen=True)
class SocketErrors:
    """wrk's "Socket errors:" line; all zero when wrk did not print it."""

    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0

    @property
    def total(self) -> int:
        return self.connect + self.read + self.write + self.timeout

    def describe(self) -> str:
        """Only the non-zero kinds: "read 12, timeout 3"."""
        kinds = asdict(self).items()
        return ", ".join(f"{kind} {count}" for kind, count in kinds if count)


@dataclass(frozen=True)
class WrkResult:
    """One wrk run, as numbers. Latencies are in milliseconds whatever unit wrk printed."""

    requests: int
    duration_s: float
    requests_per_sec: float
    latency_p50_ms: float | None
    latency_p75_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    socket_errors: SocketErrors = SocketErrors()
    non_2xx_3xx: int = 0

    @property
    def problems(self) -> tuple[str, ...]:
        """Why this run must not count, each as "kind: details"; empty for a clean run."""
        problems = []
        if self.socket_errors.total:
            problems.append(f"socket errors: {self.socket_errors.describe()}")
        if self.non_2xx_3xx:
            problems.append(f"non-2xx/3xx responses: {self.non_2xx_3xx}")
        if self.requests == 0:
            problems.append("no request completed")
        return tuple(problems)


def _milliseconds(match: re.Match[str]) -> float:
    return float(match["value"]) * _TIME_UNIT_MS[match["unit"]]


def parse_wrk(output: str) -> WrkResult:
    """Read one `wrk --latency` report. Raises WrkOutputError if the run has no totals."""
    totals = _REQUESTS_RE.search(output)
    rps = _RPS_RE.search(output)
    if totals is None or rps is None:
        tail = "\n".join(output.strip().splitlines()[-5:]) or "(no output)"
        raise WrkOutputError(f"not a complete wrk report (no totals):\n{tail}")

    # The percentile lines are read only inside the "Latency Distribution" block, so a
    # future wrk that prints other "NN%" lines (or a Lua script's output) cannot leak in.
    percentiles: dict[float, float] = {}
    in_distribution = False
    for line in output.splitlines():
        if line.strip() == "Latency Distribution":
            in_distribution = True
        elif in_distribution and (m := _PERCENTILE_RE.match(line)):
            percentiles[float(m["percent"])] = _milliseconds(m)
        else:
            in_distribution = False

    errors = _SOCKET_ERRORS_RE.search(output)
    non_2xx = _NON_2XX_RE.search(output)
    return WrkResult(
        requests=int(totals["requests"]),
        duration_s=_milliseconds(totals) / 1_000.0,
        requests_per_sec=float(rps["rps"]),
        latency_p50_ms=percentiles.get(50.0),
        latency_p75_ms=percentiles.get(75.0),
        latency_p90_ms=percentiles.get(90.0),
        latency_p99_ms=percentiles.get(99.0),
        socket_errors=(
            SocketErrors(*(int(errors[k]) for k in ("connect", "read", "write", "timeout")))
            if errors
            else SocketErrors()
        ),
        non_2xx_3xx=int(non_2xx["count"]) if non_2xx else 0,
    )


# ======================================================================================
# Runs and their statistics (no processes here either)
# ======================================================================================

# The two sides of a pair. A baseline has no "ours": there the names just mean A and B, and
# the table and the log say A and B for every pair (A is ours, B the peer, for an era).
Side = Literal["ours", "peer"]
SIDES: tuple[Side, Side] = ("ours", "peer")
LETTER: dict[Side, str] = {"ours": "A", "peer": "B"}

# Above this share of its CPU, wrk itself may have been the limit (method, step 7).
CLIENT_SATURATED = 0.90


@dataclass(frozen=True)
class RunRecord:
    """One wrk run against one side of a pair, kept in the JSON whether it counts or not."""

    side: Side
    round: int  # 1..runs; 0 for the warm-up
    argv: tuple[str, ...]
    wrk: WrkResult | None  # None when wrk failed or its output was unreadable
    error: str | None = None  # why wrk is None
    wall_s: float = 0.0
    client_cpu: float | None = None  # wrk's CPU seconds / wall seconds
    server_cpu: float | None = None  # the server group's CPU seconds / wall seconds

    @property
    def warmup(self) -> bool:
        return self.round == 0

    @property
    def problems(self) -> tuple[str, ...]:
        if self.wrk is None:
            return (f"wrk failed: {self.error or 'no report'}",)
        return self.wrk.problems

    @property
    def clean(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["argv"] = shlex.join(self.argv)
        data["warmup"] = self.warmup
        data["problems"] = list(self.problems)
        data["clean"] = self.clean
        return data


@dataclass(frozen=True)
class SideSummary:
    """Medians over the clean measured runs of one side (warm-ups never count)."""

    runs: int
    clean_runs: int
    median_rps: float | None
    median_p50_ms: float | None
    median_p99_ms: float | None
    max_client_cpu: float | None


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(runs: Sequence[RunRecord]) -> SideSummary:
    measured = [run for run in runs if not run.warmup]
    clean = [run.wrk for run in measured if run.clean and run.wrk is not None]
    cpu = [run.client_cpu for run in measured if run.client_cpu is not None]
    return SideSummary(
        runs=len(measured),
        clean_runs=len(clean),
        median_rps=_median([r.requests_per_sec for r in clean]),
        median_p50_ms=_median([r.latency_p50_ms for r in clean]),
        median_p99_ms=_median([r.latency_p99_ms for r in clean]),
        max_client_cpu=max(cpu) if cpu else None,
    )


def ratio(ours: float | None, peer: float | None) -> float | None:
    """ours/peer (A/B for baselines); None when either side has no clean median."""
    if ours is None or peer is None or peer == 0:
        return None
    return ours / peer


# ======================================================================================
# The registry: targets and pairs
# ======================================================================================


@dataclass(frozen=True)
class Workspace:
    """What a recipe may use: a private temporary directory, the host, free ports."""

    directory: Path
    host: str = "127.0.0.1"
    python: str = sys.executable

    def free_port(self) -> int:
        return free_port(self.host)


@dataclass(frozen=True)
class Launch:
    """One process of a target, as ServerProcess will start it."""

    argv: Sequence[str]
    port: int | None = None  # None: one of ours, which prints its port in its ready line
    http_probe: str | None = "/"  # None for a backend that does not speak HTTP
    env: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    cwd: Path | None = None  # None: the repository root


Recipe = Callable[[Workspace], Sequence[Launch]]


@dataclass(frozen=True)
class Target:
    """One side of a pair: a label for the table and a recipe for its processes."""

    label: str
    recipe: Recipe
    era: str | None = None  # set for our servers: the pair waits until this era is built
    needs: tuple[str, ...] = ()  # external programs, e.g. ("nginx",)
    # The path this side serves the pair's route under, when it is not the route itself:
    # http.server --cgi runs only scripts below /cgi-bin/, so its /hello is /cgi-bin/hello.
    route: str | None = None


@dataclass(frozen=True)
class Pair:
    name: str
    route: str
    connections: int
    ours: Target
    peer: Target
    baseline: bool = False  # peer vs peer: proves the harness, ratio reads A/B
    about: str = ""

    @property
    def ratio_of(self) -> str:
        return "A/B" if self.baseline else "ours/peer"

    def target(self, side: Side) -> Target:
        return self.ours if side == "ours" else self.peer

    def route_of(self, side: Side) -> str:
        return self.target(side).route or self.route


def ours(era: str, *extra: str) -> Target:
    """One of our servers: `python -m servers ERA --port 0 EXTRA...`, port from its ready line."""

    def recipe(workspace: Workspace) -> list[Launch]:
        return [Launch(our_server_argv(era, *extra, python=workspace.python), name=era)]

    # The options are part of the label: the table says which configuration ran.
    return Target(" ".join(["gatewaylab", era, *extra]), recipe, era=era)


def peer(
    label: str, *argv: str, http_probe: str | None = "/", needs: tuple[str, ...] = ()
) -> Target:
    """A one-process peer from an argv template: {python} {host} {port} {dir} are filled in."""

    def recipe(workspace: Workspace) -> list[Launch]:
        port = workspace.free_port()
        fields = {
            "python": workspace.python,
            "host": workspace.host,
            "port": str(port),
            "dir": str(workspace.directory),
        }
        return [Launch([arg.format_map(fields) for arg in argv], port=port, http_probe=http_probe)]

    return Target(label, recipe, needs=needs)


def _uvicorn(http: str) -> Target:
    # The event loop is named, not left to "auto", so the two uvicorn targets differ in
    # the HTTP parser only; and it is asyncio's own, the loop our asgi era and hypercorn's
    # asyncio worker run on, so that every ASGI pair compares servers, not loops (uvloop
    # would speed up the peer's I/O by itself). No access log: logging a line per request
    # is a benchmark of the logging module.
    return peer(
        f"uvicorn ({http})",
        "{python}", "-m", "uvicorn", "apps.asgi:app", "--host", "{host}", "--port", "{port}",
        "--http", http, "--loop", "asyncio", "--no-access-log", "--log-level", "warning",
    )  # fmt: skip


UVICORN_HTTPTOOLS = _uvicorn("httptools")
UVICORN_H11 = _uvicorn("h11")
HYPERCORN = peer(
    "hypercorn (asyncio)",
    "{python}", "-m", "hypercorn", "apps.asgi:app", "--bind", "{host}:{port}",
    "--workers", "1", "--worker-class", "asyncio", "--log-level", "warning",
)  # fmt: skip
# Eight threads on both WSGI peers: the same pool size, so the comparison is about how
# each one feeds its pool, not about the size of the pool.
WAITRESS = peer(
    "waitress (8 threads)",
    "{python}", "-m", "waitress", "--host={host}", "--port={port}", "--threads=8",
    "apps.wsgi:app",
)  # fmt: skip
GUNICORN_GTHREAD = peer(
    "gunicorn gthread (1 worker, 8 threads)",
    "{python}", "-m", "gunicorn", "--bind={host}:{port}", "--worker-class=gthread",
    "--workers=1", "--threads=8", "--log-level=warning", "apps.wsgi:app",
)  # fmt: skip


# -- FastCGI: application servers behind the same nginx ---------------------------------
# A FastCGI application server does not speak HTTP, so wrk cannot load it alone: it is
# loaded through a web server in front. For a fair comparison both sides get the same
# front, nginx with one configuration (servers/fastcgi/nginx.py: one worker, kept
# connections to the backend with fastcgi_keep_conn and a pool of 64 >= the 50
# connections, stock buffering), so that only the application server differs. Both
# processes of a side are pinned to the server CPU: nginx's work is charged to both
# sides alike.
Backend = Callable[[Workspace, int], Launch]


def behind_nginx(label: str, backend: Backend, era: str | None = None) -> Target:
    """A FastCGI application server on a free port, and nginx in front of it."""

    def recipe(workspace: Workspace) -> list[Launch]:
        backend_port, front_port = workspace.free_port(), workspace.free_port()
        prepare_directory(workspace.directory)
        conf = nginx_config(workspace.directory, front_port, [(workspace.host, backend_port)])
        (workspace.directory / "nginx.conf").write_text(conf)
        nginx = find_program("nginx") or "nginx"  # needs=("nginx",) checked it is there
        front = Launch(nginx_argv(nginx, workspace.directory), port=front_port, name="nginx")
        return [backend(workspace, backend_port), front]

    return Target(label, recipe, era=era, needs=("nginx",))


def _our_app_server(workspace: Workspace, port: int) -> Launch:
    # The family as the era's native interface (a CGI-style responder), with the default
    # pool of 32 worker threads. http_probe=None: it speaks records, not HTTP.
    argv = [workspace.python, "-m", "servers", "fastcgi-app",
            "--bind", f"{workspace.host}:{port}"]  # fmt: skip
    return Launch(argv, port=port, http_probe=None, name="fastcgi-app")


def _flup(workspace: Workspace, port: int) -> Launch:
    argv = [workspace.python, "-m", "loadtests.flup_server",
            "--bind", f"{workspace.host}:{port}", "--app", "apps.wsgi:app"]  # fmt: skip
    return Launch(argv, port=port, http_probe=None, name="flup")


NGINX_OUR_APP_SERVER = behind_nginx(
    "nginx -> gatewaylab fastcgi-app (responder)", _our_app_server, era="fastcgi"
)
NGINX_FLUP = behind_nginx("nginx -> flup WSGIServer (apps.wsgi)", _flup)


# -- CGI: one sh script, three hosts ------------------------------------------------------
# Every side runs apps/cgi-bin/hello, the family's /hello in POSIX sh, a new process per
# request: what differs is only how a host gets from a request to a started script and
# back. Eight connections: CGI's cost is per request, not per connection, and a process
# per request cannot use more concurrency than the one server CPU gives it anyway.
CGI_BIN = REPO_ROOT / "apps" / "cgi-bin"
# The script's PATH, as our server sets it (servers/cgi.py, SCRIPT_PATH).
SCRIPT_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
# The meta-variables nginx passes, written out (nginx's fastcgi_params file moves between
# distributions): RFC 3875's own, as our server sets them, so both scripts get an
# environment of the same size.
_FCGIWRAP_PARAMS = (
    ("SCRIPT_FILENAME", f"{CGI_BIN}$fastcgi_script_name"),  # what fcgiwrap executes
    ("SCRIPT_NAME", "$fastcgi_script_name"),
    ("PATH", SCRIPT_PATH),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx/$nginx_version"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("SERVER_NAME", "$server_name"),
    ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"),
    ("REQUEST_METHOD", "$request_method"),
    ("REQUEST_URI", "$request_uri"),
    ("QUERY_STRING", "$query_string"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("DOCUMENT_ROOT", str(CGI_BIN)),
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
)


def _nginx_fcgiwrap(workspace: Workspace) -> list[Launch]:
    """nginx in front of fcgiwrap, the way Debian deploys it: fcgiwrap is a FastCGI server
    that forks and execs the CGI script named by SCRIPT_FILENAME for every request; nginx
    opens a connection to it per request (fcgiwrap's stock setup, no fastcgi_keep_conn).
    Eight fcgiwrap processes, one per wrk connection, as our server has one connection
    process per client. ``env -i``: fcgiwrap passes its own environment on to scripts."""
    fcgi_port, front_port = workspace.free_port(), workspace.free_port()
    directory = workspace.directory
    prepare_directory(directory)  # the temporary directories, open to nginx's worker
    params = "\n".join(f"            fastcgi_param {n} {v};" for n, v in _FCGIWRAP_PARAMS)
    temp = "\n".join(f"    {key} {directory / name};" for key, name in TEMP_DIRS.items())
    (directory / "nginx.conf").write_text(f"""\
worker_processes 1;
daemon off;
pid {directory / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    server {{
        listen {workspace.host}:{front_port};
        location / {{
            fastcgi_pass {workspace.host}:{fcgi_port};
{params}
        }}
    }}
}}
""")
    fcgiwrap = find_program("fcgiwrap") or "fcgiwrap"  # needs=(...) checked it is there
    backend = ["env", "-i", fcgiwrap, "-c", "8", "-s", f"tcp:{workspace.host}:{fcgi_port}"]
    nginx = find_program("nginx") or "nginx"
    return [
        Launch(backend, port=fcgi_port, http_probe=None, name="fcgiwrap"),
        Launch(nginx_argv(nginx, directory), port=front_port, http_probe="/hello", name="nginx"),
    ]


def _http_server_cgi(workspace: Workspace) -> list[Launch]:
    """The standard library's CGI host, ``python3.11 -m http.server --cgi``: a thread per
    connection, HTTP/1.0 (a new connection for every request), fork + execve per script.
    It runs only scripts below /cgi-bin/ of its working directory, so it starts in apps/
    and serves the very same file as /cgi-bin/hello. Python 3.11 on purpose: --cgi is
    deprecated in 3.13 and removed in 3.15."""
    port = workspace.free_port()
    python = find_program("python3.11") or "python3.11"
    argv = [python, "-m", "http.server", "--cgi", "--bind", workspace.host, str(port)]
    return [Launch(argv, port=port, cwd=CGI_BIN.parent, name="http.server")]


NGINX_FCGIWRAP = Target(
    "nginx + fcgiwrap (8 processes)", _nginx_fcgiwrap, needs=("nginx", "fcgiwrap")
)
HTTP_SERVER_CGI = Target(
    "python3.11 -m http.server --cgi",
    _http_server_cgi,
    needs=("python3.11",),
    route="/cgi-bin/hello",
)

PAIRS: tuple[Pair, ...] = (
    # Peer-vs-peer baselines: no era of ours is needed, so they prove the harness today
    # and show the method on servers whose relative speed is well known.
    Pair("baseline-asgi", "/hello", 50, UVICORN_HTTPTOOLS, UVICORN_H11, baseline=True,
         about="same app and event loop (asyncio); only the HTTP parser differs"),
    Pair("baseline-wsgi", "/hello", 50, WAITRESS, GUNICORN_GTHREAD, baseline=True,
         about="two pools of 8 threads on the same WSGI app"),
    # Our eras against their peers; each stays "not built yet" until its lesson lands.
    Pair("fastcgi-nginx-vs-flup", "/hello", 50, NGINX_OUR_APP_SERVER, NGINX_FLUP,
         about="the same nginx in front; only the FastCGI application server differs "
               "(target: 2.0 or more)"),
    Pair("fastcgi-gateway-vs-nginx-flup", "/hello", 50, ours("fastcgi"), NGINX_FLUP,
         about="our whole era, gateway + application server, against nginx + flup "
               "(target: 1.0 or more)"),
    Pair("cgi-vs-fcgiwrap", "/hello", 8, ours("cgi", "--spawn", "posix_spawn"), NGINX_FCGIWRAP,
         about="the same sh script; our server with its fastest spawn (target: 1.0 or more)"),
    Pair("cgi-fork-vs-fcgiwrap", "/hello", 8, ours("cgi"), NGINX_FCGIWRAP,
         about="the textbook fork + execve: what copying the server's memory costs"),
    Pair("cgi-vs-http-server", "/hello", 8, ours("cgi", "--spawn", "posix_spawn"),
         HTTP_SERVER_CGI, about="the same sh script, and the standard library's CGI host "
                                "(target: 5.0 or more)"),
    Pair("wsgi-vs-waitress", "/hello", 50, ours("wsgi"), WAITRESS),
    Pair("wsgi-vs-gunicorn", "/hello", 50, ours("wsgi"), GUNICORN_GTHREAD),
    Pair("asgi-vs-uvicorn-httptools", "/hello", 50, ours("asgi"), UVICORN_HTTPTOOLS,
         about="a C parser (httptools) against our pure-Python core, same loop "
               "(target: 1.0 or more)"),
    Pair("asgi-vs-uvicorn-h11", "/hello", 50, ours("asgi"), UVICORN_H11,
         about="two pure-Python parsers, same loop (target: 3.0 or more)"),
    Pair("asgi-vs-hypercorn", "/hello", 50, ours("asgi"), HYPERCORN,
         about="hypercorn's asyncio worker, h11 inside (target: 4.0 or more)"),
)  # fmt: skip


def find_program(program: str) -> str | None:
    """The program's path; /usr/sbin too, where nginx lives but a user's PATH may not look."""
    found = shutil.which(program)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin"):
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def install_hint(program: str) -> str:
    return f"{program} is not installed: sudo apt-get install {APT_PACKAGES.get(program, program)}"


def why_not_runnable(pair: Pair) -> str | None:
    """None if the pair can run here; otherwise the one-line reason it is skipped."""
    for target in (pair.ours, pair.peer):
        if target.era is not None:
            era = era_named(target.era)
            if not era.built:
                return f"not built yet: {era.module} (lesson {era.lesson})"
    for target in (pair.ours, pair.peer):
        for program in target.needs:
            if find_program(program) is None:
                return install_hint(program)
    return None


# ======================================================================================
# Running a pair
# ======================================================================================


@dataclass(frozen=True)
class Settings:
    duration: int
    runs: int
    warmup: int
    connections: int | None  # None: each pair's own
    wrk_timeout: str = "2s"  # wrk's default, written out so the JSON shows it


@dataclass(frozen=True)
class Pinning:
    server_cpu: int | None
    client_cpu: int | None
    note: str

    def wrk_prefix(self) -> list[str]:
        # taskset rather than a preexec_fn: the pin is then part of the recorded argv,
        # so every run in the JSON can be re-typed as it ran.
        return [] if self.client_cpu is None else ["taskset", "-c", str(self.client_cpu)]


def plan_pinning() -> Pinning:
    if not hasattr(os, "sched_getaffinity"):
        return Pinning(None, None, "this OS has no CPU affinity: not pinned")
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return Pinning(None, None, "only one CPU available: server and wrk share it, not pinned")
    if find_program("taskset") is None:
        return Pinning(None, None, "taskset missing (sudo apt-get install util-linux): not pinned")
    server, client = allowed[0], allowed[1]
    return Pinning(server, client, f"server on CPU {server}, wrk on CPU {client}")


# A CPU busier than this before we start is running someone else's work (method, step 1).
CPU_BUSY_BEFORE = 0.25


def cpu_busy(cpus: Sequence[int], interval: float = 0.5) -> dict[int, float]:
    """How busy each CPU was over `interval` seconds, from /proc/stat; {} where unreadable.

    Pinning gives the server and wrk a CPU each, but not to the exclusion of everything
    else: a browser or a build on the same CPU takes its share of every run. We cannot stop
    that, but we can measure it before the first run and say so.
    """

    def snapshot() -> dict[int, tuple[int, int]]:  # cpu -> (busy jiffies, all jiffies)
        counts: dict[int, tuple[int, int]] = {}
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/stat").read_text().splitlines():
                name, *values = line.split()
                if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                    # proc(5): user nice system idle iowait irq softirq steal ...
                    jiffies = [int(v) for v in values[:8]]
                    idle = jiffies[3] + jiffies[4]
                    counts[int(name[3:])] = (sum(jiffies) - idle, sum(jiffies))
        return counts

    before = snapshot()
    time.sleep(interval)
    after = snapshot()
    busy = {}
    for cpu in sorted(set(before) & set(after)):
        elapsed = after[cpu][1] - before[cpu][1]
        if elapsed > 0:
            busy[cpu] = round((after[cpu][0] - before[cpu][0]) / elapsed, 3)
    return busy


@dataclass
class SideResult:
    side: Side
    target: Target
    processes: list[dict[str, Any]] = field(default_factory=list)  # argv, pid, port
    runs: list[RunRecord] = field(default_factory=list)  # warm-up (round 0) included

    def summary(self) -> SideSummary:
        return summarize(self.runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "side": LETTER[self.side],
            "label": self.target.label,
            "era": self.target.era,
            "processes": self.processes,
            "summary": asdict(self.summary()),
            "warmup": [run.to_json() for run in self.runs if run.warmup],
            "runs": [run.to_json() for run in self.runs if not run.warmup],
        }


PairStatus = Literal["ok", "flagged", "failed", "skipped"]


@dataclass
class PairResult:
    pair: Pair
    connections: int
    status: PairStatus = "ok"
    message: str = ""
    ours: SideResult = field(init=False)
    peer: SideResult = field(init=False)

    def __post_init__(self) -> None:
        self.ours = SideResult("ours", self.pair.ours)
        self.peer = SideResult("peer", self.pair.peer)

    def side(self, side: Side) -> SideResult:
        return self.ours if side == "ours" else self.peer

    @property
    def ratio(self) -> float | None:
        return ratio(self.ours.summary().median_rps, self.peer.summary().median_rps)

    def settle_status(self) -> None:
        """After the runs: failed without a clean run on a side, flagged with any bad run."""
        for side in SIDES:
            if self.side(side).summary().clean_runs == 0:
                self.status = "failed"
                self.message = f"no clean run for {LETTER[side]} ({self.side(side).target.label})"
                return
        measured = [run for run in (*self.ours.runs, *self.peer.runs) if not run.warmup]
        if any(not run.clean for run in measured):
            self.status = "flagged"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.pair.name,
            "baseline": self.pair.baseline,
            "about": self.pair.about,
            "route": self.pair.route,
            "routes": {LETTER[side]: self.pair.route_of(side) for side in SIDES},
            "connections": self.connections,
            "status": self.status,
            "message": self.message,
            "ratio": self.ratio,
            "ratio_of": self.pair.ratio_of,
            "flags": flag_details(self),
            "ours": self.ours.to_json(),
            "peer": self.peer.to_json(),
        }


class Interrupted(BaseException):
    """SIGTERM arrived: unwind through every ExitStack so all servers are stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Raise only once: a second SIGTERM must not interrupt the clean-up the first started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def _group_cpu_seconds(servers: Sequence[ServerProcess]) -> float:
    """CPU seconds of the servers' process groups: every live process, threads included,
    plus the children each one has reaped. The reaped children matter for a server that
    forks per request (CGI): they live and die inside one run, and their time is only
    visible in the parent's cutime/cstime once it has waited for them."""
    ticks = 0
    for server in servers:
        for pid in server.group_pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                # proc(5): utime, stime, cutime, cstime are fields 14-17; after the ")"
                # that ends field 2, field N is at index N - 3.
                fields = stat[stat.rindex(")") + 2 :].split()
                ticks += sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _dead_server(
    groups: Mapping[Side, Sequence[ServerProcess]],
) -> tuple[Side, ServerProcess, int] | None:
    """The first server process that has exited, with its side and exit status."""
    for side, servers in groups.items():
        for server in servers:
            if server.proc is not None and (status := server.proc.poll()) is not None:
                return side, server, status
    return None


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Runner:
    """Runs the selected pairs one after another, reporting progress as it goes."""

    def __init__(self, settings: Settings, pinning: Pinning, progress: Progress) -> None:
        self.settings = settings
        self.pinning = pinning
        self.progress = progress
        self.overall: TaskID = progress.add_task("bench", total=None)
        self.current: TaskID = progress.add_task("", total=None, visible=False)

    def wrk_runs_per_pair(self) -> int:
        return 2 * (1 + self.settings.runs)  # a warm-up and `runs` rounds, on two sides

    # -- one pair ------------------------------------------------------------------------
    def run_pair(self, pair: Pair) -> PairResult:
        connections = self.settings.connections or pair.connections
        result = PairResult(pair, connections)
        self.progress.console.print(
            f"[bold]{pair.name}[/]: A {pair.ours.label} vs B {pair.peer.label}, "
            f"GET {pair.route}, {connections} connections",
            highlight=False,
        )
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            fronts: dict[Side, ServerProcess] = {}
            groups: dict[Side, list[ServerProcess]] = {}
            # Step 2 of the method: both servers up before the first request.
            for side in SIDES:
                target = pair.target(side)
                self._describe(f"{pair.name}: starting {LETTER[side]} {target.label}")
                try:
                    groups[side] = self._start(stack, target, workdir / side)
                except ServerStartError as error:
                    result.status = "failed"
                    result.message = f"{LETTER[side]} ({target.label}) did not start:\n" + _tail(
                        str(error)
                    )
                    return result
                fronts[side] = groups[side][-1]
                result.side(side).processes = [
                    # A session leader: its pid is also its process group id.
                    {
                        "argv": shlex.join(s.argv),
                        "pid": s.pid,
                        "process_group": s.pid,
                        "port": s.port,
                    }
                    for s in groups[side]
                ]
            for side in SIDES:
                problem = self._preflight(fronts[side], pair.route_of(side))
                if problem:
                    result.status = "failed"
                    result.message = f"{LETTER[side]} ({pair.target(side).label}): {problem}"
                    return result

            # Steps 3 and 4: a discarded warm-up each, then A B A B ...
            schedule = [(0, side) for side in SIDES] + [
                (n, side) for n in range(1, self.settings.runs + 1) for side in SIDES
            ]
            for round_, side in schedule:
                label = "warm-up" if round_ == 0 else f"round {round_}/{self.settings.runs}"
                self._describe(f"{pair.name}: {label}, {LETTER[side]} {pair.target(side).label}")
                run = self._run_wrk(side, round_, fronts[side], groups[side],
                                    pair.route_of(side), connections)  # fmt: skip
                result.side(side).runs.append(run)
                self._report_run(LETTER[side], run)
                self.progress.advance(self.overall)
                if (dead := _dead_server(groups)) is not None:
                    # A server died under load: say so with its output, and stop loading.
                    dead_side, server, status = dead
                    result.status = "failed"
                    result.message = (
                        f"{LETTER[dead_side]} ({pair.target(dead_side).label}) exited with "
                        f"status {status} during the runs:\n{_tail(server.output())}"
                    )
                    return result
        # Leaving the ExitStack stopped every process of both sides.
        result.settle_status()
        return result

    def _start(
        self, stack: contextlib.ExitStack, target: Target, directory: Path
    ) -> list[ServerProcess]:
        """Start a target's processes, front last; retry if a free port was taken meanwhile."""
        directory.mkdir()
        workspace = Workspace(directory)
        for attempt in range(3):
            with contextlib.ExitStack() as attempt_stack:
                started: list[ServerProcess] = []
                try:
                    for launch in target.recipe(workspace):
                        server = ServerProcess(
                            launch.argv,
                            port=launch.port,
                            env=launch.env,
                            http_probe=launch.http_probe,
                            name=launch.name or target.label,
                            cwd=launch.cwd,
                            pin_cpu=self.pinning.server_cpu,
                        )
                        started.append(attempt_stack.enter_context(server))
                except ServerStartError as error:
                    # free_port() leaves a small race: another process may take the port
                    # between our check and the server's bind. Only that is retried.
                    if "Address already in use" in str(error) and attempt < 2:
                        continue
                    raise
                # Success: hand the processes to the pair's stack, which outlives this one.
                stack.enter_context(attempt_stack.pop_all())
                return started
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _preflight(self, server: ServerProcess, route: str) -> str | None:
        """One GET before the load: a wrong route fails now, not after minutes of 404s."""
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            connection.request("GET", route)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            return f"GET {route} failed: {error!r}"
        finally:
            connection.close()
        if not 200 <= response.status < 400:
            return f"GET {route} answered {response.status} {response.reason}, not 2xx/3xx"
        return None

    def _run_wrk(
        self,
        side: Side,
        round_: int,
        front: ServerProcess,
        group: Sequence[ServerProcess],
        route: str,
        connections: int,
    ) -> RunRecord:
        duration = self.settings.warmup if round_ == 0 else self.settings.duration
        argv = [
            *self.pinning.wrk_prefix(),
            "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
            "--timeout", self.settings.wrk_timeout, f"{front.url.rstrip('/')}{route}",
        ]  # fmt: skip
        self.progress.reset(self.current, total=duration, visible=True)
        server_cpu_before = _group_cpu_seconds(group)
        client_cpu_before = _children_cpu_seconds()
        started = time.monotonic()
        # wrk stops itself after `duration`; the deadline only catches a hung wrk.
        output, error = _wait_for(argv, deadline=duration + 30, tick=self._tick)
        wall = time.monotonic() - started
        client_cpu = (_children_cpu_seconds() - client_cpu_before) / wall
        server_cpu = (_group_cpu_seconds(group) - server_cpu_before) / wall
        self.progress.update(self.current, visible=False)
        wrk: WrkResult | None = None
        if error is None:
            try:
                wrk = parse_wrk(output)
            except WrkOutputError as bad:
                error = str(bad)
        return RunRecord(side, round_, tuple(argv), wrk, error, round(wall, 3),
                         round(client_cpu, 3), round(server_cpu, 3))  # fmt: skip

    # -- progress ------------------------------------------------------------------------
    # The progress display refreshes only when we call refresh(), never from a thread of
    # its own: ServerProcess pins a server in a preexec_fn, which runs between fork and
    # exec and is only safe while this process has a single thread.
    def _describe(self, text: str) -> None:
        self.progress.update(self.overall, description=text)
        self.progress.refresh()

    def _tick(self, elapsed: float) -> None:
        self.progress.update(self.current, completed=elapsed)
        self.progress.refresh()

    def _report_run(self, side_letter: str, run: RunRecord) -> None:
        what = "warm-up" if run.warmup else f"round {run.round}"
        numbers = "no result"
        if run.wrk is not None:
            p99 = _ms(run.wrk.latency_p99_ms)
            numbers = f"{run.wrk.requests_per_sec:>9,.0f} req/s  p99 {p99:>9}"
        cpu = f"cpu: server {run.server_cpu:.2f} wrk {run.client_cpu:.2f}"
        problems = f"  [red]{'; '.join(run.problems)}[/]" if run.problems else ""
        self.progress.console.print(
            f"  {what:>8} {side_letter} {numbers}  [dim]{cpu}[/]{problems}", highlight=False
        )


def _wait_for(
    argv: Sequence[str], *, deadline: float, tick: Callable[[float], None]
) -> tuple[str, str | None]:
    """Run argv to completion, calling tick(elapsed) meanwhile. Returns (output, error)."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace",
        )  # fmt: skip
    except OSError as error:
        return "", f"could not start {argv[0]}: {error}"
    try:
        while True:
            try:
                output, _ = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - started
                tick(elapsed)
                if elapsed > deadline:
                    proc.kill()
                    output, _ = proc.communicate()
                    return output, f"killed after {deadline:.0f} s without finishing"
    finally:
        # Ctrl-C or SIGTERM while wrk runs: wrk is ours, so we end it here (by its pid).
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        return output, f"exit status {proc.returncode}: {_tail(output, 3)}"
    return output, None


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} µs" if value < 1 else f"{value:.2f} ms"


# ======================================================================================
# Reporting: the table and the JSON
# ======================================================================================


def machine_info(pinning: Pinning, busy_before: Mapping[int, float]) -> dict[str, Any]:
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    wrk_version = None
    if wrk := find_program("wrk"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=5).stdout
            wrk_version = out.splitlines()[0].strip() if out else None
    return {
        "nproc": os.cpu_count(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else None,
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_busy_before": {str(cpu): share for cpu, share in busy_before.items()},
        "wrk": wrk_version,
        "pinning": {
            "server_cpu": pinning.server_cpu,
            "wrk_cpu": pinning.client_cpu,
            "note": pinning.note,
        },
    }  # fmt: skip


def _rps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _flag_summary(letter: str, side: SideResult) -> list[str]:
    """Short flags for the table: which kinds of problem, in how many runs."""
    measured = [run for run in side.runs if not run.warmup]
    kinds: dict[str, int] = {}
    for run in measured:
        for problem in run.problems:
            kind = problem.split(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    flags = [f"{letter}: {kind} in {n}/{len(measured)}" for kind, n in kinds.items()]
    busiest = side.summary().max_client_cpu
    if busiest is not None and busiest >= CLIENT_SATURATED:
        flags.append(f"{letter}: wrk busy ({busiest:.0%} CPU)")
    return flags


def flag_details(result: PairResult) -> list[str]:
    """Every flagged run, with its numbers: what the table abbreviates."""
    details = []
    for letter, side in (("A", result.ours), ("B", result.peer)):
        for run in side.runs:
            if run.problems and not run.warmup:
                details.append(f"{letter} round {run.round}: {'; '.join(run.problems)}")
        busiest = side.summary().max_client_cpu
        if busiest is not None and busiest >= CLIENT_SATURATED:
            details.append(
                f"{letter}: wrk used up to {busiest:.0%} of its CPU; the client may have been "
                "the limit, not the server"
            )
    return details


def _pair_cell(pair: Pair, connections: int) -> Text:
    cell = Text(pair.name, style="bold")
    ours_role, peer_role = ("", "") if pair.baseline else (" (ours)", " (peer)")
    cell.append(f"\nA{ours_role} {pair.ours.label}", style="dim")
    cell.append(f"\nB{peer_role} {pair.peer.label}", style="dim")
    route = pair.route_of("ours")
    if pair.route_of("peer") != route:
        route += f" vs {pair.route_of('peer')}"
    cell.append(f"\nGET {route}, {connections} connections", style="dim")
    return cell


def _side_cell(summary: SideSummary) -> Text:
    cell = Text(_rps(summary.median_rps), style="bold")
    cell.append(f"\np99 {_ms(summary.median_p99_ms)}", style="dim")
    cell.append(f"\n{summary.clean_runs}/{summary.runs} clean", style="dim")
    return cell


def results_table(results: Sequence[PairResult], settings: Settings, pinning: Pinning) -> Table:
    table = Table(
        title=f"median requests/sec over {settings.runs} run(s) of {settings.duration} s "
        f"per side; {pinning.note}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        caption="Under each median: the median p99 latency, and how many runs were clean "
        "(without errors: the only ones counted).",
        caption_justify="left",
        show_lines=True,
    )
    table.add_column("pair", min_width=26)
    table.add_column("A (ours)\nreq/s", justify="right", min_width=11)
    table.add_column("B (peer)\nreq/s", justify="right", min_width=11)
    table.add_column("ratio", justify="right", min_width=9)
    table.add_column("flags", min_width=16)
    for result in results:
        pair = result.pair
        name = _pair_cell(pair, result.connections)
        if not (result.ours.runs and result.peer.runs):  # skipped, or failed before any run
            style = "yellow" if result.status == "skipped" else "red"
            message = result.message.splitlines()[0] if result.message else result.status
            table.add_row(name, "-", "-", "-", Text(message, style=style))
            continue
        pair_ratio = result.ratio
        ratio_cell = Text("-" if pair_ratio is None else f"{pair_ratio:.2f}", style="bold")
        ratio_cell.append(f"\n{pair.ratio_of}", style="dim")
        flags = _flag_summary("A", result.ours) + _flag_summary("B", result.peer)
        if result.status == "failed":  # the whole message is printed below the table
            flags.insert(0, result.message.splitlines()[0])
        table.add_row(
            name,
            _side_cell(result.ours.summary()),
            _side_cell(result.peer.summary()),
            ratio_cell,
            Text("\n".join(flags) or "none", style="red" if flags else "green"),
        )
    return table


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename: a reader (a notebook) never sees half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(path)


# ======================================================================================
# Command line
# ======================================================================================


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description="wrk against our servers and their peers: pinned CPUs, warm-up, "
        "A B A B alternation, medians and ratios.",
    )
    parser.add_argument(
        "--pairs",
        metavar="NAME[,NAME]",
        help="pairs to run, by name or glob (baseline-*); default: all",
    )
    parser.add_argument("--list", action="store_true", help="list the pairs and exit")
    parser.add_argument(
        "--duration", type=_positive, metavar="S", help="seconds per wrk run (default 5)"
    )
    parser.add_argument(
        "--runs", type=_positive, metavar="N", help="rounds of A B per pair (default 5)"
    )
    parser.add_argument(
        "--warmup",
        type=_positive,
        metavar="S",
        help="seconds of the discarded warm-up run (default 2)",
    )
    parser.add_argument(
        "--connections",
        type=_positive,
        metavar="N",
        help="wrk connections for every pair (default: each pair's own)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="write the results here (default results/bench-<time>.json "
        "and results/bench-latest.json)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run for the test suite: 1 s runs, 1 round, 1 s warm-up",
    )
    return parser


def select_pairs(spec: str | None, pairs: Sequence[Pair]) -> list[Pair]:
    """Pairs named in spec (names or globs, comma-separated), in registry order."""
    if not spec:
        return list(pairs)
    patterns = [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(x.name, p) for x in pairs)]
    if unknown:
        raise KeyError(
            f"no pair matches {', '.join(map(repr, unknown))}; "
            f"the pairs are: {', '.join(p.name for p in pairs)}"
        )
    return [x for x in pairs if any(fnmatch.fnmatchcase(x.name, p) for p in patterns)]


def list_table(pairs: Sequence[Pair]) -> Table:
    table = Table(
        title="benchmark pairs: python -m loadtests.bench --pairs NAME[,NAME]",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_lines=True,
    )
    table.add_column("pair", min_width=30)
    table.add_column("about")
    table.add_column("status")
    for pair in pairs:
        reason = why_not_runnable(pair)
        status = Text(reason, style="yellow") if reason else Text("ready", style="green")
        about = pair.about or ("peer-vs-peer baseline" if pair.baseline else "")
        table.add_row(_pair_cell(pair, pair.connections), about, status)
    return table


def main(argv: Sequence[str] | None = None, pairs: Sequence[Pair] = PAIRS) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Off a terminal (CI logs, `| tee`) rich assumes 80 columns, which folds the results
        # table into strips; a log file has no width, so give the table what it needs.
        console = Console(width=120)
    errors = Console(stderr=True)
    try:
        selected = select_pairs(args.pairs, pairs)
    except KeyError as error:
        errors.print(f"bench: {error.args[0]}", highlight=False)
        return 2
    if args.list:
        console.print(list_table(selected))
        return 0
    if find_program("wrk") is None:
        errors.print(f"bench: {install_hint('wrk')}", highlight=False)
        return 2

    settings = Settings(
        duration=args.duration or (1 if args.smoke else 5),
        runs=args.runs or (1 if args.smoke else 5),
        warmup=args.warmup or (1 if args.smoke else 2),
        connections=args.connections,
    )
    pinning = plan_pinning()
    measured_cpus = [c for c in (pinning.server_cpu, pinning.client_cpu) if c is not None]
    busy_before = cpu_busy(measured_cpus or sorted(os.sched_getaffinity(0)))
    started_at = datetime.now()
    document: dict[str, Any] = {
        "tool": "gatewaylab bench",
        "format": 1,
        "command": shlex.join(
            [sys.executable, "-m", "loadtests.bench", *(sys.argv[1:] if argv is None else argv)]
        ),
        "started": started_at.isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "machine": machine_info(pinning, busy_before),
    }
    console.print(f"[bold]bench[/]: {pinning.note}; wrk -t1, warm-up {settings.warmup} s, "
                  f"then {settings.runs} x {settings.duration} s per side, A B A B",
                  highlight=False)  # fmt: skip
    for cpu, share in busy_before.items():
        if share >= CPU_BUSY_BEFORE:
            console.print(f"[yellow]warning[/]: CPU {cpu} was {share:.0%} busy before the "
                          "bench started; another program is running there, so expect noisy "
                          "numbers", highlight=False)  # fmt: skip

    results: list[PairResult] = []
    runnable: list[Pair] = []
    for pair in selected:
        reason = why_not_runnable(pair)
        if reason:
            results.append(PairResult(pair, pair.connections, "skipped", reason))
        else:
            runnable.append(pair)

    previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
    interrupted: BaseException | None = None
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            console=console, auto_refresh=False, transient=True,
        ) as progress:  # fmt: skip
            runner = Runner(settings, pinning, progress)
            progress.update(runner.overall, total=len(runnable) * runner.wrk_runs_per_pair())
            for pair in runnable:
                results.append(runner.run_pair(pair))
    except (KeyboardInterrupt, Interrupted) as error:
        # The ExitStacks have already stopped every server on the way out.
        interrupted = error
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    if interrupted is not None:
        errors.print("bench: interrupted; every server it started is stopped, "
                     "no results written")  # fmt: skip
        signum = interrupted.signum if isinstance(interrupted, Interrupted) else signal.SIGINT
        return 128 + signum

    # Registry order in the table, whatever order the pairs were run or skipped in.
    results.sort(key=lambda r: selected.index(r.pair))
    console.print(results_table(results, settings, pinning))
    for result in results:
        for detail in flag_details(result):
            console.print(f"[red]flagged[/] {result.pair.name} {detail}", highlight=False)
        if result.status == "failed" and "\n" in result.message:
            console.print(f"[red]failed[/] {result.pair.name}:", highlight=False)
            console.print(Text(result.message), highlight=False)

    document["finished"] = datetime.now().isoformat(timespec="seconds")
    document["pairs"] = [result.to_json() for result in results]
    paths = _json_paths(args.json, started_at)
    for path in paths:
        write_json(path, document)
    console.print(f"results: {paths[0]}", highlight=False)
    return 1 if any(result.status == "failed" for result in results) else 0


def _json_paths(explicit: Path | None, started_at: datetime) -> list[Path]:
    if explicit is not None:
        return [explicit]
    results = Path("results")
    return [results / f"bench-{started_at:%Y%m%d-%H%M%S}.json", results / "bench-latest.json"]


if __name__ == "__main__":
    sys.exit(main())
