"""The FastCGI 1.0 record codec (Open Market, 1996): bytes to records and back, no I/O.

Everything FastCGI says travels in **records**. Each starts with the same 8-byte header
(spec §3.3, §8), all integers big-endian::

     0         1         2         3         4         5         6         7
    +---------+---------+---------+---------+---------+---------+---------+---------+
    | version |  type   |     requestId     |   contentLength   | padding | reserved|
    +---------+---------+---------+---------+---------+---------+---------+---------+
    | contentData: contentLength bytes (0..65535) ... | paddingData: padding bytes   |

The type says what the content means; the request id says which request it belongs to
(0 for management records, which concern the connection itself). Three kinds of record:

* **discrete** records carry one fixed-size body: BEGIN_REQUEST, ABORT_REQUEST,
  END_REQUEST, and the management records GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE;
* **stream** records (PARAMS, STDIN, STDOUT, STDERR, DATA) carry a piece of a byte
  stream; a stream is any number of non-empty records ended by one **empty** record.
  Record boundaries mean nothing: a name-value pair may be split across two records;
* PARAMS and GET_VALUES content is a list of **name-value pairs** (§3.4), each length
  written in 1 byte (up to 127) or 4 bytes with the top bit set.

Like the HTTP core, the codec is sans-IO: :class:`RecordReader` takes bytes and gives
records (or NEED_DATA, or raises :class:`FastCGIError`), and :func:`encode` turns a record
into bytes. Both sides of the protocol (our application server and our HTTP gateway) use
the same module, as both sides of HTTP use servers/http.

Bounds (the reason libfcgi got CVE-2025-23016: a 4-byte pair length, trusted, overflowed
an allocation): content is at most 65535 bytes by construction; pair lengths, the pairs
of one request and the buffered bytes are capped here, before anything is allocated.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..http.events import NEED_DATA, Signal

__all__ = [
    "FCGI_ABORT_REQUEST",
    "FCGI_BEGIN_REQUEST",
    "FCGI_DATA",
    "FCGI_END_REQUEST",
    "FCGI_GET_VALUES",
    "FCGI_GET_VALUES_RESULT",
    "FCGI_HEADER_LEN",
    "FCGI_KEEP_CONN",
    "FCGI_MAX_CONNS",
    "FCGI_MAX_LENGTH",
    "FCGI_MAX_REQS",
    "FCGI_MPXS_CONNS",
    "FCGI_NULL_REQUEST_ID",
    "FCGI_PARAMS",
    "FCGI_STDERR",
    "FCGI_STDIN",
    "FCGI_STDOUT",
    "FCGI_UNKNOWN_TYPE",
    "FCGI_VERSION_1",
    "AbortRequest",
    "BeginRequest",
    "Data",
    "EndRequest",
    "FastCGIError",
    "GetValues",
    "GetValuesResult",
    "PairDecoder",
    "Params",
    "ProtocolStatus",
    "Record",
    "RecordReader",
    "RecordType",
    "Role",
    "Stderr",
    "Stdin",
    "Stdout",
    "StreamRecord",
    "UnknownRecord",
    "UnknownType",
    "decode_pairs",
    "encode",
    "encode_pairs",
    "encode_stream",
]

# §8: the constants, with the spec's names.
FCGI_VERSION_1 = 1
FCGI_HEADER_LEN = 8
FCGI_NULL_REQUEST_ID = 0  # management records travel on request id 0
FCGI_KEEP_CONN = 1  # BEGIN_REQUEST flag: keep the connection open after this request
FCGI_MAX_LENGTH = 0xFFFF  # the largest content of one record


class RecordType(enum.IntEnum):
    BEGIN_REQUEST = 1
    ABORT_REQUEST = 2
    END_REQUEST = 3
    PARAMS = 4
    STDIN = 5
    STDOUT = 6
    STDERR = 7
    DATA = 8
    GET_VALUES = 9
    GET_VALUES_RESULT = 10
    UNKNOWN_TYPE = 11


# The spec's own names (§8), for grepping the code against the spec and libfcgi's fastcgi.h.
FCGI_BEGIN_REQUEST = RecordType.BEGIN_REQUEST
FCGI_ABORT_REQUEST = RecordType.ABORT_REQUEST
FCGI_END_REQUEST = RecordType.END_REQUEST
FCGI_PARAMS = RecordType.PARAMS
FCGI_STDIN = RecordType.STDIN
FCGI_STDOUT = RecordType.STDOUT
FCGI_STDERR = RecordType.STDERR
FCGI_DATA = RecordType.DATA
FCGI_GET_VALUES = RecordType.GET_VALUES
FCGI_GET_VALUES_RESULT = RecordType.GET_VALUES_RESULT
FCGI_UNKNOWN_TYPE = RecordType.UNKNOWN_TYPE

# §4.1: the three variables a web server may ask about with GET_VALUES.
FCGI_MAX_CONNS = b"FCGI_MAX_CONNS"  # connections the application accepts at once
FCGI_MAX_REQS = b"FCGI_MAX_REQS"  # requests it accepts at once, over all connections
FCGI_MPXS_CONNS = b"FCGI_MPXS_CONNS"  # "1" if it takes several requests on one connection


class Role(enum.IntEnum):
    RESPONDER = 1  # §6.2: the CGI role: params and stdin in, a response out
    AUTHORIZER = 2  # §6.3: answers allow (200) or deny for a request
    FILTER = 3  # §6.4: a responder that also gets a file on the DATA stream


class ProtocolStatus(enum.IntEnum):
    REQUEST_COMPLETE = 0
    CANT_MPX_CONN = 1  # a second request on a connection that takes one at a time
    OVERLOADED = 2  # out of some resource: try later
    UNKNOWN_ROLE = 3  # a role this application does not play


_HEADER = struct.Struct("!BBHHBx")  # version, type, requestId, contentLength, padding
_BEGIN_BODY = struct.Struct("!HB5x")  # role, flags, reserved[5]
_END_BODY = struct.Struct("!IB3x")  # appStatus, protocolStatus, reserved[3]
_UNKNOWN_BODY = struct.Struct("!B7x")  # type, reserved[7]
_LENGTH4 = struct.Struct("!I")  # a pair length of 128 or more (§3.4)
_PADDING = [bytes(n) for n in range(8)]


class FastCGIError(Exception):
    """The peer broke the record protocol. The only safe answer is to close the connection."""


# ----------------------------------------------------------------------------------------
# The records, one frozen dataclass per type (STYLE rule 4), named as the spec names them.
@dataclass(frozen=True, slots=True)
class BeginRequest:
    request_id: int
    role: int
    flags: int = 0

    @property
    def keep_conn(self) -> bool:
        return bool(self.flags & FCGI_KEEP_CONN)


@dataclass(frozen=True, slots=True)
class AbortRequest:
    request_id: int


@dataclass(frozen=True, slots=True)
class EndRequest:
    request_id: int
    app_status: int = 0  # what a CGI program would have returned from main()
    protocol_status: int = ProtocolStatus.REQUEST_COMPLETE


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A piece of one of the five streams; empty ``data`` ends the stream."""

    request_id: int
    data: bytes = b""

    def __repr__(self) -> str:
        shown = f"<{len(self.data)} bytes>" if len(self.data) > 32 else repr(self.data)
        return f"{type(self).__name__}(request_id={self.request_id}, data={shown})"


