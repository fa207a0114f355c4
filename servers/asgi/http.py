"""HTTP/1.1 for ASGI: the shared core on the event loop, and one task per request.

Two classes, because a connection outlives its requests (STYLE rule 10, uvicorn's
``RequestResponseCycle``)::

    HttpProtocol (one per connection)           RequestCycle (one per request)
    --------------------------------           ------------------------------
    the transport, the ServerConnection,        the scope, the body not yet received,
    flow control, the keep-alive deadline       the response state, the app's task
         |
         | data_received(bytes) -> conn.receive_data -> conn.next_event()
         |   Request       -> scope, RequestCycle, loop.create_task(cycle.run())
         |   Data          -> cycle.body (pause reading past HIGH_WATER)
         |   EndOfMessage  -> cycle: more_body=False
         |   PAUSED        -> a pipelined request waits for this response
         v
    app(scope, cycle.receive, cycle.send)
         send(http.response.start)   held: head and first body leave in one write
         send(http.response.body)    the whole response: conn.send_response() -> write
                                     or a piece: conn.send(Response, Data, ...) -> write
         response complete           -> conn.start_next_cycle(), next pipelined request

Parsing happens in ``data_received``, on the loop, with no task and no await: a request
costs one task, the app's, which is the least ASGI allows. The task is where blocking is
forbidden and where ``await send()`` waits for a slow client (drain).

The app's messages go through a small state machine (:class:`ResponseState`, with its table
of the messages allowed in each state); anything out of turn, or of the wrong type,
raises :class:`ContractError` in the app with what was expected and what came. What is
written on the wire is still the core's to check: a header with CR LF in it is refused
there (response splitting, uvicorn CVE-2020-7695).

The two optional response extensions the scope offers, trailers and pathsend, live in
extensions.py: a plain request never reaches them. pathsend joins here at one call in
send(); trailers at two, the start that announces them and the message that carries them.
"""

from __future__ import annotations

import asyncio
import enum
import sys
import traceback
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from .. import websocket as rfc6455
from ..http import LocalProtocolError, RemoteProtocolError, Response, ServerConnection
from ..http.connection import MUST_CLOSE, SEND_BODY, SEND_RESPONSE  # the core's states
from ..http.events import NEED_DATA, PAUSED, Data, EndOfMessage, InformationalResponse, Request
from .connection import HIGH_WATER, Connection
from .extensions import announce_trailers, pathsend, send_trailers
from .types import HTTP_SPEC, ClientDisconnected, ContractError, checked_headers, invalid, type_name
from .websocket import WebSocketProtocol

if TYPE_CHECKING:
    from .server import Server
    from .types import Message

__all__ = ["HttpProtocol", "RequestCycle", "ResponseState"]

# The common methods as str without a decode() per request.
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}


