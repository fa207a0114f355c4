"""The client side of a lesson: turn written requests into bytes, send them, read responses.

A lesson shows HTTP as bytes, so its client cannot be a library that hides them (httpx,
curl): it writes exactly the bytes the lesson wrote, including broken ones, and reads back
exactly what the server sent. Three jobs:

1. :func:`encode_request` turns a request *as written in a lesson* into bytes. Markdown
   cannot show a CR, so the text form has one rule for line ends: **every line is sent
   with CRLF, except a last line that is not empty** (a body ends where its bytes end).
   A head therefore ends with an empty line, as on the wire; ``eol="lf"`` sends bare LF
   instead, for the lesson that shows why a server must refuse it.
2. :func:`read_responses` reads from a socket until it has the responses it expects,
   the server closes, the server goes quiet, or a deadline passes, whichever is first.
   It frames responses itself (Content-Length, chunked, no body, until close) with a
   small reader that is lenient where the server core is strict: it has to survive
   whatever a server under study sends.
3. :func:`byte_lines` renders bytes for a student: one line per line of the message,
   with each line end shown as it is (``\\r\\n`` in dim, a bare ``\\n`` in red).

Nothing here parses requests: that is the server core's job, and lessons use the real
one (``servers.http``).
"""

from __future__ import annotations

import re
import select
import socket
import time
from dataclasses import dataclass, field

from rich.text import Text

__all__ = [
    "ResponseHead",
    "Responses",
    "byte_lines",
    "count_requests",
    "encode_request",
    "read_responses",
    "request_methods",
]

# Where a request line starts: at the start of the data or after a line end.
_REQUEST_LINE = re.compile(rb"(?:^|(?<=\n))([A-Z][A-Z0-9_-]*) \S+ HTTP/\d\.\d(?=\r?\n|$)")
# How long to wait for the close a response announced with "Connection: close".
CLOSE_GRACE = 1.0
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?")


def encode_request(text: str, eol: str = "crlf") -> bytes:
    r"""A request written as text -> the bytes to send.

    >>> encode_request("GET / HTTP/1.1\nHost: x\n\n")
    b'GET / HTTP/1.1\r\nHost: x\r\n\r\n'
    >>> encode_request("POST / HTTP/1.1\nContent-Length: 2\n\nhi\n")
    b'POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi'

    ``text`` is the content of a Markdown code block, so it ends with the newline that
    precedes the closing fence; that newline is the end of the last line, not a line.
    Non-ASCII text is sent as UTF-8.
    """
    if eol not in ("crlf", "lf"):
        raise ValueError(f"eol is 'crlf' or 'lf', not {eol!r}")
    end = "\r\n" if eol == "crlf" else "\n"
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the fence's newline
    if not lines:
        return b""
    out = "".join(line + end for line in lines[:-1])
    last = lines[-1]
    out += last + end if last == "" else last
    return out.encode("utf-8")


def request_methods(data: bytes) -> list[bytes]:
    """The methods of the request lines found in ``data``, in order (pipelining)."""
    return [m.group(1) for m in _REQUEST_LINE.finditer(data)]


def count_requests(data: bytes) -> int:
    return len(request_methods(data))


@dataclass
class ResponseHead:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body_bytes: int = 0
    complete: bool = False

    @property
    def interim(self) -> bool:
        return 100 <= self.status < 200

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def __str__(self) -> str:
        return f"{self.status} {self.reason}".rstrip()


@dataclass
class Responses:
    """What came back on one connection for one send."""

    data: bytes = b""
    responses: list[ResponseHead] = field(default_factory=list)
    closed: bool = False  # the server closed (or reset) the connection
    timed_out: bool = False
    error: str = ""  # a socket error, as text

    @property
    def finals(self) -> list[ResponseHead]:
        return [r for r in self.responses if not r.interim and r.complete]

    def summary(self) -> str:
        parts = [f"{len(self.data)} bytes"]
        if self.responses:
            shown = ", ".join(str(r) for r in self.responses)
            noun = "response" if len(self.responses) == 1 else "responses"
            parts.append(f"{len(self.responses)} {noun} ({shown})")
        if self.closed:
            parts.append("the server closed the connection")
        if self.timed_out:
            parts.append("stopped waiting (timeout)")
        if self.error:
            parts.append(self.error)
        return "; ".join(parts)


