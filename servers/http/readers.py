"""Readers: turn the bytes a client sent into request events, strictly (RFC 9112).

Every reader has exactly three outcomes, and every caller relies on that:

1. it **returns an event** (and removes the bytes it used from the buffer);
2. it **returns None**: "need more data", and the buffer is left for the next call, so
   the same reader runs again when more bytes arrive; partial input is normal, not an
   error, and the tests feed every reader one byte at a time to prove it;
3. it **raises RemoteProtocolError** with the status that answers the client.

A reader never blocks and never does I/O: the buffer is a ``bytearray`` owned by the
connection, and end-of-input is a flag passed in (``eof``). Deleting from the front of a
bytearray is cheap in CPython (it moves a start pointer), so readers simply ``del`` what
they consumed.

The request head is read in one piece: we wait for the blank line that ends it
(CRLF CRLF), bounded by the limits, then check every line. While waiting, each new byte is
scanned once for a bare LF or CR, so a client that uses bare LF (waitress
CVE-2019-16785) is refused as soon as it sends one, not when it times out.
"""

from __future__ import annotations

import re

from .events import (
    Data,
    EndOfMessage,
    Header,
    Headers,
    Limits,
    RemoteProtocolError,
    Request,
)
from .grammar import (
    MAX_CHUNK_SIZE_DIGITS,
    OWS,
    absolute_form_re,
    chunk_line_re,
    content_length_re,
    field_line_re,
    field_lines_re,
    forbidden_in_value_re,
    head_re,
    host_re,
    request_line_re,
    token_re,
)

__all__ = ["BodyReader", "ChunkedReader", "ContentLengthReader", "HeadReader", "parse_field_lines"]

CRLF = b"\r\n"


def _check_line_ends(buf: bytearray | bytes, start: int, end: int) -> None:
    """Refuse a bare LF or a bare CR in buf[start:end] (RFC 9112 §2.2).

    A CR at the very end of ``buf`` may still be followed by its LF, so it is left for the
    next call. Only HTTP's own line end, CRLF, may separate lines.
    """
    lf = buf.find(b"\n", start, end)
    while lf != -1:
        if lf == 0 or buf[lf - 1] != 0x0D:
            raise RemoteProtocolError("bare LF in the request; HTTP/1.1 lines end with CRLF")
        lf = buf.find(b"\n", lf + 1, end)
    cr = buf.find(b"\r", start, end)
    while cr != -1:
        if cr + 1 < len(buf) and buf[cr + 1] != 0x0A:
            raise RemoteProtocolError("bare CR in the request; HTTP/1.1 lines end with CRLF")
        cr = buf.find(b"\r", cr + 1, end)


def parse_field_lines(lines: list[bytes], limits: Limits) -> Headers:
    """Check and split header (or trailer) field lines: RFC 9112 §5, RFC 9110 §5.5."""
    if len(lines) > limits.max_header_count:
        raise RemoteProtocolError(
            f"{len(lines)} header fields; this server accepts {limits.max_header_count}", 431
        )
    fields: list[Header] = []
    for line in lines:
        if len(line) > limits.max_field_size:
            raise RemoteProtocolError(
                f"a header field of {len(line)} bytes; the limit is {limits.max_field_size}", 431
            )
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 §5.2: obs-fold. A server MUST either reject it or replace it by SP;
            # rejecting is the choice that cannot disagree with another parser.
            raise RemoteProtocolError("obsolete line folding (a header line starting with space)")
        match = field_line_re.fullmatch(line)
        if match is None:
            # Covers "Name : value" (RFC 9112 §5.1 MUST reject), names that are not tokens
            # ("Transfer-Encoding\xa0"), and lines with no colon at all.
            raise RemoteProtocolError(f"malformed header field line {_show(line)}")
        value = match["value"].strip(OWS)
        if forbidden_in_value_re.search(value):
            raise RemoteProtocolError(f"control character in the value of {_show(match['name'])}")
        fields.append((match["name"].lower(), value))
    return Headers(fields)


