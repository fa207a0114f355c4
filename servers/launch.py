"""Start a server as a child process, wait until it answers, and stop all of it.

Every part of gatewaylab that needs a running server goes through this module: the test
fixtures, `make bench`, the lesson walkthroughs and the notebooks. Doing it in one place is
how the project keeps its promise of "nothing left behind":

* The child is started in a **new session** (``start_new_session=True``), so it leads its
  own process group. A forking server's children and a peer's workers (gunicorn, nginx)
  all live in that group, and :meth:`ServerProcess.stop` signals the *group*: SIGTERM
  first, for a graceful stop, then SIGKILL after a grace period. We never kill by name.
* **Readiness** is proven, not guessed: we poll until a TCP connection to the port
  succeeds (and, for HTTP servers, until an HTTP request gets any answer), with a deadline.
  If the process dies first, its captured output is put in the error message.
* **Ports**: our own servers accept ``--port 0`` and print one ready line with the URL;
  we read the real port from it, so there is no race for a free port. Peers that cannot
  report their port get one from :func:`free_port`, which asks the kernel for an unused
  port (a small race remains; tests retry on EADDRINUSE).

House rule: nothing here imports a server. A server is always a real process, because
processes, threads and descriptors are what the course measures.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

__all__ = [
    "READY_RE",
    "ServerProcess",
    "ServerStartError",
    "free_port",
    "our_server_argv",
    "pids_in_groups",
    "pids_in_sessions",
    "signals_deferred",
    "wait_for_port",
]

# The ready line every gatewaylab server prints once it listens, for example:
#   gatewaylab wsgi ready on http://127.0.0.1:8000/ (pid 4242)
# A FastCGI application server speaks records, not HTTP, and says so with its scheme:
#   gatewaylab fastcgi-app ready on fastcgi://127.0.0.1:9000/ (pid 4243)
READY_RE = re.compile(rb"ready on (?:http|fastcgi)://(?P<host>[^:/\s]+|\[[^\]]+\]):(?P<port>\d+)/")

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerStartError(RuntimeError):
    """The server did not come up; the message carries its output so the cause is visible."""


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back while a child is being started.

    A Ctrl-C that lands inside ``subprocess.Popen``, after the fork but before Popen
    returns, raises there: the child runs on and nobody holds its pid to stop it. Inside
    this block the signals are only noted; they are delivered again as it ends, when the
    caller already holds the child."""
    pending: list[int] = []
    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    try:
        old = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in watched}
    except ValueError:  # not the main thread: signals cannot arrive here anyway
        yield
        return
    try:
        yield
    finally:
        for watched_signal, handler in old.items():
            signal.signal(watched_signal, handler)
        for signum in pending:
            signal.raise_signal(signum)


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a TCP port that is free right now (bind to port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """Poll until a TCP connect to (host, port) succeeds; False if the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.02)
    return False


def our_server_argv(era: str, *extra: str, python: str | None = None) -> list[str]:
    """The argv that starts one of our eras on a kernel-chosen port."""
    return [python or sys.executable, "-m", "servers", era, "--port", "0", *extra]


class ServerProcess:
    """One server process (and its whole process group), started and stopped cleanly.

    Use it as a context manager::

        with ServerProcess(our_server_argv("wsgi")) as server:
            httpx.get(server.url + "hello")

    ``port=None`` means the server prints a ready line and we read the port from it;
    otherwise the caller chose the port (peers) and we poll it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        http_probe: str | None = "/",
        name: str | None = None,
        pin_cpu: int | None = None,
    ) -> None:
        self.argv = list(argv)
        self.host = host
        self.port = port
        self.env = {**os.environ, **(env or {})}
        # The children must find our packages even when started from elsewhere.
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), self.env.get("PYTHONPATH", "")) if p
        )
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.cwd = cwd if cwd is not None else REPO_ROOT
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.http_probe = http_probe
        self.name = name or Path(self.argv[0]).name
        self.pin_cpu = pin_cpu
        self.proc: subprocess.Popen[bytes] | None = None
        # Output goes to a temporary file, never to a pipe nobody reads: a chatty server
        # (--trace under load) would fill a pipe and block on write.
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix="gatewaylab-server-")  # noqa: SIM115
        self.returncode: int | None = None
        self._final_output = b""

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Self:
        preexec = None
        if self.pin_cpu is not None and hasattr(os, "sched_setaffinity"):
            cpu = self.pin_cpu

            def preexec() -> None:  # runs in the child between fork and exec
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(0, {cpu})

        with signals_deferred():
            self._popen(preexec)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _popen(self, preexec: Callable[[], None] | None) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # its own process group: stop() signals all of it
            preexec_fn=preexec,
        )

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while self.port is None:
            if m := READY_RE.search(self.output_bytes()):
                self.port = int(m["port"])
                break
            self._check_alive()
            if time.monotonic() > deadline:
                raise ServerStartError(f"{self.name}: no ready line in time\n{self.output()}")
            time.sleep(0.02)
        while True:
            self._check_alive()
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name}: nothing answered on {self.host}:{self.port}\n{self.output()}"
                )
            time.sleep(0.05)

    def _answers(self) -> bool:
        """True once the port accepts and, for HTTP servers, a request gets any answer."""
        assert self.port is not None
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                if self.http_probe is None:
                    return True
                sock.sendall(
                    f"GET {self.http_probe} HTTP/1.1\r\nHost: {self.host}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                return sock.recv(5) == b"HTTP/"
        except OSError:
            return False

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise ServerStartError(
                f"{self.name} exited with status {self.proc.returncode} before it was ready\n"
                f"{self.output()}"
            )

    def stop(self) -> int | None:
        """SIGTERM the whole group, wait, then SIGKILL what is left. Returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        pgid = proc.pid  # leader of its own session, so pgid == pid
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                pass
        # Children of the group may outlive the leader (a forked worker): kill them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait()
        # SIGKILL is delivered asynchronously: wait until the group is really gone, so
        # that "nothing left behind" holds the moment stop() returns.
        deadline = time.monotonic() + 5
        while pids_in_groups(pgid) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.returncode = proc.returncode
        return self.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        # Keep what the server printed (tests read it after the block), free the file.
        self._final_output = self.output_bytes()
        self._log.close()

    # -- inspection --------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        """Base URL with a trailing slash: ``server.url + "hello"``."""
        return f"http://{self.host}:{self.port}/"

    @property
    def address(self) -> tuple[str, int]:
        assert self.port is not None
        return (self.host, self.port)

    def output_bytes(self, start: int = 0) -> bytes:
        """What the server printed from byte ``start`` on (stdout and stderr, interleaved).

        The file's offset is shared with the server, which keeps writing through it, so we
        never seek: os.pread reads at a position without moving the shared offset."""
        if self._log.closed:
            return self._final_output[start:]
        chunks = []
        while chunk := os.pread(self._log.fileno(), 1 << 20, start):
            chunks.append(chunk)
            start += len(chunk)
        return b"".join(chunks)

    def output_size(self) -> int:
        if self._log.closed:
            return len(self._final_output)
        return os.fstat(self._log.fileno()).st_size

    def output(self) -> str:
        return self.output_bytes().decode("utf-8", "replace")

    def group_pids(self) -> list[int]:
        """Every live process in the server's process group (read from /proc)."""
        return pids_in_groups(self.pid)


def pids_in_groups(*pgids: int) -> list[int]:
    """Live processes (zombies aside) whose process group is one of ``pgids``, from /proc.

    The one way the project (and its tests) asks "is anything of this server left?": a
    server's helpers, scripts and nginx workers share its group, so the group is the unit.
    """
    return _live_pids(2, pgids)  # proc(5) field 5, pgrp


def pids_in_sessions(*sids: int) -> list[int]:
    """Live processes (zombies aside) in one of the sessions ``sids``: what a command
    started with start_new_session left behind, even in process groups of their own."""
    return _live_pids(3, sids)  # proc(5) field 6, session


def _live_pids(index: int, wanted_ids: tuple[int, ...]) -> list[int]:
    wanted = set(wanted_ids)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(entry.path, "stat").read_text()
            # Fields after the command name, which may itself hold spaces and parentheses:
            # proc(5) numbers them state, ppid, pgrp, session, ...
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[index]) in wanted and fields[0] != "Z":
                found.append(int(entry.name))
    return found