def _parse(data: bytes, methods: list[bytes]) -> list[ResponseHead]:
    """Frame as many responses as ``data`` holds (RFC 9112 §6.3, the client's side).

    ``methods`` are the methods of the requests sent, in order: a response to HEAD has
    no body whatever its headers say. Incomplete responses are returned with
    ``complete=False``.
    """
    found: list[ResponseHead] = []
    pos = 0
    finals = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end == -1:
            break
        lines = data[pos:end].split(b"\r\n")
        match = _STATUS_LINE.match(lines[0])
        if match is None:
            break  # not HTTP: leave it to the raw view
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        head = ResponseHead(
            status=int(match[3]),
            reason=(match[4] or b"").decode("latin-1"),
            version=f"{match[1].decode()}.{match[2].decode()}",
            headers=headers,
        )
        found.append(head)
        pos = end + 4
        method = methods[finals] if finals < len(methods) else b"GET"
        if head.interim:
            head.complete = True
            continue
        finals += 1
        if method == b"HEAD" or head.status in (204, 304):
            head.complete = True
            continue
        length = head.header("content-length")
        if head.header("transfer-encoding") and "chunked" in (
            head.header("transfer-encoding") or ""
        ):
            size, pos, done = _chunked(data, pos)
            head.body_bytes, head.complete = size, done
            if not done:
                break
        elif length is not None and length.isdigit():
            available = min(int(length), len(data) - pos)
            head.body_bytes = available
            head.complete = available == int(length)
            pos += available
            if not head.complete:
                break
        else:
            # Delimited by the close (RFC 9112 §6.3 step 8): complete only at EOF.
            head.body_bytes = len(data) - pos
            pos = len(data)
    return found


def _chunked(data: bytes, pos: int) -> tuple[int, int, bool]:
    """(body size, position after the body, complete?) of a chunked body at ``pos``."""
    size = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end == -1:
            return size, len(data), False
        digits = data[pos:end].split(b";", 1)[0].strip()
        try:
            chunk = int(digits, 16)
        except ValueError:
            return size, len(data), False
        pos = end + 2
        if chunk == 0:
            trailer_end = data.find(b"\r\n", pos)
            while trailer_end != -1 and trailer_end != pos:
                pos = trailer_end + 2
                trailer_end = data.find(b"\r\n", pos)
            if trailer_end == -1:
                return size, len(data), False
            return size, pos + 2, True
        if len(data) < pos + chunk + 2:
            return size + max(0, len(data) - pos), len(data), False
        size += chunk
        pos += chunk + 2


def read_responses(
    sock: socket.socket,
    methods: list[bytes],
    expected: int,
    timeout: float = 5.0,
    quiet: float = 0.5,
) -> Responses:
    """Read until ``expected`` final responses are complete, the peer closes, or
    ``timeout`` passes. With ``expected=0`` (say, a head sent with Expect: 100-continue,
    whose body is still to come) read until the server, having sent something, has been
    quiet for ``quiet`` s (a busy machine may take a while for the first byte).

    After the last expected response, if it said ``Connection: close``, wait a moment
    more for the close itself, so that the student sees it happen instead of guessing.
    """
    result = Responses()
    deadline = time.monotonic() + timeout
    last_byte = time.monotonic()
    closing = False  # the expected responses are in and the last one announced a close
    while True:
        now = time.monotonic()
        if now >= deadline:
            result.timed_out = not closing
            break
        if expected == 0 and result.data and now - last_byte >= quiet:
            break
        try:
            readable, _, _ = select.select([sock], [], [], min(deadline - now, 0.05))
            if not readable:
                continue
            chunk = sock.recv(65536)
        except OSError as error:
            result.error = error.strerror or str(error)
            result.closed = True
            break
        if not chunk:
            result.closed = True
            break
        result.data += chunk
        last_byte = time.monotonic()
        result.responses = _parse(result.data, methods)
        finals = result.finals
        if expected and len(finals) >= expected and not closing:
            if not _announced_close(finals[-1]):
                break
            closing, deadline = True, min(deadline, time.monotonic() + CLOSE_GRACE)
    result.responses = _parse(result.data, methods)
    if result.closed:
        for head in result.responses:
            # A body delimited by the close is complete exactly now.
            if not head.interim and head.header("content-length") is None and not head.complete:
                head.complete = head.header("transfer-encoding") is None
    return result


def _announced_close(response: ResponseHead) -> bool:
    return "close" in (response.header("connection") or "").lower()


def byte_lines(data: bytes, max_lines: int = 40, max_width: int = 96) -> list[Text]:
    """Bytes as lines of text, line ends made visible, long lines and messages cut."""
    out: list[Text] = []
    pieces = data.split(b"\n")
    ends_with_lf = data.endswith(b"\n")
    if ends_with_lf:
        pieces.pop()
    for i, piece in enumerate(pieces):
        if len(out) == max_lines:
            out.append(Text(f"… {len(pieces) - i} more lines", style="dim"))
            break
        has_lf = i < len(pieces) - 1 or ends_with_lf
        crlf = has_lf and piece.endswith(b"\r")
        body = piece[:-1] if crlf else piece
        shown = repr(body)[2:-1]
        line = Text()
        if len(shown) > max_width:
            line.append(shown[:max_width])
            line.append(f"… ({len(body)} bytes)", style="dim")
        else:
            line.append(shown)
        if crlf:
            line.append("\\r\\n", style="dim")
        elif has_lf:
            line.append("\\n", style="bold red")
        out.append(line)
    return out
