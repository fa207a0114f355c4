"""The lab bench: named servers, client connections and exchanges, for lessons and notebooks.

The lesson runner (``make lesson-N``) and the notebook helper (``lessons.notebook``) do
the same things: start a server in the background under a name, send it bytes, show what
it traced, look at its processes, stop it. :class:`Lab` does them once for both.

Theory of operation:

* A server is a :class:`servers.launch.ServerProcess`: its own process group, readiness
  proven by an answer, stopped as a group. The lab keeps them in an ExitStack, so
  :meth:`Lab.close` (called from a ``finally``, on ``q``, on Ctrl-C, at kernel exit)
  stops every one, newest first, and nothing is left behind.
* A server's output (its ready line and its ``--trace``) goes to a file that the lab reads
  with a cursor: each step shows only what is new since the last one.
* Failures a student can meet (a port in use, an era not built yet, a server that dies at
  start, a connection the server closed) become a :class:`LabError` with the problem and
  the fix in words, never a traceback.

The client side speaks raw bytes (``lessons.client``), so that a lesson can send exactly
what it wrote, including what a server must refuse.
"""

from __future__ import annotations

import contextlib
import errno
import re
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Group, RenderableType
from rich.jupyter import JupyterMixin
from rich.text import Text

from servers.eras import ERAS
from servers.launch import ServerProcess, ServerStartError

from . import procview
from .client import Responses, byte_lines, read_responses, request_methods

__all__ = [
    "INSTALL_HINTS",
    "Exchange",
    "Lab",
    "LabError",
    "LabServer",
    "command_argv",
    "is_trace_line",
    "style_output_line",
]


class LabError(Exception):
    """Something a student can fix: ``problem`` says what failed, ``fix`` how to go on."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem + (f"\n  fix: {fix}" if fix else ""))
        self.problem = problem
        self.fix = fix


# Programs a lesson may call, and how to get them on Debian/Ubuntu.
INSTALL_HINTS = {
    "curl": "sudo apt-get install curl",
    "nginx": "sudo apt-get install nginx-light",
    "cgi-fcgi": "sudo apt-get install libfcgi-bin",
    "fcgiwrap": "sudo apt-get install fcgiwrap",
    "wrk": "sudo apt-get install wrk",
    "ss": "sudo apt-get install iproute2",
    "ps": "sudo apt-get install procps",
}
# A trace line: time, an optional prefix (a forking server's "pid 4242 "), the connection
# id, the direction, the rest. See servers/trace.py.
_TRACE_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) (.*?)(c\d+) ([<>*])(?: (.*))?$")
_DIRECTION_STYLE = {"<": "cyan", ">": "green", "*": "yellow"}


def is_trace_line(line: str) -> bool:
    return _TRACE_LINE.match(line) is not None


# Trace lines longer than this are cut for display (a 9000-byte header is one line).
MAX_SHOWN_LINE = 160


def style_output_line(line: str) -> Text:
    """A server's output line, coloured like the tracer does on a terminal, cut if long."""
    cut = ""
    if len(line) > MAX_SHOWN_LINE:
        line, cut = line[:MAX_SHOWN_LINE], f"… ({len(line) - MAX_SHOWN_LINE} more characters)"
    styled = _style(line)
    if cut:
        styled.append(cut, style="dim")
    return styled


def _style(line: str) -> Text:
    match = _TRACE_LINE.match(line)
    if match is None:
        return Text(line, style="dim" if "ready on" in line else "")
    stamp, prefix, conn, direction, rest = match.groups()
    text = Text(f"{stamp} {prefix}{conn} ", style="dim")
    text.append(f"{direction} {rest or ''}".rstrip(), style=_DIRECTION_STYLE[direction])
    return text


def command_argv(line: str, substitute: Callable[[str], str] = lambda s: s) -> list[str]:
    """``$ python -m servers.wire --port 0`` -> argv, with ``python`` as this interpreter.

    No shell: the words are split like a shell would (quotes work) but nothing is
    expanded or piped (STYLE: "a shell string where an argv list belongs").
    """
    text = substitute(line.removeprefix("$ ").strip())
    argv = shlex.split(text)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    elif argv and "/" not in argv[0]:
        # A program installed in the project's venv (uvicorn, waitress-serve, locust) is
        # found even when the venv is not on PATH, as under `make`.
        in_venv = Path(sys.executable).parent / argv[0]
        if in_venv.exists():
            argv[0] = str(in_venv)
    return argv


