"""The gateway's view of its application servers: addresses, kept connections, a child.

A web server in front of FastCGI keeps connections to the application server open
between requests (FCGI_KEEP_CONN, §3.5; nginx ``fastcgi_keep_conn on`` with an upstream
``keepalive`` pool), because a TCP or Unix connect per request is the very cost FastCGI
set out to remove. This module holds that machinery, apart from the HTTP front end:

* :class:`Upstream` is one application server address with its pool of idle kept
  connections. A connection goes back to the pool only when its request ended cleanly
  with KEEP_CONN (``WebServerConnection.can_reuse``) and the pool has room; when it is
  taken out again, a readable socket means the application server closed it (or sent
  garbage) while it was idle, and it is thrown away instead of used: that is how the
  gateway recovers when an application server restarts.
* :class:`Upstreams` chooses among several application servers in turn (nginx's
  round-robin), and moves on to the next when one refuses the connection.
* :class:`AppServerChild` is the application server that ``python -m servers fastcgi``
  starts by default: ``python -m servers fastcgi-app`` on a Unix socket in a private
  directory. It stays in the gateway's process group (no new session), so that a signal
  to the group (Ctrl-C, or launch.ServerProcess.stop) reaches both; the gateway also stops
  it explicitly when it exits, and starts it again if it dies while the gateway serves.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from .app_server import parse_bind
from .protocol import WebServerConnection

__all__ = ["AppServerChild", "Upstream", "UpstreamConnection", "UpstreamError", "Upstreams"]


class UpstreamError(Exception):
    """No connection to any application server: ``status`` is 502 or 504 (nginx's choice:
    refused is 502 Bad Gateway, a connect that times out is 504 Gateway Timeout)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UpstreamConnection:
    """One socket to an application server and its protocol state."""

    def __init__(self, upstream: Upstream, sock: socket.socket) -> None:
        self.upstream = upstream
        self.sock = sock
        self.proto = WebServerConnection()
        self.reused = False  # taken from the pool: it may have died while idle

    def close(self) -> None:
        self.sock.close()

    def __repr__(self) -> str:
        return f"<fastcgi connection to {self.upstream.name}>"


class Upstream:
    def __init__(self, address: tuple[str, int] | str, keepalive: int, timeout: float) -> None:
        self.address = address
        self.name = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
        self.keepalive = keepalive  # idle connections kept (nginx's upstream keepalive N)
        self.timeout = timeout
        self._idle: list[UpstreamConnection] = []
        self._lock = threading.Lock()

    def acquire(self, fresh: bool = False) -> UpstreamConnection:
        """An idle kept connection that is still healthy, or a new one."""
        while not fresh:
            with self._lock:
                if not self._idle:
                    break
                connection = self._idle.pop()  # LIFO: the warmest connection first
            try:
                # Anything to read on an idle connection is its close (or garbage); the
                # peek must not wait: "would block" means the connection is still quiet.
                connection.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                connection.reused = True
                return connection
            except OSError:
                pass
            connection.close()  # closed (or babbling) while idle: never reuse it
        return UpstreamConnection(self, self._connect())

    def _connect(self) -> socket.socket:
        try:
            if isinstance(self.address, str):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.timeout)
                    sock.connect(self.address)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection(self.address, timeout=self.timeout)
                # Records are small and come in bursts (BEGIN, PARAMS, STDIN, its end):
                # Nagle's algorithm would hold each burst's tail for the peer's delayed ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError:
            raise UpstreamError(504, f"connecting to {self.name} timed out") from None
        except OSError as error:
            raise UpstreamError(502, f"cannot connect to {self.name}: {error.strerror}") from None
        # Non-blocking from now on: the exchange tries each send and receive at once and
        # waits (poll) only when the socket is not ready, with its own deadlines.
        sock.setblocking(False)
        return sock

    def release(self, connection: UpstreamConnection) -> None:
        """Back to the pool if the request ended cleanly with KEEP_CONN; else closed."""
        with self._lock:
            if connection.proto.can_reuse and len(self._idle) < self.keepalive:
                self._idle.append(connection)
                return
        connection.close()

    def close_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class Upstreams:
    """Several application servers, taken in turn; a refused connect moves on to the next."""

    def __init__(self, addresses: Sequence[tuple[str, int] | str], keepalive: int, timeout: float):
        self.members = [Upstream(address, keepalive, timeout) for address in addresses]
        self._turn = 0
        self._lock = threading.Lock()

    def acquire(self, fresh: bool = False) -> UpstreamConnection:
        with self._lock:
            start = self._turn
            self._turn = (self._turn + 1) % len(self.members)
        error: UpstreamError | None = None
        for offset in range(len(self.members)):
            member = self.members[(start + offset) % len(self.members)]
            try:
                return member.acquire(fresh)
            except UpstreamError as failure:
                error = failure
        assert error is not None
        raise error

    def close_idle(self) -> None:
        for member in self.members:
            member.close_idle()


class AppServerChild:
    """``python -m servers fastcgi-app`` on a private Unix socket, as the gateway's child."""

    def __init__(self, options: Sequence[str], startup_timeout: float = 20.0) -> None:
        # A private directory (mode 0700): nobody else can connect to the application
        # server, which would otherwise be an open door to it (specs.md §2.10).
        self.directory = tempfile.mkdtemp(prefix="gatewaylab-fastcgi-")
        self.path = os.path.join(self.directory, "app.sock")
        self.options = list(options)
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.path

    def start(self) -> None:
        self.stop()  # a restart: reap the one that died, close its pipe
        argv = [sys.executable, "-m", "servers", "fastcgi-app", "--bind", self.path]
        # stdout is a pipe only for the ready line; stderr (its log, its trace) is ours.
        proc = subprocess.Popen(
            [*argv, *self.options], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        self.proc = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        line = b""
        poller = select.poll()
        poller.register(proc.stdout, select.POLLIN)
        while b"\n" not in line:
            readable = poller.poll(max(0.0, deadline - time.monotonic()) * 1000)
            chunk = os.read(proc.stdout.fileno(), 4096) if readable else b""
            if not chunk:
                self.stop()
                why = "exited" if readable else "did not say it was ready in time"
                raise RuntimeError(f"the FastCGI application server {why}")
            line += chunk
        if b"ready on" not in line:
            self.stop()
            raise RuntimeError(f"unexpected output from the application server: {line!r}")

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (it drains its requests), wait, SIGKILL what is left; always reaped."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.directory)


def parse_upstream(text: str) -> tuple[str, int] | str:
    """``--upstream HOST:PORT`` or a Unix socket path, as ``fastcgi-app --bind`` takes."""
    return parse_bind(text)
