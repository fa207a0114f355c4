"""WebSocket for ASGI: the RFC 6455 frame layer (servers/websocket.py) on the event loop.

A WebSocket starts as an HTTP request. When :class:`~servers.asgi.http.HttpProtocol`
parses a GET with ``Upgrade: websocket``, it hands the socket to a
:class:`WebSocketProtocol` (``transport.set_protocol``) and stops parsing HTTP. The app
is then called with a ``websocket`` scope and hears ``websocket.connect``; the handshake
is finished only by what the app answers ("Connect" in the ASGI spec)::

    CONNECTING --websocket.accept--> OPEN --websocket.close / server stops--> CLOSING
        |                              |                                        |
        | websocket.close: HTTP 403    | the client's Close: echo it, close TCP |  its Close,
        | websocket.http.response.*:   | a bad frame: Close 1002/1007/1009      |  or a timeout
        |   the app's own HTTP answer  | no Pong in time: Close 1011, abort     v
        +------------------------------+------------------------------------> CLOSED

What the server does by itself, so that the app only sees whole messages ("Websocket"
section of the ASGI spec): it reassembles fragments (the sans-IO layer does), answers
every Ping with a Pong (§5.5.2), pings an idle client every ``ws_ping_interval`` seconds
and drops it if no Pong comes within ``ws_ping_timeout`` (a dead peer otherwise holds a
socket forever), echoes the client's Close (§5.5.1), and closes the TCP connection first
(§7.1.1). Incoming messages wait in a small queue for the app; past ``HIGH_WATER`` bytes
reading pauses, exactly as for an HTTP body.
"""

from __future__ import annotations

import asyncio
import enum
import math
import os
import sys
import traceback
from collections import deque
from typing import TYPE_CHECKING

from .. import websocket as rfc6455
from ..http import (
    NEED_DATA,
    Data,
    EndOfMessage,
    InformationalResponse,
    LocalProtocolError,
    Request,
    Response,
    State,
)
from .connection import HIGH_WATER, Connection
from .types import (
    WEBSOCKET_SPEC,
    ClientDisconnected,
    ContractError,
    Message,
    checked_headers,
    describe,
    type_name,
)

if TYPE_CHECKING:
    from .http import HttpProtocol

__all__ = ["Phase", "WebSocketProtocol"]

# How long our Close waits for the client's (websockets: close_timeout 10 s).
CLOSE_TIMEOUT = 10.0


class Phase(enum.Enum):
    CONNECTING = "CONNECTING"  # handshake received; the app has not answered yet
    DENIED = "DENIED"  # the app sends its own HTTP response instead (denial extension)
    OPEN = "OPEN"  # accepted: messages flow
    CLOSING = "CLOSING"  # our Close went out; waiting for the client's
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.name


# (phase, message the app sends) -> the phase after it. Anything else is a ContractError.
TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.CONNECTING, "websocket.accept"): Phase.OPEN,
    (Phase.CONNECTING, "websocket.close"): Phase.CLOSED,  # answered with HTTP 403
    (Phase.CONNECTING, "websocket.http.response.start"): Phase.DENIED,
    (Phase.DENIED, "websocket.http.response.body"): Phase.DENIED,  # CLOSED when complete
    (Phase.OPEN, "websocket.send"): Phase.OPEN,
    (Phase.OPEN, "websocket.close"): Phase.CLOSING,
}
_EXPECTED = {
    phase: " or ".join(repr(kind) for (p, kind) in TRANSITIONS if p is phase) or "nothing"
    for phase in Phase
}