def _requested_port(argv: Sequence[str]) -> int | None:
    """The fixed port an argv asks for (``--port 8000``, ``--port=8000``), if any."""
    for i, word in enumerate(argv):
        value = None
        if word == "--port" and i + 1 < len(argv):
            value = argv[i + 1]
        elif word.startswith("--port="):
            value = word.split("=", 1)[1]
        if value is not None and value.isdigit() and int(value) != 0:
            return int(value)
    return None


def port_in_use(port: int, host: str = "127.0.0.1") -> LabError:
    """The error for a port someone else holds, naming who when we can see it."""
    pids = procview.listeners(port)
    holders = []
    for pid in pids:
        info = procview.read_process(pid)
        if info is not None:
            holders.append(f"pid {pid}: {info.command}")
    who = f" by {'; '.join(holders)}" if holders else ""
    stop = (
        f"stop it (kill {pids[0]}, or Ctrl-C in its terminal)"
        if holders
        else f"stop the program that uses it (`ss -ltnp 'sport = :{port}'` names it)"
    )
    return LabError(
        f"port {port} on {host} is already in use{who}",
        f"{stop}, or use --port 0 in this step so that the kernel picks a free port",
    )


def _check_port_free(port: int, host: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do (socket.create_server): a port whose old connections linger in
        # TIME_WAIT is free to listen on; only a listener makes it "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise port_in_use(port, host) from None
            raise LabError(f"cannot bind {host}:{port}: {error.strerror}") from None


def _check_era_built(argv: Sequence[str]) -> None:
    """``python -m servers ERA`` of an era that does not exist yet: say when it comes."""
    if len(argv) >= 4 and list(argv[1:3]) == ["-m", "servers"]:
        for era in ERAS:
            if era.name == argv[3] and not era.built:
                raise LabError(
                    f"the {era.name} era ({era.title}) is not built yet",
                    f"it arrives with lesson {era.lesson}; `python -m servers list` shows "
                    "what is built",
                )


class LabServer:
    """A named server the lab started, with a cursor into its output."""

    def __init__(self, name: str, process: ServerProcess) -> None:
        self.name = name
        self.process = process
        self._cursor = 0
        self._partial = b""
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def port(self) -> int:
        assert self.process.port is not None
        return self.process.port

    @property
    def pid(self) -> int:
        return self.process.pid

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<server {self.name}: pid {self.pid}, {self.url}, {state}>"

    @property
    def running(self) -> bool:
        proc = self.process.proc
        return proc is not None and proc.poll() is None

    def _output_from(self, start: int) -> bytes:
        return self.process.output_bytes(start)

    def output_size(self) -> int:
        return self.process.output_size()

    def new_lines(self) -> list[str]:
        """Complete lines the server printed since the last call."""
        data = self._output_from(self._cursor)
        self._cursor += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in complete]

    def skip_output(self) -> int:
        """Move the cursor to the end without reading; returns how many lines were skipped."""
        lines = self.new_lines()
        return len(lines)

    def settle(self, quiet: float = 0.12, limit: float = 1.5) -> None:
        """Wait until the server has printed nothing for ``quiet`` s (a trace's last
        lines, such as ``* close``, follow the response by a moment)."""
        deadline = time.monotonic() + limit
        size, since = self.output_size(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.02)
            now_size = self.output_size()
            if now_size != size:
                size, since = now_size, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    def procs(self) -> list[procview.ProcInfo]:
        return procview.process_group(self.pid)


@dataclass
class Exchange(JupyterMixin):
    """One send and what came back: the client's view and the server's trace."""

    server: str
    connection: str  # the lab's name for the client connection
    reused: bool  # the connection existed before this send
    sent: bytes
    received: Responses
    trace: list[str] = field(default_factory=list)
    seconds: float = 0.0
    kept_open: bool = False

    def sent_view(self) -> list[Text]:
        how = "the same connection" if self.reused else "a new connection"
        head = Text(f"client → {self.server}: {len(self.sent)} bytes on {how}", style="bold cyan")
        return [head, *(Text("  ").append_text(t) for t in byte_lines(self.sent))]

    def trace_view(self) -> list[Text]:
        if not self.trace:
            return []
        head = Text(f"{self.server} traced:", style="bold yellow")
        return [head, *(Text("  ").append_text(style_output_line(t)) for t in self.trace)]

    def received_view(self) -> list[Text]:
        head = Text(f"client ← {self.server}: {self.received.summary()}", style="bold green")
        lines = [head, *(Text("  ").append_text(t) for t in byte_lines(self.received.data))]
        if self.kept_open:
            lines.append(Text(f"  (connection {self.connection} stays open)", style="dim"))
        return lines

    def __rich__(self) -> RenderableType:
        return Group(*self.sent_view(), *self.trace_view(), *self.received_view())

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.received.responses]


