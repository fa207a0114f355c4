"""Both ends of a FastCGI connection as state machines, with no I/O (like servers/http).

The record codec (``records``) knows what a record *is*; this module knows what records
*mean* on a connection: which request they belong to, in which order they may come, and
what must be answered. Two classes, one per role of the spec:

* :class:`ApplicationConnection` is the application's end (our ``fastcgi-app``). It turns
  records into per-request events (:class:`RequestReady`, :class:`StdinData`,
  :class:`StdinEnded`, :class:`AbortRequested`) and answers the management records
  itself (§4.1 GET_VALUES, §4.2 UNKNOWN_TYPE) and the requests it must refuse (§5.5
  CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE), so an application never sees any of those.
* :class:`WebServerConnection` is the web server's end (our HTTP gateway). It builds
  BEGIN_REQUEST, PARAMS and STDIN, and checks what comes back: STDOUT, STDERR and one
  END_REQUEST, all on the request id it used (nginx refuses anything else with "upstream
  sent unexpected FastCGI request id", and so do we).

How one request travels (App. B, example 1)::

      web server                                           application
      BEGIN_REQUEST {1, RESPONDER, KEEP_CONN}  ------->   id 1 becomes active (§3.3)
      PARAMS {1, "...pairs..."}, PARAMS {1, ""} ------->   RequestReady: the app may start
      STDIN {1, "body"}, STDIN {1, ""}         ------->   StdinData, StdinEnded
                                               <-------   STDOUT {1, "Status: 200 OK..."}
                                               <-------   STDOUT {1, ""}
                                               <-------   END_REQUEST {1, 0, COMPLETE}
      (KEEP_CONN set: the connection waits for the next BEGIN_REQUEST, §3.5)

House rules:

1. **Request ids are echoed exactly**, and an id may be reused as soon as its END_REQUEST
   has gone (§3.3). Because of reuse, the application side names one *activation* of an
   id with a :class:`RequestKey` (id + serial number): a worker that answers late, for a
   request that was aborted and whose id is already serving the next request, cannot
   write into the newcomer's response. Its bytes are dropped.
2. **Records for inactive ids are ignored** (§3.3), except BEGIN_REQUEST. A record that
   breaks the order of a stream (STDIN before PARAMS ended, anything after a stream
   ended) is a protocol error: :class:`~servers.fastcgi.records.FastCGIError`, and the
   only safe answer is to close that connection.
3. **Bounded**: the codec caps each pair and the buffered bytes; here the pairs of one
   request (``max_params``) and the requests active on one connection are capped too.
   libfcgi's CVE-2025-23016 came from trusting a length; nothing here trusts one.
4. Neither class is thread-safe: the server that owns a connection serialises calls.
"""

from __future__ import annotations

import enum
import functools
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..http.events import NEED_DATA, Signal
from .records import (
    FCGI_KEEP_CONN,
    AbortRequest,
    BeginRequest,
    Data,
    EndRequest,
    FastCGIError,
    GetValues,
    GetValuesResult,
    PairDecoder,
    Params,
    ProtocolStatus,
    Record,
    RecordReader,
    RecordType,
    Role,
    Stderr,
    Stdin,
    Stdout,
    StreamRecord,
    UnknownRecord,
    UnknownType,
    encode,
    encode_pairs,
    encode_stream,
)

__all__ = [
    "AbortRequested",
    "ApplicationConnection",
    "ConnectionEnded",
    "ExchangeState",
    "InputState",
    "RequestKey",
    "RequestReady",
    "StdinData",
    "StdinEnded",
    "WebServerConnection",
]


# ======================================================================================
# The application's end
# ======================================================================================
@dataclass(frozen=True, slots=True, eq=False)
class RequestKey:
    """One activation of a request id (house rule 1).

    Compared by identity (``eq=False``): each activation makes exactly one key, and the
    server looks requests up by it several times per request, so hashing stays in C."""

    request_id: int
    serial: int


@dataclass(frozen=True, slots=True)
class RequestReady:
    """PARAMS has ended: the request is complete enough to run. §6.2: a responder may
    start writing once all of PARAMS is read, even before STDIN is finished."""

    key: RequestKey
    role: Role
    keep_conn: bool
    params: dict[str, bytes]  # names are ASCII by the CGI rules; values stay bytes