def _split_field_lines(lines: list[bytes], limits: Limits) -> Headers:
    """parse_field_lines() for a header section already matched whole by field_lines_re:
    every line is known to be ``token ":" value`` with no forbidden byte, so what is left
    is the limits and the split. One regex over the section instead of two per line is
    most of the core's parsing time for a small request.

    A plain loop, because it is the cheapest spelling: ``max(map(len, lines))`` alone
    costs more than splitting a one-line section (max() parses its arguments slowly), and
    a generator feeding a comprehension adds a frame per field."""
    if len(lines) > limits.max_header_count:
        return parse_field_lines(lines, limits)  # raises the 431 with its message
    max_field_size = limits.max_field_size
    fields = []
    for line in lines:
        if len(line) > max_field_size:
            return parse_field_lines(lines, limits)  # raises the 431 with its message
        name, _, value = line.partition(b":")
        fields.append((name.lower(), value.strip(OWS)))
    return Headers(fields)


def _show(raw: bytes, limit: int = 40) -> str:
    """A short, log-safe rendering of client bytes for an error message (no raw escapes)."""
    text = repr(raw[:limit])[1:]
    return text + ("..." if len(raw) > limit else "")


def _comma_list(values: list[bytes]) -> list[bytes]:
    """RFC 9110 §5.6.1: a list field, possibly split over several lines; empty items dropped."""
    items = []
    for value in values:
        for item in value.split(b","):
            item = item.strip(OWS)
            if item:
                items.append(item)
    return items


