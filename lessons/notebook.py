"""What a lesson's notebook imports: servers in the background, raw requests, traces, loads.

A notebook cell should read like the idea it shows, not like process management::

    from lessons.notebook import start, send, procs, load, stop_all

    wire = start("servers.wire")                 # the module, on a free port, traced
    send(wire, "GET /hello HTTP/1.1\\nHost: x\\n\\n")  # bytes both ways, and wire's trace
    procs(wire)                                  # its processes and threads, from /proc
    result = load(wire, users=3, seconds=2)      # locust, in a process of its own
    result.rows                                  # the table, as a list of dicts

``start`` takes an era name (``"wsgi"``, run as ``python -m servers wsgi``) or a module
(``"servers.wire"``, run as ``python -m servers.wire``), always with ``--port 0`` and,
unless ``trace=False``, ``--trace``. What the functions return display themselves in
Jupyter (rich renders them as HTML) and keep their data in attributes for plotting.

Nothing is left behind, whatever happens to the kernel:

* ``atexit``: a kernel that shuts down or restarts normally stops every server;
* a Ctrl-C (the notebook's "interrupt") while a server starts, a request waits or a load
  runs stops what was under way (the half-started server, the locust process); servers
  started by earlier cells keep running for the cells that follow;
* a kernel that is killed (no Python runs then) is covered by ``lessons.guardian``, a
  watchdog process that stops the servers when the kernel's end of a pipe closes;
* ``stop_all()`` in the last cell does the same on purpose.

The functions share one :class:`lessons.lab.Lab` per kernel; :func:`lab` returns it for
anything the functions do not cover (named client connections, background requests).
"""

from __future__ import annotations

import atexit
import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from rich.console import Group, RenderableType
from rich.jupyter import JupyterMixin
from rich.text import Text

from servers.eras import ERAS

from . import procview
from .client import encode_request
from .lab import Exchange, Lab, LabServer, style_output_line
from .load import LoadResult, run_load

__all__ = [
    "Lines",
    "ProcessView",
    "lab",
    "load",
    "procs",
    "send",
    "start",
    "stop",
    "stop_all",
    "trace",
]

_lab: Lab | None = None
_guardian: subprocess.Popen[bytes] | None = None
_lock = threading.Lock()


def lab() -> Lab:
    """The kernel's one Lab, created on first use with its cleanup registered."""
    global _lab
    with _lock:
        if _lab is None:
            _lab = Lab()
            atexit.register(stop_all)
        return _lab


def _tell_guardian(line: str) -> None:
    """Send one line to the guardian, starting it on first use."""
    global _guardian
    if _guardian is None or _guardian.poll() is not None:
        _guardian = subprocess.Popen(
            [sys.executable, "-m", "lessons.guardian"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the kernel's interrupt is not for it
        )
    stdin: IO[bytes] | None = _guardian.stdin
    if stdin is not None:
        with contextlib.suppress(OSError):
            stdin.write(line.encode() + b"\n")
            stdin.flush()


def _argv(target: str, args: Sequence[str], trace: bool) -> list[str]:
    extra = [*args, *(["--trace"] if trace and "--trace" not in args else [])]
    if "--port" not in args and not any(a.startswith("--port=") for a in args):
        extra = ["--port", "0", *extra]
    if any(era.name == target for era in ERAS):
        return [sys.executable, "-m", "servers", target, *extra]
    return [sys.executable, "-m", target, *extra]


def start(
    target: str, *args: str, name: str | None = None, trace: bool = True, probe: str | None = "/"
) -> LabServer:
    """Start an era (``"wsgi"``) or a module (``"servers.wire"``) in the background.

    Returns the server: ``.url``, ``.port``, ``.pid``, and its new output through
    :func:`trace`. A server of the same name that is running is stopped first, so that
    re-running the cell restarts it instead of failing.
    """
    name = name or target.rsplit(".", 1)[-1]
    the_lab = lab()
    if name in the_lab.servers and the_lab.servers[name].running:
        stop(the_lab.servers[name])
    server = the_lab.start(name, _argv(target, args, trace), probe=probe)
    _tell_guardian(f"+{server.pid}")
    server.settle()
    server.skip_output()  # the ready line and the readiness probe: not part of the story
    return server


def _server(server: LabServer | str) -> LabServer:
    return lab().server(server if isinstance(server, str) else server.name)


def send(
    server: LabServer | str,
    request: bytes | str,
    *,
    conn: str | None = None,
    responses: int | None = None,
    timeout: float = 5.0,
) -> Exchange:
    """Send a request and read the answer; show both and the server's trace.

    ``request`` is bytes as they go on the wire, or text written as in a lesson (every
    line sent with CRLF, see :func:`lessons.client.encode_request`). ``conn`` names a
    connection kept open for the next ``send`` (keep-alive); ``responses`` is how many
    responses to wait for (default: one per request line; 0: until the server is quiet).
    """
    data = request if isinstance(request, bytes) else encode_request(request)
    return lab().exchange(
        _server(server).name, data, conn=conn, responses=responses, timeout=timeout
    )


@dataclass
class Lines(JupyterMixin):
    """Output lines of a server, coloured like its trace on a terminal."""

    lines: list[str]

    def __rich__(self) -> RenderableType:
        if not self.lines:
            return Text("(nothing new)", style="dim")
        return Group(*(style_output_line(line) for line in self.lines))

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)


def trace(server: LabServer | str) -> Lines:
    """What the server printed since the last look (its ``--trace``)."""
    the_server = _server(server)
    the_server.settle()
    return Lines(the_server.new_lines())


@dataclass
class ProcessView(JupyterMixin):
    """A snapshot of a server's processes and threads; ``.processes`` holds the data."""

    name: str
    pgid: int
    processes: list[procview.ProcInfo]

    def __rich__(self) -> RenderableType:
        return procview.render(self.processes, f"{self.name}: process group {self.pgid}")


def procs(server: LabServer | str) -> ProcessView:
    """The server's processes and threads right now, read from /proc."""
    the_server = _server(server)
    return ProcessView(the_server.name, the_server.pid, the_server.procs())


def load(
    server: LabServer | str,
    *,
    users: int = 3,
    seconds: float = 2,
    paths: Sequence[str] = ("/",),
) -> LoadResult:
    """A short locust load (its own process) against the server; the results table."""
    the_server = _server(server)
    result = run_load(the_server.url, users=users, seconds=seconds, paths=paths)
    the_server.skip_output()  # a traced server under load printed thousands of lines
    return result


def stop(server: LabServer | str) -> int | None:
    """Stop one server (its whole process group); returns its exit status."""
    the_lab = lab()
    name = server if isinstance(server, str) else server.name
    status, _ = the_lab.stop(name)  # LabError if there is no such server
    the_server = the_lab.servers[name]
    _tell_guardian(f"-{the_server.pid}")
    return status


def stop_all() -> list[str]:
    """Stop every server this kernel started; returns the names of those still running."""
    global _guardian
    if _lab is None:
        return []
    running = _lab.close()
    if _guardian is not None:
        for server in _lab.servers.values():
            _tell_guardian(f"-{server.pid}")
        if _guardian.stdin is not None:
            with contextlib.suppress(OSError):
                _guardian.stdin.close()  # end-of-file: the guardian exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            _guardian.wait(timeout=5)
        _guardian = None
    return running
