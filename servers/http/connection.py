"""The server side of one HTTP/1.1 connection, as a state machine with no I/O.

How data flows (every era's server loop has this shape)::

      socket bytes                                            socket bytes
          |                                                        ^
          v                                                        |
    receive_data(b) --> [ buffer ] --> next_event() --> Request    |
                                                        Data...    |
                                                        EndOfMessage
                                                           |       |
                                        the era calls its app      |
                                                           v       |
                        send(Response / Data / EndOfMessage) -> bytes

The connection keeps two states, one per side, as h11 does: what the client is doing
(``their_state``) and what we are doing (``our_state``). Both start IDLE. A request moves
the client through SEND_BODY to DONE, and the server through SEND_RESPONSE and SEND_BODY
to DONE. The legal moves are the two tables below; anything else is a bug in the caller
and raises LocalProtocolError naming the event, the side and the state.

House rules:

1. **One request at a time.** Once the client's message is complete, ``next_event()``
   answers PAUSED until the response is complete too, even if the next pipelined request
   is already buffered. Pipelined requests are thereby answered in order (RFC 9112 §9.3.2)
   without the server having to think about it.
2. **Keep-alive is a reset.** When both sides are DONE and the connection may persist,
   ``start_next_cycle()`` puts both back to IDLE; only per-request state is dropped, the
   buffer (with any pipelined bytes) is kept.
3. **An error ends the connection.** After a RemoteProtocolError the client side is in
   ERROR; the server may still send one response (``error_response()`` builds it) and
   then must close. The core never tries to resynchronise with a confused client: that
   is exactly how a smuggled request would get through.
"""

from __future__ import annotations

import enum

from .events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    Header,
    InformationalResponse,
    Limits,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    Signal,
)
from .readers import BodyReader, ChunkedReader, ContentLengthReader, HeadReader
from .writers import (
    BodyWriter,
    ChunkedWriter,
    CloseDelimitedWriter,
    ContentLengthWriter,
    NoBodyWriter,
    head_bytes,
    http_date,
    parse_content_length,
    status_line,
    validate_header,
)

__all__ = [
    "CLOSED",
    "DONE",
    "ERROR",
    "IDLE",
    "MUST_CLOSE",
    "SEND_BODY",
    "SEND_RESPONSE",
    "SERVER_SOFTWARE",
    "SWITCHED",
    "ServerConnection",
    "State",
]

SERVER_SOFTWARE = b"gatewaylab/0.1"


class State(enum.Enum):
    IDLE = "IDLE"  # between messages
    SEND_RESPONSE = "SEND_RESPONSE"  # server only: a request arrived, no final response yet
    SEND_BODY = "SEND_BODY"  # the head went, the body is under way
    DONE = "DONE"  # this side's message is complete
    MUST_CLOSE = "MUST_CLOSE"  # done, and the connection may not be reused
    CLOSED = "CLOSED"  # the client has closed its side
    SWITCHED = "SWITCHED"  # 101 sent: the bytes now belong to another protocol (WebSocket)
    ERROR = "ERROR"  # a protocol error: the connection has to close

    def __repr__(self) -> str:
        return self.name

    # Members are singletons, so identity is equality: hash them by identity, in C, instead
    # of Enum's Python-level hash of the name (the transition tables look up every event).
    __hash__ = object.__hash__


# The states again as module-level names, as h11 spells them (and as events.py does for
# NEED_DATA), for the code below. On Python 3.11 every ``State.IDLE`` is answered through
# EnumType.__getattr__'s slow path, about a thousand machine instructions against a few
# dozen for a global, and a request looks at a state some twenty times.
IDLE = State.IDLE
SEND_RESPONSE = State.SEND_RESPONSE
SEND_BODY = State.SEND_BODY
DONE = State.DONE
MUST_CLOSE = State.MUST_CLOSE
CLOSED = State.CLOSED
SWITCHED = State.SWITCHED
ERROR = State.ERROR


# The legal moves, as tables (h11 _state.py style). Key: (state, event class).
CLIENT_TRANSITIONS: dict[tuple[State, type], State] = {
    (IDLE, Request): SEND_BODY,
    (IDLE, ConnectionClosed): CLOSED,
    (SEND_BODY, Data): SEND_BODY,
    (SEND_BODY, EndOfMessage): DONE,
    (DONE, ConnectionClosed): CLOSED,
    (MUST_CLOSE, ConnectionClosed): CLOSED,
}
SERVER_TRANSITIONS: dict[tuple[State, type], State] = {
    (SEND_RESPONSE, InformationalResponse): SEND_RESPONSE,
    (SEND_RESPONSE, Response): SEND_BODY,
    (SEND_BODY, Data): SEND_BODY,
    (SEND_BODY, EndOfMessage): DONE,
}