class HeadReader:
    """Reads one request head: request line and header section, up to the blank line."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._scanned = 0  # bytes of the buffer already checked for bare CR/LF

    def __call__(self, buf: bytearray, eof: bool) -> Request | None:
        # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request
        # line (old clients sent an extra CRLF after a POST body).
        while buf.startswith(CRLF):
            del buf[:2]
            self._scanned = 0
        scanned = self._scanned
        end = buf.find(b"\r\n\r\n", scanned - 3 if scanned > 3 else 0)
        if end == -1:
            self._check_partial(buf, eof)
            return None
        head = bytes(buf[: end + 2])  # up to the CRLF of the last field line
        del buf[: end + 4]
        self._scanned = 0
        # The fast path: one regex over the whole head proves its grammar, and with it that
        # no bare CR or LF hides anywhere (neither may appear in a target or a field value).
        # Any failure, or any limit touched, takes the careful path below, which finds the
        # exact fault and its status: the fast path decides nothing on its own.
        match = head_re.fullmatch(head)
        if match is not None:
            request = self._parse_fast(match, len(head))
            if request is not None:
                return request
        head = head[:-2]
        # Any CR or LF that is not part of a CRLF is refused (RFC 9112 §2.2). Counting is
        # one pass in C; only when the counts disagree do we look for where, for the message.
        crlfs = head.count(CRLF)
        if head.count(b"\n") != crlfs or head.count(b"\r") != crlfs:
            _check_line_ends(head + CRLF, 0, len(head) + 2)
        request_line, _, fields = head.partition(CRLF)
        return self._parse(request_line, fields)

    def _check_partial(self, buf: bytearray, eof: bool) -> None:
        """No complete head yet: fail early if it can never become a valid one."""
        _check_line_ends(buf, self._scanned, len(buf))
        # A CR at the very end is checked again once its next byte has arrived.
        self._scanned = len(buf) - (1 if buf.endswith(b"\r") else 0)
        limits = self.limits
        first_crlf = buf.find(CRLF)
        # A trailing CR may be the first half of the CRLF that ends a request line of
        # exactly max_request_line bytes: it is not counted, so that a line is accepted or
        # refused the same way however its bytes are split.
        unfinished = len(buf) - (1 if buf.endswith(b"\r") else 0)
        if first_crlf == -1 and unfinished > limits.max_request_line:
            raise RemoteProtocolError(
                f"request line longer than {limits.max_request_line} bytes", 414
            )
        if len(buf) > limits.max_request_line + limits.max_header_bytes + 4:
            raise RemoteProtocolError(
                f"header section larger than {limits.max_header_bytes} bytes", 431
            )
        if eof and buf:
            raise RemoteProtocolError("connection closed in the middle of a request head")

    def _parse_fast(self, match: re.Match[bytes], size: int) -> Request | None:
        """A head that matched ``head_re``: the limits, then the fields. None: the request
        line or the header section is over its limit (or the method is CONNECT), and the
        careful path says which. The fields are then exactly what _parse() hands to
        _split_field_lines(), which enforces the per-field limits the same way."""
        limits = self.limits
        # One call for the four groups, in their order in head_re (cheaper than four
        # lookups by name); the fields run to the end of the head, hence where they start.
        method, target, minor, fields = match.groups()
        fields_at = size - len(fields)
        if (
            fields_at - 2 > limits.max_request_line
            or size - fields_at > limits.max_header_bytes
            or method == b"CONNECT"
        ):
            return None
        # Every field line ends with CRLF: drop the last one, then split.
        headers = _split_field_lines(fields[:-2].split(CRLF), limits) if fields else Headers()
        version = b"1.0" if minor == b"0" else b"1.1"
        return _frame(method, target, version, headers, limits)

    def _parse(self, request_line: bytes, fields: bytes) -> Request:
        limits = self.limits
        if len(request_line) > limits.max_request_line:
            raise RemoteProtocolError(
                f"request line longer than {limits.max_request_line} bytes", 414
            )
        if fields and len(fields) + 2 > limits.max_header_bytes:
            raise RemoteProtocolError(
                f"header section larger than {limits.max_header_bytes} bytes", 431
            )
        match = request_line_re.fullmatch(request_line)
        if match is None:
            raise RemoteProtocolError(f"malformed request line {_show(request_line)}")
        method, target = match["method"], match["target"]
        # RFC 9110 §2.5: a different major version is not HTTP/1.x at all (505); a higher
        # minor version is answered as the highest 1.x we speak.
        if match["major"] != b"1":
            raise RemoteProtocolError(
                f"HTTP/{match['major'].decode()}.{match['minor'].decode()} is not spoken here",
                505,
            )
        version = b"1.0" if match["minor"] == b"0" else b"1.1"
        _check_target_form(method, target)

        if not fields:
            headers = Headers()
        elif field_lines_re.fullmatch(fields + CRLF):
            headers = _split_field_lines(fields.split(CRLF), limits)  # the common case
        else:
            headers = parse_field_lines(fields.split(CRLF), limits)  # finds the exact fault
        return _frame(method, target, version, headers, limits)


def _check_target_form(method: bytes, target: bytes) -> None:
    """RFC 9112 §3.2: the four forms of request-target, and which methods may use them."""
    if method == b"CONNECT":
        # §3.2.3 authority-form is for proxies; this is an origin server. Checked first,
        # so that "CONNECT / HTTP/1.1", which no form allows, is not let through.
        raise RemoteProtocolError("CONNECT is for proxies; this server is not one", 501)
    if target[:1] == b"/":
        return  # §3.2.1 origin-form: the usual case
    if target == b"*" and method == b"OPTIONS":
        return  # §3.2.4 asterisk-form, OPTIONS only
    if absolute_form_re.fullmatch(target):
        return  # §3.2.2 absolute-form: a server MUST accept it (Host is then ignored)
    raise RemoteProtocolError(f"request target {_show(target)} is in no form RFC 9112 allows")


_FRAMING_FIELDS = frozenset(
    {b"host", b"transfer-encoding", b"content-length", b"connection", b"expect"}
)


def _frame(
    method: bytes, target: bytes, version: bytes, headers: Headers, limits: Limits
) -> Request:
    """Work out the message framing and connection options of a request head.

    This is RFC 9112 §6.3 ("Message Body Length") for requests, step by step, plus Host
    (§3.2), persistence (§9.3) and Expect (RFC 9110 §10.1.1). Its result is stored in the
    Request, so that no later layer decides framing again.
    """
    # One pass collects the fields that decide framing and persistence.
    framing: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        if name in _FRAMING_FIELDS:
            if name in framing:
                framing[name].append(value)
            else:
                framing[name] = [value]
    hosts = framing.get(b"host", [])
    # RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request that lacks a Host
    # field, and to any request with more than one.
    if len(hosts) > 1:
        raise RemoteProtocolError("more than one Host header field")
    if version == b"1.1" and not hosts:
        raise RemoteProtocolError("HTTP/1.1 request without a Host header field")
    if hosts and not host_re.fullmatch(hosts[0]):
        raise RemoteProtocolError(f"malformed Host {_show(hosts[0])}")

    te_values = framing.get(b"transfer-encoding")
    cl_values = framing.get(b"content-length")
    chunked = False
    content_length: int | None = 0
    if te_values:
        # §6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as having
        # faulty framing (1.0 had no transfer codings; a proxy might not have applied it).
        if version == b"1.0":
            raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request")
        # §6.3 step 3 and §6.1: Transfer-Encoding with Content-Length is the classic
        # smuggling vector (CL.TE / TE.CL). A server MAY reject it and MUST then close.
        if cl_values:
            raise RemoteProtocolError("both Transfer-Encoding and Content-Length")
        codings = [c.lower() for c in _comma_list(te_values)]
        if not codings or not all(token_re.fullmatch(c) for c in codings):
            raise RemoteProtocolError("malformed Transfer-Encoding")
        # §6.3 step 4: if chunked is not the final coding of a request, the length cannot
        # be known: 400 and close.
        if codings[-1] != b"chunked":
            raise RemoteProtocolError("the final transfer coding is not chunked")
        if codings.count(b"chunked") > 1:
            raise RemoteProtocolError("chunked applied more than once (RFC 9112 §7)")
        if len(codings) > 1:
            # §6.1: a server that receives a transfer coding it does not understand SHOULD
            # answer 501. We decode chunked only; gzip and friends are not implemented.
            other = b", ".join(codings[:-1]).decode("ascii")
            raise RemoteProtocolError(f"transfer coding {other} is not implemented", 501)
        chunked, content_length = True, None
    elif cl_values:
        # §6.3 step 5: Content-Length = 1*DIGIT. A list of identical values ("5, 5", or the
        # same field twice) may be taken as one; differing values are unrecoverable.
        # Content-Length is not a list field, so empty items are not dropped as
        # _comma_list() does: "5," or a second, empty Content-Length line is invalid
        # (RFC 9110 §8.6), and a peer that read the empty one as 0 would disagree with us.
        items = [item.strip(OWS) for value in cl_values for item in value.split(b",")]
        if not items or not all(content_length_re.fullmatch(item) for item in items):
            raise RemoteProtocolError("Content-Length is not a plain decimal number")
        digits = {item.lstrip(b"0") or b"0" for item in items}
        if len(digits) > 1:
            raise RemoteProtocolError("conflicting Content-Length values")
        (value,) = digits
        if len(value) > 18:  # longer than any body we could ever accept; skip the int()
            raise RemoteProtocolError(f"a {len(value)}-digit Content-Length", 413)
        content_length = int(value)
    # §6.3 step 7: a request with neither has no body (content_length stays 0).
    if content_length is not None and content_length > limits.max_body:
        raise RemoteProtocolError(
            f"body of {content_length} bytes; this server accepts {limits.max_body}", 413
        )

    # §9.3: persistence. "close" wins in either version; 1.0 persists only when asked.
    connection_values = framing.get(b"connection")
    if connection_values is None:  # the usual case: the version decides
        keep_alive = version == b"1.1"
    else:
        connection = {c.lower() for c in _comma_list(connection_values)}
        if b"close" in connection:
            keep_alive = False
        else:
            keep_alive = version == b"1.1" or b"keep-alive" in connection

    # RFC 9110 §10.1.1: 100-continue is the only expectation defined; a server MAY answer
    # 417 to others, and MUST ignore 100-continue from an HTTP/1.0 client.
    expects_continue = False
    expect = _comma_list(framing[b"expect"]) if b"expect" in framing else []
    if expect and version == b"1.1":
        if [e.lower() for e in expect] != [b"100-continue"]:
            raise RemoteProtocolError(f"unsupported expectation {_show(b', '.join(expect))}", 417)
        expects_continue = True

    # Positional: a frozen dataclass sets each field through object.__setattr__, and
    # keywords would add a dict on top, once per request.
    return Request(
        method, target, version, headers, content_length, chunked, keep_alive, expects_continue
    )


# ----------------------------------------------------------------------------------------
# Body readers. Each returns Data (as much as is buffered, never more than the message
# holds), then EndOfMessage; None when it needs more bytes.
class ContentLengthReader:
    """A body of exactly Content-Length bytes (RFC 9112 §6.2)."""

    def __init__(self, length: int) -> None:
        self.remaining = length

    def __call__(self, buf: bytearray, eof: bool) -> Data | EndOfMessage | None:
        if self.remaining == 0:
            return _END
        if not buf:
            if eof:
                # §8: a message shorter than its Content-Length is incomplete.
                raise RemoteProtocolError(
                    f"connection closed with {self.remaining} bytes of the body still to come"
                )
            return None
        take = min(self.remaining, len(buf))
        data = bytes(buf[:take])
        del buf[:take]
        self.remaining -= take
        return Data(data)


class ChunkedReader:
    """A chunked body (RFC 9112 §7.1): size line, data, CRLF, ..., last chunk, trailers.

    The reader is a small state machine; its state is the next thing it expects:
    ``"size"`` (a chunk-size line), ``"data"`` (``remaining`` bytes of chunk data),
    ``"crlf"`` (the CRLF after the data) or ``"trailers"`` (the trailer section).
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.expect = "size"
        self.remaining = 0
        self.total = 0  # de-chunked bytes so far, against limits.max_body
        self._scanned = 0  # trailer bytes already checked, as in HeadReader

    def __call__(self, buf: bytearray, eof: bool) -> Data | EndOfMessage | None:
        while True:
            if self.expect == "size":
                if not self._read_size_line(buf):
                    break
            elif self.expect == "data":
                if not buf:
                    break
                take = min(self.remaining, len(buf))
                data = bytes(buf[:take])
                del buf[:take]
                self.remaining -= take
                if self.remaining == 0:
                    self.expect = "crlf"
                return Data(data)
            elif self.expect == "crlf":
                # §7.1: chunk-data is followed by exactly CRLF. h11 once accepted any two
                # bytes here (CVE-2025-43859): that is a smuggling hole.
                if buf[:2] == CRLF:
                    del buf[:2]
                    self.expect = "size"
                    continue
                if len(buf) >= 2 or (buf and buf[:1] != b"\r"):
                    raise RemoteProtocolError("chunk data not followed by CRLF")
                break
            else:
                return self._read_trailers(buf, eof)
        if eof:
            raise RemoteProtocolError("connection closed in the middle of a chunked body")
        return None

    def _read_size_line(self, buf: bytearray) -> bool:
        end = buf.find(CRLF)
        if end == -1:
            # As for the request line, a trailing CR may be half of the line's CRLF.
            if len(buf) - (1 if buf.endswith(b"\r") else 0) > self.limits.max_chunk_line:
                raise RemoteProtocolError("chunk-size line too long")
            _check_line_ends(buf, 0, len(buf))
            return False
        if end > self.limits.max_chunk_line:
            # The same limit for a line that came in one piece: the outcome must not depend
            # on how the bytes are split.
            raise RemoteProtocolError("chunk-size line too long")
        line = bytes(buf[:end])
        if b"\n" in line or b"\r" in line:
            raise RemoteProtocolError("bare CR or LF in a chunk-size line")
        match = chunk_line_re.fullmatch(line)
        if match is None:
            raise RemoteProtocolError(f"malformed chunk-size line {_show(line)}")
        # Significant digits only: RFC 9112 §7.1 chunk-size = 1*HEXDIG, so
        # "00000000000000000005" is a chunk of 5 bytes; the line limit bounds the zeros.
        if len(match["size"].lstrip(b"0")) > MAX_CHUNK_SIZE_DIGITS:
            raise RemoteProtocolError("chunk size out of range")
        del buf[: end + 2]
        size = int(match["size"], 16)
        self.total += size
        if self.total > self.limits.max_body:
            raise RemoteProtocolError(
                f"chunked body over {self.limits.max_body} bytes; this server accepts no more",
                413,
            )
        if size == 0:
            self.expect = "trailers"  # §7.1: last-chunk, then the trailer section
        else:
            self.expect, self.remaining = "data", size
        return True

    def _read_trailers(self, buf: bytearray, eof: bool) -> EndOfMessage | None:
        # §7.1.2: trailer-section = *( field-line CRLF ), then the final CRLF.
        if buf[:2] == CRLF:
            del buf[:2]
            return EndOfMessage()
        # Only the bytes new since the last call are scanned. Rescanning the whole section
        # each time would make a trailer sent a byte at a time cost quadratic time (about
        # 1.5 s of CPU for 32 KiB), which an event-loop era would spend blocked.
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end == -1:
            _check_line_ends(buf, self._scanned, len(buf))
            self._scanned = len(buf) - (1 if buf.endswith(b"\r") else 0)
            # An unfinished section may still end in "\r\n\r" (3 bytes) that are not
            # counted once it is complete; the +3 keeps a section of exactly the limit
            # accepted whether it arrives whole or a byte at a time.
            if len(buf) > self.limits.max_header_bytes + 3:
                raise RemoteProtocolError("trailer section too large", 431)
            if eof:
                raise RemoteProtocolError("connection closed in the middle of the trailers")
            return None
        _check_line_ends(buf, self._scanned, end + 2)
        if end > self.limits.max_header_bytes:
            raise RemoteProtocolError("trailer section too large", 431)
        lines = bytes(buf[:end]).split(CRLF)
        del buf[: end + 4]
        return EndOfMessage(parse_field_lines(lines, self.limits))


BodyReader = ContentLengthReader | ChunkedReader
_END = EndOfMessage()