class HttpProtocol(Connection):
    """One client connection speaking HTTP/1.1: the state that lives as long as the socket."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        # ASGI "Response Start": the server ignores an app's Transfer-Encoding.
        self.conn = ServerConnection(
            self.config.limits, server.software, drop_transfer_encoding=True
        )
        self.cycle: RequestCycle | None = None  # the request being answered
        self.head_started = False  # bytes of a next request head have arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.adopt(cast(asyncio.Transport, transport))  # uvloop's is not a subclass
        # Cached for every scope of this connection: the same two tuples each time.
        self.client: tuple[str, int] = transport.get_extra_info("peername")[:2]
        self.local: tuple[str, int] = transport.get_extra_info("sockname")[:2]
        self.deadline = self.loop.time() + self.config.idle_timeout
        self.tracer.note(self.cid, f"open {self.client[0]}:{self.client[1]}")

    def data_received(self, data: bytes) -> None:
        if self.tracer.enabled:
            self.tracer.wire(self.cid, "<", data)
        self.conn.receive_data(data)
        self._process()

    # eof_received() is asyncio's own, which returns None: the transport closes. The client
    # closed its side. It might only have half-closed and still read, but HTTP clients do
    # not do that, and an app listening for http.disconnect (a long poll, /sleep) must hear
    # that the client left: so EOF ends the connection, as in uvicorn and hypercorn. (The
    # threaded era answers half-closed clients; it cannot tell a thread that its client
    # left anyway.)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.cycle is not None:
            self.cycle.disconnect()

    # -- from bytes to events ------------------------------------------------------------------
    def _process(self) -> None:
        """Turn everything buffered into events, until the core needs data or pauses."""
        conn = self.conn
        while not self.closed:
            try:
                event = conn.next_event()
            except RemoteProtocolError as error:
                self._reject(error)
                return
            kind = type(event)
            if kind is Request:
                assert isinstance(event, Request)
                if not self._request(event):
                    return  # upgraded to WebSocket or refused: these bytes are not ours now
            elif kind is Data:
                assert isinstance(event, Data) and self.cycle is not None
                self.cycle.body(event.data)
                self.deadline = self.loop.time() + self.config.request_timeout
            elif kind is EndOfMessage:
                assert self.cycle is not None
                if self.cycle.state is DONE:  # answered before the body ended
                    self._next_cycle()
                    continue
                self.cycle.body_done()
                break  # the core would say PAUSED until the response is out: save the call
            elif event is NEED_DATA:
                if self.cycle is None and conn.buffered and not self.head_started:
                    # Slowloris: a head gets request_timeout *in all* from its first byte,
                    # however slowly the rest trickles in.
                    self.head_started = True
                    self.deadline = self.loop.time() + self.config.request_timeout
                break
            elif event is PAUSED:
                break  # house rule 1 of the core: one request at a time, in order
            else:  # ConnectionClosed: the client left between requests
                self.transport.close()
                return
        self._flow()

    def _flow(self) -> None:
        """Pause reading while more than HIGH_WATER waits for the app or the next cycle."""
        held = self.conn.buffered + (self.cycle.held if self.cycle is not None else 0)
        if held > HIGH_WATER:
            self.pause_reading()
        elif self.reading_paused:
            self.resume_reading()

    def _request(self, request: Request) -> bool:
        """Start a request's cycle; False if the connection is no longer ours to parse."""
        self.head_started = False
        server = self.server
        if server.stopping or len(server.connections) > self.config.max_connections:
            self._refuse()
            return False
        if server.websocket and rfc6455.is_upgrade(request):
            WebSocketProtocol.upgrade(self, request)
            return False
        self.cycle = cycle = RequestCycle(self, request, self._scope(request))
        if cycle.more_body:  # the request has a body (request.has_body, already asked)
            self.deadline = self.loop.time() + self.config.request_timeout
        cycle.task = self.loop.create_task(cycle.run())
        server.tasks.add(cycle.task)
        return True

    def _scope(self, request: Request) -> dict[str, Any]:
        """The HTTP connection scope ("HTTP Connection Scope" of the ASGI spec)."""
        target = request.target
        if target[:1] == b"/":  # origin-form, the usual case: one split, not two
            raw_path, _, query = target.partition(b"?")
        else:  # absolute-form (RFC 9112 §3.2.2): the core knows how to cut it
            raw_path, query = request.path, request.query
        # path is percent-decoded and UTF-8-decoded; the core let through visible ASCII only.
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        root_path = self.config.root_path
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": HTTP_SPEC},
            "http_version": _VERSIONS[request.http_version],
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": _METHODS.get(request.method) or request.method.decode("ascii"),
            # root_path is where the app is mounted, and path includes it (WSGI
            # compatibility section: PATH_INFO is path minus root_path).
            "root_path": root_path,
            "path": root_path + path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": list(request.headers),  # lower-case bytes pairs, in order
            "state": self.server.state.copy(),  # "Lifespan State": a shallow copy each
            "extensions": {"http.response.trailers": {}, "http.response.pathsend": {}},
        }

    # -- after a response ----------------------------------------------------------------------
    def response_complete(self) -> None:
        """The cycle's response is out: reset for the next request, or close (rule 10)."""
        conn = self.conn
        if self.server.stopping or conn.our_state is MUST_CLOSE:
            self.transport.close()  # after the buffered bytes are written
            return
        if conn.can_reuse:  # the request is complete too
            self._next_cycle()
            if not self.closed and conn.buffered:
                self._process()  # a pipelined request is already here
                return
        # Else the client is still sending a body nobody reads: _process drops it, and its
        # EndOfMessage starts the next cycle. Reading must go on, for that and for the next.
        self._flow()

    def _next_cycle(self) -> None:
        self.conn.start_next_cycle()
        self.cycle = None
        self.deadline = self.loop.time() + self.config.idle_timeout

    def _reject(self, error: RemoteProtocolError) -> None:
        """The client broke HTTP: its status and one line, then close (STYLE rule 8)."""
        self.write(self.conn.error_response(error))  # b"" if a response had started
        self.transport.close()
        if self.cycle is not None:
            self.cycle.disconnect()

    def _refuse(self) -> None:
        """Over the connection cap, or stopping: 503 rather than an unbounded queue."""
        body = b"503 Service Unavailable: the server is at its connection limit or stopping.\n"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ]
        self.write(self.conn.send_response(503, headers, body))
        self.transport.close()

    # -- called by the server ------------------------------------------------------------------
    def expire(self, now: float) -> None:
        if self.cycle is not None and self.conn.their_state is not SEND_BODY:
            return  # the app's turn, and apps may take their time (/sleep?ms=60000)
        if self.reading_paused or now < self.deadline:
            return  # paused: we stopped reading, the client is not the slow one
        if self.conn.buffered or self.cycle is not None:
            # RFC 9110 §15.5.9: a head or a body that never finished.
            self._reject(RemoteProtocolError("the request took too long to arrive", 408))
        else:
            self.tracer.note(self.cid, "idle timeout")
            self.transport.close()

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.state is DONE:
            self.transport.close()
        # else: the response under way says "Connection: close" and ends the connection.