# Header pairs already validated (apps send the same few again and again): validity depends
# on the bytes alone, so a pair seen valid once needs no second look. Bounded.
_VALID: set[tuple[bytes, bytes]] = set()
# A request without a body: ContentLengthReader(0) answers EndOfMessage and never changes.
_NO_BODY = ContentLengthReader(0)
# RFC 9110 §15.2.2, §15.3.5, §15.4.5 and §9.3.2: these never carry a body.
_NO_BODY_STATUSES = frozenset({204, 304})
# Headers the core owns: the app's versions would contradict the framing it chose.
_FRAMING = (b"transfer-encoding",)
# The names _response_head() looks at: the framing, Connection, and the two it adds itself.
_NOTED = frozenset({b"content-length", b"connection", *_FRAMING, b"date", b"server"})


def _is_status(status: object) -> bool:
    # A str status (or reason) would raise TypeError deep inside; it is the app's mistake
    # and must be reported as one, a LocalProtocolError (STYLE rule 9). bool is an int too.
    return isinstance(status, int) and not isinstance(status, bool)


class ServerConnection:
    """One client connection, seen from the server. Feed it bytes, get events; send events,
    get bytes. Not thread-safe: one thread or task owns a connection at a time."""

    def __init__(
        self,
        limits: Limits | None = None,
        server: bytes = SERVER_SOFTWARE,
        *,
        drop_transfer_encoding: bool = False,
    ) -> None:
        self.limits = limits or Limits()
        self.server_software = server
        # An app's Transfer-Encoding is refused (WSGI forbids hop-by-hop headers, PEP 3333),
        # unless the interface says to ignore it, as ASGI does ("Response Start").
        self.drop_transfer_encoding = drop_transfer_encoding
        self._buf = bytearray()
        self._eof = False
        self._head_reader = HeadReader(self.limits)
        self._start_cycle()

    def _start_cycle(self) -> None:
        """Reset the per-request state: everything that a keep-alive reset forgets."""
        self.their_state = IDLE
        self.our_state = IDLE
        self.request: Request | None = None
        # The body reader of this request, chosen from its head; the head reader is
        # kept apart (self._head_reader) so that neither call needs a type check.
        self._body_reader: BodyReader = _NO_BODY
        self._writer: BodyWriter | None = None
        self._keep_alive = True
        self.waiting_for_100_continue = False
        self.response_status: int | None = None

    # -- the client's side ----------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from the socket; ``b""`` means the client closed its side (EOF)."""
        if data:
            if self._eof:
                raise LocalProtocolError("received data after end of input")
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event | Signal:
        """The next event from the client, or NEED_DATA, or PAUSED; may raise
        RemoteProtocolError, after which the client side is in ERROR."""
        # One function, not a wrapper around another: it runs twice per request, and a
        # try block costs nothing in Python 3.11 where a call costs a frame.
        try:
            state = self.their_state
            if state is IDLE:
                if self.our_state is not IDLE:
                    return PAUSED  # an error response is still going out
                if not self._buf and self._eof:
                    return self._client_event(ConnectionClosed())
                request = self._head_reader(self._buf, self._eof)
                if request is None:
                    if self._eof and not self._buf:
                        # The reader dropped a last empty line (RFC 9112 §2.2) and the
                        # client has closed: there is no request coming, and NEED_DATA
                        # after EOF would leave an event-driven era waiting for bytes
                        # that never come.
                        return self._client_event(ConnectionClosed())
                    return NEED_DATA
                return self._client_event(request)
            if state is SEND_BODY:
                event = self._body_reader(self._buf, self._eof)
                if event is None:
                    return NEED_DATA
                return self._client_event(event)
            if state is CLOSED:
                return ConnectionClosed()
            # A client may half-close right after its request; it still gets its response,
            # and hears of the close only once that response is complete.
            if self._eof and not self._buf and self.response_complete:
                return self._client_event(ConnectionClosed())
            if state is ERROR:
                raise LocalProtocolError(
                    "next_event() after a protocol error: close the connection"
                )
            return PAUSED  # rule 1: wait for our response before reading the next request
        except RemoteProtocolError:
            self._fail()
            raise

    def _client_event(self, event: Event) -> Event:
        # The table is looked up here rather than through _move(): a call saved on every
        # event of every request.
        kind = type(event)  # the event classes are final: type() is isinstance(), cheaper
        try:
            self.their_state = CLIENT_TRANSITIONS[self.their_state, kind]
        except KeyError:
            raise _illegal(event, "client", self.their_state) from None
        if kind is Request:
            assert isinstance(event, Request)
            self.request = event
            self.our_state = SEND_RESPONSE
            self._keep_alive = event.keep_alive
            self.waiting_for_100_continue = event.expects_continue
            if event.chunked:
                self._body_reader = ChunkedReader(self.limits)
            elif event.content_length:
                self._body_reader = ContentLengthReader(event.content_length)
            else:
                self._body_reader = _NO_BODY  # most requests: one shared reader, no state
        elif kind is Data or kind is EndOfMessage:
            # The client sent body bytes without waiting: it no longer waits for 100.
            self.waiting_for_100_continue = False
            if kind is EndOfMessage and not self._keep_alive:
                self._maybe_must_close()
        return event

    # -- our side -----------------------------------------------------------------------------
    def send(self, event: InformationalResponse | Response | Data | EndOfMessage) -> bytes:
        """The bytes that put ``event`` on the wire. LocalProtocolError if it is illegal now;
        after one, the connection must be closed (our side is in ERROR)."""
        try:
            return self._send(event)
        except LocalProtocolError:
            self._keep_alive = False
            # A refused response head put nothing on the wire: the era may still answer
            # with a 500 of its own. Any other refusal leaves the message broken.
            if not (isinstance(event, Response) and self.our_state is SEND_RESPONSE):
                self.our_state = ERROR
            raise

    def _send(self, event: InformationalResponse | Response | Data | EndOfMessage) -> bytes:
        new_state = self._move(SERVER_TRANSITIONS, "server", self.our_state, event)
        if isinstance(event, InformationalResponse):
            out = self._informational(event)
        elif isinstance(event, Response):
            out = self._response_head(event.status_code, event.headers, event.reason)
        elif isinstance(event, Data):
            assert self._writer is not None
            if not isinstance(event.data, bytes | bytearray):
                # A str body would go through a Content-Length writer unchanged, and
                # send() would return a str (STYLE rule 9: fail here, exactly).
                raise LocalProtocolError(f"Data({type(event.data).__name__}): a body is bytes")
            out = self._writer.data(event.data)
        else:
            assert self._writer is not None
            # Trailer fields are checked like headers: a CR LF in one would split the
            # response just as it would in a header (response splitting, see writers.py).
            out = self._writer.end([self._checked(n, v) for n, v in event.trailers])
        if self.our_state is not SWITCHED:
            self.our_state = new_state
        if isinstance(event, EndOfMessage):
            self._maybe_must_close()
        return out

    def _informational(self, event: InformationalResponse) -> bytes:
        if not _is_status(event.status_code) or not 100 <= event.status_code <= 199:
            raise LocalProtocolError(f"InformationalResponse with status {event.status_code!r}")
        if self.request is not None and self.request.http_version == b"1.0":
            # RFC 9110 §15.2: a server MUST NOT send a 1xx response to an HTTP/1.0
            # client (1.0 defined none; the client would take it as the final response).
            raise LocalProtocolError("a 1xx response to an HTTP/1.0 client")
        headers = [self._checked(name, value) for name, value in event.headers]
        if event.status_code == 100:
            self.waiting_for_100_continue = False
        elif event.status_code == 101:
            # RFC 9110 §15.2.2: after 101 the connection speaks the new protocol from the
            # byte after the blank line. The era takes the rest with trailing_data().
            self.our_state = SWITCHED
        return head_bytes(event.status_code, event.reason, headers)

    def _response_head(
        self,
        status: int,
        headers_in: list[Header] | tuple[Header, ...],
        reason: bytes = b"",
        default_length: int | None = None,
    ) -> bytes:
        # type() first: a plain int is the usual status, and one C check is cheaper than
        # _is_status()'s call (which still decides for int subclasses such as HTTPStatus).
        if not (type(status) is int or _is_status(status)) or not 200 <= status <= 999:
            raise LocalProtocolError(
                f"Response status {status!r}: a final status is 200-999 (use "
                "InformationalResponse for 1xx)"
            )
        if self.waiting_for_100_continue:
            # RFC 9110 §10.1.1: a final answer before 100 means the client may never send
            # the body it announced, so the connection cannot be trusted for another request.
            self._keep_alive = False
            self.waiting_for_100_continue = False
        self.response_status = status
        request = self.request
        # The head is written as it is checked: each field goes into ``parts`` in wire
        # layout (head_bytes' layout) in the same pass that validates it, so the headers
        # are walked once, not once to check and once more to serialise. parts[0] is
        # the status line, filled in last, once the reason has been checked.
        parts: list[bytes] = [b""]
        content_length: int | None = None
        has_date = has_server = False
        for name, value in headers_in:
            if type(name) is not bytes or type(value) is not bytes or (name, value) not in _VALID:
                name, value = self._checked(name, value)  # a pair not seen before (or str)
            lname = name.lower()
            if lname not in _NOTED:  # most headers: passed on as they came, after one lookup
                parts += (name, b": ", value, b"\r\n")
            elif lname == b"content-length":
                length = parse_content_length(value)
                if content_length is not None and length != content_length:
                    raise LocalProtocolError("the app sent two different Content-Length values")
                content_length = length  # added below, once, where the framing is chosen
            elif lname == b"connection":
                # Connection is ours to manage (RFC 9110 §7.6.1); honour an app's "close".
                if b"close" in value.lower():
                    self._keep_alive = False
            elif lname in _FRAMING:
                if self.drop_transfer_encoding:
                    continue  # the core chooses the framing below, whatever the app said
                raise LocalProtocolError(
                    f"the app sent {name!r}: the server chooses the transfer coding itself"
                )
            else:
                has_date = has_date or lname == b"date"
                has_server = has_server or lname == b"server"
                parts += (name, b": ", value, b"\r\n")

        if content_length is None:
            content_length = default_length  # send_response(): the body's own length
        # The framing (RFC 9112 §6.3), chosen once, here.
        http_10 = request is not None and request.http_version == b"1.0"
        head_request = request is not None and request.method == b"HEAD"
        if head_request or status in _NO_BODY_STATUSES:
            self._writer = NoBodyWriter()
            if content_length is not None and status not in _NO_BODY_STATUSES:
                parts.append(b"Content-Length: %d\r\n" % content_length)
        elif content_length is not None:
            self._writer = ContentLengthWriter(content_length)
            parts.append(b"Content-Length: %d\r\n" % content_length)
        elif not http_10 and request is not None:
            self._writer = ChunkedWriter()
            parts.append(b"Transfer-Encoding: chunked\r\n")
        else:
            # §6.1: never chunked to a 1.0 client; the close marks the end of the body.
            self._writer = CloseDelimitedWriter()
            self._keep_alive = False

        if self.their_state is ERROR:
            self._keep_alive = False
        if not self._keep_alive:
            parts.append(b"Connection: close\r\n")
        elif http_10:
            parts.append(b"Connection: keep-alive\r\n")
        if not has_date:
            parts += (b"Date: ", http_date(), b"\r\n")
        if not has_server:
            parts += (b"Server: ", self.server_software, b"\r\n")
        parts[0] = status_line(status, reason)
        parts.append(b"\r\n")  # RFC 9112 §2.1: the empty line that ends the head
        return b"".join(parts)

    @staticmethod
    def _checked(name: bytes | str, value: bytes | str) -> Header:
        if type(name) is bytes and type(value) is bytes and (name, value) in _VALID:
            return name, value
        if isinstance(name, str) or isinstance(value, str):
            raise LocalProtocolError(f"header ({name!r}, {value!r}): names and values are bytes")
        validate_header(name, value)
        if len(_VALID) < 4096 and type(name) is bytes and type(value) is bytes:
            _VALID.add((name, value))
        return name, value

    # -- convenience for whole responses ------------------------------------------------------
    def send_response(
        self,
        status: int,
        headers: list[Header] | tuple[Header, ...] = (),
        body: bytes = b"",
        reason: bytes = b"",
    ) -> bytes:
        """Head, body and end in one call, with Content-Length: the common case."""
        # What send(Response(...)) does, without the event's trip through the tables: the
        # same state check, and the head built with the body's length as the default
        # Content-Length (so the app's headers need no copy and no extra scan).
        if self.our_state is not SEND_RESPONSE:
            self._keep_alive = False
            raise LocalProtocolError(
                f"Response is not allowed for the server in state {self.our_state!r}"
            )
        try:
            head = self._response_head(status, headers, reason, len(body))
        except LocalProtocolError:
            self._keep_alive = False
            raise
        self.our_state = SEND_BODY
        # Data and EndOfMessage, without two more trips through send(): the head was
        # accepted, so we are in SEND_BODY with the writer it chose. This is the hot path
        # of every small response, and the same moves as send() makes, spelled out.
        try:
            if not isinstance(body, bytes):
                raise LocalProtocolError(f"send_response body {type(body).__name__}: bytes")
            assert self._writer is not None
            out = head + self._writer.data(body) + self._writer.end([])
        except LocalProtocolError:
            self.our_state = ERROR
            self._keep_alive = False
            raise
        if self.our_state is SEND_BODY:
            self.our_state = DONE
            self._maybe_must_close()
        return out

    def error_response(self, error: ProtocolError) -> bytes:
        """The answer to a protocol error: its status and a one-line explanation, then close.

        Only the message is sent, never a traceback (STYLE rule 8). If the response had
        already started, there is nothing honest left to say: b"" and the caller closes.
        """
        self._keep_alive = False
        if self.our_state not in (IDLE, SEND_RESPONSE):
            self.our_state = MUST_CLOSE
            return b""
        self.our_state = SEND_RESPONSE
        body = f"{error}\n".encode("utf-8", "replace")
        return self.send_response(
            error.status, [(b"Content-Type", b"text/plain; charset=utf-8")], body
        )

    def send_file_data(self, length: int) -> tuple[bytes, bytes] | None:
        """For a body the era sends itself (sendfile(2) of ``length`` file bytes): the
        framing to put before and after those bytes, counted as if sent as Data. None when
        the response has no body on the wire (HEAD, 204, 304): send nothing then."""
        if self.our_state is not SEND_BODY or self._writer is None:
            raise LocalProtocolError(f"send_file_data() with the server in {self.our_state!r}")
        if isinstance(self._writer, NoBodyWriter):
            return None
        try:
            return self._writer.framing(length)
        except LocalProtocolError:
            self.our_state = ERROR
            self._keep_alive = False
            raise

    # -- keep-alive and shutdown --------------------------------------------------------------
    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after this one."""
        return self._keep_alive

    def _maybe_must_close(self) -> None:
        if self._keep_alive:
            return
        if self.their_state is DONE:
            self.their_state = MUST_CLOSE
        if self.our_state is DONE:
            self.our_state = MUST_CLOSE

    def _fail(self) -> None:
        self.their_state = ERROR
        self._keep_alive = False
        if self.our_state is IDLE:
            self.our_state = SEND_RESPONSE  # so that error_response() may answer

    @property
    def response_complete(self) -> bool:
        """Our response is fully produced (it may still be sitting in a socket buffer)."""
        return self.our_state in (DONE, MUST_CLOSE)

    @property
    def can_reuse(self) -> bool:
        """Both messages are complete and the connection may carry another request."""
        return self.our_state is DONE and self.their_state is DONE

    def start_next_cycle(self) -> None:
        """Keep-alive (house rule 2): forget the request, keep the buffered bytes."""
        if self.our_state is not DONE or self.their_state is not DONE:  # can_reuse
            raise LocalProtocolError(
                f"start_next_cycle() with client {self.their_state!r} and server "
                f"{self.our_state!r}: both must be DONE on a connection that may persist"
            )
        self._start_cycle()

    def trailing_data(self) -> tuple[bytes, bool]:
        """After 101 Switching Protocols: the bytes already received for the new protocol,
        and whether the client has closed. The buffer is handed over and emptied."""
        data = bytes(self._buf)
        self._buf.clear()
        return data, self._eof

    @property
    def buffered(self) -> int:
        """Bytes received but not yet turned into events (pipelined requests, body)."""
        return len(self._buf)

    @staticmethod
    def _move(
        table: dict[tuple[State, type], State], role: str, state: State, event: Event
    ) -> State:
        try:
            return table[state, type(event)]
        except KeyError:
            raise _illegal(event, role, state) from None


def _illegal(event: Event, role: str, state: State) -> LocalProtocolError:
    """The one error for a move that is not in the tables: the event, the role, the state."""
    return LocalProtocolError(
        f"{type(event).__name__} is not allowed for the {role} in state {state!r}"
    )