@dataclass(frozen=True, slots=True)
class StdinData:
    key: RequestKey
    data: bytes

    def __repr__(self) -> str:
        return f"StdinData({self.key}, <{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class StdinEnded:
    """The empty STDIN record: the body is complete (§3.3: streams end with one)."""

    key: RequestKey


@dataclass(frozen=True, slots=True)
class AbortRequested:
    """§5.4: the web server gave up on this request (its client went away). The
    application answers with END_REQUEST as soon as it can: :meth:`end_request`."""

    key: RequestKey


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The web server closed the connection between records."""


AppEvent = RequestReady | StdinData | StdinEnded | AbortRequested | ConnectionEnded


class InputState(enum.StrEnum):
    # A str enum: INPUT_TRANSITIONS hashes one for every PARAMS and STDIN record, and
    # str's hash is C, where a plain Enum's is a Python method (enum.py).
    PARAMS = "PARAMS"  # BEGIN_REQUEST came; name-value pairs are arriving
    STDIN = "STDIN"  # PARAMS ended; the body is arriving
    DONE = "DONE"  # STDIN ended; nothing more may come for this request but ABORT


# The order of a responder's input streams (§6.2), as a table: (state, record, ends the
# stream) -> next state. Anything else is a protocol error naming the three.
INPUT_TRANSITIONS: dict[tuple[InputState, type[StreamRecord], bool], InputState] = {
    (InputState.PARAMS, Params, False): InputState.PARAMS,
    (InputState.PARAMS, Params, True): InputState.STDIN,
    (InputState.STDIN, Stdin, False): InputState.STDIN,
    (InputState.STDIN, Stdin, True): InputState.DONE,
}


class _Active:
    """What the application side remembers about one active request."""

    # One per request, its fields read for every record: slots make both cheaper.
    __slots__ = ("keep_conn", "key", "pairs", "params", "role", "state", "wrote_stderr")

    def __init__(self, key: RequestKey, role: Role, flags: int, decoder: PairDecoder) -> None:
        self.key = key
        self.role = role
        self.keep_conn = bool(flags & FCGI_KEEP_CONN)
        self.state = InputState.PARAMS
        self.pairs = decoder
        self.params: dict[str, bytes] = {}
        self.wrote_stderr = False


class ApplicationConnection:
    """The application's end of one connection: records in, events and answers out.

    ``values`` answers GET_VALUES (§4.1); ``roles`` are the roles played (others get
    UNKNOWN_ROLE); ``max_requests`` caps the requests active on this connection at once
    (1 means no multiplexing: a second one gets CANT_MPX_CONN, as libfcgi does).
    """

    def __init__(
        self,
        values: Mapping[bytes, bytes],
        *,
        roles: Iterable[Role] = (Role.RESPONDER,),
        max_requests: int = 1,
        max_params: int = 256 * 1024,
        max_buffer: int = 1 << 20,
    ) -> None:
        self.values = dict(values)
        self.roles = frozenset(roles)
        self.max_requests = max_requests
        self.max_params = max_params  # §2.10: the pairs of one request, in bytes
        self._reader = RecordReader(max_buffer)
        self._active: dict[int, _Active] = {}
        self._serials = itertools.count(1)
        self._outbox = bytearray()
        self._eof = False
        self.must_close = False  # an END_REQUEST went for a request without KEEP_CONN
        self.refused = 0  # requests answered with a refusal (§5.5), for the server's policy

    # -- input --------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Bytes from the socket; ``b""`` is the end of input."""
        if data:
            self._reader.receive_data(data)
        else:
            self._eof = True

    @property
    def last_header(self) -> bytes:
        return self._reader.last_header

    @property
    def buffering(self) -> bool:
        """Part of a record has arrived and the rest has not."""
        return self._reader.buffered > 0

    def next_event(self) -> AppEvent | Signal:
        """The next event, or NEED_DATA; raises FastCGIError if the peer broke the protocol.
        Management answers and refusals are queued for :meth:`data_to_send` meanwhile."""
        while True:
            record = self._reader.next_record()
            if type(record) is Params or type(record) is Stdin:
                event = self._input(record)  # three records of a request in four: first
                if event is not None:
                    return event
                continue
            if isinstance(record, Signal):
                if self._eof:
                    if self._reader.buffered:
                        raise FastCGIError(
                            f"the connection closed inside a record ({self._reader.buffered}"
                            " bytes of it arrived)"
                        )
                    return ConnectionEnded()
                return NEED_DATA
            event = self._handle(record)
            if event is not None:
                return event

    def data_to_send(self) -> bytes:
        """The answers the connection produced by itself since the last call."""
        if not self._outbox:
            return b""  # nearly always: a request's records need no answer of their own
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def _handle(self, record: Record) -> AppEvent | None:
        """Every record but PARAMS and STDIN (next_event sends those to :meth:`_input`)."""
        if type(record) is BeginRequest:  # the one other record of every request: first
            return self._begin(record)
        if isinstance(record, GetValues):
            # §4.1: answer the variables we know, leave out the ones we do not.
            known = tuple((name, self.values[name]) for name in record.names if name in self.values)
            self._outbox += encode(GetValuesResult(known))
            return None
        if isinstance(record, UnknownRecord) and record.request_id == 0:
            # §4.2: a management record of a type we do not know: say so, naming the type.
            self._outbox += encode(UnknownType(record.record_type))
            return None
        if isinstance(record, GetValuesResult | UnknownType):
            # Management records only an application sends: not ours to understand either.
            sent_type = RecordType.GET_VALUES_RESULT
            if isinstance(record, UnknownType):
                sent_type = RecordType.UNKNOWN_TYPE
            self._outbox += encode(UnknownType(sent_type))
            return None
        if isinstance(record, EndRequest | Stdout | Stderr | UnknownRecord):
            # The spec says nothing of unknown application types; libfcgi treats them, and
            # records only an application may send, as protocol errors. So do we.
            raise FastCGIError(f"{type(record).__name__} sent to the application")
        request_id = record.request_id
        active = self._active.get(request_id)
        if active is None:
            return None  # §3.3: records for inactive ids are ignored
        if isinstance(record, AbortRequest):
            return AbortRequested(active.key)
        assert isinstance(record, Data)
        raise FastCGIError(f"DATA for request {request_id}, which is no FILTER (§6.4)")

    def _input(self, record: Params | Stdin) -> AppEvent | None:
        """PARAMS and STDIN, in the order of INPUT_TRANSITIONS."""
        request_id = record.request_id
        active = self._active.get(request_id)
        if active is None:
            return None  # §3.3: records for inactive ids are ignored
        ends = not record.data
        new_state = INPUT_TRANSITIONS.get((active.state, type(record), ends))
        if new_state is None:
            kind = type(record).__name__.upper()
            what = f"the end of {kind}" if ends else kind
            raise FastCGIError(f"{what} for request {request_id} in state {active.state.name}")
        active.state = new_state
        if type(record) is Params:
            if not ends:
                pairs = active.pairs.feed(record.data)
                try:
                    # The CGI variable names are ASCII; one that is not is refused, not guessed.
                    active.params.update({name.decode("ascii"): value for name, value in pairs})
                except UnicodeDecodeError:
                    name = next(name for name, _ in pairs if not name.isascii())
                    raise FastCGIError(f"a parameter name that is not ASCII: {name!r}") from None
                return None
            active.pairs.finish()
            return RequestReady(active.key, active.role, active.keep_conn, active.params)
        return StdinData(active.key, record.data) if not ends else StdinEnded(active.key)

    def _begin(self, record: BeginRequest) -> AppEvent | None:
        request_id = record.request_id
        if request_id in self._active:
            raise FastCGIError(f"BEGIN_REQUEST for request {request_id}, which is active")
        if self.must_close:
            return None  # §3.5: after a request without KEEP_CONN, nothing more is taken
        refusal = None
        if record.role not in self.roles:
            refusal = ProtocolStatus.UNKNOWN_ROLE  # §5.5
        elif self._active and self.max_requests == 1:
            refusal = ProtocolStatus.CANT_MPX_CONN  # §5.5: one at a time on this connection
        elif len(self._active) >= self.max_requests:
            refusal = ProtocolStatus.OVERLOADED
        if refusal is not None:
            # The id never becomes active, so what follows for it is ignored (§3.3).
            self._outbox += encode(EndRequest(request_id, 0, refusal))
            self.refused += 1
            if not record.keep_conn:
                self.must_close = True
            return None
        key = RequestKey(request_id, next(self._serials))
        decoder = PairDecoder(max_total=self.max_params)
        self._active[request_id] = _Active(key, Role(record.role), record.flags, decoder)
        return None

    # -- output -------------------------------------------------------------------------
    def is_current(self, key: RequestKey) -> bool:
        active = self._active.get(key.request_id)
        return active is not None and active.key == key

    @property
    def active_count(self) -> int:
        return len(self._active)

    def stdout(self, key: RequestKey, data: bytes) -> bytes:
        """STDOUT bytes for the request (split into records of at most 65535 bytes).
        Empty data is no record at all: a stream is ended only by :meth:`end_request`."""
        if not data or not self.is_current(key):
            return b""
        return encode_stream(RecordType.STDOUT, key.request_id, data)

    def stderr(self, key: RequestKey, data: bytes) -> bytes:
        if not data or not self.is_current(key):
            return b""
        self._active[key.request_id].wrote_stderr = True
        return encode_stream(RecordType.STDERR, key.request_id, data)

    def end_request(
        self,
        key: RequestKey,
        app_status: int,
        protocol_status: ProtocolStatus = ProtocolStatus.REQUEST_COMPLETE,
    ) -> bytes:
        """End the output streams and the request (§5.5); the id becomes inactive.

        §6.1: STDOUT is always ended, even when nothing was written; STDERR is ended only
        if it was used. A refusal (any status but REQUEST_COMPLETE) is END_REQUEST alone,
        as libfcgi sends it. Nothing is produced for a request that already ended."""
        if not self.is_current(key):
            return b""
        active = self._active.pop(key.request_id)
        if not active.keep_conn:
            self.must_close = True  # §3.5: FCGI_KEEP_CONN clear: close after this request
        # appStatus is an unsigned 32-bit field: a negative exit code is its two's complement,
        # as a C program's would be.
        status = app_status & 0xFFFFFFFF
        return _closing_records(key.request_id, status, int(protocol_status), active.wrote_stderr)