# ======================================================================================
# One request: the per-request state and the app's receive() and send()
# ======================================================================================
class ResponseState(enum.Enum):
    """Where the app's response is; ``_EXPECTED`` below says which message may come next."""

    START = "START"  # expect http.response.start
    BODY = "BODY"  # expect http.response.body (or one pathsend)
    TRAILERS = "TRAILERS"  # the body ended; expect http.response.trailers
    DONE = "DONE"  # nothing more may be sent


# The members as module-level names for the code below, as the core does with its states
# (servers/http/connection.py says why: on Python 3.11 ``ResponseState.DONE`` costs an
# Enum __getattr__ lookup each time). DONE here is the *response's* DONE; the core's states
# used in this module are SEND_RESPONSE, SEND_BODY and MUST_CLOSE.
START = ResponseState.START
BODY = ResponseState.BODY
TRAILERS = ResponseState.TRAILERS
DONE = ResponseState.DONE


# The message each state expects. The one that ends its part ("more" false) moves on:
# START -> BODY -> DONE, or BODY -> TRAILERS -> DONE when start said trailers=True (the
# trailers extension); with more_body / more_trailers true the state stays.
_EXPECTED = {
    START: "'http.response.start'",
    BODY: "'http.response.body' or 'http.response.pathsend'",
    TRAILERS: "'http.response.trailers'",
}


