"""One HTTP request relayed as one FastCGI request: the heart of the gateway.

An :class:`Exchange` is a small state machine that the gateway's event loop (gateway.py)
drives: it never waits, it is told. Records go one way and the response the other, with
the shape of the CGI era's ``run_script`` (servers/cgi.py), records where CGI had pipes::

     client socket ---- body pieces ---->  STDIN records  ----> application socket
     client socket <--- HTTP response <--  STDOUT records <---- application socket

The loop calls :meth:`Exchange.pump` when the client sent more of the body,
:meth:`on_upstream_writable` when the application's socket takes bytes again, and
:meth:`on_upstream_readable` when it has records for us. Both directions move
independently, so neither side can block the other: an application may answer before it
has read its whole body (§6.2 allows it), and a big response need not wait for a big
upload to finish. Each direction has backpressure: the next body piece is taken from the
client only while fewer than ``OUTGOING_LIMIT`` bytes wait for the application, and the
application is not read while more than ``CLIENT_OUTPUT_LIMIT`` bytes wait for the client.

What comes back is checked at every step (a hostile application server is an input too,
specs.md §2.8): STDOUT must start with a CGI header section of bounded size, parsed and
validated by servers/gateway.py (Status, Location, no response splitting); the records
must carry our request id (house rule of protocol.py); END_REQUEST's protocol status
decides the rest:

    REQUEST_COMPLETE -> the response is done    OVERLOADED   -> 503, Retry-After
    CANT_MPX_CONN    -> once more, a new conn.  UNKNOWN_ROLE -> 500 (our configuration)
    EOF before END   -> 502, or the response cut short if it had started
    no byte for ``upstream_timeout`` seconds -> 504 (nginx ``fastcgi_read_timeout``)

Failures are raised, never handled here: the client connection runs every step through
``ClientConnection.guard``, the one place where an exception becomes an HTTP answer.

When the client leaves mid-request, :meth:`abandon` tells the application with
FCGI_ABORT_REQUEST (§5.4), and the exchange lives on without a client for up to
``ABANDON_TIMEOUT`` seconds, waiting for END_REQUEST so that the connection can be kept.
Once the body is in, the client's socket stays watched: bytes there are a pipelined request
(kept in the HTTP core for later), EOF means the client is gone. A client that only
half-closes is taken as gone too, as nginx does (its 499, unless
``fastcgi_ignore_client_abort``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NoReturn

from ..gateway import BadGateway, CgiResponse, find_head_end, parse_cgi_response
from ..http import NEED_DATA, Data, EndOfMessage, LocalProtocolError, Response
from ..trace import escape
from .protocol import ConnectionEnded, ExchangeState
from .records import EndRequest, FastCGIError, ProtocolStatus, Stderr, Stdout
from .upstream import Upstream, UpstreamConnection, UpstreamError

if TYPE_CHECKING:
    from .gateway import ClientConnection

__all__ = [
    "ABANDON_TIMEOUT",
    "ClientGone",
    "ClientTimeout",
    "Exchange",
    "HttpError",
    "Retry",
]

# Body records queued for the application, beyond which the client is not read (its
# backpressure): one record's worth.
OUTGOING_LIMIT = 65536
# Response bytes the client has not taken yet, beyond which the application is not read.
CLIENT_OUTPUT_LIMIT = 256 * 1024
# After ABORT_REQUEST, how long the application has to answer with END_REQUEST before
# its connection is closed instead of kept.
ABANDON_TIMEOUT = 1.0


class HttpError(Exception):
    """An answer decided before any byte of the response went out."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _not_cgi(error: Exception) -> HttpError:
    """What the parser or the core refused in the application's response: 502, with why."""
    return HttpError(502, f"the application's response is not CGI: {error}")


class Retry(Exception):
    """The request never reached an application; it may go again on a new connection."""


class ClientGone(Exception):
    """The HTTP client closed its connection while its request was being served."""


class ClientTimeout(Exception):
    """The client did not send what it owed in time ("idle" between requests, or
    "request" in the middle of one). Not TimeoutError: that is an OSError, and socket
    errors of the application's side must not be mistaken for the client's."""