@dataclass
class _Connection:
    sock: socket.socket
    server: str


class Lab:
    """Named servers and connections, and the guarantee that close() leaves nothing."""

    def __init__(self) -> None:
        self.servers: dict[str, LabServer] = {}
        self.connections: dict[str, _Connection] = {}
        self._stack = contextlib.ExitStack()
        self._background: list[threading.Thread] = []
        self.finished_background: list[Exchange | LabError] = []
        self._lock = threading.Lock()

    # -- servers ----------------------------------------------------------------------------
    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int | None = None,
        probe: str | None = "/",
        startup_timeout: float = 20.0,
    ) -> LabServer:
        """Start ``argv`` as server ``name``. ``port=None``: read it from the ready line."""
        if name in self.servers and self.servers[name].running:
            raise LabError(
                f"a server named {name!r} is already running (pid {self.servers[name].pid})",
                f"stop it first (a stop step, or lab.stop({name!r})), or use another name",
            )
        argv = list(argv)
        _check_era_built(argv)
        fixed = port if port is not None else _requested_port(argv)
        if fixed is not None:
            _check_port_free(fixed, "127.0.0.1")
        process = ServerProcess(
            argv, port=port, name=name, http_probe=probe, startup_timeout=startup_timeout
        )
        try:
            process.start()
        except FileNotFoundError:
            program = Path(argv[0]).name
            raise LabError(
                f"cannot start {name}: program {program!r} is not installed",
                INSTALL_HINTS.get(program, "install it, or check the command's spelling"),
            ) from None
        except ServerStartError as error:
            text = str(error)
            if "Address already in use" in text and fixed is not None:
                raise port_in_use(fixed) from None
            tail = "\n".join(text.splitlines()[-8:])
            raise LabError(
                f"server {name} did not start; its last words:\n{tail}",
                f"run the command by hand to see the whole story: {shlex.join(argv)}",
            ) from None
        server = LabServer(name, process)
        self.servers[name] = server
        self._stack.callback(self._stop_quietly, server)
        return server

    def server(self, name: str) -> LabServer:
        server = self.servers.get(name)
        if server is None:
            known = ", ".join(self.servers) or "none"
            raise LabError(
                f"no server named {name!r} was started (started so far: {known})",
                "start it with a server step before this one; with --step, start at or "
                "before the step that starts it",
            )
        if not server.running:
            raise LabError(
                f"server {name!r} is not running (it exited with status "
                f"{server.process.proc.returncode if server.process.proc else '?'})",
                "start it again (re-run its server step), or look at its output above",
            )
        return server

    def stop(self, name: str) -> tuple[int | None, list[str]]:
        """Stop server ``name``; returns its exit status and its last output lines."""
        server = self.servers.get(name)
        if server is None:
            raise LabError(f"no server named {name!r} to stop")
        for conn_name, conn in list(self.connections.items()):
            if conn.server == name:
                self.close_connection(conn_name)
        server.returncode = server.process.stop()
        lines = server.new_lines()
        return server.returncode, lines

    def _stop_quietly(self, server: LabServer) -> None:
        if server.returncode is None or server.running:
            server.returncode = server.process.stop()
        server.process.__exit__(None, None, None)  # also closes the output file

    # -- connections and exchanges ------------------------------------------------------------
    def close_connection(self, name: str) -> None:
        conn = self.connections.pop(name, None)
        if conn is not None:
            conn.sock.close()

    def exchange(
        self,
        server_name: str,
        data: bytes,
        *,
        conn: str | None = None,
        responses: int | None = None,
        timeout: float = 5.0,
        on_trace: Callable[[list[str]], None] | None = None,
    ) -> Exchange:
        """Send ``data`` to a server and read what comes back.

        ``conn`` names a connection that stays open for later exchanges (keep-alive);
        without it the connection is new and closed afterwards. ``responses`` is how
        many final responses to wait for (default: one per request line in ``data``,
        at least one; 0 means "read until the server goes quiet"). ``on_trace`` gets the
        server's new output lines while we wait, so a runner can show them live.
        """
        server = self.server(server_name)
        reused = conn is not None and conn in self.connections
        if reused:
            assert conn is not None
            sock = self.connections[conn].sock
        else:
            try:
                sock = socket.create_connection(server.process.address, timeout=timeout)
            except OSError as error:
                raise LabError(
                    f"cannot connect to {server_name} at {server.url}: {error.strerror}",
                    "is it still running? re-run its server step",
                ) from None
            if conn is not None:
                self.connections[conn] = _Connection(sock, server_name)
        methods = request_methods(data)
        expected = max(1, len(methods)) if responses is None else responses
        started = time.monotonic()
        keep = False
        try:
            try:
                sock.sendall(data)
            except OSError as error:
                raise LabError(
                    f"sending on connection {conn or '(new)'} failed: {error.strerror}",
                    "the server closed this connection earlier; use a new conn=... name",
                ) from None
            result = self._read_with_trace(sock, server, methods, expected, timeout, on_trace)
            keep = conn is not None and not result.closed
        finally:
            # Interrupted or done: a connection that is not kept is closed here, always.
            if not keep:
                if conn is not None:
                    self.connections.pop(conn, None)
                sock.close()
        seconds = time.monotonic() - started
        server.settle()
        trace = server.new_lines()
        if on_trace is not None and trace:
            on_trace(trace)
            trace = []
        return Exchange(
            server=server_name,
            connection=conn or "",
            reused=reused,
            sent=data,
            received=result,
            trace=trace,
            seconds=seconds,
            kept_open=keep,
        )

    def _read_with_trace(
        self,
        sock: socket.socket,
        server: LabServer,
        methods: list[bytes],
        expected: int,
        timeout: float,
        on_trace: Callable[[list[str]], None] | None,
    ) -> Responses:
        if on_trace is None:
            return read_responses(sock, methods, expected, timeout)
        # Show the trace as it arrives: read in slices and pass new lines on between them.
        # A slow request (/sleep, a CGI fork) is then watched, not waited for.
        done = threading.Event()
        box: list[Responses] = []

        def reader() -> None:
            try:
                box.append(read_responses(sock, methods, expected, timeout))
            finally:
                done.set()

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        while not done.wait(0.05):
            if lines := server.new_lines():
                on_trace(lines)
        thread.join()
        if lines := server.new_lines():
            on_trace(lines)
        return box[0]

    def exchange_in_background(
        self, server_name: str, data: bytes, *, timeout: float = 30.0
    ) -> None:
        """Send on a new connection from a thread and return at once; the result lands in
        ``finished_background`` (a slow request keeps a worker busy while a procs step looks)."""
        server = self.server(server_name)

        def run() -> None:
            try:
                with socket.create_connection(server.process.address, timeout=timeout) as sock:
                    started = time.monotonic()
                    sock.sendall(data)
                    methods = request_methods(data)
                    result = read_responses(sock, methods, max(1, len(methods)), timeout)
                    exchange = Exchange(
                        server_name, "", False, data, result, seconds=time.monotonic() - started
                    )
            except OSError as error:
                with self._lock:
                    self.finished_background.append(
                        LabError(f"background request to {server_name} failed: {error}")
                    )
                return
            with self._lock:
                self.finished_background.append(exchange)

        thread = threading.Thread(target=run, daemon=True, name=f"lab-background-{server_name}")
        thread.start()
        self._background.append(thread)

    def take_finished_background(self) -> list[Exchange | LabError]:
        with self._lock:
            done, self.finished_background = self.finished_background, []
        self._background = [t for t in self._background if t.is_alive()]
        return done

    @property
    def background_pending(self) -> int:
        return sum(t.is_alive() for t in self._background)

    # -- the end ------------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Close every connection and stop every server, newest first. Idempotent.
        Returns the names of the servers that were still running."""
        for name in list(self.connections):
            self.close_connection(name)
        running = [name for name, s in self.servers.items() if s.running]
        self._stack.close()
        # Background threads hold sockets to servers that are now gone: they end at once.
        for thread in self._background:
            thread.join(timeout=2)
        return running

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