@functools.lru_cache(maxsize=256)
def _closing_records(
    request_id: int, app_status: int, protocol_status: int, stderr_used: bool
) -> bytes:
    """The records that end a request (see :meth:`ApplicationConnection.end_request`).

    They are the same bytes for the same id and statuses, and a web server that does not
    multiplex uses one id for everything (nginx: always 1), so they are encoded once."""
    out = b""
    if protocol_status == ProtocolStatus.REQUEST_COMPLETE:
        out = encode(Stdout(request_id, b""))
        if stderr_used:
            out += encode(Stderr(request_id, b""))
    return out + encode(EndRequest(request_id, app_status, protocol_status))


@functools.lru_cache(maxsize=256)
def _fixed_records(record_type: int, request_id: int, role: int = 0, flags: int = 0) -> bytes:
    """Records that are the same bytes every time for the same id: BEGIN_REQUEST (with
    its role and flags) and the empty record that ends a stream. A web server that does
    not multiplex uses id 1 for everything, so each is encoded once."""
    if record_type == RecordType.BEGIN_REQUEST:
        return encode(BeginRequest(request_id, role, flags))
    return encode(_STREAM_RECORDS[record_type](request_id, b""))


_STREAM_RECORDS: dict[int, type[StreamRecord]] = {
    RecordType.PARAMS: Params,
    RecordType.STDIN: Stdin,
}


