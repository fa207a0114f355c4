"""The gateway's view of its application servers: addresses, kept connections, a child.

A web server in front of FastCGI keeps connections to the application server open
between requests (FCGI_KEEP_CONN, §3.5; nginx ``fastcgi_keep_conn on`` with an upstream
``keepalive`` pool), because a TCP or Unix connect per request is the very cost FastCGI
set out to remove. This module holds that machinery, apart from the HTTP front end:

* :class:`UpstreamConnection` is one non-blocking socket to an application server, in
  the gateway's event loop (gateway.py) from its connect to its close. It is watched for
  reading all that time, also while it sits idle in the pool: an idle kept connection has
  nothing to say, so when it becomes readable the application server closed it (or sent
  garbage), and it is closed and dropped from the pool at once, as nginx does. That is how
  the gateway recovers when an application server restarts, without a check per request.
* :class:`Upstream` is one application server address with its pool of idle kept
  connections. A connection goes back to the pool only when its request ended cleanly
  with KEEP_CONN (``WebServerConnection.can_reuse``) and the pool has room.
* :class:`Upstreams` chooses among several application servers in turn (nginx's
  round-robin), and moves on to the next when one refuses the connection.
* :class:`AppServerChild` is the application server that ``python -m servers fastcgi``
  starts by default: ``python -m servers fastcgi-app`` on a Unix socket in a private
  directory. It stays in the gateway's process group (no new session), so that a signal
  to the group (Ctrl-C, or launch.ServerProcess.stop) reaches both; the gateway also stops
  it explicitly when it exits, and starts it again if it dies while the gateway serves.

One thread owns all of it (the gateway's event loop), so nothing here takes a lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .app_server import parse_bind
from .protocol import WebServerConnection

if TYPE_CHECKING:
    from .exchange import Exchange

__all__ = [
    "AppServerChild",
    "Upstream",
    "UpstreamConnection",
    "UpstreamError",
    "Upstreams",
    "rewatch",
]

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def rewatch(
    selector: selectors.BaseSelector, sock: socket.socket, handler: object, old: int, new: int
) -> int:
    """Tell the event loop which events of ``sock`` we now wait for; returns ``new``.

    Each change is an epoll_ctl(2) system call, so it is made only when the set changes:
    in the common case a socket is registered for reading once and never touched again."""
    if new != old:
        if not new:
            selector.unregister(sock)
        elif not old:
            selector.register(sock, new, handler)
        else:
            selector.modify(sock, new, handler)
    return new


class UpstreamError(Exception):
    """No connection to any application server: ``status`` is 502 or 504 (nginx's choice:
    refused is 502 Bad Gateway, a connect that times out is 504 Gateway Timeout).
    ``refused`` names the application server whose connect failed after it was started
    (a TCP connect completes later): the gateway then tries the others."""

    def __init__(self, status: int, message: str, refused: Upstream | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.refused = refused


class UpstreamConnection:
    """One socket to an application server, its protocol state, and the exchange (one
    HTTP request, exchange.py) that uses it now: None while it waits in the pool."""

    def __init__(self, upstream: Upstream, sock: socket.socket, connecting: bool) -> None:
        self.upstream = upstream
        self.sock = sock
        self.proto = WebServerConnection()
        self.reused = False  # taken from the pool: it may have died while idle
        self.connecting = connecting  # a TCP connect still under way (EINPROGRESS)
        self.exchange: Exchange | None = None
        self.closed = False
        # Writable is how a non-blocking connect says it is done.
        self.events = rewatch(upstream.selector, sock, self, 0, WRITE if connecting else READ)

    def watch(self, read: bool, write: bool) -> None:
        wanted = (READ if read else 0) | (WRITE if write else 0)
        self.events = rewatch(self.upstream.selector, self.sock, self, self.events, wanted)

    # -- the event loop calls these ------------------------------------------------------
    def on_readable(self) -> None:
        if self.exchange is None:
            # Idle in the pool: readable means closed by the application server (or bytes
            # nobody asked for). Either way it can never carry a request again.
            self.upstream.forget(self)
            self.close()
        else:
            self.exchange.on_upstream_readable()

    def on_writable(self) -> None:
        if self.exchange is not None:
            self.exchange.on_upstream_writable()
        else:
            self.watch(read=True, write=False)  # nothing to send: stop asking

    def connect_error(self) -> int:
        """After a non-blocking connect became writable: 0, or why it failed (an errno)."""
        self.connecting = False
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.exchange = None
            self.events = rewatch(self.upstream.selector, self.sock, self, self.events, 0)
            self.sock.close()

    def __repr__(self) -> str:
        return f"<fastcgi connection to {self.upstream.name}>"


class Upstream:
    def __init__(
        self,
        address: tuple[str, int] | str,
        keepalive: int,
        timeout: float,
        selector: selectors.BaseSelector,
    ) -> None:
        self.address = address
        self.name = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
        self.keepalive = keepalive  # idle connections kept (nginx's upstream keepalive N)
        self.timeout = timeout  # for a connect (exchange.py checks it)
        self.selector = selector
        self._idle: list[UpstreamConnection] = []

    def acquire(self, fresh: bool = False) -> UpstreamConnection:
        """An idle kept connection, or a new one.

        No check that the kept one is still alive (a peek would be a system call per
        request): one that died while idle was closed by the event loop when it became
        readable, and one that dies just now fails its request before any answer, which
        the exchange retries once on a new connection."""
        if self._idle and not fresh:
            connection = self._idle.pop()  # LIFO: the warmest connection first
            connection.reused = True
            return connection
        sock, connecting = self._connect()
        return UpstreamConnection(self, sock, connecting)

    def _connect(self) -> tuple[socket.socket, bool]:
        """A new non-blocking socket, connected or connecting: (socket, still connecting).

        The event loop must never wait, so the connect does not either. A Unix socket
        connects at once or fails at once (a full backlog is EAGAIN: refused, like nginx);
        a TCP connect to another host may take a round trip (EINPROGRESS), and the
        exchange waits for the socket to become writable before it sends its records."""
        family = socket.AF_UNIX if isinstance(self.address, str) else socket.AF_INET
        if not isinstance(self.address, str) and ":" in self.address[0]:
            family = socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            # Records are small and come in bursts (BEGIN, PARAMS, STDIN, its end):
            # Nagle's algorithm would hold each burst's tail for the peer's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self.address)
        if code in (0, errno.EINPROGRESS):
            return sock, code != 0
        sock.close()
        raise UpstreamError(502, f"cannot connect to {self.name}: {os.strerror(code)}")

    def release(self, connection: UpstreamConnection) -> None:
        """Back to the pool if the request ended cleanly with KEEP_CONN; else closed."""
        connection.exchange = None
        if (
            not connection.closed
            and connection.proto.can_reuse
            and len(self._idle) < self.keepalive
        ):
            connection.watch(read=True, write=False)  # idle: only its close is expected
            self._idle.append(connection)
            return
        connection.close()

    def forget(self, connection: UpstreamConnection) -> None:
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)

    def close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class Upstreams:
    """Several application servers, taken in turn; a refused connect moves on to the next."""

    def __init__(
        self,
        addresses: Sequence[tuple[str, int] | str],
        keepalive: int,
        timeout: float,
        selector: selectors.BaseSelector,
    ) -> None:
        self.members = [Upstream(address, keepalive, timeout, selector) for address in addresses]
        self._turn = 0

    def acquire(
        self, fresh: bool = False, refused: frozenset[Upstream] = frozenset()
    ) -> UpstreamConnection:
        """A connection to the next member in turn, skipping those that ``refused``."""
        start = self._turn
        self._turn = (self._turn + 1) % len(self.members)
        error: UpstreamError | None = None
        for offset in range(len(self.members)):
            member = self.members[(start + offset) % len(self.members)]
            if member in refused:
                continue
            try:
                return member.acquire(fresh)
            except UpstreamError as failure:
                error = failure
        if error is None:
            raise UpstreamError(502, "every application server refused the connection")
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
