"""``--trace`` for FastCGI: every record on the wire, decoded, with its header in hex.

Both sides of the era (the application server and the HTTP gateway) hand this tracer the
raw bytes they send and receive on a FastCGI socket, exactly as the HTTP servers hand
theirs to :meth:`servers.trace.Tracer.wire`. It decodes them with its own
:class:`~servers.fastcgi.records.RecordReader`, one per connection and direction, so the
trace shows what was really on the wire, not what the protocol code believed it sent::

    c4 < [fcgi] 01 01 00 01 00 08 00 00  BEGIN_REQUEST id=1 role=RESPONDER flags=KEEP_CONN
    c4 < [fcgi] 01 04 00 01 01 2c 04 00  PARAMS id=1 content=300 padding=4
    c4 < [fcgi]     REQUEST_METHOD=GET
    c4 < [fcgi] 01 04 00 01 00 00 00 00  PARAMS id=1 (end of stream)
    c4 > [fcgi] 01 06 00 01 00 5e 02 00  STDOUT id=1 <94 bytes>
    c4 > [fcgi] 01 03 00 01 00 08 00 00  END_REQUEST id=1 app_status=0 REQUEST_COMPLETE

The eight hex bytes are the header of §3.3 (version, type, requestId, contentLength,
paddingLength, reserved): a student can check every field by hand. Direction follows the
course's rule: ``<`` towards the application, ``>`` back from it, on both sides.

Name-value pairs are decoded across record boundaries (a pair may be split, §3.3), and
shown once complete. A trace must never fail the server: bytes it cannot decode are
reported as such, and that direction is not decoded any further.
"""

from __future__ import annotations

import threading

from ..trace import Tracer, escape, show_bytes
from .records import (
    AbortRequest,
    BeginRequest,
    EndRequest,
    FastCGIError,
    GetValues,
    GetValuesResult,
    PairDecoder,
    Params,
    ProtocolStatus,
    Record,
    RecordReader,
    Role,
    StreamRecord,
    UnknownRecord,
    UnknownType,
)

__all__ = ["RecordTracer", "describe"]

_LABEL = "fcgi"


class RecordTracer:
    """Decodes and prints the records of many connections; thread-safe; free when off."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self._lock = threading.Lock()
        self._readers: dict[tuple[int, str], RecordReader | None] = {}
        self._pairs: dict[tuple[int, str, int], PairDecoder] = {}

    @property
    def enabled(self) -> bool:
        return self.tracer.enabled

    def wire(self, conn: int, direction: str, data: bytes) -> None:
        if not self.tracer.enabled or not data:
            return
        with self._lock:  # the lines of one chunk of bytes stay together
            key = (conn, direction)
            reader = self._readers.setdefault(key, RecordReader(max_buffer=1 << 24))
            if reader is None:
                return
            reader.receive_data(data)
            try:
                while isinstance(record := reader.next_record(), Record):
                    self._show(conn, direction, reader.last_header, record)
            except FastCGIError as error:
                self.tracer.event(conn, direction, _LABEL, f"undecodable: {error}")
                self._readers[key] = None

    def forget(self, conn: int) -> None:
        """The connection closed: drop its decoders."""
        with self._lock:
            for key in [k for k in self._readers if k[0] == conn]:
                del self._readers[key]
            for pair_key in [k for k in self._pairs if k[0] == conn]:
                del self._pairs[pair_key]

    def _show(self, conn: int, direction: str, header: bytes, record: Record) -> None:
        hex_header = header.hex(" ")
        lines = [f"{hex_header}  {describe(record, header)}"]
        if isinstance(record, Params):
            key = (conn, direction, record.request_id)
            # Generous caps: the tracer shows what arrived, the protocol code refuses it.
            decoder = self._pairs.setdefault(key, PairDecoder(1 << 20, 1 << 24, 1 << 26))
            try:
                pairs = decoder.feed(record.data)
                if not record.data:
                    decoder.finish()
                    del self._pairs[key]
            except FastCGIError as error:
                pairs = []
                lines.append(f"    (pairs undecodable: {error})")
                self._pairs.pop(key, None)
            lines += [f"    {escape(name)}={show_bytes(value, 72)}" for name, value in pairs]
        elif isinstance(record, GetValues):
            lines += [f"    {escape(name)}" for name in record.names]
        elif isinstance(record, GetValuesResult):
            lines += [f"    {escape(name)}={escape(value)}" for name, value in record.pairs]
        for line in lines:
            self.tracer.event(conn, direction, _LABEL, line)


def describe(record: Record, header: bytes) -> str:
    """One line: the type by the spec's name, the request id, and the body's meaning
    (``header`` is the record's 8 raw header bytes, for its sizes)."""
    content_length = int.from_bytes(header[4:6], "big")
    sizes = f"content={content_length} padding={header[6]}"
    if isinstance(record, StreamRecord):
        name = type(record).__name__.upper()
        if not record.data:
            return f"{name} id={record.request_id} (end of stream)"
        shown = "" if isinstance(record, Params) else " " + show_bytes(record.data)
        return f"{name} id={record.request_id} {sizes}{shown}"
    if isinstance(record, BeginRequest):
        role = Role(record.role).name if record.role in set(Role) else str(record.role)
        flags = "KEEP_CONN" if record.keep_conn else "0"
        return f"BEGIN_REQUEST id={record.request_id} role={role} flags={flags}"
    if isinstance(record, AbortRequest):
        return f"ABORT_REQUEST id={record.request_id}"
    if isinstance(record, EndRequest):
        status = record.protocol_status
        shown_status = ProtocolStatus(status).name if status in set(ProtocolStatus) else status
        return f"END_REQUEST id={record.request_id} app_status={record.app_status} {shown_status}"
    if isinstance(record, GetValues):
        return f"GET_VALUES id=0 {sizes}"
    if isinstance(record, GetValuesResult):
        return f"GET_VALUES_RESULT id=0 {sizes}"
    if isinstance(record, UnknownType):
        return f"UNKNOWN_TYPE id=0 type={record.record_type}"
    assert isinstance(record, UnknownRecord)
    return f"type {record.record_type} (unknown) id={record.request_id} {sizes}"