class Params(StreamRecord):
    """Name-value pairs: the CGI meta-variables of one request (§5.2)."""

    __slots__ = ()


class Stdin(StreamRecord):
    """The request body (§5.3)."""

    __slots__ = ()


class Data(StreamRecord):
    """The filter role's extra file (§5.3)."""

    __slots__ = ()


class Stdout(StreamRecord):
    """The response, in CGI format: header lines, a blank line, the body (§5.3, §6.1)."""

    __slots__ = ()


class Stderr(StreamRecord):
    """Error output for the web server's log (§5.3)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class GetValues:
    """§4.1: which of these variables does the application know, and their values?"""

    names: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class GetValuesResult:
    pairs: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class UnknownType:
    """§4.2: the answer to a management record of a type the receiver does not know."""

    record_type: int


@dataclass(frozen=True, slots=True)
class UnknownRecord:
    """A record of a type this codec does not know, kept whole so the caller can answer."""

    record_type: int
    request_id: int
    content: bytes


Record = (
    BeginRequest
    | AbortRequest
    | EndRequest
    | StreamRecord
    | GetValues
    | GetValuesResult
    | UnknownType
    | UnknownRecord
)

_STREAM_CLASSES: dict[int, type[StreamRecord]] = {
    RecordType.PARAMS: Params,
    RecordType.STDIN: Stdin,
    RecordType.STDOUT: Stdout,
    RecordType.STDERR: Stderr,
    RecordType.DATA: Data,
}
_STREAM_TYPES = {cls: record_type for record_type, cls in _STREAM_CLASSES.items()}


# ----------------------------------------------------------------------------------------
# Name-value pairs (§3.4)
def _encode_length(length: int) -> bytes:
    if length <= 127:
        return bytes((length,))  # high bit 0: the length itself
    if length > 0x7FFFFFFF:
        raise ValueError(f"a name or value of {length} bytes cannot be encoded")
    return _LENGTH4.pack(length | 0x80000000)  # high bit 1: 31 bits of length


def encode_pairs(pairs: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]) -> bytes:
    """nameLength, valueLength, name, value: the four layouts 11, 14, 41, 44 fall out of
    each length choosing its own size."""
    parts = []
    for name, value in pairs:
        if len(name) < 0x80 and len(value) < 0x80:
            parts.append(bytes((len(name), len(value))))  # layout 11: nearly every pair
        else:
            parts.append(_encode_length(len(name)) + _encode_length(len(value)))
        parts += (name, value)
    return b"".join(parts)


class PairDecoder:
    """Decodes a stream of name-value pairs incrementally: a pair may be split anywhere,
    even inside a 4-byte length, because PARAMS is a stream (§3.3).

    The caps are checked on the *declared* lengths, before waiting for (or allocating)
    the bytes they announce: a peer cannot make us buffer 2 GiB by declaring it.

    Speed matters here: a request from nginx carries some twenty pairs, and decoding them
    was one of the largest costs of a request in our application server (py-spy under
    wrk). So the bytes are read in place, with an index, and only the unfinished tail of
    a chunk (usually nothing) is kept for the next one.
    """

    def __init__(
        self, max_name: int = 1024, max_value: int = 65536, max_total: int = 256 * 1024
    ) -> None:
        self.max_name = max_name
        self.max_value = max_value
        self.max_total = max_total
        self.total = 0
        self._rest = b""  # the start of a pair whose end has not arrived yet

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Add stream bytes; return every pair now complete."""
        self.total += len(data)
        if self.total > self.max_total:
            raise FastCGIError(f"name-value pairs over {self.max_total} bytes in one stream")
        buf = self._rest + data if self._rest else data
        pairs, used = self._pairs_in(buf)
        self._rest = buf[used:]
        return pairs

    def finish(self) -> None:
        """The stream ended: a partial pair left over is an error."""
        if self._rest:
            raise FastCGIError(f"name-value stream ended inside a pair ({len(self._rest)} bytes)")

    def _pairs_in(self, buf: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
        """Every complete pair of ``buf``, and where the first incomplete one starts."""
        pairs: list[tuple[bytes, bytes]] = []
        # A length written in one byte is at most 127: under caps of 127 or more it can
        # never break them, so the common layout skips the check (one less pair of
        # attribute reads and comparisons per pair, twenty pairs per request).
        short_fits = self.max_name >= 0x7F and self.max_value >= 0x7F
        position, end = 0, len(buf)
        while position + 1 < end:  # two bytes at least: the shortest pair (layout 11)
            name_length, value_length = buf[position], buf[position + 1]
            if name_length < 0x80 and value_length < 0x80 and short_fits:
                name_start = position + 2  # layout 11, both lengths in one byte: nearly all
            else:
                lengths = self._long_lengths(buf, position)
                if lengths is None:
                    break
                name_length, value_length, name_start = lengths
                if name_length > self.max_name or value_length > self.max_value:
                    raise FastCGIError(
                        f"a name-value pair of {name_length} + {value_length} bytes is over "
                        f"the cap ({self.max_name} + {self.max_value})"
                    )
            name_end = name_start + name_length
            value_end = name_end + value_length
            if value_end > end:
                break  # declared, within the caps, not all here yet
            pairs.append((buf[name_start:name_end], buf[name_end:value_end]))
            position = value_end
        return pairs, position

    @staticmethod
    def _long_lengths(buf: bytes, position: int) -> tuple[int, int, int] | None:
        """Layouts 14, 41 and 44: (name length, value length, where the name starts), or
        None if the lengths themselves are not all here yet."""
        lengths = []
        for _ in range(2):
            if len(buf) <= position:
                return None
            if buf[position] < 0x80:
                lengths.append(buf[position])
                position += 1
            elif len(buf) < position + 4:
                return None
            else:
                # High bit set: the length is the other 31 bits of four bytes (§3.4).
                lengths.append(_LENGTH4.unpack_from(buf, position)[0] & 0x7FFFFFFF)
                position += 4
        return lengths[0], lengths[1], position


def decode_pairs(content: bytes, **caps: int) -> list[tuple[bytes, bytes]]:
    decoder = PairDecoder(**caps)
    pairs = decoder.feed(content)
    decoder.finish()
    return pairs


# ----------------------------------------------------------------------------------------
# Records to bytes
def _frame(record_type: int, request_id: int, content: bytes) -> bytes:
    if len(content) > FCGI_MAX_LENGTH:
        # Only streams can be split; a discrete record this large cannot be said at all.
        raise ValueError(f"{len(content)} bytes do not fit in one record (max {FCGI_MAX_LENGTH})")
    # §3.3 "Padding": senders should keep records 8-byte aligned; receivers skip padding.
    padding = -len(content) % 8
    header = _HEADER.pack(FCGI_VERSION_1, record_type, request_id, len(content), padding)
    return b"".join((header, content, _PADDING[padding]))


def encode_stream(record_type: int, request_id: int, data: bytes) -> bytes:
    """Stream bytes as records of ``record_type``: what :func:`encode` does for a
    StreamRecord, without making one first. A response is sent this way on every request,
    so the record object (a frozen dataclass, about half a microsecond to make) is skipped."""
    if len(data) <= FCGI_MAX_LENGTH:  # one record; empty data ends the stream
        return _frame(record_type, request_id, data)
    return b"".join(
        _frame(record_type, request_id, data[i : i + FCGI_MAX_LENGTH])
        for i in range(0, len(data), FCGI_MAX_LENGTH)
    )


def encode(record: Record) -> bytes:
    """The bytes of one record; a stream record over 65535 bytes becomes several."""
    if isinstance(record, StreamRecord):
        return encode_stream(_STREAM_TYPES[type(record)], record.request_id, record.data)
    if isinstance(record, BeginRequest):
        body = _BEGIN_BODY.pack(record.role, record.flags)
        return _frame(RecordType.BEGIN_REQUEST, record.request_id, body)
    if isinstance(record, AbortRequest):
        return _frame(RecordType.ABORT_REQUEST, record.request_id, b"")
    if isinstance(record, EndRequest):
        body = _END_BODY.pack(record.app_status, record.protocol_status)
        return _frame(RecordType.END_REQUEST, record.request_id, body)
    if isinstance(record, GetValues):
        content = encode_pairs([(name, b"") for name in record.names])
        return _frame(RecordType.GET_VALUES, FCGI_NULL_REQUEST_ID, content)
    if isinstance(record, GetValuesResult):
        content = encode_pairs(record.pairs)
        return _frame(RecordType.GET_VALUES_RESULT, FCGI_NULL_REQUEST_ID, content)
    if isinstance(record, UnknownType):
        body = _UNKNOWN_BODY.pack(record.record_type)
        return _frame(RecordType.UNKNOWN_TYPE, FCGI_NULL_REQUEST_ID, body)
    return _frame(record.record_type, record.request_id, record.content)


# ----------------------------------------------------------------------------------------
# Bytes to records
class RecordReader:
    """Turns received bytes into records: returns a record, NEED_DATA, or raises.

    It checks what the record layer alone can check (version, the sizes of discrete
    bodies, which types may use request id 0). What a record *means* for a request
    (is this id active? is the stream already ended?) is the connection's business.

    The bytes are kept as they came, with a read position: a record's content is one
    slice of them, and a chunk that holds whole records (nginx sends a request's records
    in one write) is never copied as a whole. Only a record cut in two by the network
    makes the reader join its start with the next chunk.
    """

    def __init__(self, max_buffer: int = 1 << 20) -> None:
        self._buf = b""
        self._position = 0  # where the next record starts in _buf
        self.max_buffer = max_buffer  # unparsed bytes we are willing to hold
        self.last_header = b""  # the raw 8 header bytes of the last record, for the trace

    def receive_data(self, data: bytes) -> None:
        if self._position == len(self._buf):
            self._buf, self._position = bytes(data), 0
        else:
            self._buf, self._position = self._buf[self._position :] + data, 0
        if len(self._buf) > self.max_buffer:
            raise FastCGIError(f"more than {self.max_buffer} bytes received and not yet read")

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._position

    def next_record(self) -> Record | Signal:
        buf, start = self._buf, self._position
        if len(buf) - start < FCGI_HEADER_LEN:
            return NEED_DATA
        version, record_type, request_id, length, padding = _HEADER.unpack_from(buf, start)
        if version != FCGI_VERSION_1:
            # libfcgi refuses any other version too: nothing after it can be trusted.
            raise FastCGIError(f"FastCGI version {version}; only version 1 exists")
        content_start = start + FCGI_HEADER_LEN
        content_end = content_start + length
        if len(buf) < content_end + padding:
            return NEED_DATA
        self._position = content_end + padding  # the padding is skipped, unread (§3.3)
        self.last_header = buf[start:content_start]
        stream_class = _STREAM_CLASSES.get(record_type)
        if stream_class is not None and request_id != FCGI_NULL_REQUEST_ID:
            # Three records of a request in four: made here, without the call to _decode.
            return stream_class(request_id, buf[content_start:content_end])
        return _decode(record_type, request_id, buf[content_start:content_end])


_MANAGEMENT_TYPES = frozenset(
    (RecordType.GET_VALUES, RecordType.GET_VALUES_RESULT, RecordType.UNKNOWN_TYPE)
)


def _decode(record_type: int, request_id: int, content: bytes) -> Record:
    """Every record but a stream record of a request (next_record makes those itself)."""
    management = record_type in _MANAGEMENT_TYPES
    if management != (request_id == FCGI_NULL_REQUEST_ID) and 1 <= record_type <= 11:
        # §3.3: management records use id 0, application records never do.
        kind = "management" if management else "application"
        raise FastCGIError(f"{RecordType(record_type).name} ({kind}) on request id {request_id}")
    if record_type == RecordType.BEGIN_REQUEST:
        _expect_length(record_type, content, _BEGIN_BODY.size)
        role, flags = _BEGIN_BODY.unpack(content)
        return BeginRequest(request_id, role, flags)
    if record_type == RecordType.ABORT_REQUEST:
        _expect_length(record_type, content, 0)  # §5.4: the header says it all
        return AbortRequest(request_id)
    if record_type == RecordType.END_REQUEST:
        _expect_length(record_type, content, _END_BODY.size)
        app_status, protocol_status = _END_BODY.unpack(content)
        return EndRequest(request_id, app_status, protocol_status)
    if record_type == RecordType.GET_VALUES:
        return GetValues(tuple(name for name, _ in decode_pairs(content)))
    if record_type == RecordType.GET_VALUES_RESULT:
        return GetValuesResult(tuple(decode_pairs(content)))
    if record_type == RecordType.UNKNOWN_TYPE:
        _expect_length(record_type, content, _UNKNOWN_BODY.size)
        return UnknownType(_UNKNOWN_BODY.unpack(content)[0])
    return UnknownRecord(record_type, request_id, content)


def _expect_length(record_type: int, content: bytes, size: int) -> None:
    if len(content) != size:
        raise FastCGIError(
            f"{RecordType(record_type).name} body of {len(content)} bytes; the spec says {size}"
        )