# ======================================================================================
# The web server's end
# ======================================================================================
class ExchangeState(enum.Enum):
    IDLE = "IDLE"  # no request on the connection: BEGIN_REQUEST may go
    ACTIVE = "ACTIVE"  # our request is out; its output is coming
    CLOSED = "CLOSED"  # the request ended without KEEP_CONN, or the peer closed
    ERROR = "ERROR"  # the peer broke the protocol: close


# What the web server's end may see, by state. The management answers may come at any
# time (§4.1) and do not change the state; END_REQUEST ends the exchange.
EXCHANGE_TRANSITIONS: dict[tuple[ExchangeState, type], ExchangeState] = {
    (ExchangeState.ACTIVE, Stdout): ExchangeState.ACTIVE,
    (ExchangeState.ACTIVE, Stderr): ExchangeState.ACTIVE,
    (ExchangeState.ACTIVE, EndRequest): ExchangeState.IDLE,  # CLOSED without KEEP_CONN
}


WebServerEvent = Stdout | Stderr | EndRequest | GetValuesResult | UnknownType | ConnectionEnded


class WebServerConnection:
    """The web server's end of one connection, one request at a time (as nginx and
    lighttpd do: no multiplexing, so each request owns its connection while it runs)."""

    def __init__(self, max_buffer: int = 1 << 20) -> None:
        self._reader = RecordReader(max_buffer)
        self.state = ExchangeState.IDLE
        self.request_id = 0
        self.keep_conn = False
        self._eof = False
        self._stdin_open = False
        self._stdout_ended = False
        self._stderr_ended = False

    # -- what we send -------------------------------------------------------------------
    def begin(
        self,
        params: Mapping[str, bytes],
        *,
        request_id: int = 1,
        keep_conn: bool = True,
        role: Role = Role.RESPONDER,
        encoded: bytes = b"",
    ) -> bytes:
        """BEGIN_REQUEST, the PARAMS stream and its empty end (App. B, example 1).
        ``encoded`` holds more pairs, already encoded (encode_pairs), sent before ``params``.

        Request id 1 every time: with one request per connection at a time, there is
        nothing to tell apart, and §3.3 asks web servers to keep ids small."""
        if self.state is not ExchangeState.IDLE:
            raise FastCGIError(f"begin() with the connection {self.state.name}")
        self.state = ExchangeState.ACTIVE
        self.request_id = request_id
        self.keep_conn = keep_conn
        self._stdin_open = True
        self._stdout_ended = self._stderr_ended = False
        pairs = encoded + encode_pairs(
            [(name.encode("latin-1"), value) for name, value in params.items()]
        )
        flags = FCGI_KEEP_CONN if keep_conn else 0
        return b"".join(
            (
                _fixed_records(RecordType.BEGIN_REQUEST, request_id, role, flags),
                encode(Params(request_id, pairs)) if pairs else b"",
                _fixed_records(RecordType.PARAMS, request_id),
            )
        )

    def stdin(self, data: bytes) -> bytes:
        """A piece of the body; ``b""`` ends STDIN, which §6.1 requires even with no body."""
        if not self._stdin_open:
            raise FastCGIError("STDIN after it ended, or with no request active")
        if not data:
            self._stdin_open = False
            return _fixed_records(RecordType.STDIN, self.request_id)
        return encode(Stdin(self.request_id, data))

    def abort(self) -> bytes:
        """§5.4: ask the application to stop; it still answers with END_REQUEST."""
        if self.state is not ExchangeState.ACTIVE:
            return b""
        self._stdin_open = False
        return encode(AbortRequest(self.request_id))

    @staticmethod
    def get_values(*names: bytes) -> bytes:
        return encode(GetValues(names))

    # -- what we receive ----------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if data:
            self._reader.receive_data(data)
        else:
            self._eof = True

    @property
    def last_header(self) -> bytes:
        return self._reader.last_header

    def next_event(self) -> WebServerEvent | Signal:
        try:
            return self._next_event()
        except FastCGIError:
            self.state = ExchangeState.ERROR
            raise

    def _next_event(self) -> WebServerEvent | Signal:
        record = self._reader.next_record()
        if isinstance(record, Signal):
            if not self._eof:
                return NEED_DATA
            if self._reader.buffered:
                raise FastCGIError("the application closed the connection inside a record")
            self.state = ExchangeState.CLOSED
            return ConnectionEnded()
        if isinstance(record, GetValuesResult | UnknownType):
            return record  # management answers: any time, any state (§4.1, §4.2)
        if not isinstance(record, Stdout | Stderr | EndRequest):
            raise FastCGIError(f"{type(record).__name__} sent by an application")
        if record.request_id != self.request_id or self.state is not ExchangeState.ACTIVE:
            raise FastCGIError(
                f"a record for request {record.request_id}; the request in progress is "
                f"{self.request_id if self.state is ExchangeState.ACTIVE else 'none'}"
            )
        new_state = EXCHANGE_TRANSITIONS[self.state, type(record)]
        if isinstance(record, Stdout | Stderr):
            attribute = "_stdout_ended" if isinstance(record, Stdout) else "_stderr_ended"
            if getattr(self, attribute):
                raise FastCGIError(f"{type(record).__name__.upper()} after its stream ended")
            if not record.data:
                setattr(self, attribute, True)
        elif isinstance(record, EndRequest):
            self._stdin_open = False
            if not self.keep_conn:
                new_state = ExchangeState.CLOSED
        self.state = new_state
        return record

    @property
    def stdin_open(self) -> bool:
        return self._stdin_open

    @property
    def can_reuse(self) -> bool:
        """The request ended with KEEP_CONN and the connection is ready for the next."""
        return self.state is ExchangeState.IDLE and not self._eof and not self._reader.buffered