class RequestCycle:
    """One request and its response: everything a keep-alive reset forgets."""

    task: asyncio.Task[None]
    trailers: list[tuple[bytes, bytes]] | None  # set by announce_trailers(): see extensions.py

    def __init__(self, protocol: HttpProtocol, request: Request, scope: dict[str, Any]) -> None:
        self.protocol = protocol
        self.conn = protocol.conn
        self.request = request
        self.scope = scope
        self.state = START
        # The request body, as the core de-chunked it, until the app receives it.
        self._chunks: list[bytes] = []
        self.held = 0
        self.more_body = request.has_body
        self._delivered = False  # the last http.request (more_body=False) went out
        self.disconnected = False
        self._waiter: asyncio.Future[None] | None = None
        self.announced = False  # start said trailers=True: see extensions.py

    # -- events from the protocol --------------------------------------------------------------
    def body(self, data: bytes) -> None:
        if self.state is DONE:
            return  # answered already: the rest of the body is read and dropped
        self._chunks.append(data)
        self.held += len(data)
        self._wake()

    def body_done(self) -> None:
        self.more_body = False
        self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self.protocol.loop.create_future()
        await self._waiter

    # -- the task ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Call the app once; make sure the client gets an answer or a close, whatever it does."""
        protocol = self.protocol
        server = protocol.server
        if protocol.tracer.enabled:
            receive, send = protocol.traced(self.scope, self.receive, self.send)
        else:
            receive, send = self.receive, self.send
        try:
            result = await server.app(self.scope, receive, send)
            if result is not None:
                raise ContractError(f"the app returned {type_name(result)}; expected None")
            if self.state is START:
                raise ContractError("the app returned without sending 'http.response.start'")
            if self.state is not DONE:
                raise ContractError("the app returned before its response was complete")
        except asyncio.CancelledError:
            self._abort("cancelled (server stopping)")
            raise
        except Exception as error:
            self._failed(error)
        finally:
            server.tasks.discard(self.task)

    def _failed(self, error: Exception) -> None:
        """STYLE rule 8: log the details; 500 if nothing was sent yet, else close."""
        if isinstance(error, ClientDisconnected) and self.disconnected:
            return  # "Disconnected Client": expected, not an error
        request = self.request
        where = f"{request.method.decode()} {request.target.decode('ascii', 'replace')}"
        print(f"asgi: the application failed on {where}:", file=sys.stderr)
        traceback.print_exception(error, file=sys.stderr)
        if self.disconnected:
            return
        if self.conn.our_state is SEND_RESPONSE:
            failure = LocalProtocolError("the application failed; see the server log")
            self.protocol.write(self.conn.error_response(failure))
        self._abort("after an application error")

    def _abort(self, why: str) -> None:
        if self.state is not DONE and not self.protocol.closed:
            self.state = DONE
            self.protocol.tracer.note(self.protocol.cid, f"closing: {why}")
            self.protocol.transport.close()

    # -- receive -------------------------------------------------------------------------------
    async def receive(self) -> Message:
        if self._delivered or self.state is DONE:
            # "Disconnect": after the body, receive() waits until the client leaves or the
            # response is complete, which is how an app listens for a disconnect.
            while not self.disconnected and self.state is not DONE:
                await self._wait()
            return {"type": "http.disconnect"}
        if self.conn.waiting_for_100_continue and self.state is START:
            # RFC 9110 §10.1.1: the client waits for 100 before sending its body; the first
            # receive() is when the app shows it wants the body (uvicorn does the same).
            self.protocol.write(self.conn.send(InformationalResponse(100)))
        while not self._chunks and self.more_body and not self.disconnected:
            self.protocol._flow()  # resumes reading if it was paused for us
            await self._wait()
        if self.disconnected:
            return {"type": "http.disconnect"}
        chunks, self._chunks = self._chunks, []
        self.held = 0
        self._delivered = not self.more_body
        if not self.protocol.closed:
            self.protocol._flow()
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    # -- send ----------------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client has disconnected")
        kind = message.get("type")
        state = self.state
        try:
            if state is BODY and kind == "http.response.body":
                self._body(message)
                # "Response Body": the data is in the send buffer before send() returns;
                # past the transport's high water mark, wait for it to drain (flow control).
                if self.protocol.write_paused:
                    await self.protocol.drain()
            elif state is START and kind == "http.response.start":
                self._start(message)
            elif state is BODY and kind == "http.response.pathsend":
                await pathsend(self, message)
            elif state is TRAILERS and kind == "http.response.trailers":
                send_trailers(self, message)
            elif state is DONE:
                raise ContractError(f"got {kind!r} after the response was complete")
            else:
                raise ContractError(f"expected {_EXPECTED[state]}, got {kind!r}")
        except LocalProtocolError as error:
            # The core refused what the app asked it to write (a CR LF in a header, more
            # body than Content-Length): the app's mistake, so it meets it as one error type.
            raise ContractError(error.args[0]) from None

    def _start(self, message: Message) -> None:
        status = message.get("status")
        if type(status) is not int:
            raise invalid("http.response.start 'status'", "an int", status)
        # An app's Transfer-Encoding is dropped by the core (drop_transfer_encoding above).
        headers = checked_headers(message.get("headers", ()), "http.response.start 'headers'")
        # A HEAD answer without the app's Content-Length must not get one of 0 (send_response
        # would count the empty body): such a head goes the long way.
        self._whole_allowed = self.request.method != b"HEAD" or any(
            name.lower() == b"content-length" for name, _ in headers
        )
        if self.protocol.server.stopping:
            headers.append((b"connection", b"close"))  # the core then ends the connection
        if message.get("trailers", False) is True:
            announce_trailers(self, status, headers)  # the trailers extension
        # The response head, held until the first body message (see the module docstring).
        self._status, self._headers = status, headers
        self.state = BODY

    def head(self) -> bytes:
        """The held http.response.start, through the core (which validates every header)."""
        return self.conn.send(Response(self._status, tuple(self._headers)))

    def _body(self, message: Message) -> None:
        """Write one http.response.body. Not a coroutine: only send() may wait (to drain),
        and a second coroutine per message would cost more than the writing itself."""
        body = message.get("body", b"")
        if type(body) is not bytes:
            if not isinstance(body, bytearray | memoryview):
                raise invalid("http.response.body 'body'", "bytes", body)
            body = bytes(body)
        more = message.get("more_body", False)
        if type(more) is not bool:
            raise invalid("http.response.body 'more_body'", "a bool", more)
        conn = self.conn
        if conn.our_state is not SEND_RESPONSE:  # a later piece of the body
            out = conn.send(Data(body)) if body else b""
        elif more or self.announced or not self._whole_allowed:
            out = self.head() + (conn.send(Data(body)) if body else b"")
        else:
            # The whole response in one message, the common case: head, body and end in
            # one call of the core, and Content-Length even if the app gave none.
            out = conn.send_response(self._status, self._headers, body)
            self.state = DONE
        if not more and self.state is BODY:
            if self.announced:
                self.state = TRAILERS
            else:
                out += conn.send(EndOfMessage())
                self.state = DONE
        if out:
            self.protocol.write(out)
        if self.state is DONE:
            self.finish()

    def finish(self) -> None:
        """The response is complete: forget any body the app did not read, wake a receive()
        waiting for http.disconnect, and let the connection move on."""
        self.state = DONE
        self._chunks, self.held = [], 0
        self._wake()
        self.protocol.response_complete()
