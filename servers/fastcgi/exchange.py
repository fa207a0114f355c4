"""One HTTP request relayed as one FastCGI request: the heart of the gateway.

:meth:`Exchange.run` is one poll loop over two sockets, with the shape of the CGI era's
``run_script`` (servers/cgi.py), records where CGI had pipes::

     client socket ---- body pieces ---->  STDIN records  ----> application socket
     client socket <--- HTTP response <--  STDOUT records <---- application socket

Both directions move in the same loop, so neither side can block the other: an
application may answer before it has read its whole body (§6.2 allows it), and a big
response must not wait for a big upload to finish. Each direction has backpressure: the
next body piece is taken from the client only when the previous records have left, and
the next records are read from the application only when the client took the previous
bytes (a blocking send with a timeout).

What comes back is checked at every step (a hostile application server is an input too,
specs.md §2.8): STDOUT must start with a CGI header section of bounded size, parsed and
validated by servers/gateway.py (Status, Location, no response splitting); the records
must carry our request id (house rule of protocol.py); END_REQUEST's protocol status
decides the rest:

    REQUEST_COMPLETE -> the response is done    OVERLOADED   -> 503, Retry-After
    CANT_MPX_CONN    -> once more, a new conn.  UNKNOWN_ROLE -> 500 (our configuration)
    EOF before END   -> 502, or the response cut short if it had started
    no byte for ``upstream_timeout`` seconds -> 504 (nginx ``fastcgi_read_timeout``)

When the client leaves mid-request, the application is told with FCGI_ABORT_REQUEST
(§5.4), and its END_REQUEST is awaited for a moment so the connection can be kept. Once
the body is in, the client's socket is watched with a peek: bytes there are a pipelined
request (left for later), EOF means the client is gone. A client that only half-closes
is taken as gone too, as nginx does (its 499, unless ``fastcgi_ignore_client_abort``).
"""

from __future__ import annotations

import select
import socket
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

from ..gateway import BadGateway, find_head_end, parse_cgi_response
from ..http import NEED_DATA, Data, EndOfMessage, LocalProtocolError, Response
from ..trace import escape
from .protocol import ConnectionEnded
from .records import EndRequest, FastCGIError, ProtocolStatus, Stderr, Stdout
from .upstream import UpstreamConnection

if TYPE_CHECKING:
    from .gateway import ClientConnection

__all__ = ["ClientGone", "ClientTimeout", "Exchange", "HttpError", "Retry", "wait"]


# Body records queued for the application, beyond which the client is not read (its
# backpressure): one record's worth.
OUTGOING_LIMIT = 65536