class Exchange:
    """Sends one request to an application server and relays the answer to the client."""

    def __init__(
        self,
        client: ClientConnection,
        upstream: UpstreamConnection,
        body: Iterator[bytes | None],
        target: bytes | None = None,
        attempt: int = 1,
        refused: frozenset[Upstream] = frozenset(),
    ) -> None:
        self.client = client
        self.target = target  # a local redirect's path, or None for the client's request
        self.attempt = attempt  # 2: the retry on a new connection (there is no third)
        self.refused = refused  # application servers whose connect failed for this request
        self.config = client.config
        self.upstream = upstream
        self.proto = upstream.proto
        self.body = body
        self.head = bytearray()
        self.started = False  # the response's head is parsed; its bytes are (being) sent
        # A response with its Content-Length, held until the end of the chunk it came in,
        # in case END_REQUEST is in that chunk too (see _relay): its head and its body.
        self.held: tuple[CgiResponse, bytes] | None = None
        self.redirect: bytes | None = None
        self.body_sent = False  # client body bytes went upstream: no replay possible
        self.outgoing = bytearray()
        self.need_client = False  # the HTTP core needs more body bytes from the client
        self.paused = False  # the client is slow: the application is not read meanwhile
        self.abandoned = False  # the client left: waiting for END_REQUEST, for nobody
        self.ended = False  # END_REQUEST came (or the exchange was given up)
        self.last_progress = time.monotonic()
        upstream.exchange = self

    # -- driven by the client connection -------------------------------------------------
    def start(self, params: dict[str, bytes], encoded: bytes = b"") -> None:
        """``encoded``: more params, already encoded as pairs (the connection's constant
        ones), sent before ``params``."""
        self._queue(self.proto.begin(params, encoded=encoded))
        self.pump()

    def pump(self) -> None:
        """Queue body records while little waits to go, and send what the socket takes.

        A request without a body leaves in one write (BEGIN, PARAMS, the empty STDIN),
        which lets the application start it at once with its (empty) body whole."""
        self.need_client = False
        self.last_progress = time.monotonic()
        while True:
            while self.proto.stdin_open and len(self.outgoing) < OUTGOING_LIMIT:
                piece = next(self.body, b"")
                if piece is None:
                    self.need_client = True  # the HTTP core needs more of the client's bytes
                    break
                self.body_sent = self.body_sent or bool(piece)
                self._queue(self.proto.stdin(piece))  # b"" ends STDIN (§6.1)
            if not self.outgoing or self.upstream.connecting:
                break
            self._send_upstream()
            if self.outgoing or self.need_client or not self.proto.stdin_open:
                break  # the loop calls again: socket writable, or client readable
            # The socket took it all and the core has more body at hand: the next records.
        self._watch()

    def check(self, now: float) -> None:
        """The loop's periodic look at the clock: raise if a deadline passed."""
        if self.upstream.connecting:
            if now > self.last_progress + self.upstream.upstream.timeout:
                raise UpstreamError(504, f"connecting to {self.upstream.upstream.name} timed out")
            return
        if self.paused:
            return  # waiting for the client to read, which the client's deadline bounds
        timeout = self.config.request_timeout if self.need_client else self.config.upstream_timeout
        if now > self.last_progress + timeout:
            if self.need_client:
                raise ClientTimeout("request")
            raise HttpError(504, f"no answer from the application for {timeout:g} s")

    def resume(self) -> None:
        """The client took its bytes: read the application again."""
        self.paused = False
        self.last_progress = time.monotonic()
        self._watch()

    # -- driven by the application's socket ----------------------------------------------
    def on_upstream_writable(self) -> None:
        if self.abandoned:
            self._orphan_step(self._send_upstream)
            return
        self.client.guard(self._writable)

    def on_upstream_readable(self) -> None:
        if self.abandoned:
            self._orphan_step(self._receive)
            return
        self.client.guard(self._readable)

    def _writable(self) -> None:
        if self.upstream.connecting:
            code = self.upstream.connect_error()
            if code:
                member = self.upstream.upstream
                message = f"cannot connect to {member.name}: {os.strerror(code)}"
                raise UpstreamError(502, message, refused=member)
        if self.proto.stdin_open and not self.need_client:
            self.pump()  # room, perhaps, for more of the body
        else:
            self._send_upstream()
            self._watch()

    def _readable(self) -> None:
        self._receive()
        if self.ended:
            self.client.exchange_done(self)
        elif not self.paused and len(self.client.outbuf) > CLIENT_OUTPUT_LIMIT:
            self.paused = True
            self._watch()

    def _watch(self) -> None:
        """Tell the loop what the application's socket waits for. The client's socket is
        not touched here: every step runs under ClientConnection.guard, which updates the
        client's interest once, at the step's end."""
        if self.upstream.connecting:
            self.upstream.watch(read=False, write=True)
        else:
            self.upstream.watch(read=not self.paused, write=bool(self.outgoing))

    # -- the records ---------------------------------------------------------------------
    def _send_upstream(self) -> None:
        """Send what the socket takes now (it is non-blocking): the send is tried at once
        and only what did not fit waits for the loop to say the socket is writable."""
        try:
            sent = self.upstream.sock.send(self.outgoing)
        except BlockingIOError:
            return
        except OSError as error:
            self._upstream_failed(error)
        if sent:
            del self.outgoing[:sent]
            self.last_progress = time.monotonic()

    def _upstream_failed(self, error: OSError) -> NoReturn:
        if self.upstream.reused and not self.started and not self.head:
            raise Retry(f"a kept connection failed ({error.strerror})")
        raise HttpError(502, f"the connection to the application failed: {error.strerror}")

    def _queue(self, data: bytes) -> None:
        self.client.gateway.records.wire(self.client.cid, "<", data)
        self.outgoing += data

    def _receive(self) -> None:
        """Read from the application, and handle every record that came whole."""
        try:
            data = self.upstream.sock.recv(65536)
        except BlockingIOError:
            return  # the loop said readable, and nothing was: try again later
        except ConnectionResetError:
            data = b""  # the same as a close, for what it means to us
        except OSError as error:
            self._upstream_failed(error)
        self.last_progress = time.monotonic()
        self.client.gateway.records.wire(self.client.cid, ">", data)
        self.proto.receive_data(data)
        while (event := self.proto.next_event()) is not NEED_DATA:
            if isinstance(event, Stdout):
                self._relay(event.data)
            elif isinstance(event, Stderr) and event.data:
                # §5.3: STDERR is for the web server's log; the client never sees it.
                text = escape(event.data.rstrip(b"\n"))
                print(f"fastcgi c{self.client.cid} app stderr: {text}", file=sys.stderr)
            elif isinstance(event, EndRequest):
                self._ended(event)
                self.ended = True
                return
            elif isinstance(event, ConnectionEnded):
                if self.upstream.reused and not self.started and not self.head:
                    raise Retry("a kept connection was closed by the application server")
                raise HttpError(502, "the application server closed before END_REQUEST")
        if self.held is not None:
            self._send_held()  # END_REQUEST is still to come: the response goes as it is

    def _ended(self, end: EndRequest) -> None:
        status = end.protocol_status
        if status == ProtocolStatus.CANT_MPX_CONN:
            raise Retry("the application takes one request per connection (CANT_MPX_CONN)")
        if status == ProtocolStatus.OVERLOADED:
            raise HttpError(503, "the application server is overloaded; try again later")
        if status == ProtocolStatus.UNKNOWN_ROLE:
            raise HttpError(500, "the application server does not play the responder role")
        if status != ProtocolStatus.REQUEST_COMPLETE:
            raise HttpError(502, f"unknown FastCGI protocol status {status}")
        if self.redirect is not None:
            return
        if not self.started:
            why = "ended inside its header section" if self.head else "produced no output"
            raise HttpError(502, f"the application {why}")
        if self.held is not None:
            # The whole response came in one read: head, body and end in one call of the
            # core (send_response), as the ASGI server does for a whole response.
            (reply, body), self.held = self.held, None
            try:
                whole = self.client.conn.send_response(
                    reply.status, reply.headers, body, reply.reason
                )
            except LocalProtocolError as error:
                # A head the core refuses: 502. A body that is not its Content-Length has
                # put the core in ERROR: the client's connection is closed, as it is when
                # the mismatch shows after the head left (see ClientConnection._failed).
                raise _not_cgi(error) from None
            self.client.send(whole)
            return
        self.client.send(self.client.conn.send(EndOfMessage()))

    def _relay(self, data: bytes) -> None:
        """STDOUT: a CGI response (§6.1, RFC 3875 §6): the head parsed, the body streamed.

        The bytes are queued on the client connection, which sends them when this step of
        the loop is over: a small response, head and body and its end, leaves in one send."""
        conn = self.client.conn
        if self.redirect is not None or not data:
            return  # §6.2.2: a local redirect has no body; an empty record ends STDOUT
        if self.started:
            if self.held is not None:
                self._send_held()
            self.client.send(conn.send(Data(data)))
            return
        # The head usually comes whole in the first record: then it is read in place,
        # and only a head cut across records is gathered in self.head first.
        if self.head:
            self.head += data
            whole = bytes(self.head)
        else:
            whole = data
        if (end := find_head_end(whole)) is None:
            if whole is data:
                self.head += data
            if len(self.head) > self.config.max_cgi_head:
                raise HttpError(502, "the application's header section is too large")
            return
        try:
            reply = parse_cgi_response(whole[: end[0]])
        except BadGateway as error:
            raise _not_cgi(error) from None
        if reply.local_redirect is not None:
            self.redirect = reply.local_redirect
            return
        self.started = True
        rest = whole[end[1] :]
        if reply.has_length:
            # Its framing is decided (Content-Length) whether or not the rest comes in
            # this read, so holding it to the read's end changes no byte on the wire; if
            # END_REQUEST is in the same read, as for most small responses, the core
            # builds the response in one call instead of three (Response, Data, End).
            self.held = (reply, rest)
            return
        self._start_response(reply, rest)

    def _send_held(self) -> None:
        assert self.held is not None
        (reply, rest), self.held = self.held, None
        self._start_response(reply, rest)

    def _start_response(self, reply: CgiResponse, rest: bytes) -> None:
        """The head, and the body bytes that came with it, as the core's events."""
        conn = self.client.conn
        try:
            head = conn.send(Response(reply.status, reply.headers, reply.reason))
        except LocalProtocolError as error:  # e.g. a header the core refuses to send
            raise _not_cgi(error) from None
        self.client.send(head + conn.send(Data(rest)) if rest else head)

    # -- a client that left --------------------------------------------------------------
    def abandon(self) -> None:
        """§5.4: the client left; ask the application to stop and wait (without a client,
        ``ABANDON_TIMEOUT`` at most) for its END_REQUEST, which makes the connection
        reusable. If it does not come, the connection is closed instead of kept."""
        self.abandoned = True
        self.redirect = b""  # whatever still comes is not for anyone
        self.need_client = self.paused = False
        if self.ended or self.proto.state is not ExchangeState.ACTIVE:
            self._orphaned()
            return
        self.client.gateway.orphans.add(self)
        abort = self.proto.abort()
        self.client.gateway.records.wire(self.client.cid, "<", abort)
        self.outgoing += abort  # after the record under way, if one is half sent
        self.last_progress = time.monotonic()
        self._orphan_step(self._send_upstream)

    def _orphan_step(self, step: Callable[[], None]) -> None:
        try:
            step()
            if self.upstream.connecting:
                raise OSError("still connecting")  # nothing was asked yet: just close
        except (OSError, FastCGIError, HttpError, Retry, UpstreamError):
            self.ended = True  # not reusable: closed below
        if self.ended:
            self._orphaned()
        else:
            self._watch()

    def orphan_expired(self, now: float) -> bool:
        return now > self.last_progress + ABANDON_TIMEOUT

    def _orphaned(self) -> None:
        """The end of an abandoned exchange: its connection kept if it ended cleanly."""
        self.ended = True
        self.client.gateway.orphans.discard(self)
        if self.outgoing:
            self.upstream.close()  # a record half sent: the stream is broken
        else:
            self.upstream.upstream.release(self.upstream)  # release() checks can_reuse
