"""Writers: turn response events into bytes, refusing anything that would break framing.

The response head is where an application's mistakes become the client's problem, so
this module is the last line of defence:

* A header name must be a token and a value must hold no CR, LF, NUL or other control
  byte. One CRLF smuggled into a value is enough to inject a second response (response
  splitting: uvicorn CVE-2020-7695, waitress PR #121, gunicorn #1227).
* The core, not the app, chooses the framing (RFC 9112 §6): Content-Length when the app
  gave one, chunked for an HTTP/1.1 client when it did not, and for an HTTP/1.0 client
  the end of the connection (§6.1: never send Transfer-Encoding to a 1.0 client).
* HEAD, 1xx, 204 and 304 responses carry no body (RFC 9110 §6.4.1): whatever the app
  writes for them is counted and dropped.

Body writers mirror the body readers: one class per framing, each turning Data and
EndOfMessage into bytes and raising LocalProtocolError when the app sends more or less
than it promised.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from .events import Header, LocalProtocolError
from .grammar import forbidden_in_value_re, token_re

__all__ = [
    "BodyWriter",
    "ChunkedWriter",
    "CloseDelimitedWriter",
    "ContentLengthWriter",
    "NoBodyWriter",
    "http_date",
    "reason_phrase",
    "status_line",
    "validate_header",
]

_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """RFC 9110 §5.6.7 IMF-fixdate for now, e.g. b"Sun, 06 Nov 1994 08:49:37 GMT".

    Formatting a date costs more than the rest of a small response head, and it changes
    once a second, so it is cached per second (uvicorn and gunicorn do the same).
    """
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


_PHRASES: dict[int, bytes] = {}
_STATUS_LINES: dict[int, bytes] = {}  # status -> its status line with our phrase


def reason_phrase(status: int) -> bytes:
    phrase = _PHRASES.get(status)
    if phrase is not None:
        return phrase
    _PHRASES[status] = phrase = _reason_phrase(status)
    return phrase


def _reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""  # RFC 9112 §4: the reason-phrase may be empty; clients must ignore it


def validate_header(name: bytes, value: bytes) -> None:
    """Refuse a header that would break the response framing (response splitting)."""
    if not token_re.fullmatch(name):
        raise LocalProtocolError(f"illegal header name {name!r}: a name must be an RFC 9110 token")
    if forbidden_in_value_re.search(value):
        raise LocalProtocolError(
            f"illegal header value for {name!r}: CR, LF, NUL and control bytes are not allowed"
        )


def parse_content_length(value: bytes) -> int:
    # bytes.isdigit() is true exactly for 1*DIGIT (ASCII only): content_length_re, in C.
    if not value.isdigit() or len(value) > 18:
        raise LocalProtocolError(f"Content-Length {value!r} is not a plain decimal number")
    return int(value)


def status_line(status: int, reason: bytes) -> bytes:
    """RFC 9112 §4 status-line, CRLF included. We always speak HTTP/1.1 (RFC 9110 §2.5)."""
    if not reason:
        line = _STATUS_LINES.get(status)
        if line is None:
            line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))
        return line
    # A str reason would raise TypeError; it is the app's mistake, reported as one.
    if not isinstance(reason, bytes) or forbidden_in_value_re.search(reason):
        raise LocalProtocolError(f"illegal reason phrase {reason!r}")
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def head_bytes(status: int, reason: bytes, headers: list[Header]) -> bytes:
    """RFC 9112 §4 status-line and §5 field lines, then the empty line (§2.1)."""
    parts = [status_line(status, reason)]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


# ----------------------------------------------------------------------------------------
class ContentLengthWriter:
    """The app declared Content-Length: send exactly that many bytes (RFC 9112 §6.2)."""

    def __init__(self, length: int) -> None:
        self.remaining = length

    def data(self, data: bytes) -> bytes:
        if len(data) > self.remaining:
            raise LocalProtocolError(
                f"the app sent more body than its Content-Length ({len(data)} bytes with "
                f"{self.remaining} left)"
            )
        self.remaining -= len(data)
        return data

    def framing(self, length: int) -> tuple[bytes, bytes]:
        if length > self.remaining:
            raise LocalProtocolError(
                f"a file of {length} bytes with {self.remaining} left of the Content-Length"
            )
        self.remaining -= length
        return b"", b""

    def end(self, trailers: list[Header]) -> bytes:
        if self.remaining:
            raise LocalProtocolError(
                f"the app ended the body {self.remaining} bytes short of its Content-Length"
            )
        if trailers:
            raise LocalProtocolError("trailers need a chunked response (no Content-Length)")
        return b""


class ChunkedWriter:
    """No length known in advance, HTTP/1.1 client: chunked coding (RFC 9112 §7.1)."""

    def data(self, data: bytes) -> bytes:
        if not data:
            return b""  # an empty chunk would be the last-chunk: never send one by accident
        return b"%x\r\n%s\r\n" % (len(data), data)

    def end(self, trailers: list[Header]) -> bytes:
        lines = [b"%s: %s\r\n" % (name, value) for name, value in trailers]
        return b"0\r\n" + b"".join(lines) + b"\r\n"

    def framing(self, length: int) -> tuple[bytes, bytes]:
        return (b"%x\r\n" % length, b"\r\n") if length else (b"", b"")


class CloseDelimitedWriter:
    """No length known, HTTP/1.0 client: the body ends when we close (RFC 9112 §6.3 step 8)."""

    def data(self, data: bytes) -> bytes:
        return data

    def framing(self, length: int) -> tuple[bytes, bytes]:
        return b"", b""

    def end(self, trailers: list[Header]) -> bytes:
        if trailers:
            raise LocalProtocolError("trailers need a chunked response")
        return b""


class NoBodyWriter:
    """HEAD, 1xx, 204, 304: the message has no body, whatever the app writes (RFC 9110 §6.4.1)."""

    def data(self, data: bytes) -> bytes:
        return b""

    def end(self, trailers: list[Header]) -> bytes:
        return b""


BodyWriter = ContentLengthWriter | ChunkedWriter | CloseDelimitedWriter | NoBodyWriter