class HttpError(Exception):
    """An answer decided before any byte of the response went out."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Retry(Exception):
    """The request never reached an application; it may go again on a new connection."""


class ClientGone(Exception):
    """The HTTP client closed its connection while its request was being served."""


class ClientTimeout(Exception):
    """The client did not send what it owed in time ("idle" between requests, or
    "request" in the middle of one). Not TimeoutError: that is an OSError, and socket
    errors of the application's side must not be mistaken for the client's."""


def wait(readers: list[int], writers: list[int], timeout: float) -> tuple[set[int], set[int]]:
    """poll(2) on a few descriptors (never select(2): it breaks past descriptor 1023,
    which is how libfcgi got CVE-2012-6687). A hang-up or an error counts as ready, so
    that the read (EOF) or the write (EPIPE) reports it."""
    poller = select.poll()
    for fd in set(readers) | set(writers):
        mask = (select.POLLIN if fd in readers else 0) | (select.POLLOUT if fd in writers else 0)
        poller.register(fd, mask)
    readable: set[int] = set()
    writable: set[int] = set()
    for fd, events in poller.poll(max(0.0, timeout) * 1000):
        failed = events & (select.POLLHUP | select.POLLERR)
        if fd in readers and (events & select.POLLIN or failed):
            readable.add(fd)
        if fd in writers and (events & select.POLLOUT or failed):
            writable.add(fd)
    return readable, writable


class Exchange:
    """Sends one request to an application server and relays the answer to the client."""

    def __init__(self, client: ClientConnection, upstream: UpstreamConnection) -> None:
        self.client = client
        self.upstream = upstream
        self.proto = upstream.proto
        self.head = bytearray()
        self.started = False  # response bytes went to the client
        self.redirect: bytes | None = None
        self.body_sent = False  # client body bytes went upstream: no replay possible
        self.outgoing = bytearray()

    def run(self, params: dict[str, bytes], body: Iterator[bytes | None]) -> bytes | None:
        """Relay until END_REQUEST; returns a local redirect's target, if any."""
        client, config = self.client, self.client.config
        upstream_fd, client_fd = self.upstream.sock.fileno(), client.sock.fileno()
        self._queue(self.proto.begin(params))
        watch_client = False  # after the body: notice a client that leaves
        last_progress = time.monotonic()
        while True:
            need_client = False
            while self.proto.stdin_open and len(self.outgoing) < OUTGOING_LIMIT:
                # Records are queued while little is waiting to go: a request without a
                # body leaves in one write (BEGIN, PARAMS, the empty STDIN), which lets
                # the application start it at once with its (empty) body whole.
                piece = next(body, b"")
                if piece is None:
                    need_client = True  # the HTTP core needs more bytes from the client
                    break
                self.body_sent = self.body_sent or bool(piece)
                self._queue(self.proto.stdin(piece))  # b"" ends STDIN (§6.1)
                watch_client = not piece
            if self.outgoing and self._send_upstream():
                last_progress = time.monotonic()
                if self.proto.stdin_open and not need_client:
                    continue  # the socket took bytes: room, perhaps, for more of the body
            readers = [upstream_fd] + [client_fd] * (need_client or watch_client)
            writers = [upstream_fd] if self.outgoing else []  # what the socket did not take
            timeout = config.request_timeout if need_client else config.upstream_timeout
            readable, writable = wait(readers, writers, last_progress + timeout - time.monotonic())
            if not (readable or writable):
                if need_client:
                    raise ClientTimeout("request")
                raise HttpError(504, f"no answer from the application for {timeout:g} s")
            # Writable: the next turn of the loop sends.
            if client_fd in readable:
                try:
                    if need_client:
                        client.receive()
                    elif not client.sock.recv(1, socket.MSG_PEEK):
                        raise ClientGone
                    else:
                        watch_client = False  # pipelined bytes: the next request, no EOF
                except OSError:
                    raise ClientGone from None
            if upstream_fd in readable:
                last_progress = time.monotonic()
                if self._receive():
                    return self.redirect

    def _send_upstream(self) -> bool:
        """Send what the socket takes now; True if some bytes left.

        The socket is non-blocking (upstream.py), so the send is tried first and a wait
        is only for what did not fit: one system call for a small request, where a poll
        before every send made two. In a threaded Python server each system call is also
        a trip through the GIL, where another thread may be waiting its turn."""
        try:
            sent = self.upstream.sock.send(self.outgoing)
        except BlockingIOError:
            return False
        except OSError as error:
            self._upstream_failed(error)
        del self.outgoing[:sent]
        return sent > 0

    def _upstream_failed(self, error: OSError) -> NoReturn:
        if self.upstream.reused and not self.started and not self.head:
            raise Retry(f"a kept connection failed ({error.strerror})")
        raise HttpError(502, f"the connection to the application failed: {error.strerror}")

    def _queue(self, data: bytes) -> None:
        self.client.gateway.records.wire(self.client.cid, "<", data)
        self.outgoing += data

    def _receive(self) -> bool:
        """Read from the application; True once END_REQUEST came."""
        try:
            data = self.upstream.sock.recv(65536)
        except BlockingIOError:
            return False  # poll said readable, and nothing was: try again later
        except ConnectionResetError:
            data = b""  # the same as a close, for what it means to us
        except OSError as error:
            self._upstream_failed(error)
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
                return True
            elif isinstance(event, ConnectionEnded):
                if self.upstream.reused and not self.started and not self.head:
                    raise Retry("a kept connection was closed by the application server")
                raise HttpError(502, "the application server closed before END_REQUEST")
        return False

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
        self._send_client(self.client.conn.send(EndOfMessage()))

    def _relay(self, data: bytes) -> None:
        """STDOUT: a CGI response (§6.1, RFC 3875 §6): the head parsed, the body streamed."""
        conn = self.client.conn
        if self.redirect is not None or not data:
            return  # §6.2.2: a local redirect has no body; an empty record ends STDOUT
        if self.started:
            self._send_client(conn.send(Data(data)))
            return
        self.head += data
        if (end := find_head_end(self.head)) is None:
            if len(self.head) > self.client.config.max_cgi_head:
                raise HttpError(502, "the application's header section is too large")
            return
        try:
            reply = parse_cgi_response(bytes(self.head[: end[0]]))
            if reply.local_redirect is not None:
                self.redirect = reply.local_redirect
                return
            head = conn.send(Response(reply.status, reply.headers, reply.reason))
        except (BadGateway, LocalProtocolError) as error:
            raise HttpError(502, f"the application's response is not CGI: {error}") from None
        self.started = True
        self._send_client(head + conn.send(Data(bytes(self.head[end[1] :]))))

    def _send_client(self, data: bytes) -> None:
        try:
            self.client.send(data)
        except OSError:
            raise ClientGone from None

    def abandon(self) -> None:
        """§5.4: the client left; ask the application to stop and wait briefly for its
        END_REQUEST, which makes the connection reusable (if it does not come, the
        exchange is still ACTIVE, and the connection is closed instead of kept)."""
        try:
            self.upstream.sock.settimeout(1.0)
            if self.outgoing:
                self.upstream.sock.sendall(self.outgoing)  # finish the record under way
                self.outgoing.clear()
            abort = self.proto.abort()
            self.client.gateway.records.wire(self.client.cid, "<", abort)
            self.upstream.sock.sendall(abort)
            self.redirect = b""  # whatever still comes is not for anyone
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not self._receive():
                pass
            self.upstream.sock.setblocking(False)  # as the pool keeps its connections
        except (OSError, FastCGIError, HttpError, Retry, ClientGone):
            pass  # not reusable (the exchange is not IDLE): release() closes it
