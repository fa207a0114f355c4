"""What every connection of the ASGI server has, whatever it speaks: the base class.

asyncio calls a :class:`asyncio.Protocol` back when something happens on its socket
(``connection_made``, ``data_received``, ``eof_received``, ``connection_lost``) and when
the transport's write buffer crosses its high or low water mark (``pause_writing`` and
``resume_writing``). An HTTP connection and a WebSocket share the parts of that which
are not about the protocol, and those live here:

* **Flow control, outgoing.** ``transport.write()`` never blocks: it buffers what the
  kernel will not take yet. A client that does not read would make that buffer grow
  without bound, so the app's ``send()`` awaits :meth:`Connection.drain`, which returns
  once asyncio says the buffer is below its low water mark ("Response Body": the server
  flushes the data into the send buffer before send() returns). Memory per slow client
  is then the transport's high water mark (64 KiB by default), not the response size.
* **Flow control, incoming.** :meth:`pause_reading` / :meth:`resume_reading` stop and
  restart reading the socket; each protocol calls them when the bytes it holds for an
  app that is not receiving pass ``HIGH_WATER``. The kernel's buffers fill, and TCP tells
  the client to wait: backpressure reaches the far end without our buffering anything.
* **One deadline.** Each connection keeps ``deadline``, the loop time after which it has
  waited too long for its client; the server's sweeper calls :meth:`expire` once a
  second and each protocol decides what "too long" means in its state. One sweep over
  all connections costs less than a timer per request (a heap push and a cancel).
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from ..trace import next_connection_id
from .types import Message, Receive, Scope, Send, describe

if TYPE_CHECKING:
    from .server import Server

__all__ = ["HIGH_WATER", "Connection"]

# Incoming bytes held for an app that has not asked for them, before reading pauses: the
# size of asyncio's own default write high water mark, and of one family READ_SIZE piece.
HIGH_WATER = 64 * 1024


class Connection(asyncio.Protocol):
    """Transport, connection id, flow control both ways, and the deadline."""

    transport: asyncio.Transport

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config
        self.loop = server.loop
        self.tracer = server.tracer
        self.cid = 0
        self.closed = False  # connection_lost() was called
        self.reading_paused = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.deadline = math.inf

    def adopt(self, transport: asyncio.Transport, cid: int | None = None) -> None:
        """Take the transport (and the connection id, after an upgrade)."""
        self.transport = transport
        self.cid = cid if cid is not None else next_connection_id()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self._wake_drain()  # a sender waiting for the buffer to empty: it never will
        self.tracer.closed(self.cid, f"({exc})" if exc else "")

    # -- outgoing flow control -----------------------------------------------------------------
    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    async def drain(self) -> None:
        """Return when the transport's buffer is below its low water mark (or closed)."""
        if not self.write_paused or self.closed:
            return
        if self._drain is None:
            # One future for every sender: the WebSocket app and our pings may both wait.
            self._drain = self.loop.create_future()
        await asyncio.shield(self._drain)

    def _wake_drain(self) -> None:
        waiter, self._drain = self._drain, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- incoming flow control -----------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- what each protocol decides ------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Hand bytes to the transport, showing them with --trace."""
        if self.tracer.enabled:
            self.tracer.wire(self.cid, ">", data)
        self.transport.write(data)

    # -- --trace: every ASGI message, with the task that sent or received it -------------------
    def trace_asgi(self, direction: str, text: str) -> None:
        if self.tracer.enabled:
            task = asyncio.current_task()
            label = f"asgi {task.get_name()}" if task is not None else "asgi"
            self.tracer.event(self.cid, direction, label, text)

    def traced(self, scope: Scope, receive: Receive, send: Send) -> tuple[Receive, Send]:
        """With --trace: print the scope, and return the app's receive and send printing each
        message. Called only when tracing: tracing off costs nothing per message."""
        self.trace_asgi("<", f"scope {describe(scope)}")

        async def traced_receive() -> Message:
            message = await receive()
            self.trace_asgi("<", describe(message))
            return message

        async def traced_send(message: Message) -> None:
            self.trace_asgi(">", describe(message))
            await send(message)

        return traced_receive, traced_send

    def expire(self, now: float) -> None:
        """Called by the sweeper: act if the client kept us waiting past ``deadline``."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """The server is stopping: close when idle, finish what is under way."""
        raise NotImplementedError
