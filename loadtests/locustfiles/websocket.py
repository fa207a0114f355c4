"""Workload ``websocket``: sockets held open, a message now and then (ASGI only).

Every user opens a WebSocket to ``/ws``, the family's echo, keeps it open for the whole
run, and every few seconds sends one text message and waits for it to come back. This is
what an event loop is for: a thousand idle connections cost a thousand small tasks and
buffers, not a thousand threads. Only the ASGI era can hand a live two-way connection to
an application; the other eras answer ``/ws`` with 501, which this workload counts as
``http 501`` failures of ``WS /ws connect``.

locust has no WebSocket client of its own, so this user drives the ``websockets``
library's synchronous client and reports each exchange to locust itself with
``events.request.fire``: that is what puts a row in the statistics and a failure in the
failures table. Under locust, gevent has patched sockets, ``select`` and threads; the sync
client's background reader thread becomes a greenlet, so a thousand users stay cheap and
never block each other.

Stats rows:

* ``WS /ws connect``: the opening handshake (once per user, again after a failure);
* ``WS /ws``: one message sent and its echo received (the response time is the round trip).

Settings:

* ``GATEWAYLAB_WS_INTERVAL``: seconds between two messages of one user (default 1.0);
* ``GATEWAYLAB_WS_MESSAGE_BYTES``: the size of each text message (default 32; 1 to 1048576).

(The file is named after the workload. locust imports it as a top-level module called
``websocket``, the name websocket-client also uses; nothing in a locust process imports
that library, so the two never meet.)
"""

from __future__ import annotations

import time
from typing import Any

from locust import User, constant, task
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from loadtests.locustfiles._common import TIMEOUT, env_float, env_int

INTERVAL = env_float("GATEWAYLAB_WS_INTERVAL", 1.0)
MESSAGE_BYTES = env_int("GATEWAYLAB_WS_MESSAGE_BYTES", 32, 1, 1 << 20)


class WrongEcho(Exception):
    """The echo differs from the message: ``wrong body``, as for HTTP workloads."""


def ws_url(host: str) -> str:
    """``http://127.0.0.1:8000`` -> ``ws://127.0.0.1:8000/ws`` (``https`` -> ``wss``)."""
    scheme, sep, rest = host.rstrip("/").partition("://")
    if not sep:
        scheme, rest = "http", host.rstrip("/")
    return ("wss" if scheme in ("https", "wss") else "ws") + "://" + rest + "/ws"


def message(number: int) -> str:
    """Message number ``number``, padded to MESSAGE_BYTES, distinct from its neighbours so
    that an echo of an older message is caught."""
    head = f"gatewaylab {number} "
    return (head + "." * MESSAGE_BYTES)[: max(MESSAGE_BYTES, len(head))]


class WebSocketUser(User):
    wait_time = constant(INTERVAL)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket: ClientConnection | None = None
        self.sent = 0

    def report(self, name: str, started: float, length: int, error: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=error,
            context={},
        )

    def open(self) -> None:
        started = time.perf_counter()
        try:
            self.socket = connect(ws_url(self.host or ""), open_timeout=TIMEOUT, close_timeout=2)
        except InvalidStatus as error:
            # The server answered the handshake with HTTP, not 101: say which status, in
            # the words the HTTP workloads use, so that failures sort by kind.
            self.report("/ws connect", started, 0, Exception(
                f"http {error.response.status_code}: the handshake was refused"
            ))  # fmt: skip
        except Exception as error:  # refused, reset, timed out: locust records it as is
            self.report("/ws connect", started, 0, error)
        else:
            self.report("/ws connect", started, 0, None)

    def on_start(self) -> None:
        self.open()

    @task
    def echo(self) -> None:
        if self.socket is None:
            self.open()  # after a failure: one new handshake per turn, not a busy loop
            return
        self.sent += 1
        text = message(self.sent)
        started = time.perf_counter()
        try:
            self.socket.send(text)
            reply = self.socket.recv(timeout=TIMEOUT)
            if reply != text:
                raise WrongEcho(f"wrong body: expected {text[:40]!r}, got {reply[:40]!r}")
        except Exception as error:
            self.report("/ws", started, 0, error)
            self.close()
        else:
            self.report("/ws", started, len(reply), None)

    def close(self) -> None:
        if self.socket is not None:
            socket, self.socket = self.socket, None
            try:
                socket.close()
            except Exception:
                pass  # closing a broken connection: nothing left to save

    def on_stop(self) -> None:
        self.close()