class WebSocketProtocol(Connection):
    """One WebSocket connection, from the upgrade request to the closed socket."""

    task: asyncio.Task[None]

    @classmethod
    def upgrade(cls, http: HttpProtocol, request: Request) -> None:
        """Take over ``http``'s transport for the WebSocket that ``request`` asks for."""
        try:
            handshake = rfc6455.check_handshake(request)
        except rfc6455.HandshakeError as error:
            body = f"{error.status} {error}\n".encode()
            headers = [
                *error.headers,
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"connection", b"close"),
            ]
            http.write(http.conn.send_response(error.status, headers, body))
            http.transport.close()
            return
        http.server.connections.discard(http)
        protocol = cls(http, request, handshake)
        http.transport.set_protocol(protocol)
        protocol.task = http.loop.create_task(protocol.run())
        http.server.tasks.add(protocol.task)

    def __init__(self, http: HttpProtocol, request: Request, handshake: rfc6455.Handshake) -> None:
        super().__init__(http.server)
        self.adopt(http.transport, http.cid)
        self.reading_paused, self.write_paused = http.reading_paused, http.write_paused
        self.conn = http.conn  # the HTTP core: it still has to write the handshake answer
        self.key = handshake.key
        self.ws = rfc6455.Connection(self.config.ws_max_size)
        self.phase = Phase.CONNECTING
        scope = http._scope(request)
        del scope["method"]
        scope.update(
            type="websocket",
            asgi={"version": "3.0", "spec_version": WEBSOCKET_SPEC},
            scheme="ws",
            subprotocols=handshake.subprotocols,
            extensions={"websocket.http.response": {}},
        )
        self.scope = scope
        self._connect_sent = False
        self._inbox: deque[Message] = deque()  # messages the app has not received yet
        self._held = 0
        self._waiter: asyncio.Future[None] | None = None
        self.close_code: int | None = None  # set once the connection is gone (disconnect)
        self.close_reason = ""
        self._denial: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._ping_due = math.inf
        self._pong_deadline = math.inf

    # -- bytes from the client -----------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.phase in (Phase.CONNECTING, Phase.DENIED):
            # Frames sent before our 101: kept in the core, handed over on accept.
            self.conn.receive_data(data)
            if self.conn.buffered > HIGH_WATER:
                self.pause_reading()
            return
        self.ws.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        return False  # a WebSocket ends with a Close frame; EOF alone is abnormal (1006)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._gone(rfc6455.CloseCode.ABNORMAL)

    def _process(self) -> None:
        ws = self.ws
        while not self.closed:
            try:
                event = ws.next_event()
            except rfc6455.ProtocolError as error:
                # §7.1.7 "Fail the WebSocket Connection": our Close with the code, then TCP.
                self._trace_frame("<", f"protocol error: {error}")
                self._close_frame(error.code, str(error)[:100])
                self._gone(error.code, str(error)[:100])
                self.transport.close()
                return
            if event is NEED_DATA:
                break
            if self.tracer.enabled:
                self._trace_frame("<", repr(event))
            if isinstance(event, rfc6455.TextMessage):
                self._deliver({"type": "websocket.receive", "text": event.data}, len(event.data))
            elif isinstance(event, rfc6455.BytesMessage):
                self._deliver({"type": "websocket.receive", "bytes": event.data}, len(event.data))
            elif isinstance(event, rfc6455.Ping):
                if ws.state is rfc6455.State.OPEN:
                    self._write_frame(ws.send_pong(event.payload))  # §5.5.2, same payload
            elif isinstance(event, rfc6455.Pong):
                self._pong_deadline = math.inf  # alive
            elif isinstance(event, rfc6455.CloseReceived):
                if ws.state is rfc6455.State.CLOSE_RECEIVED:
                    # §5.5.1: answer with a Close, echoing the code (none if it sent none).
                    code = None if event.code == rfc6455.CloseCode.NO_STATUS else event.code
                    self._write_frame(ws.send_close(code))
                self._gone(event.code, event.reason)
                self.transport.close()  # §7.1.1: the server closes the TCP connection first
                return
        if self._held > HIGH_WATER:
            self.pause_reading()

    def _deliver(self, message: Message, size: int) -> None:
        if self.phase is not Phase.OPEN:
            return  # after our Close the app hears nothing more but the disconnect
        self._inbox.append(message)
        self._held += size
        self._wake()

    def _gone(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.phase = Phase.CLOSED
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- frames out ----------------------------------------------------------------------------
    def _write_frame(self, frame: bytes) -> None:
        if not self.closed:
            self.transport.write(frame)

    def _close_frame(self, code: int, reason: str = "") -> None:
        if self.ws.state in (rfc6455.State.OPEN, rfc6455.State.CLOSE_RECEIVED):
            self._trace_frame(">", f"Close({code}, {reason!r})")
            self._write_frame(self.ws.send_close(code, reason))

    def _trace_frame(self, direction: str, text: str) -> None:
        if self.tracer.enabled:
            self.tracer.event(self.cid, direction, "ws", text)

    # -- the app's task ------------------------------------------------------------------------
    async def run(self) -> None:
        if self.tracer.enabled:
            receive, send = self.traced(self.scope, self.receive, self.send)
        else:
            receive, send = self.receive, self.send
        try:
            result = await self.server.app(self.scope, receive, send)
            if result is not None:
                raise ContractError(f"the app returned {type_name(result)}; expected None")
            if self.phase is Phase.CONNECTING:
                raise ContractError("the app returned without accepting or closing the WebSocket")
            if self.phase is Phase.OPEN:
                self._close_frame(rfc6455.CloseCode.NORMAL)  # the app ended: so does the socket
                self._closing()
            elif self.phase is Phase.DENIED:
                raise ContractError("the app returned before its HTTP response was complete")
        except asyncio.CancelledError:
            self.transport.close()
            raise
        except Exception as error:
            self._failed(error)
        finally:
            self.server.tasks.discard(self.task)

    def _failed(self, error: Exception) -> None:
        if isinstance(error, ClientDisconnected) and self.closed:
            return
        print(f"asgi: the WebSocket application failed on {self.scope['path']}:", file=sys.stderr)
        traceback.print_exception(error, file=sys.stderr)
        if self.conn.our_state is State.SEND_RESPONSE:
            # Before the handshake was answered: a plain 500, as for HTTP.
            failure = LocalProtocolError("the application failed; see the server log")
            self.write(self.conn.error_response(failure))
        else:
            self._close_frame(rfc6455.CloseCode.INTERNAL_ERROR)  # §7.4.1: 1011
        self.phase = Phase.CLOSED
        self.transport.close()

    def _closing(self) -> None:
        """Our Close went out: the app hears nothing more but the disconnect, so drop what
        waits for it and read on, or the client's answering Close would never be seen."""
        self.phase = Phase.CLOSING
        self.deadline = self.loop.time() + CLOSE_TIMEOUT
        self._inbox.clear()
        self._held = 0
        self.resume_reading()

    # -- receive -------------------------------------------------------------------------------
    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        while not self._inbox and self.close_code is None:
            self._waiter = self.loop.create_future()
            await self._waiter
        if self._inbox:
            message = self._inbox.popleft()
            self._held -= len(message.get("text") or message.get("bytes") or "")
            if self._held <= HIGH_WATER:
                self.resume_reading()
            return message
        return {
            "type": "websocket.disconnect",
            "code": self.close_code,
            "reason": self.close_reason,
        }

    # -- send ----------------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        try:
            await self._send(message)
        except LocalProtocolError as error:  # the core refused a header: the app's mistake
            raise ContractError(error.args[0]) from None

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        phase = self.phase
        if phase is Phase.OPEN and kind == "websocket.send":
            self._trace_frame(">", describe(message))
            self._write_frame(self._data_frame(message))
            await self.drain()
        elif phase is Phase.CONNECTING and kind == "websocket.accept":
            self._accept(message)
        elif phase is Phase.CONNECTING and kind == "websocket.close":
            self._refuse()
        elif phase is Phase.OPEN and kind == "websocket.close":
            code, reason = message.get("code", 1000), message.get("reason") or ""
            if type(code) is not int or not isinstance(reason, str):
                raise ContractError(
                    "websocket.close: expected an int code and a str reason,"
                    f" got {type_name(code)} and {type_name(reason)}"
                )
            try:
                self._close_frame(code, reason)
            except ValueError as error:  # 1005, 1006, a reason over 123 bytes
                raise ContractError(f"websocket.close: {error}") from None
            self._closing()
        elif (
            phase in (Phase.CONNECTING, Phase.DENIED)
            and kind
            and kind.startswith("websocket.http.response.")
        ):
            self._deny(message, kind)
        elif self.close_code is not None and str(kind).startswith("websocket."):
            # Gone (even before the app answered the handshake): spec 2.4, an OSError.
            raise ClientDisconnected("the WebSocket is closed")
        elif phase is Phase.CLOSING and kind in ("websocket.send", "websocket.close"):
            raise ClientDisconnected("the WebSocket is closing")
        else:
            raise ContractError(f"expected {_EXPECTED[phase]}, got {kind!r}")

    def _data_frame(self, message: Message) -> bytes:
        data, text = message.get("bytes"), message.get("text")
        if (data is None) == (text is None):
            raise ContractError("websocket.send: expected exactly one of 'bytes' and 'text'")
        if text is not None:
            if not isinstance(text, str):
                raise ContractError(f"websocket.send 'text': expected str, got {type_name(text)}")
            return self.ws.send_text(text)
        if not isinstance(data, bytes):
            raise ContractError(f"websocket.send 'bytes': expected bytes, got {type_name(data)}")
        return self.ws.send_bytes(data)

    def _accept(self, message: Message) -> None:
        """§4.2.2: the server's opening handshake, a 101 with the accept key."""
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise ContractError(
                "websocket.accept 'subprotocol': expected str or None,"
                f" got {type_name(subprotocol)}"
            )
        extra = checked_headers(message.get("headers", ()), "websocket.accept 'headers'")
        if any(name.lower() == b"sec-websocket-protocol" for name, _ in extra):
            raise ContractError("websocket.accept 'headers': the subprotocol goes in 'subprotocol'")
        headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", rfc6455.accept_key(self.key)),
        ]
        if subprotocol:
            headers.append((b"sec-websocket-protocol", subprotocol.encode()))
        self.write(self.conn.send(InformationalResponse(101, tuple(headers + extra))))
        early, eof = self.conn.trailing_data()  # frames that came before our 101
        self.phase = Phase.OPEN
        self._ping_due = self.loop.time() + self.config.ws_ping_interval
        if early:
            self.ws.receive_data(early)
            self._process()
        if eof:
            self.transport.close()
        self.resume_reading()

    def _refuse(self) -> None:
        """websocket.close before accept: HTTP 403, and no WebSocket ("Close - send event")."""
        body = b"403 Forbidden: the application refused this WebSocket.\n"
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
        self.write(self.conn.send_response(403, headers, body))
        self._gone(rfc6455.CloseCode.POLICY)
        self.transport.close()

    def _deny(self, message: Message, kind: str) -> None:
        """The websocket.http.response extension: the app's own HTTP answer, then close."""
        if kind == "websocket.http.response.start" and self.phase is Phase.CONNECTING:
            status = message.get("status")
            if type(status) is not int:
                raise ContractError(f"{kind} 'status': expected an int, got {type_name(status)}")
            headers = checked_headers(message.get("headers", ()), f"{kind} 'headers'")
            self._denial = (status, [*headers, (b"connection", b"close")])
            self.phase = Phase.DENIED
            return
        if kind != "websocket.http.response.body" or self._denial is None:
            raise ContractError(f"expected {_EXPECTED[self.phase]}, got {kind!r}")
        body, more = message.get("body", b""), message.get("more_body", False)
        if not isinstance(body, bytes):
            raise ContractError(f"{kind} 'body': expected bytes, got {type_name(body)}")
        conn, out = self.conn, b""
        if conn.our_state is State.SEND_RESPONSE:  # the first body message: the head too
            out = conn.send(Response(self._denial[0], tuple(self._denial[1])))
        if body:
            out += conn.send(Data(body))
        if not more:
            out += conn.send(EndOfMessage())
        self.write(out)
        if not more:
            self._gone(rfc6455.CloseCode.POLICY)
            self.transport.close()

    # -- called by the server ------------------------------------------------------------------
    def expire(self, now: float) -> None:
        if self.phase is Phase.CLOSING and now >= self.deadline:
            self.transport.close()  # the client never answered our Close
        elif self.phase is Phase.OPEN:
            if now >= self._pong_deadline:
                # A dead peer (or one that ignores pings): fail it, without waiting on it.
                self._close_frame(rfc6455.CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                self._gone(rfc6455.CloseCode.ABNORMAL, "keepalive ping timeout")
                self.transport.abort()
            elif now >= self._ping_due:
                self._ping_due = now + self.config.ws_ping_interval
                if self._pong_deadline == math.inf:
                    self._pong_deadline = now + self.config.ws_ping_timeout
                    self._trace_frame(">", "Ping (keepalive)")
                    self._write_frame(self.ws.send_ping(os.urandom(4)))

    def shutdown(self) -> None:
        if self.phase is Phase.OPEN:
            self._close_frame(rfc6455.CloseCode.GOING_AWAY, "server stopping")  # §7.4.1: 1001
            self._closing()
